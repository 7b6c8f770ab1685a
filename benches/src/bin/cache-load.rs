//! cache-load: a cache-aside workload against one Redis-protocol server (shoal or redis-server),
//! for scripts/bench-eviction.sh.
//!
//! `--threads` connections each run `--requests / threads` lookups: a GET of a key drawn
//! zipfian from `--keyspace` keys (exponent `--zipf-exponent`), and on a miss a SET of a
//! `--value-size`-byte value, as an application filling its cache does. Commands go in
//! pipelined batches of `--pipeline` GETs (then the batch's SETs). Every thread uses the same
//! seed sequence, so two servers see the same key sequence.
//!
//! Last line, for scripts: `RESULT hit_ratio=... ops_per_sec=... gets=... hits=... errors=...`
//! (ops counts GETs and SETs). A `--warmup` run of the same workload first fills the cache
//! and is not counted.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use bytes::BytesMut;
use clap::Parser;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shoal_protocol::{decode_frame, encode_command, Frame, Limits};

#[derive(Parser, Debug, Clone)]
#[command(about = "Cache-aside zipfian workload: GET, SET on miss; prints the hit ratio")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:6379")]
    addr: String,
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Lookups (GETs) in total, after the warm-up.
    #[arg(long, default_value_t = 400_000)]
    requests: usize,
    /// Lookups in total before measuring (not counted).
    #[arg(long, default_value_t = 200_000)]
    warmup: usize,
    #[arg(long, default_value_t = 100_000)]
    keyspace: usize,
    #[arg(long, default_value_t = 0.99)]
    zipf_exponent: f64,
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    #[arg(long, default_value_t = 32)]
    pipeline: usize,
}

/// Cumulative zipfian distribution over ranks 1..=n.
fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let mut cdf = Vec::with_capacity(n);
    let mut sum = 0.0;
    for rank in 1..=n {
        sum += 1.0 / (rank as f64).powf(s);
        cdf.push(sum);
    }
    cdf.iter_mut().for_each(|c| *c /= sum);
    cdf
}

struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    fn connect(addr: &str) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: BytesMut::new(),
        })
    }

    fn send(&mut self, commands: &[Vec<&[u8]>]) -> std::io::Result<Vec<Frame>> {
        let mut out = BytesMut::new();
        for c in commands {
            encode_command(c, &mut out);
        }
        self.stream.write_all(&out)?;
        let mut replies = Vec::with_capacity(commands.len());
        let limits = Limits::default();
        while replies.len() < commands.len() {
            match decode_frame(&mut self.buf, &limits) {
                Ok(Some(frame)) => replies.push(frame),
                Ok(None) => {
                    let mut chunk = [0u8; 64 * 1024];
                    let n = self.stream.read(&mut chunk)?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                Err(e) => return Err(std::io::Error::other(format!("{e:?}"))),
            }
        }
        Ok(replies)
    }
}

#[derive(Default)]
struct Counts {
    gets: u64,
    hits: u64,
    sets: u64,
    errors: u64,
}

fn run(args: &Args, cdf: &[f64], lookups: usize, seed: u64) -> std::io::Result<Counts> {
    let mut conn = Conn::connect(&args.addr)?;
    let mut rng = SmallRng::seed_from_u64(seed);
    let value = vec![b'v'; args.value_size];
    let mut counts = Counts::default();
    let mut done = 0;
    while done < lookups {
        let n = args.pipeline.min(lookups - done);
        done += n;
        let keys: Vec<Vec<u8>> = (0..n)
            .map(|_| {
                let u: f64 = rng.gen();
                let rank = cdf.partition_point(|c| *c < u);
                format!("key:{rank:012}").into_bytes()
            })
            .collect();
        let gets: Vec<Vec<&[u8]>> = keys.iter().map(|k| vec![&b"GET"[..], k]).collect();
        let replies = conn.send(&gets)?;
        let mut sets: Vec<Vec<&[u8]>> = Vec::new();
        for (key, reply) in keys.iter().zip(&replies) {
            counts.gets += 1;
            match reply {
                Frame::Null => sets.push(vec![&b"SET"[..], key, &value]),
                Frame::Error(_) => counts.errors += 1,
                _ => counts.hits += 1,
            }
        }
        if !sets.is_empty() {
            for reply in conn.send(&sets)? {
                counts.sets += 1;
                if matches!(reply, Frame::Error(_)) {
                    counts.errors += 1;
                }
            }
        }
    }
    Ok(counts)
}

fn run_all(args: &Args, cdf: &[f64], total: usize, seed: u64) -> (Counts, f64) {
    let started = Instant::now();
    let per_thread = total / args.threads.max(1);
    let results: Vec<std::io::Result<Counts>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.threads)
            .map(|t| s.spawn(move || run(args, cdf, per_thread, seed + t as u64)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker thread"))
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut total = Counts::default();
    for r in results {
        let c = r.unwrap_or_else(|e| {
            eprintln!("cache-load: {e}");
            std::process::exit(2)
        });
        total.gets += c.gets;
        total.hits += c.hits;
        total.sets += c.sets;
        total.errors += c.errors;
    }
    (total, elapsed)
}

fn main() {
    let args = Args::parse();
    let cdf = zipf_cdf(args.keyspace, args.zipf_exponent);
    if args.warmup > 0 {
        run_all(&args, &cdf, args.warmup, 1000);
    }
    let (c, secs) = run_all(&args, &cdf, args.requests, 1);
    let ops = (c.gets + c.sets) as f64 / secs;
    let hit_ratio = c.hits as f64 / c.gets.max(1) as f64;
    println!(
        "{} lookups in {secs:.2} s: hit ratio {hit_ratio:.4}, {ops:.0} ops/s",
        c.gets
    );
    println!(
        "RESULT hit_ratio={hit_ratio:.4} ops_per_sec={ops:.0} gets={} hits={} errors={}",
        c.gets, c.hits, c.errors
    );
    if c.errors > 0 {
        std::process::exit(1);
    }
}
