//! Set commands (`SADD` ... `SSCAN`).

use bytes::Bytes;
use shoal_protocol::{CommandId, Frame};

use super::{
    bulk, non_negative, positive_count, rand_args, random_indexes, scan_args, Reader, ScanArgs,
    Writer,
};
use crate::commands::Ctx;
use crate::error::{CommandError, CommandResult};
use crate::numbers::parse_i64;
use crate::store::keyspace::SlotsMut;
use crate::store::value::{Elem, Set, Value};
use crate::store::{UnixMillis, WriteOp};

pub fn write(w: &mut Writer<'_, '_>, id: CommandId, args: &[Bytes]) -> CommandResult {
    use CommandId::*;
    let key = &args[1];
    match id {
        Sadd => {
            let s = w.set_mut(key, true)?.expect("created");
            Ok(Frame::Integer(
                args[2..].iter().filter(|m| s.insert(m)).count() as i64,
            ))
        }
        Srem => {
            let Some(s) = w.set_mut(key, false)? else {
                return Ok(Frame::Integer(0));
            };
            Ok(Frame::Integer(
                args[2..].iter().filter(|m| s.remove(m)).count() as i64,
            ))
        }
        Smove => {
            let (src, dst, member) = (&args[1], &args[2], &args[3]);
            if w.set_mut(src, false)?.is_none() {
                return Ok(Frame::Integer(0));
            }
            w.set_mut(dst, false)?;
            if src == dst {
                let s = w.set_mut(src, false)?.expect("checked");
                return Ok(Frame::Integer(s.contains(member) as i64));
            }
            if !w.set_mut(src, false)?.expect("checked").remove(member) {
                return Ok(Frame::Integer(0));
            }
            w.set_mut(dst, true)?.expect("created").insert(member);
            Ok(Frame::Integer(1))
        }
        Sinterstore | Sunionstore | Sdiffstore => {
            let sources = &args[2..];
            let mut sets = Vec::with_capacity(sources.len());
            for k in sources {
                sets.push(w.set_mut(k, false)?.map(|s| s.clone()));
            }
            let result = combine(id, sets.iter().map(Option::as_ref));
            let len = result.len();
            w.store(
                key,
                Value::Set(crate::store::value::Set::from_members(
                    result.iter().map(|m| &m[..]),
                )),
            );
            Ok(Frame::Integer(len as i64))
        }
        _ => Err(CommandError::Syntax),
    }
}

/// Intersection, union or difference of `sets` (a missing key is an empty set), in the first
/// set's order for intersection and difference.
fn combine<'a>(id: CommandId, sets: impl Iterator<Item = Option<&'a Set>>) -> Vec<Elem> {
    let sets: Vec<Option<&Set>> = sets.collect();
    match id {
        CommandId::Sinter | CommandId::Sinterstore | CommandId::Sintercard => {
            if sets.iter().any(Option::is_none) {
                return Vec::new();
            }
            let mut by_size: Vec<&Set> = sets.into_iter().flatten().collect();
            by_size.sort_by_key(|s| s.len());
            let (first, rest) = by_size.split_first().expect("at least one key");
            first
                .members()
                .filter(|m| rest.iter().all(|s| s.contains(m)))
                .collect()
        }
        CommandId::Sunion | CommandId::Sunionstore => {
            let mut seen = std::collections::HashSet::new();
            sets.into_iter()
                .flatten()
                .flat_map(|s| s.members())
                .filter(|m| seen.insert(m.clone()))
                .collect()
        }
        _ => {
            let Some(Some(first)) = sets.first() else {
                return Vec::new();
            };
            first
                .members()
                .filter(|m| sets[1..].iter().flatten().all(|s| !s.contains(m)))
                .collect()
        }
    }
}

pub fn read(r: &Reader<'_>, id: CommandId, args: &[Bytes]) -> CommandResult {
    use CommandId::*;
    let set_reply = |members: Vec<Elem>| Frame::Set(members.iter().map(|m| bulk(m)).collect());
    match id {
        Smembers => Ok(set_reply(
            r.set(&args[1])?
                .map_or_else(Vec::new, |s| s.members().collect()),
        )),
        Sismember => Ok(Frame::Integer(
            r.set(&args[1])?.is_some_and(|s| s.contains(&args[2])) as i64,
        )),
        Smismember => {
            let s = r.set(&args[1])?;
            Ok(Frame::Array(
                args[2..]
                    .iter()
                    .map(|m| Frame::Integer(s.is_some_and(|s| s.contains(m)) as i64))
                    .collect(),
            ))
        }
        Scard => Ok(Frame::Integer(
            r.set(&args[1])?.map_or(0, |s| s.len()) as i64
        )),
        Sinter | Sunion | Sdiff => {
            let mut sets = Vec::new();
            for k in &args[1..] {
                sets.push(r.set(k)?);
            }
            Ok(set_reply(combine(id, sets.into_iter())))
        }
        Sintercard => {
            let n = parse_i64(&args[1]).unwrap_or(0) as usize;
            let limit = match &args[2 + n..] {
                [] => 0,
                [opt, l] if opt.eq_ignore_ascii_case(b"limit") => {
                    non_negative(l, "LIMIT can't be negative")?
                }
                _ => return Err(CommandError::Syntax),
            };
            let mut sets = Vec::new();
            for k in &args[2..2 + n] {
                sets.push(r.set(k)?);
            }
            let card = combine(id, sets.into_iter()).len();
            Ok(Frame::Integer(
                if limit > 0 { card.min(limit) } else { card } as i64,
            ))
        }
        Sscan => {
            let (scan, set) = scan_args(args, || r.set(&args[1]))?;
            Ok(match set {
                Some(crate::store::value::Set::Table(t)) => {
                    scan.step(t.len(), t.iter().map(|m| (&m[..], ())), |m, (), out| {
                        out.push(bulk(m))
                    })
                }
                s => ScanArgs::reply(s.map_or_else(Vec::new, |s| {
                    s.members()
                        .filter(|m| scan.matches(m))
                        .map(|m| bulk(&m))
                        .collect()
                })),
            })
        }
        Srandmember => {
            let (count, _) = rand_args(args, None)?;
            let members: Vec<Elem> = r
                .set(&args[1])?
                .map_or_else(Vec::new, |s| s.members().collect());
            match count {
                None => Ok(match random_indexes(members.len(), 1).first() {
                    Some(&i) => bulk(&members[i]),
                    None => Frame::Null,
                }),
                Some(count) => {
                    let chosen = random_indexes(members.len(), count)
                        .into_iter()
                        .map(|i| bulk(&members[i]));
                    Ok(if count >= 0 {
                        Frame::Set(chosen.collect())
                    } else {
                        Frame::Array(chosen.collect())
                    })
                }
            }
        }
        _ => Err(CommandError::Syntax),
    }
}

/// `SPOP key [count]`: the leader picks the members, the log entry removes exactly those.
/// `SPOP key [count]`'s count, checked as Redis checks it.
fn spop_count(args: &[Bytes]) -> Result<Option<usize>, CommandError> {
    if args.len() > 3 {
        return Err(CommandError::Syntax);
    }
    args.get(2).map(|c| positive_count(c)).transpose()
}

pub fn spop(ctx: &mut Ctx<'_>) -> CommandResult {
    let args = ctx.args;
    let count = spop_count(args)?;
    let key = args[1].clone();
    let members: Vec<Elem> = {
        let r = Reader {
            slots: ctx.read_keys(std::slice::from_ref(&key)),
            now: ctx.now_ms,
        };
        r.set(&key)?
            .map_or_else(Vec::new, |s| s.members().collect())
    };
    let chosen = random_indexes(members.len(), count.unwrap_or(1) as i64);
    if chosen.is_empty() {
        return Ok(if count.is_some() {
            Frame::Set(Vec::new())
        } else {
            Frame::Null
        });
    }
    ctx.propose(WriteOp::PopMembers {
        key,
        members: chosen
            .into_iter()
            .map(|i| Bytes::from(Vec::from(members[i].clone())))
            .collect(),
        single: count.is_none(),
    })
}

/// `SPOP` inside a transaction: chosen by `apply`, against the set as the transaction's
/// earlier steps leave it ([`WriteOp::PopSeeded`]).
pub fn spop_in_transaction(args: &[Bytes]) -> Result<WriteOp, CommandError> {
    Ok(WriteOp::PopSeeded {
        key: args[1].clone(),
        count: spop_count(args)?.map(|c| c as u64),
        seed: rand::random(),
    })
}

/// Applies [`WriteOp::PopSeeded`]: pops the `count` members (one if `None`) with the smallest
/// SipHash keyed by `seed`, so every replica pops the same ones.
pub fn pop_seeded(
    s: &mut SlotsMut<'_>,
    key: &[u8],
    count: Option<u64>,
    seed: u64,
    now: UnixMillis,
) -> CommandResult {
    let want = count.unwrap_or(1) as usize;
    let mut ranked: Vec<(u64, Bytes)> = match s.get(key, now).and_then(|e| e.collection()) {
        Some(Value::Set(set)) => {
            let hasher = siphasher::sip::SipHasher13::new_with_keys(seed, !seed);
            set.members()
                .map(|m| {
                    let m: &[u8] = &m;
                    (hasher.hash(m), Bytes::copy_from_slice(m))
                })
                .collect()
        }
        // Absent or of another type: `pop_members` gives the reply or the error.
        _ => Vec::new(),
    };
    if want < ranked.len() {
        ranked.select_nth_unstable(want);
        ranked.truncate(want);
    }
    let members: Vec<Bytes> = ranked.into_iter().map(|(_, m)| m).collect();
    pop_members(s, key, &members, count.is_none(), now)
}

/// Applies `SPOP`'s choice: removes the chosen members still present.
pub fn pop_members(
    s: &mut SlotsMut<'_>,
    key: &[u8],
    members: &[Bytes],
    single: bool,
    now: UnixMillis,
) -> CommandResult {
    let mut w = Writer { s, now };
    let Some(set) = w.set_mut(key, false)? else {
        return Ok(if single {
            Frame::Null
        } else {
            Frame::Set(Vec::new())
        });
    };
    let popped: Vec<Frame> = members
        .iter()
        .filter(|m| set.remove(m))
        .map(|m| Frame::Bulk(m.clone()))
        .collect();
    if set.is_empty() {
        w.s.remove(key);
    }
    Ok(if single {
        popped.into_iter().next().unwrap_or(Frame::Null)
    } else {
        Frame::Set(popped)
    })
}
