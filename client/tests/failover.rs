//! Killing the node that leads a shard while a write loop runs, then restarting it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{eventually, runtime, Cluster};
use shoal_client::{key_slot, BreakerState, Client};

const FLAGS: &[&str] = &["--shards", "8", "--replicas", "3", "--appendfsync", "no"];
const WRITERS: usize = 8;
const RETRY_DEADLINE: Duration = Duration::from_secs(10);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Default)]
struct WriteLog {
    /// Writes the client said OK to.
    acked: Vec<(String, String)>,
    /// Writes that failed with an unknown outcome: the key holds the value or nothing.
    unknown: Vec<(String, String)>,
    /// Any other failure (there should be none: the deadline covers an election).
    failed: Vec<String>,
    slowest: Duration,
}

async fn write_loop(client: Client, writer: usize, stop: Arc<AtomicBool>) -> WriteLog {
    let mut log = WriteLog::default();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("fo:{writer}:{seq}");
        let value = format!("value-{seq}");
        let started = Instant::now();
        match client.set(&key, &value).await {
            Ok(()) => log.acked.push((key, value)),
            Err(e) if e.is_outcome_unknown() => log.unknown.push((key, value)),
            Err(e) => log.failed.push(format!("{key}: {e}")),
        }
        log.slowest = log.slowest.max(started.elapsed());
        seq += 1;
    }
    log
}

fn breaker_of(client: &Client, addr: &str) -> Option<BreakerState> {
    client
        .nodes()
        .into_iter()
        .find(|n| n.addr == addr)
        .map(|n| n.breaker)
}

#[test]
fn killing_a_shard_leader_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3, FLAGS);
    let rt = runtime();
    let client = rt
        .block_on(
            Client::builder(cluster.addrs())
                .retry_deadline(RETRY_DEADLINE)
                .response_timeout(RESPONSE_TIMEOUT)
                .circuit_breaker(3, Duration::from_millis(300))
                .build(),
        )
        .expect("connect");
    let victim = cluster.leader_of_slot(key_slot(b"fo:0:0"));
    let victim_addr = cluster.nodes[victim].addr.to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| rt.spawn(write_loop(client.clone(), w, stop.clone())))
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    cluster.nodes[victim].kill();
    let killed = Instant::now();

    assert!(
        eventually(Duration::from_secs(10), || {
            matches!(
                breaker_of(&client, &victim_addr),
                Some(BreakerState::Open | BreakerState::HalfOpen)
            )
        }),
        "the dead node's breaker never opened: {:?}",
        client.nodes()
    );
    // Keep writing through the election and a while after it.
    std::thread::sleep(Duration::from_secs(4).saturating_sub(killed.elapsed()));
    stop.store(true, Ordering::Relaxed);
    let mut log = WriteLog::default();
    for w in writers {
        let part = rt.block_on(w).expect("writer task");
        log.acked.extend(part.acked);
        log.unknown.extend(part.unknown);
        log.failed.extend(part.failed);
        log.slowest = log.slowest.max(part.slowest);
    }
    let stats = client.stats();
    eprintln!(
        "writes: {} acked, {} unknown outcome, {} failed; slowest {:?}; {:?}",
        log.acked.len(),
        log.unknown.len(),
        log.failed.len(),
        log.slowest,
        stats
    );
    assert!(log.failed.is_empty(), "failed writes: {:?}", log.failed);
    // Only writes in flight on the killed node's connections can be ambiguous.
    assert!(
        log.unknown.len() <= 4 * WRITERS,
        "{} unknown outcomes",
        log.unknown.len()
    );
    assert!(
        log.slowest <= RETRY_DEADLINE + RESPONSE_TIMEOUT + Duration::from_secs(2),
        "a write took {:?}, past the retry deadline",
        log.slowest
    );
    assert!(log.acked.len() > 100, "too few writes: {}", log.acked.len());
    assert!(stats.breaker_opens >= 1);
    assert!(stats.retries + stats.moved_redirects > 0, "{stats:?}");

    // Restart: the background probe closes the breaker without any request going there.
    cluster.nodes[victim].restart();
    cluster.wait_ok(Duration::from_secs(60));
    assert!(
        eventually(Duration::from_secs(30), || {
            breaker_of(&client, &victim_addr) == Some(BreakerState::Closed)
        }),
        "the breaker did not close after the restart: {:?}",
        client.nodes()
    );

    // No acknowledged write is lost; an unknown one holds its value or nothing.
    rt.block_on(async {
        let keys: Vec<&String> = log.acked.iter().map(|(k, _)| k).collect();
        let values = client.mget(keys).await.expect("read back acked writes");
        for ((key, want), got) in log.acked.iter().zip(values) {
            assert_eq!(
                got,
                Some(Bytes::from(want.clone())),
                "acked write {key} lost"
            );
        }
        for (key, value) in &log.unknown {
            let got = client.get(key).await.expect("read an unknown write");
            assert!(
                got.is_none() || got == Some(Bytes::from(value.clone())),
                "{key} holds {got:?}"
            );
        }
    });
}

/// Pipelines through a leader kill: each command's result is kept apart, acknowledged writes
/// survive, and only writes in flight on the dead node's connection end with an unknown
/// outcome.
#[test]
fn pipelines_ride_out_a_leader_kill() {
    let mut cluster = Cluster::start(3, FLAGS);
    let rt = runtime();
    let client = rt
        .block_on(
            Client::builder(cluster.addrs())
                .retry_deadline(RETRY_DEADLINE)
                .response_timeout(RESPONSE_TIMEOUT)
                .build(),
        )
        .expect("connect");
    let victim = cluster.leader_of_slot(key_slot(b"pl:0:0"));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, stop) = (client.clone(), stop.clone());
            rt.spawn(async move {
                let mut log = WriteLog::default();
                let mut batch = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let keys: Vec<(String, String)> = (0..50)
                        .map(|i| (format!("pl:{w}:{batch}:{i}"), format!("v{batch}.{i}")))
                        .collect();
                    let mut pipe = client.pipeline();
                    for (k, v) in &keys {
                        pipe.set(k, v);
                    }
                    let started = Instant::now();
                    for (kv, result) in keys.into_iter().zip(pipe.execute().await) {
                        match result {
                            Ok(_) => log.acked.push(kv),
                            Err(e) if e.is_outcome_unknown() => log.unknown.push(kv),
                            Err(e) => log.failed.push(format!("{}: {e}", kv.0)),
                        }
                    }
                    log.slowest = log.slowest.max(started.elapsed());
                    batch += 1;
                }
                log
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    cluster.nodes[victim].kill();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let mut log = WriteLog::default();
    for w in writers {
        let part = rt.block_on(w).expect("writer task");
        log.acked.extend(part.acked);
        log.unknown.extend(part.unknown);
        log.failed.extend(part.failed);
        log.slowest = log.slowest.max(part.slowest);
    }
    eprintln!(
        "pipelined writes: {} acked, {} unknown, {} failed; slowest pipeline {:?}; {:?}",
        log.acked.len(),
        log.unknown.len(),
        log.failed.len(),
        log.slowest,
        client.stats()
    );
    assert!(log.failed.is_empty(), "failed writes: {:?}", log.failed);
    // At most the pipelines in flight when the node died (4 writers x 50 commands).
    assert!(log.unknown.len() <= 4 * 50, "{} unknown", log.unknown.len());
    assert!(
        log.acked.len() > 1000,
        "too few writes: {}",
        log.acked.len()
    );
    rt.block_on(async {
        let keys: Vec<&String> = log.acked.iter().map(|(k, _)| k).collect();
        let values = client.mget(keys).await.expect("read back");
        for ((key, want), got) in log.acked.iter().zip(values) {
            assert_eq!(
                got,
                Some(Bytes::from(want.clone())),
                "acked write {key} lost"
            );
        }
    });
}
