//! Hostile and malformed input against the real binary: the offending connection gets Redis 7's
//! exact `-ERR Protocol error: ...` and is closed, the server keeps running, and every other
//! connection (including one caught in the middle of a command) is untouched.

mod common;
use common::*;

use std::io::{ErrorKind, Write};
use std::net::Shutdown;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use shoal_protocol::Frame;

const CANARY: &str = "canary";
const CANARY_VALUE: &str = "value";

/// A connection that stores a canary before an attack and is half-way through sending another
/// command while it happens.
struct Bystander {
    client: Client,
}

/// The first half of `SET half done`; [`Bystander::check_unharmed`] sends the rest.
const HALF_COMMAND: &[u8] = b"*3\r\n$3\r\nSET\r\n$4\r\nhalf";
const REST_OF_COMMAND: &[u8] = b"\r\n$4\r\ndone\r\n";

impl Bystander {
    fn new(server: &Server) -> Bystander {
        let mut client = server.client();
        assert_eq!(client.cmd(&["SET", CANARY, CANARY_VALUE]), ok());
        client.send_raw(HALF_COMMAND).expect("write half a command");
        Bystander { client }
    }

    /// The server is still up; this connection finishes its command and sees its data; a new
    /// connection works too.
    fn check_unharmed(mut self, server: &mut Server) {
        assert!(server.is_running(), "the server process exited");
        self.client
            .send_raw(REST_OF_COMMAND)
            .expect("finish the command");
        assert_eq!(self.client.read(), ok());
        assert_eq!(self.client.cmd(&["GET", CANARY]), bulk(CANARY_VALUE));
        assert_eq!(self.client.cmd(&["GET", "half"]), bulk("done"));
        let mut fresh = server.client();
        assert_eq!(fresh.cmd(&["GET", CANARY]), bulk(CANARY_VALUE));
        assert!(server.is_running(), "the server process exited");
    }
}

/// Sends `bytes` on a new connection and expects exactly `expected` (after `before`, the
/// replies to the valid commands that precede the bad bytes), then the connection to close.
fn assert_rejected_after(server: &mut Server, bytes: &[u8], before: &[Frame], expected: &str) {
    let bystander = Bystander::new(server);
    let mut attacker = server.client();
    // The server may close before reading everything; a failed write is part of that.
    let _ = attacker.send_raw(bytes);
    for reply in before {
        assert_eq!(attacker.try_read().as_ref(), Some(reply));
    }
    assert_eq!(attacker.try_read(), Some(err(expected)), "input {bytes:?}");
    assert_eq!(
        attacker.try_read(),
        None,
        "the connection must close after the protocol error"
    );
    bystander.check_unharmed(server);
}

fn assert_rejected(server: &mut Server, bytes: &[u8], expected: &str) {
    assert_rejected_after(server, bytes, &[], expected);
}

/// xorshift64: deterministic "random" bytes without a dependency.
fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// `field:value` from one `INFO` section.
fn info_field(c: &mut Client, section: &str, field: &str) -> String {
    let Frame::Bulk(text) = c.cmd(&["INFO", section]) else {
        panic!("INFO is a bulk string in RESP2");
    };
    let text = String::from_utf8(text.to_vec()).expect("utf-8");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO {section}:\n{text}"))
        .to_owned()
}

#[test]
fn random_bytes_get_errors_then_a_close_never_a_hang() {
    let mut server = Server::start();
    for seed in 1..=8u64 {
        let bystander = Bystander::new(&server);
        let mut attacker = server.client();
        let _ = attacker.send_raw(&random_bytes(seed, 64 * 1024));
        // Random lines are inline commands that do not exist, until a stray quote makes one
        // unparsable; that protocol error closes the connection. A hang would end in the
        // client's read timeout, failing the test.
        let mut replies = Vec::new();
        while let Some(reply) = attacker.try_read() {
            replies.push(reply);
        }
        let (last, earlier) = replies
            .split_last()
            .unwrap_or_else(|| panic!("seed {seed}: closed without a reply"));
        assert_eq!(
            last,
            &err("ERR Protocol error: unbalanced quotes in request"),
            "seed {seed}"
        );
        for reply in earlier {
            assert!(
                matches!(reply, Frame::Error(e) if e.starts_with("ERR unknown command '")),
                "seed {seed}: {reply:?}"
            );
        }
        bystander.check_unharmed(&mut server);
    }
    // Nothing the random commands did reached the keyspace: only the canary and `half`.
    let mut c = server.client();
    assert_eq!(c.cmd(&["DBSIZE"]), int(2));
}

#[test]
fn a_terabyte_bulk_length_is_refused_before_allocating() {
    let mut server = Server::start();
    assert_rejected(
        &mut server,
        b"*1\r\n$1000000000000\r\n",
        "ERR Protocol error: invalid bulk length",
    );
    assert_rejected(
        &mut server,
        b"*1\r\n$-1\r\n",
        "ERR Protocol error: invalid bulk length",
    );
    assert_rejected(
        &mut server,
        b"*2\r\n$3\r\nGET\r\n$x\r\n",
        "ERR Protocol error: invalid bulk length",
    );
    // A `$` header with no end in sight.
    let mut long = b"*1\r\n$".to_vec();
    long.extend(std::iter::repeat_n(b'1', 70_000));
    assert_rejected(
        &mut server,
        &long,
        "ERR Protocol error: too big bulk count string",
    );
}

#[test]
fn negative_and_zero_multibulk_lengths_are_skipped_like_redis() {
    let mut server = Server::start();
    let bystander = Bystander::new(&server);
    let mut c = server.client();
    c.send_raw(b"*-1\r\n*-100\r\n*0\r\nPING\r\n*-1\r\n")
        .expect("write");
    assert_eq!(c.read(), Frame::simple("PONG"));
    // The connection is still open and in step.
    assert_eq!(c.cmd(&["GET", CANARY]), bulk(CANARY_VALUE));
    bystander.check_unharmed(&mut server);
}

#[test]
fn a_non_bulk_argument_is_refused() {
    let mut server = Server::start();
    assert_rejected(
        &mut server,
        b"*1\r\n:5\r\n",
        "ERR Protocol error: expected '$', got ':'",
    );
    assert_rejected(
        &mut server,
        b"*2\r\n$4\r\nECHO\r\n+hi\r\n",
        "ERR Protocol error: expected '$', got '+'",
    );
}

#[test]
fn commands_before_the_bad_bytes_still_run() {
    let mut server = Server::start();
    assert_rejected_after(
        &mut server,
        b"SET before 1\r\n*2\r\n$3\r\nGET\r\n$6\r\nbefore\r\n*1\r\n:5\r\nSET after 2\r\n",
        &[ok(), bulk("1")],
        "ERR Protocol error: expected '$', got ':'",
    );
    let mut c = server.client();
    assert_eq!(c.cmd(&["GET", "before"]), bulk("1"));
    assert_eq!(c.cmd(&["GET", "after"]), Frame::Null);
}

#[test]
fn an_unterminated_frame_then_a_closed_socket_leaves_no_trace() {
    let mut server = Server::start();
    let bystander = Bystander::new(&server);
    let mut watcher = server.client();
    let mut attacker = server.client();
    attacker
        .send_raw(b"*2\r\n$3\r\nGET\r\n$5\r\nab")
        .expect("write");
    attacker.stream.shutdown(Shutdown::Both).expect("shutdown");
    drop(attacker);
    // The server notices the close and forgets the connection: the bystander and the watcher
    // are left.
    assert!(
        eventually(Duration::from_secs(10), || {
            info_field(&mut watcher, "clients", "connected_clients") == "2"
        }),
        "the closed connection was not cleaned up"
    );
    assert!(server.is_running());
    bystander.check_unharmed(&mut server);
}

#[test]
fn a_gigabyte_inline_line_is_cut_off_after_64_kib() {
    let mut server = Server::start();
    let bystander = Bystander::new(&server);
    let mut attacker = server.client();
    attacker
        .stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .expect("write timeout");
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0usize;
    let mut write_error = None;
    while sent < 1 << 30 {
        match attacker.stream.write_all(&chunk) {
            Ok(()) => sent += chunk.len(),
            Err(e) => {
                write_error = Some(e.kind());
                break;
            }
        }
    }
    // The server stopped reading after 64 KiB and closed, so writing failed once the socket
    // buffers (a few MiB on loopback) were full: nowhere near the whole gigabyte went out.
    assert!(
        matches!(
            write_error,
            Some(ErrorKind::BrokenPipe | ErrorKind::ConnectionReset)
        ),
        "writing should fail with a closed connection, got {write_error:?} after {sent} bytes"
    );
    assert!(sent < 64 << 20, "{sent} bytes were accepted");
    assert_eq!(
        attacker.try_read(),
        Some(err("ERR Protocol error: too big inline request"))
    );
    assert_eq!(attacker.try_read(), None);
    bystander.check_unharmed(&mut server);
}

#[test]
fn an_inline_line_just_over_64_kib_is_refused() {
    let mut server = Server::start();
    assert_rejected(
        &mut server,
        &vec![b'a'; 64 * 1024 + 1],
        "ERR Protocol error: too big inline request",
    );
    // The same limit guards a `*` header that never ends.
    let mut long = b"*".to_vec();
    long.extend(std::iter::repeat_n(b'9', 70_000));
    assert_rejected(
        &mut server,
        &long,
        "ERR Protocol error: too big mbulk count string",
    );
}

#[test]
fn unbalanced_quotes_in_an_inline_command_are_refused() {
    let mut server = Server::start();
    for bad in [
        &b"SET k \"unterminated\r\n"[..],
        b"SET k 'unterminated\r\n",
        b"GET \"a\"b\r\n",
        b"ECHO \"a\\\"\r\n",
    ] {
        assert_rejected(
            &mut server,
            bad,
            "ERR Protocol error: unbalanced quotes in request",
        );
    }
    // Well-formed quoting is fine, and the escape rules are Redis's.
    let mut c = server.client();
    c.send_raw(b"SET q \"a b\\x41\\n\"\r\nGET q\r\nECHO 'it\\'s'\r\n")
        .expect("write");
    assert_eq!(c.read(), ok());
    assert_eq!(c.read(), bulk("a bA\n"));
    assert_eq!(c.read(), bulk("it's"));
}

#[test]
fn a_huge_multibulk_count_is_refused() {
    let mut server = Server::start();
    assert_rejected(
        &mut server,
        b"*99999999999\r\n",
        "ERR Protocol error: invalid multibulk length",
    );
    assert_rejected(
        &mut server,
        b"*abc\r\n",
        "ERR Protocol error: invalid multibulk length",
    );
}

#[test]
fn two_hundred_concurrent_connections_each_keep_their_own_data() {
    const CLIENTS: usize = 200;
    let server = Server::start();
    let mut watcher = server.client();
    assert_eq!(watcher.cmd(&["SET", CANARY, CANARY_VALUE]), ok());
    let addr = server.addr;
    // Two rendezvous: once all are connected (so they really are concurrent), and to let
    // them go on after the watcher has counted them.
    let barrier = Arc::new(Barrier::new(CLIENTS + 1));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let key = format!("client:{i}");
                assert_eq!(c.cmd(&["SET", &key, "0"]), ok());
                barrier.wait();
                barrier.wait();
                for round in 1..=20 {
                    let value = format!("{i}:{round}");
                    assert_eq!(c.cmd(&["SET", &key, &value]), ok());
                    assert_eq!(c.cmd(&["GET", &key]), bulk(&value));
                    assert_eq!(c.cmd(&["INCR", &format!("count:{i}")]), int(round));
                }
            })
        })
        .collect();
    barrier.wait();
    assert_eq!(
        info_field(&mut watcher, "clients", "connected_clients"),
        (CLIENTS + 1).to_string()
    );
    barrier.wait();
    for t in threads {
        t.join().expect("a client thread failed");
    }
    assert_eq!(watcher.cmd(&["DBSIZE"]), int(2 * CLIENTS as i64 + 1));
    for i in [0, 57, CLIENTS - 1] {
        assert_eq!(
            watcher.cmd(&["GET", &format!("client:{i}")]),
            bulk(&format!("{i}:20"))
        );
        assert_eq!(watcher.cmd(&["GET", &format!("count:{i}")]), bulk("20"));
    }
    assert_eq!(watcher.cmd(&["GET", CANARY]), bulk(CANARY_VALUE));
}

#[test]
fn maxclients_refuses_the_extra_connection_only() {
    let mut server = Server::start_with(&["--maxclients", "2"]);
    let mut first = server.client();
    assert_eq!(first.cmd(&["SET", CANARY, CANARY_VALUE]), ok());
    let mut second = server.client();
    assert_eq!(second.cmd(&["PING"]), Frame::simple("PONG"));

    let mut third = server.client();
    assert_eq!(
        third.try_read(),
        Some(err("ERR max number of clients reached"))
    );
    assert_eq!(third.try_read(), None);

    assert!(server.is_running());
    assert_eq!(first.cmd(&["GET", CANARY]), bulk(CANARY_VALUE));
    assert_eq!(second.cmd(&["PING"]), Frame::simple("PONG"));
    assert_eq!(info_field(&mut first, "stats", "rejected_connections"), "1");
    assert_eq!(info_field(&mut first, "clients", "connected_clients"), "2");

    // Once a slot frees up, a new connection is served.
    drop(second);
    let mut kept = None;
    // Until the server has noticed the close, new connections are still refused.
    let mut refused_meanwhile = 0;
    assert!(
        eventually(Duration::from_secs(10), || {
            let mut c = server.client();
            let _ = c.send_raw(b"PING\r\n");
            match c.try_read() {
                Some(Frame::Simple(s)) if s == "PONG" => {
                    kept = Some(c);
                    true
                }
                Some(Frame::Error(e)) if e == "ERR max number of clients reached" => {
                    refused_meanwhile += 1;
                    false
                }
                other => panic!("unexpected reply {other:?}"),
            }
        }),
        "no connection was accepted after one closed"
    );
    // And the limit follows CONFIG SET: one more now fits, and no more than that.
    assert_eq!(first.cmd(&["CONFIG", "SET", "maxclients", "3"]), ok());
    let mut third = server.client();
    assert_eq!(third.cmd(&["GET", CANARY]), bulk(CANARY_VALUE));
    let mut fourth = server.client();
    assert_eq!(
        fourth.try_read(),
        Some(err("ERR max number of clients reached"))
    );
    assert_eq!(fourth.try_read(), None);
    let mut kept = kept.expect("kept");
    assert_eq!(kept.cmd(&["PING"]), Frame::simple("PONG"));
    assert_eq!(
        info_field(&mut first, "stats", "rejected_connections"),
        (2 + refused_meanwhile).to_string()
    );
}

/// Every command in the table, with a few sample argument lists that fit its arity, alone and
/// queued in `MULTI`/`EXEC` (where nothing blocks): each request gets a reply, the connection
/// stays open, and no reply is the internal "cannot write here" of a command sent down the
/// wrong path (a keyed command run on the node instead of in the slot's entry).
/// `MULTI; SCAN 0; EXEC` used to close the connection (a panic in its task).
#[test]
fn every_command_gets_a_reply_alone_and_inside_multi() {
    // What would end or change the session or the server for the next cases.
    const SKIPPED: &[&str] = &[
        "quit",
        "reset",
        "monitor",
        "multi",
        "exec",
        "discard",
        "watch",
        "client|kill",
        "cluster|forget",
        "config|set",
        "acl|setuser",
        "acl|deluser",
        "auth",
        "hello",
    ];
    // Keys first, and numbers first (cursors, slots, counts).
    const POOLS: [[&str; 8]; 2] = [
        ["{t}a", "1", "{t}b", "0", "x", "2", "{t}c", "3"],
        ["0", "{t}a", "1", "{t}b", "2", "x", "{t}c", "3"],
    ];
    let mut server = Server::start_with(&["--appendfsync", "no"]);
    let mut cases = 0;
    for spec in shoal_protocol::COMMANDS {
        if SKIPPED.contains(&spec.name) || spec.is_container() {
            continue;
        }
        let name: Vec<&str> = spec.name.split('|').collect();
        let min_args = spec.arity.unsigned_abs() as usize - name.len();
        let counts = if spec.arity < 0 {
            vec![min_args, min_args + 2, min_args + 5]
        } else {
            vec![min_args]
        };
        for (n, pool) in counts
            .into_iter()
            .flat_map(|n| POOLS.iter().map(move |p| (n, p)))
        {
            let mut command: Vec<&str> = name.clone();
            command.extend(pool.iter().cycle().take(n));
            let blocking = spec.flags.contains(shoal_protocol::Flags::BLOCKING);
            let mut runs = vec![vec![command.clone()]];
            if blocking {
                // Alone it would wait: only inside MULTI, where it does not.
                runs.clear();
            }
            runs.push(vec![vec!["MULTI"], command.clone(), vec!["EXEC"]]);
            for run in runs {
                cases += 1;
                let mut c = server.client();
                for request in &run {
                    c.send(request);
                    let reply = c
                        .try_read()
                        .unwrap_or_else(|| panic!("{run:?}: the connection closed at {request:?}"));
                    assert!(
                        !format!("{reply:?}").contains("cannot write here"),
                        "{run:?}: {request:?} answered {reply:?}"
                    );
                }
                c.send(&["PING"]);
                let pong = c
                    .try_read()
                    .unwrap_or_else(|| panic!("{run:?}: the connection closed before PING"));
                assert!(!pong.is_error(), "{run:?}: PING answered {pong:?}");
            }
        }
    }
    assert!(server.is_running(), "the server process exited");
    assert!(cases > 800, "only {cases} cases ran");
}
