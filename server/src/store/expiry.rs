//! Active expiry: reclaims expired keys promptly without scanning the whole keyspace.
//!
//! Reads already treat a past deadline as absent (lazy expiry); this task frees the memory. The
//! algorithm: every slot publishes a lower bound of its earliest deadline. Ten times a second
//! the task checks all 16384 bounds (cheap atomic loads) and scans only the slots whose bound has
//! passed, collecting their expired keys and recomputing the bound. The keys found are deleted by
//! proposing `DeleteExpired` entries, like any other write, so on a replicated shard only the
//! leader decides what expires and followers never expire on their own.
//!
//! Compared with Redis's random sampling this finds every expired key on the first tick after its
//! deadline (Redis may leave up to ~25% behind) and costs no memory per key beyond the deadline;
//! a slot with many keys of scattered deadlines is rescanned when each is due, which the per-tick
//! time budget bounds.

use std::time::{Duration, Instant};

use bytes::Bytes;
use shoal_protocol::SLOT_COUNT;

use super::entry::UnixMillis;
use super::keyspace::Keyspace;

/// How often the task runs (Redis's default `hz` is 10).
pub const TICK: Duration = Duration::from_millis(100);
/// CPU time one tick may spend scanning (Redis gives active expiry 25% of a tick).
pub const BUDGET: Duration = Duration::from_millis(25);
/// Keys per `DeleteExpired` entry.
pub const BATCH: usize = 512;

/// Resumable scan position across ticks, so a budget cut never starves later slots.
#[derive(Default)]
pub struct ExpiryCursor {
    next_slot: u16,
}

impl ExpiryCursor {
    /// Scans due slots starting where the last cycle stopped, until all were visited or the
    /// budget is spent; returns batches of expired keys to delete.
    pub fn collect_due(
        &mut self,
        ks: &Keyspace,
        now: UnixMillis,
        budget: Duration,
    ) -> Vec<Vec<Bytes>> {
        let started = Instant::now();
        let mut batches = Vec::new();
        let mut current = Vec::new();
        for _ in 0..SLOT_COUNT {
            let slot = self.next_slot;
            self.next_slot = (self.next_slot + 1) % SLOT_COUNT;
            if ks.slot_next_deadline(slot).is_some_and(|at| at < now) {
                ks.expired_in_slot(slot, now, &mut current);
                if current.len() >= BATCH {
                    batches.push(std::mem::take(&mut current));
                }
                if started.elapsed() > budget {
                    break;
                }
            }
        }
        if !current.is_empty() {
            batches.push(current);
        }
        batches
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::entry::Entry;

    #[test]
    fn finds_every_expired_key_and_only_those() {
        let ks = Keyspace::new();
        for i in 0..2000u64 {
            let key = format!("key:{i}");
            let deadline = if i % 2 == 0 { 1000 } else { 5000 };
            ks.write_slots([key.as_bytes()])
                .insert(Entry::new(key.as_bytes(), b"v", deadline));
        }
        ks.write_slots([&b"persistent"[..]])
            .insert(Entry::new(b"persistent", b"v", 0));
        let mut cursor = ExpiryCursor::default();
        assert!(cursor
            .collect_due(&ks, 1000, Duration::from_secs(5))
            .is_empty());
        let found: usize = cursor
            .collect_due(&ks, 1001, Duration::from_secs(5))
            .iter()
            .map(Vec::len)
            .sum();
        assert_eq!(found, 1000);
    }
}
