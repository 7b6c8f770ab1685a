//! Configuration: command-line flags, a redis.conf-style file, and what `CONFIG GET/SET` see.
//!
//! Every flag also works as a line of the `--config` file (`port 7001`, `maxclients 100`): the
//! file's lines are turned into flags and placed before the real command line, so flags given
//! on the command line win.

use std::path::PathBuf;

use clap::Parser;

use crate::net::output_limit::OutputLimits;
use crate::raft::log_store::FsyncPolicy;
use crate::store::eviction::Policy;
use shoal_protocol::split_inline_args;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "shoal-server",
    version,
    about = "A node of shoal, a sharded, Raft-replicated, Redis-compatible cache",
    args_override_self = true
)]
pub struct Config {
    /// TCP port for clients (0: let the OS choose, and print it).
    #[arg(long, default_value_t = 6379)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Directory for this node's durable state.
    #[arg(long, default_value = "./shoal-data")]
    pub data_dir: PathBuf,
    /// Password for the default user; clients must AUTH before anything else.
    #[arg(long)]
    pub requirepass: Option<String>,
    /// Redis's protected mode: while the `default` user needs no password, refuse clients that
    /// do not connect from the loopback interface (with Redis's explanatory error).
    #[arg(long, default_value = "yes", value_parser = ["yes", "no"])]
    pub protected_mode: String,
    /// TLS port for clients (absent: no TLS; 0: let the OS choose). Plain `--port` stays open
    /// too unless it is closed with `--port` pointing elsewhere.
    #[arg(long)]
    pub tls_port: Option<u16>,
    /// PEM certificate (chain) the TLS port presents.
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `--tls-cert-file`.
    #[arg(long)]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA certificate(s) that client certificates must chain to.
    #[arg(long)]
    pub tls_ca_cert_file: Option<PathBuf>,
    /// Whether TLS clients must present a certificate: `yes` (Redis's default), `no`,
    /// `optional` (checked if presented).
    #[arg(long, default_value = "yes", value_parser = ["yes", "no", "optional"])]
    pub tls_auth_clients: String,
    /// `yes`: the peer port (Raft, forwarded commands, pub/sub) speaks mutual TLS with the
    /// certificate, key and CA above; every node of a cluster needs the same setting.
    #[arg(long, default_value = "no", value_parser = ["yes", "no"])]
    pub tls_cluster: String,
    /// Redis's switch for TLS on master-replica links. shoal's replicas are Raft peers that
    /// replicate over the peer port, which `--tls-cluster` secures, so this can only agree
    /// with it: accepted when it does (a Redis TLS config loads unchanged), refused otherwise.
    #[arg(long, value_parser = ["yes", "no"])]
    pub tls_replication: Option<String>,
    /// PEM certificate this node presents when it connects to a peer (default:
    /// `--tls-cert-file`).
    #[arg(long, requires = "tls_client_key_file")]
    pub tls_client_cert_file: Option<PathBuf>,
    /// PEM private key of `--tls-client-cert-file`.
    #[arg(long, requires = "tls_client_cert_file")]
    pub tls_client_key_file: Option<PathBuf>,
    /// A redis.conf-style file of `name value` lines; flags on the command line override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Maximum simultaneous client connections.
    #[arg(long, default_value_t = 10000)]
    pub maxclients: usize,
    /// Largest bulk string a client may send (Redis's proto-max-bulk-len).
    #[arg(long, default_value = "512mb", value_parser = parse_memory)]
    pub proto_max_bulk_len: u64,
    /// Largest unprocessed input buffered for one client before it is disconnected.
    #[arg(long, default_value = "1gb", value_parser = parse_memory)]
    pub client_query_buffer_limit: u64,
    /// Close a client idle for this many seconds (0: never); subscribers are exempt, as in
    /// Redis.
    #[arg(long, default_value_t = 0)]
    pub timeout: u64,
    /// Redis's `client-output-buffer-limit <class> <hard> <soft> <soft-seconds>` (classes
    /// `normal`, `pubsub`, `replica`; repeatable, several classes per occurrence): a client
    /// whose unsent replies reach the hard limit, or stay at the soft limit for longer than
    /// its seconds, is disconnected. Default `normal 0 0 0 replica 256mb 64mb 60 pubsub 32mb
    /// 8mb 60`. Read into `output_limits`.
    #[arg(long, num_args = 1.., action = clap::ArgAction::Append, value_name = "CLASS HARD SOFT SECONDS")]
    pub client_output_buffer_limit: Vec<String>,
    /// The output buffer limits in force (`--client-output-buffer-limit` over the defaults).
    #[arg(skip)]
    pub output_limits: OutputLimits,
    /// Log level or filter (RUST_LOG syntax, or Redis's `debug verbose notice warning
    /// nothing`; RUST_LOG itself takes precedence at start). Also `loglevel` in a config file.
    #[arg(long, default_value = "info", alias = "loglevel")]
    pub log_level: String,
    /// `text` or `json`.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Port for other nodes (Raft and forwarded commands); default: `--port` + 10000.
    #[arg(long)]
    pub cluster_port: Option<u16>,
    /// The IP other nodes and clients are told to use for this node; default: `--bind`, or
    /// 127.0.0.1 when binding to all interfaces.
    #[arg(long)]
    pub cluster_announce_ip: Option<String>,
    /// Join the cluster that the node at this cluster (peer) address belongs to, e.g.
    /// `127.0.0.1:17001`. Ignored once the data dir holds this node's identity.
    #[arg(long)]
    pub join: Option<String>,
    /// Number of shards (Raft groups) the keyspace is split into; fixed when the cluster is
    /// created (a joining node takes the cluster's value).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub shards: u32,
    /// Replicas per shard (placed on min(replicas, nodes) nodes).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=7))]
    pub replicas: u32,
    /// When the Raft log is fsynced: `always` (before a write is acknowledged), `everysec`, `no`.
    #[arg(long, default_value = "always")]
    pub appendfsync: FsyncPolicy,
    /// How a node answers a key whose shard another node leads: `proxy` forwards the command
    /// to the leader and relays the reply (any client works against any node); `redirect`
    /// answers `-MOVED slot ip:port` as Redis Cluster does. Under `proxy`, a connection that
    /// asks for the topology (`CLUSTER SLOTS|SHARDS|NODES`) is a cluster client and gets
    /// `-MOVED` too.
    #[arg(long, default_value = "proxy", value_parser = ["proxy", "redirect"])]
    pub cluster_mode: String,
    /// Seconds a node may be silent (no answer to the metadata leader) before it is marked
    /// Down and its shard replicas are re-created on the other nodes.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub node_down_after: u64,
    /// Shards the rebalancer moves to new replica sets at the same time.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub rebalance_max_moves: u64,
    /// Port of the HTTP endpoint (`/metrics`, `/healthz`, `/readyz`, `/cluster.json`, the
    /// status page at `/`); off when not given.
    #[arg(long)]
    pub http_port: Option<u16>,
    /// Log commands whose execution took at least this many microseconds in the slow log
    /// (`SLOWLOG GET`); 0 logs every command, a negative value none.
    #[arg(long, default_value_t = 10000, allow_negative_numbers = true)]
    pub slowlog_log_slower_than: i64,
    /// Entries the slow log keeps (the oldest are dropped).
    #[arg(long, default_value_t = 128)]
    pub slowlog_max_len: u64,
    /// The cluster secret: peers prove they know it (HMAC challenge-response, both ways)
    /// before any Raft or forwarded message is accepted. Every node of a cluster needs the same
    /// one; without it the cluster is open to any shoal node that can reach its peer port.
    #[arg(long, env = "SHOAL_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// A file holding the cluster secret (surrounding whitespace ignored); keeps it out of
    /// `ps` and of the config file.
    #[arg(long, conflicts_with = "cluster_secret")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Compact a replica's log into a snapshot every this many applied entries.
    #[arg(long, default_value_t = 10000, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_entries: u64,
    /// Memory this node's data may use (Redis units: 64mb, 1gb; 0: no limit), shared out
    /// equally to the shards it hosts.
    #[arg(long, default_value = "0", value_parser = parse_memory)]
    pub maxmemory: u64,
    /// What happens at `maxmemory`: noeviction, allkeys-lru|lfu|random,
    /// volatile-lru|lfu|random|ttl.
    #[arg(long, default_value = "noeviction")]
    pub maxmemory_policy: Policy,
    /// Keys sampled per eviction round (more: closer to true LRU/LFU, more CPU).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub maxmemory_samples: u32,
    /// LFU counter's logarithm factor (higher: more hits to raise it).
    #[arg(long, default_value_t = 10)]
    pub lfu_log_factor: u32,
    /// Minutes for an LFU counter to lose one without access (0: never decays).
    #[arg(long, default_value_t = 1)]
    pub lfu_decay_time: u32,
}

impl Config {
    /// The peer port: `--cluster-port`, else the client port + 10000 (0 when the client port
    /// is 0, so tests get an OS-chosen one too).
    pub fn peer_port(&self) -> u16 {
        self.cluster_port.unwrap_or(match self.port {
            0 => 0,
            p => p.saturating_add(10000),
        })
    }

    /// The IP this node advertises to clients and peers.
    pub fn announce_ip(&self) -> String {
        match &self.cluster_announce_ip {
            Some(ip) => ip.clone(),
            None if self.bind == "0.0.0.0" || self.bind == "::" => "127.0.0.1".to_owned(),
            None => self.bind.clone(),
        }
    }

    /// The cluster secret from `--cluster-secret` or `--cluster-secret-file` (`None`: open).
    pub fn cluster_secret(&self) -> Result<Option<String>, String> {
        let secret = match (&self.cluster_secret, &self.cluster_secret_file) {
            (Some(s), _) => s.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read cluster secret file {}: {e}", path.display()))?
                .trim()
                .to_owned(),
            (None, None) => return Ok(None),
        };
        if secret.is_empty() {
            return Err("the cluster secret is empty".into());
        }
        Ok(Some(secret))
    }

    /// Parses the process arguments, merging in the `--config` file if one is named.
    pub fn load() -> Result<Config, String> {
        Self::load_from(std::env::args().collect())
    }

    pub fn load_from(args: Vec<String>) -> Result<Config, String> {
        let first = Config::try_parse_from(&args).map_err(|e| e.to_string())?;
        let Some(path) = first.config.clone() else {
            return first.resolved();
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        let mut merged = vec![args[0].clone()];
        merged.extend(file_to_flags(&text).map_err(|e| format!("{}: {e}", path.display()))?);
        merged.extend(args.into_iter().skip(1));
        Config::try_parse_from(merged)
            .map_err(|e| e.to_string())?
            .resolved()
    }

    /// Settings parsed from several flag values into one (the output buffer limits), and
    /// settings checked against each other.
    fn resolved(mut self) -> Result<Config, String> {
        check_tls_replication(self.tls_replication.as_deref(), &self.tls_cluster)?;
        if !self.client_output_buffer_limit.is_empty() {
            // A value may hold several words (a quoted config line, as CONFIG REWRITE writes).
            let words: Vec<&str> = self
                .client_output_buffer_limit
                .iter()
                .flat_map(|v| v.split_whitespace())
                .collect();
            self.output_limits = OutputLimits::default()
                .with(&words)
                .map_err(|e| format!("client-output-buffer-limit: {e}"))?;
        }
        Ok(self)
    }
}

/// `tls-replication` must describe what `tls-cluster` does: replication between shoal's
/// replicas is Raft traffic on the peer port, TLS exactly when the peer port is.
fn check_tls_replication(tls_replication: Option<&str>, tls_cluster: &str) -> Result<(), String> {
    match tls_replication {
        None => Ok(()),
        Some(v) if v == tls_cluster => Ok(()),
        Some("yes") => Err(
            "tls-replication yes needs tls-cluster yes: shoal replicates over \
             the peer port (Raft between a shard's replicas), which only tls-cluster encrypts"
                .into(),
        ),
        Some(_) => Err(
            "tls-replication no cannot hold with tls-cluster yes: shoal replicates \
             over the peer port (Raft between a shard's replicas), which tls-cluster yes \
             encrypts; drop the tls-replication line"
                .into(),
        ),
    }
}

/// Turns `name value...` lines into `--name value...` flags. `#` starts a comment line.
fn file_to_flags(text: &str) -> Result<Vec<String>, String> {
    let mut flags = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words =
            split_inline_args(line.as_bytes()).map_err(|e| format!("line {}: {e}", n + 1))?;
        let mut words = words
            .iter()
            .map(|w| String::from_utf8_lossy(w).into_owned());
        let name = words.next().expect("non-empty line has a word");
        flags.push(format!("--{}", name.to_ascii_lowercase()));
        flags.extend(words);
    }
    Ok(flags)
}

/// Redis's memory units: `1k` = 1000, `1kb` = 1024, likewise m/mb, g/gb; plain bytes otherwise.
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid memory size '{s}'"))?;
    let mul: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return Err(format!("invalid memory unit in '{s}'")),
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("memory size '{s}' is too large"))
}

/// Formats bytes the way `INFO` does (`1.50M`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(&str, f64); 4] = [
        ("G", 1073741824.0),
        ("M", 1048576.0),
        ("K", 1024.0),
        ("B", 1.0),
    ];
    for (unit, size) in UNITS {
        if n as f64 >= size && size > 1.0 {
            return format!("{:.2}{unit}", n as f64 / size);
        }
    }
    format!("{n}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units_follow_redis() {
        assert_eq!(parse_memory("512mb"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_memory("1k"), Ok(1000));
        assert_eq!(parse_memory("1GB"), Ok(1 << 30));
        assert_eq!(parse_memory("100"), Ok(100));
        assert!(parse_memory("12xb").is_err());
    }

    #[test]
    fn config_file_lines_are_flags_and_the_command_line_wins() {
        let dir = std::env::temp_dir().join(format!("shoal-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shoal.conf");
        std::fs::write(
            &path,
            "# a comment\nport 7001\nmaxclients 5\nrequirepass \"s3cret pass\"\n",
        )
        .unwrap();
        let args = |extra: &[&str]| {
            let mut v = vec![
                "shoal-server".to_string(),
                "--config".into(),
                path.display().to_string(),
            ];
            v.extend(extra.iter().map(|s| s.to_string()));
            v
        };
        let c = Config::load_from(args(&[])).unwrap();
        assert_eq!((c.port, c.maxclients), (7001, 5));
        assert_eq!(c.requirepass.as_deref(), Some("s3cret pass"));
        let c = Config::load_from(args(&["--port", "7002"])).unwrap();
        assert_eq!(c.port, 7002);
        std::fs::write(
            &path,
            "client-output-buffer-limit normal 1mb 0 0\nclient-output-buffer-limit pubsub 2mb 1mb 5\ntls-cluster yes\n",
        )
        .unwrap();
        let c = Config::load_from(args(&[])).unwrap();
        assert_eq!(c.output_limits.normal.hard, 1 << 20);
        assert_eq!(c.output_limits.pubsub.soft_secs, 5);
        assert_eq!(c.tls_cluster, "yes");
        // tls-replication: accepted where it agrees with tls-cluster, refused (saying why)
        // where it would promise what the peer port does not do.
        for (text, accepted) in [
            ("tls-cluster yes\ntls-replication yes\n", true),
            ("tls-replication no\n", true),
            ("tls-replication yes\n", false),
            ("tls-cluster yes\ntls-replication no\n", false),
        ] {
            std::fs::write(&path, text).unwrap();
            match Config::load_from(args(&[])) {
                Ok(c) => assert!(accepted, "{text:?} accepted: {:?}", c.tls_replication),
                Err(e) => assert!(!accepted && e.contains("peer port"), "{text:?}: {e}"),
            }
        }
        let e = Config::load_from(vec![
            "shoal-server".into(),
            "--tls-replication".into(),
            "yes".into(),
        ])
        .unwrap_err();
        assert!(
            e.contains("tls-replication yes needs tls-cluster yes"),
            "{e}"
        );
        std::fs::write(&path, "bogus-directive 1\n").unwrap();
        assert!(Config::load_from(args(&[])).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
