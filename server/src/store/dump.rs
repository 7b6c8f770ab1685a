//! Redis's `DUMP` serialization format (an RDB object), so values move between shoal and Redis
//! with `DUMP`/`RESTORE` (and `MIGRATE`-style tools).
//!
//! A payload is: the RDB type byte, the object, the 2-byte RDB version (little-endian) and the
//! CRC-64 (Jones polynomial, as Redis's `crc64.c`) of everything before it.
//!
//! Writing uses Redis 7.0's string encodings (integers as `INT8/16/32`, strings over 20 bytes
//! LZF-compressed when that saves space, as `rdbcompression yes` does) and the plain collection
//! types (`LIST`, `SET`, `HASH`, `ZSET_2`), which every Redis version loads into the same
//! encodings its own `DUMP` came from. Reading accepts everything Redis 7.0's `DUMP` writes
//! (those, plus the listpack, intset and quicklist-2 encodings) and the legacy string-score
//! `ZSET`.
//!
//! Decoding is for untrusted input: every length is checked against the bytes that remain
//! before anything is allocated for it, LZF output is capped by what its input can expand to,
//! and the whole decoded value by [`MAX_DECODED`]; a bad payload is an error, never a panic.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::entry::Entry;
use super::value::{Hash, List, Set, Value, ZSet};
use crate::numbers::{parse_f64, parse_i64};

/// The RDB version Redis 7.0 writes and the newest it (and so shoal) accepts.
pub const RDB_VERSION: u16 = 10;

/// The most bytes a decoded value may hold (Redis's `proto-max-bulk-len` default).
pub const MAX_DECODED: usize = 512 * 1024 * 1024;

const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_REDIS);

const TYPE_STRING: u8 = 0;
const TYPE_LIST: u8 = 1;
const TYPE_SET: u8 = 2;
const TYPE_ZSET: u8 = 3;
const TYPE_HASH: u8 = 4;
const TYPE_ZSET_2: u8 = 5;
const TYPE_SET_INTSET: u8 = 11;
const TYPE_HASH_LISTPACK: u8 = 16;
const TYPE_ZSET_LISTPACK: u8 = 17;
const TYPE_LIST_QUICKLIST_2: u8 = 18;

const ENC_INT8: u8 = 0;
const ENC_INT16: u8 = 1;
const ENC_INT32: u8 = 2;
const ENC_LZF: u8 = 3;

/// A decoded payload: what a key will hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Dumped {
    String(Bytes),
    Collection(Value),
}

/// Why a payload was refused (Redis's two `RESTORE` errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// `ERR DUMP payload version or checksum are wrong`
    VersionOrChecksum,
    /// `ERR Bad data format`
    BadFormat,
}

impl DecodeError {
    pub fn text(self) -> &'static str {
        match self {
            DecodeError::VersionOrChecksum => "ERR DUMP payload version or checksum are wrong",
            DecodeError::BadFormat => "ERR Bad data format",
        }
    }
}

/// CRC-64/REDIS of `bytes`.
pub fn crc64(bytes: &[u8]) -> u64 {
    CRC64.checksum(bytes)
}

// ---------------------------------------------------------------- writing

/// The `DUMP` payload of an entry's value.
pub fn dump(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::new();
    match entry.collection() {
        None => {
            out.push(TYPE_STRING);
            put_string(&mut out, entry.value());
        }
        Some(value) => put_value(&mut out, value),
    }
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::List(l) => {
            out.push(TYPE_LIST);
            put_len(out, l.len() as u64);
            for e in l.iter() {
                put_string(out, e);
            }
        }
        Value::Set(s) => {
            out.push(TYPE_SET);
            put_len(out, s.len() as u64);
            for m in s.members() {
                put_string(out, &m);
            }
        }
        Value::Hash(h) => {
            out.push(TYPE_HASH);
            put_len(out, h.len() as u64);
            for (f, v) in h.iter() {
                put_string(out, f);
                put_string(out, v);
            }
        }
        Value::ZSet(z) => {
            out.push(TYPE_ZSET_2);
            put_len(out, z.len() as u64);
            for (score, m) in z.iter() {
                put_string(out, m);
                out.extend_from_slice(&score.to_le_bytes());
            }
        }
    }
}

/// Redis's `rdbSaveLen`: 6-bit, 14-bit, 32-bit or 64-bit (big-endian) lengths.
fn put_len(out: &mut Vec<u8>, n: u64) {
    if n < 1 << 6 {
        out.push(n as u8);
    } else if n < 1 << 14 {
        out.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
    } else if n <= u32::MAX as u64 {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Redis's `rdbSaveRawString`: a canonical integer that fits 32 bits as an integer encoding;
/// longer than 20 bytes LZF-compressed if that saves more than 4 bytes; else the raw bytes.
fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    if s.len() <= 11 {
        if let Some(n) = parse_i64(s).filter(|n| i32::try_from(*n).is_ok()) {
            if let Ok(b) = i8::try_from(n) {
                out.extend_from_slice(&[0xC0 | ENC_INT8, b as u8]);
            } else if let Ok(h) = i16::try_from(n) {
                out.push(0xC0 | ENC_INT16);
                out.extend_from_slice(&h.to_le_bytes());
            } else {
                out.push(0xC0 | ENC_INT32);
                out.extend_from_slice(&(n as i32).to_le_bytes());
            }
            return;
        }
    }
    if s.len() > 20 {
        if let Ok(packed) = lzf::compress(s) {
            if packed.len() + 4 < s.len() {
                out.push(0xC0 | ENC_LZF);
                put_len(out, packed.len() as u64);
                put_len(out, s.len() as u64);
                out.extend_from_slice(&packed);
                return;
            }
        }
    }
    put_len(out, s.len() as u64);
    out.extend_from_slice(s);
}

// ---------------------------------------------------------------- reading

/// Checks a payload's footer and decodes its value.
pub fn decode(payload: &[u8]) -> Result<Dumped, DecodeError> {
    let Some(body_len) = payload.len().checked_sub(10) else {
        return Err(DecodeError::VersionOrChecksum);
    };
    let version = u16::from_le_bytes([payload[body_len], payload[body_len + 1]]);
    let crc = u64::from_le_bytes(payload[body_len + 2..].try_into().expect("8 bytes"));
    if version > RDB_VERSION || crc64(&payload[..body_len + 2]) != crc {
        return Err(DecodeError::VersionOrChecksum);
    }
    let mut input = Input {
        buf: &payload[..body_len],
        budget: MAX_DECODED,
    };
    let kind = input.byte()?;
    input.object(kind)
}

type Decoded<T> = Result<T, DecodeError>;

const BAD: DecodeError = DecodeError::BadFormat;

/// The unread part of a payload and how many more decoded bytes it may produce.
struct Input<'a> {
    buf: &'a [u8],
    budget: usize,
}

/// A length, or the special encoding of a string (`11xxxxxx`).
enum Len {
    Plain(u64),
    Encoded(u8),
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Decoded<&'a [u8]> {
        if n > self.buf.len() {
            return Err(BAD);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Decoded<u8> {
        Ok(self.take(1)?[0])
    }

    fn charge(&mut self, n: usize) -> Decoded<()> {
        self.budget = self.budget.checked_sub(n).ok_or(BAD)?;
        Ok(())
    }

    fn len_or_encoding(&mut self) -> Decoded<Len> {
        let first = self.byte()?;
        Ok(match first >> 6 {
            0 => Len::Plain((first & 0x3F) as u64),
            1 => Len::Plain((((first & 0x3F) as u64) << 8) | self.byte()? as u64),
            2 if first == 0x80 => {
                Len::Plain(u32::from_be_bytes(self.take(4)?.try_into().expect("4")) as u64)
            }
            2 if first == 0x81 => {
                Len::Plain(u64::from_be_bytes(self.take(8)?.try_into().expect("8")))
            }
            2 => return Err(BAD),
            _ => Len::Encoded(first & 0x3F),
        })
    }

    /// A length that counts things of at least `min_size` bytes each still to come: checked
    /// against the remaining input, so nothing is allocated for a claimed count.
    fn count(&mut self, min_size: usize) -> Decoded<usize> {
        match self.len_or_encoding()? {
            Len::Plain(n) if n.saturating_mul(min_size as u64) <= self.buf.len() as u64 => {
                Ok(n as usize)
            }
            _ => Err(BAD),
        }
    }

    /// An RDB string (raw, integer-encoded or LZF-compressed).
    fn string(&mut self) -> Decoded<Vec<u8>> {
        let out = match self.len_or_encoding()? {
            Len::Plain(n) => {
                let n = usize::try_from(n).map_err(|_| BAD)?;
                self.take(n)?.to_vec()
            }
            Len::Encoded(ENC_INT8) => (self.byte()? as i8).to_string().into_bytes(),
            Len::Encoded(ENC_INT16) => i16::from_le_bytes(self.take(2)?.try_into().expect("2"))
                .to_string()
                .into_bytes(),
            Len::Encoded(ENC_INT32) => i32::from_le_bytes(self.take(4)?.try_into().expect("4"))
                .to_string()
                .into_bytes(),
            Len::Encoded(ENC_LZF) => {
                let packed_len = self.count(1)?;
                let Len::Plain(len) = self.len_or_encoding()? else {
                    return Err(BAD);
                };
                let packed = self.take(packed_len)?;
                // LZF expands at most ~88 times (a 3-byte back reference copies 264 bytes):
                // a larger claim is corrupt, and is refused before its buffer is allocated.
                let len = usize::try_from(len).map_err(|_| BAD)?;
                if len == 0 || len > packed.len().saturating_mul(90) || len > self.budget {
                    return Err(BAD);
                }
                let out = lzf::decompress(packed, len).map_err(|_| BAD)?;
                if out.len() != len {
                    return Err(BAD);
                }
                out
            }
            Len::Encoded(_) => return Err(BAD),
        };
        self.charge(out.len())?;
        Ok(out)
    }

    fn object(&mut self, kind: u8) -> Decoded<Dumped> {
        let value = match kind {
            TYPE_STRING => return Ok(Dumped::String(self.string()?.into())),
            TYPE_LIST => {
                let n = self.count(1)?;
                let mut list = List::default();
                for _ in 0..n {
                    list.push_back(&self.string()?);
                }
                Value::List(list)
            }
            TYPE_LIST_QUICKLIST_2 => {
                let nodes = self.count(2)?;
                let mut list = List::default();
                for _ in 0..nodes {
                    let container = self.count(0)?;
                    let blob = self.string()?;
                    match container {
                        // PLAIN: one large element.
                        1 => list.push_back(&blob),
                        // PACKED: a listpack (empty ones are skipped, as Redis does).
                        2 => {
                            for e in listpack(&blob)? {
                                list.push_back(&e);
                            }
                        }
                        _ => return Err(BAD),
                    }
                }
                Value::List(list)
            }
            TYPE_SET => {
                let n = self.count(1)?;
                let mut set = Set::default();
                for _ in 0..n {
                    if !set.insert(&self.string()?) {
                        return Err(BAD);
                    }
                }
                Value::Set(set)
            }
            TYPE_SET_INTSET => {
                let blob = self.string()?;
                let mut set = Set::default();
                for n in intset(&blob)? {
                    if !set.insert(itoa::Buffer::new().format(n).as_bytes()) {
                        return Err(BAD);
                    }
                }
                Value::Set(set)
            }
            TYPE_HASH => {
                let n = self.count(2)?;
                let mut hash = Hash::default();
                for _ in 0..n {
                    let (f, v) = (self.string()?, self.string()?);
                    if !hash.insert(&f, &v) {
                        return Err(BAD);
                    }
                }
                Value::Hash(hash)
            }
            TYPE_HASH_LISTPACK => {
                let items = listpack(&self.string()?)?;
                if items.len() % 2 != 0 {
                    return Err(BAD);
                }
                let mut hash = Hash::default();
                for pair in items.chunks(2) {
                    if !hash.insert(&pair[0], &pair[1]) {
                        return Err(BAD);
                    }
                }
                Value::Hash(hash)
            }
            TYPE_ZSET | TYPE_ZSET_2 => {
                let n = self.count(2)?;
                let mut items = Vec::new();
                let mut members = std::collections::HashSet::new();
                for _ in 0..n {
                    let m = self.string()?;
                    let score = if kind == TYPE_ZSET_2 {
                        f64::from_le_bytes(self.take(8)?.try_into().expect("8"))
                    } else {
                        self.legacy_score()?
                    };
                    // Redis refuses a payload that repeats a member ("Duplicate zset fields").
                    if score.is_nan() || !members.insert(m.clone()) {
                        return Err(BAD);
                    }
                    items.push((score, m.into()));
                }
                // Redis loads these into a skiplist and packs the result only if it is small:
                // a large set keeps its -0 scores, which going through the packed form would
                // turn into 0.
                Value::ZSet(ZSet::from_items(items))
            }
            TYPE_ZSET_LISTPACK => {
                let items = listpack(&self.string()?)?;
                if items.len() % 2 != 0 {
                    return Err(BAD);
                }
                let mut z = ZSet::default();
                for pair in items.chunks(2) {
                    let score = parse_f64(&pair[1]).ok_or(BAD)?;
                    if !z.insert(score, &pair[0]) {
                        return Err(BAD);
                    }
                }
                Value::ZSet(z)
            }
            // Ziplists (RDB 9 and older), streams, modules: not values shoal holds.
            _ => return Err(BAD),
        };
        // Redis refuses empty collections ("empty keys").
        if value.is_empty() {
            return Err(BAD);
        }
        Ok(Dumped::Collection(value))
    }

    /// The old `ZSET` type's score: a length byte then the number as text (253..255: NaN,
    /// +inf, -inf).
    fn legacy_score(&mut self) -> Decoded<f64> {
        Ok(match self.byte()? {
            253 => f64::NAN,
            254 => f64::INFINITY,
            255 => f64::NEG_INFINITY,
            n => parse_f64(self.take(n as usize)?).ok_or(BAD)?,
        })
    }
}

/// The elements of a listpack: `[u32 total bytes][u16 count]`, entries each followed by their
/// back-length, then `0xFF`. Integers come back as their decimal text.
fn listpack(lp: &[u8]) -> Decoded<Vec<Vec<u8>>> {
    if lp.len() < 7 || u32::from_le_bytes(lp[..4].try_into().expect("4")) as usize != lp.len() {
        return Err(BAD);
    }
    let declared = u16::from_le_bytes([lp[4], lp[5]]);
    let mut p = 6;
    let mut items = Vec::new();
    let byte = |i: usize| lp.get(i).copied().ok_or(BAD);
    loop {
        let b = byte(p)?;
        if b == 0xFF {
            break;
        }
        // (header bytes, data bytes) and the element.
        let (header, data_len, int): (usize, usize, Option<i64>) = if b & 0x80 == 0 {
            (1, 0, Some((b & 0x7F) as i64))
        } else if b & 0xC0 == 0x80 {
            (1, (b & 0x3F) as usize, None)
        } else if b & 0xE0 == 0xC0 {
            let v = (((b & 0x1F) as u16) << 8) | byte(p + 1)? as u16;
            // 13-bit two's complement.
            (2, 0, Some(((v << 3) as i16 >> 3) as i64))
        } else if b & 0xF0 == 0xE0 {
            (
                2,
                (((b & 0x0F) as usize) << 8) | byte(p + 1)? as usize,
                None,
            )
        } else {
            let int_of = |n: usize| -> Decoded<i64> {
                let raw = lp.get(p + 1..p + 1 + n).ok_or(BAD)?;
                let mut buf = [0u8; 8];
                buf[..n].copy_from_slice(raw);
                // Sign-extend from n bytes.
                let shift = 64 - 8 * n as u32;
                Ok((i64::from_le_bytes(buf) << shift) >> shift)
            };
            match b {
                0xF0 => {
                    let raw = lp.get(p + 1..p + 5).ok_or(BAD)?;
                    (
                        5,
                        u32::from_le_bytes(raw.try_into().expect("4")) as usize,
                        None,
                    )
                }
                0xF1 => (3, 0, Some(int_of(2)?)),
                0xF2 => (4, 0, Some(int_of(3)?)),
                0xF3 => (5, 0, Some(int_of(4)?)),
                0xF4 => (9, 0, Some(int_of(8)?)),
                _ => return Err(BAD),
            }
        };
        let entry_len = if int.is_some() {
            header
        } else {
            header.checked_add(data_len).ok_or(BAD)?
        };
        let start = p + header;
        let end = p.checked_add(entry_len).ok_or(BAD)?;
        let element = match int {
            Some(n) => itoa::Buffer::new().format(n).as_bytes().to_vec(),
            None => lp.get(start..end).ok_or(BAD)?.to_vec(),
        };
        // The back-length: the entry's length in 1..5 bytes of 7 bits.
        let back = match entry_len {
            0..=127 => 1,
            128..=16382 => 2,
            16383..=2097150 => 3,
            2097151..=268435454 => 4,
            _ => 5,
        };
        p = end.checked_add(back).ok_or(BAD)?;
        items.push(element);
    }
    if p + 1 != lp.len() || (declared != u16::MAX && declared as usize != items.len()) {
        return Err(BAD);
    }
    Ok(items)
}

/// The integers of an intset: `[u32 width][u32 count]` then `count` little-endian integers of
/// `width` bytes.
fn intset(blob: &[u8]) -> Decoded<Vec<i64>> {
    if blob.len() < 8 {
        return Err(BAD);
    }
    let width = u32::from_le_bytes(blob[..4].try_into().expect("4")) as usize;
    let count = u32::from_le_bytes(blob[4..8].try_into().expect("4")) as usize;
    if !matches!(width, 2 | 4 | 8) || count.checked_mul(width) != Some(blob.len() - 8) {
        return Err(BAD);
    }
    Ok(blob[8..]
        .chunks(width)
        .map(|c| match width {
            2 => i16::from_le_bytes(c.try_into().expect("2")) as i64,
            4 => i32::from_le_bytes(c.try_into().expect("4")) as i64,
            _ => i64::from_le_bytes(c.try_into().expect("8")),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::value::ZSET_MAX_LISTPACK_ENTRIES;

    fn entry_of(value: Value) -> Entry {
        Entry::new_collection(b"k", value, 0)
    }

    fn round_trip(entry: &Entry) -> Dumped {
        decode(&dump(entry)).expect("decodes")
    }

    #[test]
    fn crc64_matches_redis_test_vector() {
        assert_eq!(crc64(b"123456789"), 0xe9c6d914c4b8d9ca);
    }

    #[test]
    fn strings_use_redis_encodings() {
        // Redis 7.0: DUMP of "7" (int) and "hello".
        let seven = dump(&Entry::new(b"k", b"7", 0));
        assert_eq!(&seven[..3], &[0, 0xC0, 7]);
        let hello = dump(&Entry::new(b"k", b"hello", 0));
        assert_eq!(&hello[..7], b"\x00\x05hello");
        assert_eq!(&hello[7..9], &[10, 0]);
        for s in [
            &b"-129"[..],
            b"40000",
            b"-2147483648",
            b"2147483648",
            b"007",
            b"",
            &[b'a'; 300],
        ] {
            let e = Entry::new(b"k", s, 0);
            assert_eq!(round_trip(&e), Dumped::String(Bytes::copy_from_slice(s)));
        }
        let long = vec![b'x'; 10_000];
        let payload = dump(&Entry::new(b"k", &long, 0));
        assert!(payload.len() < 500, "compressed: {}", payload.len());
        assert_eq!(decode(&payload), Ok(Dumped::String(long.into())));
    }

    #[test]
    fn collections_round_trip_with_their_encodings() {
        let mut h = Hash::default();
        let mut s = Set::default();
        let mut z = ZSet::default();
        let mut l = List::default();
        for i in 0..300 {
            h.insert(format!("f{i}").as_bytes(), format!("{i}").as_bytes());
            s.insert(format!("{i}").as_bytes());
            z.insert(i as f64 / 7.0, format!("m{i}").as_bytes());
            l.push_back(format!("e{i}").as_bytes());
        }
        for v in [
            Value::Hash(h),
            Value::Set(s),
            Value::ZSet(z),
            Value::List(l),
        ] {
            let back = round_trip(&entry_of(v.clone()));
            let Dumped::Collection(back) = back else {
                panic!("a collection")
            };
            assert_eq!(back.encoding(), v.encoding());
            assert_eq!(back.digest(), v.digest());
        }
    }

    /// A DUMP payload of `body` with this version's footer.
    fn payload(body: &[u8]) -> Vec<u8> {
        let mut p = body.to_vec();
        p.extend_from_slice(&RDB_VERSION.to_le_bytes());
        let crc = crc64(&p);
        p.extend_from_slice(&crc.to_le_bytes());
        p
    }

    /// A `ZSET_2` body (under 16384 members) with `-0` as the first member's score.
    fn zset2_with_negative_zero(members: usize, repeat_first: bool) -> Vec<u8> {
        let mut body = vec![TYPE_ZSET_2, 0x40 | (members >> 8) as u8, members as u8];
        for i in 0..members {
            let m = if repeat_first && i == members - 1 {
                0
            } else {
                i
            };
            let m = format!("m{m}");
            body.push(m.len() as u8);
            body.extend_from_slice(m.as_bytes());
            let score = if i == 0 { -0.0 } else { i as f64 };
            body.extend_from_slice(&score.to_le_bytes());
        }
        payload(&body)
    }

    #[test]
    fn restored_sorted_sets_keep_negative_zero_only_when_large_as_redis_loads_them() {
        let score_of_first = |members| {
            let Ok(Dumped::Collection(Value::ZSet(z))) =
                decode(&zset2_with_negative_zero(members, false))
            else {
                panic!("a sorted set")
            };
            assert_eq!(z.is_packed(), members <= ZSET_MAX_LISTPACK_ENTRIES);
            z.score(b"m0").expect("m0")
        };
        // Redis loads into a skiplist and packs a small result, whose listpack reads -0 as 0.
        assert!(score_of_first(200).is_sign_negative());
        assert!(score_of_first(10).is_sign_positive());
        assert_eq!(
            decode(&zset2_with_negative_zero(10, true)),
            Err(DecodeError::BadFormat),
            "a repeated member"
        );
    }

    #[test]
    fn footer_and_body_errors() {
        let mut p = dump(&Entry::new(b"k", b"hello", 0));
        assert_eq!(decode(&p[..9]), Err(DecodeError::VersionOrChecksum));
        let last = p.len() - 1;
        p[last] ^= 1;
        assert_eq!(decode(&p), Err(DecodeError::VersionOrChecksum));
        // A valid footer over a truncated body.
        assert_eq!(decode(&payload(b"\x00\x40")), Err(DecodeError::BadFormat));
        // Version 11 (Redis 7.2) is newer than 7.0 reads.
        let mut r = b"\x00\x01a".to_vec();
        r.extend_from_slice(&11u16.to_le_bytes());
        let crc = crc64(&r);
        r.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&r), Err(DecodeError::VersionOrChecksum));
    }

    #[test]
    fn listpack_entries_decode() {
        // "a", 5, -1 (13-bit), 1000 (13-bit), 70000 (int24), "x"*70 (12-bit string).
        let mut body = Vec::new();
        body.extend_from_slice(&[0x81, b'a', 2]);
        body.extend_from_slice(&[5, 1]);
        body.extend_from_slice(&[0xDF, 0xFF, 2]);
        body.extend_from_slice(&[0xC3, 0xE8, 2]);
        body.extend_from_slice(&[0xF2, 0x70, 0x11, 0x01, 4]);
        body.extend_from_slice(&[0xE0, 70]);
        body.extend_from_slice(&[b'x'; 70]);
        body.push(72);
        let mut lp = Vec::new();
        lp.extend_from_slice(&((body.len() + 7) as u32).to_le_bytes());
        lp.extend_from_slice(&6u16.to_le_bytes());
        lp.extend_from_slice(&body);
        lp.push(0xFF);
        let items = listpack(&lp).unwrap();
        let text: Vec<String> = items
            .iter()
            .map(|i| String::from_utf8_lossy(i).into_owned())
            .collect();
        assert_eq!(text[..5], ["a", "5", "-1", "1000", "70000"]);
        assert_eq!(items[5], vec![b'x'; 70]);
        assert!(listpack(&lp[..lp.len() - 1]).is_err());
    }

    #[test]
    fn hostile_lengths_are_refused_without_allocating() {
        // A list claiming 2^32 elements; an LZF string claiming 4 GiB from 3 bytes.
        for body in [
            &b"\x01\x80\xff\xff\xff\xff"[..],
            b"\x00\xc3\x03\x80\xff\xff\xff\xff\x00ab",
            b"\x12\x01\x02\x01",
        ] {
            let mut p = body.to_vec();
            p.extend_from_slice(&RDB_VERSION.to_le_bytes());
            let crc = crc64(&p);
            p.extend_from_slice(&crc.to_le_bytes());
            assert_eq!(decode(&p), Err(DecodeError::BadFormat));
        }
    }
}
