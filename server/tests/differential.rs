//! Differential test of the data-type commands: the same seeded random command sequences go
//! to a real `redis-server` (Debian's, started here on a free port) and to shoal, and every
//! reply must be identical — errors included, after sorting the replies whose order Redis
//! leaves unspecified (a hash table's iteration order) and reducing random choices
//! (`SRANDMEMBER`, `HRANDFIELD`, `ZRANDMEMBER`) to what is deterministic about them.
//!
//! Runs on a single node and on a 3-node cluster; after the cluster run, every shard's
//! replicas must hold the same data (`INFO digest`).

mod common;
use common::*;

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_protocol::Frame;

/// Commands per family on a single node, and on the cluster (where every write is a Raft
/// round over the network: fewer, to keep CI's cost near a minute).
const COMMANDS: usize = 1500;
const CLUSTER_COMMANDS: usize = 600;
/// Commands sent per pipelined batch: pipelining must not change any reply (a read sees the
/// writes pipelined before it and none after it, as in Redis).
const BATCH: usize = 16;

// ------------------------------------------------------------------ generators

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.gen_range(0..items.len())]
}

fn cmd(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// A member/field/element: mostly from a small pool (so commands hit existing ones), some
/// integers (intsets), sometimes one too long for the compact encodings.
fn elem(rng: &mut StdRng) -> String {
    match rng.gen_range(0..20) {
        0 => "x".repeat(70),
        1..=6 => rng.gen_range(-5..20).to_string(),
        _ => pick(
            rng,
            &["a", "b", "c", "d", "e", "f", "g", "h", "alpha", "beta"],
        )
        .to_string(),
    }
}

fn score(rng: &mut StdRng) -> String {
    match rng.gen_range(0..12) {
        0 => "-inf".into(),
        1 => "+inf".into(),
        2 => "1.1".into(),
        3 => "0.1".into(),
        4 => "1e20".into(),
        5 => "nan-ish".into(),
        _ => (rng.gen_range(-20..20) as f64 / 2.0).to_string(),
    }
}

fn index(rng: &mut StdRng) -> String {
    rng.gen_range(-8..8).to_string()
}

/// An index, or sometimes not a number (Redis looks some keys up before it parses the index).
fn index_or_junk(rng: &mut StdRng) -> String {
    if rng.gen_range(0..10) == 0 {
        "x".into()
    } else {
        index(rng)
    }
}

/// A random-member count, sometimes out of Redis's range or not a number.
fn rand_count(rng: &mut StdRng) -> &'static str {
    pick(rng, &["3", "-3", "0", "100", "x", "-9223372036854775808"])
}

/// Keys of one family share a hash tag, so multi-key commands stay in one slot; `{T}str` holds
/// a string and `{T}o` a value of another family, for WRONGTYPE.
fn key(rng: &mut StdRng, tag: &str) -> String {
    let k = pick(rng, &["a", "a", "b", "b", "c", "str", "o"]);
    format!("{{{tag}}}{k}")
}

fn setup(tag: &str) -> Vec<Vec<String>> {
    let other = match tag {
        "h" => cmd(&["RPUSH", "{h}o", "x"]),
        "l" => cmd(&["SADD", "{l}o", "x"]),
        "s" => cmd(&["ZADD", "{s}o", "1", "x"]),
        _ => cmd(&["HSET", "{z}o", "f", "v"]),
    };
    // Weights and hash fields for `SORT ... BY {T}w_* GET {T}h_*->f`.
    let mut commands = vec![cmd(&["SET", &format!("{{{tag}}}str"), "v"]), other];
    for (e, w) in [
        ("a", "3"),
        ("b", "1.5"),
        ("1", "-2"),
        ("alpha", "10"),
        ("7", "x"),
    ] {
        commands.push(cmd(&["SET", &format!("{{{tag}}}w_{e}"), w]));
        commands.push(cmd(&[
            "HSET",
            &format!("{{{tag}}}h_{e}"),
            "f",
            &format!("F{e}"),
        ]));
    }
    commands
}

/// `SORT`/`SORT_RO` with a random choice of options. Avoided: what Redis leaves unspecified
/// (a set's own order with `BY nosort` and no `STORE`; `ALPHA` with `BY`, whose ties Redis's
/// unstable sort orders arbitrarily).
fn sort_cmd(rng: &mut StdRng, tag: &str) -> Vec<String> {
    let k = key(rng, tag);
    let mut c = cmd(&[pick(rng, &["SORT", "SORT", "SORT_RO"]), &k]);
    let store = rng.gen_range(0..5) == 0;
    let by = rng.gen_range(0..4);
    if by == 1 {
        c.extend(["BY".into(), format!("{{{tag}}}w_*")]);
    } else if by == 2 && (tag != "s" || store) {
        c.extend(["BY".into(), "nosort".into()]);
    }
    if rng.gen_range(0..3) == 0 {
        c.push("DESC".into());
    }
    if by != 1 && rng.gen_range(0..2) == 0 {
        c.push("ALPHA".into());
    }
    if rng.gen_range(0..3) == 0 {
        c.extend([
            "LIMIT".into(),
            index(rng),
            pick(rng, &["2", "-1", "0", "10"]).into(),
        ]);
    }
    for _ in 0..rng.gen_range(0..3) {
        let pattern = pick(rng, &["#", "w_*", "h_*->f", "h_*->g"]);
        let pattern = match pattern {
            "#" => "#".to_string(),
            p => format!("{{{tag}}}{p}"),
        };
        c.extend(["GET".into(), pattern]);
    }
    if store {
        c.extend(["STORE".into(), format!("{{{tag}}}c")]);
    }
    c
}

fn common_cmd(rng: &mut StdRng, tag: &str) -> Vec<String> {
    let k = key(rng, tag);
    match rng.gen_range(0..11) {
        0 => cmd(&["TYPE", &k]),
        1 => {
            // `{T}w_a` holds a small integer, which Redis shares (REFCOUNT 2147483647).
            let k = if rng.gen_range(0..4) == 0 {
                format!("{{{tag}}}w_a")
            } else {
                k
            };
            cmd(&[
                "OBJECT",
                pick(rng, &["ENCODING", "ENCODING", "REFCOUNT", "FREQ"]),
                &k,
            ])
        }
        2 => cmd(&["EXISTS", &k]),
        3 => cmd(&["GET", &k]),
        4 => cmd(&["DEL", &format!("{{{tag}}}c")]),
        5 => cmd(&["COPY", &k, &format!("{{{tag}}}c"), "REPLACE"]),
        6 => cmd(&[DUMP_RESTORE, &k, &format!("{{{tag}}}c")]),
        // Options Redis reads only for a key that exists (a missing one gets the empty scan),
        // after the key's type.
        7 => {
            let scan = match tag {
                "h" => "HSCAN",
                "z" => "ZSCAN",
                _ => "SSCAN",
            };
            let mut c = cmd(&[scan, &k, "0"]);
            let options = pick(rng, &["COUNT 0", "NOVALUES", "MATCH", "COUNT x", "COUNT 2"]);
            c.extend(options.split(' ').map(String::from));
            c
        }
        // Databases other than 0 exist in redis-server (16), not in shoal: not sent.
        8 => cmd(&[
            "COPY",
            &k,
            &format!("{{{tag}}}c"),
            "DB",
            pick(rng, &["0", "x", "-1", "16", "99999999999"]),
        ]),
        _ => sort_cmd(rng, tag),
    }
}

fn hash_cmd(rng: &mut StdRng) -> Vec<String> {
    let k = key(rng, "h");
    let (f, v) = (elem(rng), elem(rng));
    let n = rng.gen_range(-3..6).to_string();
    match rng.gen_range(0..25) {
        0..=3 => {
            let mut c = cmd(&["HSET", &k, &f, &v]);
            for _ in 0..rng.gen_range(0..3) {
                c.extend([elem(rng), elem(rng)]);
            }
            c
        }
        4 => cmd(&["HSETNX", &k, &f, &v]),
        5 => cmd(&["HGET", &k, &f]),
        6 => cmd(&["HMGET", &k, &f, &v]),
        7 => cmd(&["HMSET", &k, &f, &v]),
        8 | 9 => cmd(&["HDEL", &k, &f, &v]),
        10 => cmd(&["HLEN", &k]),
        11 => cmd(&["HSTRLEN", &k, &f]),
        12 => cmd(&["HEXISTS", &k, &f]),
        13 => cmd(&["HKEYS", &k]),
        14 => cmd(&["HVALS", &k]),
        15 => cmd(&["HGETALL", &k]),
        16 => cmd(&["HINCRBY", &k, &f, &n]),
        17 => cmd(&[
            "HINCRBYFLOAT",
            &k,
            &f,
            // 0.1 and 0.2 sum to 0.3 only in Redis's long double; 1e308 goes past f64.
            pick(
                rng,
                &["0.5", "-1.25", "abc", "3", "0.1", "0.2", "1e308", "inf"],
            ),
        ]),
        18 => cmd(&["HRANDFIELD", &k]),
        19 => cmd(&["HRANDFIELD", &k, &n, "WITHVALUES"]),
        20 => cmd(&["HSCAN", &k, "0", "MATCH", pick(rng, &["*", "a*", "?"])]),
        21 => cmd(&["HSET", &k, &f]),
        22 => cmd(&[
            "HRANDFIELD",
            &k,
            rand_count(rng),
            pick(rng, &["WITHVALUES", "WITHVALUE"]),
        ]),
        _ => common_cmd(rng, "h"),
    }
}

fn list_cmd(rng: &mut StdRng) -> Vec<String> {
    let k = key(rng, "l");
    let k2 = key(rng, "l");
    let e = elem(rng);
    let side = || ["LEFT", "RIGHT"];
    // Blocking pops get data or a tiny timeout (never 0: an empty key would wait forever).
    let tiny = |rng: &mut StdRng| pick(rng, &["0.01", "0.02"]).to_string();
    match rng.gen_range(0..33) {
        0..=2 => cmd(&["RPUSH", &k, &e, &elem(rng)]),
        3..=4 => cmd(&["LPUSH", &k, &e]),
        5 => cmd(&["LPUSHX", &k, &e]),
        6 => cmd(&["RPUSHX", &k, &e]),
        7 => cmd(&["LPOP", &k]),
        8 => cmd(&["RPOP", &k, &rng.gen_range(-1..4).to_string()]),
        9 => cmd(&["LLEN", &k]),
        10 | 11 => cmd(&["LRANGE", &k, &index(rng), &index(rng)]),
        12 => cmd(&["LINDEX", &k, &index_or_junk(rng)]),
        13 => cmd(&["LSET", &k, &index_or_junk(rng), &e]),
        14 => cmd(&[
            "LINSERT",
            &k,
            pick(rng, &["BEFORE", "AFTER", "NEAR"]),
            &elem(rng),
            &e,
        ]),
        15 => cmd(&["LREM", &k, &index(rng), &e]),
        16 => cmd(&["LTRIM", &k, &index(rng), &index(rng)]),
        17 => cmd(&["LPOS", &k, &e]),
        18 => cmd(&[
            "LPOS",
            &k,
            &e,
            "RANK",
            pick(rng, &["1", "-1", "2", "0", "-9223372036854775808"]),
            "COUNT",
            pick(rng, &["0", "2", "x"]),
        ]),
        19 => cmd(&["LPOS", &k, &e, "MAXLEN", pick(rng, &["0", "2", "-1", "x"])]),
        20 => cmd(&["LMOVE", &k, &k2, pick(rng, &side()), pick(rng, &side())]),
        21 => cmd(&["RPOPLPUSH", &k, &k2]),
        22 => cmd(&[
            "LMPOP",
            "2",
            &k,
            &k2,
            pick(rng, &side()),
            "COUNT",
            pick(rng, &["1", "3", "0"]),
        ]),
        23 => cmd(&["LMPOP", pick(rng, &["0", "x", "5"]), &k, "LEFT"]),
        24 | 25 => cmd(&[pick(rng, &["BLPOP", "BRPOP"]), &k, &k2, &tiny(rng)]),
        26 => cmd(&[
            "BLMOVE",
            &k,
            &k2,
            pick(rng, &["LEFT", "RIGHT", "UP"]),
            pick(rng, &side()),
            &tiny(rng),
        ]),
        27 => cmd(&["BRPOPLPUSH", &k, &k2, &tiny(rng)]),
        28 => cmd(&[
            "BLMPOP",
            &tiny(rng),
            "2",
            &k,
            &k2,
            pick(rng, &side()),
            "COUNT",
            pick(rng, &["1", "3", "0"]),
        ]),
        29 => cmd(&["BLPOP", &k, pick(rng, &["-1", "x", "inf", "1e30"])]),
        30 => cmd(&[
            "BLMPOP",
            pick(rng, &["-1", "x", "0.01"]),
            pick(rng, &["0", "x", "5", "1"]),
            &k,
            pick(rng, &["LEFT", "UP"]),
        ]),
        _ => common_cmd(rng, "l"),
    }
}

fn set_cmd(rng: &mut StdRng) -> Vec<String> {
    let k = key(rng, "s");
    let k2 = key(rng, "s");
    let m = elem(rng);
    match rng.gen_range(0..22) {
        0..=3 => cmd(&["SADD", &k, &m, &elem(rng), &elem(rng)]),
        4 | 5 => cmd(&["SREM", &k, &m, &elem(rng)]),
        6 => cmd(&["SMEMBERS", &k]),
        7 => cmd(&["SISMEMBER", &k, &m]),
        8 => cmd(&["SMISMEMBER", &k, &m, &elem(rng)]),
        9 => cmd(&["SCARD", &k]),
        10 => cmd(&["SPOP", &k, "1000"]),
        11 => cmd(&["SRANDMEMBER", &k]),
        12 => cmd(&["SRANDMEMBER", &k, rand_count(rng)]),
        13 => cmd(&["SMOVE", &k, &k2, &m]),
        14 => cmd(&["SINTER", &k, &k2]),
        15 => cmd(&["SUNION", &k, &k2]),
        16 => cmd(&["SDIFF", &k, &k2]),
        17 => cmd(&[
            "SINTERCARD",
            "2",
            &k,
            &k2,
            "LIMIT",
            pick(rng, &["0", "1", "-1"]),
        ]),
        18 => cmd(&[
            pick(rng, &["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"]),
            &k,
            &k2,
            &key(rng, "s"),
        ]),
        19 => cmd(&["SSCAN", &k, "0", "COUNT", "3"]),
        _ => common_cmd(rng, "s"),
    }
}

fn zset_cmd(rng: &mut StdRng) -> Vec<String> {
    let k = key(rng, "z");
    let k2 = key(rng, "z");
    let m = elem(rng);
    let bound =
        |rng: &mut StdRng| pick(rng, &["-inf", "+inf", "0", "(1", "2.5", "(-3", "x"]).to_string();
    let lex =
        |rng: &mut StdRng| pick(rng, &["-", "+", "[a", "(b", "[c", "(alpha", "bad"]).to_string();
    // Lex ranges assume equal scores (Redis's answer is unspecified otherwise): they run on
    // `{z}lex`, whose members all score 0.
    let lk = "{z}lex";
    let tiny = |rng: &mut StdRng| pick(rng, &["0.01", "0.02"]).to_string();
    match rng.gen_range(0..41) {
        0..=3 => cmd(&["ZADD", &k, &score(rng), &m, &score(rng), &elem(rng)]),
        34 => cmd(&["ZADD", "{z}lex", "0", &m, "0", &elem(rng)]),
        4 => {
            let mut c = cmd(&["ZADD", &k]);
            for flag in ["NX", "XX", "GT", "LT", "CH", "INCR"] {
                if rng.gen_range(0..4) == 0 {
                    c.push(flag.into());
                }
            }
            c.extend([score(rng), m]);
            c
        }
        5 => cmd(&["ZINCRBY", &k, pick(rng, &["1", "-0.5", "2.5", "x"]), &m]),
        6 => cmd(&["ZREM", &k, &m, &elem(rng)]),
        7 => cmd(&["ZCARD", &k]),
        8 => cmd(&["ZSCORE", &k, &m]),
        9 => cmd(&["ZMSCORE", &k, &m, &elem(rng)]),
        10 => cmd(&[pick(rng, &["ZRANK", "ZREVRANK"]), &k, &m]),
        11 => cmd(&["ZCOUNT", &k, &bound(rng), &bound(rng)]),
        12 => cmd(&["ZLEXCOUNT", lk, &lex(rng), &lex(rng)]),
        13 => cmd(&["ZRANGE", &k, &index(rng), &index(rng), "WITHSCORES"]),
        14 => cmd(&[
            "ZRANGE",
            &k,
            &bound(rng),
            &bound(rng),
            "BYSCORE",
            "LIMIT",
            &index(rng),
            &index(rng),
        ]),
        15 => cmd(&["ZRANGE", lk, &lex(rng), &lex(rng), "BYLEX", "REV"]),
        16 => cmd(&[
            "ZRANGE",
            &k,
            &bound(rng),
            &bound(rng),
            "BYSCORE",
            "REV",
            "WITHSCORES",
        ]),
        17 => cmd(&["ZRANGESTORE", &k2, &k, &index(rng), &index(rng)]),
        18 => cmd(&["ZREVRANGE", &k, &index(rng), &index(rng), "WITHSCORES"]),
        19 => cmd(&[
            pick(rng, &["ZRANGEBYSCORE", "ZREVRANGEBYSCORE"]),
            &k,
            &bound(rng),
            &bound(rng),
            "WITHSCORES",
        ]),
        20 => cmd(&[
            pick(rng, &["ZRANGEBYLEX", "ZREVRANGEBYLEX"]),
            lk,
            &lex(rng),
            &lex(rng),
            "LIMIT",
            "0",
            "2",
        ]),
        21 => cmd(&[pick(rng, &["ZPOPMIN", "ZPOPMAX"]), &k]),
        22 => cmd(&[
            pick(rng, &["ZPOPMIN", "ZPOPMAX"]),
            &k,
            pick(rng, &["2", "0", "-1"]),
        ]),
        23 => cmd(&["ZRANDMEMBER", &k]),
        24 => cmd(&[
            "ZRANDMEMBER",
            &k,
            pick(rng, &["2", "-2", "50", "x", "-9223372036854775808"]),
            pick(rng, &["WITHSCORES", "WITHSCORES", "WITHSCORE"]),
        ]),
        25 => cmd(&[
            pick(rng, &["ZUNIONSTORE", "ZINTERSTORE"]),
            &k,
            "2",
            &k2,
            &key(rng, "z"),
            "WEIGHTS",
            "2",
            pick(rng, &["0.5", "-1", "x"]),
            "AGGREGATE",
            pick(rng, &["SUM", "MIN", "MAX"]),
        ]),
        26 => cmd(&["ZDIFFSTORE", &k, "2", &k2, &key(rng, "z")]),
        27 => cmd(&[
            pick(rng, &["ZUNION", "ZINTER", "ZDIFF"]),
            "2",
            &k,
            &k2,
            "WITHSCORES",
        ]),
        28 => cmd(&["ZREMRANGEBYRANK", &k, &index(rng), &index(rng)]),
        29 => cmd(&["ZREMRANGEBYSCORE", &k, &bound(rng), &bound(rng)]),
        30 => cmd(&["ZREMRANGEBYLEX", lk, &lex(rng), &lex(rng)]),
        31 => cmd(&["ZSCAN", &k, "0"]),
        35 | 36 => cmd(&[
            "ZMPOP",
            "2",
            &k,
            &k2,
            pick(rng, &["MIN", "MAX", "MID"]),
            "COUNT",
            pick(rng, &["1", "3", "0"]),
        ]),
        37 => cmd(&[pick(rng, &["BZPOPMIN", "BZPOPMAX"]), &k, &k2, &tiny(rng)]),
        38 => cmd(&[
            "BZMPOP",
            &tiny(rng),
            "2",
            &k,
            &k2,
            pick(rng, &["MIN", "MAX"]),
            "COUNT",
            pick(rng, &["1", "2"]),
        ]),
        39 => cmd(&[
            pick(rng, &["ZMPOP", "BZMPOP"]),
            pick(rng, &["0", "x", "5", "1"]),
            &k,
            pick(rng, &["MIN", "-1"]),
        ]),
        40 => cmd(&[
            pick(rng, &["BZPOPMIN", "BZPOPMAX"]),
            &k,
            pick(rng, &["-1", "x", "inf"]),
        ]),
        _ => common_cmd(rng, "z"),
    }
}

// ------------------------------------------------------------------ normalisation

fn sort_frames(items: &mut [Frame]) {
    items.sort_by_key(|f| format!("{f:?}"));
}

/// Makes a reply comparable: unordered collections sorted, random choices reduced to their
/// deterministic part.
fn normalise(args: &[String], reply: Frame) -> Frame {
    let name = args[0].to_ascii_uppercase();
    let unordered = |items: Vec<Frame>| {
        let mut items = items;
        sort_frames(&mut items);
        Frame::Array(items)
    };
    let pairs = |items: Vec<Frame>| {
        let mut pairs: Vec<Frame> = items.chunks(2).map(|p| Frame::Array(p.to_vec())).collect();
        sort_frames(&mut pairs);
        Frame::Array(pairs)
    };
    match (name.as_str(), reply) {
        (_, Frame::Error(e)) => Frame::Error(e),
        (
            "HKEYS" | "HVALS" | "SMEMBERS" | "SINTER" | "SUNION" | "SDIFF" | "SPOP",
            Frame::Array(items) | Frame::Set(items),
        ) => unordered(items),
        ("HGETALL", Frame::Array(items)) => pairs(items),
        ("HGETALL", Frame::Map(items)) => {
            pairs(items.into_iter().flat_map(|(a, b)| [a, b]).collect())
        }
        ("HSCAN" | "ZSCAN" | "SSCAN", Frame::Array(mut parts)) if parts.len() == 2 => {
            // A whole iteration is compared by the caller; here only the elements matter.
            let Frame::Array(items) = parts.pop().unwrap() else {
                unreachable!()
            };
            if name == "SSCAN" {
                unordered(items)
            } else {
                pairs(items)
            }
        }
        ("HRANDFIELD" | "SRANDMEMBER" | "ZRANDMEMBER", reply) => match reply {
            Frame::Array(items) | Frame::Set(items) => Frame::Integer(items.len() as i64),
            Frame::Null => Frame::Null,
            error @ Frame::Error(_) => error,
            _ => Frame::simple("one"),
        },
        (_, reply) => reply,
    }
}

/// Scans run to completion so the whole collection is compared: `[KEY]SCAN key 0 ...` is
/// rewritten by the caller into a loop over cursors.
fn full_scan(c: &mut Client, args: &[String]) -> Frame {
    let mut cursor = "0".to_string();
    let mut all = Vec::new();
    loop {
        let mut a = args.to_vec();
        a[2] = cursor.clone();
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        match c.cmd(&refs) {
            Frame::Array(mut parts) if parts.len() == 2 => {
                let Frame::Array(items) = parts.pop().unwrap() else {
                    panic!("scan items")
                };
                all.extend(items);
                cursor = match parts.pop().unwrap() {
                    Frame::Bulk(b) => String::from_utf8(b.to_vec()).unwrap(),
                    other => panic!("scan cursor {other:?}"),
                };
                if cursor == "0" {
                    return Frame::Array(vec![Frame::bulk("0"), Frame::Array(all)]);
                }
            }
            other => return other,
        }
    }
}

/// A pseudo-command: `DUMP` its first key and `RESTORE` the payload into its second
/// (`REPLACE`) on the same server; the reply is `RESTORE`'s, or `DUMP`'s when that is not a
/// payload. Later commands of the run read the restored key on both servers.
const DUMP_RESTORE: &str = "DUMP-RESTORE";

fn dump_restore(c: &mut Client, args: &[String]) -> Frame {
    match c.cmd(&["DUMP", &args[1]]) {
        Frame::Bulk(payload) => {
            let mut out = bytes::BytesMut::new();
            let restore: [&[u8]; 5] = [b"RESTORE", args[2].as_bytes(), b"0", &payload, b"REPLACE"];
            shoal_protocol::encode_command(&restore, &mut out);
            c.send_raw(&out).expect("write");
            c.read()
        }
        other => other,
    }
}

/// Sends `commands` to both servers and asserts identical (normalised) replies.
/// After every batch, the family's keys hold the same on both servers (type, encoding and
/// contents), so a write that diverged without a different reply is caught where it ran.
fn compare_keys(redis: &mut Client, shoal: &mut Client, tag: &str, label: &str) {
    for k in ["a", "b", "c", "o", "lex"] {
        let key = format!("{{{tag}}}{k}");
        let kind = redis.cmd(&["TYPE", &key]);
        let read = match &kind {
            Frame::Simple(t) if t == "hash" => cmd(&["HGETALL", &key]),
            Frame::Simple(t) if t == "list" => cmd(&["LRANGE", &key, "0", "-1"]),
            Frame::Simple(t) if t == "set" => cmd(&["SMEMBERS", &key]),
            Frame::Simple(t) if t == "zset" => cmd(&["ZRANGE", &key, "0", "-1", "WITHSCORES"]),
            _ => cmd(&["GET", &key]),
        };
        let encoding = cmd(&["OBJECT", "ENCODING", &key]);
        for args in [cmd(&["TYPE", &key]), encoding, read] {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let (w, g) = (redis.cmd(&refs), shoal.cmd(&refs));
            let (w, g) = (normalise(&args, w), normalise(&args, g));
            assert_eq!(g, w, "{label}: after it, {args:?}");
        }
    }
}

fn compare(redis: &mut Client, shoal: &mut Client, commands: &[Vec<String>], label: &str) {
    let tag = commands
        .iter()
        .flat_map(|c| c.iter().skip(1))
        .find_map(|a| a.strip_prefix('{').and_then(|a| a.split('}').next()))
        .unwrap_or("")
        .to_string();
    for (n, batch) in commands.chunks(BATCH).enumerate() {
        // `SHOAL_DIFF_TRACE=1`: print each batch, to find what led to a failure.
        if std::env::var("SHOAL_DIFF_TRACE").is_ok() {
            eprintln!("TRACE batch {n}: {batch:?}");
        }
        if n > 0 {
            compare_keys(redis, shoal, &tag, &format!("{label}: batch {}", n - 1));
        }
        let (scans, plain): (Vec<Vec<String>>, Vec<Vec<String>>) = batch
            .iter()
            .cloned()
            .partition(|c| c[0].ends_with("SCAN") || c[0] == DUMP_RESTORE);
        // Every third batch runs as one transaction: each command must give the same reply
        // inside `MULTI`/`EXEC` as Redis gives there (queue-time refusals, `EXECABORT`,
        // blocking commands that do not block, reads that see the transaction's writes).
        if n % 3 == 1 && !plain.is_empty() {
            compare_transaction(redis, shoal, &plain, &format!("{label}: batch {n}"));
            run_scans(redis, shoal, &scans, &format!("{label}: batch {n}"));
            continue;
        }
        let want = redis.pipeline(&plain);
        let mut got = shoal.pipeline(&plain);
        // TRYAGAIN: no leader took the request (nothing applied) while leadership moved; a
        // cluster client retries it.
        for (args, reply) in plain.iter().zip(got.iter_mut()) {
            let deadline = Instant::now() + Duration::from_secs(20);
            while matches!(reply, Frame::Error(e) if e.starts_with("TRYAGAIN"))
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(50));
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                *reply = shoal.cmd(&refs);
            }
        }
        for (i, ((args, w), g)) in plain.iter().zip(want).zip(got).enumerate() {
            let (w, g) = (normalise(args, w), normalise(args, g));
            assert_eq!(
                g,
                w,
                "{label}: batch {n}: {args:?}: shoal replied {g:?}, redis {w:?}; the batch so far: {:?}",
                &plain[..i]
            );
        }
        run_scans(redis, shoal, &scans, &format!("{label}: batch {n}"));
    }
}

/// Runs the scans and `DUMP-RESTORE`s of a batch (they loop or chain, so they are not
/// pipelined) on both servers and compares their replies.
fn run_scans(redis: &mut Client, shoal: &mut Client, scans: &[Vec<String>], label: &str) {
    for args in scans {
        let (w, g) = if args[0] == DUMP_RESTORE {
            (dump_restore(redis, args), dump_restore(shoal, args))
        } else {
            (full_scan(redis, args), full_scan(shoal, args))
        };
        let (w, g) = (normalise(args, w), normalise(args, g));
        assert_eq!(g, w, "{label}: {args:?}");
    }
}

/// Sends `commands` as one pipelined `MULTI ... EXEC` to both servers and compares every
/// reply: the queuing replies, then `EXEC`'s (element by element, normalised).
fn compare_transaction(
    redis: &mut Client,
    shoal: &mut Client,
    commands: &[Vec<String>],
    label: &str,
) {
    let mut tx = vec![cmd(&["MULTI"])];
    tx.extend(commands.iter().cloned());
    tx.push(cmd(&["EXEC"]));
    let want = redis.pipeline(&tx);
    let mut got = shoal.pipeline(&tx);
    // TRYAGAIN on EXEC: no leader took the entry (nothing applied); a client runs it again.
    let deadline = Instant::now() + Duration::from_secs(20);
    while matches!(got.last(), Some(Frame::Error(e)) if e.starts_with("TRYAGAIN"))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
        got = shoal.pipeline(&tx);
    }
    let (want_exec, got_exec) = (want.last().cloned(), got.last().cloned());
    for (i, (args, (w, g))) in tx.iter().zip(want.into_iter().zip(got)).enumerate() {
        if i + 1 < tx.len() {
            assert_eq!(
                g, w,
                "{label}: queuing {args:?} in MULTI: shoal replied {g:?}, redis {w:?}"
            );
        }
    }
    match (want_exec, got_exec) {
        (Some(Frame::Array(want)), Some(Frame::Array(got))) => {
            assert_eq!(got.len(), want.len(), "{label}: EXEC reply lengths");
            for (i, (args, (w, g))) in commands.iter().zip(want.into_iter().zip(got)).enumerate() {
                let (w, g) = (normalise(args, w), normalise(args, g));
                assert_eq!(
                    g,
                    w,
                    "{label}: {args:?} inside EXEC: shoal replied {g:?}, redis {w:?}; the transaction so far: {:?}",
                    &commands[..i]
                );
            }
        }
        (w, g) => assert_eq!(g, w, "{label}: EXEC of {commands:?}"),
    }
}

fn family_commands(seed: u64, family: &str, count: usize) -> Vec<Vec<String>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let tag = &family[..1];
    let mut commands = setup(tag);
    for _ in 0..count {
        commands.push(match family {
            "hash" => hash_cmd(&mut rng),
            "list" => list_cmd(&mut rng),
            "set" => set_cmd(&mut rng),
            _ => zset_cmd(&mut rng),
        });
    }
    // A final look at everything the run left behind.
    for k in ["a", "b", "c"] {
        let k = format!("{{{tag}}}{k}");
        commands.push(cmd(&["TYPE", &k]));
        commands.push(cmd(&["OBJECT", "ENCODING", &k]));
    }
    commands
}

fn seed() -> u64 {
    std::env::var("SHOAL_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED)
}

fn run_families(redis: &RedisServer, shoal_client: impl Fn() -> Client, count: usize, label: &str) {
    let seed = seed();
    for (i, family) in ["hash", "list", "set", "zset"].iter().enumerate() {
        let commands = family_commands(seed + i as u64, family, count);
        let mut r = redis.client();
        let mut s = shoal_client();
        r.cmd(&["FLUSHALL"]);
        assert_eq!(s.cmd(&["FLUSHALL"]), Frame::ok());
        compare(
            &mut r,
            &mut s,
            &commands,
            &format!("{label} {family} seed {seed}"),
        );
        // The same in RESP3 (maps, doubles, sets, nested score pairs), shorter.
        let mut r3 = redis.client();
        let mut s3 = shoal_client();
        assert!(!r3.cmd(&["HELLO", "3"]).is_error());
        assert!(!s3.cmd(&["HELLO", "3"]).is_error());
        compare(
            &mut r3,
            &mut s3,
            &commands[..commands.len() / 4],
            &format!("{label} {family} RESP3 seed {seed}"),
        );
    }
}

#[test]
fn data_types_reply_as_redis_does_on_a_single_node() {
    let redis = RedisServer::start();
    // Durability is not under test here: skip the fsync per write.
    let shoal = Server::start_with(&["--appendfsync", "no"]);
    let started = Instant::now();
    run_families(&redis, || shoal.client(), COMMANDS, "single node");
    eprintln!("single node: {:?}", started.elapsed());
}

#[test]
fn data_types_reply_as_redis_does_on_a_cluster_and_replicas_agree() {
    let redis = RedisServer::start();
    let mut cluster = Cluster::start(3, &["--appendfsync", "no", "--shards", "4"]);
    cluster.wait_balanced(3, Duration::from_secs(90));
    let started = Instant::now();
    // Each family's hash tag lands on some shard; any node proxies to its leader.
    let addrs: Vec<_> = cluster.nodes.iter().map(|n| n.port()).collect();
    let next = std::cell::Cell::new(0);
    run_families(
        &redis,
        || {
            let i = next.get();
            next.set(i + 1);
            Client::connect(
                format!("127.0.0.1:{}", addrs[i % addrs.len()])
                    .parse()
                    .unwrap(),
            )
        },
        CLUSTER_COMMANDS,
        "3-node cluster",
    );
    eprintln!("cluster: {:?}", started.elapsed());
    // Replicas of every shard converge to the same data.
    let agree = eventually(Duration::from_secs(20), || {
        let mut by_shard: std::collections::BTreeMap<u32, Vec<ShardDigest>> = Default::default();
        for node in &cluster.nodes {
            for (shard, d) in node.digests() {
                if shard != 0 {
                    by_shard.entry(shard).or_default().push(d);
                }
            }
        }
        !by_shard.is_empty()
            && by_shard.values().all(|ds| {
                ds.len() >= 2
                    && ds
                        .iter()
                        .all(|d| d.digest == ds[0].digest && d.applied == ds[0].applied)
            })
    });
    assert!(
        agree,
        "replicas disagree: {:?}",
        cluster
            .nodes
            .iter()
            .map(|n| n.digests())
            .collect::<Vec<_>>()
    );
}
