//! `/metrics`: the node's state in the Prometheus / OpenMetrics text format.
//!
//! Nothing here is updated on the data path: a scrape reads the counters the node keeps anyway
//! (per-thread command counters, latency histograms, error kinds, Raft metrics of every hosted
//! group) and encodes them with `prometheus-client`'s collector interface.
//!
//! Families (all prefixed `shoal_`):
//! - `commands_total{command}`, `command_failed_total{command}`,
//!   `command_rejected_total{command}`; `errors_total{kind}` (`ERR`, `MOVED` = redirects, ...);
//!   `forwarded_requests_total` (sent to a leader on another node);
//! - `command_latency_seconds{family}`: histogram (powers of two of µs) per command family
//!   (`string`, `generic`, ...), from request to reply, so p50/p95/p99 come from
//!   `histogram_quantile`;
//! - `connected_clients`, `connections_received_total`, `rejected_connections_total`,
//!   `net_input_bytes_total`, `net_output_bytes_total`, `process_resident_memory_bytes`;
//! - per hosted group (`group`, `shard`; shard is "meta" for group 0): `shard_keys`,
//!   `shard_memory_bytes` (the replica's keyspace as `INFO memory`'s `used_memory` accounts it,
//!   the figure `maxmemory` eviction compares), `raft_term`, `raft_is_leader`, `raft_leader_id`, `raft_last_log_index`,
//!   `raft_commit_index`, `raft_applied_index`, `raft_snapshot_index`, `raft_log_entries`
//!   (entries after the snapshot), `raft_snapshot_age_seconds`,
//!   `raft_proposals_in_flight` (appended, not yet applied, on a leader), `raft_voters`;
//! - cluster: `nodes{state}`, `moves_in_flight`, `moves_pending`, `moves_done_total`,
//!   `snapshot_received_bytes_total`, `shards_without_leader`.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use shoal_protocol::COMMANDS;

use crate::cluster::meta::NodeState;
use crate::cluster::status::{ClusterSummary, GroupStatus};
use crate::commands::process_rss_bytes;
use crate::latency::{Histogram, BUCKETS};
use crate::node::{group_shard, Node};
use crate::rpc::META_GROUP;

/// The whole exposition, `# EOF` last.
pub fn render(node: &Arc<Node>) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(NodeCollector(node.clone())));
    let mut out = String::with_capacity(64 * 1024);
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

struct NodeCollector(Arc<Node>);

impl fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeCollector(node {})", self.0.id)
    }
}

impl Collector for NodeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let node = &self.0;
        encode_commands(node, &mut enc)?;
        encode_latency(node, &mut enc)?;
        encode_process(node, &mut enc)?;
        encode_groups(node, &mut enc)?;
        encode_cluster(node, &mut enc)
    }
}

type Labels = Vec<(&'static str, String)>;

fn counters<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        family
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
    }
    Ok(())
}

fn gauges<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, f64)>,
) -> fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        family.encode_family(&labels)?.encode_gauge(&v)?;
    }
    Ok(())
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

fn encode_commands(node: &Node, enc: &mut DescriptorEncoder) -> fmt::Result {
    let totals: Vec<_> = COMMANDS
        .iter()
        .map(|c| (c.name, node.stats.command(c.id)))
        .filter(|(_, t)| t.calls + t.rejected > 0)
        .collect();
    let by = |f: fn(&crate::stats::CommandTotals) -> u64| {
        totals
            .iter()
            .map(move |(name, t)| (vec![("command", name.to_string())], f(t)))
    };
    counters(
        enc,
        "shoal_commands",
        "Commands executed, per command.",
        by(|t| t.calls),
    )?;
    counters(
        enc,
        "shoal_command_failed",
        "Commands that ran and answered an error, per command.",
        by(|t| t.failed),
    )?;
    counters(
        enc,
        "shoal_command_rejected",
        "Commands refused before running (e.g. not authenticated), per command.",
        by(|t| t.rejected),
    )?;
    counters(
        enc,
        "shoal_errors",
        "Error replies by kind (the error's first word; MOVED counts redirects).",
        node.errors
            .snapshot()
            .into_iter()
            .map(|(kind, n)| (vec![("kind", kind)], n)),
    )?;
    counter(
        enc,
        "shoal_forwarded_requests",
        "Requests forwarded to the shard's leader on another node.",
        node.stats.forwarded.load(Ordering::Relaxed),
    )
}

fn encode_latency(node: &Node, enc: &mut DescriptorEncoder) -> fmt::Result {
    let mut families: Vec<(&'static str, Histogram)> = Vec::new();
    for spec in COMMANDS {
        let h = node.latency.command(spec.id);
        if h.calls() == 0 {
            continue;
        }
        let family = spec.group.name();
        match families.iter_mut().find(|(f, _)| *f == family) {
            Some((_, total)) => total.add(&h),
            None => families.push((family, h)),
        }
    }
    let mut metric = enc.encode_descriptor(
        "shoal_command_latency_seconds",
        "Request latency (arrival to reply, including Raft commit and forwarding) per command family.",
        None,
        MetricType::Histogram,
    )?;
    for (family, h) in families {
        // Per-bucket counts: the encoder makes them cumulative. The last bucket also holds
        // everything slower, so it is `+Inf`.
        let buckets: Vec<(f64, u64)> = (0..BUCKETS)
            .map(|i| {
                let bound = if i == BUCKETS - 1 {
                    f64::INFINITY
                } else {
                    Histogram::bound_usec(i) as f64 / 1e6
                };
                (bound, h.counts[i])
            })
            .collect();
        metric
            .encode_family(&vec![("family", family.to_owned())])?
            .encode_histogram::<NoLabelSet>(h.sum_usec as f64 / 1e6, h.calls(), &buckets, None)?;
    }
    Ok(())
}

fn encode_process(node: &Node, enc: &mut DescriptorEncoder) -> fmt::Result {
    let stats = &node.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    gauge(
        enc,
        "shoal_connected_clients",
        "Client connections open now.",
        node.clients.connected() as f64,
    )?;
    counter(
        enc,
        "shoal_connections_received",
        "Client connections accepted.",
        load(&stats.connections_received),
    )?;
    counter(
        enc,
        "shoal_rejected_connections",
        "Client connections refused (maxclients).",
        load(&stats.rejected_connections),
    )?;
    counter(
        enc,
        "shoal_net_input_bytes",
        "Bytes read from clients.",
        load(&stats.net_input_bytes),
    )?;
    counter(
        enc,
        "shoal_net_output_bytes",
        "Bytes written to clients.",
        load(&stats.net_output_bytes),
    )?;
    gauge(
        enc,
        "shoal_process_resident_memory_bytes",
        "Resident set size of the process.",
        process_rss_bytes() as f64,
    )?;
    gauge(
        enc,
        "shoal_uptime_seconds",
        "Seconds since the process started.",
        node.started.elapsed().as_secs_f64(),
    )
}

/// One hosted group's labels and numbers.
struct GroupRow {
    labels: Labels,
    status: GroupStatus,
    keys: usize,
    memory: usize,
    snapshot_age: Option<f64>,
    is_leader: bool,
}

fn encode_groups(node: &Node, enc: &mut DescriptorEncoder) -> fmt::Result {
    let rows: Vec<GroupRow> = node
        .replicas()
        .iter()
        .map(|r| {
            let shard = if r.group == META_GROUP {
                "meta".to_owned()
            } else {
                group_shard(r.group).to_string()
            };
            GroupRow {
                labels: vec![("group", r.group.to_string()), ("shard", shard)],
                status: GroupStatus::of(r),
                keys: r.keyspace().len(),
                memory: r.keyspace().used_memory(),
                snapshot_age: newest_snapshot_age(&r.dir().join("snapshots")),
                is_leader: r.is_leader(),
            }
        })
        .collect();
    let mut per = |name: &str, help: &str, f: &dyn Fn(&GroupRow) -> Option<f64>| {
        gauges(
            enc,
            name,
            help,
            rows.iter()
                .filter_map(|r| f(r).map(|v| (r.labels.clone(), v))),
        )
    };
    per(
        "shoal_shard_keys",
        "Keys in this node's replica of the group (expired keys not yet removed included).",
        &|r| Some(r.keys as f64),
    )?;
    per(
        "shoal_shard_memory_bytes",
        "Bytes of data in this node's replica of the group (keys, values, tables), as \
         INFO memory's used_memory and maxmemory eviction account them.",
        &|r| Some(r.memory as f64),
    )?;
    per("shoal_raft_term", "Current Raft term.", &|r| {
        Some(r.status.term as f64)
    })?;
    per(
        "shoal_raft_is_leader",
        "1 if this node leads the group.",
        &|r| Some(r.is_leader as u8 as f64),
    )?;
    per(
        "shoal_raft_leader_id",
        "Node id of the group's leader as this replica knows it (0: none).",
        &|r| Some(r.status.leader.unwrap_or(0) as f64),
    )?;
    per(
        "shoal_raft_last_log_index",
        "Index of the last entry in this replica's log.",
        &|r| Some(r.status.last_log as f64),
    )?;
    per(
        "shoal_raft_commit_index",
        "Highest index this replica knows to be committed.",
        &|r| Some(r.status.committed as f64),
    )?;
    per(
        "shoal_raft_applied_index",
        "Highest index applied to this replica's keyspace.",
        &|r| Some(r.status.applied as f64),
    )?;
    per(
        "shoal_raft_snapshot_index",
        "Last index covered by this replica's snapshot.",
        &|r| Some(r.status.snapshot as f64),
    )?;
    per(
        "shoal_raft_log_entries",
        "Entries in the log after the snapshot (what a restart replays).",
        &|r| Some(r.status.last_log.saturating_sub(r.status.snapshot) as f64),
    )?;
    per(
        "shoal_raft_snapshot_age_seconds",
        "Seconds since this replica's newest snapshot was written.",
        &|r| r.snapshot_age,
    )?;
    per(
        "shoal_raft_proposals_in_flight",
        "On a leader: entries appended and not yet applied (proposals awaiting commit).",
        &|r| {
            r.is_leader
                .then(|| r.status.last_log.saturating_sub(r.status.applied) as f64)
        },
    )?;
    per(
        "shoal_raft_voters",
        "Voters in the group's membership.",
        &|r| Some(r.status.voters.len() as f64),
    )
}

fn newest_snapshot_age(dir: &std::path::Path) -> Option<f64> {
    let newest = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max()?;
    Some(
        SystemTime::now()
            .duration_since(newest)
            .unwrap_or_default()
            .as_secs_f64(),
    )
}

fn encode_cluster(node: &Node, enc: &mut DescriptorEncoder) -> fmt::Result {
    let s = ClusterSummary::of(node);
    let states = [
        (NodeState::Up, s.nodes_up),
        (NodeState::Down, s.nodes_down),
        (NodeState::Leaving, s.nodes_leaving),
    ];
    gauges(
        enc,
        "shoal_nodes",
        "Nodes of the cluster by state, as group 0 records them.",
        states
            .iter()
            .map(|(state, n)| (vec![("state", state.name().to_owned())], *n as f64)),
    )?;
    gauge(
        enc,
        "shoal_shards_without_leader",
        "Shards whose leader this node does not know.",
        (s.shards - s.shards_with_leader) as f64,
    )?;
    gauge(
        enc,
        "shoal_moves_in_flight",
        "Rebalance moves being carried out.",
        s.moves_in_flight as f64,
    )?;
    gauge(
        enc,
        "shoal_moves_pending",
        "Shards whose replicas differ from the placement and are not moving yet.",
        s.moves_pending as f64,
    )?;
    counter(
        enc,
        "shoal_moves_done",
        "Rebalance moves finished since the cluster was created.",
        s.moves_done,
    )?;
    counter(
        enc,
        "shoal_snapshot_received_bytes",
        "Snapshot bytes received (new replicas seeded on this node).",
        s.snapshot_bytes_received,
    )
}
