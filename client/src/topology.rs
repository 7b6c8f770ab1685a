//! The slot map: which node leads (and which replicate) each of the 16384 slots, read from
//! `CLUSTER SLOTS`.

use std::sync::Arc;

use shoal_protocol::{Frame, SLOT_COUNT};

use crate::error::Error;

/// The nodes serving a set of slots: the leader (which takes writes) first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SlotOwners {
    pub leader: String,
    pub replicas: Vec<String>,
}

/// Slot → owners. Owners are shared by every slot of a range, so the map stays small however
/// fragmented the ranges are (shoal hands out thousands of small ranges).
#[derive(Clone, Debug)]
pub(crate) struct SlotMap {
    slots: Vec<Option<Arc<SlotOwners>>>,
    /// Every node named, leaders first; computed once per change, as keyless commands pick
    /// from it.
    addrs: Vec<String>,
}

impl SlotMap {
    /// Reads a `CLUSTER SLOTS` reply. `queried` replaces an empty host, which by Redis's
    /// convention means "the host you asked".
    pub fn from_cluster_slots(reply: &Frame, queried: &str) -> Result<SlotMap, Error> {
        let bad = |why: &str| Error::UnexpectedReply(format!("CLUSTER SLOTS: {why}"));
        let Frame::Array(ranges) = reply else {
            return Err(bad("not an array"));
        };
        let queried_host = queried.rsplit_once(':').map_or(queried, |(h, _)| h);
        let mut slots = vec![None; SLOT_COUNT as usize];
        let mut assigned = 0usize;
        for range in ranges {
            let Frame::Array(fields) = range else {
                return Err(bad("a range is not an array"));
            };
            let (Some(Frame::Integer(start)), Some(Frame::Integer(end))) =
                (fields.first(), fields.get(1))
            else {
                return Err(bad("a range has no bounds"));
            };
            let (start, end) = (*start, *end);
            if start < 0 || end < start || end >= SLOT_COUNT as i64 {
                return Err(bad("a range is out of bounds"));
            }
            let mut addrs = fields[2..]
                .iter()
                .map(|node| node_addr(node, queried_host))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| bad("a node is not [host, port, ...]"))?
                .into_iter();
            let leader = addrs.next().ok_or_else(|| bad("a range has no node"))?;
            let owners = Arc::new(SlotOwners {
                leader,
                replicas: addrs.collect(),
            });
            for slot in &mut slots[start as usize..=end as usize] {
                *slot = Some(owners.clone());
            }
            assigned += (end - start + 1) as usize;
        }
        if assigned == 0 {
            return Err(bad("no slot is assigned yet"));
        }
        Ok(SlotMap::with_slots(slots))
    }

    /// A map with no slot assigned (a single server needs none).
    pub fn empty() -> SlotMap {
        SlotMap::with_slots(vec![None; SLOT_COUNT as usize])
    }

    fn with_slots(slots: Vec<Option<Arc<SlotOwners>>>) -> SlotMap {
        let addrs = addrs_of(&slots);
        SlotMap { slots, addrs }
    }

    pub fn owners(&self, slot: u16) -> Option<&Arc<SlotOwners>> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// After `MOVED slot addr`: `addr` leads `slot` now. Only that slot is patched (other slots
    /// of the same owners may belong to other shards); a full refresh follows.
    pub fn moved(&mut self, slot: u16, addr: &str) {
        let Some(entry) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let replicas = entry
            .as_ref()
            .map(|o| {
                std::iter::once(o.leader.clone())
                    .chain(o.replicas.iter().cloned())
                    .filter(|a| a != addr)
                    .collect()
            })
            .unwrap_or_default();
        *entry = Some(Arc::new(SlotOwners {
            leader: addr.to_owned(),
            replicas,
        }));
        self.addrs = addrs_of(&self.slots);
    }

    /// Every node named in the map, leaders first, without repeats.
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }
}

fn addrs_of(slots: &[Option<Arc<SlotOwners>>]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut leaders = Vec::new();
    let mut replicas = Vec::new();
    let mut last: Option<&Arc<SlotOwners>> = None;
    for owners in slots.iter().flatten() {
        if last.is_some_and(|l| Arc::ptr_eq(l, owners)) {
            continue;
        }
        last = Some(owners);
        if seen.insert(owners.leader.clone()) {
            leaders.push(owners.leader.clone());
        }
        for r in &owners.replicas {
            if seen.insert(r.clone()) {
                replicas.push(r.clone());
            }
        }
    }
    leaders.extend(replicas);
    leaders
}

/// `[host, port, id, ...]` → `host:port`.
fn node_addr(node: &Frame, queried_host: &str) -> Option<String> {
    let Frame::Array(fields) = node else {
        return None;
    };
    let host = match fields.first()? {
        Frame::Bulk(b) => std::str::from_utf8(b).ok()?.to_owned(),
        Frame::Simple(s) => s.clone(),
        _ => return None,
    };
    let Frame::Integer(port) = fields.get(1)? else {
        return None;
    };
    let host = if host.is_empty() || host == "?" {
        queried_host.to_owned()
    } else {
        host
    };
    Some(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: i64) -> Frame {
        Frame::Array(vec![
            Frame::bulk(host.to_owned()),
            Frame::Integer(port),
            Frame::bulk("id"),
        ])
    }

    #[test]
    fn reads_ranges_and_patches_moved_slots() {
        let reply = Frame::Array(vec![
            Frame::Array(vec![
                Frame::Integer(0),
                Frame::Integer(99),
                node("10.0.0.1", 1),
                node("", 2),
            ]),
            Frame::Array(vec![
                Frame::Integer(100),
                Frame::Integer(16383),
                node("10.0.0.2", 3),
            ]),
        ]);
        let mut map = SlotMap::from_cluster_slots(&reply, "127.0.0.1:7000").unwrap();
        let o = map.owners(5).unwrap();
        assert_eq!(o.leader, "10.0.0.1:1");
        assert_eq!(o.replicas, vec!["127.0.0.1:2".to_owned()]);
        assert_eq!(map.owners(16383).unwrap().leader, "10.0.0.2:3");
        map.moved(5, "127.0.0.1:2");
        assert_eq!(map.owners(5).unwrap().leader, "127.0.0.1:2");
        assert_eq!(
            map.owners(5).unwrap().replicas,
            vec!["10.0.0.1:1".to_owned()]
        );
        assert_eq!(map.owners(6).unwrap().leader, "10.0.0.1:1");
        assert_eq!(map.addrs().len(), 3);
        assert!(SlotMap::from_cluster_slots(&Frame::Array(vec![]), "h:1").is_err());
    }
}
