//! String, key and expiry commands against the real binary, with Redis 7's replies and errors.

mod common;
use common::*;

use shoal_protocol::Frame;
use std::time::Duration;

fn array(items: Vec<Frame>) -> Frame {
    Frame::Array(items)
}

#[test]
fn strings_behave_like_redis() {
    let server = Server::start();
    let mut c = server.client();
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(c.cmd(&["GET", "k"]), bulk("v"));
    assert_eq!(c.cmd(&["GET", "missing"]), Frame::Null);
    assert_eq!(c.cmd(&["SET", "k", "v2", "NX"]), Frame::Null);
    assert_eq!(c.cmd(&["SET", "k", "v2", "XX", "GET"]), bulk("v"));
    assert_eq!(c.cmd(&["SET", "new", "x", "XX"]), Frame::Null);
    assert_eq!(c.cmd(&["SET", "new", "x", "NX", "GET"]), Frame::Null);
    assert_eq!(c.cmd(&["GET", "new"]), bulk("x"));
    assert_eq!(c.cmd(&["SETNX", "k", "z"]), int(0));
    assert_eq!(c.cmd(&["SETNX", "fresh", "z"]), int(1));
    assert_eq!(c.cmd(&["GETSET", "k", "v3"]), bulk("v2"));
    assert_eq!(c.cmd(&["GETDEL", "k"]), bulk("v3"));
    assert_eq!(c.cmd(&["GETDEL", "k"]), Frame::Null);
    assert_eq!(c.cmd(&["MSET", "a", "1", "b", "2"]), ok());
    assert_eq!(
        c.cmd(&["MGET", "a", "nope", "b"]),
        array(vec![bulk("1"), Frame::Null, bulk("2")])
    );
    // MSETNX is atomic, so its keys must share a shard (a hash tag makes sure), as in Redis
    // Cluster; MSET and MGET may span shards.
    assert_eq!(
        c.cmd(&["MSETNX", "a", "9", "c", "3"]),
        err("CROSSSLOT Keys in request don't hash to the same slot")
    );
    assert_eq!(c.cmd(&["MSET", "{t}a", "1"]), ok());
    assert_eq!(c.cmd(&["MSETNX", "{t}a", "9", "{t}c", "3"]), int(0));
    assert_eq!(c.cmd(&["GET", "{t}c"]), Frame::Null);
    assert_eq!(c.cmd(&["MSETNX", "{t}c", "3", "{t}d", "4"]), int(1));
    assert_eq!(c.cmd(&["APPEND", "s", "Hello"]), int(5));
    assert_eq!(c.cmd(&["APPEND", "s", " World"]), int(11));
    assert_eq!(c.cmd(&["STRLEN", "s"]), int(11));
    assert_eq!(c.cmd(&["STRLEN", "nope"]), int(0));
    assert_eq!(c.cmd(&["GETRANGE", "s", "0", "4"]), bulk("Hello"));
    assert_eq!(c.cmd(&["GETRANGE", "s", "-5", "-1"]), bulk("World"));
    assert_eq!(c.cmd(&["SUBSTR", "s", "6", "100"]), bulk("World"));
    assert_eq!(c.cmd(&["SETRANGE", "s", "6", "Redis"]), int(11));
    assert_eq!(c.cmd(&["GET", "s"]), bulk("Hello Redis"));
    assert_eq!(c.cmd(&["SETRANGE", "pad", "3", "x"]), int(4));
    assert_eq!(c.cmd(&["GET", "pad"]), bulk("\0\0\0x"));
    assert_eq!(c.cmd(&["SETRANGE", "empty", "5", ""]), int(0));
    assert_eq!(c.cmd(&["EXISTS", "empty"]), int(0));
}

#[test]
fn counters_and_their_errors() {
    let server = Server::start();
    let mut c = server.client();
    assert_eq!(c.cmd(&["INCR", "n"]), int(1));
    assert_eq!(c.cmd(&["INCRBY", "n", "10"]), int(11));
    assert_eq!(c.cmd(&["DECR", "n"]), int(10));
    assert_eq!(c.cmd(&["DECRBY", "n", "20"]), int(-10));
    assert_eq!(c.cmd(&["SET", "n", "9223372036854775807"]), ok());
    assert_eq!(
        c.cmd(&["INCR", "n"]),
        err("ERR increment or decrement would overflow")
    );
    assert_eq!(
        c.cmd(&["DECRBY", "n", "-9223372036854775808"]),
        err("ERR decrement would overflow")
    );
    assert_eq!(c.cmd(&["SET", "s", "abc"]), ok());
    assert_eq!(
        c.cmd(&["INCR", "s"]),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(
        c.cmd(&["INCRBY", "n", "1.5"]),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(c.cmd(&["SET", "lead", "01"]), ok());
    assert_eq!(
        c.cmd(&["INCR", "lead"]),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(c.cmd(&["SET", "f", "10.50"]), ok());
    assert_eq!(c.cmd(&["INCRBYFLOAT", "f", "0.1"]), bulk("10.6"));
    assert_eq!(c.cmd(&["INCRBYFLOAT", "f", "-5"]), bulk("5.6"));
    assert_eq!(c.cmd(&["SET", "e", "5.0e3"]), ok());
    assert_eq!(c.cmd(&["INCRBYFLOAT", "e", "2.0e2"]), bulk("5200"));
    assert_eq!(
        c.cmd(&["INCRBYFLOAT", "s", "1"]),
        err("ERR value is not a valid float")
    );
    assert_eq!(
        c.cmd(&["INCRBYFLOAT", "f", "abc"]),
        err("ERR value is not a valid float")
    );
    assert_eq!(
        c.cmd(&["INCRBYFLOAT", "f", "inf"]),
        err("ERR increment would produce NaN or Infinity")
    );
}

#[test]
fn set_option_errors() {
    let server = Server::start();
    let mut c = server.client();
    for bad in [
        vec!["SET", "k", "v", "NX", "XX"],
        vec!["SET", "k", "v", "EX", "10", "PX", "100"],
        vec!["SET", "k", "v", "KEEPTTL", "EX", "10"],
        vec!["SET", "k", "v", "EX"],
        vec!["SET", "k", "v", "BOGUS"],
        vec!["GETEX", "k", "EX", "10", "PERSIST"],
        vec!["FLUSHALL", "NOW"],
    ] {
        assert_eq!(c.cmd(&bad), err("ERR syntax error"), "{bad:?}");
    }
    assert_eq!(
        c.cmd(&["SET", "k", "v", "EX", "0"]),
        err("ERR invalid expire time in 'set' command")
    );
    assert_eq!(
        c.cmd(&["SET", "k", "v", "PX", "-5"]),
        err("ERR invalid expire time in 'set' command")
    );
    assert_eq!(
        c.cmd(&["SET", "k", "v", "EX", "9223372036854775807"]),
        err("ERR invalid expire time in 'set' command")
    );
    assert_eq!(
        c.cmd(&["SET", "k", "v", "EX", "ten"]),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(
        c.cmd(&["SETEX", "k", "0", "v"]),
        err("ERR invalid expire time in 'setex' command")
    );
    assert_eq!(
        c.cmd(&["PSETEX", "k", "-1", "v"]),
        err("ERR invalid expire time in 'psetex' command")
    );
    assert_eq!(
        c.cmd(&["MSET", "a", "1", "b"]),
        err("ERR wrong number of arguments for 'mset' command")
    );
    assert_eq!(
        c.cmd(&["SETRANGE", "k", "-1", "x"]),
        err("ERR offset is out of range")
    );
    assert_eq!(
        c.cmd(&["SETRANGE", "k", "536870911", "xx"]),
        err("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
    );
    assert_eq!(c.cmd(&["DBSIZE"]), int(0), "no failed command wrote");
}

#[test]
fn keys_rename_type_scan() {
    let server = Server::start();
    let mut c = server.client();
    for i in 0..100 {
        let key = format!("key:{i}");
        assert_eq!(c.cmd(&["SET", &key, "v"]), ok());
    }
    assert_eq!(c.cmd(&["SET", "{o}other", "v"]), ok());
    assert_eq!(c.cmd(&["DBSIZE"]), int(101));
    assert_eq!(c.cmd(&["EXISTS", "key:1", "key:1", "nope"]), int(2));
    assert_eq!(c.cmd(&["TOUCH", "key:1", "nope"]), int(1));
    assert_eq!(c.cmd(&["TYPE", "key:1"]), Frame::simple("string"));
    assert_eq!(c.cmd(&["TYPE", "nope"]), Frame::simple("none"));

    let Frame::Array(mut all) = c.cmd(&["KEYS", "key:*"]) else {
        panic!("KEYS returns an array")
    };
    assert_eq!(all.len(), 100);
    all.sort_by_key(|f| format!("{f:?}"));
    all.dedup();
    assert_eq!(all.len(), 100);
    let Frame::Array(few) = c.cmd(&["KEYS", "key:[1-2]"]) else {
        panic!()
    };
    assert_eq!(few.len(), 2);

    // SCAN: every key exactly once, whatever COUNT.
    for count in ["1", "10", "1000"] {
        let mut cursor = "0".to_owned();
        let mut seen = Vec::new();
        loop {
            let Frame::Array(reply) = c.cmd(&["SCAN", &cursor, "MATCH", "key:*", "COUNT", count])
            else {
                panic!("SCAN returns an array")
            };
            let Frame::Bulk(next) = &reply[0] else {
                panic!()
            };
            let Frame::Array(keys) = &reply[1] else {
                panic!()
            };
            seen.extend(keys.iter().cloned());
            cursor = String::from_utf8(next.to_vec()).unwrap();
            if cursor == "0" {
                break;
            }
        }
        let total = seen.len();
        seen.sort_by_key(|f| format!("{f:?}"));
        seen.dedup();
        assert_eq!((total, seen.len()), (100, 100), "COUNT {count}");
    }
    // TYPE filters by the value's type.
    assert_eq!(c.cmd(&["HSET", "hash1", "f", "v"]), int(1));
    let mut scan_type = |kind: &str| {
        let (mut cursor, mut found) = ("0".to_string(), Vec::new());
        loop {
            let Frame::Array(mut reply) = c.cmd(&["SCAN", &cursor, "TYPE", kind]) else {
                panic!("SCAN reply");
            };
            let (Frame::Array(keys), Frame::Bulk(next)) =
                (reply.pop().unwrap(), reply.pop().unwrap())
            else {
                panic!("SCAN reply");
            };
            found.extend(keys);
            cursor = String::from_utf8(next.to_vec()).unwrap();
            if cursor == "0" {
                return found;
            }
        }
    };
    assert_eq!(scan_type("hash"), vec![bulk("hash1")]);
    assert_eq!(scan_type("zset"), Vec::<Frame>::new());
    assert_eq!(c.cmd(&["SCAN", "abc"]), err("ERR invalid cursor"));
    assert_eq!(c.cmd(&["SCAN", "0", "COUNT", "0"]), err("ERR syntax error"));

    // RENAME's keys must share a shard, as in Redis Cluster: the hash tag makes sure.
    assert_eq!(c.cmd(&["RENAME", "{o}other", "{o}renamed"]), ok());
    assert_eq!(c.cmd(&["GET", "{o}other"]), Frame::Null);
    assert_eq!(
        c.cmd(&["RENAME", "{o}nope", "{o}x"]),
        err("ERR no such key")
    );
    assert_eq!(c.cmd(&["SET", "{o}taken", "v"]), ok());
    assert_eq!(c.cmd(&["RENAMENX", "{o}renamed", "{o}taken"]), int(0));
    assert_eq!(c.cmd(&["RENAMENX", "{o}renamed", "{o}again"]), int(1));
    assert!(matches!(c.cmd(&["RANDOMKEY"]), Frame::Bulk(_)));

    assert_eq!(c.cmd(&["DEL", "key:1", "key:2", "nope"]), int(2));
    assert_eq!(c.cmd(&["UNLINK", "key:3"]), int(1));
    assert_eq!(c.cmd(&["FLUSHDB"]), ok());
    assert_eq!(c.cmd(&["DBSIZE"]), int(0));
    assert_eq!(c.cmd(&["RANDOMKEY"]), Frame::Null);
    assert_eq!(c.cmd(&["KEYS", "*"]), array(vec![]));
}

#[test]
fn ttl_commands_follow_redis() {
    let server = Server::start();
    let mut c = server.client();
    assert_eq!(c.cmd(&["TTL", "missing"]), int(-2));
    assert_eq!(c.cmd(&["PTTL", "missing"]), int(-2));
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(c.cmd(&["TTL", "k"]), int(-1));
    assert_eq!(c.cmd(&["EXPIRETIME", "k"]), int(-1));
    assert_eq!(c.cmd(&["EXPIRE", "k", "100"]), int(1));
    assert_eq!(c.cmd(&["TTL", "k"]), int(100));
    let Frame::Integer(pttl) = c.cmd(&["PTTL", "k"]) else {
        panic!()
    };
    assert!((99_000..=100_000).contains(&pttl), "{pttl}");
    assert_eq!(c.cmd(&["EXPIREAT", "k", "4102444800"]), int(1));
    assert_eq!(c.cmd(&["EXPIRETIME", "k"]), int(4102444800));
    assert_eq!(c.cmd(&["PEXPIRETIME", "k"]), int(4102444800000));
    // NX/XX/GT/LT.
    assert_eq!(c.cmd(&["EXPIRE", "k", "50", "NX"]), int(0));
    assert_eq!(c.cmd(&["EXPIRE", "k", "50", "GT"]), int(0));
    assert_eq!(c.cmd(&["EXPIRE", "k", "50", "LT"]), int(1));
    assert_eq!(c.cmd(&["TTL", "k"]), int(50));
    assert_eq!(c.cmd(&["PERSIST", "k"]), int(1));
    assert_eq!(c.cmd(&["PERSIST", "k"]), int(0));
    assert_eq!(c.cmd(&["EXPIRE", "k", "50", "XX"]), int(0));
    assert_eq!(
        c.cmd(&["EXPIRE", "k", "50", "GT"]),
        int(0),
        "persistent = infinite"
    );
    assert_eq!(c.cmd(&["EXPIRE", "k", "50", "XX", "LT"]), int(0));
    assert_eq!(c.cmd(&["EXPIRE", "k", "50", "LT"]), int(1));
    assert_eq!(
        c.cmd(&["EXPIRE", "k", "50", "NX", "XX"]),
        err("ERR NX and XX, GT or LT options at the same time are not compatible")
    );
    assert_eq!(
        c.cmd(&["EXPIRE", "k", "50", "GT", "LT"]),
        err("ERR GT and LT options at the same time are not compatible")
    );
    assert_eq!(
        c.cmd(&["EXPIRE", "k", "50", "FOO"]),
        err("ERR Unsupported option FOO")
    );
    assert_eq!(
        c.cmd(&["EXPIRE", "k", "9223372036854775807"]),
        err("ERR invalid expire time in 'expire' command")
    );
    assert_eq!(c.cmd(&["EXPIRE", "missing", "10"]), int(0));
    // A deadline in the past deletes at once.
    assert_eq!(c.cmd(&["EXPIRE", "k", "-1"]), int(1));
    assert_eq!(c.cmd(&["EXISTS", "k"]), int(0));
    // KEEPTTL keeps, plain SET clears, GETEX changes.
    assert_eq!(c.cmd(&["SET", "k", "v", "EX", "100"]), ok());
    assert_eq!(c.cmd(&["SET", "k", "v2", "KEEPTTL"]), ok());
    assert_eq!(c.cmd(&["TTL", "k"]), int(100));
    assert_eq!(c.cmd(&["GETEX", "k", "EX", "200"]), bulk("v2"));
    assert_eq!(c.cmd(&["TTL", "k"]), int(200));
    assert_eq!(c.cmd(&["GETEX", "k", "PERSIST"]), bulk("v2"));
    assert_eq!(c.cmd(&["TTL", "k"]), int(-1));
    assert_eq!(c.cmd(&["SET", "k", "v", "EX", "100"]), ok());
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(c.cmd(&["TTL", "k"]), int(-1));
    // RENAME carries the deadline.
    assert_eq!(c.cmd(&["SET", "r", "v", "PX", "100000"]), ok());
    assert_eq!(c.cmd(&["RENAME", "r", "r2"]), ok());
    assert_eq!(c.cmd(&["TTL", "r2"]), int(100));
}

#[test]
fn expired_keys_vanish_for_reads_and_are_reclaimed() {
    let server = Server::start();
    let mut c = server.client();
    assert_eq!(c.cmd(&["SET", "long", "v", "EX", "100"]), ok());
    for i in 0..500 {
        let key = format!("bulk:{i}");
        assert_eq!(c.cmd(&["SET", &key, "v", "PX", "200"]), ok());
    }
    // Each write waits for an fsync: set the short-lived key last, so it is still there.
    assert_eq!(c.cmd(&["SET", "short", "v", "PX", "1000"]), ok());
    assert_eq!(c.cmd(&["GET", "short"]), bulk("v"));
    assert!(
        eventually(Duration::from_secs(5), || c.cmd(&["GET", "short"])
            == Frame::Null),
        "an expired key must read as absent"
    );
    assert_eq!(c.cmd(&["TTL", "short"]), int(-2));
    assert_eq!(c.cmd(&["EXISTS", "short"]), int(0));
    // Active expiry frees them without any read touching them: only `long` stays.
    assert!(
        eventually(Duration::from_secs(5), || c.cmd(&["DBSIZE"]) == int(1)),
        "active expiry must reclaim expired keys; DBSIZE is {:?}",
        c.cmd(&["DBSIZE"])
    );
    assert_eq!(c.cmd(&["GET", "long"]), bulk("v"));
    let Frame::Bulk(info) = c.cmd(&["INFO", "stats"]) else {
        panic!()
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    assert!(info.contains("expired_keys:501"), "{info}");
    // A SET with an absolute deadline already past leaves nothing.
    assert_eq!(c.cmd(&["SET", "past", "v", "PXAT", "1"]), ok());
    assert_eq!(c.cmd(&["EXISTS", "past"]), int(0));
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let server = Server::start();
    let mut c = server.client();
    let mut batch = bytes::BytesMut::new();
    for i in 0..10_000 {
        let n = i.to_string();
        shoal_protocol::encode_command(&["SET", &format!("p:{i}"), &n], &mut batch);
        shoal_protocol::encode_command(&["INCR", "counter"], &mut batch);
        shoal_protocol::encode_command(&["GET", &format!("p:{i}")], &mut batch);
    }
    c.send_raw(&batch).unwrap();
    for i in 0..10_000 {
        assert_eq!(c.read(), ok());
        assert_eq!(c.read(), int(i + 1));
        assert_eq!(c.read(), bulk(&i.to_string()));
    }
    assert_eq!(c.cmd(&["DBSIZE"]), int(10_001));
}

/// A pipelined read sees the writes pipelined before it and none of those after it, and so
/// does a write the leader builds from the data (SPOP).
#[test]
fn pipelined_reads_see_only_earlier_writes() {
    let server = Server::start();
    let mut c = server.client();
    let mut batch = bytes::BytesMut::new();
    for i in 0..60 {
        let key = format!("k:{}", i % 50);
        let set = format!("s:{}", i % 50);
        for args in [
            ["SET", key.as_str(), "before"].as_slice(),
            &["GET", &key],
            &["SET", &key, "after"],
            &["GET", &key],
            &["DEL", &key],
            &["EXISTS", &key],
            &["SADD", &set, "m"],
            &["SPOP", &set],
        ] {
            shoal_protocol::encode_command(args, &mut batch);
        }
    }
    c.send_raw(&batch).unwrap();
    for i in 0..60 {
        let replies: Vec<Frame> = (0..8).map(|_| c.read()).collect();
        let want = [
            ok(),
            bulk("before"),
            ok(),
            bulk("after"),
            int(1),
            int(0),
            int(1),
            bulk("m"),
        ];
        assert_eq!(replies, want, "round {i}");
    }
}

#[test]
fn inline_commands_work_like_telnet() {
    let server = Server::start();
    let mut c = server.client();
    c.send_raw(b"SET greeting \"hello world\"\r\nGET greeting\r\nPING\n")
        .unwrap();
    assert_eq!(c.read(), ok());
    assert_eq!(c.read(), bulk("hello world"));
    assert_eq!(c.read(), Frame::simple("PONG"));
}

#[test]
fn redis_cli_drives_every_family() {
    let server = Server::start();
    assert_eq!(server.cli(&["SET", "k", "v", "EX", "100"]), "OK");
    assert_eq!(server.cli(&["GET", "k"]), "v");
    // Rounded to the nearest second as Redis does: 99 once half a second has passed (one
    // redis-cli start on a loaded machine can take that long).
    let ttl = server.cli(&["TTL", "k"]);
    assert!(ttl == "100" || ttl == "99", "TTL {ttl}");
    assert_eq!(server.cli(&["INCRBY", "n", "5"]), "5");
    assert_eq!(server.cli(&["MSET", "a", "1", "b", "2"]), "OK");
    assert_eq!(server.cli(&["MGET", "a", "b", "zz"]), "1\n2");
    assert_eq!(server.cli(&["EXISTS", "a", "b"]), "2");
    assert_eq!(server.cli(&["DBSIZE"]), "4");
    assert_eq!(server.cli(&["--no-raw", "GET", "zz"]), "(nil)");
    assert_eq!(
        server.cli(&["--no-raw", "INCR", "k"]),
        "(error) ERR value is not an integer or out of range"
    );
    assert_eq!(server.cli(&["FLUSHALL"]), "OK");
    assert_eq!(server.cli(&["DBSIZE"]), "0");
}
