//! The openraft type configuration every shard group (and the metadata group) uses.

use std::fmt;

use serde::{Deserialize, Serialize};
use shoal_protocol::Frame;

use crate::store::Proposal;

/// Where a node can be reached: clients on `client_addr`, peers on `peer_addr`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub client_addr: String,
    pub peer_addr: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client={} peer={}", self.client_addr, self.peer_addr)
    }
}

openraft::declare_raft_types!(
    /// shoal's Raft types: log entries are [`Proposal`]s, replies are RESP [`Frame`]s.
    pub TypeConfig:
        D = Proposal,
        R = Frame,
        NodeId = u64,
        Node = NodeInfo,
);

use openraft::alias;

pub type NodeId = u64;
pub type LogId = alias::LogIdOf<TypeConfig>;
pub type Entry = alias::EntryOf<TypeConfig>;
pub type Vote = alias::VoteOf<TypeConfig>;
pub type StoredMembership = alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = alias::SnapshotMetaOf<TypeConfig>;
pub type Raft = openraft::Raft<TypeConfig>;
