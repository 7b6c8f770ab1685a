//! `SORT` and `SORT_RO` over lists, sets and sorted sets, as Redis 7.0 sorts.
//!
//! shoal is always sharded, so it follows Redis Cluster's rule (7.2's form of it): a `BY` or
//! `GET` pattern must name keys of the sorted key's own slot (a literal `{hash tag}` that hashes
//! there), and a `STORE` destination must share that slot. Then every key the command reads or
//! writes is under the one slot lock the command holds, on the one shard that routes it.
//! `GET #` and a `BY` without `*` (`BY nosort`) name no key and are always allowed.
//!
//! `SORT ... STORE` is a write and travels through the log as its arguments; a set sorted with
//! `BY nosort` is then sorted `ALPHA` instead, as Redis does, so every replica stores the same
//! list. Without `STORE` it is a read, but for two cases that run inside `apply` as writes:
//! a packed sorted set, which Redis converts to a skiplist before sorting it (even for
//! `SORT_RO`), and any `SORT` inside a transaction, which must read the keys as the
//! transaction's earlier commands left them.

use bytes::Bytes;
use shoal_protocol::{key_slot, CommandId, Frame};

use super::{bulk, Reader, Writer};
use crate::commands::Ctx;
use crate::error::{CommandError, CommandResult};
use crate::numbers::parse_i64;
use crate::store::value::{List, Value};
use crate::store::{Entry, WriteOp};

/// A parsed `SORT` request.
#[derive(Debug, Default)]
struct SortSpec {
    desc: bool,
    alpha: bool,
    /// `LIMIT offset count` (count < 0: to the end).
    limit: Option<(i64, i64)>,
    /// A `BY` pattern with a `*`.
    by: Option<Bytes>,
    /// `BY` without a `*`: keep the value's own order.
    dontsort: bool,
    gets: Vec<Bytes>,
    store: Option<Bytes>,
}

/// The elements to sort and whether they come from a set (whose order is arbitrary).
struct Source {
    items: Vec<Vec<u8>>,
    is_set: bool,
}

/// Looks up the string a pattern key holds (or its hash field): `None` when absent or of
/// another type.
type Lookup<'l> = dyn FnMut(&[u8], Option<&[u8]>) -> Option<Vec<u8>> + 'l;

const SLOT_DENIED: &str =
    "option of SORT denied in Cluster mode when keys formed by the pattern may be in different slots.";

/// Runs `SORT`/`SORT_RO`: a read unless it stores.
pub fn run(ctx: &mut Ctx<'_>) -> CommandResult {
    let spec = parse(ctx.args, ctx.spec.id == CommandId::SortRo)?;
    let key = ctx.args[1].clone();
    let r = Reader {
        slots: ctx.read_keys(std::slice::from_ref(&key)),
        now: ctx.now_ms,
    };
    // Redis converts a packed sorted set to a skiplist before sorting it, even for `SORT_RO`
    // and even when the sort then fails (once the options parse): a change of encoding, so a
    // write, replicated. A `SORT_RO` served by a follower after `READONLY` (as a Redis replica
    // serves it) sorts without converting: only the leader changes the data, and the sorted
    // result is the same in either encoding.
    let converts = ctx.on_leader()
        && matches!(
            r.entry(&key).and_then(Entry::collection),
            Some(Value::ZSet(z)) if z.is_packed()
        );
    if converts || spec.store.is_some() {
        drop(r);
        return ctx.propose(WriteOp::Data {
            args: ctx.args.to_vec(),
        });
    }
    let source = source(r.entry(&key))?;
    let mut lookup = |k: &[u8], field: Option<&[u8]>| pattern_value(r.entry(k), field);
    let out = sort(&spec, source, &mut lookup)?;
    Ok(Frame::Array(
        out.into_iter()
            .map(|v| v.map_or(Frame::Null, |v| bulk(&v)))
            .collect(),
    ))
}

/// `SORT ... STORE dest` inside `apply`; and inside a transaction any `SORT` or `SORT_RO`,
/// which must read the sorted key and its pattern keys as the transaction's earlier steps
/// left them (without `STORE` it only reads, under the entry's locks).
pub fn write(w: &mut Writer<'_, '_>, id: CommandId, args: &[Bytes]) -> CommandResult {
    let spec = parse(args, id == CommandId::SortRo)?;
    let now = w.now;
    let is_zset = matches!(
        w.s.get(&args[1], now).and_then(Entry::collection),
        Some(Value::ZSet(_))
    );
    if is_zset {
        if let Some(z) = w.zset_mut(&args[1], false)? {
            z.convert_to_skiplist();
        }
    }
    let source = source(w.s.get(&args[1], now))?;
    let out = {
        let s = &mut *w.s;
        let mut lookup = |k: &[u8], field: Option<&[u8]>| pattern_value(s.get(k, now), field);
        sort(&spec, source, &mut lookup)?
    };
    let Some(dest) = spec.store.as_ref() else {
        return Ok(Frame::Array(
            out.into_iter()
                .map(|v| v.map_or(Frame::Null, |v| bulk(&v)))
                .collect(),
        ));
    };
    let n = out.len();
    let list = List::from_items(out.into_iter().map(Option::unwrap_or_default));
    w.store(dest, Value::List(list));
    Ok(Frame::Integer(n as i64))
}

/// The option (`BY` with a real pattern, or `GET`) that makes `args` read keys other than the
/// sorted one, if any: Redis 7 runs those only for a user with access to every key, and
/// answers `-ERR <option> option of SORT denied due to insufficient ACL permissions.`
/// otherwise. `None` too if `args` do not parse (the command reports that itself).
pub fn option_needing_every_key(args: &[Bytes], readonly: bool) -> Option<&'static str> {
    let spec = parse(args, readonly).ok()?;
    if spec.by.is_some() {
        Some("BY")
    } else if !spec.gets.is_empty() {
        Some("GET")
    } else {
        None
    }
}

fn parse(args: &[Bytes], readonly: bool) -> Result<SortSpec, CommandError> {
    let slot = key_slot(&args[1]);
    let mut spec = SortSpec::default();
    let mut j = 2;
    while j < args.len() {
        let left = args.len() - j - 1;
        let a = &args[j];
        let is = |k: &str| a.eq_ignore_ascii_case(k.as_bytes());
        if is("asc") {
            spec.desc = false;
        } else if is("desc") {
            spec.desc = true;
        } else if is("alpha") {
            spec.alpha = true;
        } else if is("limit") && left >= 2 {
            let start = parse_i64(&args[j + 1]).ok_or(CommandError::NotInteger)?;
            let count = parse_i64(&args[j + 2]).ok_or(CommandError::NotInteger)?;
            spec.limit = Some((start, count));
            j += 2;
        } else if !readonly && is("store") && left >= 1 {
            if key_slot(&args[j + 1]) != slot {
                return Err(CommandError::CrossSlot);
            }
            spec.store = Some(args[j + 1].clone());
            j += 1;
        } else if is("by") && left >= 1 {
            let pattern = &args[j + 1];
            if pattern.contains(&b'*') {
                if pattern_slot(pattern) != Some(slot) {
                    return Err(CommandError::Err(format!("BY {SLOT_DENIED}")));
                }
                spec.by = Some(pattern.clone());
                spec.dontsort = false;
            } else {
                spec.by = None;
                spec.dontsort = true;
            }
            j += 1;
        } else if is("get") && left >= 1 {
            let pattern = &args[j + 1];
            if &pattern[..] != b"#" && pattern_slot(pattern) != Some(slot) {
                return Err(CommandError::Err(format!("GET {SLOT_DENIED}")));
            }
            spec.gets.push(pattern.clone());
            j += 1;
        } else {
            return Err(CommandError::Syntax);
        }
        j += 1;
    }
    Ok(spec)
}

/// Redis's `patternHashSlot`: the one slot every key a pattern can form hashes to, if there
/// is one (a literal hash tag before any wildcard, or no wildcard at all).
fn pattern_slot(pattern: &[u8]) -> Option<u16> {
    let mut open: Option<usize> = None;
    let mut empty_tag = false;
    for (i, &c) in pattern.iter().enumerate() {
        match c {
            b'*' | b'?' | b'[' | b'\\' => return None,
            b'{' if open.is_none() && !empty_tag => open = Some(i),
            b'}' if open == Some(i.wrapping_sub(1)) => {
                // `{}`: the whole key is hashed.
                open = None;
                empty_tag = true;
            }
            b'}' if open.is_some() => {
                // The tag holds no `}`, so `key_slot` hashes all of it.
                let start = open.expect("open") + 1;
                return Some(key_slot(&pattern[start..i]));
            }
            _ => {}
        }
    }
    Some(key_slot(pattern))
}

fn source(entry: Option<&Entry>) -> Result<Option<Source>, CommandError> {
    let Some(e) = entry else { return Ok(None) };
    let (items, is_set) = match e.collection() {
        Some(Value::List(l)) => (l.iter().map(<[u8]>::to_vec).collect(), false),
        Some(Value::Set(s)) => (s.members().map(|m| m.to_vec()).collect(), true),
        Some(Value::ZSet(z)) => (z.iter().map(|(_, m)| m.to_vec()).collect(), false),
        _ => return Err(CommandError::WrongType),
    };
    Ok(Some(Source { items, is_set }))
}

fn pattern_value(entry: Option<&Entry>, field: Option<&[u8]>) -> Option<Vec<u8>> {
    let e = entry?;
    match (field, e.collection()) {
        (None, None) => Some(e.value().to_vec()),
        (Some(f), Some(Value::Hash(h))) => h.get(f).map(<[u8]>::to_vec),
        _ => None,
    }
}

/// Redis's `lookupKeyByPattern`: `#` is the element itself; otherwise the first `*` is
/// replaced by the element, and a `->field` after it reads that hash field.
fn by_pattern(pattern: &[u8], elem: &[u8], lookup: &mut Lookup<'_>) -> Option<Vec<u8>> {
    if pattern == b"#" {
        return Some(elem.to_vec());
    }
    let star = pattern.iter().position(|&c| c == b'*')?;
    let after = &pattern[star + 1..];
    let arrow = after
        .windows(2)
        .position(|w| w == b"->")
        .filter(|&i| i + 2 < after.len());
    let (postfix, field) = match arrow {
        Some(i) => (&after[..i], Some(&after[i + 2..])),
        None => (after, None),
    };
    let mut key = Vec::with_capacity(star + elem.len() + postfix.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(elem);
    key.extend_from_slice(postfix);
    lookup(&key, field)
}

/// `strtod` as SORT uses it: leading whitespace skipped, the whole rest must be a number, no
/// NaN, no overflow; the empty string is 0.
fn sort_score(s: &[u8]) -> Option<f64> {
    if s.is_empty() {
        return Some(0.0);
    }
    let text = std::str::from_utf8(s).ok()?;
    let t = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let v: f64 = t.parse().ok()?;
    if v.is_nan() || (v.is_infinite() && !t.to_ascii_lowercase().contains("inf")) {
        return None;
    }
    Some(v)
}

/// The reply's values (or the stored list's), in order: each chosen element, or with `GET`
/// patterns their values (`None`: missing).
fn sort(
    spec: &SortSpec,
    source: Option<Source>,
    lookup: &mut Lookup<'_>,
) -> Result<Vec<Option<Vec<u8>>>, CommandError> {
    let Some(Source { mut items, is_set }) = source else {
        return Ok(Vec::new());
    };
    let (mut dontsort, mut alpha, mut by) = (spec.dontsort, spec.alpha, spec.by.as_ref());
    if dontsort && is_set && spec.store.is_some() {
        // A set's order differs between processes: the stored list must not.
        (dontsort, alpha, by) = (false, true, None);
    }
    let len = items.len() as i64;
    let (start, count) = spec.limit.unwrap_or((0, -1));
    let mut start = start.max(0);
    let mut end = if count < 0 {
        len - 1
    } else {
        start + count - 1
    };
    if start >= len {
        start = len - 1;
        end = len - 2;
    }
    end = end.min(len - 1);
    if dontsort {
        if spec.desc && !is_set {
            items.reverse();
        }
    } else {
        enum Key {
            Score(f64),
            Text(Option<Vec<u8>>),
        }
        let mut keyed = Vec::with_capacity(items.len());
        for item in items {
            let byval = match by {
                Some(p) => by_pattern(p, &item, lookup),
                None => Some(item.clone()),
            };
            let key = if alpha {
                Key::Text(by.and(byval))
            } else {
                let score = match byval {
                    Some(v) => sort_score(&v).ok_or_else(|| {
                        CommandError::Err(
                            "One or more scores can't be converted into double".into(),
                        )
                    })?,
                    None => 0.0,
                };
                Key::Score(score)
            };
            keyed.push((key, item));
        }
        keyed.sort_by(|(ka, a), (kb, b)| {
            let ord = match (ka, kb) {
                (Key::Score(x), Key::Score(y)) => x
                    .partial_cmp(y)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then_with(|| a.cmp(b)),
                (Key::Text(None), Key::Text(None)) if by.is_none() => a.cmp(b),
                (Key::Text(x), Key::Text(y)) => x.cmp(y),
                _ => std::cmp::Ordering::Equal,
            };
            if spec.desc {
                ord.reverse()
            } else {
                ord
            }
        });
        items = keyed.into_iter().map(|(_, item)| item).collect();
    }
    if end < start {
        return Ok(Vec::new());
    }
    let chosen = &items[start as usize..=end as usize];
    Ok(if spec.gets.is_empty() {
        chosen.iter().map(|e| Some(e.clone())).collect()
    } else {
        chosen
            .iter()
            .flat_map(|e| spec.gets.iter().map(move |g| (e, g)))
            .map(|(e, g)| by_pattern(g, e, lookup))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_slots_follow_redis() {
        assert_eq!(pattern_slot(b"{a}w_*"), Some(key_slot(b"a")));
        assert_eq!(pattern_slot(b"w_*"), None);
        assert_eq!(pattern_slot(b"*{a}"), None);
        assert_eq!(pattern_slot(b"{a*}x"), None);
        assert_eq!(pattern_slot(b"{}x{a}*"), None);
        assert_eq!(pattern_slot(b"plain"), Some(key_slot(b"plain")));
    }

    #[test]
    fn scores_parse_like_strtod() {
        assert_eq!(sort_score(b""), Some(0.0));
        assert_eq!(sort_score(b" 1.5"), Some(1.5));
        assert_eq!(sort_score(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(sort_score(b"1 "), None);
        assert_eq!(sort_score(b"nan"), None);
        assert_eq!(sort_score(b"1e400"), None);
        assert_eq!(sort_score(b"abc"), None);
    }
}
