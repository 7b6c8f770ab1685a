//! `CLUSTER` subcommands: the cluster's state as this node sees it.

use super::client::{help_reply, text_reply};
use super::Ctx;
use crate::cluster::status::ClusterSummary;
use crate::error::CommandResult;

/// `CLUSTER INFO`: Redis Cluster's fields, from the shards' Raft groups. Every shard is a
/// Redis "shard" (its leader the master); `cluster_state:ok` once every shard has a leader and
/// its full replica set. shoal's own fields follow, prefixed `shoal_`.
pub fn info(ctx: &mut Ctx<'_>) -> CommandResult {
    let node = ctx.node;
    let s = ClusterSummary::of(node);
    let slots_ok: usize = node
        .ring
        .slot_counts()
        .iter()
        .filter(|(shard, _)| node.leader_of(crate::node::shard_group(*shard)).is_some())
        .map(|(_, n)| n)
        .sum();
    let epoch = node
        .replica(crate::rpc::META_GROUP)
        .map_or(0, |r| r.metrics().current_term);
    let lines = [
        ("cluster_enabled", "1".to_owned()),
        (
            "cluster_state",
            if s.ok() { "ok" } else { "fail" }.to_owned(),
        ),
        ("cluster_slots_assigned", crate::cluster::SLOTS.to_string()),
        ("cluster_slots_ok", slots_ok.to_string()),
        ("cluster_slots_pfail", "0".to_owned()),
        (
            "cluster_slots_fail",
            (crate::cluster::SLOTS - slots_ok).to_string(),
        ),
        ("cluster_known_nodes", s.known_nodes.to_string()),
        ("cluster_size", s.shards.to_string()),
        ("cluster_current_epoch", epoch.to_string()),
        ("cluster_my_epoch", epoch.to_string()),
        ("shoal_node_id", node.id.to_string()),
        ("shoal_shards_hosted", s.shards_hosted.to_string()),
        ("shoal_shards_led", s.shards_led.to_string()),
        (
            "shoal_shards_fully_replicated",
            s.shards_fully_replicated.to_string(),
        ),
    ];
    let mut out = String::new();
    for (k, v) in lines {
        out.push_str(k);
        out.push(':');
        out.push_str(&v);
        out.push_str("\r\n");
    }
    Ok(text_reply(ctx, out))
}

pub fn help(ctx: &mut Ctx<'_>) -> CommandResult {
    Ok(help_reply(
        ctx.spec.name,
        &["INFO", "    Return information about the cluster."],
    ))
}
