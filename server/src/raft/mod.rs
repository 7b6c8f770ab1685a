//! Raft plumbing shared by every group: the type configuration, the durable log store, the
//! state-machine adapter with its snapshots, and (next) the peer network.
//!
//! Each module holds one openraft trait implementation and nothing else, so a shard replica
//! (`shard.rs`) composes them without reaching into their internals.

pub mod bounded_decode;
pub mod handshake;
pub mod log_store;
pub mod network;
pub mod peer;
pub mod peer_tls;
pub mod state_machine;
pub mod types;
pub mod wire;
