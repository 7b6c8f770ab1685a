//! openraft's network traits over the multiplexed peer transport.
//!
//! Every group's RPCs to a node share that node's single [`PeerClient`]; the group id in each
//! message routes it on the other side ([`RaftRouter`]). We multiplex ourselves rather than use
//! `openraft-multi`'s adapters because the peer connection also carries non-Raft traffic
//! (forwarded client commands, membership requests), and one framing for all of it keeps a
//! single place to authenticate and to cut on a bad checksum.
//!
//! Snapshots are streamed in chunks of [`SNAPSHOT_CHUNK`] bytes, each its own request, so a
//! large keyspace never becomes one giant message; the receiver assembles them in a file and
//! installs it when the last chunk arrives.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::storage::RaftStateMachine;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::handshake::PeerAuth;
use super::peer::{PeerClient, PeerError};
use super::types::{NodeId, NodeInfo, SnapshotMeta, TypeConfig, Vote};
use crate::rpc::{PeerRequest, PeerResponse};

/// Bytes of snapshot per request.
pub const SNAPSHOT_CHUNK: usize = 1 << 20;

/// What one node asks another, for some group.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRequest {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    /// Would the receiver vote for this candidate? (Nothing is persisted or changed.)
    PreVote(VoteRequest<TypeConfig>),
    TransferLeader(TransferLeaderRequest<TypeConfig>),
    /// Part of a snapshot; `done` on the last one, which triggers the install.
    SnapshotChunk {
        vote: Vote,
        meta: SnapshotMeta,
        offset: u64,
        data: Vec<u8>,
        done: bool,
    },
}

/// The answer; `Err` carries the remote's error text.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftResponse {
    Append(Result<AppendEntriesResponse<TypeConfig>, String>),
    Vote(Result<VoteResponse<TypeConfig>, String>),
    PreVote(Result<VoteResponse<TypeConfig>, String>),
    TransferLeader(Result<TransferLeaderResponse<TypeConfig>, String>),
    /// `None` until the last chunk has been installed.
    Snapshot(Result<Option<SnapshotResponse<TypeConfig>>, String>),
}

/// Snapshot data as the network needs it: readable as bytes on the sender, and rebuilt from the
/// assembled file on the receiver.
pub trait SnapshotFile: AsyncRead + Unpin + Send + Sync + 'static + Sized {
    fn open_received(path: &Path) -> io::Result<Self>;
}

impl SnapshotFile for tokio::fs::File {
    fn open_received(path: &Path) -> io::Result<Self> {
        std::fs::File::open(path).map(tokio::fs::File::from_std)
    }
}

/// The client this node uses to reach one peer (all kinds of peer traffic share it).
pub type RaftPeer = PeerClient<PeerRequest, PeerResponse>;

/// One client per remote node, shared by all groups.
#[derive(Clone, Default)]
pub struct PeerPool {
    clients: Arc<RwLock<HashMap<NodeId, Arc<RaftPeer>>>>,
    /// The cluster secret every connection proves (both ways) before carrying anything.
    auth: Arc<PeerAuth>,
}

impl PeerPool {
    pub fn new(auth: PeerAuth) -> PeerPool {
        PeerPool {
            clients: Arc::default(),
            auth: Arc::new(auth),
        }
    }

    pub fn auth(&self) -> Arc<PeerAuth> {
        self.auth.clone()
    }

    /// The client for `target` at `node.peer_addr` (a new one if the address changed).
    pub fn client(&self, target: NodeId, node: &NodeInfo) -> Arc<RaftPeer> {
        if let Some(c) = self.clients.read().get(&target) {
            if c.addr() == node.peer_addr {
                return c.clone();
            }
        }
        let client = Arc::new(PeerClient::new(node.peer_addr.clone(), self.auth()));
        self.clients.write().insert(target, client.clone());
        client
    }
}

/// Creates per-target networks for one group.
pub struct GroupNetworkFactory<SD> {
    pub group: u64,
    pub pool: PeerPool,
    pub _snapshot: std::marker::PhantomData<fn() -> SD>,
}

impl<SD> GroupNetworkFactory<SD> {
    pub fn new(group: u64, pool: PeerPool) -> Self {
        GroupNetworkFactory {
            group,
            pool,
            _snapshot: std::marker::PhantomData,
        }
    }
}

impl<SD: SnapshotFile> RaftNetworkFactory<TypeConfig> for GroupNetworkFactory<SD> {
    type Network = GroupNetwork<SD>;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> GroupNetwork<SD> {
        GroupNetwork {
            group: self.group,
            target,
            client: self.pool.client(target, node),
            _snapshot: std::marker::PhantomData,
        }
    }
}

/// The network from this node to `target`, for one group.
pub struct GroupNetwork<SD> {
    group: u64,
    target: NodeId,
    client: Arc<RaftPeer>,
    _snapshot: std::marker::PhantomData<fn() -> SD>,
}

fn rpc_error<E: std::error::Error>(e: PeerError) -> RPCError<TypeConfig, E> {
    match e {
        PeerError::Closed(_) | PeerError::Timeout(..) => RPCError::Network(NetworkError::new(&e)),
        _ => RPCError::Unreachable(Unreachable::new(&e)),
    }
}

/// The remote answered with an error: retry like any network failure, naming the peer.
fn remote<E: std::error::Error>(target: NodeId, why: String) -> RPCError<TypeConfig, E> {
    let e = io::Error::other(format!("node {target}: {why}"));
    RPCError::Network(NetworkError::new(&e))
}

impl<SD> GroupNetwork<SD> {
    async fn call(&self, req: RaftRequest, option: &RPCOption) -> Result<RaftResponse, PeerError> {
        let timeout = option.hard_ttl().max(Duration::from_millis(50));
        match self
            .client
            .request(self.group, PeerRequest::Raft(req), timeout)
            .await?
        {
            PeerResponse::Raft(r) => Ok(r),
            other => Err(PeerError::Protocol(format!("unexpected answer {other:?}"))),
        }
    }
}

impl<SD: SnapshotFile> RaftNetworkV2<TypeConfig> for GroupNetwork<SD> {
    type SnapshotData = SD;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(RaftRequest::Append(rpc), &option)
            .await
            .map_err(rpc_error)?
        {
            RaftResponse::Append(Ok(r)) => Ok(r),
            RaftResponse::Append(Err(why)) => Err(remote(self.target, why)),
            other => Err(remote(self.target, format!("unexpected answer {other:?}"))),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(RaftRequest::Vote(rpc), &option)
            .await
            .map_err(rpc_error)?
        {
            RaftResponse::Vote(Ok(r)) => Ok(r),
            RaftResponse::Vote(Err(why)) => Err(remote(self.target, why)),
            other => Err(remote(self.target, format!("unexpected answer {other:?}"))),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(RaftRequest::PreVote(rpc), &option)
            .await
            .map_err(rpc_error)?
        {
            RaftResponse::PreVote(Ok(r)) => Ok(r),
            RaftResponse::PreVote(Err(why)) => Err(remote(self.target, why)),
            other => Err(remote(self.target, format!("unexpected answer {other:?}"))),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(RaftRequest::TransferLeader(req), &option)
            .await
            .map_err(rpc_error)?
        {
            RaftResponse::TransferLeader(Ok(r)) => Ok(r),
            RaftResponse::TransferLeader(Err(why)) => Err(remote(self.target, why)),
            other => Err(remote(self.target, format!("unexpected answer {other:?}"))),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: openraft::alias::SnapshotOf<TypeConfig, SD>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let meta = snapshot.meta.clone();
        let mut data = snapshot.snapshot;
        let stream = async {
            let mut offset = 0u64;
            loop {
                let mut chunk = vec![0u8; SNAPSHOT_CHUNK];
                let mut filled = 0;
                while filled < chunk.len() {
                    let n = data
                        .read(&mut chunk[filled..])
                        .await
                        .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                chunk.truncate(filled);
                let done = filled < SNAPSHOT_CHUNK;
                let req = RaftRequest::SnapshotChunk {
                    vote,
                    meta: meta.clone(),
                    offset,
                    data: chunk,
                    done,
                };
                let answer = self
                    .call(req, &option)
                    .await
                    .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))?;
                offset += filled as u64;
                match answer {
                    RaftResponse::Snapshot(Ok(Some(r))) if done => return Ok(r),
                    RaftResponse::Snapshot(Ok(None)) if !done => continue,
                    RaftResponse::Snapshot(Err(why)) => {
                        return Err(StreamingError::Unreachable(Unreachable::new(
                            &io::Error::other(why),
                        )))
                    }
                    other => {
                        return Err(StreamingError::Unreachable(Unreachable::new(
                            &io::Error::other(format!("unexpected answer {other:?}")),
                        )))
                    }
                }
            }
        };
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = stream => r,
        }
    }
}

/// The Raft groups this node hosts, by group id: where inbound peer RPCs are delivered.
pub struct RaftRouter<SM: RaftStateMachine<TypeConfig>> {
    groups: RwLock<HashMap<u64, openraft::Raft<TypeConfig, SM>>>,
    /// Where incoming snapshots are assembled.
    incoming_dir: PathBuf,
    /// Snapshot bytes received (seeding new replicas, catching up far-behind ones).
    pub snapshot_bytes_received: std::sync::atomic::AtomicU64,
}

impl<SM> RaftRouter<SM>
where
    SM: RaftStateMachine<TypeConfig>,
    SM::SnapshotData: SnapshotFile,
{
    pub fn new(incoming_dir: PathBuf) -> Self {
        RaftRouter {
            groups: RwLock::default(),
            incoming_dir,
            snapshot_bytes_received: Default::default(),
        }
    }

    pub fn add(&self, group: u64, raft: openraft::Raft<TypeConfig, SM>) {
        self.groups.write().insert(group, raft);
    }

    pub fn remove(&self, group: u64) -> Option<openraft::Raft<TypeConfig, SM>> {
        self.groups.write().remove(&group)
    }

    pub fn get(&self, group: u64) -> Option<openraft::Raft<TypeConfig, SM>> {
        self.groups.read().get(&group).cloned()
    }

    /// Handles one inbound Raft RPC for `group`.
    pub async fn handle(&self, group: u64, req: RaftRequest) -> RaftResponse {
        let Some(raft) = self.get(group) else {
            let why = format!("group {group} is not hosted here");
            return match req {
                RaftRequest::Append(_) => RaftResponse::Append(Err(why)),
                RaftRequest::Vote(_) => RaftResponse::Vote(Err(why)),
                RaftRequest::PreVote(_) => RaftResponse::PreVote(Err(why)),
                RaftRequest::TransferLeader(_) => RaftResponse::TransferLeader(Err(why)),
                RaftRequest::SnapshotChunk { .. } => RaftResponse::Snapshot(Err(why)),
            };
        };
        match req {
            RaftRequest::Append(r) => {
                RaftResponse::Append(raft.append_entries(r).await.map_err(|e| e.to_string()))
            }
            RaftRequest::Vote(r) => {
                RaftResponse::Vote(raft.vote(r).await.map_err(|e| e.to_string()))
            }
            RaftRequest::PreVote(r) => {
                RaftResponse::PreVote(raft.pre_vote(r).await.map_err(|e| e.to_string()))
            }
            RaftRequest::TransferLeader(r) => RaftResponse::TransferLeader(
                raft.handle_transfer_leader(r)
                    .await
                    .map_err(|e| e.to_string()),
            ),
            RaftRequest::SnapshotChunk {
                vote,
                meta,
                offset,
                data,
                done,
            } => RaftResponse::Snapshot(
                self.receive_chunk(&raft, group, vote, meta, offset, data, done)
                    .await,
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn receive_chunk(
        &self,
        raft: &openraft::Raft<TypeConfig, SM>,
        group: u64,
        vote: Vote,
        meta: SnapshotMeta,
        offset: u64,
        data: Vec<u8>,
        done: bool,
    ) -> Result<Option<SnapshotResponse<TypeConfig>>, String> {
        // One snapshot per group is in flight at a time; its last log id names it.
        let index = meta.last_log_id.as_ref().map_or(0, |id| id.index);
        let path = self
            .incoming_dir
            .join(format!("group-{group}-{index}.incoming"));
        let io = |e: io::Error| format!("receiving snapshot into {}: {e}", path.display());
        tokio::fs::create_dir_all(&self.incoming_dir)
            .await
            .map_err(io)?;
        let mut file = if offset == 0 {
            tokio::fs::File::create(&path).await.map_err(io)?
        } else {
            let f = tokio::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .await
                .map_err(io)?;
            let len = f.metadata().await.map_err(io)?.len();
            if len != offset {
                return Err(format!(
                    "snapshot chunk at offset {offset}, but {len} bytes received so far"
                ));
            }
            f
        };
        file.write_all(&data).await.map_err(io)?;
        self.snapshot_bytes_received
            .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if !done {
            return Ok(None);
        }
        file.sync_all().await.map_err(io)?;
        drop(file);
        let snapshot = openraft::alias::SnapshotOf::<TypeConfig, SM::SnapshotData> {
            meta,
            snapshot: SM::SnapshotData::open_received(&path).map_err(io)?,
        };
        let result = raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| e.to_string());
        let _ = tokio::fs::remove_file(&path).await;
        result.map(Some)
    }
}
