//! Elastic membership with real processes: a node joins, is drained, is killed and left dead,
//! and the metadata leader restarts in the middle of a move — each under a client writing
//! and reading, with every acknowledged write checked afterwards. Every wait is a poll with a
//! deadline.

mod common;
use common::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shoal_protocol::Frame;

/// One cluster at a time: four debug-build processes already load a small machine.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const SHARDS: usize = 8;
const REPLICAS: usize = 3;
/// How long rebalancing may take (debug builds, a loaded 2-core machine).
const BALANCE_TIMEOUT: Duration = Duration::from_secs(90);

fn flags() -> Vec<&'static str> {
    vec!["--shards", "8", "--replicas", "3", "--node-down-after", "3"]
}

fn preload(cluster: &Cluster, n: usize) -> Vec<(String, String)> {
    let pairs: Vec<(String, String)> = (0..n)
        .map(|i| (format!("key:{i}"), format!("value:{i}")))
        .collect();
    set_all(&mut cluster.nodes[0].client(), &pairs);
    pairs
}

/// A client that writes fresh keys one by one through one node, and reads preloaded keys,
/// until stopped. It records what was acknowledged and every error reply it saw.
struct Load {
    stop: Arc<AtomicBool>,
    writer: JoinHandle<(Vec<String>, Vec<String>)>,
    reader: JoinHandle<(u64, Vec<String>)>,
}

impl Load {
    fn start(node: &ClusterNode, preloaded: &[(String, String)]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut w = node.client();
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut acked, mut errors) = (Vec::new(), Vec::new());
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w:{i}");
                    match w.cmd(&["SET", &key, &i.to_string()]) {
                        Frame::Simple(s) if s == "OK" => acked.push(key),
                        other => errors.push(format!("SET {key}: {other:?}")),
                    }
                    i += 1;
                }
                (acked, errors)
            })
        };
        let mut r = node.client();
        let sample: Vec<(String, String)> = preloaded.iter().step_by(97).cloned().collect();
        let reader = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut reads, mut errors) = (0u64, Vec::new());
                for (k, v) in sample.iter().cycle() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let got = r.cmd(&["GET", k]);
                    if got != bulk(v) {
                        errors.push(format!("GET {k}: {got:?}"));
                    }
                    reads += 1;
                }
                (reads, errors)
            })
        };
        Load {
            stop,
            writer,
            reader,
        }
    }

    /// Stops the client; asserts it saw no error (but, with `crash`, writes whose outcome is
    /// unknown: a leader killed with the write in flight); returns the acknowledged keys.
    fn finish(self, crash: bool) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        let (acked, mut write_errors) = self.writer.join().expect("writer");
        let (reads, read_errors) = self.reader.join().expect("reader");
        eprintln!(
            "load: {} writes acknowledged, {} errors, {reads} reads",
            acked.len(),
            write_errors.len()
        );
        if crash {
            write_errors.retain(|e| !e.contains("outcome is unknown"));
        }
        assert!(write_errors.is_empty(), "write errors: {write_errors:?}");
        assert!(read_errors.is_empty(), "read errors: {read_errors:?}");
        assert!(!acked.is_empty(), "no write went through");
        acked
    }
}

/// Every acknowledged write is there, read through `node`.
fn assert_acked(node: &ClusterNode, acked: &[String]) {
    let pairs: Vec<(String, String)> = acked
        .iter()
        .map(|k| (k.clone(), k.trim_start_matches("w:").to_owned()))
        .collect();
    assert_all(&mut node.client(), &pairs, &format!("node {}", node.id));
}

/// Shards each running node hosts as a voter and leads, by the leaders' memberships.
fn shares(cluster: &mut Cluster) -> std::collections::BTreeMap<u64, (usize, usize)> {
    let mut shares = std::collections::BTreeMap::new();
    let running = cluster.running();
    for node in &running {
        shares.insert(node.id, (0, 0));
    }
    for node in running {
        for (_, r) in node.raft() {
            if r.role == "leader" && r.leader == node.id {
                shares.entry(node.id).or_insert((0, 0)).1 += 1;
                for v in r.voter_ids {
                    shares.entry(v).or_insert((0, 0)).0 += 1;
                }
            }
        }
    }
    shares
}

/// A 4th node joins a loaded 3-node cluster under a client's writes and reads: it gets its
/// share of replicas and leadership, nothing is lost, and the client sees no error.
#[test]
fn a_joining_node_gets_its_share_with_no_write_lost() {
    let _serial = serial();
    let started = Instant::now();
    let mut cluster = Cluster::start(3, &flags());
    let pairs = preload(&cluster, 50_000);
    eprintln!("loaded 50000 keys after {:?}", started.elapsed());
    let load = Load::start(&cluster.nodes[0], &pairs);
    let i = cluster.join(&flags());
    let took = cluster.wait_balanced(REPLICAS, BALANCE_TIMEOUT);
    eprintln!(
        "node {} joined; balanced after {took:?}",
        cluster.nodes[i].id
    );
    let acked = load.finish(false);
    let shares = shares(&mut cluster);
    eprintln!("replicas and leaders per node: {shares:?}");
    let new = cluster.nodes[i].id;
    // 8 shards x 3 replicas over 4 nodes: 6 each, at most ceil(1.25 * 6) = 8; leaders 2 each.
    let (replicas, led) = shares[&new];
    assert!((4..=8).contains(&replicas), "new node holds {replicas}");
    assert!((1..=3).contains(&led), "new node leads {led}");
    for (id, (replicas, _)) in &shares {
        assert!(*replicas <= 8, "node {id} holds {replicas}");
    }
    cluster.wait_converged(BALANCE_TIMEOUT);
    for node in &cluster.nodes {
        assert_all(&mut node.client(), &pairs, &format!("node {}", node.id));
        assert_acked(node, &acked);
    }
    let moves: u64 = cluster.nodes[0].cluster_info()["shoal_moves_done"]
        .parse()
        .expect("moves done");
    assert!(moves > 0, "no move recorded");
    eprintln!("test took {:?}", started.elapsed());
}

/// `CLUSTER FORGET` drains a node: its replicas move away under load, then it exits with
/// status 0 and erases its state; nothing is lost.
#[test]
fn a_drained_node_hands_over_its_replicas_and_exits() {
    let _serial = serial();
    let mut cluster = Cluster::start(4, &flags());
    cluster.wait_balanced(REPLICAS, BALANCE_TIMEOUT);
    let pairs = preload(&cluster, 20_000);
    let load = Load::start(&cluster.nodes[0], &pairs);
    let leaving = cluster.nodes[3].id;
    let forget = cluster.nodes[1]
        .client()
        .cmd(&["CLUSTER", "FORGET", &leaving.to_string()]);
    assert_eq!(forget, ok());
    let status = cluster.nodes[3]
        .wait_exit(BALANCE_TIMEOUT)
        .expect("the drained node exits");
    assert!(status.success(), "drained node exited with {status}");
    assert!(
        !cluster.nodes[3].data_dir.join("node.conf").exists(),
        "the drained node's identity is erased"
    );
    cluster.wait_balanced(REPLICAS, BALANCE_TIMEOUT);
    let acked = load.finish(false);
    let shares = shares(&mut cluster);
    assert!(!shares.contains_key(&leaving), "{shares:?}");
    assert!(
        shares.values().all(|(r, _)| *r == SHARDS),
        "3 nodes, RF 3: every node holds every shard: {shares:?}"
    );
    // It is forgotten: three nodes known.
    assert!(
        eventually(Duration::from_secs(20), || cluster.nodes[0].cluster_info()
            ["cluster_known_nodes"]
            == "3"),
        "{:?}",
        cluster.nodes[0].cluster_info()
    );
    for node in &cluster.nodes[..3] {
        assert_all(&mut node.client(), &pairs, &format!("node {}", node.id));
        assert_acked(node, &acked);
    }
    let unknown = cluster.nodes[0].client().cmd(&["CLUSTER", "FORGET", "99"]);
    assert_eq!(unknown, err("ERR Unknown node 99"));
}

/// A node killed and left dead is marked Down after `--node-down-after`, and every shard gets
/// back to RF live replicas; when it returns it is Up again and gets a share again.
#[test]
fn a_dead_node_is_replaced_and_rejoins_when_it_returns() {
    let _serial = serial();
    let mut cluster = Cluster::start(4, &flags());
    cluster.wait_balanced(REPLICAS, BALANCE_TIMEOUT);
    let pairs = preload(&cluster, 20_000);
    let load = Load::start(&cluster.nodes[0], &pairs);
    let dead = cluster.nodes[3].id;
    cluster.nodes[3].kill();
    let took = cluster.wait_balanced(REPLICAS, BALANCE_TIMEOUT);
    eprintln!("node {dead} killed; every shard back to {REPLICAS} live replicas after {took:?}");
    let info = cluster.nodes[0].cluster_info();
    assert_eq!(info["shoal_nodes_down"], "1", "{info:?}");
    let acked = load.finish(true);
    for node in &cluster.nodes[..3] {
        assert_all(&mut node.client(), &pairs, &format!("node {}", node.id));
        assert_acked(node, &acked);
    }
    // It comes back: Up again, and the rebalancer gives it replicas again.
    cluster.nodes[3].restart();
    assert!(
        eventually(BALANCE_TIMEOUT, || {
            cluster.nodes[0].cluster_info()["shoal_nodes_down"] == "0"
        }),
        "node {dead} never came back up"
    );
    cluster.wait_balanced(REPLICAS, BALANCE_TIMEOUT);
    cluster.wait_converged(BALANCE_TIMEOUT);
    let shares = shares(&mut cluster);
    assert!(
        shares[&dead].0 >= 4,
        "returned node holds {:?}",
        shares[&dead]
    );
    assert_acked(&cluster.nodes[3], &acked);
}

/// The metadata leader is killed while moves are in flight and restarted: the moves recorded in
/// group 0 complete under the next leader.
#[test]
fn moves_survive_a_metadata_leader_restart() {
    let _serial = serial();
    let mut flags = flags();
    flags.extend(["--rebalance-max-moves", "1"]);
    let mut cluster = Cluster::start(3, &flags);
    let pairs = preload(&cluster, 50_000);
    let i = cluster.join(&flags);
    // Catch a move in flight, then kill the metadata leader.
    let mut in_flight = false;
    let caught = eventually(BALANCE_TIMEOUT, || {
        in_flight = cluster.nodes[i].cluster_info()["shoal_moves_in_flight"] != "0";
        in_flight
    });
    assert!(caught, "never saw a move in flight");
    let meta_leader = cluster
        .nodes
        .iter()
        .position(|n| {
            info_fields(&n.client().text(&["INFO", "raft"]))
                .get("raft_group_0")
                .is_some_and(|g| g.contains("role=leader"))
        })
        .expect("a metadata leader");
    let done_before: u64 = cluster.nodes[i].cluster_info()["shoal_moves_done"]
        .parse()
        .expect("moves done");
    cluster.nodes[meta_leader].kill();
    eprintln!(
        "killed metadata leader (node {}) with a move in flight",
        cluster.nodes[meta_leader].id
    );
    cluster.nodes[meta_leader].restart();
    cluster.wait_balanced(REPLICAS, BALANCE_TIMEOUT);
    let done_after: u64 = cluster.nodes[i].cluster_info()["shoal_moves_done"]
        .parse()
        .expect("moves done");
    assert!(done_after > done_before, "{done_before} -> {done_after}");
    cluster.wait_converged(BALANCE_TIMEOUT);
    for node in &cluster.nodes {
        assert_all(&mut node.client(), &pairs, &format!("node {}", node.id));
    }
}
