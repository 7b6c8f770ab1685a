//! One schedule end to end (cluster, workload, nemesis, heal, final reads, check), and many
//! schedules in a row: the code path of both the CI test and `scripts/soak.sh`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::checker::{self, Verdict};
use crate::harness::cluster::{Cluster, ClusterConfig};
use crate::history::{Entry, History};
use crate::nemesis::{self, Fault, Nemesis};
use crate::workload::{self, WorkloadConfig};

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub cluster: ClusterConfig,
    pub workload: WorkloadConfig,
    /// Fault time per schedule.
    pub fault_time: Duration,
    /// The faults schedules draw from.
    pub faults: Vec<Fault>,
    pub checker_budget: usize,
}

fn env_num<T: std::str::FromStr>(name: &str) -> Option<T> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid number")),
    )
}

impl RunConfig {
    /// Defaults, overridden by `SHOAL_FAULT_SECONDS` (fault time per schedule),
    /// `SHOAL_FAULT_FAULTS` (comma-separated fault names, or `all`), `SHOAL_FAULT_NODES`,
    /// `SHOAL_FAULT_SHARDS`, `SHOAL_FAULT_CLIENTS`, `SHOAL_FAULT_SNAPSHOT_ENTRIES`,
    /// `SHOAL_FAULT_SPARE_NODES` (namespaces for `add-node`, default 1).
    pub fn from_env(default_seconds: u64, default_faults: &[Fault]) -> RunConfig {
        let mut cluster = ClusterConfig::default();
        let mut workload = WorkloadConfig::default();
        if let Some(n) = env_num("SHOAL_FAULT_NODES") {
            cluster.nodes = n;
        }
        if let Some(n) = env_num("SHOAL_FAULT_SHARDS") {
            cluster.shards = n;
        }
        if let Some(n) = env_num("SHOAL_FAULT_SPARE_NODES") {
            cluster.spare_nodes = n;
        }
        if let Some(n) = env_num("SHOAL_FAULT_SNAPSHOT_ENTRIES") {
            cluster.snapshot_entries = n;
        }
        if let Some(n) = env_num("SHOAL_FAULT_CLIENTS") {
            workload.clients = n;
        }
        assert!(cluster.nodes >= 3, "SHOAL_FAULT_NODES must be at least 3");
        RunConfig {
            cluster,
            workload,
            fault_time: Duration::from_secs(
                env_num("SHOAL_FAULT_SECONDS").unwrap_or(default_seconds),
            ),
            faults: match std::env::var("SHOAL_FAULT_FAULTS") {
                Ok(list) => {
                    Fault::parse_list(&list).unwrap_or_else(|e| panic!("SHOAL_FAULT_FAULTS: {e}"))
                }
                Err(_) => default_faults.to_vec(),
            },
            checker_budget: checker::DEFAULT_BUDGET,
        }
    }
}

/// The base seed: `SHOAL_FAULT_SEED`, else from the clock.
pub fn base_seed() -> u64 {
    env_num("SHOAL_FAULT_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64
            % 1_000_000_000
    })
}

/// What one schedule found.
#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub operations: usize,
    pub ok: usize,
    pub unknown: usize,
    pub failed: usize,
    /// Keys whose history is not linearizable, with an excerpt.
    pub violations: Vec<(String, Vec<Entry>, checker::State)>,
    pub inconclusive: Vec<String>,
    pub lost_writes: usize,
    /// Processes that died on their own, keys unreadable after healing, a cluster that
    /// never became whole again: problems that are not about the history.
    pub anomalies: Vec<String>,
    pub nemesis_log: Vec<String>,
    /// Where the whole histories of violating keys were saved.
    pub history_files: Vec<PathBuf>,
    pub elapsed: Duration,
}

impl Report {
    pub fn clean(&self) -> bool {
        self.violations.is_empty() && self.lost_writes == 0 && self.anomalies.is_empty()
    }

    /// A replayable description of what went wrong.
    pub fn failure_text(&self) -> String {
        let mut s = format!(
            "schedule seed {} FAILED (replay: SHOAL_FAULT_SEED={} SHOAL_FAULT_SCHEDULES=1)\n",
            self.seed, self.seed
        );
        for (key, excerpt, state) in &self.violations {
            s += &format!("  key {key}: not linearizable; stuck with model state {state:?}, at:\n");
            for e in excerpt {
                s += &format!("    {e}\n");
            }
        }
        if self.lost_writes > 0 {
            s += &format!("  lost acknowledged writes: {}\n", self.lost_writes);
        }
        for a in &self.anomalies {
            s += &format!("  anomaly: {a}\n");
        }
        for path in &self.history_files {
            s += &format!("  whole history: {}\n", path.display());
        }
        s += "  nemesis:\n";
        for l in &self.nemesis_log {
            s += &format!("    {l}\n");
        }
        s
    }
}

/// Runs one seeded schedule against a fresh cluster.
pub fn run_schedule(seed: u64, config: &RunConfig) -> Report {
    eprintln!(
        "== schedule seed {seed} (replay: SHOAL_FAULT_SEED={seed} SHOAL_FAULT_SCHEDULES=1): \
         {} nodes, {} shards, {} clients, {:?} of faults from [{}]",
        config.cluster.nodes,
        config.cluster.shards,
        config.workload.clients,
        config.fault_time,
        config
            .faults
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(",")
    );
    let began = Instant::now();
    let mut report = Report {
        seed,
        ..Report::default()
    };
    let mut cluster = Cluster::start(&config.cluster);
    let steps = nemesis::schedule(seed, config.fault_time, &config.faults);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..config.workload.clients)
        .map(|id| {
            rt.spawn(workload::client(
                id,
                cluster.addrs(),
                config.workload.clone(),
                seed,
                start,
                stop.clone(),
            ))
        })
        .collect();

    let mut nemesis = Nemesis::new(seed, start);
    nemesis.run(&mut cluster, &steps);
    for (i, why) in cluster.crashed() {
        report
            .anomalies
            .push(format!("node{} exited on its own: {why}", i + 1));
    }
    cluster.heal_all();
    nemesis.note("healed everything");
    if let Err(e) = cluster.wait_ok(Duration::from_secs(120)) {
        report
            .anomalies
            .push(format!("cluster not whole 120 s after healing: {e}"));
    }
    // Some operations on the healed cluster, then stop.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let mut history = History::default();
    for c in clients {
        history
            .entries
            .extend(rt.block_on(c).expect("workload client panicked"));
    }
    let keys = config.workload.keys();
    let (finals, unread) = rt.block_on(workload::final_reads(
        &cluster.addrs(),
        &keys,
        start,
        Duration::from_secs(60),
    ));
    history.entries.extend(finals);
    for key in unread {
        report
            .anomalies
            .push(format!("key {key} unreadable for 60 s after healing"));
    }
    if let Err(e) = cluster.wait_converged(Duration::from_secs(60)) {
        report.anomalies.push(e);
    }
    for (i, why) in cluster.crashed() {
        report
            .anomalies
            .push(format!("node{} exited on its own: {why}", i + 1));
    }
    if !report.anomalies.is_empty() {
        cluster.keep_on_drop();
    }
    drop(cluster);
    report.nemesis_log = std::mem::take(&mut nemesis.log);

    check(&history, config.checker_budget, &mut report);
    report.elapsed = began.elapsed();
    eprintln!(
        "== schedule seed {seed}: {} ops ({} ok, {} unknown, {} failed), \
         {} violations, {} lost writes, {} inconclusive keys, {} anomalies, {:.0?}",
        report.operations,
        report.ok,
        report.unknown,
        report.failed,
        report.violations.len(),
        report.lost_writes,
        report.inconclusive.len(),
        report.anomalies.len(),
        report.elapsed
    );
    if !report.clean() {
        eprintln!("{}", report.failure_text());
    }
    report
}

/// Fills `report` with what the checker says about `history`.
fn check(history: &History, budget: usize, report: &mut Report) {
    let (ok, unknown, failed) = history.counts();
    report.operations = history.entries.len();
    report.ok = ok;
    report.unknown = unknown;
    report.failed = failed;
    for (key, entries) in history.by_key() {
        report.lost_writes += checker::lost_acknowledged_writes(&entries);
        match checker::check_key(&entries, budget) {
            Verdict::Linearizable => {}
            Verdict::Violation { excerpt, state } => {
                let path = save_history(report.seed, &key, &entries, &report.nemesis_log);
                report.history_files.push(path);
                report.violations.push((key, excerpt, state));
            }
            Verdict::Inconclusive => report.inconclusive.push(key),
        }
    }
}

/// Writes a key's whole history and the nemesis log under `target/shoal-fault/` (for
/// reading a violation in full; the report shows only an excerpt).
fn save_history(seed: u64, key: &str, entries: &[Entry], nemesis_log: &[String]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/shoal-fault");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("seed-{seed}-{key}.txt"));
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by_key(|e| e.call);
    let mut text: String = nemesis_log.iter().map(|l| format!("{l}\n")).collect();
    text += "\n";
    for e in sorted {
        text += &format!("{e}\n");
    }
    let _ = std::fs::write(&path, text);
    path
}

/// Totals over many schedules.
#[derive(Debug, Default)]
pub struct Summary {
    pub schedules: usize,
    pub operations: usize,
    pub violations: usize,
    pub lost_writes: usize,
    pub anomalies: usize,
    pub inconclusive: usize,
    pub failures: Vec<String>,
}

impl Summary {
    pub fn add(&mut self, r: &Report) {
        self.schedules += 1;
        self.operations += r.operations;
        self.violations += r.violations.len();
        self.lost_writes += r.lost_writes;
        self.anomalies += r.anomalies.len();
        self.inconclusive += r.inconclusive.len();
        if !r.clean() {
            self.failures.push(r.failure_text());
        }
    }

    pub fn clean(&self) -> bool {
        self.violations == 0 && self.lost_writes == 0 && self.anomalies == 0
    }

    /// The lines `scripts/soak.sh` ends with (the four the issue asks for last).
    pub fn lines(&self) -> String {
        format!(
            "anomalies: {}\ninconclusive keys: {}\nschedules: {}\noperations: {}\n\
             violations: {}\nlost acknowledged writes: {}",
            self.anomalies,
            self.inconclusive,
            self.schedules,
            self.operations,
            self.violations,
            self.lost_writes
        )
    }
}

/// Runs schedules with seeds `base, base+1, ...` until `count` ran or `until` passed (a
/// schedule started before `until` runs to its end).
pub fn run_schedules(
    base: u64,
    count: Option<usize>,
    until: Option<Instant>,
    config: &RunConfig,
) -> Summary {
    let mut summary = Summary::default();
    for i in 0.. {
        if count.is_some_and(|c| i >= c) || until.is_some_and(|u| Instant::now() >= u) {
            break;
        }
        let seed = base.wrapping_add(i as u64);
        // A schedule that panics (a node that will not restart, a cluster that never forms)
        // is a finding too: record it and go on with the next seed.
        let report =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_schedule(seed, config)))
                .unwrap_or_else(|panic| {
                    let why = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    Report {
                        seed,
                        anomalies: vec![format!("schedule panicked: {why}")],
                        ..Report::default()
                    }
                });
        summary.add(&report);
    }
    summary
}
