//! `MEMORY USAGE|STATS|HELP` and `OBJECT FREQ|IDLETIME|HELP`: what keys cost and how they are
//! used, as eviction sees them. None of these counts as an access of the key.

use shoal_protocol::Frame;

use super::args::{int, is};
use super::client::help_reply;
use super::Ctx;
use crate::error::{CommandError, CommandResult};
use crate::node::Node;
use crate::rpc::META_GROUP;
use crate::store::access::lru_idle_ms;
use crate::store::Entry;

/// Redis's replies when the policy does not track what `OBJECT` asks for.
const NOT_LFU: &str = "An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.";
const NOT_LRU: &str = "An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.";

/// Runs `f` on the live entry of the command's key (argument 2), without touching it.
fn with_entry(ctx: &Ctx<'_>, f: impl FnOnce(&Entry) -> Frame) -> Frame {
    let key = ctx.arg(2);
    let slot = ctx.keyspace().read_key_slot(key);
    slot.peek(key, ctx.now_ms).map_or(Frame::Null, f)
}

/// `MEMORY USAGE key [SAMPLES count]`: the entry's allocation plus its table cell. `SAMPLES`
/// is accepted and has nothing to sample (values are not nested yet).
pub fn usage(ctx: &mut Ctx<'_>) -> CommandResult {
    match &ctx.args[3..] {
        [] => {}
        [opt, n] if is(opt, "samples") => {
            int(n)?;
        }
        _ => return Err(CommandError::Syntax),
    }
    Ok(with_entry(ctx, |e| {
        Frame::Integer((e.mem_usage() + std::mem::size_of::<Entry>()) as i64)
    }))
}

/// What the node's memory holds, as accounted.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryReport {
    /// Keys, values and tables of every shard replica hosted here (the metadata group's records
    /// are not user data).
    pub dataset: u64,
    pub keys: u64,
    /// Every hosted group's unpurged Raft log, kept in memory (the analogue of Redis's
    /// replication backlog).
    pub raft_log: u64,
    /// Copy-on-write images held by snapshot builds in progress.
    pub snapshot_builds: u64,
}

impl MemoryReport {
    /// Everything accounted outside the dataset.
    pub fn overhead(&self) -> u64 {
        self.raft_log + self.snapshot_builds
    }

    /// `used_memory`: dataset and overhead.
    pub fn total(&self) -> u64 {
        self.dataset + self.overhead()
    }
}

/// The node's accounted memory: see [`MemoryReport`].
pub fn report(node: &Node) -> MemoryReport {
    let mut report = MemoryReport::default();
    for r in node.replicas() {
        report.raft_log += r.log_memory() as u64;
        report.snapshot_builds += r.snapshot_memory() as u64;
        if r.group != META_GROUP {
            let ks = r.keyspace();
            report.dataset += ks.used_memory() as u64;
            report.keys += ks.len() as u64;
        }
    }
    report
}

/// Data memory of the shards this node leads: what its `maxmemory` share is held against.
pub fn led_dataset(node: &Node) -> u64 {
    node.replicas()
        .iter()
        .filter(|r| r.group != META_GROUP && r.is_leader())
        .map(|r| r.keyspace().used_memory() as u64)
        .sum()
}

/// `MEMORY STATS`: a subset of Redis's fields, for the whole node.
pub fn stats(ctx: &mut Ctx<'_>) -> CommandResult {
    let report = report(ctx.node);
    let total = crate::alloc::allocated().map_or(report.total(), |n| n as u64);
    let keys = report.keys;
    let rss = super::info::process_rss_bytes();
    let int = |n: u64| Frame::Integer(n as i64);
    let fields = [
        ("total.allocated", int(total)),
        ("replication.backlog", int(report.raft_log)),
        ("snapshot.builds", int(report.snapshot_builds)),
        ("overhead.total", int(report.overhead())),
        ("keys.count", int(keys)),
        (
            "keys.bytes-per-key",
            // What the data and its overhead cost per key (the process's fixed start-up
            // allocations left out, as Redis leaves out `startup.allocated`).
            int(report.total().checked_div(keys).unwrap_or(0)),
        ),
        ("dataset.bytes", int(report.dataset)),
        ("rss.bytes", int(rss)),
        (
            "fragmentation",
            Frame::Double(rss as f64 / total.max(1) as f64),
        ),
        ("fragmentation.bytes", int(rss.saturating_sub(total))),
        ("maxmemory", int(ctx.node.memory.maxmemory())),
    ];
    Ok(Frame::Map(
        fields
            .into_iter()
            .map(|(k, v)| (Frame::bulk(k), v))
            .collect(),
    ))
}

pub fn help(ctx: &mut Ctx<'_>) -> CommandResult {
    Ok(help_reply(
        ctx.spec.name,
        &[
            "STATS",
            "    Return information about the memory usage of the server.",
            "USAGE <key> [SAMPLES <count>]",
            "    Return memory in bytes used by <key> and its value.",
        ],
    ))
}

/// `OBJECT FREQ key`: the LFU counter, after decay.
pub fn freq(ctx: &mut Ctx<'_>) -> CommandResult {
    let tracking = &ctx.node.memory.tracking;
    let now = ctx.now_ms;
    // Redis looks the key up first: a missing key is nil under any policy.
    let counter = with_entry(ctx, |e| {
        Frame::Integer(tracking.lfu_counter(e.access(), now) as i64)
    });
    if counter != Frame::Null && !tracking.is_lfu() {
        return Err(CommandError::Err(NOT_LFU.into()));
    }
    Ok(counter)
}

/// `OBJECT IDLETIME key`: seconds since the key was last accessed.
pub fn idletime(ctx: &mut Ctx<'_>) -> CommandResult {
    let now = ctx.now_ms;
    // As `freq`: a missing key is nil before the policy is looked at.
    let idle = with_entry(ctx, |e| {
        Frame::Integer((lru_idle_ms(e.access(), now) / 1000) as i64)
    });
    if idle != Frame::Null && ctx.node.memory.tracking.is_lfu() {
        return Err(CommandError::Err(NOT_LRU.into()));
    }
    Ok(idle)
}
