//! One client connection: read, decode, execute, reply.
//!
//! Pipelining: everything already received is decoded and handed to one [`Pipeline`], which
//! runs the requests on their shard leaders concurrently; the replies go out in request order,
//! with one write per batch. A protocol error is answered with Redis's
//! `-ERR Protocol error: ...` (after the replies of the requests before it) and closes this
//! connection only.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use shoal_protocol::{encode, Frame, Limits, RequestDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::Instrument;

use crate::clients::ClientHandle;
use crate::commands::Session;
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
    node.clients.unregister(handle.id);
}

async fn run(
    node: &Arc<Node>,
    mut stream: impl ClientStream,
    handle: &Arc<ClientHandle>,
) -> std::io::Result<()> {
    let (limits, query_limit, idle_timeout, redirect) = {
        let c = node.config.read();
        let limits = Limits {
            max_bulk_len: c.proto_max_bulk_len as usize,
            ..Limits::default()
        };
        (
            limits,
            c.client_query_buffer_limit as usize,
            c.timeout,
            c.cluster_mode == "redirect",
        )
    };
    let mut decoder = RequestDecoder::new(limits);
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut wbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut session = Session::new(handle.clone(), node.default_user_open());
    session.redirect = redirect;
    let mut mailbox = session.pubsub.attach(node.pubsub.clone(), handle.clone());
    decoder.set_unauthenticated(!session.authenticated);

    loop {
        let wanted = decoder
            .bulk_bytes_wanted(rbuf.len())
            .clamp(READ_CHUNK, MAX_PREALLOC);
        rbuf.reserve(wanted);
        let idle = async {
            match idle_timeout {
                0 => std::future::pending().await,
                secs => tokio::time::sleep(Duration::from_secs(secs)).await,
            }
        };
        let n = tokio::select! {
            _ = handle.kill.cancelled() => return Ok(()),
            // A subscriber is never idle-timed-out (as in Redis).
            _ = idle, if session.pubsub.total() == 0 => return Ok(()),
            Some(message) = mailbox.recv() => {
                encode(&message, session.resp, &mut wbuf);
                // Whatever else is already queued goes out in the same write.
                while wbuf.len() < FLUSH_AT {
                    let Some(message) = mailbox.try_recv() else { break };
                    encode(&message, session.resp, &mut wbuf);
                }
                // A subscriber that stops reading blocks this write; when its queue fills,
                // `pubsub::on_queue_full` asks the connection to close, which ends the wait.
                tokio::select! {
                    r = flush(node, &mut stream, &mut wbuf) => r?,
                    _ = handle.kill.cancelled() => return Ok(()),
                }
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
                            encode_reply(&reply, session.resp, &mut wbuf);
                        }
                        // AUTH, HELLO AUTH and RESET change which limits apply from here on.
                        decoder.set_unauthenticated(!session.authenticated);
                        if session.close_after_reply {
                            break;
                        }
                        if batch.is_empty() && wbuf.len() >= FLUSH_AT {
                            flush(node, &mut stream, &mut wbuf).await?;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        protocol_error = Some(e);
                        break;
                    }
                }
            }
            batch
                .finish(&mut session, |reply, version| {
                    encode_reply(&reply, version, &mut wbuf)
                })
                .await;
            if let Some(e) = protocol_error {
                node.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                tracing::info!(error = %e, "closing client after protocol error");
                encode(&Frame::error(format!("ERR {e}")), session.resp, &mut wbuf);
                return flush(node, &mut stream, &mut wbuf).await;
            }
            if session.close_after_reply {
                return flush(node, &mut stream, &mut wbuf).await;
            }
            if session.monitor {
                flush(node, &mut stream, &mut wbuf).await?;
                node.monitor.watch(stream, handle.kill.clone()).await;
                return Ok(());
            }
            if wbuf.len() >= FLUSH_AT {
                flush(node, &mut stream, &mut wbuf).await?;
            }
        }
        if rbuf.len() > query_limit {
            tracing::warn!(
                bytes = rbuf.len(),
                "closing client that reached max query buffer length"
            );
            return Ok(());
        }
        flush(node, &mut stream, &mut wbuf).await?;
    }
}

async fn flush(
    node: &Node,
    stream: &mut impl ClientStream,
    wbuf: &mut BytesMut,
) -> std::io::Result<()> {
    if wbuf.is_empty() {
        return Ok(());
    }
    stream.write_all(wbuf).await?;
    node.stats
        .net_output_bytes
        .fetch_add(wbuf.len() as u64, Ordering::Relaxed);
    wbuf.clear();
    Ok(())
}
