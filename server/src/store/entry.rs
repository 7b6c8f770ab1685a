//! One key and its value, laid out to cost no more memory than Redis's own.
//!
//! Everything lives in a single heap allocation: `[deadline (8 bytes, only if the key is
//! volatile)] ++ key ++ value`. One allocator call per key instead of two or three, and the table
//! slot is 24 bytes: at 1 M keys a per-slot table runs around half full, so every byte of the
//! slot counts about twice. Persistent keys (most of a cache) pay nothing for deadlines.
//!
//! A collection (hash, list, set, sorted set) keeps the same layout with the address of its
//! boxed [`Value`] in place of the string bytes, flagged by `IS_COLLECTION`. That keeps string
//! keys at 24 bytes a slot (an enum of the two would make every slot 32); the price is the small
//! `unsafe` below, confined to this file: the entry owns the box, frees it in `Drop`, and lends
//! it out only through `&self` / `&mut self`.

use std::sync::atomic::{AtomicU32, Ordering};

/// Unix time in milliseconds.
pub type UnixMillis = u64;

use super::value::{Kind, Value};

/// Set in `key_len` when the blob starts with a deadline.
const HAS_DEADLINE: u32 = 1 << 31;
/// Set in `key_len` when the value bytes are the address of a boxed [`Value`].
const IS_COLLECTION: u32 = 1 << 30;
const KEY_LEN_MASK: u32 = IS_COLLECTION - 1;
const DEADLINE_LEN: usize = 8;
const POINTER_LEN: usize = std::mem::size_of::<usize>();

#[derive(Debug)]
pub struct Entry {
    blob: Box<[u8]>,
    /// The key's length, with `HAS_DEADLINE` and `IS_COLLECTION` as its top bits.
    key_len: u32,
    /// The access clock of eviction (LRU time or LFU counter, see `store::access`), like
    /// Redis's 24-bit `lru` field. Atomic because reads update it under a shared slot lock.
    /// Never read by `apply`, so replicas may differ here harmlessly.
    pub(crate) access: AtomicU32,
}

/// A deep copy (a transaction's scratch view of its keys): its own collection, if any, and the
/// access word as it is.
impl Clone for Entry {
    fn clone(&self) -> Entry {
        let expires_at = self.expires_at().unwrap_or(0);
        let copy = match self.collection() {
            Some(v) => Entry::new_collection(self.key(), v.clone(), expires_at),
            None => Entry::new(self.key(), self.raw_value(), expires_at),
        };
        copy.set_access(self.access());
        copy
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

    /// A new entry holding a collection; `expires_at == 0` means persistent.
    pub fn new_collection(key: &[u8], value: Value, expires_at: UnixMillis) -> Entry {
        let address = Box::into_raw(Box::new(value)).expose_provenance();
        let mut entry = Entry::new(key, &address.to_ne_bytes(), expires_at);
        entry.key_len |= IS_COLLECTION;
        entry
    }

    fn key_end(&self) -> usize {
        self.offset() + (self.key_len & KEY_LEN_MASK) as usize
    }

    pub fn key(&self) -> &[u8] {
        &self.blob[self.offset()..self.key_end()]
    }

    /// The raw value bytes: the string, or for a collection the address of its box (only this
    /// file reads those).
    fn raw_value(&self) -> &[u8] {
        &self.blob[self.key_end()..]
    }

    fn collection_ptr(&self) -> Option<*mut Value> {
        if self.key_len & IS_COLLECTION == 0 {
            return None;
        }
        let bytes: [u8; POINTER_LEN] = self.raw_value().try_into().expect("an address");
        Some(std::ptr::with_exposed_provenance_mut(usize::from_ne_bytes(
            bytes,
        )))
    }

    /// The string value; a collection reads as empty (callers that may meet one check
    /// [`Entry::string`] or [`Entry::kind`] first).
    pub fn value(&self) -> &[u8] {
        if self.key_len & IS_COLLECTION != 0 {
            return &[];
        }
        self.raw_value()
    }

    /// The string value, or `WRONGTYPE` for a collection.
    pub fn string(&self) -> Result<&[u8], crate::error::CommandError> {
        match self.key_len & IS_COLLECTION {
            0 => Ok(self.raw_value()),
            _ => Err(crate::error::CommandError::WrongType),
        }
    }

    pub fn kind(&self) -> Kind {
        self.collection().map_or(Kind::String, Value::kind)
    }

    /// The collection this entry holds, if it is one.
    pub fn collection(&self) -> Option<&Value> {
        // SAFETY: the pointer came from `Box::into_raw` in `new_collection` and is owned by this
        // entry until `Drop` (or `set_value`, which clears the flag) frees it; the borrow of
        // `self` keeps it alive and unaliased by writers.
        self.collection_ptr().map(|p| unsafe { &*p })
    }

    /// The collection, mutably.
    pub fn collection_mut(&mut self) -> Option<&mut Value> {
        // SAFETY: as in `collection`; `&mut self` makes this the only reference.
        self.collection_ptr().map(|p| unsafe { &mut *p })
    }

    /// Frees the collection (if any) and marks the entry as a string again.
    fn drop_collection(&mut self) {
        if let Some(p) = self.collection_ptr() {
            self.key_len &= !IS_COLLECTION;
            // SAFETY: the flag is cleared first, so this box is freed exactly once.
            drop(unsafe { Box::from_raw(p) });
        }
    }

    /// The same value and deadline under another key (RENAME, COPY's move), consuming `self`.
    pub fn rekeyed(mut self, key: &[u8]) -> Entry {
        let flags = self.key_len & (HAS_DEADLINE | IS_COLLECTION);
        let moved = Entry {
            blob: build(self.expires_at(), key, self.raw_value()),
            key_len: key.len() as u32 | flags,
            access: AtomicU32::new(self.access()),
        };
        // The collection (if any) now belongs to `moved`.
        self.key_len &= !IS_COLLECTION;
        moved
    }

    /// Replaces the value with a string, keeping the key and deadline.
    pub fn set_value(&mut self, value: &[u8]) {
        self.drop_collection();
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
                self.blob = build(at, self.key(), self.raw_value());
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
            + self
                .collection()
                .map_or(0, |v| std::mem::size_of::<Value>() + v.mem_usage())
    }

    /// What this entry costs the allocator, outside the slot table's 24-byte cell (the table
    /// is accounted by the keyspace). The one place per-entry memory is estimated: a new value
    /// type extends this method and nothing else.
    pub fn mem_usage(&self) -> usize {
        allocation_size(self.blob.len())
            + self.collection().map_or(0, |v| {
                allocation_size(std::mem::size_of::<Value>()) + v.mem_usage()
            })
    }

    /// The eviction access word (see `store::access`).
    pub fn access(&self) -> u32 {
        self.access.load(Ordering::Relaxed)
    }

    pub fn set_access(&self, word: u32) {
        self.access.store(word, Ordering::Relaxed);
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.drop_collection();
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
        let mut c = Entry::new_collection(b"h", Value::List(Default::default()), 7);
        assert_eq!(
            (c.kind(), c.value(), c.expires_at()),
            (Kind::List, &b""[..], Some(7))
        );
        assert!(c.string().is_err());
        c.set_expires_at(None);
        let c = c.rekeyed(b"other");
        assert_eq!(
            (c.key(), c.kind(), c.expires_at()),
            (&b"other"[..], Kind::List, None)
        );
        let v = Entry::new(b"", b"", 5);
        assert_eq!(
            (v.key(), v.value(), v.expires_at()),
            (&b""[..], &b""[..], Some(5))
        );
    }
}
