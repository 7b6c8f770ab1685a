//! `/cluster.json`: the cluster as this node sees it, for the status page and for scripts.
//!
//! Nodes and shard records come from group 0 (this node's copy, refreshed in the background);
//! a shard this node hosts is described from its own replica (fresher: its leader, term,
//! voters). `slot_ranges` are the ring's runs of consecutive slots, `[first, last, shard]`.

use serde::Serialize;

use crate::cluster::status::{ClusterSummary, GroupStatus};
use crate::node::{shard_group, Node};
use crate::raft::types::NodeId;

#[derive(Serialize)]
pub struct ClusterView {
    /// The node that answered.
    pub node_id: NodeId,
    pub slots: u32,
    pub shards_count: u32,
    pub replicas: u32,
    pub nodes: Vec<NodeView>,
    pub shards: Vec<ShardView>,
    pub slot_ranges: Vec<(u16, u16, u32)>,
    pub moves: Vec<MoveView>,
    pub moves_pending: usize,
    pub moves_done: u64,
}

#[derive(Serialize)]
pub struct NodeView {
    pub id: NodeId,
    pub client_addr: String,
    pub peer_addr: String,
    pub state: &'static str,
    pub leads: Vec<u32>,
    pub follows: Vec<u32>,
}

#[derive(Serialize)]
pub struct ShardView {
    pub shard: u32,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub slots: usize,
    /// Keys in this node's replica (absent when this node holds none).
    pub keys: Option<usize>,
}

#[derive(Serialize)]
pub struct MoveView {
    pub shard: u32,
    pub from: Vec<NodeId>,
    pub to: Vec<NodeId>,
    pub age_ms: u64,
}

impl ClusterView {
    pub fn of(node: &Node) -> ClusterView {
        let topology = node.topology();
        let summary = ClusterSummary::of(node);
        let slot_counts = node.ring.slot_counts();
        let shards: Vec<ShardView> = (0..node.params.shards)
            .map(|shard| {
                let slots = slot_counts
                    .iter()
                    .find(|(s, _)| *s == shard)
                    .map_or(0, |(_, n)| *n);
                match node.replica(shard_group(shard)) {
                    Some(r) => {
                        let status = GroupStatus::of(&r);
                        ShardView {
                            shard,
                            leader: status.leader,
                            term: status.term,
                            voters: status.voters,
                            learners: status.learners,
                            slots,
                            keys: Some(r.keyspace().len()),
                        }
                    }
                    None => {
                        let rec = topology.shards.get(&shard);
                        ShardView {
                            shard,
                            leader: rec.map(|r| r.leader).filter(|&l| l != 0),
                            term: rec.map_or(0, |r| r.term),
                            voters: rec.map(|r| r.voters.clone()).unwrap_or_default(),
                            learners: rec.map(|r| r.learners.clone()).unwrap_or_default(),
                            slots,
                            keys: None,
                        }
                    }
                }
            })
            .collect();
        let nodes = topology
            .nodes
            .values()
            .map(|n| NodeView {
                id: n.id,
                client_addr: n.client_addr.clone(),
                peer_addr: n.peer_addr.clone(),
                state: topology.state(n.id).name(),
                leads: shards
                    .iter()
                    .filter(|s| s.leader == Some(n.id))
                    .map(|s| s.shard)
                    .collect(),
                follows: shards
                    .iter()
                    .filter(|s| s.leader != Some(n.id))
                    .filter(|s| s.voters.contains(&n.id) || s.learners.contains(&n.id))
                    .map(|s| s.shard)
                    .collect(),
            })
            .collect();
        let now = crate::store::now_ms();
        let moves = topology
            .moves
            .iter()
            .map(|(&shard, mv)| MoveView {
                shard,
                from: mv.from.clone(),
                to: mv.target.clone(),
                age_ms: now.saturating_sub(mv.started_ms),
            })
            .collect();
        ClusterView {
            node_id: node.id,
            slots: 16384,
            shards_count: node.params.shards,
            replicas: node.params.replicas,
            nodes,
            shards,
            slot_ranges: node.ring.ranges(),
            moves,
            moves_pending: summary.moves_pending,
            moves_done: summary.moves_done,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}
