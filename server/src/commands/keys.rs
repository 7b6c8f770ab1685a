//! Generic key commands: existence, type, rename, iteration.

use bytes::Bytes;
use rand::Rng;
use shoal_protocol::{hash_tag, key_slot, Frame, SLOT_COUNT};

use super::args::{int, is};
use super::Ctx;
use crate::error::{CommandError, CommandResult};
use crate::glob::glob_match;
use crate::store::WriteOp;

pub fn del(ctx: &mut Ctx<'_>) -> CommandResult {
    ctx.propose(WriteOp::Delete {
        keys: ctx.args[1..].to_vec(),
    })
}

/// `EXISTS` and `TOUCH`: how many of the keys exist (a key named twice counts twice).
pub fn exists(ctx: &mut Ctx<'_>) -> CommandResult {
    let keys = &ctx.args[1..];
    let slots = ctx.read_keys(keys);
    let now = ctx.now_ms;
    let n = keys.iter().filter(|k| slots.get(k, now).is_some()).count();
    Ok(Frame::Integer(n as i64))
}

pub fn key_type(ctx: &mut Ctx<'_>) -> CommandResult {
    let key = ctx.arg(1);
    let kind = ctx
        .keyspace()
        .read_key_slot(key)
        .get(key, ctx.now_ms)
        .map(|e| e.kind().name());
    Ok(Frame::simple(kind.unwrap_or("none")))
}

pub fn rename(ctx: &mut Ctx<'_>, only_if_absent: bool) -> CommandResult {
    ctx.propose(WriteOp::Rename {
        from: ctx.arg(1).clone(),
        to: ctx.arg(2).clone(),
        only_if_absent,
    })
}

/// The single slot a pattern can match, when its hash tag is literal (`{user1}:*`).
fn pattern_slot(pattern: &[u8]) -> Option<u16> {
    let tag = hash_tag(pattern);
    let literal = tag.len() < pattern.len() && !tag.iter().any(|c| b"*?[\\".contains(c));
    // Everything before the tag must be literal too, or the tag could start elsewhere.
    let open = pattern.iter().position(|&c| c == b'{')?;
    let prefix_literal = !pattern[..open].iter().any(|c| b"*?[\\{".contains(c));
    (literal && prefix_literal).then(|| key_slot(pattern))
}

/// Appends the live keys of `slot` that match `pattern` to `out`; returns how many entries the
/// slot held (what a SCAN step "looked at").
fn collect_slot(
    ctx: &Ctx<'_>,
    slot: u16,
    pattern: Option<&[u8]>,
    kind: Option<&[u8]>,
    now: u64,
    out: &mut Vec<Frame>,
) -> usize {
    let table = ctx.keyspace().read_slot(slot);
    for e in table.table().iter() {
        if e.is_expired(now) {
            continue;
        }
        if pattern.is_none_or(|p| glob_match(p, e.key(), false))
            && kind.is_none_or(|k| is(k, e.kind().name()))
        {
            out.push(Frame::Bulk(Bytes::copy_from_slice(e.key())));
        }
    }
    table.table().len()
}

pub fn keys(ctx: &mut Ctx<'_>) -> CommandResult {
    let pattern = ctx.arg(1).clone();
    let pattern = (&pattern[..] != b"*").then_some(&pattern[..]);
    let now = ctx.now_ms;
    let mut out = Vec::new();
    match pattern.and_then(pattern_slot) {
        Some(slot) => {
            collect_slot(ctx, slot, pattern, None, now, &mut out);
        }
        None => {
            for slot in 0..SLOT_COUNT {
                collect_slot(ctx, slot, pattern, None, now, &mut out);
            }
        }
    }
    Ok(Frame::Array(out))
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`.
///
/// The cursor is the next slot to visit; each call returns whole slots until about `COUNT` keys
/// were looked at. Every key present for the whole iteration is returned exactly once.
pub fn scan(ctx: &mut Ctx<'_>) -> CommandResult {
    let cursor: u64 = std::str::from_utf8(ctx.arg(1))
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(CommandError::InvalidCursor)?;
    let mut pattern: Option<Bytes> = None;
    let mut count: i64 = 10;
    let mut type_filter: Option<Bytes> = None;
    let mut i = 2;
    while i < ctx.args.len() {
        let value = ctx.args.get(i + 1).ok_or(CommandError::Syntax)?;
        if is(&ctx.args[i], "match") {
            pattern = (&value[..] != b"*").then(|| value.clone());
        } else if is(&ctx.args[i], "count") {
            count = int(value)?;
            if count < 1 {
                return Err(CommandError::Syntax);
            }
        } else if is(&ctx.args[i], "type") {
            type_filter = Some(value.clone());
        } else {
            return Err(CommandError::Syntax);
        }
        i += 2;
    }
    let now = ctx.now_ms;
    let mut keys = Vec::new();
    let mut visited = 0usize;
    let mut slot = cursor.min(SLOT_COUNT as u64) as u16;
    while slot < SLOT_COUNT && visited < count as usize {
        // Count keys looked at (matched or not). Empty slots cost nothing: a replica holds only
        // its shard's slots, so most of its slots are empty.
        visited += collect_slot(
            ctx,
            slot,
            pattern.as_deref(),
            type_filter.as_deref(),
            now,
            &mut keys,
        );
        slot += 1;
    }
    let next = if slot >= SLOT_COUNT { 0 } else { slot as i64 };
    Ok(Frame::Array(vec![
        Frame::bulk_int(next),
        Frame::Array(keys),
    ]))
}

pub fn randomkey(ctx: &mut Ctx<'_>) -> CommandResult {
    let ks = ctx.keyspace();
    if ks.is_empty() {
        return Ok(Frame::Null);
    }
    let now = ctx.now_ms;
    let mut rng = rand::thread_rng();
    let start = rng.gen_range(0..SLOT_COUNT);
    for i in 0..SLOT_COUNT {
        let slot = ks.read_slot((start + i) % SLOT_COUNT);
        let live: Vec<&[u8]> = slot
            .table()
            .iter()
            .filter(|e| !e.is_expired(now))
            .map(|e| e.key())
            .collect();
        if !live.is_empty() {
            let key = live[rng.gen_range(0..live.len())];
            return Ok(Frame::Bulk(Bytes::copy_from_slice(key)));
        }
    }
    Ok(Frame::Null)
}

#[cfg(test)]
mod tests {
    use super::pattern_slot;
    use shoal_protocol::key_slot;

    #[test]
    fn literal_hash_tag_patterns_pin_one_slot() {
        assert_eq!(pattern_slot(b"{user1}:*"), Some(key_slot(b"user1")));
        assert_eq!(pattern_slot(b"a{user1}*"), Some(key_slot(b"user1")));
        assert_eq!(pattern_slot(b"*{user1}"), None);
        assert_eq!(pattern_slot(b"{user*}:x"), None);
        assert_eq!(pattern_slot(b"plain*"), None);
    }
}
