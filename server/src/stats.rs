//! Counters behind `INFO stats` and `INFO commandstats`.
//!
//! Counters touched on every command are sharded by thread: each worker thread adds to its own
//! cache-line-aligned shard, and `INFO` sums the shards. One shared atomic per command would
//! bounce its cache line between cores on every request.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use shoal_protocol::{CommandId, COMMANDS};

pub(crate) const SHARDS: usize = 16;

#[derive(Default)]
struct CommandStat {
    calls: AtomicU64,
    usec: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
}

/// What one thread counts. Aligned so two shards never share a cache line.
#[repr(align(128))]
struct Shard {
    commands: Box<[CommandStat]>,
    keyspace_hits: AtomicU64,
    keyspace_misses: AtomicU64,
}

/// Totals of one command across shards.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommandTotals {
    pub calls: u64,
    pub usec: u64,
    pub failed: u64,
    pub rejected: u64,
}

pub struct Stats {
    shards: Box<[Shard]>,
    pub connections_received: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
    pub protocol_errors: AtomicU64,
    /// Clients closed for passing `client-query-buffer-limit`.
    pub query_buffer_limit_disconnections: AtomicU64,
    /// Clients closed for passing `client-output-buffer-limit`.
    pub output_buffer_limit_disconnections: AtomicU64,
    /// Requests this node forwarded to the shard's leader on another node.
    pub forwarded: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            shards: (0..SHARDS)
                .map(|_| Shard {
                    commands: COMMANDS.iter().map(|_| CommandStat::default()).collect(),
                    keyspace_hits: AtomicU64::new(0),
                    keyspace_misses: AtomicU64::new(0),
                })
                .collect(),
            connections_received: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            net_input_bytes: AtomicU64::new(0),
            net_output_bytes: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            query_buffer_limit_disconnections: AtomicU64::new(0),
            output_buffer_limit_disconnections: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
        }
    }
}

/// This thread's shard index, assigned round-robin on first use.
pub(crate) fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    INDEX.with(|i| *i)
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Stats {
    fn shard(&self) -> &Shard {
        &self.shards[shard_index()]
    }

    /// Counts a completed command.
    pub fn record(&self, id: CommandId, usec: u64, failed: bool) {
        let stat = &self.shard().commands[id as usize];
        add(&stat.calls, 1);
        add(&stat.usec, usec);
        if failed {
            add(&stat.failed, 1);
        }
    }

    /// Counts a command refused before it ran (e.g. not authenticated).
    pub fn reject(&self, id: CommandId) {
        add(&self.shard().commands[id as usize].rejected, 1);
    }

    /// Counts a lookup that found (`hit`) or missed a key.
    pub fn lookup(&self, hit: bool) {
        let shard = self.shard();
        add(
            if hit {
                &shard.keyspace_hits
            } else {
                &shard.keyspace_misses
            },
            1,
        );
    }

    pub fn command(&self, id: CommandId) -> CommandTotals {
        let mut t = CommandTotals::default();
        for shard in self.shards.iter() {
            let s = &shard.commands[id as usize];
            t.calls += s.calls.load(Ordering::Relaxed);
            t.usec += s.usec.load(Ordering::Relaxed);
            t.failed += s.failed.load(Ordering::Relaxed);
            t.rejected += s.rejected.load(Ordering::Relaxed);
        }
        t
    }

    /// Every command run or refused (INFO's `total_commands_processed`).
    pub fn commands_processed(&self) -> u64 {
        COMMANDS
            .iter()
            .map(|c| {
                let t = self.command(c.id);
                t.calls + t.rejected
            })
            .sum()
    }

    pub fn error_replies(&self) -> u64 {
        COMMANDS
            .iter()
            .map(|c| {
                let t = self.command(c.id);
                t.failed + t.rejected
            })
            .sum()
    }

    pub fn keyspace_hits(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.keyspace_hits.load(Ordering::Relaxed))
            .sum()
    }

    pub fn keyspace_misses(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.keyspace_misses.load(Ordering::Relaxed))
            .sum()
    }

    /// `CONFIG RESETSTAT`.
    pub fn reset(&self) {
        let zero = |c: &AtomicU64| c.store(0, Ordering::Relaxed);
        for shard in self.shards.iter() {
            zero(&shard.keyspace_hits);
            zero(&shard.keyspace_misses);
            for c in shard.commands.iter() {
                for v in [&c.calls, &c.usec, &c.failed, &c.rejected] {
                    zero(v);
                }
            }
        }
        for c in [
            &self.connections_received,
            &self.rejected_connections,
            &self.net_input_bytes,
            &self.net_output_bytes,
            &self.protocol_errors,
            &self.query_buffer_limit_disconnections,
            &self.output_buffer_limit_disconnections,
            &self.forwarded,
        ] {
            zero(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_every_thread() {
        let stats = std::sync::Arc::new(Stats::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = stats.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        s.record(CommandId::Get, 2, false);
                    }
                    s.record(CommandId::Get, 0, true);
                    s.reject(CommandId::Set);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let get = stats.command(CommandId::Get);
        assert_eq!((get.calls, get.usec, get.failed), (404, 800, 4));
        assert_eq!(stats.command(CommandId::Set).rejected, 4);
        assert_eq!(stats.commands_processed(), 408);
        stats.reset();
        assert_eq!(stats.commands_processed(), 0);
    }
}
