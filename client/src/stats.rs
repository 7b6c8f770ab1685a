//! Counters a caller can read to see what the client did on its behalf.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::breaker::BreakerState;

#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub requests: AtomicU64,
    pub moved: AtomicU64,
    pub ask: AtomicU64,
    pub retries: AtomicU64,
    pub topology_refreshes: AtomicU64,
    pub connects: AtomicU64,
    pub breaker_opens: AtomicU64,
    pub outcome_unknown: AtomicU64,
}

impl Stats {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            requests: get(&self.requests),
            moved_redirects: get(&self.moved),
            ask_redirects: get(&self.ask),
            retries: get(&self.retries),
            topology_refreshes: get(&self.topology_refreshes),
            connects: get(&self.connects),
            breaker_opens: get(&self.breaker_opens),
            outcome_unknown: get(&self.outcome_unknown),
        }
    }
}

/// The client's counters since it was built ([`crate::Client::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Commands asked for (a pipeline counts each of its commands).
    pub requests: u64,
    /// `MOVED` replies followed.
    pub moved_redirects: u64,
    /// `ASK` replies followed.
    pub ask_redirects: u64,
    /// Attempts repeated after a retryable failure (`TRYAGAIN`, `CLUSTERDOWN`, a connection
    /// that could not be used, a timed-out read, an open breaker).
    pub retries: u64,
    /// Slot maps fetched.
    pub topology_refreshes: u64,
    /// Connections opened (including reconnects and probes).
    pub connects: u64,
    /// Times a node's circuit breaker opened.
    pub breaker_opens: u64,
    /// Writes that failed with an unknown outcome.
    pub outcome_unknown: u64,
}

/// One node as the client sees it ([`crate::Client::nodes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// `host:port`.
    pub addr: String,
    pub breaker: BreakerState,
    /// Pooled connections that are open now.
    pub open_connections: usize,
}
