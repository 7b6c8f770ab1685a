//! Blocking pops (`BLPOP BRPOP BRPOPLPUSH BLMOVE BLMPOP BZPOPMIN BZPOPMAX BZMPOP`) against
//! real processes over raw TCP: a single node, and a 3-node cluster with clients on the shard's
//! leader and on a node that forwards to it. A client is known to be blocked by polling
//! `INFO clients` (`blocked_clients` on its node, `shoal_blocked_waiters` on the leader) or
//! `CLIENT LIST` (`flags=b`), never by sleeping.

mod common;
use common::*;

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shoal_protocol::{key_slot, Frame};
use shoal_server::cluster::{SlotRing, DEFAULT_VNODES};

/// How long a client may take to show up as blocked.
const BLOCKED_WITHIN: Duration = Duration::from_secs(10);

/// One cluster at a time: three processes each on a small machine.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn info_clients(c: &mut Client) -> std::collections::HashMap<String, String> {
    info_fields(&c.text(&["INFO", "clients"]))
}

/// Waits until `field` of `INFO clients` as seen through `observer` is `n`.
fn wait_clients_field(observer: &mut Client, field: &str, n: usize) {
    let mut last = String::new();
    let ok = eventually(BLOCKED_WITHIN, || {
        last = info_clients(observer)
            .get(field)
            .cloned()
            .unwrap_or_default();
        last == n.to_string()
    });
    assert!(ok, "{field} never became {n} (last {last})");
}

fn wait_blocked(observer: &mut Client, n: usize) {
    wait_clients_field(observer, "blocked_clients", n);
}

fn array(items: &[&str]) -> Frame {
    Frame::Array(items.iter().map(|s| bulk(s)).collect())
}

fn error_text(f: &Frame) -> String {
    match f {
        Frame::Error(e) => e.clone(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn blpop_is_woken_by_a_push_from_another_connection() {
    let server = Server::start_with(&["--appendfsync", "no"]);
    let mut waiter = server.client();
    let mut pusher = server.client();
    waiter.send(&["BLPOP", "q", "0"]);
    wait_blocked(&mut pusher, 1);
    let list = pusher.text(&["CLIENT", "LIST"]);
    assert!(
        list.lines()
            .any(|l| l.contains("flags=b") && l.contains("cmd=blpop")),
        "{list}"
    );
    assert_eq!(pusher.cmd(&["RPUSH", "q", "v1", "v2"]), int(2));
    assert_eq!(waiter.read(), array(&["q", "v1"]));
    wait_blocked(&mut pusher, 0);
    // The rest stays; the connection serves later commands as usual.
    assert_eq!(waiter.cmd(&["LRANGE", "q", "0", "-1"]), array(&["v2"]));
    // A ready key is popped at once, like LPOP.
    assert_eq!(waiter.cmd(&["BRPOP", "q", "0"]), array(&["q", "v2"]));
    assert_eq!(waiter.cmd(&["EXISTS", "q"]), int(0));
}

#[test]
fn two_waiters_are_served_in_the_order_they_blocked() {
    let server = Server::start_with(&["--appendfsync", "no"]);
    let mut first = server.client();
    let mut second = server.client();
    let mut pusher = server.client();
    first.send(&["BLPOP", "fifo", "0"]);
    wait_blocked(&mut pusher, 1);
    second.send(&["BLPOP", "fifo", "0"]);
    wait_blocked(&mut pusher, 2);
    assert_eq!(pusher.cmd(&["RPUSH", "fifo", "a"]), int(1));
    assert_eq!(first.read(), array(&["fifo", "a"]));
    wait_blocked(&mut pusher, 1);
    assert_eq!(pusher.cmd(&["RPUSH", "fifo", "b", "c"]), int(2));
    assert_eq!(second.read(), array(&["fifo", "b"]));
    assert_eq!(pusher.cmd(&["LRANGE", "fifo", "0", "-1"]), array(&["c"]));

    // Sorted sets: two waiters, one ZADD of two members serves both, lowest first.
    first.send(&["BZPOPMIN", "z", "0"]);
    wait_blocked(&mut pusher, 1);
    second.send(&["BZPOPMIN", "z", "0"]);
    wait_blocked(&mut pusher, 2);
    assert_eq!(pusher.cmd(&["ZADD", "z", "2", "b", "1", "a"]), int(2));
    assert_eq!(first.read(), array(&["z", "a", "1"]));
    assert_eq!(second.read(), array(&["z", "b", "2"]));
    wait_blocked(&mut pusher, 0);
}

#[test]
fn timeout_returns_nil_after_roughly_the_timeout() {
    let server = Server::start_with(&["--appendfsync", "no"]);
    let mut c = server.client();
    let started = Instant::now();
    assert_eq!(c.cmd(&["BLPOP", "nothing", "0.5"]), Frame::NullArray);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500),
        "returned after {took:?}"
    );
    assert!(took < Duration::from_secs(5), "returned after {took:?}");
    assert_eq!(
        c.cmd(&["BRPOPLPUSH", "{t}nothing", "{t}d", "0.1"]),
        Frame::NullArray
    );
    assert_eq!(
        c.cmd(&["BLMOVE", "{t}nothing", "{t}d", "LEFT", "LEFT", "0.1"]),
        Frame::NullArray
    );
    assert_eq!(
        c.cmd(&["BZMPOP", "0.1", "1", "nothing", "MIN"]),
        Frame::NullArray
    );
    // RESP3: a null.
    assert!(!c.cmd(&["HELLO", "3"]).is_error());
    assert_eq!(c.cmd(&["BZPOPMAX", "nothing", "0.1"]), Frame::Null);
    assert_eq!(
        c.cmd(&["BLMPOP", "0.1", "1", "nothing", "LEFT"]),
        Frame::Null
    );
    // Errors, in Redis's words, before any wait.
    assert_eq!(
        error_text(&c.cmd(&["BLPOP", "k", "-1"])),
        "ERR timeout is negative"
    );
    assert_eq!(
        error_text(&c.cmd(&["BLPOP", "k", "soon"])),
        "ERR timeout is not a float or out of range"
    );
    assert_eq!(c.cmd(&["SET", "{t}str", "x"]), ok());
    assert!(error_text(&c.cmd(&["BLPOP", "{t}nothing", "{t}str", "0"])).starts_with("WRONGTYPE"));
}

#[test]
fn blmove_moves_atomically_when_woken() {
    let server = Server::start_with(&["--appendfsync", "no"]);
    let mut waiter = server.client();
    let mut other = server.client();
    waiter.send(&["BLMOVE", "src", "dst", "RIGHT", "LEFT", "0"]);
    wait_blocked(&mut other, 1);
    assert_eq!(other.cmd(&["RPUSH", "dst", "old"]), int(1));
    assert_eq!(other.cmd(&["RPUSH", "src", "x", "y"]), int(2));
    assert_eq!(waiter.read(), bulk("y"));
    assert_eq!(other.cmd(&["LRANGE", "src", "0", "-1"]), array(&["x"]));
    assert_eq!(
        other.cmd(&["LRANGE", "dst", "0", "-1"]),
        array(&["y", "old"])
    );
}

#[test]
fn inside_multi_a_blocking_pop_does_not_wait() {
    let server = Server::start_with(&["--appendfsync", "no"]);
    let mut c = server.client();
    assert_eq!(c.cmd(&["RPUSH", "{m}l", "1"]), int(1));
    assert_eq!(c.cmd(&["MULTI"]), ok());
    for args in [
        &["BLPOP", "{m}l", "0"][..],
        &["BLPOP", "{m}l", "0"],
        &["BZPOPMIN", "{m}z", "0"],
        &["BRPOPLPUSH", "{m}l", "{m}n", "0"],
        &["BLPOP", "{m}l", "-1"],
    ] {
        assert_eq!(c.cmd(args), Frame::Simple("QUEUED".into()));
    }
    let started = Instant::now();
    let replies = c.cmd(&["EXEC"]);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        replies,
        Frame::Array(vec![
            array(&["{m}l", "1"]),
            Frame::NullArray,
            Frame::NullArray,
            Frame::Null,
            err("ERR timeout is negative"),
        ])
    );
}

#[test]
fn client_unblock_ends_a_wait_as_a_timeout_or_an_error() {
    let server = Server::start_with(&["--appendfsync", "no"]);
    let mut waiter = server.client();
    let mut admin = server.client();
    let Frame::Integer(id) = waiter.cmd(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID")
    };
    let id = id.to_string();
    assert_eq!(admin.cmd(&["CLIENT", "UNBLOCK", &id]), int(0));
    waiter.send(&["BLPOP", "u", "0"]);
    wait_blocked(&mut admin, 1);
    assert_eq!(admin.cmd(&["CLIENT", "UNBLOCK", &id]), int(1));
    assert_eq!(waiter.read(), Frame::NullArray);
    waiter.send(&["BZPOPMIN", "u", "0"]);
    wait_blocked(&mut admin, 1);
    assert_eq!(admin.cmd(&["CLIENT", "UNBLOCK", &id, "ERROR"]), int(1));
    assert_eq!(
        error_text(&waiter.read()),
        "UNBLOCKED client unblocked via CLIENT UNBLOCK"
    );
    assert_eq!(
        error_text(&admin.cmd(&["CLIENT", "UNBLOCK", &id, "LATER"])),
        "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"
    );
    // Nothing is left waiting on the key: a push stays there.
    wait_blocked(&mut admin, 0);
    assert_eq!(admin.cmd(&["RPUSH", "u", "v"]), int(1));
    assert_eq!(admin.cmd(&["LLEN", "u"]), int(1));
}

#[test]
fn a_client_that_disconnects_while_blocked_releases_its_wait() {
    let server = Server::start_with(&["--appendfsync", "no"]);
    let mut other = server.client();
    {
        let mut gone = server.client();
        gone.send(&["BLPOP", "d", "0"]);
        wait_blocked(&mut other, 1);
        wait_clients_field(&mut other, "shoal_blocked_waiters", 1);
    }
    wait_blocked(&mut other, 0);
    wait_clients_field(&mut other, "shoal_blocked_waiters", 0);
    // Nobody pops what is pushed now.
    assert_eq!(other.cmd(&["RPUSH", "d", "v"]), int(1));
    assert_eq!(other.cmd(&["LRANGE", "d", "0", "-1"]), array(&["v"]));
}

// ------------------------------------------------------------------ cluster

fn shard_of(key: &str, shards: u32) -> u32 {
    let ring = SlotRing::new(&(0..shards).collect::<Vec<_>>(), DEFAULT_VNODES);
    ring.shard_of(key_slot(key.as_bytes()))
}

/// A leadership change in the middle of a step (an election on a loaded machine) ends its
/// waits with UNBLOCKED, as it must; the step is then run again against the new leader.
#[derive(Debug)]
struct LeadershipMoved;

fn is_unblocked(f: &Frame) -> bool {
    matches!(f, Frame::Error(e) if e.starts_with("UNBLOCKED"))
}

/// `got` must be `want`; UNBLOCKED means leadership moved under the step.
fn expect(got: Frame, want: Frame) -> Result<(), LeadershipMoved> {
    if is_unblocked(&got) {
        return Err(LeadershipMoved);
    }
    assert_eq!(got, want);
    Ok(())
}

/// Like [`wait_clients_field`], but a count that never comes means leadership moved.
fn wait_field(observer: &mut Client, field: &str, n: usize) -> Result<(), LeadershipMoved> {
    let ok = eventually(BLOCKED_WITHIN, || {
        info_clients(observer).get(field) == Some(&n.to_string())
    });
    ok.then_some(()).ok_or(LeadershipMoved)
}

/// The leader's and another node's client addresses for `shard`.
fn leader_and_follower(cluster: &mut Cluster, shard: u32) -> (u64, SocketAddr, SocketAddr) {
    let leader = cluster.leader_of(shard, Duration::from_secs(20));
    let follower = cluster
        .nodes
        .iter_mut()
        .filter(|n| n.id != leader)
        .find_map(|n| n.is_running().then_some(n.addr))
        .expect("another node");
    (leader, cluster.by_id(leader).addr, follower)
}

/// Wake-ups across nodes, FIFO across nodes, a timeout and BLMOVE through the forward, on
/// keys tagged `{bq}` suffixed with `run` (a fresh set per attempt).
fn blocking_steps(
    leader: SocketAddr,
    follower: SocketAddr,
    run: usize,
) -> Result<(), LeadershipMoved> {
    let key = &format!("{{bq}}list{run}");
    let mut leader_admin = Client::connect(leader);
    let mut follower_admin = Client::connect(follower);
    let mut far = Client::connect(follower);
    let mut near = Client::connect(leader);

    // Woken through the forward, by a push on the leader.
    far.send(&["BLPOP", key, "0"]);
    wait_blocked(&mut follower_admin, 1);
    wait_field(&mut leader_admin, "shoal_blocked_waiters", 1)?;
    let list = follower_admin.text(&["CLIENT", "LIST"]);
    assert!(
        list.lines()
            .any(|l| l.contains("flags=b") && l.contains("cmd=blpop")),
        "{list}"
    );
    assert_eq!(leader_admin.cmd(&["RPUSH", key, "a"]), int(1));
    expect(far.read(), array(&[key, "a"]))?;

    // On the leader, by a push through the follower.
    near.send(&["BRPOP", key, "0"]);
    wait_field(&mut leader_admin, "blocked_clients", 1)?;
    assert_eq!(follower_admin.cmd(&["RPUSH", key, "b"]), int(1));
    expect(near.read(), array(&[key, "b"]))?;

    // FIFO across nodes: the forwarded waiter blocked first, so it is served first.
    far.send(&["BLPOP", key, "0"]);
    wait_field(&mut leader_admin, "shoal_blocked_waiters", 1)?;
    near.send(&["BLPOP", key, "0"]);
    wait_field(&mut leader_admin, "shoal_blocked_waiters", 2)?;
    assert_eq!(follower_admin.cmd(&["RPUSH", key, "1"]), int(1));
    expect(far.read(), array(&[key, "1"]))?;
    assert_eq!(follower_admin.cmd(&["RPUSH", key, "2"]), int(1));
    expect(near.read(), array(&[key, "2"]))?;

    // A timeout through the forward.
    let started = Instant::now();
    expect(far.cmd(&["BZPOPMIN", "{bq}z", "0.5"]), Frame::NullArray)?;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "{took:?}"
    );

    // BLMOVE through the forward, atomic.
    let (src, dst) = (&format!("{{bq}}src{run}"), &format!("{{bq}}dst{run}"));
    far.send(&["BLMOVE", src, dst, "LEFT", "RIGHT", "0"]);
    wait_field(&mut leader_admin, "shoal_blocked_waiters", 1)?;
    assert_eq!(near.cmd(&["RPUSH", src, "m"]), int(1));
    expect(far.read(), bulk("m"))?;
    assert_eq!(near.cmd(&["EXISTS", src]), int(0));
    assert_eq!(near.cmd(&["LRANGE", dst, "0", "-1"]), array(&["m"]));

    // A client that leaves its forwarded wait takes the wait with it: the leader drops the
    // waiter, so a later push is not popped for nobody.
    let gone_key = &format!("{{bq}}gone{run}");
    let mut gone = Client::connect(follower);
    gone.send(&["BLPOP", gone_key, "0"]);
    wait_field(&mut leader_admin, "shoal_blocked_waiters", 1)?;
    drop(gone);
    wait_clients_field(&mut leader_admin, "shoal_blocked_waiters", 0);
    assert_eq!(near.cmd(&["RPUSH", gone_key, "kept"]), int(1));
    assert_eq!(near.cmd(&["LRANGE", gone_key, "0", "-1"]), array(&["kept"]));
    Ok(())
}

/// In redirect mode (Redis Cluster's way) a client blocked on a leader that steps down is sent
/// to the new leader with `MOVED`, as Redis Cluster redirects a client blocked on a slot its
/// node no longer serves; `redis-cli -c` and cluster clients follow it and wait there.
#[test]
fn a_cluster_client_blocked_on_a_leader_that_steps_down_gets_moved() {
    let _serial = serial();
    let mut cluster = Cluster::start(
        3,
        &[
            "--appendfsync",
            "no",
            "--shards",
            "3",
            "--cluster-mode",
            "redirect",
        ],
    );
    cluster.wait_balanced(3, Duration::from_secs(90));
    let key = "{bq}moved";
    let shard = shard_of(key, 3);
    let (leader_id, leader, _) = leader_and_follower(&mut cluster, shard);
    let mut waiting = Client::connect(leader);
    let mut admin = Client::connect(leader);
    waiting.send(&["BLPOP", key, "0"]);
    wait_clients_field(&mut admin, "shoal_blocked_waiters", 1);
    drop(admin);
    // SIGTERM: the node hands its leaderships over before it closes its connections.
    cluster.by_id(leader_id).terminate(Duration::from_secs(20));
    let reply = waiting.read();
    let text = error_text(&reply);
    // To a node that took the leadership over (it may move again later: leader balancing).
    let others: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|n| n.id != leader_id)
        .map(|n| format!("MOVED {} {}", key_slot(key.as_bytes()), n.addr))
        .collect();
    assert!(others.contains(&text), "{text} is none of {others:?}");
}

/// 3 nodes, 3 replicas of every shard: clients on the key's shard leader and on a node that
/// forwards to it are woken by pushes from either, in blocking order across nodes; timeouts
/// and BLMOVE work through the forward; a leader that steps down (SIGTERM hands leadership
/// over) ends a forwarded wait with `-UNBLOCKED`; the replicas end with the same data.
#[test]
fn cluster_blocking_pops_on_leader_and_through_a_forwarding_node() {
    let _serial = serial();
    let mut cluster = Cluster::start(3, &["--appendfsync", "no", "--shards", "3"]);
    cluster.wait_balanced(3, Duration::from_secs(90));
    let key = "{bq}list";
    let shard = shard_of(key, 3);
    let mut passed = false;
    for run in 0..3 {
        let (_, leader, follower) = leader_and_follower(&mut cluster, shard);
        match blocking_steps(leader, follower, run) {
            Ok(()) => {
                passed = true;
                break;
            }
            Err(LeadershipMoved) => eprintln!("run {run}: leadership moved; again"),
        }
    }
    assert!(passed, "leadership moved during every attempt");

    // Keys in different shards cannot be waited on together.
    let (leader_id, _, follower) = leader_and_follower(&mut cluster, shard);
    let mut far = Client::connect(follower);
    let other = (0..100)
        .map(|i| format!("other{i}"))
        .find(|k| shard_of(k, 3) != shard)
        .expect("a key of another shard");
    assert!(error_text(&far.cmd(&["BLPOP", key, &other, "0"])).starts_with("CROSSSLOT"));

    // The leader steps down (SIGTERM hands its leaderships over): the forwarded wait ends
    // with the retryable UNBLOCKED error, not a hang.
    let mut leader_admin = cluster.by_id(leader_id).client();
    far.send(&["BLPOP", key, "0"]);
    wait_clients_field(&mut leader_admin, "shoal_blocked_waiters", 1);
    drop(leader_admin);
    cluster.by_id(leader_id).terminate(Duration::from_secs(20));
    let reply = far.read();
    assert!(
        error_text(&reply).starts_with("UNBLOCKED force unblock from blocking operation"),
        "{reply:?}"
    );
    // The new leader serves the next wait.
    let new_leader = cluster.leader_of(shard, Duration::from_secs(20));
    assert_ne!(new_leader, leader_id);
    let mut pusher = cluster.by_id(new_leader).client();
    let mut served = false;
    let mut pushed = false;
    for _ in 0..3 {
        far.send(&["BLPOP", key, "0"]);
        if wait_field(&mut pusher, "shoal_blocked_waiters", 1).is_err() {
            let reply = far.read();
            // An earlier attempt's push whose wait ended UNBLOCKED left its element: this
            // wait took it at once.
            if pushed && reply == array(&[key, "after"]) {
                served = true;
                break;
            }
            assert!(is_unblocked(&reply), "{reply:?}");
            let leader = cluster.leader_of(shard, Duration::from_secs(20));
            pusher = cluster.by_id(leader).client();
            continue;
        }
        assert_eq!(pusher.cmd(&["RPUSH", key, "after"]), int(1));
        pushed = true;
        let reply = far.read();
        if is_unblocked(&reply) {
            continue;
        }
        assert_eq!(reply, array(&[key, "after"]));
        served = true;
        break;
    }
    assert!(served, "the new leader never served a wait");
    assert!(!pusher.cmd(&["RPUSH", key, "left", "over"]).is_error());
    cluster.wait_converged(Duration::from_secs(30));
}
