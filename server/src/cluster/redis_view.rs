//! The cluster as Redis Cluster clients see it: every shard a Redis "shard" whose master is its
//! Raft leader and whose replicas are its other voters, node ids as 40-hex strings, and the
//! `CLUSTER SLOTS | SHARDS | NODES` replies in Redis 7's formats.
//!
//! Unlike a Redis node, a shoal node leads some shards and replicates others. `CLUSTER NODES`
//! (one line per node) therefore shows a node as a master with the slots of the shards it
//! leads, or, leading none, as a replica of the leader of a shard it replicates. `SLOTS` and
//! `SHARDS`, which are per slot range and per shard, show the full picture.

use std::collections::BTreeMap;
use std::fmt::Write;

use bytes::Bytes;
use shoal_protocol::Frame;

use super::{hash2, mix64, NodeId, ShardId};
use crate::node::{shard_group, Node};
use crate::raft::types::NodeInfo;

/// A node's Redis Cluster id: 40 hex digits derived from its numeric id (stable, the same on
/// every node).
pub fn redis_node_id(id: NodeId) -> String {
    hex40(0x6e6f_6465, id)
}

/// A shard's `CLUSTER SHARDS`/`MYSHARDID` id.
pub fn redis_shard_id(shard: ShardId) -> String {
    hex40(0x7368_6172, shard as u64)
}

fn hex40(domain: u64, x: u64) -> String {
    format!(
        "{:016x}{:016x}{:08x}",
        hash2(domain, x, 1),
        hash2(domain, x, 2),
        mix64(hash2(domain, x, 3)) as u32
    )
}

/// One shard as clients see it.
pub struct ShardView {
    pub shard: ShardId,
    /// Contiguous slot ranges, inclusive, in slot order.
    pub ranges: Vec<(u16, u16)>,
    pub leader: Option<NodeId>,
    /// The other voters (Redis replicas).
    pub replicas: Vec<NodeId>,
}

/// Every shard, with where its nodes are.
pub struct ClusterView {
    pub shards: Vec<ShardView>,
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// The TLS ports nodes published (`--tls-port`).
    pub tls_ports: BTreeMap<NodeId, u16>,
    /// Nodes the metadata group has marked down (Redis's `fail`).
    pub down: std::collections::BTreeSet<NodeId>,
    pub myself: NodeId,
    pub epoch: u64,
}

impl ClusterView {
    pub fn of(node: &Node) -> ClusterView {
        let topology = node.topology();
        let mut ranges: BTreeMap<ShardId, Vec<(u16, u16)>> = BTreeMap::new();
        for (start, end, shard) in node.ring.ranges() {
            ranges.entry(shard).or_default().push((start, end));
        }
        let shards = (0..node.params.shards)
            .map(|shard| {
                let group = shard_group(shard);
                let leader = node.leader_of(group);
                // The newer of this node's replica's membership and the published one (a
                // replica removed from its group keeps the config it was removed in).
                let published = topology.shards.get(&shard);
                let local = node.replica(group).map(|r| {
                    let m = r.metrics();
                    let config = m.membership_config.clone();
                    let index = config.log_id().as_ref().map_or(0, |l| l.index);
                    (index, config.membership().voter_ids().collect::<Vec<_>>())
                });
                let voters: Vec<NodeId> = match (local, published) {
                    (Some((index, voters)), Some(p)) if index > p.membership_index => voters,
                    (Some((_, voters)), None) => voters,
                    (_, Some(p)) => p.voters.clone(),
                    (None, None) => Vec::new(),
                };
                ShardView {
                    shard,
                    ranges: ranges.remove(&shard).unwrap_or_default(),
                    leader,
                    replicas: voters.into_iter().filter(|v| Some(*v) != leader).collect(),
                }
            })
            .collect();
        let mut nodes: BTreeMap<NodeId, NodeInfo> =
            topology.nodes.values().map(|n| (n.id, n.info())).collect();
        nodes.entry(node.id).or_insert_with(|| node.info.clone());
        let tls_ports = nodes
            .keys()
            .filter_map(|&id| node.tls_port_of(id).map(|port| (id, port)))
            .collect();
        let epoch = node
            .replica(crate::rpc::META_GROUP)
            .map_or(0, |r| r.metrics().current_term);
        let down = topology
            .states
            .iter()
            .filter(|(_, s)| **s == super::meta::NodeState::Down)
            .map(|(id, _)| *id)
            .collect();
        ClusterView {
            shards,
            nodes,
            tls_ports,
            down,
            myself: node.id,
            epoch,
        }
    }

    /// `ip` and `port` of a node's client address, and its peer port (`cport`). For a TLS
    /// client (`tls`), the port is the node's TLS port when it has one: Redis Cluster shows
    /// TLS clients the ports they can follow.
    fn endpoint(&self, id: NodeId, tls: bool) -> (String, u16, u16) {
        let Some(info) = self.nodes.get(&id) else {
            return (String::new(), 0, 0);
        };
        let (ip, port) = split_addr(&info.client_addr);
        let (_, cport) = split_addr(&info.peer_addr);
        let port = match self.tls_ports.get(&id) {
            Some(&tls_port) if tls => tls_port,
            _ => port,
        };
        (ip, port, cport)
    }

    /// `CLUSTER SLOTS`: one entry per slot range, its leader first, then its replicas (with
    /// TLS ports for a TLS client).
    pub fn slots(&self, tls: bool) -> Frame {
        let mut entries: Vec<(u16, Frame)> = Vec::new();
        for s in &self.shards {
            let Some(leader) = s.leader else { continue };
            for &(start, end) in &s.ranges {
                let mut entry = vec![Frame::Integer(start as i64), Frame::Integer(end as i64)];
                for id in std::iter::once(leader).chain(s.replicas.iter().copied()) {
                    let (ip, port, _) = self.endpoint(id, tls);
                    entry.push(Frame::Array(vec![
                        Frame::Bulk(Bytes::from(ip)),
                        Frame::Integer(port as i64),
                        Frame::Bulk(Bytes::from(redis_node_id(id))),
                        Frame::Array(Vec::new()),
                    ]));
                }
                entries.push((start, Frame::Array(entry)));
            }
        }
        entries.sort_by_key(|(start, _)| *start);
        Frame::Array(entries.into_iter().map(|(_, f)| f).collect())
    }

    /// `CLUSTER SHARDS`: per shard its slot ranges and its nodes with their roles; `port` is
    /// the plain port and `tls-port` is there for a node with one, whoever asks (as Redis 7).
    pub fn shards(&self) -> Frame {
        let text = |s: &str| Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()));
        let shards = self
            .shards
            .iter()
            .map(|s| {
                let slots = s
                    .ranges
                    .iter()
                    .flat_map(|&(a, b)| [Frame::Integer(a as i64), Frame::Integer(b as i64)])
                    .collect();
                let members = s
                    .leader
                    .iter()
                    .map(|&id| (id, "master"))
                    .chain(s.replicas.iter().map(|&id| (id, "replica")));
                let nodes = members
                    .map(|(id, role)| {
                        let (ip, port, _) = self.endpoint(id, false);
                        let mut fields = vec![
                            (text("id"), text(&redis_node_id(id))),
                            (text("port"), Frame::Integer(port as i64)),
                        ];
                        if let Some(&tls_port) = self.tls_ports.get(&id) {
                            fields.push((text("tls-port"), Frame::Integer(tls_port as i64)));
                        }
                        fields.extend([
                            (text("ip"), text(&ip)),
                            (text("endpoint"), text(&ip)),
                            (text("replication-offset"), Frame::Integer(0)),
                            (text("role"), text(role)),
                            (
                                text("health"),
                                text(if self.down.contains(&id) {
                                    "fail"
                                } else {
                                    "online"
                                }),
                            ),
                        ]);
                        Frame::Map(fields)
                    })
                    .collect();
                Frame::Map(vec![
                    (text("slots"), Frame::Array(slots)),
                    (text("nodes"), Frame::Array(nodes)),
                ])
            })
            .collect();
        Frame::Array(shards)
    }

    /// `CLUSTER NODES`: `id ip:port@cport flags master ping pong epoch link slot...`, one line
    /// per node (`port` a TLS port for a TLS client, as in `slots`).
    pub fn nodes_text(&self, now_ms: u64, tls: bool) -> String {
        let mut led: BTreeMap<NodeId, Vec<(u16, u16)>> = BTreeMap::new();
        let mut follows: BTreeMap<NodeId, NodeId> = BTreeMap::new();
        for s in &self.shards {
            let Some(leader) = s.leader else { continue };
            led.entry(leader).or_default().extend(&s.ranges);
            for &r in &s.replicas {
                follows.entry(r).or_insert(leader);
            }
        }
        let mut out = String::new();
        for &id in self.nodes.keys() {
            let (ip, port, cport) = self.endpoint(id, tls);
            let me = if id == self.myself { "myself," } else { "" };
            let (role, master) = match (led.get(&id), follows.get(&id)) {
                (Some(_), _) | (None, None) => ("master", "-".to_owned()),
                (None, Some(&leader)) => ("slave", redis_node_id(leader)),
            };
            let pong = if id == self.myself { 0 } else { now_ms };
            let (fail, link) = if self.down.contains(&id) {
                (",fail", "disconnected")
            } else {
                ("", "connected")
            };
            let _ = write!(
                out,
                "{} {ip}:{port}@{cport} {me}{role}{fail} {master} 0 {pong} {} {link}",
                redis_node_id(id),
                self.epoch
            );
            let mut ranges = led.get(&id).cloned().unwrap_or_default();
            ranges.sort_unstable();
            // Ranges of different shards this node leads may touch: show them as one.
            let mut merged: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
            for (a, b) in ranges {
                match merged.last_mut() {
                    Some(last) if last.1 + 1 == a => last.1 = b,
                    _ => merged.push((a, b)),
                }
            }
            for (a, b) in merged {
                if a == b {
                    let _ = write!(out, " {a}");
                } else {
                    let _ = write!(out, " {a}-{b}");
                }
            }
            out.push('\n');
        }
        out
    }
}

/// `"ip:port"` into its parts (`[v6]:port` too).
fn split_addr(addr: &str) -> (String, u16) {
    match addr.rsplit_once(':') {
        Some((ip, port)) => (
            ip.trim_start_matches('[').trim_end_matches(']').to_owned(),
            port.parse().unwrap_or(0),
        ),
        None => (addr.to_owned(), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_forty_hex_digits_stable_and_distinct() {
        let a = redis_node_id(1);
        assert_eq!(a.len(), 40);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, redis_node_id(1));
        assert_ne!(a, redis_node_id(2));
        assert_ne!(redis_shard_id(1), redis_node_id(1));
    }

    #[test]
    fn addresses_split_into_ip_and_port() {
        assert_eq!(split_addr("127.0.0.1:7001"), ("127.0.0.1".into(), 7001));
        assert_eq!(split_addr("[::1]:7001"), ("::1".into(), 7001));
    }
}
