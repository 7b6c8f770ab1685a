//! A replica of one Raft group hosted by this node: its durable log, its state machine (a
//! keyspace of its own) and the openraft instance that joins the two.
//!
//! Writes go in through [`Replica::submit`] (proposed with openraft; the reply comes from
//! `apply`), linearizable reads wait on [`Replica::read_barrier`] and then read
//! [`Replica::keyspace`]. The state machine is the keyspace's only writer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::impls::ProgressResponder;
use openraft::{ReadPolicy, SnapshotPolicy};
use shoal_protocol::Frame;
use tokio_util::sync::CancellationToken;

use crate::error::CommandError;
use crate::raft::log_store::{FsyncPolicy, LogStore};
use crate::raft::network::{GroupNetworkFactory, PeerPool};
use crate::raft::state_machine::ShardStateMachine;
use crate::raft::types::{NodeId, TypeConfig};
use crate::rpc::GroupId;
use crate::store::eviction::{choose_victims, MemoryLimits, Policy, SampledSlots};
use crate::store::expiry::{cycle_due, ExpiryCursor, BUDGET, TICK};
use crate::store::{now_ms, Keyspace, Proposal, StateMachine, TxReader, WriteOp};

pub type GroupRaft = openraft::Raft<TypeConfig, ShardStateMachine>;

/// Why a write or read could not be served by this replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotServed {
    /// This replica is not the leader; nothing was proposed. The leader, if known.
    NotLeader(Option<NodeId>),
    /// The entry was appended but leadership changed before it committed here: it may or may
    /// not take effect. Not safe to retry blindly.
    Unknown(String),
    /// The group has stopped (fatal storage error or shutdown).
    Stopped(String),
}

/// How Raft is tuned for every group: failover within a second, compaction every
/// `snapshot_entries` entries.
///
/// A follower grants no vote while its leader's lease (openraft: `election_timeout_max` since
/// it last heard from the leader) runs, so a candidate whose timer fires before the other
/// voters' leases end is refused and tries again one timeout later: the worst case is about
/// two timeouts. With 200-250 ms that is about 450-500 ms, plus the vote round (measured with
/// `scripts/failover.sh`: p50 0.49 s, p99 0.76 s); heartbeats every 40 ms leave five to miss
/// before an election starts, and the timeout stays over 10x the 1-10 ms an fsynced append
/// takes here.
pub fn raft_config(snapshot_entries: u64) -> Arc<openraft::Config> {
    Arc::new(
        openraft::Config {
            cluster_name: "shoal".into(),
            heartbeat_interval: 40,
            election_timeout_min: 200,
            election_timeout_max: 250,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_entries),
            // Keep some log behind a snapshot so a briefly lagging follower catches up from the
            // log rather than needing a whole snapshot.
            max_in_snapshot_log_to_keep: 1000,
            // Under `appendfsync everysec|no` a follower acknowledges entries before they are
            // fsynced, so a crash can shorten its log below what the leader counted. Let the
            // leader replicate to it again from where it really is (without this, openraft's
            // leader stops on that follower: a debug assertion, a stuck replica in release).
            // Under `always` a follower never loses an acknowledged entry, so this never fires.
            allow_log_reversion: Some(true),
            // A leader that restarts must win an election again rather than resume its term.
            // A resumed leader takes its read index from its persisted committed index, which
            // the log store writes lazily (behind the appends), so a read right after a
            // restart could miss acknowledged writes; a new term's first entry lies past them.
            enable_leader_restore: Some(false),
            // A node that cannot win (partitioned, or a replica removed from its group that
            // never heard so) asks first instead of raising its term on every timeout, so it
            // does not depose a healthy leader when it is heard again.
            enable_pre_vote: Some(true),
            ..Default::default()
        }
        .validate()
        .expect("valid raft config"),
    )
}

pub struct Replica {
    pub group: GroupId,
    pub raft: GroupRaft,
    keyspace: Arc<Keyspace>,
    dir: PathBuf,
    /// Keys deleted by active expiry while this replica led (INFO's `expired_keys`).
    expired_keys: AtomicU64,
    /// The node's `maxmemory` settings.
    limits: Arc<MemoryLimits>,
    /// Keys deleted by eviction while this replica led (INFO's `evicted_keys`).
    evicted_keys: AtomicU64,
    /// Wakes the eviction task when a write finds the shard over its budget.
    evict_wake: tokio::sync::Notify,
    /// Set while the shard is over budget and its policy finds nothing to evict: writes that
    /// may grow memory get the OOM error, as in Redis.
    cannot_evict: AtomicBool,
    /// Reads waiting for the next leadership confirmation.
    read_gate: parking_lot::Mutex<ReadGate>,
    /// Clients blocked on this group's keys (while it leads), woken by `apply`.
    pub waiters: Arc<crate::blocking::Waiters>,
    /// The log store's in-memory entries (see [`Replica::log_memory`]).
    log_memory: crate::raft::log_store::LogReader,
    /// Bytes held by a running snapshot build's copy-on-write images.
    snapshot_memory: Arc<std::sync::atomic::AtomicUsize>,
}

/// Linearizable reads waiting for a leadership confirmation. One confirmation round runs at
/// a time and serves every read that arrived before it began; reads arriving during a round
/// wait for the next one (a round that began earlier could miss a write acknowledged between
/// its start and their arrival).
#[derive(Default)]
struct ReadGate {
    round_running: bool,
    next_round: Vec<tokio::sync::oneshot::Sender<Result<(), NotServed>>>,
}

/// What a replica takes from the node hosting it.
pub struct ReplicaEnv {
    pub fsync: FsyncPolicy,
    pub config: Arc<openraft::Config>,
    pub pool: PeerPool,
    /// Runs a transaction's reads inside `apply` (see `WriteOp::Exec`).
    pub tx_reader: Option<TxReader>,
    pub limits: Arc<MemoryLimits>,
}

impl Replica {
    /// Opens (or creates) the replica of `group` under `dir`: loads the newest snapshot, replays
    /// the log, and starts the Raft instance (uninitialized if the directory was empty).
    pub async fn open(
        node_id: NodeId,
        group: GroupId,
        dir: &Path,
        env: ReplicaEnv,
    ) -> std::io::Result<Arc<Replica>> {
        let ReplicaEnv {
            fsync,
            config,
            pool,
            tx_reader,
            limits,
        } = env;
        let dir = dir.to_path_buf();
        let d = dir.clone();
        let keyspace = Arc::new(Keyspace::with_tracking(limits.tracking.clone()));
        let waiters = Arc::new(crate::blocking::Waiters::new(keyspace.clone()));
        let woken = waiters.clone();
        let (log, sm, keyspace) = tokio::task::spawn_blocking(move || {
            let log = LogStore::open(&d.join("log"), fsync).map_err(std::io::Error::from)?;
            let mut sm = StateMachine::with_tx_reader(keyspace.clone(), tx_reader);
            sm.set_on_written(Arc::new(move |keys, now| woken.written(keys, now)));
            let ids = crate::cluster::events::GroupIds {
                node: node_id,
                group,
            };
            let sm = ShardStateMachine::open(&d.join("snapshots"), sm, ids)?;
            Ok::<_, std::io::Error>((log, sm, keyspace))
        })
        .await
        .map_err(std::io::Error::other)??;
        let log_memory = log.reader();
        let snapshot_memory = sm.capture_memory();
        let network = GroupNetworkFactory::<tokio::fs::File>::new(group, pool);
        let raft = GroupRaft::new(node_id, config, network, log, sm)
            .await
            .map_err(|e| std::io::Error::other(format!("starting raft group {group}: {e}")))?;
        Ok(Arc::new(Replica {
            group,
            raft,
            keyspace,
            dir,
            expired_keys: AtomicU64::new(0),
            limits,
            evicted_keys: AtomicU64::new(0),
            evict_wake: tokio::sync::Notify::new(),
            cannot_evict: AtomicBool::new(false),
            read_gate: parking_lot::Mutex::default(),
            waiters,
            log_memory,
            snapshot_memory,
        }))
    }

    /// The replica's data, for reads. Readers judge expiry with their own clock, never delete.
    pub fn keyspace(&self) -> &Keyspace {
        &self.keyspace
    }

    /// Bytes the unpurged Raft log holds in memory (encoded entries and their map): what this
    /// replica keeps for followers and for recovery beyond its data, like Redis's replication
    /// backlog.
    pub fn log_memory(&self) -> usize {
        self.log_memory.memory()
    }

    /// Bytes a running snapshot build holds in copies of slots written since it began.
    pub fn snapshot_memory(&self) -> usize {
        self.snapshot_memory.load(Ordering::Relaxed)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn is_leader(&self) -> bool {
        self.raft.is_leader()
    }

    /// The leader this replica knows of (itself included).
    pub fn leader(&self) -> Option<NodeId> {
        use openraft::async_runtime::WatchReceiver;
        self.raft.metrics().borrow_watched().current_leader
    }

    /// A copy of the group's current Raft metrics (state, term, indexes, membership).
    pub fn metrics(&self) -> openraft::RaftMetrics<TypeConfig> {
        use openraft::async_runtime::WatchReceiver;
        self.raft.metrics().borrow_watched().clone()
    }

    /// Proposes `proposal`; the ticket resolves to the reply `apply` produced.
    ///
    /// The proposal is queued to Raft before this returns, so calls made one after another are
    /// appended in that order even though their replies are awaited later.
    pub async fn submit(&self, proposal: Proposal) -> Result<WriteTicket, NotServed> {
        if !self.raft.is_leader() {
            return Err(NotServed::NotLeader(self.leader()));
        }
        let (responder, rx) = ProgressResponder::<TypeConfig, _>::complete_only();
        self.raft
            .write(proposal)
            .responder(responder)
            .await
            .map_err(|e| NotServed::Stopped(e.to_string()))?;
        Ok(WriteTicket(rx))
    }

    /// Proposes and waits for the reply.
    pub async fn write(&self, proposal: Proposal) -> Result<Frame, NotServed> {
        self.submit(proposal).await?.reply().await
    }

    /// Waits until a read of this replica's keyspace is linearizable: this node is still the
    /// leader (a quorum acknowledged it after the call began) and everything committed before
    /// the call has been applied. Concurrent callers share confirmation rounds ([`ReadGate`]).
    pub async fn read_barrier(self: &Arc<Self>) -> Result<(), NotServed> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let start = {
            let mut gate = self.read_gate.lock();
            gate.next_round.push(tx);
            !std::mem::replace(&mut gate.round_running, true)
        };
        if start {
            tokio::spawn(self.clone().run_read_rounds());
        }
        rx.await
            .unwrap_or_else(|_| Err(NotServed::Stopped("read barrier dropped".into())))
    }

    async fn run_read_rounds(self: Arc<Self>) {
        loop {
            let waiters = {
                let mut gate = self.read_gate.lock();
                if gate.next_round.is_empty() {
                    gate.round_running = false;
                    return;
                }
                std::mem::take(&mut gate.next_round)
            };
            let result = self.confirm_leadership().await;
            for w in waiters {
                let _ = w.send(result.clone());
            }
        }
    }

    async fn confirm_leadership(&self) -> Result<(), NotServed> {
        use openraft::error::{LinearizableReadError, RaftError};
        match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
                Err(NotServed::NotLeader(f.leader_id))
            }
            Err(RaftError::APIError(e)) => {
                tracing::debug!(group = self.group, error = %e, "read barrier failed");
                Err(NotServed::NotLeader(None))
            }
            Err(RaftError::Fatal(e)) => Err(NotServed::Stopped(e.to_string())),
        }
    }

    pub fn expired_keys(&self) -> u64 {
        self.expired_keys.load(Ordering::Relaxed)
    }

    /// Active expiry, while this replica leads: finds keys past their deadline and proposes
    /// their deletion. Followers never delete on their own; they apply these entries.
    pub async fn run_active_expiry(self: Arc<Self>, shutdown: CancellationToken) {
        let mut cursor = ExpiryCursor::default();
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_cycle = std::time::Instant::now();
        let mut last_found = 0;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if !cycle_due(last_cycle.elapsed(), last_found) {
                continue;
            }
            // Nothing due (the common case while idle): no need to hand over to a blocking
            // thread, whose wake-ups cost more than this check.
            if !self.is_leader() || !self.keyspace.any_slot_due(now_ms()) {
                continue;
            }
            last_cycle = std::time::Instant::now();
            let keyspace = self.keyspace.clone();
            // Scanning holds slot read locks and costs CPU: keep it off the async workers.
            let collected = tokio::task::spawn_blocking(move || {
                let batches = cursor.collect_due(&keyspace, now_ms(), BUDGET);
                (cursor, batches)
            })
            .await;
            let batches = match collected {
                Ok((c, batches)) => {
                    cursor = c;
                    last_found = batches.iter().map(Vec::len).sum();
                    batches
                }
                Err(e) => {
                    tracing::error!(group = self.group, error = %e, "active expiry task failed");
                    return;
                }
            };
            for keys in batches {
                let proposal = Proposal {
                    now_ms: now_ms(),
                    op: WriteOp::DeleteExpired { keys },
                };
                match self.write(proposal).await {
                    Ok(Frame::Integer(n)) => {
                        self.expired_keys.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    // Lost leadership: the new leader takes over.
                    Err(_) => break,
                }
            }
        }
    }

    pub fn evicted_keys(&self) -> u64 {
        self.evicted_keys.load(Ordering::Relaxed)
    }

    /// Whether a command flagged `denyoom` may run: always under the budget; over it, only if
    /// the policy can evict (the eviction task is woken to make room). Redis's `OOM` otherwise.
    pub fn admit_denyoom(&self) -> Result<(), CommandError> {
        let Some(budget) = self.limits.shard_budget() else {
            return Ok(());
        };
        if self.keyspace.used_memory() <= budget {
            return Ok(());
        }
        if self.limits.policy() == Policy::NoEviction || self.cannot_evict.load(Ordering::Relaxed) {
            return Err(CommandError::Oom);
        }
        self.evict_wake.notify_one();
        Ok(())
    }

    /// Eviction, while this replica leads and its keyspace is over its share of `maxmemory`:
    /// chooses victims by the policy and proposes their deletion, one `Evict` entry per batch,
    /// until the shard is back under budget. Woken by writes over budget, and every tick (every
    /// second without `maxmemory`: nothing to do then but notice a `CONFIG SET maxmemory`, and
    /// 16 idle shards ticking ten times a second cost measurable CPU in wake-ups).
    pub async fn run_eviction(self: Arc<Self>, shutdown: CancellationToken) {
        /// Keys per `Evict` entry.
        const BATCH: usize = 1024;
        /// Each run frees `budget / SLACK_DIVISOR` bytes more than the excess (under 1%).
        const SLACK_DIVISOR: usize = 128;
        let mut sampled = SampledSlots::default();
        const IDLE_TICK: Duration = Duration::from_secs(1);
        loop {
            let tick = match self.limits.shard_budget() {
                Some(_) => TICK,
                None => IDLE_TICK,
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.evict_wake.notified() => {}
                _ = tokio::time::sleep(tick) => {}
            }
            while let Some(budget) = self.limits.shard_budget() {
                let used = self.keyspace.used_memory();
                let policy = self.limits.policy();
                if used <= budget || policy == Policy::NoEviction || !self.is_leader() {
                    self.cannot_evict.store(false, Ordering::Relaxed);
                    break;
                }
                let keyspace = self.keyspace.clone();
                let samples = self.limits.samples();
                // A little below the budget, so a steady write load does not need a batch
                // (a Raft entry) per write that crosses it.
                let to_free = used - budget + budget / SLACK_DIVISOR;
                let mut listed = std::mem::take(&mut sampled);
                let chosen = tokio::task::spawn_blocking(move || {
                    let mut rng = rand::thread_rng();
                    let now = now_ms();
                    let slots = listed.get(&keyspace, policy.volatile_only());
                    let keys = choose_victims(
                        &keyspace, slots, policy, samples, now, to_free, BATCH, &mut rng,
                    );
                    (keys, listed)
                })
                .await;
                let keys = match chosen {
                    Ok((keys, listed)) => {
                        sampled = listed;
                        keys
                    }
                    Err(e) => {
                        tracing::error!(group = self.group, error = %e, "eviction task failed");
                        return;
                    }
                };
                if keys.is_empty() {
                    self.cannot_evict.store(true, Ordering::Relaxed);
                    break;
                }
                let proposal = Proposal {
                    now_ms: now_ms(),
                    op: WriteOp::Evict { keys },
                };
                match self.write(proposal).await {
                    Ok(Frame::Integer(n)) => {
                        self.evicted_keys.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
    }

    /// Stops the Raft instance (its storage is flushed and closed).
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(group = self.group, error = %e, "raft shutdown failed");
        }
    }
}

/// A proposed write whose reply is still to come.
pub struct WriteTicket(
    openraft::alias::OneshotReceiverOf<
        TypeConfig,
        Result<
            openraft::raft::ClientWriteResponse<TypeConfig>,
            openraft::error::ClientWriteError<TypeConfig>,
        >,
    >,
);

impl WriteTicket {
    pub async fn reply(self) -> Result<Frame, NotServed> {
        match self.0.await {
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(e)) => Err(write_error(e)),
            Err(_) => Err(NotServed::Unknown("the write was dropped".into())),
        }
    }
}

fn write_error(e: openraft::error::ClientWriteError<TypeConfig>) -> NotServed {
    use openraft::error::ClientWriteError::*;
    match e {
        ForwardToLeader(f) => NotServed::NotLeader(f.leader_id),
        other => NotServed::Unknown(other.to_string()),
    }
}

/// How long a replica waits between retries when a group has no leader yet.
pub const LEADER_RETRY: Duration = Duration::from_millis(25);
