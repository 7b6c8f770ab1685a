//! Redis Cluster clients, unmodified, against 3-node clusters of the real binary: Debian's
//! `redis-cli -c` and `redis-benchmark --cluster`, and redis-py's `RedisCluster`
//! (`tests/python/redis_py_cluster.py`, run with the Python `scripts/test.sh` prepares).
//!
//! Keys are placed by the same map the server uses (CRC16 slot → slot ring → shard) and each
//! shard's leader is read from the nodes' `INFO raft`; before a test relies on who leads what it
//! waits until leadership has settled and every node's `CLUSTER SLOTS` agrees with `INFO raft`.

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shoal_protocol::{key_slot, Frame};
use shoal_server::cluster::{SlotRing, DEFAULT_VNODES};

/// One cluster at a time: three debug-build processes each, and on a small machine two
/// clusters at once starve each other's Raft timers.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const SHARDS: u32 = 16;
/// How long leadership may take to settle (balance, publish) after a start or a restart.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(40);
/// How long the shard leaders must stay the same to count as settled.
const STABLE_FOR: Duration = Duration::from_secs(1);
const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

/// A 3-node cluster in `mode` (`proxy` or `redirect`), with leadership settled. The log is
/// fsynced once a second: these tests are about what clients see, and an fsync per write would
/// make the benchmarks most of the run (durability has its own tests in cluster.rs).
fn start(mode: &str) -> Cluster {
    let started = Instant::now();
    let mut cluster = Cluster::start(
        3,
        &[
            "--shards",
            "16",
            "--cluster-mode",
            mode,
            "--appendfsync",
            "everysec",
        ],
    );
    let leaders = settled_leaders(&mut cluster, SETTLE_TIMEOUT, STABLE_FOR);
    eprintln!(
        "{mode} cluster settled after {:?}; shard leaders {leaders:?}",
        started.elapsed()
    );
    cluster
}

fn ring() -> SlotRing {
    SlotRing::new(&(0..SHARDS).collect::<Vec<_>>(), DEFAULT_VNODES)
}

fn shard_of(ring: &SlotRing, key: &str) -> u32 {
    ring.shard_of(key_slot(key.as_bytes()))
}

// ---------------------------------------------------------------------------------------------
// Topology: INFO raft and CLUSTER SLOTS
// ---------------------------------------------------------------------------------------------

/// One `CLUSTER SLOTS` entry: a slot range, its master's port, its replicas' ports.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SlotRange {
    start: u16,
    end: u16,
    master: u16,
    replicas: Vec<u16>,
}

fn int_of(f: &Frame) -> Option<i64> {
    match f {
        Frame::Integer(n) => Some(*n),
        _ => None,
    }
}

fn text_of(f: &Frame) -> Option<String> {
    match f {
        Frame::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Frame::Simple(s) => Some(s.clone()),
        _ => None,
    }
}

/// `[ip, port, id, ...]` of a CLUSTER SLOTS node; checks the ip and the 40-hex id.
fn slots_node(f: &Frame) -> Result<u16, String> {
    let Frame::Array(items) = f else {
        return Err(format!("node entry is not an array: {f:?}"));
    };
    let ip = items.first().and_then(text_of);
    let port = items.get(1).and_then(int_of);
    let id = items.get(2).and_then(text_of);
    match (ip, port, id) {
        (Some(ip), Some(port), Some(id))
            if ip == "127.0.0.1"
                && (1..=65535).contains(&port)
                && id.len() == 40
                && id.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(port as u16)
        }
        _ => Err(format!("bad node entry {items:?}")),
    }
}

fn parse_cluster_slots(reply: &Frame) -> Result<Vec<SlotRange>, String> {
    let Frame::Array(entries) = reply else {
        return Err(format!("CLUSTER SLOTS is not an array: {reply:?}"));
    };
    entries
        .iter()
        .map(|e| {
            let Frame::Array(items) = e else {
                return Err(format!("entry is not an array: {e:?}"));
            };
            let (Some(start), Some(end)) = (
                items.first().and_then(int_of),
                items.get(1).and_then(int_of),
            ) else {
                return Err(format!("entry without a range: {items:?}"));
            };
            if !(0..16384).contains(&start) || !(start..16384).contains(&end) {
                return Err(format!("bad range {start}-{end}"));
            }
            let master = slots_node(items.get(2).ok_or("entry without a master")?)?;
            let replicas = items[3..]
                .iter()
                .map(slots_node)
                .collect::<Result<_, _>>()?;
            Ok(SlotRange {
                start: start as u16,
                end: end as u16,
                master,
                replicas,
            })
        })
        .collect()
}

/// `CLUSTER SLOTS` of `node`, parsed (on a connection of its own: asking makes it a cluster
/// client).
fn cluster_slots(node: &ClusterNode) -> Result<Vec<SlotRange>, String> {
    parse_cluster_slots(&node.client().cmd(&["CLUSTER", "SLOTS"]))
}

/// Shard → leader node id, from the running nodes' `INFO raft` (a shard counts only when the
/// node that says it leads it also names itself as the leader).
fn raft_leaders(cluster: &mut Cluster) -> BTreeMap<u32, u64> {
    let mut leaders = BTreeMap::new();
    for node in cluster.nodes.iter_mut() {
        if !node.is_running() {
            continue;
        }
        for (shard, s) in node.raft() {
            if s.role == "leader" && s.leader == node.id {
                leaders.insert(shard, node.id);
            }
        }
    }
    leaders
}

/// Why `CLUSTER SLOTS` of a node disagrees with `leaders` (shard → client port), if it does:
/// every slot covered once, each by the leader of its shard, with the shard's other replicas.
fn slots_disagreement(
    ring: &SlotRing,
    slots: &[SlotRange],
    leaders: &BTreeMap<u32, u16>,
    ports: &BTreeSet<u16>,
) -> Option<String> {
    let mut covered = vec![false; 16384];
    for r in slots {
        for slot in r.start..=r.end {
            if std::mem::replace(&mut covered[slot as usize], true) {
                return Some(format!("slot {slot} listed twice"));
            }
            let shard = ring.shard_of(slot);
            if leaders.get(&shard) != Some(&r.master) {
                return Some(format!(
                    "slot {slot} (shard {shard}): master {} but INFO raft says {:?}",
                    r.master,
                    leaders.get(&shard)
                ));
            }
        }
        let mut all: Vec<u16> = r.replicas.clone();
        all.push(r.master);
        if all.iter().any(|p| !ports.contains(p)) || all.len() != ports.len() {
            return Some(format!(
                "range {}-{}: master {} replicas {:?}, want each of {ports:?} once",
                r.start, r.end, r.master, r.replicas
            ));
        }
    }
    covered
        .iter()
        .position(|c| !c)
        .map(|slot| format!("slot {slot} not covered"))
}

/// Waits until leadership has settled: every shard has a leader, every running node leads
/// some shard (so each is a master), the map has stayed the same for `stable_for`, and every
/// running node's `CLUSTER SLOTS` matches it. Returns shard → leader node id.
fn settled_leaders(
    cluster: &mut Cluster,
    timeout: Duration,
    stable_for: Duration,
) -> BTreeMap<u32, u64> {
    let ring = ring();
    let start = Instant::now();
    let mut last = BTreeMap::new();
    let mut same_since = Instant::now();
    let mut why;
    loop {
        let leaders = raft_leaders(cluster);
        if leaders != last {
            last = leaders.clone();
            same_since = Instant::now();
        }
        let ports: BTreeSet<u16> = cluster.nodes.iter().map(|n| n.port()).collect();
        let running: Vec<&ClusterNode> = cluster
            .nodes
            .iter_mut()
            .filter_map(|n| n.is_running().then_some(&*n))
            .collect();
        let port_of: BTreeMap<u64, u16> = running.iter().map(|n| (n.id, n.port())).collect();
        let led: BTreeSet<u64> = leaders.values().copied().collect();
        if leaders.len() != SHARDS as usize {
            why = format!(
                "{} of {SHARDS} shards have a leader: {leaders:?}",
                leaders.len()
            );
        } else if running.iter().any(|n| !led.contains(&n.id)) {
            why = format!("not every node leads a shard yet: {leaders:?}");
        } else if same_since.elapsed() < stable_for {
            why = format!("leaders changed less than {stable_for:?} ago: {leaders:?}");
        } else {
            let by_port: BTreeMap<u32, u16> =
                leaders.iter().map(|(s, id)| (*s, port_of[id])).collect();
            let bad = running.iter().find_map(|n| {
                let slots = match cluster_slots(n) {
                    Ok(s) => s,
                    Err(e) => return Some(format!("node {} CLUSTER SLOTS: {e}", n.id)),
                };
                slots_disagreement(&ring, &slots, &by_port, &ports)
                    .map(|e| format!("node {} CLUSTER SLOTS: {e}", n.id))
            });
            match bad {
                None => return leaders,
                Some(e) => why = e,
            }
        }
        assert!(
            start.elapsed() < timeout,
            "leadership did not settle within {timeout:?}: {why}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `per_node` keys (`prefix:N`) for every node, each in a shard that node leads.
fn keys_led_by(
    cluster: &Cluster,
    leaders: &BTreeMap<u32, u64>,
    prefix: &str,
    per_node: usize,
) -> BTreeMap<u64, Vec<String>> {
    let ring = ring();
    let mut keys: BTreeMap<u64, Vec<String>> =
        cluster.nodes.iter().map(|n| (n.id, Vec::new())).collect();
    for i in 0.. {
        if keys.values().all(|k| k.len() >= per_node) {
            break;
        }
        let key = format!("{prefix}:{i}");
        let leader = leaders[&shard_of(&ring, &key)];
        let mine = keys.get_mut(&leader).expect("a known node");
        if mine.len() < per_node {
            mine.push(key);
        }
    }
    keys
}

fn node_by_id(cluster: &Cluster, id: u64) -> &ClusterNode {
    cluster
        .nodes
        .iter()
        .find(|n| n.id == id)
        .unwrap_or_else(|| panic!("no node {id}"))
}

// ---------------------------------------------------------------------------------------------
// Running the real clients
// ---------------------------------------------------------------------------------------------

/// Runs `program args...` under `timeout(1)` (so a hung server cannot hang the test), with
/// `input` on stdin.
fn run(program: &str, args: &[String], input: &str, limit: Duration) -> Output {
    let mut child = Command::new("timeout")
        .args(["-k", "5", &limit.as_secs().to_string(), program])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run timeout(1) for {program}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write stdin");
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    match out.status.code() {
        Some(124) => panic!("{program} {args:?} timed out after {limit:?}"),
        Some(126 | 127) => {
            panic!("cannot run {program}: not installed? (apt-get install redis-tools)")
        }
        _ => out,
    }
}

/// `redis-cli [-c] -p PORT args...`: (exit success, stdout + stderr).
fn cli(port: u16, follow: bool, args: &[&str]) -> (bool, String) {
    let mut all: Vec<String> = vec!["-p".into(), port.to_string()];
    if follow {
        all.push("-c".into());
    }
    all.extend(args.iter().map(|s| s.to_string()));
    let out = run("redis-cli", &all, "", Duration::from_secs(20));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim_end().to_owned())
}

/// `redis-cli -c -p PORT args...`, which must succeed; its output.
fn cli_c(port: u16, args: &[&str]) -> String {
    let (ok, out) = cli(port, true, args);
    assert!(ok, "redis-cli -c -p {port} {args:?} failed: {out}");
    out
}

/// A port of a running node other than `not`.
fn other_port(cluster: &Cluster, not: &[u16], i: usize) -> u16 {
    let ports: Vec<u16> = cluster
        .nodes
        .iter()
        .map(|n| n.port())
        .filter(|p| !not.contains(p))
        .collect();
    ports[i % ports.len()]
}

/// redis-cli -c: every node's keys are written through a node that does not lead them and
/// read back through the third node, one command per process and many per process (stdin).
fn redis_cli_c_writes_and_reads_every_nodes_keys(cluster: &mut Cluster, prefix: &str) {
    let leaders = settled_leaders(cluster, SETTLE_TIMEOUT, Duration::ZERO);
    let keys = keys_led_by(cluster, &leaders, prefix, 3);
    let mut script = String::new();
    let mut expect = Vec::new();
    for (leader, keys) in &keys {
        let leader_port = node_by_id(cluster, *leader).port();
        for (i, key) in keys.iter().enumerate() {
            let writer = other_port(cluster, &[leader_port], i);
            let reader = other_port(cluster, &[leader_port, writer], 0);
            let value = format!("value-of-{key}");
            assert_eq!(cli_c(writer, &["SET", key, &value]), "OK", "SET {key}");
            assert_eq!(
                cli_c(reader, &["GET", key]),
                value,
                "GET {key} (led by node {leader} on port {leader_port}) through port {reader}"
            );
            assert_eq!(
                cli_c(leader_port, &["GET", key]),
                value,
                "GET {key} at its leader"
            );
            script.push_str(&format!("SET {key} again-{value}\nGET {key}\n"));
            expect.push("OK".to_owned());
            expect.push(format!("again-{value}"));
        }
    }
    // One redis-cli process, many commands: after a redirect it stays on the node it was sent
    // to, so the next key's MOVED comes from there.
    for node in &cluster.nodes {
        let args: Vec<String> = vec!["-c".into(), "-p".into(), node.port().to_string()];
        let out = run("redis-cli", &args, &script, Duration::from_secs(30));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let got: Vec<&str> = stdout
            .lines()
            .filter(|l| !l.starts_with("-> Redirected"))
            .collect();
        assert!(out.status.success(), "redis-cli -c < script: {out:?}");
        assert_eq!(
            got,
            expect,
            "redis-cli -c -p {} with the commands on stdin; stderr: {}",
            node.port(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The Python that has redis-py: `SHOAL_TEST_PYTHON` (scripts/test.sh sets it), else the
/// workspace's `target/test-venv` (scripts/test.sh makes it), else `python3` if it has redis-py.
/// Fails (never skips) when there is none.
fn python() -> PathBuf {
    let has_redis = |py: &PathBuf| {
        Command::new(py)
            .args(["-c", "import redis.cluster"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if let Some(py) = std::env::var_os("SHOAL_TEST_PYTHON") {
        let py = PathBuf::from(py);
        assert!(
            has_redis(&py),
            "SHOAL_TEST_PYTHON={} cannot `import redis.cluster`; run scripts/test.sh, which \
             creates a venv with redis-py",
            py.display()
        );
        return py;
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-venv/bin/python");
    if has_redis(&venv) {
        return venv;
    }
    let py = PathBuf::from("python3");
    assert!(
        has_redis(&py),
        "no Python with redis-py: run scripts/test.sh (it creates target/test-venv with \
         redis-py and exports SHOAL_TEST_PYTHON), or set SHOAL_TEST_PYTHON to a python that \
         can `import redis.cluster`"
    );
    py
}

/// Runs the redis-py script against `node`; for each `@pause ...` line it prints, calls
/// `on_pause` with the line, then tells the script to go on. Panics, with everything the script
/// printed, if it fails, or runs longer than `limit`.
fn run_redis_py(
    cluster: &mut Cluster,
    args: &[&str],
    limit: Duration,
    mut on_pause: impl FnMut(&mut Cluster, &str),
) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/redis_py_cluster.py");
    let addr = cluster.nodes[0].addr.to_string();
    let mut child = Command::new(python())
        .arg("-u")
        .arg(&script)
        .arg(&addr)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    let output = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("stdout");
    let out = Arc::clone(&output);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("[redis-py] {line}");
            out.lock().unwrap().push_str(&format!("{line}\n"));
            let _ = tx.send(line);
        }
    });
    let mut stderr = child.stderr.take().expect("stderr");
    let err_text = Arc::new(Mutex::new(String::new()));
    let err = Arc::clone(&err_text);
    let stderr_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        *err.lock().unwrap() = s;
    });
    let mut stdin = child.stdin.take().expect("stdin");
    let deadline = Instant::now() + limit;
    let all_output = |output: &Arc<Mutex<String>>, err: &Arc<Mutex<String>>| {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            output.lock().unwrap(),
            err.lock().unwrap()
        )
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix("@pause ") {
                    on_pause(cluster, rest);
                    stdin.write_all(b"go\n").expect("tell the script to go on");
                    stdin.flush().expect("flush");
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = stderr_thread.join();
                panic!(
                    "redis-py script ran longer than {limit:?}\n{}",
                    all_output(&output, &err_text)
                );
            }
        }
    }
    let status = child.wait().expect("wait for python");
    let _ = stderr_thread.join();
    let text = all_output(&output, &err_text);
    assert!(
        status.success(),
        "redis-py script failed ({status})\n{text}"
    );
    assert!(
        text.contains("ALL OK"),
        "redis-py script did not finish\n{text}"
    );
    text
}

/// `key=value` fields of a `@pause` line.
fn pause_fields(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The checks, one per client and mode
// ---------------------------------------------------------------------------------------------

/// Proxy mode: plain connections are forwarded; a connection that asked for the topology gets
/// MOVED for a shard this node does not lead, READONLY reads of its replicas, and CROSSSLOT.
fn proxy_mode_redirects_only_topology_aware_connections(cluster: &mut Cluster) {
    let leaders = settled_leaders(cluster, SETTLE_TIMEOUT, Duration::ZERO);
    let keys = keys_led_by(cluster, &leaders, "proxy-moved", 1);
    let own = keys_led_by(cluster, &leaders, "proxy-own", 1);
    for (leader, keys) in &keys {
        let key = &keys[0];
        let leader_port = node_by_id(cluster, *leader).port();
        let other = other_port(cluster, &[leader_port], 0);
        let node = cluster.nodes.iter().find(|n| n.port() == other).unwrap();
        // Plain redis-cli (no -c) through a node that does not lead the key: forwarded.
        let (success, out) = cli(other, false, &["SET", key, "v"]);
        assert!(success && out == "OK", "plain SET {key} via {other}: {out}");
        let mut plain = node.client();
        assert_eq!(plain.cmd(&["GET", key]), bulk("v"), "plain connection");
        // A connection that asked for the topology is a cluster client: MOVED.
        let mut aware = node.client();
        assert!(matches!(aware.cmd(&["CLUSTER", "SLOTS"]), Frame::Array(_)));
        let slot = key_slot(key.as_bytes());
        assert_eq!(
            aware.cmd(&["GET", key]),
            err(&format!("MOVED {slot} 127.0.0.1:{leader_port}")),
            "GET {key} (shard {}) on a topology-aware connection to port {other}",
            shard_of(&ring(), key)
        );
        assert_eq!(aware.cmd(&["ASKING"]), ok());
        // READONLY: this node replicates the shard (3 replicas on 3 nodes), so it serves the
        // read itself (possibly stale: poll); READWRITE restores the redirection.
        assert_eq!(aware.cmd(&["READONLY"]), ok());
        assert!(
            eventually(Duration::from_secs(5), || aware.cmd(&["GET", key])
                == bulk("v")),
            "READONLY GET {key} on port {other}: {:?}",
            aware.cmd(&["GET", key])
        );
        assert_eq!(aware.cmd(&["READWRITE"]), ok());
        assert!(matches!(aware.cmd(&["GET", key]), Frame::Error(e) if e.starts_with("MOVED ")));
        // Keys the node leads are served on that connection; cross-slot multi-key commands
        // are refused...
        let mine = &own[&node.id][0];
        assert_eq!(aware.cmd(&["SET", mine, "w"]), ok());
        assert_eq!(aware.cmd(&["GET", mine]), bulk("w"));
        assert_eq!(
            aware.cmd(&["MSET", "cross:a", "1", "cross:b", "2"]),
            err(CROSSSLOT)
        );
        // ...while the plain connection splits the same MSET per shard.
        assert_eq!(plain.cmd(&["MSET", "cross:a", "1", "cross:b", "2"]), ok());
    }
}

/// Redirect mode: plain redis-cli shows the MOVED, redis-cli -c follows it; multi-key
/// commands need one slot.
fn redis_cli_follows_moved_and_sees_crossslot(cluster: &mut Cluster) {
    let leaders = settled_leaders(cluster, SETTLE_TIMEOUT, Duration::ZERO);
    let keys = keys_led_by(cluster, &leaders, "cli-redirect", 1);
    for (leader, keys) in &keys {
        let leader_port = node_by_id(cluster, *leader).port();
        let other = other_port(cluster, &[leader_port], 0);
        let key = &keys[0];
        let slot = key_slot(key.as_bytes());
        let (_, out) = cli(other, false, &["GET", key]);
        assert!(
            out.contains(&format!("MOVED {slot} 127.0.0.1:{leader_port}")),
            "plain redis-cli GET {key} via port {other} (leader on {leader_port}): {out}"
        );
        assert_eq!(cli_c(other, &["SET", key, "followed"]), "OK");
        assert_eq!(cli_c(leader_port, &["GET", key]), "followed");
    }
    let port = cluster.nodes[0].port();
    assert_eq!(cli_c(port, &["MSET", "{t}a", "1", "{t}b", "2"]), "OK");
    assert_eq!(cli_c(port, &["MGET", "{t}a", "{t}b"]), "1\n2");
    for args in [
        &["MSET", "cross:a", "1", "cross:b", "2"][..],
        &["MGET", "cross:a", "cross:b"][..],
        &["DEL", "cross:a", "cross:b"][..],
    ] {
        let (_, out) = cli(port, true, args);
        assert!(out.contains(CROSSSLOT), "redis-cli -c {args:?}: {out}");
    }
}

/// redis-benchmark --cluster reads CLUSTER NODES and sends each master keys of its own slots
/// (hash tags): it must report the three nodes as masters, SET and GET figures, and no error.
fn redis_benchmark_cluster_runs_without_errors(cluster: &Cluster, mode: &str, pipeline: &str) {
    let ports: BTreeSet<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port()))
        .collect();
    let t = Instant::now();
    let args: Vec<String> = [
        "--cluster",
        "-p",
        &cluster.nodes[0].port().to_string(),
        "-t",
        "set,get",
        "-n",
        "20000",
        "-P",
        pipeline,
        "-q",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = run("redis-benchmark", &args, "", Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{stdout}\n{stderr}");
    eprintln!(
        "redis-benchmark --cluster -n 20000 -P {pipeline} ({mode} mode, took {:?}):\n{}",
        t.elapsed(),
        all.lines()
            .filter(|l| !l.trim().is_empty() && !l.contains("rps="))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(out.status.success(), "redis-benchmark failed:\n{all}");
    assert!(
        stdout.contains("Cluster has 3 master nodes"),
        "masters not reported:\n{all}"
    );
    let masters: BTreeSet<String> = stdout
        .lines()
        .filter(|l| l.starts_with("Master "))
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect();
    assert_eq!(masters, ports, "the masters it found:\n{all}");
    for test in ["SET", "GET"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("{test}: ")) && l.contains("requests per second")),
            "no result for {test}:\n{all}"
        );
    }
    let bad: Vec<&str> = all
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("error") || l.contains("moved") || l.contains("crossslot")
        })
        .collect();
    assert!(bad.is_empty(), "error lines: {bad:?}\n{all}");
}

/// redis-py through a leader change (see the script's --failover): the node it routes a key to
/// is killed (redis-py reconnects and refreshes), then comes back and takes the shard back, so
/// redis-py's cache is stale and the node it asks answers MOVED, which it must follow.
fn redis_py_follows_moved_after_a_leader_change(cluster: &mut Cluster) {
    let ring = ring();
    let mut killed: Option<u64> = None;
    run_redis_py(
        cluster,
        &["--mode", "redirect", "--failover"],
        Duration::from_secs(120),
        |cluster, line| {
            let f = pause_fields(line);
            let key = &f["key"];
            let shard = shard_of(&ring, key);
            let slot: u16 = f["slot"].parse().expect("slot");
            assert_eq!(slot, key_slot(key.as_bytes()), "redis-py's slot of {key}");
            let port: u16 = f["node"].rsplit(':').next().unwrap().parse().unwrap();
            let leader = cluster.leader_of(shard, Duration::from_secs(10));
            let leader_port = node_by_id(cluster, leader).port();
            assert_eq!(port, leader_port, "redis-py routes {key} (shard {shard})");
            if line.starts_with("kill ") {
                let t = Instant::now();
                cluster.by_id(leader).kill();
                killed = Some(leader);
                // Every shard the node led gets a new leader, and every live node's CLUSTER
                // SLOTS names it.
                let ok = eventually(Duration::from_secs(20), || {
                    let running: Vec<&ClusterNode> = cluster
                        .nodes
                        .iter_mut()
                        .filter_map(|n| n.is_running().then_some(&*n))
                        .collect();
                    running.iter().all(|n| {
                        cluster_slots(n)
                            .is_ok_and(|s| !s.is_empty() && s.iter().all(|r| r.master != port))
                    })
                });
                assert!(
                    ok,
                    "the killed node's slots were not taken over within 20 s"
                );
                let new = cluster.leader_of(shard, Duration::from_secs(10));
                eprintln!(
                    "killed node {leader} (port {port}); shard {shard} now led by node {new}; \
                     its slots moved in {:?}",
                    t.elapsed()
                );
            } else if line.starts_with("restart ") {
                let old = killed.expect("a node was killed");
                let t = Instant::now();
                cluster.by_id(old).restart();
                // Leadership is balanced back: the restarted node leads the shard again and
                // every node's CLUSTER SLOTS says so.
                let deadline = Instant::now() + SETTLE_TIMEOUT;
                loop {
                    let leaders = settled_leaders(cluster, SETTLE_TIMEOUT, STABLE_FOR);
                    if leaders[&shard] == old {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "node {old} did not take shard {shard} back after its restart: \
                         {leaders:?}"
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
                eprintln!(
                    "restarted node {old}; it leads shard {shard} again after {:?}",
                    t.elapsed()
                );
            } else {
                panic!("unexpected pause: {line}");
            }
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Tests: one cluster per mode (starting a cluster is most of a test's time)
// ---------------------------------------------------------------------------------------------

/// The default mode, `--cluster-mode proxy`: redis-cli -c (which never asks for the topology,
/// so nodes forward for it), redis-benchmark --cluster (-P 1; -P 16 runs in redirect mode) and
/// redis-py's RedisCluster (whose pooled connections never ask either).
#[test]
fn cluster_clients_in_proxy_mode() {
    let _serial = serial();
    let started = Instant::now();
    let mut cluster = start("proxy");

    let t = Instant::now();
    redis_cli_c_writes_and_reads_every_nodes_keys(&mut cluster, "cli-proxy");
    proxy_mode_redirects_only_topology_aware_connections(&mut cluster);
    eprintln!("redis-cli and raw checks took {:?}", t.elapsed());

    redis_benchmark_cluster_runs_without_errors(&cluster, "proxy", "1");

    let t = Instant::now();
    run_redis_py(
        &mut cluster,
        &["--mode", "proxy"],
        Duration::from_secs(60),
        |_, line| panic!("unexpected pause: {line}"),
    );
    eprintln!("redis-py took {:?}", t.elapsed());
    eprintln!("test took {:?}", started.elapsed());
}

/// `--cluster-mode redirect`: every connection gets MOVED. redis-cli -c follows it,
/// redis-benchmark --cluster (-P 16) needs none, redis-py follows it after a leader change.
#[test]
fn cluster_clients_in_redirect_mode() {
    let _serial = serial();
    let started = Instant::now();
    let mut cluster = start("redirect");

    let t = Instant::now();
    redis_cli_follows_moved_and_sees_crossslot(&mut cluster);
    redis_cli_c_writes_and_reads_every_nodes_keys(&mut cluster, "cli-redirect");
    eprintln!("redis-cli checks took {:?}", t.elapsed());

    redis_benchmark_cluster_runs_without_errors(&cluster, "redirect", "16");

    let t = Instant::now();
    redis_py_follows_moved_after_a_leader_change(&mut cluster);
    eprintln!("redis-py with a leader change took {:?}", t.elapsed());
    eprintln!("test took {:?}", started.elapsed());
}
