//! `MULTI EXEC DISCARD WATCH UNWATCH`: transactions as one Raft entry.
//!
//! The connection queues a transaction's commands in its [`Session`] (replying `+QUEUED`);
//! `EXEC` sends them, with the watched keys, to the leader of their slot (here or over the peer
//! transport), which turns them into one [`WriteOp::Exec`] entry: writes are built as they
//! would be alone, reads become steps that `apply` runs against the transaction's own view
//! (see [`tx_reader`]), so a read sees the transaction's earlier writes and no other client sees
//! the transaction half done. Every replica applies the entry whole.
//!
//! - All keys of a transaction (and the watched keys) must share one slot, else
//!   `-CROSSSLOT` (a queued command in another slot is refused and aborts the transaction, as
//!   Redis Cluster refuses it).
//! - `WATCH` reads each key's fingerprint (value and deadline, combined with the write stamp of
//!   the key's bucket in its slot: `keyspace::watch_print`) on the slot's leader after a
//!   linearizable barrier; `apply` aborts the `EXEC` (nil reply) when any watched key's
//!   fingerprint differs at the entry's clock: written (even with the same value, or back to
//!   the value it had), deleted, created or expired, as in Redis. One difference from Redis:
//!   a slot keeps 16 write stamps, each shared by the slot's keys that hash to it, so a write
//!   to *another* key of the same slot and bucket aborts too (about 1 in 16 writes to other
//!   keys of the watched key's slot, e.g. keys sharing a `{hash tag}`). That is only a
//!   spurious abort, which a client retries as after any other; a change of the watched key
//!   itself never goes unnoticed.
//! - Commands whose effect depends on the data are decided inside `apply`, against what the
//!   transaction's earlier commands left: writes travel as their arguments anyway, `SORT`
//!   (which reads pattern keys) runs as a write step, and `SPOP` carries a seed
//!   (`WriteOp::PopSeeded`) rather than the leader's choice of members.
//! - Node-level commands (`PING`, `ECHO`, `PUBLISH`, ...) queued in a transaction run on this
//!   node when the `EXEC` reply comes back.
//! - Commands over every shard (`DBSIZE`, `KEYS`, `FLUSHALL`, `SCAN`, ...) or about a slot
//!   (`CLUSTER COUNTKEYSINSLOT`) cannot be part of a keyed transaction's entry, which is one
//!   shard's: a transaction of such commands (and node-level ones) runs them at `EXEC` one
//!   after the other, each as outside `MULTI` (atomic per shard); one that also holds a keyed
//!   command or a watched key is refused when the second kind is queued (`EXECABORT`).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use shoal_protocol::{key_slot, CommandId, CommandSpec, Flags, Frame, Version};

use super::{Ran, Session};
use crate::error::CommandError;
use crate::node::{shard_group, Node, PeerCallError};
use crate::pipeline::{not_served, RETRY_DEADLINE};
use crate::route::{self, Route};
use crate::rpc::{ForwardReply, GroupId, PeerRequest, PeerResponse};
use crate::shard::{NotServed, Replica};
use crate::store::{Keyspace, Proposal, TxReader, TxStep, UnixMillis, Watched, WriteOp};

/// How long a transaction's request may take on the leader.
const TX_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection's transaction state.
#[derive(Default)]
pub struct TxState {
    /// `Some` between `MULTI` and `EXEC`/`DISCARD`: the queued commands.
    queued: Option<Vec<Queued>>,
    /// A queued command was refused: `EXEC` answers `EXECABORT`.
    aborted: bool,
    /// The slot of the queued keyed commands.
    slot: Option<u16>,
    watched: Vec<Watched>,
    watch_slot: Option<u16>,
    /// A queued command runs on its own at `EXEC` ([`Where::Alone`]): no keyed command or
    /// watched key may join the transaction.
    has_alone: bool,
}

impl TxState {
    /// Between `MULTI` and `EXEC`.
    pub fn is_queuing(&self) -> bool {
        self.queued.is_some()
    }

    /// A command was refused while queuing: the transaction will not run.
    pub fn abort_if_queuing(&mut self) {
        if self.is_queuing() {
            self.aborted = true;
        }
    }

    pub fn unwatch(&mut self) {
        self.watched.clear();
        self.watch_slot = None;
    }
}

struct Queued {
    spec: &'static CommandSpec,
    args: Vec<Bytes>,
    runs: Where,
}

/// Where a queued command runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Where {
    /// In the slot's entry (it names keys).
    Entry,
    /// On this node when the `EXEC` reply is back (node-level commands, pub/sub).
    Local,
    /// On its own at `EXEC`, as outside a transaction: a command over every shard (`DBSIZE`,
    /// `KEYS`, `FLUSHALL`, `SCAN`, ...) or about a slot rather than keys
    /// (`CLUSTER COUNTKEYSINSLOT`). Such a transaction holds no keyed command and no watched
    /// key; its commands run one after the other, each atomic per shard as outside `MULTI`.
    Alone,
}

/// A transaction command that needs the slot's leader; it runs in its turn in the pipeline.
pub struct TxJob(Job);

enum Job {
    Watch {
        keys: Vec<Bytes>,
        slot: u16,
    },
    Exec {
        queued: Vec<Queued>,
        watched: Vec<Watched>,
        slot: Option<u16>,
    },
}

/// What the data path does with a request of a client connection.
pub enum Intercept {
    /// Not a transaction matter: run it as usual.
    Pass,
    /// Answer this at once.
    Reply(Frame),
    /// Run this job in the request's turn.
    Job(TxJob),
}

/// Handles `MULTI EXEC DISCARD WATCH` and queues commands between `MULTI` and `EXEC`.
pub fn intercept(
    node: &Node,
    session: &mut Session,
    spec: &'static CommandSpec,
    args: &[Bytes],
) -> Intercept {
    use CommandId::*;
    let tx = &mut session.tx;
    let queuing = tx.is_queuing();
    let err = |text: &str| Intercept::Reply(Frame::error(text));
    match spec.id {
        Multi if queuing => err("ERR MULTI calls can not be nested"),
        Multi => {
            tx.queued = Some(Vec::new());
            tx.aborted = false;
            tx.slot = None;
            tx.has_alone = false;
            Intercept::Reply(Frame::ok())
        }
        Exec if !queuing => err("ERR EXEC without MULTI"),
        Exec => {
            let queued = tx.queued.take().unwrap_or_default();
            tx.has_alone = false;
            let watched = std::mem::take(&mut tx.watched);
            let watch_slot = tx.watch_slot.take();
            if std::mem::take(&mut tx.aborted) {
                return err("EXECABORT Transaction discarded because of previous errors.");
            }
            let slot = match (tx.slot.take(), watch_slot) {
                (Some(a), Some(b)) if a != b => {
                    return Intercept::Reply(CommandError::CrossSlot.into())
                }
                (a, b) => a.or(b),
            };
            Intercept::Job(TxJob(Job::Exec {
                queued,
                watched,
                slot,
            }))
        }
        Discard if !queuing => err("ERR DISCARD without MULTI"),
        Discard => {
            tx.queued = None;
            tx.aborted = false;
            tx.slot = None;
            tx.has_alone = false;
            tx.unwatch();
            Intercept::Reply(Frame::ok())
        }
        Watch if queuing => err("ERR WATCH inside MULTI is not allowed"),
        Watch => {
            let keys: Vec<Bytes> = spec.keys(args).cloned().collect();
            let slot = key_slot(&keys[0]);
            if keys.iter().any(|k| key_slot(k) != slot) || tx.watch_slot.is_some_and(|s| s != slot)
            {
                return Intercept::Reply(CommandError::CrossSlot.into());
            }
            Intercept::Job(TxJob(Job::Watch { keys, slot }))
        }
        // Redis runs these at once even inside a transaction.
        Quit | Reset => Intercept::Pass,
        _ if queuing => match queue(node, tx, spec, args) {
            Ok(()) => Intercept::Reply(Frame::simple("QUEUED")),
            Err(e) => {
                tx.aborted = true;
                Intercept::Reply(e.into())
            }
        },
        _ => Intercept::Pass,
    }
}

/// Queues a command, checking that its keys share the transaction's slot.
fn queue(
    node: &Node,
    tx: &mut TxState,
    spec: &'static CommandSpec,
    args: &[Bytes],
) -> Result<(), CommandError> {
    // `key_positions`, not the table's range alone: `LMPOP 2 a b LEFT` names its keys through
    // a count.
    let keyed = spec.key_positions(args).next().is_some();
    let mixed = || {
        CommandError::Err(format!(
            "'{}' cannot be queued: a transaction with commands over every shard or about a \
             slot (DBSIZE, KEYS, SCAN, FLUSHALL, CLUSTER COUNTKEYSINSLOT, ...) can hold no \
             keyed command and no WATCHed key (a keyed transaction is one entry of one shard's \
             log)",
            spec.name
        ))
    };
    // Pub/sub never goes through the log: it runs here when EXEC's reply is back.
    let runs = if spec.flags.contains(Flags::PUBSUB) {
        Where::Local
    } else if keyed {
        match route::route(&node.ring, spec, args, true) {
            Route::CrossSlot => return Err(CommandError::CrossSlot),
            _ => {
                let slot = route::request_slot(spec, args).unwrap_or(0);
                if tx.slot.is_some_and(|s| s != slot) {
                    return Err(CommandError::CrossSlot);
                }
                if tx.has_alone {
                    return Err(mixed());
                }
                tx.slot = Some(slot);
                Where::Entry
            }
        }
    } else if route::route(&node.ring, spec, args, true) == Route::Local {
        Where::Local
    } else {
        if tx.slot.is_some() || tx.watch_slot.is_some() {
            return Err(mixed());
        }
        tx.has_alone = true;
        Where::Alone
    };
    if let Some(queued) = tx.queued.as_mut() {
        queued.push(Queued {
            spec,
            args: args.to_vec(),
            runs,
        });
    }
    Ok(())
}

/// What a node asks a slot's leader for a transaction (over `PeerRequest::Tx`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum TxRequest {
    /// The fingerprints of `keys` (an array of integers or nils).
    Watch { group: GroupId, keys: Vec<Bytes> },
    /// Run `commands` (each name first) as one entry, if `watched` still hold.
    Exec {
        group: GroupId,
        watched: Vec<Watched>,
        commands: Vec<Vec<Bytes>>,
    },
}

impl TxRequest {
    fn group(&self) -> GroupId {
        match self {
            TxRequest::Watch { group, .. } | TxRequest::Exec { group, .. } => *group,
        }
    }
}

/// Runs a transaction job for a client connection: `WATCH` or `EXEC`.
pub async fn run_job(node: &Arc<Node>, session: &mut Session, job: TxJob) -> Frame {
    match job.0 {
        Job::Watch { keys, slot } => {
            let group = shard_group(node.ring.shard_of(slot));
            let reply = call_leader(
                node,
                TxRequest::Watch {
                    group,
                    keys: keys.clone(),
                },
            )
            .await;
            let Frame::Array(prints) = reply else {
                return reply;
            };
            let tx = &mut session.tx;
            tx.watch_slot = Some(slot);
            for (key, print) in keys.into_iter().zip(prints) {
                // A key watched twice keeps its first state, as in Redis.
                if tx.watched.iter().any(|w| w.key == key) {
                    continue;
                }
                // Always an integer from this build's leader (`keyspace::watch_print`).
                let fingerprint = match print {
                    Frame::Integer(i) => Some(i as u64),
                    _ => None,
                };
                tx.watched.push(Watched { key, fingerprint });
            }
            Frame::ok()
        }
        Job::Exec {
            queued,
            watched,
            slot,
        } => {
            let reply = match slot {
                None => Frame::Array(Vec::new()),
                Some(slot) => {
                    let group = shard_group(node.ring.shard_of(slot));
                    let commands = queued
                        .iter()
                        .filter(|q| q.runs == Where::Entry)
                        .map(|q| q.args.clone())
                        .collect();
                    let request = TxRequest::Exec {
                        group,
                        watched,
                        commands,
                    };
                    call_leader(node, request).await
                }
            };
            let Frame::Array(replies) = reply else {
                // Aborted by a watched key (nil), or not run at all (an error).
                return reply;
            };
            let mut replies = replies.into_iter();
            let mut merged = Vec::with_capacity(queued.len());
            for q in queued {
                merged.push(match q.runs {
                    Where::Entry => replies.next().unwrap_or(Frame::Null),
                    Where::Local => match super::run(node, session, q.spec, &q.args, None) {
                        Ran::Reply(f) => f,
                        Ran::Write(_) => Frame::error("ERR command cannot write here"),
                    },
                    Where::Alone => crate::pipeline::run_alone(node, session, q.spec, q.args).await,
                });
            }
            Frame::Array(merged)
        }
    }
}

/// Sends `request` to its group's leader (this node or a peer), retrying while leadership
/// moves, until [`RETRY_DEADLINE`].
async fn call_leader(node: &Arc<Node>, request: TxRequest) -> Frame {
    let group = request.group();
    let is_exec = matches!(request, TxRequest::Exec { .. });
    let deadline = Instant::now() + RETRY_DEADLINE;
    let mut backoff = Duration::from_millis(10);
    loop {
        let attempt = match node.replica(group).filter(|r| r.is_leader()) {
            Some(replica) => serve_here(node, &replica, request.clone()).await,
            None => match node.leader_of(group) {
                Some(leader) if leader != node.id => {
                    let sent = PeerRequest::Tx(request.clone());
                    match node.call_peer(leader, sent, TX_TIMEOUT).await {
                        Ok(PeerResponse::Tx(reply)) => reply,
                        Ok(other) => {
                            let e = format!("node {leader} answered a transaction with {other:?}");
                            return CommandError::Unknown(e).into();
                        }
                        Err(PeerCallError::Lost(e)) if is_exec => {
                            return CommandError::Unknown(e).into()
                        }
                        Err(_) => ForwardReply::NotLeader { leader: None },
                    }
                }
                _ => ForwardReply::NotLeader { leader: None },
            },
        };
        if let ForwardReply::Reply(reply) = attempt {
            return reply;
        }
        if Instant::now() + backoff > deadline {
            return CommandError::TryAgain(format!("group {group} has no reachable leader")).into();
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(50));
    }
}

/// Answers a peer's transaction request: only where this node leads the group.
pub async fn serve(node: &Arc<Node>, request: TxRequest) -> ForwardReply {
    match node.replica(request.group()).filter(|r| r.is_leader()) {
        Some(replica) => serve_here(node, &replica, request).await,
        None => ForwardReply::NotLeader {
            leader: node.leader_of(request.group()),
        },
    }
}

async fn serve_here(node: &Node, replica: &Arc<Replica>, request: TxRequest) -> ForwardReply {
    let outcome = match request {
        TxRequest::Watch { keys, .. } => watch_here(node, replica, &keys).await,
        TxRequest::Exec {
            watched, commands, ..
        } => exec_here(node, replica, watched, commands).await,
    };
    match outcome {
        Ok(reply) => ForwardReply::Reply(reply),
        Err(NotServed::NotLeader(leader)) => ForwardReply::NotLeader { leader },
        Err(e) => ForwardReply::Reply(not_served(e)),
    }
}

/// The fingerprints of `keys` as the leader sees them after a linearizable barrier.
async fn watch_here(
    node: &Node,
    replica: &Arc<Replica>,
    keys: &[Bytes],
) -> Result<Frame, NotServed> {
    replica.read_barrier().await?;
    let now = node.clock.wall_ms(Instant::now());
    let slots = replica.keyspace().read_slots(keys.iter().map(|k| &k[..]));
    Ok(Frame::Array(
        keys.iter()
            .map(|k| Frame::Integer(slots.watch_print(k, now) as i64))
            .collect(),
    ))
}

/// Turns a step's reply into its command's (`PendingWrite::then`).
type Reshape = fn(Frame) -> Frame;

/// How one queued command's reply is made from the entry's replies.
enum Shape {
    /// Refused before the entry (a syntax error): this is its reply.
    Fixed(Frame),
    /// The entry's next step reply, shaped by the command.
    Step(Reshape),
}

/// How a queued command becomes a step of the transaction's entry, and how the step's reply
/// becomes the command's; `Err`: refused before the entry (a syntax error), with its reply.
fn plan_step(
    node: &Node,
    session: &mut Session,
    replica: &Arc<Replica>,
    spec: &'static CommandSpec,
    args: Vec<Bytes>,
) -> Result<(TxStep, Reshape), Frame> {
    let as_is: Reshape = |f| f;
    let read = |args: Vec<Bytes>| TxStep::Read {
        keys: spec.keys(&args).cloned().collect(),
        args,
    };
    match spec.id {
        // Decided inside `apply`, against the transaction's own view: `SORT` reads pattern keys
        // that are not among its keys, `SPOP` picks from the set as the earlier steps left it
        // (a choice made here would be made on the state before the transaction).
        CommandId::Sort | CommandId::SortRo => {
            return Ok((TxStep::Write(WriteOp::Data { args }), as_is))
        }
        CommandId::Spop => {
            return crate::types::set::spop_in_transaction(&args)
                .map(|op| (TxStep::Write(op), as_is))
                .map_err(Frame::from)
        }
        _ => {}
    }
    if !spec.flags.contains(Flags::WRITE) {
        return Ok((read(args), as_is));
    }
    match super::run(node, session, spec, &args, Some(replica)) {
        Ran::Write(write) => Ok((TxStep::Write(write.proposal.op), write.then)),
        Ran::Reply(reply) if reply.is_error() => Err(reply),
        // A write command that only reads (`GETEX key`): read inside the entry.
        Ran::Reply(_) => Ok((read(args), as_is)),
    }
}

/// Builds the transaction's entry on the leader, proposes it, and shapes its reply.
async fn exec_here(
    node: &Node,
    replica: &Arc<Replica>,
    watched: Vec<Watched>,
    commands: Vec<Vec<Bytes>>,
) -> Result<Frame, NotServed> {
    let mut session = Session::peer(Version::Resp3);
    let mut shapes = Vec::with_capacity(commands.len());
    let mut steps = Vec::with_capacity(commands.len());
    for args in commands {
        let spec = match CommandSpec::lookup(&args) {
            Ok(spec) => spec,
            Err(_) => {
                shapes.push(Shape::Fixed(Frame::error("ERR unknown command")));
                continue;
            }
        };
        match plan_step(node, &mut session, replica, spec, args) {
            Ok((step, then)) => {
                steps.push(step);
                shapes.push(Shape::Step(then));
            }
            Err(reply) => shapes.push(Shape::Fixed(reply)),
        }
    }
    let proposal = Proposal {
        now_ms: node.clock.wall_ms(Instant::now()),
        op: WriteOp::Exec { watched, steps },
    };
    let reply = replica.submit(proposal).await?.reply().await?;
    let Frame::Array(replies) = reply else {
        return Ok(reply);
    };
    let mut replies = replies.into_iter();
    Ok(Frame::Array(
        shapes
            .into_iter()
            .map(|shape| match shape {
                Shape::Fixed(f) => f,
                Shape::Step(then) => replies.next().map(then).unwrap_or(Frame::Null),
            })
            .collect(),
    ))
}

/// How `apply` runs a transaction's read: the command's own code, against the transaction's
/// view of its keys, at the entry's clock. Holds the node weakly (the node owns the replicas).
pub fn tx_reader(node: Weak<Node>) -> TxReader {
    Arc::new(
        move |keyspace: &Keyspace, args: &[Bytes], now: UnixMillis| -> Frame {
            let Some(node) = node.upgrade() else {
                return Frame::error("ERR node is shutting down");
            };
            let spec = match CommandSpec::lookup(args) {
                Ok(spec) => spec,
                Err(_) => return Frame::error("ERR unknown command"),
            };
            let mut session = Session::internal();
            match super::run_on_keyspace(&node, &mut session, spec, args, keyspace, now) {
                Ran::Reply(f) => f,
                Ran::Write(_) => Frame::error("ERR command cannot write here"),
            }
        },
    )
}
