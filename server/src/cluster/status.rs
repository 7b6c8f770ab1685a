//! What a node can tell about its Raft groups: per-group status for `INFO raft`, and the
//! cluster-wide summary `CLUSTER INFO` and readiness checks use.

use std::fmt::Write;

use super::meta::{NodeState, Topology};
use super::rebalance::pending_moves;
use crate::node::{group_shard, Node};
use crate::raft::types::NodeId;
use crate::rpc::META_GROUP;
use crate::shard::Replica;

/// One replica's Raft state, from its metrics.
#[derive(Clone, Debug)]
pub struct GroupStatus {
    pub role: &'static str,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log: u64,
    pub committed: u64,
    pub applied: u64,
    pub snapshot: u64,
    /// The last log index deleted behind the snapshot (0: none yet).
    pub purged: u64,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
}

impl GroupStatus {
    pub fn of(replica: &Replica) -> GroupStatus {
        let m = replica.metrics();
        let index = |l: &Option<crate::raft::types::LogId>| l.as_ref().map_or(0, |l| l.index);
        let membership = m.membership_config.membership();
        use openraft::ServerState::*;
        GroupStatus {
            role: match m.state {
                Leader => "leader",
                Follower => "follower",
                Learner => "learner",
                Candidate => "candidate",
                Shutdown => "shutdown",
            },
            leader: m.current_leader,
            term: m.current_term,
            last_log: m.last_log_index.unwrap_or(0),
            committed: index(&m.local_committed),
            applied: index(&m.last_applied),
            snapshot: index(&m.snapshot),
            purged: index(&m.purged),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
        }
    }

    /// `role=leader,leader=1,term=2,...` (one INFO value).
    pub fn info_value(&self) -> String {
        format!(
            "role={},leader={},term={},last_log={},committed={},applied={},snapshot={},purged={},voters={},learners={}",
            self.role,
            self.leader.unwrap_or(0),
            self.term,
            self.last_log,
            self.committed,
            self.applied,
            self.snapshot,
            self.purged,
            ids(&self.voters),
            ids(&self.learners),
        )
    }
}

/// `1|2|3`: node ids as one INFO value.
fn ids(v: &[NodeId]) -> String {
    v.iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join("|")
}

/// The cluster as this node sees it.
pub struct ClusterSummary {
    pub known_nodes: usize,
    pub shards: u32,
    /// Shards whose leader this node knows (from its replica, else group 0).
    pub shards_with_leader: u32,
    /// Shards hosted here whose group has the full number of voters.
    pub shards_fully_replicated: u32,
    pub shards_hosted: u32,
    pub shards_led: u32,
    pub nodes_up: usize,
    pub nodes_down: usize,
    pub nodes_leaving: usize,
    /// Shards whose replica set differs from the placement and that are not moving yet.
    pub moves_pending: usize,
    pub moves_in_flight: usize,
    pub moves_done: u64,
    /// Snapshot bytes this node has received (new replicas seeded here).
    pub snapshot_bytes_received: u64,
}

impl ClusterSummary {
    pub fn of(node: &Node) -> ClusterSummary {
        let topology = node.topology();
        let known_nodes = topology.nodes.len().max(1);
        let want = (node.params.replicas as usize).min(topology.up_nodes().len().max(1));
        let mut s = ClusterSummary {
            known_nodes,
            shards: node.params.shards,
            shards_with_leader: 0,
            shards_fully_replicated: 0,
            shards_hosted: 0,
            shards_led: 0,
            nodes_up: topology.up_nodes().len(),
            nodes_down: count_state(&topology, NodeState::Down),
            nodes_leaving: count_state(&topology, NodeState::Leaving),
            moves_pending: pending_moves(node, &topology),
            moves_in_flight: topology.moves.len(),
            moves_done: topology.moves_done,
            snapshot_bytes_received: node
                .router
                .snapshot_bytes_received
                .load(std::sync::atomic::Ordering::Relaxed),
        };
        for shard in 0..node.params.shards {
            let group = crate::node::shard_group(shard);
            if node.leader_of(group).is_some() {
                s.shards_with_leader += 1;
            }
            if let Some(r) = node.replica(group) {
                s.shards_hosted += 1;
                s.shards_led += r.is_leader() as u32;
                let status = GroupStatus::of(&r);
                if status.voters.len() >= want {
                    s.shards_fully_replicated += 1;
                }
            } else if topology
                .shards
                .get(&shard)
                .is_some_and(|rec| rec.voters.len() >= want)
            {
                s.shards_fully_replicated += 1;
            }
        }
        s
    }

    /// shoal's own `CLUSTER INFO` / `INFO cluster` fields: replicas, node states, rebalancing.
    pub fn shoal_fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("shoal_shards_hosted", self.shards_hosted.to_string()),
            ("shoal_shards_led", self.shards_led.to_string()),
            (
                "shoal_shards_fully_replicated",
                self.shards_fully_replicated.to_string(),
            ),
            ("shoal_nodes_up", self.nodes_up.to_string()),
            ("shoal_nodes_down", self.nodes_down.to_string()),
            ("shoal_nodes_leaving", self.nodes_leaving.to_string()),
            ("shoal_moves_pending", self.moves_pending.to_string()),
            ("shoal_moves_in_flight", self.moves_in_flight.to_string()),
            ("shoal_moves_done", self.moves_done.to_string()),
            (
                "shoal_snapshot_bytes_received",
                self.snapshot_bytes_received.to_string(),
            ),
        ]
    }

    /// Every shard has a leader and its full replica set.
    ///
    /// "Full" counts voters against the replication factor capped by the nodes that are Up.
    pub fn ok(&self) -> bool {
        self.shards_with_leader == self.shards && self.shards_fully_replicated == self.shards
    }
}

fn count_state(topology: &Topology, state: NodeState) -> usize {
    topology
        .nodes
        .keys()
        .filter(|&&id| topology.state(id) == state)
        .count()
}

/// The `# Raft` section of INFO: this node, the nodes it knows, and one line per group.
pub fn write_raft_section(node: &Node, out: &mut String) {
    let topology = node.topology();
    let summary = ClusterSummary::of(node);
    let mut field = |k: &str, v: &dyn std::fmt::Display| {
        let _ = write!(out, "{k}:{v}\r\n");
    };
    field("raft_node_id", &node.id);
    field("raft_shards", &node.params.shards);
    field("raft_replicas", &node.params.replicas);
    field("raft_known_nodes", &summary.known_nodes);
    for n in topology.nodes.values() {
        field(
            &format!("raft_node_{}", n.id),
            &format!(
                "client={},peer={},state={}",
                n.client_addr,
                n.peer_addr,
                topology.state(n.id).name()
            ),
        );
    }
    for replica in node.replicas() {
        let status = GroupStatus::of(&replica);
        if replica.group == META_GROUP {
            field("raft_group_0", &status.info_value());
        } else {
            field(
                &format!("raft_shard_{}", group_shard(replica.group)),
                &format!("group={},{}", replica.group, status.info_value()),
            );
        }
    }
    let now = crate::store::now_ms();
    for (shard, mv) in &topology.moves {
        field(
            &format!("raft_move_{shard}"),
            &format!(
                "from={},to={},age_ms={}",
                ids(&mv.from),
                ids(&mv.target),
                now.saturating_sub(mv.started_ms)
            ),
        );
    }
    field("raft_shards_hosted", &summary.shards_hosted);
    field("raft_shards_led", &summary.shards_led);
    field(
        "raft_shards_without_leader",
        &(summary.shards - summary.shards_with_leader),
    );
}

/// The `# Digest` section (`INFO digest`): per hosted shard replica, its applied index, key
/// count and a digest of its data, so replicas of one shard can be compared.
pub fn write_digest_section(node: &Node, out: &mut String) {
    let now = crate::store::now_ms();
    for replica in node.replicas() {
        if replica.group == META_GROUP {
            continue;
        }
        let status = GroupStatus::of(&replica);
        let ks = replica.keyspace();
        let _ = write!(
            out,
            "shard_{}:applied={},keys={},digest={:016x}\r\n",
            group_shard(replica.group),
            status.applied,
            ks.len(),
            ks.digest(now)
        );
    }
}
