//! What the metadata group (group 0) holds, and how it is stored.
//!
//! Group 0 runs the same deterministic state machine as every shard, so its data lives in a
//! keyspace as ordinary keys, all under the hash tag `{meta}` (one slot, cheap to list). Only
//! this module names those keys or encodes their values (bincode), and only nodes write them,
//! over the peer transport: client commands are never routed to group 0.
//!
//! - `{meta}cluster`: [`ClusterParams`], written once by the node that created the cluster.
//! - `{meta}next-node-id`: the last node id handed out (`INCR` gives the next).
//! - `{meta}node:<id>`: a [`NodeRecord`] per node that joined.
//! - `{meta}shard:<s>`: a [`ShardRecord`], published by shard `s`'s leader when it changes.
//! - `{meta}state:<id>`: a node's [`NodeState`] when it is not `Up` (absent means `Up`); written
//!   by the metadata leader (liveness, drain progress) and by `CLUSTER FORGET` (drain).
//! - `{meta}move:<s>`: a [`MoveRecord`] while shard `s` is being moved to a new replica set.
//!   The rebalancer writes it, shard `s`'s leader carries it out, and the rebalancer deletes it
//!   once the shard's published membership equals the target; being in group 0, moves survive
//!   a change of metadata leader.
//! - `{meta}moves-done`: how many moves have completed (`INCR`).
//! - `{meta}user:<name>`: an ACL [`User`](crate::acl::User) (`ACL SETUSER`, any node).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shoal_protocol::key_slot;

use super::{NodeId, ShardId};
use crate::raft::types::NodeInfo;
use crate::store::{Keyspace, UnixMillis};

/// Fixed when the cluster is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterParams {
    pub shards: u32,
    pub replicas: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: NodeId,
    pub client_addr: String,
    pub peer_addr: String,
    /// The random token of the join request that admitted it: a retried request (its reply
    /// was lost) gets the same id back; a new process gets a new id.
    pub join_token: String,
    /// The node's `--tls-port` (TLS clients are redirected there), published by the node
    /// itself. Last, so a record written before it existed decodes as [`NodeRecordV1`] and an
    /// older binary reading a new record ignores it (bincode leaves trailing bytes unread).
    pub tls_port: Option<u16>,
}

/// A node record as written before `tls_port` (kept so those records stay readable).
#[derive(Deserialize)]
struct NodeRecordV1 {
    id: NodeId,
    client_addr: String,
    peer_addr: String,
    join_token: String,
}

impl NodeRecord {
    /// Decodes a record of either layout.
    pub fn decode(bytes: &[u8]) -> Option<NodeRecord> {
        decode::<NodeRecord>(bytes).or_else(|| {
            decode::<NodeRecordV1>(bytes).map(|v1| NodeRecord {
                id: v1.id,
                client_addr: v1.client_addr,
                peer_addr: v1.peer_addr,
                join_token: v1.join_token,
                tls_port: None,
            })
        })
    }

    /// The address TLS clients are sent to: the client address's host with the TLS port.
    pub fn tls_addr(&self) -> Option<String> {
        let port = self.tls_port?;
        let (host, _) = self.client_addr.rsplit_once(':')?;
        Some(format!("{host}:{port}"))
    }

    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            client_addr: self.client_addr.clone(),
            peer_addr: self.peer_addr.clone(),
        }
    }
}

/// A shard's Raft group as its leader last reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRecord {
    pub leader: NodeId,
    pub term: u64,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// The log index of the membership config the voters and learners come from: a replica
    /// whose own config is no newer, and that these do not name, has been removed.
    pub membership_index: u64,
}

/// Where a node stands in the cluster's life cycle. Placement uses only `Up` nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    /// Serving: holds its share of replicas.
    #[default]
    Up,
    /// Silent for longer than `--node-down-after`: its replicas are re-created elsewhere. It
    /// becomes `Up` again when it answers the metadata leader again.
    Down,
    /// Being drained (`CLUSTER FORGET`): its replicas move away, then it becomes `Left`.
    Leaving,
    /// Drained: holds nothing; it exits when it sees this, and is then removed from group 0.
    Left,
}

impl NodeState {
    pub fn name(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Down => "down",
            NodeState::Leaving => "leaving",
            NodeState::Left => "left",
        }
    }
}

/// A shard on its way to a new replica set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRecord {
    /// The voters the shard should end with.
    pub target: Vec<NodeId>,
    /// Its voters when the move started (for reporting).
    pub from: Vec<NodeId>,
    /// Wall-clock start (unix ms, the metadata leader's clock; for reporting).
    pub started_ms: u64,
}

pub const CLUSTER_KEY: &str = "{meta}cluster";
pub const MOVES_DONE_KEY: &str = "{meta}moves-done";
pub const NEXT_NODE_ID_KEY: &str = "{meta}next-node-id";

pub fn node_key(id: NodeId) -> String {
    format!("{{meta}}node:{id}")
}

pub fn shard_key(shard: ShardId) -> String {
    format!("{{meta}}shard:{shard}")
}

pub fn state_key(id: NodeId) -> String {
    format!("{{meta}}state:{id}")
}

pub fn user_key(name: &str) -> String {
    format!("{{meta}}user:{name}")
}

pub fn move_key(shard: ShardId) -> String {
    format!("{{meta}}move:{shard}")
}

pub fn encode<T: Serialize>(value: &T) -> Bytes {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("metadata records always encode")
        .into()
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    crate::raft::bounded_decode::decode_bounded(bytes)
        .ok()
        .map(|(v, _)| v)
}

/// Everything group 0 holds, decoded: what routing, the reconciler and `INFO` work from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    pub params: Option<ClusterParams>,
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    pub shards: BTreeMap<ShardId, ShardRecord>,
    /// Nodes whose state is not `Up`.
    pub states: BTreeMap<NodeId, NodeState>,
    pub moves: BTreeMap<ShardId, MoveRecord>,
    pub moves_done: u64,
    /// ACL users by name.
    pub users: BTreeMap<String, crate::acl::User>,
}

impl Topology {
    /// Reads group 0's keyspace (a replica's local copy: possibly a little stale).
    pub fn read(keyspace: &Keyspace, now: UnixMillis) -> Topology {
        let mut topology = Topology::default();
        let slot = keyspace.read_slot(key_slot(CLUSTER_KEY.as_bytes()));
        for entry in slot.table().iter() {
            if entry.is_expired(now) {
                continue;
            }
            let Ok(key) = std::str::from_utf8(entry.key()) else {
                continue;
            };
            let value = entry.value();
            if key == CLUSTER_KEY {
                topology.params = decode(value);
            } else if let Some(id) = key.strip_prefix("{meta}node:") {
                if let (Ok(id), Some(record)) = (id.parse(), NodeRecord::decode(value)) {
                    topology.nodes.insert(id, record);
                }
            } else if let Some(shard) = key.strip_prefix("{meta}shard:") {
                if let (Ok(shard), Some(record)) = (shard.parse(), decode::<ShardRecord>(value)) {
                    topology.shards.insert(shard, record);
                }
            } else if let Some(id) = key.strip_prefix("{meta}state:") {
                if let (Ok(id), Some(state)) = (id.parse(), decode::<NodeState>(value)) {
                    topology.states.insert(id, state);
                }
            } else if let Some(shard) = key.strip_prefix("{meta}move:") {
                if let (Ok(shard), Some(record)) = (shard.parse(), decode::<MoveRecord>(value)) {
                    topology.moves.insert(shard, record);
                }
            } else if let Some(name) = key.strip_prefix("{meta}user:") {
                if let Some(user) = decode(value) {
                    topology.users.insert(name.to_owned(), user);
                }
            } else if key == MOVES_DONE_KEY {
                topology.moves_done = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
            }
        }
        topology
    }

    pub fn state(&self, id: NodeId) -> NodeState {
        self.states.get(&id).copied().unwrap_or_default()
    }

    /// The nodes shard replicas may be placed on.
    pub fn up_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .keys()
            .copied()
            .filter(|&id| self.state(id) == NodeState::Up)
            .collect()
    }

    pub fn node_info(&self, id: NodeId) -> Option<NodeInfo> {
        self.nodes.get(&id).map(NodeRecord::info)
    }

    pub fn node_by_peer_addr(&self, peer_addr: &str) -> Option<NodeId> {
        self.nodes
            .values()
            .find(|n| n.peer_addr == peer_addr)
            .map(|n| n.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metadata_key_shares_one_slot() {
        let slot = key_slot(CLUSTER_KEY.as_bytes());
        for key in [
            NEXT_NODE_ID_KEY.to_owned(),
            MOVES_DONE_KEY.to_owned(),
            node_key(42),
            shard_key(7),
            state_key(3),
            move_key(5),
        ] {
            assert_eq!(key_slot(key.as_bytes()), slot, "{key}");
        }
    }

    #[test]
    fn records_round_trip_through_their_encoding() {
        let r = ShardRecord {
            leader: 2,
            term: 5,
            voters: vec![1, 2, 3],
            learners: vec![4],
            membership_index: 17,
        };
        assert_eq!(decode::<ShardRecord>(&encode(&r)), Some(r));
        assert_eq!(decode::<NodeRecord>(b"\xff\xff"), None);
    }

    /// Records written before `tls_port` existed still decode (as having no TLS port), and a
    /// new record read by an older binary yields the fields it knows.
    #[test]
    fn node_records_of_both_layouts_decode() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct Old {
            id: NodeId,
            client_addr: String,
            peer_addr: String,
            join_token: String,
        }
        let old = Old {
            id: 3,
            client_addr: "10.0.0.3:6379".into(),
            peer_addr: "10.0.0.3:16379".into(),
            join_token: "t".into(),
        };
        let record = NodeRecord::decode(&encode(&old)).expect("an old record decodes");
        assert_eq!((record.id, record.tls_port), (3, None));
        assert_eq!(record.client_addr, old.client_addr);
        assert_eq!(record.tls_addr(), None);

        let new = NodeRecord {
            tls_port: Some(6380),
            ..record
        };
        assert_eq!(NodeRecord::decode(&encode(&new)), Some(new.clone()));
        assert_eq!(new.tls_addr().as_deref(), Some("10.0.0.3:6380"));
        assert_eq!(decode::<Old>(&encode(&new)), Some(old));
    }
}
