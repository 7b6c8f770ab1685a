//! What operators see: the HTTP endpoint (`/metrics`, `/healthz`, `/readyz`, `/cluster.json`,
//! the status page drawn by headless Chromium), `SLOWLOG`, `LATENCY HISTOGRAM`, the extra INFO
//! sections and `CONFIG SET/REWRITE` of the operational parameters.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{bulk, eventually, info_fields, int, ok, Client, Cluster, Server};
use shoal_protocol::Frame;

/// `GET path` over a fresh HTTP/1.1 connection: (status, body).
fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the HTTP port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read the HTTP response");
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

/// The HTTP port a node started with `--http-port 0` got (`INFO server`).
fn http_port(client: &mut Client) -> u16 {
    let info = info_fields(&client.text(&["INFO", "server"]));
    info.get("shoal_http_port")
        .expect("INFO server names shoal_http_port")
        .parse()
        .unwrap()
}

/// The value of the sample `name{labels}` (exactly as written) in an exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_health_and_cluster_json_describe_the_node() {
    let server = Server::start_with(&["--http-port", "0"]);
    let mut c = server.client();
    let port = http_port(&mut c);

    assert_eq!(http_get(port, "/healthz"), (200, "ok\n".to_owned()));
    assert!(
        eventually(Duration::from_secs(20), || http_get(port, "/readyz").0
            == 200),
        "never ready: {:?}",
        http_get(port, "/readyz")
    );
    assert_eq!(http_get(port, "/nope").0, 404);

    for i in 0..10 {
        assert_eq!(c.cmd(&["SET", &format!("k{i}"), "v"]), ok());
    }
    assert_eq!(c.cmd(&["GET", "k1"]), bulk("v"));
    assert!(matches!(c.cmd(&["INCR", "k1"]), Frame::Error(_)));

    let (status, metrics) = http_get(port, "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
    assert_eq!(
        sample(&metrics, "shoal_commands_total{command=\"set\"}"),
        Some(10.0)
    );
    assert_eq!(
        sample(&metrics, "shoal_errors_total{kind=\"ERR\"}"),
        Some(1.0)
    );
    // SET x10, GET, INCR: 12 string commands in the histogram, every bucket line cumulative.
    assert_eq!(
        sample(
            &metrics,
            "shoal_command_latency_seconds_count{family=\"string\"}"
        ),
        Some(12.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "shoal_command_latency_seconds_bucket{le=\"+Inf\",family=\"string\"}"
        ),
        Some(12.0)
    );
    let keys: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("shoal_shard_keys{") && !l.contains("shard=\"meta\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(keys, 10.0, "{metrics}");

    // Memory per shard, next to its keys: the shards' sum is INFO memory's used_memory_dataset
    // (used_memory is the allocator's count), and writing a 10 kB value grows one shard's
    // figure by at least that.
    let shard_memory = || -> std::collections::BTreeMap<String, f64> {
        http_get(port, "/metrics")
            .1
            .lines()
            .filter(|l| l.starts_with("shoal_shard_memory_bytes{"))
            .filter(|l| !l.contains("shard=\"meta\""))
            .filter_map(|l| {
                let shard = l.split("shard=\"").nth(1)?.split('"').next()?.to_owned();
                Some((shard, l.rsplit(' ').next()?.parse::<f64>().ok()?))
            })
            .collect()
    };
    let used = |c: &mut Client| -> f64 {
        info_fields(&c.text(&["INFO", "memory"]))["used_memory_dataset"]
            .parse()
            .unwrap()
    };
    let before = shard_memory();
    assert_eq!(before.len(), 16, "{before:?}");
    assert_eq!(before.values().sum::<f64>(), used(&mut c));
    assert_eq!(c.cmd(&["SET", "big", &"x".repeat(10_000)]), ok());
    let after = shard_memory();
    assert_eq!(after.values().sum::<f64>(), used(&mut c));
    let grown: Vec<(&String, f64)> = after
        .iter()
        .map(|(shard, bytes)| (shard, bytes - before[shard]))
        .filter(|(_, delta)| *delta != 0.0)
        .collect();
    assert!(
        grown.len() == 1 && grown[0].1 >= 10_000.0,
        "one shard grows by the value: {grown:?}"
    );
    assert_eq!(c.cmd(&["DEL", "big"]), int(1));
    let shard = grown[0].0;
    let freed = shard_memory()[shard];
    assert!(
        freed < before[shard] + 1_000.0,
        "DEL gives the value's memory back (the slot's table may stay): {freed}"
    );
    let leading = metrics
        .lines()
        .filter(|l| l.starts_with("shoal_raft_is_leader{") && l.ends_with(" 1.0"))
        .count();
    assert_eq!(leading, 17, "one node leads group 0 and its 16 shards");
    assert!(sample(&metrics, "shoal_connected_clients").unwrap() >= 1.0);
    // Group 0's view of the nodes reaches the node's topology on its next refresh.
    let nodes_up = || sample(&http_get(port, "/metrics").1, "shoal_nodes{state=\"up\"}");
    assert!(
        eventually(Duration::from_secs(10), || nodes_up() == Some(1.0)),
        "{:?}",
        nodes_up()
    );

    let (status, json) = http_get(port, "/cluster.json");
    assert_eq!(status, 200);
    let view: serde_json::Value = serde_json::from_str(&json).expect("cluster.json is JSON");
    assert_eq!(view["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(view["shards"].as_array().unwrap().len(), 16);
    let covered: u64 = view["slot_ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[1].as_u64().unwrap() - r[0].as_u64().unwrap() + 1)
        .sum();
    assert_eq!(covered, 16384);

    let (status, page) = http_get(port, "/");
    assert_eq!(status, 200);
    assert!(page.contains("/cluster.json") && page.contains("<svg"));
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "the status page loads nothing from elsewhere"
    );
}

#[test]
fn slowlog_and_latency_histogram_find_slow_commands() {
    let server = Server::start();
    let mut c = server.client();
    assert_eq!(c.cmd(&["SLOWLOG", "LEN"]), int(0));
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]),
        ok()
    );
    assert_eq!(c.cmd(&["SET", "slow", "value"]), ok());
    let Frame::Array(entries) = c.cmd(&["SLOWLOG", "GET", "1"]) else {
        panic!("SLOWLOG GET is an array")
    };
    assert_eq!(entries.len(), 1);
    let Frame::Array(entry) = &entries[0] else {
        panic!("an entry is an array")
    };
    assert_eq!(entry.len(), 6, "{entry:?}");
    assert_eq!(
        entry[3],
        Frame::Array(vec![bulk("SET"), bulk("slow"), bulk("value")])
    );
    assert!(matches!(entry[4], Frame::Bulk(ref a) if a.starts_with(b"127.0.0.1:")));

    assert_eq!(c.cmd(&["CONFIG", "SET", "slowlog-max-len", "2"]), ok());
    for _ in 0..5 {
        c.cmd(&["PING"]);
    }
    assert_eq!(c.cmd(&["SLOWLOG", "LEN"]), int(2));
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "-1"]),
        ok()
    );
    assert_eq!(c.cmd(&["SLOWLOG", "RESET"]), ok());
    assert_eq!(c.cmd(&["SET", "fast", "value"]), ok());
    assert_eq!(c.cmd(&["SLOWLOG", "LEN"]), int(0));
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "slowlog-*"]),
        Frame::Array(vec![
            bulk("slowlog-log-slower-than"),
            bulk("-1"),
            bulk("slowlog-max-len"),
            bulk("2"),
        ])
    );

    // RESP2 flattens the maps: [name, [calls, n, histogram_usec, [bound, count, ...]]].
    let Frame::Array(h) = c.cmd(&["LATENCY", "HISTOGRAM", "set"]) else {
        panic!("LATENCY HISTOGRAM is a map")
    };
    assert_eq!(h[0], bulk("set"));
    let Frame::Array(body) = &h[1] else {
        panic!("per command: a map")
    };
    assert_eq!(body[0], bulk("calls"));
    assert_eq!(body[1], int(2));
    let Frame::Array(buckets) = &body[3] else {
        panic!("histogram_usec is a map")
    };
    assert_eq!(
        buckets.last(),
        Some(&int(2)),
        "the last bucket holds every call"
    );

    let latency = c.text(&["INFO", "latencystats"]);
    assert!(
        latency.contains("latency_percentiles_usec_set:p50="),
        "{latency}"
    );
    assert!(matches!(c.cmd(&["INCR", "slow"]), Frame::Error(_)));
    let errors = info_fields(&c.text(&["INFO", "errorstats"]));
    assert_eq!(
        errors.get("errorstat_ERR").map(String::as_str),
        Some("count=1")
    );
}

#[test]
fn config_rewrite_writes_changed_values_and_keeps_the_rest() {
    let dir = std::env::temp_dir().join(format!("shoal-rewrite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("shoal.conf");
    std::fs::write(
        &path,
        "# operator's note\nslowlog-max-len 5\nappendfsync always\n",
    )
    .unwrap();
    let server = Server::start_with(&["--config", path.to_str().unwrap()]);
    let mut c = server.client();
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "slowlog-max-len"]),
        Frame::Array(vec![bulk("slowlog-max-len"), bulk("5")])
    );
    assert_eq!(c.cmd(&["CONFIG", "SET", "slowlog-max-len", "7"]), ok());
    assert_eq!(c.cmd(&["CONFIG", "SET", "maxclients", "50"]), ok());
    assert_eq!(c.cmd(&["CONFIG", "SET", "loglevel", "warning"]), ok());
    assert!(matches!(
        c.cmd(&["CONFIG", "SET", "loglevel", "x=loud"]),
        Frame::Error(e) if e.starts_with("ERR CONFIG SET failed")
    ));
    assert_eq!(c.cmd(&["CONFIG", "REWRITE"]), ok());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("# operator's note\nslowlog-max-len 7\nappendfsync always\n"));
    assert!(text.contains("\nmaxclients 50\n"), "{text}");
    assert!(text.contains("\nloglevel warning\n"), "{text}");
    drop(server);

    // The rewritten file starts a node with those values.
    let server = Server::start_with(&["--config", path.to_str().unwrap()]);
    assert_eq!(
        server.client().cmd(&["CONFIG", "GET", "maxclients"]),
        Frame::Array(vec![bulk("maxclients"), bulk("50")])
    );
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();

    let plain = Server::start();
    assert_eq!(
        plain.client().cmd(&["CONFIG", "REWRITE"]),
        Frame::Error("ERR The server is running without a config file".into())
    );
}

/// Headless Chromium (`chromium`; scripts/test.sh installs it) with the flags every run needs.
fn chromium(args: &[String]) -> std::process::Output {
    let profile = std::env::temp_dir().join(format!("shoal-chromium-{}", std::process::id()));
    let out = Command::new("timeout")
        .arg("90")
        .arg(std::env::var("SHOAL_CHROMIUM").unwrap_or_else(|_| "chromium".into()))
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium (install it: apt-get install chromium; scripts/test.sh does)");
    let _ = std::fs::remove_dir_all(&profile);
    out
}

#[test]
fn status_page_draws_every_node_of_a_three_node_cluster() {
    let cluster = Cluster::start(
        3,
        &[
            "--http-port",
            "0",
            "--log-format",
            "json",
            "--log-level",
            "warn,shoal_server::cluster::events=info",
        ],
    );
    let mut ports = Vec::new();
    for node in &cluster.nodes {
        ports.push(http_port(&mut node.client()));
    }
    for &port in &ports {
        assert!(
            eventually(Duration::from_secs(30), || http_get(port, "/readyz").0
                == 200),
            "node on HTTP port {port} never ready: {:?}",
            http_get(port, "/readyz")
        );
    }
    let view: serde_json::Value =
        serde_json::from_str(&http_get(ports[0], "/cluster.json").1).unwrap();
    let ids: Vec<u64> = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{view}");
    let leaders = view["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["leader"].is_u64())
        .count();
    assert_eq!(leaders, 16, "every shard has a leader: {view}");

    // Every shard's first leader logged its election as one JSON line with its ids.
    let elected: std::collections::BTreeSet<u64> = cluster
        .nodes
        .iter()
        .flat_map(|n| {
            n.stderr()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["fields"]["message"] == "raft: election won; leading")
                .filter(|v| v["fields"]["node"].is_u64())
                .filter_map(|v| v["fields"]["shard"].as_u64())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        elected.len(),
        16,
        "shards with an election logged: {elected:?}"
    );

    let url = format!("http://127.0.0.1:{}/", ports[0]);
    // The page draws itself from /cluster.json after loading: give its script virtual time.
    // It redraws every 2 s from a fresh fetch, so a dump is retried (a few times) if it caught
    // the page between states.
    let drawn = |dom: &str| {
        ids.iter()
            .all(|id| dom.contains(&format!("data-node-id=\"{id}\"")))
            && dom.matches("class=\"shard\"").count() == 16
            && dom.matches("<path").count() >= 16
    };
    let mut dom = String::new();
    for _ in 0..3 {
        let out = chromium(&[
            "--virtual-time-budget=5000".into(),
            "--dump-dom".into(),
            url.clone(),
        ]);
        dom = String::from_utf8_lossy(&out.stdout).into_owned();
        if drawn(&dom) {
            break;
        }
    }
    assert!(
        drawn(&dom),
        "the page does not show nodes {ids:?}, 16 shard rows and the ring: {dom}"
    );

    let shot = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(&[
        "--virtual-time-budget=5000".into(),
        "--window-size=1280,800".into(),
        format!("--screenshot={}", shot.display()),
        url,
    ]);
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {} ({e}): {}",
            shot.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 800));
    println!("status page screenshot: {}", shot.display());
}

#[test]
fn monitor_streams_the_commands_other_clients_send() {
    let server = Server::start();
    let mut watcher = server.client();
    assert_eq!(watcher.cmd(&["MONITOR"]), ok());
    let mut other = server.client();
    assert_eq!(other.cmd(&["SET", "watched", "a b"]), ok());
    assert!(other.cmd(&["AUTH", "hunter2"]).is_error());
    let line = |f: Frame| match f {
        Frame::Simple(s) => s,
        other => panic!("a monitor line is a simple string: {other:?}"),
    };
    let set = line(watcher.read());
    assert!(set.contains(" [0 127.0.0.1:"), "{set}");
    assert!(set.ends_with("] \"SET\" \"watched\" \"a b\""), "{set}");
    let auth = line(watcher.read());
    assert!(auth.ends_with("\"AUTH\" \"(redacted)\""), "{auth}");
}

/// A snapshot built (every `--snapshot-entries`) and one installed (on a node that was down
/// while its log was compacted away) each log one JSON line with the node, group and shard ids,
/// under the events target that `--log-level warn,shoal_server::cluster::events=info` selects.
#[test]
fn snapshots_built_and_installed_log_one_line_with_node_and_group() {
    let mut cluster = Cluster::start(
        3,
        &[
            "--shards",
            "2",
            "--snapshot-entries",
            "200",
            "--log-format",
            "json",
            "--log-level",
            "warn,shoal_server::cluster::events=info",
        ],
    );
    let down = cluster.nodes[2].id;
    let had = cluster.nodes[2].raft();
    let status = cluster.nodes[2].terminate(Duration::from_secs(15));
    assert!(status.success(), "{status}");
    // Far more than the 1000 entries a log keeps behind its snapshot, in each shard.
    let pairs: Vec<(String, String)> = (0..5_000)
        .map(|i| (format!("snap:{i}"), format!("v{i}")))
        .collect();
    common::set_all(&mut cluster.nodes[0].client(), &pairs);
    // The stopped node catches up by snapshot only once the entries it lacks are gone from
    // its shards' leaders' logs (a leader keeps entries a replication stream still reads; a
    // follower may keep them longer, but it sends nothing).
    let purged_past_down = |cluster: &Cluster| {
        let live: Vec<_> = cluster.nodes[..2].iter().map(|n| n.raft()).collect();
        had.iter().all(|(shard, h)| {
            live.iter().any(|raft| {
                raft.get(shard)
                    .is_some_and(|r| r.role == "leader" && r.purged > h.last_log)
            })
        })
    };
    assert!(
        eventually(Duration::from_secs(60), || purged_past_down(&cluster)),
        "the live replicas kept the entries node {down} lacks: it had {had:?}; they have {:?} and {:?}",
        cluster.nodes[0].raft(),
        cluster.nodes[1].raft()
    );
    cluster.nodes[2].restart();

    let events = |node: &common::ClusterNode, message: &str| -> Vec<serde_json::Value> {
        node.stderr()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["message"] == message)
            .collect()
    };
    let has_ids = |v: &serde_json::Value, node: u64| {
        let f = &v["fields"];
        f["node"].as_u64() == Some(node)
            && f["group"].as_u64().is_some_and(|g| g >= 1)
            && f["shard"].as_u64() == f["group"].as_u64().map(|g| g - 1)
            && f["index"].as_u64().is_some_and(|i| i > 0)
    };
    let leader = &cluster.nodes[0];
    assert!(
        eventually(Duration::from_secs(30), || events(
            leader,
            "raft: snapshot built"
        )
        .iter()
        .any(
            |v| has_ids(v, leader.id) && v["fields"]["records"].as_u64() > Some(0)
        )),
        "no snapshot-built line with ids on node {}: {:?}",
        leader.id,
        events(leader, "raft: snapshot built")
    );
    let restarted = &cluster.nodes[2];
    let installed = || {
        events(restarted, "raft: snapshot installed")
            .into_iter()
            .filter(|v| has_ids(v, down) && v["fields"]["keys"].as_u64() > Some(0))
            .filter_map(|v| v["fields"]["shard"].as_u64())
            .collect::<std::collections::BTreeSet<u64>>()
    };
    assert!(
        eventually(Duration::from_secs(60), || installed().len() == 2),
        "node {down} logged installs for shards {:?}; its lines: {:?}",
        installed(),
        restarted
            .stderr()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
    );
    common::assert_all(&mut cluster.nodes[2].client(), &pairs, "the restarted node");
}
