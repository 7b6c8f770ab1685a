//! List commands (`LPUSH` ... `LMPOP`; the blocking ones pop through these: `crate::blocking`).

use bytes::Bytes;
use shoal_protocol::{CommandId, Frame};

use super::{bulk, index_range, non_negative, positive_count, Reader, Writer};
use crate::commands::args::int;
use crate::error::{CommandError, CommandResult};
use crate::numbers::parse_i64;
use crate::store::value::{Elem, List};

/// `LEFT` (true) or `RIGHT` (false).
fn side(arg: &[u8]) -> Result<bool, CommandError> {
    if arg.eq_ignore_ascii_case(b"left") {
        Ok(true)
    } else if arg.eq_ignore_ascii_case(b"right") {
        Ok(false)
    } else {
        Err(CommandError::Syntax)
    }
}

fn pop(l: &mut List, left: bool) -> Option<Elem> {
    if left {
        l.pop_front()
    } else {
        l.pop_back()
    }
}

pub fn write(w: &mut Writer<'_, '_>, id: CommandId, args: &[Bytes]) -> CommandResult {
    use CommandId::*;
    let key = &args[1];
    match id {
        Lpush | Rpush | Lpushx | Rpushx => {
            let create = matches!(id, Lpush | Rpush);
            let Some(l) = w.list_mut(key, create)? else {
                return Ok(Frame::Integer(0));
            };
            for e in &args[2..] {
                if matches!(id, Lpush | Lpushx) {
                    l.push_front(e);
                } else {
                    l.push_back(e);
                }
            }
            Ok(Frame::Integer(l.len() as i64))
        }
        Lpop | Rpop => {
            if args.len() > 3 {
                return Err(CommandError::WrongArity(
                    if id == Lpop { "lpop" } else { "rpop" }.into(),
                ));
            }
            let count = args.get(2).map(|c| positive_count(c)).transpose()?;
            let Some(l) = w.list_mut(key, false)? else {
                return Ok(if count.is_some() {
                    Frame::NullArray
                } else {
                    Frame::Null
                });
            };
            let left = id == Lpop;
            Ok(match count {
                None => Frame::bulk_or_null(pop(l, left).map(|e| Bytes::from(Vec::from(e)))),
                Some(n) => Frame::Array(
                    (0..n)
                        .map_while(|_| pop(l, left))
                        .map(|e| bulk(&e))
                        .collect(),
                ),
            })
        }
        Lset => {
            // Redis looks the key up (and checks its type) before it reads the index.
            if w.list(key)?.is_none() {
                return Err(CommandError::NoSuchKey);
            }
            let index = int(&args[2])?;
            let l = w.list_mut(key, false)?.expect("looked up above");
            let len = l.len() as i64;
            let i = if index < 0 { len + index } else { index };
            if i < 0 || i >= len {
                return Err(CommandError::Err("index out of range".into()));
            }
            l.set(i as usize, &args[3]);
            Ok(Frame::ok())
        }
        Linsert => {
            let before = if args[2].eq_ignore_ascii_case(b"before") {
                true
            } else if args[2].eq_ignore_ascii_case(b"after") {
                false
            } else {
                return Err(CommandError::Syntax);
            };
            let Some(l) = w.list_mut(key, false)? else {
                return Ok(Frame::Integer(0));
            };
            let Some(at) = l.iter().position(|e| e == &args[3][..]) else {
                return Ok(Frame::Integer(-1));
            };
            l.insert(if before { at } else { at + 1 }, &args[4]);
            Ok(Frame::Integer(l.len() as i64))
        }
        Lrem => {
            let count = int(&args[2])?;
            let Some(l) = w.list_mut(key, false)? else {
                return Ok(Frame::Integer(0));
            };
            let limit = if count == 0 {
                usize::MAX
            } else {
                count.unsigned_abs() as usize
            };
            let removed = l.remove_matching(&args[3], limit, count < 0);
            Ok(Frame::Integer(removed as i64))
        }
        Ltrim => {
            let (start, stop) = (int(&args[2])?, int(&args[3])?);
            let Some(l) = w.list_mut(key, false)? else {
                return Ok(Frame::ok());
            };
            match index_range(start, stop, l.len()) {
                Some((from, to)) => l.retain_range(from, to),
                None => l.clear(),
            }
            Ok(Frame::ok())
        }
        Lmove | Rpoplpush => {
            let (from_left, to_left) = if id == Rpoplpush {
                (false, true)
            } else {
                (side(&args[3])?, side(&args[4])?)
            };
            lmove(w, &args[1], &args[2], from_left, to_left)
        }
        Lmpop => lmpop(w, args),
        _ => Err(CommandError::Syntax),
    }
}

fn lmove(
    w: &mut Writer<'_, '_>,
    src: &[u8],
    dst: &[u8],
    from_left: bool,
    to_left: bool,
) -> CommandResult {
    if w.list_mut(src, false)?.is_none() {
        return Ok(Frame::Null);
    }
    // The destination's type is checked before anything moves.
    w.list_mut(dst, false)?;
    let e = pop(w.list_mut(src, false)?.expect("checked"), from_left).expect("non-empty");
    let d = w.list_mut(dst, true)?.expect("created");
    let reply = bulk(&e);
    if to_left {
        d.push_front(&e);
    } else {
        d.push_back(&e);
    }
    Ok(reply)
}

/// `LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]`.
fn lmpop(w: &mut Writer<'_, '_>, args: &[Bytes]) -> CommandResult {
    let n = parse_i64(&args[1]).unwrap_or(0) as usize;
    let keys = &args[2..2 + n];
    let rest = &args[2 + n..];
    let Some(where_) = rest.first() else {
        return Err(CommandError::Syntax);
    };
    let left = side(where_)?;
    let count = match &rest[1..] {
        [] => 1,
        [opt, c] if opt.eq_ignore_ascii_case(b"count") => match parse_i64(c) {
            Some(c) if c > 0 => c as usize,
            _ => return Err(CommandError::Err("count should be greater than 0".into())),
        },
        _ => return Err(CommandError::Syntax),
    };
    for key in keys {
        if let Some(l) = w.list_mut(key, false)? {
            let items = (0..count)
                .map_while(|_| pop(l, left))
                .map(|e| bulk(&e))
                .collect();
            return Ok(Frame::Array(vec![
                Frame::Bulk(key.clone()),
                Frame::Array(items),
            ]));
        }
    }
    Ok(Frame::NullArray)
}

pub fn read(r: &Reader<'_>, id: CommandId, args: &[Bytes]) -> CommandResult {
    use CommandId::*;
    match id {
        Llen => Ok(Frame::Integer(
            r.list(&args[1])?.map_or(0, |l| l.len()) as i64
        )),
        Lrange => {
            let (start, stop) = (int(&args[2])?, int(&args[3])?);
            let Some(l) = r.list(&args[1])? else {
                return Ok(Frame::Array(Vec::new()));
            };
            Ok(Frame::Array(match index_range(start, stop, l.len()) {
                Some((from, to)) => l.iter_from(from).take(to - from).map(bulk).collect(),
                None => Vec::new(),
            }))
        }
        Lindex => {
            // Redis looks the key up first: a missing key is nil whatever the index.
            let Some(l) = r.list(&args[1])? else {
                return Ok(Frame::Null);
            };
            let index = int(&args[2])?;
            let i = if index < 0 {
                l.len() as i64 + index
            } else {
                index
            };
            Ok(match usize::try_from(i).ok().and_then(|i| l.get(i)) {
                Some(e) => bulk(e),
                None => Frame::Null,
            })
        }
        Lpos => lpos(r, args),
        _ => Err(CommandError::Syntax),
    }
}

/// `LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]`.
fn lpos(r: &Reader<'_>, args: &[Bytes]) -> CommandResult {
    let (mut rank, mut count, mut maxlen) = (1i64, None, 0usize);
    let mut i = 3;
    while i < args.len() {
        let value = args.get(i + 1).ok_or(CommandError::Syntax)?;
        let opt = &args[i];
        if opt.eq_ignore_ascii_case(b"rank") {
            rank = int(value)?;
            if rank == 0 {
                return Err(CommandError::Err("RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list".into()));
            }
            // Redis 7.0 negates a negative rank in a C long: LONG_MIN stays negative and every
            // match counts, so it acts as -1.
            if rank == i64::MIN {
                rank = -1;
            }
        } else if opt.eq_ignore_ascii_case(b"count") {
            count = Some(non_negative(value, "COUNT can't be negative")?);
        } else if opt.eq_ignore_ascii_case(b"maxlen") {
            maxlen = non_negative(value, "MAXLEN can't be negative")?;
        } else {
            return Err(CommandError::Syntax);
        }
        i += 2;
    }
    let Some(l) = r.list(&args[1])? else {
        return Ok(if count.is_some() {
            Frame::Array(Vec::new())
        } else {
            Frame::Null
        });
    };
    let target = &args[2][..];
    let limit = if maxlen == 0 {
        l.len()
    } else {
        maxlen.min(l.len())
    };
    let want = match count {
        Some(0) => usize::MAX,
        Some(n) => n,
        None => 1,
    };
    let mut skip = rank.unsigned_abs() as usize - 1;
    let mut found = Vec::new();
    // One pass over the elements (indexing a chunked list per element would cost a walk each).
    let n = l.len();
    let matches: Box<dyn Iterator<Item = usize>> = if rank > 0 {
        Box::new(
            l.iter()
                .take(limit)
                .enumerate()
                .filter(|(_, e)| *e == target)
                .map(|(i, _)| i),
        )
    } else {
        Box::new(
            l.iter()
                .rev()
                .take(limit)
                .enumerate()
                .filter(|(_, e)| *e == target)
                .map(move |(k, _)| n - 1 - k),
        )
    };
    for i in matches {
        if skip > 0 {
            skip -= 1;
            continue;
        }
        found.push(Frame::Integer(i as i64));
        if found.len() >= want {
            break;
        }
    }
    Ok(match count {
        Some(_) => Frame::Array(found),
        None => found.pop().unwrap_or(Frame::Null),
    })
}
