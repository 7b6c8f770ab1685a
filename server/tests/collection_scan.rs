//! `HSCAN`/`SSCAN`/`ZSCAN` cursors over large encodings: a scan takes several calls with
//! nonzero intermediate cursors, honours `COUNT` roughly and `MATCH`, and returns every element
//! present for the whole scan, also while elements are added and removed between calls.

mod common;
use common::*;

use std::collections::HashSet;

use shoal_protocol::Frame;

/// One call: the next cursor and the reply's items.
fn call(c: &mut Client, args: &[&str]) -> (String, Vec<String>) {
    match c.cmd(args) {
        Frame::Array(mut parts) if parts.len() == 2 => {
            let Some(Frame::Array(items)) = parts.pop() else {
                panic!("{args:?}: items")
            };
            let Some(Frame::Bulk(cursor)) = parts.pop() else {
                panic!("{args:?}: cursor")
            };
            let items = items
                .into_iter()
                .map(|f| match f {
                    Frame::Bulk(b) => String::from_utf8(b.to_vec()).unwrap(),
                    other => panic!("{args:?}: item {other:?}"),
                })
                .collect();
            (String::from_utf8(cursor.to_vec()).unwrap(), items)
        }
        other => panic!("{args:?}: {other:?}"),
    }
}

struct Scan {
    calls: usize,
    nonzero_cursors: usize,
    largest_step: usize,
    /// Every element returned (members, or fields for HSCAN), with repeats.
    seen: Vec<String>,
}

/// Runs a whole scan of `key` with `cmd` (`HSCAN`...), calling `between` after every call.
fn scan(
    c: &mut Client,
    cmd: &str,
    key: &str,
    extra: &[&str],
    mut between: impl FnMut(&mut Client, usize),
) -> Scan {
    let mut cursor = "0".to_string();
    let mut out = Scan {
        calls: 0,
        nonzero_cursors: 0,
        largest_step: 0,
        seen: Vec::new(),
    };
    let pairs = cmd != "SSCAN";
    loop {
        let mut args = vec![cmd, key, &cursor];
        args.extend_from_slice(extra);
        let (next, items) = call(c, &args);
        out.calls += 1;
        let elements: Vec<String> = if pairs {
            items.chunks(2).map(|p| p[0].clone()).collect()
        } else {
            items
        };
        out.largest_step = out.largest_step.max(elements.len());
        out.seen.extend(elements);
        assert!(out.calls < 10_000, "the scan of {key} never ended");
        if next == "0" {
            return out;
        }
        out.nonzero_cursors += 1;
        between(c, out.calls);
        cursor = next;
    }
}

#[test]
fn large_collections_scan_in_steps_and_return_every_element_while_growing() {
    let shoal = Server::start_with(&["--appendfsync", "no"]);
    let mut c = shoal.client();
    let n = 2000;
    let names: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
    let mut hset = vec!["HSET".to_string(), "h".into()];
    let mut sadd = vec!["SADD".to_string(), "s".into()];
    let mut zadd = vec!["ZADD".to_string(), "z".into()];
    for (i, name) in names.iter().enumerate() {
        hset.extend([name.clone(), i.to_string()]);
        sadd.push(name.clone());
        zadd.extend([i.to_string(), name.clone()]);
    }
    for args in [&hset, &sadd, &zadd] {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(c.cmd(&refs), Frame::Integer(n as i64), "{}", refs[0]);
    }
    assert_eq!(c.cmd(&["OBJECT", "ENCODING", "h"]), bulk("hashtable"));
    assert_eq!(c.cmd(&["OBJECT", "ENCODING", "s"]), bulk("hashtable"));
    assert_eq!(c.cmd(&["OBJECT", "ENCODING", "z"]), bulk("skiplist"));
    let all: HashSet<String> = names.iter().cloned().collect();

    for (cmd, key, add) in [
        ("HSCAN", "h", "HSET"),
        ("SSCAN", "s", "SADD"),
        ("ZSCAN", "z", "ZADD"),
    ] {
        // Still: each element exactly once, in steps of about COUNT.
        let still = scan(&mut c, cmd, key, &["COUNT", "10"], |_, _| {});
        assert!(still.calls >= 100, "{cmd}: {} calls", still.calls);
        assert!(still.nonzero_cursors > 0);
        assert!(
            still.largest_step <= 60,
            "{cmd}: a step of {}",
            still.largest_step
        );
        assert_eq!(still.seen.len(), n, "{cmd}: each element once");
        assert_eq!(
            still.seen.iter().cloned().collect::<HashSet<_>>(),
            all,
            "{cmd}"
        );

        // Growing (by a quarter over the scan: the table rehashes) and losing elements that
        // were never part of the original set: every original element still comes back.
        let growing = scan(&mut c, cmd, key, &["COUNT", "10"], |c, call| {
            for j in 0..2 {
                let name = format!("new{call}-{j}");
                let args: Vec<&str> = match add {
                    "SADD" => vec![add, key, &name],
                    _ => vec![add, key, "1", &name],
                };
                assert!(!c.cmd(&args).is_error());
            }
            if call % 3 == 0 {
                let old = format!("new{}-0", call - 1);
                let del = match cmd {
                    "HSCAN" => "HDEL",
                    "SSCAN" => "SREM",
                    _ => "ZREM",
                };
                assert!(!c.cmd(&[del, key, &old]).is_error());
            }
        });
        let seen: HashSet<String> = growing.seen.iter().cloned().collect();
        let missing: Vec<&String> = all.difference(&seen).collect();
        assert!(
            missing.is_empty(),
            "{cmd}: missed {} elements: {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );

        // MATCH filters what a step returns, never what it covers.
        let matched = scan(
            &mut c,
            cmd,
            key,
            &["MATCH", "e1*", "COUNT", "50"],
            |_, _| {},
        );
        let want: HashSet<String> = all
            .iter()
            .filter(|e| e.starts_with("e1"))
            .cloned()
            .collect();
        assert_eq!(
            matched.seen.iter().cloned().collect::<HashSet<_>>(),
            want,
            "{cmd} MATCH"
        );
        assert!(matched.calls > 1);
    }

    // Bad cursors and options are refused as Redis refuses them.
    assert_eq!(c.cmd(&["HSCAN", "h", "-1"]), err("ERR invalid cursor"));
    assert_eq!(
        c.cmd(&["HSCAN", "h", "0", "COUNT", "0"]),
        err("ERR syntax error")
    );
    // A cursor from anywhere in the space is valid: the scan continues from there.
    let (_, tail) = call(&mut c, &["SSCAN", "s", "18446744073709551615"]);
    assert!(tail.len() < n);
}
