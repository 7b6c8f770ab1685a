//! A slot's deadline index: a min-heap of `(deadline, key hash)` records, one per volatile key.
//!
//! Why: active expiry used to rescan a whole slot whenever its earliest deadline passed. With
//! deadlines spread over a minute a slot of ~60 keys has one due about every second, so every
//! key reclaimed cost a visit (a cache miss: the deadline lives in the entry's heap blob) to
//! every other volatile key of its slot. The index lets expiry visit only the due keys.
//!
//! Records name a key by its hash (16 bytes a record, no copy of the key); the keyspace checks
//! a record against the table (`Keyspace::record_is_live`). Deletion is lazy: a record whose
//! key was removed or got another deadline stays until it reaches the top, where the keyspace
//! pops it, so the top is always a live key's deadline (the slot's exact earliest deadline).
//! Dead records below the top are bounded: an index holding more than twice as many records as
//! its slot has volatile keys (plus 16) is rebuilt from the table (amortised: a rebuild reads
//! the slot's volatile keys once and follows at least as many changes that left records dead).
//!
//! Nothing here is replicated state and `apply` never reads it for data; every replica keeps
//! its own, changed only by `SlotsMut` (its size is part of the slot's memory account).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::entry::UnixMillis;

/// One record: a volatile key's deadline and the hash of its key.
pub type Record = (UnixMillis, u64);

#[derive(Default, Debug)]
pub struct DeadlineIndex {
    heap: BinaryHeap<Reverse<Record>>,
}

impl DeadlineIndex {
    pub fn push(&mut self, at: UnixMillis, hash: u64) {
        self.heap.push(Reverse((at, hash)));
    }

    /// The earliest record.
    pub fn top(&self) -> Option<Record> {
        self.heap.peek().map(|r| r.0)
    }

    pub fn pop(&mut self) -> Option<Record> {
        self.heap.pop().map(|r| r.0)
    }

    /// Records held, live and dead.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Bytes of the heap's buffer (the memory account's share of this index).
    pub fn allocation_size(&self) -> usize {
        self.heap.capacity() * std::mem::size_of::<Record>()
    }

    /// Calls `f` on every record with a deadline before `now`, visiting no other record beyond
    /// their children (a heap's subtree holds nothing earlier than its root).
    pub fn due(&self, now: UnixMillis, mut f: impl FnMut(Record)) {
        let records = self.heap.as_slice();
        let mut pending = Vec::new();
        if !records.is_empty() {
            pending.push(0usize);
        }
        while let Some(i) = pending.pop() {
            let Reverse(record) = records[i];
            if record.0 >= now {
                continue;
            }
            f(record);
            for child in [2 * i + 1, 2 * i + 2] {
                if child < records.len() {
                    pending.push(child);
                }
            }
        }
    }

    /// Replaces every record with `records` (a rebuild from the table), sized to fit them.
    pub fn rebuild(&mut self, records: impl Iterator<Item = Record>) {
        let records: Vec<Reverse<Record>> = records.map(Reverse).collect();
        self.heap = BinaryHeap::from(records);
        self.heap.shrink_to_fit();
    }

    /// Drops every record and the buffer.
    pub fn clear(&mut self) {
        self.heap = BinaryHeap::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_visits_exactly_the_records_before_now() {
        let mut index = DeadlineIndex::default();
        for (i, at) in [50u64, 10, 90, 30, 70, 20, 80, 60, 40, 100]
            .iter()
            .enumerate()
        {
            index.push(*at, i as u64);
        }
        let mut due = Vec::new();
        index.due(55, |r| due.push(r.0));
        due.sort_unstable();
        assert_eq!(due, vec![10, 20, 30, 40, 50]);
        let mut none = Vec::new();
        index.due(10, |r| none.push(r));
        assert!(none.is_empty());
        assert_eq!(index.top(), Some((10, 1)));
    }

    #[test]
    fn rebuild_keeps_the_heap_order_and_fits_its_buffer() {
        let mut index = DeadlineIndex::default();
        for i in 0..100u64 {
            index.push(1000 - i, i);
        }
        index.rebuild([(7u64, 1u64), (3, 2), (5, 3)].into_iter());
        assert_eq!(index.len(), 3);
        assert_eq!(index.allocation_size(), 3 * 16);
        assert_eq!(index.pop(), Some((3, 2)));
        assert_eq!(index.pop(), Some((5, 3)));
        index.clear();
        assert!(index.is_empty());
        assert_eq!(index.allocation_size(), 0);
    }
}
