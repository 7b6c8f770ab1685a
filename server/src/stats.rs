//! Counters behind `INFO stats` and `INFO commandstats`.

use std::sync::atomic::{AtomicU64, Ordering};

use shoal_protocol::{CommandId, COMMANDS};

#[derive(Default)]
pub struct CommandStat {
    pub calls: AtomicU64,
    pub usec: AtomicU64,
    pub failed: AtomicU64,
    pub rejected: AtomicU64,
}

pub struct Stats {
    pub connections_received: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub commands_processed: AtomicU64,
    pub keyspace_hits: AtomicU64,
    pub keyspace_misses: AtomicU64,
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
    pub protocol_errors: AtomicU64,
    /// Indexed by `CommandId as usize`.
    pub commands: Vec<CommandStat>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            connections_received: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            commands_processed: AtomicU64::new(0),
            keyspace_hits: AtomicU64::new(0),
            keyspace_misses: AtomicU64::new(0),
            net_input_bytes: AtomicU64::new(0),
            net_output_bytes: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            commands: COMMANDS.iter().map(|_| CommandStat::default()).collect(),
        }
    }
}

impl Stats {
    pub fn command(&self, id: CommandId) -> &CommandStat {
        &self.commands[id as usize]
    }

    /// Counts a lookup that found (`hit`) or missed a key.
    pub fn lookup(&self, hit: bool) {
        let counter = if hit {
            &self.keyspace_hits
        } else {
            &self.keyspace_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `CONFIG RESETSTAT`.
    pub fn reset(&self) {
        for c in [
            &self.connections_received,
            &self.rejected_connections,
            &self.commands_processed,
            &self.keyspace_hits,
            &self.keyspace_misses,
            &self.net_input_bytes,
            &self.net_output_bytes,
            &self.protocol_errors,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        for c in &self.commands {
            for v in [&c.calls, &c.usec, &c.failed, &c.rejected] {
                v.store(0, Ordering::Relaxed);
            }
        }
    }
}
