//! `shoal-cluster-tests`: runs real `shoal-server` processes and attacks them, Jepsen-style.
//!
//! A run ([`run::run_schedule`]) starts a cluster, lets concurrent clients ([`workload`]) read,
//! write, swap, `SET NX`, delete and increment a few keys while a seeded [`nemesis`] kills,
//! pauses, partitions and restarts nodes, heals everything, reads every key one last time,
//! and hands the recorded [`history`] to the [`checker`] (per-key linearizability, plus
//! acknowledged writes the final reads show lost).
//!
//! # Why network namespaces (and not Docker)
//!
//! Each node runs in its own network namespace with its own address, joined to the others
//! through veth pairs on a bridge that lives in one more namespace ([`harness::netns`]). A
//! partition is a pair of iptables `DROP` rules inside the two nodes' namespaces, so cuts are
//! per link (a minority, a majority, a leader, or any asymmetric shape) and real: TCP between
//! the nodes stalls exactly as it would on a network. The test process, in the root namespace,
//! reaches every node through one more veth into the bridge, so clients are never cut off.
//!
//! Docker would give the same isolation but needs an image, i.e. a static build of the server
//! and an image build on every run; namespaces need only `ip` and `iptables` (iproute2 and
//! iptables, which `cluster-tests/setup.sh` installs) and root, which CI and the development
//! machines have, so the code path is the same in both. The bridge is not in the root
//! namespace because Docker sets the root namespace's `FORWARD` policy to `DROP` and loads
//! `br_netfilter`, which would silently drop bridged traffic between nodes.
//!
//! Everything a run creates is named with the prefix `shoalft-<pid>-`; dropping the harness
//! removes it, and every new harness first sweeps what dead processes left behind.
//!
//! # Running
//!
//! - CI: `cargo test -p shoal-cluster-tests` (part of `scripts/test.sh`): the checker's unit
//!   tests, a partition test, and `SHOAL_FAULT_SCHEDULES` (3) schedules of
//!   `SHOAL_FAULT_SECONDS` (20) seconds of faults, about two minutes here.
//! - Soak: `scripts/soak.sh 30m [SEED]` runs the `soak` binary (same [`run`] code).
//! - Replay: every schedule prints its seed; `SHOAL_FAULT_SEED=<seed> SHOAL_FAULT_SCHEDULES=1`.
//!   A seed fixes the fault sequence, the targets' draw and the clients' operations; process
//!   timing still varies, so a replay reproduces the conditions, not the exact interleaving.
//!
//! # What counts as a failure
//!
//! A key whose history is not linearizable; an acknowledged write the final read shows lost;
//! a node that exits on its own; a cluster not whole, a key unreadable, or replicas whose
//! `INFO digest` differ, a while after everything was healed. Unknown outcomes (timeouts,
//! dropped connections, and, for soundness, every error reply to a write) may or may not
//! have taken effect; failed reads are dropped.

pub mod checker;
pub mod harness;
pub mod history;
pub mod nemesis;
pub mod run;
pub mod workload;
