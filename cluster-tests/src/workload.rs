//! Concurrent clients doing reads, writes, swaps, `SET NX`, deletes and increments on a few
//! keys, each recording every operation it invokes as a history [`Entry`].
//!
//! A client talks to a random node (proxy mode: any node forwards to the key's leader) and,
//! after any error or timeout, drops its connection and picks another: a late reply on a
//! reused connection would be taken for the next request's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_protocol::Frame;

use crate::harness::resp::{CallError, Conn};
use crate::history::{Entry, Op, Outcome, Value};

#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    pub clients: usize,
    /// Keys `r0..` used as registers (read / write / swap / SET NX / DEL).
    pub registers: usize,
    /// Keys `c0..` used as counters (INCR / read).
    pub counters: usize,
    /// A request without a reply after this long is indeterminate.
    pub op_timeout: Duration,
    /// Pause between a client's operations (keeps the shared machine usable).
    pub think: Duration,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            clients: 5,
            registers: 3,
            counters: 2,
            op_timeout: Duration::from_secs(6),
            think: Duration::from_millis(5),
        }
    }
}

impl WorkloadConfig {
    pub fn keys(&self) -> Vec<String> {
        (0..self.registers)
            .map(|i| format!("r{i}"))
            .chain((0..self.counters).map(|i| format!("c{i}")))
            .collect()
    }
}

/// A value written by client `client` as its `seq`-th write: unique across the run, so a
/// read tells exactly which write it saw.
fn unique_value(client: usize, seq: u64) -> Value {
    (client as Value + 1) * 10_000_000 + seq as Value
}

/// The command for `op` on `key`.
fn command(key: &str, op: &Op) -> Vec<String> {
    let k = key.to_owned();
    match *op {
        Op::Read { .. } => vec!["GET".into(), k],
        Op::Write { value } => vec!["SET".into(), k, value.to_string()],
        Op::Swap { value, .. } => vec!["SET".into(), k, value.to_string(), "GET".into()],
        Op::SetNx { value, .. } => vec!["SET".into(), k, value.to_string(), "NX".into()],
        Op::Del { .. } => vec!["DEL".into(), k],
        Op::Incr { .. } => vec!["INCR".into(), k],
    }
}

/// Marks a read of something no client could have written (never a legal model value, so
/// the checker rejects it and shows it).
const GARBAGE: Value = i64::MIN;

fn parse_value(frame: &Frame) -> Option<Option<Value>> {
    match frame {
        Frame::Null => Some(None),
        Frame::Bulk(b) => Some(Some(
            std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(GARBAGE),
        )),
        _ => None,
    }
}

/// The op with its outputs filled in from `reply`, or why the reply leaves it undecided.
fn interpret(op: Op, reply: &Frame) -> Result<Op, String> {
    if let Frame::Error(e) = reply {
        return Err(e.clone());
    }
    let unexpected = || format!("unexpected reply {reply:?}");
    Ok(match op {
        Op::Read { .. } => Op::Read {
            seen: parse_value(reply).ok_or_else(unexpected)?,
        },
        Op::Write { value } => match reply {
            Frame::Simple(s) if s == "OK" => Op::Write { value },
            _ => return Err(unexpected()),
        },
        Op::Swap { value, .. } => Op::Swap {
            value,
            old: Some(parse_value(reply).ok_or_else(unexpected)?),
        },
        Op::SetNx { value, .. } => match reply {
            Frame::Simple(s) if s == "OK" => Op::SetNx {
                value,
                set: Some(true),
            },
            Frame::Null => Op::SetNx {
                value,
                set: Some(false),
            },
            _ => return Err(unexpected()),
        },
        Op::Del { .. } => match reply {
            Frame::Integer(n @ (0 | 1)) => Op::Del {
                removed: Some(*n == 1),
            },
            _ => return Err(unexpected()),
        },
        Op::Incr { .. } => match reply {
            Frame::Integer(n) => Op::Incr { new: Some(*n) },
            _ => return Err(unexpected()),
        },
    })
}

/// Runs `op` on `key` over `conn` (connecting first if needed) and records it.
#[allow(clippy::too_many_arguments)]
async fn run_op(
    conn: &mut Option<Conn>,
    addr: SocketAddr,
    node: usize,
    client: usize,
    key: &str,
    op: Op,
    start: Instant,
    timeout: Duration,
) -> Entry {
    let now = || start.elapsed().as_nanos() as u64;
    let call = now();
    let mut entry = Entry {
        client,
        node,
        key: key.to_owned(),
        op,
        outcome: Outcome::Ok,
        call,
        ret: call,
        final_read: false,
    };
    if conn.is_none() {
        match Conn::connect(addr, timeout).await {
            Ok(c) => *conn = Some(c),
            Err(e) => {
                // Nothing was sent: certainly not applied.
                entry.outcome = Outcome::Fail(e.to_string());
                entry.ret = now();
                return entry;
            }
        }
    }
    let c = conn.as_mut().expect("connected");
    let result = c.call(&command(key, &op), timeout).await;
    entry.ret = now();
    let is_read = matches!(op, Op::Read { .. });
    match result {
        Ok(reply) => match interpret(op, &reply) {
            Ok(done) => entry.op = done,
            Err(why) => {
                *conn = None;
                entry.outcome = if is_read {
                    Outcome::Fail(why)
                } else {
                    Outcome::Unknown(why)
                };
            }
        },
        Err(e) => {
            *conn = None;
            let why = e.to_string();
            entry.outcome = match e {
                CallError::Connect(_) => Outcome::Fail(why),
                _ if is_read => Outcome::Fail(why),
                _ => Outcome::Unknown(why),
            };
        }
    }
    entry
}

/// One client: random operations on random keys until `stop`, returning what it recorded.
pub async fn client(
    id: usize,
    addrs: Vec<SocketAddr>,
    config: WorkloadConfig,
    seed: u64,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<Entry> {
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let keys = config.keys();
    let mut history = Vec::new();
    let mut conn: Option<Conn> = None;
    let mut node = rng.gen_range(0..addrs.len());
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            node = rng.gen_range(0..addrs.len());
        }
        let k = rng.gen_range(0..keys.len());
        let key = &keys[k];
        seq += 1;
        let value = unique_value(id, seq);
        let op = if k >= config.registers {
            if rng.gen_bool(0.6) {
                Op::Incr { new: None }
            } else {
                Op::Read { seen: None }
            }
        } else {
            match rng.gen_range(0..100) {
                0..=39 => Op::Read { seen: None },
                40..=64 => Op::Write { value },
                65..=79 => Op::Swap { value, old: None },
                80..=89 => Op::SetNx { value, set: None },
                _ => Op::Del { removed: None },
            }
        };
        let entry = run_op(
            &mut conn,
            addrs[node],
            node,
            id,
            key,
            op,
            start,
            config.op_timeout,
        )
        .await;
        if entry.outcome != Outcome::Ok {
            // Do not hammer a node that is down.
            tokio::time::sleep(Duration::from_millis(rng.gen_range(50..250))).await;
        }
        history.push(entry);
        tokio::time::sleep(config.think).await;
    }
    history
}

/// Reads every key once more after the cluster healed, retrying each (on any node) until a
/// read succeeds or `timeout` passes. Every attempt is recorded; the successful one is marked
/// `final_read`. Returns the entries and the keys that could not be read.
pub async fn final_reads(
    addrs: &[SocketAddr],
    keys: &[String],
    start: Instant,
    timeout: Duration,
) -> (Vec<Entry>, Vec<String>) {
    let deadline = Instant::now() + timeout;
    let mut entries = Vec::new();
    let mut unread = Vec::new();
    for key in keys {
        let mut attempt = 0usize;
        loop {
            let node = attempt % addrs.len();
            attempt += 1;
            let mut conn = None;
            let mut e = run_op(
                &mut conn,
                addrs[node],
                node,
                usize::MAX,
                key,
                Op::Read { seen: None },
                start,
                Duration::from_secs(10),
            )
            .await;
            let ok = e.outcome == Outcome::Ok;
            e.final_read = ok;
            entries.push(e);
            if ok {
                break;
            }
            if Instant::now() > deadline {
                unread.push(key.clone());
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    (entries, unread)
}
