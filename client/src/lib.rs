//! `shoal-client`: an async, cluster-aware client for shoal (and Redis Cluster).
//!
//! It reads the cluster's slot map from any seed, sends each command to the node leading its
//! key's shard over one multiplexed, pipelined connection per node, and rides out failover:
//! `MOVED` updates the map and retries, `ASK` is followed once, and lost connections,
//! `TRYAGAIN` and `CLUSTERDOWN` refresh the map and retry with exponential backoff and jitter
//! until a deadline. A circuit breaker per node makes a dead node fail fast. A single server
//! without `CLUSTER` support works too.
//!
//! ```no_run
//! use std::time::Duration;
//! use shoal_client::{Client, SetOptions, Ttl};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), shoal_client::Error> {
//!     // Any reachable node will do; the others are found through CLUSTER SLOTS.
//!     let client = Client::connect(["127.0.0.1:7001", "127.0.0.1:7002"]).await?;
//!
//!     client.set("greeting", "hello").await?;
//!     let value = client.get("greeting").await?; // Option<Bytes>
//!     assert_eq!(value.as_deref(), Some(&b"hello"[..]));
//!
//!     client.set_with("session", "abc", SetOptions::new().ex(60).nx()).await?;
//!     client.expire("greeting", 30).await?;
//!     assert!(matches!(client.ttl("greeting").await?, Ttl::Expires(_)));
//!
//!     // Anything without a typed method:
//!     let n = client.cmd(["INCRBY", "visits", "5"]).await?;
//!
//!     // Many commands at once, grouped per node, results in order:
//!     let mut pipe = client.pipeline();
//!     pipe.set("a", "1").incr("a").get("a");
//!     let results = pipe.execute().await;
//!
//!     // Tuning: timeouts, retries, pool size, password, RESP3, replica reads.
//!     let tuned = Client::builder(["127.0.0.1:7001"])
//!         .response_timeout(Duration::from_secs(2))
//!         .retry_deadline(Duration::from_secs(5))
//!         .pool_size(2)
//!         .build()
//!         .await?;
//!     println!("{n:?} {results:?} {:?}", tuned.stats());
//!     Ok(())
//! }
//! ```
//!
//! # Errors and retries
//!
//! Every method returns [`Result<T, Error>`](Error). Server error replies keep their kind
//! ([`ServerErrorKind`], e.g. `WRONGTYPE`) apart from I/O failures and timeouts.
//!
//! Reads are retried after any failure that a retry can fix. Writes are retried only when they
//! surely were not applied (never sent, or refused with `TRYAGAIN`/`CLUSTERDOWN`/`MOVED`). A
//! write that was sent and then lost its connection or its reply, or that the server reports
//! with "the write's outcome is unknown", fails with [`Error::OutcomeUnknown`]: it may or may
//! not have been applied, and retrying it blindly could apply it twice (think `INCR`).
//!
//! # Observability
//!
//! Each request runs in a `tracing` span `shoal_request` (command, slot, node, retries,
//! redirects). [`Client::stats`] counts redirects, retries, topology refreshes, reconnects and
//! breaker openings; [`Client::nodes`] shows each node's breaker state.

mod breaker;
mod builder;
mod client;
mod cmd;
mod commands;
mod connection;
mod error;
mod node;
mod pipeline;
mod reply;
mod retry;
mod stats;
mod topology;

pub use breaker::BreakerState;
pub use builder::ClientBuilder;
pub use bytes::Bytes;
pub use client::Client;
pub use cmd::{cmd, Cmd, ToArg};
pub use commands::{Condition, Expiry, SetOptions, SetOutcome, Ttl};
pub use error::{Error, ServerErrorKind};
pub use pipeline::Pipeline;
pub use reply::FromReply;
pub use shoal_protocol::{key_slot, Frame};
pub use stats::{NodeStatus, StatsSnapshot};
