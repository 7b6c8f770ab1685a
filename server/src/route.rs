//! Where a request runs: the node itself, one shard's group, or several, and how the replies
//! of a request that ran on several shards are combined into one.
//!
//! All of it follows the command table: key positions give the slots, the slots give the shard
//! (by the ring), and the `ALL_SHARDS` / `MULTI_SHARD` tips say whether a request may span
//! shards. A multi-key command whose keys fall in different shards is split into one request
//! per shard when it has the `MULTI_SHARD` tip (`MGET`, `MSET`, `DEL`, `EXISTS`, ...; atomic per
//! shard only, as with a Redis Cluster proxy) and refused with `-CROSSSLOT` otherwise.

use bytes::Bytes;
use shoal_protocol::{key_slot, CommandId, CommandSpec, Flags, Frame, SLOT_COUNT};

use crate::cluster::{ShardId, SlotRing};
use crate::error::CommandError;
use crate::node::shard_group;
use crate::rpc::GroupId;

/// One part of a request that runs on one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub group: GroupId,
    pub args: Vec<Bytes>,
    /// For a split request: where this part's keys stand among the request's keys.
    pub key_positions: Vec<usize>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// A node-level command (connection, server, introspection).
    Local,
    /// Every key is in this group.
    Group(GroupId),
    /// Runs as several parts, combined by [`combine`].
    Parts(Vec<Part>),
    /// `SCAN`: the cursor names the shard and its next slot (see [`scan_cursor`]).
    Scan { shard: ShardId, slot: u16 },
    /// Keys in different shards, for a command that must see them together.
    CrossSlot,
}

/// Where `args` (resolved to `spec`) runs. `by_slot`: the client is a Redis Cluster client,
/// so a command's keys must share one slot (Redis Cluster's rule) rather than one shard.
pub fn route(ring: &SlotRing, spec: &CommandSpec, args: &[Bytes], by_slot: bool) -> Route {
    if let Some(slot) = slot_argument(spec, args) {
        return Route::Group(shard_group(ring.shard_of(slot)));
    }
    if spec.id == CommandId::Scan {
        let cursor = std::str::from_utf8(&args[1])
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        return match cursor {
            Some(cursor) => {
                let (shard, slot) = scan_cursor(cursor, ring.shards().len() as u32);
                Route::Scan { shard, slot }
            }
            // Any one shard reports the error.
            None => Route::Group(shard_group(0)),
        };
    }
    if spec.flags.contains(Flags::ALL_SHARDS) {
        return Route::Parts(
            ring.shards()
                .iter()
                .map(|&s| Part {
                    group: shard_group(s),
                    args: args.to_vec(),
                    key_positions: Vec::new(),
                })
                .collect(),
        );
    }
    let mut indexes = spec.key_positions(args).peekable();
    let Some(&first) = indexes.peek() else {
        return Route::Local;
    };
    let first_slot = key_slot(&args[first]);
    if by_slot {
        return if spec
            .key_positions(args)
            .all(|i| key_slot(&args[i]) == first_slot)
        {
            Route::Group(shard_group(ring.shard_of(first_slot)))
        } else {
            Route::CrossSlot
        };
    }
    let first_shard = ring.shard_of(first_slot);
    let shards: Vec<(usize, ShardId)> = indexes
        .map(|i| (i, ring.shard_of(key_slot(&args[i]))))
        .collect();
    // Each key brings the arguments up to the next key with it (`MSET k v`). A request whose
    // arguments do not come in whole groups runs unsplit, so the command reports the error
    // and no part of it runs.
    let step = spec.keys.step.max(1) as usize;
    let whole = (args.len() - first).is_multiple_of(step);
    if !whole || shards.iter().all(|&(_, s)| s == first_shard) {
        return Route::Group(shard_group(first_shard));
    }
    if !spec.flags.contains(Flags::MULTI_SHARD) {
        return Route::CrossSlot;
    }
    let mut parts: Vec<Part> = Vec::new();
    for (position, &(i, shard)) in shards.iter().enumerate() {
        let group = shard_group(shard);
        let part = match parts.iter_mut().find(|p| p.group == group) {
            Some(p) => p,
            None => {
                parts.push(Part {
                    group,
                    args: args[..first].to_vec(),
                    key_positions: Vec::new(),
                });
                parts.last_mut().expect("just pushed")
            }
        };
        part.args
            .extend_from_slice(&args[i..(i + step).min(args.len())]);
        part.key_positions.push(position);
    }
    Route::Parts(parts)
}

/// The slot a request is about: its first key's, or the slot argument of
/// `CLUSTER COUNTKEYSINSLOT|GETKEYSINSLOT` (`None` for keyless requests or a bad slot).
pub fn request_slot(spec: &CommandSpec, args: &[Bytes]) -> Option<u16> {
    slot_argument(spec, args)
        .or_else(|| spec.key_positions(args).next().map(|i| key_slot(&args[i])))
}

/// The slot named by the commands that take one instead of a key.
fn slot_argument(spec: &CommandSpec, args: &[Bytes]) -> Option<u16> {
    match spec.id {
        CommandId::ClusterCountkeysinslot | CommandId::ClusterGetkeysinslot => {
            std::str::from_utf8(&args[2])
                .ok()?
                .parse::<u16>()
                .ok()
                .filter(|&s| s < SLOT_COUNT)
        }
        _ => None,
    }
}

/// A shard-spanning `SCAN` cursor: `shard · 16384 + slot`, so one iteration walks shard 0's
/// slots, then shard 1's, and so on. Out-of-range cursors start over, as Redis's do.
pub fn scan_cursor(cursor: u64, shards: u32) -> (ShardId, u16) {
    let shard = cursor / SLOT_COUNT as u64;
    if shard >= shards as u64 {
        return (0, 0);
    }
    (shard as ShardId, (cursor % SLOT_COUNT as u64) as u16)
}

/// The cursor to return after a shard's scan answered `next_slot` (0: that shard is done).
pub fn next_scan_cursor(shard: ShardId, next_slot: u64, shards: u32) -> u64 {
    match next_slot {
        0 if shard + 1 >= shards => 0,
        0 => (shard as u64 + 1) * SLOT_COUNT as u64,
        slot => shard as u64 * SLOT_COUNT as u64 + slot,
    }
}

/// Combines the replies of a request that ran as `parts`: the first error wins; integers add
/// up (`DEL`, `EXISTS`, `DBSIZE`); arrays are put back in key order for a split request
/// (`MGET`) or concatenated (`KEYS`); `OK`s give `OK`; otherwise the first non-nil reply
/// (`RANDOMKEY`).
pub fn combine(parts: &[Part], replies: Vec<Frame>) -> Frame {
    if let Some(e) = replies.iter().find(|r| r.is_error()) {
        return e.clone();
    }
    match replies.first() {
        Some(Frame::Integer(_)) => Frame::Integer(
            replies
                .iter()
                .map(|r| match r {
                    Frame::Integer(n) => *n,
                    _ => 0,
                })
                .sum(),
        ),
        Some(Frame::Array(_)) => {
            let keyed = parts.iter().any(|p| !p.key_positions.is_empty());
            let total: usize = parts.iter().map(|p| p.key_positions.len()).sum();
            let mut out = if keyed {
                vec![Frame::Null; total]
            } else {
                Vec::new()
            };
            for (part, reply) in parts.iter().zip(replies) {
                let Frame::Array(items) = reply else {
                    return CommandError::Raw(format!(
                        "ERR unexpected reply from shard: {reply:?}"
                    ))
                    .into();
                };
                if keyed {
                    for (&pos, item) in part.key_positions.iter().zip(items) {
                        out[pos] = item;
                    }
                } else {
                    out.extend(items);
                }
            }
            Frame::Array(out)
        }
        Some(ok @ Frame::Simple(_)) => ok.clone(),
        _ => replies
            .into_iter()
            .find(|r| *r != Frame::Null)
            .unwrap_or(Frame::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::command::args;

    fn ring() -> SlotRing {
        SlotRing::new(&(0..16).collect::<Vec<_>>(), crate::cluster::DEFAULT_VNODES)
    }

    fn keys_in_different_shards(ring: &SlotRing) -> (String, String) {
        let a = "a".to_owned();
        let sa = ring.shard_of(key_slot(a.as_bytes()));
        let b = (0..)
            .map(|i| format!("b{i}"))
            .find(|k| ring.shard_of(key_slot(k.as_bytes())) != sa)
            .expect("some key lands elsewhere");
        (a, b)
    }

    fn spec(a: &[Bytes]) -> &'static CommandSpec {
        CommandSpec::lookup(a).expect("known command")
    }

    #[test]
    fn keys_in_one_shard_route_to_its_group_and_keyless_commands_stay_local() {
        let ring = ring();
        let a = args(&["MSET", "{t}1", "x", "{t}2", "y"]);
        let group = shard_group(ring.shard_of(key_slot(b"t")));
        assert_eq!(route(&ring, spec(&a), &a, false), Route::Group(group));
        let a = args(&["PING"]);
        assert_eq!(route(&ring, spec(&a), &a, false), Route::Local);
    }

    #[test]
    fn spanning_requests_split_by_shard_or_are_refused() {
        let ring = ring();
        let (k1, k2) = keys_in_different_shards(&ring);
        let a = args(&["MSET", &k1, "1", &k2, "2"]);
        let Route::Parts(parts) = route(&ring, spec(&a), &a, false) else {
            panic!("MSET should split");
        };
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].args, args(&["MSET", &k1, "1"]));
        assert_eq!(parts[1].args, args(&["MSET", &k2, "2"]));
        let a = args(&["RENAME", &k1, &k2]);
        assert_eq!(route(&ring, spec(&a), &a, false), Route::CrossSlot);
        // A Redis Cluster client's keys must share a slot, even within one shard.
        let a = args(&["MGET", "{t}1", "{t}2"]);
        assert!(matches!(route(&ring, spec(&a), &a, true), Route::Group(_)));
        let (x, y) = (0..)
            .map(|i| (format!("a{i}"), format!("b{i}")))
            .find(|(x, y)| {
                key_slot(x.as_bytes()) != key_slot(y.as_bytes())
                    && ring.shard_of(key_slot(x.as_bytes()))
                        == ring.shard_of(key_slot(y.as_bytes()))
            })
            .expect("two slots of one shard");
        let a = args(&["MGET", &x, &y]);
        assert!(matches!(route(&ring, spec(&a), &a, false), Route::Group(_)));
        assert_eq!(route(&ring, spec(&a), &a, true), Route::CrossSlot);
    }

    #[test]
    fn split_replies_are_combined_in_key_order() {
        let ring = ring();
        let (k1, k2) = keys_in_different_shards(&ring);
        let a = args(&["MGET", &k1, &k2, &k1]);
        let Route::Parts(parts) = route(&ring, spec(&a), &a, false) else {
            panic!("MGET should split");
        };
        let value = |s: &str| Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()));
        let replies = parts
            .iter()
            .map(|p| {
                Frame::Array(
                    p.args[1..]
                        .iter()
                        .map(|k| value(std::str::from_utf8(k).unwrap()))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            combine(&parts, replies),
            Frame::Array(vec![value(&k1), value(&k2), value(&k1)])
        );
        let counts = vec![Frame::Integer(2), Frame::Integer(1)];
        assert_eq!(combine(&parts, counts), Frame::Integer(3));
        let with_error = vec![Frame::Integer(2), Frame::error("ERR boom")];
        assert_eq!(combine(&parts, with_error), Frame::error("ERR boom"));
    }

    #[test]
    fn scan_cursors_walk_every_shard_once() {
        assert_eq!(scan_cursor(0, 16), (0, 0));
        assert_eq!(scan_cursor(16384 + 5, 16), (1, 5));
        assert_eq!(scan_cursor(16 * 16384, 16), (0, 0));
        assert_eq!(next_scan_cursor(1, 0, 16), 2 * 16384);
        assert_eq!(next_scan_cursor(15, 0, 16), 0);
        assert_eq!(next_scan_cursor(3, 77, 16), 3 * 16384 + 77);
    }
}
