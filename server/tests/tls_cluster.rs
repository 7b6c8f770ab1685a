//! Mutual TLS on the peer port (`--tls-cluster yes`) with real processes and certificates made
//! here with the openssl CLI: a 3-node cluster (`--cluster-mode redirect`) forms, replicates and
//! serves `redis-cli --tls -c`, which follows MOVED to the leaders' TLS ports; the topology
//! replies name TLS ports to TLS clients and plain ports to plain ones; a node whose
//! certificate comes from another CA, and a node speaking plain TCP, are refused (both sides
//! log why) and never become members.

mod common;
use common::*;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `<name>.crt/key` signed by `ca`, for 127.0.0.1, usable as server and as client (a node
/// presents the same certificate on both ends of its peer connections, as Redis's nodes do).
fn make_node_cert(dir: &Path, ca: &str, name: &str) {
    certs::make_cert(
        dir,
        ca,
        name,
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    );
}

/// `redis-cli --tls -c` (with the node certificate as its client certificate) against
/// `port`: follows MOVED, which must therefore name a TLS port.
fn tls_cli(dir: &Path, port: u16, cmd: &[&str]) -> String {
    let (success, out) = tls_cli_once(dir, port, &["-c"], cmd);
    assert!(success, "redis-cli {cmd:?}: {out}");
    out
}

/// One `redis-cli --tls` run with `flags`: whether it succeeded, and its output trimmed.
fn tls_cli_once(dir: &Path, port: u16, flags: &[&str], cmd: &[&str]) -> (bool, String) {
    let out = Command::new("redis-cli")
        .current_dir(dir)
        .args([
            "--tls", "--cacert", "ca.crt", "--cert", "node.crt", "--key", "node.key",
        ])
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(flags)
        .args(cmd)
        .output()
        .expect("redis-cli");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (
        out.status.success(),
        format!("{text}{}", String::from_utf8_lossy(&out.stderr).trim()),
    )
}

/// The ports a topology reply's text names, among `candidates`.
fn ports_named(text: &str, candidates: &[u16]) -> std::collections::BTreeSet<u16> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse::<u16>().ok())
        .filter(|p| candidates.contains(p))
        .collect()
}

/// The values following each `tls-port` line of `CLUSTER SHARDS` as redis-cli prints it.
fn shards_tls_ports(text: &str) -> std::collections::BTreeSet<u16> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter(|w| w[0] == "tls-port")
        .filter_map(|w| w[1].parse().ok())
        .collect()
}

/// TLS clients see TLS ports (`CLUSTER SLOTS`, `NODES`, MOVED), plain clients the plain ones,
/// and `CLUSTER SHARDS` shows both to everyone; `redis-cli --tls -c` follows a MOVED.
fn topology_names_tls_ports_to_tls_clients(cluster: &mut Cluster, dir: &Path, tls_ports: &[u16]) {
    let plain_ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port()).collect();
    let all: Vec<u16> = plain_ports.iter().chain(tls_ports).copied().collect();
    let tls_set: std::collections::BTreeSet<u16> = tls_ports.iter().copied().collect();
    let plain_set: std::collections::BTreeSet<u16> = plain_ports.iter().copied().collect();
    // Each node publishes its TLS port in group 0 after joining: wait until all know all.
    let mut last = String::new();
    let published = eventually(Duration::from_secs(30), || {
        plain_ports.iter().all(|&port| {
            last = redis_cli(port, &["CLUSTER", "SHARDS"]);
            shards_tls_ports(&last) == tls_set
        })
    });
    assert!(
        published,
        "CLUSTER SHARDS lacks the TLS ports {tls_set:?}: {last}"
    );
    for &port in &plain_ports {
        let shards = redis_cli(port, &["CLUSTER", "SHARDS"]);
        assert_eq!(
            ports_named(&shards, &all),
            &plain_set | &tls_set,
            "{shards}"
        );
        let slots = redis_cli(port, &["CLUSTER", "SLOTS"]);
        assert_eq!(ports_named(&slots, &all), plain_set, "plain SLOTS: {slots}");
        let nodes = redis_cli(port, &["CLUSTER", "NODES"]);
        assert_eq!(ports_named(&nodes, &all), plain_set, "plain NODES: {nodes}");
    }
    for &port in tls_ports {
        let slots = tls_cli(dir, port, &["CLUSTER", "SLOTS"]);
        assert_eq!(ports_named(&slots, &all), tls_set, "TLS SLOTS: {slots}");
        let nodes = tls_cli(dir, port, &["CLUSTER", "NODES"]);
        let addrs: std::collections::BTreeSet<u16> = nodes
            .lines()
            .filter_map(|l| l.split(' ').nth(1)?.split(['@', ':']).nth(1)?.parse().ok())
            .collect();
        assert_eq!(addrs, tls_set, "TLS NODES: {nodes}");
    }
    // A key led by another node: plain redis-cli --tls shows the MOVED naming the leader's TLS
    // port; with -c it follows it, and the leader serves the value over TLS.
    let via = tls_ports[0];
    let (key, moved) = (0..200)
        .map(|i| format!("moved-{i}"))
        .find_map(|key| {
            let (_, out) = tls_cli_once(dir, via, &[], &["GET", &key]);
            out.contains("MOVED").then_some((key, out))
        })
        .expect("some key is led by another node");
    let slot = shoal_protocol::key_slot(key.as_bytes());
    let target = tls_ports
        .iter()
        .copied()
        .find(|&p| p != via && moved.contains(&format!("MOVED {slot} 127.0.0.1:{p}")))
        .unwrap_or_else(|| panic!("MOVED to a plain or unknown port: {moved}"));
    assert_eq!(tls_cli(dir, via, &["SET", &key, "followed"]), "OK");
    assert_eq!(
        tls_cli_once(dir, target, &[], &["GET", &key]),
        (true, "followed".to_owned())
    );
}

/// A `shoal-server` joining through `seed` with `flags`; stderr to `log`.
fn outsider(seed: &str, data_dir: &Path, log: &Path, flags: &[String]) -> Child {
    std::fs::create_dir_all(data_dir).unwrap();
    Command::new(cluster_binary())
        .args(["--port", "0", "--cluster-port", "0", "--bind", "127.0.0.1"])
        .args(["--log-level", "warn", "--join", seed, "--data-dir"])
        .arg(data_dir)
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn shoal-server")
}

fn cert_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shoal-tls-cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    certs::make_ca(&dir, "ca");
    make_node_cert(&dir, "ca", "node");
    certs::make_ca(&dir, "other-ca");
    make_node_cert(&dir, "other-ca", "stranger");
    dir
}

#[test]
fn a_tls_cluster_forms_and_serves_and_refuses_foreign_and_plaintext_peers() {
    let dir = cert_dir();
    let file = |n: &str| dir.join(n).display().to_string();
    let tls_flags = |cert: &str, ca: &str| -> Vec<String> {
        cmd(&[
            "--tls-cluster",
            "yes",
            "--tls-cert-file",
            &file(&format!("{cert}.crt")),
            "--tls-key-file",
            &file(&format!("{cert}.key")),
            "--tls-ca-cert-file",
            &file(&format!("{ca}.crt")),
        ])
    };
    let tls_ports = [free_port(), free_port(), free_port()];
    let node_flags = |i: usize| -> Vec<String> {
        let mut f = cmd(&[
            "--shards",
            "4",
            "--replicas",
            "3",
            "--cluster-mode",
            "redirect",
        ]);
        f.extend(tls_flags("node", "ca"));
        f.extend(cmd(&["--tls-port", &tls_ports[i].to_string()]));
        f
    };
    let flags0 = node_flags(0);
    let refs0: Vec<&str> = flags0.iter().map(String::as_str).collect();
    let mut cluster = Cluster::start(1, &refs0);
    for i in 1..3 {
        let flags = node_flags(i);
        let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
        cluster.join(&refs);
    }
    cluster.wait_ok(Duration::from_secs(60));
    cluster.wait_balanced(3, Duration::from_secs(90));
    topology_names_tls_ports_to_tls_clients(&mut cluster, &dir, &tls_ports);

    // Clients over TLS, writes replicated over the TLS peer links to every node.
    for i in 0..50 {
        let port = tls_ports[i % 3];
        assert_eq!(
            tls_cli(&dir, port, &["SET", &format!("k{i}"), &format!("v{i}")]),
            "OK"
        );
    }
    for i in 0..50 {
        let port = tls_ports[(i + 1) % 3];
        assert_eq!(
            tls_cli(&dir, port, &["GET", &format!("k{i}")]),
            format!("v{i}")
        );
    }
    cluster.wait_converged(Duration::from_secs(60));
    let nodes = tls_cli(&dir, tls_ports[0], &["CLUSTER", "NODES"]);
    assert_eq!(nodes.lines().count(), 3, "CLUSTER NODES: {nodes}");
    let slots = tls_cli(&dir, tls_ports[1], &["CLUSTER", "SLOTS"]);
    assert!(
        slots.lines().any(|l| l == "16383"),
        "CLUSTER SLOTS: {slots}"
    );

    // A plain-TCP stranger on the peer port is not even answered with the handshake greeting.
    let peer = cluster.nodes[0].peer_addr;
    let mut plain = std::net::TcpStream::connect(peer).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut hello = b"SHOALPA1".to_vec();
    hello.extend([7u8; 32]);
    plain.write_all(&hello).unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"SHOALPA1"),
        "plaintext handshake answered: {got:?}"
    );

    // Real nodes that are not members: one with a certificate from another CA, one without TLS.
    let seed = peer.to_string();
    let outsiders = [
        (
            "foreign-ca",
            tls_flags("stranger", "other-ca"),
            "peer TLS handshake failed",
        ),
        ("plaintext", Vec::new(), "peer authentication failed"),
    ];
    for (name, flags, symptom) in outsiders {
        let log = dir.join(format!("{name}.stderr"));
        let member_log_before = cluster.nodes[0].stderr().len();
        let mut child = outsider(&seed, &dir.join(name), &log, &flags);
        let refused = eventually(Duration::from_secs(20), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(symptom)
        });
        let member_refused = eventually(Duration::from_secs(10), || {
            let log = cluster.nodes[0].stderr();
            log[member_log_before..].lines().any(|l| {
                l.contains("refused a peer connection: authentication failed")
                    && l.contains("peer TLS handshake failed")
            })
        });
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            refused,
            "{name}: the outsider never saw the cluster refuse it: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            member_refused,
            "{name}: the member did not log the refusal: {}",
            cluster.nodes[0].stderr()
        );
        for node in cluster.running() {
            assert_eq!(
                node.cluster_info()["cluster_known_nodes"],
                "3",
                "{name} joined"
            );
        }
    }
    assert_eq!(tls_cli(&dir, tls_ports[2], &["GET", "k7"]), "v7");
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
