//! The keyspace: one hash table per Redis Cluster slot, each behind its own lock.
//!
//! Why per slot rather than one big map: a `SCAN` cursor is simply the next slot to visit (stable
//! across resizes, no duplicates), `CLUSTER COUNTKEYSINSLOT`/`GETKEYSINSLOT` are direct, moving a
//! slot between shards moves one table, and 16384 locks make contention rare. Writers lock every
//! slot they touch, in slot order, for the whole operation, so a multi-key write (`MSET`) is
//! atomic for readers that do the same (`MGET`).
//!
//! Each slot also keeps an index of its keys' deadlines (`deadlines.rs`) and publishes the
//! earliest, so active expiry visits only slots with something due and, in them, only the due
//! keys (see `expiry.rs`).
//!
//! Memory accounting has one choke point too: every change goes through [`SlotsMut`], which
//! adds or subtracts [`Entry::mem_usage`] and the slot tables' own allocations, so
//! [`Keyspace::used_memory`] is exact for what it estimates and equal on every replica.
//!
//! The same choke point keeps each slot's *write stamps* for `WATCH`: [`STAMP_BUCKETS`]
//! wrapping counters per slot (allocated on the slot's first write), one of which, the key's
//! bucket ([`stamp_bucket`]), every change of a key bumps — a write that stores the same
//! value included, so a transaction watching the key aborts as Redis's does (see
//! [`watch_print`]). The stamps are replicated state: `apply` reads them, so they follow only
//! from the log (and from snapshots, which carry them), never from anything local.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use hashbrown::HashTable;
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use shoal_protocol::{key_slot, SLOT_COUNT};
use smallvec::SmallVec;

/// Most operations touch one or two slots: keep their lists off the heap.
type SlotList<G> = SmallVec<[(u16, G); 2]>;

use super::access::Tracking;
use super::deadlines::{DeadlineIndex, Record};
use super::entry::{Entry, UnixMillis};

/// No deadline known in a slot.
const NEVER: u64 = u64::MAX;

/// Write stamp counters per slot (see the module documentation).
pub const STAMP_BUCKETS: usize = 16;

/// A slot's write stamps: one wrapping counter per bucket of keys.
pub type Stamps = [u32; STAMP_BUCKETS];

/// Bytes a slot's stamps take once allocated (counted in the slot's memory account).
fn stamps_bytes() -> usize {
    super::entry::allocation_size(std::mem::size_of::<Stamps>())
}

/// The stamp bucket of `key` within its slot. A hash with no per-process seed (unlike the
/// tables' hasher): every replica must bump the same bucket for the same key.
pub fn stamp_bucket(key: &[u8]) -> usize {
    crc32fast::hash(key) as usize % STAMP_BUCKETS
}

type Hasher = foldhash::fast::RandomState;

pub struct Keyspace {
    slots: Box<[RwLock<SlotTable>]>,
    /// Per slot: the earliest deadline in it (`NEVER` if it has no volatile key), its deadline
    /// index's top. Written only while the slot's write lock is held.
    next_deadline: Box<[AtomicU64]>,
    keys: AtomicUsize,
    volatile: AtomicUsize,
    /// Bytes held: every entry's `mem_usage` plus every slot table's allocation.
    used: AtomicUsize,
    /// How reads and writes update entries' access words (eviction).
    tracking: Arc<Tracking>,
    hasher: Hasher,
}

#[derive(Default)]
pub struct SlotTable {
    entries: HashTable<Entry>,
    volatile: usize,
    /// A record per volatile key (and dead ones below the top, see `deadlines.rs`).
    deadlines: DeadlineIndex,
    /// This slot's share of `Keyspace::used`.
    bytes: usize,
    /// Write stamps, allocated on the slot's first write (`None` reads as all zero).
    stamps: Option<Box<Stamps>>,
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

    /// Keys that carry a deadline.
    pub fn volatile_len(&self) -> usize {
        self.volatile
    }

    /// Records in the deadline index, live and dead.
    pub fn deadline_records(&self) -> usize {
        self.deadlines.len()
    }

    /// Bytes of the slot's own structures (hash table, deadline index, write stamps),
    /// entries excluded.
    pub fn structure_bytes(&self) -> usize {
        self.entries.allocation_size()
            + self.deadlines.allocation_size()
            + self.stamps.as_ref().map_or(0, |_| stamps_bytes())
    }

    /// The write stamp of `key`'s bucket (0 before the slot's first write).
    pub fn stamp(&self, key: &[u8]) -> u32 {
        self.stamps.as_ref().map_or(0, |s| s[stamp_bucket(key)])
    }

    /// The slot's write stamps (`None`: never written, all zero).
    pub fn stamps(&self) -> Option<Stamps> {
        self.stamps.as_deref().copied()
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
                digest = digest.wrapping_add(fingerprint(e));
            }
        }
        digest
    }

    pub fn new() -> Keyspace {
        Self::with_tracking(Arc::default())
    }

    /// A keyspace whose access words follow the node's eviction settings.
    pub fn with_tracking(tracking: Arc<Tracking>) -> Keyspace {
        Keyspace {
            slots: (0..SLOT_COUNT).map(|_| RwLock::default()).collect(),
            next_deadline: (0..SLOT_COUNT).map(|_| AtomicU64::new(NEVER)).collect(),
            keys: AtomicUsize::new(0),
            volatile: AtomicUsize::new(0),
            used: AtomicUsize::new(0),
            tracking,
            hasher: Hasher::default(),
        }
    }

    /// Bytes the keyspace holds (entries and tables), as estimated by [`Entry::mem_usage`].
    pub fn used_memory(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn tracking(&self) -> &Tracking {
        &self.tracking
    }

    /// The slots holding keys (only keys with a deadline if `volatile`): where eviction
    /// samples. Takes each slot's read lock briefly.
    pub fn populated_slots(&self, volatile: bool) -> Vec<u16> {
        (0..SLOT_COUNT)
            .filter(|&s| {
                let t = self.slots[s as usize].read();
                if volatile {
                    t.volatile > 0
                } else {
                    !t.is_empty()
                }
            })
            .collect()
    }

    /// Calls `f` on up to `n` entries of `slot` (only volatile ones if `volatile`), taken
    /// consecutively in table order from position `start` (modulo the slot's size), as Redis's
    /// `dictGetSomeKeys` samples: hash order is random order. Looks at no more than `16 * n`
    /// entries, so a slot of mostly persistent keys cannot stall a volatile sample.
    pub fn sample_slot(
        &self,
        slot: u16,
        start: usize,
        n: usize,
        volatile: bool,
        mut f: impl FnMut(&Entry),
    ) {
        let table = self.slots[slot as usize].read();
        let len = table.len();
        if len == 0 {
            return;
        }
        let skip = start % len;
        let mut taken = 0;
        let candidates = table
            .entries
            .iter()
            .skip(skip)
            .chain(table.entries.iter().take(skip));
        for e in candidates.take(16 * n) {
            if volatile && e.expires_at().is_none() {
                continue;
            }
            f(e);
            taken += 1;
            if taken == n {
                break;
            }
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
        SlotsMut {
            guards,
            ks: self,
            now: 0,
            in_place: Vec::new(),
        }
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

    /// Whether any slot has a key past its deadline at `now` (16384 atomic loads, no locks).
    pub fn any_slot_due(&self, now: UnixMillis) -> bool {
        self.next_deadline
            .iter()
            .any(|at| at.load(Ordering::Relaxed) < now)
    }

    /// Appends the keys of `slot` expired at `now` to `out` (which may hold other slots' keys
    /// already). Visits only the slot's due records, not its other keys.
    pub fn expired_in_slot(&self, slot: u16, now: UnixMillis, out: &mut Vec<bytes::Bytes>) {
        let table = self.slots[slot as usize].read();
        table.deadlines.due(now, |(at, hash)| {
            for e in table.entries.iter_hash(hash) {
                if e.expires_at() == Some(at) && e.is_expired(now) && self.hash(e.key()) == hash {
                    out.push(bytes::Bytes::copy_from_slice(e.key()));
                }
            }
        });
    }

    /// Whether `record` names a key of `table` that still has that deadline.
    fn record_is_live(&self, table: &SlotTable, (at, hash): Record) -> bool {
        table
            .entries
            .iter_hash(hash)
            .any(|e| e.expires_at() == Some(at) && self.hash(e.key()) == hash)
    }

    /// Calls `f` on every entry of `slot`, expired ones included (a snapshot must reproduce the
    /// state exactly), and returns the slot's write stamps as they are with those entries.
    /// Only this slot's read lock is held, and only for the call: a snapshot copies the
    /// keyspace one slot at a time.
    pub fn export_slot(&self, slot: u16, f: &mut impl FnMut(&Entry)) -> Option<Stamps> {
        let table = self.slots[slot as usize].read();
        for entry in table.entries.iter() {
            f(entry);
        }
        table.stamps()
    }

    /// Removes `keys` and inserts `entries` in their place (a transaction's scratch copy).
    pub fn replace_keys(&self, keys: &[bytes::Bytes], entries: Vec<Entry>) {
        let mut slots = self.write_slots(keys.iter().map(|k| &k[..]));
        for k in keys {
            slots.remove(k);
        }
        for e in entries {
            slots.insert(e);
        }
    }

    /// Replaces the whole keyspace with `entries` and every slot's write stamps with `stamps`
    /// (installing a snapshot; a slot not listed gets none, i.e. all zero). Every slot's write
    /// lock is held for the whole swap, so readers see the old contents or the new, never a mix;
    /// the changes go through [`SlotsMut`], so key, volatile and deadline bookkeeping stays
    /// exact. A key given twice keeps its last entry.
    pub fn replace_all(
        &self,
        entries: impl IntoIterator<Item = Entry>,
        stamps: impl IntoIterator<Item = (u16, Stamps)>,
    ) {
        let mut slots = self.write_all_slots();
        slots.clear();
        for entry in entries {
            slots.insert(entry);
        }
        // The inserts bumped stamps; the snapshot's are the replicated ones.
        let mut given: Vec<Option<Stamps>> = vec![None; SLOT_COUNT as usize];
        for (slot, s) in stamps {
            if let Some(at) = given.get_mut(slot as usize) {
                *at = Some(s);
            }
        }
        for (slot, s) in given.into_iter().enumerate() {
            slots.set_stamps(slot as u16, s);
        }
    }

    /// The write stamps of `slot` (`None`: never written, all zero).
    pub fn slot_stamps(&self, slot: u16) -> Option<Stamps> {
        self.slots[slot as usize].read().stamps()
    }
}

/// A hash of an entry's key, value and deadline, the same on every replica (no per-process
/// seed): the data digest adds them up, and [`watch_print`] builds on it.
pub fn fingerprint(e: &Entry) -> u64 {
    let value = e
        .collection()
        .map_or_else(|| crc32fast::hash(e.value()) as u64, |v| v.digest());
    let h = (crc32fast::hash(e.key()) as u64) << 32 ^ value;
    crate::cluster::hash2(0x5e7d, h, e.expires_at().unwrap_or(0))
}

/// What `WATCH` records of a key and `EXEC`'s `apply` compares: the live entry's
/// [`fingerprint`] (or absence) combined with the write stamp of the key's bucket, so any
/// write to the key in between changes it, even one that leaves the same value. The one
/// function both sides use ([`SlotsRef::watch_print`], [`SlotsMut::watch_print`]).
pub fn watch_print(entry: Option<&Entry>, stamp: u32) -> u64 {
    // Absent: a constant no present key's fingerprint is expected to equal.
    let data = entry.map_or(0x0ab5_e17b_u64, fingerprint);
    crate::cluster::hash2(0x3a7c, data, stamp as u64)
}

/// A slot held for reading.
pub struct SlotRef<'a> {
    table: RwLockReadGuard<'a, SlotTable>,
    ks: &'a Keyspace,
}

impl SlotRef<'_> {
    /// The live entry for `key` at time `now`; an expired entry reads as absent. Counts as an
    /// access for eviction.
    pub fn get(&self, key: &[u8], now: UnixMillis) -> Option<&Entry> {
        self.ks.touch(self.peek(key, now), now)
    }

    /// Like [`get`](Self::get), without counting as an access (`OBJECT`, `MEMORY USAGE`).
    pub fn peek(&self, key: &[u8], now: UnixMillis) -> Option<&Entry> {
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
        self.ks.touch(
            find(table, self.ks.hash(key), key).filter(|e| !e.is_expired(now)),
            now,
        )
    }

    /// [`watch_print`] of `key` at `now` (`WATCH` on the slot's leader). Counts as an access.
    pub fn watch_print(&self, key: &[u8], now: UnixMillis) -> u64 {
        let stamp = table_of(&self.guards, key).map_or(0, |t| t.stamp(key));
        watch_print(self.get(key, now), stamp)
    }
}

impl Keyspace {
    fn touch<'e>(&self, entry: Option<&'e Entry>, now: UnixMillis) -> Option<&'e Entry> {
        if let Some(e) = entry {
            e.set_access(self.tracking.touched(e.access(), now));
        }
        entry
    }
}

/// Slots held for writing. Every change goes through here so key and deadline bookkeeping
/// stays exact.
pub struct SlotsMut<'a> {
    guards: SlotList<RwLockWriteGuard<'a, SlotTable>>,
    ks: &'a Keyspace,
    /// The clock access words are stamped with (the entry's `now_ms` in `apply`).
    now: UnixMillis,
    /// Keys lent out for changes in place ([`SlotsMut::get_mut_in_place`]) with the size
    /// they were accounted at; their new size is accounted when they are replaced or removed,
    /// or when these slots are released.
    in_place: Vec<(Vec<u8>, usize)>,
}

impl Drop for SlotsMut<'_> {
    fn drop(&mut self) {
        for (key, before) in std::mem::take(&mut self.in_place) {
            let hash = self.ks.hash(&key);
            let ks = self.ks;
            let table = self.table(&key);
            let after = find(table, hash, &key).map_or(before, Entry::mem_usage);
            Self::account(ks, &mut table.bytes, before, after);
        }
    }
}

impl SlotsMut<'_> {
    /// How entries' access words are kept (eviction settings).
    pub fn tracking(&self) -> &Tracking {
        self.ks.tracking()
    }

    /// The live entry for `key` for a change in place that [`modify`](Self::modify) cannot
    /// express (a collection command mutating its value through several calls); its size is
    /// accounted afterwards (see `in_place`).
    pub fn get_mut_in_place(&mut self, key: &[u8], now: UnixMillis) -> Option<&mut Entry> {
        let size = self.get(key, now)?.mem_usage();
        if !self.in_place.iter().any(|(k, _)| k == key) {
            self.in_place.push((key.to_vec(), size));
        }
        // Lent out to be changed: counts as a write even if the caller changes nothing.
        self.bump(key);
        self.get_mut(key, now)
    }

    /// Bumps the write stamp of `key`'s bucket, allocating the slot's stamps on its first
    /// write (accounted like the slot's other structures).
    fn bump(&mut self, key: &[u8]) {
        let ks = self.ks;
        let table = self.table(key);
        if table.stamps.is_none() {
            table.stamps = Some(Box::new([0; STAMP_BUCKETS]));
            Self::account(ks, &mut table.bytes, 0, stamps_bytes());
        }
        let stamps = table.stamps.as_mut().expect("allocated above");
        let bucket = &mut stamps[stamp_bucket(key)];
        *bucket = bucket.wrapping_add(1);
    }

    /// Sets `slot`'s write stamps (installing a snapshot), accounting their allocation.
    fn set_stamps(&mut self, slot: u16, stamps: Option<Stamps>) {
        let ks = self.ks;
        let table = self.table_at(slot);
        let before = table.stamps.as_ref().map_or(0, |_| stamps_bytes());
        table.stamps = stamps.map(Box::new);
        let after = table.stamps.as_ref().map_or(0, |_| stamps_bytes());
        Self::account(ks, &mut table.bytes, before, after);
    }

    /// [`watch_print`] of `key` at `now` (`EXEC`'s check inside `apply`). The stamp is read
    /// before the lookup, which may reclaim an expired entry (a change that does not bump:
    /// the key read as absent before it too).
    pub fn watch_print(&mut self, key: &[u8], now: UnixMillis) -> u64 {
        let stamp = self.table(key).stamp(key);
        watch_print(self.get(key, now), stamp)
    }

    /// The size `key`'s entry is accounted at: `current`, unless it was lent out in place.
    fn accounted_size(&mut self, key: &[u8], current: usize) -> usize {
        match self.in_place.iter().position(|(k, _)| k == key) {
            Some(i) => self.in_place.swap_remove(i).1,
            None => current,
        }
    }

    /// Stamps accesses made through these slots with `now` (`apply` passes its entry's clock).
    pub fn at(mut self, now: UnixMillis) -> Self {
        self.now = now;
        self
    }

    /// Adds `after - before` bytes to the slot's and the keyspace's accounts.
    fn account(ks: &Keyspace, slot_bytes: &mut usize, before: usize, after: usize) {
        if after >= before {
            *slot_bytes += after - before;
            ks.used.fetch_add(after - before, Ordering::Relaxed);
        } else {
            *slot_bytes -= before - after;
            ks.used.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

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
    /// exactly what Redis would. Counts as an access. Private: a change in place must go
    /// through [`modify`](Self::modify), which accounts for the size change.
    fn get_mut(&mut self, key: &[u8], now: UnixMillis) -> Option<&mut Entry> {
        let hash = self.ks.hash(key);
        let ks = self.ks;
        let stamp = self.now;
        let slot = self.slot_of(key);
        let expired = find(self.table_at(slot), hash, key)?.is_expired(now);
        if expired {
            // Reads as absent already: reclaiming it changes nothing a reader (or WATCH) sees.
            self.remove_entry(key, false);
            return None;
        }
        let e = self
            .table_at(slot)
            .entries
            .find_mut(hash, |e| e.key() == key)?;
        e.set_access(ks.tracking.touched(e.access(), stamp));
        Some(e)
    }

    /// The live entry for `key` (an expired one is removed first), read-only.
    pub fn get(&mut self, key: &[u8], now: UnixMillis) -> Option<&Entry> {
        self.get_mut(key, now).map(|e| &*e)
    }

    /// Changes the live entry for `key` in place (its key and deadline must stay as they are)
    /// and accounts for its new size. `None` if the key is absent or expired.
    pub fn modify<R>(
        &mut self,
        key: &[u8],
        now: UnixMillis,
        f: impl FnOnce(&mut Entry) -> R,
    ) -> Option<R> {
        let ks = self.ks;
        let entry = self.get_mut(key, now)?;
        let before = entry.mem_usage();
        let result = f(entry);
        let after = entry.mem_usage();
        Self::account(ks, &mut self.table(key).bytes, before, after);
        self.bump(key);
        Some(result)
    }

    /// Inserts or replaces the entry for its key; returns the previous one.
    pub fn insert(&mut self, entry: Entry) -> Option<Entry> {
        self.bump(entry.key());
        let hash = self.ks.hash(entry.key());
        let deadline = entry.expires_at();
        let ks = self.ks;
        let slot = self.slot_of(entry.key());
        let stamp = self.now;
        let table = self.table_at(slot);
        let table_before = table.entries.allocation_size();
        let added = entry.mem_usage();
        let old = match table.entries.find_mut(hash, |e| e.key() == entry.key()) {
            Some(existing) => {
                // An overwrite counts as an access of the key (Redis: `lookupKeyWrite`).
                entry.set_access(ks.tracking.touched(existing.access(), stamp));
                Some(std::mem::replace(existing, entry))
            }
            None => {
                entry.set_access(ks.tracking.initial(stamp));
                table
                    .entries
                    .insert_unique(hash, entry, |e| ks.hash(e.key()));
                ks.keys.fetch_add(1, Ordering::Relaxed);
                None
            }
        };
        let table_after = table.entries.allocation_size();
        let removed = match &old {
            Some(e) => self.accounted_size(e.key(), e.mem_usage()),
            None => 0,
        };
        let table = self.table_at(slot);
        Self::account(
            ks,
            &mut table.bytes,
            removed + table_before,
            added + table_after,
        );
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
        let old_deadline = old.as_ref().and_then(Entry::expires_at);
        Self::reindex(ks, slot, table, hash, old_deadline, deadline);
        old
    }

    /// Removes `key` (expired or not); returns the entry.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        self.remove_entry(key, true)
    }

    /// Removes `key`; bumps its write stamp if `bump` and it existed. Only the reclaim of an
    /// entry already expired at the clock of the change passes `false`.
    fn remove_entry(&mut self, key: &[u8], bump: bool) -> Option<Entry> {
        let hash = self.ks.hash(key);
        let ks = self.ks;
        let table = self.table(key);
        let entry = table
            .entries
            .find_entry(hash, |e| e.key() == key)
            .ok()?
            .remove()
            .0;
        if bump {
            self.bump(key);
        }
        let size = self.accounted_size(key, entry.mem_usage());
        let slot = self.slot_of(key);
        let table = self.table_at(slot);
        Self::account(ks, &mut table.bytes, size, 0);
        ks.keys.fetch_sub(1, Ordering::Relaxed);
        if entry.expires_at().is_some() {
            table.volatile -= 1;
            ks.volatile.fetch_sub(1, Ordering::Relaxed);
            Self::reindex(ks, slot, table, hash, entry.expires_at(), None);
        }
        Some(entry)
    }

    /// Removes `key` if it is expired at `now`; a key rewritten since it was found expired is
    /// live again and stays.
    pub fn remove_if_expired(&mut self, key: &[u8], now: UnixMillis) -> bool {
        let hash = self.ks.hash(key);
        let expired = find(self.table(key), hash, key).is_some_and(|e| e.is_expired(now));
        if expired {
            // Read as absent at `now` already: no stamp bump (see `get_mut`).
            self.remove_entry(key, false);
        }
        expired
    }

    /// Sets or clears the deadline of an existing key. Returns false if the key is absent.
    pub fn set_expiry(&mut self, key: &[u8], at: Option<UnixMillis>) -> bool {
        let hash = self.ks.hash(key);
        let ks = self.ks;
        let slot = self.slot_of(key);
        if find(self.table_at(slot), hash, key).is_none() {
            return false;
        }
        self.bump(key);
        let table = self.table_at(slot);
        let entry = table
            .entries
            .find_mut(hash, |e| e.key() == key)
            .expect("found just above");
        let old_deadline = entry.expires_at();
        let was = old_deadline.is_some();
        let before = entry.mem_usage();
        entry.set_expires_at(at);
        let after = entry.mem_usage();
        Self::account(ks, &mut table.bytes, before, after);
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
        Self::reindex(ks, slot, table, hash, old_deadline, at);
        true
    }

    /// Brings `slot`'s deadline index in step with its key of `hash` whose deadline went from
    /// `old` to `new` (the table and its volatile count have changed already), accounts the
    /// index's size and publishes the slot's earliest deadline.
    ///
    /// The old record is popped if it is the top, and then any dead records that surface, so
    /// the top is always a live key's deadline; a dead record below the top waits, unless the
    /// index holds more than twice as many records as the slot has volatile keys (plus 16),
    /// when it is rebuilt from the table: the index never holds more than that.
    fn reindex(
        ks: &Keyspace,
        slot: u16,
        table: &mut SlotTable,
        hash: u64,
        old: Option<UnixMillis>,
        new: Option<UnixMillis>,
    ) {
        if old == new {
            return;
        }
        let before = table.deadlines.allocation_size();
        if let Some(at) = old {
            if table.deadlines.top() == Some((at, hash)) {
                table.deadlines.pop();
                while let Some(top) = table.deadlines.top() {
                    if ks.record_is_live(table, top) {
                        break;
                    }
                    table.deadlines.pop();
                }
            }
        }
        if let Some(at) = new {
            table.deadlines.push(at, hash);
        }
        // Dead records outnumber live ones (plus a little slack for small slots): rebuild.
        // Each rebuild reads the slot's volatile keys once and follows at least as many
        // changes that left records dead, so writes pay for it in amortised O(1).
        if table.deadlines.len() > 2 * table.volatile + 16 {
            let SlotTable {
                entries, deadlines, ..
            } = table;
            deadlines.rebuild(
                entries
                    .iter()
                    .filter_map(|e| e.expires_at().map(|at| (at, ks.hash(e.key())))),
            );
        }
        let after = table.deadlines.allocation_size();
        Self::account(ks, &mut table.bytes, before, after);
        let earliest = table.deadlines.top().map_or(NEVER, |(at, _)| at);
        ks.next_deadline[slot as usize].store(earliest, Ordering::Relaxed);
    }

    /// Empties every held slot. Every key of a slot that held any may have changed, so each
    /// bucket's write stamp is bumped (the stamps stay allocated).
    pub fn clear(&mut self) {
        for (slot, table) in &mut self.guards {
            self.ks
                .keys
                .fetch_sub(table.entries.len(), Ordering::Relaxed);
            self.ks
                .volatile
                .fetch_sub(table.volatile, Ordering::Relaxed);
            self.ks.used.fetch_sub(table.bytes, Ordering::Relaxed);
            if table.stamps.is_none() && !table.entries.is_empty() {
                table.stamps = Some(Box::new([0; STAMP_BUCKETS]));
            }
            if let Some(stamps) = table.stamps.as_mut() {
                for s in stamps.iter_mut() {
                    *s = s.wrapping_add(1);
                }
            }
            table.entries.clear();
            table.entries.shrink_to_fit(|_| 0);
            table.deadlines.clear();
            table.volatile = 0;
            table.bytes = table.stamps.as_ref().map_or(0, |_| stamps_bytes());
            self.ks.used.fetch_add(table.bytes, Ordering::Relaxed);
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

    /// The cursor collects many slots' keys into one batch: a slot with nothing expired keeps
    /// its own earliest deadline as its bound even when the batch already holds keys.
    #[test]
    fn a_slot_with_nothing_expired_is_not_marked_due_by_other_slots_keys() {
        let ks = Keyspace::new();
        ks.write_slots([&b"later"[..]])
            .insert(Entry::new(b"later", b"v", 5000));
        let slot = key_slot(b"later");
        let mut out = vec![bytes::Bytes::from_static(b"another slot's key")];
        ks.expired_in_slot(slot, 1001, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(ks.slot_next_deadline(slot), Some(5000));
    }
}
