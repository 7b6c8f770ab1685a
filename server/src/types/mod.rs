//! The collection data types' commands: hashes, lists, sets, sorted sets.
//!
//! Each family module has `read` (run on the leader's replica after the read barrier, through a
//! [`Reader`]) and `write` (run by `apply` on every replica, through [`SlotsMut`]). A write
//! command travels through the log as its own arguments ([`WriteOp::Data`]): its effect depends
//! only on the data and the entry's clock, so every replica computes the same result, as Redis
//! replicas do when they replay a command. Commands with a random choice resolve it on the
//! leader first (`SPOP` → [`WriteOp::PopMembers`]; inside a transaction, where the set is
//! only known in `apply`, a seed: [`WriteOp::PopSeeded`]) or are reads (`SRANDMEMBER`).

pub mod hash;
pub mod list;
pub mod set;
pub mod sort;
pub mod zset;

use bytes::Bytes;
use shoal_protocol::{CommandId, CommandSpec, Frame};

use crate::commands::Ctx;
use crate::error::{CommandError, CommandResult};
use crate::numbers::parse_i64;
use crate::store::keyspace::{SlotsMut, SlotsRef};
use crate::store::value::{Hash, List, Set, Value, ZSet};
use crate::store::{Entry, UnixMillis, WriteOp};

/// Applies a data-type write carried as its arguments (see [`WriteOp::Data`]).
pub fn apply(s: &mut SlotsMut<'_>, args: &[Bytes], now: UnixMillis) -> CommandResult {
    let spec = CommandSpec::lookup(args).map_err(|_| CommandError::Syntax)?;
    let mut w = Writer { s, now };
    use CommandId::*;
    let result = match spec.id {
        Hset | Hsetnx | Hmset | Hdel | Hincrby | Hincrbyfloat => hash::write(&mut w, spec.id, args),
        Lpush | Rpush | Lpushx | Rpushx | Lpop | Rpop | Lset | Linsert | Lrem | Ltrim | Lmove
        | Rpoplpush | Lmpop => list::write(&mut w, spec.id, args),
        Sadd | Srem | Smove | Sinterstore | Sunionstore | Sdiffstore => {
            set::write(&mut w, spec.id, args)
        }
        Blpop | Brpop | Brpoplpush | Blmove | Blmpop | Bzpopmin | Bzpopmax | Bzmpop => {
            blocking_pop(&mut w, spec.id, args)
        }
        Zadd | Zincrby | Zrem | Zpopmin | Zpopmax | Zmpop | Zrangestore | Zunionstore
        | Zinterstore | Zdiffstore | Zremrangebyrank | Zremrangebyscore | Zremrangebylex => {
            zset::write(&mut w, spec.id, args)
        }
        Copy => copy(&mut w, args),
        Sort | SortRo => sort::write(&mut w, spec.id, args),
        _ => Err(CommandError::Err(format!(
            "'{}' is not a data-type write",
            spec.name
        ))),
    };
    // A collection left empty (emptied, or created by a command that then failed) is deleted,
    // as Redis never keeps empty collections.
    for key in spec.keys(args) {
        let empty =
            w.s.get(key, now)
                .and_then(Entry::collection)
                .is_some_and(Value::is_empty);
        if empty {
            w.s.remove(key);
        }
    }
    result
}

/// A blocking pop inside a transaction (`EXEC` applies it): its non-blocking pop, with the
/// blocking command's reply (nil when every key is empty, as a timed-out wait in Redis).
fn blocking_pop(w: &mut Writer<'_, '_>, id: CommandId, args: &[Bytes]) -> CommandResult {
    let call = crate::blocking::Call::parse(id, args)?;
    let pop = CommandSpec::lookup(&call.pop).map_err(|_| CommandError::Syntax)?;
    let reply = match pop.id {
        CommandId::Zmpop => zset::write(w, pop.id, &call.pop)?,
        _ => list::write(w, pop.id, &call.pop)?,
    };
    Ok(call.shape.apply(reply))
}

/// Runs a data-type command: a read at once, a write proposed as a [`WriteOp`].
pub fn run(ctx: &mut Ctx<'_>) -> CommandResult {
    use CommandId::*;
    let id = ctx.spec.id;
    if ctx.spec.keys.numkeys > 0 {
        check_numkeys(ctx.args, ctx.spec.keys.numkeys as usize, ctx.spec.name)?;
    }
    match id {
        Spop => return set::spop(ctx),
        Sort | SortRo => return sort::run(ctx),
        Object | ObjectHelp => return object_help(ctx),
        _ => {}
    }
    if ctx.spec.flags.contains(shoal_protocol::Flags::WRITE) {
        return ctx.propose(WriteOp::Data {
            args: ctx.args.to_vec(),
        });
    }
    let keys: Vec<Bytes> = ctx.spec.keys(ctx.args).cloned().collect();
    let r = Reader {
        slots: ctx.read_keys(&keys),
        now: ctx.now_ms,
    };
    let args = ctx.args;
    match id {
        Hget | Hmget | Hlen | Hstrlen | Hexists | Hkeys | Hvals | Hgetall | Hrandfield | Hscan => {
            hash::read(&r, id, args)
        }
        Llen | Lrange | Lindex | Lpos => list::read(&r, id, args),
        Smembers | Sismember | Smismember | Scard | Srandmember | Sinter | Sintercard | Sunion
        | Sdiff | Sscan => set::read(&r, id, args),
        ObjectEncoding | ObjectRefcount => object(&r, id, args, ctx.node.memory.shares_integers()),
        _ => zset::read(&r, id, args),
    }
}

/// Redis's checks of a `numkeys` argument, made before routing needs the keys.
fn check_numkeys(args: &[Bytes], at: usize, name: &str) -> Result<usize, CommandError> {
    let zset_family = matches!(
        name,
        "zunion" | "zinter" | "zdiff" | "zunionstore" | "zinterstore" | "zdiffstore"
    );
    let n = match parse_i64(&args[at]) {
        Some(n) => n,
        None if zset_family => return Err(CommandError::NotInteger),
        None => 0,
    };
    if n <= 0 {
        return Err(if zset_family {
            CommandError::Err(format!(
                "at least 1 input key is needed for '{name}' command"
            ))
        } else {
            CommandError::Err("numkeys should be greater than 0".into())
        });
    }
    if n as usize > args.len() - at - 1 {
        let mpop = matches!(name, "lmpop" | "blmpop" | "zmpop" | "bzmpop");
        return Err(if zset_family || mpop {
            CommandError::Syntax
        } else {
            CommandError::Err("Number of keys can't be greater than number of args".into())
        });
    }
    Ok(n as usize)
}

pub fn bulk(b: &[u8]) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(b))
}

/// Read access to a command's keys.
pub struct Reader<'a> {
    slots: SlotsRef<'a>,
    pub now: UnixMillis,
}

/// Write access to a command's keys inside `apply`.
pub struct Writer<'s, 'a> {
    pub s: &'s mut SlotsMut<'a>,
    pub now: UnixMillis,
}

macro_rules! typed_access {
    ($get:ident, $get_mut:ident, $variant:ident, $ty:ty) => {
        impl Reader<'_> {
            /// The value at `key` if it is of this type; `WRONGTYPE` if of another.
            pub fn $get(&self, key: &[u8]) -> Result<Option<&$ty>, CommandError> {
                match self.slots.get(key, self.now) {
                    None => Ok(None),
                    Some(e) => match e.collection() {
                        Some(Value::$variant(v)) => Ok(Some(v)),
                        _ => Err(CommandError::WrongType),
                    },
                }
            }
        }

        impl Writer<'_, '_> {
            /// The value at `key` if it is of this type, for looking at before a change
            /// (a change of its own counts as a write: see `$get_mut`); `WRONGTYPE` if of
            /// another.
            pub fn $get(&mut self, key: &[u8]) -> Result<Option<&$ty>, CommandError> {
                match self.s.get(key, self.now) {
                    None => Ok(None),
                    Some(e) => match e.collection() {
                        Some(Value::$variant(v)) => Ok(Some(v)),
                        _ => Err(CommandError::WrongType),
                    },
                }
            }

            /// The value at `key` for writing if it is of this type (created empty with
            /// `create`; the caller's command leaves it non-empty or `apply` deletes it);
            /// `WRONGTYPE` if of another type.
            pub fn $get_mut(
                &mut self,
                key: &[u8],
                create: bool,
            ) -> Result<Option<&mut $ty>, CommandError> {
                if self.s.get(key, self.now).is_none() {
                    if !create {
                        return Ok(None);
                    }
                    let empty = Value::$variant(Default::default());
                    self.s.insert(Entry::new_collection(key, empty, 0));
                }
                match self
                    .s
                    .get_mut_in_place(key, self.now)
                    .and_then(Entry::collection_mut)
                {
                    Some(Value::$variant(v)) => Ok(Some(v)),
                    _ => Err(CommandError::WrongType),
                }
            }
        }
    };
}

typed_access!(hash, hash_mut, Hash, Hash);
typed_access!(list, list_mut, List, List);
typed_access!(set, set_mut, Set, Set);
typed_access!(zset, zset_mut, ZSet, ZSet);

impl Reader<'_> {
    pub fn entry(&self, key: &[u8]) -> Option<&Entry> {
        self.slots.get(key, self.now)
    }
}

impl Writer<'_, '_> {
    /// Replaces whatever `key` holds with `value` (a `*STORE` destination): no deadline, as in
    /// Redis; an empty value deletes the key.
    pub fn store(&mut self, key: &[u8], value: Value) {
        if value.is_empty() {
            self.s.remove(key);
        } else {
            self.s.insert(Entry::new_collection(key, value, 0));
        }
    }

    pub fn exists(&mut self, key: &[u8]) -> bool {
        self.s.get(key, self.now).is_some()
    }
}

/// `COPY source destination [DB db] [REPLACE]`.
fn copy(w: &mut Writer<'_, '_>, args: &[Bytes]) -> CommandResult {
    let mut replace = false;
    let mut i = 3;
    while i < args.len() {
        if args[i].eq_ignore_ascii_case(b"replace") {
            replace = true;
        } else if args[i].eq_ignore_ascii_case(b"db") && i + 1 < args.len() {
            i += 1;
            crate::commands::args::db_index(&args[i])?;
        } else {
            return Err(CommandError::Syntax);
        }
        i += 1;
    }
    let (from, to) = (&args[1], &args[2]);
    if from == to {
        return Err(CommandError::Err(
            "source and destination objects are the same".into(),
        ));
    }
    let Some(src) = w.s.get(from, w.now) else {
        return Ok(Frame::Integer(0));
    };
    let deadline = src.expires_at().unwrap_or(0);
    let copied = match src.collection() {
        Some(v) => Entry::new_collection(to, v.clone(), deadline),
        None => Entry::new(to, src.value(), deadline),
    };
    if !replace && w.exists(to) {
        return Ok(Frame::Integer(0));
    }
    w.s.insert(copied);
    Ok(Frame::Integer(1))
}

/// Redis keeps one shared object for each of the integers below this, used as the value of
/// every key set to one of them (its `OBJ_SHARED_INTEGERS`).
const SHARED_INTEGERS: i64 = 10_000;

/// `OBJECT ENCODING|REFCOUNT key` (`FREQ` and `IDLETIME` are the eviction's: `commands::memory`).
/// `shares_integers`: whether Redis would give small integer values its shared objects, whose
/// `REFCOUNT` reads `INT_MAX` (see [`crate::store::eviction::MemoryLimits::shares_integers`]).
fn object(r: &Reader<'_>, id: CommandId, args: &[Bytes], shares_integers: bool) -> CommandResult {
    let Some(e) = r.entry(&args[2]) else {
        return Ok(Frame::Null);
    };
    Ok(match id {
        CommandId::ObjectRefcount => {
            // A canonical integer in range: what Redis's `int` encoding shares.
            let shared = shares_integers
                && e.collection().is_none()
                && parse_i64(e.value()).is_some_and(|n| (0..SHARED_INTEGERS).contains(&n));
            Frame::Integer(if shared { i32::MAX as i64 } else { 1 })
        }
        _ => Frame::bulk(match e.collection() {
            Some(v) => v.encoding(),
            None => string_encoding(e.value()),
        }),
    })
}

/// Redis's encoding of a string value: `int` for a canonical 64-bit integer (up to 20 bytes),
/// `embstr` up to 44 bytes, `raw` beyond.
fn string_encoding(v: &[u8]) -> &'static str {
    if v.len() <= 20 && parse_i64(v).is_some() {
        "int"
    } else if v.len() <= 44 {
        "embstr"
    } else {
        "raw"
    }
}

fn object_help(ctx: &mut Ctx<'_>) -> CommandResult {
    if ctx.spec.id == CommandId::Object {
        return Err(CommandError::Syntax);
    }
    let lines = [
        "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "ENCODING <key>",
        "    Return the kind of internal representation used in order to store the value",
        "    associated with a <key>.",
        "FREQ <key>",
        "    Return the access frequency index of the <key>. The returned integer is",
        "    proportional to the logarithm of the recent access frequency of the key.",
        "IDLETIME <key>",
        "    Return the idle time of the <key>, that is the approximated number of",
        "    seconds elapsed since the last access to the key.",
        "REFCOUNT <key>",
        "    Return the number of references of the value associated with the specified",
        "    <key>.",
        "HELP",
        "    Print this help.",
    ];
    Ok(Frame::Array(
        lines.iter().map(|l| Frame::simple(*l)).collect(),
    ))
}

/// The cursor and `[MATCH pattern] [COUNT n]` options of `HSCAN`/`SSCAN`/`ZSCAN`; the cursor
/// must be a valid unsigned integer.
pub struct ScanArgs {
    pub cursor: u64,
    pub pattern: Option<Bytes>,
    pub count: usize,
}

/// Parses `HSCAN`/`SSCAN`/`ZSCAN key cursor [options]` in Redis's order: the cursor, then the
/// key (`lookup`, which may fail with `WRONGTYPE`), then the options, which Redis reads only
/// for a key that exists (a missing one gets the empty scan whatever follows the cursor).
pub fn scan_args<T>(
    args: &[Bytes],
    lookup: impl FnOnce() -> Result<Option<T>, CommandError>,
) -> Result<(ScanArgs, Option<T>), CommandError> {
    let cursor = std::str::from_utf8(&args[2])
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
        .ok_or(CommandError::InvalidCursor)?;
    let value = lookup()?;
    let mut pattern = None;
    let mut count = 10;
    let mut i = 3;
    while i < args.len() && value.is_some() {
        let opt = &args[i];
        let value = args.get(i + 1).ok_or(CommandError::Syntax)?;
        if opt.eq_ignore_ascii_case(b"match") {
            pattern = (&value[..] != b"*").then(|| value.clone());
        } else if opt.eq_ignore_ascii_case(b"count") {
            let n = parse_i64(value).ok_or(CommandError::NotInteger)?;
            if n < 1 {
                return Err(CommandError::Syntax);
            }
            count = n as usize;
        } else {
            return Err(CommandError::Syntax);
        }
        i += 2;
    }
    let scan = ScanArgs {
        cursor,
        pattern,
        count,
    };
    Ok((scan, value))
}

/// At most this many steps cover a large collection, however small `COUNT` is: each step
/// looks at every element (see [`ScanArgs::step`]), so a scan costs at most this many passes.
const MAX_SCAN_STEPS: u128 = 1024;

/// The seed-free hash that places an element in the cursor space: the same in every process,
/// so a cursor stays valid when a new leader answers the next call.
fn scan_position(elem: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::quality::FixedState::with_seed(0x5ca_c0de).hash_one(elem)
}

impl ScanArgs {
    pub fn matches(&self, item: &[u8]) -> bool {
        self.pattern
            .as_ref()
            .is_none_or(|p| crate::glob::glob_match(p, item, false))
    }

    /// The reply of a small encoding: the whole collection in one step (cursor 0), as Redis
    /// answers for listpacks and intsets.
    pub fn reply(items: Vec<Frame>) -> Frame {
        Frame::Array(vec![Frame::bulk("0"), Frame::Array(items)])
    }

    /// One step of a cursor over a large collection of `len` elements, each given by the
    /// bytes that identify it and what the reply shows for it (`matches` filters by the
    /// former). The cursor is a position in the 64-bit space of [`scan_position`]: a step
    /// returns the elements whose position lies in `[cursor, cursor + width)`, with the width
    /// chosen for about `COUNT` elements, and the next cursor is where it ended (0: done).
    /// An element's position never changes, so every element present for the whole scan is
    /// returned exactly once, whatever is added, removed or rehashed meanwhile.
    pub fn step<'a, T>(
        &self,
        len: usize,
        items: impl Iterator<Item = (&'a [u8], T)>,
        show: impl Fn(&'a [u8], T, &mut Vec<Frame>),
    ) -> Frame {
        let steps = (len.div_ceil(self.count).max(1) as u128)
            .next_power_of_two()
            .min(MAX_SCAN_STEPS);
        let width = (1u128 << 64) / steps;
        let start = self.cursor as u128;
        let end = start + width;
        let mut out = Vec::new();
        for (id, item) in items {
            let at = scan_position(id) as u128;
            if at >= start && at < end && self.matches(id) {
                show(id, item, &mut out);
            }
        }
        let next = if end >= 1u128 << 64 { 0 } else { end as u64 };
        Frame::Array(vec![Frame::bulk(next.to_string()), Frame::Array(out)])
    }
}

/// An option's value that must be a non-negative integer, refused (not an integer included)
/// with the option's own `message`, as Redis's `getPositiveLongFromObjectOrReply` with a
/// message does (`LPOS ... COUNT|MAXLEN`, `SINTERCARD ... LIMIT`).
pub fn non_negative(arg: &[u8], message: &str) -> Result<usize, CommandError> {
    match parse_i64(arg) {
        Some(n) if n >= 0 => Ok(n as usize),
        _ => Err(CommandError::Err(message.into())),
    }
}

/// Parses a `count` argument that must be non-negative (`LPOP`, `SPOP`).
pub fn positive_count(arg: &[u8]) -> Result<usize, CommandError> {
    non_negative(arg, "value is out of range, must be positive")
}

/// Resolves Redis's `start`/`stop` indexes (negative from the end) over `len` items to a
/// half-open range; `None` if empty.
pub fn index_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    (start <= stop && start < len).then(|| (start as usize, stop as usize + 1))
}

/// A random choice of `count` items for `SRANDMEMBER`/`HRANDFIELD`/`ZRANDMEMBER`: with a
/// non-negative count, distinct indexes (at most `len`); negative, `|count|` indexes that may
/// repeat. Made on the leader, never inside `apply`.
pub fn random_indexes(len: usize, count: i64) -> Vec<usize> {
    use rand::seq::index::sample;
    use rand::Rng;
    let mut rng = rand::thread_rng();
    if count >= 0 {
        let n = (count as usize).min(len);
        sample(&mut rng, len, n).into_vec()
    } else if len == 0 {
        Vec::new()
    } else {
        (0..count.unsigned_abs())
            .map(|_| rng.gen_range(0..len))
            .collect()
    }
}

/// Parses `SRANDMEMBER`/`HRANDFIELD`/`ZRANDMEMBER key [count [option]]` as Redis does, before
/// the key is looked up: the count, then the trailing `option` (`WITHVALUES`/`WITHSCORES`;
/// `None`: the command has none). Returns the count, if given, and whether the option was.
pub fn rand_args(
    args: &[Bytes],
    option: Option<&str>,
) -> Result<(Option<i64>, bool), CommandError> {
    if option.is_none() && args.len() > 3 {
        return Err(CommandError::Syntax);
    }
    let Some(count) = args.get(2) else {
        return Ok((None, false));
    };
    let n = parse_i64(count).ok_or(CommandError::NotInteger)?;
    if n == i64::MIN {
        return Err(CommandError::Err(
            "value is out of range, value must between -9223372036854775807 and 9223372036854775807"
                .into(),
        ));
    }
    let with = match (args.get(3), option) {
        (None, _) => false,
        (Some(given), Some(option))
            if args.len() == 4 && given.eq_ignore_ascii_case(option.as_bytes()) =>
        {
            true
        }
        _ => return Err(CommandError::Syntax),
    };
    // Redis refuses these counts when the reply would hold twice as many items; shoal refuses
    // the negative ones without the option too, rather than build a reply of that many.
    if n < -(i64::MAX / 2) || (with && n > i64::MAX / 2) {
        return Err(CommandError::Err("value is out of range".into()));
    }
    Ok((Some(n), with))
}
