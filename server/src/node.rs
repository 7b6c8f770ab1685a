//! A node: everything one `shoal-server` process shares among its connections, and how it comes
//! up — its identity, the Raft groups it hosts and the peer listener that feeds them.
//!
//! Start-up ([`Node::start`]):
//! 1. The data dir's `node.conf` names this node (id, the cluster's shard count and replication
//!    factor). Without one, a node started with `--join` asks the cluster for an id; otherwise it
//!    creates a new cluster as node 1.
//! 2. Every group with a directory under `groups/` is reopened (snapshot + log replay). A node
//!    that creates a cluster creates and initializes group 0 and every shard group with itself
//!    as the only voter; replicas on other nodes are created when their leader first contacts
//!    them (see [`Node::ensure_group`]) and grown by the reconciler.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clients::ClientRegistry;
use crate::cluster::meta::{ClusterParams, Topology};
use crate::cluster::{ShardId, SlotRing, DEFAULT_VNODES};
use crate::config::Config;
use crate::raft::handshake::PeerAuth;
use crate::raft::network::{PeerPool, RaftRouter};
use crate::raft::state_machine::ShardStateMachine;
use crate::raft::types::{NodeId, NodeInfo};
use crate::rpc::{GroupId, JoinReply, JoinRequest, PeerRequest, PeerResponse, META_GROUP};
use crate::shard::{raft_config, Replica};
use crate::stats::Stats;
use crate::store::eviction::MemoryLimits;
use crate::store::{now_ms, Clock};

pub struct Node {
    /// The configuration in force; `CONFIG SET` changes it.
    pub config: RwLock<Config>,
    pub id: NodeId,
    pub params: ClusterParams,
    /// Slot → shard; fixed for the cluster's life (the shard count is).
    pub ring: SlotRing,
    /// Where clients and peers reach this node.
    pub info: NodeInfo,
    groups: RwLock<HashMap<GroupId, Arc<Replica>>>,
    /// Serialises opening groups, so two RPCs for a new group open it once.
    opening: tokio::sync::Mutex<()>,
    /// Serialises join requests on the metadata leader.
    pub join_lock: tokio::sync::Mutex<()>,
    pub pool: PeerPool,
    pub router: Arc<RaftRouter<ShardStateMachine>>,
    raft_config: Arc<openraft::Config>,
    /// Group 0's contents as last read; refreshed in the background.
    topology: RwLock<Arc<Topology>>,
    pub clients: ClientRegistry,
    /// This node's pub/sub subscribers.
    pub pubsub: Arc<crate::pubsub::Hub>,
    /// Blocking commands forwarded here, and the ids of those this node forwards.
    pub forwarded_waits: crate::blocking::forwarded::ForwardedWaits,
    pub stats: Stats,
    pub latency: crate::latency::LatencyStats,
    pub slowlog: crate::slowlog::SlowLog,
    pub errors: crate::errorstats::ErrorStats,
    pub monitor: crate::monitor::Monitor,
    /// Recent ACL denials (`ACL LOG`).
    pub acl_log: crate::acl::AclLog,
    /// `maxmemory` and its policy, shared with every replica (see `store::eviction`).
    pub memory: Arc<MemoryLimits>,
    pub clock: Clock,
    pub started: Instant,
    /// 40 hex characters, new every start (Redis's `run_id`).
    pub run_id: String,
    /// The address clients connect to (with the real port when `--port 0` was given).
    pub client_addr: RwLock<Option<SocketAddr>>,
    /// The port TLS clients connect to (`--tls-port`, resolved when 0 was given); published
    /// in this node's record in group 0.
    pub tls_port: Option<u16>,
    /// Where the HTTP endpoint listens (`--http-port`), once bound.
    pub http_addr: RwLock<Option<SocketAddr>>,
    pub shutdown: CancellationToken,
    /// The graceful stop's client and peer drain (see `drain`).
    pub drain: crate::drain::Drain,
    /// Set when this node has been drained out of the cluster: on the way out it deletes its
    /// state, so the data dir can start a new node.
    pub left: std::sync::atomic::AtomicBool,
}

/// The group that holds shard `shard`.
pub fn shard_group(shard: ShardId) -> GroupId {
    shard as GroupId + 1
}

/// The shard a (non-metadata) group holds.
pub fn group_shard(group: GroupId) -> ShardId {
    (group - 1) as ShardId
}

/// The listeners a node serves on, bound before it knows who it is so that port 0 resolves.
pub struct Listeners {
    pub client: TcpListener,
    pub peer: TcpListener,
    /// `--tls-port`'s listener (TLS clients), when configured.
    pub tls: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(config: &Config) -> std::io::Result<Listeners> {
        let client = TcpListener::bind((config.bind.as_str(), config.port)).await?;
        let peer = TcpListener::bind((config.bind.as_str(), config.peer_port()))
            .await
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cluster port {}: {e}", config.peer_port()),
                )
            })?;
        let tls = match config.tls_port {
            Some(port) => Some(TcpListener::bind((config.bind.as_str(), port)).await?),
            None => None,
        };
        Ok(Listeners { client, peer, tls })
    }
}

impl Node {
    /// Brings the node up: identity, groups, peer listener. Returns once it can serve.
    pub async fn start(config: Config, listeners: &Listeners) -> std::io::Result<Arc<Node>> {
        let ip = config.announce_ip();
        let info = NodeInfo {
            client_addr: format!("{ip}:{}", listeners.client.local_addr()?.port()),
            peer_addr: format!("{ip}:{}", listeners.peer.local_addr()?.port()),
        };
        let secret = config.cluster_secret().map_err(std::io::Error::other)?;
        let tls =
            crate::raft::peer_tls::PeerTls::from_config(&config).map_err(std::io::Error::other)?;
        let auth = PeerAuth::new(secret.as_deref().map(str::as_bytes)).with_tls(tls);
        if auth.is_open() && auth.tls().is_none() && !is_loopback(&config.bind) {
            tracing::warn!(
                bind = %config.bind,
                "no --cluster-secret: any shoal node that reaches the cluster port can join \
                 this cluster and read its data"
            );
        }
        std::fs::create_dir_all(&config.data_dir)?;
        let identity_path = config.data_dir.join("node.conf");
        let (identity, creating) = match Identity::load(&identity_path)? {
            Some(identity) => (identity, false),
            None => match &config.join {
                Some(_) if has_groups(&config.data_dir) => {
                    return Err(std::io::Error::other(format!(
                        "{} holds Raft groups but no node.conf: it belonged to another node; \
                         refusing to join with it (use an empty --data-dir)",
                        config.data_dir.display()
                    )));
                }
                Some(seed) => {
                    let reply = request_join(seed, &info, &auth).await?;
                    let identity = Identity {
                        node_id: reply.node_id,
                        params: ClusterParams {
                            shards: reply.shards,
                            replicas: reply.replicas,
                        },
                    };
                    identity.store(&identity_path)?;
                    (identity, false)
                }
                // Stored once the cluster's groups exist (below): a crash before that starts
                // over, and initializing skips the groups already initialized.
                None => (
                    Identity {
                        node_id: 1,
                        params: ClusterParams {
                            shards: config.shards,
                            replicas: config.replicas,
                        },
                    },
                    true,
                ),
            },
        };
        tracing::info!(
            node = identity.node_id,
            shards = identity.params.shards,
            replicas = identity.params.replicas,
            %info,
            "node identity"
        );
        let shards: Vec<ShardId> = (0..identity.params.shards).collect();
        let memory = Arc::new(MemoryLimits::default());
        configure_memory(&memory, &config);
        let node = Arc::new(Node {
            memory,
            raft_config: raft_config(config.snapshot_entries),
            slowlog: crate::slowlog::SlowLog::new(
                config.slowlog_log_slower_than,
                config.slowlog_max_len as usize,
            ),
            router: Arc::new(RaftRouter::new(config.data_dir.join("incoming"))),
            config: RwLock::new(config),
            id: identity.node_id,
            params: identity.params,
            ring: SlotRing::new(&shards, DEFAULT_VNODES),
            info,
            groups: RwLock::default(),
            opening: tokio::sync::Mutex::new(()),
            join_lock: tokio::sync::Mutex::new(()),
            pool: PeerPool::new(auth),
            topology: RwLock::default(),
            clients: ClientRegistry::default(),
            pubsub: Arc::default(),
            forwarded_waits: Default::default(),
            stats: Stats::default(),
            latency: Default::default(),
            errors: Default::default(),
            monitor: Default::default(),
            acl_log: crate::acl::AclLog::default(),
            clock: Clock::default(),
            started: Instant::now(),
            run_id: random_hex_id(),
            client_addr: RwLock::new(None),
            tls_port: match &listeners.tls {
                Some(l) => Some(l.local_addr()?.port()),
                None => None,
            },
            http_addr: RwLock::new(None),
            shutdown: CancellationToken::new(),
            drain: Default::default(),
            left: std::sync::atomic::AtomicBool::new(false),
        });
        node.pubsub
            .set_limit(node.config.read().output_limits.pubsub.hard);
        for group in node.groups_on_disk()? {
            node.ensure_group(group).await?;
        }
        if creating {
            node.create_cluster().await?;
            identity.store(&identity_path)?;
        } else {
            node.ensure_group(META_GROUP).await?;
        }
        Ok(node)
    }

    fn groups_dir(&self) -> PathBuf {
        self.config.read().data_dir.join("groups")
    }

    /// Where the terms of removed replicas are kept (see [`Node::removed_term`]).
    fn tombstones_dir(&self) -> PathBuf {
        self.config.read().data_dir.join("removed")
    }

    /// The term in which this node's replica of `group` was found removed from the group, if it
    /// was and has not been re-created since. A leader of an older term is a deposed one that
    /// may still count this node in its membership: it must not re-create the replica (an empty
    /// replica would accept its entries and help it commit them).
    pub fn removed_term(&self, group: GroupId) -> Option<u64> {
        std::fs::read_to_string(self.tombstones_dir().join(group.to_string()))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    }

    /// Deletes this node's replica of `group` (it is no longer a member), remembering `term`
    /// (see [`Node::removed_term`]).
    pub async fn remove_group(&self, group: GroupId, term: u64) -> std::io::Result<()> {
        let _guard = self.opening.lock().await;
        let dir = self.tombstones_dir();
        std::fs::create_dir_all(&dir)?;
        write_durably(&dir.join(group.to_string()), term.to_string().as_bytes())?;
        self.router.remove(group);
        let replica = self.groups.write().remove(&group);
        self.count_hosted_shards();
        if let Some(replica) = replica {
            replica.shutdown().await;
            std::fs::remove_dir_all(replica.dir())?;
        }
        Ok(())
    }

    /// `maxmemory` is shared out over the data shards hosted here.
    fn count_hosted_shards(&self) {
        let n = self
            .groups
            .read()
            .keys()
            .filter(|g| **g != META_GROUP)
            .count();
        self.memory.set_hosted_shards(n);
    }

    /// Pushes the memory settings of the configuration in force to the replicas (at start and
    /// after `CONFIG SET`).
    pub fn apply_memory_config(&self) {
        configure_memory(&self.memory, &self.config.read());
    }

    /// Forgets a tombstone: the group's current leader is adding this node again.
    fn clear_removed(&self, group: GroupId) {
        let _ = std::fs::remove_file(self.tombstones_dir().join(group.to_string()));
    }

    /// Deletes everything this node stored (after it has left the cluster).
    pub fn erase_state(&self) -> std::io::Result<()> {
        let data_dir = self.config.read().data_dir.clone();
        for sub in ["groups", "removed", "incoming"] {
            match std::fs::remove_dir_all(data_dir.join(sub)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        match std::fs::remove_file(data_dir.join("node.conf")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn groups_on_disk(&self) -> std::io::Result<Vec<GroupId>> {
        let dir = self.groups_dir();
        let mut groups = Vec::new();
        if dir.exists() {
            for entry in std::fs::read_dir(&dir)? {
                if let Some(g) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) {
                    groups.push(g);
                }
            }
        }
        groups.sort_unstable();
        Ok(groups)
    }

    /// Whether `group` names a group of this cluster.
    pub fn is_valid_group(&self, group: GroupId) -> bool {
        group <= self.params.shards as GroupId
    }

    /// The replica of `group` hosted here, if any.
    pub fn replica(&self, group: GroupId) -> Option<Arc<Replica>> {
        self.groups.read().get(&group).cloned()
    }

    /// Every replica hosted here, by group id.
    pub fn replicas(&self) -> Vec<Arc<Replica>> {
        let mut all: Vec<_> = self.groups.read().values().cloned().collect();
        all.sort_by_key(|r| r.group);
        all
    }

    /// The replica of `group`, opened (and created, empty and uninitialized) if it is not
    /// hosted yet. A leader adding this node to the group then fills it.
    pub async fn ensure_group(self: &Arc<Self>, group: GroupId) -> std::io::Result<Arc<Replica>> {
        if let Some(r) = self.replica(group) {
            return Ok(r);
        }
        let _guard = self.opening.lock().await;
        if let Some(r) = self.replica(group) {
            return Ok(r);
        }
        let dir = self.groups_dir().join(group.to_string());
        self.clear_removed(group);
        let env = crate::shard::ReplicaEnv {
            fsync: self.config.read().appendfsync,
            config: self.raft_config.clone(),
            pool: self.pool.clone(),
            tx_reader: Some(crate::commands::transaction::tx_reader(Arc::downgrade(
                self,
            ))),
            limits: self.memory.clone(),
        };
        let replica = Replica::open(self.id, group, &dir, env).await?;
        self.router.add(group, replica.raft.clone());
        self.groups.write().insert(group, replica.clone());
        self.count_hosted_shards();
        tokio::spawn(replica.clone().run_active_expiry(self.shutdown.clone()));
        tokio::spawn(crate::cluster::events::log_raft_events(
            self.id,
            replica.clone(),
            self.shutdown.clone(),
        ));
        tokio::spawn(replica.clone().run_eviction(self.shutdown.clone()));
        tracing::debug!(group, dir = %dir.display(), "opened replica");
        Ok(replica)
    }

    /// Node 1 of a new cluster: every group starts with this node as its only voter.
    async fn create_cluster(self: &Arc<Self>) -> std::io::Result<()> {
        let members = std::collections::BTreeMap::from([(self.id, self.info.clone())]);
        for group in 0..=self.params.shards as GroupId {
            let replica = self.ensure_group(group).await?;
            if replica.raft.is_initialized().await.unwrap_or(true) {
                continue;
            }
            replica
                .raft
                .initialize(members.clone())
                .await
                .map_err(|e| std::io::Error::other(format!("initializing group {group}: {e}")))?;
        }
        tracing::info!(
            shards = self.params.shards,
            "created a new cluster with this node as node 1"
        );
        Ok(())
    }

    /// Group 0's contents as last read (refreshed every [`TOPOLOGY_REFRESH`]).
    pub fn topology(&self) -> Arc<Topology> {
        self.topology.read().clone()
    }

    /// The ACL user `name`: group 0's record, or for `default` (until one is recorded) the
    /// user `requirepass` describes.
    pub fn acl_user(&self, name: &str) -> Option<crate::acl::User> {
        if let Some(user) = self.topology().users.get(name) {
            return Some(user.clone());
        }
        (name == crate::acl::DEFAULT_USER)
            .then(|| crate::acl::User::implicit_default(self.config.read().requirepass.as_deref()))
    }

    /// Whether a new connection starts authenticated (as `default`, which needs no password).
    pub fn default_user_open(&self) -> bool {
        self.acl_user(crate::acl::DEFAULT_USER)
            .is_some_and(|u| u.enabled && u.nopass)
    }

    /// Rereads group 0's local replica.
    pub fn refresh_topology(&self) {
        if let Some(meta) = self.replica(META_GROUP) {
            let fresh = Topology::read(meta.keyspace(), now_ms());
            if *self.topology.read().as_ref() != fresh {
                *self.topology.write() = Arc::new(fresh);
            }
        }
    }

    /// Where `id` is reached: group 0's record, else any local group's membership.
    /// The TLS port node `id` published (this node's own, for itself).
    pub fn tls_port_of(&self, id: NodeId) -> Option<u16> {
        if id == self.id {
            return self.tls_port;
        }
        self.topology().nodes.get(&id).and_then(|r| r.tls_port)
    }

    /// Where a client should be sent to reach node `id`: its TLS port when the client came
    /// over TLS and the node has one (as Redis Cluster redirects TLS clients), else its plain
    /// client address.
    pub fn client_addr_for(&self, id: NodeId, tls: bool) -> Option<String> {
        let info = self.node_info(id)?;
        match self.tls_port_of(id).filter(|_| tls) {
            Some(port) => {
                let host = info
                    .client_addr
                    .rsplit_once(':')
                    .map_or(info.client_addr.as_str(), |(host, _)| host);
                Some(format!("{host}:{port}"))
            }
            None => Some(info.client_addr),
        }
    }

    pub fn node_info(&self, id: NodeId) -> Option<NodeInfo> {
        if id == self.id {
            return Some(self.info.clone());
        }
        if let Some(info) = self.topology().node_info(id) {
            return Some(info);
        }
        self.replicas().iter().find_map(|r| {
            r.metrics()
                .membership_config
                .membership()
                .get_node(&id)
                .cloned()
        })
    }

    /// The node believed to lead `group`: the local replica's view or what the group's leader
    /// last published in group 0, whichever comes from the later term. (A replica this node
    /// was removed from stops hearing from its group and keeps an old view.)
    pub fn leader_of(&self, group: GroupId) -> Option<NodeId> {
        let local = self.replica(group).and_then(|r| {
            let m = r.metrics();
            let leader = m.current_leader?;
            // Believing itself leader without being one is a view from a past term.
            (leader != self.id || r.is_leader()).then_some((m.current_term, leader))
        });
        if group == META_GROUP {
            return local.map(|(_, l)| l);
        }
        let published = self
            .topology()
            .shards
            .get(&group_shard(group))
            .filter(|s| s.leader != 0)
            .map(|s| (s.term, s.leader));
        match (local, published) {
            (Some(l), Some(p)) => Some(if p.0 > l.0 { p.1 } else { l.1 }),
            (l, p) => l.or(p).map(|(_, id)| id),
        }
    }

    /// Sends a request to node `id` over the peer connection.
    pub async fn call_peer(
        &self,
        id: NodeId,
        request: PeerRequest,
        timeout: Duration,
    ) -> Result<PeerResponse, PeerCallError> {
        let info = self.node_info(id).ok_or(PeerCallError::UnknownNode(id))?;
        let client = self.pool.client(id, &info);
        client
            .request(0, request, timeout)
            .await
            .map_err(PeerCallError::from)
    }

    /// Stops every group (flushing their logs).
    /// Before stopping (SIGTERM): hands the leadership of every group this node leads to its
    /// most caught-up other voter, so that the groups do not wait out an election timeout and
    /// clients see at most a redirection. Bounded by `within`; groups that could not hand over
    /// in time (no other voter, none reachable) elect a leader the usual way.
    pub async fn hand_over_leadership(&self, within: Duration) {
        // A stopping node must not take a leadership back: it no longer campaigns (its
        // replicas still vote), and it refuses leadership transfers (`cluster::service`).
        for replica in self.replicas() {
            replica.raft.runtime_config().elect(false);
        }
        let led: Vec<Arc<Replica>> = self
            .replicas()
            .into_iter()
            .filter(|r| r.is_leader())
            .collect();
        for replica in &led {
            let m = replica.metrics();
            let matched = |id: &NodeId| {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(id))
                    .and_then(|log_id| log_id.as_ref().map(|l| l.index))
            };
            let heir = m
                .membership_config
                .membership()
                .voter_ids()
                .filter(|&id| id != self.id)
                .filter(|id| matched(id).is_some())
                .max_by_key(|id| matched(id));
            if let Some(heir) = heir {
                tracing::info!(
                    group = replica.group,
                    to = heir,
                    "shutting down: handing over leadership"
                );
                let _ = replica.raft.trigger().transfer_leader(heir).await;
            }
        }
        let deadline = tokio::time::Instant::now() + within;
        while led.iter().any(|r| r.is_leader()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop_groups(&self) {
        for replica in self.replicas() {
            replica.shutdown().await;
        }
    }
}

/// Why a request to a peer failed, and whether it may have arrived.
#[derive(Debug, thiserror::Error)]
pub enum PeerCallError {
    #[error("node {0} is not known")]
    UnknownNode(NodeId),
    /// Never sent (no connection): safe to retry anything.
    #[error("{0}")]
    Unsent(String),
    /// Sent, but no answer: it may have taken effect.
    #[error("{0}")]
    Lost(String),
}

impl From<crate::raft::peer::PeerError> for PeerCallError {
    fn from(e: crate::raft::peer::PeerError) -> Self {
        use crate::raft::peer::PeerError;
        match e {
            PeerError::Unreachable(..) => PeerCallError::Unsent(e.to_string()),
            _ => PeerCallError::Lost(e.to_string()),
        }
    }
}

/// How often group 0 is reread into [`Node::topology`].
pub const TOPOLOGY_REFRESH: Duration = Duration::from_millis(200);

/// This node's durable identity: `node.conf` in the data dir.
struct Identity {
    node_id: NodeId,
    params: ClusterParams,
}

impl Identity {
    fn load(path: &Path) -> std::io::Result<Option<Identity>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let bad = |what: &str| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {what}", path.display()),
            )
        };
        let mut fields = HashMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (k, v) = line.split_once(' ').ok_or_else(|| bad("malformed line"))?;
            fields.insert(k.trim(), v.trim());
        }
        let num = |k: &str| -> std::io::Result<u64> {
            fields
                .get(k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad(&format!("missing or invalid {k}")))
        };
        Ok(Some(Identity {
            node_id: num("node-id")?,
            params: ClusterParams {
                shards: num("shards")? as u32,
                replicas: num("replicas")? as u32,
            },
        }))
    }

    fn store(&self, path: &Path) -> std::io::Result<()> {
        let text = format!(
            "node-id {}\nshards {}\nreplicas {}\n",
            self.node_id, self.params.shards, self.params.replicas
        );
        write_durably(path, text.as_bytes())
    }
}

/// Writes `path` through a temporary file, fsynced and renamed, so a crash leaves the old
/// contents or the new.
fn write_durably(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Whether `bind` is a loopback address (only this machine can connect).
pub fn is_loopback(bind: &str) -> bool {
    bind == "localhost"
        || bind
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `data_dir` holds any group directory.
fn has_groups(data_dir: &Path) -> bool {
    std::fs::read_dir(data_dir.join("groups")).is_ok_and(|mut d| d.next().is_some())
}

/// Asks the cluster at `seed` (a peer address) for an id, retrying until it answers.
async fn request_join(seed: &str, info: &NodeInfo, auth: &PeerAuth) -> std::io::Result<JoinReply> {
    let client: crate::raft::network::RaftPeer =
        crate::raft::peer::PeerClient::new(seed, Arc::new(auth.clone()));
    let request = JoinRequest {
        client_addr: info.client_addr.clone(),
        peer_addr: info.peer_addr.clone(),
        token: random_hex_id(),
    };
    let deadline = Instant::now() + JOIN_TIMEOUT;
    let mut last_error = String::new();
    while Instant::now() < deadline {
        match client
            .request(
                0,
                PeerRequest::Join(request.clone()),
                Duration::from_secs(5),
            )
            .await
        {
            Ok(PeerResponse::Join(Ok(reply))) => {
                tracing::info!(seed, node = reply.node_id, "joined the cluster");
                return Ok(reply);
            }
            Ok(PeerResponse::Join(Err(e))) => last_error = e,
            Ok(other) => last_error = format!("unexpected answer {other:?}"),
            Err(e) => last_error = e.to_string(),
        }
        tracing::info!(seed, error = %last_error, "join not accepted yet; retrying");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(std::io::Error::other(format!(
        "could not join the cluster at {seed} within {JOIN_TIMEOUT:?}: {last_error}"
    )))
}

const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A random 40-hex-character id, the form Redis uses for run and node ids.
pub fn random_hex_id() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..40)
        .map(|_| char::from_digit(rng.gen_range(0..16), 16).expect("digit"))
        .collect()
}

fn configure_memory(memory: &MemoryLimits, config: &Config) {
    memory.configure(
        config.maxmemory,
        config.maxmemory_policy,
        config.maxmemory_samples,
        config.lfu_log_factor,
        config.lfu_decay_time,
    );
}
