//! Test harness: runs the real `shoal-server` binary and talks to it over real TCP, with a raw
//! RESP client and with Debian's `redis-cli`.
#![allow(dead_code)]

pub mod certs;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use shoal_protocol::{decode_frame, encode_command, Frame, Limits};

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running server process; killed (and its data dir removed) when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    data_dir: PathBuf,
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Starts the binary on an OS-chosen port with extra flags, and waits until it is ready.
    pub fn start_with(extra: &[&str]) -> Server {
        let data_dir = std::env::temp_dir().join(format!(
            "shoal-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&data_dir).expect("create data dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_shoal-server"))
            .args(["--port", "0", "--bind", "127.0.0.1", "--log-level", "warn"])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn shoal-server");
        let rx = ready_addresses(child.stdout.take().expect("stdout"));
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().expect("address in ready line"),
            Err(_) => {
                let _ = child.kill();
                panic!("shoal-server did not become ready within 20 s");
            }
        };
        Server {
            child,
            addr,
            data_dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs `redis-cli -p <port> args...` and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port(), args)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli must be installed (apt-get install redis-tools)");
    assert!(out.status.success(), "redis-cli {args:?} failed: {out:?}");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim_end_matches('\n')
        .to_owned()
}

/// A minimal blocking RESP client that sends commands as arrays of bulk strings.
pub struct Client {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        Client {
            stream,
            buf: BytesMut::new(),
        }
    }

    pub fn send(&mut self, args: &[&str]) {
        let mut out = BytesMut::new();
        encode_command(args, &mut out);
        self.stream.write_all(&out).expect("write");
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one reply; panics on timeout or if the connection closes first.
    pub fn read(&mut self) -> Frame {
        self.try_read()
            .expect("connection closed before a reply arrived")
    }

    /// Reads one reply, or `None` if the server closed the connection.
    pub fn try_read(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = decode_frame(&mut self.buf, &Limits::default()).expect("valid reply") {
                return Some(f);
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    pub fn cmd(&mut self, args: &[&str]) -> Frame {
        self.send(args);
        self.read()
    }

    /// True once the server has closed this connection (reads EOF or reset).
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0))
            || matches!(self.stream.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
    }
}

pub fn bulk(s: &str) -> Frame {
    Frame::bulk(s.to_owned())
}

pub fn ok() -> Frame {
    Frame::ok()
}

pub fn err(s: &str) -> Frame {
    Frame::Error(s.to_owned())
}

pub fn int(n: i64) -> Frame {
    Frame::Integer(n)
}

/// Polls `check` until it is true or `timeout` passes; returns whether it became true.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Clusters of real processes
// ---------------------------------------------------------------------------------------------

impl Client {
    /// Sends every command in one write, then reads one reply per command, in order.
    pub fn pipeline<S: AsRef<str>>(&mut self, commands: &[Vec<S>]) -> Vec<Frame> {
        let mut out = BytesMut::new();
        for c in commands {
            let args: Vec<&str> = c.iter().map(|a| a.as_ref()).collect();
            encode_command(&args, &mut out);
        }
        self.stream.write_all(&out).expect("write pipeline");
        commands.iter().map(|_| self.read()).collect()
    }

    /// The text of `INFO section` (or of any other command answering a bulk string).
    pub fn text(&mut self, args: &[&str]) -> String {
        match self.cmd(args) {
            Frame::Bulk(b) => String::from_utf8(b.to_vec()).expect("utf-8"),
            Frame::Verbatim { text, .. } => String::from_utf8(text.to_vec()).expect("utf-8"),
            other => panic!("{args:?}: not a text reply: {other:?}"),
        }
    }
}

/// `name:value` lines of an INFO-style text (section headers and blank lines skipped).
pub fn info_fields(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// `a=1,b=2` (one INFO value) as pairs.
pub fn info_value_fields(value: &str) -> std::collections::HashMap<String, String> {
    value
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// One hosted shard replica, from `INFO raft`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardRaft {
    pub role: String,
    /// 0 when no leader is known.
    pub leader: u64,
    pub term: u64,
    pub last_log: u64,
    pub committed: u64,
    pub applied: u64,
    pub snapshot: u64,
    /// The last log index deleted behind the snapshot.
    pub purged: u64,
    pub voters: usize,
    /// The voters' node ids, as this replica's membership has them.
    pub voter_ids: Vec<u64>,
}

/// One hosted shard replica's data, from `INFO digest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardDigest {
    pub applied: u64,
    pub keys: u64,
    pub digest: String,
}

/// Parses `raft_shard_<i>:...` lines of `INFO raft` into shard → status.
pub fn parse_raft_shards(text: &str) -> std::collections::BTreeMap<u32, ShardRaft> {
    let num = |m: &std::collections::HashMap<String, String>, k: &str| -> u64 {
        m.get(k).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    info_fields(text)
        .into_iter()
        .filter_map(|(k, v)| {
            let shard: u32 = k.strip_prefix("raft_shard_")?.parse().ok()?;
            let m = info_value_fields(&v);
            let voter_ids: Vec<u64> = m
                .get("voters")
                .map(|v| v.split('|').filter_map(|s| s.parse().ok()).collect())
                .unwrap_or_default();
            Some((
                shard,
                ShardRaft {
                    role: m.get("role").cloned().unwrap_or_default(),
                    leader: num(&m, "leader"),
                    term: num(&m, "term"),
                    last_log: num(&m, "last_log"),
                    committed: num(&m, "committed"),
                    applied: num(&m, "applied"),
                    snapshot: num(&m, "snapshot"),
                    purged: num(&m, "purged"),
                    voters: voter_ids.len(),
                    voter_ids,
                },
            ))
        })
        .collect()
}

/// Parses `shard_<i>:applied=..,keys=..,digest=..` lines of `INFO digest`.
pub fn parse_digests(text: &str) -> std::collections::BTreeMap<u32, ShardDigest> {
    info_fields(text)
        .into_iter()
        .filter_map(|(k, v)| {
            let shard: u32 = k.strip_prefix("shard_")?.parse().ok()?;
            let m = info_value_fields(&v);
            Some((
                shard,
                ShardDigest {
                    applied: m.get("applied")?.parse().ok()?,
                    keys: m.get("keys")?.parse().ok()?,
                    digest: m.get("digest")?.clone(),
                },
            ))
        })
        .collect()
}

/// Why a node did not come up.
#[derive(Debug)]
pub enum StartFailure {
    /// The process exited before it was ready: its status and what it wrote to stderr.
    Exited {
        status: std::process::ExitStatus,
        stderr: String,
    },
    /// Still not ready when the deadline passed (it has been killed).
    Timeout { stderr: String },
}

/// How long a node may take to print its ready line.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One `shoal-server` process of a [`Cluster`], with its data dir and ports (kept across
/// restarts: a restarted node reuses both).
pub struct ClusterNode {
    /// The node id (from `INFO raft`).
    pub id: u64,
    /// Client address.
    pub addr: SocketAddr,
    /// Cluster (peer) address.
    pub peer_addr: SocketAddr,
    pub data_dir: PathBuf,
    /// Where the process's stderr goes (appended to by every start).
    pub log_path: PathBuf,
    /// Flags every start gets besides the ports and `--join`.
    flags: Vec<String>,
    child: Option<Child>,
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.kill();
    }
}

impl ClusterNode {
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `CLUSTER INFO` fields as this node sees them.
    pub fn cluster_info(&self) -> std::collections::HashMap<String, String> {
        info_fields(&self.client().text(&["CLUSTER", "INFO"]))
    }

    /// True when this node answers `cluster_state:ok` and knows `nodes` nodes.
    pub fn is_ok(&self, nodes: usize) -> bool {
        let Ok(stream) = TcpStream::connect(self.addr) else {
            return false;
        };
        drop(stream);
        let info = self.cluster_info();
        info.get("cluster_state").map(String::as_str) == Some("ok")
            && info.get("cluster_known_nodes") == Some(&nodes.to_string())
    }

    /// This node's hosted shard replicas (`INFO raft`).
    pub fn raft(&self) -> std::collections::BTreeMap<u32, ShardRaft> {
        parse_raft_shards(&self.client().text(&["INFO", "raft"]))
    }

    /// This node's hosted shard replicas' data digests (`INFO digest`).
    pub fn digests(&self) -> std::collections::BTreeMap<u32, ShardDigest> {
        parse_digests(&self.client().text(&["INFO", "digest"]))
    }

    /// The stderr written so far, by every start.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (with the `kill` command: the tests have no libc), then waits up to `timeout`
    /// for the process to exit and returns its status. Panics (after a SIGKILL) if it does not.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("node is running");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {} failed", child.id());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "node {} did not exit within {timeout:?} of SIGTERM",
                    self.id
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for the process to exit on its own; returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the process again on the same data dir and ports.
    pub fn try_restart(&mut self) -> Result<(), StartFailure> {
        assert!(self.child.is_none(), "node {} is still running", self.id);
        let ports = [
            "--port".to_owned(),
            self.addr.port().to_string(),
            "--cluster-port".to_owned(),
            self.peer_addr.port().to_string(),
        ];
        let mut args: Vec<String> = ports.to_vec();
        args.extend(self.flags.iter().cloned());
        let (child, addr) = spawn_node(&self.data_dir, &self.log_path, &args)?;
        assert_eq!(addr, self.addr, "restarted node listens elsewhere");
        self.child = Some(child);
        Ok(())
    }

    /// [`ClusterNode::try_restart`], panicking if it fails.
    pub fn restart(&mut self) {
        if let Err(e) = self.try_restart() {
            panic!("node {} did not restart: {e:?}", self.id);
        }
    }
}

/// The binary cluster nodes run: this build's, unless `SHOAL_TEST_BIN` or `SHOAL_SERVER_BIN`
/// names another (scripts/test.sh builds the release binary and sets the latter, so the
/// cluster tests see production timings).
pub fn cluster_binary() -> PathBuf {
    std::env::var_os("SHOAL_TEST_BIN")
        .or_else(|| std::env::var_os("SHOAL_SERVER_BIN"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_shoal-server")))
}

/// Spawns `shoal-server` with `args` on `data_dir` (stderr appended to `log_path`) and waits
/// until it prints its ready line; returns the process and its client address.
fn spawn_node(
    data_dir: &std::path::Path,
    log_path: &std::path::Path,
    args: &[String],
) -> Result<(Child, SocketAddr), StartFailure> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("open node log");
    let log_start = log.metadata().map_or(0, |m| m.len()) as usize;
    let stderr_now = || {
        let all = std::fs::read(log_path).unwrap_or_default();
        String::from_utf8_lossy(&all[log_start.min(all.len())..]).into_owned()
    };
    let mut child = Command::new(cluster_binary())
        .args(["--bind", "127.0.0.1", "--log-level", "warn"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn shoal-server");
    let rx = ready_addresses(child.stdout.take().expect("stdout"));
    let deadline = Instant::now() + NODE_READY_TIMEOUT;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(addr) => return Ok((child, addr.parse().expect("address in ready line"))),
            Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => {}
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Err(StartFailure::Exited {
                status,
                stderr: stderr_now(),
            });
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(StartFailure::Timeout {
                stderr: stderr_now(),
            });
        }
    }
}

/// A cluster of `shoal-server` processes on loopback, each with its own data dir under one
/// temporary folder. Dropping it kills every process and deletes the folder (after printing
/// the tail of each node's stderr when a test is panicking; with `SHOAL_TEST_KEEP` set, a
/// failed test's folder is kept).
pub struct Cluster {
    pub root: PathBuf,
    pub nodes: Vec<ClusterNode>,
}

impl Cluster {
    /// Starts node 1 (which creates the cluster) with `flags`, then `n - 1` nodes joining it,
    /// and waits until every node reports `cluster_state:ok` with `n` known nodes.
    pub fn start(n: usize, flags: &[&str]) -> Cluster {
        let root = std::env::temp_dir().join(format!(
            "shoal-cluster-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&root).expect("create cluster dir");
        let mut cluster = Cluster {
            root,
            nodes: Vec::new(),
        };
        for i in 0..n {
            let join = cluster.nodes.first().map(|n| n.peer_addr.to_string());
            cluster.add_node(i, join.as_deref(), flags);
        }
        cluster.wait_ok(Duration::from_secs(60));
        cluster
    }

    /// Starts one more node joining the cluster through the first running node; returns its
    /// index in `nodes`.
    pub fn join(&mut self, flags: &[&str]) -> usize {
        let seed = self
            .nodes
            .iter_mut()
            .find_map(|n| n.is_running().then(|| n.peer_addr.to_string()))
            .expect("a running node to join through");
        let i = self.nodes.len();
        self.add_node(i, Some(&seed), flags);
        i
    }

    /// Waits until every running node says `cluster_state:ok` with no move in flight or
    /// pending, and every shard's leader has `replicas` voters, all of them running nodes.
    pub fn wait_balanced(&mut self, replicas: usize, timeout: Duration) -> Duration {
        let start = Instant::now();
        let mut last = String::new();
        let ok = eventually(timeout, || {
            let running = self.running();
            let ids: Vec<u64> = running.iter().map(|n| n.id).collect();
            let mut leaders = std::collections::BTreeMap::new();
            for node in &running {
                let info = node.cluster_info();
                let field = |k: &str| info.get(k).cloned().unwrap_or_default();
                if field("cluster_state") != "ok"
                    || field("shoal_moves_in_flight") != "0"
                    || field("shoal_moves_pending") != "0"
                {
                    last = format!("node {}: {info:?}", node.id);
                    return false;
                }
                for (shard, r) in node.raft() {
                    if r.role == "leader" && r.leader == node.id {
                        leaders.insert(shard, r.voter_ids);
                    }
                }
            }
            last = format!("leaders' voters: {leaders:?}");
            let shards = running[0].cluster_info()["cluster_size"]
                .parse::<usize>()
                .unwrap_or(0);
            leaders.len() == shards
                && leaders
                    .values()
                    .all(|v| v.len() == replicas && v.iter().all(|id| ids.contains(id)))
        });
        assert!(ok, "cluster not balanced after {timeout:?}; last: {last}");
        start.elapsed()
    }

    fn add_node(&mut self, i: usize, join: Option<&str>, flags: &[&str]) {
        let data_dir = self.root.join(format!("node{}", i + 1));
        std::fs::create_dir_all(&data_dir).expect("create data dir");
        let log_path = self.root.join(format!("node{}.stderr", i + 1));
        let mut args: Vec<String> = ["--port", "0", "--cluster-port", "0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if let Some(seed) = join {
            args.extend(["--join".to_owned(), seed.to_owned()]);
        }
        args.extend(flags.iter().map(|s| s.to_string()));
        let (child, addr) = match spawn_node(&data_dir, &log_path, &args) {
            Ok(started) => started,
            Err(e) => panic!("node {} did not start: {e:?}", i + 1),
        };
        self.nodes.push(ClusterNode {
            id: 0,
            addr,
            peer_addr: addr,
            data_dir,
            log_path,
            flags: flags.iter().map(|s| s.to_string()).collect(),
            child: Some(child),
        });
        let node = &mut self.nodes[i];
        // Who am I and where is my peer port: `raft_node_id` and `raft_node_<id>` in INFO raft
        // (the latter once the node has read the topology).
        let mut found = None;
        let known = eventually(Duration::from_secs(20), || {
            let info = info_fields(&node.client().text(&["INFO", "raft"]));
            let Some(id) = info.get("raft_node_id").and_then(|v| v.parse::<u64>().ok()) else {
                return false;
            };
            let Some(me) = info.get(&format!("raft_node_{id}")) else {
                return false;
            };
            let peer = info_value_fields(me)
                .get("peer")
                .and_then(|p| p.parse::<SocketAddr>().ok());
            found = peer.map(|p| (id, p));
            found.is_some()
        });
        assert!(known, "node {} never listed itself in INFO raft", i + 1);
        let (id, peer) = found.expect("found");
        node.id = id;
        node.peer_addr = peer;
    }

    /// Waits until every running node reports `cluster_state:ok` and knows every node.
    pub fn wait_ok(&mut self, timeout: Duration) {
        let n = self.nodes.len();
        let start = Instant::now();
        let ok = eventually(timeout, || self.running().iter().all(|node| node.is_ok(n)));
        if !ok {
            let infos: Vec<String> = self
                .running()
                .into_iter()
                .map(|node| {
                    format!(
                        "node {}:\n{}\n{}",
                        node.id,
                        node.client().text(&["CLUSTER", "INFO"]),
                        node.client().text(&["INFO", "raft"])
                    )
                })
                .collect();
            panic!(
                "cluster not ok after {:?}:\n{}",
                start.elapsed(),
                infos.join("\n")
            );
        }
    }

    /// The nodes whose process is running.
    pub fn running(&mut self) -> Vec<&ClusterNode> {
        self.nodes
            .iter_mut()
            .filter_map(|node| node.is_running().then_some(&*node))
            .collect()
    }

    /// The node with id `id`.
    pub fn by_id(&mut self, id: u64) -> &mut ClusterNode {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// The id of the node leading `shard`, according to the leader itself (polls up to
    /// `timeout` while the shard has none).
    pub fn leader_of(&mut self, shard: u32, timeout: Duration) -> u64 {
        let mut leader = None;
        let found = eventually(timeout, || {
            leader = self
                .running()
                .into_iter()
                .find(|node| {
                    node.raft()
                        .get(&shard)
                        .is_some_and(|s| s.role == "leader" && s.leader == node.id)
                })
                .map(|node| node.id);
            leader.is_some()
        });
        assert!(found, "shard {shard} has no leader after {timeout:?}");
        leader.expect("found")
    }

    /// Waits until, for every shard, every running voter's replica has the same applied index
    /// and data digest as the shard leader's. Returns how long it took.
    pub fn wait_converged(&mut self, timeout: Duration) -> Duration {
        let start = Instant::now();
        let mut last = String::new();
        let ok = eventually(timeout, || {
            let running = self.running();
            let states: Vec<_> = running
                .iter()
                .map(|n| (n.id, n.raft(), n.digests()))
                .collect();
            last = format!("{states:#?}");
            let shards: std::collections::BTreeSet<u32> = states
                .iter()
                .flat_map(|(_, r, _)| r.keys().copied())
                .collect();
            // Every running voter of each shard (per its leader) holds the leader's data.
            shards.iter().all(|shard| {
                let Some((_, leader_raft, leader_digests)) = states.iter().find(|(id, raft, _)| {
                    raft.get(shard)
                        .is_some_and(|s| s.role == "leader" && s.leader == *id)
                }) else {
                    return false;
                };
                let Some(want) = leader_digests.get(shard) else {
                    return false;
                };
                let voters = &leader_raft[shard].voter_ids;
                states
                    .iter()
                    .filter(|(id, _, _)| voters.contains(id))
                    .all(|(_, _, digests)| digests.get(shard) == Some(want))
            })
        });
        assert!(
            ok,
            "replicas did not converge within {timeout:?}; last seen (id, INFO raft, INFO digest):\n{last}"
        );
        start.elapsed()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        if std::thread::panicking() {
            for node in &self.nodes {
                let log = node.stderr();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!(
                    "---- node {} ({}) stderr, last {} lines ----",
                    node.id,
                    node.addr,
                    tail.len()
                );
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        if std::thread::panicking() && std::env::var_os("SHOAL_TEST_KEEP").is_some() {
            eprintln!(
                "kept the cluster's data dirs and logs in {}",
                self.root.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// The addresses of the server's "shoal ready on <addr>; ..." lines (printed once it accepts
/// connections). A thread keeps draining stdout after that, so the process never blocks on it.
fn ready_addresses(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("shoal ready on ") {
                let addr = rest.split(';').next().unwrap_or_default().to_owned();
                let _ = tx.send(addr);
            }
        }
    });
    rx
}

pub fn cmd(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Writes `key → value` with pipelined `SET`s (batches of 500) and asserts every one is `+OK`.
pub fn set_all(client: &mut Client, pairs: &[(String, String)]) {
    for batch in pairs.chunks(500) {
        let cmds: Vec<Vec<String>> = batch.iter().map(|(k, v)| cmd(&["SET", k, v])).collect();
        for ((k, _), reply) in batch.iter().zip(client.pipeline(&cmds)) {
            assert_eq!(reply, ok(), "SET {k}");
        }
    }
}

/// Reads every key with `MGET` (batches of 500) and asserts it has its value.
pub fn assert_all(client: &mut Client, pairs: &[(String, String)], through: &str) {
    for batch in pairs.chunks(500) {
        let mut args = vec!["MGET"];
        args.extend(batch.iter().map(|(k, _)| k.as_str()));
        let reply = client.cmd(&args);
        let Frame::Array(values) = reply else {
            panic!("MGET through {through}: {reply:?}");
        };
        assert_eq!(values.len(), batch.len());
        for ((k, v), got) in batch.iter().zip(values) {
            assert_eq!(got, bulk(v), "{k} read through {through}");
        }
    }
}

/// A real redis-server (Debian's) on a free loopback port, for side-by-side tests; killed when
/// dropped.
pub struct RedisServer {
    child: Child,
    pub addr: SocketAddr,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let redis = RedisServer { child, addr };
        let ready = eventually(Duration::from_secs(10), || TcpStream::connect(addr).is_ok());
        assert!(ready, "redis-server did not listen on {addr} within 10 s");
        redis
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
