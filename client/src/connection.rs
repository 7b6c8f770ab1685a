//! One multiplexed, pipelined connection to one node.
//!
//! Any number of tasks send through a [`Connection`] at once. A writer coalesces whatever
//! requests are queued into one socket write; a reader decodes replies and hands them, in
//! order, to the requests waiting for them. Redis answers every connection's requests in the
//! order they were sent, so order alone matches replies to requests: no ids are needed.
//!
//! When the socket fails, every waiting request fails with [`Error::ConnectionLost`]: those
//! already handed to the writer with `request_sent: true` (they may have been applied), those
//! still queued with `request_sent: false` (they surely were not).
//!
//! A shoal node that is shutting down answers whatever it reads from then on with
//! [`SHUTTING_DOWN`] without running it, and sends that line once more, unasked, before it
//! closes the connection. So once that reply has been seen, no request sent later on the
//! connection ran: those still waiting when it closes fail with `request_sent: false`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use shoal_protocol::{decode_frame, Frame, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::cmd::{cmd, Cmd};
use crate::error::Error;

/// How a connection is opened and set up.
#[derive(Clone, Debug)]
pub(crate) struct ConnectOptions {
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub username: Option<String>,
    pub password: Option<String>,
    pub resp3: bool,
    /// Send `CLUSTER SLOTS` once: shoal then treats the connection as a cluster client and
    /// answers `MOVED` (rather than forwarding) for keys the node does not lead.
    pub cluster_client: bool,
    /// Send `READONLY`, so the node serves reads of shards it only replicates.
    pub readonly: bool,
}

type Reply = Result<Vec<Frame>, Error>;

/// The start of a shoal node's reply to a request it read while shutting down (not run), and
/// of the last line it sends before closing (see the module's doc).
pub(crate) const SHUTTING_DOWN: &str = "TRYAGAIN this node is shutting down";

/// Whether `frame` is a shoal node's [`SHUTTING_DOWN`] reply.
pub(crate) fn says_shutting_down(frame: &Frame) -> bool {
    matches!(frame, Frame::Error(m) if m.starts_with(SHUTTING_DOWN))
}

/// A batch of encoded commands and where their replies go.
struct Request {
    payload: Bytes,
    replies: usize,
    done: oneshot::Sender<Reply>,
}

/// A request written to the socket, collecting its replies.
struct InFlight {
    replies: usize,
    frames: Vec<Frame>,
    done: oneshot::Sender<Reply>,
}

/// A handle to one connection; clones share it.
#[derive(Clone)]
pub(crate) struct Connection {
    addr: Arc<str>,
    requests: mpsc::UnboundedSender<Request>,
    alive: Arc<AtomicBool>,
}

/// Writes larger than this are split, so one huge pipeline does not hold every reply back.
const MAX_WRITE_BATCH: usize = 256 * 1024;

impl Connection {
    /// Connects to `addr` and runs the handshake the options ask for.
    pub async fn open(addr: &str, options: &ConnectOptions) -> Result<Connection, Error> {
        let connect_error = |reason: String| Error::Connect {
            addr: addr.to_owned(),
            reason,
        };
        let stream = tokio::time::timeout(options.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| connect_error(format!("timed out after {:?}", options.connect_timeout)))?
            .map_err(|e| connect_error(e.to_string()))?;
        // Small requests must leave at once; the writer already coalesces what is queued.
        let _ = stream.set_nodelay(true);
        let connection = Connection::spawn(addr, stream);
        connection.handshake(options).await.map_err(|e| match e {
            // A refused password or an unknown HELLO is the caller's to see as such.
            Error::Server { .. } => e,
            other => connect_error(format!("handshake failed: {other}")),
        })?;
        Ok(connection)
    }

    fn spawn(addr: &str, stream: TcpStream) -> Connection {
        let (reader, writer) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let alive = Arc::new(AtomicBool::new(true));
        let addr: Arc<str> = Arc::from(addr);
        tokio::spawn(run(addr.clone(), reader, writer, rx, alive.clone()));
        Connection {
            addr,
            requests: tx,
            alive,
        }
    }

    async fn handshake(&self, options: &ConnectOptions) -> Result<(), Error> {
        let mut steps: Vec<Cmd> = Vec::new();
        match (&options.username, &options.password, options.resp3) {
            (user, Some(pass), true) => steps.push(cmd([
                "HELLO",
                "3",
                "AUTH",
                user.as_deref().unwrap_or("default"),
                pass,
            ])),
            (_, None, true) => steps.push(cmd(["HELLO", "3"])),
            (Some(user), Some(pass), false) => steps.push(cmd(["AUTH", user, pass])),
            (None, Some(pass), false) => steps.push(cmd(["AUTH", pass])),
            (_, None, false) => {}
        }
        if options.cluster_client {
            steps.push(cmd(["CLUSTER", "SLOTS"]));
        }
        if options.readonly {
            steps.push(cmd(["READONLY"]));
        }
        if steps.is_empty() {
            return Ok(());
        }
        let mut payload = BytesMut::new();
        for step in &steps {
            step.encode(&mut payload);
        }
        let replies = tokio::time::timeout(
            options.response_timeout,
            self.send(payload.freeze(), steps.len()),
        )
        .await
        .map_err(|_| Error::Timeout {
            addr: self.addr.to_string(),
            after: options.response_timeout,
        })??;
        for (step, reply) in steps.iter().zip(replies) {
            if let Frame::Error(message) = reply {
                tracing::debug!(node = %self.addr, step = %step.name(), %message, "handshake refused");
                return Err(Error::from_server(message));
            }
        }
        Ok(())
    }

    /// Takes the connection out of use (its node is shutting down): the pool opens a new one
    /// for the next request, and this one closes once the requests in flight on it are
    /// answered and every handle is dropped, from the client's side, so no request can be
    /// written while the node closes it.
    pub fn retire(&self) {
        self.alive.store(false, Ordering::Release);
    }

    /// False once the socket has failed or the connection was retired; the pool then opens a
    /// new connection.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire) && !self.requests.is_closed()
    }

    /// Sends `payload` (`replies` encoded commands) and waits for their replies, error replies
    /// included as frames.
    pub async fn send(&self, payload: Bytes, replies: usize) -> Reply {
        let (done, reply) = oneshot::channel();
        let request = Request {
            payload,
            replies,
            done,
        };
        if self.requests.send(request).is_err() {
            return Err(self.lost("connection closed", false));
        }
        reply
            .await
            .unwrap_or_else(|_| Err(self.lost("connection task ended", true)))
    }

    fn lost(&self, reason: &str, request_sent: bool) -> Error {
        Error::ConnectionLost {
            addr: self.addr.to_string(),
            reason: reason.to_owned(),
            request_sent,
        }
    }
}

/// The connection's task: reads and writes concurrently until either side fails or every
/// handle is dropped, then fails whatever is still waiting.
async fn run(
    addr: Arc<str>,
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    mut requests: mpsc::UnboundedReceiver<Request>,
    alive: Arc<AtomicBool>,
) {
    let in_flight = Arc::new(Mutex::new(VecDeque::<InFlight>::new()));
    let goodbye = AtomicBool::new(false);
    // Biased to the reader: when the server's close (EOF) and a new request are ready at
    // once, the close is seen first, so the request fails as not sent (safe to retry) rather
    // than being written to a closed connection and failing as sent (outcome unknown).
    let reason = tokio::select! {
        biased;
        r = read_replies(reader, &in_flight, &goodbye) => r,
        w = write_requests(writer, &mut requests, &in_flight) => w,
    };
    alive.store(false, Ordering::Release);
    tracing::debug!(node = %addr, %reason, "connection closed");
    let lost = |request_sent: bool| Error::ConnectionLost {
        addr: addr.to_string(),
        reason: reason.clone(),
        request_sent,
    };
    // After the node's SHUTTING_DOWN, nothing sent on this connection ran.
    let sent_and_maybe_run = !goodbye.load(Ordering::Acquire);
    for waiting in in_flight.lock().drain(..) {
        let _ = waiting.done.send(Err(lost(sent_and_maybe_run)));
    }
    requests.close();
    while let Ok(queued) = requests.try_recv() {
        let _ = queued.done.send(Err(lost(false)));
    }
}

async fn write_requests(
    mut writer: OwnedWriteHalf,
    requests: &mut mpsc::UnboundedReceiver<Request>,
    in_flight: &Mutex<VecDeque<InFlight>>,
) -> String {
    let mut batch = BytesMut::new();
    while let Some(first) = requests.recv().await {
        batch.clear();
        let mut next = Some(first);
        while let Some(request) = next.take() {
            batch.extend_from_slice(&request.payload);
            // Registered before the bytes leave, so the reply always finds its request.
            in_flight.lock().push_back(InFlight {
                replies: request.replies,
                frames: Vec::with_capacity(request.replies),
                done: request.done,
            });
            if batch.len() < MAX_WRITE_BATCH {
                next = requests.try_recv().ok();
            }
        }
        if let Err(e) = writer.write_all(&batch).await {
            return format!("write failed: {e}");
        }
    }
    // Every handle is gone: nobody can send or wait any more.
    let _ = writer.shutdown().await;
    "closed by the client".to_owned()
}

async fn read_replies(
    mut reader: OwnedReadHalf,
    in_flight: &Mutex<VecDeque<InFlight>>,
    goodbye: &AtomicBool,
) -> String {
    let limits = Limits::default();
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    loop {
        loop {
            let frame = match decode_frame(&mut buffer, &limits) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return format!("bad reply: {e}"),
            };
            // Out-of-band RESP3 data answers no request.
            if matches!(frame, Frame::Push(_)) {
                continue;
            }
            if says_shutting_down(&frame) {
                goodbye.store(true, Ordering::Release);
            }
            let mut waiting = in_flight.lock();
            let Some(front) = waiting.front_mut() else {
                if goodbye.load(Ordering::Acquire) {
                    return "the node is shutting down".to_owned();
                }
                return "a reply nobody asked for".to_owned();
            };
            front.frames.push(frame);
            if front.frames.len() == front.replies {
                if let Some(done) = waiting.pop_front() {
                    // The caller may have given up (timeout); its reply is simply dropped.
                    let _ = done.done.send(Ok(done.frames));
                }
            }
        }
        if buffer.capacity() - buffer.len() < 16 * 1024 {
            buffer.reserve(64 * 1024);
        }
        match reader.read_buf(&mut buffer).await {
            Ok(0) => return "closed by the server".to_owned(),
            Ok(_) => {}
            Err(e) => return format!("read failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A draining node that read two requests answers the first `SHUTTING_DOWN` (its last
    /// line before closing) and closes: the second was sent but did not run, and the client
    /// knows it (it fails as not sent: safe to retry).
    #[tokio::test]
    async fn after_a_shutting_down_reply_a_closed_connection_ran_nothing_more() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = BytesMut::new();
            // Both PINGs (14 bytes each) arrive before the node answers.
            while seen.len() < 28 {
                socket.read_buf(&mut seen).await.unwrap();
            }
            let goodbye = format!("-{SHUTTING_DOWN}; retry on another node\r\n");
            socket.write_all(goodbye.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
        });
        let stream = TcpStream::connect(&addr).await.unwrap();
        let connection = Connection::spawn(&addr, stream);
        let ping = || Bytes::from_static(b"*1\r\n$4\r\nPING\r\n");
        let (first, second) = tokio::join!(
            connection.send(ping(), 1),
            // Queued behind the first, so both are in flight together.
            connection.send(ping(), 1)
        );
        let first = first.unwrap();
        assert!(says_shutting_down(&first[0]), "{first:?}");
        match second {
            Err(Error::ConnectionLost { request_sent, .. }) => assert!(!request_sent),
            other => panic!("{other:?}"),
        }
        server.await.unwrap();
    }
}
