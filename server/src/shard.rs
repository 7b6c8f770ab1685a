//! A shard replica: the state machine plus the path writes take into it.
//!
//! Today a node has one shard and applies proposals directly; the replication work puts an
//! openraft group between [`Shard::propose`] and [`StateMachine::apply`] without changing either
//! side's contract: callers hand over a deterministic [`WriteOp`] and get the reply `apply`
//! produced.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use shoal_protocol::Frame;
use tokio_util::sync::CancellationToken;

use crate::store::expiry::{ExpiryCursor, BUDGET, TICK};
use crate::store::{now_ms, Keyspace, Proposal, StateMachine, UnixMillis, WriteOp};

pub struct Shard {
    state_machine: StateMachine,
    /// Keys deleted by active expiry (INFO's `expired_keys`).
    expired_keys: AtomicU64,
}

impl Default for Shard {
    fn default() -> Self {
        Self::new()
    }
}

impl Shard {
    pub fn new() -> Shard {
        Shard {
            state_machine: StateMachine::new(Arc::new(Keyspace::new())),
            expired_keys: AtomicU64::new(0),
        }
    }

    /// The keyspace, for reads. Readers judge expiry with their own clock and never delete.
    pub fn keyspace(&self) -> &Keyspace {
        self.state_machine.keyspace()
    }

    /// Stamps `op` with the proposer's clock reading `now_ms` and applies it; returns the reply.
    pub fn propose(&self, op: WriteOp, now_ms: UnixMillis) -> Frame {
        self.state_machine.apply(&Proposal { now_ms, op })
    }

    pub fn expired_keys(&self) -> u64 {
        self.expired_keys.load(Ordering::Relaxed)
    }

    /// Active expiry for this shard, until `shutdown`.
    pub async fn run_active_expiry(self: Arc<Self>, shutdown: CancellationToken) {
        let mut cursor = ExpiryCursor::default();
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let shard = self.clone();
            // Scanning holds slot read locks and costs CPU: keep it off the async workers.
            let deleted = tokio::task::spawn_blocking(move || {
                let batches = cursor.collect_due(shard.keyspace(), now_ms(), BUDGET);
                let mut deleted = 0;
                for keys in batches {
                    if let Frame::Integer(n) =
                        shard.propose(WriteOp::DeleteExpired { keys }, now_ms())
                    {
                        deleted += n as u64;
                    }
                }
                (cursor, deleted)
            })
            .await;
            match deleted {
                Ok((c, n)) => {
                    cursor = c;
                    self.expired_keys.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::error!(error = %e, "active expiry task failed");
                    return;
                }
            }
        }
    }
}
