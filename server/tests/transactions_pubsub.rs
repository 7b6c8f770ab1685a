//! Transactions (`MULTI EXEC DISCARD WATCH UNWATCH`) and pub/sub against the real binary:
//! differentially against a real `redis-server` on the same seeded command sequences, and
//! with `redis-cli` subscribers in subprocesses.

mod common;
use common::*;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shoal_protocol::Frame;

/// These tests start servers, a cluster and redis-cli processes: one at a time, so that on a
/// 2-core machine they do not starve each other's Raft timers.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// xorshift64*: the differential test's seeded choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One random command for client `who` (0 or 1): string and key commands on a few keys of
/// one slot, and transaction commands. Values repeat, so a write often stores the value its
/// key already had, which aborts a transaction watching it as in Redis. The four keys fall in
/// four different write stamp buckets of their slot (crc32 % 16: 11, 13, 7, 1), so shoal's
/// spurious aborts (a write to another key of the watched key's bucket, see
/// `commands::transaction`) cannot happen here.
fn random_command(rng: &mut Rng, serial: &mut u64) -> Vec<String> {
    let key = format!("{{t}}k{}", rng.below(4));
    let other = format!("{{t}}k{}", rng.below(4));
    *serial += 1;
    let value = format!("v{}", *serial % 3);
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match rng.below(20) {
        0 | 1 => s(&["MULTI"]),
        2 | 3 => s(&["EXEC"]),
        4 => s(&["DISCARD"]),
        5 => s(&["WATCH", &key]),
        6 => s(&["WATCH", &key, &other]),
        7 => s(&["UNWATCH"]),
        8 => s(&["SET", &key, &value]),
        9 => s(&["GET", &key]),
        10 => s(&["INCR", &key]),
        11 => s(&["APPEND", &key, "x"]),
        12 => s(&["DEL", &key]),
        13 => s(&["EXISTS", &key, &other]),
        14 => s(&["GETDEL", &key]),
        15 => s(&["STRLEN", &key]),
        16 => s(&["MGET", &key, &other]),
        17 => s(&["SET", &key, &value, "NX", "BADOPTION"]),
        18 => s(&["INCRBY", &key, "notanumber"]),
        _ => s(&["SETNX", &key, &value]),
    }
}

fn send(c: &mut Client, command: &[String]) -> Frame {
    let args: Vec<&str> = command.iter().map(String::as_str).collect();
    c.cmd(&args)
}

/// Seeded random transaction workloads from two connections (one watches, the other writes
/// in between) give the same reply, command by command, on shoal and on redis-server.
#[test]
fn transactions_match_a_real_redis_server() {
    let _serial = serial();
    let shoal = Server::start();
    let redis = RedisServer::start();
    let mut shoal_clients = [shoal.client(), shoal.client()];
    let mut redis_clients = [Client::connect(redis.addr), Client::connect(redis.addr)];
    let seed = std::env::var("SHOAL_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    let mut rng = Rng(seed | 1);
    let mut serial = 0;
    let mut transactions_run = 0;
    for step in 0..2000 {
        let who = rng.below(4).min(1) as usize;
        let command = random_command(&mut rng, &mut serial);
        let want = send(&mut redis_clients[who], &command);
        let got = send(&mut shoal_clients[who], &command);
        assert_eq!(
            got, want,
            "seed {seed} step {step}: client {who} sent {command:?}"
        );
        if command[0] == "EXEC" && matches!(want, Frame::Array(_)) {
            transactions_run += 1;
        }
    }
    assert!(
        transactions_run > 20,
        "the workload ran only {transactions_run} transactions"
    );
}

/// Commands whose effect depends on what the transaction's earlier commands left: the same
/// replies as redis-server. `SPOP` pops from members added in the same transaction, `SORT`
/// reads `BY`/`GET` keys written in it, `LMPOP`/`BLMPOP` (keys counted by `numkeys`) pop
/// what it pushed, and a packed sorted set is converted by `SORT` as Redis converts it.
#[test]
fn commands_inside_exec_see_the_transactions_earlier_writes() {
    let _serial = serial();
    let shoal = Server::start();
    let redis = RedisServer::start();
    let script: &[&[&str]] = &[
        &["MULTI"],
        &["SADD", "{d}s", "a", "b", "c"],
        &["SPOP", "{d}s", "3"],
        &["EXISTS", "{d}s"],
        &["RPUSH", "{d}l", "2", "3", "1"],
        &["SET", "{d}w_1", "30"],
        &["SET", "{d}w_2", "10"],
        &["SET", "{d}w_3", "20"],
        &["HSET", "{d}h_2", "f", "two"],
        &[
            "SORT",
            "{d}l",
            "BY",
            "{d}w_*",
            "GET",
            "#",
            "GET",
            "{d}h_*->f",
        ],
        &["SORT", "{d}l", "BY", "{d}w_*", "DESC", "STORE", "{d}sorted"],
        &["LRANGE", "{d}sorted", "0", "-1"],
        &["LMPOP", "2", "{d}none", "{d}l", "RIGHT", "COUNT", "2"],
        &["BLMPOP", "0.01", "1", "{d}l", "LEFT"],
        &["BLMPOP", "0.01", "1", "{d}l", "LEFT"],
        &["ZADD", "{d}z", "2", "x", "1", "y"],
        &["SORT_RO", "{d}z", "BY", "nosort"],
        &["OBJECT", "ENCODING", "{d}z"],
        &["EXEC"],
        &["SORT", "{d}sorted", "ALPHA", "STORE", "{d}sorted"],
        &["OBJECT", "ENCODING", "{d}z"],
    ];
    let (mut on_shoal, mut on_redis) = (shoal.client(), Client::connect(redis.addr));
    for command in script {
        let (got, want) = (on_shoal.cmd(command), on_redis.cmd(command));
        let normalise = |f: Frame| match f {
            // SPOP's members come in no particular order.
            Frame::Array(mut items) if command[0] == "EXEC" => {
                if let Some(Frame::Array(popped)) = items.get_mut(1) {
                    popped.sort_by_key(|f| format!("{f:?}"));
                }
                Frame::Array(items)
            }
            f => f,
        };
        assert_eq!(normalise(got), normalise(want), "{command:?}");
    }
}

/// A watched key rewritten by another connection with the value it already had aborts EXEC
/// (Redis: any write touches the key), and so does a rewrite back to the watched value
/// (A -> B -> A); with no write in between, EXEC runs.
#[test]
fn watch_aborts_when_another_client_rewrites_the_same_value() {
    let _serial = serial();
    let server = Server::start();
    let (mut a, mut b) = (server.client(), server.client());
    let queued = || Frame::Simple("QUEUED".into());
    assert_eq!(b.cmd(&["SET", "{w}k", "v"]), ok());
    let mut exec_after = |a: &mut Client, between: &[&[&str]]| {
        assert_eq!(a.cmd(&["WATCH", "{w}k"]), ok());
        for cmd in between {
            assert_eq!(b.cmd(cmd), ok());
        }
        assert_eq!(a.cmd(&["MULTI"]), ok());
        assert_eq!(a.cmd(&["INCR", "{w}x"]), queued());
        a.cmd(&["EXEC"])
    };
    // Nothing written in between: runs.
    assert_eq!(exec_after(&mut a, &[]), Frame::Array(vec![int(1)]));
    // The same value written again: aborted, nothing ran.
    assert_eq!(
        exec_after(&mut a, &[&["SET", "{w}k", "v"]]),
        Frame::NullArray
    );
    assert_eq!(a.cmd(&["GET", "{w}x"]), bulk("1"));
    // Changed and changed back: aborted.
    assert_eq!(
        exec_after(&mut a, &[&["SET", "{w}k", "w"], &["SET", "{w}k", "v"]]),
        Frame::NullArray
    );
    assert_eq!(a.cmd(&["GET", "{w}x"]), bulk("1"));
    // And the next transaction, with nothing in between, runs again.
    assert_eq!(exec_after(&mut a, &[]), Frame::Array(vec![int(2)]));
}

/// The transaction rules that a single-node redis-server cannot show (slots) and the ones that
/// need time (expiry), plus EXEC's atomicity seen from a pipelined reader.
#[test]
fn transactions_keep_to_one_slot_and_watch_sees_expiry() {
    let _serial = serial();
    let server = Server::start();
    let mut c = server.client();
    // Keys of two slots: the second is refused and the transaction aborted.
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["SET", "a", "1"]), Frame::Simple("QUEUED".into()));
    assert_eq!(
        c.cmd(&["SET", "b", "1"]),
        err("CROSSSLOT Keys in request don't hash to the same slot")
    );
    assert_eq!(
        c.cmd(&["EXEC"]),
        err("EXECABORT Transaction discarded because of previous errors.")
    );
    assert_eq!(c.cmd(&["EXISTS", "a"]), int(0));
    // Commands over every shard run at EXEC in a transaction without keyed commands ...
    assert_eq!(c.cmd(&["SET", "{all}k", "1"]), ok());
    assert_eq!(c.cmd(&["MULTI"]), ok());
    for command in [
        &["DBSIZE"][..],
        &["KEYS", "{all}*"],
        &["PING"],
        &["FLUSHALL"],
        &["DBSIZE"],
    ] {
        assert_eq!(c.cmd(command), Frame::Simple("QUEUED".into()));
    }
    assert_eq!(
        c.cmd(&["EXEC"]),
        Frame::Array(vec![
            int(1),
            Frame::Array(vec![bulk("{all}k")]),
            Frame::Simple("PONG".into()),
            ok(),
            int(0)
        ])
    );
    // ... and are refused next to a keyed command, either way round.
    for (first, second) in [
        (&["SET", "a", "1"][..], &["DBSIZE"][..]),
        (&["DBSIZE"], &["SET", "a", "1"]),
    ] {
        assert_eq!(c.cmd(&["MULTI"]), ok());
        assert_eq!(c.cmd(first), Frame::Simple("QUEUED".into()));
        assert!(c.cmd(second).is_error(), "{second:?} after {first:?}");
        assert_eq!(
            c.cmd(&["EXEC"]),
            err("EXECABORT Transaction discarded because of previous errors.")
        );
    }
    assert_eq!(c.cmd(&["EXISTS", "a"]), int(0));
    // Watched keys must be in the transaction's slot.
    assert_eq!(c.cmd(&["WATCH", "a"]), ok());
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["SET", "b", "1"]), Frame::Simple("QUEUED".into()));
    assert_eq!(
        c.cmd(&["EXEC"]),
        err("CROSSSLOT Keys in request don't hash to the same slot")
    );
    // Node-level commands run alongside; reads see the transaction's earlier writes.
    assert_eq!(c.cmd(&["MULTI"]), ok());
    for cmd in [
        &["SET", "{u}n", "10"][..],
        &["PING"],
        &["INCRBY", "{u}n", "5"],
        &["GET", "{u}n"],
        &["ECHO", "hi"],
    ] {
        assert_eq!(c.cmd(cmd), Frame::Simple("QUEUED".into()));
    }
    assert_eq!(
        c.cmd(&["EXEC"]),
        Frame::Array(vec![
            ok(),
            Frame::Simple("PONG".into()),
            int(15),
            bulk("15"),
            bulk("hi")
        ])
    );
    // A watched key that expires before EXEC aborts it.
    assert_eq!(c.cmd(&["SET", "{u}t", "v", "PX", "3000"]), ok());
    assert_eq!(c.cmd(&["WATCH", "{u}t"]), ok());
    assert_eq!(c.cmd(&["EXISTS", "{u}t"]), int(1), "expired before WATCH");
    assert!(eventually(Duration::from_secs(15), || server
        .client()
        .cmd(&["EXISTS", "{u}t"])
        == int(0)));
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["SET", "{u}n", "0"]), Frame::Simple("QUEUED".into()));
    assert_eq!(c.cmd(&["EXEC"]), Frame::NullArray);
    assert_eq!(c.cmd(&["GET", "{u}n"]), bulk("15"));
    // A pipelined reader sees the transaction whole or not at all.
    let mut reader = server.client();
    for round in 0..50 {
        let v = round.to_string();
        let tx: Vec<Vec<&str>> = vec![
            vec!["MULTI"],
            vec!["SET", "{p}a", &v],
            vec!["SET", "{p}b", &v],
            vec!["EXEC"],
        ];
        for cmd in &tx {
            c.send(cmd);
        }
        let seen = reader.cmd(&["MGET", "{p}a", "{p}b"]);
        let Frame::Array(items) = seen else {
            panic!("MGET gave {seen:?}")
        };
        assert_eq!(
            items[0], items[1],
            "round {round}: a half-applied transaction"
        );
        for _ in &tx {
            assert!(!c.read().is_error());
        }
    }
}

/// Reads lines from a `redis-cli` subprocess's stdout on a thread.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Collects lines until `want` has been seen in order, or the deadline passes.
fn wait_for_lines(rx: &mpsc::Receiver<String>, want: &[&str], timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while !want.iter().all(|w| seen.iter().any(|s: &String| s == w)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    seen
}

/// A `redis-cli subscribe` subprocess; killed when dropped.
struct Subscriber {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Subscriber {
    fn start(port: u16, args: &[&str]) -> Subscriber {
        let mut child = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-cli");
        let lines = lines_of(&mut child);
        Subscriber { child, lines }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `PUBSUB NUMSUB channel` on `c` until it reports `n`.
fn wait_numsub(c: &mut Client, channel: &str, n: i64) -> bool {
    eventually(Duration::from_secs(10), || {
        c.cmd(&["PUBSUB", "NUMSUB", channel]) == Frame::Array(vec![bulk(channel), int(n)])
    })
}

/// Subscribe, pattern and shard channels with redis-cli; the RESP2 subscriber restrictions and
/// RESP3 push frames compared with a real redis-server; a subscriber that stops reading is
/// disconnected rather than buffered without bound.
#[test]
fn pubsub_on_one_node() {
    let _serial = serial();
    let server = Server::start();
    let mut publisher = server.client();
    let sub = Subscriber::start(server.port(), &["subscribe", "news"]);
    let psub = Subscriber::start(server.port(), &["psubscribe", "n*"]);
    let ssub = Subscriber::start(server.port(), &["ssubscribe", "shardy"]);
    assert!(wait_numsub(&mut publisher, "news", 1));
    assert!(eventually(Duration::from_secs(10), || publisher
        .cmd(&["PUBSUB", "NUMPAT"])
        == int(1)));
    assert!(eventually(Duration::from_secs(10), || publisher.cmd(&[
        "PUBSUB",
        "SHARDNUMSUB",
        "shardy"
    ]) == Frame::Array(
        vec![bulk("shardy"), int(1)]
    )));
    assert_eq!(publisher.cmd(&["PUBLISH", "news", "hello"]), int(2));
    assert_eq!(publisher.cmd(&["SPUBLISH", "shardy", "sharded"]), int(1));
    let got = wait_for_lines(&sub.lines, &["message", "hello"], Duration::from_secs(10));
    assert!(got.contains(&"hello".to_string()), "subscriber got {got:?}");
    let got = wait_for_lines(&psub.lines, &["pmessage", "hello"], Duration::from_secs(10));
    assert!(
        got.contains(&"hello".to_string()),
        "pattern subscriber got {got:?}"
    );
    let got = wait_for_lines(
        &ssub.lines,
        &["smessage", "sharded"],
        Duration::from_secs(10),
    );
    assert!(
        got.contains(&"sharded".to_string()),
        "shard subscriber got {got:?}"
    );
    assert_eq!(
        publisher.cmd(&["PUBSUB", "CHANNELS"]),
        Frame::Array(vec![bulk("news")])
    );

    // Same sequences, same replies as redis-server (one connection each, all frames).
    let redis = RedisServer::start();
    let sequences: Vec<Vec<(Vec<&str>, usize)>> = vec![
        vec![
            (vec!["SUBSCRIBE", "a", "b"], 2),
            (vec!["GET", "x"], 1),
            (vec!["PING"], 1),
            (vec!["PING", "hi"], 1),
            (vec!["MULTI"], 1),
            (vec!["PSUBSCRIBE", "p*"], 1),
            (vec!["SSUBSCRIBE", "s"], 1),
            (vec!["UNSUBSCRIBE", "a"], 1),
            (vec!["PUNSUBSCRIBE"], 1),
            (vec!["SUNSUBSCRIBE"], 1),
            (vec!["UNSUBSCRIBE"], 1),
            (vec!["UNSUBSCRIBE"], 1),
            (vec!["GET", "x"], 1),
        ],
        vec![
            (vec!["HELLO", "3"], 1),
            (vec!["SUBSCRIBE", "c"], 1),
            (vec!["GET", "x"], 1),
            (vec!["PING"], 1),
            (vec!["UNSUBSCRIBE", "c", "d"], 2),
        ],
        vec![
            (vec!["SUBSCRIBE", "q"], 1),
            (vec!["RESET"], 1),
            (vec!["GET", "x"], 1),
            (vec!["PUBSUB", "NUMSUB", "q", "zz"], 1),
        ],
    ];
    for sequence in &sequences {
        let mut on_shoal = server.client();
        let mut on_redis = Client::connect(redis.addr);
        for (command, frames) in sequence {
            on_shoal.send(command);
            on_redis.send(command);
            for i in 0..*frames {
                let mut want = on_redis.read();
                let mut got = on_shoal.read();
                if command[0] == "HELLO" {
                    // Server versions and client ids differ.
                    (want, got) = (Frame::Null, Frame::Null);
                }
                assert_eq!(got, want, "{command:?} frame {i} in {sequence:?}");
            }
        }
    }

    // RESP3: messages arrive as push frames between replies.
    let mut resp3 = server.client();
    assert!(!resp3.cmd(&["HELLO", "3"]).is_error());
    resp3.send(&["SUBSCRIBE", "r3"]);
    assert_eq!(
        resp3.read(),
        Frame::Push(vec![bulk("subscribe"), bulk("r3"), int(1)])
    );
    assert_eq!(publisher.cmd(&["PUBLISH", "r3", "pushed"]), int(1));
    assert_eq!(
        resp3.read(),
        Frame::Push(vec![bulk("message"), bulk("r3"), bulk("pushed")])
    );
    assert_eq!(resp3.cmd(&["GET", "nothing"]), Frame::Null);

    // A subscriber that never reads: once its queue is full it is disconnected.
    let mut slow = server.client();
    slow.send(&["SUBSCRIBE", "firehose"]);
    assert!(wait_numsub(&mut publisher, "firehose", 1));
    let payload = "x".repeat(256 * 1024);
    let mut sent = 0;
    let gone = eventually(Duration::from_secs(30), || {
        for _ in 0..64 {
            publisher.cmd(&["PUBLISH", "firehose", &payload]);
            sent += 1;
        }
        publisher.cmd(&["PUBSUB", "NUMSUB", "firehose"])
            == Frame::Array(vec![bulk("firehose"), int(0)])
    });
    assert!(
        gone,
        "a subscriber that never reads was still subscribed after {sent} messages of 256 KB"
    );
    drop(slow);
}

/// On a 3-node cluster: a message published on node 1 reaches subscribers on node 3 (channel
/// and pattern); transactions run through a node that does not lead their slot (forwarded),
/// WATCH works across nodes, and every replica ends with the same data.
#[test]
fn pubsub_and_transactions_across_a_three_node_cluster() {
    let _serial = serial();
    let mut cluster = Cluster::start(3, &["--shards", "4"]);
    let (p1, p3) = (cluster.nodes[0].port(), cluster.nodes[2].port());
    let sub = Subscriber::start(p3, &["subscribe", "cluster-news"]);
    let psub = Subscriber::start(p3, &["psubscribe", "cluster-*"]);
    let mut on3 = cluster.nodes[2].client();
    assert!(wait_numsub(&mut on3, "cluster-news", 1));
    assert!(eventually(Duration::from_secs(10), || on3
        .cmd(&["PUBSUB", "NUMPAT"])
        == int(1)));
    let mut on1 = cluster.nodes[0].client();
    // Node 1 has no subscriber of its own: the reply counts node 1's receivers (Redis
    // Cluster's rule), the message still reaches node 3.
    assert_eq!(on1.cmd(&["PUBLISH", "cluster-news", "from-node-1"]), int(0));
    let got = wait_for_lines(&sub.lines, &["from-node-1"], Duration::from_secs(10));
    assert!(
        got.contains(&"from-node-1".to_string()),
        "node 3 subscriber got {got:?}"
    );
    let got = wait_for_lines(&psub.lines, &["from-node-1"], Duration::from_secs(10));
    assert!(
        got.contains(&"from-node-1".to_string()),
        "node 3 pattern subscriber got {got:?}"
    );
    let ssub = Subscriber::start(p3, &["ssubscribe", "{s}feed"]);
    assert!(eventually(Duration::from_secs(10), || on3.cmd(&[
        "PUBSUB",
        "SHARDNUMSUB",
        "{s}feed"
    ]) == Frame::Array(
        vec![bulk("{s}feed"), int(1)]
    )));
    assert_eq!(on1.cmd(&["SPUBLISH", "{s}feed", "sharded-1"]), int(0));
    let got = wait_for_lines(&ssub.lines, &["sharded-1"], Duration::from_secs(10));
    assert!(
        got.contains(&"sharded-1".to_string()),
        "node 3 shard subscriber got {got:?}"
    );

    // Transactions on many slots through node 1: with 4 shards on 3 nodes, most are led
    // elsewhere, so they are forwarded.
    let _ = p1;
    for i in 0..40 {
        let (a, b) = (format!("{{tx{i}}}a"), format!("{{tx{i}}}b"));
        assert_eq!(on1.cmd(&["MULTI"]), ok());
        for cmd in [
            vec!["SET", a.as_str(), "1"],
            vec!["INCRBY", a.as_str(), "41"],
            vec!["APPEND", b.as_str(), "x"],
            vec!["MGET", a.as_str(), b.as_str()],
        ] {
            assert_eq!(on1.cmd(&cmd), Frame::Simple("QUEUED".into()));
        }
        assert_eq!(
            on1.cmd(&["EXEC"]),
            Frame::Array(vec![
                ok(),
                int(42),
                int(1),
                Frame::Array(vec![bulk("42"), bulk("x")])
            ]),
            "transaction {i}"
        );
        // WATCH through node 1, a write through node 2 in between: EXEC aborts.
        let mut on2 = cluster.nodes[1].client();
        assert_eq!(on1.cmd(&["WATCH", a.as_str()]), ok());
        assert_eq!(on2.cmd(&["INCR", a.as_str()]), int(43));
        assert_eq!(on1.cmd(&["MULTI"]), ok());
        assert_eq!(
            on1.cmd(&["SET", a.as_str(), "lost"]),
            Frame::Simple("QUEUED".into())
        );
        assert_eq!(on1.cmd(&["EXEC"]), Frame::NullArray, "transaction {i}");
        assert_eq!(on2.cmd(&["GET", a.as_str()]), bulk("43"));
    }
    cluster.wait_converged(Duration::from_secs(30));
}
