//! A rolling restart under load (issue 11): every node of a 3-node cluster is stopped with
//! SIGTERM and started again in turn, waiting for `/readyz` before the next, while client tasks
//! write and read their own keys continuously through shoal-client.
//!
//! The application sees no error at all, not even a write with an unknown outcome: a stopping
//! node hands its leaderships over, answers every request it has read (writes appended before
//! the hand-over when they apply, later ones with `MOVED`), and closes a connection only once
//! its client has gone quiet (see `server/src/drain.rs`); shoal-client retries `MOVED`,
//! `TRYAGAIN`, `CLUSTERDOWN` and connections lost before a request was sent (those are counted
//! and printed). Every acknowledged write is readable afterwards with its last acknowledged
//! value, and the whole roll is bounded in time.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{eventually, runtime, Cluster};
use shoal_client::Client;

const FLAGS: &[&str] = &[
    "--shards",
    "6",
    "--replicas",
    "3",
    "--appendfsync",
    "everysec",
    "--http-port",
    "0",
];
/// Tasks writing and reading at once, each on its own keys.
const WORKERS: usize = 8;
/// Keys per task: each is overwritten many times, so a stale read shows.
const KEYS_PER_WORKER: usize = 50;
/// Load before the first stop, between a node's readiness and the next stop, and after the last.
const SETTLE: Duration = Duration::from_secs(2);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The whole roll (three stops, starts and readiness waits), on a loaded 2-core machine.
const ROLL_BOUND: Duration = Duration::from_secs(150);

#[derive(Default)]
struct Outcome {
    /// key → the last value the client acknowledged writing.
    acked: BTreeMap<String, String>,
    writes: u64,
    reads: u64,
    /// Anything else shoal-client surfaced to the application (none is allowed).
    errors: Vec<String>,
    /// Writes whose outcome is unknown (sent on a connection the stopping node closed).
    unknown: Vec<String>,
    slowest: Duration,
}

/// Overwrites the task's keys round-robin; after every write, reads back another of its keys
/// and checks it holds the last value acknowledged for it.
async fn worker(client: Client, id: usize, stop: Arc<AtomicBool>) -> Outcome {
    let mut out = Outcome::default();
    let key = |k: usize| format!("roll:{id}:{k}");
    let mut seq = 0usize;
    // Every key is written at least once, however slow the machine (see the last assertion).
    while !stop.load(Ordering::Relaxed) || seq < KEYS_PER_WORKER {
        let k = seq % KEYS_PER_WORKER;
        let value = format!("v{seq}");
        let started = Instant::now();
        match client.set(key(k), &value).await {
            Ok(()) => {
                out.acked.insert(key(k), value);
                out.writes += 1;
            }
            Err(e) => {
                let what = format!("SET {}: {e}", key(k));
                if e.is_outcome_unknown() {
                    out.unknown.push(what);
                } else {
                    out.errors.push(what);
                }
                // Its value is unknown now: stop checking it.
                out.acked.remove(&key(k));
            }
        }
        let probe = (seq * 7 + 3) % KEYS_PER_WORKER;
        match client.get(key(probe)).await {
            Ok(got) => {
                out.reads += 1;
                let want = out.acked.get(&key(probe)).map(|v| Bytes::from(v.clone()));
                if want.is_some() && got != want {
                    out.errors.push(format!(
                        "GET {} returned {got:?}, the last acknowledged write was {want:?}",
                        key(probe)
                    ));
                }
            }
            Err(e) => out.errors.push(format!("GET {}: {e}", key(probe))),
        }
        out.slowest = out.slowest.max(started.elapsed());
        seq += 1;
    }
    out
}

#[test]
fn rolling_restart_under_load_surfaces_no_client_error_and_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3, FLAGS);
    assert!(
        eventually(READY_TIMEOUT, || cluster.nodes.iter().all(|n| n.is_ready())),
        "the new cluster never became ready"
    );
    let rt = runtime();
    let client = rt
        .block_on(
            Client::builder(cluster.addrs())
                .retry_deadline(Duration::from_secs(10))
                .response_timeout(Duration::from_secs(3))
                .build(),
        )
        .expect("connect");
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|id| rt.spawn(worker(client.clone(), id, stop.clone())))
        .collect();

    std::thread::sleep(SETTLE);
    let roll = Instant::now();
    for i in 0..cluster.nodes.len() {
        let t = Instant::now();
        let status = cluster.nodes[i].terminate(STOP_TIMEOUT);
        assert!(
            status.success(),
            "node {i} exited with {status} after SIGTERM"
        );
        let stopped = t.elapsed();
        cluster.nodes[i].restart();
        let ready = eventually(READY_TIMEOUT, || cluster.nodes.iter().all(|n| n.is_ready()));
        assert!(
            ready,
            "not every node was ready {READY_TIMEOUT:?} after node {i} restarted: {:?}",
            cluster
                .nodes
                .iter()
                .map(|n| n.http_get("/readyz"))
                .collect::<Vec<_>>()
        );
        eprintln!(
            "node {} ({}): stopped in {stopped:?}, restarted and all ready after {:?}",
            i + 1,
            cluster.nodes[i].addr,
            t.elapsed()
        );
        std::thread::sleep(SETTLE);
    }
    let rolled = roll.elapsed();
    stop.store(true, Ordering::Relaxed);

    let mut total = Outcome::default();
    for w in workers {
        let part = rt.block_on(w).expect("worker task");
        total.acked.extend(part.acked);
        total.writes += part.writes;
        total.reads += part.reads;
        total.errors.extend(part.errors);
        total.unknown.extend(part.unknown);
        total.slowest = total.slowest.max(part.slowest);
    }
    let stats = client.stats();
    eprintln!(
        "rolling restart of 3 nodes in {rolled:?}: {} writes and {} reads acknowledged, {} \
         errors and {} unknown write outcomes surfaced, slowest write+read {:?}; client \
         retries: {stats:?}",
        total.writes,
        total.reads,
        total.errors.len(),
        total.unknown.len(),
        total.slowest
    );
    for what in total.unknown.iter().chain(&total.errors).take(20) {
        eprintln!("  surfaced: {what}");
    }
    assert!(
        total.errors.is_empty(),
        "{} errors surfaced to the application, first: {:?}",
        total.errors.len(),
        &total.errors[..total.errors.len().min(10)]
    );
    // A graceful stop leaves no write in doubt (before the drain: up to one per task per
    // stopped node, written on a connection the stopping node then closed).
    assert!(
        total.unknown.is_empty(),
        "{} writes with an unknown outcome: {:?}",
        total.unknown.len(),
        total.unknown
    );
    assert!(rolled < ROLL_BOUND, "the roll took {rolled:?}");
    assert!(
        total.writes > 300,
        "too little load: {} writes",
        total.writes
    );

    // Every acknowledged write holds its last acknowledged value, read through a new client.
    rt.block_on(async {
        let fresh = Client::connect(cluster.addrs()).await.expect("connect");
        let keys: Vec<&String> = total.acked.keys().collect();
        let values = fresh.mget(keys).await.expect("read back");
        for ((key, want), got) in total.acked.iter().zip(values) {
            assert_eq!(got, Some(Bytes::from(want.clone())), "{key}");
        }
    });
    assert_eq!(total.acked.len(), WORKERS * KEYS_PER_WORKER);
}
