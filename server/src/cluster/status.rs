//! What a node can tell about its Raft groups: per-group status for `INFO raft`, and the
//! cluster-wide summary `CLUSTER INFO` and readiness checks use.

use std::fmt::Write;

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
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
        }
    }

    /// `role=leader,leader=1,term=2,...` (one INFO value).
    pub fn info_value(&self) -> String {
        let ids = |v: &[NodeId]| {
            v.iter()
                .map(|id| id.to_string())
                .collect::<Vec<_>>()
                .join("|")
        };
        format!(
            "role={},leader={},term={},last_log={},committed={},applied={},snapshot={},voters={},learners={}",
            self.role,
            self.leader.unwrap_or(0),
            self.term,
            self.last_log,
            self.committed,
            self.applied,
            self.snapshot,
            ids(&self.voters),
            ids(&self.learners),
        )
    }
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
}

impl ClusterSummary {
    pub fn of(node: &Node) -> ClusterSummary {
        let topology = node.topology();
        let known_nodes = topology.nodes.len().max(1);
        let want = (node.params.replicas as usize).min(known_nodes);
        let mut s = ClusterSummary {
            known_nodes,
            shards: node.params.shards,
            shards_with_leader: 0,
            shards_fully_replicated: 0,
            shards_hosted: 0,
            shards_led: 0,
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

    /// Every shard has a leader and its full replica set.
    pub fn ok(&self) -> bool {
        self.shards_with_leader == self.shards && self.shards_fully_replicated == self.shards
    }
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
            &format!("client={},peer={}", n.client_addr, n.peer_addr),
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
