//! shoal-load: a load generator built on `shoal-client`.
//!
//! N tasks share one client (so one multiplexed connection per node, unless `--pool-size`
//! says more) and run `--requests` commands in total: GETs with probability `--get-ratio`,
//! SETs otherwise, on keys `key:<12 digits>` drawn uniformly or zipfian-distributed from
//! `--keyspace` keys, with `--value-size`-byte values. With `--pipeline P` each task sends P
//! commands at a time and waits for all of them, as `redis-benchmark -P` does; a command's
//! latency is then its batch's.
//!
//! It prints the throughput and the latency percentiles, and last a line
//! `RESULT ops_per_sec=... p50_ms=... p95_ms=... p99_ms=... p999_ms=... errors=...` for
//! scripts (scripts/bench-client.sh). Exit status 1 if any command failed.
//!
//! ```text
//! cargo run --release -p shoal-benches --bin shoal-load -- \
//!     --seeds 127.0.0.1:7001 --tasks 50 --requests 200000 --get-ratio 0.8 --distribution zipfian
//! ```

use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shoal_client::{key_slot, Client, Cmd};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Distribution {
    Uniform,
    Zipfian,
}

#[derive(Parser, Debug)]
#[command(about = "Load generator for shoal built on shoal-client")]
struct Args {
    /// Seed nodes, comma-separated host:port.
    #[arg(long, default_value = "127.0.0.1:7001")]
    seeds: String,
    /// Concurrent tasks (like redis-benchmark -c).
    #[arg(short = 'c', long, default_value_t = 50)]
    tasks: usize,
    /// Commands in total (like redis-benchmark -n).
    #[arg(short = 'n', long, default_value_t = 200_000)]
    requests: u64,
    /// Commands each task sends at a time (like redis-benchmark -P).
    #[arg(short = 'P', long, default_value_t = 1)]
    pipeline: usize,
    /// Fraction of GETs (the rest are SETs): 0 = only SET, 1 = only GET.
    #[arg(long, default_value_t = 0.5)]
    get_ratio: f64,
    /// Distinct keys.
    #[arg(long, default_value_t = 100_000)]
    keyspace: u64,
    /// How keys are drawn.
    #[arg(long, value_enum, default_value_t = Distribution::Uniform)]
    distribution: Distribution,
    /// The zipfian exponent (larger: hotter hot keys).
    #[arg(long, default_value_t = 0.99)]
    zipf_exponent: f64,
    /// Value size in bytes (like redis-benchmark -d).
    #[arg(short = 'd', long, default_value_t = 100)]
    value_size: usize,
    /// Connections per node.
    #[arg(long, default_value_t = 1)]
    pool_size: usize,
    /// Keys as `redis-benchmark --cluster` makes them: one hash tag per node (`key:{tag}:...`),
    /// each task using one node's tag, so every command of a task (and every pipeline) goes to
    /// one slot of one node. Without it keys spread over all slots.
    #[arg(long)]
    tag_per_node: bool,
    /// Runtime worker threads (1: a single-threaded runtime, as redis-benchmark is).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// Draws key indexes: uniform, or zipfian through a precomputed cumulative distribution.
enum KeyPicker {
    Uniform(u64),
    Zipfian(Vec<f64>),
}

impl KeyPicker {
    fn new(args: &Args) -> KeyPicker {
        let n = args.keyspace.max(1);
        match args.distribution {
            Distribution::Uniform => KeyPicker::Uniform(n),
            Distribution::Zipfian => {
                let mut cdf = Vec::with_capacity(n as usize);
                let mut sum = 0.0;
                for rank in 1..=n {
                    sum += 1.0 / (rank as f64).powf(args.zipf_exponent);
                    cdf.push(sum);
                }
                for c in &mut cdf {
                    *c /= sum;
                }
                KeyPicker::Zipfian(cdf)
            }
        }
    }

    fn pick(&self, rng: &mut SmallRng) -> u64 {
        match self {
            KeyPicker::Uniform(n) => rng.gen_range(0..*n),
            KeyPicker::Zipfian(cdf) => {
                let u: f64 = rng.gen();
                cdf.partition_point(|&c| c < u).min(cdf.len() - 1) as u64
            }
        }
    }
}

fn key(tag: Option<&str>, i: u64) -> String {
    match tag {
        Some(tag) => format!("key:{{{tag}}}:{i:012}"),
        None => format!("key:{i:012}"),
    }
}

/// One hash tag per node leading some slot: the first `t<n>` whose slot that node leads.
fn tags_per_node(client: &Client) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    (0..100_000)
        .map(|n| format!("t{n}"))
        .filter(|tag| {
            client
                .leader_of_slot(key_slot(tag.as_bytes()))
                .is_some_and(|leader| seen.insert(leader))
        })
        .take(64)
        .collect()
}

struct TaskResult {
    latency_us: Histogram<u64>,
    done: u64,
    errors: u64,
    first_error: Option<String>,
}

async fn run_task(
    client: Client,
    picker: std::sync::Arc<KeyPicker>,
    quota: u64,
    args: std::sync::Arc<Args>,
    tag: Option<String>,
    seed: u64,
) -> TaskResult {
    let tag = tag.as_deref();
    let mut rng = SmallRng::seed_from_u64(seed);
    let value = bytes::Bytes::from(vec![b'x'; args.value_size]);
    let mut result = TaskResult {
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
        done: 0,
        errors: 0,
        first_error: None,
    };
    let note_error = |result: &mut TaskResult, e: String| {
        result.errors += 1;
        result.first_error.get_or_insert(e);
    };
    while result.done < quota {
        let batch = (args.pipeline as u64).min(quota - result.done);
        let started = Instant::now();
        if batch == 1 {
            let k = key(tag, picker.pick(&mut rng));
            let outcome = if rng.gen_bool(args.get_ratio.clamp(0.0, 1.0)) {
                client.get(k).await.map(|_| ())
            } else {
                client.set(k, &value).await
            };
            if let Err(e) = outcome {
                note_error(&mut result, e.to_string());
            }
        } else {
            let mut pipe = client.pipeline();
            for _ in 0..batch {
                let k = key(tag, picker.pick(&mut rng));
                if rng.gen_bool(args.get_ratio.clamp(0.0, 1.0)) {
                    pipe.get(k);
                } else {
                    pipe.add(Cmd::new("SET").arg(k).arg(&value));
                }
            }
            for r in pipe.execute().await {
                if let Err(e) = r {
                    note_error(&mut result, e.to_string());
                }
            }
        }
        let us = started.elapsed().as_micros().max(1) as u64;
        let _ = result.latency_us.record_n(us, batch);
        result.done += batch;
    }
    result
}

fn main() {
    let args = Args::parse();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    std::process::exit(runtime.block_on(run(args)));
}

async fn run(args: Args) -> i32 {
    let client = match Client::builder(args.seeds.split(','))
        .pool_size(args.pool_size)
        .build()
        .await
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shoal-load: cannot connect to {}: {e}", args.seeds);
            return 2;
        }
    };
    let picker = std::sync::Arc::new(KeyPicker::new(&args));
    let tags = if args.tag_per_node {
        tags_per_node(&client)
    } else {
        Vec::new()
    };
    let tasks = args.tasks.max(1) as u64;
    let args = std::sync::Arc::new(args);
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let quota = args.requests / tasks + u64::from(t < args.requests % tasks);
            tokio::spawn(run_task(
                client.clone(),
                picker.clone(),
                quota,
                args.clone(),
                (!tags.is_empty()).then(|| tags[t as usize % tags.len()].clone()),
                0x5eed ^ t,
            ))
        })
        .collect();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let (mut done, mut errors, mut first_error) = (0u64, 0u64, None);
    for h in handles {
        let Ok(r) = h.await else {
            eprintln!("shoal-load: a task panicked");
            return 2;
        };
        let _ = latency.add(&r.latency_us);
        done += r.done;
        errors += r.errors;
        first_error = first_error.or(r.first_error);
    }
    let elapsed = started.elapsed().max(Duration::from_micros(1));
    let ops = done as f64 / elapsed.as_secs_f64();
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "shoal-load: {done} commands ({:.0}% GET, {:?} keys over {}, {} B values) by {} tasks, pipeline {}, in {:.2} s",
        args.get_ratio * 100.0,
        args.distribution,
        args.keyspace,
        args.value_size,
        args.tasks,
        args.pipeline,
        elapsed.as_secs_f64()
    );
    if !tags.is_empty() {
        println!("keys: one hash tag per node: {}", tags.join(" "));
    }
    println!("throughput: {ops:.0} ops/s");
    println!(
        "latency ms: p50 {:.3}  p95 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        ms(0.50),
        ms(0.95),
        ms(0.99),
        ms(0.999),
        latency.max() as f64 / 1000.0
    );
    let s = client.stats();
    println!(
        "client: {} retries, {} MOVED, {} topology refreshes, {} connects, {errors} errors",
        s.retries, s.moved_redirects, s.topology_refreshes, s.connects
    );
    if let Some(e) = &first_error {
        println!("first error: {e}");
    }
    println!(
        "RESULT ops_per_sec={ops:.2} p50_ms={:.3} p95_ms={:.3} p99_ms={:.3} p999_ms={:.3} errors={errors}",
        ms(0.50),
        ms(0.95),
        ms(0.99),
        ms(0.999)
    );
    i32::from(errors > 0)
}
