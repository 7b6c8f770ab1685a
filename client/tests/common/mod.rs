//! Test harness: real `shoal-server` processes on loopback (OS-chosen ports), a tiny blocking
//! RESP helper to watch them, and a scripted RESP server for the replies shoal never sends
//! (`ASK`, "unknown command CLUSTER").
//!
//! Processes are killed and their folders removed when a [`Cluster`] is dropped, panics
//! included.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use shoal_protocol::{decode_frame, encode, encode_command, Frame, Limits, Version};

/// The server binary: `SHOAL_SERVER_BIN` (scripts/test.sh exports it), else the workspace's
/// release build.
pub fn server_binary() -> PathBuf {
    let path = std::env::var_os("SHOAL_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/shoal-server")
        });
    assert!(
        path.is_file(),
        "shoal-server not found at {}: run `cargo build --release -p shoal-server` \
         (or set SHOAL_SERVER_BIN)",
        path.display()
    );
    path
}

/// Polls `check` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One command over a fresh blocking connection; `None` if the node does not answer.
pub fn raw(addr: SocketAddr, args: &[&str]) -> Option<Frame> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut out = BytesMut::new();
    encode_command(args, &mut out);
    stream.write_all(&out).ok()?;
    let mut buf = BytesMut::new();
    loop {
        if let Ok(Some(frame)) = decode_frame(&mut buf, &Limits::default()) {
            return Some(frame);
        }
        let mut chunk = [0u8; 64 * 1024];
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The text of a bulk reply (INFO, CLUSTER INFO).
pub fn raw_text(addr: SocketAddr, args: &[&str]) -> Option<String> {
    match raw(addr, args)? {
        Frame::Bulk(b) | Frame::Verbatim { text: b, .. } => {
            Some(String::from_utf8_lossy(&b).into_owned())
        }
        _ => None,
    }
}

/// `name:value` lines.
pub fn fields(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// One node process, with the ports and data dir it keeps across restarts.
pub struct Node {
    pub addr: SocketAddr,
    pub peer_port: u16,
    /// The HTTP endpoint (`/readyz`, `/metrics`) when the flags include `--http-port`; with
    /// `--http-port 0` it changes on every start.
    pub http_addr: Option<SocketAddr>,
    data_dir: PathBuf,
    log_path: PathBuf,
    flags: Vec<String>,
    child: Option<Child>,
}

impl Node {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again with the same ports and data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "node {} is running", self.addr);
        let mut args = vec![
            "--port".to_owned(),
            self.addr.port().to_string(),
            "--cluster-port".to_owned(),
            self.peer_port.to_string(),
        ];
        args.extend(self.flags.iter().cloned());
        let (child, addr, http_addr) = spawn(&self.data_dir, &self.log_path, &args);
        assert_eq!(addr, self.addr, "restarted node listens elsewhere");
        self.child = Some(child);
        self.http_addr = http_addr;
    }

    /// SIGTERM (a graceful stop: the node hands its leaderships over first), then waits up to
    /// `timeout` for the process to exit; panics (after a SIGKILL) if it does not.
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
                    self.addr
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET path` on the node's HTTP endpoint: status code and body, `None` if unreachable.
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        let addr = self.http_addr?;
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split(' ').nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        Some((status, body.to_owned()))
    }

    /// `/readyz` answers 200: every shard replicated here has a leader and this replica has
    /// applied what it knows is committed.
    pub fn is_ready(&self) -> bool {
        self.http_get("/readyz")
            .is_some_and(|(status, _)| status == 200)
    }

    fn stderr_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `shoal-server` and waits (30 s at most) for its ready line; returns the process, its
/// client address and its HTTP address (if it serves HTTP).
fn spawn(
    data_dir: &Path,
    log_path: &Path,
    args: &[String],
) -> (Child, SocketAddr, Option<SocketAddr>) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("open node log");
    let mut child = Command::new(server_binary())
        .args(["--bind", "127.0.0.1", "--log-level", "warn", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn shoal-server");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    // Keeps draining stdout after the ready line, so the node never blocks on it.
    std::thread::spawn(move || {
        // The HTTP line comes before the ready line.
        let mut http = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("shoal http on ") {
                http = rest.trim().parse::<SocketAddr>().ok();
            }
            if let Some(rest) = line.strip_prefix("shoal ready on ") {
                let _ = tx.send((rest.split(';').next().unwrap_or_default().to_owned(), http));
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok((addr, http)) => (
            child,
            addr.parse().expect("address in the ready line"),
            http,
        ),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            panic!("shoal-server did not become ready within 30 s; stderr:\n{log}");
        }
    }
}

/// A cluster of real `shoal-server` processes under one temporary folder.
pub struct Cluster {
    root: PathBuf,
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Starts `n` nodes (node 1 creates the cluster, the others join it) with `flags`, and
    /// waits until every node says `cluster_state:ok` and knows all `n`.
    pub fn start(n: usize, flags: &[&str]) -> Cluster {
        let root = std::env::temp_dir().join(format!(
            "shoal-client-test-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&root).expect("create cluster folder");
        let mut cluster = Cluster {
            root,
            nodes: Vec::new(),
        };
        for i in 0..n {
            let data_dir = cluster.root.join(format!("node{}", i + 1));
            std::fs::create_dir_all(&data_dir).expect("create data dir");
            let log_path = cluster.root.join(format!("node{}.stderr", i + 1));
            let mut args: Vec<String> = vec!["--port".into(), "0".into()];
            args.extend(["--cluster-port".into(), "0".into()]);
            if let Some(first) = cluster.nodes.first() {
                args.extend(["--join".into(), format!("127.0.0.1:{}", first.peer_port)]);
            }
            args.extend(flags.iter().map(|s| s.to_string()));
            let (child, addr, http_addr) = spawn(&data_dir, &log_path, &args);
            let peer_port = peer_port_of(addr);
            cluster.nodes.push(Node {
                addr,
                peer_port,
                http_addr,
                data_dir,
                log_path,
                flags: flags.iter().map(|s| s.to_string()).collect(),
                child: Some(child),
            });
            // Join one at a time, as scripts/cluster.sh does.
            let joined = eventually(Duration::from_secs(30), || {
                let info = raw_text(addr, &["CLUSTER", "INFO"]).unwrap_or_default();
                fields(&info)
                    .get("cluster_known_nodes")
                    .and_then(|v| v.parse::<usize>().ok())
                    .is_some_and(|known| known > i)
            });
            assert!(joined, "node {} did not join the cluster", i + 1);
        }
        cluster.wait_ok(Duration::from_secs(60));
        cluster
    }

    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.to_string()).collect()
    }

    /// Waits until every running node says `cluster_state:ok` and knows every node.
    pub fn wait_ok(&self, timeout: Duration) {
        let n = self.nodes.len().to_string();
        let ok = eventually(timeout, || {
            self.nodes.iter().filter(|n| n.is_running()).all(|node| {
                let info = fields(&raw_text(node.addr, &["CLUSTER", "INFO"]).unwrap_or_default());
                info.get("cluster_state").map(String::as_str) == Some("ok")
                    && info.get("cluster_known_nodes") == Some(&n)
            })
        });
        if !ok {
            let logs: Vec<String> = self
                .nodes
                .iter()
                .map(|n| format!("--- {} ---\n{}", n.addr, n.stderr_tail()))
                .collect();
            panic!("cluster not ok after {timeout:?}\n{}", logs.join("\n"));
        }
    }

    /// The node leading `slot`, as a running node's `CLUSTER SLOTS` says.
    pub fn leader_of_slot(&self, slot: u16) -> usize {
        let node = self
            .nodes
            .iter()
            .find(|n| n.is_running())
            .expect("a node runs");
        let Some(Frame::Array(ranges)) = raw(node.addr, &["CLUSTER", "SLOTS"]) else {
            panic!("CLUSTER SLOTS failed");
        };
        for range in ranges {
            let Frame::Array(f) = range else { continue };
            let (Some(Frame::Integer(start)), Some(Frame::Integer(end))) = (f.first(), f.get(1))
            else {
                continue;
            };
            if (*start..=*end).contains(&(slot as i64)) {
                let Some(Frame::Array(leader)) = f.get(2) else {
                    break;
                };
                let Some(Frame::Integer(port)) = leader.get(1) else {
                    break;
                };
                return self
                    .nodes
                    .iter()
                    .position(|n| i64::from(n.addr.port()) == *port)
                    .expect("the leader is one of ours");
            }
        }
        panic!("slot {slot} is not in CLUSTER SLOTS");
    }

    /// `shard → keys` from a node's `INFO digest` (the node hosts every shard when
    /// `--replicas` is the node count).
    pub fn keys_per_shard(&self, node: usize) -> HashMap<u32, u64> {
        let text = raw_text(self.nodes[node].addr, &["INFO", "digest"]).unwrap_or_default();
        fields(&text)
            .into_iter()
            .filter_map(|(k, v)| {
                let shard = k.strip_prefix("shard_")?.parse().ok()?;
                let keys = v
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("keys="))?
                    .parse()
                    .ok()?;
                Some((shard, keys))
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        if std::thread::panicking() {
            for node in &self.nodes {
                eprintln!(
                    "--- node {} stderr (tail) ---\n{}",
                    node.addr,
                    node.stderr_tail()
                );
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A node's peer port, from its `INFO raft` (`raft_node_<id>:...,peer=host:port`).
fn peer_port_of(addr: SocketAddr) -> u16 {
    let mut port = None;
    let found = eventually(Duration::from_secs(20), || {
        let info = fields(&raw_text(addr, &["INFO", "raft"]).unwrap_or_default());
        let Some(id) = info.get("raft_node_id") else {
            return false;
        };
        port = info.get(&format!("raft_node_{id}")).and_then(|v| {
            v.split(',')
                .find_map(|kv| kv.strip_prefix("peer="))
                .and_then(|p| p.parse::<SocketAddr>().ok())
                .map(|p| p.port())
        });
        port.is_some()
    });
    assert!(found, "node {addr} never listed its peer port in INFO raft");
    port.expect("found")
}

/// One cluster shared by the tests of a test binary that run at the same time; it stops
/// when the last of them drops its handle (tests that run later start a new one).
pub fn shared_cluster(flags: &'static [&'static str]) -> Arc<Cluster> {
    static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(cluster) = shared.upgrade() {
        return cluster;
    }
    let cluster = Arc::new(Cluster::start(3, flags));
    *shared = Arc::downgrade(&cluster);
    cluster
}

/// A RESP server on loopback that answers each command with what `script` returns (`None`:
/// no answer at all, like a hung node); for the replies shoal never sends. Runs on the test's
/// tokio runtime.
pub async fn scripted_server<F>(script: F) -> SocketAddr
where
    F: Fn(&[Bytes]) -> Option<Frame> + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let script = script.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = BytesMut::new();
                loop {
                    let mut out = BytesMut::new();
                    while let Ok(Some(Frame::Array(items))) =
                        decode_frame(&mut buf, &Limits::default())
                    {
                        let args: Vec<Bytes> = items
                            .into_iter()
                            .filter_map(|f| match f {
                                Frame::Bulk(b) => Some(b),
                                _ => None,
                            })
                            .collect();
                        if let Some(reply) = script(&args) {
                            encode(&reply, Version::Resp2, &mut out);
                        }
                    }
                    if !out.is_empty() && socket.write_all(&out).await.is_err() {
                        return;
                    }
                    match socket.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    addr
}

/// `CLUSTER SLOTS` claiming every slot for `addr`.
pub fn all_slots_at(addr: SocketAddr) -> Frame {
    Frame::Array(vec![Frame::Array(vec![
        Frame::Integer(0),
        Frame::Integer(16383),
        Frame::Array(vec![
            Frame::bulk(addr.ip().to_string()),
            Frame::Integer(addr.port() as i64),
            Frame::bulk("scripted"),
        ]),
    ])])
}

/// The name of a command, upper-cased.
pub fn name(args: &[Bytes]) -> String {
    args.first()
        .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
        .unwrap_or_default()
}

/// A multi-threaded runtime for one test (cluster set-up and teardown stay outside it, as
/// plain blocking code).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}
