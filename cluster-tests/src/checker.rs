//! Linearizability of per-key histories, and acknowledged writes the final reads show lost.
//!
//! The search is Wing & Gong's, with the two improvements Porcupine uses: the history is split
//! by key first (P-compositionality: a history of independent objects is linearizable iff
//! each object's is), and the search memoises every (set of linearized operations, model
//! state) it has reached, so it never explores the same configuration twice.
//!
//! An operation whose outcome is unknown gets completion time +∞ and no outputs: it may be
//! linearized at any point after its invocation, and linearizing it after everything else is
//! the same as it never taking effect, so "maybe applied" needs no special case.
//!
//! The model is one register holding `Option<Value>` (absent or an integer) that every
//! operation of [`Op`] acts on; counters are registers only ever `INCR`ed and read.

use std::collections::HashSet;

use crate::history::{Entry, Nanos, Op, Outcome, Value};

/// The model's state: the key's value, or `None` while it is absent.
pub type State = Option<Value>;

/// Applies `op` to `state`; `None` if the op's recorded outputs cannot come from `state`.
pub fn step(state: State, op: &Op) -> Option<State> {
    match *op {
        Op::Read { seen } => (seen == state).then_some(state),
        Op::Write { value } => Some(Some(value)),
        Op::Swap { value, old } => match old {
            Some(old) if old != state => None,
            _ => Some(Some(value)),
        },
        Op::SetNx { value, set } => match (state, set) {
            (None, Some(false)) | (Some(_), Some(true)) => None,
            (None, _) => Some(Some(value)),
            (Some(_), _) => Some(state),
        },
        Op::Del { removed } => match removed {
            Some(r) if r != state.is_some() => None,
            _ => Some(None),
        },
        Op::Incr { new } => {
            let next = state.unwrap_or(0) + 1;
            match new {
                Some(n) if n != next => None,
                _ => Some(Some(next)),
            }
        }
    }
}

/// One operation as the search sees it.
#[derive(Clone, Debug)]
struct SearchOp {
    op: Op,
    call: Nanos,
    /// `Nanos::MAX` for unknown outcomes.
    ret: Nanos,
    /// The entry it came from (for reports).
    entry: usize,
}

impl SearchOp {
    /// Unknown-outcome ops that are interchangeable with any other of the same kind (an
    /// unknown `INCR` or `DEL` does the same thing whoever sent it, and both may run any time
    /// after their invocation): the search only ever tries the earliest-invoked one of a
    /// kind, which prunes the 2^k subsets of k pending unknown increments.
    fn symmetry_class(&self) -> Option<u8> {
        if self.ret != Nanos::MAX {
            return None;
        }
        match self.op {
            Op::Incr { new: None } => Some(0),
            Op::Del { removed: None } => Some(1),
            _ => None,
        }
    }
}

/// What the checker concluded about one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order exists. `excerpt` holds the entries around the point where every order got
    /// stuck: the ones that could not be placed next, after the last ones placed.
    Violation {
        excerpt: Vec<Entry>,
        state: State,
    },
    /// The search gave up after exploring `budget` configurations.
    Inconclusive,
}

/// How many (set, state) configurations the search may visit per key before giving up.
pub const DEFAULT_BUDGET: usize = 2_000_000;

/// Checks one key's entries (all for the same key). Failed operations are dropped.
pub fn check_key(entries: &[Entry], budget: usize) -> Verdict {
    let mut ops: Vec<SearchOp> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match &e.outcome {
            Outcome::Ok => Some(SearchOp {
                op: e.op,
                call: e.call,
                ret: e.ret,
                entry: i,
            }),
            Outcome::Fail(_) => None,
            Outcome::Unknown(_) => match e.op {
                // A read with no answer constrains nothing.
                Op::Read { .. } => None,
                op => Some(SearchOp {
                    op: op.without_output(),
                    call: e.call,
                    ret: Nanos::MAX,
                    entry: i,
                }),
            },
        })
        .collect();
    ops.sort_by_key(|o| (o.call, o.ret));
    let n = ops.len();
    if n == 0 {
        return Verdict::Linearizable;
    }

    struct Frame {
        state: State,
        candidates: Vec<usize>,
        next: usize,
    }
    let mut linearized = BitSet::new(n);
    let mut memo: HashSet<(BitSet, State)> = HashSet::new();
    let mut stack = vec![Frame {
        state: None,
        candidates: candidates(&ops, &linearized),
        next: 0,
    }];
    let mut depth = 0usize;
    // The deepest configuration reached, for the report.
    let mut deepest: (usize, BitSet, State) = (0, linearized.clone(), None);

    while let Some(frame) = stack.last_mut() {
        if frame.next == frame.candidates.len() {
            // Every choice here failed: undo the parent's choice.
            stack.pop();
            if let Some(parent) = stack.last() {
                linearized.clear(parent.candidates[parent.next - 1]);
                depth -= 1;
            }
            continue;
        }
        let i = frame.candidates[frame.next];
        frame.next += 1;
        let Some(next_state) = step(frame.state, &ops[i].op) else {
            continue;
        };
        linearized.set(i);
        if !memo.insert((linearized.clone(), next_state)) {
            linearized.clear(i);
            continue;
        }
        if memo.len() > budget {
            return Verdict::Inconclusive;
        }
        depth += 1;
        if depth == n {
            return Verdict::Linearizable;
        }
        if depth > deepest.0 {
            deepest = (depth, linearized.clone(), next_state);
        }
        let next_candidates = candidates(&ops, &linearized);
        stack.push(Frame {
            state: next_state,
            candidates: next_candidates,
            next: 0,
        });
    }

    let (_, placed, state) = deepest;
    Verdict::Violation {
        excerpt: excerpt(entries, &ops, &placed),
        state,
    }
}

/// The unlinearized operations that may go next: those invoked before every unlinearized
/// operation's completion (an op that completed before `x` was invoked must precede `x`).
fn candidates(ops: &[SearchOp], linearized: &BitSet) -> Vec<usize> {
    let first = linearized.first_clear().unwrap_or(ops.len());
    let mut min_ret = Nanos::MAX;
    for (i, o) in ops.iter().enumerate().skip(first) {
        if linearized.get(i) {
            continue;
        }
        // Ops are sorted by invocation: later ones complete later than `min_ret` too.
        if o.call > min_ret {
            break;
        }
        min_ret = min_ret.min(o.ret);
    }
    let mut out = Vec::new();
    let mut classes_seen = [false; 2];
    for (i, o) in ops.iter().enumerate().skip(first) {
        if linearized.get(i) {
            continue;
        }
        if o.call > min_ret {
            break;
        }
        if let Some(c) = o.symmetry_class() {
            if std::mem::replace(&mut classes_seen[c as usize], true) {
                continue;
            }
        }
        out.push(i);
    }
    out
}

/// The last few placed operations (by completion) and every one that could not be placed.
fn excerpt(entries: &[Entry], ops: &[SearchOp], placed: &BitSet) -> Vec<Entry> {
    let mut done: Vec<&SearchOp> = (0..ops.len())
        .filter(|&i| placed.get(i))
        .map(|i| &ops[i])
        .collect();
    done.sort_by_key(|o| o.ret);
    let mut chosen: Vec<usize> = done.iter().rev().take(6).map(|o| o.entry).collect();
    let stuck = candidates(ops, placed);
    chosen.extend(stuck.iter().map(|&i| ops[i].entry));
    // Whoever wrote the values the stuck ops saw: a stale read's witness.
    for &i in &stuck {
        let seen = match ops[i].op {
            Op::Read { seen } => seen,
            Op::Swap { old: Some(old), .. } => old,
            _ => None,
        };
        if let Some(v) = seen {
            chosen.extend(
                ops.iter()
                    .filter(|o| o.op.written_value() == Some(v))
                    .map(|o| o.entry),
            );
        }
    }
    // The op whose completion bounds the stuck ones is often the culprit's witness.
    chosen.sort_unstable();
    chosen.dedup();
    let mut out: Vec<Entry> = chosen.into_iter().map(|i| entries[i].clone()).collect();
    out.sort_by_key(|e| e.call);
    out
}

/// Acknowledged writes that the key's final read shows were lost.
///
/// Counter keys (any `INCR`): acknowledged increments beyond the final value. Register keys:
/// acknowledged writes invoked after the write of the final value had completed (had they
/// taken effect, the final value would have to be theirs or a later one).
pub fn lost_acknowledged_writes(entries: &[Entry]) -> usize {
    let Some(final_read) = entries
        .iter()
        .filter(|e| e.final_read && e.outcome == Outcome::Ok)
        .max_by_key(|e| e.call)
    else {
        return 0;
    };
    let Op::Read { seen } = final_read.op else {
        return 0;
    };
    let acked = |e: &&Entry| e.outcome == Outcome::Ok && e.call < final_read.call;
    let ret_or_inf = |e: &Entry| match e.outcome {
        Outcome::Unknown(_) => Nanos::MAX,
        _ => e.ret,
    };
    if entries.iter().any(|e| matches!(e.op, Op::Incr { .. })) {
        let acked_incrs = entries
            .iter()
            .filter(acked)
            .filter(|e| matches!(e.op, Op::Incr { .. }))
            .count() as i64;
        return (acked_incrs - seen.unwrap_or(0)).max(0) as usize;
    }
    let attempted = |e: &&Entry| !matches!(e.outcome, Outcome::Fail(_));
    // When the op that produced the final value had certainly completed (`None`: the final
    // value is the initial one, so nothing ever overwrote it).
    let final_writer_done: Option<Nanos> = match seen {
        Some(v) => match entries
            .iter()
            .filter(attempted)
            .find(|e| e.op.written_value() == Some(v))
        {
            Some(w) => Some(ret_or_inf(w)),
            // A value nobody wrote: the linearizability check reports it.
            None => return 0,
        },
        None => entries
            .iter()
            .filter(attempted)
            .filter(|e| matches!(e.op, Op::Del { .. }))
            .map(ret_or_inf)
            .max(),
    };
    entries
        .iter()
        .filter(acked)
        .filter(|e| match e.op {
            Op::Write { .. } | Op::Swap { .. } => true,
            Op::SetNx { set, .. } => set == Some(true),
            // A later delete is not lost when the final value is absent.
            Op::Del { .. } => seen.is_some(),
            _ => false,
        })
        .filter(|e| e.op.written_value() != seen || seen.is_none())
        .filter(|e| match final_writer_done {
            Some(done) => e.call > done,
            None => true,
        })
        .count()
}

/// A fixed-size bit set (the linearized operations), hashable for the memo.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(n: usize) -> BitSet {
        BitSet(vec![0; n.div_ceil(64)])
    }
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
    fn first_clear(&self) -> Option<usize> {
        self.0
            .iter()
            .enumerate()
            .find(|(_, w)| **w != u64::MAX)
            .map(|(i, w)| i * 64 + w.trailing_ones() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An entry on key "k" from client 0, completed at `ret` (or unknown when `ret` is None).
    fn e(op: Op, call: u64, ret: Option<u64>) -> Entry {
        Entry {
            client: 0,
            node: 0,
            key: "k".into(),
            op,
            outcome: match ret {
                Some(_) => Outcome::Ok,
                None => Outcome::Unknown("timeout".into()),
            },
            call,
            ret: ret.unwrap_or(call + 1),
            final_read: false,
        }
    }
    fn w(v: Value, call: u64, ret: Option<u64>) -> Entry {
        e(Op::Write { value: v }, call, ret)
    }
    fn r(seen: Option<Value>, call: u64, ret: u64) -> Entry {
        e(Op::Read { seen }, call, Some(ret))
    }
    fn fin(seen: Option<Value>, call: u64) -> Entry {
        Entry {
            final_read: true,
            ..r(seen, call, call + 1)
        }
    }
    fn incr(new: Option<Value>, call: u64, ret: Option<u64>) -> Entry {
        e(Op::Incr { new }, call, ret)
    }
    fn ok(h: &[Entry]) -> bool {
        check_key(h, DEFAULT_BUDGET) == Verdict::Linearizable
    }
    fn rejected(h: &[Entry]) -> bool {
        matches!(check_key(h, DEFAULT_BUDGET), Verdict::Violation { .. })
    }

    #[test]
    fn sequential_register_history_is_accepted() {
        assert!(ok(&[
            r(None, 0, 1),
            w(1, 2, Some(3)),
            r(Some(1), 4, 5),
            e(
                Op::Swap {
                    value: 2,
                    old: Some(Some(1))
                },
                6,
                Some(7)
            ),
            e(
                Op::SetNx {
                    value: 3,
                    set: Some(false)
                },
                8,
                Some(9)
            ),
            e(
                Op::Del {
                    removed: Some(true)
                },
                10,
                Some(11)
            ),
            e(
                Op::SetNx {
                    value: 4,
                    set: Some(true)
                },
                12,
                Some(13)
            ),
            r(Some(4), 14, 15),
        ]));
    }

    #[test]
    fn concurrent_overlapping_ops_may_take_either_order() {
        // Both writes overlap both reads: the reads may see them in either order.
        assert!(ok(&[
            w(1, 0, Some(10)),
            w(2, 1, Some(11)),
            r(Some(2), 2, 12),
            r(Some(1), 3, 13),
        ]));
        // ... but two reads that do not overlap cannot see 1 again after 2 is seen.
        assert!(rejected(&[
            w(1, 0, Some(10)),
            w(2, 1, Some(11)),
            r(Some(2), 12, 13),
            r(Some(1), 14, 15),
        ]));
    }

    #[test]
    fn stale_read_after_acknowledged_write_is_rejected() {
        let h = [w(1, 0, Some(1)), w(2, 2, Some(3)), r(Some(1), 4, 5)];
        assert!(rejected(&h));
        let Verdict::Violation { excerpt, .. } = check_key(&h, DEFAULT_BUDGET) else {
            unreachable!()
        };
        assert!(excerpt.iter().any(|x| x.op == Op::Read { seen: Some(1) }));
    }

    #[test]
    fn read_of_a_value_nobody_wrote_is_rejected() {
        assert!(rejected(&[w(1, 0, Some(1)), r(Some(7), 2, 3)]));
    }

    #[test]
    fn unknown_write_may_or_may_not_take_effect() {
        // Took effect (seen later), or never (never seen): both fine.
        assert!(ok(&[w(1, 0, Some(1)), w(2, 2, None), r(Some(2), 10, 11)]));
        assert!(ok(&[w(1, 0, Some(1)), w(2, 2, None), r(Some(1), 10, 11)]));
        // It may even take effect long after: read 1, then 2.
        assert!(ok(&[
            w(1, 0, Some(1)),
            w(2, 2, None),
            r(Some(1), 10, 11),
            r(Some(2), 20, 21),
        ]));
        // But not before it was invoked.
        assert!(rejected(&[
            w(1, 0, Some(1)),
            r(Some(2), 2, 3),
            w(2, 4, None)
        ]));
        // And once seen it cannot be un-seen.
        assert!(rejected(&[
            w(1, 0, Some(1)),
            w(2, 2, None),
            r(Some(2), 10, 11),
            r(Some(1), 20, 21),
        ]));
    }

    #[test]
    fn lost_acknowledged_write_is_rejected_and_counted() {
        let h = [w(1, 0, Some(1)), w(2, 2, Some(3)), fin(Some(1), 10)];
        assert!(rejected(&h));
        assert_eq!(lost_acknowledged_writes(&h), 1);
        // Overwritten by a later acknowledged write: not lost.
        let h = [w(1, 0, Some(1)), w(2, 2, Some(3)), fin(Some(2), 10)];
        assert!(ok(&h));
        assert_eq!(lost_acknowledged_writes(&h), 0);
        // Final value written by an unknown write invoked before: not provably lost.
        let h = [w(1, 0, None), w(2, 2, Some(3)), fin(Some(1), 10)];
        assert!(ok(&h));
        assert_eq!(lost_acknowledged_writes(&h), 0);
        // Key absent at the end and nobody deleted it: every acknowledged write is lost.
        let h = [w(1, 0, Some(1)), w(2, 2, Some(3)), fin(None, 10)];
        assert!(rejected(&h));
        assert_eq!(lost_acknowledged_writes(&h), 2);
    }

    #[test]
    fn duplicate_increment_is_rejected() {
        // One INCR, yet the counter went up by two.
        let h = [incr(Some(1), 0, Some(1)), r(Some(2), 2, 3)];
        assert!(rejected(&h));
        // Two acknowledged INCRs returning the same value.
        assert!(rejected(&[
            incr(Some(1), 0, Some(5)),
            incr(Some(1), 1, Some(6))
        ]));
    }

    #[test]
    fn lost_increment_is_rejected_and_counted() {
        let h = [
            incr(Some(1), 0, Some(1)),
            incr(Some(2), 2, Some(3)),
            fin(Some(1), 10),
        ];
        assert!(rejected(&h));
        assert_eq!(lost_acknowledged_writes(&h), 1);
    }

    #[test]
    fn unknown_increments_count_zero_or_once_each() {
        let mut h = vec![incr(Some(1), 0, Some(1))];
        // 30 pending unknown increments: the symmetry reduction keeps this cheap.
        for i in 0..30 {
            h.push(incr(None, 2 + i, None));
        }
        for final_value in [1, 7, 31] {
            let mut h = h.clone();
            h.push(fin(Some(final_value), 100));
            assert!(ok(&h), "final {final_value}");
            assert_eq!(lost_acknowledged_writes(&h), 0);
        }
        let mut too_many = h.clone();
        too_many.push(fin(Some(32), 100));
        assert!(rejected(&too_many));
    }

    #[test]
    fn swap_must_return_the_value_it_replaced() {
        let swap = |old, call, ret| {
            e(
                Op::Swap {
                    value: 9,
                    old: Some(old),
                },
                call,
                Some(ret),
            )
        };
        assert!(ok(&[w(1, 0, Some(1)), swap(Some(1), 2, 3)]));
        assert!(rejected(&[w(1, 0, Some(1)), swap(None, 2, 3)]));
        // Two swaps cannot both replace the same value.
        assert!(rejected(&[
            w(1, 0, Some(1)),
            swap(Some(1), 2, 10),
            e(
                Op::Swap {
                    value: 8,
                    old: Some(Some(1))
                },
                3,
                Some(11)
            ),
        ]));
    }

    #[test]
    fn setnx_succeeds_only_on_an_absent_key() {
        let nx = |v, set, call, ret| e(Op::SetNx { value: v, set }, call, ret);
        assert!(rejected(&[w(1, 0, Some(1)), nx(2, Some(true), 2, Some(3))]));
        assert!(rejected(&[nx(2, Some(false), 0, Some(1))]));
        // Two concurrent NX writers: at most one wins.
        assert!(ok(&[
            nx(1, Some(true), 0, Some(10)),
            nx(2, Some(false), 1, Some(11))
        ]));
        assert!(rejected(&[
            nx(1, Some(true), 0, Some(10)),
            nx(2, Some(true), 1, Some(11))
        ]));
    }

    #[test]
    fn failed_reads_are_dropped() {
        let mut failed = r(Some(42), 2, 3);
        failed.outcome = Outcome::Fail("TRYAGAIN".into());
        assert!(ok(&[w(1, 0, Some(1)), failed, r(Some(1), 4, 5)]));
    }

    proptest! {
        /// Concurrent histories generated from a real linearizable execution (each op takes
        /// effect at a point inside its [call, ret] window; windows overlap freely) are
        /// accepted, including ops whose outcome is unknown, applied or not.
        #[test]
        fn generated_concurrent_histories_are_accepted(
            ops in prop::collection::vec((0u8..6, 0u64..40, 0u64..40, 0u8..10), 1..80)
        ) {
            let mut state: State = None;
            let mut h = Vec::new();
            for (i, &(kind, before, after, fate)) in ops.iter().enumerate() {
                let at = 100 + 20 * i as u64;
                let v = i as Value + 1;
                let op = match kind {
                    0 => Op::Read { seen: state },
                    1 => Op::Write { value: v },
                    2 => Op::Swap { value: v, old: Some(state) },
                    3 => Op::SetNx { value: v, set: Some(state.is_none()) },
                    4 => Op::Del { removed: Some(state.is_some()) },
                    _ => Op::Incr { new: Some(state.unwrap_or(0) + 1) },
                };
                let (call, ret) = (at - before, at + after + 1);
                match fate {
                    // Unknown outcome, never applied (the model does not see it).
                    0 if !matches!(op, Op::Read { .. }) => {
                        h.push(e(op.without_output(), call, None));
                        continue;
                    }
                    // Unknown outcome, applied.
                    1 => h.push(e(op.without_output(), call, None)),
                    _ => h.push(e(op, call, Some(ret))),
                }
                // Counters and registers share the model; INCR on a register value is fine.
                state = step(state, &op).expect("model accepts its own outputs");
            }
            prop_assert!(ok(&h));
        }
    }

    proptest! {
        /// Any sequential history produced by running the model is linearizable, and
        /// corrupting one read's result (to a value never written) makes it not.
        #[test]
        fn sequential_histories_are_linearizable(kinds in prop::collection::vec(0u8..6, 1..60)) {
            let mut state: State = None;
            let mut h = Vec::new();
            for (i, k) in kinds.iter().enumerate() {
                let v = i as Value + 100;
                let op = match k {
                    0 => Op::Read { seen: state },
                    1 => Op::Write { value: v },
                    2 => Op::Swap { value: v, old: Some(state) },
                    3 => Op::SetNx { value: v, set: Some(state.is_none()) },
                    4 => Op::Del { removed: Some(state.is_some()) },
                    _ => Op::Read { seen: state },
                };
                state = step(state, &op).expect("model accepts its own outputs");
                h.push(e(op, 10 * i as u64, Some(10 * i as u64 + 5)));
            }
            prop_assert!(ok(&h));
            h.push(r(Some(-1), 10_000, 10_001));
            prop_assert!(rejected(&h));
        }
    }
}
