//! ACL with real processes: users created on one node of a 3-node cluster work on every node
//! (they live in the metadata group), commands and keys outside a user's rules are refused
//! with Redis's NOPERM texts and show in ACL LOG, and requirepass / HELLO AUTH behave as Redis.

mod common;
use common::*;

use std::time::Duration;

use shoal_protocol::Frame;

fn texts(frame: &Frame) -> Vec<String> {
    match frame {
        Frame::Array(items) => items.iter().map(text_of).collect(),
        other => panic!("expected an array, got {other:?}"),
    }
}

fn text_of(frame: &Frame) -> String {
    match frame {
        Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        Frame::Simple(s) => s.clone(),
        Frame::Integer(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

const NOPERM_KEY: &str =
    "NOPERM this user has no permissions to access one of the keys used as arguments";

#[test]
fn a_user_created_on_one_node_is_enforced_on_every_node() {
    let cluster = Cluster::start(3, &["--shards", "2", "--replicas", "3"]);
    let mut admin = cluster.nodes[0].client();
    assert_eq!(
        admin.cmd(&[
            "ACL",
            "SETUSER",
            "alice",
            "on",
            ">pw",
            "~cache:*",
            "+@read",
            "+set",
            "+acl|whoami"
        ]),
        ok()
    );
    assert_eq!(
        admin.cmd(&["ACL", "SETUSER", "alice", "+nosuch"]),
        err("ERR Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL")
    );

    // Node 3 learns about alice from the metadata group.
    let mut alice = cluster.nodes[2].client();
    assert!(
        eventually(Duration::from_secs(10), || alice
            .cmd(&["AUTH", "alice", "pw"])
            == ok()),
        "alice never became valid on node 3"
    );
    assert_eq!(alice.cmd(&["ACL", "WHOAMI"]), bulk("alice"));
    assert_eq!(alice.cmd(&["SET", "cache:1", "v"]), ok());
    assert_eq!(alice.cmd(&["GET", "cache:1"]), bulk("v"));
    assert_eq!(alice.cmd(&["SET", "other", "v"]), err(NOPERM_KEY));
    assert_eq!(
        alice.cmd(&["DEL", "cache:1"]),
        err("NOPERM this user has no permissions to run the 'del' command")
    );
    assert_eq!(
        alice.cmd(&["CONFIG", "GET", "maxclients"]),
        err("NOPERM this user has no permissions to run the 'config|get' command")
    );
    let mut stranger = cluster.nodes[2].client();
    assert_eq!(
        stranger.cmd(&["AUTH", "alice", "wrong"]),
        err("WRONGPASS invalid username-password pair or user is disabled.")
    );

    // Node 3's log has the denials, newest first.
    let mut local_admin = cluster.nodes[2].client();
    let log = local_admin.cmd(&["ACL", "LOG"]);
    let Frame::Array(entries) = &log else {
        panic!("ACL LOG: {log:?}")
    };
    let reasons: Vec<String> = entries
        .iter()
        .map(|e| {
            let Frame::Array(fields) = e else {
                panic!("entry {e:?}")
            };
            let pos = fields.iter().position(|f| text_of(f) == "reason").unwrap();
            text_of(&fields[pos + 1])
        })
        .collect();
    assert_eq!(
        reasons,
        vec!["auth", "command", "command", "key"],
        "{log:?}"
    );

    // Node 2 sees the same user.
    let mut other = cluster.nodes[1].client();
    let hash = "30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4"; // sha256("pw")
    assert!(eventually(Duration::from_secs(10), || {
        texts(&other.cmd(&["ACL", "LIST"]))
            == vec![
                "user alice on #".to_owned()
                    + hash
                    + " ~cache:* resetchannels -@all +@read +set +acl|whoami",
                "user default on nopass ~* resetchannels +@all".to_owned(),
            ]
    }));
    assert_eq!(
        texts(&other.cmd(&["ACL", "USERS"])),
        vec!["alice", "default"]
    );
    assert_eq!(other.cmd(&["ACL", "DELUSER", "alice", "nobody"]), int(1));
    // Deleted: alice's connection can no longer do anything, and she cannot log in again.
    assert!(eventually(Duration::from_secs(10), || {
        alice.cmd(&["GET", "cache:1"])
            == err("NOPERM this user has no permissions to run the 'get' command")
    }));
    // Every node learns of the deletion on its next refresh of group 0's contents.
    assert!(eventually(Duration::from_secs(10), || {
        cluster.nodes[0].client().cmd(&["AUTH", "alice", "pw"])
            == err("WRONGPASS invalid username-password pair or user is disabled.")
    }));
}

#[test]
fn requirepass_guards_the_default_user_and_hello_can_authenticate() {
    let server = Server::start_with(&["--requirepass", "s3cret"]);
    let mut c = server.client();
    assert_eq!(c.cmd(&["GET", "k"]), err("NOAUTH Authentication required."));
    assert_eq!(
        c.cmd(&["AUTH", "nope"]),
        err("WRONGPASS invalid username-password pair or user is disabled.")
    );
    let hello = c.cmd(&["HELLO", "3", "AUTH", "default", "s3cret"]);
    assert!(matches!(hello, Frame::Map(_)), "{hello:?}");
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]), bulk("default"));
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    // A restricted user, then the real redis-cli authenticating as it.
    assert_eq!(
        c.cmd(&["ACL", "SETUSER", "reader", "on", "nopass", "allkeys", "-@all", "+get"]),
        ok()
    );
    let out = redis_cli(
        server.port(),
        &["--user", "reader", "--pass", "x", "GET", "k"],
    );
    assert_eq!(out.trim(), "v");
    let out = redis_cli(
        server.port(),
        &["--user", "reader", "--pass", "x", "SET", "k", "w"],
    );
    assert!(out.contains("NOPERM"), "{out}");
    let cats = texts(&c.cmd(&["ACL", "CAT"]));
    for cat in ["all", "read", "write", "string", "keyspace", "dangerous"] {
        assert!(cats.contains(&cat.to_owned()), "{cats:?}");
    }
}

/// Redis 7: SORT's BY (with a real pattern) and GET read keys the ACL check never saw, so they
/// need access to every key; plain SORT needs only the sorted key.
#[test]
fn sort_by_and_get_need_access_to_every_key() {
    let server = Server::start();
    let mut admin = server.client();
    for (i, w) in ["3", "1", "2"].iter().enumerate() {
        admin.cmd(&["RPUSH", "{s}list", &i.to_string()]);
        admin.cmd(&["SET", &format!("{{s}}w_{i}"), w]);
    }
    assert_eq!(
        admin.cmd(&["ACL", "SETUSER", "lister", "on", "nopass", "~{s}list", "+@all"]),
        ok()
    );
    assert_eq!(
        admin.cmd(&["ACL", "SETUSER", "all", "on", "nopass", "allkeys", "+@all"]),
        ok()
    );
    let mut lister = server.client();
    assert_eq!(lister.cmd(&["AUTH", "lister", "x"]), ok());
    assert_eq!(
        texts(&lister.cmd(&["SORT", "{s}list"])),
        vec!["0", "1", "2"]
    );
    // A constant BY (no `*`) reads no other key: allowed.
    assert_eq!(
        texts(&lister.cmd(&["SORT", "{s}list", "BY", "nosort"])),
        vec!["0", "1", "2"]
    );
    assert_eq!(
        lister.cmd(&["SORT", "{s}list", "BY", "{s}w_*"]),
        err("ERR BY option of SORT denied due to insufficient ACL permissions.")
    );
    assert_eq!(
        lister.cmd(&["SORT_RO", "{s}list", "GET", "#"]),
        err("ERR GET option of SORT denied due to insufficient ACL permissions.")
    );
    let mut all = server.client();
    assert_eq!(all.cmd(&["AUTH", "all", "x"]), ok());
    assert_eq!(
        texts(&all.cmd(&["SORT", "{s}list", "BY", "{s}w_*"])),
        vec!["1", "2", "0"]
    );
}

/// A non-loopback IPv4 address of this machine, if it has one.
fn external_ip() -> Option<std::net::IpAddr> {
    // Routing towards a public address picks the outgoing interface; nothing is sent.
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn protected_mode_refuses_remote_clients_until_a_password_is_set() {
    let Some(ip) = external_ip() else {
        eprintln!("skipped: this machine has no non-loopback address");
        return;
    };
    let server = Server::start_with(&["--bind", "0.0.0.0"]);
    let remote = std::net::SocketAddr::new(ip, server.port());
    // Refused at once, before any command (as Redis does).
    let mut c = Client::connect(remote);
    let reply = c.read();
    assert!(
        matches!(&reply, Frame::Error(e) if e.starts_with("DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user.")),
        "{reply:?}"
    );
    assert!(c.is_closed());
    // Loopback clients are served; once the default user has a password, remote ones too.
    let mut local = server.client();
    assert_eq!(local.cmd(&["CONFIG", "SET", "requirepass", "pw"]), ok());
    let mut c = Client::connect(remote);
    assert_eq!(c.cmd(&["AUTH", "pw"]), ok());
    assert_eq!(c.cmd(&["PING"]), Frame::Simple("PONG".into()));
}
