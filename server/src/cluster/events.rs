//! One log line per Raft event of a hosted group that operators care about: an election won,
//! leadership lost or moved, a membership change (voters/learners), a snapshot built, installed
//! (received from the leader) or loaded at start. Every line carries the `node`, `group` and
//! `shard` fields (`shard` is absent for group 0, the metadata group), so `--log-format json`
//! output can be filtered by them, and all come from this module's target
//! (`shoal_server::cluster::events`), so `--log-level warn,shoal_server::cluster::events=info`
//! shows exactly them.
//!
//! Elections and membership: [`log_raft_events`] watches openraft's *server* metrics, which
//! change only with the vote, the role, the leader or the membership, never per entry: the data
//! path does not wake it. Snapshots: the state machine calls [`snapshot_built`] and
//! [`snapshot_applied`] (installed from the leader, or loaded at start) where they happen.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::ServerState;
use tokio_util::sync::CancellationToken;

use crate::node::group_shard;
use crate::raft::types::{NodeId, SnapshotMeta};
use crate::rpc::META_GROUP;
use crate::shard::Replica;

/// What the log has said about a group so far.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    leader: Option<NodeId>,
    is_leader: bool,
    term: u64,
    voters: Vec<NodeId>,
    learners: Vec<NodeId>,
}

/// Logs `replica`'s Raft events until shutdown or until the group stops.
pub async fn log_raft_events(node: NodeId, replica: Arc<Replica>, shutdown: CancellationToken) {
    let group = replica.group;
    let shard = (group != META_GROUP).then(|| group_shard(group));
    let mut rx = replica.raft.server_metrics();
    let mut seen: Option<Seen> = None;
    loop {
        let now = {
            let m = rx.borrow_watched();
            let membership = m.membership_config.membership();
            Seen {
                leader: m.current_leader,
                is_leader: m.state == ServerState::Leader,
                term: m.vote.leader_id().term,
                voters: membership.voter_ids().collect(),
                learners: membership.learner_ids().collect(),
            }
        };
        if let Some(before) = &seen {
            log_changes(node, group, shard, before, &now);
        }
        seen = Some(now);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
        }
    }
}

fn log_changes(node: NodeId, group: u64, shard: Option<u32>, before: &Seen, now: &Seen) {
    if now.is_leader && !before.is_leader {
        tracing::info!(
            node,
            group,
            shard,
            term = now.term,
            "raft: election won; leading"
        );
    } else if before.is_leader && !now.is_leader {
        tracing::info!(
            node,
            group,
            shard,
            term = now.term,
            new_leader = now.leader,
            "raft: leadership lost"
        );
    } else if now.leader != before.leader && now.leader.is_some() && !now.is_leader {
        tracing::info!(
            node,
            group,
            shard,
            term = now.term,
            leader = now.leader,
            "raft: new leader elected"
        );
    }
    if now.voters != before.voters || now.learners != before.learners {
        tracing::info!(
            node,
            group,
            shard,
            voters = ?now.voters,
            learners = ?now.learners,
            "raft: membership changed"
        );
    }
}

/// Which node and group a replica's events are about (its state machine keeps one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupIds {
    pub node: NodeId,
    pub group: u64,
}

impl GroupIds {
    fn shard(self) -> Option<u32> {
        (self.group != META_GROUP).then(|| group_shard(self.group))
    }
}

/// The replica wrote a snapshot of its state (after which its log can be compacted).
pub fn snapshot_built(
    ids: GroupIds,
    meta: &SnapshotMeta,
    path: &Path,
    records: u64,
    took: Duration,
) {
    tracing::info!(
        node = ids.node,
        group = ids.group,
        shard = ids.shard(),
        index = meta.last_log_id.as_ref().map(|l| l.index),
        records,
        took_ms = took.as_millis() as u64,
        path = %path.display(),
        "raft: snapshot built"
    );
}

/// Where a snapshot that replaced a replica's state came from.
#[derive(Clone, Copy, Debug)]
pub enum SnapshotSource {
    /// Its leader sent it (the replica was too far behind for the log).
    Installed,
    /// The replica started from its newest valid snapshot on disk.
    Loaded,
}

/// The replica's state is now the snapshot at `path` (`keys` entries).
pub fn snapshot_applied(
    source: SnapshotSource,
    ids: GroupIds,
    meta: &SnapshotMeta,
    id: &str,
    path: &Path,
    keys: usize,
) {
    let how = match source {
        SnapshotSource::Installed => "installed",
        SnapshotSource::Loaded => "loaded",
    };
    tracing::info!(
        node = ids.node,
        group = ids.group,
        shard = ids.shard(),
        index = meta.last_log_id.as_ref().map(|l| l.index),
        id,
        keys,
        path = %path.display(),
        "raft: snapshot {how}"
    );
}
