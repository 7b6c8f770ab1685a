//! Peer authentication with real processes: nodes share a cluster secret; a process with the
//! wrong secret, or none, cannot join (both sides log why), and one with the right secret
//! (given as a file) joins and serves the cluster's data.

mod common;
use common::*;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SECRET: &str = "correct horse battery staple";

/// A `shoal-server` that tries to join through `seed` with `secret_flags`; stderr to `log`.
fn rogue(seed: &str, data_dir: &std::path::Path, log: &std::path::Path, secret: &[&str]) -> Child {
    std::fs::create_dir_all(data_dir).unwrap();
    Command::new(cluster_binary())
        .args(["--port", "0", "--cluster-port", "0", "--bind", "127.0.0.1"])
        .args(["--log-level", "warn", "--join", seed, "--data-dir"])
        .arg(data_dir)
        .args(secret)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn rogue shoal-server")
}

#[test]
fn a_node_without_the_cluster_secret_cannot_join_and_one_with_it_can() {
    let dir = std::env::temp_dir().join(format!("shoal-peer-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();

    let mut cluster = Cluster::start(
        1,
        &[
            "--shards",
            "2",
            "--replicas",
            "2",
            "--cluster-secret",
            SECRET,
        ],
    );
    let seed = cluster.nodes[0].peer_addr.to_string();
    cluster.nodes[0]
        .client()
        .cmd(&["SET", "secret-data", "only for members"]);

    for (name, flags) in [
        ("wrong", vec!["--cluster-secret", "guess"]),
        ("none", vec![]),
    ] {
        let log = dir.join(format!("rogue-{name}.stderr"));
        let mut child = rogue(&seed, &dir.join(format!("rogue-{name}")), &log, &flags);
        let refused = eventually(Duration::from_secs(20), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("the peer does not know the cluster secret")
        });
        let member_log = cluster.nodes[0].stderr();
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            refused,
            "rogue ({name}) never saw the cluster refuse it: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            member_log.contains("refused a peer connection: authentication failed"),
            "the member did not log the refusal: {member_log}"
        );
        assert_eq!(
            cluster.nodes[0].cluster_info()["cluster_known_nodes"],
            "1",
            "the rogue ({name}) became a member"
        );
    }

    let secret_flag = secret_file.display().to_string();
    let i = cluster.join(&[
        "--shards",
        "2",
        "--replicas",
        "2",
        "--cluster-secret-file",
        &secret_flag,
    ]);
    cluster.wait_ok(Duration::from_secs(60));
    let mut via_new_node = cluster.nodes[i].client();
    assert_eq!(
        via_new_node.cmd(&["GET", "secret-data"]),
        bulk("only for members")
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
