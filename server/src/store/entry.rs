//! One key and its value, laid out to cost as little memory as Redis's own.
//!
//! Key and string value share a single heap allocation (`key ++ value`): one allocator call per
//! key instead of two, and no second allocation header. The table slot itself is 32 bytes.

/// Unix time in milliseconds; `0` in `expires_at` means "no deadline".
pub type UnixMillis = u64;

#[derive(Debug)]
pub struct Entry {
    blob: Box<[u8]>,
    key_len: u32,
    /// Reserved for the eviction issue: the leader's access clock (LRU/LFU), like Redis's
    /// 24-bit `lru` field. Never read by `apply`, so replicas may differ here harmlessly.
    pub(crate) access: u32,
    expires_at: UnixMillis,
}

impl Entry {
    pub fn new(key: &[u8], value: &[u8], expires_at: UnixMillis) -> Entry {
        Entry {
            blob: join(key, value),
            key_len: key.len() as u32,
            access: 0,
            expires_at,
        }
    }

    pub fn key(&self) -> &[u8] {
        &self.blob[..self.key_len as usize]
    }

    pub fn value(&self) -> &[u8] {
        &self.blob[self.key_len as usize..]
    }

    /// Replaces the value, keeping the key and deadline.
    pub fn set_value(&mut self, value: &[u8]) {
        self.blob = join(self.key(), value);
    }

    /// Grows or rewrites the value in place through a closure over a copy of it.
    pub fn update_value(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        let mut v = self.value().to_vec();
        f(&mut v);
        self.set_value(&v);
    }

    /// The deadline, if the key is volatile.
    pub fn expires_at(&self) -> Option<UnixMillis> {
        (self.expires_at != 0).then_some(self.expires_at)
    }

    /// Only the slot table may move a deadline, because it tracks volatile keys.
    pub(super) fn set_expires_at(&mut self, at: Option<UnixMillis>) {
        self.expires_at = at.unwrap_or(0);
    }

    /// Redis's rule: a key is expired once the clock is strictly past its deadline.
    pub fn is_expired(&self, now: UnixMillis) -> bool {
        self.expires_at != 0 && now > self.expires_at
    }

    /// Bytes this entry holds on the heap (key and value), for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.blob.len()
    }
}

fn join(key: &[u8], value: &[u8]) -> Box<[u8]> {
    let mut v = Vec::with_capacity(key.len() + value.len());
    v.extend_from_slice(key);
    v.extend_from_slice(value);
    v.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
    }

    #[test]
    fn key_and_value_round_trip() {
        let mut e = Entry::new(b"k", b"value", 0);
        assert_eq!(e.key(), b"k");
        assert_eq!(e.value(), b"value");
        e.update_value(|v| v.extend_from_slice(b"!"));
        assert_eq!(e.value(), b"value!");
        assert_eq!(e.key(), b"k");
        assert!(!e.is_expired(u64::MAX));
        e.set_expires_at(Some(10));
        assert!(!e.is_expired(10));
        assert!(e.is_expired(11));
    }
}
