//! `DUMP`/`RESTORE` against a real `redis-server` (Debian's 7.0): values of every type and
//! encoding dumped by Redis restore into shoal with the same contents, and shoal's dumps
//! restore into Redis; corrupt payloads and bad options get Redis's errors from both.

mod common;
use common::*;

use bytes::{Bytes, BytesMut};
use shoal_protocol::{encode_command, Frame};

/// Sends a command whose arguments may be binary (a payload).
fn cmd_bytes(c: &mut Client, args: &[&[u8]]) -> Frame {
    let mut out = BytesMut::new();
    encode_command(args, &mut out);
    c.send_raw(&out).expect("write");
    c.read()
}

fn dump(c: &mut Client, key: &str) -> Bytes {
    match c.cmd(&["DUMP", key]) {
        Frame::Bulk(b) => b,
        other => panic!("DUMP {key}: {other:?}"),
    }
}

/// A type-independent view of a key's value: type, encoding and contents in a canonical order.
fn contents(c: &mut Client, key: &str) -> (Frame, Frame, Frame) {
    let kind = c.cmd(&["TYPE", key]);
    let encoding = c.cmd(&["OBJECT", "ENCODING", key]);
    let Frame::Simple(k) = &kind else {
        panic!("TYPE {key}: {kind:?}")
    };
    let sorted = |f: Frame| match f {
        Frame::Array(mut items) => {
            items.sort_by_key(|i| format!("{i:?}"));
            Frame::Array(items)
        }
        other => other,
    };
    let value = match k.as_str() {
        "string" => c.cmd(&["GET", key]),
        "list" => c.cmd(&["LRANGE", key, "0", "-1"]),
        // Insertion order of small hashes is kept by both: compare it as it is.
        "hash" if encoding == bulk("listpack") => c.cmd(&["HGETALL", key]),
        "hash" => match c.cmd(&["HGETALL", key]) {
            Frame::Array(items) => {
                let mut pairs: Vec<Frame> =
                    items.chunks(2).map(|p| Frame::Array(p.to_vec())).collect();
                pairs.sort_by_key(|i| format!("{i:?}"));
                Frame::Array(pairs)
            }
            other => other,
        },
        "set" => sorted(c.cmd(&["SMEMBERS", key])),
        "zset" => c.cmd(&["ZRANGE", key, "0", "-1", "WITHSCORES"]),
        other => panic!("unexpected type {other}"),
    };
    (kind, encoding, value)
}

/// Fills `c` with one key per type and encoding worth moving; returns their names.
fn populate(c: &mut Client) -> Vec<String> {
    let mut keys = Vec::new();
    let mut run = |c: &mut Client, key: &str, commands: Vec<Vec<String>>| {
        for args in commands {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            assert!(!c.cmd(&refs).is_error(), "{refs:?}");
        }
        keys.push(key.to_owned());
    };
    let v = |parts: &[&str]| parts.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let long_text: String = (0..400).map(|i| format!("word{} ", i % 17)).collect();
    let random_text: String = (0..300u32)
        .map(|i| char::from(b'!' + ((i.wrapping_mul(2654435761) >> 7) % 90) as u8))
        .collect();
    for (key, value) in [
        ("s:text", "hello"),
        ("s:int", "12345"),
        ("s:neg", "-7"),
        ("s:i16", "-30000"),
        ("s:bigint", "2147483648"),
        ("s:huge", "-9223372036854775808"),
        ("s:lead0", "007"),
        ("s:empty", ""),
        ("s:long", &long_text),
        ("s:random", &random_text),
    ] {
        run(c, key, vec![v(&["SET", key, value])]);
    }
    let mut rpush = v(&["RPUSH", "l:small", "a", "1", "-5", "70000", "x"]);
    rpush.push("y".repeat(100));
    run(c, "l:small", vec![rpush]);
    let mut big = v(&["RPUSH", "l:big"]);
    big.extend((0..3000).map(|i| format!("element-{i}-{}", "z".repeat(i % 50))));
    run(c, "l:big", vec![big]);

    run(
        c,
        "h:small",
        vec![v(&["HSET", "h:small", "b", "1", "a", "-2", "c", "text"])],
    );
    let mut hbig = v(&["HSET", "h:big"]);
    hbig.extend((0..300).flat_map(|i| [format!("f{i}"), format!("{}", i * 7)]));
    run(c, "h:big", vec![hbig]);
    run(
        c,
        "h:longval",
        vec![v(&["HSET", "h:longval", "f", &"v".repeat(100)])],
    );

    run(
        c,
        "set:ints",
        vec![v(&["SADD", "set:ints", "5", "-3", "100000", "70000000000"])],
    );
    let mut sbig = v(&["SADD", "set:bigints"]);
    sbig.extend((0..600).map(|i| (i * 3).to_string()));
    run(c, "set:bigints", vec![sbig]);
    run(
        c,
        "set:words",
        vec![v(&["SADD", "set:words", "a", "b", "hello", "1"])],
    );

    run(
        c,
        "z:small",
        vec![v(&[
            "ZADD", "z:small", "1", "a", "2.5", "b", "-3", "c", "inf", "d",
        ])],
    );
    let mut zbig = v(&["ZADD", "z:big"]);
    zbig.extend((0..300).flat_map(|i| [format!("{}", i as f64 / 3.0), format!("m{i}")]));
    run(c, "z:big", vec![zbig]);
    run(
        c,
        "z:longmember",
        vec![v(&["ZADD", "z:longmember", "1", &"m".repeat(80)])],
    );
    keys
}

/// Equal contents, or a failure that names the key and shows only the start of each side.
fn assert_same(got: (Frame, Frame, Frame), want: (Frame, Frame, Frame), key: &str) {
    if got != want {
        let short = |v: &(Frame, Frame, Frame)| {
            let text = format!("{v:?}");
            text[..text.len().min(400)].to_owned()
        };
        panic!("{key}: got {} want {}", short(&got), short(&want));
    }
}

#[test]
fn dump_restore_moves_every_type_between_redis_and_shoal() {
    let redis = RedisServer::start();
    let shoal = Server::start_with(&["--appendfsync", "no"]);
    let mut r = redis.client();
    let mut s = shoal.client();
    // shoal's thresholds are redis.conf's (the binary's built-in hash default is 512).
    assert_eq!(
        r.cmd(&["CONFIG", "SET", "hash-max-listpack-entries", "128"]),
        ok()
    );
    let keys = populate(&mut r);

    // Redis → shoal.
    for key in &keys {
        let payload = dump(&mut r, key);
        let reply = cmd_bytes(&mut s, &[b"RESTORE", key.as_bytes(), b"0", &payload]);
        assert_eq!(reply, ok(), "RESTORE {key} from Redis's dump");
        assert_same(contents(&mut s, key), contents(&mut r, key), key);
    }

    // shoal → Redis, under new names.
    for key in &keys {
        let payload = dump(&mut s, key);
        let copy = format!("back:{key}");
        let reply = cmd_bytes(&mut r, &[b"RESTORE", copy.as_bytes(), b"0", &payload]);
        assert_eq!(reply, ok(), "Redis restores shoal's dump of {key}");
        assert_same(contents(&mut r, &copy), contents(&mut r, key), key);
    }

    // Plain strings are dumped byte for byte as Redis dumps them.
    for key in ["s:text", "s:int", "s:neg", "s:i16", "s:bigint", "s:empty"] {
        assert_eq!(dump(&mut s, key), dump(&mut r, key), "{key}");
    }
    assert_eq!(s.cmd(&["DUMP", "nosuchkey"]), Frame::Null);
}

#[test]
fn restore_options_and_errors_match_redis() {
    let redis = RedisServer::start();
    let shoal = Server::start_with(&["--appendfsync", "no"]);
    let mut r = redis.client();
    let mut s = shoal.client();
    for c in [&mut r, &mut s] {
        assert_eq!(c.cmd(&["SET", "src", "payload-value"]), ok());
        assert_eq!(c.cmd(&["RPUSH", "list", "a", "b"]), ok_or_int());
    }
    let good = dump(&mut r, "src");
    let mut flipped = good.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x55;
    let truncated = &good[..good.len() - 3];
    // A valid footer over a body cut short: Redis's CRC passes, its decoding fails.
    let mut cut = good[..3].to_vec();
    cut.extend_from_slice(&good[good.len() - 10..good.len() - 8]);
    let crc = crc64_redis(&cut);
    cut.extend_from_slice(&crc.to_le_bytes());
    let far_past = b"1000".as_slice();
    let cases: Vec<Vec<&[u8]>> = vec![
        vec![b"RESTORE", b"new", b"0", &good],
        vec![b"RESTORE", b"new", b"0", &good],
        vec![b"RESTORE", b"new", b"0", &good, b"REPLACE"],
        vec![b"RESTORE", b"list", b"0", &good],
        vec![b"RESTORE", b"list", b"0", &flipped],
        vec![b"RESTORE", b"list", b"0", &good, b"REPLACE"],
        vec![b"RESTORE", b"f", b"0", &flipped],
        vec![b"RESTORE", b"f", b"0", truncated],
        vec![b"RESTORE", b"f", b"0", &cut],
        vec![b"RESTORE", b"f", b"0", b""],
        vec![b"RESTORE", b"f", b"-1", &good],
        vec![b"RESTORE", b"f", b"abc", &good],
        vec![b"RESTORE", b"f", b"0", &good, b"BOGUS"],
        vec![b"RESTORE", b"f", b"0", &good, b"IDLETIME", b"-1"],
        vec![b"RESTORE", b"f", b"0", &good, b"FREQ", b"256"],
        vec![
            b"RESTORE",
            b"f",
            b"0",
            &good,
            b"IDLETIME",
            b"5",
            b"FREQ",
            b"5",
        ],
        vec![b"RESTORE", b"f", b"0", &good, b"FREQ", b"5"],
        vec![b"RESTORE", b"g", far_past, &good, b"ABSTTL"],
        vec![b"EXISTS", b"g"],
        vec![b"RESTORE", b"h", b"100000", &good],
        vec![b"GET", b"h"],
        vec![b"GET", b"list"],
        vec![b"DUMP"],
        vec![b"RESTORE", b"x", b"0"],
    ];
    for args in &cases {
        let want = cmd_bytes(&mut r, args);
        let got = cmd_bytes(&mut s, args);
        let shown: Vec<String> = args
            .iter()
            .map(|a| String::from_utf8_lossy(&a[..a.len().min(20)]).into_owned())
            .collect();
        assert_eq!(got, want, "{shown:?}");
    }
    // IDLETIME sets the restored key's LRU idle time (not under an LFU policy), FREQ its LFU
    // counter (only under one), as Redis's objectSetLRUOrLFU.
    for c in [&mut r, &mut s] {
        let idle: Vec<&[u8]> = vec![b"RESTORE", b"idle", b"0", &good, b"IDLETIME", b"1000"];
        assert_eq!(cmd_bytes(c, &idle), Frame::Simple("OK".into()));
    }
    for c in [&mut r, &mut s] {
        match c.cmd(&["OBJECT", "IDLETIME", "idle"]) {
            Frame::Integer(secs) => assert!((1000..1010).contains(&secs), "IDLETIME {secs}"),
            other => panic!("OBJECT IDLETIME: {other:?}"),
        }
    }
    for c in [&mut r, &mut s] {
        assert_eq!(
            c.cmd(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"]),
            Frame::Simple("OK".into())
        );
        let freq: Vec<&[u8]> = vec![b"RESTORE", b"freq", b"0", &good, b"FREQ", b"100"];
        assert_eq!(cmd_bytes(c, &freq), Frame::Simple("OK".into()));
        assert_eq!(c.cmd(&["OBJECT", "FREQ", "freq"]), Frame::Integer(100));
        assert_eq!(
            c.cmd(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]),
            Frame::Simple("OK".into())
        );
    }
    // The relative TTL became a deadline.
    match s.cmd(&["PTTL", "h"]) {
        Frame::Integer(ms) => assert!((90_000..=100_000).contains(&ms), "PTTL {ms}"),
        other => panic!("PTTL: {other:?}"),
    }
}

fn ok_or_int() -> Frame {
    Frame::Integer(2)
}

/// CRC-64 as Redis computes it (Jones polynomial, reflected): the test builds payloads whose
/// footer is valid around a corrupt body.
fn crc64_redis(bytes: &[u8]) -> u64 {
    const POLY: u64 = 0x95ac9329ac4bc9b5; // 0xad93d23594c935a9 reflected
    let mut crc = 0u64;
    for &b in bytes {
        crc ^= b as u64;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
        }
    }
    crc
}

#[test]
fn test_crc_helper_matches_redis_vector() {
    assert_eq!(crc64_redis(b"123456789"), 0xe9c6d914c4b8d9ca);
}
