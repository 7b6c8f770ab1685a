//! `soak DURATION [SEED]`: runs fault schedules until DURATION (e.g. `90s`, `10m`, `1h`) has
//! passed, then prints the totals and exits non-zero on any violation, lost acknowledged
//! write or anomaly. `scripts/soak.sh` builds and runs it.

use std::time::{Duration, Instant};

use shoal_cluster_tests::nemesis::ALL_FAULTS;
use shoal_cluster_tests::run::{base_seed, run_schedules, RunConfig};

fn parse_duration(s: &str) -> Option<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(duration) = args.first().and_then(|a| parse_duration(a)) else {
        eprintln!("usage: soak DURATION [SEED]   (DURATION like 90s, 10m, 1h)");
        std::process::exit(2);
    };
    let seed = match args.get(1) {
        Some(s) => s.parse().unwrap_or_else(|_| {
            eprintln!("SEED must be a number");
            std::process::exit(2)
        }),
        None => base_seed(),
    };
    let config = RunConfig::from_env(45, &ALL_FAULTS);
    eprintln!("soak: {duration:?} from base seed {seed}");
    let until = Instant::now() + duration;
    let summary = run_schedules(seed, None, Some(until), &config);
    for failure in &summary.failures {
        println!("{failure}");
    }
    println!("{}", summary.lines());
    if !summary.clean() {
        std::process::exit(1);
    }
}
