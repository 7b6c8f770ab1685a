//! String commands.

use bytes::Bytes;
use shoal_protocol::Frame;

use super::args::{deadline, int, is};
use super::Ctx;
use crate::error::{CommandError, CommandResult};
use crate::store::state_machine::MAX_STRING_LEN;
use crate::store::{Condition, Expiry, WriteOp};

pub fn get(ctx: &mut Ctx<'_>) -> CommandResult {
    let key = ctx.arg(1);
    let slot = ctx.keyspace().read_key_slot(key);
    let value = match slot.get(key, ctx.now_ms) {
        Some(e) => Some(Bytes::copy_from_slice(e.string()?)),
        None => None,
    };
    ctx.node.stats.lookup(value.is_some());
    Ok(Frame::bulk_or_null(value))
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ts|KEEPTTL]`
pub fn set(ctx: &mut Ctx<'_>) -> CommandResult {
    let mut condition = Condition::Always;
    let mut expiry = Expiry::Clear;
    let mut get = false;
    let mut expiry_given = false;
    let mut i = 3;
    while i < ctx.args.len() {
        let opt = &ctx.args[i];
        let next = ctx.args.get(i + 1);
        if is(opt, "nx") && condition != Condition::IfPresent {
            condition = Condition::IfAbsent;
        } else if is(opt, "xx") && condition != Condition::IfAbsent {
            condition = Condition::IfPresent;
        } else if is(opt, "get") {
            get = true;
        } else if is(opt, "keepttl") && !expiry_given {
            expiry = Expiry::Keep;
            expiry_given = true;
        } else if let (Some(value), false) = (next, expiry_given) {
            match deadline(opt, value, "set", ctx.now_ms)? {
                Some(at) => {
                    expiry = at;
                    expiry_given = true;
                    i += 1;
                }
                None => return Err(CommandError::Syntax),
            }
        } else {
            return Err(CommandError::Syntax);
        }
        i += 1;
    }
    ctx.propose(WriteOp::Set {
        key: ctx.arg(1).clone(),
        value: ctx.arg(2).clone(),
        condition,
        expiry,
        get,
    })
}

pub fn setnx(ctx: &mut Ctx<'_>) -> CommandResult {
    let op = WriteOp::Set {
        key: ctx.arg(1).clone(),
        value: ctx.arg(2).clone(),
        condition: Condition::IfAbsent,
        expiry: Expiry::Clear,
        get: false,
    };
    ctx.propose_then(op, |reply| Frame::Integer((reply == Frame::ok()) as i64))
}

pub fn setex(ctx: &mut Ctx<'_>) -> CommandResult {
    set_with_ttl(ctx, b"ex", "setex")
}

pub fn psetex(ctx: &mut Ctx<'_>) -> CommandResult {
    set_with_ttl(ctx, b"px", "psetex")
}

fn set_with_ttl(ctx: &mut Ctx<'_>, unit: &[u8], command: &'static str) -> CommandResult {
    let expiry = deadline(unit, ctx.arg(2), command, ctx.now_ms)?.expect("ex/px are deadlines");
    ctx.propose(WriteOp::Set {
        key: ctx.arg(1).clone(),
        value: ctx.arg(3).clone(),
        condition: Condition::Always,
        expiry,
        get: false,
    })
}

pub fn getset(ctx: &mut Ctx<'_>) -> CommandResult {
    ctx.propose(WriteOp::Set {
        key: ctx.arg(1).clone(),
        value: ctx.arg(2).clone(),
        condition: Condition::Always,
        expiry: Expiry::Clear,
        get: true,
    })
}

pub fn getdel(ctx: &mut Ctx<'_>) -> CommandResult {
    ctx.propose(WriteOp::GetDel {
        key: ctx.arg(1).clone(),
    })
}

/// `GETEX key [EX s|PX ms|EXAT ts|PXAT ts|PERSIST]`
pub fn getex(ctx: &mut Ctx<'_>) -> CommandResult {
    let expiry = match &ctx.args[2..] {
        [] => return get(ctx),
        [opt] if is(opt, "persist") => Expiry::Clear,
        [opt, value] => deadline(opt, value, "getex", ctx.now_ms)?.ok_or(CommandError::Syntax)?,
        _ => return Err(CommandError::Syntax),
    };
    ctx.propose(WriteOp::GetEx {
        key: ctx.arg(1).clone(),
        expiry,
    })
}

pub fn mget(ctx: &mut Ctx<'_>) -> CommandResult {
    let keys = &ctx.args[1..];
    let slots = ctx.read_keys(keys);
    let now = ctx.now_ms;
    let values = keys
        .iter()
        .map(|k| {
            // A key of another type reads as nil here, as in Redis.
            let v = slots
                .get(k, now)
                .and_then(|e| e.string().ok())
                .map(Bytes::copy_from_slice);
            ctx.node.stats.lookup(v.is_some());
            Frame::bulk_or_null(v)
        })
        .collect();
    Ok(Frame::Array(values))
}

fn pairs(ctx: &Ctx<'_>) -> Result<Vec<(Bytes, Bytes)>, CommandError> {
    let rest = &ctx.args[1..];
    if !rest.len().is_multiple_of(2) {
        return Err(CommandError::WrongArity(ctx.spec.name.to_owned()));
    }
    Ok(rest
        .chunks_exact(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect())
}

pub fn mset(ctx: &mut Ctx<'_>) -> CommandResult {
    let pairs = pairs(ctx)?;
    ctx.propose(WriteOp::MSet {
        pairs,
        only_if_none_exist: false,
    })
}

pub fn msetnx(ctx: &mut Ctx<'_>) -> CommandResult {
    let pairs = pairs(ctx)?;
    ctx.propose(WriteOp::MSet {
        pairs,
        only_if_none_exist: true,
    })
}

pub fn append(ctx: &mut Ctx<'_>) -> CommandResult {
    ctx.propose(WriteOp::Append {
        key: ctx.arg(1).clone(),
        value: ctx.arg(2).clone(),
    })
}

pub fn strlen(ctx: &mut Ctx<'_>) -> CommandResult {
    let key = ctx.arg(1);
    let slot = ctx.keyspace().read_key_slot(key);
    let len = match slot.get(key, ctx.now_ms) {
        Some(e) => e.string()?.len(),
        None => 0,
    };
    Ok(Frame::Integer(len as i64))
}

/// `GETRANGE key start end` with Redis 7's index rules.
pub fn getrange(ctx: &mut Ctx<'_>) -> CommandResult {
    let (start, end) = (int(ctx.arg(2))?, int(ctx.arg(3))?);
    let key = ctx.arg(1);
    let slot = ctx.keyspace().read_key_slot(key);
    let Some(entry) = slot.get(key, ctx.now_ms) else {
        return Ok(Frame::bulk(Bytes::new()));
    };
    Ok(Frame::Bulk(Bytes::copy_from_slice(substring(
        entry.string()?,
        start,
        end,
    ))))
}

fn substring(value: &[u8], start: i64, end: i64) -> &[u8] {
    let len = value.len() as i64;
    if len == 0 || (start < 0 && end < 0 && start > end) {
        return &[];
    }
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let end = if end < 0 {
        (len + end).max(0)
    } else {
        end.min(len - 1)
    };
    if start > end {
        return &[];
    }
    &value[start as usize..=end as usize]
}

pub fn setrange(ctx: &mut Ctx<'_>) -> CommandResult {
    let offset = int(ctx.arg(2))?;
    if offset < 0 {
        return Err(CommandError::OffsetOutOfRange);
    }
    let value = ctx.arg(3).clone();
    if !value.is_empty() && offset as u64 + value.len() as u64 > MAX_STRING_LEN {
        return Err(CommandError::StringTooLong);
    }
    ctx.propose(WriteOp::SetRange {
        key: ctx.arg(1).clone(),
        offset: offset as u64,
        value,
    })
}

/// `INCR`/`DECR` (fixed delta) and `INCRBY` (delta from the arguments).
pub fn incr_by(ctx: &mut Ctx<'_>, fixed: Option<i64>) -> CommandResult {
    let delta = match fixed {
        Some(d) => d,
        None => int(ctx.arg(2))?,
    };
    ctx.propose(WriteOp::IncrBy {
        key: ctx.arg(1).clone(),
        delta,
    })
}

pub fn decrby(ctx: &mut Ctx<'_>) -> CommandResult {
    let delta = int(ctx.arg(2))?;
    let delta = delta.checked_neg().ok_or(CommandError::DecrementOverflow)?;
    ctx.propose(WriteOp::IncrBy {
        key: ctx.arg(1).clone(),
        delta,
    })
}

/// `INCRBYFLOAT`: checked and computed in `apply`, in Redis's order and C long double.
pub fn incrbyfloat(ctx: &mut Ctx<'_>) -> CommandResult {
    ctx.propose(WriteOp::IncrByLongDouble {
        key: ctx.arg(1).clone(),
        delta: ctx.arg(2).clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::substring;

    #[test]
    fn getrange_index_rules_match_redis() {
        let v = b"This is a string";
        assert_eq!(substring(v, 0, 3), b"This");
        assert_eq!(substring(v, -3, -1), b"ing");
        assert_eq!(substring(v, 0, -1), v);
        assert_eq!(substring(v, 10, 100), b"string");
        assert_eq!(substring(v, 5, 3), b"");
        assert_eq!(substring(v, -1, -5), b"");
        assert_eq!(substring(b"", 0, -1), b"");
        assert_eq!(substring(v, -100, 2), b"Thi");
    }
}
