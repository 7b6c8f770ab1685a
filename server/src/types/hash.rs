//! Hash commands (`HSET` ... `HSCAN`).

use bytes::Bytes;
use shoal_protocol::{CommandId, Frame};

use super::{bulk, rand_args, random_indexes, scan_args, Reader, ScanArgs, Writer};
use crate::error::{CommandError, CommandResult};
use crate::long_double::LongDouble;
use crate::numbers::parse_i64;
use crate::store::value::Hash;

pub fn write(w: &mut Writer<'_, '_>, id: CommandId, args: &[Bytes]) -> CommandResult {
    let key = &args[1];
    match id {
        CommandId::Hset | CommandId::Hmset => {
            if !args.len().is_multiple_of(2) {
                return Err(CommandError::WrongArity(
                    if id == CommandId::Hset {
                        "hset"
                    } else {
                        "hmset"
                    }
                    .into(),
                ));
            }
            let h = w.hash_mut(key, true)?.expect("created");
            let added = args[2..]
                .chunks(2)
                .filter(|fv| h.insert(&fv[0], &fv[1]))
                .count();
            Ok(if id == CommandId::Hset {
                Frame::Integer(added as i64)
            } else {
                Frame::ok()
            })
        }
        CommandId::Hsetnx => {
            let h = w.hash_mut(key, true)?.expect("created");
            if h.get(&args[2]).is_some() {
                return Ok(Frame::Integer(0));
            }
            h.insert(&args[2], &args[3]);
            Ok(Frame::Integer(1))
        }
        CommandId::Hdel => {
            let Some(h) = w.hash_mut(key, false)? else {
                return Ok(Frame::Integer(0));
            };
            Ok(Frame::Integer(
                args[2..].iter().filter(|f| h.remove(f)).count() as i64,
            ))
        }
        CommandId::Hincrby => {
            let delta = parse_i64(&args[3]).ok_or(CommandError::NotInteger)?;
            let h = w.hash_mut(key, true)?.expect("created");
            let current = match h.get(&args[2]) {
                Some(v) => parse_i64(v)
                    .ok_or_else(|| CommandError::Err("hash value is not an integer".into()))?,
                None => 0,
            };
            let next = current.checked_add(delta).ok_or(CommandError::Overflow)?;
            h.insert(&args[2], itoa::Buffer::new().format(next).as_bytes());
            Ok(Frame::Integer(next))
        }
        CommandId::Hincrbyfloat => {
            // In C long double, as Redis computes it (`crate::long_double`).
            let delta = LongDouble::parse(&args[3]).ok_or(CommandError::NotFloat)?;
            // Redis refuses an infinite increment before it looks at the key.
            if !delta.is_finite() {
                return Err(CommandError::Err("value is NaN or Infinity".into()));
            }
            let h = w.hash_mut(key, true)?.expect("created");
            let current = match h.get(&args[2]) {
                Some(v) => LongDouble::parse(v)
                    .ok_or_else(|| CommandError::Err("hash value is not a float".into()))?,
                None => LongDouble::from_i64(0),
            };
            let text = current
                .add_format(&delta)
                .ok_or(CommandError::NanOrInfinity)?;
            h.insert(&args[2], text.as_bytes());
            Ok(Frame::bulk(text))
        }
        _ => Err(CommandError::Syntax),
    }
}

pub fn read(r: &Reader<'_>, id: CommandId, args: &[Bytes]) -> CommandResult {
    match id {
        CommandId::Hscan => return hscan(r, args),
        CommandId::Hrandfield => return hrandfield(r, args),
        _ => {}
    }
    let h = r.hash(&args[1])?;
    let field = |i: usize| h.and_then(|h| h.get(&args[i]));
    Ok(match id {
        CommandId::Hget => Frame::bulk_or_null(field(2).map(Bytes::copy_from_slice)),
        CommandId::Hmget => Frame::Array(
            (2..args.len())
                .map(|i| Frame::bulk_or_null(field(i).map(Bytes::copy_from_slice)))
                .collect(),
        ),
        CommandId::Hlen => Frame::Integer(h.map_or(0, |h| h.len()) as i64),
        CommandId::Hstrlen => Frame::Integer(field(2).map_or(0, |v| v.len()) as i64),
        CommandId::Hexists => Frame::Integer(field(2).is_some() as i64),
        CommandId::Hkeys => {
            Frame::Array(h.map_or_else(Vec::new, |h| h.iter().map(|(f, _)| bulk(f)).collect()))
        }
        CommandId::Hvals => {
            Frame::Array(h.map_or_else(Vec::new, |h| h.iter().map(|(_, v)| bulk(v)).collect()))
        }
        CommandId::Hgetall => Frame::Map(h.map_or_else(Vec::new, |h| {
            h.iter().map(|(f, v)| (bulk(f), bulk(v))).collect()
        })),
        _ => return Err(CommandError::Syntax),
    })
}

/// `HSCAN key cursor [MATCH pattern] [COUNT n]`.
fn hscan(r: &Reader<'_>, args: &[Bytes]) -> CommandResult {
    let (scan, h) = scan_args(args, || r.hash(&args[1]))?;
    Ok(match h {
        Some(Hash::Table(m)) => scan.step(
            m.len(),
            m.iter().map(|(f, v)| (&f[..], &v[..])),
            |f, v, out| out.extend([bulk(f), bulk(v)]),
        ),
        _ => {
            let mut items = Vec::new();
            for (f, v) in h.iter().flat_map(|h| h.iter()) {
                if scan.matches(f) {
                    items.extend([bulk(f), bulk(v)]);
                }
            }
            ScanArgs::reply(items)
        }
    })
}

/// `HRANDFIELD key [count [WITHVALUES]]`.
fn hrandfield(r: &Reader<'_>, args: &[Bytes]) -> CommandResult {
    let (count, withvalues) = rand_args(args, Some("withvalues"))?;
    let h = r.hash(&args[1])?;
    let all: Vec<(&[u8], &[u8])> = h.map_or_else(Vec::new, |h| h.iter().collect());
    let Some(count) = count else {
        let i = random_indexes(all.len(), 1);
        return Ok(Frame::bulk_or_null(
            i.first().map(|&i| Bytes::copy_from_slice(all[i].0)),
        ));
    };
    let chosen = random_indexes(all.len(), count);
    if withvalues {
        let items = chosen
            .iter()
            .map(|&i| (bulk(all[i].0), bulk(all[i].1)))
            .collect();
        return Ok(Frame::Pairs(items));
    }
    Ok(Frame::Array(
        chosen.iter().map(|&i| bulk(all[i].0)).collect(),
    ))
}
