//! A minimal async RESP connection: one request at a time, each with a deadline. After any
//! error or timeout the connection must be dropped (a late reply would answer the next
//! request).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use shoal_protocol::{decode_frame, encode_command, Frame, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a request got no reply. Whether it may have run is the caller's call: it was sent
/// (or partly sent) in every case but `Connect`.
#[derive(Debug)]
pub enum CallError {
    Connect(String),
    Timeout,
    Io(String),
    Closed,
    Protocol(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Connect(e) => write!(f, "connect: {e}"),
            CallError::Timeout => write!(f, "timeout"),
            CallError::Io(e) => write!(f, "io: {e}"),
            CallError::Closed => write!(f, "connection closed"),
            CallError::Protocol(e) => write!(f, "protocol: {e}"),
        }
    }
}

pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Conn, CallError> {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(Conn {
                    stream,
                    buf: BytesMut::new(),
                })
            }
            Ok(Err(e)) => Err(CallError::Connect(e.to_string())),
            Err(_) => Err(CallError::Connect("timeout".into())),
        }
    }

    /// Sends one command and waits up to `timeout` for its reply.
    pub async fn call<A: AsRef<[u8]>>(
        &mut self,
        args: &[A],
        timeout: Duration,
    ) -> Result<Frame, CallError> {
        match tokio::time::timeout(timeout, self.call_inner(args)).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout),
        }
    }

    async fn call_inner<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Frame, CallError> {
        let mut out = BytesMut::new();
        encode_command(args, &mut out);
        self.stream
            .write_all(&out)
            .await
            .map_err(|e| CallError::Io(e.to_string()))?;
        loop {
            match decode_frame(&mut self.buf, &Limits::default()) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(e) => return Err(CallError::Protocol(e.to_string())),
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| CallError::Io(e.to_string()))?;
            if n == 0 {
                return Err(CallError::Closed);
            }
        }
    }
}

/// A one-shot request on a fresh connection: for the harness's status queries.
pub async fn query(addr: SocketAddr, args: &[&str], timeout: Duration) -> Result<Frame, CallError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut conn = Conn::connect(addr, timeout).await?;
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    conn.call(args, left).await
}

/// The text of a bulk / verbatim reply.
pub fn text(frame: &Frame) -> Option<String> {
    match frame {
        Frame::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Frame::Verbatim { text, .. } => Some(String::from_utf8_lossy(text).into_owned()),
        Frame::Simple(s) => Some(s.clone()),
        _ => None,
    }
}
