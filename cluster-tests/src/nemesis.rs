//! Seeded schedules of faults, and applying / healing them on a [`Cluster`].
//!
//! A schedule is a list of steps; each waits a quiet while, injects one fault, holds it, and
//! heals it. The same seed always yields the same steps (the timing of the processes and
//! hence which node leads what can still differ between replays).

use std::fmt;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::harness::cluster::Cluster;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL the leader of a random group; restart it when healing.
    KillLeader,
    KillRandom,
    /// SIGSTOP the leader of a random group (it wakes up believing it still leads).
    PauseLeader,
    PauseRandom,
    /// Cut a random minority (at least one node) off from the majority.
    PartitionMinority,
    /// Cut the leader of a random group off from everyone.
    PartitionLeaderAway,
    /// Split the others in two halves that cannot talk to each other but both reach one
    /// "bridge" node (a non-transitive partition: two overlapping majorities).
    PartitionBridge,
    /// The leader of a random group stops receiving from every other node while its own
    /// packets still get out (an asymmetric link failure).
    PartitionLeaderDeaf,
    /// SIGKILL every node, then start them all again.
    RestartAll,
    /// Join a new node (from the spare namespaces); the cluster moves replicas onto it.
    /// Falls back to `KillRandom` once no spare is left.
    AddNode,
    /// Drain a random node out of the cluster (`CLUSTER FORGET`): its replicas move away and
    /// it exits; healing waits for that. While only three members are left it adds one
    /// instead (like `AddNode`), else falls back to `KillRandom`.
    RemoveNode,
}

pub const ALL_FAULTS: [Fault; 11] = [
    Fault::KillLeader,
    Fault::KillRandom,
    Fault::PauseLeader,
    Fault::PauseRandom,
    Fault::PartitionMinority,
    Fault::PartitionLeaderAway,
    Fault::PartitionBridge,
    Fault::PartitionLeaderDeaf,
    Fault::RestartAll,
    Fault::AddNode,
    Fault::RemoveNode,
];

impl Fault {
    /// The name `SHOAL_FAULT_FAULTS` uses.
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill-leader",
            Fault::KillRandom => "kill-random",
            Fault::PauseLeader => "pause-leader",
            Fault::PauseRandom => "pause-random",
            Fault::PartitionMinority => "partition-minority",
            Fault::PartitionLeaderAway => "partition-leader",
            Fault::PartitionBridge => "partition-bridge",
            Fault::PartitionLeaderDeaf => "partition-leader-deaf",
            Fault::RestartAll => "restart-all",
            Fault::AddNode => "add-node",
            Fault::RemoveNode => "remove-node",
        }
    }

    /// Parses a comma-separated list of fault names (`all` for every fault).
    pub fn parse_list(list: &str) -> Result<Vec<Fault>, String> {
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "all" {
                out.extend(ALL_FAULTS);
                continue;
            }
            let f = ALL_FAULTS
                .into_iter()
                .find(|f| f.name() == name)
                .ok_or_else(|| {
                    let names: Vec<_> = ALL_FAULTS.iter().map(|f| f.name()).collect();
                    format!("unknown fault {name:?}; known: {}", names.join(", "))
                })?;
            out.push(f);
        }
        if out.is_empty() {
            return Err("no faults given".into());
        }
        Ok(out)
    }
}

#[derive(Clone, Debug)]
pub struct Step {
    pub quiet: Duration,
    pub fault: Fault,
    pub hold: Duration,
}

/// Steps filling about `total` of fault time, each fault drawn from `faults`, from `seed`.
pub fn schedule(seed: u64, total: Duration, faults: &[Fault]) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut steps = Vec::new();
    let mut planned = Duration::ZERO;
    while planned < total {
        let step = Step {
            quiet: Duration::from_millis(rng.gen_range(500..2500)),
            fault: *faults.choose(&mut rng).expect("at least one fault"),
            hold: Duration::from_millis(rng.gen_range(2000..7000)),
        };
        planned += step.quiet + step.hold;
        steps.push(step);
    }
    steps
}

/// A fault as injected: exactly what to undo.
#[derive(Clone, Debug)]
pub enum Injected {
    Killed(Vec<usize>),
    Paused(usize),
    Partitioned(Vec<usize>),
    /// Links cut between two halves; `bridge` still reaches both.
    Bridged {
        bridge: usize,
        left: Vec<usize>,
        right: Vec<usize>,
    },
    /// `node` drops what the others send it.
    Deaf(usize),
    /// A node joined (nothing to undo: it stays).
    Added(usize),
    /// A node was told to leave (healing waits until it has).
    Removed(usize),
}

impl fmt::Display for Injected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |v: &[usize]| {
            v.iter()
                .map(|i| format!("node{}", i + 1))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Injected::Killed(v) => write!(f, "killed {}", names(v)),
            Injected::Paused(i) => write!(f, "paused node{}", i + 1),
            Injected::Partitioned(v) => write!(f, "isolated {{{}}} from the rest", names(v)),
            Injected::Bridged {
                bridge,
                left,
                right,
            } => write!(
                f,
                "cut {{{}}} from {{{}}}, node{} bridging",
                names(left),
                names(right),
                bridge + 1
            ),
            Injected::Deaf(i) => write!(f, "node{} hears no peer", i + 1),
            Injected::Added(i) => write!(f, "added node{}", i + 1),
            Injected::Removed(i) => write!(f, "node{} told to leave (CLUSTER FORGET)", i + 1),
        }
    }
}

/// Runs a schedule's steps against a cluster, logging what it did.
pub struct Nemesis {
    rng: StdRng,
    start: Instant,
    pub log: Vec<String>,
}

impl Nemesis {
    pub fn new(seed: u64, start: Instant) -> Nemesis {
        Nemesis {
            // A different stream from the schedule's: targets, not steps.
            rng: StdRng::seed_from_u64(seed.wrapping_add(0x5EED)),
            start,
            log: Vec::new(),
        }
    }

    pub fn note(&mut self, what: impl fmt::Display) {
        let line = format!("[{:>8.3}s] {what}", self.start.elapsed().as_secs_f64());
        eprintln!("nemesis {line}");
        self.log.push(line);
    }

    /// A node leading a random group, or a random node if no leader is visible.
    fn leader(&mut self, cluster: &Cluster) -> (usize, String) {
        let leaders: Vec<(String, usize)> = cluster.leaders().into_iter().collect();
        match leaders.choose(&mut self.rng) {
            Some((group, node)) => (*node, format!("leader of {group}")),
            None => (
                self.rng.gen_range(0..cluster.len()),
                "no visible leader; random".into(),
            ),
        }
    }

    /// A node that is running and not paused, if any.
    fn random_live(&mut self, cluster: &Cluster) -> usize {
        let live: Vec<usize> = (0..cluster.len())
            .filter(|&i| cluster.nodes[i].is_up() && !cluster.nodes[i].is_paused())
            .collect();
        *live
            .choose(&mut self.rng)
            .unwrap_or(&self.rng.gen_range(0..cluster.len()))
    }

    pub fn inject(&mut self, cluster: &mut Cluster, fault: Fault) -> Injected {
        let (injected, why) = match fault {
            Fault::KillLeader => {
                let (i, why) = self.leader(cluster);
                cluster.kill(i);
                (Injected::Killed(vec![i]), why)
            }
            Fault::AddNode => match cluster.add_node() {
                Some(i) => (Injected::Added(i), "spare".into()),
                None => {
                    let i = self.random_live(cluster);
                    cluster.kill(i);
                    (
                        Injected::Killed(vec![i]),
                        "no spare left: kill random".into(),
                    )
                }
            },
            Fault::RemoveNode => {
                // Never node 1: later nodes join through it.
                let candidates: Vec<usize> = (1..cluster.len())
                    .filter(|&i| cluster.nodes[i].is_up() && !cluster.nodes[i].is_paused())
                    .collect();
                let pick = candidates.choose(&mut self.rng).copied();
                if let Some(i) = pick.filter(|&i| cluster.remove_node(i)) {
                    (Injected::Removed(i), "random".into())
                } else if let Some(i) = cluster.add_node() {
                    // Only three members: grow first, so that a later step can drain one.
                    (Injected::Added(i), "three members: add one first".into())
                } else {
                    let i = self.random_live(cluster);
                    cluster.kill(i);
                    (
                        Injected::Killed(vec![i]),
                        "cannot remove or add: kill random".into(),
                    )
                }
            }
            Fault::KillRandom => {
                let i = self.random_live(cluster);
                cluster.kill(i);
                (Injected::Killed(vec![i]), "random".into())
            }
            Fault::PauseLeader => {
                let (i, why) = self.leader(cluster);
                cluster.pause(i);
                (Injected::Paused(i), why)
            }
            Fault::PauseRandom => {
                let i = self.random_live(cluster);
                cluster.pause(i);
                (Injected::Paused(i), "random".into())
            }
            Fault::PartitionMinority => {
                let mut all: Vec<usize> = (0..cluster.len()).collect();
                all.shuffle(&mut self.rng);
                let size = self.rng.gen_range(1..=(cluster.len() - 1) / 2);
                let side = all[..size].to_vec();
                cluster.net.partition(&side);
                (Injected::Partitioned(side), "minority".into())
            }
            Fault::PartitionLeaderAway => {
                let (i, why) = self.leader(cluster);
                cluster.net.partition(&[i]);
                (Injected::Partitioned(vec![i]), why)
            }
            Fault::PartitionBridge => {
                let mut all: Vec<usize> = (0..cluster.len()).collect();
                all.shuffle(&mut self.rng);
                let bridge = all[0];
                let half = (all.len() - 1) / 2;
                let (left, right) = (all[1..=half].to_vec(), all[half + 1..].to_vec());
                for &a in &left {
                    for &b in &right {
                        cluster.net.cut(a, b);
                    }
                }
                (
                    Injected::Bridged {
                        bridge,
                        left,
                        right,
                    },
                    "random".into(),
                )
            }
            Fault::PartitionLeaderDeaf => {
                let (i, why) = self.leader(cluster);
                for peer in (0..cluster.len()).filter(|&p| p != i) {
                    cluster.net.drop_incoming(i, peer);
                }
                (Injected::Deaf(i), why)
            }
            Fault::RestartAll => {
                let all: Vec<usize> = (0..cluster.len()).collect();
                for &i in &all {
                    cluster.kill(i);
                }
                (Injected::Killed(all), "all".into())
            }
        };
        self.note(format!("{fault:?}: {injected} ({why})"));
        injected
    }

    pub fn heal(&mut self, cluster: &mut Cluster, injected: &Injected) {
        match injected {
            Injected::Killed(nodes) => {
                for &i in nodes {
                    cluster.restart(i);
                }
            }
            Injected::Paused(i) => cluster.resume(*i),
            Injected::Added(_) => {}
            Injected::Removed(i) => {
                if !cluster.wait_removed(*i, Duration::from_secs(90)) {
                    self.note(format!(
                        "node{} has not left 90 s after CLUSTER FORGET",
                        i + 1
                    ));
                }
            }
            Injected::Partitioned(_) | Injected::Bridged { .. } | Injected::Deaf(_) => {
                cluster.net.heal()
            }
        }
        self.note(format!("healed: {injected}"));
    }

    /// Runs every step: quiet, inject, hold, heal; then waits (bounded) for the cluster to
    /// be whole again before the next step, so faults do not pile up unintentionally.
    pub fn run(&mut self, cluster: &mut Cluster, steps: &[Step]) {
        for step in steps {
            // These sleeps are the fault's timing, not synchronisation.
            std::thread::sleep(step.quiet);
            let injected = self.inject(cluster, step.fault);
            std::thread::sleep(step.hold);
            self.heal(cluster, &injected);
            if let Err(e) = cluster.wait_ok(Duration::from_secs(30)) {
                self.note(format!("cluster still not ok after healing: {e}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_yields_the_same_schedule() {
        let total = Duration::from_secs(60);
        let a = schedule(42, total, &ALL_FAULTS);
        let b = schedule(42, total, &ALL_FAULTS);
        let c = schedule(43, total, &ALL_FAULTS);
        let key = |s: &[Step]| -> Vec<(Duration, Fault, Duration)> {
            s.iter().map(|x| (x.quiet, x.fault, x.hold)).collect()
        };
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&c));
        let planned: Duration = a.iter().map(|s| s.quiet + s.hold).sum();
        assert!(planned >= total && planned < total + Duration::from_secs(10));
    }

    #[test]
    fn schedules_draw_only_the_given_faults() {
        let steps = schedule(7, Duration::from_secs(120), &[Fault::PauseRandom]);
        assert!(steps.iter().all(|s| s.fault == Fault::PauseRandom));
    }

    #[test]
    fn fault_names_round_trip() {
        let names: Vec<&str> = ALL_FAULTS.iter().map(|f| f.name()).collect();
        assert_eq!(Fault::parse_list(&names.join(",")).unwrap(), ALL_FAULTS);
        assert_eq!(Fault::parse_list("all").unwrap(), ALL_FAULTS);
        assert!(Fault::parse_list("kill-leader,nope").is_err());
        assert!(Fault::parse_list("").is_err());
    }
}
