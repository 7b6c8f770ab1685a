//! Debian's redis-benchmark and redis-cli, unmodified, against the real binary.

mod common;
use common::*;

use std::process::Command;

#[test]
fn redis_benchmark_runs_every_default_test_without_errors() {
    let server = Server::start();
    let out = Command::new("redis-benchmark")
        .args(["-p", &server.port().to_string()])
        .args([
            "-t",
            "ping,set,get,incr,mset",
            "-n",
            "5000",
            "-c",
            "20",
            "-P",
            "8",
            "-d",
            "100",
            "-q",
        ])
        .output()
        .expect("redis-benchmark must be installed (apt-get install redis-tools)");
    let stdout = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for test in [
        "PING_INLINE",
        "PING_MBULK",
        "SET",
        "GET",
        "INCR",
        "MSET (10 keys)",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("{test}:")) && l.contains("requests per second")),
            "no result for {test}:\n{stdout}"
        );
    }
    let all = format!("{stdout}{stderr}");
    assert!(
        !all.contains("ERR") && !all.contains("rror"),
        "errors reported:\n{all}"
    );
    // The keys it wrote are really there, and the counter counted every INCR.
    assert_eq!(server.cli(&["GET", "counter:__rand_int__"]), "5000");
    assert!(server.cli(&["EXISTS", "key:__rand_int__"]) == "1");
}

#[test]
fn redis_benchmark_reads_the_config_it_asks_for() {
    let server = Server::start();
    // redis-benchmark asks for these on start and prints a warning if they fail.
    assert_eq!(server.cli(&["CONFIG", "GET", "save"]), "save");
    assert_eq!(
        server.cli(&["CONFIG", "GET", "appendonly"]),
        "appendonly\nno"
    );
}
