//! Per-command latency histograms: what `LATENCY HISTOGRAM`, `INFO latencystats` and the
//! Prometheus histograms read.
//!
//! A request's latency runs from the moment its command was resolved to the moment its reply
//! is ready, so for a write it includes the Raft commit and for a forwarded request the round
//! trip to the leader (Redis measures only execution; in shoal the commit is the part that
//! matters). Buckets are powers of two of microseconds, as Redis's `LATENCY HISTOGRAM` shows
//! them. Like [`crate::stats`], counters are sharded by thread so recording never bounces a
//! shared cache line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shoal_protocol::{CommandId, COMMANDS};

use crate::stats::{shard_index, SHARDS};

/// Bucket `i` counts latencies below `2^i` µs (and at least `2^(i-1)`); the last one also
/// takes everything slower (2^25 µs is about 33 s).
pub const BUCKETS: usize = 26;

#[derive(Default)]
struct CommandLatency {
    buckets: [AtomicU64; BUCKETS],
    sum_usec: AtomicU64,
}

#[repr(align(128))]
struct Shard {
    commands: Box<[CommandLatency]>,
}

pub struct LatencyStats {
    shards: Box<[Shard]>,
}

/// One command's latencies summed over threads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Count per bucket (not cumulative): `counts[i]` are below `2^i` µs.
    pub counts: [u64; BUCKETS],
    pub sum_usec: u64,
}

impl Histogram {
    pub fn calls(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Upper bound (µs) of bucket `i`.
    pub fn bound_usec(i: usize) -> u64 {
        1u64 << i
    }

    /// The latency (µs, a bucket's upper bound) below which `p` percent of calls fall.
    pub fn percentile_usec(&self, p: f64) -> u64 {
        let calls = self.calls();
        if calls == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * calls as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::bound_usec(i);
            }
        }
        Self::bound_usec(BUCKETS - 1)
    }

    pub fn add(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.sum_usec += other.sum_usec;
    }
}

fn bucket_of(usec: u64) -> usize {
    // Values below 2^i µs land in bucket i: 0 µs → 0, 1 µs → 1, 2-3 µs → 2, ...
    ((u64::BITS - usec.leading_zeros()) as usize).min(BUCKETS - 1)
}

impl Default for LatencyStats {
    fn default() -> Self {
        LatencyStats {
            shards: (0..SHARDS)
                .map(|_| Shard {
                    commands: COMMANDS.iter().map(|_| CommandLatency::default()).collect(),
                })
                .collect(),
        }
    }
}

impl LatencyStats {
    pub fn record(&self, id: CommandId, took: Duration) {
        let usec = took.as_micros().min(u64::MAX as u128) as u64;
        let c = &self.shards[shard_index()].commands[id as usize];
        c.buckets[bucket_of(usec)].fetch_add(1, Ordering::Relaxed);
        c.sum_usec.fetch_add(usec, Ordering::Relaxed);
    }

    pub fn command(&self, id: CommandId) -> Histogram {
        let mut h = Histogram::default();
        for shard in self.shards.iter() {
            let c = &shard.commands[id as usize];
            for (total, b) in h.counts.iter_mut().zip(&c.buckets) {
                *total += b.load(Ordering::Relaxed);
            }
            h.sum_usec += c.sum_usec.load(Ordering::Relaxed);
        }
        h
    }

    /// `CONFIG RESETSTAT` and `LATENCY RESET`.
    pub fn reset(&self) {
        for shard in self.shards.iter() {
            for c in shard.commands.iter() {
                for b in c.buckets.iter().chain([&c.sum_usec]) {
                    b.store(0, Ordering::Relaxed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two_of_microseconds() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 1);
        assert_eq!(bucket_of(3), 2);
        assert_eq!(bucket_of(4), 3);
        assert_eq!(bucket_of(1023), 10);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_come_from_the_buckets() {
        let stats = LatencyStats::default();
        for _ in 0..90 {
            stats.record(CommandId::Get, Duration::from_micros(10));
        }
        for _ in 0..10 {
            stats.record(CommandId::Get, Duration::from_millis(3));
        }
        let h = stats.command(CommandId::Get);
        assert_eq!(h.calls(), 100);
        assert_eq!(h.sum_usec, 90 * 10 + 10 * 3000);
        assert_eq!(h.percentile_usec(50.0), 16);
        assert_eq!(h.percentile_usec(90.0), 16);
        assert_eq!(h.percentile_usec(99.0), 4096);
        assert_eq!(stats.command(CommandId::Set).calls(), 0);
        stats.reset();
        assert_eq!(stats.command(CommandId::Get).calls(), 0);
    }
}
