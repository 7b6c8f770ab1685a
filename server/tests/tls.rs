//! TLS on the client port with the real `redis-cli --tls` and certificates made here with the
//! openssl CLI: a CA, a server certificate for 127.0.0.1 and a client certificate.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Makes `ca.crt`, `server.crt/key` (for IP 127.0.0.1) and `client.crt/key` in a fresh dir.
fn make_certificates() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shoal-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    certs::make_ca(&dir, "ca");
    certs::make_cert(
        &dir,
        "ca",
        "server",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    );
    certs::make_cert(&dir, "ca", "client", "extendedKeyUsage=clientAuth\n");
    dir
}

/// `redis-cli --tls` against `port` with `tls_args`; returns (success, stdout + stderr).
fn tls_cli(port: u16, dir: &Path, tls_args: &[&str], cmd: &[&str]) -> (bool, String) {
    let out = Command::new("redis-cli")
        .current_dir(dir)
        .args([
            "--tls",
            "--cacert",
            "ca.crt",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args(tls_args)
        .args(cmd)
        .output()
        .expect("redis-cli");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text.trim().to_owned())
}

#[test]
fn redis_cli_talks_tls_with_a_client_certificate_and_is_refused_without_one() {
    let dir = make_certificates();
    let file = |n: &str| dir.join(n).display().to_string();
    let port = free_port();
    let server = Server::start_with(&[
        "--tls-port",
        &port.to_string(),
        "--tls-cert-file",
        &file("server.crt"),
        "--tls-key-file",
        &file("server.key"),
        "--tls-ca-cert-file",
        &file("ca.crt"),
    ]);
    let client_cert = ["--cert", "client.crt", "--key", "client.key"];
    assert_eq!(
        tls_cli(port, &dir, &client_cert, &["SET", "k", "over tls"]),
        (true, "OK".into())
    );
    assert_eq!(
        tls_cli(port, &dir, &client_cert, &["GET", "k"]),
        (true, "over tls".into())
    );
    // The plain port serves the same data.
    assert_eq!(server.cli(&["GET", "k"]), "over tls");
    // --tls-auth-clients yes (the default): no client certificate, no connection.
    let (_, out) = tls_cli(port, &dir, &[], &["PING"]);
    assert_ne!(out, "PONG", "served a client without a certificate");
    // A plain-text client on the TLS port gets nothing it can read as RESP.
    {
        use std::io::{Read, Write};
        let mut plain = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        plain
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        plain.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
        let mut got = Vec::new();
        let _ = plain.read_to_end(&mut got);
        assert!(!String::from_utf8_lossy(&got).contains("PONG"), "{got:?}");
    }
    drop(server);

    let port = free_port();
    let _optional = Server::start_with(&[
        "--tls-port",
        &port.to_string(),
        "--tls-cert-file",
        &file("server.crt"),
        "--tls-key-file",
        &file("server.key"),
        "--tls-ca-cert-file",
        &file("ca.crt"),
        "--tls-auth-clients",
        "optional",
    ]);
    assert_eq!(tls_cli(port, &dir, &[], &["PING"]), (true, "PONG".into()));
    let _ = std::fs::remove_dir_all(&dir);
}
