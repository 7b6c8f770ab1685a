//! The slow log (`SLOWLOG GET|LEN|RESET`): commands that took longer than
//! `slowlog-log-slower-than` microseconds, newest first, at most `slowlog-max-len` of them.
//!
//! The hot path only compares a duration with an atomic threshold; the lock is taken for the
//! rare slow command. Entries follow Redis: at most 32 arguments (the last one says how many
//! more there were), each cut to 128 bytes (saying how many more bytes there were).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

const MAX_ARGS: usize = 32;
const MAX_ARG_BYTES: usize = 128;

#[derive(Clone, Debug)]
pub struct SlowEntry {
    pub id: u64,
    /// Unix seconds when the command was logged.
    pub time: u64,
    pub usec: u64,
    pub args: Vec<Bytes>,
    pub client_addr: SocketAddr,
    pub client_name: String,
}

pub struct SlowLog {
    /// Microseconds; negative disables the log, 0 logs every command.
    slower_than: AtomicI64,
    max_len: AtomicUsize,
    next_id: AtomicU64,
    entries: Mutex<VecDeque<SlowEntry>>,
}

impl SlowLog {
    pub fn new(slower_than: i64, max_len: usize) -> SlowLog {
        SlowLog {
            slower_than: AtomicI64::new(slower_than),
            max_len: AtomicUsize::new(max_len),
            next_id: AtomicU64::new(0),
            entries: Mutex::new(VecDeque::new()),
        }
    }

    /// Applies `slowlog-log-slower-than` and `slowlog-max-len` (from `CONFIG SET`).
    pub fn configure(&self, slower_than: i64, max_len: usize) {
        self.slower_than.store(slower_than, Ordering::Relaxed);
        self.max_len.store(max_len, Ordering::Relaxed);
        let mut entries = self.entries.lock();
        entries.truncate(max_len);
    }

    /// Whether a command that took `usec` belongs in the log (cheap: no lock).
    pub fn is_slow(&self, usec: u64) -> bool {
        let threshold = self.slower_than.load(Ordering::Relaxed);
        threshold >= 0 && usec >= threshold as u64
    }

    /// Logs a command; call only when [`SlowLog::is_slow`] said so.
    pub fn push(&self, usec: u64, args: &[Bytes], client_addr: SocketAddr, client_name: String) {
        let max_len = self.max_len.load(Ordering::Relaxed);
        if max_len == 0 {
            return;
        }
        let entry = SlowEntry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            time: crate::store::now_ms() / 1000,
            usec,
            args: trimmed_args(args),
            client_addr,
            client_name,
        };
        let mut entries = self.entries.lock();
        entries.push_front(entry);
        entries.truncate(max_len);
    }

    /// The newest `count` entries (all of them when `None`).
    pub fn newest(&self, count: Option<usize>) -> Vec<SlowEntry> {
        let entries = self.entries.lock();
        let n = count.unwrap_or(entries.len()).min(entries.len());
        entries.iter().take(n).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn reset(&self) {
        self.entries.lock().clear();
    }
}

fn trimmed_args(args: &[Bytes]) -> Vec<Bytes> {
    let shown = if args.len() > MAX_ARGS {
        MAX_ARGS - 1
    } else {
        args.len()
    };
    let mut out: Vec<Bytes> = args[..shown]
        .iter()
        .map(|a| {
            if a.len() > MAX_ARG_BYTES {
                let mut cut = a[..MAX_ARG_BYTES].to_vec();
                cut.extend_from_slice(
                    format!("... ({} more bytes)", a.len() - MAX_ARG_BYTES).as_bytes(),
                );
                Bytes::from(cut)
            } else {
                a.clone()
            }
        })
        .collect();
    if shown < args.len() {
        out.push(Bytes::from(format!(
            "... ({} more arguments)",
            args.len() - shown
        )));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:5000".parse().unwrap()
    }

    #[test]
    fn keeps_the_newest_entries_up_to_max_len() {
        let log = SlowLog::new(0, 2);
        for i in 0..3 {
            assert!(log.is_slow(i));
            log.push(i, &[Bytes::from(format!("cmd{i}"))], addr(), String::new());
        }
        let got = log.newest(None);
        assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(log.newest(Some(1)).len(), 1);
        log.configure(-1, 2);
        assert!(!log.is_slow(1_000_000));
        log.reset();
        assert!(log.is_empty());
    }

    #[test]
    fn long_commands_are_cut_like_redis() {
        let args: Vec<Bytes> = (0..40).map(|_| Bytes::from(vec![b'x'; 200])).collect();
        let cut = trimmed_args(&args);
        assert_eq!(cut.len(), 32);
        assert_eq!(&cut[31][..], b"... (9 more arguments)");
        assert!(cut[0].ends_with(b"... (72 more bytes)"));
        assert_eq!(cut[0].len(), 128 + "... (72 more bytes)".len());
    }
}
