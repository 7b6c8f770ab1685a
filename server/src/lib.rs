//! shoal-server: one node of shoal, a sharded, Raft-replicated, Redis-compatible cache.
//!
//! Code map (see ARCHITECTURE.md at the repository root for the invariants):
//! - `config`: flags, the redis.conf-style file, what `CONFIG` sees.
//! - `net`: the client listener and per-connection loop (pipelining, limits).
//! - `commands`: one module per command family; `execute` is the single entry point.
//! - `store`: keyspace, deterministic write entries, the state machine, active expiry.
//! - `types`: the collection commands (hash, list, set, sorted set), reads and `apply`.
//! - `route`, `pipeline`: the data path — where a request runs, and running a batch of them
//!   on the shard leaders (here or forwarded) with replies in request order.
//! - `shard`: a replica of one Raft group (log, state machine, openraft instance).
//! - `raft`: the Raft plumbing (types, log store, snapshots, peer transport and network).
//! - `cluster`: ring and placement (pure), metadata records, the reconciler, peer service.
//! - `rpc`: what nodes ask each other.
//! - `node`, `clients`, `stats`, `latency`, `slowlog`: what a process shares among its
//!   connections.
//! - `http`: metrics, health and the status page; `logging`: the log subscriber.

pub mod acl;
pub mod alloc;
pub mod blocking;
pub mod clients;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod drain;
pub mod error;
pub mod errorstats;
pub mod glob;
pub mod http;
pub mod latency;
pub mod logging;
pub mod long_double;
pub mod monitor;
pub mod net;
pub mod node;
pub mod numbers;
pub mod pipeline;
pub mod pubsub;
pub mod raft;
pub mod route;
pub mod rpc;
pub mod shard;
pub mod slowlog;
pub mod stats;
pub mod store;
pub mod types;

use std::sync::Arc;

pub use config::Config;
pub use node::Node;

use node::{Listeners, TOPOLOGY_REFRESH};

/// Runs a node until `shutdown` is cancelled: binds its ports, comes up (creating or joining
/// a cluster, or rejoining from the data dir), serves clients and peers, then stops its groups.
pub async fn run(
    config: Config,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let listeners = Listeners::bind(&config).await?;
    let http = match config.http_port {
        Some(port) => Some(http::bind(&config.bind, port).await?),
        None => None,
    };
    let tls = net::tls::acceptor(&config).map_err(std::io::Error::other)?;
    let node = Node::start(config, &listeners).await?;
    if let Some(listener) = http {
        let addr = listener.local_addr()?;
        *node.http_addr.write() = Some(addr);
        tracing::info!(%addr, "HTTP endpoint (/metrics /healthz /readyz /cluster.json /) listening");
        println!("shoal http on {addr}");
        tokio::spawn(http::serve(node.clone(), listener));
    }
    let Listeners {
        client,
        peer,
        tls: tls_listener,
    } = listeners;
    let handler = {
        let node = node.clone();
        move |group, request| cluster::service::handle(node.clone(), group, request)
    };
    // Peers are served past `node.shutdown`, until the groups have stopped: a stopping node's
    // leaders hand over first and need to hear their successors, and forwarded requests
    // finish (see below and `drain`).
    let peers_stop = tokio_util::sync::CancellationToken::new();
    let _stop_serving_peers = peers_stop.clone().drop_guard();
    let peers = tokio::spawn(raft::peer::serve_peers(
        peer,
        node.pool.auth(),
        handler,
        peers_stop.clone(),
    ));
    tokio::spawn(cluster::reconcile::run(node.clone()));
    tokio::spawn(refresh_topology(node.clone()));
    tokio::spawn(resync_clock(node.clone()));
    {
        let node = node.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            node.shutdown.cancel();
        });
    }
    let addr = client.local_addr()?;
    *node.client_addr.write() = Some(addr);
    tracing::info!(%addr, peer = %node.info.peer_addr, node = node.id, "ready to accept connections");
    println!(
        "shoal ready on {addr}; connect with: redis-cli -h {} -p {}",
        addr.ip(),
        addr.port()
    );
    if let (Some(tls), Some(listener)) = (tls, tls_listener) {
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "TLS port ready");
        println!("shoal TLS on {addr}");
        tokio::spawn(net::listener::accept_loop(
            node.clone(),
            listener,
            Some(tls),
        ));
    }
    net::listener::accept_loop(node.clone(), client, None).await;
    // Leaders hand over while this node's clients are still connected: their requests in
    // flight finish, later ones are forwarded to the new leaders (or redirected there).
    node.hand_over_leadership(HANDOVER_TIMEOUT).await;
    drain_clients(&node).await;
    if !node.drain.peer_work_done(drain::PEER_DRAIN).await {
        tracing::warn!("shutting down with forwarded requests still running");
    }
    // A leadership that reached this node during the drain (another node's leader balancing,
    // an election) is handed over too, so its group does not wait out an election timeout.
    node.hand_over_leadership(REHANDOVER_TIMEOUT).await;
    node.stop_groups().await;
    node.drain.peers_quiet(drain::PEER_QUIET_WAIT).await;
    // Replies to what peers sent meanwhile go out before their connections close.
    peers_stop.cancel();
    let _ = tokio::time::timeout(raft::peer::SERVE_DRAIN + drain::LINGER, peers).await;
    if node.left.load(std::sync::atomic::Ordering::SeqCst) {
        node.erase_state()?;
        tracing::info!("left the cluster; this node's state is erased");
        println!("shoal: this node was drained and has left the cluster");
    }
    Ok(())
}

/// Asks every client connection to finish what it has read and close (see `drain`), waits
/// for them up to the drain deadline (and a little more, for their last replies), then closes
/// whatever is left (a blocked client, a monitor).
async fn drain_clients(node: &Node) {
    let started = tokio::time::Instant::now();
    let connected = node.clients.connected();
    node.drain.begin(drain::CLIENT_DRAIN);
    let until = started + drain::CLIENT_DRAIN + drain::LINGER * 2;
    while node.clients.connected() > 0 && tokio::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let left = node.clients.connected();
    if left > 0 {
        tracing::info!(
            clients = left,
            "shutting down: closing clients that did not finish"
        );
    } else {
        tracing::info!(clients = connected, elapsed = ?started.elapsed(), "shutting down: clients drained");
    }
    node.clients.kill_all();
}

/// The longest a stopping node waits for groups it came to lead while draining to take new
/// leaders.
const REHANDOVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest a stopping node waits for its groups to take new leaders.
const HANDOVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Keeps [`Node::topology`] close to group 0's contents.
async fn refresh_topology(node: Arc<Node>) {
    let mut tick = tokio::time::interval(TOPOLOGY_REFRESH);
    loop {
        tokio::select! {
            _ = node.shutdown.cancelled() => return,
            _ = tick.tick() => node.refresh_topology(),
        }
    }
}

/// Keeps the commands' cheap clock aligned with the wall clock (which NTP may step).
async fn resync_clock(node: Arc<Node>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = node.shutdown.cancelled() => return,
            _ = tick.tick() => node.clock.resync(),
        }
    }
}
