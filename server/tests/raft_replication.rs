//! The Raft plumbing end to end, in one process but over real TCP and real files: durable log
//! store, state-machine adapter with snapshots, peer transport and network adapter, for one
//! shard group on three nodes. (Cluster tests with real processes come with the node wiring.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::{Config, SnapshotPolicy};
use shoal_protocol::Frame;
use shoal_server::raft::log_store::{FsyncPolicy, LogStore};
use shoal_server::raft::network::{GroupNetworkFactory, PeerPool, RaftRouter};
use shoal_server::raft::peer::serve_peers;
use shoal_server::raft::state_machine::ShardStateMachine;
use shoal_server::raft::types::{NodeId, NodeInfo, TypeConfig};
use shoal_server::rpc::{PeerRequest, PeerResponse};
use shoal_server::store::{Condition, Expiry, Keyspace, Proposal, StateMachine, WriteOp};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const GROUP: u64 = 1;
type Raft = openraft::Raft<TypeConfig, ShardStateMachine>;

struct TestNode {
    id: NodeId,
    raft: Raft,
    keyspace: Arc<Keyspace>,
    stop: CancellationToken,
    info: NodeInfo,
}

fn config(snapshot_every: u64) -> Arc<Config> {
    Arc::new(
        Config {
            heartbeat_interval: 50,
            election_timeout_min: 300,
            election_timeout_max: 600,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_every),
            max_in_snapshot_log_to_keep: 0,
            ..Default::default()
        }
        .validate()
        .expect("valid raft config"),
    )
}

/// Starts node `id` on `addr` (an already reserved loopback port) with state under `dir`.
async fn start(id: NodeId, dir: &Path, addr: &str, snapshot_every: u64) -> TestNode {
    let listener = TcpListener::bind(addr).await.expect("bind peer port");
    let stop = CancellationToken::new();
    let router = Arc::new(RaftRouter::<ShardStateMachine>::new(dir.join("incoming")));
    let r = router.clone();
    tokio::spawn(serve_peers(
        listener,
        Arc::default(),
        move |group, req: PeerRequest| {
            let r = r.clone();
            async move {
                match req {
                    PeerRequest::Raft(req) => PeerResponse::Raft(r.handle(group, req).await),
                    other => panic!("this test sends only Raft traffic, got {other:?}"),
                }
            }
        },
        stop.clone(),
    ));
    let log = LogStore::open(&dir.join("log"), FsyncPolicy::Always).expect("open log");
    let keyspace = Arc::new(Keyspace::new());
    let ids = shoal_server::cluster::events::GroupIds {
        node: id,
        group: GROUP,
    };
    let sm = ShardStateMachine::open(
        &dir.join("snapshots"),
        StateMachine::new(keyspace.clone()),
        ids,
    )
    .expect("open state machine");
    let network = GroupNetworkFactory::<tokio::fs::File>::new(GROUP, PeerPool::default());
    let raft = Raft::new(id, config(snapshot_every), network, log, sm)
        .await
        .expect("start raft");
    router.add(GROUP, raft.clone());
    TestNode {
        id,
        raft,
        keyspace,
        stop,
        info: NodeInfo {
            client_addr: String::new(),
            peer_addr: addr.to_owned(),
        },
    }
}

async fn stop(node: TestNode) {
    node.stop.cancel();
    node.raft.shutdown().await.expect("shutdown");
}

async fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().to_string()
}

fn set(key: &str, value: &str) -> Proposal {
    Proposal {
        now_ms: 1,
        op: WriteOp::Set {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            condition: Condition::Always,
            expiry: Expiry::Clear,
            get: false,
        },
    }
}

fn value_of(ks: &Keyspace, key: &str) -> Option<Vec<u8>> {
    ks.read_key_slot(key.as_bytes())
        .get(key.as_bytes(), 1)
        .map(|e| e.value().to_vec())
}

async fn leader_of(nodes: &[&TestNode]) -> NodeId {
    let m = nodes[0]
        .raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .expect("a leader is elected");
    m.current_leader.unwrap()
}

/// Writes through the leader, retrying once leadership settles; returns the reply.
async fn write(nodes: &[&TestNode], proposal: Proposal) -> Frame {
    for _ in 0..50 {
        let leader = leader_of(nodes).await;
        if let Some(node) = nodes.iter().find(|n| n.id == leader) {
            if let Ok(resp) = node.raft.client_write(proposal.clone()).await {
                return resp.data;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no leader accepted the write");
}

/// The last log index `raft` holds now.
async fn last_index(raft: &Raft) -> u64 {
    let m = raft
        .wait(Some(Duration::from_secs(1)))
        .metrics(|_| true, "now")
        .await
        .expect("metrics");
    m.last_log_index.expect("some log")
}

async fn wait_applied(node: &TestNode, index: u64) {
    // Generous: a snapshot streamed to a new learner on a loaded 2-core machine can take
    // longer than 10 s; a healthy run takes well under one.
    node.raft
        .wait(Some(Duration::from_secs(30)))
        .applied_index_at_least(Some(index), "caught up")
        .await
        .expect("node catches up");
}

fn dirs(root: &Path) -> Vec<PathBuf> {
    (1..=4).map(|i| root.join(format!("node{i}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_writes_replicate_survive_leader_loss_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dirs(tmp.path());
    let addrs = [free_addr().await, free_addr().await, free_addr().await];
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(start(i as u64 + 1, &d[i], &addrs[i], 10_000).await);
    }
    let members: BTreeMap<NodeId, NodeInfo> =
        nodes.iter().map(|n| (n.id, n.info.clone())).collect();
    nodes[0].raft.initialize(members).await.expect("initialize");

    let refs: Vec<&TestNode> = nodes.iter().collect();
    for i in 0..200 {
        assert_eq!(
            write(&refs, set(&format!("k{i}"), &format!("v{i}"))).await,
            Frame::ok()
        );
    }
    let last = last_index(&nodes[0].raft).await;
    for n in &nodes {
        wait_applied(n, last).await;
        assert_eq!(n.keyspace.len(), 200, "node {} has every write", n.id);
        assert_eq!(value_of(&n.keyspace, "k199").as_deref(), Some(&b"v199"[..]));
    }

    // Lose the leader: the other two elect a new one and keep every acknowledged write.
    let leader = leader_of(&refs).await;
    let pos = nodes.iter().position(|n| n.id == leader).unwrap();
    let old = nodes.remove(pos);
    stop(old).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let m = nodes[0]
        .raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.current_leader.is_some_and(|l| l != leader),
            "a new leader",
        )
        .await
        .expect("the survivors elect a new leader");
    assert!(nodes.iter().any(|n| Some(n.id) == m.current_leader));
    assert_eq!(write(&refs, set("after", "failover")).await, Frame::ok());
    let leader_now = nodes
        .iter()
        .find(|n| m.current_leader == Some(n.id))
        .unwrap();
    let last = last_index(&leader_now.raft).await;
    for n in &nodes {
        wait_applied(n, last).await;
        assert_eq!(n.keyspace.len(), 201, "node {} after failover", n.id);
    }

    // Stop everything and restart from disk (appendfsync always): nothing acknowledged is lost.
    for n in nodes.drain(..) {
        stop(n).await;
    }
    for i in 0..3 {
        nodes.push(start(i as u64 + 1, &d[i], &addrs[i], 10_000).await);
    }
    let refs: Vec<&TestNode> = nodes.iter().collect();
    assert_eq!(write(&refs, set("after", "restart")).await, Frame::ok());
    let last = {
        let leader = leader_of(&refs).await;
        let l = nodes.iter().find(|n| n.id == leader).unwrap();
        last_index(&l.raft).await
    };
    for n in &nodes {
        wait_applied(n, last).await;
        assert_eq!(n.keyspace.len(), 201, "node {} after restart", n.id);
        assert_eq!(value_of(&n.keyspace, "k0").as_deref(), Some(&b"v0"[..]));
        assert_eq!(
            value_of(&n.keyspace, "after").as_deref(),
            Some(&b"restart"[..])
        );
    }
    for n in nodes {
        stop(n).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_replica_is_seeded_by_a_streamed_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dirs(tmp.path());
    let addrs = [free_addr().await, free_addr().await];
    // Snapshot every 100 entries and keep no log behind it, so a newcomer cannot be caught up
    // from the log alone and must receive the snapshot over the network.
    let first = start(1, &d[0], &addrs[0], 100).await;
    let members: BTreeMap<NodeId, NodeInfo> = [(1, first.info.clone())].into();
    first.raft.initialize(members).await.unwrap();
    let big = "x".repeat(3000);
    for i in 0..800 {
        // ~2.4 MB of values: the snapshot needs several chunks.
        assert_eq!(
            write(&[&first], set(&format!("key:{i}"), &big)).await,
            Frame::ok()
        );
    }
    first
        .raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= 700),
            "snapshot built",
        )
        .await
        .expect("a snapshot is built");

    let second = start(2, &d[1], &addrs[1], 100).await;
    first
        .raft
        .add_learner(2, second.info.clone(), true)
        .await
        .expect("learner added and caught up");
    let last = last_index(&first.raft).await;
    wait_applied(&second, last).await;
    assert_eq!(second.keyspace.len(), 800);
    for i in [0, 399, 799] {
        let key = format!("key:{i}");
        assert_eq!(
            value_of(&second.keyspace, &key),
            value_of(&first.keyspace, &key)
        );
    }
    stop(second).await;
    stop(first).await;
}
