//! Collection values: hashes, lists, sets and sorted sets, each with a compact encoding for
//! small values and a general one for large ones, switched at Redis 7.0's default thresholds
//! (so `OBJECT ENCODING` answers as Redis does). Strings are not here: they stay inline in
//! [`Entry`](super::Entry)'s single allocation.
//!
//! The thresholds are cluster-wide constants, not per-node config: `apply` must pick the same
//! encoding on every replica. As in Redis, a value never converts back to its small encoding.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::numbers::parse_i64;

/// One element (field, value, member) of a collection.
pub type Elem = Box<[u8]>;

type Hasher = foldhash::fast::RandomState;

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
            Value::ZSet(ZSet::Skip { .. }) => "skiplist",
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
        self.len() == 0
    }

    /// Heap bytes this value holds (element allocations and container overhead, estimated
    /// from capacities): what memory accounting charges the key for its value.
    pub fn mem_usage(&self) -> usize {
        const BOX: usize = std::mem::size_of::<Elem>();
        let elems = |it: &mut dyn Iterator<Item = &[u8]>| it.map(|e| e.len()).sum::<usize>();
        match self {
            Value::Hash(Hash::Pack(v)) => {
                v.capacity() * 2 * BOX + elems(&mut v.iter().flat_map(|(f, x)| [&f[..], &x[..]]))
            }
            Value::Hash(Hash::Table(m)) => {
                m.capacity() * (2 * BOX + 1)
                    + elems(&mut m.iter().flat_map(|(f, x)| [&f[..], &x[..]]))
            }
            Value::List(l) => l.0.capacity() * BOX + elems(&mut l.0.iter().map(|e| &e[..])),
            Value::Set(Set::Ints(v)) => v.capacity() * 8,
            Value::Set(Set::Table(s)) => {
                s.capacity() * (BOX + 1) + elems(&mut s.iter().map(|e| &e[..]))
            }
            Value::ZSet(ZSet::Pack(v)) => {
                v.capacity() * (8 + BOX) + elems(&mut v.iter().map(|(_, m)| &m[..]))
            }
            Value::ZSet(ZSet::Skip { scores, order }) => {
                // Each member is held twice (index and order); B-tree nodes run ~2/3 full.
                scores.capacity() * (BOX + 9)
                    + order.len() * (8 + BOX) * 3 / 2
                    + 2 * elems(&mut scores.keys().map(|m| &m[..]))
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
            Value::List(l) => ordered(&mut l.0.iter().map(|e| h(e))),
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

/// Field → value. Small hashes are a vector in insertion order (as Redis's listpack, so
/// `HGETALL` lists them in the same order Redis does).
#[derive(Clone, Debug, PartialEq)]
pub enum Hash {
    Pack(Vec<(Elem, Elem)>),
    Table(HashMap<Elem, Elem, Hasher>),
}

impl Default for Hash {
    fn default() -> Self {
        Hash::Pack(Vec::new())
    }
}

impl Hash {
    pub fn len(&self) -> usize {
        match self {
            Hash::Pack(v) => v.len(),
            Hash::Table(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        match self {
            Hash::Pack(v) => v.iter().find(|(f, _)| &f[..] == field).map(|(_, x)| &x[..]),
            Hash::Table(m) => m.get(field).map(|x| &x[..]),
        }
    }

    /// Sets `field`; true if it is new.
    pub fn insert(&mut self, field: &[u8], value: &[u8]) -> bool {
        if let Hash::Pack(v) = self {
            let small =
                field.len() <= HASH_MAX_LISTPACK_VALUE && value.len() <= HASH_MAX_LISTPACK_VALUE;
            if let Some(slot) = v.iter_mut().find(|(f, _)| &f[..] == field) {
                if small {
                    slot.1 = elem(value);
                    return false;
                }
            } else if small && v.len() < HASH_MAX_LISTPACK_ENTRIES {
                v.push((elem(field), elem(value)));
                return true;
            }
            let table = std::mem::take(v).into_iter().collect();
            *self = Hash::Table(table);
        }
        match self {
            Hash::Table(m) => m.insert(elem(field), elem(value)).is_none(),
            Hash::Pack(_) => unreachable!("converted above"),
        }
    }

    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self {
            Hash::Pack(v) => match v.iter().position(|(f, _)| &f[..] == field) {
                Some(i) => {
                    v.remove(i);
                    true
                }
                None => false,
            },
            Hash::Table(m) => m.remove(field).is_some(),
        }
    }

    pub fn iter(&self) -> Box<dyn Iterator<Item = (&[u8], &[u8])> + '_> {
        match self {
            Hash::Pack(v) => Box::new(v.iter().map(|(f, x)| (&f[..], &x[..]))),
            Hash::Table(m) => Box::new(m.iter().map(|(f, x)| (&f[..], &x[..]))),
        }
    }
}

// ---------------------------------------------------------------- list

#[derive(Clone, Debug, PartialEq, Default)]
pub struct List(pub VecDeque<Elem>);

impl List {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// ---------------------------------------------------------------- set

/// Members. A set of only integers (Redis's `string2ll` form) is a sorted vector of them, as
/// Redis's intset, until it has more than `SET_MAX_INTSET_ENTRIES`.
#[derive(Clone, Debug, PartialEq)]
pub enum Set {
    Ints(Vec<i64>),
    Table(HashSet<Elem, Hasher>),
}

impl Default for Set {
    fn default() -> Self {
        Set::Ints(Vec::new())
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
            Set::Ints(v) => parse_i64(m).is_some_and(|n| v.binary_search(&n).is_ok()),
            Set::Table(s) => s.contains(m),
        }
    }

    /// Adds `m`; true if it is new.
    pub fn insert(&mut self, m: &[u8]) -> bool {
        if let Set::Ints(v) = self {
            if let Some(n) = parse_i64(m) {
                match v.binary_search(&n) {
                    Ok(_) => return false,
                    Err(i) if v.len() < SET_MAX_INTSET_ENTRIES => {
                        v.insert(i, n);
                        return true;
                    }
                    Err(_) => {}
                }
            }
            let table = v
                .iter()
                .map(|n| elem(itoa::Buffer::new().format(*n).as_bytes()))
                .collect();
            *self = Set::Table(table);
        }
        match self {
            Set::Table(s) => s.insert(elem(m)),
            Set::Ints(_) => unreachable!("converted above"),
        }
    }

    pub fn remove(&mut self, m: &[u8]) -> bool {
        match self {
            Set::Ints(v) => match parse_i64(m).map(|n| v.binary_search(&n)) {
                Some(Ok(i)) => {
                    v.remove(i);
                    true
                }
                _ => false,
            },
            Set::Table(s) => s.remove(m),
        }
    }

    /// The members as bytes (integers formatted).
    pub fn members(&self) -> Box<dyn Iterator<Item = Elem> + '_> {
        match self {
            Set::Ints(v) => Box::new(
                v.iter()
                    .map(|n| elem(itoa::Buffer::new().format(*n).as_bytes())),
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

/// Members with scores, ordered by (score, member). Small ones are one sorted vector (Redis's
/// listpack); large ones an index by member plus a B-tree in order (Redis's skiplist).
#[derive(Clone, Debug, PartialEq)]
pub enum ZSet {
    Pack(Vec<(f64, Elem)>),
    Skip {
        scores: HashMap<Elem, f64, Hasher>,
        order: BTreeSet<(Score, Elem)>,
    },
}

impl Default for ZSet {
    fn default() -> Self {
        ZSet::Pack(Vec::new())
    }
}

impl ZSet {
    pub fn len(&self) -> usize {
        match self {
            ZSet::Pack(v) => v.len(),
            ZSet::Skip { scores, .. } => scores.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn score(&self, m: &[u8]) -> Option<f64> {
        match self {
            ZSet::Pack(v) => v.iter().find(|(_, x)| &x[..] == m).map(|(s, _)| *s),
            ZSet::Skip { scores, .. } => scores.get(m).copied(),
        }
    }

    /// Sets `m`'s score; true if it is new.
    pub fn insert(&mut self, score: f64, m: &[u8]) -> bool {
        let existed = self.remove(m);
        if let ZSet::Pack(v) = self {
            if v.len() < ZSET_MAX_LISTPACK_ENTRIES && m.len() <= ZSET_MAX_LISTPACK_VALUE {
                let at = v.partition_point(|(s, x)| (Score(*s), &x[..]) < (Score(score), m));
                v.insert(at, (score, elem(m)));
                return !existed;
            }
            let all = std::mem::take(v);
            *self = ZSet::Skip {
                scores: all.iter().map(|(s, x)| (x.clone(), *s)).collect(),
                order: all.into_iter().map(|(s, x)| (Score(s), x)).collect(),
            };
        }
        if let ZSet::Skip { scores, order } = self {
            scores.insert(elem(m), score);
            order.insert((Score(score), elem(m)));
        }
        !existed
    }

    pub fn remove(&mut self, m: &[u8]) -> bool {
        match self {
            ZSet::Pack(v) => match v.iter().position(|(_, x)| &x[..] == m) {
                Some(i) => {
                    v.remove(i);
                    true
                }
                None => false,
            },
            ZSet::Skip { scores, order } => match scores.remove_entry(m) {
                Some((member, s)) => {
                    order.remove(&(Score(s), member));
                    true
                }
                None => false,
            },
        }
    }

    /// Members in order (lowest score first).
    pub fn iter(&self) -> Box<dyn DoubleEndedIterator<Item = (f64, &[u8])> + '_> {
        match self {
            ZSet::Pack(v) => Box::new(v.iter().map(|(s, m)| (*s, &m[..]))),
            ZSet::Skip { order, .. } => Box::new(order.iter().map(|(s, m)| (s.0, &m[..]))),
        }
    }

    /// 0-based rank of `m` in ascending order.
    pub fn rank(&self, m: &[u8]) -> Option<usize> {
        let score = self.score(m)?;
        match self {
            ZSet::Pack(v) => v.iter().position(|(_, x)| &x[..] == m),
            ZSet::Skip { order, .. } => Some(order.range(..(Score(score), elem(m))).count()),
        }
    }

    /// A sorted set of `items`, encoded as Redis encodes a fresh one of that size.
    pub fn from_items(items: impl IntoIterator<Item = (f64, Elem)>) -> ZSet {
        let mut z = ZSet::default();
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
            Value::List(l) => Logical::List(l.0.into_iter().map(Vec::from).collect()),
            Value::Set(s) => Logical::Set {
                big: matches!(s, Set::Table(_)),
                members: s.members().map(Vec::from).collect(),
            },
            Value::ZSet(z) => Logical::ZSet {
                big: matches!(z, ZSet::Skip { .. }),
                items: z.iter().map(|(s, m)| (s, m.to_vec())).collect(),
            },
        }
    }
}

impl From<Logical> for Value {
    fn from(l: Logical) -> Value {
        match l {
            Logical::Hash { big, pairs } => {
                let pairs = pairs
                    .into_iter()
                    .map(|(f, x)| (f.into_boxed_slice(), x.into_boxed_slice()));
                Value::Hash(if big {
                    Hash::Table(pairs.collect())
                } else {
                    Hash::Pack(pairs.collect())
                })
            }
            Logical::List(items) => {
                Value::List(List(items.into_iter().map(Vec::into_boxed_slice).collect()))
            }
            Logical::Set { big, members } => {
                let mut set = if big {
                    Set::Table(Default::default())
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
                    ZSet::Skip {
                        scores: Default::default(),
                        order: Default::default(),
                    }
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
        assert_eq!(s, Set::Ints(vec![-1, 3]));
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
}
