//! Keeps writing while you kill a node, counting what the client had to do.
//!
//! ```text
//! scripts/cluster.sh up
//! cargo run -p shoal-client --example failover            # runs 20 s by default
//! scripts/cluster.sh kill 2        # in another terminal, while it runs
//! scripts/cluster.sh restart 2     # and later bring it back
//! ```
//! Every second it prints the writes acknowledged, the errors (split into "outcome unknown"
//! and others), the retries and redirects so far, and each node's circuit breaker.
//! `FAILOVER_SECONDS` sets how long it runs; `SHOAL_SEEDS` where it connects.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_client::Client;

#[derive(Default)]
struct Counts {
    acked: AtomicU64,
    unknown: AtomicU64,
    failed: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<(), shoal_client::Error> {
    let seeds = std::env::var("SHOAL_SEEDS")
        .unwrap_or_else(|_| "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003".to_owned());
    let seconds: u64 = std::env::var("FAILOVER_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let client = Client::builder(seeds.split(','))
        .retry_deadline(Duration::from_secs(5))
        .build()
        .await?;

    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..16 {
        let (client, counts, stop) = (client.clone(), counts.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("failover:{writer}:{}", seq % 1000);
                match client.set(&key, seq).await {
                    Ok(()) => counts.acked.fetch_add(1, Ordering::Relaxed),
                    // Maybe applied, maybe not: never counted as a plain failure.
                    Err(e) if e.is_outcome_unknown() => {
                        counts.unknown.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => {
                        eprintln!("{key}: {e}");
                        counts.failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                seq += 1;
            }
        }));
    }

    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = client.stats();
        let breakers: Vec<String> = client
            .nodes()
            .iter()
            .map(|n| format!("{}={:?}", n.addr, n.breaker))
            .collect();
        println!(
            "{:>3}s acked {:>7} unknown {:>3} failed {:>3} | retries {} moved {} refreshes {} breaker-opens {} | {}",
            started.elapsed().as_secs(),
            counts.acked.load(Ordering::Relaxed),
            counts.unknown.load(Ordering::Relaxed),
            counts.failed.load(Ordering::Relaxed),
            s.retries,
            s.moved_redirects,
            s.topology_refreshes,
            s.breaker_opens,
            breakers.join(" ")
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    Ok(())
}
