//! Typed methods for the string, key and expiry commands.
//!
//! Multi-key commands (`mget`, `mset`, `del`, `exists`, ...) split their keys by slot in a
//! cluster, run the parts concurrently and combine the replies, because a cluster node refuses
//! keys of different slots in one command (`CROSSSLOT`). The split `mset` is therefore not
//! atomic across slots; keys sharing a hash tag (`{user1}:a`, `{user1}:b`) stay in one command.

use std::collections::HashMap;

use bytes::Bytes;
use futures::future::try_join_all;
use shoal_protocol::key_slot;

use crate::client::Client;
use crate::cmd::{Cmd, ToArg};
use crate::error::Error;

/// When a `SET` expires the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// `EX seconds`
    Seconds(u64),
    /// `PX milliseconds`
    Millis(u64),
    /// `EXAT unix-seconds`
    AtSeconds(u64),
    /// `PXAT unix-milliseconds`
    AtMillis(u64),
    /// `KEEPTTL`: keep the key's current expiry.
    KeepTtl,
}

/// When a `SET` writes at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// `NX`: only if the key does not exist.
    IfAbsent,
    /// `XX`: only if the key exists.
    IfPresent,
}

/// Options of [`Client::set_with`]: `SetOptions::new().px(1500).nx()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetOptions {
    expiry: Option<Expiry>,
    condition: Option<Condition>,
    get: bool,
}

impl SetOptions {
    pub fn new() -> SetOptions {
        SetOptions::default()
    }
    /// `EX seconds`
    pub fn ex(mut self, seconds: u64) -> Self {
        self.expiry = Some(Expiry::Seconds(seconds));
        self
    }
    /// `PX milliseconds`
    pub fn px(mut self, millis: u64) -> Self {
        self.expiry = Some(Expiry::Millis(millis));
        self
    }
    /// `EXAT unix-seconds`
    pub fn exat(mut self, unix_seconds: u64) -> Self {
        self.expiry = Some(Expiry::AtSeconds(unix_seconds));
        self
    }
    /// `PXAT unix-milliseconds`
    pub fn pxat(mut self, unix_millis: u64) -> Self {
        self.expiry = Some(Expiry::AtMillis(unix_millis));
        self
    }
    /// `KEEPTTL`
    pub fn keep_ttl(mut self) -> Self {
        self.expiry = Some(Expiry::KeepTtl);
        self
    }
    /// `NX`
    pub fn nx(mut self) -> Self {
        self.condition = Some(Condition::IfAbsent);
        self
    }
    /// `XX`
    pub fn xx(mut self) -> Self {
        self.condition = Some(Condition::IfPresent);
        self
    }
    /// `GET`: also return the previous value ([`SetOutcome::Previous`]).
    pub fn get(mut self) -> Self {
        self.get = true;
        self
    }

    fn apply(&self, mut command: Cmd) -> Cmd {
        command = match self.expiry {
            Some(Expiry::Seconds(s)) => command.arg("EX").arg(s),
            Some(Expiry::Millis(ms)) => command.arg("PX").arg(ms),
            Some(Expiry::AtSeconds(s)) => command.arg("EXAT").arg(s),
            Some(Expiry::AtMillis(ms)) => command.arg("PXAT").arg(ms),
            Some(Expiry::KeepTtl) => command.arg("KEEPTTL"),
            None => command,
        };
        command = match self.condition {
            Some(Condition::IfAbsent) => command.arg("NX"),
            Some(Condition::IfPresent) => command.arg("XX"),
            None => command,
        };
        if self.get {
            command = command.arg("GET");
        }
        command
    }
}

/// What [`Client::set_with`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetOutcome {
    /// The value was written.
    Written,
    /// `NX`/`XX` did not hold: nothing was written.
    NotWritten,
    /// With [`SetOptions::get`]: the value before the command (`None`: there was none).
    Previous(Option<Bytes>),
}

/// A key's remaining time to live, from `TTL`/`PTTL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    /// The key does not exist (`-2`).
    NoKey,
    /// The key exists and never expires (`-1`).
    Persistent,
    /// Seconds (`ttl`) or milliseconds (`pttl`) left.
    Expires(u64),
}

impl Ttl {
    fn from_reply(n: i64) -> Ttl {
        match n {
            -2 => Ttl::NoKey,
            n if n < 0 => Ttl::Persistent,
            n => Ttl::Expires(n as u64),
        }
    }
}

fn keys_of<I>(keys: I) -> Vec<Bytes>
where
    I: IntoIterator,
    I::Item: ToArg,
{
    keys.into_iter().map(ToArg::to_arg).collect()
}

impl Client {
    /// `GET key`
    pub async fn get(&self, key: impl ToArg) -> Result<Option<Bytes>, Error> {
        self.query(Cmd::new("GET").arg(key)).await
    }

    /// `SET key value`
    pub async fn set(&self, key: impl ToArg, value: impl ToArg) -> Result<(), Error> {
        self.query(Cmd::new("SET").arg(key).arg(value)).await
    }

    /// `SET key value [EX|PX|EXAT|PXAT|KEEPTTL] [NX|XX] [GET]`
    pub async fn set_with(
        &self,
        key: impl ToArg,
        value: impl ToArg,
        options: SetOptions,
    ) -> Result<SetOutcome, Error> {
        let command = options.apply(Cmd::new("SET").arg(key).arg(value));
        let reply: Option<Bytes> = self.query(command).await?;
        Ok(match (options.get, reply) {
            (true, previous) => SetOutcome::Previous(previous),
            (false, Some(_)) => SetOutcome::Written,
            (false, None) => SetOutcome::NotWritten,
        })
    }

    /// `SETNX key value`: true if the key was set.
    pub async fn setnx(&self, key: impl ToArg, value: impl ToArg) -> Result<bool, Error> {
        self.query(Cmd::new("SETNX").arg(key).arg(value)).await
    }

    /// `GETDEL key`
    pub async fn getdel(&self, key: impl ToArg) -> Result<Option<Bytes>, Error> {
        self.query(Cmd::new("GETDEL").arg(key)).await
    }

    /// `GETSET key value`: the previous value.
    pub async fn getset(&self, key: impl ToArg, value: impl ToArg) -> Result<Option<Bytes>, Error> {
        self.query(Cmd::new("GETSET").arg(key).arg(value)).await
    }

    /// `APPEND key value`: the new length.
    pub async fn append(&self, key: impl ToArg, value: impl ToArg) -> Result<i64, Error> {
        self.query(Cmd::new("APPEND").arg(key).arg(value)).await
    }

    /// `STRLEN key`
    pub async fn strlen(&self, key: impl ToArg) -> Result<i64, Error> {
        self.query(Cmd::new("STRLEN").arg(key)).await
    }

    /// `GETRANGE key start end` (inclusive, negative counts from the end).
    pub async fn getrange(&self, key: impl ToArg, start: i64, end: i64) -> Result<Bytes, Error> {
        self.query(Cmd::new("GETRANGE").arg(key).arg(start).arg(end))
            .await
    }

    /// `SETRANGE key offset value`: the new length.
    pub async fn setrange(
        &self,
        key: impl ToArg,
        offset: u64,
        value: impl ToArg,
    ) -> Result<i64, Error> {
        self.query(Cmd::new("SETRANGE").arg(key).arg(offset).arg(value))
            .await
    }

    /// `INCR key`: the new value.
    pub async fn incr(&self, key: impl ToArg) -> Result<i64, Error> {
        self.query(Cmd::new("INCR").arg(key)).await
    }

    /// `INCRBY key by`
    pub async fn incr_by(&self, key: impl ToArg, by: i64) -> Result<i64, Error> {
        self.query(Cmd::new("INCRBY").arg(key).arg(by)).await
    }

    /// `DECR key`
    pub async fn decr(&self, key: impl ToArg) -> Result<i64, Error> {
        self.query(Cmd::new("DECR").arg(key)).await
    }

    /// `DECRBY key by`
    pub async fn decr_by(&self, key: impl ToArg, by: i64) -> Result<i64, Error> {
        self.query(Cmd::new("DECRBY").arg(key).arg(by)).await
    }

    /// `INCRBYFLOAT key by`
    pub async fn incr_by_float(&self, key: impl ToArg, by: f64) -> Result<f64, Error> {
        self.query(Cmd::new("INCRBYFLOAT").arg(key).arg(by)).await
    }

    /// `MGET key...`, split by slot in a cluster; values in the order of `keys`.
    pub async fn mget<I>(&self, keys: I) -> Result<Vec<Option<Bytes>>, Error>
    where
        I: IntoIterator,
        I::Item: ToArg,
    {
        let keys = keys_of(keys);
        let groups = self.group_by_slot(keys.iter());
        let parts = try_join_all(groups.iter().map(|group| {
            let command = group.iter().fold(Cmd::new("MGET"), |c, &i| c.arg(&keys[i]));
            self.query::<Vec<Option<Bytes>>>(command)
        }))
        .await?;
        let mut values = vec![None; keys.len()];
        for (group, part) in groups.iter().zip(parts) {
            if part.len() != group.len() {
                return Err(Error::UnexpectedReply(format!(
                    "MGET of {} keys answered {} values",
                    group.len(),
                    part.len()
                )));
            }
            for (&i, value) in group.iter().zip(part) {
                values[i] = value;
            }
        }
        Ok(values)
    }

    /// `MSET key value...`, split by slot in a cluster (so atomic only per slot).
    pub async fn mset<I, K, V>(&self, pairs: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = (K, V)>,
        K: ToArg,
        V: ToArg,
    {
        let pairs: Vec<(Bytes, Bytes)> = pairs
            .into_iter()
            .map(|(k, v)| (k.to_arg(), v.to_arg()))
            .collect();
        let groups = self.group_by_slot(pairs.iter().map(|(k, _)| k));
        try_join_all(groups.iter().map(|group| {
            let command = group.iter().fold(Cmd::new("MSET"), |c, &i| {
                c.arg(&pairs[i].0).arg(&pairs[i].1)
            });
            self.query::<()>(command)
        }))
        .await?;
        Ok(())
    }

    /// `DEL key...`: how many keys were removed.
    pub async fn del<I>(&self, keys: I) -> Result<i64, Error>
    where
        I: IntoIterator,
        I::Item: ToArg,
    {
        self.count_over_slots("DEL", keys_of(keys)).await
    }

    /// `UNLINK key...`: how many keys were removed.
    pub async fn unlink<I>(&self, keys: I) -> Result<i64, Error>
    where
        I: IntoIterator,
        I::Item: ToArg,
    {
        self.count_over_slots("UNLINK", keys_of(keys)).await
    }

    /// `EXISTS key...`: how many of the keys exist (a key named twice counts twice).
    pub async fn exists<I>(&self, keys: I) -> Result<i64, Error>
    where
        I: IntoIterator,
        I::Item: ToArg,
    {
        self.count_over_slots("EXISTS", keys_of(keys)).await
    }

    /// `TYPE key`: `"string"`, or `"none"` for a missing key.
    pub async fn key_type(&self, key: impl ToArg) -> Result<String, Error> {
        self.query(Cmd::new("TYPE").arg(key)).await
    }

    /// `RENAME key newkey` (both must hash to one slot in a cluster).
    pub async fn rename(&self, key: impl ToArg, new_key: impl ToArg) -> Result<(), Error> {
        self.query(Cmd::new("RENAME").arg(key).arg(new_key)).await
    }

    /// `EXPIRE key seconds`: true if the key exists (and now expires).
    pub async fn expire(&self, key: impl ToArg, seconds: i64) -> Result<bool, Error> {
        self.query(Cmd::new("EXPIRE").arg(key).arg(seconds)).await
    }

    /// `PEXPIRE key milliseconds`
    pub async fn pexpire(&self, key: impl ToArg, millis: i64) -> Result<bool, Error> {
        self.query(Cmd::new("PEXPIRE").arg(key).arg(millis)).await
    }

    /// `EXPIREAT key unix-seconds`
    pub async fn expireat(&self, key: impl ToArg, unix_seconds: i64) -> Result<bool, Error> {
        self.query(Cmd::new("EXPIREAT").arg(key).arg(unix_seconds))
            .await
    }

    /// `PERSIST key`: true if an expiry was removed.
    pub async fn persist(&self, key: impl ToArg) -> Result<bool, Error> {
        self.query(Cmd::new("PERSIST").arg(key)).await
    }

    /// `TTL key`, in seconds.
    pub async fn ttl(&self, key: impl ToArg) -> Result<Ttl, Error> {
        let n: i64 = self.query(Cmd::new("TTL").arg(key)).await?;
        Ok(Ttl::from_reply(n))
    }

    /// `PTTL key`, in milliseconds.
    pub async fn pttl(&self, key: impl ToArg) -> Result<Ttl, Error> {
        let n: i64 = self.query(Cmd::new("PTTL").arg(key)).await?;
        Ok(Ttl::from_reply(n))
    }

    /// `PING` (to any node).
    pub async fn ping(&self) -> Result<(), Error> {
        self.query(Cmd::new("PING")).await
    }

    /// Runs `name key...` per slot and adds up the integer replies.
    async fn count_over_slots(&self, name: &str, keys: Vec<Bytes>) -> Result<i64, Error> {
        let groups = self.group_by_slot(keys.iter());
        let counts = try_join_all(groups.iter().map(|group| {
            let command = group.iter().fold(Cmd::new(name), |c, &i| c.arg(&keys[i]));
            self.query::<i64>(command)
        }))
        .await?;
        Ok(counts.into_iter().sum())
    }

    /// Positions of `keys` grouped by slot, groups in order of first appearance; one group for
    /// a single server. No keys: no group.
    fn group_by_slot<'a>(&self, keys: impl Iterator<Item = &'a Bytes>) -> Vec<Vec<usize>> {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut by_slot: HashMap<u16, usize> = HashMap::new();
        let cluster = self.is_cluster();
        for (i, key) in keys.enumerate() {
            let slot = if cluster { key_slot(key) } else { 0 };
            let g = *by_slot.entry(slot).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(i);
        }
        groups
    }
}
