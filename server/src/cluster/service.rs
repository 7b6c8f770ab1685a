//! What a node does with the requests its peers send it: Raft RPCs for its groups, client
//! commands forwarded to it as a shard leader, and join requests.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shoal_protocol::{Frame, Version};

use super::meta::{encode, node_key, NodeRecord, Topology, CLUSTER_KEY, NEXT_NODE_ID_KEY};
use crate::commands::Session;
use crate::node::Node;
use crate::pipeline::{Mode, Pipeline};
use crate::raft::network::{RaftRequest, RaftResponse};
use crate::rpc::{
    ForwardItem, GroupId, JoinReply, JoinRequest, PeerRequest, PeerResponse, META_GROUP,
};
use crate::store::now_ms;

/// Answers one peer request addressed to `group` (Raft RPCs only use the group).
pub async fn handle(node: Arc<Node>, group: GroupId, request: PeerRequest) -> PeerResponse {
    match request {
        // A stopping node hands its leaderships over and must not be given one back (another
        // node's leader balancing does not know it is stopping).
        PeerRequest::Raft(RaftRequest::TransferLeader(_)) if node.shutdown.is_cancelled() => {
            PeerResponse::Raft(RaftResponse::TransferLeader(Err(
                "this node is shutting down".into(),
            )))
        }
        PeerRequest::Raft(rpc) => {
            if node.replica(group).is_none() && may_create_replica(&node, group, &rpc) {
                if let Err(e) = node.ensure_group(group).await {
                    tracing::error!(group, error = %e, "cannot create replica");
                }
            }
            PeerResponse::Raft(node.router.handle(group, rpc).await)
        }
        PeerRequest::Forward(items) => {
            // A stopping node finishes these before its groups stop (see `drain`).
            let _running = node.drain.peer_work();
            // Replies go back as frames; the origin encodes them for its client's protocol.
            let mut session = Session::peer(Version::Resp3);
            // A batch comes from one origin: all its items are counted, or none.
            session.counted = items.first().is_none_or(|i| i.counted);
            let mut pipeline = Pipeline::new(node.clone(), Mode::Peer);
            for item in items {
                pipeline.push_forwarded(&mut session, item).await;
            }
            PeerResponse::Forward(pipeline.finish_forwarded(&mut session).await)
        }
        PeerRequest::Join(request) => PeerResponse::Join(join(&node, request).await),
        PeerRequest::Tx(request) => {
            let _running = node.drain.peer_work();
            PeerResponse::Tx(crate::commands::transaction::serve(&node, request).await)
        }
        PeerRequest::Publish {
            channel,
            message,
            shard,
        } => PeerResponse::Published(node.pubsub.deliver(&channel, &message, shard)),
        PeerRequest::CancelWait { origin, wait } => {
            node.forwarded_waits.cancel((origin, wait));
            PeerResponse::WaitCancelled
        }
    }
}

/// Whether a Raft RPC for a group this node does not host should create an (empty) replica
/// of it. A leader adding this node to a group reaches it with entries or a snapshot before
/// anything else does, so those create one; a vote request never does (an empty replica would
/// grant it), nor does a leader from a term older than the one in which this node found its
/// former replica removed: such a leader has been deposed but may not know it yet.
fn may_create_replica(node: &Node, group: GroupId, rpc: &RaftRequest) -> bool {
    use openraft::vote::RaftLeaderId;
    let vote = match rpc {
        RaftRequest::Append(r) => &r.vote,
        RaftRequest::SnapshotChunk { vote, .. } => vote,
        RaftRequest::Vote(_) | RaftRequest::PreVote(_) | RaftRequest::TransferLeader(_) => {
            return false
        }
    };
    let term = vote.leader_id().term();
    node.is_valid_group(group)
        && node
            .removed_term(group)
            .is_none_or(|removed| term >= removed)
}

/// Runs `args` on `group`'s leader (here or forwarded) and returns the reply: how nodes write
/// the metadata group.
pub async fn run_on(node: &Arc<Node>, group: GroupId, args: Vec<Bytes>) -> Frame {
    let mut session = Session::internal();
    let mut pipeline = Pipeline::new(node.clone(), Mode::Client);
    pipeline
        .push_forwarded(
            &mut session,
            ForwardItem {
                group,
                args,
                counted: false,
                wait: None,
            },
        )
        .await;
    let mut reply = Frame::Null;
    pipeline.finish(&mut session, |f, _| reply = f).await;
    reply
}

/// `SET key value` in group 0.
pub async fn meta_set(node: &Arc<Node>, key: &str, value: Bytes) -> Result<(), String> {
    let args = vec![
        Bytes::from_static(b"SET"),
        Bytes::from(key.to_owned()),
        value,
    ];
    match run_on(node, META_GROUP, args).await {
        reply if reply == Frame::ok() => Ok(()),
        other => Err(format!("metadata write of {key} failed: {other:?}")),
    }
}

/// Admits a node: on the metadata leader, gives it the next id and records it; elsewhere, asks
/// the leader. A repeated request (same join token) gets the same id.
async fn join(node: &Arc<Node>, request: JoinRequest) -> Result<JoinReply, String> {
    let meta = node
        .replica(META_GROUP)
        .ok_or("this node has no metadata replica yet")?;
    if !meta.is_leader() {
        let leader = node
            .leader_of(META_GROUP)
            .filter(|&l| l != node.id)
            .ok_or("the metadata group has no leader yet")?;
        return match node
            .call_peer(leader, PeerRequest::Join(request), Duration::from_secs(5))
            .await
        {
            Ok(PeerResponse::Join(answer)) => answer,
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(e.to_string()),
        };
    }
    let _one_at_a_time = node.join_lock.lock().await;
    meta.read_barrier().await.map_err(|e| format!("{e:?}"))?;
    // The creator's own record and the id counter must exist before an id is handed out (a
    // join can arrive before the reconciler's first pass wrote them).
    ensure_metadata(node, &Topology::read(meta.keyspace(), now_ms())).await?;
    meta.read_barrier().await.map_err(|e| format!("{e:?}"))?;
    let topology = Topology::read(meta.keyspace(), now_ms());
    let params = topology.params.unwrap_or(node.params);
    let reply = |node_id| JoinReply {
        node_id,
        shards: params.shards,
        replicas: params.replicas,
    };
    if let Some(existing) = topology
        .nodes
        .values()
        .find(|n| n.join_token == request.token)
    {
        return Ok(reply(existing.id));
    }
    let incr = vec![
        Bytes::from_static(b"INCR"),
        Bytes::from_static(NEXT_NODE_ID_KEY.as_bytes()),
    ];
    let taken = topology.nodes.keys().max().copied().unwrap_or(0);
    let id = match run_on(node, META_GROUP, incr).await {
        Frame::Integer(id) if id as u64 > taken => id as u64,
        other => {
            return Err(format!(
                "cannot allocate a node id (taken up to {taken}): {other:?}"
            ))
        }
    };
    let record = NodeRecord {
        id,
        client_addr: request.client_addr,
        peer_addr: request.peer_addr,
        join_token: request.token,
        // The join request predates TLS ports; the node publishes its own (`publish_tls_port`).
        tls_port: None,
    };
    meta_set(node, &node_key(id), encode(&record)).await?;
    tracing::info!(node = id, peer = %record.peer_addr, "admitted a node");
    node.refresh_topology();
    Ok(reply(id))
}

/// On the metadata leader: makes sure group 0 holds the cluster parameters, this node's record
/// and the id counter (the node that created the cluster writes them here, after its group 0
/// has a leader; a crash in between is repaired the same way).
pub async fn ensure_metadata(node: &Arc<Node>, topology: &Topology) -> Result<(), String> {
    if topology.params.is_none() {
        meta_set(node, CLUSTER_KEY, encode(&node.params)).await?;
    }
    if !topology.nodes.contains_key(&node.id) {
        let record = NodeRecord {
            id: node.id,
            client_addr: node.info.client_addr.clone(),
            peer_addr: node.info.peer_addr.clone(),
            join_token: String::new(),
            tls_port: node.tls_port,
        };
        meta_set(node, &node_key(node.id), encode(&record)).await?;
        let highest = topology
            .nodes
            .keys()
            .max()
            .copied()
            .unwrap_or(0)
            .max(node.id);
        let counter = node
            .replica(META_GROUP)
            .and_then(|m| {
                m.keyspace()
                    .read_key_slot(NEXT_NODE_ID_KEY.as_bytes())
                    .get(NEXT_NODE_ID_KEY.as_bytes(), now_ms())
                    .map(|e| e.value().to_vec())
            })
            .is_some();
        if !counter {
            meta_set(node, NEXT_NODE_ID_KEY, Bytes::from(highest.to_string())).await?;
        }
    }
    Ok(())
}

/// Makes this node's record in group 0 carry its current TLS port (a joined node's record is
/// written without it, and a restart may change `--tls-port`), so every node can send TLS
/// clients to it. Writes only when the record differs.
pub async fn publish_tls_port(node: &Arc<Node>, topology: &Topology) -> Result<(), String> {
    let Some(record) = topology.nodes.get(&node.id) else {
        return Ok(());
    };
    if record.tls_port == node.tls_port {
        return Ok(());
    }
    let record = NodeRecord {
        tls_port: node.tls_port,
        ..record.clone()
    };
    meta_set(node, &node_key(node.id), encode(&record)).await?;
    node.refresh_topology();
    Ok(())
}
