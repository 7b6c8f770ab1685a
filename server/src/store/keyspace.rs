//! The keyspace: one hash table per Redis Cluster slot, each behind its own lock.
//!
//! Why per slot rather than one big map: a `SCAN` cursor is simply the next slot to visit (stable
//! across resizes, no duplicates), `CLUSTER COUNTKEYSINSLOT`/`GETKEYSINSLOT` are direct, moving a
//! slot between shards moves one table, and 16384 locks make contention rare. Writers lock every
//! slot they touch, in slot order, for the whole operation, so a multi-key write (`MSET`) is
//! atomic for readers that do the same (`MGET`).
//!
//! Each slot also publishes the earliest deadline it may hold, so active expiry visits only slots
//! with something due (see `expiry.rs`).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hashbrown::HashTable;
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use shoal_protocol::{key_slot, SLOT_COUNT};
use smallvec::SmallVec;

/// Most operations touch one or two slots: keep their lists off the heap.
type SlotList<G> = SmallVec<[(u16, G); 2]>;

use super::entry::{Entry, UnixMillis};

/// No deadline known in a slot.
const NEVER: u64 = u64::MAX;

type Hasher = foldhash::fast::RandomState;

pub struct Keyspace {
    slots: Box<[RwLock<SlotTable>]>,
    /// Per slot: a lower bound of the earliest deadline in it (`NEVER` if it has no volatile
    /// key). Written only while the slot's lock is held.
    next_deadline: Box<[AtomicU64]>,
    keys: AtomicUsize,
    volatile: AtomicUsize,
    hasher: Hasher,
}

#[derive(Default)]
pub struct SlotTable {
    entries: HashTable<Entry>,
    volatile: usize,
}

impl SlotTable {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }
}

impl Default for Keyspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Keyspace {
    /// An order-independent digest of the live entries (keys, values, deadlines): equal on two
    /// replicas that hold the same data. Reads every entry, so it is for tests and checks.
    pub fn digest(&self, now: UnixMillis) -> u64 {
        let mut digest = 0u64;
        for slot in 0..shoal_protocol::SLOT_COUNT {
            let table = self.read_slot(slot);
            for e in table.table().iter().filter(|e| !e.is_expired(now)) {
                let value = e
                    .collection()
                    .map_or_else(|| crc32fast::hash(e.value()) as u64, |v| v.digest());
                let h = (crc32fast::hash(e.key()) as u64) << 32 ^ value;
                let h = crate::cluster::hash2(0x5e7d, h, e.expires_at().unwrap_or(0));
                digest = digest.wrapping_add(h);
            }
        }
        digest
    }

    pub fn new() -> Keyspace {
        Keyspace {
            slots: (0..SLOT_COUNT).map(|_| RwLock::default()).collect(),
            next_deadline: (0..SLOT_COUNT).map(|_| AtomicU64::new(NEVER)).collect(),
            keys: AtomicUsize::new(0),
            volatile: AtomicUsize::new(0),
            hasher: Hasher::default(),
        }
    }

    /// Keys stored, including expired ones not yet reclaimed (as Redis's `DBSIZE`).
    pub fn len(&self) -> usize {
        self.keys.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys that carry a deadline.
    pub fn volatile_len(&self) -> usize {
        self.volatile.load(Ordering::Relaxed)
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Read access to one slot.
    pub fn read_slot(&self, slot: u16) -> SlotRef<'_> {
        SlotRef {
            table: self.slots[slot as usize].read(),
            ks: self,
        }
    }

    /// Read access to the slot of `key`.
    pub fn read_key_slot(&self, key: &[u8]) -> SlotRef<'_> {
        self.read_slot(key_slot(key))
    }

    /// Write access to the slots of `keys`, all held together (taken in slot order, so two
    /// writers can never deadlock).
    pub fn write_slots<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) -> SlotsMut<'_> {
        self.write_slot_list(sorted_slots(keys))
    }

    /// Write access to every slot (FLUSHALL).
    pub fn write_all_slots(&self) -> SlotsMut<'_> {
        self.write_slot_list(0..SLOT_COUNT)
    }

    fn write_slot_list(&self, slots: impl IntoIterator<Item = u16>) -> SlotsMut<'_> {
        let guards = slots
            .into_iter()
            .map(|s| (s, self.slots[s as usize].write()))
            .collect();
        SlotsMut { guards, ks: self }
    }

    /// Read access to the slots of `keys`, held together (MGET sees an MSET whole or not at all).
    pub fn read_slots<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) -> SlotsRef<'_> {
        let guards = sorted_slots(keys)
            .into_iter()
            .map(|s| (s, self.slots[s as usize].read()))
            .collect();
        SlotsRef { guards, ks: self }
    }

    /// The earliest deadline slot `slot` may hold (`None`: no volatile keys).
    pub fn slot_next_deadline(&self, slot: u16) -> Option<UnixMillis> {
        match self.next_deadline[slot as usize].load(Ordering::Relaxed) {
            NEVER => None,
            at => Some(at),
        }
    }

    /// Collects the keys of `slot` expired at `now`, and refreshes the slot's published
    /// earliest deadline from the keys that remain.
    pub fn expired_in_slot(&self, slot: u16, now: UnixMillis, out: &mut Vec<bytes::Bytes>) {
        let table = self.slots[slot as usize].read();
        let mut earliest = NEVER;
        for e in table.entries.iter() {
            match e.expires_at() {
                Some(_) if e.is_expired(now) => out.push(bytes::Bytes::copy_from_slice(e.key())),
                Some(at) => earliest = earliest.min(at),
                None => {}
            }
        }
        // Still under the read lock: no writer can lower the deadline concurrently. Keys just
        // collected stay "due" until their delete is applied.
        let due = if out.is_empty() { earliest } else { now };
        self.next_deadline[slot as usize].store(due.min(earliest), Ordering::Relaxed);
    }

    /// Calls `f` on every entry of `slot`, expired ones included (a snapshot must reproduce the
    /// state exactly). Only this slot's read lock is held, and only for the call: a snapshot
    /// copies the keyspace one slot at a time.
    pub fn export_slot(&self, slot: u16, f: &mut impl FnMut(&Entry)) {
        let table = self.slots[slot as usize].read();
        for entry in table.entries.iter() {
            f(entry);
        }
    }

    /// Replaces the whole keyspace with `entries` (installing a snapshot). Every slot's write
    /// lock is held for the whole swap, so readers see the old contents or the new, never a mix;
    /// the changes go through [`SlotsMut`], so key, volatile and deadline bookkeeping stays
    /// exact. A key given twice keeps its last entry.
    pub fn replace_all(&self, entries: impl IntoIterator<Item = Entry>) {
        let mut slots = self.write_all_slots();
        slots.clear();
        for entry in entries {
            slots.insert(entry);
        }
    }
}

/// A slot held for reading.
pub struct SlotRef<'a> {
    table: RwLockReadGuard<'a, SlotTable>,
    ks: &'a Keyspace,
}

impl SlotRef<'_> {
    /// The live entry for `key` at time `now`; an expired entry reads as absent.
    pub fn get(&self, key: &[u8], now: UnixMillis) -> Option<&Entry> {
        find(&self.table, self.ks.hash(key), key).filter(|e| !e.is_expired(now))
    }

    pub fn table(&self) -> &SlotTable {
        &self.table
    }
}

/// Several slots held for reading.
pub struct SlotsRef<'a> {
    guards: SlotList<RwLockReadGuard<'a, SlotTable>>,
    ks: &'a Keyspace,
}

impl SlotsRef<'_> {
    pub fn get(&self, key: &[u8], now: UnixMillis) -> Option<&Entry> {
        let table = table_of(&self.guards, key)?;
        find(table, self.ks.hash(key), key).filter(|e| !e.is_expired(now))
    }
}

/// Slots held for writing. Every change goes through here so key and deadline bookkeeping
/// stays exact.
pub struct SlotsMut<'a> {
    guards: SlotList<RwLockWriteGuard<'a, SlotTable>>,
    ks: &'a Keyspace,
}

impl SlotsMut<'_> {
    fn table(&mut self, key: &[u8]) -> &mut SlotTable {
        // One slot held (the common case): no need to hash the key to find it.
        if self.guards.len() == 1 {
            debug_assert_eq!(self.guards[0].0, key_slot(key));
            return &mut self.guards[0].1;
        }
        self.table_at(key_slot(key))
    }

    fn slot_of(&self, key: &[u8]) -> u16 {
        match self.guards.as_slice() {
            [(slot, _)] => *slot,
            _ => key_slot(key),
        }
    }

    fn table_at(&mut self, slot: u16) -> &mut SlotTable {
        let i = self
            .guards
            .binary_search_by_key(&slot, |(s, _)| *s)
            .expect("a write touched a slot it did not lock");
        &mut self.guards[i].1
    }

    /// The live entry for `key`; an entry expired at `now` is removed first, so the caller sees
    /// exactly what Redis would.
    pub fn get_mut(&mut self, key: &[u8], now: UnixMillis) -> Option<&mut Entry> {
        let hash = self.ks.hash(key);
        let ks = self.ks;
        let table = self.table(key);
        let found = table.entries.find_entry(hash, |e| e.key() == key).ok()?;
        if !found.get().is_expired(now) {
            return Some(found.into_mut());
        }
        found.remove();
        table.volatile -= 1;
        ks.keys.fetch_sub(1, Ordering::Relaxed);
        ks.volatile.fetch_sub(1, Ordering::Relaxed);
        None
    }

    /// Like [`get_mut`](Self::get_mut) but read-only.
    pub fn get(&mut self, key: &[u8], now: UnixMillis) -> Option<&Entry> {
        self.get_mut(key, now).map(|e| &*e)
    }

    /// Inserts or replaces the entry for its key; returns the previous one.
    pub fn insert(&mut self, entry: Entry) -> Option<Entry> {
        let hash = self.ks.hash(entry.key());
        let deadline = entry.expires_at();
        let ks = self.ks;
        let slot = self.slot_of(entry.key());
        let table = self.table_at(slot);
        let old = match table.entries.find_mut(hash, |e| e.key() == entry.key()) {
            Some(existing) => Some(std::mem::replace(existing, entry)),
            None => {
                table
                    .entries
                    .insert_unique(hash, entry, |e| ks.hash(e.key()));
                ks.keys.fetch_add(1, Ordering::Relaxed);
                None
            }
        };
        let was_volatile = old.as_ref().is_some_and(|e| e.expires_at().is_some());
        match (was_volatile, deadline.is_some()) {
            (false, true) => {
                table.volatile += 1;
                ks.volatile.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                table.volatile -= 1;
                ks.volatile.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        if let Some(at) = deadline {
            ks.next_deadline[slot as usize].fetch_min(at, Ordering::Relaxed);
        }
        old
    }

    /// Removes `key` (expired or not); returns the entry.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let hash = self.ks.hash(key);
        let ks = self.ks;
        let table = self.table(key);
        let entry = table
            .entries
            .find_entry(hash, |e| e.key() == key)
            .ok()?
            .remove()
            .0;
        ks.keys.fetch_sub(1, Ordering::Relaxed);
        if entry.expires_at().is_some() {
            table.volatile -= 1;
            ks.volatile.fetch_sub(1, Ordering::Relaxed);
        }
        Some(entry)
    }

    /// Removes `key` if it is expired at `now`; a key rewritten since it was found expired is
    /// live again and stays.
    pub fn remove_if_expired(&mut self, key: &[u8], now: UnixMillis) -> bool {
        let hash = self.ks.hash(key);
        let expired = find(self.table(key), hash, key).is_some_and(|e| e.is_expired(now));
        if expired {
            self.remove(key);
        }
        expired
    }

    /// Sets or clears the deadline of an existing key. Returns false if the key is absent.
    pub fn set_expiry(&mut self, key: &[u8], at: Option<UnixMillis>) -> bool {
        let hash = self.ks.hash(key);
        let ks = self.ks;
        let slot = self.slot_of(key);
        let table = self.table_at(slot);
        let Some(entry) = table.entries.find_mut(hash, |e| e.key() == key) else {
            return false;
        };
        let was = entry.expires_at().is_some();
        entry.set_expires_at(at);
        match (was, at) {
            (false, Some(_)) => {
                table.volatile += 1;
                ks.volatile.fetch_add(1, Ordering::Relaxed);
            }
            (true, None) => {
                table.volatile -= 1;
                ks.volatile.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        if let Some(at) = at {
            ks.next_deadline[slot as usize].fetch_min(at, Ordering::Relaxed);
        }
        true
    }

    /// Empties every held slot.
    pub fn clear(&mut self) {
        for (slot, table) in &mut self.guards {
            self.ks
                .keys
                .fetch_sub(table.entries.len(), Ordering::Relaxed);
            self.ks
                .volatile
                .fetch_sub(table.volatile, Ordering::Relaxed);
            table.entries.clear();
            table.entries.shrink_to_fit(|_| 0);
            table.volatile = 0;
            self.ks.next_deadline[*slot as usize].store(NEVER, Ordering::Relaxed);
        }
    }
}

/// The distinct slots of `keys`, in order: the order locks are always taken in.
fn sorted_slots<'k>(keys: impl IntoIterator<Item = &'k [u8]>) -> SmallVec<[u16; 2]> {
    let mut slots: SmallVec<[u16; 2]> = keys.into_iter().map(key_slot).collect();
    slots.sort_unstable();
    slots.dedup();
    slots
}

fn table_of<'g, G: std::ops::Deref<Target = SlotTable>>(
    guards: &'g [(u16, G)],
    key: &[u8],
) -> Option<&'g SlotTable> {
    let slot = key_slot(key);
    let i = guards.binary_search_by_key(&slot, |(s, _)| *s).ok()?;
    Some(&guards[i].1)
}

fn find<'t>(table: &'t SlotTable, hash: u64, key: &[u8]) -> Option<&'t Entry> {
    table.entries.find(hash, |e| e.key() == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_inserts_removes_and_deadlines() {
        let ks = Keyspace::new();
        {
            let mut w = ks.write_slots([&b"a"[..], b"b"]);
            w.insert(Entry::new(b"a", b"1", 0));
            w.insert(Entry::new(b"b", b"2", 100));
            w.insert(Entry::new(b"b", b"3", 0));
            assert_eq!(ks.len(), 2);
            assert_eq!(ks.volatile_len(), 0);
            assert!(w.set_expiry(b"a", Some(50)));
            assert_eq!(ks.volatile_len(), 1);
            // Expired at 51: a write sees it absent and reclaims it.
            assert!(w.get(b"a", 51).is_none());
            assert_eq!(ks.len(), 1);
            assert_eq!(ks.volatile_len(), 0);
        }
        assert_eq!(ks.read_key_slot(b"b").get(b"b", 0).unwrap().value(), b"3");
        ks.write_all_slots().clear();
        assert!(ks.is_empty());
    }

    #[test]
    fn expired_keys_are_found_only_in_due_slots() {
        let ks = Keyspace::new();
        ks.write_slots([&b"k"[..]])
            .insert(Entry::new(b"k", b"v", 1000));
        let slot = key_slot(b"k");
        assert_eq!(ks.slot_next_deadline(slot), Some(1000));
        let mut out = Vec::new();
        ks.expired_in_slot(slot, 1000, &mut out);
        assert!(out.is_empty());
        assert_eq!(ks.slot_next_deadline(slot), Some(1000));
        ks.expired_in_slot(slot, 1001, &mut out);
        assert_eq!(out, vec![bytes::Bytes::from_static(b"k")]);
        ks.write_slots([&b"k"[..]]).remove(b"k");
        out.clear();
        ks.expired_in_slot(slot, 1001, &mut out);
        assert_eq!(ks.slot_next_deadline(slot), None);
    }
}
