//! One node: a small pool of multiplexed connections behind a circuit breaker.
//!
//! Requests take the pool's connections in turn. When a connection breaks, a background task
//! replaces it at once; a request that still finds it dead reconnects itself (others needing
//! the same connection wait for that one connect instead of each opening their own). When the
//! breaker opens, a background probe reconnects (and sends
//! `PING`) every `open_for` until the node answers, which closes the breaker even when no
//! request is routed to the node any more.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use shoal_protocol::Frame;

use crate::breaker::{Breaker, BreakerState, Tripped};
use crate::cmd::cmd;
use crate::connection::{ConnectOptions, Connection};
use crate::error::Error;
use crate::stats::{NodeStatus, Stats};

struct PoolSlot {
    current: Mutex<Option<Connection>>,
    /// Held while (re)connecting, so one connect serves every request waiting for the slot.
    connecting: tokio::sync::Mutex<()>,
}

impl PoolSlot {
    fn live(&self) -> Option<Connection> {
        self.current
            .lock()
            .as_ref()
            .filter(|c| c.is_alive())
            .cloned()
    }
}

pub(crate) struct Node {
    addr: String,
    pool: Vec<PoolSlot>,
    next: AtomicUsize,
    breaker: Breaker,
    options: Arc<ConnectOptions>,
    stats: Arc<Stats>,
    probing: AtomicBool,
}

impl Node {
    pub fn new(
        addr: String,
        pool_size: usize,
        options: Arc<ConnectOptions>,
        breaker: Breaker,
        stats: Arc<Stats>,
    ) -> Arc<Node> {
        let pool = (0..pool_size.max(1))
            .map(|_| PoolSlot {
                current: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
            })
            .collect();
        Arc::new(Node {
            addr,
            pool,
            next: AtomicUsize::new(0),
            breaker,
            options,
            stats,
            probing: AtomicBool::new(false),
        })
    }

    pub fn status(&self) -> NodeStatus {
        NodeStatus {
            addr: self.addr.clone(),
            breaker: self.breaker.state(),
            open_connections: self.pool.iter().filter(|s| s.live().is_some()).count(),
        }
    }

    /// Sends `replies` encoded commands and waits (up to `timeout`) for their replies. Feeds
    /// the breaker: a reply (even an error reply) is a success, an I/O failure or a timeout a
    /// failure.
    pub async fn request(
        self: &Arc<Self>,
        payload: Bytes,
        replies: usize,
        timeout: Duration,
    ) -> Result<Vec<Frame>, Error> {
        if !self.breaker.allow() {
            return Err(Error::CircuitOpen {
                addr: self.addr.clone(),
            });
        }
        let result = match self.connection().await {
            Ok(connection) => {
                let result = tokio::time::timeout(timeout, connection.send(payload, replies))
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::Timeout {
                            addr: self.addr.clone(),
                            after: timeout,
                        })
                    });
                if result
                    .as_ref()
                    .is_ok_and(|frames| says_shutting_down(frames))
                {
                    // The node is draining: the request was not run (a retryable TRYAGAIN),
                    // and nothing more should be sent on this connection.
                    connection.retire();
                }
                result
            }
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => self.breaker.record_success(),
            Err(e) => {
                self.failed();
                if matches!(e, Error::ConnectionLost { .. }) {
                    self.spawn_reconnect();
                }
            }
        }
        result
    }

    /// Replaces dead pooled connections in the background, so the next request finds a live
    /// one instead of paying for the connect. One attempt: if the node is down, the breaker
    /// and its probe take over.
    fn spawn_reconnect(self: &Arc<Self>) {
        let node = self.clone();
        tokio::spawn(async move {
            for slot in &node.pool {
                if slot.live().is_some() || !node.breaker.allow() {
                    continue;
                }
                match node.reconnect(slot).await {
                    Ok(_) => node.breaker.record_success(),
                    Err(e) => {
                        tracing::debug!(node = %node.addr, error = %e, "background reconnect failed");
                        node.failed();
                        return;
                    }
                }
            }
        });
    }

    fn failed(self: &Arc<Self>) {
        if self.breaker.record_failure() == Tripped::Opened {
            Stats::bump(&self.stats.breaker_opens);
            tracing::warn!(node = %self.addr, "circuit breaker opened");
            self.spawn_probe();
        }
    }

    /// A live connection from the pool, opening one if the slot's is missing or dead.
    async fn connection(&self) -> Result<Connection, Error> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        let slot = &self.pool[i];
        match slot.live() {
            Some(c) => Ok(c),
            None => self.reconnect(slot).await,
        }
    }

    /// Opens the slot's connection unless another task just did (one connect serves all).
    async fn reconnect(&self, slot: &PoolSlot) -> Result<Connection, Error> {
        let _connecting = slot.connecting.lock().await;
        if let Some(c) = slot.live() {
            return Ok(c);
        }
        Stats::bump(&self.stats.connects);
        let c = Connection::open(&self.addr, &self.options).await?;
        tracing::debug!(node = %self.addr, "connected");
        *slot.current.lock() = Some(c.clone());
        Ok(c)
    }

    /// Starts the background probe unless one runs already. It holds the node weakly, so it
    /// ends when the client (or the node's entry) is dropped.
    fn spawn_probe(self: &Arc<Self>) {
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Node> = Arc::downgrade(self);
        let every = self.breaker.open_for();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(node) = weak.upgrade() else { return };
                if node.breaker.state() == BreakerState::Closed {
                    node.probing.store(false, Ordering::Release);
                    return;
                }
                if !node.breaker.allow() {
                    continue; // a request is probing right now
                }
                match node.ping().await {
                    Ok(()) => {
                        node.breaker.record_success();
                        node.probing.store(false, Ordering::Release);
                        tracing::info!(node = %node.addr, "circuit breaker closed: node answers again");
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(node = %node.addr, error = %e, "probe failed");
                        node.breaker.record_failure();
                    }
                }
            }
        });
    }

    async fn ping(&self) -> Result<(), Error> {
        let connection = self.connection().await?;
        let mut payload = BytesMut::new();
        cmd(["PING"]).encode(&mut payload);
        let timeout = self.options.response_timeout;
        match tokio::time::timeout(timeout, connection.send(payload.freeze(), 1)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Timeout {
                addr: self.addr.clone(),
                after: timeout,
            }),
        }
    }
}

/// Whether a reply says its node is shutting down (see [`Connection::retire`]).
fn says_shutting_down(frames: &[Frame]) -> bool {
    frames.iter().any(crate::connection::says_shutting_down)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draining_node_is_recognised_by_its_reply() {
        let draining =
            Frame::Error("TRYAGAIN this node is shutting down; retry on another node".into());
        assert!(says_shutting_down(&[Frame::Integer(1), draining]));
        assert!(!says_shutting_down(&[Frame::Error(
            "TRYAGAIN no leader for the shard".into()
        )]));
    }
}
