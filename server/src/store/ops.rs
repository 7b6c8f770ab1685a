//! Write operations as deterministic log entries.
//!
//! Everything that depends on a clock or on chance is settled by the node that proposes the
//! entry: relative TTLs are already absolute deadlines, and the proposer's clock travels in the
//! entry (`now_ms`) so that "is this key expired?" has the same answer on every replica. Applying
//! the same entries in the same order therefore yields the same data everywhere; this is the
//! contract the Raft log relies on.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use smallvec::{smallvec, SmallVec};

use super::dump::Dumped;
use super::entry::UnixMillis;

/// One entry of a shard's log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// The proposer's wall clock when it made the entry; `apply` judges expiry by it.
    pub now_ms: UnixMillis,
    pub op: WriteOp,
}

/// What `SET`/`GETEX` do with a key's deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expiry {
    /// Leave the deadline as it is (`KEEPTTL`, `GETEX` with no option).
    Keep,
    /// Remove it (plain `SET`, `GETEX PERSIST`).
    Clear,
    /// Set an absolute deadline in unix milliseconds; one already past deletes the key.
    At(i64),
}

/// `SET ... NX|XX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    Always,
    IfAbsent,
    IfPresent,
}

/// `EXPIRE ... NX|XX|GT|LT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpireCondition {
    Always,
    /// Only if the key has no deadline.
    Nx,
    /// Only if the key has a deadline.
    Xx,
    /// Only if the new deadline is later (no deadline counts as infinitely late).
    Gt,
    /// Only if the new deadline is earlier (no deadline counts as infinitely late).
    Lt,
    /// `XX LT`: only if the key has a deadline and the new one is earlier.
    XxLt,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WriteOp {
    /// `SET` and its relatives. Reply: `+OK`, or nil if the condition failed; with `get`, the
    /// old value (or nil) either way.
    Set {
        key: Bytes,
        value: Bytes,
        condition: Condition,
        expiry: Expiry,
        get: bool,
    },
    /// `MSET` (reply `+OK`) or `MSETNX` (`only_if_none_exist`, reply 1/0).
    MSet {
        pairs: Vec<(Bytes, Bytes)>,
        only_if_none_exist: bool,
    },
    /// `DEL`/`UNLINK`. Reply: how many existed.
    Delete { keys: Vec<Bytes> },
    /// Reply: the value, or nil.
    GetDel { key: Bytes },
    /// Reply: the value, or nil.
    GetEx { key: Bytes, expiry: Expiry },
    /// Reply: the new integer.
    IncrBy { key: Bytes, delta: i64 },
    /// Older builds' `INCRBYFLOAT`, added in f64; still applied from their logs. Reply: the
    /// new value as a bulk string.
    IncrByFloat { key: Bytes, delta: f64 },
    /// Reply: the new length.
    Append { key: Bytes, value: Bytes },
    /// Reply: the new length.
    SetRange {
        key: Bytes,
        offset: u64,
        value: Bytes,
    },
    /// `RENAME` (reply `+OK`) or `RENAMENX` (`only_if_absent`, reply 1/0).
    Rename {
        from: Bytes,
        to: Bytes,
        only_if_absent: bool,
    },
    /// `EXPIRE` family with an absolute deadline. Reply 1/0.
    Expire {
        key: Bytes,
        at_ms: i64,
        condition: ExpireCondition,
    },
    /// Reply 1/0.
    Persist { key: Bytes },
    /// `FLUSHALL`/`FLUSHDB`. Reply `+OK`.
    FlushAll,
    /// Active expiry: delete those of `keys` that are expired at `now_ms`. Reply: how many.
    DeleteExpired { keys: Vec<Bytes> },
    /// A deterministic data-type command (`HSET`, `LPUSH`, `ZADD`, ...) carried as its
    /// arguments, name first, and applied by `crate::types` (as Redis replicates commands).
    /// Only commands whose effect depends on nothing but the data and `now_ms` travel this way.
    Data { args: Vec<Bytes> },
    /// `SPOP` with the members the leader chose: removes those still present. Reply: them as
    /// an array, or with `single` the one member as a bulk string (nil if none).
    PopMembers {
        key: Bytes,
        members: Vec<Bytes>,
        single: bool,
    },
    /// `SPOP` inside a transaction, where the set is only known once the entry's earlier steps
    /// have applied: `apply` pops the `count` members (one, replied as a bulk string, if
    /// `None`) whose SipHash keyed by `seed` is smallest. The leader draws the seed; every
    /// replica then makes the same choice whatever order its tables keep the members in.
    PopSeeded {
        key: Bytes,
        count: Option<u64>,
        seed: u64,
    },
    /// `RESTORE` with the payload the proposer decoded, or the error text it was refused with
    /// (a bad TTL or payload): Redis looks for an existing key first, so a refusal is only
    /// answered once `apply` has found the key free (`-BUSYKEY` otherwise). `ttl_ms` is
    /// relative to the entry's clock unless `absttl`; 0 means none. `idle_ms` / `freq`
    /// (`IDLETIME` / `FREQ`) set the restored key's access word, as Redis's
    /// `objectSetLRUOrLFU`: `freq` under an LFU policy, `idle_ms` under any other. Reply `+OK`.
    Restore {
        key: Bytes,
        value: Result<Dumped, String>,
        ttl_ms: i64,
        absttl: bool,
        replace: bool,
        idle_ms: Option<u64>,
        freq: Option<u8>,
    },
    /// Eviction: delete `keys`, chosen by the leader under `maxmemory`. Reply: how many existed.
    Evict { keys: Vec<Bytes> },
    /// `EXEC`: a transaction's commands applied as one entry, under one lock of their slots.
    /// Reply: one reply per step, in order; or nil (`NullArray`) without running anything if
    /// a watched key no longer holds what it held when it was watched.
    Exec {
        watched: Vec<Watched>,
        steps: Vec<TxStep>,
    },
    /// `INCRBYFLOAT` with the increment as the client sent it: `apply` parses it and adds in C
    /// long double, as Redis does (`crate::long_double`). Reply: the new value as a bulk
    /// string.
    IncrByLongDouble { key: Bytes, delta: Bytes },
}

/// One command of a transaction ([`WriteOp::Exec`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TxStep {
    /// A write, applied exactly as it would be alone.
    Write(WriteOp),
    /// A read command (`args`, name first) that must see the transaction's earlier writes: it
    /// runs inside `apply`, against `keys` as the transaction has left them.
    Read { args: Vec<Bytes>, keys: Vec<Bytes> },
}

/// A key `WATCH`ed before a transaction and what it held then: `keyspace::watch_print` of it
/// (its live entry's fingerprint, or its absence, combined with its bucket's write stamp).
/// Always `Some` from this build; `None` (an older build's "absent") never matches, so such
/// an `EXEC` aborts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Watched {
    pub key: Bytes,
    pub fingerprint: Option<u64>,
}

impl WriteOp {
    /// A plain `SET key value` with the given deadline handling (no NX/XX, no GET).
    pub fn set(key: Bytes, value: Bytes, expiry: Expiry) -> WriteOp {
        WriteOp::Set {
            key,
            value,
            condition: Condition::Always,
            expiry,
            get: false,
        }
    }

    /// The keys this operation touches (its slots are locked while it applies).
    pub fn keys(&self) -> SmallVec<[&[u8]; 2]> {
        match self {
            WriteOp::Set { key, .. }
            | WriteOp::GetDel { key }
            | WriteOp::GetEx { key, .. }
            | WriteOp::IncrBy { key, .. }
            | WriteOp::IncrByFloat { key, .. }
            | WriteOp::IncrByLongDouble { key, .. }
            | WriteOp::Append { key, .. }
            | WriteOp::SetRange { key, .. }
            | WriteOp::Expire { key, .. }
            | WriteOp::Persist { key }
            | WriteOp::Restore { key, .. } => smallvec![&key[..]],
            WriteOp::MSet { pairs, .. } => pairs.iter().map(|(k, _)| &k[..]).collect(),
            WriteOp::Delete { keys }
            | WriteOp::DeleteExpired { keys }
            | WriteOp::Evict { keys } => keys.iter().map(|k| &k[..]).collect(),
            WriteOp::Rename { from, to, .. } => smallvec![&from[..], &to[..]],
            WriteOp::FlushAll => SmallVec::new(),
            // Every key any step reads or writes, and the watched ones: `apply` looks at all.
            WriteOp::Exec { watched, steps } => watched
                .iter()
                .map(|w| &w.key[..])
                .chain(steps.iter().flat_map(|step| -> SmallVec<[&[u8]; 2]> {
                    match step {
                        TxStep::Write(op) => op.keys(),
                        TxStep::Read { keys, .. } => keys.iter().map(|k| &k[..]).collect(),
                    }
                }))
                .collect(),
            WriteOp::PopMembers { key, .. } | WriteOp::PopSeeded { key, .. } => {
                smallvec![&key[..]]
            }
            WriteOp::Data { args } => match shoal_protocol::CommandSpec::lookup(args) {
                Ok(spec) => spec.keys(args).map(|k| &k[..]).collect(),
                Err(_) => SmallVec::new(),
            },
        }
    }
}

impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Log lines name the operation, not the (possibly large) values.
        let op = format!("{:?}", self.op);
        let name = op.split([' ', '{', '(']).next().unwrap_or("?");
        write!(f, "{name}@{}", self.now_ms)
    }
}
