//! One key and its value, laid out to cost no more memory than Redis's own.
//!
//! Everything lives in a single heap allocation: `[deadline (8 bytes, only if the key is
//! volatile)] ++ key ++ value`. One allocator call per key instead of two or three, and the table
//! slot is 24 bytes: at 1 M keys a per-slot table runs around half full, so every byte of the
//! slot counts about twice. Persistent keys (most of a cache) pay nothing for deadlines.

use std::sync::atomic::{AtomicU32, Ordering};

/// Unix time in milliseconds.
pub type UnixMillis = u64;

/// Set in `key_len` when the blob starts with a deadline.
const HAS_DEADLINE: u32 = 1 << 31;
const DEADLINE_LEN: usize = 8;

#[derive(Debug)]
pub struct Entry {
    blob: Box<[u8]>,
    /// The key's length, with `HAS_DEADLINE` as its top bit.
    key_len: u32,
    /// The access clock of eviction (LRU time or LFU counter, see `store::access`), like
    /// Redis's 24-bit `lru` field. Atomic because reads update it under a shared slot lock.
    /// Never read by `apply`, so replicas may differ here harmlessly.
    pub(crate) access: AtomicU32,
}

/// A copy (a transaction's scratch view of its keys) keeps the access word as it is.
impl Clone for Entry {
    fn clone(&self) -> Entry {
        Entry {
            blob: self.blob.clone(),
            key_len: self.key_len,
            access: AtomicU32::new(self.access()),
        }
    }
}

impl Entry {
    /// A new entry; `expires_at == 0` means persistent.
    pub fn new(key: &[u8], value: &[u8], expires_at: UnixMillis) -> Entry {
        let deadline = (expires_at != 0).then_some(expires_at);
        Entry {
            blob: build(deadline, key, value),
            key_len: key.len() as u32 | if deadline.is_some() { HAS_DEADLINE } else { 0 },
            access: AtomicU32::new(0),
        }
    }

    fn offset(&self) -> usize {
        if self.key_len & HAS_DEADLINE != 0 {
            DEADLINE_LEN
        } else {
            0
        }
    }

    fn key_end(&self) -> usize {
        self.offset() + (self.key_len & !HAS_DEADLINE) as usize
    }

    pub fn key(&self) -> &[u8] {
        &self.blob[self.offset()..self.key_end()]
    }

    pub fn value(&self) -> &[u8] {
        &self.blob[self.key_end()..]
    }

    /// Replaces the value, keeping the key and deadline.
    pub fn set_value(&mut self, value: &[u8]) {
        self.blob = build(self.expires_at(), self.key(), value);
    }

    /// Rewrites the value through a closure over a copy of it.
    pub fn update_value(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        let mut v = self.value().to_vec();
        f(&mut v);
        self.set_value(&v);
    }

    /// The deadline, if the key is volatile.
    pub fn expires_at(&self) -> Option<UnixMillis> {
        (self.key_len & HAS_DEADLINE != 0).then(|| {
            let mut bytes = [0u8; DEADLINE_LEN];
            bytes.copy_from_slice(&self.blob[..DEADLINE_LEN]);
            u64::from_le_bytes(bytes)
        })
    }

    /// Only the slot table may move a deadline, because it tracks volatile keys.
    pub(super) fn set_expires_at(&mut self, at: Option<UnixMillis>) {
        match (self.expires_at(), at) {
            (Some(_), Some(at)) => self.blob[..DEADLINE_LEN].copy_from_slice(&at.to_le_bytes()),
            (None, None) => {}
            _ => {
                let len = self.key_len & !HAS_DEADLINE;
                self.blob = build(at, self.key(), self.value());
                self.key_len = len | if at.is_some() { HAS_DEADLINE } else { 0 };
            }
        }
    }

    /// Redis's rule: a key is expired once the clock is strictly past its deadline.
    pub fn is_expired(&self, now: UnixMillis) -> bool {
        self.expires_at().is_some_and(|at| now > at)
    }

    /// Bytes this entry holds on the heap, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.blob.len()
    }

    /// What this entry costs the allocator, outside the slot table's 24-byte cell (the table
    /// is accounted by the keyspace). The one place per-entry memory is estimated: a new value
    /// type extends this method and nothing else.
    pub fn mem_usage(&self) -> usize {
        allocation_size(self.blob.len())
    }

    /// The eviction access word (see `store::access`).
    pub fn access(&self) -> u32 {
        self.access.load(Ordering::Relaxed)
    }

    pub fn set_access(&self, word: u32) {
        self.access.store(word, Ordering::Relaxed);
    }
}

/// The bytes the allocator (mimalloc) really hands out for a request of `n`: 8-byte steps up to
/// 64 bytes, then four size classes per power of two (12.5% apart), as `_mi_bin` computes them.
/// Huge blocks (over 128 KiB in mimalloc's terms) are page-rounded instead.
pub fn allocation_size(n: usize) -> usize {
    const WORD: usize = 8;
    if n == 0 {
        return 0;
    }
    let words = n.div_ceil(WORD);
    if words <= 8 {
        return words * WORD;
    }
    if n > 128 * 1024 {
        return n.div_ceil(4096) * 4096;
    }
    let v = words - 1;
    let shift = (usize::BITS - 1 - v.leading_zeros()) - 2;
    (((v >> shift) + 1) << shift) * WORD
}

fn build(deadline: Option<UnixMillis>, key: &[u8], value: &[u8]) -> Box<[u8]> {
    let prefix = if deadline.is_some() { DEADLINE_LEN } else { 0 };
    let mut v = Vec::with_capacity(prefix + key.len() + value.len());
    if let Some(at) = deadline {
        v.extend_from_slice(&at.to_le_bytes());
    }
    v.extend_from_slice(key);
    v.extend_from_slice(value);
    v.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_is_24_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 24);
    }

    #[test]
    fn allocation_sizes_follow_mimalloc_bins() {
        let sizes: Vec<usize> = [1, 8, 9, 64, 65, 80, 81, 114, 129, 160, 161, 1000]
            .iter()
            .map(|&n| allocation_size(n))
            .collect();
        assert_eq!(sizes, [8, 8, 16, 64, 80, 80, 96, 128, 160, 160, 192, 1024]);
        assert_eq!(allocation_size(0), 0);
    }

    #[test]
    fn key_value_and_deadline_round_trip() {
        let mut e = Entry::new(b"k", b"value", 0);
        assert_eq!(
            (e.key(), e.value(), e.expires_at()),
            (&b"k"[..], &b"value"[..], None)
        );
        e.update_value(|v| v.extend_from_slice(b"!"));
        assert_eq!((e.key(), e.value()), (&b"k"[..], &b"value!"[..]));
        assert!(!e.is_expired(u64::MAX));
        e.set_expires_at(Some(10));
        assert_eq!(
            (e.key(), e.value(), e.expires_at()),
            (&b"k"[..], &b"value!"[..], Some(10))
        );
        assert!(!e.is_expired(10));
        assert!(e.is_expired(11));
        e.set_expires_at(Some(20));
        e.set_value(b"x");
        assert_eq!(
            (e.key(), e.value(), e.expires_at()),
            (&b"k"[..], &b"x"[..], Some(20))
        );
        e.set_expires_at(None);
        assert_eq!(
            (e.key(), e.value(), e.expires_at()),
            (&b"k"[..], &b"x"[..], None)
        );
        let v = Entry::new(b"", b"", 5);
        assert_eq!(
            (v.key(), v.value(), v.expires_at()),
            (&b""[..], &b""[..], Some(5))
        );
    }
}
