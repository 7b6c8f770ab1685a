//! The data a shard holds and the only way it changes.
//!
//! - `entry`: one key/value with its deadline, compactly laid out.
//! - `keyspace`: per-slot hash tables with their locks and key/deadline bookkeeping.
//! - `ops`: write operations as deterministic log entries.
//! - `state_machine`: applies entries, producing replies.
//! - `expiry`, `deadlines`: finds expired keys for the leader to delete (through each slot's
//!   deadline index).
//! - `access`, `eviction`: access words (LRU/LFU) and the choice of victims under `maxmemory`.
//! - `dump`: Redis's `DUMP` serialization format (RDB objects) of any value.
//! - `pack`: the flat buffers of small collections (listpack-like strings and scores, intset).
//! - `quicklist`: lists as a deque of packed chunks.
//! - `value`: collection values (hash, list, set, sorted set) and their encodings.

pub mod access;
pub mod deadlines;
pub mod dump;
pub mod entry;
pub mod eviction;
pub mod expiry;
pub mod keyspace;
pub mod ops;
pub mod pack;
pub mod quicklist;
pub mod state_machine;
pub mod value;

pub use entry::{Entry, UnixMillis};
pub use keyspace::Keyspace;
pub use ops::{Condition, ExpireCondition, Expiry, Proposal, TxStep, Watched, WriteOp};
pub use state_machine::{OnWritten, StateMachine, TxReader};

/// The wall clock in unix milliseconds. Only proposers and readers call this; `apply` never does.
/// Commands use [`Clock`] instead, which costs no extra clock read.
pub fn now_ms() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Wall-clock milliseconds derived from a monotonic `Instant` the caller already read, so a
/// command reads the clock once for both its timing and its notion of "now". The offset is
/// re-synchronised with the wall clock periodically (see [`Clock::resync`]).
pub struct Clock {
    origin: std::time::Instant,
    offset_ms: std::sync::atomic::AtomicU64,
}

impl Default for Clock {
    fn default() -> Self {
        let clock = Clock {
            origin: std::time::Instant::now(),
            offset_ms: std::sync::atomic::AtomicU64::new(0),
        };
        clock.resync();
        clock
    }
}

impl Clock {
    /// Unix milliseconds at `at`.
    pub fn wall_ms(&self, at: std::time::Instant) -> UnixMillis {
        let mono = at.saturating_duration_since(self.origin).as_millis() as u64;
        self.offset_ms.load(std::sync::atomic::Ordering::Relaxed) + mono
    }

    /// Re-aligns with the wall clock (it may have been stepped since the last call).
    pub fn resync(&self) {
        let mono = self.origin.elapsed().as_millis() as u64;
        self.offset_ms.store(
            now_ms().saturating_sub(mono),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}
