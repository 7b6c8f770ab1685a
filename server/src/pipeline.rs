//! The data path for a batch of pipelined requests: each runs where its shard's leader is, all
//! of them at once, and their replies come back in request order.
//!
//! A [`Pipeline`] takes the requests a connection has received ([`Pipeline::push`]) and then
//! [`Pipeline::finish`]es them:
//! - node-level commands run at once;
//! - a write for a group this node leads is proposed at once (so a connection's writes to one
//!   shard are appended in request order without waiting for each other's commit); its reply
//!   comes from `apply`;
//! - a read for a group this node leads waits for a linearizable read barrier (shared with
//!   every read waiting at that moment), and then runs when every earlier request of the batch
//!   has its reply, so it sees the batch's earlier writes;
//! - a write to a key with a read of it queued before it in the batch is proposed only once
//!   that read has run (else it could be applied first and the read would see it), and the
//!   group's later writes only once it has been proposed, so a group's writes stay in request
//!   order ([`Gate`]);
//! - a write command whose entry or answer comes from the data (`SPOP`, flag
//!   `BUILT_FROM_DATA`; `SORT` without `STORE`, errors) after a write to its key in the batch
//!   runs in its turn, when that write has been applied.
//! - a request for a group led elsewhere joins the one forward batch per leader node, sent when
//!   the pipeline finishes and executed there, in order, as a pipeline of its own;
//! - a request that spans shards, or that was refused because leadership moved (nothing was
//!   applied), runs on its own in its turn, with retries until [`RETRY_DEADLINE`]; from then on
//!   the rest of the batch also runs one by one, so no later write overtakes it.
//!
//! A blocking command (`BLPOP` ...) runs on its own like a request that spans shards, and the
//! rest of the batch after it (the connection is blocked, as in Redis). On the leader it waits
//! in `blocking::serve`; forwarded, the leader holds the forward until it is served, with the
//! forward's deadline extended past the command's timeout.
//!
//! On a peer (`Mode::Peer`) a pipeline runs forwarded requests only where this node leads; a
//! request for a group it does not lead is answered `NotLeader` without running, and so are the
//! group's later requests in the batch.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use shoal_protocol::{CommandId, CommandSpec, Flags, Frame, Version};
use tokio::sync::oneshot;

use crate::blocking::{self, serve::Outcome};
use crate::commands::transaction::{self, Intercept, TxJob};
use crate::commands::{self, PendingWrite, Ran, Session};
use crate::error::CommandError;
use crate::node::{group_shard, Node, PeerCallError};
use crate::raft::types::NodeId;
use crate::route::{self, Route};
use crate::rpc::{ForwardItem, ForwardReply, GroupId, PeerRequest, PeerResponse};
use crate::shard::{NotServed, Replica};

/// How long a request keeps retrying while its shard has no reachable leader.
pub const RETRY_DEADLINE: Duration = Duration::from_secs(5);
/// How long a forwarded batch may take on the leader.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a forwarded blocking command with no timeout (0: forever) may wait on the leader.
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A client connection's batch: may forward, retries.
    Client,
    /// A batch forwarded by a peer: runs only where this node leads.
    Peer,
}

/// A request's outcome once its turn comes.
enum Done {
    Reply(Frame),
    /// The read barrier has passed: run the read now, after everything before it.
    Read {
        replica: Arc<Replica>,
        spec: &'static CommandSpec,
        args: Vec<Bytes>,
        /// Told once the read has run: a write queued after it waits for that.
        ran: Option<oneshot::Sender<()>>,
    },
    /// Not run (leadership is elsewhere or unknown): run it again on its own.
    Again {
        spec: &'static CommandSpec,
        group: GroupId,
        args: Vec<Bytes>,
        leader: Option<NodeId>,
    },
    /// Runs on `group` in its turn (a `BUILT_FROM_DATA` write after a write to its group), and
    /// then tells the group's next write.
    InTurn {
        spec: &'static CommandSpec,
        group: GroupId,
        args: Vec<Bytes>,
        ran: oneshot::Sender<()>,
    },
    /// Runs on its own in its turn (spans shards, or follows a request that had to).
    Alone {
        spec: &'static CommandSpec,
        args: Vec<Bytes>,
    },
    /// `WATCH` or `EXEC`: runs in its turn, on the slot's leader.
    Tx(TxJob),
}

impl Done {
    /// A request its group's replica here could not serve: run again elsewhere if nothing
    /// was appended (`NotLeader`), else an error saying what is known.
    fn not_served(
        e: NotServed,
        spec: &'static CommandSpec,
        group: GroupId,
        args: Vec<Bytes>,
    ) -> Done {
        match e {
            NotServed::NotLeader(leader) => Done::Again {
                spec,
                group,
                args,
                leader,
            },
            e => Done::Reply(not_served(e)),
        }
    }
}

/// When a group's next write may be proposed: once the request queued before it that holds
/// this gate has run (a read) or been proposed (a write that was itself held back). A dropped
/// sender means that request was not run here, so neither is the write: it runs again in turn.
type Gate = futures::future::Shared<oneshot::Receiver<()>>;

/// A client request's command and when it arrived, for its latency.
type Timing = (CommandId, Instant);

type Forwarded = oneshot::Sender<Result<ForwardReply, PeerCallError>>;

pub struct Pipeline {
    node: Arc<Node>,
    mode: Mode,
    jobs: FuturesOrdered<BoxFuture<'static, Done>>,
    /// The protocol version each queued reply is encoded with (the session's when pushed),
    /// and what its latency is recorded under.
    versions: VecDeque<(Version, Option<Timing>)>,
    /// The request being pushed: its command and when it arrived (client requests only).
    timing: Option<Timing>,
    batches: HashMap<NodeId, Vec<(ForwardItem, Forwarded)>>,
    /// Forward batches that hold a blocking command: how long they may take.
    batch_timeouts: HashMap<NodeId, Duration>,
    /// Set once a blocking command is queued: the connection watches for its client leaving.
    blocks: bool,
    /// The wait id of the forwarded request being pushed (peer mode).
    pushing_wait: Option<blocking::forwarded::WaitId>,
    /// Groups that refused a request in this batch: their later requests are not run either.
    refused: HashSet<GroupId>,
    /// Groups whose next write must wait (see [`Gate`]); a group absent here proposes at once.
    write_gates: HashMap<GroupId, Gate>,
    /// Keys (per group) with a read queued in this batch; `None`: a read that names no key.
    read_gates: HashMap<(GroupId, Option<Bytes>), Gate>,
    /// Keys (per group) written in this batch.
    written: HashSet<(GroupId, Bytes)>,
    /// Set once a request must run on its own: every later one does too.
    one_by_one: bool,
}

impl Pipeline {
    pub fn new(node: Arc<Node>, mode: Mode) -> Pipeline {
        Pipeline {
            node,
            mode,
            jobs: FuturesOrdered::new(),
            versions: VecDeque::new(),
            timing: None,
            batches: HashMap::new(),
            batch_timeouts: HashMap::new(),
            blocks: false,
            pushing_wait: None,
            refused: HashSet::new(),
            write_gates: HashMap::new(),
            read_gates: HashMap::new(),
            written: HashSet::new(),
            one_by_one: false,
        }
    }

    /// Requests queued and not yet finished.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Whether a blocking command is queued (its client may wait long for the reply).
    pub fn blocks(&self) -> bool {
        self.blocks
    }

    /// Takes a client request. Returns its reply when it is ready at once and nothing is queued
    /// before it (encode it now); otherwise it is queued for [`Pipeline::finish`].
    pub async fn push(&mut self, session: &mut Session, args: Vec<Bytes>) -> Option<Frame> {
        let version = session.resp;
        let arrived = Instant::now();
        let spec = match commands::resolve(&self.node, session, &args) {
            Ok(spec) => spec,
            Err(reply) => {
                session.tx.abort_if_queuing();
                return self.ready(reply, version);
            }
        };
        if session.counted {
            self.timing = Some((spec.id, arrived));
            if self.node.monitor.active() {
                self.node.monitor.publish(session.handle.addr, &args);
            }
        }
        if session.resp == Version::Resp2
            && session.pubsub.total() > 0
            && !commands::pubsub::allowed_while_subscribed(spec.id)
        {
            let reply = commands::pubsub::not_allowed_while_subscribed(spec.name);
            return self.ready(reply, version);
        }
        match transaction::intercept(&self.node, session, spec, &args) {
            Intercept::Pass => {}
            Intercept::Reply(reply) => return self.ready(reply, version),
            Intercept::Job(job) => {
                // Runs after everything before it; what follows waits for it.
                self.one_by_one = true;
                return self.queue(Done::Tx(job), version);
            }
        }
        // Pub/sub runs on this node, never on a shard's leader (shard channels have keys only
        // to pick a slot).
        if spec.flags.contains(Flags::PUBSUB) {
            let reply = run_read(&self.node, session, None, spec, &args);
            return self.ready(reply, version);
        }
        let route = route::route(&self.node.ring, spec, &args, session.redirect);
        if route == Route::Local {
            if let Some(job) = commands::cluster::metadata_job(&self.node, spec, &args) {
                self.queue_future(job.map(Done::Reply), version);
                return None;
            }
            let reply = run_read(&self.node, session, None, spec, &args);
            return self.ready(reply, version);
        }
        if self.one_by_one || spec.flags.contains(Flags::BLOCKING) {
            if spec.flags.contains(Flags::BLOCKING) {
                // Not through `commands::run` here: CLIENT LIST's `cmd=` comes from this.
                session.handle.touch(spec.id, arrived);
                self.blocks = true;
                self.one_by_one = true;
            }
            return self.queue(Done::Alone { spec, args }, version);
        }
        match route {
            Route::Local => unreachable!("handled above"),
            Route::CrossSlot => self.ready(CommandError::CrossSlot.into(), version),
            Route::Group(group) => {
                self.push_to(session, spec, group, args).await;
                None
            }
            Route::Parts(_) | Route::Scan { .. } => {
                self.one_by_one = true;
                self.queue(Done::Alone { spec, args }, version)
            }
        }
    }

    /// Takes a request a peer forwarded for `group` (peer mode).
    pub async fn push_forwarded(&mut self, session: &mut Session, item: ForwardItem) {
        let version = session.resp;
        match commands::resolve(&self.node, session, &item.args) {
            Ok(spec) if self.node.is_valid_group(item.group) => {
                self.pushing_wait = item.wait;
                self.push_to(session, spec, item.group, item.args).await;
                self.pushing_wait = None;
            }
            Ok(_) => {
                let e = CommandError::Err(format!("no such group {}", item.group));
                self.queue(Done::Reply(e.into()), version);
            }
            Err(reply) => {
                self.queue(Done::Reply(reply), version);
            }
        }
    }

    /// Queues `spec`/`args` to run on `group`'s leader.
    async fn push_to(
        &mut self,
        session: &mut Session,
        spec: &'static CommandSpec,
        group: GroupId,
        args: Vec<Bytes>,
    ) {
        let version = session.resp;
        let node = self.node.clone();
        if self.refused.contains(&group) {
            let leader = node.leader_of(group);
            return self.refuse(spec, group, args, leader, version);
        }
        // A draining node runs nothing new even where it leads (a leadership can reach it
        // after its hand-over): refused with nothing appended, the request is retried where
        // the group's leader will be once this node has gone.
        let local = node
            .replica(group)
            .filter(|r| r.is_leader() && !node.drain.is_draining());
        // `SORT_RO` is read-only but may change a sorted set's encoding, as Redis's does
        // (`types::sort`): it is built like a write, and runs as a read when it only reads.
        let writes = spec.flags.contains(Flags::WRITE) || spec.id == CommandId::SortRo;
        if local.is_none() && writes && self.must_wait(group, spec, &args) {
            // Leadership left this node with reads queued here: run it again, in its turn.
            let leader = node.leader_of(group);
            return self.refuse(spec, group, args, leader, version);
        }
        let Some(replica) = local else {
            if self.mode == Mode::Client && session.redirect {
                let slot = route::request_slot(spec, &args).unwrap_or(0);
                match node.replica(group) {
                    // After READONLY, a replica here serves reads, possibly stale; `SORT_RO`
                    // among them (it changes no encoding there: `types::sort`).
                    Some(replica) if session.readonly && !spec.flags.contains(Flags::WRITE) => {
                        self.queue(
                            Done::Read {
                                replica,
                                spec,
                                args,
                                ran: None,
                            },
                            version,
                        );
                    }
                    _ => {
                        let tls = session.handle.tls;
                        self.queue_future(moved(node, group, slot, tls), version)
                    }
                }
                return;
            }
            match (self.mode, node.leader_of(group)) {
                (Mode::Client, Some(leader)) if leader != node.id => {
                    let counted = session.counted;
                    self.forward(
                        leader,
                        ForwardItem {
                            group,
                            args: args.clone(),
                            counted,
                            wait: None,
                        },
                        spec,
                        args,
                        version,
                    );
                }
                (_, leader) => self.refuse(spec, group, args, leader, version),
            }
            return;
        };
        if spec.flags.contains(Flags::BLOCKING) {
            let node = node.clone();
            match blocking::Call::parse(spec.id, &args) {
                Err(e) => {
                    self.queue(Done::Reply(e.into()), version);
                }
                Ok(call) => {
                    let wait = self.pushing_wait;
                    let redirect = session.redirect;
                    self.queue_future(
                        async move {
                            // A forwarded wait ends early if its client leaves the forwarding node.
                            let registered = wait.map(|id| node.forwarded_waits.register(id));
                            let abandoned = async {
                                match &registered {
                                    Some(r) => r.token.cancelled().await,
                                    None => std::future::pending().await,
                                }
                            };
                            let outcome = tokio::select! {
                                outcome = blocking::serve::serve(&node, replica, call) => outcome,
                                _ = abandoned => Outcome::Reply(Frame::Null),
                            };
                            match outcome {
                                Outcome::Reply(reply) => Done::Reply(reply),
                                Outcome::NotLeader(leader) => Done::Again {
                                    spec,
                                    group,
                                    args,
                                    leader,
                                },
                                // Redirect mode answers `Again` with MOVED to the new leader.
                                Outcome::LeadershipLost if redirect => Done::Again {
                                    spec,
                                    group,
                                    args,
                                    leader: None,
                                },
                                Outcome::LeadershipLost => {
                                    Done::Reply(blocking::unblocked_by_failover())
                                }
                            }
                        },
                        version,
                    )
                }
            }
            return;
        }
        if !writes {
            self.read(replica, spec, args, version);
            return;
        }
        if spec.flags.contains(Flags::BUILT_FROM_DATA)
            && spec
                .keys(&args)
                .any(|k| self.written.contains(&(group, k.clone())))
        {
            self.queue_in_turn(spec, group, args, version);
            return;
        }
        match commands::run(&node, session, spec, &args, Some(&replica)) {
            // Answered from the data as it is, which the batch's earlier writes to its keys
            // have not changed yet (`SORT` of a key deleted just before): run it in its turn.
            Ran::Reply(_)
                if spec
                    .keys(&args)
                    .any(|k| self.written.contains(&(group, k.clone()))) =>
            {
                self.queue_in_turn(spec, group, args, version);
            }
            Ran::Reply(reply) if reply.is_error() => {
                self.queue(Done::Reply(reply), version);
            }
            // A write command that turned out to only read (`GETEX key`): read it properly.
            Ran::Reply(_) => self.read(replica, spec, args, version),
            Ran::Write(write) => {
                for key in spec.keys(&args) {
                    self.written.insert((group, key.clone()));
                }
                let gates = self.gates_before_write(group, spec, &args);
                if gates.is_empty() {
                    self.propose(replica, write, spec, group, args, version)
                        .await;
                } else {
                    self.propose_after(gates, replica, write, spec, group, args, version);
                }
            }
        }
    }

    /// Queues a write command to run in its turn ([`Done::InTurn`]); the group's later writes
    /// wait for it.
    fn queue_in_turn(
        &mut self,
        spec: &'static CommandSpec,
        group: GroupId,
        args: Vec<Bytes>,
        version: Version,
    ) {
        let (ran, gate) = oneshot::channel();
        self.gates_before_write(group, spec, &args);
        self.write_gates.insert(group, gate.shared());
        let done = Done::InTurn {
            spec,
            group,
            args,
            ran,
        };
        self.queue(done, version);
    }

    /// Proposes `write` now: appended after the batch's earlier writes to `group`.
    async fn propose(
        &mut self,
        replica: Arc<Replica>,
        write: PendingWrite,
        spec: &'static CommandSpec,
        group: GroupId,
        args: Vec<Bytes>,
        version: Version,
    ) {
        match replica.submit(write.proposal).await {
            Ok(ticket) => {
                self.queue_future(applied(ticket, write.then, spec, group, args), version);
            }
            Err(NotServed::NotLeader(leader)) => self.refuse(spec, group, args, leader, version),
            Err(e) => {
                self.queue(Done::Reply(not_served(e)), version);
            }
        }
    }

    /// Proposes `write` once every gate has passed (see [`Gate`]); the group's next write waits
    /// until it has been proposed.
    #[allow(clippy::too_many_arguments)]
    fn propose_after(
        &mut self,
        gates: Vec<Gate>,
        replica: Arc<Replica>,
        write: PendingWrite,
        spec: &'static CommandSpec,
        group: GroupId,
        args: Vec<Bytes>,
        version: Version,
    ) {
        let (proposed, next_gate) = oneshot::channel();
        self.write_gates.insert(group, next_gate.shared());
        self.queue_future(
            async move {
                let passed = futures::future::join_all(gates).await;
                if passed.iter().any(Result::is_err) || !replica.is_leader() {
                    let leader = replica.leader();
                    return Done::Again {
                        spec,
                        group,
                        args,
                        leader,
                    };
                }
                match replica.submit(write.proposal).await {
                    Ok(ticket) => {
                        let _ = proposed.send(());
                        applied(ticket, write.then, spec, group, args).await
                    }
                    Err(e) => Done::not_served(e, spec, group, args),
                }
            },
            version,
        );
    }

    /// What a write to `group` must wait for before it is proposed: the group's write held back
    /// before it, and the reads of its keys (or of no key) queued before it. Taken: from now on
    /// the group's writes wait for this one instead.
    fn gates_before_write(
        &mut self,
        group: GroupId,
        spec: &'static CommandSpec,
        args: &[Bytes],
    ) -> Vec<Gate> {
        let mut gates: Vec<Gate> = self.write_gates.remove(&group).into_iter().collect();
        gates.extend(self.read_gates.remove(&(group, None)));
        for key in spec.keys(args) {
            gates.extend(self.read_gates.remove(&(group, Some(key.clone()))));
        }
        gates
    }

    /// Whether a write to `group` would have to wait (see [`Pipeline::gates_before_write`]).
    fn must_wait(&self, group: GroupId, spec: &'static CommandSpec, args: &[Bytes]) -> bool {
        self.write_gates.contains_key(&group)
            || self.read_gates.contains_key(&(group, None))
            || spec
                .keys(args)
                .any(|k| self.read_gates.contains_key(&(group, Some(k.clone()))))
    }

    fn read(
        &mut self,
        replica: Arc<Replica>,
        spec: &'static CommandSpec,
        args: Vec<Bytes>,
        version: Version,
    ) {
        let group = replica.group;
        // This read's gate replaces its keys' earlier ones: it runs after those reads anyway.
        let (ran, gate) = oneshot::channel();
        let gate = gate.shared();
        let mut keys = spec.keys(&args).peekable();
        if keys.peek().is_none() {
            self.read_gates.insert((group, None), gate.clone());
        }
        for key in keys {
            self.read_gates
                .insert((group, Some(key.clone())), gate.clone());
        }
        self.queue_future(
            async move {
                match replica.read_barrier().await {
                    Ok(()) => Done::Read {
                        replica,
                        spec,
                        args,
                        ran: Some(ran),
                    },
                    Err(e) => Done::not_served(e, spec, group, args),
                }
            },
            version,
        );
    }

    fn refuse(
        &mut self,
        spec: &'static CommandSpec,
        group: GroupId,
        args: Vec<Bytes>,
        leader: Option<NodeId>,
        version: Version,
    ) {
        self.refused.insert(group);
        if self.mode == Mode::Client {
            self.one_by_one = true;
        }
        self.queue(
            Done::Again {
                spec,
                group,
                args,
                leader,
            },
            version,
        );
    }

    fn forward(
        &mut self,
        leader: NodeId,
        item: ForwardItem,
        spec: &'static CommandSpec,
        args: Vec<Bytes>,
        version: Version,
    ) {
        let (tx, rx) = oneshot::channel();
        let mut item = item;
        let group = item.group;
        self.node.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        let blocks = spec.flags.contains(Flags::BLOCKING);
        let mut cancel = None;
        if blocks {
            // Should its client leave first, the leader is told to drop the wait.
            let id = self.node.forwarded_waits.next_id(self.node.id);
            item.wait = Some(id);
            cancel = Some(blocking::forwarded::CancelOnDrop {
                node: self.node.clone(),
                leader,
                id,
                armed: true,
            });
            // The leader holds a blocking command until it is served or times out.
            let waits = blocking::Call::parse(spec.id, &args)
                .ok()
                .map_or(Duration::ZERO, |c| c.timeout.unwrap_or(FOREVER));
            let timeout = self.batch_timeouts.entry(leader).or_insert(FORWARD_TIMEOUT);
            *timeout = (*timeout).max(waits.saturating_add(FORWARD_TIMEOUT));
        }
        self.batches.entry(leader).or_default().push((item, tx));
        let is_write = spec.flags.contains(Flags::WRITE);
        self.queue_future(
            async move {
                let again = |leader| Done::Again {
                    spec,
                    group,
                    args: args.clone(),
                    leader,
                };
                let reply = rx.await;
                if let Some(cancel) = &mut cancel {
                    cancel.armed = false;
                }
                match reply {
                    Ok(Ok(ForwardReply::Reply(reply))) => Done::Reply(reply),
                    Ok(Ok(ForwardReply::NotLeader { leader })) => again(leader),
                    // The leader went away while the client waited (it may have been killed).
                    Ok(Err(PeerCallError::Lost(_))) if blocks => {
                        Done::Reply(blocking::unblocked_by_failover())
                    }
                    Ok(Err(PeerCallError::Lost(e))) if is_write => {
                        Done::Reply(CommandError::Unknown(e).into())
                    }
                    Ok(Err(_)) | Err(_) => again(None),
                }
            },
            version,
        );
    }

    fn ready(&mut self, reply: Frame, version: Version) -> Option<Frame> {
        if self.jobs.is_empty() {
            let timing = self.timing.take();
            self.record_latency(timing);
            self.node.errors.record(&reply);
            return Some(reply);
        }
        self.queue(Done::Reply(reply), version)
    }

    fn queue(&mut self, done: Done, version: Version) -> Option<Frame> {
        self.queue_future(std::future::ready(done), version);
        None
    }

    fn queue_future(
        &mut self,
        f: impl std::future::Future<Output = Done> + Send + 'static,
        version: Version,
    ) {
        self.jobs.push_back(f.boxed());
        self.versions.push_back((version, self.timing.take()));
    }

    fn record_latency(&self, timing: Option<Timing>) {
        if let Some((id, arrived)) = timing {
            self.node.latency.record(id, arrived.elapsed());
        }
    }

    /// Sends the forward batches (one per leader node).
    fn send_batches(&mut self) {
        for (leader, batch) in self.batches.drain() {
            let node = self.node.clone();
            let timeout = self
                .batch_timeouts
                .remove(&leader)
                .unwrap_or(FORWARD_TIMEOUT);
            tokio::spawn(async move {
                let (items, senders): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                let sent = items.len();
                let result = node
                    .call_peer(leader, PeerRequest::Forward(items), timeout)
                    .await;
                match result {
                    Ok(PeerResponse::Forward(replies)) if replies.len() == sent => {
                        for (tx, reply) in senders.into_iter().zip(replies) {
                            let _ = tx.send(Ok(reply));
                        }
                    }
                    Ok(other) => {
                        let e = format!("node {leader} answered a forward with {other:?}");
                        for tx in senders {
                            let _ = tx.send(Err(PeerCallError::Lost(e.clone())));
                        }
                    }
                    Err(e) => {
                        let lost = matches!(e, PeerCallError::Lost(_));
                        let e = e.to_string();
                        for tx in senders {
                            let err = if lost {
                                PeerCallError::Lost(e.clone())
                            } else {
                                PeerCallError::Unsent(e.clone())
                            };
                            let _ = tx.send(Err(err));
                        }
                    }
                }
            });
        }
    }

    /// Finishes a client batch: every reply, in request order, with its protocol version.
    pub async fn finish(&mut self, session: &mut Session, mut emit: impl FnMut(Frame, Version)) {
        self.send_batches();
        // Groups with a request run again in this batch, possibly on another node: this
        // node's replica may not have applied that write yet, so a read queued after it runs
        // here only past a new read barrier (else on the leader).
        let mut run_again = HashSet::new();
        while let Some(done) = self.jobs.next().await {
            let (version, timing) = self.versions.pop_front().unwrap_or((session.resp, None));
            if let Done::Again { group, .. } = &done {
                run_again.insert(*group);
            }
            let reply = match done {
                Done::Reply(f) => f,
                Done::Read {
                    replica,
                    spec,
                    args,
                    ran,
                } if run_again.contains(&replica.group) => {
                    // A barrier taken now covers the write run again (it was acknowledged):
                    // past it, this replica has applied it, and later reads may run here.
                    let group = replica.group;
                    let reply = if replica.is_leader() && replica.read_barrier().await.is_ok() {
                        run_again.remove(&group);
                        run_read(&self.node, session, Some(&replica), spec, &args)
                    } else {
                        run_on_group(&self.node, session, spec, group, args).await
                    };
                    if let Some(ran) = ran {
                        let _ = ran.send(());
                    }
                    reply
                }
                Done::Read {
                    replica,
                    spec,
                    args,
                    ran,
                } => run_queued_read(&self.node, session, &replica, spec, &args, ran),
                Done::Again {
                    spec, group, args, ..
                } if session.redirect => {
                    let slot = route::request_slot(spec, &args).unwrap_or(0);
                    match moved(self.node.clone(), group, slot, session.handle.tls).await {
                        Done::Reply(f) => f,
                        _ => unreachable!("moved always replies"),
                    }
                }
                Done::Again {
                    spec, group, args, ..
                } => run_on_group(&self.node, session, spec, group, args).await,
                Done::InTurn {
                    spec,
                    group,
                    args,
                    ran,
                } => {
                    let reply = run_on_group(&self.node, session, spec, group, args).await;
                    let _ = ran.send(());
                    reply
                }
                Done::Alone { spec, args } if spec.flags.contains(Flags::BLOCKING) => {
                    let handle = session.handle.clone();
                    let run = run_alone(&self.node, session, spec, args.clone());
                    blocking::client_wait(&handle, spec, &args, run).await
                }
                Done::Alone { spec, args } => run_alone(&self.node, session, spec, args).await,
                Done::Tx(job) => transaction::run_job(&self.node, session, job).await,
            };
            self.record_latency(timing);
            self.node.errors.record(&reply);
            emit(reply, version);
        }
    }

    /// Finishes a forwarded batch: one reply per item, in order.
    pub async fn finish_forwarded(&mut self, session: &mut Session) -> Vec<ForwardReply> {
        let mut replies = Vec::with_capacity(self.jobs.len());
        while let Some(mut done) = self.jobs.next().await {
            self.versions.pop_front();
            if let Done::InTurn {
                spec,
                group,
                args,
                ran,
            } = done
            {
                done = if self.refused.contains(&group) {
                    let leader = self.node.leader_of(group);
                    Done::Again {
                        spec,
                        group,
                        args,
                        leader,
                    }
                } else {
                    run_here(&self.node, session, spec, group, args).await
                };
                if !matches!(done, Done::Again { .. }) {
                    let _ = ran.send(());
                }
            }
            replies.push(match done {
                Done::Reply(f) => ForwardReply::Reply(f),
                // An earlier request of its group was not run here: the origin runs that one
                // again after this batch, so this read, which must see it, is not run either.
                // (A later write that already ran keeps its reply: it must not run twice.)
                Done::Read { replica, .. } if self.refused.contains(&replica.group) => {
                    ForwardReply::NotLeader {
                        leader: self.node.leader_of(replica.group),
                    }
                }
                Done::Read {
                    replica,
                    spec,
                    args,
                    ran,
                } => ForwardReply::Reply(run_queued_read(
                    &self.node, session, &replica, spec, &args, ran,
                )),
                Done::Again { group, leader, .. } => {
                    self.refused.insert(group);
                    ForwardReply::NotLeader { leader }
                }
                Done::InTurn { .. } | Done::Alone { .. } | Done::Tx(_) => {
                    ForwardReply::Reply(CommandError::Err("cannot forward that".into()).into())
                }
            });
        }
        replies
    }
}

/// Runs a command that answers without proposing: a read of `replica`, or a node-level
/// command (`replica` is `None`).
fn run_read(
    node: &Node,
    session: &mut Session,
    replica: Option<&Replica>,
    spec: &'static CommandSpec,
    args: &[Bytes],
) -> Frame {
    match commands::run(node, session, spec, args, replica) {
        Ran::Reply(f) => f,
        Ran::Write(_) => CommandError::Err(format!("{} cannot write here", spec.name)).into(),
    }
}

/// A proposed write's outcome: its reply once applied, shaped by `then`.
async fn applied(
    ticket: crate::shard::WriteTicket,
    then: fn(Frame) -> Frame,
    spec: &'static CommandSpec,
    group: GroupId,
    args: Vec<Bytes>,
) -> Done {
    match ticket.reply().await {
        Ok(reply) => Done::Reply(then(reply)),
        Err(e) => Done::not_served(e, spec, group, args),
    }
}

/// Runs a read whose turn has come, and tells the write waiting for it (see [`Gate`]).
fn run_queued_read(
    node: &Node,
    session: &mut Session,
    replica: &Replica,
    spec: &'static CommandSpec,
    args: &[Bytes],
    ran: Option<oneshot::Sender<()>>,
) -> Frame {
    let reply = run_read(node, session, Some(replica), spec, args);
    if let Some(ran) = ran {
        let _ = ran.send(());
    }
    reply
}

pub(crate) fn not_served(e: NotServed) -> Frame {
    match e {
        NotServed::NotLeader(_) => CommandError::TryAgain("no leader for the shard".into()),
        NotServed::Unknown(why) => CommandError::Unknown(why),
        NotServed::Stopped(why) => CommandError::TryAgain(format!("shard replica stopped: {why}")),
    }
    .into()
}

/// A Redis Cluster client's answer for a group led elsewhere: `-MOVED slot ip:port` to the
/// leader, once one is known (waiting out an election up to [`RETRY_DEADLINE`]); a client
/// connected over TLS is sent to the leader's TLS port.
async fn moved(node: Arc<Node>, group: GroupId, slot: u16, tls: bool) -> Done {
    let deadline = Instant::now() + RETRY_DEADLINE;
    let mut backoff = Duration::from_millis(10);
    loop {
        let leader = node.leader_of(group).filter(|&l| {
            // This node's own stale view ("I lead") does not count until it really does.
            l != node.id || node.replica(group).is_some_and(|r| r.is_leader())
        });
        if let Some(addr) = leader.and_then(|l| node.client_addr_for(l, tls)) {
            return Done::Reply(CommandError::Raw(format!("MOVED {slot} {addr}")).into());
        }
        if Instant::now() + backoff > deadline {
            return Done::Reply(
                CommandError::Raw("CLUSTERDOWN Hash slot not served".into()).into(),
            );
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(50));
    }
}

/// Runs one request that spans shards (or must run alone): every part on its group, combined.
pub(crate) async fn run_alone(
    node: &Arc<Node>,
    session: &mut Session,
    spec: &'static CommandSpec,
    args: Vec<Bytes>,
) -> Frame {
    match route::route(&node.ring, spec, &args, session.redirect) {
        Route::Local => run_read(node, session, None, spec, &args),
        Route::CrossSlot => CommandError::CrossSlot.into(),
        Route::Group(group) => run_on_group(node, session, spec, group, args).await,
        Route::Parts(parts) => {
            let runs = parts.iter().map(|part| {
                let node = node.clone();
                let args = part.args.clone();
                let group = part.group;
                let mut session = Session::peer(session.resp);
                async move { run_on_group(&node, &mut session, spec, group, args).await }
            });
            let replies = futures::future::join_all(runs).await;
            route::combine(&parts, replies)
        }
        Route::Scan {
            mut shard,
            mut slot,
        } => {
            // Shards that have nothing more to show are skipped within one call, so a scan
            // that matches nothing ends at once rather than after one empty reply per shard.
            // SCAN names no key: even a cluster client's is served, not redirected.
            let mut session = Session::peer(session.resp);
            loop {
                let mut shard_args = args.clone();
                shard_args[1] = Bytes::from(slot.to_string());
                let group = crate::node::shard_group(shard);
                let reply = run_on_group(node, &mut session, spec, group, shard_args).await;
                let Frame::Array(mut items) = reply else {
                    return reply;
                };
                let next = match items.first() {
                    Some(Frame::Bulk(b)) => std::str::from_utf8(b)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0),
                    _ => 0,
                };
                let cursor = route::next_scan_cursor(shard, next, node.params.shards);
                let empty = matches!(items.get(1), Some(Frame::Array(keys)) if keys.is_empty());
                if empty && next == 0 && cursor != 0 {
                    (shard, slot) = route::scan_cursor(cursor, node.params.shards);
                    continue;
                }
                if let Some(first) = items.first_mut() {
                    *first = Frame::bulk_int(cursor as i64);
                }
                return Frame::Array(items);
            }
        }
    }
}

/// Runs one forwarded request on `group` here if this node leads it (peer mode): its reply, or
/// `Again` when it was not run.
async fn run_here(
    node: &Arc<Node>,
    session: &mut Session,
    spec: &'static CommandSpec,
    group: GroupId,
    args: Vec<Bytes>,
) -> Done {
    let mut pipeline = Pipeline::new(node.clone(), Mode::Peer);
    pipeline.push_to(session, spec, group, args).await;
    match pipeline.jobs.next().await {
        Some(Done::Read {
            replica,
            spec,
            args,
            ran,
        }) => Done::Reply(run_queued_read(node, session, &replica, spec, &args, ran)),
        Some(done @ (Done::Reply(_) | Done::Again { .. })) => done,
        Some(Done::InTurn { .. } | Done::Alone { .. } | Done::Tx(_)) | None => {
            Done::Reply(CommandError::Err("a lone forwarded request did not run".into()).into())
        }
    }
}

/// Runs one request on `group`'s leader, retrying while leadership moves, until
/// [`RETRY_DEADLINE`]; then `-TRYAGAIN`.
async fn run_on_group(
    node: &Arc<Node>,
    session: &mut Session,
    spec: &'static CommandSpec,
    group: GroupId,
    args: Vec<Bytes>,
) -> Frame {
    let deadline = Instant::now() + RETRY_DEADLINE;
    let mut backoff = Duration::from_millis(10);
    loop {
        let mut pipeline = Pipeline::new(node.clone(), Mode::Client);
        pipeline.push_to(session, spec, group, args.clone()).await;
        pipeline.send_batches();
        let done = pipeline.jobs.next().await;
        match done {
            Some(Done::Reply(f)) => return f,
            Some(Done::Read {
                replica,
                spec,
                args,
                ran,
            }) => return run_queued_read(node, session, &replica, spec, &args, ran),
            Some(Done::Again { .. }) | None => {}
            Some(Done::InTurn { .. } | Done::Alone { .. } | Done::Tx(_)) => {
                unreachable!("a single group's request never runs alone")
            }
        }
        if Instant::now() + backoff > deadline {
            return CommandError::TryAgain(format!(
                "shard {} has no reachable leader",
                group_shard(group)
            ))
            .into();
        }
        // Waiting out an election: back off a little more each time, but not so much that a
        // new leader waits long for us.
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(50));
    }
}
