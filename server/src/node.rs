//! A node: everything one `shoal-server` process shares among its connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use crate::clients::ClientRegistry;
use crate::config::Config;
use crate::shard::Shard;
use crate::stats::Stats;
use crate::store::Clock;

pub struct Node {
    /// The configuration in force; `CONFIG SET` changes it.
    pub config: RwLock<Config>,
    pub shard: Arc<Shard>,
    pub clients: ClientRegistry,
    pub stats: Stats,
    pub clock: Clock,
    pub started: Instant,
    /// 40 hex characters, new every start (Redis's `run_id`).
    pub run_id: String,
    /// The address clients connect to (with the real port when `--port 0` was given).
    pub client_addr: RwLock<Option<SocketAddr>>,
    pub shutdown: CancellationToken,
}

impl Node {
    pub fn new(config: Config) -> Arc<Node> {
        Arc::new(Node {
            config: RwLock::new(config),
            shard: Arc::new(Shard::new()),
            clients: ClientRegistry::default(),
            stats: Stats::default(),
            clock: Clock::default(),
            started: Instant::now(),
            run_id: random_hex_id(),
            client_addr: RwLock::new(None),
            shutdown: CancellationToken::new(),
        })
    }
}

/// A random 40-hex-character id, the form Redis uses for run and node ids.
pub fn random_hex_id() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..40)
        .map(|_| char::from_digit(rng.gen_range(0..16), 16).expect("digit"))
        .collect()
}
