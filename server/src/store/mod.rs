//! The data a shard holds and the only way it changes.
//!
//! - `entry`: one key/value with its deadline, compactly laid out.
//! - `keyspace`: per-slot hash tables with their locks and key/deadline bookkeeping.
//! - `ops`: write operations as deterministic log entries.
//! - `state_machine`: applies entries, producing replies.
//! - `expiry`: finds expired keys for the leader to delete.

pub mod entry;
pub mod expiry;
pub mod keyspace;
pub mod ops;
pub mod state_machine;

pub use entry::{Entry, UnixMillis};
pub use keyspace::Keyspace;
pub use ops::{Condition, ExpireCondition, Expiry, Proposal, WriteOp};
pub use state_machine::StateMachine;

/// The wall clock in unix milliseconds. Only proposers and readers call this; `apply` never does.
pub fn now_ms() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
