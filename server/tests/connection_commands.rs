//! Connection, client, config, introspection and error-reply commands against the real binary,
//! with Redis 7's exact replies, over a raw RESP client and through Debian's `redis-cli`.

mod common;
use common::*;

use std::io::Read;
use std::time::Duration;

use bytes::BytesMut;
use shoal_protocol::{encode, CommandSpec, Frame, Version, COMMANDS};

fn array(items: Vec<Frame>) -> Frame {
    Frame::Array(items)
}

fn simple(s: &str) -> Frame {
    Frame::simple(s)
}

fn bulks(items: &[&str]) -> Frame {
    Frame::Array(items.iter().map(|s| bulk(s)).collect())
}

/// The text of a bulk or verbatim string reply.
fn text(frame: &Frame) -> String {
    match frame {
        Frame::Bulk(b) => String::from_utf8(b.to_vec()).expect("utf-8"),
        Frame::Verbatim { format, text } => {
            assert_eq!(format, b"txt");
            String::from_utf8(text.to_vec()).expect("utf-8")
        }
        other => panic!("not a text reply: {other:?}"),
    }
}

/// Sends a command and checks the exact bytes of the reply (to tell RESP2 from RESP3).
fn raw_reply(c: &mut Client, args: &[&str], expected: &[u8]) {
    c.send(args);
    let mut got = vec![0u8; expected.len()];
    c.stream.read_exact(&mut got).expect("read raw reply");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected),
        "raw reply to {args:?}"
    );
}

fn info_text(c: &mut Client, section: &str) -> String {
    text(&c.cmd(&["INFO", section]))
}

fn info_field(c: &mut Client, section: &str, field: &str) -> String {
    let info = info_text(c, section);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO {section}:\n{info}"))
        .to_owned()
}

fn client_id(c: &mut Client) -> i64 {
    match c.cmd(&["CLIENT", "ID"]) {
        Frame::Integer(id) => id,
        other => panic!("CLIENT ID: {other:?}"),
    }
}

/// The `HELLO` reply's pairs, as Redis 7 orders them.
fn hello_pairs(version: &str, proto: i64, id: i64) -> Vec<(Frame, Frame)> {
    vec![
        (bulk("server"), bulk("redis")),
        (bulk("version"), bulk(version)),
        (bulk("proto"), int(proto)),
        (bulk("id"), int(id)),
        (bulk("mode"), bulk("standalone")),
        (bulk("role"), bulk("master")),
        (bulk("modules"), array(vec![])),
    ]
}

/// The same pairs as RESP2 sends a map: one flat array.
fn flat(pairs: Vec<(Frame, Frame)>) -> Frame {
    Frame::Array(pairs.into_iter().flat_map(|(k, v)| [k, v]).collect())
}

/// A client whose reads give up quickly, for polling whether the server closed it.
fn quick(server: &Server) -> Client {
    let c = server.client();
    c.stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    c
}

#[test]
fn ping_and_echo() {
    let server = Server::start();
    let mut c = server.client();
    assert_eq!(c.cmd(&["PING"]), simple("PONG"));
    assert_eq!(c.cmd(&["ping", "hello world"]), bulk("hello world"));
    assert_eq!(
        c.cmd(&["PING", "a", "b"]),
        err("ERR wrong number of arguments for 'ping' command")
    );
    assert_eq!(c.cmd(&["ECHO", "x y\r\nz"]), bulk("x y\r\nz"));
    assert_eq!(c.cmd(&["ECHO", ""]), bulk(""));
    assert_eq!(
        c.cmd(&["ECHO"]),
        err("ERR wrong number of arguments for 'echo' command")
    );
    assert_eq!(
        c.cmd(&["ECHO", "a", "b"]),
        err("ERR wrong number of arguments for 'echo' command")
    );
    raw_reply(&mut c, &["PING"], b"+PONG\r\n");
    raw_reply(&mut c, &["PING", "hi"], b"$2\r\nhi\r\n");
}

#[test]
fn select_accepts_only_database_zero() {
    let server = Server::start();
    let mut c = server.client();
    assert_eq!(c.cmd(&["SELECT", "0"]), ok());
    assert_eq!(c.cmd(&["SELECT", "1"]), err("ERR DB index is out of range"));
    assert_eq!(
        c.cmd(&["SELECT", "-1"]),
        err("ERR DB index is out of range")
    );
    assert_eq!(
        c.cmd(&["SELECT", "x"]),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(
        c.cmd(&["SELECT", "99999999999999999999"]),
        err("ERR value is not an integer or out of range")
    );
    // An integer, but not a C int (redis-server 7.0.15's text, typo included).
    assert_eq!(
        c.cmd(&["SELECT", "99999999999"]),
        err("ERR value is out of range, value must between -2147483648 and 2147483647")
    );
    assert_eq!(
        c.cmd(&["SELECT"]),
        err("ERR wrong number of arguments for 'select' command")
    );
}

#[test]
fn quit_replies_ok_then_closes() {
    let server = Server::start();
    let mut c = server.client();
    assert_eq!(c.cmd(&["QUIT"]), ok());
    assert_eq!(c.try_read(), None);

    // Pipelined commands after QUIT are not run.
    let mut c = server.client();
    c.send_raw(b"SET k v\r\nQUIT\r\nSET k after\r\n")
        .expect("write");
    assert_eq!(c.read(), ok());
    assert_eq!(c.read(), ok());
    assert_eq!(c.try_read(), None);
    let mut other = server.client();
    assert_eq!(other.cmd(&["GET", "k"]), bulk("v"));
}

#[test]
fn reset_clears_the_name_and_goes_back_to_resp2() {
    let server = Server::start();
    let mut c = server.client();
    assert_eq!(c.cmd(&["CLIENT", "SETNAME", "bob"]), ok());
    assert!(matches!(c.cmd(&["HELLO", "3"]), Frame::Map(_)));
    raw_reply(&mut c, &["GET", "missing"], b"_\r\n");
    assert_eq!(c.cmd(&["RESET"]), simple("RESET"));
    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]), Frame::Null);
    raw_reply(&mut c, &["GET", "missing"], b"$-1\r\n");
    raw_reply(&mut c, &["CLIENT", "GETNAME"], b"$-1\r\n");
    let info = text(&c.cmd(&["CLIENT", "INFO"]));
    assert!(info.contains(" name= "), "{info}");
    assert!(info.contains(" resp=2 "), "{info}");
    assert_eq!(
        c.cmd(&["RESET", "x"]),
        err("ERR wrong number of arguments for 'reset' command")
    );
}

#[test]
fn hello_handshakes_in_resp2_and_resp3() {
    let server = Server::start();
    let mut c = server.client();
    let id = client_id(&mut c);
    let version = info_field(&mut c, "server", "redis_version");

    // No arguments: the current protocol, RESP2, where a map is a flat array.
    assert_eq!(c.cmd(&["HELLO"]), flat(hello_pairs(&version, 2, id)));
    assert_eq!(c.cmd(&["HELLO", "2"]), flat(hello_pairs(&version, 2, id)));

    // HELLO 3: the reply is a real map, and so is everything after it RESP3.
    assert_eq!(
        c.cmd(&["HELLO", "3"]),
        Frame::Map(hello_pairs(&version, 3, id))
    );
    let mut wire = BytesMut::new();
    encode(
        &Frame::Map(hello_pairs(&version, 3, id)),
        Version::Resp3,
        &mut wire,
    );
    assert!(wire.starts_with(b"%7\r\n$6\r\nserver\r\n"));
    raw_reply(&mut c, &["HELLO", "3"], &wire);
    raw_reply(&mut c, &["GET", "missing"], b"_\r\n");
    assert_eq!(c.cmd(&["GET", "missing"]), Frame::Null);
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    raw_reply(&mut c, &["GET", "k"], b"$1\r\nv\r\n");
    // A verbatim string in RESP3.
    let info = c.cmd(&["CLIENT", "INFO"]);
    assert!(matches!(info, Frame::Verbatim { .. }), "{info:?}");
    assert!(text(&info).contains(" resp=3 "));
    // HELLO with no version reports the protocol in use.
    assert_eq!(c.cmd(&["HELLO"]), Frame::Map(hello_pairs(&version, 3, id)));

    // Back to RESP2.
    assert_eq!(c.cmd(&["HELLO", "2"]), flat(hello_pairs(&version, 2, id)));
    raw_reply(&mut c, &["GET", "missing"], b"$-1\r\n");
}

#[test]
fn hello_refuses_bad_versions_and_options_and_can_set_a_name() {
    let server = Server::start();
    let mut c = server.client();
    let id = client_id(&mut c);
    let version = info_field(&mut c, "server", "redis_version");
    for v in ["4", "1", "0"] {
        assert_eq!(
            c.cmd(&["HELLO", v]),
            err("NOPROTO unsupported protocol version")
        );
    }
    assert_eq!(
        c.cmd(&["HELLO", "three"]),
        err("ERR Protocol version is not an integer or out of range")
    );
    assert_eq!(
        c.cmd(&["HELLO", "3", "bogus"]),
        err("ERR Syntax error in HELLO option 'bogus'")
    );
    assert_eq!(
        c.cmd(&["HELLO", "3", "SETNAME"]),
        err("ERR Syntax error in HELLO option 'SETNAME'")
    );
    assert_eq!(
        c.cmd(&["HELLO", "3", "AUTH", "default"]),
        err("ERR Syntax error in HELLO option 'AUTH'")
    );
    assert_eq!(
        c.cmd(&["HELLO", "3", "SETNAME", "a b"]),
        err("ERR Client names cannot contain spaces, newlines or special characters.")
    );
    // None of the refused HELLOs changed the protocol.
    raw_reply(&mut c, &["GET", "missing"], b"$-1\r\n");

    assert_eq!(
        c.cmd(&["HELLO", "3", "SETNAME", "x"]),
        Frame::Map(hello_pairs(&version, 3, id))
    );
    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]), bulk("x"));
    // With no password configured, the default user accepts any password (Redis's nopass).
    assert_eq!(
        c.cmd(&["hello", "2", "auth", "default", "anything", "setname", "y"]),
        flat(hello_pairs(&version, 2, id))
    );
    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]), bulk("y"));
}

#[test]
fn auth_gates_every_command_when_a_password_is_set() {
    let server = Server::start_with(&["--requirepass", "s3cret"]);
    let version = {
        let mut c = server.client();
        assert_eq!(c.cmd(&["AUTH", "s3cret"]), ok());
        info_field(&mut c, "server", "redis_version")
    };

    let mut c = server.client();
    for cmd in [
        &["GET", "a"][..],
        &["SET", "a", "1"],
        &["PING"],
        &["CLIENT", "ID"],
        &["CONFIG", "GET", "requirepass"],
        &["INFO"],
    ] {
        assert_eq!(
            c.cmd(cmd),
            err("NOAUTH Authentication required."),
            "{cmd:?}"
        );
    }
    assert_eq!(
        c.cmd(&["HELLO", "3"]),
        err("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
    );
    let wrongpass = err("WRONGPASS invalid username-password pair or user is disabled.");
    assert_eq!(c.cmd(&["AUTH", "wrong"]), wrongpass);
    assert_eq!(c.cmd(&["AUTH", "default", "wrong"]), wrongpass);
    assert_eq!(c.cmd(&["AUTH", "nobody", "s3cret"]), wrongpass);
    assert_eq!(c.cmd(&["AUTH", "a", "b", "c"]), err("ERR syntax error"));
    assert_eq!(
        c.cmd(&["AUTH"]),
        err("ERR wrong number of arguments for 'auth' command")
    );
    assert_eq!(c.cmd(&["GET", "a"]), err("NOAUTH Authentication required."));
    assert_eq!(c.cmd(&["AUTH", "s3cret"]), ok());
    assert_eq!(c.cmd(&["SET", "a", "1"]), ok());
    assert_eq!(c.cmd(&["GET", "a"]), bulk("1"));
    assert_eq!(c.cmd(&["PING"]), simple("PONG"));
    // RESET logs the connection out again.
    assert_eq!(c.cmd(&["RESET"]), simple("RESET"));
    assert_eq!(c.cmd(&["PING"]), err("NOAUTH Authentication required."));

    // AUTH with the user name.
    let mut c = server.client();
    assert_eq!(c.cmd(&["AUTH", "default", "s3cret"]), ok());
    assert_eq!(c.cmd(&["GET", "a"]), bulk("1"));

    // HELLO ... AUTH authenticates and switches protocol in one go.
    let mut c = server.client();
    let mut c2 = server.client();
    let hello = c2.cmd(&["HELLO", "3", "AUTH", "default", "s3cret"]);
    let id = client_id(&mut c2);
    assert_eq!(hello, Frame::Map(hello_pairs(&version, 3, id)));
    raw_reply(&mut c2, &["GET", "missing"], b"_\r\n");
    assert_eq!(c2.cmd(&["GET", "a"]), bulk("1"));
    // A wrong password in HELLO leaves the connection unauthenticated.
    assert_eq!(c.cmd(&["HELLO", "3", "AUTH", "default", "bad"]), wrongpass);
    assert_eq!(c.cmd(&["PING"]), err("NOAUTH Authentication required."));
    // QUIT needs no authentication.
    assert_eq!(c.cmd(&["QUIT"]), ok());
    assert_eq!(c.try_read(), None);

    // redis-cli, with and without the password.
    assert_eq!(server.cli(&["ping"]), "NOAUTH Authentication required.");
    assert_eq!(
        server.cli(&["--no-raw", "get", "a"]),
        "(error) NOAUTH Authentication required."
    );
    assert_eq!(
        server.cli(&["-a", "s3cret", "--no-auth-warning", "get", "a"]),
        "1"
    );
}

#[test]
fn auth_without_a_configured_password_is_an_error() {
    let server = Server::start();
    let mut c = server.client();
    assert_eq!(
        c.cmd(&["AUTH", "x"]),
        err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
    );
    // The default user has no password, so any password works for it.
    assert_eq!(c.cmd(&["AUTH", "default", "x"]), ok());
    assert_eq!(
        c.cmd(&["AUTH", "nobody", "x"]),
        err("WRONGPASS invalid username-password pair or user is disabled.")
    );
    assert_eq!(c.cmd(&["PING"]), simple("PONG"));
}

#[test]
fn client_id_setname_and_getname() {
    let server = Server::start();
    let mut a = server.client();
    let mut b = server.client();
    let (ida, idb) = (client_id(&mut a), client_id(&mut b));
    assert!(ida > 0 && idb > ida, "{ida} {idb}");
    assert_eq!(a.cmd(&["CLIENT", "GETNAME"]), Frame::Null);
    assert_eq!(a.cmd(&["CLIENT", "SETNAME", "bob"]), ok());
    assert_eq!(a.cmd(&["CLIENT", "GETNAME"]), bulk("bob"));
    assert_eq!(b.cmd(&["CLIENT", "GETNAME"]), Frame::Null);
    let bad = err("ERR Client names cannot contain spaces, newlines or special characters.");
    for name in ["a b", "a\nb", "tab\there", "caf\u{e9}"] {
        assert_eq!(a.cmd(&["CLIENT", "SETNAME", name]), bad, "{name:?}");
    }
    assert_eq!(a.cmd(&["CLIENT", "GETNAME"]), bulk("bob"));
    // An empty name clears it.
    assert_eq!(a.cmd(&["CLIENT", "SETNAME", ""]), ok());
    assert_eq!(a.cmd(&["CLIENT", "GETNAME"]), Frame::Null);
    assert_eq!(
        a.cmd(&["CLIENT", "SETNAME"]),
        err("ERR wrong number of arguments for 'client|setname' command")
    );
    assert_eq!(
        a.cmd(&["client", "id", "x"]),
        err("ERR wrong number of arguments for 'client|id' command")
    );
}

#[test]
fn client_list_and_info_describe_connections() {
    let server = Server::start();
    let mut a = server.client();
    let mut b = server.client();
    let (ida, idb) = (client_id(&mut a), client_id(&mut b));
    assert_eq!(a.cmd(&["CLIENT", "SETNAME", "alice"]), ok());
    let a_addr = a.stream.local_addr().expect("addr");
    let b_addr = b.stream.local_addr().expect("addr");

    let list = text(&b.cmd(&["CLIENT", "LIST"]));
    assert!(list.ends_with('\n'), "{list:?}");
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    let line_a = lines
        .iter()
        .find(|l| l.starts_with(&format!("id={ida} ")))
        .unwrap_or_else(|| panic!("no id={ida} in {list}"));
    assert!(
        line_a.starts_with(&format!("id={ida} addr={a_addr} laddr={} ", server.addr)),
        "{line_a}"
    );
    assert!(line_a.contains(" name=alice "), "{line_a}");
    assert!(line_a.contains(" cmd=client|setname "), "{line_a}");
    let line_b = lines
        .iter()
        .find(|l| l.starts_with(&format!("id={idb} addr={b_addr} ")))
        .unwrap_or_else(|| panic!("no id={idb} in {list}"));
    assert!(line_b.contains(" name= "), "{line_b}");
    assert!(line_b.contains(" cmd=client|list "), "{line_b}");

    // Filters.
    let only_a = text(&b.cmd(&["CLIENT", "LIST", "ID", &ida.to_string()]));
    assert_eq!(only_a.lines().count(), 1);
    assert!(only_a.starts_with(&format!("id={ida} ")), "{only_a}");
    assert_eq!(text(&b.cmd(&["CLIENT", "LIST", "TYPE", "pubsub"])), "");
    assert_eq!(
        b.cmd(&["CLIENT", "LIST", "TYPE", "nope"]),
        err("ERR Unknown client type 'nope'")
    );
    assert_eq!(
        b.cmd(&["CLIENT", "LIST", "ID", "x"]),
        err("ERR Invalid client ID")
    );

    // CLIENT INFO: this connection's line alone.
    let info = text(&a.cmd(&["CLIENT", "INFO"]));
    assert!(
        info.ends_with('\n') && info.lines().count() == 1,
        "{info:?}"
    );
    assert!(
        info.starts_with(&format!("id={ida} addr={a_addr} laddr={} ", server.addr)),
        "{info}"
    );
    for field in [
        " name=alice ",
        " db=0 ",
        " cmd=client|info ",
        " user=default ",
        " resp=2 ",
    ] {
        assert!(info.contains(field), "{field} missing in {info}");
    }
}

#[test]
fn client_setinfo_sets_library_attributes() {
    let server = Server::start();
    let mut c = server.client();
    assert_eq!(c.cmd(&["CLIENT", "SETINFO", "LIB-NAME", "x"]), ok());
    assert_eq!(c.cmd(&["CLIENT", "SETINFO", "lib-ver", "1.2.3"]), ok());
    let info = text(&c.cmd(&["CLIENT", "INFO"]));
    assert!(info.ends_with(" lib-name=x lib-ver=1.2.3\n"), "{info:?}");
    assert_eq!(
        c.cmd(&["CLIENT", "SETINFO", "foo", "bar"]),
        err("ERR Unrecognized option 'foo'")
    );
    assert_eq!(
        c.cmd(&["CLIENT", "SETINFO", "lib-name", "a b"]),
        err("ERR lib-name cannot contain spaces, newlines or special characters.")
    );
    assert_eq!(
        c.cmd(&["CLIENT", "SETINFO", "lib-name"]),
        err("ERR wrong number of arguments for 'client|setinfo' command")
    );
    // An empty value clears the attribute.
    assert_eq!(c.cmd(&["CLIENT", "SETINFO", "LIB-NAME", ""]), ok());
    let info = text(&c.cmd(&["CLIENT", "INFO"]));
    assert!(info.ends_with(" lib-name= lib-ver=1.2.3\n"), "{info:?}");
}

#[test]
fn client_kill_closes_only_the_named_connection() {
    let server = Server::start();
    let mut killer = server.client();
    let killer_id = client_id(&mut killer);
    let mut victim = quick(&server);
    let victim_id = client_id(&mut victim);
    let mut bystander = server.client();
    assert_eq!(bystander.cmd(&["SET", "k", "v"]), ok());

    assert_eq!(
        killer.cmd(&["CLIENT", "KILL", "ID", &victim_id.to_string()]),
        int(1)
    );
    assert!(
        eventually(Duration::from_secs(10), || victim.is_closed()),
        "the killed connection stayed open"
    );
    // Once it is gone, killing it again finds nobody.
    assert!(eventually(Duration::from_secs(10), || {
        killer.cmd(&["CLIENT", "KILL", "ID", &victim_id.to_string()]) == int(0)
    }));
    assert_eq!(killer.cmd(&["CLIENT", "KILL", "ID", "999999"]), int(0));
    // SKIPME defaults to yes: a client does not kill itself by filter.
    assert_eq!(
        killer.cmd(&["CLIENT", "KILL", "ID", &killer_id.to_string()]),
        int(0)
    );

    // The ADDR filter.
    let mut by_addr = quick(&server);
    assert_eq!(by_addr.cmd(&["PING"]), simple("PONG"));
    let addr = by_addr.stream.local_addr().expect("addr").to_string();
    assert_eq!(killer.cmd(&["CLIENT", "KILL", "ADDR", &addr]), int(1));
    assert!(eventually(Duration::from_secs(10), || by_addr.is_closed()));

    // The old form: `CLIENT KILL ip:port` replies OK, or an error when nobody matches.
    let mut old_form = quick(&server);
    assert_eq!(old_form.cmd(&["PING"]), simple("PONG"));
    let addr = old_form.stream.local_addr().expect("addr").to_string();
    assert_eq!(killer.cmd(&["CLIENT", "KILL", &addr]), ok());
    assert!(eventually(Duration::from_secs(10), || old_form.is_closed()));
    assert_eq!(
        killer.cmd(&["CLIENT", "KILL", "1.2.3.4:5"]),
        err("ERR No such client")
    );

    // Argument errors.
    assert_eq!(
        killer.cmd(&["CLIENT", "KILL", "ID", "0"]),
        err("ERR client-id should be greater than 0")
    );
    assert_eq!(
        killer.cmd(&["CLIENT", "KILL", "ID", "x"]),
        err("ERR client-id should be greater than 0")
    );
    assert_eq!(
        killer.cmd(&["CLIENT", "KILL", "ID", "1", "SKIPME"]),
        err("ERR syntax error")
    );
    assert_eq!(
        killer.cmd(&["CLIENT", "KILL", "NOPE", "1"]),
        err("ERR syntax error")
    );

    // Everyone else is fine.
    assert_eq!(killer.cmd(&["PING"]), simple("PONG"));
    assert_eq!(bystander.cmd(&["GET", "k"]), bulk("v"));
    // The killed connections leave the list once their tasks have finished.
    assert!(
        eventually(Duration::from_secs(10), || {
            text(&killer.cmd(&["CLIENT", "LIST"])).lines().count() == 2
        }),
        "killed clients are still listed"
    );
}

/// A config reply (a flat array of name/value pairs in RESP2) as sorted pairs.
fn config_pairs(reply: Frame) -> Vec<(String, String)> {
    let Frame::Array(items) = reply else {
        panic!("CONFIG GET: {reply:?}");
    };
    assert_eq!(items.len() % 2, 0);
    let mut pairs: Vec<(String, String)> = items
        .chunks(2)
        .map(|p| (text(&p[0]), text(&p[1])))
        .collect();
    pairs.sort();
    pairs
}

#[test]
fn config_get_set_and_resetstat() {
    let server = Server::start();
    let mut c = server.client();
    assert_eq!(c.cmd(&["CONFIG", "GET", "save"]), bulks(&["save", ""]));
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "appendonly"]),
        bulks(&["appendonly", "no"])
    );
    assert_eq!(
        config_pairs(c.cmd(&["config", "get", "save", "appendonly"])),
        vec![
            ("appendonly".to_owned(), "no".to_owned()),
            ("save".to_owned(), String::new())
        ]
    );
    let max = config_pairs(c.cmd(&["CONFIG", "GET", "max*"]));
    for expected in [
        ("maxclients", "10000"),
        ("maxmemory", "0"),
        ("maxmemory-policy", "noeviction"),
    ] {
        assert!(
            max.iter()
                .any(|(k, v)| (k.as_str(), v.as_str()) == expected),
            "{expected:?} not in {max:?}"
        );
    }
    assert!(max.iter().all(|(k, _)| k.starts_with("max")), "{max:?}");
    assert_eq!(c.cmd(&["CONFIG", "GET", "nomatch"]), array(vec![]));

    assert_eq!(c.cmd(&["CONFIG", "SET", "maxclients", "50"]), ok());
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "maxclients"]),
        bulks(&["maxclients", "50"])
    );
    assert_eq!(info_field(&mut c, "clients", "maxclients"), "50");
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "maxclients", "abc"]),
        err("ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument couldn't be parsed into an integer")
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "port", "1"]),
        err("ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config")
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "databases", "2"]),
        err("ERR CONFIG SET failed (possibly related to argument 'databases') - can't set immutable config")
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "nope", "1"]),
        err("ERR Unknown option or number of arguments for CONFIG SET - 'nope'")
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "maxclients"]),
        err("ERR wrong number of arguments for 'config|set' command")
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "maxclients", "60", "timeout"]),
        err("ERR syntax error")
    );
    // All or nothing: a bad pair leaves the good one unapplied.
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "maxclients", "70", "port", "1"]),
        err("ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config")
    );
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "maxclients"]),
        bulks(&["maxclients", "50"])
    );

    // RESETSTAT clears the command statistics; only its own call is counted afterwards.
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    assert!(info_text(&mut c, "commandstats").contains("\r\ncmdstat_set:calls=1,"));
    assert_eq!(c.cmd(&["CONFIG", "RESETSTAT"]), ok());
    let stats = info_text(&mut c, "commandstats");
    let lines: Vec<&str> = stats.lines().collect();
    assert_eq!(lines.len(), 2, "{stats}");
    assert_eq!(lines[0], "# Commandstats");
    assert!(
        lines[1].starts_with("cmdstat_config|resetstat:calls=1,usec="),
        "{stats}"
    );
    assert!(
        lines[1].ends_with(",rejected_calls=0,failed_calls=0"),
        "{stats}"
    );
}

#[test]
fn command_introspection_comes_from_the_table() {
    let server = Server::start();
    let mut c = server.client();
    let top_level = COMMANDS.iter().filter(|s| !s.name.contains('|')).count();
    assert_eq!(c.cmd(&["COMMAND", "COUNT"]), int(top_level as i64));
    let Frame::Array(all) = c.cmd(&["COMMAND"]) else {
        panic!("COMMAND is an array");
    };
    assert_eq!(all.len(), top_level);

    // COMMAND INFO get: Redis 7's ten fields.
    let Frame::Array(infos) = c.cmd(&["COMMAND", "INFO", "get"]) else {
        panic!("COMMAND INFO is an array");
    };
    assert_eq!(infos.len(), 1);
    let Frame::Array(get) = &infos[0] else {
        panic!("{infos:?}");
    };
    assert_eq!(get.len(), 10, "{get:?}");
    assert_eq!(get[0], bulk("get"));
    assert_eq!(get[1], int(2));
    assert_eq!(get[2], array(vec![simple("readonly"), simple("fast")]));
    assert_eq!(&get[3..6], &[int(1), int(1), int(1)]);
    let Frame::Array(categories) = &get[6] else {
        panic!("{get:?}");
    };
    let mut categories: Vec<Frame> = categories.clone();
    categories.sort_by_key(|f| format!("{f:?}"));
    assert_eq!(
        categories,
        vec![simple("@fast"), simple("@read"), simple("@string")]
    );
    assert_eq!(get[7], array(vec![]));
    // One key spec: read-only access to the key at index 1 (RESP2 shows maps flat).
    assert_eq!(
        get[8],
        array(vec![array(vec![
            bulk("flags"),
            array(vec![simple("RO"), simple("access")]),
            bulk("begin_search"),
            array(vec![
                bulk("type"),
                bulk("index"),
                bulk("spec"),
                array(vec![bulk("index"), int(1)]),
            ]),
            bulk("find_keys"),
            array(vec![
                bulk("type"),
                bulk("range"),
                bulk("spec"),
                array(vec![
                    bulk("lastkey"),
                    int(0),
                    bulk("keystep"),
                    int(1),
                    bulk("limit"),
                    int(0),
                ]),
            ]),
        ])])
    );
    assert_eq!(get[9], array(vec![]));

    // An unknown name is a null (a null bulk string, as Redis sends it) in its place.
    raw_reply(&mut c, &["COMMAND", "INFO", "nosuch"], b"*1\r\n$-1\r\n");
    let Frame::Array(two) = c.cmd(&["COMMAND", "INFO", "nosuch", "GET"]) else {
        panic!("COMMAND INFO is an array");
    };
    assert_eq!(two[0], Frame::Null);
    assert_eq!(two[1], infos[0]);
    // Subcommands are described under their full name.
    let Frame::Array(sub) = c.cmd(&["COMMAND", "INFO", "config|get"]) else {
        panic!("COMMAND INFO is an array");
    };
    let Frame::Array(config_get) = &sub[0] else {
        panic!("{sub:?}");
    };
    assert_eq!(config_get[0], bulk("config|get"));
    assert_eq!(config_get[1], int(-3));

    // COMMAND DOCS get: a map (flat in RESP2) holding the summary.
    let summary = CommandSpec::by_name("get").expect("get").summary;
    let Frame::Array(docs) = c.cmd(&["COMMAND", "DOCS", "get"]) else {
        panic!("COMMAND DOCS is a map");
    };
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0], bulk("get"));
    let Frame::Array(doc) = &docs[1] else {
        panic!("{docs:?}");
    };
    let at = doc
        .iter()
        .position(|f| *f == bulk("summary"))
        .unwrap_or_else(|| panic!("no summary in {doc:?}"));
    assert_eq!(doc[at + 1], bulk(summary));
    assert_eq!(c.cmd(&["COMMAND", "DOCS", "nosuch"]), array(vec![]));

    // COMMAND GETKEYS.
    assert_eq!(
        c.cmd(&["COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"]),
        bulks(&["a", "b"])
    );
    assert_eq!(
        c.cmd(&["COMMAND", "GETKEYS", "SET", "k", "v", "EX", "10"]),
        bulks(&["k"])
    );
    // SORT's STORE destination is a key (Redis's sortGetKeys: the last STORE, options skipped
    // with their arguments).
    assert_eq!(
        c.cmd(&["COMMAND", "GETKEYS", "SORT", "a", "BY", "w_*", "STORE", "b"]),
        bulks(&["a", "b"])
    );
    assert_eq!(
        c.cmd(&[
            "COMMAND", "GETKEYS", "SORT", "a", "LIMIT", "0", "1", "GET", "store", "STORE", "c"
        ]),
        bulks(&["a", "c"])
    );
    assert_eq!(
        c.cmd(&["COMMAND", "GETKEYS", "SORT_RO", "a", "STORE", "b"]),
        bulks(&["a"])
    );
    assert_eq!(
        c.cmd(&["COMMAND", "GETKEYS", "PING"]),
        err("ERR The command has no key arguments")
    );
    assert_eq!(
        c.cmd(&["COMMAND", "GETKEYS", "nosuch", "a"]),
        err("ERR Invalid command specified")
    );
    assert_eq!(
        c.cmd(&["COMMAND", "GETKEYS", "GET", "a", "b"]),
        err("ERR Invalid number of arguments specified for command")
    );

    // COMMAND LIST: every command and subcommand by its full name.
    let Frame::Array(names) = c.cmd(&["COMMAND", "LIST"]) else {
        panic!("COMMAND LIST is an array");
    };
    assert_eq!(names.len(), COMMANDS.len());
    for name in ["get", "config|get", "client|kill", "command|list"] {
        assert!(names.contains(&bulk(name)), "{name} not listed");
    }
    assert_eq!(
        c.cmd(&["COMMAND", "x"]),
        err("ERR unknown subcommand 'x'. Try COMMAND HELP.")
    );
}

#[test]
fn info_reports_sections_keyspace_and_commandstats() {
    let server = Server::start();
    let mut c = server.client();
    let info = text(&c.cmd(&["INFO"]));
    assert!(info.starts_with("# Server\r\n"), "{info}");
    assert!(info.contains("\r\nredis_version:"), "{info}");
    assert!(info.contains("\r\n# Keyspace\r\n"), "{info}");
    assert!(!info.contains("db0:"), "{info}");
    assert_eq!(
        info_field(&mut c, "server", "tcp_port"),
        server.port().to_string()
    );
    assert_eq!(info_text(&mut c, "keyspace"), "# Keyspace\r\n");
    // An unknown section is simply empty.
    assert_eq!(info_text(&mut c, "nosuch"), "");

    assert_eq!(c.cmd(&["SET", "a", "1"]), ok());
    assert_eq!(
        info_text(&mut c, "keyspace"),
        "# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n"
    );
    assert_eq!(c.cmd(&["SET", "b", "2", "EX", "100"]), ok());
    assert!(info_text(&mut c, "keyspace").starts_with("# Keyspace\r\ndb0:keys=2,expires=1,"));

    let stats = info_text(&mut c, "commandstats");
    assert!(stats.starts_with("# Commandstats\r\n"), "{stats}");
    assert!(stats.contains("\r\ncmdstat_set:calls=2,"), "{stats}");
    // Plain INFO leaves commandstats out; INFO all has it.
    assert!(!info.contains("cmdstat_"));
    assert!(info_text(&mut c, "all").contains("\r\ncmdstat_set:calls=2,"));
    // Several sections at once, in the order asked for.
    let two = info_text(&mut c, "keyspace");
    assert!(two.starts_with("# Keyspace"));
    let Frame::Bulk(both) = c.cmd(&["INFO", "clients", "keyspace"]) else {
        panic!("INFO is a bulk string in RESP2");
    };
    let both = String::from_utf8(both.to_vec()).expect("utf-8");
    assert!(both.starts_with("# Clients\r\n"), "{both}");
    assert!(both.contains("\r\n\r\n# Keyspace\r\n"), "{both}");

    // RESP3: a verbatim string.
    assert!(matches!(c.cmd(&["HELLO", "3"]), Frame::Map(_)));
    assert_eq!(
        c.cmd(&["INFO", "keyspace"]),
        Frame::Verbatim {
            format: *b"txt",
            text: "# Keyspace\r\ndb0:keys=2,expires=1,avg_ttl=0\r\n".into()
        }
    );
}

#[test]
fn unknown_commands_arity_and_subcommand_errors() {
    let server = Server::start();
    let mut c = server.client();
    assert_eq!(
        c.cmd(&["foo", "a", "b"]),
        err("ERR unknown command 'foo', with args beginning with: 'a' 'b' ")
    );
    assert_eq!(
        c.cmd(&["FOO"]),
        err("ERR unknown command 'FOO', with args beginning with: ")
    );
    // Redis shows arguments while fewer than 128 bytes are shown, each cut to the room left.
    let a = "a".repeat(100);
    let b = "b".repeat(100);
    assert_eq!(
        c.cmd(&["foo", &a, &b, "c"]),
        err(&format!(
            "ERR unknown command 'foo', with args beginning with: '{a}' '{}' ",
            "b".repeat(25)
        ))
    );
    let long = "x".repeat(200);
    assert_eq!(
        c.cmd(&[&long]),
        err(&format!(
            "ERR unknown command '{}', with args beginning with: ",
            "x".repeat(128)
        ))
    );
    // Subcommand names are not commands of their own.
    assert_eq!(
        c.cmd(&["config|get", "save"]),
        err("ERR unknown command 'config|get', with args beginning with: 'save' ")
    );

    assert_eq!(
        c.cmd(&["GET"]),
        err("ERR wrong number of arguments for 'get' command")
    );
    assert_eq!(
        c.cmd(&["get", "a", "b"]),
        err("ERR wrong number of arguments for 'get' command")
    );
    assert_eq!(
        c.cmd(&["CONFIG", "GET"]),
        err("ERR wrong number of arguments for 'config|get' command")
    );
    assert_eq!(
        c.cmd(&["CONFIG"]),
        err("ERR wrong number of arguments for 'config' command")
    );
    assert_eq!(
        c.cmd(&["CLIENT"]),
        err("ERR wrong number of arguments for 'client' command")
    );
    assert_eq!(
        c.cmd(&["CONFIG", "x"]),
        err("ERR unknown subcommand 'x'. Try CONFIG HELP.")
    );
    assert_eq!(
        c.cmd(&["client", "nope", "1"]),
        err("ERR unknown subcommand 'nope'. Try CLIENT HELP.")
    );
    let Frame::Array(help) = c.cmd(&["CONFIG", "HELP"]) else {
        panic!("CONFIG HELP is an array");
    };
    assert_eq!(
        help[0],
        simple("CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:")
    );
    assert_eq!(help.last(), Some(&simple("    Print this help.")));
    // The connection is still in step after all those errors.
    assert_eq!(c.cmd(&["PING"]), simple("PONG"));
}

#[test]
fn redis_cli_talks_to_the_server() {
    let server = Server::start();
    assert_eq!(server.cli(&["ping"]), "PONG");
    assert_eq!(server.cli(&["echo", "hello world"]), "hello world");
    assert_eq!(server.cli(&["set", "k", "v"]), "OK");
    assert_eq!(server.cli(&["--no-raw", "get", "k"]), "\"v\"");
    assert_eq!(server.cli(&["--no-raw", "get", "missing"]), "(nil)");
    assert_eq!(
        server.cli(&["--no-raw", "get"]),
        "(error) ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        server.cli(&["foo", "a", "b"]),
        "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
    );
    assert_eq!(
        server.cli(&["--no-raw", "select", "1"]),
        "(error) ERR DB index is out of range"
    );
    assert_eq!(
        server.cli(&["--no-raw", "config", "get", "save"]),
        "1) \"save\"\n2) \"\""
    );
    assert_eq!(server.cli(&["command", "count"]), {
        COMMANDS
            .iter()
            .filter(|s| !s.name.contains('|'))
            .count()
            .to_string()
    });
    let hello = server.cli(&["-3", "hello"]);
    let lines: Vec<&str> = hello.lines().collect();
    assert_eq!(lines[0], "server redis", "{hello}");
    assert!(lines.contains(&"proto 3"), "{hello}");
    let info = server.cli(&["client", "info"]);
    assert!(info.starts_with("id="), "{info}");
    assert!(info.contains(" cmd=client|info "), "{info}");
    assert!(server.cli(&["info", "server"]).contains("redis_version:"));
}

#[test]
fn unauthenticated_clients_cannot_send_large_requests() {
    let server = Server::start_with(&["--requirepass", "s3cret"]);
    // More than 10 arguments before AUTH: Redis 7's error, then the connection closes.
    let mut c = server.client();
    let mut args = vec!["MSET"];
    args.extend(std::iter::repeat_n("k", 12));
    c.send(&args);
    assert_eq!(
        c.read(),
        err("ERR Protocol error: unauthenticated multibulk length")
    );
    assert!(c.try_read().is_none(), "connection closed");
    // A bulk string over 16 KiB before AUTH: likewise.
    let mut c = server.client();
    let big = "x".repeat(16385);
    c.send(&["AUTH", &big]);
    assert_eq!(
        c.read(),
        err("ERR Protocol error: unauthenticated bulk length")
    );
    assert!(c.try_read().is_none(), "connection closed");
    // After AUTH the normal limits apply.
    let mut c = server.client();
    assert_eq!(c.cmd(&["AUTH", "s3cret"]), ok());
    assert_eq!(c.cmd(&args), ok());
    assert_eq!(c.cmd(&["SET", "big", &big]), ok());
    assert_eq!(c.cmd(&["STRLEN", "big"]), int(16385));
}
