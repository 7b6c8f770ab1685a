//! One client connection: read, decode, execute, reply.
//!
//! Pipelining: everything already received is decoded and handed to one [`Pipeline`], which
//! runs the requests on their shard leaders concurrently; the replies go out in request order,
//! with one write per batch. A protocol error is answered with Redis's
//! `-ERR Protocol error: ...` (after the replies of the requests before it) and closes this
//! connection only.
//!
//! Limits: unprocessed input past `client-query-buffer-limit` closes the connection; so does
//! unsent output past `client-output-buffer-limit` (the class's hard limit when a reply is
//! added, its soft limit for too long while a write waits on a client that does not read).
//! Past the hard limit replies are dropped, not buffered. `timeout` closes a client that sent
//! nothing for that long (not a subscriber).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use shoal_protocol::{encode, Frame, Limits, RequestDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::Instrument;

use super::output_limit::{Class, ClassLimit, Exceeded, Watch};
use crate::clients::ClientHandle;
use crate::commands::Session;
use crate::drain;
use crate::node::Node;
use crate::pipeline::{Mode, Pipeline};
use crate::pubsub::encode_reply;

/// Reply bytes buffered before they are written even if more requests are pending.
const FLUSH_AT: usize = 1 << 20;
/// Read buffer kept free for each read.
const READ_CHUNK: usize = 16 * 1024;
/// The most the read buffer grows ahead of data for one large argument.
const MAX_PREALLOC: usize = 64 << 20;
/// Requests in flight at once for one connection; more wait for the next batch.
const MAX_BATCH: usize = 1024;

/// A client's byte stream: plain TCP or TLS over it.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> ClientStream for S {}

pub async fn serve(node: Arc<Node>, stream: impl ClientStream, handle: Arc<ClientHandle>) {
    let span = tracing::debug_span!("client", id = handle.id, addr = %handle.addr);
    async {
        tracing::debug!("connected");
        match run(&node, stream, &handle).await {
            Ok(()) => tracing::debug!("closed"),
            Err(e) => tracing::debug!(error = %e, "closed on error"),
        }
    }
    .instrument(span)
    .await;
    if handle.output_limit_hit() {
        node.stats
            .output_buffer_limit_disconnections
            .fetch_add(1, Ordering::Relaxed);
    }
    node.clients.unregister(handle.id);
}

async fn run(
    node: &Arc<Node>,
    mut stream: impl ClientStream,
    handle: &Arc<ClientHandle>,
) -> std::io::Result<()> {
    let (limits, redirect) = {
        let c = node.config.read();
        let limits = Limits {
            max_bulk_len: c.proto_max_bulk_len as usize,
            ..Limits::default()
        };
        (limits, c.cluster_mode == "redirect")
    };
    let mut decoder = RequestDecoder::new(limits);
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut wbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut session = Session::new(handle.clone(), node.default_user_open());
    session.redirect = redirect;
    let mut mailbox = session.pubsub.attach(node.pubsub.clone(), handle.clone());
    decoder.set_unauthenticated(!session.authenticated);
    let mut out = OutputGuard {
        handle: handle.clone(),
        queued: mailbox.queued_counter(),
        class: Class::Normal,
        limit: ClassLimit::default(),
        watch: Watch::default(),
        over: false,
    };

    loop {
        // Settings CONFIG SET may have changed since the last request.
        let (query_limit, idle_timeout) = {
            let c = node.config.read();
            out.class = if session.pubsub.total() > 0 {
                Class::Pubsub
            } else {
                Class::Normal
            };
            out.limit = c.output_limits.of(out.class);
            (c.client_query_buffer_limit as usize, c.timeout)
        };
        // Room for a large argument grows with what has arrived of it (doubling: linear
        // time), never from what a client merely announces: a slowloris that announces a
        // 512 MB argument and trickles it holds a small buffer.
        let wanted = decoder
            .bulk_bytes_wanted(rbuf.len())
            .clamp(READ_CHUNK, rbuf.len().clamp(READ_CHUNK, MAX_PREALLOC));
        rbuf.reserve(wanted);
        handle.query_bytes.store(rbuf.len(), Ordering::Relaxed);
        handle.mem_bytes.store(
            rbuf.capacity() + wbuf.capacity() + mailbox.queued_bytes(),
            Ordering::Relaxed,
        );
        let idle = async {
            match idle_timeout {
                0 => std::future::pending().await,
                secs => tokio::time::sleep(Duration::from_secs(secs)).await,
            }
        };
        // A stopping node closes the connection once its client is quiet (nothing unread,
        // nothing received for `QUIET`), or at the drain deadline (see `drain`).
        let draining = node.drain.is_draining();
        let close_at = match node.drain.deadline() {
            Some(deadline) if draining && rbuf.is_empty() => {
                Some(deadline.min(tokio::time::Instant::now() + drain::QUIET))
            }
            Some(deadline) if draining => Some(deadline),
            _ => None,
        };
        let close = async {
            match close_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let n = tokio::select! {
            _ = handle.kill.cancelled() => return Ok(()),
            _ = node.drain.started(), if !draining => continue,
            _ = close => return close_gracefully(&mut stream, session.resp).await,
            // A subscriber is never idle-timed-out (as in Redis).
            _ = idle, if session.pubsub.total() == 0 => return Ok(()),
            Some(message) = mailbox.recv() => {
                encode(&message, session.resp, &mut wbuf);
                // Whatever else is already queued goes out in the same write.
                while wbuf.len() < FLUSH_AT {
                    let Some(message) = mailbox.try_recv() else { break };
                    encode(&message, session.resp, &mut wbuf);
                }
                // A subscriber that stops reading blocks this write; past the pubsub hard
                // limit its queue refuses messages and closes it (`pubsub`), past the soft
                // limit for too long `flush` does.
                flush(node, &mut stream, &mut wbuf, &mut out).await?;
                continue;
            }
            r = stream.read_buf(&mut rbuf) => r?,
        };
        if n == 0 {
            return Ok(());
        }
        node.stats
            .net_input_bytes
            .fetch_add(n as u64, Ordering::Relaxed);
        if node.drain.is_draining() {
            // Nothing new runs on a stopping node: each request read is answered with a
            // retryable error (it was not run; shoal-client also stops using the connection),
            // and the connection closes once the client is quiet or at the drain deadline.
            while let Ok(Some(_)) = decoder.decode_request(&mut rbuf) {
                encode(&Frame::error(drain::SHUTTING_DOWN), session.resp, &mut wbuf);
            }
            flush(node, &mut stream, &mut wbuf, &mut out).await?;
            if node.drain.past_deadline() {
                return close_gracefully(&mut stream, session.resp).await;
            }
            continue;
        }

        // Everything received runs as batches of at most MAX_BATCH requests; a full batch is
        // finished and the next one decoded from what is already buffered.
        let mut batch_full = true;
        while batch_full {
            batch_full = false;
            let mut batch = Pipeline::new(node.clone(), Mode::Client);
            let mut protocol_error = None;
            loop {
                if batch.len() >= MAX_BATCH {
                    batch_full = true;
                    break;
                }
                match decoder.decode_request(&mut rbuf) {
                    Ok(Some(args)) => {
                        if let Some(reply) = batch.push(&mut session, args).await {
                            out.append(&reply, session.resp, &mut wbuf);
                        }
                        // AUTH, HELLO AUTH and RESET change which limits apply from here on.
                        decoder.set_unauthenticated(!session.authenticated);
                        if session.close_after_reply {
                            break;
                        }
                        if batch.is_empty() && wbuf.len() >= FLUSH_AT {
                            flush(node, &mut stream, &mut wbuf, &mut out).await?;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        protocol_error = Some(e);
                        break;
                    }
                }
            }
            let blocked = batch.blocks();
            if blocked {
                // A blocked client may wait long: meanwhile its socket is still read, so that
                // leaving (EOF) or CLIENT KILL ends the wait (dropping it leaves the waiter
                // queue); what it sends is buffered for the next batch.
                {
                    let blocks = batch.finish(&mut session, |reply, version| {
                        out.append(&reply, version, &mut wbuf)
                    });
                    tokio::pin!(blocks);
                    loop {
                        rbuf.reserve(READ_CHUNK);
                        tokio::select! {
                            _ = &mut blocks => break,
                            _ = handle.kill.cancelled() => return Ok(()),
                            r = stream.read_buf(&mut rbuf), if rbuf.len() <= query_limit => {
                                let n = r?;
                                if n == 0 {
                                    return Ok(());
                                }
                                node.stats.net_input_bytes.fetch_add(n as u64, Ordering::Relaxed);
                            }
                        }
                    }
                }
                // Requests that arrived meanwhile run next (after the reply goes out, below).
                batch_full = true;
            } else {
                batch
                    .finish(&mut session, |reply, version| {
                        out.append(&reply, version, &mut wbuf)
                    })
                    .await;
            }
            if out.over {
                // Its replies were dropped past the hard limit: the client cannot have them.
                handle.close_for_output_limit(out.class.name(), "hard");
                return Ok(());
            }
            if blocked {
                // A blocked client's reply goes out as soon as it has it.
                flush(node, &mut stream, &mut wbuf, &mut out).await?;
            }
            if let Some(e) = protocol_error {
                node.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                tracing::info!(error = %e, "closing client after protocol error");
                encode(&Frame::error(format!("ERR {e}")), session.resp, &mut wbuf);
                return flush(node, &mut stream, &mut wbuf, &mut out).await;
            }
            if session.close_after_reply {
                return flush(node, &mut stream, &mut wbuf, &mut out).await;
            }
            if session.monitor {
                // Subscribed before the +OK is sent: the client sees every command after it.
                let subscription = crate::monitor::subscribe(&node.monitor);
                flush(node, &mut stream, &mut wbuf, &mut out).await?;
                crate::monitor::watch(node, stream, handle, subscription).await;
                return Ok(());
            }
            if wbuf.len() >= FLUSH_AT {
                flush(node, &mut stream, &mut wbuf, &mut out).await?;
            }
        }
        if rbuf.len() > query_limit {
            tracing::warn!(
                bytes = rbuf.len(),
                "closing client that reached max query buffer length"
            );
            node.stats
                .query_buffer_limit_disconnections
                .fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        flush(node, &mut stream, &mut wbuf, &mut out).await?;
    }
}

/// The connection's side of `client-output-buffer-limit`: its class's limits, its soft-limit
/// clock, and whether replies are being dropped past the hard limit.
struct OutputGuard {
    handle: Arc<ClientHandle>,
    /// Bytes of pub/sub messages queued for this connection and not yet in its buffer.
    queued: Arc<AtomicUsize>,
    class: Class,
    limit: ClassLimit,
    watch: Watch,
    /// The hard limit was reached while adding replies: the rest are dropped and the
    /// connection closes after its batch.
    over: bool,
}

impl OutputGuard {
    /// Adds a reply to `wbuf` (unsent output) unless the hard limit has been reached.
    fn append(&mut self, reply: &Frame, version: shoal_protocol::Version, wbuf: &mut BytesMut) {
        if self.over {
            return;
        }
        encode_reply(reply, version, wbuf);
        let pending = (wbuf.len() + self.queued.load(Ordering::Relaxed)) as u64;
        if self.limit.hard > 0 && pending >= self.limit.hard {
            self.over = true;
        }
    }

    /// Checks `unsent` bytes of the buffer (plus queued messages) against the limits now;
    /// closes the client and returns false when one is passed.
    fn within_limits(&mut self, unsent: usize) -> bool {
        let pending = unsent + self.queued.load(Ordering::Relaxed);
        self.handle.output_bytes.store(pending, Ordering::Relaxed);
        match self.watch.check(self.limit, pending as u64, Instant::now()) {
            None => true,
            Some(which) => {
                let which = match which {
                    Exceeded::Hard => "hard",
                    Exceeded::Soft => "soft",
                };
                self.handle.close_for_output_limit(self.class.name(), which);
                false
            }
        }
    }
}

/// Writes all of `wbuf`. While the client does not read, the output limits are checked on
/// every bit of progress and at least once a second (the soft limit's clock runs, queued pub/sub
/// messages grow); a client past them, or asked to close, ends the wait with an error.
async fn flush(
    node: &Node,
    stream: &mut impl ClientStream,
    wbuf: &mut BytesMut,
    out: &mut OutputGuard,
) -> std::io::Result<()> {
    let mut written = 0;
    while written < wbuf.len() {
        if !out.within_limits(wbuf.len() - written) {
            return Err(closed("client-output-buffer-limit reached"));
        }
        let recheck = out
            .watch
            .soft_deadline(out.limit)
            .unwrap_or_else(|| Instant::now() + LIMIT_RECHECK)
            .min(Instant::now() + LIMIT_RECHECK);
        let n = tokio::select! {
            n = stream.write(&wbuf[written..]) => n?,
            _ = tokio::time::sleep_until(recheck.into()) => {
                // Still blocked: CONFIG SET may have changed the limits meanwhile.
                out.limit = node.config.read().output_limits.of(out.class);
                continue;
            }
            _ = out.handle.kill.cancelled() => return Err(closed("client closed by request")),
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        written += n;
        node.stats
            .net_output_bytes
            .fetch_add(n as u64, Ordering::Relaxed);
    }
    // TLS may still hold the tail of the last record.
    tokio::select! {
        r = stream.flush() => r?,
        _ = out.handle.kill.cancelled() => return Err(closed("client closed by request")),
    }
    wbuf.clear();
    out.within_limits(0);
    Ok(())
}

/// Closes a drained connection after its replies: a last, unasked-for `SHUTTING_DOWN` error,
/// then a FIN, then reads (and drops) what the client still sends until it closes too,
/// briefly (closing with unread input would send a reset, which can make the client's kernel
/// discard replies it has not read yet).
///
/// The last line tells the client that no request it sent after the ones answered ran here:
/// a request it wrote while the connection closed gets it as its reply (a retryable
/// `TRYAGAIN`, which is the truth), and shoal-client fails any others still waiting as not
/// sent. A node that dies instead of draining never sends it.
async fn close_gracefully(
    stream: &mut impl ClientStream,
    version: shoal_protocol::Version,
) -> std::io::Result<()> {
    let mut goodbye = BytesMut::new();
    encode(&Frame::error(drain::SHUTTING_DOWN), version, &mut goodbye);
    // Bounded: a client that does not read must not hold the stop up.
    let _ = tokio::time::timeout(drain::LINGER, stream.write_all(&goodbye)).await;
    let _ = stream.shutdown().await;
    let mut scratch = [0u8; 4096];
    let _ = tokio::time::timeout(drain::LINGER, async {
        while let Ok(n) = stream.read(&mut scratch).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    Ok(())
}

/// How often a write blocked on a client that does not read re-checks the output limits.
const LIMIT_RECHECK: Duration = Duration::from_secs(1);

fn closed(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, why.to_owned())
}
