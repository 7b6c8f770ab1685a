//! The peer transport: one multiplexed TCP connection from this node to each other node.
//!
//! [`PeerClient`] sends requests tagged with a fresh `request_id` and matches responses by id,
//! so any number of requests (from any Raft group) share one connection and none waits for
//! another. If the connection drops, every request in flight on it fails at once (openraft
//! retries) and the next request reconnects, with a backoff so a dead peer costs one fast
//! failure rather than a connect timeout per request.
//!
//! A partition does not drop a TCP connection: it goes silent, and the kernel retransmits with
//! an exponential backoff for many minutes. So the transport decides for itself: a request
//! that times out when nothing at all has been heard from the peer for [`SILENCE_LIMIT`]
//! closes the connection (abortively, so what it still buffered is never delivered late), and
//! the next request connects afresh. (Group 0's heartbeats cross every link several times a
//! second, so a live peer is never that silent; single requests time out far sooner, 50 ms
//! for a heartbeat, which alone says nothing about the link on a loaded machine.) And a request is only written while its sender still waits for
//! it: one whose deadline passed in the queue (behind a stalled socket) is dropped unsent,
//! so a healed link is not flooded with stale heartbeats, appends and snapshot chunks.
//!
//! [`serve_peers`] accepts peer connections and runs each request on its own task, writing the
//! response whenever it is ready; responses may therefore return out of order.
//!
//! Both ends authenticate each new connection ([`PeerAuth`]: mutual TLS with
//! `--tls-cluster yes`, then the cluster secret) before any frame is read or written on it.
//!
//! Message bodies are generic (any serde type), so this module knows nothing of Raft; the Raft
//! network adapter decides what the bodies are.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::handshake::{HandshakeError, PeerAuth};
use super::wire::{from_payload, header_of, to_payload, PeerCodec, PeerMessage, WireError};

#[derive(Debug, Error)]
pub enum PeerError {
    #[error("peer {0} unreachable: {1}")]
    Unreachable(String, String),
    #[error("peer {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("connection to peer {0} closed with the request in flight")]
    Closed(String),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("peer protocol: {0}")]
    Protocol(String),
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Bytes>>>>;

/// An open connection: a queue to its writer task and the requests awaiting answers.
struct Conn {
    /// Payloads to write, each with the instant its sender stops waiting for the answer.
    outbox: mpsc::UnboundedSender<(Vec<u8>, Instant)>,
    pending: Pending,
    closed: CancellationToken,
    /// When the last frame arrived from the peer (or the connection opened).
    heard_at: Arc<Mutex<Instant>>,
}

impl Conn {
    fn silent_for(&self, limit: Duration) -> bool {
        self.heard_at.lock().elapsed() >= limit
    }
}

/// A client for one peer, shared by every Raft group that talks to it.
pub struct PeerClient<Req, Resp> {
    addr: String,
    auth: Arc<PeerAuth>,
    next_id: AtomicU64,
    conn: Arc<tokio::sync::Mutex<Option<Arc<Conn>>>>,
    /// When the last connect attempt failed, and how long to wait before the next one.
    backoff: Arc<Mutex<Option<(Instant, Duration)>>>,
    /// How long a connection may stay silent, with a request timing out, before it is reset.
    silence_limit: Duration,
    _types: PhantomData<fn(Req) -> Resp>,
}

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A connection that has carried nothing back for this long while requests time out is
/// taken for dead (see the module's doc).
pub const SILENCE_LIMIT: Duration = Duration::from_secs(2);

impl<Req, Resp> PeerClient<Req, Resp>
where
    Req: Serialize + Send + 'static,
    Resp: DeserializeOwned + Send + 'static,
{
    pub fn new(addr: impl Into<String>, auth: Arc<PeerAuth>) -> PeerClient<Req, Resp> {
        PeerClient {
            addr: addr.into(),
            auth,
            next_id: AtomicU64::new(1),
            conn: Arc::default(),
            backoff: Arc::default(),
            silence_limit: SILENCE_LIMIT,
            _types: PhantomData,
        }
    }

    /// The same client with another [`SILENCE_LIMIT`] (tests).
    pub fn with_silence_limit(mut self, limit: Duration) -> Self {
        self.silence_limit = limit;
        self
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `body` for `group` and waits for the response, at most `timeout`.
    pub async fn request(
        &self,
        group: u64,
        body: Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let request_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let payload = to_payload(&PeerMessage {
            group,
            request_id,
            body,
        })?;
        let conn = self.connection().await?;
        let (tx, rx) = oneshot::channel();
        conn.pending.lock().insert(request_id, tx);
        if conn
            .outbox
            .send((payload, Instant::now() + timeout))
            .is_err()
        {
            conn.pending.lock().remove(&request_id);
            self.forget(&conn).await;
            return Err(PeerError::Closed(self.addr.clone()));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(payload)) => Ok(from_payload::<Resp>(&payload)?.body),
            Ok(Err(_)) => Err(PeerError::Closed(self.addr.clone())),
            Err(_) => {
                conn.pending.lock().remove(&request_id);
                if conn.silent_for(self.silence_limit) && !conn.closed.is_cancelled() {
                    tracing::info!(peer = %self.addr, silent = ?self.silence_limit, "peer silent; reconnecting");
                    conn.closed.cancel();
                    self.forget(&conn).await;
                }
                Err(PeerError::Timeout(self.addr.clone(), timeout))
            }
        }
    }

    /// The open connection, or a new one (unless we are backing off after a failure).
    ///
    /// Connecting runs on a task of its own: openraft gives up on an RPC after tens of
    /// milliseconds, and a caller that gives up must not abort a connect and handshake
    /// halfway, or a slow (loaded) peer would never be reached at all.
    async fn connection(&self) -> Result<Arc<Conn>, PeerError> {
        let slot = self.conn.clone();
        let backoff = self.backoff.clone();
        let addr = self.addr.clone();
        let auth = self.auth.clone();
        tokio::spawn(async move {
            let mut slot = slot.lock_owned().await;
            if let Some(conn) = slot.as_ref() {
                if !conn.closed.is_cancelled() {
                    return Ok(conn.clone());
                }
            }
            if let Some((failed_at, wait)) = *backoff.lock() {
                if failed_at.elapsed() < wait {
                    return Err(PeerError::Unreachable(
                        addr,
                        "backing off after a failed connect".into(),
                    ));
                }
            }
            let failed = |why: String| {
                let mut backoff = backoff.lock();
                let wait = backoff.map_or(BACKOFF_MIN, |(_, w)| (w * 2).min(BACKOFF_MAX));
                *backoff = Some((Instant::now(), wait));
                PeerError::Unreachable(addr.clone(), why)
            };
            let stream =
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return Err(failed(e.to_string())),
                    Err(_) => return Err(failed("connect timed out".into())),
                };
            let _ = stream.set_nodelay(true);
            // Closing sends a reset and discards unsent data: a request abandoned on a silent
            // connection must not reach the peer later (a forwarded write applied long after
            // its client was told the outcome is unknown).
            let _ = stream.set_zero_linger();
            // Bounded like the connect itself: a peer that stalls mid-handshake (a partition)
            // must not hold this peer's slot for longer than a dead peer would.
            let secured = tokio::time::timeout(CONNECT_TIMEOUT, secure(&auth, stream)).await;
            let stream = match secured {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::warn!(peer = %addr, error = %e, "peer authentication failed; not talking to it");
                    return Err(failed(format!("authentication failed: {e}")));
                }
                Err(_) => {
                    let e = HandshakeError::Timeout(CONNECT_TIMEOUT);
                    tracing::warn!(peer = %addr, error = %e, "peer authentication failed; not talking to it");
                    return Err(failed(format!("authentication failed: {e}")));
                }
            };
            *backoff.lock() = None;
            let conn = Arc::new(spawn_connection(stream, addr));
            *slot = Some(conn.clone());
            Ok(conn)
        })
        .await
        .unwrap_or_else(|e| Err(PeerError::Protocol(format!("connect task failed: {e}"))))
    }

    async fn forget(&self, conn: &Arc<Conn>) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *slot = None;
        }
    }
}

/// A peer connection's byte stream: plain TCP, or TLS over it (`--tls-cluster yes`).
pub trait PeerStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> PeerStream for S {}
type BoxedStream = Box<dyn PeerStream>;

/// The connecting side's security: the TLS handshake (if the peer port speaks TLS), then the
/// cluster secret's exchange inside it.
async fn secure(auth: &PeerAuth, stream: TcpStream) -> Result<BoxedStream, HandshakeError> {
    let mut stream: BoxedStream = match auth.tls() {
        Some(tls) => Box::new(tls.connect(stream).await.map_err(HandshakeError::Tls)?),
        None => Box::new(stream),
    };
    auth.connect(&mut stream).await?;
    Ok(stream)
}

/// The accepting side's security, as [`secure`]; bounded as the secret's exchange is.
async fn secure_accepted(
    auth: &PeerAuth,
    stream: TcpStream,
) -> Result<BoxedStream, HandshakeError> {
    let mut stream: BoxedStream = match auth.tls() {
        Some(tls) => {
            let timeout = super::handshake::HANDSHAKE_TIMEOUT;
            let tls = tokio::time::timeout(timeout, tls.accept(stream))
                .await
                .map_err(|_| HandshakeError::Timeout(timeout))?;
            Box::new(tls.map_err(HandshakeError::Tls)?)
        }
        None => Box::new(stream),
    };
    auth.accept(&mut stream).await?;
    Ok(stream)
}

/// Starts the reader and writer tasks of a fresh client connection.
fn spawn_connection(stream: BoxedStream, addr: String) -> Conn {
    let (mut sink, mut source) = Framed::new(stream, PeerCodec::default()).split::<Vec<u8>>();
    let (outbox, mut queue) = mpsc::unbounded_channel::<(Vec<u8>, Instant)>();
    let pending: Pending = Arc::default();
    let closed = CancellationToken::new();
    let heard_at = Arc::new(Mutex::new(Instant::now()));

    let writer_closed = closed.clone();
    tokio::spawn(async move {
        loop {
            let (payload, deadline) = tokio::select! {
                _ = writer_closed.cancelled() => break,
                p = queue.recv() => match p { Some(p) => p, None => break },
            };
            if Instant::now() >= deadline {
                continue; // nobody waits for its answer any more
            }
            let written = tokio::select! {
                _ = writer_closed.cancelled() => break,
                w = sink.send(payload) => w,
            };
            if let Err(e) = written {
                tracing::debug!(peer = %addr, error = %e, "peer write failed");
                break;
            }
        }
        writer_closed.cancel();
    });

    let reader_pending = pending.clone();
    let reader_closed = closed.clone();
    let reader_heard_at = heard_at.clone();
    tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                _ = reader_closed.cancelled() => break,
                f = source.next() => f,
            };
            match frame {
                Some(Ok(payload)) => {
                    *reader_heard_at.lock() = Instant::now();
                    // Only the header is needed to route; the waiter decodes the body.
                    match header_of(&payload) {
                        Ok(msg) => {
                            if let Some(tx) = reader_pending.lock().remove(&msg.request_id) {
                                let _ = tx.send(payload);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "undecodable peer response; closing");
                            break;
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "bad frame from peer; closing the connection");
                    break;
                }
                None => break,
            }
        }
        reader_closed.cancel();
        // Fail everything still waiting on this connection.
        reader_pending.lock().clear();
    });

    Conn {
        outbox,
        pending,
        closed,
        heard_at,
    }
}

/// How long, once serving stops, a peer connection waits for the requests it already read to
/// be answered and their replies written before it closes.
pub const SERVE_DRAIN: Duration = Duration::from_secs(1);

/// Serves peer connections on `listener` until `shutdown`, answering each request with
/// `handler(group, body)` once the connection has proved it knows `auth`'s secret. On
/// `shutdown` it stops reading requests and returns once every connection has written the
/// replies of those it had read (each waits up to [`SERVE_DRAIN`]).
pub async fn serve_peers<Req, Resp, H, F>(
    listener: TcpListener,
    auth: Arc<PeerAuth>,
    handler: H,
    shutdown: CancellationToken,
) where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    H: Fn(u64, Req) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Resp> + Send + 'static,
{
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, addr) = tokio::select! {
            _ = shutdown.cancelled() => break,
            // Reaps finished connections, so the set holds only live ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "peer accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_peer_connection(
            stream,
            addr,
            auth.clone(),
            handler.clone(),
            shutdown.clone(),
        ));
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn serve_peer_connection<Req, Resp, H, F>(
    stream: TcpStream,
    addr: SocketAddr,
    auth: Arc<PeerAuth>,
    handler: H,
    shutdown: CancellationToken,
) where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    H: Fn(u64, Req) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Resp> + Send + 'static,
{
    let authenticated = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = secure_accepted(&auth, stream) => r,
    };
    let stream = match authenticated {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(peer = %addr, error = %e, "refused a peer connection: authentication failed");
            return;
        }
    };
    let (mut sink, mut source) = Framed::new(stream, PeerCodec::default()).split::<Vec<u8>>();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(payload) = done_rx.recv().await {
            if sink.send(payload).await.is_err() {
                break;
            }
        }
    });
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => break,
            f = source.next() => f,
        };
        let payload = match frame {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                tracing::warn!(peer = %addr, error = %e, "bad frame from peer; closing the connection");
                break;
            }
            None => break,
        };
        let msg: PeerMessage<Req> = match from_payload(&payload) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(peer = %addr, error = %e, "undecodable peer request; closing");
                break;
            }
        };
        let handler = handler.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            let body = handler(msg.group, msg.body).await;
            let reply = PeerMessage {
                group: msg.group,
                request_id: msg.request_id,
                body,
            };
            match to_payload(&reply) {
                Ok(p) => {
                    let _ = done.send(p);
                }
                Err(e) => tracing::error!(error = %e, "cannot encode peer response"),
            }
        });
    }
    // Requests already read are answered before the connection closes: a forwarded write
    // whose reply were lost would leave its client not knowing whether it ran.
    drop(done_tx);
    if shutdown.is_cancelled() {
        let abort = writer.abort_handle();
        if tokio::time::timeout(SERVE_DRAIN, writer).await.is_err() {
            abort.abort();
        }
    } else {
        writer.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn echo_server() -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(serve_peers(
            listener,
            Arc::default(),
            |group: u64, body: (u64, String)| async move {
                // Later requests answer sooner, so responses come back out of order.
                tokio::time::sleep(Duration::from_millis(50u64.saturating_sub(body.0))).await;
                format!("{group}:{}", body.1)
            },
            stop.clone(),
        ));
        (addr, stop)
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_connection_and_match_by_id() {
        let (addr, stop) = echo_server().await;
        let client = Arc::new(PeerClient::<(u64, String), String>::new(
            addr.to_string(),
            Arc::default(),
        ));
        let tasks: Vec<_> = (0..40u64)
            .map(|i| {
                let c = client.clone();
                tokio::spawn(async move {
                    c.request(i % 4, (i, format!("m{i}")), Duration::from_secs(5))
                        .await
                })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.unwrap().unwrap(), format!("{}:m{i}", i % 4));
        }
        stop.cancel();
    }

    #[tokio::test]
    async fn a_dead_peer_fails_fast_and_a_restarted_one_is_reconnected() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = PeerClient::<(u64, String), String>::new(addr.to_string(), Arc::default());
        let started = Instant::now();
        assert!(matches!(
            client
                .request(0, (0, "x".into()), Duration::from_secs(5))
                .await,
            Err(PeerError::Unreachable(..))
        ));
        // While backing off, no connect is even attempted.
        assert!(matches!(
            client
                .request(0, (0, "x".into()), Duration::from_secs(5))
                .await,
            Err(PeerError::Unreachable(..))
        ));
        assert!(started.elapsed() < Duration::from_secs(1));
        // The peer comes back on the same address.
        let listener = TcpListener::bind(addr).await.unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(serve_peers(
            listener,
            Arc::default(),
            |_, body: (u64, String)| async move { body.1 },
            stop.clone(),
        ));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match client
                .request(0, (0, "back".into()), Duration::from_secs(1))
                .await
            {
                Ok(r) => {
                    assert_eq!(r, "back");
                    break;
                }
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("never reconnected: {e}"),
            }
        }
        stop.cancel();
    }

    #[tokio::test]
    async fn a_silent_peer_is_reconnected_after_a_timeout() {
        // A peer that accepts connections, completes the handshake, then never answers (as
        // across a partition).
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted_tx, mut accepted) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let auth = PeerAuth::default();
            let mut held = Vec::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                auth.accept(&mut stream).await.unwrap();
                held.push(stream);
                let _ = accepted_tx.send(held.len());
            }
        });
        let client = PeerClient::<(u64, String), String>::new(addr.to_string(), Arc::default())
            .with_silence_limit(Duration::from_millis(50));
        for round in 1..=2 {
            let r = client
                .request(0, (0, "x".into()), Duration::from_millis(100))
                .await;
            assert!(matches!(r, Err(PeerError::Timeout(..))), "{r:?}");
            let connections = tokio::time::timeout(Duration::from_secs(5), accepted.recv())
                .await
                .expect("each request after a silent timeout opens a new connection");
            assert_eq!(connections, Some(round));
        }
    }

    #[tokio::test]
    async fn a_frame_with_a_bad_checksum_closes_the_connection() {
        let (addr, stop) = echo_server().await;
        let mut raw = TcpStream::connect(addr).await.unwrap();
        PeerAuth::default().connect(&mut raw).await.unwrap();
        // A header announcing 3 bytes with a wrong CRC.
        raw.write_all(&[3, 0, 0, 0, 1, 2, 3, 4, b'a', b'b', b'c'])
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut raw, &mut buf),
        )
        .await
        .expect("the server must close, not hang")
        .unwrap_or(0);
        assert_eq!(n, 0, "connection closed without a reply");
        // Other connections are unaffected.
        let client = PeerClient::<(u64, String), String>::new(addr.to_string(), Arc::default());
        assert_eq!(
            client
                .request(7, (49, "ok".into()), Duration::from_secs(5))
                .await
                .unwrap(),
            "7:ok"
        );
        stop.cancel();
    }
}
