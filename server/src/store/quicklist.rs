//! Lists as Redis's quicklist: a deque of packed chunks, each an exact-size buffer of up to
//! [`LIST_CHUNK_BYTES`] of entries (Redis's `list-max-listpack-size -2`), so an element costs
//! its bytes plus two length bytes instead of a box and a pointer.
//!
//! An entry is `len (LEB128), bytes, len (the same LEB128 bytes reversed)`: the trailing copy
//! lets the last entry of a chunk be found from its end, so pops at either end never scan.
//! A larger element gets a chunk of its own (Redis's plain node). Pushes and pops rewrite only
//! the end chunk; middle inserts split a chunk that grows past the limit.

use std::collections::VecDeque;

use super::pack::{get_str, put_str, str_size, Buf};
use super::value::Elem;

/// Redis's `list-max-listpack-size -2`: 8 KiB per chunk.
pub const LIST_CHUNK_BYTES: usize = 8 * 1024;

#[derive(Clone, Debug, Default)]
pub struct List {
    chunks: VecDeque<Chunk>,
    len: usize,
}

#[derive(Clone, Debug, Default)]
struct Chunk {
    buf: Buf,
    count: u32,
}

/// The bytes one entry of `len` bytes takes.
fn entry_size(len: usize) -> usize {
    2 * str_size(len) - len
}

fn encode(e: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entry_size(e.len()));
    put_str(&mut out, e);
    let prefix = out.len() - e.len();
    for i in (0..prefix).rev() {
        out.push(out[i]);
    }
    out
}

/// The entry starting at `at`: its bytes and where the next one starts.
fn entry_at(buf: &[u8], at: usize) -> (&[u8], usize) {
    let (e, body_end) = get_str(buf, at);
    (e, body_end + (body_end - e.len() - at))
}

/// The entry ending at `end`: where it starts and its bytes.
fn entry_before(buf: &[u8], end: usize) -> (usize, &[u8]) {
    let (mut n, mut shift, mut i) = (0usize, 0u32, end);
    loop {
        i -= 1;
        let b = buf[i];
        n |= ((b & 0x7f) as usize) << shift;
        if b < 0x80 {
            break;
        }
        shift += 7;
    }
    let prefix = end - i;
    let body = i - n;
    (body - prefix, &buf[body..i])
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        self.buf.bytes()
    }

    fn iter(&self) -> Ends<'_> {
        Ends {
            buf: self.bytes(),
            front: 0,
            back: self.bytes().len(),
        }
    }

    /// Byte range of the entry at index `i` (which must exist).
    fn range_of(&self, i: usize) -> (usize, usize) {
        let buf = self.bytes();
        let mut at = 0;
        for _ in 0..i {
            at = entry_at(buf, at).1;
        }
        (at, entry_at(buf, at).1)
    }

    fn fits(&self, len: usize) -> bool {
        self.count == 0 || self.bytes().len() + entry_size(len) <= LIST_CHUNK_BYTES
    }
}

/// A chunk's entries read from both ends.
struct Ends<'a> {
    buf: &'a [u8],
    front: usize,
    back: usize,
}

impl<'a> Iterator for Ends<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        (self.front < self.back).then(|| {
            let (e, next) = entry_at(self.buf, self.front);
            self.front = next;
            e
        })
    }
}

impl DoubleEndedIterator for Ends<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        (self.front < self.back).then(|| {
            let (at, e) = entry_before(self.buf, self.back);
            self.back = at;
            e
        })
    }
}

impl PartialEq for List {
    fn eq(&self, other: &List) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl List {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A list of `items` in order.
    pub fn from_items<T: AsRef<[u8]>>(items: impl IntoIterator<Item = T>) -> List {
        let mut l = List::default();
        for e in items {
            l.push_back(e.as_ref());
        }
        l
    }

    /// Room for one more chunk; the first one exactly (most lists are one chunk, and the
    /// deque's default first growth is four).
    fn reserve_chunk(&mut self) {
        if self.chunks.capacity() == 0 {
            self.chunks.reserve_exact(1);
        }
    }

    pub fn push_back(&mut self, e: &[u8]) {
        if !self.chunks.back().is_some_and(|c| c.fits(e.len())) {
            self.reserve_chunk();
            self.chunks.push_back(Chunk::default());
        }
        let c = self.chunks.back_mut().expect("pushed");
        let end = c.bytes().len();
        c.buf.splice(end, end, &encode(e));
        c.count += 1;
        self.len += 1;
    }

    pub fn push_front(&mut self, e: &[u8]) {
        if !self.chunks.front().is_some_and(|c| c.fits(e.len())) {
            self.reserve_chunk();
            self.chunks.push_front(Chunk::default());
        }
        let c = self.chunks.front_mut().expect("pushed");
        c.buf.splice(0, 0, &encode(e));
        c.count += 1;
        self.len += 1;
    }

    pub fn pop_front(&mut self) -> Option<Elem> {
        let c = self.chunks.front_mut()?;
        let (e, end) = entry_at(c.bytes(), 0);
        let e: Elem = e.into();
        c.buf.splice(0, end, &[]);
        self.taken(0);
        Some(e)
    }

    pub fn pop_back(&mut self) -> Option<Elem> {
        let last = self.chunks.len().checked_sub(1)?;
        let c = &mut self.chunks[last];
        let len = c.bytes().len();
        let (at, e) = entry_before(c.bytes(), len);
        let e: Elem = e.into();
        c.buf.splice(at, len, &[]);
        self.taken(last);
        Some(e)
    }

    /// Bookkeeping after one entry left chunk `ci`: counts, and an emptied chunk goes.
    fn taken(&mut self, ci: usize) {
        self.len -= 1;
        let c = &mut self.chunks[ci];
        c.count -= 1;
        if c.count == 0 {
            self.chunks.remove(ci);
        }
    }

    /// The chunk holding index `i` (< len) and `i`'s index inside it, walking from the nearer
    /// end.
    fn locate(&self, i: usize) -> (usize, usize) {
        if i < self.len / 2 {
            let mut rest = i;
            for (ci, c) in self.chunks.iter().enumerate() {
                if rest < c.count as usize {
                    return (ci, rest);
                }
                rest -= c.count as usize;
            }
        } else {
            let mut from_back = self.len - i;
            for (ci, c) in self.chunks.iter().enumerate().rev() {
                if from_back <= c.count as usize {
                    return (ci, c.count as usize - from_back);
                }
                from_back -= c.count as usize;
            }
        }
        unreachable!("index {i} within a list of {}", self.len)
    }

    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if i >= self.len {
            return None;
        }
        let (ci, k) = self.locate(i);
        let c = &self.chunks[ci];
        let (at, _) = c.range_of(k);
        Some(entry_at(c.bytes(), at).0)
    }

    /// Replaces the element at `i` (< len).
    pub fn set(&mut self, i: usize, e: &[u8]) {
        let (ci, k) = self.locate(i);
        let c = &mut self.chunks[ci];
        let (at, end) = c.range_of(k);
        c.buf.splice(at, end, &encode(e));
        self.split_if_over(ci);
    }

    /// Inserts `e` so that it becomes index `i` (<= len).
    pub fn insert(&mut self, i: usize, e: &[u8]) {
        if i == self.len {
            return self.push_back(e);
        }
        if i == 0 {
            return self.push_front(e);
        }
        let (ci, k) = self.locate(i);
        let c = &mut self.chunks[ci];
        let (at, _) = c.range_of(k);
        c.buf.splice(at, at, &encode(e));
        c.count += 1;
        self.len += 1;
        self.split_if_over(ci);
    }

    /// Removes and returns the element at `i` (< len).
    pub fn remove(&mut self, i: usize) -> Elem {
        let (ci, k) = self.locate(i);
        let c = &mut self.chunks[ci];
        let (at, end) = c.range_of(k);
        let e: Elem = entry_at(c.bytes(), at).0.into();
        c.buf.splice(at, end, &[]);
        self.taken(ci);
        e
    }

    /// Splits chunk `ci` in two halves (by entries) while it holds more than the limit and
    /// more than one entry.
    fn split_if_over(&mut self, ci: usize) {
        let c = &self.chunks[ci];
        if c.bytes().len() <= LIST_CHUNK_BYTES || c.count < 2 {
            return;
        }
        let half = c.count as usize / 2;
        let (at, _) = c.range_of(half);
        let tail = Chunk {
            buf: c.bytes()[at..].to_vec().into(),
            count: c.count - half as u32,
        };
        let c = &mut self.chunks[ci];
        let len = c.bytes().len();
        c.buf.splice(at, len, &[]);
        c.count = half as u32;
        self.chunks.insert(ci + 1, tail);
        self.split_if_over(ci + 1);
        self.split_if_over(ci);
    }

    /// Keeps only indexes `from..to` (LTRIM).
    pub fn retain_range(&mut self, from: usize, to: usize) {
        let to = to.min(self.len);
        if from >= to {
            return self.clear();
        }
        // Whole chunks off each end first, then what is left of the end chunks.
        let mut cut = self.len - to;
        while let Some(c) = self.chunks.back() {
            if (c.count as usize) > cut {
                break;
            }
            cut -= c.count as usize;
            self.len -= c.count as usize;
            self.chunks.pop_back();
        }
        if cut > 0 {
            let c = self.chunks.back_mut().expect("elements remain");
            let keep = c.count as usize - cut;
            let (at, _) = c.range_of(keep);
            let len = c.bytes().len();
            c.buf.splice(at, len, &[]);
            c.count = keep as u32;
            self.len -= cut;
        }
        let mut drop = from;
        while let Some(c) = self.chunks.front() {
            if (c.count as usize) > drop {
                break;
            }
            drop -= c.count as usize;
            self.len -= c.count as usize;
            self.chunks.pop_front();
        }
        if drop > 0 {
            let c = self.chunks.front_mut().expect("elements remain");
            let (at, _) = c.range_of(drop);
            c.buf.splice(0, at, &[]);
            c.count -= drop as u32;
            self.len -= drop;
        }
    }

    pub fn clear(&mut self) {
        *self = List::default();
    }

    /// Removes up to `limit` elements equal to `target`, scanning from the head (or from the
    /// tail when `from_tail`); how many went (LREM).
    pub fn remove_matching(&mut self, target: &[u8], limit: usize, from_tail: bool) -> usize {
        let mut removed = 0;
        let order: Vec<usize> = if from_tail {
            (0..self.chunks.len()).rev().collect()
        } else {
            (0..self.chunks.len()).collect()
        };
        for ci in order {
            if removed >= limit {
                break;
            }
            let c = &mut self.chunks[ci];
            let mut ranges = Vec::new();
            let mut at = 0;
            while at < c.bytes().len() {
                let (e, next) = entry_at(c.bytes(), at);
                if e == target {
                    ranges.push((at, next));
                }
                at = next;
            }
            let take = ranges.len().min(limit - removed);
            let chosen = if from_tail {
                &ranges[ranges.len() - take..]
            } else {
                &ranges[..take]
            };
            // Back to front, so earlier offsets stay valid.
            for &(at, end) in chosen.iter().rev() {
                c.buf.splice(at, end, &[]);
            }
            c.count -= take as u32;
            self.len -= take;
            removed += take;
        }
        self.chunks.retain(|c| c.count > 0);
        removed
    }

    /// The elements head to tail (reversible: `.rev()` walks tail to head).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &[u8]> + '_ {
        self.chunks.iter().flat_map(Chunk::iter)
    }

    /// The elements from index `from` on, skipping whole chunks to get there.
    pub fn iter_from(&self, from: usize) -> impl Iterator<Item = &[u8]> + '_ {
        let (ci, k) = if from < self.len {
            self.locate(from)
        } else {
            (self.chunks.len(), 0)
        };
        self.chunks.range(ci..).flat_map(Chunk::iter).skip(k)
    }

    /// The allocator's bytes for the chunks and their deque.
    pub fn mem_usage(&self) -> usize {
        super::entry::allocation_size(self.chunks.capacity() * std::mem::size_of::<Chunk>())
            + self.chunks.iter().map(|c| c.buf.mem_usage()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn items(l: &List) -> Vec<Vec<u8>> {
        l.iter().map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn entries_read_from_both_ends() {
        for len in [0, 1, 127, 128, 20000] {
            let e = vec![b'q'; len];
            let enc = encode(&e);
            assert_eq!(enc.len(), entry_size(len));
            assert_eq!(entry_at(&enc, 0), (&e[..], enc.len()));
            assert_eq!(entry_before(&enc, enc.len()), (0, &e[..]));
        }
    }

    #[test]
    fn chunks_fill_to_the_limit_and_big_elements_stand_alone() {
        let mut l = List::default();
        for i in 0..2000 {
            l.push_back(format!("m:{i:06}").as_bytes());
        }
        // 10 bytes an entry: 819 to a chunk.
        assert_eq!(l.chunks.len(), 3);
        assert!(l.chunks.iter().all(|c| c.bytes().len() <= LIST_CHUNK_BYTES));
        l.push_front(&[b'x'; 10000]);
        assert_eq!((l.chunks.len(), l.chunks[0].count), (4, 1));
        assert_eq!(l.get(0).map(<[u8]>::len), Some(10000));
        assert_eq!(l.get(2000), Some(&b"m:001999"[..]));
    }

    #[derive(Debug, Clone)]
    enum Op {
        PushFront(Vec<u8>),
        PushBack(Vec<u8>),
        PopFront,
        PopBack,
        Set(usize, Vec<u8>),
        Insert(usize, Vec<u8>),
        Remove(usize),
        Trim(usize, usize),
        RemoveMatching(Vec<u8>, usize, bool),
    }

    fn elem() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            30 => (0u8..8).prop_map(|i| vec![b'a' + i; 300]),
            10 => (0u8..4).prop_map(|i| vec![b'0' + i]),
            1 => Just(vec![b'z'; 9000]),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            elem().prop_map(Op::PushFront),
            elem().prop_map(Op::PushBack),
            Just(Op::PopFront),
            Just(Op::PopBack),
            (any::<usize>(), elem()).prop_map(|(i, e)| Op::Set(i, e)),
            (any::<usize>(), elem()).prop_map(|(i, e)| Op::Insert(i, e)),
            any::<usize>().prop_map(Op::Remove),
            (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::Trim(a, b)),
            (elem(), 0usize..4, any::<bool>()).prop_map(|(e, n, t)| Op::RemoveMatching(e, n, t)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn list_matches_a_vecdeque(ops in prop::collection::vec(op(), 0..300)) {
            let mut l = List::default();
            let mut model: VecDeque<Vec<u8>> = VecDeque::new();
            for op in ops {
                let n = model.len();
                match op {
                    Op::PushFront(e) => { l.push_front(&e); model.push_front(e); }
                    Op::PushBack(e) => { l.push_back(&e); model.push_back(e); }
                    Op::PopFront => prop_assert_eq!(l.pop_front().map(Vec::from), model.pop_front()),
                    Op::PopBack => prop_assert_eq!(l.pop_back().map(Vec::from), model.pop_back()),
                    Op::Set(i, e) if n > 0 => { l.set(i % n, &e); model[i % n] = e; }
                    Op::Insert(i, e) => { l.insert(i % (n + 1), &e); model.insert(i % (n + 1), e); }
                    Op::Remove(i) if n > 0 => {
                        prop_assert_eq!(Vec::from(l.remove(i % n)), model.remove(i % n).unwrap());
                    }
                    Op::Trim(a, b) => {
                        let (from, to) = (a % (n + 2), b % (n + 2));
                        l.retain_range(from, to);
                        let kept: VecDeque<_> = model.iter().skip(from).take(to.saturating_sub(from)).cloned().collect();
                        model = kept;
                    }
                    Op::RemoveMatching(e, limit, from_tail) => {
                        let limit = if limit == 0 { usize::MAX } else { limit };
                        let mut removed = 0;
                        if from_tail {
                            let mut i = model.len();
                            while i > 0 && removed < limit {
                                i -= 1;
                                if model[i] == e { model.remove(i); removed += 1; }
                            }
                        } else {
                            let mut i = 0;
                            while i < model.len() && removed < limit {
                                if model[i] == e { model.remove(i); removed += 1; } else { i += 1; }
                            }
                        }
                        prop_assert_eq!(l.remove_matching(&e, limit, from_tail), removed);
                    }
                    _ => {}
                }
                prop_assert_eq!(l.len(), model.len());
                prop_assert_eq!(l.chunks.iter().map(|c| c.count as usize).sum::<usize>(), model.len());
                prop_assert!(l.chunks.iter().all(|c| c.count > 0
                    && (c.count == 1 || c.bytes().len() <= LIST_CHUNK_BYTES)));
            }
            let expected: Vec<Vec<u8>> = model.iter().cloned().collect();
            prop_assert_eq!(items(&l), expected.clone());
            let back: Vec<Vec<u8>> = l.iter().rev().map(<[u8]>::to_vec).collect();
            prop_assert_eq!(back, expected.iter().rev().cloned().collect::<Vec<_>>());
            for i in 0..=expected.len() {
                prop_assert_eq!(l.get(i).map(<[u8]>::to_vec), expected.get(i).cloned());
                let from: Vec<Vec<u8>> = l.iter_from(i).map(<[u8]>::to_vec).collect();
                prop_assert_eq!(from, expected[i..].to_vec());
            }
        }
    }
}
