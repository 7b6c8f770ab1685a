//! The state machine: applies [`Proposal`]s to the keyspace and produces replies.
//!
//! `apply` is deterministic: no clock (the entry carries `now_ms`), no randomness, no I/O. Two
//! replicas that apply the same entries hold the same keys, values and deadlines. The reply to
//! the client that proposed an entry is the value `apply` returns.

use std::sync::Arc;

use bytes::Bytes;
use shoal_protocol::Frame;

use super::dump::Dumped;
use super::entry::{Entry, UnixMillis};
use super::keyspace::{Keyspace, SlotsMut};
use super::ops::{Condition, ExpireCondition, Expiry, Proposal, TxStep, Watched, WriteOp};
use crate::error::{CommandError, CommandResult};
use crate::long_double::LongDouble;
use crate::numbers::{format_f64, parse_f64, parse_i64};

/// Redis's `proto-max-bulk-len` default; a string value never grows past it. A cluster-wide
/// constant (not per-node config) because `apply` must decide the same everywhere.
pub const MAX_STRING_LEN: u64 = 512 * 1024 * 1024;

/// Runs a transaction's read command (`args`, name first) against `keyspace` at `now`: the
/// command layer provides it, so reads inside `EXEC` are the same code as reads outside.
pub type TxReader = Arc<dyn Fn(&Keyspace, &[Bytes], UnixMillis) -> Frame + Send + Sync>;

/// Told the keys of every applied entry, after its locks are released (the leader's blocked
/// clients wait on them: `crate::blocking`). Never changes data.
pub type OnWritten = Arc<dyn Fn(&[&[u8]], UnixMillis) + Send + Sync>;

pub struct StateMachine {
    keyspace: Arc<Keyspace>,
    /// How `EXEC` runs its read commands (`None`: they answer an error).
    tx_reader: Option<TxReader>,
    on_written: Option<OnWritten>,
}

impl StateMachine {
    pub fn new(keyspace: Arc<Keyspace>) -> StateMachine {
        StateMachine {
            keyspace,
            tx_reader: None,
            on_written: None,
        }
    }

    /// A state machine whose transactions run their reads with `reader`.
    pub fn with_tx_reader(keyspace: Arc<Keyspace>, reader: Option<TxReader>) -> StateMachine {
        StateMachine {
            keyspace,
            tx_reader: reader,
            on_written: None,
        }
    }

    /// Calls `hook` with the keys of each entry once it is applied.
    pub fn set_on_written(&mut self, hook: OnWritten) {
        self.on_written = Some(hook);
    }

    pub fn keyspace(&self) -> &Arc<Keyspace> {
        &self.keyspace
    }

    /// Applies one entry; the result is the reply for the client that proposed it.
    pub fn apply(&self, proposal: &Proposal) -> Frame {
        let reply = self.apply_locked(proposal);
        if let Some(hook) = &self.on_written {
            if !matches!(proposal.op, WriteOp::FlushAll) {
                hook(&proposal.op.keys(), proposal.now_ms);
            }
        }
        reply
    }

    fn apply_locked(&self, proposal: &Proposal) -> Frame {
        let now = proposal.now_ms;
        let op = &proposal.op;
        let mut slots = match op {
            WriteOp::FlushAll => self.keyspace.write_all_slots(),
            _ => self.keyspace.write_slots(op.keys()),
        }
        .at(now);
        if let WriteOp::Exec { watched, steps } = op {
            return self.apply_exec(&mut slots, watched, steps, now);
        }
        apply_op(&mut slots, op, now).unwrap_or_else(Frame::from)
    }

    /// `EXEC`: checks the watched keys, then runs every step under the locks already held, so
    /// no reader sees the transaction half done.
    fn apply_exec(
        &self,
        s: &mut SlotsMut<'_>,
        watched: &[Watched],
        steps: &[TxStep],
        now: UnixMillis,
    ) -> Frame {
        // A key written (even with the same value), expired or created since WATCH aborts
        // the transaction; so does a write to another key of its stamp bucket.
        if watched
            .iter()
            .any(|w| Some(s.watch_print(&w.key, now)) != w.fingerprint)
        {
            return Frame::NullArray;
        }
        // Reads run against a private keyspace holding copies of their keys: the command
        // code takes its own slot locks, which must not be the ones held here.
        let mut scratch: Option<Keyspace> = None;
        let replies = steps
            .iter()
            .map(|step| match step {
                TxStep::Write(WriteOp::FlushAll | WriteOp::Exec { .. }) => {
                    Frame::error("ERR Command not allowed inside a transaction")
                }
                TxStep::Write(op) => apply_op(s, op, now).unwrap_or_else(Frame::from),
                TxStep::Read { args, keys } => {
                    let Some(reader) = &self.tx_reader else {
                        return Frame::error("ERR reads inside a transaction are unavailable");
                    };
                    let scratch = scratch.get_or_insert_with(Keyspace::new);
                    let copies: Vec<Entry> =
                        keys.iter().filter_map(|k| s.get(k, now).cloned()).collect();
                    scratch.replace_keys(keys, copies);
                    reader(scratch, args, now)
                }
            })
            .collect();
        Frame::Array(replies)
    }
}

fn apply_op(s: &mut SlotsMut<'_>, op: &WriteOp, now: UnixMillis) -> CommandResult {
    Ok(match op {
        WriteOp::Set {
            key,
            value,
            condition,
            expiry,
            get,
        } => {
            let old = s.get(key, now);
            let exists = old.is_some();
            let old_value = match (get, old) {
                (true, Some(e)) => Some(Some(Bytes::copy_from_slice(e.string()?))),
                (true, None) => Some(None),
                (false, _) => None,
            };
            let old_deadline = old.and_then(Entry::expires_at);
            let allowed = match condition {
                Condition::Always => true,
                Condition::IfAbsent => !exists,
                Condition::IfPresent => exists,
            };
            if allowed {
                let deadline = match *expiry {
                    Expiry::Keep => old_deadline.map(|at| at as i64),
                    Expiry::Clear => None,
                    Expiry::At(at) => Some(at),
                };
                store(s, key, value, deadline, now);
            }
            match old_value {
                Some(old) => Frame::bulk_or_null(old),
                None if allowed => Frame::ok(),
                None => Frame::Null,
            }
        }
        WriteOp::MSet {
            pairs,
            only_if_none_exist,
        } => {
            if *only_if_none_exist && pairs.iter().any(|(k, _)| s.get(k, now).is_some()) {
                return Ok(Frame::Integer(0));
            }
            for (k, v) in pairs {
                s.insert(Entry::new(k, v, 0));
            }
            if *only_if_none_exist {
                Frame::Integer(1)
            } else {
                Frame::ok()
            }
        }
        WriteOp::Delete { keys } => {
            let mut deleted = 0;
            for k in keys {
                if s.get(k, now).is_some() {
                    s.remove(k);
                    deleted += 1;
                }
            }
            Frame::Integer(deleted)
        }
        WriteOp::GetDel { key } => match s.get(key, now) {
            Some(e) => {
                let value = Bytes::copy_from_slice(e.string()?);
                s.remove(key);
                Frame::Bulk(value)
            }
            None => Frame::Null,
        },
        WriteOp::GetEx { key, expiry } => {
            let Some(entry) = s.get(key, now) else {
                return Ok(Frame::Null);
            };
            let value = Bytes::copy_from_slice(entry.string()?);
            match *expiry {
                Expiry::Keep => {}
                Expiry::Clear => {
                    s.set_expiry(key, None);
                }
                Expiry::At(at) if at <= now as i64 => {
                    s.remove(key);
                }
                Expiry::At(at) => {
                    s.set_expiry(key, Some(at as u64));
                }
            }
            Frame::Bulk(value)
        }
        WriteOp::IncrBy { key, delta } => {
            let current = match s.get(key, now) {
                Some(e) => parse_i64(e.string()?).ok_or(CommandError::NotInteger)?,
                None => 0,
            };
            let next = current.checked_add(*delta).ok_or(CommandError::Overflow)?;
            write_value(s, key, itoa::Buffer::new().format(next).as_bytes(), now);
            Frame::Integer(next)
        }
        WriteOp::IncrByFloat { key, delta } => {
            let current = match s.get(key, now) {
                Some(e) => parse_f64(e.string()?).ok_or(CommandError::NotFloat)?,
                None => 0.0,
            };
            let next = current + delta;
            if !next.is_finite() {
                return Err(CommandError::NanOrInfinity);
            }
            let text = format_f64(next);
            write_value(s, key, text.as_bytes(), now);
            Frame::bulk(text)
        }
        WriteOp::IncrByLongDouble { key, delta } => {
            // Redis's order: the key's type, its value, then the increment.
            let current = match s.get(key, now) {
                Some(e) => LongDouble::parse(e.string()?).ok_or(CommandError::NotFloat)?,
                None => LongDouble::from_i64(0),
            };
            let delta = LongDouble::parse(delta).ok_or(CommandError::NotFloat)?;
            let text = current
                .add_format(&delta)
                .ok_or(CommandError::NanOrInfinity)?;
            write_value(s, key, text.as_bytes(), now);
            Frame::bulk(text)
        }
        WriteOp::Append { key, value } => {
            let current = match s.get(key, now) {
                Some(e) => Some(e.string()?.len()),
                None => None,
            };
            let len = match current {
                Some(current) => {
                    let len = current + value.len();
                    if len as u64 > MAX_STRING_LEN {
                        return Err(CommandError::StringTooLong);
                    }
                    s.modify(key, now, |e| e.update_value(|v| v.extend_from_slice(value)));
                    len
                }
                None => {
                    s.insert(Entry::new(key, value, 0));
                    value.len()
                }
            };
            Frame::Integer(len as i64)
        }
        WriteOp::SetRange { key, offset, value } => {
            let end = offset + value.len() as u64;
            let existing = match s.get(key, now) {
                Some(e) => Some(e.string()?.len()),
                None => None,
            };
            if value.is_empty() {
                return Ok(Frame::Integer(existing.unwrap_or(0) as i64));
            }
            if end > MAX_STRING_LEN {
                return Err(CommandError::StringTooLong);
            }
            let write = |v: &mut Vec<u8>| {
                if v.len() < end as usize {
                    v.resize(end as usize, 0);
                }
                v[*offset as usize..end as usize].copy_from_slice(value);
            };
            if s.modify(key, now, |e| e.update_value(write)).is_none() {
                let mut v = Vec::new();
                write(&mut v);
                s.insert(Entry::new(key, &v, 0));
            }
            Frame::Integer(existing.unwrap_or(0).max(end as usize) as i64)
        }
        WriteOp::Rename {
            from,
            to,
            only_if_absent,
        } => {
            if s.get(from, now).is_none() {
                return Err(CommandError::NoSuchKey);
            }
            if *only_if_absent && s.get(to, now).is_some() {
                return Ok(Frame::Integer(0));
            }
            if from != to {
                let entry = s.remove(from).expect("present");
                s.insert(entry.rekeyed(to));
            }
            if *only_if_absent {
                Frame::Integer(1)
            } else {
                Frame::ok()
            }
        }
        WriteOp::Expire {
            key,
            at_ms,
            condition,
        } => {
            let Some(entry) = s.get(key, now) else {
                return Ok(Frame::Integer(0));
            };
            let current = entry.expires_at().map(|at| at as i64);
            let allowed = match condition {
                ExpireCondition::Always => true,
                ExpireCondition::Nx => current.is_none(),
                ExpireCondition::Xx => current.is_some(),
                ExpireCondition::Gt => current.is_some_and(|c| *at_ms > c),
                ExpireCondition::Lt => current.is_none_or(|c| *at_ms < c),
                ExpireCondition::XxLt => current.is_some_and(|c| *at_ms < c),
            };
            if !allowed {
                return Ok(Frame::Integer(0));
            }
            if *at_ms <= now as i64 {
                s.remove(key);
            } else {
                s.set_expiry(key, Some(*at_ms as u64));
            }
            Frame::Integer(1)
        }
        WriteOp::Persist { key } => {
            let volatile = s.get(key, now).is_some_and(|e| e.expires_at().is_some());
            if volatile {
                s.set_expiry(key, None);
            }
            Frame::Integer(volatile as i64)
        }
        WriteOp::FlushAll => {
            s.clear();
            Frame::ok()
        }
        WriteOp::DeleteExpired { keys } => {
            let mut deleted = 0;
            for k in keys {
                deleted += s.remove_if_expired(k, now) as i64;
            }
            Frame::Integer(deleted)
        }
        // `StateMachine::apply` runs transactions; one never nests in another.
        WriteOp::Exec { .. } => Frame::error("ERR Command not allowed inside a transaction"),
        WriteOp::Evict { keys } => {
            // Unconditional: the leader chose these keys; a key deleted meanwhile is skipped.
            let evicted = keys.iter().filter(|k| s.remove(k).is_some()).count();
            Frame::Integer(evicted as i64)
        }
        WriteOp::Data { args } => crate::types::apply(s, args, now)?,
        WriteOp::Restore {
            key,
            value,
            ttl_ms,
            absttl,
            replace,
            idle_ms,
            freq,
        } => {
            if !replace && s.get(key, now).is_some() {
                return Err(CommandError::Raw(
                    "BUSYKEY Target key name already exists.".into(),
                ));
            }
            let value = value.as_ref().map_err(|e| CommandError::Raw(e.clone()))?;
            if *replace {
                s.remove(key);
            }
            let deadline = match (*ttl_ms, *absttl) {
                (0, _) => 0,
                (t, true) => t,
                (t, false) => t.saturating_add(now as i64),
            };
            // A deadline already past leaves no key (the old one is gone with REPLACE).
            if deadline == 0 || deadline > now as i64 {
                s.insert(match value {
                    Dumped::String(v) => Entry::new(key, v, deadline as u64),
                    Dumped::Collection(c) => Entry::new_collection(key, c.clone(), deadline as u64),
                });
                // The access word is not replicated state: each replica sets its own alike.
                if let Some(word) = s.tracking().restored(now, *idle_ms, *freq) {
                    s.modify(key, now, |e| e.set_access(word));
                }
            }
            Frame::ok()
        }
        WriteOp::PopMembers {
            key,
            members,
            single,
        } => crate::types::set::pop_members(s, key, members, *single, now)?,
        WriteOp::PopSeeded { key, count, seed } => {
            crate::types::set::pop_seeded(s, key, *count, *seed, now)?
        }
    })
}

/// Writes `value` under `key` with `deadline`; a deadline already past deletes the key instead
/// (Redis: `SET k v PX 0`-like cases never leave a live key behind).
fn store(s: &mut SlotsMut<'_>, key: &[u8], value: &[u8], deadline: Option<i64>, now: UnixMillis) {
    match deadline {
        Some(at) if at <= now as i64 => {
            s.remove(key);
        }
        Some(at) => {
            s.insert(Entry::new(key, value, at as u64));
        }
        None => {
            s.insert(Entry::new(key, value, 0));
        }
    }
}

/// Replaces a live key's value keeping its deadline, or creates a persistent key.
fn write_value(s: &mut SlotsMut<'_>, key: &[u8], value: &[u8], now: UnixMillis) {
    if s.modify(key, now, |e| e.set_value(value)).is_none() {
        s.insert(Entry::new(key, value, 0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sm() -> StateMachine {
        StateMachine::new(Arc::new(Keyspace::new()))
    }

    fn apply(sm: &StateMachine, now: u64, op: WriteOp) -> Frame {
        sm.apply(&Proposal { now_ms: now, op })
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn set(key: &str, value: &str, expiry: Expiry) -> WriteOp {
        WriteOp::set(b(key), b(value), expiry)
    }

    #[test]
    fn expiry_is_judged_by_the_entry_clock_not_the_local_one() {
        let m = sm();
        assert_eq!(apply(&m, 100, set("k", "v", Expiry::At(200))), Frame::ok());
        // At t=150 the key is live: INCR sees a non-integer.
        assert!(apply(
            &m,
            150,
            WriteOp::IncrBy {
                key: b("k"),
                delta: 1
            }
        )
        .is_error());
        // At t=201 it is gone: INCR starts from zero.
        assert_eq!(
            apply(
                &m,
                201,
                WriteOp::IncrBy {
                    key: b("k"),
                    delta: 1
                }
            ),
            Frame::Integer(1)
        );
    }

    #[test]
    fn two_replicas_applying_the_same_log_agree() {
        let log: Vec<Proposal> = (0..200)
            .map(|i| Proposal {
                now_ms: 1000 + i * 7,
                op: match i % 5 {
                    0 => set(
                        &format!("k{}", i % 13),
                        "x",
                        Expiry::At(1000 + i as i64 * 7 + 50),
                    ),
                    1 => WriteOp::IncrBy {
                        key: b(&format!("n{}", i % 3)),
                        delta: i as i64,
                    },
                    2 => WriteOp::Append {
                        key: b(&format!("k{}", i % 13)),
                        value: b("y"),
                    },
                    3 => WriteOp::DeleteExpired {
                        keys: (0..13).map(|j| b(&format!("k{j}"))).collect(),
                    },
                    _ => WriteOp::Expire {
                        key: b(&format!("k{}", i % 13)),
                        at_ms: 1000 + i as i64 * 7 + 30,
                        condition: ExpireCondition::Gt,
                    },
                },
            })
            .collect();
        let (a, b_) = (sm(), sm());
        let ra: Vec<Frame> = log.iter().map(|p| a.apply(p)).collect();
        let rb: Vec<Frame> = log.iter().map(|p| b_.apply(p)).collect();
        assert_eq!(ra, rb);
        assert_eq!(dump(&a), dump(&b_));
        assert_eq!(stamps(&a), stamps(&b_));
        assert!(stamps(&a).iter().any(Option::is_some));
    }

    /// Every slot's write stamps.
    fn stamps(m: &StateMachine) -> Vec<Option<crate::store::keyspace::Stamps>> {
        (0..shoal_protocol::SLOT_COUNT)
            .map(|slot| m.keyspace().slot_stamps(slot))
            .collect()
    }

    fn data(args: &[&str]) -> WriteOp {
        WriteOp::Data {
            args: args.iter().map(|a| b(a)).collect(),
        }
    }

    #[test]
    fn collection_writes_replay_to_the_same_data_and_replies() {
        let log: Vec<Proposal> = (0..300)
            .map(|i| Proposal {
                now_ms: 1000 + i,
                op: match i % 6 {
                    0 => data(&["HSET", "h", &format!("f{}", i % 7), &i.to_string()]),
                    1 => data(&["ZADD", "z", &(i % 11).to_string(), &format!("m{}", i % 13)]),
                    2 => data(&["RPUSH", "l", &i.to_string()]),
                    3 => data(&["SADD", "s", &(i % 600).to_string()]),
                    4 => data(&["LPOP", "l"]),
                    _ => data(&["ZPOPMIN", "z", "2"]),
                },
            })
            .collect();
        let (a, b_) = (sm(), sm());
        let ra: Vec<Frame> = log.iter().map(|p| a.apply(p)).collect();
        let rb: Vec<Frame> = log.iter().map(|p| b_.apply(p)).collect();
        assert_eq!(ra, rb);
        assert_eq!(a.keyspace().digest(2000), b_.keyspace().digest(2000));
        assert_eq!(stamps(&a), stamps(&b_));
        // A string command on a collection answers WRONGTYPE and changes nothing.
        let before = a.keyspace().digest(2000);
        assert_eq!(
            apply(
                &a,
                2000,
                WriteOp::Append {
                    key: b("h"),
                    value: b("x")
                }
            ),
            Frame::from(CommandError::WrongType)
        );
        assert_eq!(
            apply(&a, 2000, data(&["LPUSH", "h", "x"])),
            Frame::from(CommandError::WrongType)
        );
        assert_eq!(a.keyspace().digest(2000), before);
        // Emptied collections are deleted; SET replaces any type.
        apply(&a, 2000, WriteOp::Delete { keys: vec![b("l")] });
        assert_eq!(
            apply(
                &a,
                2000,
                data(&["HDEL", "h", "f0", "f1", "f2", "f3", "f4", "f5", "f6"])
            ),
            Frame::Integer(7)
        );
        assert!(a.keyspace().read_key_slot(b"h").get(b"h", 2000).is_none());
        apply(&a, 2000, set("z", "v", Expiry::Clear));
        assert_eq!(
            a.keyspace()
                .read_key_slot(b"z")
                .get(b"z", 2000)
                .unwrap()
                .string(),
            Ok(&b"v"[..])
        );
    }

    fn dump(m: &StateMachine) -> Vec<(Vec<u8>, Vec<u8>, Option<u64>)> {
        let mut all = Vec::new();
        for slot in 0..shoal_protocol::SLOT_COUNT {
            let r = m.keyspace().read_slot(slot);
            for e in r.table().iter() {
                all.push((e.key().to_vec(), e.value().to_vec(), e.expires_at()));
            }
        }
        all.sort();
        all
    }

    #[test]
    fn set_conditions_and_get() {
        let m = sm();
        let nx = |v: &str| WriteOp::Set {
            key: b("k"),
            value: b(v),
            condition: Condition::IfAbsent,
            expiry: Expiry::Clear,
            get: false,
        };
        assert_eq!(apply(&m, 1, nx("a")), Frame::ok());
        assert_eq!(apply(&m, 1, nx("b")), Frame::Null);
        let getset = WriteOp::Set {
            key: b("k"),
            value: b("c"),
            condition: Condition::IfPresent,
            expiry: Expiry::Clear,
            get: true,
        };
        assert_eq!(apply(&m, 1, getset), Frame::bulk("a"));
        assert_eq!(
            apply(&m, 1, WriteOp::GetDel { key: b("k") }),
            Frame::bulk("c")
        );
        assert_eq!(apply(&m, 1, WriteOp::GetDel { key: b("k") }), Frame::Null);
    }

    #[test]
    fn incr_overflow_and_float_errors() {
        let m = sm();
        apply(&m, 1, set("n", &i64::MAX.to_string(), Expiry::Clear));
        assert_eq!(
            apply(
                &m,
                1,
                WriteOp::IncrBy {
                    key: b("n"),
                    delta: 1
                }
            ),
            Frame::from(CommandError::Overflow)
        );
        apply(&m, 1, set("f", "10.50", Expiry::Clear));
        assert_eq!(
            apply(
                &m,
                1,
                WriteOp::IncrByFloat {
                    key: b("f"),
                    delta: 0.1
                }
            ),
            Frame::bulk("10.6")
        );
        assert_eq!(
            apply(
                &m,
                1,
                WriteOp::IncrByFloat {
                    key: b("f"),
                    delta: f64::INFINITY
                }
            ),
            Frame::from(CommandError::NanOrInfinity)
        );
        // This build's INCRBYFLOAT adds in long double, as Redis: 0.1 + 0.2 is 0.3.
        let by = |delta: &str| WriteOp::IncrByLongDouble {
            key: b("g"),
            delta: b(delta),
        };
        assert_eq!(apply(&m, 1, by("0.1")), Frame::bulk("0.1"));
        assert_eq!(apply(&m, 1, by("0.2")), Frame::bulk("0.3"));
        assert_eq!(apply(&m, 1, by("x")), Frame::from(CommandError::NotFloat));
        assert_eq!(
            apply(&m, 1, by("inf")),
            Frame::from(CommandError::NanOrInfinity)
        );
        // The key's type is checked before the increment is read, as Redis does.
        apply(
            &m,
            1,
            WriteOp::Data {
                args: vec![b("RPUSH"), b("l"), b("x")],
            },
        );
        let on_list = WriteOp::IncrByLongDouble {
            key: b("l"),
            delta: b("x"),
        };
        assert_eq!(apply(&m, 1, on_list), Frame::from(CommandError::WrongType));
    }

    #[test]
    fn setrange_pads_with_zeros_and_rename_keeps_ttl() {
        let m = sm();
        assert_eq!(
            apply(
                &m,
                1,
                WriteOp::SetRange {
                    key: b("s"),
                    offset: 3,
                    value: b("ab")
                }
            ),
            Frame::Integer(5)
        );
        let r = m.keyspace().read_key_slot(b"s");
        assert_eq!(r.get(b"s", 1).unwrap().value(), b"\0\0\0ab");
        drop(r);
        apply(&m, 1, set("t", "v", Expiry::At(500)));
        assert_eq!(
            apply(
                &m,
                1,
                WriteOp::Rename {
                    from: b("t"),
                    to: b("u"),
                    only_if_absent: false
                }
            ),
            Frame::ok()
        );
        assert_eq!(
            m.keyspace()
                .read_key_slot(b"u")
                .get(b"u", 1)
                .unwrap()
                .expires_at(),
            Some(500)
        );
        assert_eq!(
            apply(
                &m,
                1,
                WriteOp::Rename {
                    from: b("t"),
                    to: b("u"),
                    only_if_absent: false
                }
            ),
            Frame::from(CommandError::NoSuchKey)
        );
    }

    #[test]
    fn exec_applies_every_step_or_none_when_a_watched_key_changed() {
        // A reader that answers with the value it sees, so a read step shows the view.
        let reader: TxReader = Arc::new(|ks: &Keyspace, args: &[Bytes], now: UnixMillis| {
            Frame::bulk_or_null(
                ks.read_key_slot(&args[1])
                    .get(&args[1], now)
                    .map(|e| Bytes::copy_from_slice(e.value())),
            )
        });
        let m = StateMachine::with_tx_reader(Arc::new(Keyspace::new()), Some(reader));
        apply(&m, 1, set("{t}a", "1", Expiry::At(100)));
        let print = watch(&m, "{t}a", 1);
        let exec = |watched: Option<u64>| WriteOp::Exec {
            watched: vec![Watched {
                key: b("{t}a"),
                fingerprint: watched,
            }],
            steps: vec![
                TxStep::Write(WriteOp::IncrBy {
                    key: b("{t}a"),
                    delta: 1,
                }),
                TxStep::Read {
                    args: vec![b("GET"), b("{t}a")],
                    keys: vec![b("{t}a")],
                },
                TxStep::Write(set("{t}b", "x", Expiry::Clear)),
            ],
        };
        // Watched as absent, but it exists: nothing runs.
        assert_eq!(apply(&m, 2, exec(None)), Frame::NullArray);
        assert!(m
            .keyspace()
            .read_key_slot(b"{t}b")
            .get(b"{t}b", 2)
            .is_none());
        // Unchanged: every step runs, the read sees the increment.
        assert_eq!(
            apply(&m, 3, exec(print)),
            Frame::Array(vec![Frame::Integer(2), Frame::bulk("2"), Frame::ok()])
        );
        // Changed since (the increment): aborted again.
        assert_eq!(apply(&m, 4, exec(print)), Frame::NullArray);
        // Expired at the entry's clock counts as changed too.
        let now = watch(&m, "{t}a", 5);
        assert_eq!(apply(&m, 101, exec(now)), Frame::NullArray);
    }

    /// What `WATCH key` records on the leader at `now`.
    fn watch(m: &StateMachine, key: &str, now: UnixMillis) -> Option<u64> {
        let slots = m.keyspace().read_slots([key.as_bytes()]);
        Some(slots.watch_print(key.as_bytes(), now))
    }

    /// `EXEC` of one `INCR {t}n` watching `key` as `print`; true if it ran.
    fn exec_ran(m: &StateMachine, now: UnixMillis, key: &str, print: Option<u64>) -> bool {
        let op = WriteOp::Exec {
            watched: vec![Watched {
                key: b(key),
                fingerprint: print,
            }],
            steps: vec![TxStep::Write(WriteOp::IncrBy {
                key: b("{t}n"),
                delta: 1,
            })],
        };
        match apply(m, now, op) {
            Frame::NullArray => false,
            Frame::Array(_) => true,
            other => panic!("EXEC answered {other:?}"),
        }
    }

    /// A key of `{t}`'s slot whose stamp bucket is (`same`) or is not that of `key`.
    fn neighbour(key: &str, same: bool) -> String {
        use crate::store::keyspace::stamp_bucket;
        (0..)
            .map(|i| format!("{{t}}other{i}"))
            .find(|k| (stamp_bucket(k.as_bytes()) == stamp_bucket(key.as_bytes())) == same)
            .expect("some key fits")
    }

    #[test]
    fn exec_aborts_when_a_watched_key_was_written_even_with_the_same_value() {
        let m = sm();
        apply(&m, 1, set("{t}k", "v", Expiry::Clear));
        // Untouched: runs.
        let print = watch(&m, "{t}k", 1);
        assert!(exec_ran(&m, 2, "{t}k", print));
        // The same value written again (Redis: any write touches the key): aborts.
        let print = watch(&m, "{t}k", 2);
        apply(&m, 3, set("{t}k", "v", Expiry::Clear));
        assert!(!exec_ran(&m, 4, "{t}k", print));
        // A -> B -> A: aborts.
        let print = watch(&m, "{t}k", 4);
        apply(&m, 5, set("{t}k", "w", Expiry::Clear));
        apply(&m, 6, set("{t}k", "v", Expiry::Clear));
        assert!(!exec_ran(&m, 7, "{t}k", print));
        // Absent at WATCH, created and deleted again: aborts.
        let print = watch(&m, "{t}gone", 7);
        apply(&m, 8, set("{t}gone", "x", Expiry::Clear));
        apply(
            &m,
            9,
            WriteOp::Delete {
                keys: vec![b("{t}gone")],
            },
        );
        assert!(!exec_ran(&m, 10, "{t}gone", print));
        // A collection changed in place and back (SADD, SREM): aborts.
        apply(&m, 10, data(&["SADD", "{t}s", "a"]));
        let print = watch(&m, "{t}s", 10);
        apply(&m, 11, data(&["SADD", "{t}s", "b"]));
        apply(&m, 12, data(&["SREM", "{t}s", "b"]));
        assert!(!exec_ran(&m, 13, "{t}s", print));
        // A deadline set and cleared again: aborts.
        let print = watch(&m, "{t}k", 13);
        apply(
            &m,
            14,
            WriteOp::Expire {
                key: b("{t}k"),
                at_ms: 1000,
                condition: ExpireCondition::Always,
            },
        );
        apply(&m, 15, WriteOp::Persist { key: b("{t}k") });
        assert!(!exec_ran(&m, 16, "{t}k", print));
        // FLUSHALL and the same key written back: aborts.
        let print = watch(&m, "{t}k", 16);
        apply(&m, 17, WriteOp::FlushAll);
        apply(&m, 18, set("{t}k", "v", Expiry::Clear));
        assert!(!exec_ran(&m, 19, "{t}k", print));
    }

    #[test]
    fn exec_ignores_writes_to_other_keys_of_another_stamp_bucket() {
        let m = sm();
        apply(&m, 1, set("{t}k", "v", Expiry::Clear));
        let other = neighbour("{t}k", false);
        let print = watch(&m, "{t}k", 1);
        apply(&m, 2, set(&other, "x", Expiry::Clear));
        apply(
            &m,
            3,
            WriteOp::Delete {
                keys: vec![b(&other)],
            },
        );
        assert!(exec_ran(&m, 4, "{t}k", print));
        // The documented false positive: another key of the same bucket aborts.
        let same = neighbour("{t}k", true);
        let print = watch(&m, "{t}k", 4);
        apply(&m, 5, set(&same, "x", Expiry::Clear));
        assert!(!exec_ran(&m, 6, "{t}k", print));
    }

    #[test]
    fn exec_of_a_key_already_expired_at_watch_survives_its_reclaim() {
        let m = sm();
        apply(&m, 1, set("{t}k", "v", Expiry::At(10)));
        // Expired (absent) when watched; active expiry deletes it: nothing a client could see
        // changed, as in Redis.
        let print = watch(&m, "{t}k", 20);
        apply(
            &m,
            21,
            WriteOp::DeleteExpired {
                keys: vec![b("{t}k")],
            },
        );
        assert!(exec_ran(&m, 22, "{t}k", print));
    }
}
