//! The rebalancer: on the metadata leader, decides which nodes are alive and which shards must
//! move, and records both in group 0.
//!
//! - **Liveness.** Every node is a member (voter or learner) of group 0, so its leader hears
//!   from every node on each heartbeat. A node silent for `--node-down-after` is marked
//!   [`NodeState::Down`]; once it answers again it is `Up`. A node being drained
//!   (`Leaving`) stays so; once it holds no replica it becomes `Left` (it then exits).
//! - **Moves.** The desired placement is [`place`] over the `Up` nodes. A shard whose published
//!   voters differ from it gets a [`MoveRecord`] naming its target voters — at most
//!   `--rebalance-max-moves` at once, shards that lost a replica (on a Down or Leaving node, or
//!   short of the replication factor) first. The shard's leader carries the move out
//!   (`reconcile`); when its published membership equals the target the move is deleted and
//!   counted. A target that stopped being desired (a node went down mid-move) is replaced.
//!
//! Every decision is re-derived each tick from group 0 and Raft metrics, so a new metadata
//! leader simply continues: the moves in flight are in group 0, and it re-learns liveness
//! (a node counts as silent since this leader took over until it answers).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shoal_protocol::Frame;
use std::time::Instant;

use super::meta::{
    encode, move_key, node_key, state_key, MoveRecord, NodeState, Topology, MOVES_DONE_KEY,
};
use super::service::{meta_set, run_on};
use super::{place, Placement, ShardId, DEFAULT_EPSILON};
use crate::node::Node;
use crate::raft::types::NodeId;
use crate::rpc::META_GROUP;
use crate::shard::Replica;
use crate::store::now_ms;

/// A `Left` node silent this long has exited and leaves group 0.
pub const LEFT_NODE_GRACE: Duration = Duration::from_secs(2);

/// What the metadata leader remembers between ticks.
#[derive(Default)]
pub struct Liveness {
    /// The term in which this node became metadata leader, and when it noticed.
    leading_since: Option<(u64, Instant)>,
}

impl Liveness {
    /// How long each node other than this one has been silent, as this leader saw it.
    pub fn silence(&mut self, meta: &Replica) -> BTreeMap<NodeId, Duration> {
        use openraft::Instant as _;
        let m = meta.metrics();
        let since = match self.leading_since {
            Some((term, at)) if term == m.current_term => at,
            _ => {
                let now = Instant::now();
                self.leading_since = Some((m.current_term, now));
                now
            }
        };
        let leading = since.elapsed();
        let Some(heartbeat) = m.heartbeat.as_ref() else {
            return BTreeMap::new();
        };
        heartbeat
            .iter()
            .map(|(&id, last)| {
                let silent = last.as_ref().map_or(leading, |t| t.elapsed().min(leading));
                (id, silent)
            })
            .collect()
    }
}

/// One rebalancer pass on the metadata leader.
pub async fn step(
    node: &Arc<Node>,
    topology: &Topology,
    silence: &BTreeMap<NodeId, Duration>,
) -> Result<(), String> {
    update_states(node, topology, silence).await?;
    let up = topology.up_nodes();
    if up.is_empty() {
        return Ok(());
    }
    let shards: Vec<ShardId> = (0..node.params.shards).collect();
    let desired = place(&shards, &up, node.params.replicas as usize, DEFAULT_EPSILON);
    let in_flight = finish_or_retarget(node, topology, &desired).await?;
    let max = node.config.read().rebalance_max_moves as usize;
    if in_flight >= max {
        return Ok(());
    }
    for (shard, target) in pending(topology, &desired)
        .into_iter()
        .take(max - in_flight)
    {
        let from = topology.shards[&shard].voters.clone();
        tracing::info!(shard, ?from, to = ?target, "rebalance: move started");
        let record = MoveRecord {
            target,
            from,
            started_ms: now_ms(),
        };
        meta_set(node, &move_key(shard), encode(&record)).await?;
    }
    Ok(())
}

/// Marks silent nodes Down and answering ones Up again; turns drained Leaving nodes Left.
async fn update_states(
    node: &Arc<Node>,
    topology: &Topology,
    silence: &BTreeMap<NodeId, Duration>,
) -> Result<(), String> {
    let down_after = Duration::from_secs(node.config.read().node_down_after);
    for &id in topology.nodes.keys() {
        if id == node.id {
            continue;
        }
        let Some(&silent) = silence.get(&id) else {
            continue; // not yet replicated to: just joined
        };
        let state = topology.state(id);
        let next = match state {
            NodeState::Up if silent >= down_after => NodeState::Down,
            // Back: it answered within the last couple of heartbeats.
            NodeState::Down if silent < Duration::from_secs(1) => NodeState::Up,
            NodeState::Leaving if holds_nothing(topology, id) => NodeState::Left,
            _ => continue,
        };
        match next {
            NodeState::Down => tracing::warn!(
                node = id,
                silent_ms = silent.as_millis() as u64,
                "node marked down; its replicas will be re-created elsewhere"
            ),
            NodeState::Up => tracing::info!(node = id, "node is back up"),
            _ => tracing::info!(node = id, "node drained; it may leave"),
        }
        set_state(node, id, next).await?;
    }
    Ok(())
}

/// Records `state` for node `id` (`Up` is the absence of a record).
pub async fn set_state(node: &Arc<Node>, id: NodeId, state: NodeState) -> Result<(), String> {
    if state == NodeState::Up {
        del(node, &state_key(id)).await
    } else {
        meta_set(node, &state_key(id), encode(&state)).await
    }
}

/// Deletes a node's records from group 0 (it has left and is out of group 0).
pub async fn forget_node(node: &Arc<Node>, id: NodeId) -> Result<(), String> {
    tracing::info!(node = id, "node has left the cluster; forgetting it");
    del(node, &node_key(id)).await?;
    del(node, &state_key(id)).await
}

/// No shard's published membership or move target includes `id`.
fn holds_nothing(topology: &Topology, id: NodeId) -> bool {
    topology
        .shards
        .values()
        .all(|s| !s.voters.contains(&id) && !s.learners.contains(&id))
        && topology.moves.values().all(|m| !m.target.contains(&id))
}

/// Deletes the moves that are complete (counting them) and retargets those whose target is
/// no longer desired. Returns how many remain in flight.
async fn finish_or_retarget(
    node: &Arc<Node>,
    topology: &Topology,
    desired: &Placement,
) -> Result<usize, String> {
    let mut in_flight = 0;
    for (&shard, mv) in &topology.moves {
        let target: BTreeSet<NodeId> = mv.target.iter().copied().collect();
        let reached = topology.shards.get(&shard).is_some_and(|s| {
            s.learners.is_empty() && s.voters.iter().copied().collect::<BTreeSet<_>>() == target
        });
        if reached {
            let secs = now_ms().saturating_sub(mv.started_ms) as f64 / 1000.0;
            tracing::info!(shard, from = ?mv.from, to = ?mv.target, secs, "rebalance: move done");
            del(node, &move_key(shard)).await?;
            incr(node, MOVES_DONE_KEY).await?;
            continue;
        }
        in_flight += 1;
        let Some(want) = desired.get(&shard) else {
            continue;
        };
        if want.iter().copied().collect::<BTreeSet<_>>() != target {
            tracing::info!(shard, old = ?mv.target, new = ?want, "rebalance: move retargeted");
            let record = MoveRecord {
                target: want.clone(),
                ..mv.clone()
            };
            meta_set(node, &move_key(shard), encode(&record)).await?;
        }
    }
    Ok(in_flight)
}

/// Shards whose published voters differ from the desired placement and that are not moving,
/// most urgent first: those with a replica on a node that is not Up or short of replicas.
fn pending(topology: &Topology, desired: &Placement) -> Vec<(ShardId, Vec<NodeId>)> {
    let mut pending: Vec<(bool, ShardId, Vec<NodeId>)> = Vec::new();
    for (&shard, want) in desired {
        if topology.moves.contains_key(&shard) {
            continue;
        }
        let Some(record) = topology.shards.get(&shard) else {
            continue; // its leader has not published yet
        };
        let have: BTreeSet<NodeId> = record.voters.iter().copied().collect();
        if have == want.iter().copied().collect::<BTreeSet<_>>() {
            continue;
        }
        let degraded =
            have.len() < want.len() || have.iter().any(|&id| topology.state(id) != NodeState::Up);
        pending.push((!degraded, shard, want.clone()));
    }
    pending.sort();
    pending
        .into_iter()
        .map(|(_, shard, want)| (shard, want))
        .collect()
}

/// How many shards need a move that has not started (for `CLUSTER INFO`).
pub fn pending_moves(node: &Node, topology: &Topology) -> usize {
    let up = topology.up_nodes();
    if up.is_empty() {
        return 0;
    }
    let shards: Vec<ShardId> = (0..node.params.shards).collect();
    let desired = place(&shards, &up, node.params.replicas as usize, DEFAULT_EPSILON);
    pending(topology, &desired).len()
}

async fn del(node: &Arc<Node>, key: &str) -> Result<(), String> {
    let args = vec![Bytes::from_static(b"DEL"), Bytes::from(key.to_owned())];
    match run_on(node, META_GROUP, args).await {
        Frame::Integer(_) => Ok(()),
        other => Err(format!("metadata delete of {key} failed: {other:?}")),
    }
}

async fn incr(node: &Arc<Node>, key: &str) -> Result<(), String> {
    let args = vec![Bytes::from_static(b"INCR"), Bytes::from(key.to_owned())];
    match run_on(node, META_GROUP, args).await {
        Frame::Integer(_) => Ok(()),
        other => Err(format!("metadata increment of {key} failed: {other:?}")),
    }
}
