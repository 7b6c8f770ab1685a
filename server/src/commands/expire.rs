//! Expiry commands. Relative times become absolute deadlines here, before they are entries.

use shoal_protocol::Frame;

use super::args::{absolute_ms, int, is, text};
use super::Ctx;
use crate::error::{CommandError, CommandResult};
use crate::store::{ExpireCondition, WriteOp};

/// `EXPIRE`/`PEXPIRE`/`EXPIREAT`/`PEXPIREAT key time [NX|XX|GT|LT]`; `unit` is 1000 for
/// seconds, 1 for milliseconds.
pub fn expire(ctx: &mut Ctx<'_>, unit: i64, relative: bool) -> CommandResult {
    let n = int(ctx.arg(2))?;
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in &ctx.args[3..] {
        if is(opt, "nx") {
            nx = true;
        } else if is(opt, "xx") {
            xx = true;
        } else if is(opt, "gt") {
            gt = true;
        } else if is(opt, "lt") {
            lt = true;
        } else {
            return Err(CommandError::Err(format!(
                "Unsupported option {}",
                text(opt)
            )));
        }
    }
    if nx && (xx || gt || lt) {
        return Err(CommandError::Err(
            "NX and XX, GT or LT options at the same time are not compatible".into(),
        ));
    }
    if gt && lt {
        return Err(CommandError::Err(
            "GT and LT options at the same time are not compatible".into(),
        ));
    }
    // GT already implies a deadline (a persistent key counts as infinitely late), so XX adds
    // nothing to it; LT accepts persistent keys unless XX is also given.
    let condition = match (nx, xx, gt, lt) {
        (true, ..) => ExpireCondition::Nx,
        (_, _, true, _) => ExpireCondition::Gt,
        (_, true, _, true) => ExpireCondition::XxLt,
        (_, _, _, true) => ExpireCondition::Lt,
        (_, true, ..) => ExpireCondition::Xx,
        _ => ExpireCondition::Always,
    };
    let at_ms = absolute_ms(n, unit, relative, ctx.spec.name, ctx.now_ms)?;
    ctx.propose(WriteOp::Expire {
        key: ctx.arg(1).clone(),
        at_ms,
        condition,
    })
}

/// `TTL`/`PTTL` (remaining time) and `EXPIRETIME`/`PEXPIRETIME` (absolute deadline):
/// -2 if the key is missing, -1 if it has no deadline.
pub fn ttl(ctx: &mut Ctx<'_>, millis: bool, absolute: bool) -> CommandResult {
    let key = ctx.arg(1);
    let now = ctx.now_ms;
    let slot = ctx.keyspace().read_key_slot(key);
    let Some(entry) = slot.get(key, now) else {
        return Ok(Frame::Integer(-2));
    };
    let Some(at) = entry.expires_at() else {
        return Ok(Frame::Integer(-1));
    };
    let ms = if absolute { at } else { at.saturating_sub(now) } as i64;
    Ok(Frame::Integer(if millis { ms } else { (ms + 500) / 1000 }))
}

pub fn persist(ctx: &mut Ctx<'_>) -> CommandResult {
    ctx.propose(WriteOp::Persist {
        key: ctx.arg(1).clone(),
    })
}
