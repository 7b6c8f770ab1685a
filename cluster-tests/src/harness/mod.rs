//! Real processes on a real (namespaced) network: [`netns`] builds the network and cuts its
//! links, [`process`] runs one server process, [`cluster`] ties nodes together, and [`resp`]
//! is the small async RESP connection every client uses.

pub mod cluster;
pub mod netns;
pub mod process;
pub mod resp;

use std::time::{Duration, Instant};

/// Polls `check` every `every` until it returns `Some` or `timeout` passes.
pub fn poll<T>(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Fails with a clear message unless we are root (namespaces and iptables need it).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "the fault-injection suite needs root: it creates network namespaces, veth pairs and \
         iptables rules (run it as root, e.g. in CI)"
    );
}
