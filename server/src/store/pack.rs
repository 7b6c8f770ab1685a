//! Flat byte buffers for small collections: the idea of Redis's listpack and intset.
//!
//! A small hash or sorted set is one exact-size allocation of length-prefixed entries (no box
//! per element, no spare capacity), a small integer set one sorted array of the narrowest
//! integer width that holds every member. Lookups scan (the sizes are capped at Redis's
//! thresholds: 128 entries of at most 64 bytes), and every change rewrites the buffer in place
//! through one `realloc`, as Redis does.
//!
//! Layouts:
//! - string: LEB128 length, then the bytes;
//! - score: one byte `b`; `b <= SCORE_SMALL_MAX` is the integer score `b` itself, `SCORE_I16` /
//!   `SCORE_I32` are followed by that integer little-endian, `SCORE_F64` by the f64's bits
//!   (anything that is not an exactly representable small integer). -0.0 is stored as the
//!   integer 0, as in Redis's listpack.

/// Largest score stored in its tag byte alone.
const SCORE_SMALL_MAX: u8 = 0xfc;
const SCORE_I16: u8 = 0xfd;
const SCORE_I32: u8 = 0xfe;
const SCORE_F64: u8 = 0xff;

/// Appends `s` with its length prefix.
pub fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    let mut n = s.len();
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(s);
}

/// The string at `at` and the offset after it. The buffers are only ever written by
/// [`put_str`], so a malformed one is a bug, not input: indexing panics on it.
pub fn get_str(buf: &[u8], at: usize) -> (&[u8], usize) {
    let (mut n, mut shift, mut i) = (0usize, 0u32, at);
    loop {
        let b = buf[i];
        i += 1;
        n |= ((b & 0x7f) as usize) << shift;
        if b < 0x80 {
            break;
        }
        shift += 7;
    }
    (&buf[i..i + n], i + n)
}

/// Bytes [`put_str`] writes for a string of `len` bytes.
pub fn str_size(len: usize) -> usize {
    let mut prefix = 1;
    let mut n = len >> 7;
    while n > 0 {
        prefix += 1;
        n >>= 7;
    }
    prefix + len
}

/// Appends a score, as small as it exactly fits.
pub fn put_score(out: &mut Vec<u8>, s: f64) {
    // `as` saturates (and maps NaN to 0), so the round trip holds only for exact integers.
    // -0.0 equals 0 and is stored as 0, as Redis's listpack stores it (its `d2string` writes
    // an integral score as an integer): a packed sorted set reads a -0 score back as 0.
    let n = s as i64;
    if n as f64 == s {
        if (0..=SCORE_SMALL_MAX as i64).contains(&n) {
            out.push(n as u8);
            return;
        }
        if let Ok(x) = i16::try_from(n) {
            out.push(SCORE_I16);
            out.extend_from_slice(&x.to_le_bytes());
            return;
        }
        if let Ok(x) = i32::try_from(n) {
            out.push(SCORE_I32);
            out.extend_from_slice(&x.to_le_bytes());
            return;
        }
    }
    out.push(SCORE_F64);
    out.extend_from_slice(&s.to_bits().to_le_bytes());
}

/// The score at `at` and the offset after it.
pub fn get_score(buf: &[u8], at: usize) -> (f64, usize) {
    let body = at + 1;
    match buf[at] {
        SCORE_I16 => {
            let b: [u8; 2] = buf[body..body + 2].try_into().expect("2 bytes");
            (i16::from_le_bytes(b) as f64, body + 2)
        }
        SCORE_I32 => {
            let b: [u8; 4] = buf[body..body + 4].try_into().expect("4 bytes");
            (i32::from_le_bytes(b) as f64, body + 4)
        }
        SCORE_F64 => {
            let b: [u8; 8] = buf[body..body + 8].try_into().expect("8 bytes");
            (f64::from_bits(u64::from_le_bytes(b)), body + 8)
        }
        small => (small as f64, body),
    }
}

/// An exact-size byte buffer that is rewritten in place: what a packed collection lives in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Buf(Box<[u8]>);

impl Buf {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Replaces bytes `at..end` with `new`. One `realloc` (grown exactly, or shrunk to fit),
    /// so the buffer never holds spare capacity.
    pub fn splice(&mut self, at: usize, end: usize, new: &[u8]) {
        let mut v = std::mem::take(&mut self.0).into_vec();
        v.reserve_exact(new.len().saturating_sub(end - at));
        v.splice(at..end, new.iter().copied());
        self.0 = v.into_boxed_slice();
    }

    /// The allocator's bytes for this buffer.
    pub fn mem_usage(&self) -> usize {
        super::entry::allocation_size(self.0.len())
    }
}

impl From<Vec<u8>> for Buf {
    fn from(v: Vec<u8>) -> Buf {
        Buf(v.into_boxed_slice())
    }
}

// ---------------------------------------------------------------- intset

/// A sorted set of integers in the narrowest width that holds them all (Redis's intset:
/// 2, 4 or 8 bytes a member). Widening happens on insert; like Redis, never narrowing back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntSet {
    I16(Box<[i16]>),
    I32(Box<[i32]>),
    I64(Box<[i64]>),
}

impl Default for IntSet {
    fn default() -> Self {
        IntSet::I16(Box::default())
    }
}

/// Inserts `x` into sorted `b` (one exact realloc); false if present.
fn insert_sorted<T: Ord + Copy>(b: &mut Box<[T]>, x: T) -> bool {
    match b.binary_search(&x) {
        Ok(_) => false,
        Err(i) => {
            let mut v = std::mem::take(b).into_vec();
            v.reserve_exact(1);
            v.insert(i, x);
            *b = v.into_boxed_slice();
            true
        }
    }
}

fn remove_sorted<T: Ord + Copy>(b: &mut Box<[T]>, x: T) -> bool {
    match b.binary_search(&x) {
        Ok(i) => {
            let mut v = std::mem::take(b).into_vec();
            v.remove(i);
            *b = v.into_boxed_slice();
            true
        }
        Err(_) => false,
    }
}

impl IntSet {
    pub fn len(&self) -> usize {
        match self {
            IntSet::I16(b) => b.len(),
            IntSet::I32(b) => b.len(),
            IntSet::I64(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, n: i64) -> bool {
        match self {
            IntSet::I16(b) => i16::try_from(n).is_ok_and(|x| b.binary_search(&x).is_ok()),
            IntSet::I32(b) => i32::try_from(n).is_ok_and(|x| b.binary_search(&x).is_ok()),
            IntSet::I64(b) => b.binary_search(&n).is_ok(),
        }
    }

    /// Adds `n`; true if it is new.
    pub fn insert(&mut self, n: i64) -> bool {
        loop {
            match self {
                IntSet::I16(b) => match i16::try_from(n) {
                    Ok(x) => return insert_sorted(b, x),
                    Err(_) => *self = IntSet::I32(b.iter().map(|&x| x.into()).collect()),
                },
                IntSet::I32(b) => match i32::try_from(n) {
                    Ok(x) => return insert_sorted(b, x),
                    Err(_) => *self = IntSet::I64(b.iter().map(|&x| x.into()).collect()),
                },
                IntSet::I64(b) => return insert_sorted(b, n),
            }
        }
    }

    pub fn remove(&mut self, n: i64) -> bool {
        match self {
            IntSet::I16(b) => i16::try_from(n).is_ok_and(|x| remove_sorted(b, x)),
            IntSet::I32(b) => i32::try_from(n).is_ok_and(|x| remove_sorted(b, x)),
            IntSet::I64(b) => remove_sorted(b, n),
        }
    }

    /// The members in ascending order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = i64> + '_> {
        match self {
            IntSet::I16(b) => Box::new(b.iter().map(|&x| x.into())),
            IntSet::I32(b) => Box::new(b.iter().map(|&x| x.into())),
            IntSet::I64(b) => Box::new(b.iter().copied()),
        }
    }

    /// The allocator's bytes for the members.
    pub fn mem_usage(&self) -> usize {
        let bytes = match self {
            IntSet::I16(b) => b.len() * 2,
            IntSet::I32(b) => b.len() * 4,
            IntSet::I64(b) => b.len() * 8,
        };
        super::entry::allocation_size(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strings_round_trip_with_their_prefix_size() {
        for len in [0, 1, 127, 128, 300, 16383, 16384, 70000] {
            let s = vec![b'x'; len];
            let mut buf = vec![7];
            put_str(&mut buf, &s);
            assert_eq!(buf.len(), 1 + str_size(len), "len {len}");
            assert_eq!(get_str(&buf, 1), (&s[..], buf.len()));
        }
    }

    #[test]
    fn scores_take_the_smallest_exact_form() {
        let cases: [(f64, usize); 12] = [
            (0.0, 1),
            (252.0, 1),
            (253.0, 3),
            (-1.0, 3),
            (-32768.0, 3),
            (40000.0, 5),
            (-2147483648.0, 5),
            (4294967296.0, 9),
            (-0.0, 1),
            (1.5, 9),
            (f64::INFINITY, 9),
            (f64::NEG_INFINITY, 9),
        ];
        for (s, size) in cases {
            let mut buf = Vec::new();
            put_score(&mut buf, s);
            assert_eq!(buf.len(), size, "score {s}");
            let (back, end) = get_score(&buf, 0);
            // -0 comes back as 0 (Redis's listpack does the same).
            let want = if s == 0.0 { 0.0f64 } else { s };
            assert_eq!((back.to_bits(), end), (want.to_bits(), size), "score {s}");
        }
    }

    #[test]
    fn buf_splices_exactly() {
        let mut b = Buf::default();
        b.splice(0, 0, b"hello");
        b.splice(5, 5, b" world");
        b.splice(0, 5, b"HI");
        assert_eq!(b.bytes(), b"HI world");
        b.splice(2, 8, b"");
        assert_eq!(b.bytes(), b"HI");
        assert_eq!(b.mem_usage(), 8);
    }

    #[test]
    fn intset_widens_as_needed() {
        let mut s = IntSet::default();
        assert!(s.insert(5) && s.insert(-3) && !s.insert(5));
        assert!(matches!(s, IntSet::I16(_)));
        assert!(s.insert(100_000));
        assert!(matches!(s, IntSet::I32(_)));
        assert!(s.insert(i64::MIN));
        assert!(matches!(s, IntSet::I64(_)));
        assert_eq!(s.iter().collect::<Vec<_>>(), [i64::MIN, -3, 5, 100_000]);
        assert!(s.remove(5) && !s.remove(5) && s.contains(-3) && !s.contains(6));
        assert_eq!(s.len(), 3);
    }

    proptest! {
        #[test]
        fn scores_round_trip(s in any::<f64>().prop_filter("not NaN", |s| !s.is_nan())) {
            let mut buf = Vec::new();
            put_score(&mut buf, s);
            prop_assert_eq!(get_score(&buf, 0), (s, buf.len()));
            // Exact to the bit, but for -0, which is stored as 0 (see `put_score`).
            let want = if s == 0.0 { 0.0f64 } else { s };
            prop_assert_eq!(get_score(&buf, 0).0.to_bits(), want.to_bits());
        }

        #[test]
        fn intset_matches_a_btreeset(ops in prop::collection::vec(
            (any::<bool>(), prop_oneof![-300i64..300, any::<i32>().prop_map(i64::from), any::<i64>()]),
            0..200,
        )) {
            let mut model = std::collections::BTreeSet::new();
            let mut s = IntSet::default();
            for (add, n) in ops {
                if add {
                    prop_assert_eq!(s.insert(n), model.insert(n));
                } else {
                    prop_assert_eq!(s.remove(n), model.remove(&n));
                }
                prop_assert_eq!(s.contains(n), model.contains(&n));
            }
            prop_assert_eq!(s.iter().collect::<Vec<_>>(), model.into_iter().collect::<Vec<_>>());
        }
    }
}
