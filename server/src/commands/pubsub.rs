//! `SUBSCRIBE UNSUBSCRIBE PSUBSCRIBE PUNSUBSCRIBE PUBLISH PUBSUB SSUBSCRIBE SUNSUBSCRIBE
//! SPUBLISH`. Delivery is `crate::pubsub`'s; these run on the client's node, never through Raft.
//!
//! `PUBLISH` (and `SPUBLISH`) reach subscribers on every node: delivered here, then sent once
//! to each other node. The reply counts this node's receivers, as in Redis Cluster, and
//! `PUBSUB CHANNELS|NUMSUB|NUMPAT|SHARDCHANNELS|SHARDNUMSUB` describe this node, as Redis
//! Cluster's nodes do. Shard channels route by slot: a Redis Cluster client (redirect mode)
//! gets `-MOVED` to the slot's leader for `SSUBSCRIBE`/`SPUBLISH`.

use std::time::Duration;

use bytes::Bytes;
use shoal_protocol::{key_slot, CommandId, Frame, Version};

use super::Ctx;
use crate::error::{CommandError, CommandResult};
use crate::node::shard_group;
use crate::pubsub::{several, Kind};
use crate::rpc::PeerRequest;

/// How long a node waits for a peer to take a published message (it never retries).
const FAN_OUT_TIMEOUT: Duration = Duration::from_secs(2);

/// Commands a RESP2 connection may send while subscribed.
pub fn allowed_while_subscribed(id: CommandId) -> bool {
    use CommandId::*;
    matches!(
        id,
        Subscribe
            | Unsubscribe
            | Psubscribe
            | Punsubscribe
            | Ssubscribe
            | Sunsubscribe
            | Ping
            | Quit
            | Reset
    )
}

/// Redis's error for anything else.
pub fn not_allowed_while_subscribed(name: &str) -> Frame {
    Frame::error(format!(
        "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
    ))
}

fn confirmation(word: &'static str, name: Frame, count: usize) -> Frame {
    Frame::Push(vec![Frame::bulk(word), name, Frame::Integer(count as i64)])
}

pub fn subscribe(ctx: &mut Ctx<'_>, kind: Kind) -> CommandResult {
    if kind == Kind::Shard {
        shard_route(ctx)?;
    }
    let (word, _) = kind.words();
    let mut replies = Vec::new();
    for name in &ctx.args[1..] {
        let count = ctx
            .session
            .pubsub
            .subscribe(kind, name)
            .ok_or_else(|| CommandError::Err("pub/sub needs a client connection".into()))?;
        replies.push(confirmation(word, Frame::Bulk(name.clone()), count));
    }
    Ok(several(replies))
}

pub fn unsubscribe(ctx: &mut Ctx<'_>, kind: Kind) -> CommandResult {
    let (_, word) = kind.words();
    let names: Vec<Bytes> = match &ctx.args[1..] {
        [] => ctx.session.pubsub.list(kind),
        names => names.to_vec(),
    };
    let subs = &mut ctx.session.pubsub;
    let mut replies: Vec<Frame> = names
        .iter()
        .map(|name| {
            let count = subs.unsubscribe(kind, name);
            confirmation(word, Frame::Bulk(name.clone()), count)
        })
        .collect();
    if replies.is_empty() {
        let count = subs.count(kind);
        replies.push(confirmation(word, Frame::Null, count));
    }
    Ok(several(replies))
}

pub fn publish(ctx: &mut Ctx<'_>, shard: bool) -> CommandResult {
    if shard {
        shard_route(ctx)?;
    }
    let (channel, message) = (ctx.arg(1).clone(), ctx.arg(2).clone());
    let receivers = ctx.node.pubsub.deliver(&channel, &message, shard);
    fan_out(ctx, channel, message, shard);
    Ok(Frame::Integer(receivers as i64))
}

/// Sends a published message once to every other node; nothing waits for it.
fn fan_out(ctx: &Ctx<'_>, channel: Bytes, message: Bytes, shard: bool) {
    let node = ctx.node;
    for (&id, _) in node
        .topology()
        .nodes
        .iter()
        .filter(|(&id, _)| id != node.id)
    {
        let Some(info) = node.node_info(id) else {
            continue;
        };
        let peer = node.pool.client(id, &info);
        let request = PeerRequest::Publish {
            channel: channel.clone(),
            message: message.clone(),
            shard,
        };
        tokio::spawn(async move {
            if let Err(e) = peer.request(0, request, FAN_OUT_TIMEOUT).await {
                tracing::debug!(node = id, error = %e, "published message not delivered");
            }
        });
    }
}

/// Shard channels follow their slot: all of a request's in one slot, and a Redis Cluster
/// client is sent to the slot's leader.
fn shard_route(ctx: &Ctx<'_>) -> Result<(), CommandError> {
    let Some(first) = ctx.args.get(1) else {
        return Ok(());
    };
    let slot = key_slot(first);
    let last = if ctx.spec.id == CommandId::Spublish {
        2
    } else {
        ctx.args.len()
    };
    if ctx.args[1..last].iter().any(|c| key_slot(c) != slot) {
        return Err(CommandError::CrossSlot);
    }
    if !ctx.session.redirect {
        return Ok(());
    }
    let node = ctx.node;
    let group = shard_group(node.ring.shard_of(slot));
    match node.leader_of(group) {
        Some(leader) if leader != node.id => match node.node_info(leader) {
            Some(info) => Err(CommandError::Raw(format!(
                "MOVED {slot} {}",
                info.client_addr
            ))),
            None => Err(CommandError::Raw("CLUSTERDOWN Hash slot not served".into())),
        },
        _ => Ok(()),
    }
}

pub fn channels(ctx: &mut Ctx<'_>, kind: Kind) -> CommandResult {
    let pattern = ctx.args.get(2).map(|p| &p[..]);
    let names = ctx.node.pubsub.names(kind, pattern);
    Ok(Frame::Array(names.into_iter().map(Frame::Bulk).collect()))
}

pub fn numsub(ctx: &mut Ctx<'_>, kind: Kind) -> CommandResult {
    let hub = &ctx.node.pubsub;
    // A flat array in RESP3 too, as Redis replies.
    let counts = ctx.args[2..]
        .iter()
        .flat_map(|name| {
            [
                Frame::Bulk(name.clone()),
                Frame::Integer(hub.count(kind, name) as i64),
            ]
        })
        .collect();
    Ok(Frame::Array(counts))
}

pub fn numpat(ctx: &mut Ctx<'_>) -> CommandResult {
    Ok(Frame::Integer(
        ctx.node.pubsub.names(Kind::Pattern, None).len() as i64,
    ))
}

pub fn help(_ctx: &mut Ctx<'_>) -> CommandResult {
    let lines = [
        "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CHANNELS [<pattern>]",
        "    Return the currently active channels matching a <pattern> (default: '*').",
        "NUMPAT",
        "    Return number of subscriptions to patterns.",
        "NUMSUB [<channel> ...]",
        "    Return the number of subscribers for the specified channels, excluding",
        "    pattern subscriptions(default: no channels).",
        "SHARDCHANNELS [<pattern>]",
        "    Return the currently active shard level channels matching a <pattern> (default: '*').",
        "SHARDNUMSUB [<shardchannel> ...]",
        "    Return the number of subscribers for the specified shard level channel(s)",
        "HELP",
        "    Prints this help.",
    ];
    Ok(Frame::Array(
        lines.iter().map(|l| Frame::simple(*l)).collect(),
    ))
}

/// `PING` on a RESP2 connection that is subscribed answers `["pong", message]`.
pub fn subscribed_ping(ctx: &Ctx<'_>) -> Option<Frame> {
    (ctx.session.resp == Version::Resp2 && ctx.session.pubsub.total() > 0).then(|| {
        let message = ctx.args.get(1).cloned().unwrap_or_default();
        Frame::Array(vec![Frame::bulk("pong"), Frame::Bulk(message)])
    })
}
