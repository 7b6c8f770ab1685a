//! Clients that do not play fair, against the real binary: one that never reads its replies,
//! a subscriber that never reads its messages, a monitor that never reads its feed, slowloris
//! senders, idle clients. The server's
//! memory stays bounded (its peak RSS, and `omem`/`tot-mem` in `CLIENT LIST`), the offender is
//! disconnected where `client-output-buffer-limit` or `timeout` says so (and counted in
//! `INFO stats`), and every other client keeps being served.

mod common;
use common::*;

use std::io::Read;
use std::time::{Duration, Instant};

use shoal_protocol::Frame;

const MB: u64 = 1 << 20;

/// The process's peak resident memory so far (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kb * 1024
}

fn stat(client: &mut Client, field: &str) -> u64 {
    info_fields(&client.text(&["INFO", "stats"]))[field]
        .parse()
        .expect("a number")
}

/// Clients closed so far for passing an output buffer limit (`INFO stats`).
fn limit_disconnections(admin: &mut Client) -> u64 {
    stat(admin, "client_output_buffer_limit_disconnections")
}

/// `CONFIG SET client-output-buffer-limit <limits>`, which must succeed.
fn set_output_limits(admin: &mut Client, limits: &str) {
    assert_eq!(
        admin.cmd(&["CONFIG", "SET", "client-output-buffer-limit", limits]),
        ok()
    );
}

/// `CLIENT LIST`'s fields for the client named `name`.
fn client_fields(
    client: &mut Client,
    name: &str,
) -> Option<std::collections::HashMap<String, String>> {
    let list = client.text(&["CLIENT", "LIST"]);
    list.lines()
        .map(|line| {
            line.split(' ')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect::<std::collections::HashMap<_, _>>()
        })
        .find(|f| f.get("name").map(String::as_str) == Some(name))
}

fn field(fields: &std::collections::HashMap<String, String>, name: &str) -> u64 {
    fields[name].parse().expect("a number")
}

/// The server answers PING on a fresh connection within `within`.
fn assert_serves(server: &Server, within: Duration) {
    let started = Instant::now();
    let mut probe = server.client();
    probe.stream.set_read_timeout(Some(within)).unwrap();
    assert_eq!(probe.cmd(&["PING"]), Frame::Simple("PONG".into()));
    assert!(
        started.elapsed() <= within,
        "PING took {:?}",
        started.elapsed()
    );
}

/// Reads and discards until the server closes the connection; returns the bytes read, or
/// `None` if it stays open for `timeout`.
fn drain_until_closed(client: &mut Client, timeout: Duration) -> Option<u64> {
    let deadline = Instant::now() + timeout;
    client
        .stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut total = 0u64;
    let mut chunk = vec![0u8; 1 << 20];
    while Instant::now() < deadline {
        match client.stream.read(&mut chunk) {
            Ok(0) => return Some(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(total),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read failed: {e}"),
        }
    }
    None
}

#[test]
fn a_client_that_never_reads_is_bounded_then_disconnected_at_its_output_limits() {
    let server = Server::start();
    let mut admin = server.client();
    let value = "v".repeat(MB as usize);
    assert_eq!(admin.cmd(&["SET", "big", &value]), ok());

    // No limit (Redis's default for normal clients): a client that asks for replies and reads
    // none is held back by its own unsent ones. Once a write to it blocks, the server reads no
    // more of its requests, so what waits for it stops growing however much more it asks.
    let mut stalled = server.client();
    assert_eq!(stalled.cmd(&["CLIENT", "SETNAME", "stalled"]), ok());
    let ask = |c: &mut Client| {
        for _ in 0..64 {
            c.send(&["GET", "big"]);
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    ask(&mut stalled);
    let mut seen = None;
    assert!(
        eventually(Duration::from_secs(10), || {
            seen = client_fields(&mut admin, "stalled");
            seen.as_ref().is_some_and(|f| field(f, "omem") > 0)
        }),
        "the stalled client never showed pending output: {seen:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let before = client_fields(&mut admin, "stalled").expect("connected");
    ask(&mut stalled);
    std::thread::sleep(Duration::from_secs(1));
    let after = client_fields(&mut admin, "stalled").expect("connected");
    assert!(
        field(&before, "omem") < 64 * MB && field(&after, "omem") <= field(&before, "omem"),
        "a stalled client's output grew: {before:?} then {after:?}"
    );
    assert!(
        field(&after, "tot-mem") <= field(&after, "omem") + 2 * MB,
        "a stalled client's buffers: {after:?}"
    );
    assert_serves(&server, Duration::from_secs(2));

    // A soft limit below what waits for it (whatever part of a reply the socket did not take):
    // the stalled client has been over it for more than a second.
    let stuck = field(&after, "omem");
    assert!(stuck > 0, "{after:?}");
    let soft = (stuck / 2).max(1).to_string();
    set_output_limits(&mut admin, &format!("normal 0 {soft} 1"));
    assert_eq!(
        admin.cmd(&["CONFIG", "GET", "client-output-buffer-limit"]),
        Frame::Array(vec![
            bulk("client-output-buffer-limit"),
            bulk(&format!(
                "normal 0 {soft} 1 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
            ))
        ])
    );
    // Still reading nothing (a client that drained would be a reader, under its soft limit
    // again after each write): the server closes it on its own.
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || limit_disconnections(&mut admin)
            == 1),
        "the stalled client is not disconnected at its soft limit"
    );
    let read = drain_until_closed(&mut stalled, Duration::from_secs(10))
        .expect("the stalled client is disconnected at its soft limit");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed before the soft limit's second ran out"
    );
    assert!(read < 64 * MB, "it cannot have received every reply");
    assert_eq!(limit_disconnections(&mut admin), 1);

    // A hard limit: 64 replies of 1 MB asked for at once reach 8 MB at the 8th; the client is
    // closed and the rest never buffered.
    set_output_limits(&mut admin, "normal 8mb 0 0");
    let peak_before = peak_rss(server.pid());
    let mut greedy = server.client();
    let commands: Vec<Vec<&str>> = (0..64).map(|_| vec!["GET", "big"]).collect();
    let mut out = bytes::BytesMut::new();
    for c in &commands {
        shoal_protocol::encode_command(c, &mut out);
    }
    greedy.send_raw(&out).unwrap();
    let read = drain_until_closed(&mut greedy, Duration::from_secs(10))
        .expect("the greedy client is disconnected at its hard limit");
    assert!(read < 9 * MB, "read {read} bytes past an 8 MB hard limit");
    let growth = peak_rss(server.pid()).saturating_sub(peak_before);
    eprintln!(
        "stalled client: omem {} then {}, tot-mem {}; greedy client read {read} bytes, peak RSS +{} KB",
        field(&before, "omem"),
        field(&after, "omem"),
        field(&after, "tot-mem"),
        growth / 1024
    );
    assert!(
        growth < 40 * MB,
        "peak RSS grew by {} MB for 64 MB of replies that should never be buffered",
        growth / MB
    );
    assert_eq!(limit_disconnections(&mut admin), 2);
    assert_serves(&server, Duration::from_secs(2));
    assert_eq!(admin.cmd(&["STRLEN", "big"]), int(MB as i64));
}

#[test]
fn a_subscriber_that_never_reads_is_disconnected_at_the_pubsub_limit_and_publishers_go_on() {
    let server = Server::start_with(&["--client-output-buffer-limit", "pubsub", "2mb", "0", "0"]);
    let mut admin = server.client();
    let mut subscriber = server.client();
    subscriber.send(&["SUBSCRIBE", "news"]);
    assert_eq!(
        subscriber.read(),
        Frame::Array(vec![bulk("subscribe"), bulk("news"), int(1)])
    );
    // Pipelined publishes of 8 KB: 32 MB in all, far past what loopback buffers hold.
    let peak_before = peak_rss(server.pid());
    let message = "m".repeat(8 * 1024);
    let mut publisher = server.client();
    let batch: Vec<Vec<&str>> = (0..256)
        .map(|_| vec!["PUBLISH", "news", &message])
        .collect();
    let started = Instant::now();
    let mut delivered = 0;
    for _ in 0..16 {
        for reply in publisher.pipeline(&batch) {
            match reply {
                Frame::Integer(n) => delivered += n,
                other => panic!("PUBLISH answered {other:?}"),
            }
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the publisher was held up"
    );
    assert!(
        delivered < 16 * 256,
        "the subscriber was dropped on the way"
    );
    assert!(
        eventually(Duration::from_secs(5), || publisher
            .cmd(&["PUBLISH", "news", "after"])
            == int(0)),
        "the disconnected subscriber still receives"
    );
    let growth = peak_rss(server.pid()).saturating_sub(peak_before);
    eprintln!(
        "subscriber: {delivered} of {} messages queued before it was dropped, publisher took {:?}, peak RSS +{} KB",
        16 * 256,
        started.elapsed(),
        growth / 1024
    );
    assert!(
        growth < 40 * MB,
        "peak RSS grew by {} MB for a 2 MB subscriber limit",
        growth / MB
    );
    assert!(
        drain_until_closed(&mut subscriber, Duration::from_secs(10)).is_some(),
        "the subscriber is disconnected"
    );
    assert_eq!(limit_disconnections(&mut admin), 1);
    assert_serves(&server, Duration::from_secs(2));
}

/// Sends `rounds` of 256 `ECHO <32 KB>` (8 MB of monitor lines a round), pipelined 32 at a
/// time, and checks every reply: the monitored client must not be held up by a monitor.
/// (The test client writes a whole pipeline before it reads: one of 8 MB could fill every
/// socket buffer between it and the server, which stops reading while its replies wait, and
/// the write would block for good.)
fn echo_traffic(talker: &mut Client, rounds: usize) {
    let payload = "e".repeat(32 * 1024);
    let batch: Vec<Vec<&str>> = (0..32).map(|_| vec!["ECHO", &payload]).collect();
    let started = Instant::now();
    for _ in 0..rounds * 8 {
        for reply in talker.pipeline(&batch) {
            assert_eq!(reply, bulk(&payload));
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the monitored client was held up: {:?}",
        started.elapsed()
    );
}

/// A MONITOR client that never reads: its backlog of lines is its unsent output (`omem`), held
/// to the `normal` class's `client-output-buffer-limit` as Redis holds monitors. With no limit
/// (the default) the backlog stops at a backstop (32 MB) and lines past it are skipped; with a
/// hard limit (set by CONFIG SET while it waits, or before it starts) it is disconnected. The
/// server's memory stays bounded and the monitored clients are served throughout.
#[test]
fn a_monitor_that_never_reads_is_bounded_then_disconnected_at_the_normal_limit() {
    let server = Server::start();
    let mut admin = server.client();
    let mut talker = server.client();
    let mut watcher = server.client();
    assert_eq!(watcher.cmd(&["CLIENT", "SETNAME", "watcher"]), ok());
    assert_eq!(watcher.cmd(&["MONITOR"]), ok());
    let peak_before = peak_rss(server.pid());

    // 64 MB of lines, twice the backstop.
    echo_traffic(&mut talker, 8);
    let mut seen = None;
    assert!(
        eventually(Duration::from_secs(10), || {
            seen = client_fields(&mut admin, "watcher");
            seen.as_ref().is_some_and(|f| field(f, "omem") >= 16 * MB)
        }),
        "the monitor's backlog never showed: {seen:?}"
    );
    let backlogged = seen.expect("the monitor is connected");
    assert!(
        field(&backlogged, "omem") <= 32 * MB,
        "past the backstop: {backlogged:?}"
    );
    echo_traffic(&mut talker, 4);
    let after = client_fields(&mut admin, "watcher").expect("still connected without a limit");
    assert!(
        field(&after, "omem") <= 32 * MB && field(&after, "tot-mem") <= 33 * MB,
        "past the backstop: {after:?}"
    );
    let growth = peak_rss(server.pid()).saturating_sub(peak_before);
    assert_eq!(limit_disconnections(&mut admin), 0);

    // A hard limit set while it waits: closed at the next check.
    set_output_limits(&mut admin, "normal 4mb 0 0");
    // Still reading nothing (a monitor that drained would be under the limit again).
    assert!(
        eventually(Duration::from_secs(10), || limit_disconnections(&mut admin)
            == 1),
        "the monitor is not disconnected at its new hard limit"
    );
    let read = drain_until_closed(&mut watcher, Duration::from_secs(10))
        .expect("the monitor is disconnected at its new hard limit");
    assert!(read <= 40 * MB, "read {read} bytes");
    assert!(client_fields(&mut admin, "watcher").is_none());

    // A monitor that starts under the limit: closed once 4 MB wait for it.
    let mut second = server.client();
    assert_eq!(second.cmd(&["CLIENT", "SETNAME", "second"]), ok());
    assert_eq!(second.cmd(&["MONITOR"]), ok());
    echo_traffic(&mut talker, 2);
    assert!(
        eventually(Duration::from_secs(10), || limit_disconnections(&mut admin)
            == 2),
        "the second monitor is not disconnected at its hard limit"
    );
    let read = drain_until_closed(&mut second, Duration::from_secs(10))
        .expect("the second monitor is disconnected");
    assert!(read < 12 * MB, "read {read} bytes past a 4 MB hard limit");
    assert!(client_fields(&mut admin, "second").is_none());
    let total_growth = peak_rss(server.pid()).saturating_sub(peak_before);
    eprintln!(
        "monitor: omem {} then {} (tot-mem {}), peak RSS +{} KB at the backstop, +{} KB in all; \
         the second monitor read {read} bytes",
        field(&backlogged, "omem"),
        field(&after, "omem"),
        field(&after, "tot-mem"),
        growth / 1024,
        total_growth / 1024
    );
    assert!(
        total_growth < 80 * MB,
        "peak RSS grew by {} MB for 112 MB of monitor lines",
        total_growth / MB
    );
    echo_traffic(&mut talker, 1);
    assert_serves(&server, Duration::from_secs(2));
}

#[test]
fn slowloris_clients_hold_little_memory_and_others_are_served() {
    let server = Server::start();
    let mut admin = server.client();
    let peak_before = peak_rss(server.pid());
    // Each announces a 400 MB argument, then trickles it one byte at a time.
    let mut slow: Vec<Client> = (0..8)
        .map(|i| {
            let mut c = server.client();
            assert_eq!(c.cmd(&["CLIENT", "SETNAME", &format!("slow{i}")]), ok());
            c.send_raw(b"*3\r\n$3\r\nSET\r\n$4\r\nslow\r\n$400000000\r\n")
                .unwrap();
            c
        })
        .collect();
    for _ in 0..4 {
        for c in &mut slow {
            c.send_raw(b"x").unwrap();
        }
        assert_serves(&server, Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(500));
    }
    for i in 0..8 {
        let fields = client_fields(&mut admin, &format!("slow{i}")).expect("still connected");
        eprintln!(
            "slowloris client {i}: tot-mem {}",
            field(&fields, "tot-mem")
        );
        assert!(
            field(&fields, "tot-mem") <= 256 * 1024,
            "a slowloris client holds {} bytes: {fields:?}",
            field(&fields, "tot-mem")
        );
    }
    let growth = peak_rss(server.pid()).saturating_sub(peak_before);
    eprintln!("slowloris: peak RSS +{} KB for 8 clients", growth / 1024);
    assert!(growth < 16 * MB, "peak RSS grew by {} MB", growth / MB);
    assert_eq!(admin.cmd(&["SET", "fine", "yes"]), ok());
}

/// The same `timeout 2` scenario on shoal and on a real redis-server: an idle client is
/// closed, a subscriber is not, and a client that keeps sending bytes (even an unfinished
/// command) is not idle.
fn idle_timeout_scenario(mut connect: impl FnMut() -> Client, what: &str) {
    let mut admin = connect();
    assert_eq!(admin.cmd(&["CONFIG", "SET", "timeout", "2"]), ok());
    let mut idle = connect();
    assert_eq!(idle.cmd(&["PING"]), Frame::Simple("PONG".into()));
    let mut subscriber = connect();
    subscriber.send(&["SUBSCRIBE", "ch"]);
    subscriber.read();
    let mut trickler = connect();
    let command = b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n";
    let started = Instant::now();
    for byte in command.chunks(1) {
        trickler.send_raw(byte).unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(started.elapsed() > Duration::from_secs(3));
    assert_eq!(
        trickler.read(),
        bulk("hello"),
        "{what}: the trickler was kept"
    );
    assert!(
        drain_until_closed(&mut idle, Duration::from_secs(5)).is_some(),
        "{what}: the idle client is closed"
    );
    let mut publisher = connect();
    assert_eq!(
        publisher.cmd(&["PUBLISH", "ch", "still here"]),
        int(1),
        "{what}"
    );
    assert_eq!(
        subscriber.read(),
        Frame::Array(vec![bulk("message"), bulk("ch"), bulk("still here")])
    );
}

#[test]
fn idle_timeout_closes_idle_clients_but_not_subscribers_or_slow_senders_as_redis_does() {
    let server = Server::start();
    idle_timeout_scenario(|| server.client(), "shoal");
    let redis = RedisServer::start();
    idle_timeout_scenario(|| redis.client(), "redis-server");
}

#[test]
fn output_buffer_limit_config_reads_as_redis_and_rejects_what_redis_rejects() {
    let server = Server::start();
    let redis = RedisServer::start();
    let get = ["CONFIG", "GET", "client-output-buffer-limit"];
    assert_eq!(server.client().cmd(&get), redis.client().cmd(&get));
    for bad in ["normal 1 2", "master 1 1 1", "pubsub x 1 1"] {
        let ours = server
            .client()
            .cmd(&["CONFIG", "SET", "client-output-buffer-limit", bad]);
        let theirs = redis
            .client()
            .cmd(&["CONFIG", "SET", "client-output-buffer-limit", bad]);
        assert!(matches!(theirs, Frame::Error(_)), "{bad}: redis {theirs:?}");
        assert_eq!(ours, theirs, "{bad}");
    }
    let set = [
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "pubsub 4mb 1mb 10 replica 1mb 1mb 1",
    ];
    assert_eq!(server.client().cmd(&set), redis.client().cmd(&set));
    assert_eq!(server.client().cmd(&get), redis.client().cmd(&get));
}
