//! Drives every group this node leads toward the placement the metadata asks for.
//!
//! Each node runs [`run`]. For the metadata group (when it leads it) that means: every known
//! node a member, the first five (by id) voters, the rest learners. For each shard group it
//! leads: the replicas [`place`] chooses over the known nodes (`min(replicas, nodes)` of them)
//! as the voters, reached by adding the missing ones as learners, waiting until they have
//! caught up, then one joint membership change; then leadership handed to the node
//! [`leaders`] picks, so every node leads about S/N shards. The leader also publishes its
//! group's state to the metadata group, where nodes without a replica find the leader.
//!
//! Only leaders act, and each step is re-derived from the current state every tick, so a
//! leader change or a crash mid-way simply leaves the next leader to continue.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ChangeMembers;

use super::meta::{encode, shard_key, ShardRecord, Topology};
use super::service::{ensure_metadata, meta_set};
use super::{leaders, place, Placement, ShardId, DEFAULT_EPSILON};
use crate::node::{group_shard, Node};
use crate::raft::types::{NodeId, NodeInfo};
use crate::rpc::META_GROUP;
use crate::shard::Replica;

/// How often the reconciler looks.
pub const TICK: Duration = Duration::from_millis(300);
/// Voters of the metadata group, at most.
pub const META_VOTERS: usize = 5;
/// A learner this close to the leader's log counts as caught up.
const CATCH_UP_SLACK: u64 = 64;
/// The least time between two leadership transfers of one group.
const TRANSFER_PAUSE: Duration = Duration::from_secs(3);

pub async fn run(node: Arc<Node>) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut transfers: HashMap<u64, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = node.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        node.refresh_topology();
        let topology = node.topology();
        if let Err(e) = reconcile_meta(&node, &topology).await {
            tracing::debug!(error = %e, "metadata reconcile step failed");
        }
        if topology.nodes.is_empty() {
            continue;
        }
        let shards: Vec<ShardId> = (0..node.params.shards).collect();
        let nodes: Vec<NodeId> = topology.nodes.keys().copied().collect();
        let placement = place(
            &shards,
            &nodes,
            node.params.replicas as usize,
            DEFAULT_EPSILON,
        );
        let leaders = leaders(&placement);
        for replica in node.replicas() {
            if replica.group == META_GROUP || !replica.is_leader() {
                continue;
            }
            let result = reconcile_shard(
                &node,
                &topology,
                &replica,
                &placement,
                &leaders,
                &mut transfers,
            )
            .await;
            if let Err(e) = result {
                tracing::debug!(group = replica.group, error = %e, "shard reconcile step failed");
            }
        }
    }
}

async fn reconcile_meta(node: &Arc<Node>, topology: &Topology) -> Result<(), String> {
    let Some(meta) = node.replica(META_GROUP).filter(|m| m.is_leader()) else {
        return Ok(());
    };
    ensure_metadata(node, topology).await?;
    if topology.nodes.is_empty() {
        return Ok(()); // the records just written show up in the next tick's topology
    }
    let voters: BTreeSet<NodeId> = topology.nodes.keys().take(META_VOTERS).copied().collect();
    let infos = infos(topology);
    converge(&meta, &voters, &infos, true).await?;
    Ok(())
}

async fn reconcile_shard(
    node: &Arc<Node>,
    topology: &Topology,
    replica: &Arc<Replica>,
    placement: &Placement,
    leaders: &BTreeMap<ShardId, NodeId>,
    transfers: &mut HashMap<u64, Instant>,
) -> Result<(), String> {
    let shard = group_shard(replica.group);
    let Some(desired) = placement.get(&shard) else {
        return Ok(());
    };
    let voters: BTreeSet<NodeId> = desired.iter().copied().collect();
    let stable = converge(replica, &voters, &infos(topology), false).await?;
    publish(node, topology, replica, shard).await?;
    if !stable {
        return Ok(());
    }
    let Some(&wanted) = leaders.get(&shard) else {
        return Ok(());
    };
    let recently = transfers
        .get(&replica.group)
        .is_some_and(|t| t.elapsed() < TRANSFER_PAUSE);
    if wanted != node.id && !recently && caught_up(replica, wanted) {
        transfers.insert(replica.group, Instant::now());
        tracing::info!(
            group = replica.group,
            to = wanted,
            "handing over leadership to balance leaders"
        );
        replica
            .raft
            .trigger()
            .transfer_leader(wanted)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Tells group 0 who leads this shard and who replicates it, if that changed.
async fn publish(
    node: &Arc<Node>,
    topology: &Topology,
    replica: &Replica,
    shard: ShardId,
) -> Result<(), String> {
    let m = replica.metrics();
    let membership = m.membership_config.membership();
    let record = ShardRecord {
        leader: node.id,
        term: m.current_term,
        voters: membership.voter_ids().collect(),
        learners: membership.learner_ids().collect(),
    };
    if topology.shards.get(&shard) != Some(&record) {
        meta_set(node, &shard_key(shard), encode(&record)).await?;
    }
    Ok(())
}

fn infos(topology: &Topology) -> BTreeMap<NodeId, NodeInfo> {
    topology.nodes.values().map(|n| (n.id, n.info())).collect()
}

/// One step toward `voters` as the group's voters (`keep_others`: every other known node stays
/// or becomes a learner, as in the metadata group; otherwise they leave). Returns whether the
/// group already has exactly that membership.
async fn converge(
    replica: &Replica,
    voters: &BTreeSet<NodeId>,
    infos: &BTreeMap<NodeId, NodeInfo>,
    keep_others: bool,
) -> Result<bool, String> {
    let m = replica.metrics();
    let membership = m.membership_config.membership();
    if membership.get_joint_config().len() > 1 {
        return Ok(false); // a change is under way
    }
    let members: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
    let current: BTreeSet<NodeId> = membership.voter_ids().collect();
    let wanted_members: BTreeSet<NodeId> = if keep_others {
        infos.keys().copied().collect()
    } else {
        voters.clone()
    };
    // 1. Every wanted member is at least a learner.
    let mut added = false;
    for id in wanted_members.difference(&members) {
        let Some(info) = infos.get(id) else { continue };
        tracing::info!(group = replica.group, node = id, "adding learner");
        replica
            .raft
            .add_learner(*id, info.clone(), false)
            .await
            .map_err(|e| e.to_string())?;
        added = true;
    }
    if added {
        return Ok(false);
    }
    // 2. The voters, once the new ones have caught up.
    if &current != voters {
        if !voters
            .difference(&current)
            .all(|id| caught_up(replica, *id))
        {
            return Ok(false);
        }
        tracing::info!(group = replica.group, ?voters, "changing voters");
        replica
            .raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters.clone()), keep_others)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(false);
    }
    // 3. Learners nobody wants any more leave.
    let unwanted: BTreeSet<NodeId> = members.difference(&wanted_members).copied().collect();
    let unwanted: BTreeSet<NodeId> = unwanted.difference(voters).copied().collect();
    if !unwanted.is_empty() {
        tracing::info!(group = replica.group, ?unwanted, "removing learners");
        replica
            .raft
            .change_membership(ChangeMembers::RemoveNodes(unwanted), false)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(false);
    }
    Ok(true)
}

/// Whether `id`'s copy of the log is within [`CATCH_UP_SLACK`] entries of this leader's.
fn caught_up(replica: &Replica, id: NodeId) -> bool {
    let m = replica.metrics();
    let last = m.last_log_index.unwrap_or(0);
    m.replication
        .as_ref()
        .and_then(|r| r.get(&id))
        .and_then(|matched| matched.as_ref())
        .is_some_and(|matched| matched.index + CATCH_UP_SLACK >= last)
}
