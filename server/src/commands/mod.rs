//! Command execution: from a request's arguments to a reply.
//!
//! [`execute`] resolves the request against the command table (unknown command, arity, unknown
//! subcommand), checks authentication, then hands a [`Ctx`] to the family module that implements
//! the command. Reads look at the keyspace directly; writes build a deterministic
//! [`WriteOp`](crate::store::WriteOp) and propose it to the shard, whose `apply` makes the reply.

mod acl;
pub(crate) mod args;
mod client;
pub mod cluster;
mod command;
mod config;
mod connection;
mod diagnostics;
mod dump;
mod expire;
mod info;
mod keys;
mod memory;
pub mod pubsub;
mod server;
mod strings;
pub mod transaction;

pub use info::process_rss_bytes;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use shoal_protocol::{CommandId, CommandSpec, Flags, Frame, LookupError, Version};

use crate::clients::ClientHandle;
use crate::error::{CommandError, CommandResult};
use crate::node::Node;
use crate::shard::Replica;
use crate::store::keyspace::SlotsRef;
use crate::store::{Keyspace, Proposal, UnixMillis, WriteOp};

/// Per-connection state that commands read and change.
pub struct Session {
    pub handle: Arc<ClientHandle>,
    pub resp: Version,
    pub authenticated: bool,
    /// The ACL user the connection runs as; `None` for the node's own and forwarded requests
    /// (authorized where they came from).
    pub user: Option<String>,
    /// Set by `QUIT`: the connection closes once this reply is written.
    pub close_after_reply: bool,
    /// Whether commands count in the node's statistics (not for the node's own requests).
    pub counted: bool,
    /// A Redis Cluster client: keys led elsewhere get `-MOVED`, and a command's keys must
    /// share one slot. Set by `--cluster-mode redirect`, or by asking for the topology.
    pub redirect: bool,
    /// After `READONLY`: reads of shards this node replicates are served from its replica,
    /// possibly stale, as a Redis Cluster replica serves them.
    pub readonly: bool,
    /// Set by `MONITOR`: after its `+OK` the connection becomes a monitor feed.
    pub monitor: bool,
    /// `MULTI` / `WATCH` state.
    pub tx: transaction::TxState,
    /// Channels, patterns and shard channels subscribed to.
    pub pubsub: crate::pubsub::Subscriptions,
}

impl Session {
    /// The session requests forwarded by a peer (or made by the node itself) run in: already
    /// authenticated at their origin.
    pub fn peer(resp: Version) -> Session {
        let nowhere = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        let mut session = Session::new(Arc::new(ClientHandle::detached(nowhere)), true);
        session.resp = resp;
        session.user = None;
        session
    }

    /// The session of the node's own requests (metadata writes): not counted in statistics.
    pub fn internal() -> Session {
        let mut session = Session::peer(Version::Resp3);
        session.counted = false;
        session
    }

    pub fn new(handle: Arc<ClientHandle>, authenticated: bool) -> Session {
        Session {
            handle,
            resp: Version::Resp2,
            authenticated,
            user: Some(crate::acl::DEFAULT_USER.to_owned()),
            close_after_reply: false,
            counted: true,
            redirect: false,
            readonly: false,
            monitor: false,
            tx: transaction::TxState::default(),
            pubsub: crate::pubsub::Subscriptions::default(),
        }
    }
}

/// Everything a command implementation gets.
pub struct Ctx<'a> {
    pub node: &'a Node,
    pub session: &'a mut Session,
    /// The whole request, the command name first.
    pub args: &'a [Bytes],
    pub spec: &'static CommandSpec,
    /// This command's "now" in unix ms: reads judge expiry by it, writes carry it.
    pub now_ms: UnixMillis,
    /// The replica a keyed command runs against: the leader of its keys' group (the data
    /// path has already routed the request there).
    replica: Option<&'a Replica>,
    /// Reads inside a transaction's entry: the transaction's view of its keys, used instead
    /// of the replica's keyspace.
    scratch: Option<&'a Keyspace>,
    /// The write the command asked for; the data path proposes it once the command returns.
    write: Option<PendingWrite>,
}

/// A write a command asked for, and how to turn `apply`'s reply into the command's reply.
pub struct PendingWrite {
    pub proposal: Proposal,
    pub then: fn(Frame) -> Frame,
}

/// What running a command produced.
pub enum Ran {
    /// The reply (from a read, a node-level command, or an error).
    Reply(Frame),
    /// A write to propose to the replica's group; the reply comes from `apply`.
    Write(PendingWrite),
}

impl<'a> Ctx<'a> {
    /// Asks for `op` to be proposed; the command's reply is what applying it produces.
    pub fn propose(&mut self, op: WriteOp) -> CommandResult {
        self.propose_then(op, |reply| reply)
    }

    /// Like [`Ctx::propose`], with `then` shaping `apply`'s reply into the command's.
    pub fn propose_then(&mut self, op: WriteOp, then: fn(Frame) -> Frame) -> CommandResult {
        self.write = Some(PendingWrite {
            proposal: Proposal {
                now_ms: self.now_ms,
                op,
            },
            then,
        });
        // Never sent: the data path replaces it with the write's reply.
        Ok(Frame::Null)
    }

    /// The keyspace of the replica this command runs against.
    pub fn keyspace(&self) -> &'a Keyspace {
        if let Some(scratch) = self.scratch {
            return scratch;
        }
        self.replica
            .expect("the data path routes keyed commands to a replica")
            .keyspace()
    }

    /// Whether this command runs on its group's leader, which can propose. A read after
    /// `READONLY` runs on a follower, which cannot.
    pub fn on_leader(&self) -> bool {
        self.replica.is_some_and(Replica::is_leader)
    }

    /// The slots of `keys`, held for reading together (multi-key reads see multi-key writes whole).
    pub fn read_keys(&self, keys: &[Bytes]) -> SlotsRef<'a> {
        self.keyspace().read_slots(keys.iter().map(|k| &k[..]))
    }

    /// The argument at `i` (0 is the command name).
    pub fn arg(&self, i: usize) -> &Bytes {
        &self.args[i]
    }
}

/// Resolves a request against the command table and the session's authentication: the
/// command to run, or the error to reply with.
pub fn resolve(
    node: &Node,
    session: &Session,
    args: &[Bytes],
) -> Result<&'static CommandSpec, Frame> {
    let spec = CommandSpec::lookup(args).map_err(|e| Frame::from(lookup_error(e, args)))?;
    if !session.authenticated && !spec.flags.contains(Flags::NO_AUTH) {
        node.stats.reject(spec.id);
        return Err(CommandError::NoAuth.into());
    }
    acl::authorize(node, session, spec, args)?;
    Ok(spec)
}

/// Runs a resolved command: against `replica` for keyed and per-shard commands, against the
/// node otherwise.
pub fn run(
    node: &Node,
    session: &mut Session,
    spec: &'static CommandSpec,
    args: &[Bytes],
    replica: Option<&Replica>,
) -> Ran {
    let started = Instant::now();
    session.handle.touch(spec.id, started);
    // Redis refuses commands flagged `denyoom` while over `maxmemory` and unable to evict.
    if spec.flags.contains(Flags::DENYOOM) {
        if let Err(oom) = replica.map_or(Ok(()), Replica::admit_denyoom) {
            if session.counted {
                node.stats.reject(spec.id);
            }
            return Ran::Reply(oom.into());
        }
    }
    let ctx = Ctx {
        node,
        session,
        args,
        spec,
        now_ms: node.clock.wall_ms(started),
        replica,
        scratch: None,
        write: None,
    };
    run_ctx(ctx, started)
}

/// Runs a read command of a transaction against `keyspace` (the transaction's view of its
/// keys) at the entry's clock `now_ms`.
pub fn run_on_keyspace(
    node: &Node,
    session: &mut Session,
    spec: &'static CommandSpec,
    args: &[Bytes],
    keyspace: &Keyspace,
    now_ms: UnixMillis,
) -> Ran {
    let ctx = Ctx {
        node,
        session,
        args,
        spec,
        now_ms,
        replica: None,
        scratch: Some(keyspace),
        write: None,
    };
    run_ctx(ctx, Instant::now())
}

fn run_ctx(mut ctx: Ctx<'_>, started: Instant) -> Ran {
    let (node, spec) = (ctx.node, ctx.spec);
    let reply = dispatch(&mut ctx).unwrap_or_else(Frame::from);
    let write = ctx.write.take();
    if ctx.session.counted {
        let usec = started.elapsed().as_micros() as u64;
        node.stats.record(spec.id, usec, reply.is_error());
        if node.slowlog.is_slow(usec) {
            let name = ctx.session.handle.meta.lock().name.clone();
            let addr = ctx.session.handle.addr;
            node.slowlog
                .push(usec, ctx.args, addr, name.unwrap_or_default());
        }
    }
    match write {
        Some(w) if !reply.is_error() => Ran::Write(w),
        _ => Ran::Reply(reply),
    }
}

fn dispatch(ctx: &mut Ctx<'_>) -> CommandResult {
    use crate::pubsub::Kind;
    use CommandId::*;
    match ctx.spec.id {
        Ping => server::ping(ctx),
        Echo => server::echo(ctx),
        Hello => connection::hello(ctx),
        Auth => connection::auth(ctx),
        Select => connection::select(ctx),
        Quit => connection::quit(ctx),
        Reset => connection::reset(ctx),
        Command => Ok(command::all()),
        // Their arity (-2) makes lookup resolve these to a subcommand.
        Client | Config | Cluster | Acl | Memory | Object => Err(CommandError::Syntax),
        ClusterInfo => cluster::info(ctx),
        ClusterHelp => cluster::help(ctx),
        ClusterSlots => cluster::slots(ctx),
        ClusterShards => cluster::shards(ctx),
        ClusterNodes => cluster::nodes(ctx),
        ClusterMyid => cluster::myid(ctx),
        ClusterMyshardid => cluster::myshardid(ctx),
        ClusterKeyslot => cluster::keyslot(ctx),
        ClusterCountkeysinslot => cluster::countkeysinslot(ctx),
        ClusterGetkeysinslot => cluster::getkeysinslot(ctx),
        ClusterLinks => cluster::links(ctx),
        // Needs the metadata group: the pipeline runs it as an async job (`cluster::forget`).
        ClusterForget => Err(CommandError::Err("CLUSTER FORGET cannot run here".into())),
        Readonly => cluster::readonly(ctx),
        Readwrite => cluster::readwrite(ctx),
        Asking => cluster::asking(ctx),
        ClientId => client::id(ctx),
        ClientSetname => client::setname(ctx),
        ClientGetname => client::getname(ctx),
        ClientList => client::list(ctx),
        ClientInfo => client::info(ctx),
        ClientSetinfo => client::setinfo(ctx),
        ClientKill => client::kill(ctx),
        ClientUnblock => client::unblock(ctx),
        ClientHelp => client::help(ctx),
        CommandCount => command::count(ctx),
        CommandInfo => command::info(ctx),
        CommandDocs => command::docs(ctx),
        CommandList => command::list(ctx),
        CommandGetkeys => command::getkeys(ctx),
        CommandHelp => command::help(ctx),
        ConfigGet => config::get(ctx),
        ConfigSet => config::set(ctx),
        ConfigResetstat => config::resetstat(ctx),
        ConfigHelp => config::help(ctx),
        ConfigRewrite => config::rewrite(ctx),
        Slowlog | Latency => Err(CommandError::Syntax),
        SlowlogGet => diagnostics::slowlog_get(ctx),
        SlowlogLen => diagnostics::slowlog_len(ctx),
        SlowlogReset => diagnostics::slowlog_reset(ctx),
        SlowlogHelp => diagnostics::slowlog_help(ctx),
        LatencyHistogram => diagnostics::latency_histogram(ctx),
        LatencyHelp => diagnostics::latency_help(ctx),
        Monitor => {
            ctx.session.monitor = true;
            Ok(Frame::ok())
        }
        Info => info::info(ctx),
        Time => server::time(ctx),
        Dbsize => server::dbsize(ctx),
        Flushdb | Flushall => server::flush(ctx),
        Get => strings::get(ctx),
        Set => strings::set(ctx),
        Setnx => strings::setnx(ctx),
        Setex => strings::setex(ctx),
        Psetex => strings::psetex(ctx),
        Getset => strings::getset(ctx),
        Getdel => strings::getdel(ctx),
        Getex => strings::getex(ctx),
        Mget => strings::mget(ctx),
        Mset => strings::mset(ctx),
        Msetnx => strings::msetnx(ctx),
        Append => strings::append(ctx),
        Strlen => strings::strlen(ctx),
        Getrange | Substr => strings::getrange(ctx),
        Setrange => strings::setrange(ctx),
        Incr => strings::incr_by(ctx, Some(1)),
        Decr => strings::incr_by(ctx, Some(-1)),
        Incrby => strings::incr_by(ctx, None),
        Decrby => strings::decrby(ctx),
        Incrbyfloat => strings::incrbyfloat(ctx),
        Del | Unlink => keys::del(ctx),
        Exists => keys::exists(ctx),
        Type => keys::key_type(ctx),
        Rename => keys::rename(ctx, false),
        Renamenx => keys::rename(ctx, true),
        Keys => keys::keys(ctx),
        Scan => keys::scan(ctx),
        Randomkey => keys::randomkey(ctx),
        Touch => keys::exists(ctx),
        Expire => expire::expire(ctx, 1000, true),
        Pexpire => expire::expire(ctx, 1, true),
        Expireat => expire::expire(ctx, 1000, false),
        Pexpireat => expire::expire(ctx, 1, false),
        Ttl => expire::ttl(ctx, false, false),
        Pttl => expire::ttl(ctx, true, false),
        Expiretime => expire::ttl(ctx, false, true),
        Pexpiretime => expire::ttl(ctx, true, true),
        Persist => expire::persist(ctx),
        Unwatch => {
            ctx.session.tx.unwatch();
            Ok(Frame::ok())
        }
        // The connection's data path runs these (`transaction::intercept`).
        Multi | Exec | Discard | Watch => Err(CommandError::Err(format!(
            "{} cannot run here",
            ctx.spec.name
        ))),
        Subscribe => pubsub::subscribe(ctx, Kind::Channel),
        Psubscribe => pubsub::subscribe(ctx, Kind::Pattern),
        Ssubscribe => pubsub::subscribe(ctx, Kind::Shard),
        Unsubscribe => pubsub::unsubscribe(ctx, Kind::Channel),
        Punsubscribe => pubsub::unsubscribe(ctx, Kind::Pattern),
        Sunsubscribe => pubsub::unsubscribe(ctx, Kind::Shard),
        Publish => pubsub::publish(ctx, false),
        Spublish => pubsub::publish(ctx, true),
        // Its arity (-2) makes lookup resolve it to a subcommand.
        Pubsub => Err(CommandError::Syntax),
        PubsubChannels => pubsub::channels(ctx, Kind::Channel),
        PubsubShardchannels => pubsub::channels(ctx, Kind::Shard),
        PubsubNumsub => pubsub::numsub(ctx, Kind::Channel),
        PubsubShardnumsub => pubsub::numsub(ctx, Kind::Shard),
        PubsubNumpat => pubsub::numpat(ctx),
        PubsubHelp => pubsub::help(ctx),
        AclGetuser => acl::getuser(ctx),
        AclList => acl::list(ctx),
        AclUsers => acl::users(ctx),
        AclWhoami => acl::whoami(ctx),
        AclCat => acl::cat(ctx),
        AclLog => acl::log(ctx),
        AclHelp => acl::help(ctx),
        // They write the metadata group: the pipeline runs them as async jobs.
        AclSetuser | AclDeluser => Err(CommandError::Err("ACL writes cannot run here".into())),
        MemoryUsage => memory::usage(ctx),
        MemoryStats => memory::stats(ctx),
        MemoryHelp => memory::help(ctx),
        ObjectFreq => memory::freq(ctx),
        Dump => dump::dump(ctx),
        Restore => dump::restore(ctx),
        ObjectIdletime => memory::idletime(ctx),
        Hset | Hsetnx | Hget | Hmget | Hmset | Hdel | Hlen | Hstrlen | Hexists | Hkeys | Hvals
        | Hgetall | Hincrby | Hincrbyfloat | Hrandfield | Hscan | Lpush | Rpush | Lpushx
        | Rpushx | Lpop | Rpop | Llen | Lrange | Lindex | Lset | Linsert | Lrem | Ltrim | Lpos
        | Lmove | Rpoplpush | Lmpop | Sadd | Srem | Smembers | Sismember | Smismember | Scard
        | Spop | Srandmember | Smove | Sinter | Sintercard | Sunion | Sdiff | Sinterstore
        | Sunionstore | Sdiffstore | Sscan | Zadd | Zincrby | Zrem | Zcard | Zscore | Zmscore
        | Zrank | Zrevrank | Zcount | Zlexcount | Zrange | Zrangestore | Zrevrange
        | Zrangebyscore | Zrevrangebyscore | Zrangebylex | Zrevrangebylex | Zpopmin | Zpopmax
        | Zmpop | Zrandmember | Zunionstore | Zinterstore | Zdiffstore | Zunion | Zinter
        | Zdiff | Zremrangebyrank | Zremrangebyscore | Zremrangebylex | Zscan | ObjectEncoding
        | ObjectRefcount | ObjectHelp | Copy | Sort | SortRo => crate::types::run(ctx),
        // Outside a transaction the data path waits for them (`crate::blocking`); inside one
        // (here) they are their non-blocking pop, as in Redis.
        Blpop | Brpop | Brpoplpush | Blmove | Blmpop | Bzpopmin | Bzpopmax | Bzmpop => {
            crate::types::run(ctx)
        }
    }
}

fn lookup_error(e: LookupError, args: &[Bytes]) -> CommandError {
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    match e {
        LookupError::UnknownCommand => {
            // Redis shows at most 128 bytes of the name, then quotes arguments (each followed
            // by a space) while fewer than 128 bytes are shown, each cut to the room left.
            let name = args.first().map_or(&[][..], |n| &n[..n.len().min(128)]);
            let mut rest = Vec::new();
            for a in args.iter().skip(1) {
                if rest.len() >= 128 {
                    break;
                }
                let room = 128 - rest.len();
                rest.push(b'\'');
                rest.extend_from_slice(&a[..a.len().min(room)]);
                rest.extend_from_slice(b"' ");
            }
            CommandError::UnknownCommand(
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(&rest).into_owned(),
            )
        }
        LookupError::UnknownSubcommand => {
            CommandError::UnknownSubcommand(text(&args[1]), text(&args[0]).to_ascii_uppercase())
        }
        LookupError::WrongArity => {
            // `CONFIG GET` with too few arguments is reported as `config|get`, as Redis does.
            let name = text(&args[0]).to_ascii_lowercase();
            let sub = args
                .get(1)
                .map(|s| format!("{name}|{}", text(s).to_ascii_lowercase()))
                .filter(|s| CommandSpec::by_name(s).is_some());
            CommandError::WrongArity(sub.unwrap_or(name))
        }
    }
}
