//! `INFO [section ...]`, in Redis's `field:value` format.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use shoal_protocol::COMMANDS;

use super::args::text;
use super::client::text_reply;
use super::connection::REDIS_VERSION;
use super::Ctx;
use crate::cluster::status::{write_digest_section, write_raft_section, ClusterSummary};
use crate::config::human_bytes;
use crate::error::CommandResult;
use crate::node::Node;
use crate::rpc::META_GROUP;

/// Sections shown by plain `INFO`, in order.
const DEFAULT: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "raft",
    "cpu",
    "cluster",
    "keyspace",
];
/// Extra sections `INFO all` adds.
const EXTRA: &[&str] = &["commandstats", "errorstats", "latencystats"];
/// Sections shown only when named: costly (`digest` reads every key).
const ON_REQUEST: &[&str] = &["digest"];

pub fn info(ctx: &mut Ctx<'_>) -> CommandResult {
    let asked: Vec<String> = ctx.args[1..]
        .iter()
        .map(|a| text(a).to_ascii_lowercase())
        .collect();
    let mut sections: Vec<&str> = Vec::new();
    if asked.is_empty() || asked.iter().any(|a| a == "default") {
        sections.extend(DEFAULT);
    }
    if asked.iter().any(|a| a == "all" || a == "everything") {
        sections.extend(DEFAULT.iter().chain(EXTRA));
    }
    for a in &asked {
        if let Some(s) = DEFAULT
            .iter()
            .chain(EXTRA)
            .chain(ON_REQUEST)
            .find(|s| **s == a.as_str())
        {
            sections.push(s);
        }
    }
    let mut seen = std::collections::HashSet::new();
    sections.retain(|s| seen.insert(*s));
    let mut out = String::new();
    for (i, s) in sections.iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        section(ctx.node, s, &mut out);
    }
    // Like Redis: a verbatim string (`=...txt:`) in RESP3, a bulk string in RESP2.
    Ok(text_reply(ctx, out))
}

fn section(node: &Node, name: &str, out: &mut String) {
    let title = {
        let mut t = name.to_owned();
        t[..1].make_ascii_uppercase();
        t
    };
    let _ = write!(out, "# {}\r\n", if name == "cpu" { "CPU" } else { &title });
    if name == "raft" {
        return write_raft_section(node, out);
    }
    if name == "digest" {
        return write_digest_section(node, out);
    }
    let mut field = |k: &str, v: &dyn std::fmt::Display| {
        let _ = write!(out, "{k}:{v}\r\n");
    };
    let stats = &node.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    match name {
        "server" => {
            let config = node.config.read();
            let uptime = node.started.elapsed().as_secs();
            field("redis_version", &REDIS_VERSION);
            field("shoal_version", &env!("CARGO_PKG_VERSION"));
            field("redis_mode", &"standalone");
            field("os", &std::env::consts::OS);
            field("arch_bits", &64);
            field("multiplexing_api", &"epoll");
            field("process_id", &std::process::id());
            field("run_id", &node.run_id);
            field(
                "tcp_port",
                &node.client_addr.read().map_or(config.port, |a| a.port()),
            );
            if let Some(http) = *node.http_addr.read() {
                field("shoal_http_port", &http.port());
            }
            field("server_time_usec", &(crate::store::now_ms() * 1000));
            field("uptime_in_seconds", &uptime);
            field("uptime_in_days", &(uptime / 86400));
            field("hz", &10);
            field(
                "executable",
                &std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            );
            field(
                "config_file",
                &config
                    .config
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            );
        }
        "clients" => {
            field("connected_clients", &node.clients.connected());
            field("maxclients", &node.config.read().maxclients);
            field("blocked_clients", &node.clients.blocked());
            // Blocking commands waiting in the shards this node leads, wherever their clients
            // are connected (forwarded ones included).
            let waiting: usize = node.replicas().iter().map(|r| r.waiters.len()).sum();
            field("shoal_blocked_waiters", &waiting);
        }
        "memory" => {
            // `used_memory` is the allocator's count of bytes handed out, as in Redis (see
            // `crate::alloc`); `used_memory_dataset` is the data of every hosted replica as
            // accounted (keys, values, per-key overhead, tables), the figure eviction holds
            // against `maxmemory`; the overhead named here is what grows with the write load
            // (the in-memory Raft logs, snapshot builds' copy-on-write images). Without the
            // counting allocator (tests), `used_memory` is dataset plus that overhead.
            let rss = process_rss_bytes();
            let report = super::memory::report(node);
            let used = crate::alloc::allocated().map_or(report.total(), |n| n as u64);
            let max = node.memory.maxmemory();
            field("used_memory", &used);
            field("used_memory_human", &human_bytes(used));
            field("used_memory_rss", &rss);
            field("used_memory_rss_human", &human_bytes(rss));
            field("allocator_allocated", &used);
            field("used_memory_overhead", &report.overhead());
            field("used_memory_dataset", &report.dataset);
            field("mem_replication_backlog", &report.raft_log);
            field("shoal_snapshot_build_memory", &report.snapshot_builds);
            field("maxmemory", &max);
            field("maxmemory_human", &human_bytes(max));
            field("maxmemory_policy", &node.memory.policy());
            field(
                "mem_fragmentation_ratio",
                &format!("{:.2}", rss as f64 / used.max(1) as f64),
            );
            field("shoal_used_memory_led", &super::memory::led_dataset(node));
            field(
                "shoal_maxmemory_per_shard",
                &node.memory.shard_budget().unwrap_or(0),
            );
        }
        "persistence" => {
            field("loading", &0);
            field("rdb_changes_since_last_save", &0);
            field("aof_enabled", &0);
        }
        "stats" => {
            field(
                "total_connections_received",
                &load(&stats.connections_received),
            );
            field("total_commands_processed", &stats.commands_processed());
            field("total_net_input_bytes", &load(&stats.net_input_bytes));
            field("total_net_output_bytes", &load(&stats.net_output_bytes));
            field("rejected_connections", &load(&stats.rejected_connections));
            let expired: u64 = node.replicas().iter().map(|r| r.expired_keys()).sum();
            field("expired_keys", &expired);
            let evicted: u64 = node.replicas().iter().map(|r| r.evicted_keys()).sum();
            field("evicted_keys", &evicted);
            field("keyspace_hits", &stats.keyspace_hits());
            field("keyspace_misses", &stats.keyspace_misses());
            field("total_error_replies", &stats.error_replies());
            field("protocol_errors", &load(&stats.protocol_errors));
            field(
                "client_query_buffer_limit_disconnections",
                &load(&stats.query_buffer_limit_disconnections),
            );
            field(
                "client_output_buffer_limit_disconnections",
                &load(&stats.output_buffer_limit_disconnections),
            );
        }
        "replication" => {
            // Per shard, this node is a master where it leads and a replica elsewhere; the
            // whole picture is in the Raft section.
            let summary = ClusterSummary::of(node);
            let role = if summary.shards_led > 0 {
                "master"
            } else {
                "slave"
            };
            field("role", &role);
            field("connected_slaves", &summary.known_nodes.saturating_sub(1));
            field("shoal_shards_led", &summary.shards_led);
            field("shoal_shards_hosted", &summary.shards_hosted);
        }

        "cluster" => {
            field("cluster_enabled", &1);
            for (k, v) in ClusterSummary::of(node).shoal_fields() {
                field(k, &v);
            }
        }
        "cpu" => {
            let (user, sys) = process_cpu_seconds();
            field("used_cpu_sys", &format!("{sys:.6}"));
            field("used_cpu_user", &format!("{user:.6}"));
        }
        "keyspace" => {
            // Keys of the shards this node leads, as a Redis Cluster master reports its own.
            let (keys, expires) = node
                .replicas()
                .iter()
                .filter(|r| r.group != META_GROUP && r.is_leader())
                .fold((0, 0), |(k, e), r| {
                    (k + r.keyspace().len(), e + r.keyspace().volatile_len())
                });
            if keys > 0 {
                field("db0", &format!("keys={keys},expires={expires},avg_ttl=0"));
            }
        }
        "commandstats" => {
            for spec in COMMANDS {
                let t = stats.command(spec.id);
                if t.calls == 0 && t.rejected == 0 {
                    continue;
                }
                field(
                    &format!("cmdstat_{}", spec.name),
                    &format!(
                        "calls={},usec={},usec_per_call={:.2},rejected_calls={},failed_calls={}",
                        t.calls,
                        t.usec,
                        t.usec as f64 / t.calls.max(1) as f64,
                        t.rejected,
                        t.failed
                    ),
                );
            }
        }
        "errorstats" => {
            for (kind, count) in node.errors.snapshot() {
                field(&format!("errorstat_{kind}"), &format!("count={count}"));
            }
        }
        "latencystats" => {
            // From request to reply (Raft commit and forwarding included), bucket bounds.
            for spec in COMMANDS {
                let h = node.latency.command(spec.id);
                if h.calls() == 0 {
                    continue;
                }
                let p = |q| h.percentile_usec(q) as f64;
                field(
                    &format!("latency_percentiles_usec_{}", spec.name),
                    &format!("p50={:.3},p99={:.3},p99.9={:.3}", p(50.0), p(99.0), p(99.9)),
                );
            }
        }
        _ => {}
    }
}

/// Resident set size from /proc (0 where /proc is not available).
pub fn process_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// User and system CPU seconds of this process, from /proc.
fn process_cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    (ticks(11), ticks(12))
}
