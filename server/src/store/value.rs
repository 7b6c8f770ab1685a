//! Collection values: hashes, lists, sets and sorted sets, each with a compact encoding for
//! small values and a general one for large ones, switched at Redis 7.0's default thresholds
//! (so `OBJECT ENCODING` answers as Redis does). Strings are not here: they stay inline in
//! [`Entry`](super::Entry)'s single allocation.
//!
//! The thresholds are cluster-wide constants, not per-node config: `apply` must pick the same
//! encoding on every replica. As in Redis, a value never converts back to its small encoding.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::entry::allocation_size;
use super::pack::{self, Buf, IntSet};
pub use super::quicklist::List;
use crate::numbers::parse_i64;

/// One element (field, value, member) of a collection.
pub type Elem = Box<[u8]>;

type Hasher = foldhash::fast::RandomState;

/// A large collection's table with the allocation bytes of its elements kept current, so
/// memory accounting ([`Value::mem_usage`], run on every write of the key) costs O(1) rather
/// than a walk over every element. Reads go through `Deref`; changes only through the
/// methods below, which keep the count.
#[derive(Clone, Debug, Default)]
pub struct Counted<T> {
    table: T,
    elem_bytes: usize,
}

impl<T> std::ops::Deref for Counted<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.table
    }
}

impl<T: PartialEq> PartialEq for Counted<T> {
    fn eq(&self, other: &Self) -> bool {
        self.table == other.table
    }
}

impl Counted<HashMap<Elem, Elem, Hasher>> {
    /// Sets `field` to `value`; true if the field is new.
    fn insert(&mut self, field: Elem, value: Elem) -> bool {
        let (f, v) = (allocation_size(field.len()), allocation_size(value.len()));
        match self.table.insert(field, value) {
            // The map keeps its own copy of the field: only the value changed.
            Some(old) => {
                self.elem_bytes = self.elem_bytes + v - allocation_size(old.len());
                false
            }
            None => {
                self.elem_bytes += f + v;
                true
            }
        }
    }

    fn remove(&mut self, field: &[u8]) -> bool {
        match self.table.remove_entry(field) {
            Some((f, v)) => {
                self.elem_bytes -= allocation_size(f.len()) + allocation_size(v.len());
                true
            }
            None => false,
        }
    }
}

impl FromIterator<(Elem, Elem)> for Counted<HashMap<Elem, Elem, Hasher>> {
    fn from_iter<I: IntoIterator<Item = (Elem, Elem)>>(pairs: I) -> Self {
        let mut table = Self::default();
        for (f, v) in pairs {
            table.insert(f, v);
        }
        table
    }
}

impl Counted<HashSet<Elem, Hasher>> {
    /// Adds `m`; true if it is new.
    fn insert(&mut self, m: Elem) -> bool {
        let size = allocation_size(m.len());
        let new = self.table.insert(m);
        if new {
            self.elem_bytes += size;
        }
        new
    }

    fn remove(&mut self, m: &[u8]) -> bool {
        let removed = self.table.remove(m);
        if removed {
            self.elem_bytes -= allocation_size(m.len());
        }
        removed
    }
}

impl FromIterator<Elem> for Counted<HashSet<Elem, Hasher>> {
    fn from_iter<I: IntoIterator<Item = Elem>>(members: I) -> Self {
        let mut table = Self::default();
        for m in members {
            table.insert(m);
        }
        table
    }
}

/// Redis's `hash-max-listpack-entries` / `-value` defaults.
pub const HASH_MAX_LISTPACK_ENTRIES: usize = 128;
pub const HASH_MAX_LISTPACK_VALUE: usize = 64;
/// Redis's `set-max-intset-entries` default.
pub const SET_MAX_INTSET_ENTRIES: usize = 512;
/// Redis's `zset-max-listpack-entries` / `-value` defaults.
pub const ZSET_MAX_LISTPACK_ENTRIES: usize = 128;
pub const ZSET_MAX_LISTPACK_VALUE: usize = 64;

/// A collection stored under a key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "Logical", into = "Logical")]
pub enum Value {
    Hash(Hash),
    List(List),
    Set(Set),
    ZSet(ZSet),
}

/// The kinds `TYPE` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    String,
    Hash,
    List,
    Set,
    ZSet,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Hash => "hash",
            Kind::List => "list",
            Kind::Set => "set",
            Kind::ZSet => "zset",
        }
    }
}

impl Value {
    pub fn kind(&self) -> Kind {
        match self {
            Value::Hash(_) => Kind::Hash,
            Value::List(_) => Kind::List,
            Value::Set(_) => Kind::Set,
            Value::ZSet(_) => Kind::ZSet,
        }
    }

    /// Redis's name for the encoding (`OBJECT ENCODING`).
    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Hash(Hash::Pack(_)) => "listpack",
            Value::Hash(Hash::Table(_)) => "hashtable",
            // Redis 7.0 always answers quicklist for lists.
            Value::List(_) => "quicklist",
            Value::Set(Set::Ints(_)) => "intset",
            Value::Set(Set::Table(_)) => "hashtable",
            Value::ZSet(ZSet::Pack(_)) => "listpack",
            Value::ZSet(ZSet::Skip(_)) => "skiplist",
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Value::Hash(h) => h.len(),
            Value::List(l) => l.len(),
            Value::Set(s) => s.len(),
            Value::ZSet(z) => z.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Value::Hash(h) => h.is_empty(),
            Value::List(l) => l.is_empty(),
            Value::Set(s) => s.is_empty(),
            Value::ZSet(z) => z.is_empty(),
        }
    }

    /// Heap bytes this value holds (its buffers, element allocations and container overhead
    /// estimated from capacities, each rounded to the allocator's size class): what memory
    /// accounting charges the key for its value.
    pub fn mem_usage(&self) -> usize {
        const BOX: usize = std::mem::size_of::<Elem>();
        match self {
            Value::Hash(Hash::Pack(b)) => b.mem_usage(),
            Value::Hash(Hash::Table(m)) => {
                allocation_size(std::mem::size_of_val(&**m))
                    + m.capacity() * (2 * BOX + 1)
                    + m.elem_bytes
            }
            Value::List(l) => l.mem_usage(),
            Value::Set(Set::Ints(v)) => v.mem_usage(),
            Value::Set(Set::Table(s)) => {
                allocation_size(std::mem::size_of_val(&**s))
                    + s.capacity() * (BOX + 1)
                    + s.elem_bytes
            }
            Value::ZSet(ZSet::Pack(b)) => b.mem_usage(),
            Value::ZSet(ZSet::Skip(s)) => {
                // Each member is held twice (index and order); B-tree nodes run ~2/3 full.
                allocation_size(std::mem::size_of::<Skip>())
                    + s.scores.capacity() * (BOX + 9)
                    + s.order.len() * (8 + BOX) * 3 / 2
                    + 2 * s.member_bytes
            }
        }
    }

    /// An order-independent digest where order does not matter (hash, set), ordered where it
    /// does (list, sorted set): equal on replicas that hold the same value.
    pub fn digest(&self) -> u64 {
        let h = |b: &[u8]| crc32fast::hash(b) as u64;
        let pair = |a: &[u8], b: &[u8]| crate::cluster::hash2(0x4a5, h(a), h(b));
        let sum = |it: &mut dyn Iterator<Item = u64>| it.fold(0u64, |acc, x| acc.wrapping_add(x));
        let ordered = |it: &mut dyn Iterator<Item = u64>| {
            it.fold(0u64, |acc, x| crate::cluster::hash2(0x11, acc, x))
        };
        let body = match self {
            Value::Hash(hash) => sum(&mut hash.iter().map(|(f, v)| pair(f, v))),
            Value::List(l) => ordered(&mut l.iter().map(h)),
            Value::Set(s) => sum(&mut s.members().map(|m| h(&m))),
            Value::ZSet(z) => ordered(&mut z.iter().map(|(s, m)| pair(&s.to_le_bytes(), m))),
        };
        crate::cluster::hash2(self.kind() as u64, body, self.len() as u64)
    }
}

fn elem(b: &[u8]) -> Elem {
    b.into()
}

// ---------------------------------------------------------------- hash

/// Field → value. A small hash is one packed buffer of `field, value, field, value ...` in
/// insertion order (Redis's listpack, so `HGETALL` lists them in the order Redis does); a large
/// one a hash table.
#[derive(Clone, Debug, PartialEq)]
pub enum Hash {
    Pack(Buf),
    Table(Box<Counted<HashMap<Elem, Elem, Hasher>>>),
}

impl Default for Hash {
    fn default() -> Self {
        Hash::Pack(Buf::default())
    }
}

/// One pair of a packed hash: where it lies in the buffer and what it holds.
struct PackedPair<'a> {
    at: usize,
    value_at: usize,
    end: usize,
    field: &'a [u8],
    value: &'a [u8],
}

fn packed_pairs(buf: &[u8]) -> impl Iterator<Item = PackedPair<'_>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= buf.len() {
            return None;
        }
        let (field, value_at) = pack::get_str(buf, at);
        let (value, end) = pack::get_str(buf, value_at);
        let pair = PackedPair {
            at,
            value_at,
            end,
            field,
            value,
        };
        at = end;
        Some(pair)
    })
}

impl Hash {
    pub fn len(&self) -> usize {
        match self {
            Hash::Pack(b) => packed_pairs(b.bytes()).count(),
            Hash::Table(m) => m.len(),
        }
    }

    /// Without counting a packed hash's entries.
    pub fn is_empty(&self) -> bool {
        match self {
            Hash::Pack(b) => b.bytes().is_empty(),
            Hash::Table(m) => m.is_empty(),
        }
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        match self {
            Hash::Pack(b) => packed_pairs(b.bytes())
                .find(|p| p.field == field)
                .map(|p| p.value),
            Hash::Table(m) => m.get(field).map(|x| &x[..]),
        }
    }

    /// Sets `field`; true if it is new.
    pub fn insert(&mut self, field: &[u8], value: &[u8]) -> bool {
        if let Hash::Pack(b) = self {
            let small =
                field.len() <= HASH_MAX_LISTPACK_VALUE && value.len() <= HASH_MAX_LISTPACK_VALUE;
            let mut count = 0;
            let mut found = None;
            for p in packed_pairs(b.bytes()) {
                count += 1;
                if p.field == field {
                    found = Some((p.value_at, p.end));
                    break;
                }
            }
            match found {
                Some((value_at, end)) if small => {
                    let mut new = Vec::with_capacity(pack::str_size(value.len()));
                    pack::put_str(&mut new, value);
                    b.splice(value_at, end, &new);
                    return false;
                }
                None if small && count < HASH_MAX_LISTPACK_ENTRIES => {
                    let mut new = Vec::with_capacity(
                        pack::str_size(field.len()) + pack::str_size(value.len()),
                    );
                    pack::put_str(&mut new, field);
                    pack::put_str(&mut new, value);
                    let len = b.bytes().len();
                    b.splice(len, len, &new);
                    return true;
                }
                _ => {}
            }
            let table = packed_pairs(b.bytes())
                .map(|p| (elem(p.field), elem(p.value)))
                .collect();
            *self = Hash::Table(Box::new(table));
        }
        match self {
            Hash::Table(m) => m.insert(elem(field), elem(value)),
            Hash::Pack(_) => unreachable!("converted above"),
        }
    }

    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self {
            Hash::Pack(b) => {
                let found = packed_pairs(b.bytes())
                    .find(|p| p.field == field)
                    .map(|p| (p.at, p.end));
                match found {
                    Some((at, end)) => {
                        b.splice(at, end, &[]);
                        true
                    }
                    None => false,
                }
            }
            Hash::Table(m) => m.remove(field),
        }
    }

    pub fn iter(&self) -> Box<dyn Iterator<Item = (&[u8], &[u8])> + '_> {
        match self {
            Hash::Pack(b) => Box::new(packed_pairs(b.bytes()).map(|p| (p.field, p.value))),
            Hash::Table(m) => Box::new(m.iter().map(|(f, x)| (&f[..], &x[..]))),
        }
    }

    /// A small hash holding `pairs` as they come (a snapshot's packed hash).
    fn packed(pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Hash {
        let mut buf = Vec::new();
        for (f, v) in pairs {
            pack::put_str(&mut buf, &f);
            pack::put_str(&mut buf, &v);
        }
        Hash::Pack(buf.into())
    }
}

// ---------------------------------------------------------------- set

/// Members. A set of only integers (Redis's `string2ll` form) is a sorted packed array of them,
/// as Redis's intset, until it has more than `SET_MAX_INTSET_ENTRIES`.
#[derive(Clone, Debug, PartialEq)]
pub enum Set {
    Ints(IntSet),
    Table(Box<Counted<HashSet<Elem, Hasher>>>),
}

impl Default for Set {
    fn default() -> Self {
        Set::Ints(IntSet::default())
    }
}

impl Set {
    pub fn len(&self) -> usize {
        match self {
            Set::Ints(v) => v.len(),
            Set::Table(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, m: &[u8]) -> bool {
        match self {
            Set::Ints(v) => parse_i64(m).is_some_and(|n| v.contains(n)),
            Set::Table(s) => s.contains(m),
        }
    }

    /// Adds `m`; true if it is new.
    pub fn insert(&mut self, m: &[u8]) -> bool {
        if let Set::Ints(v) = self {
            if let Some(n) = parse_i64(m) {
                if v.contains(n) {
                    return false;
                }
                if v.len() < SET_MAX_INTSET_ENTRIES {
                    return v.insert(n);
                }
            }
            let table = v
                .iter()
                .map(|n| elem(itoa::Buffer::new().format(n).as_bytes()))
                .collect();
            *self = Set::Table(Box::new(table));
        }
        match self {
            Set::Table(s) => s.insert(elem(m)),
            Set::Ints(_) => unreachable!("converted above"),
        }
    }

    pub fn remove(&mut self, m: &[u8]) -> bool {
        match self {
            Set::Ints(v) => parse_i64(m).is_some_and(|n| v.remove(n)),
            Set::Table(s) => s.remove(m),
        }
    }

    /// The members as bytes (integers formatted).
    pub fn members(&self) -> Box<dyn Iterator<Item = Elem> + '_> {
        match self {
            Set::Ints(v) => Box::new(
                v.iter()
                    .map(|n| elem(itoa::Buffer::new().format(n).as_bytes())),
            ),
            Set::Table(s) => Box::new(s.iter().cloned()),
        }
    }

    /// A set holding `members`, encoded as Redis would encode a fresh set of them.
    pub fn from_members<'a>(members: impl IntoIterator<Item = &'a [u8]>) -> Set {
        let mut set = Set::default();
        for m in members {
            set.insert(m);
        }
        set
    }
}

// ---------------------------------------------------------------- sorted set

/// A score ordered as Redis orders them (never NaN: commands refuse it before it gets here).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score(pub f64);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .partial_cmp(&other.0)
            .unwrap_or(std::cmp::Ordering::Equal)
    }
}

/// Members with scores, ordered by (score, member). A small one is one packed buffer of
/// `score, member` entries in that order (Redis's listpack); a large one an index by member
/// plus a B-tree in order (Redis's skiplist).
#[derive(Clone, Debug, PartialEq)]
pub enum ZSet {
    Pack(Buf),
    Skip(Box<Skip>),
}

/// The large encoding of a sorted set. Changed only through [`Skip::put`] and
/// [`Skip::take`], which keep `member_bytes` (see [`Counted`]).
#[derive(Clone, Debug, Default)]
pub struct Skip {
    pub scores: HashMap<Elem, f64, Hasher>,
    pub order: BTreeSet<(Score, Elem)>,
    /// The allocation bytes of the members (each held once in `scores`, once in `order`).
    member_bytes: usize,
}

impl PartialEq for Skip {
    fn eq(&self, other: &Self) -> bool {
        self.scores == other.scores && self.order == other.order
    }
}

impl Skip {
    /// Adds `m` (not present) with `score`.
    fn put(&mut self, score: f64, m: &[u8]) {
        self.scores.insert(elem(m), score);
        self.order.insert((Score(score), elem(m)));
        self.member_bytes += allocation_size(m.len());
    }

    /// Removes `m`; true if it was present.
    fn take(&mut self, m: &[u8]) -> bool {
        match self.scores.remove_entry(m) {
            Some((member, score)) => {
                self.member_bytes -= allocation_size(member.len());
                self.order.remove(&(Score(score), member));
                true
            }
            None => false,
        }
    }
}

impl Default for ZSet {
    fn default() -> Self {
        ZSet::Pack(Buf::default())
    }
}

/// One entry of a packed sorted set: where it lies in the buffer and what it holds.
struct PackedItem<'a> {
    at: usize,
    end: usize,
    score: f64,
    member: &'a [u8],
}

fn packed_items(buf: &[u8]) -> impl Iterator<Item = PackedItem<'_>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= buf.len() {
            return None;
        }
        let (score, member_at) = pack::get_score(buf, at);
        let (member, end) = pack::get_str(buf, member_at);
        let item = PackedItem {
            at,
            end,
            score,
            member,
        };
        at = end;
        Some(item)
    })
}

impl ZSet {
    pub fn len(&self) -> usize {
        match self {
            ZSet::Pack(b) => packed_items(b.bytes()).count(),
            ZSet::Skip(s) => s.scores.len(),
        }
    }

    /// Without counting a packed sorted set's entries.
    pub fn is_empty(&self) -> bool {
        match self {
            ZSet::Pack(b) => b.bytes().is_empty(),
            ZSet::Skip(s) => s.scores.is_empty(),
        }
    }

    pub fn score(&self, m: &[u8]) -> Option<f64> {
        match self {
            ZSet::Pack(b) => packed_items(b.bytes())
                .find(|it| it.member == m)
                .map(|it| it.score),
            ZSet::Skip(s) => s.scores.get(m).copied(),
        }
    }

    /// Sets `m`'s score; true if it is new.
    pub fn insert(&mut self, score: f64, m: &[u8]) -> bool {
        let existed = self.remove(m);
        if let ZSet::Pack(b) = self {
            if m.len() <= ZSET_MAX_LISTPACK_VALUE
                && packed_items(b.bytes()).count() < ZSET_MAX_LISTPACK_ENTRIES
            {
                let key = (Score(score), m);
                let at = packed_items(b.bytes())
                    .find(|it| (Score(it.score), it.member) >= key)
                    .map_or(b.bytes().len(), |it| it.at);
                let mut new = Vec::with_capacity(9 + pack::str_size(m.len()));
                pack::put_score(&mut new, score);
                pack::put_str(&mut new, m);
                b.splice(at, at, &new);
                return !existed;
            }
            self.convert_to_skiplist();
        }
        if let ZSet::Skip(s) = self {
            s.put(score, m);
        }
        !existed
    }

    /// Converts the packed encoding to the skiplist one (no-op if it is one already): on
    /// growth, and for `SORT`, which Redis lets convert the sorted sets it sorts.
    pub fn convert_to_skiplist(&mut self) {
        if let ZSet::Pack(b) = self {
            let mut skip = Skip::default();
            for it in packed_items(b.bytes()) {
                skip.put(it.score, it.member);
            }
            *self = ZSet::Skip(Box::new(skip));
        }
    }

    /// Whether this is the packed (listpack) encoding.
    pub fn is_packed(&self) -> bool {
        matches!(self, ZSet::Pack(_))
    }

    pub fn remove(&mut self, m: &[u8]) -> bool {
        match self {
            ZSet::Pack(b) => {
                let found = packed_items(b.bytes())
                    .find(|it| it.member == m)
                    .map(|it| (it.at, it.end));
                match found {
                    Some((at, end)) => {
                        b.splice(at, end, &[]);
                        true
                    }
                    None => false,
                }
            }
            ZSet::Skip(s) => s.take(m),
        }
    }

    /// Members in order (lowest score first).
    pub fn iter(&self) -> Box<dyn DoubleEndedIterator<Item = (f64, &[u8])> + '_> {
        match self {
            // At most 128 entries, read forwards only: gathered so they can be walked both ways.
            ZSet::Pack(b) => Box::new(
                packed_items(b.bytes())
                    .map(|it| (it.score, it.member))
                    .collect::<Vec<_>>()
                    .into_iter(),
            ),
            ZSet::Skip(s) => Box::new(s.order.iter().map(|(s, m)| (s.0, &m[..]))),
        }
    }

    /// 0-based rank of `m` in ascending order.
    pub fn rank(&self, m: &[u8]) -> Option<usize> {
        match self {
            ZSet::Pack(b) => packed_items(b.bytes()).position(|it| it.member == m),
            ZSet::Skip(s) => {
                let score = *s.scores.get(m)?;
                Some(s.order.range(..(Score(score), elem(m))).count())
            }
        }
    }

    /// A sorted set of `items`, encoded as Redis encodes a fresh one of that size. The encoding
    /// is chosen before the first insert, as Redis does: a set that ends up a skiplist never
    /// went through the packed form, so its -0 scores stay -0 (see `pack::put_score`).
    pub fn from_items(items: impl IntoIterator<Item = (f64, Elem)>) -> ZSet {
        let items: Vec<(f64, Elem)> = items.into_iter().collect();
        let big = items.len() > ZSET_MAX_LISTPACK_ENTRIES
            || items.iter().any(|(_, m)| m.len() > ZSET_MAX_LISTPACK_VALUE);
        let mut z = if big {
            ZSet::Skip(Box::default())
        } else {
            ZSet::default()
        };
        for (s, m) in items {
            z.insert(s, &m);
        }
        z
    }
}

// ---------------------------------------------------------------- serialization

/// What snapshots carry: the elements in a plain form plus whether the value had grown into
/// its general encoding (Redis never converts back, and `OBJECT ENCODING` must agree after a
/// restore).
#[derive(Serialize, Deserialize)]
enum Logical {
    Hash {
        big: bool,
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    List(Vec<Vec<u8>>),
    Set {
        big: bool,
        members: Vec<Vec<u8>>,
    },
    ZSet {
        big: bool,
        items: Vec<(f64, Vec<u8>)>,
    },
}

impl From<Value> for Logical {
    fn from(v: Value) -> Logical {
        match v {
            Value::Hash(h) => Logical::Hash {
                big: matches!(h, Hash::Table(_)),
                pairs: h.iter().map(|(f, x)| (f.to_vec(), x.to_vec())).collect(),
            },
            Value::List(l) => Logical::List(l.iter().map(<[u8]>::to_vec).collect()),
            Value::Set(s) => Logical::Set {
                big: matches!(s, Set::Table(_)),
                members: s.members().map(Vec::from).collect(),
            },
            Value::ZSet(z) => Logical::ZSet {
                big: matches!(z, ZSet::Skip(_)),
                items: z.iter().map(|(s, m)| (s, m.to_vec())).collect(),
            },
        }
    }
}

impl From<Logical> for Value {
    fn from(l: Logical) -> Value {
        match l {
            Logical::Hash { big, pairs } => Value::Hash(if big {
                Hash::Table(Box::new(
                    pairs
                        .into_iter()
                        .map(|(f, x)| (f.into_boxed_slice(), x.into_boxed_slice()))
                        .collect(),
                ))
            } else {
                Hash::packed(pairs)
            }),
            Logical::List(items) => Value::List(List::from_items(items)),
            Logical::Set { big, members } => {
                let mut set = if big {
                    Set::Table(Box::default())
                } else {
                    Set::default()
                };
                for m in &members {
                    set.insert(m);
                }
                Value::Set(set)
            }
            Logical::ZSet { big, items } => {
                let mut z = if big {
                    ZSet::Skip(Box::default())
                } else {
                    ZSet::default()
                };
                for (s, m) in items {
                    z.insert(s, &m);
                }
                Value::ZSet(z)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walked(it: impl Iterator<Item = usize>) -> usize {
        it.map(allocation_size).sum()
    }

    #[test]
    fn large_tables_keep_their_element_bytes_exact_through_writes() {
        let mut h = Hash::default();
        let mut set = Set::default();
        let mut z = ZSet::default();
        for i in 0..600u32 {
            let k = format!("member-{}", i % 450);
            let v = "v".repeat((i % 37) as usize);
            h.insert(k.as_bytes(), v.as_bytes());
            set.insert(k.as_bytes());
            z.insert(f64::from(i), k.as_bytes());
            if i % 7 == 0 {
                let gone = format!("member-{}", i / 2);
                h.remove(gone.as_bytes());
                set.remove(gone.as_bytes());
                z.remove(gone.as_bytes());
            }
        }
        let Hash::Table(m) = &h else {
            panic!("large hash")
        };
        assert_eq!(
            m.elem_bytes,
            walked(m.iter().flat_map(|(f, v)| [f.len(), v.len()]))
        );
        let Set::Table(t) = &set else {
            panic!("large set")
        };
        assert_eq!(t.elem_bytes, walked(t.iter().map(|m| m.len())));
        let ZSet::Skip(sk) = &z else {
            panic!("large zset")
        };
        assert_eq!(sk.member_bytes, walked(sk.scores.keys().map(|m| m.len())));
        assert_eq!(sk.scores.len(), sk.order.len());
    }

    #[test]
    fn encodings_switch_at_redis_thresholds_and_never_back() {
        let mut h = Hash::default();
        for i in 0..HASH_MAX_LISTPACK_ENTRIES {
            h.insert(format!("f{i}").as_bytes(), b"v");
        }
        assert!(matches!(h, Hash::Pack(_)));
        h.insert(b"one-more", b"v");
        assert!(matches!(h, Hash::Table(_)));
        let mut big = Hash::default();
        big.insert(b"f", &[b'x'; 65]);
        assert!(matches!(big, Hash::Table(_)));

        let mut s = Set::default();
        s.insert(b"3");
        s.insert(b"-1");
        assert!(matches!(s, Set::Ints(_)));
        assert_eq!(s.members().collect::<Vec<_>>(), [elem(b"-1"), elem(b"3")]);
        s.insert(b"01");
        assert!(matches!(s, Set::Table(_)));
        assert!(s.contains(b"3") && s.contains(b"01") && !s.contains(b"1"));

        let mut z = ZSet::default();
        z.insert(2.0, b"b");
        z.insert(1.0, b"c");
        z.insert(2.0, b"a");
        let order: Vec<_> = z.iter().map(|(_, m)| m.to_vec()).collect();
        assert_eq!(order, vec![b"c".to_vec(), b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(z.rank(b"b"), Some(2));
    }

    #[test]
    fn values_survive_serialization_with_their_encoding() {
        let mut z = ZSet::default();
        for i in 0..200 {
            z.insert(i as f64 / 3.0, format!("m{i}").as_bytes());
        }
        for i in 0..150 {
            z.remove(format!("m{i}").as_bytes());
        }
        let v = Value::ZSet(z);
        let bytes = bincode::serde::encode_to_vec(&v, bincode::config::standard()).unwrap();
        let (back, _): (Value, _) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(back.encoding(), "skiplist");
        assert_eq!(back, v);
        assert_eq!(back.digest(), v.digest());
    }

    fn round_trip(v: &Value) -> Value {
        let bytes = bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap();
        bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
            .unwrap()
            .0
    }

    #[test]
    fn small_encodings_survive_serialization_in_order() {
        let mut h = Hash::default();
        for f in ["z", "a", "m"] {
            h.insert(f.as_bytes(), b"v");
        }
        let v = round_trip(&Value::Hash(h.clone()));
        assert_eq!(v.encoding(), "listpack");
        assert_eq!(v, Value::Hash(h));
        let s = Set::from_members([&b"7"[..], b"-70000", b"3"]);
        let v = round_trip(&Value::Set(s.clone()));
        assert_eq!(v.encoding(), "intset");
        assert_eq!(v, Value::Set(s));
        let z = ZSet::from_items([(1.5, elem(b"x")), (-3.0, elem(b"y")), (1e300, elem(b"z"))]);
        let v = round_trip(&Value::ZSet(z.clone()));
        assert_eq!(v.encoding(), "listpack");
        assert_eq!(v, Value::ZSet(z));
    }

    #[test]
    fn packed_values_cost_a_fraction_of_boxed_ones() {
        let mut h = Hash::default();
        let mut z = ZSet::default();
        for i in 0..10 {
            h.insert(
                format!("f:{i:06}").as_bytes(),
                format!("v:{i:06}").as_bytes(),
            );
            z.insert(i as f64, format!("m:{i:06}").as_bytes());
        }
        // 10 pairs of two 1+8 byte strings; 10 members of 1 (score) + 1 + 8 bytes.
        assert_eq!(Value::Hash(h).mem_usage(), allocation_size(180));
        assert_eq!(Value::ZSet(z).mem_usage(), allocation_size(100));
        // Ten 2-byte integers; ten 1+8+1 byte list entries in one chunk of a one-chunk deque.
        let s = Set::from_members(
            (1000..1010)
                .map(|i| format!("{i}"))
                .collect::<Vec<_>>()
                .iter()
                .map(|m| m.as_bytes()),
        );
        assert_eq!(Value::Set(s).mem_usage(), allocation_size(20));
        let l = List::from_items((0..10).map(|i| format!("m:{i:06}")));
        assert_eq!(
            Value::List(l).mem_usage(),
            allocation_size(24) + allocation_size(100)
        );
    }

    use proptest::prelude::*;

    /// Fields from a small alphabet (so operations meet existing ones), now and then too long
    /// for the small encoding.
    fn field() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            20 => (0u16..200).prop_map(|i| format!("f{i}").into_bytes()),
            1 => (0u16..3).prop_map(|i| format!("{i}{}", "x".repeat(70)).into_bytes()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn hash_matches_an_insertion_ordered_model(
            ops in prop::collection::vec((0u8..4, field(), field()), 0..400),
        ) {
            let mut h = Hash::default();
            let mut model: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            let mut grew = false;
            for (op, f, v) in ops {
                if op == 0 {
                    let removed = model.iter().position(|(x, _)| *x == f).map(|i| model.remove(i));
                    prop_assert_eq!(h.remove(&f), removed.is_some());
                } else {
                    let new = match model.iter_mut().find(|(x, _)| *x == f) {
                        Some(slot) => { slot.1 = v.clone(); false }
                        None => { model.push((f.clone(), v.clone())); true }
                    };
                    grew |= model.len() > HASH_MAX_LISTPACK_ENTRIES
                        || f.len() > HASH_MAX_LISTPACK_VALUE
                        || v.len() > HASH_MAX_LISTPACK_VALUE;
                    prop_assert_eq!(h.insert(&f, &v), new);
                }
                prop_assert_eq!(h.get(&f), model.iter().find(|(x, _)| *x == f).map(|(_, v)| &v[..]));
                prop_assert_eq!(h.len(), model.len());
                prop_assert_eq!(matches!(h, Hash::Table(_)), grew);
            }
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> =
                h.iter().map(|(f, v)| (f.to_vec(), v.to_vec())).collect();
            if !grew {
                prop_assert_eq!(&pairs, &model);
            }
            pairs.sort();
            model.sort();
            prop_assert_eq!(pairs, model);
        }

        #[test]
        fn zset_matches_an_ordered_model(
            ops in prop::collection::vec(
                (0u8..4, field(), prop_oneof![(-5i32..300).prop_map(f64::from), -1e9f64..1e9]),
                0..400,
            ),
        ) {
            let mut z = ZSet::default();
            let mut model: std::collections::HashMap<Vec<u8>, f64> = Default::default();
            let mut grew = false;
            for (op, m, score) in ops {
                if op == 0 {
                    prop_assert_eq!(z.remove(&m), model.remove(&m).is_some());
                } else {
                    prop_assert_eq!(z.insert(score, &m), model.insert(m.clone(), score).is_none());
                    grew |= model.len() > ZSET_MAX_LISTPACK_ENTRIES || m.len() > ZSET_MAX_LISTPACK_VALUE;
                }
                prop_assert_eq!(z.score(&m), model.get(&m).copied());
                prop_assert_eq!(z.len(), model.len());
                prop_assert_eq!(matches!(z, ZSet::Skip(_)), grew);
            }
            let mut expected: Vec<(f64, Vec<u8>)> = model.into_iter().map(|(m, s)| (s, m)).collect();
            expected.sort_by(|a, b| (Score(a.0), &a.1).cmp(&(Score(b.0), &b.1)));
            let got: Vec<(f64, Vec<u8>)> = z.iter().map(|(s, m)| (s, m.to_vec())).collect();
            prop_assert_eq!(&got, &expected);
            let back: Vec<(f64, Vec<u8>)> = z.iter().rev().map(|(s, m)| (s, m.to_vec())).collect();
            prop_assert_eq!(back.len(), expected.len());
            for (i, (_, m)) in expected.iter().enumerate() {
                prop_assert_eq!(z.rank(m), Some(i));
            }
            prop_assert_eq!(&round_trip(&Value::ZSet(z.clone())), &Value::ZSet(z));
        }
    }
}
