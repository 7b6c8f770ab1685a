//! One `shoal-server` process inside a node's namespace: start, SIGKILL, SIGSTOP/SIGCONT,
//! restart on the same data dir.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a process may take to print its ready line (the machine is shared and slow).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The server binary: `$SHOAL_SERVER_BIN`, else this workspace's release build.
pub fn server_binary() -> PathBuf {
    let path = std::env::var_os("SHOAL_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/shoal-server")
        });
    assert!(
        path.is_file(),
        "shoal-server binary not found at {}: build it with \
         `cargo build --release -p shoal-server` or set SHOAL_SERVER_BIN",
        path.display()
    );
    path
}

/// A node's process and what it needs to start again.
pub struct NodeProcess {
    pub namespace: String,
    /// The client address (inside the node's namespace, reachable from the root namespace).
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// Arguments after the binary.
    args: Vec<String>,
    child: Option<Child>,
    paused: bool,
    /// Told to leave the cluster (`CLUSTER FORGET`): it drains, then exits by itself.
    leaving: bool,
    /// It left and exited: its state is erased, so it must never be started again.
    removed: bool,
}

impl NodeProcess {
    /// Starts the server in `namespace` and waits for its ready line.
    pub fn start(
        namespace: String,
        addr: SocketAddr,
        data_dir: PathBuf,
        log_path: PathBuf,
        args: Vec<String>,
    ) -> NodeProcess {
        std::fs::create_dir_all(&data_dir).expect("create data dir");
        let mut p = NodeProcess {
            namespace,
            addr,
            data_dir,
            log_path,
            args,
            child: None,
            paused: false,
            leaving: false,
            removed: false,
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.namespace);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open node log");
        // `ip netns exec` enters the namespace and execs the server: the child's pid is the
        // server's, so signals reach it directly.
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.namespace])
            .arg(server_binary())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn ip netns exec shoal-server");
        let ready = ready_lines(child.stdout.take().expect("stdout"));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if ready.recv_timeout(Duration::from_millis(50)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{} exited before it was ready ({status}); log tail:\n{}",
                    self.namespace,
                    self.log_tail(30)
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} not ready within {READY_TIMEOUT:?}; log tail:\n{}",
                    self.namespace,
                    self.log_tail(30)
                );
            }
        }
        self.child = Some(child);
        self.paused = false;
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: a plain syscall on our own child's pid (not yet reaped, so not reused).
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        self.paused = self.child.is_some();
    }

    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
        self.paused = false;
    }

    /// Starts it again on the same data dir, address and flags (not once it has left the
    /// cluster: it would found a new one on its erased data dir).
    pub fn restart(&mut self) {
        self.kill();
        if !self.removed {
            self.spawn();
        }
    }

    pub fn mark_leaving(&mut self) {
        self.leaving = true;
    }

    pub fn is_leaving(&self) -> bool {
        self.leaving
    }

    /// Whether it has been seen to leave (see [`NodeProcess::is_removed`]).
    pub fn removed(&self) -> bool {
        self.removed
    }

    /// True once a leaving node has drained and exited.
    pub fn is_removed(&mut self) -> bool {
        if self.leaving && !self.removed {
            if let Some(Some(status)) = self.child.as_mut().map(|c| c.try_wait().ok().flatten()) {
                if status.success() {
                    self.child = None;
                    self.removed = true;
                }
            }
        }
        self.removed
    }

    /// True if the process died on its own (not by our hand, nor by leaving the cluster).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        if self.is_removed() {
            return None;
        }
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Lines "shoal ready on ADDR; ..." as they come; a thread keeps draining stdout.
fn ready_lines(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("shoal ready on ") {
                let _ = tx.send(rest.split(';').next().unwrap_or_default().to_owned());
            }
        }
    });
    rx
}
