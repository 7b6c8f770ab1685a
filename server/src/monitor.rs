//! `MONITOR`: every command this node receives from its clients, as Redis prints it
//! (`+1700000000.123456 [0 127.0.0.1:5000] "set" "k" "v"`), streamed to monitoring clients.
//!
//! Single-node view: a monitor sees the commands clients sent to this node (including those it
//! then forwarded to a shard leader elsewhere), not those other nodes received. With no monitor
//! connected, the data path pays one relaxed atomic load per request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;

/// Lines a slow monitor may fall behind before it skips ahead (it is told how many it missed).
const BACKLOG: usize = 8192;

pub struct Monitor {
    watchers: AtomicUsize,
    feed: broadcast::Sender<Bytes>,
}

impl Default for Monitor {
    fn default() -> Self {
        Monitor {
            watchers: AtomicUsize::new(0),
            feed: broadcast::channel(BACKLOG).0,
        }
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

    /// Streams the feed to `stream` (already answered `+OK`) until the client closes it or the
    /// node shuts down. Input from the client is read and ignored (so a closed socket is seen).
    pub async fn watch(
        &self,
        mut stream: impl crate::net::connection::ClientStream,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut rx = self.feed.subscribe();
        self.watchers.fetch_add(1, Ordering::Relaxed);
        let mut sink = BytesMut::with_capacity(1024);
        loop {
            let line = tokio::select! {
                _ = stop.cancelled() => break,
                read = stream.read_buf(&mut sink) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => { sink.clear(); continue }
                },
                line = rx.recv() => line,
            };
            let bytes = match line {
                Ok(bytes) => bytes,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    Bytes::from(format!("+(monitor skipped {n} commands: too slow)\r\n"))
                }
                Err(broadcast::error::RecvError::Closed) => break,
            };
            if stream.write_all(&bytes).await.is_err() {
                break;
            }
        }
        self.watchers.fetch_sub(1, Ordering::Relaxed);
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
