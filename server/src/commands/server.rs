//! Server commands: liveness, time, size, flush.

use shoal_protocol::Frame;

use super::args::is;
use super::Ctx;
use crate::error::{CommandError, CommandResult};
use crate::store::WriteOp;

pub fn ping(ctx: &mut Ctx<'_>) -> CommandResult {
    if let Some(reply) = super::pubsub::subscribed_ping(ctx) {
        return Ok(reply);
    }
    match &ctx.args[1..] {
        [] => Ok(Frame::simple("PONG")),
        [msg] => Ok(Frame::Bulk(msg.clone())),
        _ => Err(CommandError::WrongArity("ping".into())),
    }
}

pub fn echo(ctx: &mut Ctx<'_>) -> CommandResult {
    Ok(Frame::Bulk(ctx.arg(1).clone()))
}

pub fn time(_ctx: &mut Ctx<'_>) -> CommandResult {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(Frame::Array(vec![
        Frame::bulk_int(now.as_secs() as i64),
        Frame::bulk_int(now.subsec_micros() as i64),
    ]))
}

pub fn dbsize(ctx: &mut Ctx<'_>) -> CommandResult {
    Ok(Frame::Integer(ctx.keyspace().len() as i64))
}

/// `FLUSHDB`/`FLUSHALL [ASYNC|SYNC]`: one database, so both empty everything.
pub fn flush(ctx: &mut Ctx<'_>) -> CommandResult {
    match &ctx.args[1..] {
        [] => {}
        [mode] if is(mode, "async") || is(mode, "sync") => {}
        _ => return Err(CommandError::Syntax),
    }
    ctx.propose(WriteOp::FlushAll)
}
