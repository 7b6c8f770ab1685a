//! `failover`: how long a shard stays unwritable when its leader dies, and whether any
//! acknowledged write is lost on the way.
//!
//! `scripts/failover.sh` brings up a local cluster with `scripts/cluster.sh` and runs
//! `failover run`. Each round:
//!
//! 1. waits until every node's `CLUSTER INFO` says `cluster_state:ok`;
//! 2. finds the leader of the target shard (default 0) from `INFO raft` (the node whose own
//!    `raft_shard_<s>` line says `role=leader`, highest term first) and a fresh key of that shard
//!    (`key_slot` + the slot ring, as the server computes them);
//! 3. starts a writer on a surviving node: `SET key <counter>` with the counter going 1, 2, 3, ...,
//!    one request in flight, a 2 s socket timeout, reconnecting after any I/O error or timeout;
//!    it warms up until writes succeed, then the leader is looked up again (leaders are
//!    rebalanced after a node starts; if it moved, the round starts over with a new key);
//! 4. SIGKILLs the leader with `cluster.sh kill I`, which reports the kill's wall-clock time;
//! 5. measures **unavailability**: from the kill until the acknowledgement of the first write
//!    that was *sent after* the kill and succeeded; and the **gap**: from the last write
//!    acknowledged before the kill to that same acknowledgement (what a client saw);
//! 6. restarts the node with `cluster.sh restart I` while the writer keeps going, then stops the
//!    writer and reads the key back through every node: each read must return at least the
//!    largest acknowledged counter. Every acknowledged value above what was read back counts as
//!    a lost acknowledged write.
//!
//! Each round prints one line: the victim, the unavailability and gap, the new leader, failed
//! writes before the kill / during the outage / after, how long the restart took and the longest
//! write gap during it, and what every node read back. At the end all keys are read again, then
//! a summary follows (`rounds: N`, `unavailability p50/p99/max`, the failed writes by reply,
//! `lost acknowledged writes: N`). Exit status: 0 when nothing was lost and every
//! round recovered, 1 when an acknowledged write was lost (or a read returned a value never
//! written), 2 when a round could not be run or did not recover within the deadline.
//!
//! Two helpers for scripts share the same code:
//! `failover shard-of KEY [--shards N]` prints the shard of KEY, and
//! `failover leader-of KEY [--port P]` prints `SHARD LEADER_ID LEADER_CLIENT_PORT` as the
//! cluster reachable at 127.0.0.1:P reports them.
//!
//! Only 127.0.0.1 is contacted. Timing uses the wall clock (`SystemTime`), because the kill time
//! comes from another process; a run lasts minutes, so clock steps are not a practical concern.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use shoal_protocol::{decode_frame, encode_command, key_slot, Frame, Limits};
use shoal_server::cluster::ring::{SlotRing, DEFAULT_VNODES};

const HOST: [u8; 4] = [127, 0, 0, 1];
const USAGE: &str = "\
usage: failover run [--cluster-sh PATH] [--base-port P] [--nodes N] [--rounds N] [--shard S]
                    [--io-timeout-ms MS] [--recover-timeout-s S] [--ok-timeout-s S]
       failover shard-of KEY [--shards N]
       failover leader-of KEY [--port P]
Defaults: --cluster-sh scripts/cluster.sh, --base-port $SHOAL_BASE_PORT or 7001, --nodes 3,
--rounds $ROUNDS or 20, --shard 0, --io-timeout-ms 2000, --recover-timeout-s 60,
--ok-timeout-s 120, --shards 16, --port 7001. `run` expects the cluster to be up already
(scripts/failover.sh starts one).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => Opts::parse(&args[1..]).and_then(run),
        Some("shard-of") => Opts::parse(&args[1..]).and_then(shard_of_cmd),
        Some("leader-of") => Opts::parse(&args[1..]).and_then(leader_of_cmd),
        _ => Err(Failure::Usage(String::new())),
    };
    match result {
        Ok(code) => code,
        Err(Failure::Usage(msg)) => {
            if !msg.is_empty() {
                eprintln!("failover: {msg}");
            }
            eprintln!("{USAGE}");
            ExitCode::from(64)
        }
        Err(Failure::Fatal(msg)) => {
            eprintln!("failover: {msg}");
            ExitCode::from(2)
        }
    }
}

enum Failure {
    Usage(String),
    Fatal(String),
}

type Res<T> = Result<T, Failure>;

fn fatal<T>(msg: impl Into<String>) -> Res<T> {
    Err(Failure::Fatal(msg.into()))
}

/// `--name value` options and positional arguments.
struct Opts {
    named: HashMap<String, String>,
    positional: Vec<String>,
}

impl Opts {
    fn parse(args: &[String]) -> Res<Opts> {
        let mut named = HashMap::new();
        let mut positional = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            if let Some(name) = arg.strip_prefix("--") {
                let Some(value) = it.next() else {
                    return Err(Failure::Usage(format!("--{name} needs a value")));
                };
                named.insert(name.to_owned(), value.clone());
            } else {
                positional.push(arg.clone());
            }
        }
        Ok(Opts { named, positional })
    }

    /// The option `--name`, else the environment variable `env` (if any), else `default`.
    fn num<T: std::str::FromStr>(&mut self, name: &str, env: Option<&str>, default: T) -> Res<T> {
        let value = match self.named.remove(name) {
            Some(v) => v,
            None => match env.and_then(|e| std::env::var(e).ok()) {
                Some(v) if !v.is_empty() => v,
                _ => return Ok(default),
            },
        };
        value
            .parse()
            .map_err(|_| Failure::Usage(format!("--{name}: not a valid number: {value}")))
    }

    fn string(&mut self, name: &str, default: &str) -> String {
        self.named
            .remove(name)
            .unwrap_or_else(|| default.to_owned())
    }

    /// Fails on options nobody asked for and on a positional count other than `positional`.
    fn finish(&self, positional: usize) -> Res<()> {
        if let Some(name) = self.named.keys().next() {
            return Err(Failure::Usage(format!("unknown option --{name}")));
        }
        if self.positional.len() != positional {
            return Err(Failure::Usage(format!(
                "expected {positional} argument(s), got {}",
                self.positional.len()
            )));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// A minimal blocking RESP client.

struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    out: BytesMut,
}

impl Conn {
    fn connect(port: u16, timeout: Duration) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&SocketAddr::from((HOST, port)), timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(4096),
            out: BytesMut::with_capacity(256),
        })
    }

    /// Sends one command and reads its reply. Any error leaves the connection unusable (a late
    /// reply would be taken for the next command's), so callers drop it.
    fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<Frame> {
        self.out.clear();
        encode_command(args, &mut self.out);
        self.stream.write_all(&self.out)?;
        let limits = Limits::default();
        loop {
            match decode_frame(&mut self.buf, &limits) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed by the server",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// One command on a fresh connection.
fn call_once<A: AsRef<[u8]>>(port: u16, args: &[A], timeout: Duration) -> io::Result<Frame> {
    Conn::connect(port, timeout)?.call(args)
}

/// The text of a bulk/verbatim/simple reply; an error reply becomes an `Err`.
fn reply_text(frame: Frame) -> Result<String, String> {
    match frame {
        Frame::Bulk(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Frame::Verbatim { text, .. } => Ok(String::from_utf8_lossy(&text).into_owned()),
        Frame::Simple(s) => Ok(s),
        Frame::Error(e) => Err(e),
        Frame::BulkError(e) => Err(String::from_utf8_lossy(&e).into_owned()),
        other => Err(format!("unexpected reply {other:?}")),
    }
}

/// `name:value` lines of an `INFO` / `CLUSTER INFO` reply.
fn info_fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.trim_end().split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `a=1,b=2` (an INFO value) as pairs.
fn kv_pairs(value: &str) -> HashMap<&str, &str> {
    value
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .collect()
}

fn info(port: u16, section: &[&str]) -> Result<BTreeMap<String, String>, String> {
    let frame = call_once(port, section, Duration::from_secs(3)).map_err(|e| e.to_string())?;
    reply_text(frame).map(|text| info_fields(&text))
}

// ---------------------------------------------------------------------------------------------
// Topology from INFO raft.

/// What one node says in `INFO raft`.
struct RaftView {
    node_id: u64,
    shards: u32,
    /// node id → client port, from the `raft_node_<id>:client=host:port,...` lines.
    client_ports: BTreeMap<u64, u16>,
    /// shard → the fields of this node's `raft_shard_<s>` line.
    shard_lines: BTreeMap<u32, HashMap<String, String>>,
}

fn raft_view(port: u16) -> Result<RaftView, String> {
    let fields = info(port, &["INFO", "raft"])?;
    let num = |name: &str| -> Result<u64, String> {
        fields
            .get(name)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("INFO raft on port {port} has no numeric {name}"))
    };
    let node_id = num("raft_node_id")?;
    let shards = u32::try_from(num("raft_shards")?).map_err(|e| e.to_string())?;
    let mut client_ports = BTreeMap::new();
    let mut shard_lines = BTreeMap::new();
    for (k, v) in &fields {
        if let Some(id) = k
            .strip_prefix("raft_node_")
            .and_then(|s| s.parse::<u64>().ok())
        {
            let pairs = kv_pairs(v);
            if let Some(p) = pairs
                .get("client")
                .and_then(|addr| addr.rsplit_once(':'))
                .and_then(|(_, p)| p.parse::<u16>().ok())
            {
                client_ports.insert(id, p);
            }
        } else if let Some(shard) = k.strip_prefix("raft_shard_").and_then(|s| s.parse().ok()) {
            let pairs = kv_pairs(v)
                .into_iter()
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .collect();
            shard_lines.insert(shard, pairs);
        }
    }
    Ok(RaftView {
        node_id,
        shards,
        client_ports,
        shard_lines,
    })
}

/// A shard's leader as the cluster reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Leader {
    id: u64,
    /// Its client port.
    port: u16,
    /// The term it was reported at (0 if unknown).
    term: u64,
    /// Shards in the cluster.
    shards: u32,
}

/// The leader of `shard` as the nodes on `ports` report it: a node claiming `role=leader`
/// (highest term wins), else the `leader=` most reported at the highest term.
fn find_leader(ports: &[u16], shard: u32) -> Result<Leader, String> {
    let mut claims: Vec<(u64, u64)> = Vec::new(); // (term, node id) of self-declared leaders
    let mut hearsay: BTreeMap<(u64, u64), usize> = BTreeMap::new(); // (term, leader) → votes
    let mut client_ports = BTreeMap::new();
    let mut shards = None;
    let mut errors = Vec::new();
    for &port in ports {
        let view = match raft_view(port) {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!("port {port}: {e}"));
                continue;
            }
        };
        shards = Some(view.shards);
        client_ports.extend(view.client_ports.iter().map(|(&id, &p)| (id, p)));
        let Some(line) = view.shard_lines.get(&shard) else {
            continue;
        };
        let term = line.get("term").and_then(|t| t.parse().ok()).unwrap_or(0);
        if line.get("role").map(String::as_str) == Some("leader") {
            claims.push((term, view.node_id));
        }
        if let Some(leader) = line.get("leader").and_then(|l| l.parse::<u64>().ok()) {
            if leader != 0 {
                *hearsay.entry((term, leader)).or_default() += 1;
            }
        }
    }
    let shards = shards.ok_or_else(|| format!("no node answered INFO raft: {errors:?}"))?;
    let leader = claims.iter().max().copied().or_else(|| {
        let top_term = hearsay.keys().map(|&(t, _)| t).max()?;
        hearsay
            .iter()
            .filter(|((t, _), _)| *t == top_term)
            .max_by_key(|(_, &votes)| votes)
            .map(|(&key, _)| key)
    });
    let (term, id) = leader.ok_or_else(|| format!("shard {shard} has no known leader"))?;
    let port = *client_ports
        .get(&id)
        .ok_or_else(|| format!("INFO raft lists no client address for node {id}"))?;
    Ok(Leader {
        id,
        port,
        term,
        shards,
    })
}

fn shard_of(ring: &SlotRing, key: &[u8]) -> u32 {
    ring.shard_of(key_slot(key))
}

fn ring_of(shards: u32) -> SlotRing {
    SlotRing::new(&(0..shards).collect::<Vec<u32>>(), DEFAULT_VNODES)
}

fn shard_of_cmd(mut opts: Opts) -> Res<ExitCode> {
    let shards: u32 = opts.num("shards", None, 16)?;
    opts.finish(1)?;
    if shards == 0 {
        return Err(Failure::Usage("--shards must be at least 1".into()));
    }
    println!(
        "{}",
        shard_of(&ring_of(shards), opts.positional[0].as_bytes())
    );
    Ok(ExitCode::SUCCESS)
}

fn leader_of_cmd(mut opts: Opts) -> Res<ExitCode> {
    let port: u16 = opts.num("port", None, 7001)?;
    opts.finish(1)?;
    let key = opts.positional[0].as_bytes();
    let view = raft_view(port).or_else(fatal)?;
    let shard = shard_of(&ring_of(view.shards), key);
    let mut ports: Vec<u16> = view.client_ports.values().copied().collect();
    if ports.is_empty() {
        ports.push(port);
    }
    let leader = find_leader(&ports, shard).or_else(fatal)?;
    println!("{shard} {} {}", leader.id, leader.port);
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// The writer.

#[derive(Clone, Debug)]
enum Outcome {
    Ok,
    /// An error reply (its text, cut to 200 bytes).
    ErrReply(String),
    /// No reply within the I/O timeout.
    Timeout,
    /// Connect failure, reset, EOF...
    Io(String),
}

#[derive(Clone, Debug)]
struct Event {
    sent: SystemTime,
    done: SystemTime,
    value: u64,
    outcome: Outcome,
}

struct Writer {
    stop: Arc<AtomicBool>,
    events: Arc<Mutex<Vec<Event>>>,
    handle: thread::JoinHandle<()>,
}

impl Writer {
    /// Writes `SET key 1`, `SET key 2`, ... to 127.0.0.1:`port` until stopped.
    fn start(port: u16, key: String, timeout: Duration) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let events = Arc::new(Mutex::new(Vec::new()));
        let (stop2, events2) = (stop.clone(), events.clone());
        let handle = thread::spawn(move || {
            let mut conn: Option<Conn> = None;
            let mut value = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                value += 1;
                let sent = SystemTime::now();
                let counter = value.to_string();
                let args = [b"SET".as_slice(), key.as_bytes(), counter.as_bytes()];
                let result = match conn.take() {
                    Some(c) => Ok(c),
                    None => Conn::connect(port, timeout),
                }
                .and_then(|c| conn.insert(c).call(&args));
                let outcome = match result {
                    Ok(Frame::Simple(s)) if s == "OK" => Outcome::Ok,
                    Ok(frame) => {
                        let text = match frame {
                            Frame::Error(e) => e,
                            other => format!("unexpected reply {other:?}"),
                        };
                        let cut = (0..=text.len().min(200))
                            .rev()
                            .find(|&i| text.is_char_boundary(i))
                            .unwrap_or(0);
                        Outcome::ErrReply(text[..cut].to_owned())
                    }
                    Err(e) => {
                        conn = None;
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) {
                            Outcome::Timeout
                        } else {
                            Outcome::Io(e.kind().to_string())
                        }
                    }
                };
                let failed = !matches!(outcome, Outcome::Ok);
                events2.lock().unwrap().push(Event {
                    sent,
                    done: SystemTime::now(),
                    value,
                    outcome,
                });
                if failed {
                    // Errors can come back fast (refused connection); do not spin.
                    thread::sleep(Duration::from_millis(1));
                }
            }
        });
        Writer {
            stop,
            events,
            handle,
        }
    }

    fn snapshot(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    fn finish(self) -> Vec<Event> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
        Arc::try_unwrap(self.events)
            .map(|m| m.into_inner().unwrap())
            .unwrap_or_else(|arc| arc.lock().unwrap().clone())
    }
}

// ---------------------------------------------------------------------------------------------
// The measurement.

struct Config {
    cluster_sh: PathBuf,
    base: u16,
    nodes: u16,
    rounds: u32,
    shard: u32,
    io_timeout: Duration,
    recover_timeout: Duration,
    ok_timeout: Duration,
}

impl Config {
    fn port(&self, index: u16) -> u16 {
        self.base + index - 1
    }

    fn ports(&self) -> Vec<u16> {
        (1..=self.nodes).map(|i| self.port(i)).collect()
    }

    /// `cluster.sh ARGS`, stderr passed through; returns stdout.
    fn cluster_sh(&self, args: &[&str]) -> Res<String> {
        let out = Command::new(&self.cluster_sh)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| {
                Failure::Fatal(format!("cannot run {}: {e}", self.cluster_sh.display()))
            })?;
        if !out.status.success() {
            return fatal(format!(
                "`{} {}` failed ({})",
                self.cluster_sh.display(),
                args.join(" "),
                out.status
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Waits until every node says `cluster_state:ok`.
fn wait_cluster_ok(cfg: &Config) -> Res<()> {
    let deadline = Instant::now() + cfg.ok_timeout;
    loop {
        let mut bad = Vec::new();
        for port in cfg.ports() {
            match info(port, &["CLUSTER", "INFO"]) {
                Ok(f) if f.get("cluster_state").map(String::as_str) == Some("ok") => {}
                Ok(f) => bad.push(format!(
                    "{port}: cluster_state:{}",
                    f.get("cluster_state").map_or("?", String::as_str)
                )),
                Err(e) => bad.push(format!("{port}: {e}")),
            }
        }
        if bad.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return fatal(format!(
                "cluster not ok after {:?}: {}",
                cfg.ok_timeout,
                bad.join("; ")
            ));
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Reads `key` through `port`, retrying error replies and I/O errors until `deadline`.
fn read_back(port: u16, key: &str, deadline: Instant) -> Result<Option<u64>, String> {
    loop {
        let last_err = match call_once(port, &["GET", key], Duration::from_secs(2)) {
            Ok(Frame::Null) => return Ok(None),
            Ok(Frame::Bulk(b)) => {
                let text = String::from_utf8_lossy(&b);
                return text
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("GET {key} returned {text:?}, not a counter"));
            }
            Ok(other) => format!("GET {key} replied {other:?}"),
            Err(e) => format!("GET {key}: {e}"),
        };
        if Instant::now() >= deadline {
            return Err(last_err);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `later - earlier` in milliseconds, negative if `later` is earlier.
fn ms_between(earlier: SystemTime, later: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(d) => ms(d),
        Err(e) => -ms(e.duration()),
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// What was written to one key: the check after every read.
struct KeyRecord {
    key: String,
    /// Every acknowledged counter value, ascending.
    acked: Vec<u64>,
    /// The largest value ever sent.
    attempted: u64,
    /// The smallest value any read returned (0 for a missing key).
    min_read: Option<u64>,
    impossible: bool,
}

impl KeyRecord {
    fn from_events(key: String, events: &[Event]) -> KeyRecord {
        KeyRecord {
            key,
            acked: events
                .iter()
                .filter(|e| matches!(e.outcome, Outcome::Ok))
                .map(|e| e.value)
                .collect(),
            attempted: events.last().map_or(0, |e| e.value),
            min_read: None,
            impossible: false,
        }
    }

    fn observe(&mut self, read: Option<u64>) {
        let v = read.unwrap_or(0);
        if v > self.attempted {
            self.impossible = true;
        }
        self.min_read = Some(self.min_read.map_or(v, |m| m.min(v)));
    }

    fn lost(&self) -> usize {
        let seen = self.min_read.unwrap_or(u64::MAX);
        self.acked.iter().filter(|&&a| a > seen).count()
    }
}

struct RoundResult {
    unavailable_ms: Option<f64>,
    gap_ms: Option<f64>,
}

/// Counts the failed writes among `events` and adds them to `kinds` (what went wrong → count).
fn failures<'a>(
    events: impl Iterator<Item = &'a Event>,
    kinds: &mut BTreeMap<String, usize>,
) -> usize {
    let mut n = 0;
    for e in events {
        let kind = match &e.outcome {
            Outcome::Ok => continue,
            Outcome::ErrReply(text) => format!("\"-{text}\""),
            Outcome::Timeout => "timeout".to_owned(),
            Outcome::Io(kind) => format!("I/O error: {kind}"),
        };
        *kinds.entry(kind).or_default() += 1;
        n += 1;
    }
    n
}

fn parse_kill_time(out: &str) -> Option<SystemTime> {
    // "killed node I (pid P) at 1700000000.123456"
    let t = out
        .lines()
        .rev()
        .find_map(|l| l.rsplit_once(" at "))?
        .1
        .trim();
    let (secs, frac) = t.split_once('.').unwrap_or((t, "0"));
    let secs: u64 = secs.parse().ok()?;
    let micros: u64 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
}

/// Starts a writer on a node other than the leader of `cfg.shard`, waits until its writes flow,
/// and checks that the leader is still the one it started with (right after the cluster forms
/// or a node returns, leaders are rebalanced; a move during warm-up means choosing again).
/// Returns (leader, its node index, key, writer's node index, writer).
fn prepare_round(
    cfg: &Config,
    round: u32,
    records: &mut Vec<KeyRecord>,
) -> Res<(Leader, u16, String, u16, Writer)> {
    for attempt in 1..=10 {
        wait_cluster_ok(cfg)?;
        let leader = find_leader(&cfg.ports(), cfg.shard).or_else(fatal)?;
        if cfg.shard >= leader.shards {
            return fatal(format!(
                "shard {} does not exist ({} shards)",
                cfg.shard, leader.shards
            ));
        }
        let Some(victim) = leader
            .port
            .checked_sub(cfg.base)
            .map(|d| d + 1)
            .filter(|&i| i <= cfg.nodes)
        else {
            return fatal(format!(
                "leader node {} listens on port {}, outside this cluster's ports",
                leader.id, leader.port
            ));
        };
        let ring = ring_of(leader.shards);
        let key = (0u64..)
            .map(|n| format!("failover:r{round}a{attempt}:k{n}"))
            .find(|k| shard_of(&ring, k.as_bytes()) == cfg.shard)
            .expect("some key lands in every shard");
        let writer_index = (1..=cfg.nodes)
            .find(|&i| i != victim)
            .ok_or_else(|| Failure::Fatal("need at least 2 nodes".into()))?;

        // Warm up: writes must be flowing before the kill.
        let writer = Writer::start(cfg.port(writer_index), key.clone(), cfg.io_timeout);
        let warm_deadline = Instant::now() + Duration::from_secs(30);
        let warm_from = Instant::now();
        loop {
            thread::sleep(Duration::from_millis(20));
            let events = writer.snapshot();
            let oks = events
                .iter()
                .rev()
                .take(20)
                .filter(|e| matches!(e.outcome, Outcome::Ok))
                .count();
            if oks == 20 && warm_from.elapsed() >= Duration::from_millis(300) {
                break;
            }
            if Instant::now() >= warm_deadline {
                let events = writer.finish();
                let last = events.last().map(|e| e.outcome.clone());
                records.push(KeyRecord::from_events(key, &events));
                return fatal(format!(
                    "round {round}: writes to node {writer_index} do not succeed before the kill \
                     (last: {last:?})"
                ));
            }
        }
        match find_leader(&cfg.ports(), cfg.shard) {
            Ok(now) if now == leader => return Ok((leader, victim, key, writer_index, writer)),
            now => {
                println!(
                    "round {round}: shard {} leader changed during warm-up (id {} term {} -> {}); \
                     choosing again",
                    cfg.shard,
                    leader.id,
                    leader.term,
                    match now {
                        Ok(l) => format!("id {} term {}", l.id, l.term),
                        Err(e) => e,
                    }
                );
                let events = writer.finish();
                records.push(KeyRecord::from_events(key, &events));
                thread::sleep(Duration::from_millis(500));
            }
        }
    }
    fatal(format!(
        "round {round}: the leader of shard {} kept moving",
        cfg.shard
    ))
}

fn run_round(
    cfg: &Config,
    round: u32,
    records: &mut Vec<KeyRecord>,
    kinds: &mut BTreeMap<String, usize>,
) -> Res<RoundResult> {
    let (leader, victim, key, writer_index, writer) = prepare_round(cfg, round, records)?;
    let leader_id = leader.id;

    // Kill the leader.
    let spawned = SystemTime::now();
    let kill_out = cfg.cluster_sh(&["kill", &victim.to_string()])?;
    let killed_at = parse_kill_time(&kill_out).unwrap_or_else(|| {
        eprintln!("failover: no kill time in {kill_out:?}; using the time `kill` was started");
        spawned
    });

    // Wait for the first successful write sent after the kill.
    let recover_deadline = Instant::now() + cfg.recover_timeout;
    let recovered = loop {
        let events = writer.snapshot();
        if let Some(e) = events
            .iter()
            .find(|e| e.sent >= killed_at && matches!(e.outcome, Outcome::Ok))
        {
            break Some(e.clone());
        }
        if Instant::now() >= recover_deadline {
            break None;
        }
        thread::sleep(Duration::from_millis(5));
    };

    // Who took over (asked of the survivors).
    let survivors: Vec<u16> = (1..=cfg.nodes)
        .filter(|&i| i != victim)
        .map(|i| cfg.port(i))
        .collect();
    let successor = match find_leader(&survivors, cfg.shard) {
        Ok(l) => format!("id {} term {}", l.id, l.term),
        Err(e) => format!("unknown ({e})"),
    };

    // Restart the victim while writes continue.
    let restart_started = SystemTime::now();
    let restart = cfg.cluster_sh(&["restart", &victim.to_string()]);
    let restart_done = SystemTime::now();
    thread::sleep(Duration::from_millis(200));
    let events = writer.finish();
    restart?;

    let last_before = events
        .iter()
        .filter(|e| e.done <= killed_at && matches!(e.outcome, Outcome::Ok))
        .map(|e| e.done)
        .max();
    let unavailable_ms = recovered.as_ref().map(|e| ms_between(killed_at, e.done));
    let gap_ms = match (&recovered, last_before) {
        (Some(e), Some(before)) => Some(ms_between(before, e.done)),
        _ => None,
    };
    let recovered_at = recovered.as_ref().map_or(restart_started, |e| e.done);
    let before_kill = failures(events.iter().filter(|e| e.done <= killed_at), kinds);
    let outage = failures(
        events
            .iter()
            .filter(|e| e.done > killed_at && e.sent < recovered_at),
        kinds,
    );
    let after = failures(events.iter().filter(|e| e.sent >= recovered_at), kinds);
    // Longest stretch without a successful write while the victim rejoined.
    let mut restart_gap = 0.0f64;
    let mut prev_ok = None;
    for e in events.iter().filter(|e| e.done >= restart_started) {
        if matches!(e.outcome, Outcome::Ok) {
            if let Some(p) = prev_ok {
                restart_gap = restart_gap.max(ms_between(p, e.done));
            }
            prev_ok = Some(e.done);
        }
    }

    let mut record = KeyRecord::from_events(key.clone(), &events);
    let last_acked = record.acked.last().copied().unwrap_or(0);

    // Read back through every node.
    let read_deadline = Instant::now() + Duration::from_secs(30);
    let mut reads = Vec::new();
    for i in 1..=cfg.nodes {
        match read_back(cfg.port(i), &key, read_deadline) {
            Ok(v) => {
                record.observe(v);
                reads.push(format!(
                    "{}:{}",
                    i,
                    v.map_or("nil".to_owned(), |v| v.to_string())
                ));
            }
            Err(e) => reads.push(format!("{i}:error({e})")),
        }
    }
    let lost = record.lost();
    let verdict = if lost > 0 || record.impossible {
        "LOST"
    } else {
        "ok"
    };

    let fmt_ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1} ms"));
    println!(
        "round {round}/{}: killed node {victim} (leader of shard {}: id {leader_id}, term {}), \
         writer on node {writer_index}: unavailable {} (gap {}), new leader {successor}; failed \
         writes {before_kill}/{outage}/{after} (before kill/outage/after); restart {:.1} s (max \
         write gap {:.1} ms); acked {} (last {last_acked}), read back via nodes {} {verdict}",
        cfg.rounds,
        cfg.shard,
        leader.term,
        fmt_ms(unavailable_ms),
        fmt_ms(gap_ms),
        ms_between(restart_started, restart_done) / 1000.0,
        restart_gap,
        record.acked.len(),
        reads.join(" "),
    );
    if recovered.is_none() {
        println!(
            "round {round}: no write succeeded within {:?} of the kill",
            cfg.recover_timeout
        );
    }
    if reads.iter().any(|r| r.contains("error(")) {
        records.push(record);
        return fatal(format!("round {round}: could not read {key} back"));
    }
    records.push(record);
    Ok(RoundResult {
        unavailable_ms,
        gap_ms,
    })
}

fn run(mut opts: Opts) -> Res<ExitCode> {
    let cfg = Config {
        cluster_sh: PathBuf::from(opts.string("cluster-sh", "scripts/cluster.sh")),
        base: opts.num("base-port", Some("SHOAL_BASE_PORT"), 7001)?,
        nodes: opts.num("nodes", None, 3)?,
        rounds: opts.num("rounds", Some("ROUNDS"), 20)?,
        shard: opts.num("shard", None, 0)?,
        io_timeout: Duration::from_millis(opts.num("io-timeout-ms", None, 2000)?),
        recover_timeout: Duration::from_secs(opts.num("recover-timeout-s", None, 60)?),
        ok_timeout: Duration::from_secs(opts.num("ok-timeout-s", None, 120)?),
    };
    opts.finish(0)?;
    if cfg.nodes < 2 || cfg.rounds == 0 {
        return Err(Failure::Usage("need --nodes >= 2 and --rounds >= 1".into()));
    }
    println!(
        "failover: {} rounds, {}-node cluster on 127.0.0.1:{}.., shard {}, io timeout {:?}",
        cfg.rounds, cfg.nodes, cfg.base, cfg.shard, cfg.io_timeout
    );

    let mut records = Vec::new();
    let mut results = Vec::new();
    let mut kinds = BTreeMap::new();
    let mut broken = None;
    for round in 1..=cfg.rounds {
        match run_round(&cfg, round, &mut records, &mut kinds) {
            Ok(r) => results.push(r),
            Err(Failure::Fatal(msg)) => {
                println!("round {round}: ABORTED: {msg}");
                broken = Some(msg);
                break;
            }
            Err(usage) => return Err(usage),
        }
    }

    // Every key once more, after the last restart.
    if wait_cluster_ok(&cfg).is_ok() {
        let deadline = Instant::now() + Duration::from_secs(30);
        for record in &mut records {
            match read_back(cfg.port(1), &record.key, deadline) {
                Ok(v) => record.observe(v),
                Err(e) => println!("final read of {}: {e}", record.key),
            }
        }
    } else {
        println!("final read skipped: cluster not ok");
    }

    let mut unavailable: Vec<f64> = results.iter().filter_map(|r| r.unavailable_ms).collect();
    let mut gaps: Vec<f64> = results.iter().filter_map(|r| r.gap_ms).collect();
    unavailable.sort_by(f64::total_cmp);
    gaps.sort_by(f64::total_cmp);
    let unrecovered = results.len() - unavailable.len();
    let lost: usize = records.iter().map(KeyRecord::lost).sum();
    let impossible = records.iter().filter(|r| r.impossible).count();
    for r in records.iter().filter(|r| r.lost() > 0 || r.impossible) {
        println!(
            "key {}: acked up to {}, read back as low as {}{}",
            r.key,
            r.acked.last().copied().unwrap_or(0),
            r.min_read.map_or("-".to_owned(), |v| v.to_string()),
            if r.impossible {
                " (a value above any write sent)"
            } else {
                ""
            }
        );
    }

    println!();
    println!("rounds: {}", results.len());
    if unavailable.is_empty() {
        println!("unavailability p50: - ms");
        println!("unavailability p99: - ms");
        println!("unavailability max: - ms");
    } else {
        println!(
            "unavailability p50: {:.1} ms",
            percentile(&unavailable, 50.0)
        );
        println!(
            "unavailability p99: {:.1} ms",
            percentile(&unavailable, 99.0)
        );
        println!(
            "unavailability max: {:.1} ms",
            percentile(&unavailable, 100.0)
        );
    }
    if !gaps.is_empty() {
        println!(
            "client-seen gap (last OK before kill to first OK after) p50: {:.1} ms, p99: {:.1} ms, max: {:.1} ms",
            percentile(&gaps, 50.0),
            percentile(&gaps, 99.0),
            percentile(&gaps, 100.0)
        );
    }
    println!(
        "rounds without recovery within {:?}: {unrecovered}",
        cfg.recover_timeout
    );
    for (kind, n) in &kinds {
        println!("failed writes: {n} x {kind}");
    }
    if impossible > 0 {
        println!("keys read back with a value never written: {impossible}");
    }
    println!("lost acknowledged writes: {lost}");
    if let Some(msg) = &broken {
        println!("stopped early: {msg}");
    }

    Ok(if lost > 0 || impossible > 0 {
        ExitCode::from(1)
    } else if broken.is_some() || unrecovered > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_time_is_parsed_with_microseconds() {
        let t = parse_kill_time("killed node 2 (pid 42) at 1700000000.000123\n").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_micros(1_700_000_000_000_123)
        );
        assert!(parse_kill_time("nothing here").is_none());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 10.0);
        assert_eq!(percentile(&v, 99.0), 20.0);
        assert_eq!(percentile(&v, 100.0), 20.0);
        assert_eq!(percentile(&[7.0], 50.0), 7.0);
    }

    #[test]
    fn lost_counts_acked_values_above_what_was_read() {
        let mut r = KeyRecord {
            key: "k".into(),
            acked: vec![1, 2, 3, 5, 6],
            attempted: 7,
            min_read: None,
            impossible: false,
        };
        r.observe(Some(7));
        assert_eq!(r.lost(), 0);
        r.observe(Some(3));
        assert_eq!(r.lost(), 2);
        r.observe(None);
        assert_eq!(r.lost(), 5);
        r.observe(Some(8));
        assert!(r.impossible);
    }

    #[test]
    fn info_raft_lines_parse() {
        let f = info_fields("# Raft\r\nraft_node_id:1\r\nraft_shard_0:group=1,role=leader,leader=1,term=2,voters=1|2|3,learners=\r\n");
        assert_eq!(f["raft_node_id"], "1");
        let kv = kv_pairs(&f["raft_shard_0"]);
        assert_eq!(kv["role"], "leader");
        assert_eq!(kv["learners"], "");
    }
}
