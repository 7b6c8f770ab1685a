//! Drives every group this node leads toward what the metadata asks for, and this node's own
//! part in the cluster's life cycle.
//!
//! Each node runs [`run`] every [`TICK`]:
//! - As metadata leader: every node not `Left` is a member of group 0, the first five `Up` ones
//!   (by id) voters, the rest learners; then the [`rebalance`] pass (liveness, moves).
//! - For each shard group it leads: publish the group's state to group 0 (where nodes without
//!   a replica find the leader); carry out the shard's move if group 0 holds one (add the
//!   target's new nodes as learners, wait until they have caught up, one joint membership
//!   change to the target voters, drop leftover learners); otherwise hand leadership to the
//!   node [`leaders`] picks, so every node leads about S/N shards.
//! - For each replica it hosts but no longer belongs to (group 0's record of the shard names
//!   neither it nor a move to it, for [`STALE_GRACE`]): delete it ([`Node::remove_group`]).
//! - Once group 0 says it has `Left` (drained): stop, erasing its state.
//! - When its own record in group 0 lacks its current `--tls-port`: rewrite the record.
//!
//! Only leaders act, and each step is re-derived from the current state every tick, so a
//! leader change or a crash mid-way simply leaves the next leader to continue.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ChangeMembers;

use super::meta::{encode, shard_key, NodeState, ShardRecord, Topology};
use super::rebalance::{self, Liveness, LEFT_NODE_GRACE};
use super::service::{ensure_metadata, meta_set, publish_tls_port};
use super::{leaders, place, ShardId, DEFAULT_EPSILON};
use crate::node::{group_shard, Node};
use crate::raft::types::{NodeId, NodeInfo};
use crate::rpc::{GroupId, META_GROUP};
use crate::shard::Replica;

/// How often the reconciler looks.
pub const TICK: Duration = Duration::from_millis(100);
/// Voters of the metadata group, at most.
pub const META_VOTERS: usize = 5;
/// A learner this close to the leader's log counts as caught up.
const CATCH_UP_SLACK: u64 = 64;
/// The least time between two leadership transfers of one group.
const TRANSFER_PAUSE: Duration = Duration::from_secs(3);
/// How long a replica must look abandoned before it is deleted: group 0's record lags the
/// group's own membership by a tick or two when a leader adds a node.
pub const STALE_GRACE: Duration = Duration::from_secs(5);
/// The longest a move's learner may take to catch up before the step is retried.
const MOVE_STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// A move step running in its own task.
struct MoveTask {
    target: BTreeSet<NodeId>,
    /// The term this node led the group in when the step began.
    term: u64,
    task: tokio::task::AbortHandle,
}

/// What one node's reconciler remembers between ticks.
#[derive(Default)]
struct State {
    transfers: HashMap<GroupId, Instant>,
    liveness: Liveness,
    /// Groups whose move step is running in its own task, and toward which voters.
    moving: HashMap<GroupId, MoveTask>,
    /// Since when each hosted replica has looked abandoned.
    abandoned_since: HashMap<GroupId, Instant>,
}

pub async fn run(node: Arc<Node>) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut state = State::default();
    loop {
        tokio::select! {
            _ = node.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        node.refresh_topology();
        let topology = node.topology();
        if topology.state(node.id) == NodeState::Left && topology.nodes.contains_key(&node.id) {
            tracing::info!("drained: this node has left the cluster; stopping");
            node.left.store(true, std::sync::atomic::Ordering::SeqCst);
            node.shutdown.cancel();
            return;
        }
        if let Err(e) = reconcile_meta(&node, &topology, &mut state.liveness).await {
            tracing::debug!(error = %e, "metadata reconcile step failed");
        }
        if let Err(e) = publish_tls_port(&node, &topology).await {
            tracing::debug!(error = %e, "publishing this node's TLS port failed");
        }
        if topology.nodes.is_empty() {
            continue;
        }
        let shards: Vec<ShardId> = (0..node.params.shards).collect();
        let placement = place(
            &shards,
            &topology.up_nodes(),
            node.params.replicas as usize,
            DEFAULT_EPSILON,
        );
        let leaders = leaders(&placement);
        for replica in node.replicas() {
            if replica.group == META_GROUP {
                continue;
            }
            if !replica.is_leader() {
                collect_if_abandoned(&node, &topology, &replica, &mut state).await;
                continue;
            }
            state.abandoned_since.remove(&replica.group);
            let shard = group_shard(replica.group);
            let result = reconcile_shard(
                &node,
                &topology,
                &replica,
                placement.get(&shard),
                leaders.get(&shard).copied(),
                &mut state,
            )
            .await;
            if let Err(e) = result {
                tracing::debug!(group = replica.group, error = %e, "shard reconcile step failed");
            }
        }
    }
}

async fn reconcile_meta(
    node: &Arc<Node>,
    topology: &Topology,
    liveness: &mut Liveness,
) -> Result<(), String> {
    let Some(meta) = node.replica(META_GROUP).filter(|m| m.is_leader()) else {
        return Ok(());
    };
    ensure_metadata(node, topology).await?;
    if topology.nodes.is_empty() {
        return Ok(()); // the records just written show up in the next tick's topology
    }
    let silence = liveness.silence(&meta);
    let voters: BTreeSet<NodeId> = topology.up_nodes().into_iter().take(META_VOTERS).collect();
    // A Left node stays a member until it has gone quiet, so that it learns it has left.
    let members: BTreeMap<NodeId, NodeInfo> = topology
        .nodes
        .values()
        .filter(|n| {
            topology.state(n.id) != NodeState::Left
                || silence.get(&n.id).is_some_and(|s| *s < LEFT_NODE_GRACE)
        })
        .map(|n| (n.id, n.info()))
        .collect();
    if !voters.is_empty() {
        converge(&meta, &voters, &members).await?;
    }
    // A Left node out of group 0 is gone for good: forget it.
    let m = meta.metrics();
    let membership = m.membership_config.membership();
    for &id in topology.nodes.keys() {
        if topology.state(id) == NodeState::Left && membership.get_node(&id).is_none() {
            rebalance::forget_node(node, id).await?;
        }
    }
    rebalance::step(node, topology, &silence).await
}

async fn reconcile_shard(
    node: &Arc<Node>,
    topology: &Topology,
    replica: &Arc<Replica>,
    desired: Option<&Vec<NodeId>>,
    wanted_leader: Option<NodeId>,
    state: &mut State,
) -> Result<(), String> {
    let shard = group_shard(replica.group);
    publish(node, topology, replica, shard).await?;
    if let Some(mv) = topology.moves.get(&shard) {
        let target: BTreeSet<NodeId> = mv.target.iter().copied().collect();
        let term = replica.metrics().current_term;
        if let Some(running) = state.moving.get(&replica.group) {
            if !running.task.is_finished() {
                if running.target == target && running.term == term {
                    return Ok(());
                }
                // The rebalancer retargeted the move (say its target node went down), or this
                // node lost the group's leadership and won it back meanwhile: the old step may
                // wait on a node that is gone, or on a membership change its old term never
                // saw committed, so it gives way at once.
                tracing::info!(
                    group = replica.group,
                    "move retargeted or leadership changed; restarting its step"
                );
                running.task.abort();
            }
        }
        let task = {
            let replica = replica.clone();
            let infos = infos(topology);
            let target = target.clone();
            tokio::spawn(async move {
                let step = carry_out_move(&replica, &target, &infos);
                match tokio::time::timeout(MOVE_STEP_TIMEOUT, step).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::info!(group = replica.group, error = %e, "move step failed")
                    }
                    Err(_) => tracing::warn!(group = replica.group, "move step timed out"),
                }
            })
        };
        state.moving.insert(
            replica.group,
            MoveTask {
                target,
                term,
                task: task.abort_handle(),
            },
        );
        return Ok(());
    }
    // No move: leadership balance, once the group is exactly where placement wants it.
    let m = replica.metrics();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let stable = membership.get_joint_config().len() == 1
        && membership.learner_ids().next().is_none()
        && desired.is_some_and(|d| d.iter().copied().collect::<BTreeSet<_>>() == voters);
    let Some(wanted) = wanted_leader.filter(|_| stable) else {
        return Ok(());
    };
    let recently = state
        .transfers
        .get(&replica.group)
        .is_some_and(|t| t.elapsed() < TRANSFER_PAUSE);
    if wanted != node.id && !recently && caught_up(replica, wanted) {
        state.transfers.insert(replica.group, Instant::now());
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

/// The log index of the membership config a replica holds.
fn membership_index(m: &openraft::RaftMetrics<crate::raft::types::TypeConfig>) -> u64 {
    m.membership_config.log_id().as_ref().map_or(0, |l| l.index)
}

/// Deletes this node's replica of a group it no longer belongs to, once group 0 has said so
/// for [`STALE_GRACE`]: its shard's record, from a membership config at least as new as the
/// replica's own, names neither this node nor a move to it. (Terms do not tell: a removed
/// replica that never learned of its removal campaigns, raising its term, but its log and
/// config stay where they were.) Such a replica is never served: it is no member, so it can
/// neither lead nor count in a quorum.
async fn collect_if_abandoned(
    node: &Arc<Node>,
    topology: &Topology,
    replica: &Replica,
    state: &mut State,
) {
    let shard = group_shard(replica.group);
    let me = node.id;
    let record_term = topology.shards.get(&shard).and_then(|record| {
        let named = record.voters.contains(&me) || record.learners.contains(&me);
        let moving_here = topology
            .moves
            .get(&shard)
            .is_some_and(|m| m.target.contains(&me));
        let current = record.membership_index >= membership_index(&replica.metrics());
        (!named && !moving_here && current && record.leader != me).then_some(record.term)
    });
    let Some(term) = record_term else {
        state.abandoned_since.remove(&replica.group);
        return;
    };
    let since = *state
        .abandoned_since
        .entry(replica.group)
        .or_insert_with(Instant::now);
    if since.elapsed() < STALE_GRACE {
        return;
    }
    state.abandoned_since.remove(&replica.group);
    tracing::info!(
        shard,
        group = replica.group,
        term,
        "deleting this node's replica: the shard no longer has it"
    );
    if let Err(e) = node.remove_group(replica.group, term).await {
        tracing::error!(group = replica.group, error = %e, "cannot delete replica");
    }
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
        membership_index: membership_index(&m),
    };
    if topology.shards.get(&shard) != Some(&record) {
        meta_set(node, &shard_key(shard), encode(&record)).await?;
    }
    Ok(())
}

fn infos(topology: &Topology) -> BTreeMap<NodeId, NodeInfo> {
    topology.nodes.values().map(|n| (n.id, n.info())).collect()
}

/// One step toward `voters` as the metadata group's voters and `members` as its members (the
/// rest learners). Steps never block on a node: a new member is added as a learner, and made
/// a voter in a later tick once it has caught up.
async fn converge(
    replica: &Replica,
    voters: &BTreeSet<NodeId>,
    members: &BTreeMap<NodeId, NodeInfo>,
) -> Result<(), String> {
    if finish_interrupted_change(replica).await? {
        return Ok(());
    }
    let Some((current_members, current)) = settled_membership(replica) else {
        return Ok(()); // a change is under way
    };
    // 1. Every wanted member is at least a learner.
    let mut added = false;
    for (id, info) in members {
        if current_members.contains(id) {
            continue;
        }
        tracing::info!(group = replica.group, node = id, "adding learner");
        replica
            .raft
            .add_learner(*id, info.clone(), false)
            .await
            .map_err(|e| e.to_string())?;
        added = true;
    }
    if added {
        return Ok(());
    }
    // 2. The voters, once the new ones have caught up.
    if &current != voters {
        if !voters
            .difference(&current)
            .all(|id| caught_up(replica, *id))
        {
            return Ok(());
        }
        tracing::info!(group = replica.group, ?voters, "changing voters");
        replica
            .raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters.clone()), true)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    // 3. Members nobody wants any more leave.
    let unwanted: BTreeSet<NodeId> = current_members
        .iter()
        .filter(|id| !members.contains_key(id) && !voters.contains(id))
        .copied()
        .collect();
    remove_members(replica, unwanted, "removing members").await
}

/// Carries out a shard's move to `target` voters, start to end: each new node is added as a
/// learner and caught up (it receives a snapshot and the log's tail), then one joint change
/// makes `target` the voters and removes the others, then leftover learners go. Run in its
/// own task, since catching up may take a while; a leader change or error just stops it, and
/// the next leader starts over from the group's state.
async fn carry_out_move(
    replica: &Replica,
    target: &BTreeSet<NodeId>,
    infos: &BTreeMap<NodeId, NodeInfo>,
) -> Result<(), String> {
    finish_interrupted_change(replica).await?;
    let Some((members, voters)) = settled_membership(replica) else {
        return Ok(()); // a change is under way
    };
    for id in target.difference(&members) {
        let info = infos
            .get(id)
            .ok_or_else(|| format!("node {id} is not known"))?;
        tracing::info!(group = replica.group, node = id, "move: adding learner");
        replica
            .raft
            .add_learner(*id, info.clone(), true)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(group = replica.group, node = id, "move: learner caught up");
    }
    if &voters != target {
        tracing::info!(group = replica.group, from = ?voters, to = ?target, "move: changing voters");
        replica
            .raft
            .change_membership(ChangeMembers::ReplaceAllVoters(target.clone()), false)
            .await
            .map_err(|e| e.to_string())?;
    }
    let m = replica.metrics();
    let leftover: BTreeSet<NodeId> = m
        .membership_config
        .membership()
        .learner_ids()
        .filter(|id| !target.contains(id))
        .collect();
    remove_members(replica, leftover, "move: removing learners").await
}

/// Finishes a membership change that was interrupted halfway, if the group is stuck in one.
/// openraft's `change_membership` commits a joint config and then, in the same call, the new
/// one; a leader change (or an aborted step) between the two leaves the joint config in
/// place, and nothing else would ever leave it. Its second half is what the change meant, so
/// that becomes the voters (the others stay as learners, for the caller's later steps to
/// remove). Only the one step running for a group calls this, so a joint config it sees is
/// never a change still in progress. True if there was one to finish.
async fn finish_interrupted_change(replica: &Replica) -> Result<bool, String> {
    let m = replica.metrics();
    let joint = m.membership_config.membership().get_joint_config();
    let Some(goal) = joint.last().filter(|_| joint.len() > 1).cloned() else {
        return Ok(false);
    };
    tracing::info!(
        group = replica.group,
        ?goal,
        "finishing an interrupted membership change"
    );
    replica
        .raft
        .change_membership(ChangeMembers::ReplaceAllVoters(goal), true)
        .await
        .map_err(|e| e.to_string())?;
    Ok(true)
}

/// Removes `ids` from the group's membership (nothing to do when empty).
async fn remove_members(
    replica: &Replica,
    ids: BTreeSet<NodeId>,
    what: &'static str,
) -> Result<(), String> {
    if ids.is_empty() {
        return Ok(());
    }
    tracing::info!(group = replica.group, ?ids, "{what}");
    replica
        .raft
        .change_membership(ChangeMembers::RemoveNodes(ids), false)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The group's members and voters, unless a membership change is under way (joint config).
fn settled_membership(replica: &Replica) -> Option<(BTreeSet<NodeId>, BTreeSet<NodeId>)> {
    let m = replica.metrics();
    let membership = m.membership_config.membership();
    if membership.get_joint_config().len() > 1 {
        return None;
    }
    Some((
        membership.nodes().map(|(id, _)| *id).collect(),
        membership.voter_ids().collect(),
    ))
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
