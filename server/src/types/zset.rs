//! Sorted set commands (`ZADD` ... `ZSCAN`; `BZPOPMIN`/`BZPOPMAX` are not served yet).

use std::collections::HashMap;

use bytes::Bytes;
use shoal_protocol::{format_reply_double, CommandId, Frame};

use super::{
    bulk, index_range, positive_count, rand_args, random_indexes, scan_args, Reader, ScanArgs,
    Writer,
};
use crate::commands::args::int;
use crate::error::{CommandError, CommandResult};
use crate::numbers::{parse_f64, parse_i64};
use crate::store::value::{Elem, Set, Value, ZSet};

fn float(arg: &[u8]) -> Result<f64, CommandError> {
    parse_f64(arg).ok_or(CommandError::NotFloat)
}

fn not_a_number() -> CommandError {
    CommandError::Err("resulting score is not a number (NaN)".into())
}

fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

// ------------------------------------------------------------------ ranges

/// A score bound: the value and whether it is exclusive (`(1.5`).
#[derive(Clone, Copy)]
struct ScoreBound(f64, bool);

impl ScoreBound {
    fn parse(arg: &[u8]) -> Result<ScoreBound, CommandError> {
        let bad = || CommandError::Err("min or max is not a float".into());
        let (text, exclusive) = match arg.strip_prefix(b"(") {
            Some(rest) => (rest, true),
            None => (arg, false),
        };
        let v = parse_f64(text).ok_or_else(bad)?;
        Ok(ScoreBound(v, exclusive))
    }

    fn above_min(self, s: f64) -> bool {
        if self.1 {
            s > self.0
        } else {
            s >= self.0
        }
    }

    fn below_max(self, s: f64) -> bool {
        if self.1 {
            s < self.0
        } else {
            s <= self.0
        }
    }
}

/// A lex bound: `-`, `+`, `[x` (inclusive) or `(x` (exclusive).
#[derive(Clone)]
enum LexBound {
    Min,
    Max,
    Value(Vec<u8>, bool),
}

impl LexBound {
    fn parse(arg: &[u8]) -> Result<LexBound, CommandError> {
        match arg {
            b"-" => Ok(LexBound::Min),
            b"+" => Ok(LexBound::Max),
            [b'[', rest @ ..] => Ok(LexBound::Value(rest.to_vec(), false)),
            [b'(', rest @ ..] => Ok(LexBound::Value(rest.to_vec(), true)),
            _ => Err(CommandError::Err(
                "min or max not valid string range item".into(),
            )),
        }
    }

    fn above_min(&self, m: &[u8]) -> bool {
        match self {
            LexBound::Min => true,
            LexBound::Max => false,
            LexBound::Value(v, ex) => {
                if *ex {
                    m > &v[..]
                } else {
                    m >= &v[..]
                }
            }
        }
    }

    fn below_max(&self, m: &[u8]) -> bool {
        match self {
            LexBound::Min => false,
            LexBound::Max => true,
            LexBound::Value(v, ex) => {
                if *ex {
                    m < &v[..]
                } else {
                    m <= &v[..]
                }
            }
        }
    }
}

enum By {
    Rank(i64, i64),
    Score(ScoreBound, ScoreBound),
    Lex(LexBound, LexBound),
}

/// What a `ZRANGE`-family command selects.
struct Range {
    by: By,
    rev: bool,
    /// `LIMIT offset count` (count < 0: no limit).
    limit: Option<(i64, i64)>,
    withscores: bool,
}

impl Range {
    /// Parses `min max` (as given: for REV, the first is the max) into a range.
    fn bounds(by: &str, a: &[u8], b: &[u8], rev: bool) -> Result<By, CommandError> {
        Ok(match by {
            "rank" => By::Rank(int(a)?, int(b)?),
            "score" => {
                let (min, max) = if rev { (b, a) } else { (a, b) };
                By::Score(ScoreBound::parse(min)?, ScoreBound::parse(max)?)
            }
            _ => {
                let (min, max) = if rev { (b, a) } else { (a, b) };
                By::Lex(LexBound::parse(min)?, LexBound::parse(max)?)
            }
        })
    }

    /// `ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]`
    /// (`opts` after `start stop`); `store` for ZRANGESTORE (no WITHSCORES).
    fn parse_zrange(
        start: &[u8],
        stop: &[u8],
        opts: &[Bytes],
        store: bool,
    ) -> Result<Range, CommandError> {
        let (mut by, mut rev, mut limit, mut withscores) = ("rank", false, None, false);
        let mut i = 0;
        while i < opts.len() {
            let o = &opts[i];
            if is(o, "byscore") {
                by = "score";
            } else if is(o, "bylex") {
                by = "lex";
            } else if is(o, "rev") {
                rev = true;
            } else if is(o, "withscores") && !store {
                withscores = true;
            } else if is(o, "limit") && i + 2 < opts.len() {
                limit = Some((int(&opts[i + 1])?, int(&opts[i + 2])?));
                i += 2;
            } else {
                return Err(CommandError::Syntax);
            }
            i += 1;
        }
        if limit.is_some() && by == "rank" {
            return Err(CommandError::Err(
                "syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
                    .into(),
            ));
        }
        if withscores && by == "lex" {
            return Err(CommandError::Err(
                "syntax error, WITHSCORES not supported in combination with BYLEX".into(),
            ));
        }
        Ok(Range {
            by: Range::bounds(by, start, stop, rev)?,
            rev,
            limit,
            withscores,
        })
    }

    /// The legacy forms: `ZREVRANGE`, `Z[REV]RANGEBYSCORE`, `Z[REV]RANGEBYLEX`.
    fn parse_legacy(id: CommandId, args: &[Bytes]) -> Result<Range, CommandError> {
        use CommandId::*;
        let (by, rev) = match id {
            Zrevrange => ("rank", true),
            Zrangebyscore => ("score", false),
            Zrevrangebyscore => ("score", true),
            Zrangebylex => ("lex", false),
            _ => ("lex", true),
        };
        let (mut limit, mut withscores) = (None, false);
        let opts = &args[4..];
        let mut i = 0;
        while i < opts.len() {
            if is(&opts[i], "withscores") && by != "lex" {
                withscores = true;
            } else if is(&opts[i], "limit") && by != "rank" && i + 2 < opts.len() {
                limit = Some((int(&opts[i + 1])?, int(&opts[i + 2])?));
                i += 2;
            } else {
                return Err(CommandError::Syntax);
            }
            i += 1;
        }
        Ok(Range {
            by: Range::bounds(by, &args[2], &args[3], rev)?,
            rev,
            limit,
            withscores,
        })
    }

    /// The selected members, in reply order.
    fn select<'z>(&self, z: &'z ZSet) -> Vec<(f64, &'z [u8])> {
        let all: Vec<(f64, &[u8])> = if self.rev {
            z.iter().rev().collect()
        } else {
            z.iter().collect()
        };
        let picked: Vec<(f64, &[u8])> = match &self.by {
            By::Rank(start, stop) => match index_range(*start, *stop, all.len()) {
                Some((from, to)) => all[from..to].to_vec(),
                None => Vec::new(),
            },
            By::Score(min, max) => all
                .into_iter()
                .filter(|(s, _)| min.above_min(*s) && max.below_max(*s))
                .collect(),
            // Redis walks from the first member past the start bound while members stay within
            // the end bound (lex ranges assume equal scores; this keeps its answer otherwise).
            By::Lex(min, max) if !self.rev => all
                .into_iter()
                .skip_while(|(_, m)| !min.above_min(m))
                .take_while(|(_, m)| max.below_max(m))
                .collect(),
            By::Lex(min, max) => all
                .into_iter()
                .skip_while(|(_, m)| !max.below_max(m))
                .take_while(|(_, m)| min.above_min(m))
                .collect(),
        };
        match self.limit {
            None => picked,
            Some((offset, _)) if offset < 0 => Vec::new(),
            Some((offset, count)) => {
                let it = picked.into_iter().skip(offset as usize);
                if count < 0 {
                    it.collect()
                } else {
                    it.take(count as usize).collect()
                }
            }
        }
    }
}

fn members_reply(items: &[(f64, &[u8])], withscores: bool) -> Frame {
    if withscores {
        Frame::Pairs(
            items
                .iter()
                .map(|(s, m)| (bulk(m), Frame::Double(*s)))
                .collect(),
        )
    } else {
        Frame::Array(items.iter().map(|(_, m)| bulk(m)).collect())
    }
}

// ------------------------------------------------------------------ writes

pub fn write(w: &mut Writer<'_, '_>, id: CommandId, args: &[Bytes]) -> CommandResult {
    use CommandId::*;
    let key = &args[1];
    match id {
        Zadd => zadd(w, args),
        Zincrby => {
            let delta = float(&args[2])?;
            let z = w.zset_mut(key, true)?.expect("created");
            let next = z.score(&args[3]).unwrap_or(0.0) + delta;
            if next.is_nan() {
                return Err(not_a_number());
            }
            z.insert(next, &args[3]);
            Ok(Frame::Double(next))
        }
        Zrem => {
            let Some(z) = w.zset_mut(key, false)? else {
                return Ok(Frame::Integer(0));
            };
            Ok(Frame::Integer(
                args[2..].iter().filter(|m| z.remove(m)).count() as i64,
            ))
        }
        Zpopmin | Zpopmax => {
            if args.len() > 3 {
                return Err(CommandError::Syntax);
            }
            let count = args.get(2).map(|c| positive_count(c)).transpose()?;
            let Some(z) = w.zset_mut(key, false)? else {
                return Ok(Frame::Array(Vec::new()));
            };
            let mut popped = Vec::new();
            for _ in 0..count.unwrap_or(1) {
                let next = if id == Zpopmin {
                    z.iter().next()
                } else {
                    z.iter().next_back()
                };
                let Some((s, m)) = next.map(|(s, m)| (s, m.to_vec())) else {
                    break;
                };
                z.remove(&m);
                popped.push((bulk(&m), Frame::Double(s)));
            }
            // Without a count: one flat pair; with one: pairs (flattened for RESP2 by the
            // command layer).
            Ok(match count {
                None => Frame::Array(popped.into_iter().flat_map(|(m, s)| [m, s]).collect()),
                Some(_) => Frame::Pairs(popped),
            })
        }
        Zmpop => zmpop(w, args),
        Zremrangebyrank | Zremrangebyscore | Zremrangebylex => {
            let by = match id {
                Zremrangebyrank => "rank",
                Zremrangebyscore => "score",
                _ => "lex",
            };
            let range = Range {
                by: Range::bounds(by, &args[2], &args[3], false)?,
                rev: false,
                limit: None,
                withscores: false,
            };
            let Some(z) = w.zset_mut(key, false)? else {
                return Ok(Frame::Integer(0));
            };
            let doomed: Vec<Vec<u8>> = range
                .select(z)
                .into_iter()
                .map(|(_, m)| m.to_vec())
                .collect();
            for m in &doomed {
                z.remove(m);
            }
            Ok(Frame::Integer(doomed.len() as i64))
        }
        Zrangestore => {
            let range = Range::parse_zrange(&args[3], &args[4], &args[5..], true)?;
            let src = w.zset_mut(&args[2], false)?;
            let items: Vec<(f64, Elem)> = src.map_or_else(Vec::new, |z| {
                range
                    .select(z)
                    .into_iter()
                    .map(|(s, m)| (s, m.into()))
                    .collect()
            });
            let len = items.len();
            w.store(key, Value::ZSet(ZSet::from_items(items)));
            Ok(Frame::Integer(len as i64))
        }
        Zunionstore | Zinterstore | Zdiffstore => {
            let combined = combine(
                w_inputs(w, args, 2)?,
                id,
                &args[3 + numkeys(args, 2)..],
                false,
            )?;
            let len = combined.items.len();
            w.store(key, Value::ZSet(ZSet::from_items(combined.items)));
            Ok(Frame::Integer(len as i64))
        }
        _ => Err(CommandError::Syntax),
    }
}

/// `ZMPOP numkeys key [key ...] MIN|MAX [COUNT count]`: pops from the first non-empty sorted
/// set; `[key, [[member, score], ...]]`, or nil if all are empty.
fn zmpop(w: &mut Writer<'_, '_>, args: &[Bytes]) -> CommandResult {
    let keys = crate::blocking::mpop_keys(args, 1, ["min", "max"])?;
    let side_at = 2 + keys.len();
    let max = is(&args[side_at], "max");
    let count = args
        .get(side_at + 2)
        .and_then(|c| crate::numbers::parse_i64(c))
        .unwrap_or(1) as usize;
    for key in &keys {
        let Some(z) = w.zset_mut(key, false)? else {
            continue;
        };
        let mut popped = Vec::new();
        while popped.len() < count {
            let next = if max {
                z.iter().next_back()
            } else {
                z.iter().next()
            };
            let Some((s, m)) = next.map(|(s, m)| (s, m.to_vec())) else {
                break;
            };
            z.remove(&m);
            popped.push(Frame::Array(vec![bulk(&m), Frame::Double(s)]));
        }
        return Ok(Frame::Array(vec![
            Frame::Bulk(key.clone()),
            Frame::Array(popped),
        ]));
    }
    Ok(Frame::NullArray)
}

/// `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]`.
fn zadd(w: &mut Writer<'_, '_>, args: &[Bytes]) -> CommandResult {
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, false);
    let mut i = 2;
    while i < args.len() {
        let a = &args[i];
        match () {
            _ if is(a, "nx") => nx = true,
            _ if is(a, "xx") => xx = true,
            _ if is(a, "gt") => gt = true,
            _ if is(a, "lt") => lt = true,
            _ if is(a, "ch") => ch = true,
            _ if is(a, "incr") => incr = true,
            _ => break,
        }
        i += 1;
    }
    let rest = &args[i..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return Err(CommandError::Syntax);
    }
    if nx && xx {
        return Err(CommandError::Err(
            "XX and NX options at the same time are not compatible".into(),
        ));
    }
    if (gt && lt) || (nx && (gt || lt)) {
        return Err(CommandError::Err(
            "GT, LT, and/or NX options at the same time are not compatible".into(),
        ));
    }
    if incr && rest.len() > 2 {
        return Err(CommandError::Err(
            "INCR option supports a single increment-element pair".into(),
        ));
    }
    let mut scores = Vec::with_capacity(rest.len() / 2);
    for pair in rest.chunks(2) {
        scores.push(float(&pair[0])?);
    }
    let z = w.zset_mut(&args[1], !xx)?;
    let Some(z) = z else {
        return Ok(if incr { Frame::Null } else { Frame::Integer(0) });
    };
    let (mut added, mut changed) = (0, 0);
    let mut incr_result = None;
    for (pair, &score) in rest.chunks(2).zip(&scores) {
        let member = &pair[1];
        match z.score(member) {
            Some(current) => {
                if nx {
                    continue;
                }
                let next = if incr { current + score } else { score };
                if next.is_nan() {
                    return Err(not_a_number());
                }
                if (gt && next <= current) || (lt && next >= current) {
                    continue;
                }
                incr_result = Some(next);
                if next != current {
                    z.insert(next, member);
                    changed += 1;
                }
            }
            None => {
                if xx {
                    continue;
                }
                z.insert(score, member);
                incr_result = Some(score);
                added += 1;
            }
        }
    }
    Ok(if incr {
        incr_result.map_or(Frame::Null, Frame::Double)
    } else {
        Frame::Integer(if ch { added + changed } else { added })
    })
}

// ------------------------------------------------------------------ union / inter / diff

fn numkeys(args: &[Bytes], at: usize) -> usize {
    parse_i64(&args[at]).unwrap_or(0).max(0) as usize
}

/// One input of ZUNION & co: a sorted set, or a set (every member scores 1); `None` if absent.
type Input = Option<Vec<(f64, Elem)>>;

fn input_of(z: Option<&ZSet>, s: Option<&Set>) -> Input {
    if let Some(z) = z {
        return Some(z.iter().map(|(s, m)| (s, m.into())).collect());
    }
    s.map(|s| s.members().map(|m| (1.0, m)).collect())
}

fn w_inputs(w: &mut Writer<'_, '_>, args: &[Bytes], at: usize) -> Result<Vec<Input>, CommandError> {
    let n = numkeys(args, at);
    let mut inputs = Vec::with_capacity(n);
    for k in &args[at + 1..at + 1 + n] {
        let input = match w.zset_mut(k, false) {
            Ok(z) => input_of(z.map(|z| &*z), None),
            Err(_) => input_of(
                None,
                Some(w.set_mut(k, false)?.map(|s| &*s).expect("typed")),
            ),
        };
        inputs.push(input);
    }
    Ok(inputs)
}

fn r_inputs(r: &Reader<'_>, args: &[Bytes], at: usize) -> Result<Vec<Input>, CommandError> {
    let n = numkeys(args, at);
    let mut inputs = Vec::with_capacity(n);
    for k in &args[at + 1..at + 1 + n] {
        let input = match r.zset(k) {
            Ok(z) => input_of(z, None),
            Err(_) => input_of(None, Some(r.set(k)?.expect("typed"))),
        };
        inputs.push(input);
    }
    Ok(inputs)
}

struct Combined {
    items: Vec<(f64, Elem)>,
    withscores: bool,
}

/// Combines `inputs` by `id`, with the options after the keys (`WEIGHTS`, `AGGREGATE`,
/// `WITHSCORES` when `reply`). The items come out in (score, member) order.
fn combine(
    inputs: Vec<Input>,
    id: CommandId,
    opts: &[Bytes],
    reply: bool,
) -> Result<Combined, CommandError> {
    use CommandId::*;
    let diff = matches!(id, Zdiff | Zdiffstore);
    let mut weights = vec![1.0; inputs.len()];
    let mut aggregate = "sum";
    let mut withscores = false;
    let mut i = 0;
    while i < opts.len() {
        let o = &opts[i];
        if is(o, "weights") && !diff && opts.len() - i > inputs.len() {
            for (j, w) in weights.iter_mut().enumerate() {
                *w = parse_f64(&opts[i + 1 + j])
                    .ok_or_else(|| CommandError::Err("weight value is not a float".into()))?;
            }
            i += inputs.len();
        } else if is(o, "aggregate") && !diff && i + 1 < opts.len() {
            let a = &opts[i + 1];
            aggregate = if is(a, "sum") {
                "sum"
            } else if is(a, "min") {
                "min"
            } else if is(a, "max") {
                "max"
            } else {
                return Err(CommandError::Syntax);
            };
            i += 1;
        } else if is(o, "withscores") && reply {
            withscores = true;
        } else {
            return Err(CommandError::Syntax);
        }
        i += 1;
    }
    let weigh = |s: f64, w: f64| {
        let v = s * w;
        if v.is_nan() {
            0.0
        } else {
            v
        }
    };
    let merge = |a: f64, b: f64| match aggregate {
        "sum" => {
            let v = a + b;
            if v.is_nan() {
                0.0
            } else {
                v
            }
        }
        // Redis's comparisons, not `f64::min`/`max`: between 0 and -0 the score kept is the
        // one already there.
        "min" => {
            if b < a {
                b
            } else {
                a
            }
        }
        _ => {
            if b > a {
                b
            } else {
                a
            }
        }
    };
    let mut result: HashMap<Elem, f64> = HashMap::new();
    match id {
        Zunion | Zunionstore => {
            for (input, &w) in inputs.iter().zip(&weights) {
                for (s, m) in input.iter().flatten() {
                    let v = weigh(*s, w);
                    result
                        .entry(m.clone())
                        .and_modify(|cur| *cur = merge(*cur, v))
                        .or_insert(v);
                }
            }
        }
        Zinter | Zinterstore => {
            if inputs.iter().all(Option::is_some) {
                let maps: Vec<HashMap<&[u8], f64>> = inputs
                    .iter()
                    .map(|i| i.iter().flatten().map(|(s, m)| (&m[..], *s)).collect())
                    .collect();
                for (s, m) in inputs[0].iter().flatten() {
                    let mut acc = weigh(*s, weights[0]);
                    let mut everywhere = true;
                    for (j, map) in maps.iter().enumerate().skip(1) {
                        match map.get(&m[..]) {
                            Some(&o) => acc = merge(acc, weigh(o, weights[j])),
                            None => {
                                everywhere = false;
                                break;
                            }
                        }
                    }
                    if everywhere {
                        result.insert(m.clone(), acc);
                    }
                }
            }
        }
        _ => {
            if let Some(Some(first)) = inputs.first() {
                let others: Vec<std::collections::HashSet<&[u8]>> = inputs[1..]
                    .iter()
                    .map(|i| i.iter().flatten().map(|(_, m)| &m[..]).collect())
                    .collect();
                for (s, m) in first {
                    if others.iter().all(|o| !o.contains(&m[..])) {
                        result.insert(m.clone(), *s);
                    }
                }
            }
        }
    }
    let mut items: Vec<(f64, Elem)> = result.into_iter().map(|(m, s)| (s, m)).collect();
    items.sort_by(|a, b| {
        a.0.partial_cmp(&b.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.1.cmp(&b.1))
    });
    Ok(Combined { items, withscores })
}

// ------------------------------------------------------------------ reads

pub fn read(r: &Reader<'_>, id: CommandId, args: &[Bytes]) -> CommandResult {
    use CommandId::*;
    match id {
        Zcard => Ok(Frame::Integer(
            r.zset(&args[1])?.map_or(0, |z| z.len()) as i64
        )),
        Zscore => Ok(r
            .zset(&args[1])?
            .and_then(|z| z.score(&args[2]))
            .map_or(Frame::Null, Frame::Double)),
        Zmscore => {
            let z = r.zset(&args[1])?;
            Ok(Frame::Array(
                args[2..]
                    .iter()
                    .map(|m| {
                        z.and_then(|z| z.score(m))
                            .map_or(Frame::Null, Frame::Double)
                    })
                    .collect(),
            ))
        }
        Zrank | Zrevrank => {
            let z = r.zset(&args[1])?;
            Ok(
                match z.and_then(|z| z.rank(&args[2]).map(|r| (r, z.len()))) {
                    Some((rank, len)) => {
                        Frame::Integer(if id == Zrank { rank } else { len - 1 - rank } as i64)
                    }
                    None => Frame::Null,
                },
            )
        }
        Zcount | Zlexcount => {
            let by = if id == Zcount { "score" } else { "lex" };
            let range = Range {
                by: Range::bounds(by, &args[2], &args[3], false)?,
                rev: false,
                limit: None,
                withscores: false,
            };
            Ok(Frame::Integer(
                r.zset(&args[1])?.map_or(0, |z| range.select(z).len()) as i64,
            ))
        }
        Zrange | Zrevrange | Zrangebyscore | Zrevrangebyscore | Zrangebylex | Zrevrangebylex => {
            let range = if id == Zrange {
                Range::parse_zrange(&args[2], &args[3], &args[4..], false)?
            } else {
                Range::parse_legacy(id, args)?
            };
            let Some(z) = r.zset(&args[1])? else {
                return Ok(Frame::Array(Vec::new()));
            };
            Ok(members_reply(&range.select(z), range.withscores))
        }
        Zunion | Zinter | Zdiff => {
            let inputs = r_inputs(r, args, 1)?;
            let combined = combine(inputs, id, &args[2 + numkeys(args, 1)..], true)?;
            let items: Vec<(f64, &[u8])> =
                combined.items.iter().map(|(s, m)| (*s, &m[..])).collect();
            Ok(members_reply(&items, combined.withscores))
        }
        Zscan => {
            let (scan, z) = scan_args(args, || r.zset(&args[1]))?;
            if let Some(ZSet::Skip(skip)) = z {
                return Ok(scan.step(
                    skip.scores.len(),
                    skip.scores.iter().map(|(m, s)| (&m[..], *s)),
                    |m, s, out| out.extend([bulk(m), Frame::bulk(format_reply_double(s))]),
                ));
            }
            let mut items = Vec::new();
            for (s, m) in z.iter().flat_map(|z| z.iter()) {
                if scan.matches(m) {
                    items.extend([bulk(m), Frame::bulk(format_reply_double(s))]);
                }
            }
            Ok(ScanArgs::reply(items))
        }
        Zrandmember => {
            let (count, withscores) = rand_args(args, Some("withscores"))?;
            let all: Vec<(f64, &[u8])> = r
                .zset(&args[1])?
                .map_or_else(Vec::new, |z| z.iter().collect());
            let Some(count) = count else {
                return Ok(match random_indexes(all.len(), 1).first() {
                    Some(&i) => bulk(all[i].1),
                    None => Frame::Null,
                });
            };
            let chosen: Vec<(f64, &[u8])> = random_indexes(all.len(), count)
                .into_iter()
                .map(|i| all[i])
                .collect();
            Ok(members_reply(&chosen, withscores))
        }
        _ => Err(CommandError::Syntax),
    }
}
