//! A cluster of server processes, one per namespace of a [`Network`].

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::netns::Network;
use super::process::NodeProcess;
use super::resp::{query, text};

/// Every node listens on these ports on its own address.
pub const CLIENT_PORT: u16 = 6379;
pub const PEER_PORT: u16 = 16379;
/// How long a status query may take before the node counts as unreachable.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub nodes: usize,
    pub shards: u32,
    pub snapshot_entries: u64,
    /// Namespaces made ready for nodes added during a run.
    pub spare_nodes: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nodes: 3,
            shards: 4,
            snapshot_entries: 500,
            spare_nodes: 1,
        }
    }
}

/// The nodes and their network. Dropping it kills the processes, then removes the network,
/// then the data dirs (kept after a panic, or after [`Cluster::keep_on_drop`], when
/// `SHOAL_FAULT_KEEP` is set).
pub struct Cluster {
    // Field order is drop order: processes before the namespaces they run in.
    pub nodes: Vec<NodeProcess>,
    pub net: Network,
    pub root: PathBuf,
    /// Raft node id of each node (index → id), learned from `INFO raft`.
    pub ids: Vec<u64>,
    pub shards: u32,
    snapshot_entries: u64,
    rt: tokio::runtime::Runtime,
    /// Keep the data dirs and logs for a post-mortem (the run found an anomaly).
    keep: bool,
}

impl Cluster {
    /// Starts node 1 (which creates the cluster), then the others joining it, and waits until
    /// every node says `cluster_state:ok`.
    pub fn start(config: &ClusterConfig) -> Cluster {
        // Spare namespaces are for nodes added later ([`Cluster::add_node`]).
        let net = Network::create(config.nodes + config.spare_nodes);
        let root = std::env::temp_dir().join(&net.name);
        std::fs::create_dir_all(&root).expect("create cluster dir");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut cluster = Cluster {
            nodes: Vec::new(),
            net,
            root,
            ids: Vec::new(),
            shards: config.shards,
            snapshot_entries: config.snapshot_entries,
            rt,
            keep: false,
        };
        for _ in 0..config.nodes {
            cluster.start_next_node();
        }
        cluster
    }

    /// Starts a node in the next unused namespace (joining node 1 unless it is node 1),
    /// waits until every node is ok and knows it, and learns its id.
    fn start_next_node(&mut self) -> usize {
        let i = self.nodes.len();
        let ip = self.net.node_ip(i).to_string();
        let data_dir = self.root.join(format!("node{}", i + 1));
        let mut args: Vec<String> = vec![
            "--port".into(),
            CLIENT_PORT.to_string(),
            "--cluster-port".into(),
            PEER_PORT.to_string(),
            "--bind".into(),
            ip.clone(),
            "--cluster-announce-ip".into(),
            ip,
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--shards".into(),
            self.shards.to_string(),
            "--replicas".into(),
            "3".into(),
            "--snapshot-entries".into(),
            self.snapshot_entries.to_string(),
            "--log-level".into(),
            // `SHOAL_FAULT_LOG_LEVEL=info` logs every election, move and membership change.
            std::env::var("SHOAL_FAULT_LOG_LEVEL").unwrap_or_else(|_| "warn".into()),
            // Clients reach the nodes from other network namespaces, without a password.
            "--protected-mode".into(),
            "no".into(),
        ];
        if i > 0 {
            let seed_peer = SocketAddr::new(IpAddr::V4(self.net.node_ip(0)), PEER_PORT);
            args.extend(["--join".into(), seed_peer.to_string()]);
        }
        let addr = SocketAddr::new(IpAddr::V4(self.net.node_ip(i)), CLIENT_PORT);
        let log = self.root.join(format!("node{}.log", i + 1));
        self.nodes.push(NodeProcess::start(
            self.net.node_ns(i),
            addr,
            data_dir,
            log,
            args,
        ));
        self.ids.push(0);
        // One at a time: a joiner needs the cluster formed (and node 1 reachable).
        if let Err(e) = self.wait_ok(Duration::from_secs(90)) {
            panic!("node{} did not join: {e}", i + 1);
        }
        let id = super::poll(Duration::from_secs(30), Duration::from_millis(100), || {
            self.raft_fields(i)?
                .get("raft_node_id")?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("node{} never told its raft_node_id", i + 1));
        self.ids[i] = id;
        i
    }

    /// Adds a node (in a spare namespace) to the running cluster, which then rebalances
    /// replicas onto it; `None` when no spare namespace is left or node 1 is not reachable
    /// to join through.
    pub fn add_node(&mut self) -> Option<usize> {
        let seed_up = self.nodes[0].is_up() && !self.nodes[0].is_paused();
        (self.nodes.len() < self.net.len() && seed_up).then(|| self.start_next_node())
    }

    /// Tells the cluster (through another node) to drain node `i` and let it go
    /// (`CLUSTER FORGET`); it exits by itself once it holds nothing. `false` when that would
    /// leave fewer than three members, or no other node took the command.
    pub fn remove_node(&mut self, i: usize) -> bool {
        let staying = self.nodes.iter().filter(|n| !n.is_leaving()).count();
        if staying <= 3 || self.nodes[i].is_leaving() || self.ids[i] == 0 {
            return false;
        }
        let id = self.ids[i].to_string();
        let told = (0..self.len())
            .filter(|&j| j != i && !self.nodes[j].is_leaving())
            .any(|j| {
                let node = &self.nodes[j];
                node.is_up()
                    && !node.is_paused()
                    && self
                        .rt
                        .block_on(query(node.addr, &["CLUSTER", "FORGET", &id], QUERY_TIMEOUT))
                        .is_ok_and(|f| text(&f).as_deref() == Some("OK"))
            });
        if told {
            self.nodes[i].mark_leaving();
        }
        told
    }

    /// Waits until node `i`, told to leave, has drained and exited.
    pub fn wait_removed(&mut self, i: usize, timeout: Duration) -> bool {
        let node = &mut self.nodes[i];
        super::poll(timeout, Duration::from_millis(200), || {
            node.is_removed().then_some(())
        })
        .is_some()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }

    /// Runs one status command on node `i` (None if it is down, paused or too slow).
    pub fn query_text(&self, i: usize, args: &[&str]) -> Option<String> {
        let node = &self.nodes[i];
        if !node.is_up() || node.is_paused() {
            return None;
        }
        let frame = self
            .rt
            .block_on(query(node.addr, args, QUERY_TIMEOUT))
            .ok()?;
        text(&frame)
    }

    fn fields(text: &str) -> BTreeMap<String, String> {
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect()
    }

    fn raft_fields(&self, i: usize) -> Option<BTreeMap<String, String>> {
        self.query_text(i, &["INFO", "raft"])
            .map(|t| Self::fields(&t))
    }

    /// True when node `i` answers `cluster_state:ok` and knows every node (a node told to
    /// leave may or may not be known still, until it has gone).
    pub fn is_ok(&self, i: usize) -> bool {
        let staying = self.nodes.iter().filter(|n| !n.is_leaving()).count();
        let going = self
            .nodes
            .iter()
            .filter(|n| n.is_leaving() && !n.removed())
            .count();
        self.query_text(i, &["CLUSTER", "INFO"])
            .map(|t| Self::fields(&t))
            .is_some_and(|f| {
                let known = f.get("cluster_known_nodes").and_then(|k| k.parse().ok());
                f.get("cluster_state").map(String::as_str) == Some("ok")
                    && known.is_some_and(|k: usize| (staying..=staying + going).contains(&k))
            })
    }

    /// Waits until every running, unpaused node is ok; the error says who is not.
    pub fn wait_ok(&self, timeout: Duration) -> Result<(), String> {
        let live: Vec<usize> = (0..self.len())
            .filter(|&i| self.nodes[i].is_up() && !self.nodes[i].is_paused())
            .collect();
        super::poll(timeout, Duration::from_millis(200), || {
            live.iter().all(|&i| self.is_ok(i)).then_some(())
        })
        .ok_or_else(|| {
            let bad: Vec<String> = live
                .iter()
                .filter(|&&i| !self.is_ok(i))
                .map(|&i| {
                    format!(
                        "node{}: {:?}",
                        i + 1,
                        self.query_text(i, &["CLUSTER", "INFO"])
                    )
                })
                .collect();
            format!("not ok after {timeout:?}: {}", bad.join("; "))
        })
    }

    /// Which node (index) leads each Raft group, as the leaders themselves say
    /// (`"g0"` is the metadata group, `"s<N>"` shard N). Groups with no reachable leader are
    /// absent.
    pub fn leaders(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for i in 0..self.len() {
            let Some(f) = self.raft_fields(i) else {
                continue;
            };
            for (k, v) in &f {
                let group = if k == "raft_group_0" {
                    "g0".to_owned()
                } else if let Some(s) = k.strip_prefix("raft_shard_") {
                    format!("s{s}")
                } else {
                    continue;
                };
                let kv: BTreeMap<&str, &str> =
                    v.split(',').filter_map(|p| p.split_once('=')).collect();
                let own = kv.get("leader").and_then(|l| l.parse::<u64>().ok()) == Some(self.ids[i]);
                if kv.get("role") == Some(&"leader") && own {
                    out.insert(group, i);
                }
            }
        }
        out
    }

    /// The voters (node indexes) of each shard (`"s<N>"`), as each shard's leader says.
    pub fn shard_voters(&self) -> BTreeMap<String, Vec<usize>> {
        let mut out = BTreeMap::new();
        for i in 0..self.len() {
            let Some(f) = self.raft_fields(i) else {
                continue;
            };
            for (k, v) in &f {
                let Some(shard) = k.strip_prefix("raft_shard_") else {
                    continue;
                };
                let kv: BTreeMap<&str, &str> =
                    v.split(',').filter_map(|p| p.split_once('=')).collect();
                if kv.get("role") != Some(&"leader") {
                    continue;
                }
                let voters: Vec<usize> = kv
                    .get("voters")
                    .unwrap_or(&"")
                    .split('|')
                    .filter_map(|id| id.parse::<u64>().ok())
                    .filter_map(|id| self.ids.iter().position(|&x| x == id))
                    .collect();
                out.insert(format!("s{shard}"), voters);
            }
        }
        out
    }

    /// Waits until every shard's voters report the same applied index and data digest
    /// (`INFO digest`) as each other; the error shows the last disagreement. Replicas a node
    /// still holds for a shard it is no longer a voter of are not compared. Only meaningful
    /// once writes have stopped.
    pub fn wait_converged(&self, timeout: Duration) -> Result<(), String> {
        let mut last = String::new();
        super::poll(timeout, Duration::from_millis(500), || {
            let voters = self.shard_voters();
            // shard → [(node, "applied=..,keys=..,digest=..")], voters only
            let mut shards: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
            for i in (0..self.len()).filter(|&i| !self.nodes[i].removed()) {
                let text = self.query_text(i, &["INFO", "digest"])?;
                for (k, v) in Self::fields(&text) {
                    let Some(shard) = k.strip_prefix("shard_") else {
                        continue;
                    };
                    let shard = format!("s{shard}");
                    if voters.get(&shard).is_some_and(|v| v.contains(&i)) {
                        shards.entry(shard).or_default().push((i, v));
                    }
                }
            }
            let incomplete = voters
                .iter()
                .any(|(s, v)| shards.get(s).map_or(0, Vec::len) != v.len());
            let diverged: Vec<String> = shards
                .iter()
                .filter(|(_, replicas)| replicas.iter().any(|(_, v)| *v != replicas[0].1))
                .map(|(shard, replicas)| {
                    let each: Vec<String> = replicas
                        .iter()
                        .map(|(i, v)| format!("node{}: {v}", i + 1))
                        .collect();
                    format!("{shard}: {}", each.join("; "))
                })
                .collect();
            last = format!("voters {voters:?}; {}", diverged.join(" | "));
            let every_shard_led = voters.len() == self.shards as usize;
            (diverged.is_empty() && !incomplete && every_shard_led).then_some(())
        })
        .ok_or_else(|| format!("shard voters differ after {timeout:?}: {last}"))
    }

    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    pub fn pause(&mut self, i: usize) {
        self.nodes[i].pause();
    }

    pub fn resume(&mut self, i: usize) {
        self.nodes[i].resume();
    }

    pub fn restart(&mut self, i: usize) {
        self.nodes[i].restart();
    }

    /// Nodes that died without being killed by us.
    pub fn crashed(&mut self) -> Vec<(usize, String)> {
        (0..self.len())
            .filter_map(|i| {
                self.nodes[i]
                    .exited()
                    .map(|s| (i, format!("{s}; log tail:\n{}", self.nodes[i].log_tail(20))))
            })
            .collect()
    }

    /// Resumes paused nodes, restarts dead ones and removes every cut.
    pub fn heal_all(&mut self) {
        self.net.heal();
        for node in &mut self.nodes {
            if node.is_paused() {
                node.resume();
            }
            if !node.is_up() || node.exited().is_some() {
                node.restart();
            }
        }
    }
}

impl Cluster {
    /// Keeps the data dirs and node logs when dropped, if `SHOAL_FAULT_KEEP` is set.
    pub fn keep_on_drop(&mut self) {
        self.keep = true;
        if std::env::var_os("SHOAL_FAULT_KEEP").is_some() {
            eprintln!("keeping data dirs and logs in {}", self.root.display());
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            node.kill();
            if panicking {
                eprintln!("---- node{} log tail ----\n{}", i + 1, node.log_tail(25));
            }
        }
        if (panicking || self.keep) && std::env::var_os("SHOAL_FAULT_KEEP").is_some() {
            eprintln!("kept data dirs and logs in {}", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}
