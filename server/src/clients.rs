//! The registry of connected clients: what `CLIENT LIST/INFO/KILL` see.
//!
//! Each connection owns its mutable state; the registry holds what other connections may read
//! (addresses, name, last command) and a token to ask the connection to close.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
    /// Connected over TLS (`--tls-port`): redirections and the topology name TLS ports.
    pub tls: bool,
    pub created: Instant,
    /// Milliseconds since `created` of the last command.
    last_active_ms: AtomicU64,
    /// `CommandId as usize + 1` of the last command, 0 before the first.
    last_command: AtomicUsize,
    pub meta: Mutex<ClientMeta>,
    /// Cancelled to ask the connection to close (`CLIENT KILL`, shutdown).
    pub kill: CancellationToken,
    /// Unprocessed input bytes buffered (`qbuf`), as the connection last saw them.
    pub query_bytes: AtomicUsize,
    /// Reply bytes waiting to be sent (`omem`), as the connection last saw them.
    pub output_bytes: AtomicUsize,
    /// Bytes the connection's buffers hold (allocated), with its queued pub/sub messages.
    pub mem_bytes: AtomicUsize,
    /// Set when the connection is closed for passing an output buffer limit.
    output_limit_hit: AtomicBool,
    /// Set while the client waits in a blocking command: `CLIENT UNBLOCK` sends on it
    /// (`true`: with an error, `false`: as a timeout).
    blocked: Mutex<Option<tokio::sync::oneshot::Sender<bool>>>,
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
        ClientHandle::new(0, addr, addr, false)
    }

    fn new(id: u64, addr: SocketAddr, laddr: SocketAddr, tls: bool) -> ClientHandle {
        ClientHandle {
            id,
            addr,
            laddr,
            tls,
            created: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            last_command: AtomicUsize::new(0),
            meta: Mutex::new(ClientMeta {
                user: "default".into(),
                ..ClientMeta::default()
            }),
            kill: CancellationToken::new(),
            query_bytes: AtomicUsize::new(0),
            output_bytes: AtomicUsize::new(0),
            mem_bytes: AtomicUsize::new(0),
            output_limit_hit: AtomicBool::new(false),
            blocked: Mutex::new(None),
        }
    }

    /// Marks the client blocked (`flags=b`, `blocked_clients`) until the guard is dropped;
    /// the guard's receiver hears `CLIENT UNBLOCK`.
    pub fn block(&self) -> BlockedGuard<'_> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        *self.blocked.lock() = Some(tx);
        BlockedGuard {
            handle: self,
            unblock: rx,
        }
    }

    pub fn is_blocked(&self) -> bool {
        self.blocked.lock().is_some()
    }

    /// `CLIENT UNBLOCK`: ends the client's wait (with an error, or as a timeout); false if it
    /// was not blocked.
    pub fn unblock(&self, error: bool) -> bool {
        match self.blocked.lock().take() {
            Some(tx) => tx.send(error).is_ok(),
            None => false,
        }
    }

    /// Closes the connection because its pending output passed `class`'s `which` (hard or
    /// soft) `client-output-buffer-limit`; logged once, and counted by the connection.
    pub fn close_for_output_limit(&self, class: &str, which: &str) {
        if !self.output_limit_hit.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                client = self.id,
                addr = %self.addr,
                class,
                limit = which,
                "closing client that reached its {which} {class} client-output-buffer-limit"
            );
            self.kill.cancel();
        }
    }

    /// Whether the connection was closed by [`Self::close_for_output_limit`].
    pub fn output_limit_hit(&self) -> bool {
        self.output_limit_hit.load(Ordering::Acquire)
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
    pub fn info_line(&self) -> String {
        let meta = self.meta.lock().clone();
        let qbuf = self.query_bytes.load(Ordering::Relaxed);
        let omem = self.output_bytes.load(Ordering::Relaxed);
        let tot_mem = self.mem_bytes.load(Ordering::Relaxed).max(qbuf + omem);
        let cmd = match self.last_command.load(Ordering::Relaxed) {
            0 => "NULL",
            n => COMMANDS[n - 1].name,
        };
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags={} db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf={} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem={} tot-mem={} events=r cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            meta.name.as_deref().unwrap_or(""),
            self.created.elapsed().as_secs(),
            self.idle_secs(),
            if self.is_blocked() { "b" } else { "N" },
            qbuf,
            omem,
            tot_mem,
            cmd,
            meta.user,
            meta.resp.number(),
            meta.lib_name.as_deref().unwrap_or(""),
            meta.lib_ver.as_deref().unwrap_or(""),
        )
    }
}

/// A client's blocked state; unblocked when dropped.
pub struct BlockedGuard<'a> {
    handle: &'a ClientHandle,
    /// Resolves with `CLIENT UNBLOCK`'s choice (`true`: error).
    pub unblock: tokio::sync::oneshot::Receiver<bool>,
}

impl Drop for BlockedGuard<'_> {
    fn drop(&mut self) {
        self.handle.blocked.lock().take();
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
        tls: bool,
        max: usize,
    ) -> Option<Arc<ClientHandle>> {
        if self.connected.fetch_add(1, Ordering::AcqRel) >= max {
            self.connected.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let handle = Arc::new(ClientHandle::new(id, addr, laddr, tls));
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

    /// Clients waiting in a blocking command (INFO's `blocked_clients`).
    pub fn blocked(&self) -> usize {
        self.clients.iter().filter(|c| c.is_blocked()).count()
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
