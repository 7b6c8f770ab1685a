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
}

impl NodeRecord {
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
}

pub const CLUSTER_KEY: &str = "{meta}cluster";
pub const NEXT_NODE_ID_KEY: &str = "{meta}next-node-id";

pub fn node_key(id: NodeId) -> String {
    format!("{{meta}}node:{id}")
}

pub fn shard_key(shard: ShardId) -> String {
    format!("{{meta}}shard:{shard}")
}

pub fn encode<T: Serialize>(value: &T) -> Bytes {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("metadata records always encode")
        .into()
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .ok()
        .map(|(v, _)| v)
}

/// Everything group 0 holds, decoded: what routing, the reconciler and `INFO` work from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    pub params: Option<ClusterParams>,
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    pub shards: BTreeMap<ShardId, ShardRecord>,
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
                if let (Ok(id), Some(record)) = (id.parse(), decode::<NodeRecord>(value)) {
                    topology.nodes.insert(id, record);
                }
            } else if let Some(shard) = key.strip_prefix("{meta}shard:") {
                if let (Ok(shard), Some(record)) = (shard.parse(), decode::<ShardRecord>(value)) {
                    topology.shards.insert(shard, record);
                }
            }
        }
        topology
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
        for key in [NEXT_NODE_ID_KEY.to_owned(), node_key(42), shard_key(7)] {
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
        };
        assert_eq!(decode::<ShardRecord>(&encode(&r)), Some(r));
        assert_eq!(decode::<NodeRecord>(b"\xff\xff"), None);
    }
}
