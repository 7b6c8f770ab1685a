//! What the workload did: one [`Entry`] per operation, with its invocation and completion
//! times and what the server answered, in the vocabulary the checker's model understands.

use std::collections::BTreeMap;
use std::fmt;

/// Values on the wire are decimal integers: register writes use unique ids, counters count.
pub type Value = i64;

/// Nanoseconds since the schedule started.
pub type Nanos = u64;

/// One operation on one key, with the part of its output that is known. An output field is
/// `None` when the operation's outcome is unknown (timeout, connection lost, an error that
/// does not prove the write was not applied): the checker then lets it take effect or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `GET k`; only completed reads are recorded (a failed read constrains nothing).
    Read { seen: Option<Value> },
    /// `SET k v`.
    Write { value: Value },
    /// `SET k v GET`: `old` is the value it replaced (`Some(None)`: the key was absent).
    Swap {
        value: Value,
        old: Option<Option<Value>>,
    },
    /// `SET k v NX`: `set` tells whether it stored `v` (only if the key was absent).
    SetNx { value: Value, set: Option<bool> },
    /// `DEL k`: `removed` tells whether the key existed.
    Del { removed: Option<bool> },
    /// `INCR k`: `new` is the value it returned.
    Incr { new: Option<Value> },
}

impl Op {
    /// The value this operation stores, if it stores one chosen by the client.
    pub fn written_value(&self) -> Option<Value> {
        match *self {
            Op::Write { value } | Op::Swap { value, .. } | Op::SetNx { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The same operation with every output forgotten (what an indeterminate outcome leaves).
    pub fn without_output(self) -> Op {
        match self {
            Op::Read { seen } => Op::Read { seen },
            Op::Write { value } => Op::Write { value },
            Op::Swap { value, .. } => Op::Swap { value, old: None },
            Op::SetNx { value, .. } => Op::SetNx { value, set: None },
            Op::Del { .. } => Op::Del { removed: None },
            Op::Incr { .. } => Op::Incr { new: None },
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Completed: the op's outputs are the server's reply.
    Ok,
    /// Certainly had no effect (only used for reads: a read that failed is dropped).
    Fail(String),
    /// May or may not have taken effect; its completion time is +∞ for the checker.
    Unknown(String),
}

/// One recorded operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Which workload client ran it (`usize::MAX` for the final reads).
    pub client: usize,
    /// The node (index) the client was connected to.
    pub node: usize,
    pub key: String,
    pub op: Op,
    pub outcome: Outcome,
    /// When the request was about to be sent.
    pub call: Nanos,
    /// When the reply (or the error) arrived.
    pub ret: Nanos,
    /// One of the reads of every key after the cluster healed.
    pub final_read: bool,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = if self.client == usize::MAX {
            "final".to_owned()
        } else {
            format!("c{}", self.client)
        };
        let ret = match &self.outcome {
            Outcome::Unknown(_) => "∞".to_owned(),
            _ => format!("{:.3}", self.ret as f64 / 1e9),
        };
        write!(
            f,
            "[{:>9.3}s .. {:>7}] {who:<5} node{} {:<4} {:?} {:?}",
            self.call as f64 / 1e9,
            ret,
            self.node + 1,
            self.key,
            self.op,
            self.outcome
        )
    }
}

/// A whole run's entries.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub entries: Vec<Entry>,
}

impl History {
    /// Entries grouped by key (the checker's unit: a history is linearizable iff each key's
    /// sub-history is, because keys are independent objects).
    pub fn by_key(&self) -> BTreeMap<String, Vec<Entry>> {
        let mut keys: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for e in &self.entries {
            keys.entry(e.key.clone()).or_default().push(e.clone());
        }
        keys
    }

    /// Operations that reached a verdict the workload recorded as Ok / Unknown.
    pub fn counts(&self) -> (usize, usize, usize) {
        let ok = self
            .entries
            .iter()
            .filter(|e| e.outcome == Outcome::Ok)
            .count();
        let unknown = self
            .entries
            .iter()
            .filter(|e| matches!(e.outcome, Outcome::Unknown(_)))
            .count();
        (ok, unknown, self.entries.len() - ok - unknown)
    }
}
