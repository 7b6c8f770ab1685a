//! `CLUSTER` subcommands: the cluster's state as this node sees it.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use shoal_protocol::{key_slot, CommandId, CommandSpec, Frame, SLOT_COUNT};

use super::client::{help_reply, text_reply};
use super::Ctx;
use crate::cluster::meta::NodeState;
use crate::cluster::rebalance::set_state;
use crate::cluster::redis_view::{redis_node_id, redis_shard_id, ClusterView};
use crate::cluster::status::ClusterSummary;
use crate::error::{CommandError, CommandResult};
use crate::node::{group_shard, Node};
use crate::rpc::META_GROUP;

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
    ];
    let mut out = String::new();
    for (k, v) in lines.into_iter().chain(s.shoal_fields()) {
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
        &[
            "COUNTKEYSINSLOT <slot>",
            "    Return the number of keys in <slot>.",
            "GETKEYSINSLOT <slot> <count>",
            "    Return key names stored by current node in a slot.",
            "FORGET <node-id>",
            "    Drain a node: its shard replicas move to the other nodes, then it leaves the",
            "    cluster and its process exits. <node-id> is its CLUSTER NODES id or shoal id.",
            "INFO",
            "    Return information about the cluster.",
            "KEYSLOT <key>",
            "    Return the hash slot for <key>.",
            "LINKS",
            "    Return information about all network links between this node and its peers.",
            "MYID",
            "    Return the node id.",
            "MYSHARDID",
            "    Return the node's shard id.",
            "NODES",
            "    Return cluster configuration seen by node.",
            "SHARDS",
            "    Return information about slot range mappings and the nodes associated with them.",
            "SLOTS",
            "    Return information about slots range mappings.",
        ],
    ))
}

/// `CLUSTER SLOTS`. Asking for the topology marks the connection a cluster client: from now
/// on keys led elsewhere get `-MOVED`.
pub fn slots(ctx: &mut Ctx<'_>) -> CommandResult {
    ctx.session.redirect = true;
    Ok(ClusterView::of(ctx.node).slots(ctx.session.handle.tls))
}

/// `CLUSTER SHARDS` (marks the connection a cluster client, as `CLUSTER SLOTS` does).
pub fn shards(ctx: &mut Ctx<'_>) -> CommandResult {
    ctx.session.redirect = true;
    Ok(ClusterView::of(ctx.node).shards())
}

/// `CLUSTER NODES` (marks the connection a cluster client, as `CLUSTER SLOTS` does).
pub fn nodes(ctx: &mut Ctx<'_>) -> CommandResult {
    ctx.session.redirect = true;
    let text = ClusterView::of(ctx.node).nodes_text(ctx.now_ms, ctx.session.handle.tls);
    Ok(text_reply(ctx, text))
}

pub fn myid(ctx: &mut Ctx<'_>) -> CommandResult {
    Ok(Frame::Bulk(Bytes::from(redis_node_id(ctx.node.id))))
}

/// `CLUSTER MYSHARDID`: a shoal node belongs to several shards; this names the first it
/// leads, else the first it replicates.
pub fn myshardid(ctx: &mut Ctx<'_>) -> CommandResult {
    let replicas: Vec<_> = ctx
        .node
        .replicas()
        .into_iter()
        .filter(|r| r.group != META_GROUP)
        .collect();
    let shard = replicas
        .iter()
        .find(|r| r.is_leader())
        .or(replicas.first())
        .map_or(0, |r| group_shard(r.group));
    Ok(Frame::Bulk(Bytes::from(redis_shard_id(shard))))
}

pub fn keyslot(ctx: &mut Ctx<'_>) -> CommandResult {
    Ok(Frame::Integer(key_slot(ctx.arg(2)) as i64))
}

/// The slot argument of `COUNTKEYSINSLOT`/`GETKEYSINSLOT`.
pub fn slot_arg(arg: &[u8]) -> Result<u16, CommandError> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|s| (0..SLOT_COUNT as i64).contains(s))
        .map(|s| s as u16)
        .ok_or_else(|| CommandError::Err("Invalid slot".into()))
}

/// `CLUSTER COUNTKEYSINSLOT slot` (runs on the slot's shard leader).
pub fn countkeysinslot(ctx: &mut Ctx<'_>) -> CommandResult {
    let slot = slot_arg(ctx.arg(2))?;
    let now = ctx.now_ms;
    let table = ctx.keyspace().read_slot(slot);
    let n = table.table().iter().filter(|e| !e.is_expired(now)).count();
    Ok(Frame::Integer(n as i64))
}

/// `CLUSTER GETKEYSINSLOT slot count` (runs on the slot's shard leader).
pub fn getkeysinslot(ctx: &mut Ctx<'_>) -> CommandResult {
    let slot = slot_arg(ctx.arg(2))?;
    let count = std::str::from_utf8(ctx.arg(3))
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .ok_or_else(|| CommandError::Err("Invalid number of keys".into()))?;
    let now = ctx.now_ms;
    let table = ctx.keyspace().read_slot(slot);
    let keys = table
        .table()
        .iter()
        .filter(|e| !e.is_expired(now))
        .take(count as usize)
        .map(|e| Frame::Bulk(Bytes::copy_from_slice(e.key())))
        .collect();
    Ok(Frame::Array(keys))
}

/// `CLUSTER LINKS`: minimal; peer connections are not listed yet.
pub fn links(_ctx: &mut Ctx<'_>) -> CommandResult {
    Ok(Frame::Array(Vec::new()))
}

pub fn readonly(ctx: &mut Ctx<'_>) -> CommandResult {
    ctx.session.readonly = true;
    Ok(Frame::ok())
}

pub fn readwrite(ctx: &mut Ctx<'_>) -> CommandResult {
    ctx.session.readonly = false;
    Ok(Frame::ok())
}

/// `ASKING`: accepted. shoal never answers `-ASK` (slots do not migrate between shards), so
/// there is nothing to allow.
pub fn asking(_ctx: &mut Ctx<'_>) -> CommandResult {
    Ok(Frame::ok())
}

/// The node-level commands that must write the metadata group, as jobs for the pipeline to
/// await in request order (`None` for every other command).
pub fn metadata_job(
    node: &Arc<Node>,
    spec: &CommandSpec,
    args: &[Bytes],
) -> Option<BoxFuture<'static, Frame>> {
    match spec.id {
        CommandId::ClusterForget => Some(forget(node.clone(), args[2].clone()).boxed()),
        CommandId::AclSetuser => Some(super::acl::setuser(node.clone(), args.to_vec()).boxed()),
        CommandId::AclDeluser => Some(super::acl::deluser(node.clone(), args.to_vec()).boxed()),
        _ => None,
    }
}

/// `CLUSTER FORGET <node-id>`: starts draining a node (any node, this one included). Its
/// replicas are moved to the other nodes; then it is marked Left, exits, and leaves group 0.
/// Unlike Redis, where FORGET only edits the receiving node's table, this is cluster-wide.
async fn forget(node: Arc<Node>, which: Bytes) -> Frame {
    let topology = node.topology();
    let which = String::from_utf8_lossy(&which);
    let Some(id) = topology
        .nodes
        .keys()
        .copied()
        .find(|&id| which.eq_ignore_ascii_case(&redis_node_id(id)) || which == id.to_string())
    else {
        return CommandError::Err(format!("Unknown node {which}")).into();
    };
    match topology.state(id) {
        NodeState::Leaving | NodeState::Left => return Frame::ok(),
        NodeState::Up | NodeState::Down => {}
    }
    if topology.up_nodes().iter().all(|&n| n == id) {
        return CommandError::Err("cannot drain the last node of the cluster".into()).into();
    }
    match set_state(&node, id, NodeState::Leaving).await {
        Ok(()) => {
            tracing::info!(node = id, "draining node (CLUSTER FORGET)");
            Frame::ok()
        }
        Err(e) => CommandError::TryAgain(format!("could not record the drain: {e}")).into(),
    }
}
