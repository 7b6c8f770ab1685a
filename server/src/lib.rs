//! shoal-server: one node of shoal, a sharded, Raft-replicated, Redis-compatible cache.
//!
//! Code map (see ARCHITECTURE.md at the repository root for the invariants):
//! - `config`: flags, the redis.conf-style file, what `CONFIG` sees.
//! - `net`: the client listener and per-connection loop (pipelining, limits).
//! - `commands`: one module per command family; `execute` is the single entry point.
//! - `store`: keyspace, deterministic write entries, the state machine, active expiry.
//! - `shard`: a replica of one shard, the path writes take into its state machine.
//! - `node`, `clients`, `stats`: what a process shares among its connections.

pub mod clients;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod error;
pub mod glob;
pub mod net;
pub mod node;
pub mod numbers;
pub mod raft;
pub mod shard;
pub mod stats;
pub mod store;

use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::Config;
pub use node::Node;

/// Binds the client port and serves until `node.shutdown` is cancelled.
pub async fn serve(node: Arc<Node>) -> std::io::Result<()> {
    let (bind, port) = {
        let c = node.config.read();
        (c.bind.clone(), c.port)
    };
    let listener = TcpListener::bind((bind.as_str(), port)).await?;
    let addr = listener.local_addr()?;
    *node.client_addr.write() = Some(addr);
    tokio::spawn(node.shard.clone().run_active_expiry(node.shutdown.clone()));
    tokio::spawn(resync_clock(node.clone()));
    tracing::info!(%addr, "ready to accept connections");
    println!(
        "shoal ready on {addr}; connect with: redis-cli -h {} -p {}",
        addr.ip(),
        addr.port()
    );
    net::listener::accept_loop(node.clone(), listener).await;
    node.clients.kill_all();
    Ok(())
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
