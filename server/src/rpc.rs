//! Everything one node asks another over the peer connection.
//!
//! One framing and one connection per node pair carry all of it (see `raft::peer`): Raft RPCs
//! for any group, client commands forwarded to a shard leader, and join requests. The
//! `PeerMessage::group` field routes Raft RPCs; the other kinds carry what they need inside.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use shoal_protocol::Frame;

use crate::commands::transaction::TxRequest;
use crate::raft::network::{RaftRequest, RaftResponse};
use crate::raft::types::NodeId;

/// A Raft group: 0 is the metadata group, shard `s` is group `s + 1`.
pub type GroupId = u64;

/// The metadata group (nodes, cluster parameters, shard leaders).
pub const META_GROUP: GroupId = 0;

#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    Raft(RaftRequest),
    /// Commands for groups the receiver should lead, executed in order as one pipeline.
    Forward(Vec<ForwardItem>),
    /// A new node asks to be added to the cluster.
    Join(JoinRequest),
    /// `WATCH` / `EXEC` for a group the receiver should lead.
    Tx(TxRequest),
    /// A message published on the sender: deliver it to the receiver's subscribers.
    Publish {
        channel: Bytes,
        message: Bytes,
        /// By `SPUBLISH` (for shard-channel subscribers).
        shard: bool,
    },
    /// The client of a blocking command forwarded by `origin` has left: drop its wait.
    CancelWait {
        origin: NodeId,
        wait: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    Raft(RaftResponse),
    /// One reply per forwarded item, in order.
    Forward(Vec<ForwardReply>),
    Join(Result<JoinReply, String>),
    Tx(ForwardReply),
    /// How many subscribers on the receiver got the message.
    Published(usize),
    /// `CancelWait` was taken.
    WaitCancelled,
}

/// One client command to run against one group on the node that leads it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ForwardItem {
    pub group: GroupId,
    /// The request, command name first.
    pub args: Vec<Bytes>,
    /// Whether it counts in the leader's command statistics (not for nodes' own requests).
    pub counted: bool,
    /// A blocking command's wait id, for `PeerRequest::CancelWait`.
    pub wait: Option<crate::blocking::forwarded::WaitId>,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardReply {
    /// The command ran; this is its reply.
    Reply(Frame),
    /// The receiver does not lead the group (nothing was proposed); `leader` is its hint.
    NotLeader { leader: Option<NodeId> },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub client_addr: String,
    pub peer_addr: String,
    /// Random, one per joining process: makes retries idempotent.
    pub token: String,
}

/// What a joining node learns: its id and the cluster's fixed parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinReply {
    pub node_id: NodeId,
    pub shards: u32,
    pub replicas: u32,
}
