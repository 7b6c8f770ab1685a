//! One network namespace per node, bridged together, with per-link cuts.
//!
//! Layout for a network named `shoalft-<pid>-<n>` on subnet `10.A.B.0/24`:
//! - namespace `<name>-br` holds bridge `br0`;
//! - node `i` lives in namespace `<name>-<i>` with `eth0` = `10.A.B.<i+1>`, a veth whose peer
//!   `n<i>` is a port of `br0`;
//! - the root namespace gets veth `sft<pid hex>-<n>` = `10.A.B.254`, whose peer `root0` is a port
//!   of `br0`, so the test process reaches every node and is never partitioned.
//!
//! Deleting the namespaces deletes every veth with them, so cleanup is deleting namespaces
//! (after killing whatever still runs in them).

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Every name we create starts with this.
pub const PREFIX: &str = "shoalft-";

/// Runs a command; panics with its stderr if it fails.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `{cmd}` ({e}): install iproute2 and iptables (cluster-tests/setup.sh)")
    });
    assert!(
        out.status.success(),
        "`{cmd} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command, ignoring failure (cleanup paths).
fn run_quiet(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Names of existing namespaces.
fn namespaces() -> Vec<String> {
    run_quiet("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Kills every process in namespace `ns` and deletes it.
fn destroy_namespace(ns: &str) {
    for pid in run_quiet("ip", &["netns", "pids", ns])
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        // SAFETY: plain syscalls on pids that ip reported in our namespace.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    // A killed process may take a moment to leave the namespace; deletion still succeeds
    // (the namespace lives on until its last process exits), so one attempt is enough.
    let _ = run_quiet("ip", &["netns", "delete", ns]);
}

/// Removes namespaces (and their processes) and temp dirs left by harness processes that
/// are no longer alive, e.g. a test run that was SIGKILLed.
pub fn sweep_stale() {
    let dead_owner = |name: &str| -> bool {
        name.strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !pid_alive(pid))
    };
    for ns in namespaces().into_iter().filter(|n| dead_owner(n)) {
        eprintln!("sweeping stale namespace {ns}");
        destroy_namespace(&ns);
    }
    if let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if dead_owner(&name) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// A bridged network of `nodes` namespaces; dropped → everything in it is gone.
pub struct Network {
    pub name: String,
    pub subnet: [u8; 2],
    nodes: usize,
    root_if: String,
}

static NEXT_NETWORK: AtomicU32 = AtomicU32::new(0);

impl Network {
    pub fn create(nodes: usize) -> Network {
        super::require_root();
        sweep_stale();
        let pid = std::process::id();
        let n = NEXT_NETWORK.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{pid}-{n}");
        let subnet = free_subnet(pid, n);
        let root_if = format!("sft{pid:x}-{}", n % 1000);
        let mut net = Network {
            name,
            subnet,
            nodes: 0,
            root_if,
        };
        // From here on, Drop cleans up whatever was made, even if a step below panics.
        let br = net.bridge_ns();
        run("ip", &["netns", "add", &br]);
        run("ip", &["-n", &br, "link", "set", "lo", "up"]);
        run("ip", &["-n", &br, "link", "add", "br0", "type", "bridge"]);
        run("ip", &["-n", &br, "link", "set", "br0", "up"]);
        let root_if = net.root_if.clone();
        run(
            "ip",
            &[
                "link", "add", &root_if, "type", "veth", "peer", "name", "root0", "netns", &br,
            ],
        );
        run(
            "ip",
            &["-n", &br, "link", "set", "root0", "master", "br0", "up"],
        );
        let root_addr = format!("{}/24", net.root_ip());
        run("ip", &["addr", "add", &root_addr, "dev", &root_if]);
        run("ip", &["link", "set", &root_if, "up"]);
        for i in 0..nodes {
            let ns = net.node_ns(i);
            run("ip", &["netns", "add", &ns]);
            net.nodes = i + 1;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
            let port = format!("n{i}");
            run(
                "ip",
                &[
                    "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                    "netns", &ns,
                ],
            );
            run(
                "ip",
                &["-n", &br, "link", "set", &port, "master", "br0", "up"],
            );
            let addr = format!("{}/24", net.node_ip(i));
            run("ip", &["-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
        }
        net
    }

    fn bridge_ns(&self) -> String {
        format!("{}-br", self.name)
    }

    pub fn node_ns(&self, i: usize) -> String {
        format!("{}-{}", self.name, i + 1)
    }

    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet[0], self.subnet[1], i as u8 + 1)
    }

    pub fn root_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet[0], self.subnet[1], 254)
    }

    pub fn len(&self) -> usize {
        self.nodes
    }

    pub fn is_empty(&self) -> bool {
        self.nodes == 0
    }

    /// Cuts the link between nodes `a` and `b` both ways: each drops the other's packets.
    pub fn cut(&self, a: usize, b: usize) {
        self.drop_from(a, b);
        self.drop_from(b, a);
    }

    /// Node `at` drops every packet it receives from `peer` (one-way: what `at` sends still
    /// arrives).
    pub fn drop_incoming(&self, at: usize, peer: usize) {
        let ns = self.node_ns(at);
        let ip = self.node_ip(peer).to_string();
        run(
            "ip",
            &[
                "netns", "exec", &ns, "iptables", "-w", "-A", "INPUT", "-s", &ip, "-j", "DROP",
            ],
        );
    }

    /// Node `at` drops every packet from and to `peer`.
    pub fn drop_from(&self, at: usize, peer: usize) {
        let ns = self.node_ns(at);
        let ip = self.node_ip(peer).to_string();
        run(
            "ip",
            &[
                "netns", "exec", &ns, "iptables", "-w", "-A", "INPUT", "-s", &ip, "-j", "DROP",
            ],
        );
        run(
            "ip",
            &[
                "netns", "exec", &ns, "iptables", "-w", "-A", "OUTPUT", "-d", &ip, "-j", "DROP",
            ],
        );
    }

    /// Splits the nodes into `side` and the rest, cutting every link across.
    pub fn partition(&self, side: &[usize]) {
        for a in side {
            for b in (0..self.nodes).filter(|b| !side.contains(b)) {
                self.cut(*a, b);
            }
        }
    }

    /// Whether a TCP connection from inside node `from`'s namespace to `to`:`port` succeeds
    /// within a second (bash's /dev/tcp: no extra tools needed).
    pub fn can_connect(&self, from: usize, to: Ipv4Addr, port: u16) -> bool {
        let ns = self.node_ns(from);
        let script = format!("exec 3<>/dev/tcp/{to}/{port}");
        Command::new("ip")
            .args(["netns", "exec", &ns, "timeout", "1", "bash", "-c", &script])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Removes every cut.
    pub fn heal(&self) {
        for i in 0..self.nodes {
            let ns = self.node_ns(i);
            for chain in ["INPUT", "OUTPUT"] {
                run("ip", &["netns", "exec", &ns, "iptables", "-w", "-F", chain]);
            }
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for i in 0..self.nodes {
            destroy_namespace(&self.node_ns(i));
        }
        destroy_namespace(&self.bridge_ns());
        // Normally gone with its peer; make sure.
        let _ = run_quiet("ip", &["link", "delete", &self.root_if]);
    }
}

/// A `10.A.B.0/24` no route of the root namespace uses yet (parallel networks of this and
/// other harness processes each take their own).
fn free_subnet(pid: u32, n: u32) -> [u8; 2] {
    let routes = run("ip", &["-4", "route", "show", "table", "all"]);
    let addrs = run("ip", &["-4", "-o", "addr", "show"]);
    let start = (pid.wrapping_mul(2654435761) ^ n.wrapping_mul(40503)) as usize;
    (0..64 * 256)
        .map(|k| {
            let x = (start + k) % (64 * 256);
            [100 + (x / 256) as u8, (x % 256) as u8]
        })
        .find(|[a, b]| {
            let prefix = format!("10.{a}.{b}.");
            !routes.contains(&prefix) && !addrs.contains(&prefix)
        })
        .expect("a free 10.x.y.0/24 subnet")
}
