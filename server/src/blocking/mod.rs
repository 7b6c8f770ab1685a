//! Redis's blocking pops (`BLPOP BRPOP BRPOPLPUSH BLMOVE BLMPOP BZPOPMIN BZPOPMAX BZMPOP`).
//!
//! A blocking command is its non-blocking pop (`BLPOP` → `LMPOP ... LEFT`, `BZPOPMIN` →
//! `ZMPOP ... MIN`, `BLMOVE` → `LMOVE`) plus a wait. The pop is an ordinary log entry, applied
//! by every replica; the wait is not replicated at all: it lives on the shard's leader, in the
//! replica's [`Waiters`], and a forwarded blocking request is held by the leader until it is
//! served, times out or the leadership moves (see ARCHITECTURE.md).
//!
//! - [`Call::parse`]: arguments to the pop, the keys, the timeout and the reply's shape,
//!   with Redis's errors in Redis's order (pure, unit-tested).
//! - [`waiters`]: who waits for which key, in FIFO order; woken by `apply`.
//! - [`serve`]: one waiting client on the leader, from registration to its reply.

pub mod forwarded;
pub mod serve;
pub mod waiters;

use std::time::Duration;

use bytes::Bytes;
use shoal_protocol::{CommandId, CommandSpec, Frame};

use crate::clients::ClientHandle;

use crate::error::CommandError;
use crate::numbers::{parse_f64, parse_i64};

pub use waiters::Waiters;

/// What a key must hold for a waiter to be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    List,
    ZSet,
}

/// How the non-blocking pop's reply becomes the blocking command's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `BLMOVE`, `BLMPOP`, `BZMPOP`: the same reply.
    AsIs,
    /// `BLPOP`/`BRPOP`: `LMPOP`'s `[key, [value]]` → `[key, value]`.
    KeyValue,
    /// `BZPOPMIN`/`BZPOPMAX`: `ZMPOP`'s `[key, [[member, score]]]` → `[key, member, score]`.
    KeyMemberScore,
}

impl Shape {
    pub fn apply(self, reply: Frame) -> Frame {
        let Frame::Array(mut outer) = reply else {
            return reply;
        };
        if self == Shape::AsIs || outer.len() != 2 {
            return Frame::Array(outer);
        }
        let Some(Frame::Array(mut items)) = outer.pop() else {
            return Frame::Array(outer);
        };
        let key = outer.pop().unwrap_or(Frame::Null);
        match (self, items.pop()) {
            (Shape::KeyValue, Some(value)) => Frame::Array(vec![key, value]),
            (Shape::KeyMemberScore, Some(Frame::Array(pair))) => {
                let mut out = vec![key];
                out.extend(pair);
                Frame::Array(out)
            }
            _ => Frame::NullArray,
        }
    }

    pub fn apply_fn(self) -> fn(Frame) -> Frame {
        match self {
            Shape::AsIs => |f| f,
            Shape::KeyValue => |f| Shape::KeyValue.apply(f),
            Shape::KeyMemberScore => |f| Shape::KeyMemberScore.apply(f),
        }
    }
}

/// A blocking command, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub kind: Kind,
    /// The keys waited on, in the command's order (the first ready one is popped).
    pub keys: Vec<Bytes>,
    /// `None`: wait forever (a timeout of 0, or under a millisecond, as in Redis).
    pub timeout: Option<Duration>,
    /// The non-blocking command that pops once a key is ready.
    pub pop: Vec<Bytes>,
    pub shape: Shape,
}

impl Call {
    /// Parses `args` (name first) of the blocking command `id`, checking what Redis checks
    /// before it blocks, in its order.
    pub fn parse(id: CommandId, args: &[Bytes]) -> Result<Call, CommandError> {
        use CommandId::*;
        let word = |w: &'static str| Bytes::from_static(w.as_bytes());
        let n = args.len();
        match id {
            Blpop | Brpop | Bzpopmin | Bzpopmax => {
                let timeout = parse_timeout(&args[n - 1])?;
                let keys = args[1..n - 1].to_vec();
                let (name, side, kind, shape) = match id {
                    Blpop => ("LMPOP", "LEFT", Kind::List, Shape::KeyValue),
                    Brpop => ("LMPOP", "RIGHT", Kind::List, Shape::KeyValue),
                    Bzpopmin => ("ZMPOP", "MIN", Kind::ZSet, Shape::KeyMemberScore),
                    _ => ("ZMPOP", "MAX", Kind::ZSet, Shape::KeyMemberScore),
                };
                let mut pop = vec![word(name), Bytes::from(keys.len().to_string())];
                pop.extend(keys.iter().cloned());
                pop.push(word(side));
                Ok(Call {
                    kind,
                    keys,
                    timeout,
                    pop,
                    shape,
                })
            }
            Brpoplpush => Ok(Call {
                kind: Kind::List,
                keys: vec![args[1].clone()],
                timeout: parse_timeout(&args[3])?,
                pop: vec![word("RPOPLPUSH"), args[1].clone(), args[2].clone()],
                shape: Shape::AsIs,
            }),
            Blmove => {
                for side in &args[3..5] {
                    if !side.eq_ignore_ascii_case(b"left") && !side.eq_ignore_ascii_case(b"right") {
                        return Err(CommandError::Syntax);
                    }
                }
                Ok(Call {
                    kind: Kind::List,
                    keys: vec![args[1].clone()],
                    timeout: parse_timeout(&args[5])?,
                    pop: [&[word("LMOVE")][..], &args[1..5]].concat(),
                    shape: Shape::AsIs,
                })
            }
            Blmpop | Bzmpop => {
                let (kind, name, sides) = if id == Blmpop {
                    (Kind::List, "LMPOP", ["left", "right"])
                } else {
                    (Kind::ZSet, "ZMPOP", ["min", "max"])
                };
                let keys = mpop_keys(args, 2, sides)?;
                Ok(Call {
                    kind,
                    keys,
                    timeout: parse_timeout(&args[1])?,
                    pop: [&[word(name)][..], &args[2..]].concat(),
                    shape: Shape::AsIs,
                })
            }
            _ => Err(CommandError::Err(format!(
                "{id:?} is not a blocking command"
            ))),
        }
    }

    /// The reply when the wait times out: Redis 7.0's nil array (`*-1`, RESP3 `_`) for every
    /// blocking command, the moves included (inside MULTI they answer their non-blocking
    /// form's nil bulk string instead).
    pub fn timed_out(&self) -> Frame {
        Frame::NullArray
    }
}

/// The error a waiting client gets when this node stops leading the shard it waits on
/// (Redis's when a master turns replica): retryable, nothing was popped.
pub fn unblocked_by_failover() -> Frame {
    CommandError::Raw(
        "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)"
            .into(),
    )
    .into()
}

/// Runs a client's blocking command (`run`: wherever its shard's leader is) while the client
/// shows as blocked on its own node, and ends it early on `CLIENT UNBLOCK`.
pub async fn client_wait(
    handle: &ClientHandle,
    spec: &CommandSpec,
    args: &[Bytes],
    run: impl std::future::Future<Output = Frame>,
) -> Frame {
    let mut guard = handle.block();
    tokio::select! {
        reply = run => reply,
        Ok(error) = &mut guard.unblock => {
            if error {
                CommandError::Raw("UNBLOCKED client unblocked via CLIENT UNBLOCK".into()).into()
            } else {
                Call::parse(spec.id, args).map_or(Frame::NullArray, |c| c.timed_out())
            }
        }
    }
}

/// Whether a pop's reply means "nothing to pop" (every key empty): the client keeps waiting.
pub fn is_nothing(reply: &Frame) -> bool {
    matches!(reply, Frame::Null | Frame::NullArray)
}

/// `LMPOP`/`ZMPOP`'s arguments after `numkeys` at `at`: the keys, then a side (one of
/// `sides`) and an optional `COUNT n`, with Redis's errors.
pub fn mpop_keys(args: &[Bytes], at: usize, sides: [&str; 2]) -> Result<Vec<Bytes>, CommandError> {
    let numkeys = match parse_i64(&args[at]) {
        Some(n) if n > 0 => n as usize,
        _ => return Err(CommandError::Err("numkeys should be greater than 0".into())),
    };
    let side_at = at
        .checked_add(numkeys)
        .and_then(|i| i.checked_add(1))
        .filter(|&i| i < args.len())
        .ok_or(CommandError::Syntax)?;
    if !sides
        .iter()
        .any(|s| args[side_at].eq_ignore_ascii_case(s.as_bytes()))
    {
        return Err(CommandError::Syntax);
    }
    match &args[side_at + 1..] {
        [] => {}
        [opt, c] if opt.eq_ignore_ascii_case(b"count") => match parse_i64(c) {
            Some(c) if c > 0 => {}
            _ => return Err(CommandError::Err("count should be greater than 0".into())),
        },
        _ => return Err(CommandError::Syntax),
    }
    Ok(args[at + 1..side_at].to_vec())
}

/// Redis 7.0's blocking timeout: seconds as a float, to whole milliseconds by truncation
/// (C's cast: out of `long long`'s range comes out negative); 0 ms waits forever.
pub fn parse_timeout(arg: &[u8]) -> Result<Option<Duration>, CommandError> {
    let secs = parse_f64(arg)
        .ok_or_else(|| CommandError::Err("timeout is not a float or out of range".into()))?;
    let ms = secs * 1000.0;
    if !(ms > -9.2e18 && ms < 9.2e18) || (ms as i64) < 0 {
        return Err(CommandError::Err("timeout is negative".into()));
    }
    Ok(match ms as u64 {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::command::args;

    fn err(r: Result<impl std::fmt::Debug, CommandError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn timeouts_parse_as_redis_7_0() {
        assert_eq!(parse_timeout(b"0").unwrap(), None);
        assert_eq!(parse_timeout(b"0.0001").unwrap(), None);
        assert_eq!(parse_timeout(b"-0.0001").unwrap(), None);
        assert_eq!(
            parse_timeout(b"0.5").unwrap(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_timeout(b"2").unwrap(), Some(Duration::from_secs(2)));
        for negative in ["-1", "inf", "-inf", "1e30"] {
            assert!(err(parse_timeout(negative.as_bytes())).contains("timeout is negative"));
        }
        for bad in ["abc", "nan", " 1", ""] {
            assert!(
                err(parse_timeout(bad.as_bytes())).contains("not a float"),
                "{bad}"
            );
        }
    }

    #[test]
    fn blpop_pops_with_lmpop_and_shapes_key_value() {
        let call = Call::parse(CommandId::Blpop, &args(&["blpop", "a", "b", "1.5"])).unwrap();
        assert_eq!(call.pop, args(&["LMPOP", "2", "a", "b", "LEFT"]));
        assert_eq!(call.keys, args(&["a", "b"]));
        assert_eq!(call.timeout, Some(Duration::from_millis(1500)));
        let popped = Frame::Array(vec![Frame::bulk("a"), Frame::Array(vec![Frame::bulk("x")])]);
        assert_eq!(
            call.shape.apply(popped),
            Frame::Array(vec![Frame::bulk("a"), Frame::bulk("x")])
        );
        assert_eq!(call.timed_out(), Frame::NullArray);
    }

    #[test]
    fn bzpopmin_shapes_key_member_score() {
        let call = Call::parse(CommandId::Bzpopmin, &args(&["bzpopmin", "z", "0"])).unwrap();
        assert_eq!(call.pop, args(&["ZMPOP", "1", "z", "MIN"]));
        assert_eq!(call.timeout, None);
        let pair = Frame::Array(vec![Frame::bulk("m"), Frame::Double(1.5)]);
        let popped = Frame::Array(vec![Frame::bulk("z"), Frame::Array(vec![pair])]);
        assert_eq!(
            call.shape.apply(popped),
            Frame::Array(vec![Frame::bulk("z"), Frame::bulk("m"), Frame::Double(1.5)])
        );
    }

    #[test]
    fn mpop_options_are_checked_before_the_timeout() {
        let parse = |w: &[&str]| Call::parse(CommandId::Blmpop, &args(w));
        assert!(err(parse(&["blmpop", "x", "0", "a", "left"])).contains("numkeys should be"));
        assert!(err(parse(&["blmpop", "x", "2", "a", "left"])).contains("syntax"));
        assert!(err(parse(&["blmpop", "x", "1", "a", "up"])).contains("syntax"));
        assert!(err(parse(&["blmpop", "x", "1", "a", "left", "count", "0"])).contains("count"));
        assert!(err(parse(&["blmpop", "x", "1", "a", "left"])).contains("timeout"));
        let call = parse(&["blmpop", "0", "2", "a", "b", "right", "count", "3"]).unwrap();
        assert_eq!(
            call.pop,
            args(&["LMPOP", "2", "a", "b", "right", "count", "3"])
        );
        assert_eq!(call.keys, args(&["a", "b"]));
        let z = Call::parse(CommandId::Bzmpop, &args(&["bzmpop", "1", "1", "z", "max"])).unwrap();
        assert_eq!(
            (z.kind, z.pop[0].clone()),
            (Kind::ZSet, Bytes::from("ZMPOP"))
        );
    }

    #[test]
    fn blmove_checks_sides_then_timeout() {
        let parse = |w: &[&str]| Call::parse(CommandId::Blmove, &args(w));
        assert!(err(parse(&["blmove", "a", "b", "up", "left", "-1"])).contains("syntax"));
        assert!(err(parse(&["blmove", "a", "b", "left", "left", "-1"])).contains("negative"));
        let call = parse(&["blmove", "a", "b", "left", "right", "0"]).unwrap();
        assert_eq!(call.pop, args(&["LMOVE", "a", "b", "left", "right"]));
        assert_eq!(call.timed_out(), Frame::NullArray);
    }
}
