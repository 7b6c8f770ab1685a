//! `MONITOR`: every command this node receives from its clients, as Redis prints it
//! (`+1700000000.123456 [0 127.0.0.1:5000] "set" "k" "v"`), streamed to monitoring clients.
//!
//! Single-node view: a monitor sees the commands clients sent to this node (including those it
//! then forwarded to a shard leader elsewhere), not those other nodes received. With no monitor
//! connected, the data path pays one relaxed atomic load per request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;

use crate::clients::ClientHandle;
use crate::net::connection::ClientStream;
use crate::net::output_limit::{Class, ClassLimit, Exceeded, Watch};
use crate::node::Node;

/// Lines the feed holds for a monitor task that has not taken them yet (each task drains it
/// into its own [`Backlog`] at once); one that falls this far behind skips ahead and is told
/// how many it missed.
const FEED_LINES: usize = 1024;

pub struct Monitor {
    watchers: AtomicUsize,
    feed: broadcast::Sender<Bytes>,
}

impl Default for Monitor {
    fn default() -> Self {
        Monitor {
            watchers: AtomicUsize::new(0),
            feed: broadcast::channel(FEED_LINES).0,
        }
    }
}

/// A monitor's place on the feed; counted in [`Monitor::active`] while it lives.
pub struct Subscription<'a> {
    rx: broadcast::Receiver<Bytes>,
    watchers: &'a AtomicUsize,
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        self.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts receiving the feed (and makes requests publish to it).
pub fn subscribe(monitor: &Monitor) -> Subscription<'_> {
    let rx = monitor.feed.subscribe();
    monitor.watchers.fetch_add(1, Ordering::Relaxed);
    Subscription {
        rx,
        watchers: &monitor.watchers,
    }
}

impl Monitor {
    /// Whether anyone is watching (cheap; checked per request).
    pub fn active(&self) -> bool {
        self.watchers.load(Ordering::Relaxed) > 0
    }

    /// Publishes one received command. Arguments of `AUTH` and `HELLO` are redacted, as Redis
    /// does, so passwords never reach a monitor.
    pub fn publish(&self, client: SocketAddr, args: &[Bytes]) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut line = format!("+{}.{:06} [0 {client}]", now.as_secs(), now.subsec_micros());
        let redact = args.first().is_some_and(|name| {
            name.eq_ignore_ascii_case(b"auth") || name.eq_ignore_ascii_case(b"hello")
        });
        for (i, arg) in args.iter().enumerate() {
            line.push(' ');
            if redact && i > 0 {
                line.push_str("\"(redacted)\"");
            } else {
                quote(&mut line, arg);
            }
        }
        line.push_str("\r\n");
        let _ = self.feed.send(Bytes::from(line));
    }
}

/// Streams the feed to `stream` (already answered `+OK`) until the client closes it, is
/// killed, passes its output limit, or the node shuts down. Input from the client is read and
/// ignored (so a closed socket is seen).
///
/// Lines are taken off the shared feed as they come and queued here, so a monitor that does
/// not read holds its own backlog, never the feed's: that backlog is its unsent output
/// (`omem`), held to the `normal` class's `client-output-buffer-limit` as Redis holds
/// monitors (hard: closed at once; soft: closed after its seconds). With no hard limit (Redis's
/// default for `normal`), lines past [`BACKSTOP`] are dropped and the monitor is told how many
/// it missed: its memory stays bounded either way.
/// `subscription` is taken (with [`subscribe`]) before MONITOR's `+OK` goes out, so every
/// command received after the client reads that `+OK` reaches it.
pub async fn watch(
    node: &Node,
    stream: impl ClientStream,
    handle: &ClientHandle,
    mut subscription: Subscription<'_>,
) {
    let rx = &mut subscription.rx;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let limit_now = || node.config.read().output_limits.of(Class::Normal);
    let mut limit = limit_now();
    let mut watch = Watch::default();
    let mut backlog = Backlog::default();
    let mut sink = BytesMut::with_capacity(1024);
    let mut recheck = tokio::time::interval(LIMIT_RECHECK);
    // Whether written bytes may still sit in the stream (TLS buffers a record's tail).
    let mut unflushed = false;
    loop {
        tokio::select! {
            _ = handle.kill.cancelled() => break,
            read = reader.read_buf(&mut sink) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => sink.clear(),
            },
            line = rx.recv() => match line {
                Ok(line) => backlog.push(line, limit),
                Err(broadcast::error::RecvError::Lagged(n)) => backlog.skipped += n,
                Err(broadcast::error::RecvError::Closed) => break,
            },
            // Write what is pending; once nothing is, flush (TLS may hold a record's tail).
            output = async {
                if backlog.is_empty() {
                    writer.flush().await.map(|()| None)
                } else {
                    writer.write_vectored(&backlog.slices()).await.map(Some)
                }
            }, if unflushed || !backlog.is_empty() => match output {
                Err(_) | Ok(Some(0)) => break,
                Ok(Some(n)) => {
                    backlog.advance(n);
                    unflushed = true;
                    node.stats.net_output_bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
                Ok(None) => unflushed = false,
            },
            // The soft limit's clock runs while nothing happens; CONFIG SET may change limits.
            _ = recheck.tick() => limit = limit_now(),
        }
        let pending = backlog.bytes;
        handle.output_bytes.store(pending, Ordering::Relaxed);
        handle
            .mem_bytes
            .store(pending + sink.capacity(), Ordering::Relaxed);
        if let Some(which) = watch.check(limit, pending as u64, Instant::now()) {
            let which = match which {
                Exceeded::Hard => "hard",
                Exceeded::Soft => "soft",
            };
            handle.close_for_output_limit(Class::Normal.name(), which);
            break;
        }
    }
}

/// The most a monitor may have pending when its class has no hard limit: further lines are
/// dropped (and counted) until it catches up. Redis's default `pubsub` hard limit.
pub const BACKSTOP: usize = 32 << 20;

/// How often a monitor re-reads its limits while waiting.
const LIMIT_RECHECK: Duration = Duration::from_secs(1);

/// One monitor's unsent lines: the feed's own buffers (shared by every monitor), not copies.
#[derive(Default)]
struct Backlog {
    lines: VecDeque<Bytes>,
    /// Their total length: the monitor's unsent output.
    bytes: usize,
    /// Lines dropped (no hard limit, backlog at [`BACKSTOP`]) and not yet reported.
    skipped: u64,
}

/// Lines handed to one vectored write.
const LINES_PER_WRITE: usize = 64;

impl Backlog {
    fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Queues `line`, after a note of the lines skipped before it, if any; past the backstop
    /// (only without a hard limit, which closes the monitor instead) the line is skipped.
    fn push(&mut self, line: Bytes, limit: ClassLimit) {
        if limit.hard == 0 && self.bytes + line.len() > BACKSTOP {
            self.skipped += 1;
            return;
        }
        if self.skipped > 0 {
            let note = format!("+(monitor skipped {} commands: too slow)\r\n", self.skipped);
            self.skipped = 0;
            self.push_line(Bytes::from(note));
        }
        self.push_line(line);
    }

    fn push_line(&mut self, line: Bytes) {
        self.bytes += line.len();
        self.lines.push_back(line);
    }

    /// The first lines, for one write.
    fn slices(&self) -> Vec<IoSlice<'_>> {
        self.lines
            .iter()
            .take(LINES_PER_WRITE)
            .map(|l| IoSlice::new(l))
            .collect()
    }

    /// Drops the first `n` bytes (written).
    fn advance(&mut self, mut n: usize) {
        self.bytes -= n;
        while n > 0 {
            let Some(front) = self.lines.front_mut() else {
                return;
            };
            if front.len() > n {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.lines.pop_front();
        }
    }
}

/// Redis's `sdscatrepr`: a double-quoted string with `\n \r \t \a \b \" \\` and `\xHH` escapes.
fn quote(out: &mut String, arg: &[u8]) {
    out.push('"');
    for &b in arg {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            7 => out.push_str("\\a"),
            8 => out.push_str("\\b"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_quoted_like_redis() {
        let mut s = String::new();
        quote(&mut s, b"a \"b\"\n\x01");
        assert_eq!(s, r#""a \"b\"\n\x01""#);
    }

    #[tokio::test]
    async fn publishes_only_while_watched_and_redacts_auth() {
        let monitor = Monitor::default();
        assert!(!monitor.active());
        let mut rx = monitor.feed.subscribe();
        let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        monitor.publish(addr, &[Bytes::from("AUTH"), Bytes::from("secret")]);
        let line = rx.recv().await.unwrap();
        let line = std::str::from_utf8(&line).unwrap();
        assert!(
            line.ends_with(" [0 127.0.0.1:5000] \"AUTH\" \"(redacted)\"\r\n"),
            "{line}"
        );
    }
}
