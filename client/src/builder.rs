//! The client's settings and the builder that collects them.

use std::time::Duration;

use crate::client::Client;
use crate::error::Error;

/// Settings, with defaults meant for a cluster on a LAN (or loopback).
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub seeds: Vec<String>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub retry_deadline: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub max_redirects: usize,
    pub pool_size: usize,
    pub username: Option<String>,
    pub password: Option<String>,
    pub resp3: bool,
    pub read_from_replicas: bool,
    pub breaker_threshold: u32,
    pub breaker_open_for: Duration,
}

/// Builds a [`Client`]: `Client::builder(["127.0.0.1:7001"]).pool_size(2).build().await`.
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    config: Config,
}

impl ClientBuilder {
    pub(crate) fn new<I>(seeds: I) -> ClientBuilder
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let seeds = seeds
            .into_iter()
            .map(|s| {
                let s = s.as_ref().trim();
                s.strip_prefix("redis://").unwrap_or(s).to_owned()
            })
            .collect();
        ClientBuilder {
            config: Config {
                seeds,
                connect_timeout: Duration::from_secs(1),
                response_timeout: Duration::from_secs(3),
                retry_deadline: Duration::from_secs(10),
                backoff_base: Duration::from_millis(20),
                backoff_max: Duration::from_millis(500),
                max_redirects: 16,
                pool_size: 1,
                username: None,
                password: None,
                resp3: false,
                read_from_replicas: false,
                breaker_threshold: 3,
                breaker_open_for: Duration::from_millis(500),
            },
        }
    }

    /// How long opening a connection may take (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How long one attempt waits for its reply (default 3 s). A read that times out is
    /// retried; a write that times out fails with [`Error::OutcomeUnknown`].
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.config.response_timeout = timeout;
        self
    }

    /// The most time one request may spend, retries and backoff included (default 10 s;
    /// a shoal shard elects a new leader in about a second).
    pub fn retry_deadline(mut self, deadline: Duration) -> Self {
        self.config.retry_deadline = deadline;
        self
    }

    /// Retry backoff: attempt n waits a random time below `min(max, base * 2^n)` (defaults
    /// 20 ms and 500 ms).
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.config.backoff_base = base;
        self.config.backoff_max = max;
        self
    }

    /// The most `MOVED`/`ASK` redirects one request follows (default 16).
    pub fn max_redirects(mut self, redirects: usize) -> Self {
        self.config.max_redirects = redirects;
        self
    }

    /// Connections per node (default 1: one multiplexed connection carries many requests at
    /// once; more help only when one connection's socket is the bottleneck).
    pub fn pool_size(mut self, connections: usize) -> Self {
        self.config.pool_size = connections.max(1);
        self
    }

    /// Authenticates every connection with `AUTH password`.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.config.password = Some(password.into());
        self
    }

    /// Authenticates as `username` (with [`ClientBuilder::password`]).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.config.username = Some(username.into());
        self
    }

    /// Speaks RESP3 (`HELLO 3`) instead of RESP2. Replies then carry RESP3 types (maps,
    /// doubles, booleans); the typed methods accept both.
    pub fn resp3(mut self, on: bool) -> Self {
        self.config.resp3 = on;
        self
    }

    /// Sends reads to any node of the slot's shard, replicas included (after `READONLY`).
    /// Such reads may be stale: a replica can lag its leader.
    pub fn read_from_replicas(mut self, on: bool) -> Self {
        self.config.read_from_replicas = on;
        self
    }

    /// The circuit breaker: open after `failures` consecutive failures of a node, probe it
    /// again after `open_for` (defaults 3 and 500 ms).
    pub fn circuit_breaker(mut self, failures: u32, open_for: Duration) -> Self {
        self.config.breaker_threshold = failures.max(1);
        self.config.breaker_open_for = open_for;
        self
    }

    /// Connects to the first seed that answers and reads the cluster's slot map from it (or,
    /// if it does not speak `CLUSTER`, uses it as a single server).
    pub async fn build(self) -> Result<Client, Error> {
        if self.config.seeds.is_empty() {
            return Err(Error::InvalidRequest("no seed address given".into()));
        }
        Client::start(self.config).await
    }
}
