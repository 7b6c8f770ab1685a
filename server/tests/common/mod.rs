//! Test harness: runs the real `shoal-server` binary and talks to it over real TCP, with a raw
//! RESP client and with Debian's `redis-cli`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use shoal_protocol::{decode_frame, encode_command, Frame, Limits};

/// A running server process; killed (and its data dir removed) when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    data_dir: PathBuf,
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Starts the binary on an OS-chosen port with extra flags, and waits until it is ready.
    pub fn start_with(extra: &[&str]) -> Server {
        let data_dir = std::env::temp_dir().join(format!(
            "shoal-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&data_dir).expect("create data dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_shoal-server"))
            .args(["--port", "0", "--bind", "127.0.0.1", "--log-level", "warn"])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn shoal-server");
        // The server prints "shoal ready on <addr>; ..." once it accepts connections.
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("shoal ready on ") {
                    let addr = rest.split(';').next().unwrap_or_default().to_owned();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().expect("address in ready line"),
            Err(_) => {
                let _ = child.kill();
                panic!("shoal-server did not become ready within 20 s");
            }
        };
        Server {
            child,
            addr,
            data_dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Runs `redis-cli -p <port> args...` and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port(), args)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli must be installed (apt-get install redis-tools)");
    assert!(out.status.success(), "redis-cli {args:?} failed: {out:?}");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim_end_matches('\n')
        .to_owned()
}

/// A minimal blocking RESP client that sends commands as arrays of bulk strings.
pub struct Client {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Client {
            stream,
            buf: BytesMut::new(),
        }
    }

    pub fn send(&mut self, args: &[&str]) {
        let mut out = BytesMut::new();
        encode_command(args, &mut out);
        self.stream.write_all(&out).expect("write");
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one reply; panics on timeout or if the connection closes first.
    pub fn read(&mut self) -> Frame {
        self.try_read()
            .expect("connection closed before a reply arrived")
    }

    /// Reads one reply, or `None` if the server closed the connection.
    pub fn try_read(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = decode_frame(&mut self.buf, &Limits::default()).expect("valid reply") {
                return Some(f);
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    pub fn cmd(&mut self, args: &[&str]) -> Frame {
        self.send(args);
        self.read()
    }

    /// True once the server has closed this connection (reads EOF or reset).
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0))
            || matches!(self.stream.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
    }
}

pub fn bulk(s: &str) -> Frame {
    Frame::bulk(s.to_owned())
}

pub fn ok() -> Frame {
    Frame::ok()
}

pub fn err(s: &str) -> Frame {
    Frame::Error(s.to_owned())
}

pub fn int(n: i64) -> Frame {
    Frame::Integer(n)
}

/// Polls `check` until it is true or `timeout` passes; returns whether it became true.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
