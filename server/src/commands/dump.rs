//! `DUMP` and `RESTORE`: values in Redis's serialization format (`store::dump`), so data moves
//! between shoal and Redis.

use shoal_protocol::Frame;

use super::args::{int, is};
use super::Ctx;
use crate::error::{CommandError, CommandResult};
use crate::numbers::parse_i64;
use crate::store::{dump, WriteOp};

/// `DUMP key`: the payload, or nil for a missing key.
pub fn dump(ctx: &mut Ctx<'_>) -> CommandResult {
    let key = ctx.arg(1);
    let slot = ctx.keyspace().read_key_slot(key);
    Ok(match slot.get(key, ctx.now_ms) {
        Some(entry) => Frame::Bulk(dump::dump(entry).into()),
        None => Frame::Null,
    })
}

/// `RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency]`.
///
/// The options are checked here, in Redis's order; the payload is decoded here too (the log
/// carries the value, not the payload), but an existing key is only seen by `apply`, which
/// answers `-BUSYKEY` before any TTL or payload error, as Redis does. `IDLETIME` and `FREQ`
/// travel in the entry and set the restored key's access word on every replica.
pub fn restore(ctx: &mut Ctx<'_>) -> CommandResult {
    let args = ctx.args;
    let (mut replace, mut absttl) = (false, false);
    let (mut idle, mut freq) = (None, None);
    let mut j = 4;
    while j < args.len() {
        let more = j + 1 < args.len();
        if is(&args[j], "replace") {
            replace = true;
        } else if is(&args[j], "absttl") {
            absttl = true;
        } else if is(&args[j], "idletime") && more && freq.is_none() {
            let v = int(&args[j + 1])?;
            if v < 0 {
                return Err(CommandError::Err(
                    "Invalid IDLETIME value, must be >= 0".into(),
                ));
            }
            idle = Some(v);
            j += 1;
        } else if is(&args[j], "freq") && more && idle.is_none() {
            let v = int(&args[j + 1])?;
            if !(0..=255).contains(&v) {
                return Err(CommandError::Err(
                    "Invalid FREQ value, must be >= 0 and <= 255".into(),
                ));
            }
            freq = Some(v);
            j += 1;
        } else {
            return Err(CommandError::Syntax);
        }
        j += 1;
    }
    let (ttl_ms, value) = match parse_i64(&args[2]) {
        None => (0, Err(CommandError::NotInteger.to_string())),
        Some(t) if t < 0 => (
            0,
            Err(CommandError::Err("Invalid TTL value, must be >= 0".into()).to_string()),
        ),
        Some(t) => (t, dump::decode(&args[3]).map_err(|e| e.text().to_owned())),
    };
    ctx.propose(WriteOp::Restore {
        key: args[1].clone(),
        value,
        ttl_ms,
        absttl,
        replace,
        idle_ms: idle.map(|secs| (secs as u64).saturating_mul(1000)),
        freq: freq.map(|f| f as u8),
    })
}
