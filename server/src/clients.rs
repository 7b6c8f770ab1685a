//! The registry of connected clients: what `CLIENT LIST/INFO/KILL` see.
//!
//! Each connection owns its mutable state; the registry holds what other connections may read
//! (addresses, name, last command) and a token to ask the connection to close.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use dashmap::DashMap;
use parking_lot::Mutex;
use shoal_protocol::{CommandId, Version, COMMANDS};
use tokio_util::sync::CancellationToken;

/// What one connection shows to others.
pub struct ClientHandle {
    pub id: u64,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub created: Instant,
    /// Milliseconds since `created` of the last command.
    last_active_ms: AtomicU64,
    /// `CommandId as usize + 1` of the last command, 0 before the first.
    last_command: AtomicUsize,
    pub meta: Mutex<ClientMeta>,
    /// Cancelled to ask the connection to close (`CLIENT KILL`, shutdown).
    pub kill: CancellationToken,
}

/// Settable attributes of a client.
#[derive(Clone, Debug, Default)]
pub struct ClientMeta {
    pub name: Option<String>,
    pub lib_name: Option<String>,
    pub lib_ver: Option<String>,
    pub resp: Version,
    pub user: String,
}

impl ClientHandle {
    /// A handle outside the registry (id 0): commands a peer forwarded run under one.
    pub fn detached(addr: SocketAddr) -> ClientHandle {
        ClientHandle::new(0, addr, addr)
    }

    fn new(id: u64, addr: SocketAddr, laddr: SocketAddr) -> ClientHandle {
        ClientHandle {
            id,
            addr,
            laddr,
            created: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            last_command: AtomicUsize::new(0),
            meta: Mutex::new(ClientMeta {
                user: "default".into(),
                ..ClientMeta::default()
            }),
            kill: CancellationToken::new(),
        }
    }

    /// Records a command starting at `now`. Only this connection writes these, so plain
    /// stores suffice (no lock on the hot path).
    pub fn touch(&self, command: CommandId, now: Instant) {
        let since = now.saturating_duration_since(self.created).as_millis() as u64;
        self.last_active_ms.store(since, Ordering::Relaxed);
        self.last_command
            .store(command as usize + 1, Ordering::Relaxed);
    }

    pub fn idle_secs(&self) -> u64 {
        let last = self.last_active_ms.load(Ordering::Relaxed);
        (self.created.elapsed().as_millis() as u64).saturating_sub(last) / 1000
    }

    /// One `CLIENT LIST` line (without the newline), Redis's field order.
    pub fn info_line(&self, query_buffer: usize) -> String {
        let meta = self.meta.lock().clone();
        let cmd = match self.last_command.load(Ordering::Relaxed) {
            0 => "NULL",
            n => COMMANDS[n - 1].name,
        };
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf={} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            meta.name.as_deref().unwrap_or(""),
            self.created.elapsed().as_secs(),
            self.idle_secs(),
            query_buffer,
            cmd,
            meta.user,
            meta.resp.number(),
            meta.lib_name.as_deref().unwrap_or(""),
            meta.lib_ver.as_deref().unwrap_or(""),
        )
    }
}

#[derive(Default)]
pub struct ClientRegistry {
    clients: DashMap<u64, Arc<ClientHandle>>,
    next_id: AtomicU64,
    connected: AtomicUsize,
}

impl ClientRegistry {
    /// Registers a connection unless `max` clients are already connected.
    pub fn register(
        &self,
        addr: SocketAddr,
        laddr: SocketAddr,
        max: usize,
    ) -> Option<Arc<ClientHandle>> {
        if self.connected.fetch_add(1, Ordering::AcqRel) >= max {
            self.connected.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let handle = Arc::new(ClientHandle::new(id, addr, laddr));
        self.clients.insert(id, handle.clone());
        Some(handle)
    }

    pub fn unregister(&self, id: u64) {
        if self.clients.remove(&id).is_some() {
            self.connected.fetch_sub(1, Ordering::AcqRel);
        }
    }

    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    /// Every client, by id.
    pub fn all(&self) -> Vec<Arc<ClientHandle>> {
        let mut all: Vec<_> = self.clients.iter().map(|c| c.value().clone()).collect();
        all.sort_by_key(|c| c.id);
        all
    }

    /// Asks every connection to close.
    pub fn kill_all(&self) {
        for c in self.clients.iter() {
            c.kill.cancel();
        }
    }
}
