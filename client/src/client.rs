//! The client: finds the node for each command, sends it, and follows redirects and retries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parking_lot::RwLock;
use rand::seq::SliceRandom;
use rand::Rng;
use shoal_protocol::Frame;
use tracing::Instrument;

use crate::breaker::Breaker;
use crate::builder::{ClientBuilder, Config};
use crate::cmd::{cmd, Cmd, Route, ToArg};
use crate::connection::{ConnectOptions, Connection};
use crate::error::{Error, ServerErrorKind};
use crate::node::Node;
use crate::reply::FromReply;
use crate::retry::{classify, Backoff, Outcome};
use crate::stats::{NodeStatus, Stats, StatsSnapshot};
use crate::topology::SlotMap;

/// Topology refreshes closer together than this are skipped: after a failover many requests
/// ask for one at once, and one fetch serves them all.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(50);

/// `MOVED` redirects one request follows at once; later ones wait a backoff first.
const FREE_REDIRECTS: usize = 2;

/// A handle to a shoal cluster (or a single server). Cheap to clone; clones share connections,
/// the slot map and the counters. Dropping the last clone closes the connections.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// Whether the seeds spoke `CLUSTER`.
#[derive(Debug)]
enum Mode {
    Cluster,
    /// A single server: every command goes to it.
    Standalone {
        addr: String,
    },
}

struct Inner {
    config: Config,
    mode: Mode,
    connect_options: Arc<ConnectOptions>,
    map: RwLock<Arc<SlotMap>>,
    /// Bumped whenever the map changes, so concurrent refreshes of one stale map collapse.
    map_generation: AtomicU64,
    last_refresh: tokio::sync::Mutex<Instant>,
    nodes: RwLock<HashMap<String, Arc<Node>>>,
    stats: Arc<Stats>,
    /// Spreads keyless commands over the nodes.
    round_robin: AtomicUsize,
}

impl Client {
    /// Connects with default settings; see [`Client::builder`] for the others.
    pub async fn connect<I>(seeds: I) -> Result<Client, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Client::builder(seeds).build().await
    }

    /// A builder for settings other than the defaults.
    pub fn builder<I>(seeds: I) -> ClientBuilder
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        ClientBuilder::new(seeds)
    }

    pub(crate) async fn start(config: Config) -> Result<Client, Error> {
        let mut options = ConnectOptions {
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            username: config.username.clone(),
            password: config.password.clone(),
            resp3: config.resp3,
            cluster_client: false,
            readonly: false,
        };
        let mut failures = Vec::new();
        for seed in &config.seeds {
            match discover(seed, &options).await {
                Ok(Some(map)) => {
                    options.cluster_client = true;
                    options.readonly = config.read_from_replicas;
                    return Ok(Client::new(config, options, Mode::Cluster, map));
                }
                Ok(None) => {
                    let mode = Mode::Standalone { addr: seed.clone() };
                    return Ok(Client::new(config, options, mode, SlotMap::empty()));
                }
                Err(e) => {
                    tracing::debug!(seed = %seed, error = %e, "seed unusable");
                    // A refused password will not be accepted by the next seed either.
                    if matches!(
                        e.server_kind(),
                        Some(ServerErrorKind::WrongPass | ServerErrorKind::NoAuth)
                    ) {
                        return Err(e);
                    }
                    failures.push(format!("{seed}: {e}"));
                }
            }
        }
        Err(Error::NoReachableSeed(failures.join("; ")))
    }

    fn new(config: Config, options: ConnectOptions, mode: Mode, map: SlotMap) -> Client {
        tracing::debug!(?mode, "shoal client ready");
        Client {
            inner: Arc::new(Inner {
                config,
                mode,
                connect_options: Arc::new(options),
                map: RwLock::new(Arc::new(map)),
                map_generation: AtomicU64::new(0),
                last_refresh: tokio::sync::Mutex::new(Instant::now()),
                nodes: RwLock::new(HashMap::new()),
                stats: Arc::new(Stats::default()),
                round_robin: AtomicUsize::new(0),
            }),
        }
    }

    /// Runs any command and returns its reply frame; error replies become `Err`.
    ///
    /// ```no_run
    /// # async fn f(client: shoal_client::Client) -> Result<(), shoal_client::Error> {
    /// let reply = client.cmd(["SET", "greeting", "hello"]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn cmd<I>(&self, args: I) -> Result<Frame, Error>
    where
        I: IntoIterator,
        I::Item: ToArg,
    {
        self.execute(&cmd(args)).await
    }

    /// Runs a command and reads its reply as `T`.
    pub async fn query<T: FromReply>(&self, command: Cmd) -> Result<T, Error> {
        T::from_reply(self.execute(&command).await?)
    }

    /// A pipeline: commands sent together, grouped per node, results in the caller's order.
    pub fn pipeline(&self) -> crate::pipeline::Pipeline {
        crate::pipeline::Pipeline::new(self.clone())
    }

    /// The counters so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// Every node the client has talked to, with its breaker state.
    pub fn nodes(&self) -> Vec<NodeStatus> {
        let mut nodes: Vec<NodeStatus> = self
            .inner
            .nodes
            .read()
            .values()
            .map(|n| n.status())
            .collect();
        nodes.sort_by(|a, b| a.addr.cmp(&b.addr));
        nodes
    }

    /// True when the seeds speak `CLUSTER` (false for a single server).
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.mode, Mode::Cluster)
    }

    /// The address of the node that leads `slot`, by the client's current map.
    pub fn leader_of_slot(&self, slot: u16) -> Option<String> {
        match &self.inner.mode {
            Mode::Standalone { addr } => Some(addr.clone()),
            Mode::Cluster => self.inner.map.read().owners(slot).map(|o| o.leader.clone()),
        }
    }

    /// Fetches the slot map again now.
    pub async fn refresh_topology(&self) -> Result<(), Error> {
        let generation = self.generation();
        self.refresh(generation, true).await
    }

    /// Runs one command with routing, redirects and retries.
    pub(crate) async fn execute(&self, command: &Cmd) -> Result<Frame, Error> {
        Stats::bump(&self.inner.stats.requests);
        let route = self.route(command)?;
        let span = tracing::debug_span!(
            "shoal_request",
            command = %command.name(),
            slot = ?route.slot,
            node = tracing::field::Empty,
            retries = 0u32,
            redirects = 0usize,
        );
        let mut payload = BytesMut::new();
        command.encode(&mut payload);
        self.execute_routed(payload.freeze(), route)
            .instrument(span)
            .await
    }

    async fn execute_routed(&self, payload: Bytes, route: Route) -> Result<Frame, Error> {
        let config = &self.inner.config;
        let started = Instant::now();
        let deadline = started + config.retry_deadline;
        let backoff = Backoff {
            base: config.backoff_base,
            max: config.backoff_max,
        };
        let mut attempts = 0u32;
        let mut redirects = 0usize;
        let mut ask: Option<String> = None;
        loop {
            attempts += 1;
            let generation = self.generation();
            let asking = ask.is_some();
            let target = match ask.take() {
                Some(addr) => Ok(addr),
                None => self.pick_node(route),
            };
            let result = match target {
                Ok(addr) => {
                    tracing::Span::current().record("node", addr.as_str());
                    let timeout = config
                        .response_timeout
                        .min(deadline.saturating_duration_since(Instant::now()))
                        .max(Duration::from_millis(10));
                    self.send_one(&addr, payload.clone(), asking, timeout).await
                }
                Err(e) => Err(e),
            };
            match classify(result, route.write) {
                Outcome::Reply(frame) => return Ok(frame),
                Outcome::Fail(e) => {
                    if e.is_outcome_unknown() {
                        Stats::bump(&self.inner.stats.outcome_unknown);
                    }
                    return Err(e);
                }
                Outcome::Moved { slot, addr } => {
                    Stats::bump(&self.inner.stats.moved);
                    redirects += 1;
                    tracing::Span::current().record("redirects", redirects);
                    if redirects > config.max_redirects {
                        return Err(Error::TooManyRedirects(redirects));
                    }
                    tracing::debug!(slot, to = %addr, "MOVED");
                    self.apply_moved(slot, &addr, generation);
                    // Nodes can disagree on a leader for a moment (an election, a leadership
                    // transfer) and bounce a request between them: from the third redirect
                    // on, wait as for a retry, so the redirects outlast the disagreement.
                    if redirects > FREE_REDIRECTS {
                        let delay = backoff.delay(redirects as u32 - FREE_REDIRECTS as u32);
                        if Instant::now() + delay >= deadline {
                            return Err(Error::DeadlineExceeded {
                                attempts,
                                elapsed: started.elapsed(),
                                last: Box::new(Error::from_server(format!("MOVED {slot} {addr}"))),
                            });
                        }
                        tokio::time::sleep(delay).await;
                    }
                }
                Outcome::Ask { addr } => {
                    Stats::bump(&self.inner.stats.ask);
                    redirects += 1;
                    tracing::Span::current().record("redirects", redirects);
                    if redirects > config.max_redirects {
                        return Err(Error::TooManyRedirects(redirects));
                    }
                    tracing::debug!(to = %addr, "ASK");
                    ask = Some(addr);
                }
                // A single server has no other node: its open breaker is the answer. (In a
                // cluster the next map may route elsewhere: a new leader after a failover.)
                Outcome::Retry(e @ Error::CircuitOpen { .. }) if !self.is_cluster() => {
                    return Err(e);
                }
                Outcome::Retry(e) => {
                    let delay = backoff.delay(attempts);
                    if Instant::now() + delay >= deadline {
                        return Err(Error::DeadlineExceeded {
                            attempts,
                            elapsed: started.elapsed(),
                            last: Box::new(e),
                        });
                    }
                    Stats::bump(&self.inner.stats.retries);
                    tracing::Span::current().record("retries", attempts);
                    tracing::debug!(error = %e, ?delay, "retrying");
                    tokio::time::sleep(delay).await;
                    if matches!(self.inner.mode, Mode::Cluster) {
                        // Bounded by the deadline: a refresh may be slow (every candidate
                        // timing out), and this request may not wait past its deadline for it.
                        let remaining = deadline.saturating_duration_since(Instant::now());
                        match tokio::time::timeout(remaining, self.refresh(generation, false)).await
                        {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => tracing::debug!(error = %e, "topology refresh failed"),
                            Err(_) => tracing::debug!("topology refresh outlasted the deadline"),
                        }
                    }
                }
            }
        }
    }

    /// Sends one command (after `ASKING` when `asking`) to `addr` and returns its reply.
    async fn send_one(
        &self,
        addr: &str,
        payload: Bytes,
        asking: bool,
        timeout: Duration,
    ) -> Result<Frame, Error> {
        let node = self.node(addr);
        let (payload, replies) = if asking {
            let mut both = BytesMut::new();
            cmd(["ASKING"]).encode(&mut both);
            both.extend_from_slice(&payload);
            (both.freeze(), 2)
        } else {
            (payload, 1)
        };
        let mut frames = node.request(payload, replies, timeout).await?;
        frames.pop().ok_or_else(|| Error::Protocol {
            addr: addr.to_owned(),
            reason: "no reply".into(),
        })
    }

    /// Sends several encoded commands to one node in one go (for pipelines).
    pub(crate) async fn send_batch(
        &self,
        addr: &str,
        payload: Bytes,
        replies: usize,
    ) -> Result<Vec<Frame>, Error> {
        let timeout = self.inner.config.response_timeout;
        self.node(addr).request(payload, replies, timeout).await
    }

    /// Where a command goes; [`Error::CrossSlot`] if it names keys of several slots in a
    /// cluster.
    pub(crate) fn route(&self, command: &Cmd) -> Result<Route, Error> {
        let route = command.route()?;
        if route.cross_slot && self.is_cluster() {
            return Err(Error::CrossSlot);
        }
        Ok(route)
    }

    /// The node a command should go to now.
    pub(crate) fn pick_node(&self, route: Route) -> Result<String, Error> {
        let map = match &self.inner.mode {
            Mode::Standalone { addr } => return Ok(addr.clone()),
            Mode::Cluster => self.inner.map.read().clone(),
        };
        let Some(slot) = route.slot else {
            let addrs = map.addrs();
            let i = self.inner.round_robin.fetch_add(1, Ordering::Relaxed);
            return addrs
                .get(i % addrs.len().max(1))
                .cloned()
                .or_else(|| self.inner.config.seeds.first().cloned())
                .ok_or_else(|| Error::InvalidRequest("no node known".into()));
        };
        let Some(owners) = map.owners(slot) else {
            return Err(Error::Server {
                kind: ServerErrorKind::ClusterDown,
                message: format!("CLUSTERDOWN slot {slot} is not in the client's slot map"),
            });
        };
        if self.inner.config.read_from_replicas && !route.write && !owners.replicas.is_empty() {
            let i = rand::thread_rng().gen_range(0..=owners.replicas.len());
            return Ok(if i == 0 {
                owners.leader.clone()
            } else {
                owners.replicas[i - 1].clone()
            });
        }
        Ok(owners.leader.clone())
    }

    fn node(&self, addr: &str) -> Arc<Node> {
        if let Some(node) = self.inner.nodes.read().get(addr) {
            return node.clone();
        }
        let config = &self.inner.config;
        self.inner
            .nodes
            .write()
            .entry(addr.to_owned())
            .or_insert_with(|| {
                Node::new(
                    addr.to_owned(),
                    config.pool_size,
                    self.inner.connect_options.clone(),
                    Breaker::new(config.breaker_threshold, config.breaker_open_for),
                    self.inner.stats.clone(),
                )
            })
            .clone()
    }

    /// Adds `n` to the request counter (pipelines count each command).
    pub(crate) fn count_requests(&self, n: u64) {
        self.inner.stats.requests.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn map_generation(&self) -> u64 {
        self.generation()
    }

    fn generation(&self) -> u64 {
        self.inner.map_generation.load(Ordering::Acquire)
    }

    /// `MOVED slot addr`: patch the slot at once, and refresh the whole map in the background
    /// (a moved slot usually means its whole shard has a new leader).
    pub(crate) fn apply_moved(&self, slot: u16, addr: &str, generation: u64) {
        {
            let mut map = self.inner.map.write();
            if map.owners(slot).is_some_and(|o| o.leader == addr) {
                return; // another request already applied this redirect
            }
            Arc::make_mut(&mut *map).moved(slot, addr);
        }
        let client = self.clone();
        tokio::spawn(async move {
            if let Err(e) = client.refresh(generation, false).await {
                tracing::debug!(error = %e, "topology refresh after MOVED failed");
            }
        });
    }

    /// Fetches `CLUSTER SLOTS` from a known node (or a seed) unless the map already changed
    /// since `seen_generation` or was fetched very recently (`force` skips the latter).
    async fn refresh(&self, seen_generation: u64, force: bool) -> Result<(), Error> {
        if !matches!(self.inner.mode, Mode::Cluster) {
            return Ok(());
        }
        let mut last = self.inner.last_refresh.lock().await;
        if self.generation() != seen_generation || (!force && last.elapsed() < MIN_REFRESH_INTERVAL)
        {
            return Ok(());
        }
        let mut candidates = self.inner.map.read().addrs().to_vec();
        candidates.shuffle(&mut rand::thread_rng());
        for seed in &self.inner.config.seeds {
            if !candidates.contains(seed) {
                candidates.push(seed.clone());
            }
        }
        let mut payload = BytesMut::new();
        cmd(["CLUSTER", "SLOTS"]).encode(&mut payload);
        let payload = payload.freeze();
        let mut last_error = None;
        for addr in candidates {
            let reply = self.send_batch(&addr, payload.clone(), 1).await;
            let map = reply.and_then(|mut frames| {
                let frame = frames.pop().unwrap_or(Frame::Null);
                SlotMap::from_cluster_slots(&frame, &addr)
            });
            match map {
                Ok(map) => {
                    *self.inner.map.write() = Arc::new(map);
                    self.inner.map_generation.fetch_add(1, Ordering::AcqRel);
                    Stats::bump(&self.inner.stats.topology_refreshes);
                    *last = Instant::now();
                    tracing::debug!(from = %addr, "slot map refreshed");
                    return Ok(());
                }
                Err(e) => last_error = Some(e),
            }
        }
        *last = Instant::now();
        Err(last_error.unwrap_or_else(|| Error::NoReachableSeed("no node to ask".into())))
    }
}

/// Asks `seed` for the slot map: `Some(map)` for a cluster node, `None` for a single server
/// that does not know `CLUSTER`.
async fn discover(seed: &str, options: &ConnectOptions) -> Result<Option<SlotMap>, Error> {
    let connection = Connection::open(seed, options).await?;
    let mut payload = BytesMut::new();
    cmd(["CLUSTER", "SLOTS"]).encode(&mut payload);
    let reply = tokio::time::timeout(
        options.response_timeout,
        connection.send(payload.freeze(), 1),
    )
    .await
    .map_err(|_| Error::Timeout {
        addr: seed.to_owned(),
        after: options.response_timeout,
    })??;
    match reply.into_iter().next() {
        Some(Frame::Error(message)) if is_not_a_cluster(&message) => Ok(None),
        Some(Frame::Error(message)) => Err(Error::from_server(message)),
        Some(frame) => SlotMap::from_cluster_slots(&frame, seed).map(Some),
        None => Err(Error::Protocol {
            addr: seed.to_owned(),
            reason: "no reply".into(),
        }),
    }
}

/// How servers without cluster support answer `CLUSTER SLOTS`.
fn is_not_a_cluster(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("unknown command") || lower.contains("cluster support disabled")
}
