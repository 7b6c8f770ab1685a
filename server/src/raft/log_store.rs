//! The durable Raft log of one group: [`LogStore`] implements openraft's [`RaftLogStorage`],
//! [`LogReader`] (a cheap clone sharing the store's state) its [`RaftLogReader`].
//!
//! # On-disk layout
//!
//! One directory per group holds:
//!
//! - `segment-<index of its first record, 20 digits>.log`: the entries, as a sequence of records
//!   `[u32 len LE][u32 crc32 LE of payload][payload = bincode(entry)]`. Records in a segment, and
//!   segments in name order, have consecutive indexes. A new segment starts when the next record
//!   would push the current one past the segment size (64 MiB unless
//!   [`LogStoreOptions::segment_size`] says otherwise; a record larger than that gets a segment
//!   of its own). A segment is fsynced ("sealed") before its successor is created, whatever the
//!   [`FsyncPolicy`], so that only the last segment can ever end in a partial write.
//! - `vote`, `committed`, `purged`: `[u32 crc32 LE][bincode(value)]`, each replaced by writing
//!   `<name>.tmp` and renaming it over `<name>`; stale `.tmp` files are deleted on open. `vote`
//!   and `purged` are replaced atomically: the temporary file is fsynced before the rename and
//!   the directory after it, so a crash leaves either the old or the new file, never a mix, and a
//!   damaged one fails `open`. `committed` is only a hint and is written with fewer fsyncs (see
//!   [The committed log id](#the-committed-log-id)): `open` reads a missing, empty, torn or
//!   checksum-failing `committed` as `None`.
//!
//! Unpurged entries are also kept in memory (a `BTreeMap` shared with the readers): reads never
//! touch the files, which are there for durability and recovery. They are kept *encoded*, as the
//! very record bytes the writer puts in the segment (one allocation per entry, shared with the
//! writer's queue) and decoded when read: an entry as openraft hands it over holds `Bytes` that
//! point into the connection's read buffer, and keeping those alive pinned whole read buffers
//! for as long as the entry stayed in the log. [`LogReader::memory`] is what they cost, for
//! `INFO memory`. The writer remembers each
//! record's byte offset in its segment, so truncation cuts a file exactly at a record boundary.
//!
//! # Writes
//!
//! All file I/O happens on one dedicated writer thread fed by a FIFO queue: writes reach the disk
//! in the order openraft issued them (the `RaftLogStorage` contract requires vote, append,
//! truncate and purge to be serialized) and the async runtime never waits for the disk.
//!
//! - `append` validates that the entries continue the log, puts them in the in-memory map (so
//!   they are readable when it returns) and queues them. The writer coalesces consecutive queued
//!   appends into one `write(2)` per segment and then, by [`FsyncPolicy`]: `Always` fsyncs once
//!   for the whole batch and then calls the `IOFlushed` callbacks; `EverySec` calls them right
//!   after the write and a background tokio task fsyncs the written segments every second; `No`
//!   never fsyncs appends (the kernel writes them back when it likes).
//! - `save_vote`, `truncate_after` and `purge` wait for the writer and are durable when they
//!   return, whatever the policy: the policy trades the durability of recent *entries*, while a
//!   forgotten vote could let this node vote twice in one term.
//! - `save_committed` is cheap and never makes the committed id durable ahead of the entries it
//!   covers; see the next section.
//! - `truncate_after` deletes the later segments newest first, then cuts the segment holding
//!   the first removed record (`set_len` + fsync), so a crash part-way leaves a shorter log,
//!   never one with a hole. `purge` persists `purged` first, then deletes the segments whose
//!   records are all purged; a segment that still holds live entries stays.
//! - After any write error the store refuses every later write: memory and files no longer
//!   agree, and retrying an fsync that failed is not safe (the kernel may have dropped the dirty
//!   pages). openraft treats the error as fatal; restarting recovers from the files.
//!
//! # The committed log id
//!
//! openraft calls `save_committed` after every batch it applies and, on restart, re-applies the
//! log up to the id `read_committed` returns. A committed id naming entries the recovered log no
//! longer has would make openraft refuse to start, so the store keeps one invariant:
//!
//! **Whatever the `committed` file holds never exceeds what is durable in the log**: every entry
//! up to it was durable in its segment before the file could become durable. The file may lag
//! behind the in-memory value (a lower committed id only means less is re-applied on restart;
//! the rest is committed again by the cluster), and `None` is always acceptable.
//!
//! - `Always`: `save_committed` is queued behind the appends, which the writer fsyncs before it
//!   reaches the command, so every entry up to the id is already durable. The writer writes
//!   `committed.tmp` and renames it over `committed` with no fsync at all (neither file nor
//!   directory): a crash may leave an older, missing, empty or torn file, which `open` reads as
//!   that older value or `None`, never a newer one.
//! - `EverySec`: `save_committed` only records the id in memory (`read_committed` returns it at
//!   once). The background flusher, right after it has fsynced the segments, persists
//!   `min(committed, durable)` (with fsync, atomically), where `durable` is the last log id known
//!   durable: the writer records the last log id it wrote (`written`) with each batch it marks
//!   for the flusher, the flusher takes that id together with the files it fsyncs and, once they
//!   are synced, raises `durable` to it. When `committed` is ahead, the id of that last durable
//!   entry (taken from the entry the writer wrote, so it is in the log) is persisted instead. A
//!   truncation lowers `written` and `durable` to the kept id *before* cutting anything and
//!   voids the watermark of a flush in flight; a purge raises both to the purged id (its
//!   `purged` file is durable first). `open` fsyncs the last segment and the directory, so `durable`
//!   starts at the last recovered entry. The final flush when the store is dropped may persist
//!   it too. Nothing is persisted once the store has failed.
//! - `No`: appends are never known to be durable, so the committed id is never persisted:
//!   `read_committed` returns what was saved in this process and, after a reopen, `None` (or the
//!   value a run under another policy left, which was valid when written and stays valid:
//!   committed entries are never truncated).
//!
//! # Recovery
//!
//! [`LogStore::open`] reads the segments in index order and checks every record's length and
//! CRC, that each segment starts at the index its name says, and that live entries (those after
//! `purged`) are contiguous. Records at or below `purged` are skipped (they share a segment
//! with live entries); segments holding nothing else, left by a purge a crash interrupted, are
//! deleted.
//!
//! A bad record is treated in one of two ways, because the two have different causes:
//!
//! - **Torn tail** — the final record of the *last* segment is incomplete (its header or its
//!   length runs past the end of the file), or fails its CRC while ending exactly at the end of
//!   the file, or the file is all zero bytes from that record on (a filesystem that extended the
//!   file before writing the data). That is what a crash in the middle of an append leaves
//!   behind, and it is the newest write: under `Always` it was never acknowledged (the callback
//!   waits for the fsync); under `EverySec`/`No` it is in the window of recent writes those
//!   policies accept to lose. So it is cut off (with a `warn!` naming the file and offset) and
//!   the complete records before it are kept.
//! - **Corruption** — anything else: a CRC mismatch with more data after it, any bad record in a
//!   segment that is not the last (sealing means a crash cannot tear those), a record that does
//!   not decode, an index out of sequence. Something damaged bytes that were written in full,
//!   and records behind them may have been acknowledged, even committed: dropping them could
//!   lose committed data. So `open` fails with [`LogStoreError::Corrupt`] naming the file and
//!   byte offset, and an operator decides. (Under `EverySec`/`No` a machine crash could in
//!   principle persist a later page of the last segment but not an earlier one; that too is
//!   reported as corruption rather than guessed at.)

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Weak};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;
use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;

use super::bounded_decode::decode_bounded;
use super::types::{Entry, LogId, TypeConfig, Vote};

/// Default size at which a new segment file starts.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;

/// `[u32 len][u32 crc32]` in front of every record's payload.
const RECORD_HEADER_LEN: usize = 8;
const VOTE_FILE: &str = "vote";
const COMMITTED_FILE: &str = "committed";
const PURGED_FILE: &str = "purged";
const META_FILES: [&str; 3] = [VOTE_FILE, COMMITTED_FILE, PURGED_FILE];
const SEGMENT_PREFIX: &str = "segment-";
const SEGMENT_SUFFIX: &str = ".log";
/// How often the `EverySec` policy fsyncs what was written.
const EVERYSEC_INTERVAL: Duration = Duration::from_secs(1);
/// At most this many queued `append` calls share one write (and, under `Always`, one fsync).
const MAX_COALESCED_APPENDS: usize = 256;

/// When appended entries are fsynced; the names and meanings are Redis's `appendfsync`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FsyncPolicy {
    /// fsync every append batch before reporting it flushed: nothing acknowledged is lost.
    Always,
    /// Report an append flushed once written; fsync in the background every second, so a
    /// machine crash (not a process crash) loses about the last second.
    #[default]
    EverySec,
    /// Never fsync appends; the kernel writes them back when it likes.
    No,
}

impl FsyncPolicy {
    /// The `appendfsync` spelling: `always`, `everysec` or `no`.
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::EverySec => "everysec",
            FsyncPolicy::No => "no",
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not `always`, `everysec` or `no`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid fsync policy {0:?}: expected \"always\", \"everysec\" or \"no\"")]
pub struct ParseFsyncPolicyError(pub String);

impl FromStr for FsyncPolicy {
    type Err = ParseFsyncPolicyError;

    /// Case-insensitive, as Redis reads its configuration.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [FsyncPolicy::Always, FsyncPolicy::EverySec, FsyncPolicy::No]
            .into_iter()
            .find(|p| s.eq_ignore_ascii_case(p.as_str()))
            .ok_or_else(|| ParseFsyncPolicyError(s.to_owned()))
    }
}

/// How [`LogStore::open_with_options`] sets a store up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogStoreOptions {
    pub fsync: FsyncPolicy,
    /// A new segment starts when the next record would make the current one larger than this.
    pub segment_size: u64,
}

impl Default for LogStoreOptions {
    fn default() -> Self {
        LogStoreOptions {
            fsync: FsyncPolicy::default(),
            segment_size: DEFAULT_SEGMENT_SIZE,
        }
    }
}

/// Why [`LogStore::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error("raft log: cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A damaged record that is not a torn tail (see the module documentation).
    #[error("raft log: corrupt segment {} at byte offset {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// `vote` or `purged` fails its checksum or does not decode (a damaged `committed` reads as
    /// `None` instead).
    #[error("raft log: corrupt {}: {reason}", path.display())]
    CorruptMeta { path: PathBuf, reason: String },
    #[error("raft log: the everysec fsync policy needs a tokio runtime to open the store in")]
    NoRuntime,
    #[error("raft log: cannot start the writer thread: {0}")]
    Spawn(#[source] io::Error),
}

impl From<LogStoreError> for io::Error {
    fn from(e: LogStoreError) -> Self {
        let kind = match &e {
            LogStoreError::Io { source, .. } => source.kind(),
            LogStoreError::Corrupt { .. } | LogStoreError::CorruptMeta { .. } => {
                io::ErrorKind::InvalidData
            }
            LogStoreError::NoRuntime | LogStoreError::Spawn(_) => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// How often `Always` replaces the `committed` file at most. The file is a recovery hint (an
/// older value only means more of the log is applied after the leader commits it again), and
/// each replacement is a create and a rename per shard: at 100 ms, 16 shards under a steady
/// write load (active expiry's entries alone) spent ~12% of the process's CPU samples there.
pub const COMMITTED_SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The durable log of one Raft group. See the module documentation for the format and rules.
pub struct LogStore {
    dir: PathBuf,
    options: LogStoreOptions,
    shared: Arc<Shared>,
    flush: Arc<FlushState>,
    /// `None` only while dropping, so the writer sees its queue close.
    queue: Option<mpsc::Sender<Command>>,
    writer: Option<thread::JoinHandle<()>>,
    /// When `Always` last wrote the `committed` file (see `save_committed`).
    committed_saved_at: Option<std::time::Instant>,
}

/// Reads entries and the vote of a [`LogStore`]; clones share the store's state.
#[derive(Clone)]
pub struct LogReader {
    shared: Arc<Shared>,
}

impl LogStore {
    /// Opens (creating it if needed) the log in `dir` with the default segment size, recovering
    /// what is on disk (see the module documentation).
    ///
    /// Blocking: it reads every segment, so from async code call it on
    /// `tokio::task::spawn_blocking`. `EverySec` needs a tokio runtime context (which
    /// `spawn_blocking` threads have) to start its flusher task in.
    pub fn open(dir: &Path, policy: FsyncPolicy) -> Result<LogStore, LogStoreError> {
        Self::open_with_options(
            dir,
            LogStoreOptions {
                fsync: policy,
                ..LogStoreOptions::default()
            },
        )
    }

    /// [`LogStore::open`] with every option spelled out.
    pub fn open_with_options(
        dir: &Path,
        options: LogStoreOptions,
    ) -> Result<LogStore, LogStoreError> {
        let runtime = match options.fsync {
            FsyncPolicy::EverySec => {
                Some(tokio::runtime::Handle::try_current().map_err(|_| LogStoreError::NoRuntime)?)
            }
            FsyncPolicy::Always | FsyncPolicy::No => None,
        };
        fs::create_dir_all(dir).map_err(io_error("create", dir))?;
        for name in META_FILES {
            let tmp = dir.join(format!("{name}.tmp"));
            match fs::remove_file(&tmp) {
                Ok(()) => tracing::info!(file = %tmp.display(), "removed an unfinished update"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("remove", &tmp)(e)),
            }
        }
        let vote: Option<Vote> = read_meta(dir, VOTE_FILE)?;
        // `Some(value)` when the file was read cleanly (or is missing); `None` when damaged.
        let committed_file = read_committed_meta(dir)?;
        let committed = committed_file.flatten();
        let last_purged: Option<LogId> = read_meta(dir, PURGED_FILE)?;
        let (entries, segments) = recover_segments(dir, last_purged.map(|p| p.index))?;
        // The log id `EverySec` may persist `committed` up to. What was recovered may only be in
        // the page cache (after a process crash the kernel still held it), so make it durable:
        // every segment but the last was sealed, and the directory may not name the last yet.
        let durable = match options.fsync {
            FsyncPolicy::EverySec => {
                if let Some(segment) = segments.values().next_back() {
                    File::open(&segment.path)
                        .and_then(|f| f.sync_data())
                        .map_err(io_error("fsync", &segment.path))?;
                    fsync_dir(dir).map_err(io_error("fsync", dir))?;
                }
                entries
                    .values()
                    .next_back()
                    .map(|e| e.log_id)
                    .or(last_purged)
            }
            FsyncPolicy::Always | FsyncPolicy::No => None,
        };
        tracing::info!(
            dir = %dir.display(),
            segments = segments.len(),
            entries = entries.len(),
            first = ?entries.keys().next(),
            last = ?entries.keys().next_back(),
            purged = ?last_purged.map(|p| p.index),
            "raft log opened"
        );

        let mut state = MemState {
            entries: BTreeMap::new(),
            memory: Arc::default(),
            last_purged,
            vote,
            committed,
        };
        for (_, entry) in entries {
            let record = encode_record(&entry).map_err(io_error("re-encode an entry of", dir))?;
            state.insert(Stored {
                log_id: entry.log_id,
                record: Bytes::from(record),
            });
        }
        let shared = Arc::new(Shared {
            memory: state.memory.clone(),
            state: RwLock::new(state),
            failure: Mutex::new(None),
        });
        let flush = Arc::new(FlushState {
            dir: dir.to_path_buf(),
            shared: shared.clone(),
            dirty: Mutex::new(Dirty {
                written: durable,
                durable,
                persisted: committed_file,
                ..Dirty::default()
            }),
            flushing: Mutex::new(()),
        });
        let writer = Writer {
            dir: dir.to_path_buf(),
            options: options.clone(),
            segments,
            active: None,
            shared: shared.clone(),
            flush: flush.clone(),
        };
        let (queue, commands) = mpsc::channel();
        let writer = thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer.run(commands))
            .map_err(LogStoreError::Spawn)?;
        if let Some(runtime) = runtime {
            runtime.spawn(run_everysec_flusher(Arc::downgrade(&flush)));
        }
        Ok(LogStore {
            dir: dir.to_path_buf(),
            options,
            shared,
            flush,
            queue: Some(queue),
            writer: Some(writer),
            committed_saved_at: None,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &LogStoreOptions {
        &self.options
    }

    /// True while appended entries wait for the `EverySec` background fsync (the analogue of
    /// Redis's `aof_pending_bio_fsync`); always false under the other policies.
    pub fn has_unsynced_appends(&self) -> bool {
        !self.flush.is_clean()
    }

    /// Bytes the in-memory log holds (see [`LogReader::memory`]).
    pub fn memory(&self) -> usize {
        self.reader().memory()
    }

    /// A reader sharing this store's state (what `get_log_reader` returns, without `async`).
    pub fn reader(&self) -> LogReader {
        LogReader {
            shared: self.shared.clone(),
        }
    }

    fn send(&self, command: Command) -> io::Result<()> {
        self.queue
            .as_ref()
            .and_then(|q| q.send(command).ok())
            .ok_or_else(|| io::Error::other("raft log writer thread is gone"))
    }

    /// Queues a command and waits for the writer's verdict.
    async fn request(
        &self,
        command: impl FnOnce(oneshot::Sender<io::Result<()>>) -> Command,
    ) -> io::Result<()> {
        self.shared.check_healthy()?;
        let (done, verdict) = oneshot::channel();
        self.send(command(done))?;
        verdict
            .await
            .map_err(|_| io::Error::other("raft log writer thread is gone"))?
    }
}

impl Drop for LogStore {
    /// Closes the queue and waits for the writer to finish what is queued (and, under
    /// `EverySec`, to fsync it and persist the committed log id, capped as always), so the
    /// directory can be reopened right away. This blocks the dropping thread for as long as
    /// those writes take.
    fn drop(&mut self) {
        self.queue.take();
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!(dir = %self.dir.display(), "raft log writer thread panicked");
            }
        }
    }
}

impl fmt::Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl LogReader {
    /// Bytes the in-memory copy of the unpurged log holds: every entry's encoded record (as
    /// the allocator sizes it) and its place in the map. Read without taking the lock.
    pub fn memory(&self) -> usize {
        self.shared.memory.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for LogReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogReader").finish_non_exhaustive()
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        if range_is_empty(&range) {
            return Ok(Vec::new());
        }
        let state = self.shared.state.read();
        state
            .entries
            .range(range)
            .map(|(_, e)| e.decode())
            .collect()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.shared.state.read().vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let state = self.shared.state.read();
        let last = state.entries.last_key_value().map(|(_, e)| e.log_id);
        Ok(LogState {
            last_purged_log_id: state.last_purged,
            last_log_id: last.or(state.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        self.reader()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let payload = encode(vote, "vote")?;
        self.request(|done| Command::SaveMeta {
            name: VOTE_FILE,
            payload,
            sync: true,
            done,
        })
        .await?;
        self.shared.state.write().vote = Some(*vote);
        Ok(())
    }

    /// Records the committed log id; `read_committed` returns it as soon as this returns.
    ///
    /// Invariant: whatever the `committed` file holds never exceeds what is durable in the log
    /// (see the module documentation), and persisting it costs no fsync on the apply path:
    ///
    /// - `Always`: written by the writer thread after the appends queued before it, which it has
    ///   already fsynced; the file is written to `committed.tmp` and renamed, without fsync of
    ///   the file or the directory, and at most every [`COMMITTED_SAVE_INTERVAL`] (each file
    ///   replacement costs the log writer a create and a rename, which ext4 turns into a data
    ///   flush): a value older than the newest is always safe, only slower to recover from. A
    ///   crash may leave it older, missing or torn; `open` reads a damaged one as `None`.
    /// - `EverySec`: only recorded in memory. The background flusher persists it (fsynced) right
    ///   after it has fsynced the segments, capped at the last log id that flush made durable:
    ///   `min(committed, durable)`, the cap being the id of the last durable entry. Dropping the
    ///   store runs a final flush that may persist it too.
    /// - `No`: only recorded in memory and never persisted; after a reopen `read_committed`
    ///   returns `None` (or what a run under another policy left).
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        match self.options.fsync {
            FsyncPolicy::Always
                if self
                    .committed_saved_at
                    .is_some_and(|t| t.elapsed() < COMMITTED_SAVE_INTERVAL) =>
            {
                self.shared.check_healthy()?
            }
            FsyncPolicy::Always => {
                self.committed_saved_at = Some(std::time::Instant::now());
                let payload = encode(&committed, "committed log id")?;
                self.request(|done| Command::SaveMeta {
                    name: COMMITTED_FILE,
                    payload,
                    sync: false,
                    done,
                })
                .await?;
            }
            FsyncPolicy::EverySec | FsyncPolicy::No => self.shared.check_healthy()?,
        }
        self.shared.state.write().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.shared.state.read().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.shared.check_healthy()?;
        let entries: Vec<Entry> = entries.into_iter().collect();
        let records = entries
            .iter()
            .map(|e| {
                Ok(Record {
                    log_id: e.log_id,
                    // An exact-size copy: the encoder's buffer has grown by doubling.
                    bytes: Bytes::copy_from_slice(&encode_record(e)?),
                })
            })
            .collect::<io::Result<Vec<_>>>()?;

        let mut state = self.shared.state.write();
        let mut next = state.next_index();
        for e in &entries {
            let index = e.log_id.index;
            if let Some(expected) = next {
                if index != expected {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "raft log: appending entry {} where {expected} is next would leave a \
                             hole or overwrite (truncate first)",
                            e.log_id
                        ),
                    ));
                }
            }
            next = index.checked_add(1);
        }
        let stored: Vec<Stored> = records
            .iter()
            .map(|r| Stored {
                log_id: r.log_id,
                record: r.bytes.clone(),
            })
            .collect();
        drop(entries);
        // Queued under the lock, so the map and the queue see appends in the same order.
        self.send(Command::Append { records, callback })?;
        for e in stored {
            state.insert(e);
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        if let Some(cut) = first_removed(last_log_id.map(|l| l.index)) {
            let mut state = self.shared.state.write();
            let removed = state.entries.split_off(&cut);
            state.forget(removed);
        }
        self.request(|done| Command::TruncateAfter {
            after: last_log_id,
            done,
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        if let Some(purged) = self.shared.state.read().last_purged {
            if purged.index >= log_id.index {
                return Ok(());
            }
        }
        let meta = encode(&log_id, "purged log id")?;
        self.request(|done| Command::Purge {
            upto: log_id,
            meta,
            done,
        })
        .await?;
        let mut state = self.shared.state.write();
        let kept = match log_id.index.checked_add(1) {
            Some(first_kept) => state.entries.split_off(&first_kept),
            None => BTreeMap::new(),
        };
        let removed = std::mem::replace(&mut state.entries, kept);
        state.forget(removed);
        state.last_purged = Some(log_id);
        Ok(())
    }
}

/// What the store and its readers share.
struct Shared {
    state: RwLock<MemState>,
    /// `MemState::memory`, reachable without the lock.
    memory: Arc<AtomicUsize>,
    /// Set by the first failed write; from then on every write is refused.
    failure: Mutex<Option<String>>,
}

struct MemState {
    /// Every entry after `last_purged`, by index.
    entries: BTreeMap<u64, Stored>,
    /// What `entries` costs in memory (the sum of [`Stored::mem_usage`]), readable without the
    /// lock.
    memory: Arc<AtomicUsize>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

/// An entry as the in-memory log keeps it: its id and its encoded record.
struct Stored {
    log_id: LogId,
    /// `[u32 len][u32 crc32][bincode(entry)]`, exactly as in the segment file.
    record: Bytes,
}

/// The map's own cost per entry: key and value in a B-tree leaf, with leaves about half full
/// (appends always go to the rightmost leaf, which splits in the middle).
const STORED_MAP_OVERHEAD: usize = 2 * (std::mem::size_of::<u64>() + std::mem::size_of::<Stored>());

impl Stored {
    fn decode(&self) -> io::Result<Entry> {
        decode(&self.record[RECORD_HEADER_LEN..]).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("raft log: entry {} does not decode: {e}", self.log_id),
            )
        })
    }

    /// Bytes this entry holds: its record's allocation and its place in the map.
    fn mem_usage(&self) -> usize {
        crate::store::entry::allocation_size(self.record.len()) + STORED_MAP_OVERHEAD
    }
}

impl MemState {
    fn insert(&mut self, e: Stored) {
        self.memory.fetch_add(e.mem_usage(), Ordering::Relaxed);
        if let Some(old) = self.entries.insert(e.log_id.index, e) {
            self.memory.fetch_sub(old.mem_usage(), Ordering::Relaxed);
        }
    }

    /// Accounts for `removed` having left `entries` (and drops it).
    fn forget(&mut self, removed: BTreeMap<u64, Stored>) {
        let bytes: usize = removed.values().map(Stored::mem_usage).sum();
        self.memory.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// The index the next appended entry must have; `None` for an empty log that never purged
    /// (it may start anywhere).
    fn next_index(&self) -> Option<u64> {
        match self.entries.last_key_value() {
            Some((&index, _)) => index.checked_add(1),
            None => self.last_purged.and_then(|p| p.index.checked_add(1)),
        }
    }
}

impl Shared {
    fn check_healthy(&self) -> io::Result<()> {
        match &*self.failure.lock() {
            None => Ok(()),
            Some(why) => Err(io::Error::other(format!(
                "raft log refuses writes after an earlier failure: {why}"
            ))),
        }
    }

    fn fail(&self, why: String) {
        let mut failure = self.failure.lock();
        if failure.is_none() {
            tracing::error!(error = %why, "raft log write failed; refusing further writes");
            *failure = Some(why);
        }
    }
}

/// One entry, ready to be written: header and payload (shared with the in-memory log).
struct Record {
    log_id: LogId,
    bytes: Bytes,
}

enum Command {
    Append {
        records: Vec<Record>,
        callback: IOFlushed<TypeConfig>,
    },
    TruncateAfter {
        after: Option<LogId>,
        done: oneshot::Sender<io::Result<()>>,
    },
    Purge {
        upto: LogId,
        meta: Vec<u8>,
        done: oneshot::Sender<io::Result<()>>,
    },
    SaveMeta {
        name: &'static str,
        payload: Vec<u8>,
        /// fsync the file and the directory (atomic and durable); false only for `committed`
        /// under `Always`.
        sync: bool,
        done: oneshot::Sender<io::Result<()>>,
    },
}

/// A segment file as the writer knows it.
struct Segment {
    path: PathBuf,
    /// Bytes of complete records (including those buffered for the current write).
    size: u64,
    /// Byte offset of each record: `offsets[i]` is the record of index `first + i`.
    offsets: Vec<u64>,
}

/// The segment appends go to, open in append mode.
struct Active {
    first: u64,
    path: PathBuf,
    file: Arc<File>,
}

/// What the `EverySec` flusher has to do, and how far the log is known durable.
#[derive(Default)]
struct Dirty {
    /// Segment files written since their last fsync.
    files: Vec<(u64, Arc<File>)>,
    /// Whether the directory gained a file since its last fsync.
    dir: bool,
    /// The last log id written to the segments (durable or not), as far as the flusher needs
    /// to know: raised with every marked batch, lowered by truncation, raised by a purge.
    written: Option<LogId>,
    /// The last log id known durable: every entry up to it is fsynced in its segment (or
    /// purged, with `purged` durable). `committed` is never persisted beyond it.
    durable: Option<LogId>,
    /// Bumped by every truncation, so a flush in flight across one does not raise `durable` to
    /// an id the truncation removed.
    truncations: u64,
    /// What the `committed` file holds, as far as this store knows; `None` if unknown.
    persisted: Option<Option<LogId>>,
    /// Set by the final flush on drop: later flushes do nothing.
    closed: bool,
}

/// What the `EverySec` flusher fsyncs; shared by the writer (which marks) and the flusher.
struct FlushState {
    dir: PathBuf,
    shared: Arc<Shared>,
    dirty: Mutex<Dirty>,
    /// Held for a whole flush: two flushes (the flusher's and the final one on drop) never
    /// overlap, so one never takes an empty set and declares durable what the other is still
    /// fsyncing.
    flushing: Mutex<()>,
}

impl FlushState {
    /// `touched` were written (and, if `created`, the directory gained a file), the last entry
    /// written being `last`.
    fn mark(&self, touched: &[(u64, Arc<File>)], created: bool, last: Option<LogId>) {
        let mut dirty = self.dirty.lock();
        for (first, file) in touched {
            if !dirty.files.iter().any(|(f, _)| f == first) {
                dirty.files.push((*first, file.clone()));
            }
        }
        dirty.dir |= created;
        if last.is_some() {
            dirty.written = last;
        }
    }

    /// `first` was just fsynced or deleted.
    fn forget(&self, first: u64) {
        self.dirty.lock().files.retain(|(f, _)| *f != first);
    }

    /// Called before a truncation keeping the entries up to `after` removes anything: nothing
    /// after `after` may count as written or durable any more.
    fn truncating(&self, after: Option<LogId>) {
        let mut dirty = self.dirty.lock();
        dirty.truncations = dirty.truncations.wrapping_add(1);
        let cap = |id: Option<LogId>| match (id, after) {
            (Some(id), Some(after)) if id.index > after.index => Some(after),
            (Some(_), None) => None,
            (id, _) => id,
        };
        dirty.written = cap(dirty.written);
        dirty.durable = cap(dirty.durable);
    }

    /// `purged` is durable: the log is durable up to it whatever happens to its segments.
    fn purged(&self, purged: LogId) {
        let mut dirty = self.dirty.lock();
        dirty.written = later(dirty.written, Some(purged));
        dirty.durable = later(dirty.durable, Some(purged));
    }

    fn is_clean(&self) -> bool {
        let dirty = self.dirty.lock();
        dirty.files.is_empty() && !dirty.dir
    }

    /// What the `committed` file should hold now, if it needs writing.
    fn committed_to_write(&self) -> Option<Option<LogId>> {
        if self.shared.check_healthy().is_err() {
            return None;
        }
        let committed = self.shared.state.read().committed;
        let dirty = self.dirty.lock();
        capped_committed(committed, dirty.durable).filter(|c| dirty.persisted != Some(*c))
    }

    /// Whether the flusher has anything to do.
    fn needs_flush(&self) -> bool {
        if self.dirty.lock().closed {
            return false;
        }
        !self.is_clean() || self.committed_to_write().is_some()
    }

    /// fsyncs everything marked, raises `durable` to what that covered, then persists
    /// `min(committed, durable)` if it changed. A failure poisons the store: entries already
    /// reported flushed may be lost, and the kernel may have dropped the pages it failed to
    /// write.
    fn flush(&self) -> io::Result<()> {
        let _flushing = self.flushing.lock();
        let (files, dir, covered, truncations) = {
            let mut dirty = self.dirty.lock();
            if dirty.closed {
                return Ok(());
            }
            (
                std::mem::take(&mut dirty.files),
                std::mem::take(&mut dirty.dir),
                dirty.written,
                dirty.truncations,
            )
        };
        files
            .iter()
            .try_for_each(|(_, file)| file.sync_data())
            .and_then(|()| match dir {
                true => fsync_dir(&self.dir),
                false => Ok(()),
            })
            .inspect_err(|e| self.shared.fail(format!("background fsync failed: {e}")))?;
        {
            // Everything written up to `covered` is now durable: the files it was written to
            // were just fsynced, or sealed or deleted before (see `forget`).
            let mut dirty = self.dirty.lock();
            if dirty.truncations == truncations {
                dirty.durable = later(dirty.durable, covered);
            }
        }
        self.persist_committed()
    }

    /// Writes `committed`, capped at `durable`, if that is not what the file holds already.
    fn persist_committed(&self) -> io::Result<()> {
        let Some(committed) = self.committed_to_write() else {
            return Ok(());
        };
        encode(&committed, "committed log id")
            .and_then(|payload| write_meta(&self.dir, COMMITTED_FILE, &payload, true))
            .inspect_err(|e| {
                self.shared
                    .fail(format!("saving the committed log id: {e}"))
            })?;
        self.dirty.lock().persisted = Some(committed);
        Ok(())
    }

    /// The final flush, when the store is dropped; later flushes do nothing.
    fn close(&self) -> io::Result<()> {
        let result = self.flush();
        let _flushing = self.flushing.lock();
        self.dirty.lock().closed = true;
        result
    }
}

/// The later of two log ids of the same log (no truncation between them): by index.
fn later(a: Option<LogId>, b: Option<LogId>) -> Option<LogId> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.index > a.index { b } else { a }),
        (a, None) => a,
        (None, b) => b,
    }
}

/// What may be persisted as the committed log id when the log is durable up to `durable`:
/// `min(committed, durable)` (the durable entry's own id when `committed` is ahead), or `None`
/// (persist nothing) when nothing is known durable. `Some(None)` persists "nothing committed".
fn capped_committed(committed: Option<LogId>, durable: Option<LogId>) -> Option<Option<LogId>> {
    match (committed, durable) {
        (None, _) => Some(None),
        (Some(c), Some(d)) if c.index <= d.index => Some(Some(c)),
        (Some(_), Some(d)) => Some(Some(d)),
        (Some(_), None) => None,
    }
}

/// `EverySec`: fsyncs what was written, and persists the committed log id, once a second until
/// the store is dropped.
async fn run_everysec_flusher(state: Weak<FlushState>) {
    let mut tick = tokio::time::interval(EVERYSEC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        if !state.needs_flush() {
            if state.dirty.lock().closed {
                return;
            }
            continue;
        }
        match tokio::task::spawn_blocking(move || state.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "raft log: everysec fsync failed"),
            Err(e) => tracing::error!(error = %e, "raft log: everysec fsync task failed"),
        }
    }
}

/// Owns the files; runs on its own thread, one command at a time, in queue order.
struct Writer {
    dir: PathBuf,
    options: LogStoreOptions,
    /// By first index.
    segments: BTreeMap<u64, Segment>,
    active: Option<Active>,
    shared: Arc<Shared>,
    flush: Arc<FlushState>,
}

impl Writer {
    fn run(mut self, commands: mpsc::Receiver<Command>) {
        let mut pending = None;
        loop {
            let command = match pending.take() {
                Some(command) => command,
                None => match commands.recv() {
                    Ok(command) => command,
                    Err(_) => break,
                },
            };
            match command {
                Command::Append { records, callback } => {
                    let mut batch = vec![(records, callback)];
                    while batch.len() < MAX_COALESCED_APPENDS {
                        match commands.try_recv() {
                            Ok(Command::Append { records, callback }) => {
                                batch.push((records, callback))
                            }
                            Ok(other) => {
                                pending = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.append(batch);
                }
                Command::TruncateAfter { after, done } => {
                    let result = self.guarded("truncate", |w| w.truncate_after(after));
                    let _ = done.send(result);
                }
                Command::Purge { upto, meta, done } => {
                    let result = self.guarded("purge", |w| w.purge(upto, &meta));
                    let _ = done.send(result);
                }
                Command::SaveMeta {
                    name,
                    payload,
                    sync,
                    done,
                } => {
                    let result = self.guarded("save", |w| write_meta(&w.dir, name, &payload, sync));
                    let _ = done.send(result);
                }
            }
        }
        if self.options.fsync == FsyncPolicy::EverySec {
            if let Err(e) = self.flush.close() {
                tracing::error!(error = %e, "raft log: final fsync failed");
            }
        }
    }

    /// Runs a write unless an earlier one failed; a failure now poisons the store.
    fn guarded(
        &mut self,
        what: &str,
        op: impl FnOnce(&mut Self) -> io::Result<()>,
    ) -> io::Result<()> {
        self.shared.check_healthy()?;
        op(self).inspect_err(|e| self.shared.fail(format!("{what}: {e}")))
    }

    fn append(&mut self, batch: Vec<(Vec<Record>, IOFlushed<TypeConfig>)>) {
        let result = self.guarded("append", |w| {
            w.write_records(batch.iter().flat_map(|(records, _)| records))
        });
        for (_, callback) in batch {
            callback.io_completed(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            });
        }
    }

    fn write_records<'a>(&mut self, records: impl Iterator<Item = &'a Record>) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut touched = Vec::new();
        let mut created = false;
        let mut last = None;
        for record in records {
            let index = record.log_id.index;
            if let Some(next) = self.next_index() {
                if index != next {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("entry {index} does not follow the log (next is {next})"),
                    ));
                }
            }
            let len = record.bytes.len() as u64;
            let first = self.segment_for(index, len, &mut buf, &mut touched, &mut created)?;
            let segment = self
                .segments
                .get_mut(&first)
                .ok_or_else(|| io::Error::other("the active segment is not tracked"))?;
            segment.offsets.push(segment.size);
            segment.size += len;
            buf.extend_from_slice(&record.bytes);
            last = Some(record.log_id);
        }
        if let Some(active) = &self.active {
            write_buffer(active, &mut buf, &mut touched)?;
        }
        match self.options.fsync {
            FsyncPolicy::Always => {
                for (first, file) in &touched {
                    file.sync_data()
                        .map_err(|e| with_path(e, "fsync", &segment_path(&self.dir, *first)))?;
                }
                if created {
                    fsync_dir(&self.dir)?;
                }
            }
            FsyncPolicy::EverySec => self.flush.mark(&touched, created, last),
            FsyncPolicy::No => {}
        }
        Ok(())
    }

    /// The index the next record on disk must have; `None` when there is no segment.
    fn next_index(&self) -> Option<u64> {
        self.segments
            .last_key_value()
            .map(|(first, s)| first.saturating_add(s.offsets.len() as u64))
    }

    /// The segment (by first index) the record `index` of `len` bytes goes to: the active one if
    /// it fits, else a new one after sealing the current one.
    fn segment_for(
        &mut self,
        index: u64,
        len: u64,
        buf: &mut Vec<u8>,
        touched: &mut Vec<(u64, Arc<File>)>,
        created: &mut bool,
    ) -> io::Result<u64> {
        let max = self.options.segment_size;
        let fits = |size: u64| size == 0 || size.saturating_add(len) <= max;
        if let Some(active) = self.active.take() {
            let size = self.segments.get(&active.first).map_or(0, |s| s.size);
            if fits(size) {
                let first = active.first;
                self.active = Some(active);
                return Ok(first);
            }
            write_buffer(&active, buf, touched)?;
            self.seal(active.first, Some(&active.file))?;
            touched.retain(|(f, _)| *f != active.first);
        } else if let Some((&first, segment)) = self.segments.last_key_value() {
            if fits(segment.size) {
                let file = OpenOptions::new()
                    .append(true)
                    .open(&segment.path)
                    .map_err(|e| with_path(e, "open", &segment.path))?;
                self.active = Some(Active {
                    first,
                    path: segment.path.clone(),
                    file: Arc::new(file),
                });
                return Ok(first);
            }
            self.seal(first, None)?;
        }
        let path = segment_path(&self.dir, index);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| with_path(e, "create", &path))?;
        self.segments.insert(
            index,
            Segment {
                path: path.clone(),
                size: 0,
                offsets: Vec::new(),
            },
        );
        self.active = Some(Active {
            first: index,
            path,
            file: Arc::new(file),
        });
        *created = true;
        Ok(index)
    }

    /// fsyncs a full segment (and the directory naming it) before its successor exists, so a
    /// crash can only ever tear the last segment.
    fn seal(&self, first: u64, file: Option<&File>) -> io::Result<()> {
        let path = segment_path(&self.dir, first);
        match file {
            Some(file) => file.sync_data(),
            None => File::open(&path).and_then(|f| f.sync_data()),
        }
        .map_err(|e| with_path(e, "fsync", &path))?;
        fsync_dir(&self.dir)?;
        self.flush.forget(first);
        Ok(())
    }

    fn truncate_after(&mut self, after: Option<LogId>) -> io::Result<()> {
        let Some(cut) = first_removed(after.map(|a| a.index)) else {
            return Ok(());
        };
        // Before anything is cut: `committed` must not be persisted past what remains.
        self.flush.truncating(after);
        // Newest first, each deletion durable before the next: a crash leaves a shorter log.
        let doomed: Vec<u64> = self.segments.range(cut..).map(|(&f, _)| f).rev().collect();
        for first in doomed {
            self.delete_segment(first)?;
            fsync_dir(&self.dir)?;
        }
        if let Some((&first, segment)) = self.segments.range_mut(..cut).next_back() {
            let keep = usize::try_from(cut - first).unwrap_or(usize::MAX);
            if let Some(&offset) = segment.offsets.get(keep) {
                OpenOptions::new()
                    .write(true)
                    .open(&segment.path)
                    .and_then(|f| {
                        f.set_len(offset)?;
                        f.sync_all()
                    })
                    .map_err(|e| with_path(e, "truncate", &segment.path))?;
                segment.offsets.truncate(keep);
                segment.size = offset;
            }
        }
        Ok(())
    }

    fn purge(&mut self, purged: LogId, meta: &[u8]) -> io::Result<()> {
        write_meta(&self.dir, PURGED_FILE, meta, true)?;
        self.flush.purged(purged);
        let upto = purged.index;
        // Segments whose last index is <= upto; the oldest go first.
        let doomed: Vec<u64> = self
            .segments
            .iter()
            .take_while(|(&first, s)| {
                first.saturating_add(s.offsets.len() as u64) <= upto.saturating_add(1)
            })
            .map(|(&first, _)| first)
            .collect();
        for &first in &doomed {
            self.delete_segment(first)?;
        }
        if !doomed.is_empty() {
            fsync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn delete_segment(&mut self, first: u64) -> io::Result<()> {
        if self.active.as_ref().is_some_and(|a| a.first == first) {
            self.active = None;
        }
        self.flush.forget(first);
        if let Some(segment) = self.segments.remove(&first) {
            match fs::remove_file(&segment.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(with_path(e, "delete", &segment.path)),
            }
        }
        Ok(())
    }
}

/// Writes what is buffered for the active segment.
fn write_buffer(
    active: &Active,
    buf: &mut Vec<u8>,
    touched: &mut Vec<(u64, Arc<File>)>,
) -> io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    (&*active.file)
        .write_all(buf)
        .map_err(|e| with_path(e, "write", &active.path))?;
    buf.clear();
    if !touched.iter().any(|(f, _)| *f == active.first) {
        touched.push((active.first, active.file.clone()));
    }
    Ok(())
}

/// The first index `truncate_after(after)` removes; `None` if it removes nothing.
fn first_removed(after: Option<u64>) -> Option<u64> {
    match after {
        None => Some(0),
        Some(index) => index.checked_add(1),
    }
}

/// True for ranges `BTreeMap::range` would panic on (start > end, or an excluded point).
fn range_is_empty(range: &impl RangeBounds<u64>) -> bool {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => match s.checked_add(1) {
            Some(s) => s,
            None => return true,
        },
        Bound::Unbounded => 0,
    };
    match range.end_bound() {
        Bound::Included(&e) => start > e,
        Bound::Excluded(&e) => start >= e,
        Bound::Unbounded => false,
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{first:020}{SEGMENT_SUFFIX}"))
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn encode<T: Serialize>(value: &T, what: &str) -> io::Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot encode {what}: {e}"),
        )
    })
}

/// `[u32 len][u32 crc32][bincode(entry)]`.
fn encode_record(entry: &Entry) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; RECORD_HEADER_LEN];
    bincode::serde::encode_into_std_write(entry, &mut bytes, bincode::config::standard()).map_err(
        |e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot encode entry {}: {e}", entry.log_id),
            )
        },
    )?;
    let payload = &bytes[RECORD_HEADER_LEN..];
    let len = u32::try_from(payload.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "entry {} is too large: {} bytes",
                entry.log_id,
                payload.len()
            ),
        )
    })?;
    let crc = crc32fast::hash(payload);
    bytes[..4].copy_from_slice(&len.to_le_bytes());
    bytes[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(bytes)
}

/// Decodes a record or meta file payload; a corrupt length prefix cannot make it allocate more
/// than the payload justifies (see [`decode_bounded`]).
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match decode_bounded(bytes) {
        Ok((value, used)) if used == bytes.len() => Ok(value),
        Ok((_, used)) => Err(format!("{} trailing bytes", bytes.len() - used)),
        Err(e) => Err(e.to_string()),
    }
}

/// Replaces `dir/name` with `[crc32][payload]` by writing `name.tmp` and renaming it. With
/// `sync` the replacement is atomic and durable (the temporary file is fsynced before the
/// rename, the directory after); without, nothing is fsynced and a crash may leave the old
/// file, the new one, or a missing, empty or torn one.
fn write_meta(dir: &Path, name: &str, payload: &[u8], sync: bool) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut contents = Vec::with_capacity(4 + payload.len());
    contents.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    contents.extend_from_slice(payload);
    File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(&contents)?;
            match sync {
                true => f.sync_all(),
                false => Ok(()),
            }
        })
        .map_err(|e| with_path(e, "write", &tmp))?;
    fs::rename(&tmp, &path).map_err(|e| with_path(e, "rename", &tmp))?;
    match sync {
        true => fsync_dir(dir),
        false => Ok(()),
    }
}

/// Reads `committed`. It is only a hint (see the module documentation) and, under `Always`, is
/// written without fsync, so a missing, empty, torn or checksum-failing file reads as `None`
/// (with a warning for a damaged one) instead of failing `open`; `vote` and `purged` are not
/// so lenient. `Some(value)` if the file was missing or read cleanly, `None` if it was damaged.
fn read_committed_meta(dir: &Path) -> Result<Option<Option<LogId>>, LogStoreError> {
    match read_meta::<Option<LogId>>(dir, COMMITTED_FILE) {
        Ok(committed) => Ok(Some(committed.flatten())),
        Err(LogStoreError::CorruptMeta { path, reason }) => {
            tracing::warn!(
                file = %path.display(),
                reason = %reason,
                "raft log: ignoring a damaged committed log id (written without fsync); \
                 openraft re-applies from the state machine's own position"
            );
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn read_meta<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<T>, LogStoreError> {
    let path = dir.join(name);
    let contents = match fs::read(&path) {
        Ok(contents) => contents,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("read", &path)(e)),
    };
    let corrupt = |reason: String| LogStoreError::CorruptMeta {
        path: path.clone(),
        reason,
    };
    if contents.len() < 4 {
        return Err(corrupt(format!(
            "{} bytes, too short for a checksum",
            contents.len()
        )));
    }
    let (crc, payload) = contents.split_at(4);
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(payload) != crc {
        return Err(corrupt("checksum mismatch".into()));
    }
    decode(payload)
        .map(Some)
        .map_err(|e| corrupt(format!("cannot decode: {e}")))
}

type Recovered = (BTreeMap<u64, Entry>, BTreeMap<u64, Segment>);

/// Reads every segment, repairing a torn tail of the last one; see the module documentation.
fn recover_segments(dir: &Path, purged: Option<u64>) -> Result<Recovered, LogStoreError> {
    let mut found = Vec::new();
    for dirent in fs::read_dir(dir).map_err(io_error("list", dir))? {
        let dirent = dirent.map_err(io_error("list", dir))?;
        if let Some(first) = dirent.file_name().to_str().and_then(parse_segment_name) {
            found.push((first, dirent.path()));
        }
    }
    found.sort_unstable_by_key(|(first, _)| *first);

    let mut entries = BTreeMap::new();
    let mut segments = BTreeMap::new();
    let mut last_live: Option<u64> = None;
    let count = found.len();
    for (i, (first, path)) in found.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let data = fs::read(&path).map_err(io_error("read", &path))?;
        let scan = scan_segment(&path, &data, first, is_last)?;
        if let Some((offset, reason)) = &scan.torn {
            tracing::warn!(
                file = %path.display(),
                offset,
                reason = %reason,
                "raft log: cutting off a torn record at the end of the log (an append \
                 interrupted by a crash)"
            );
        }
        if scan.records.is_empty() {
            if !is_last {
                return Err(LogStoreError::Corrupt {
                    path,
                    offset: 0,
                    reason: "a segment that is not the last holds no record".into(),
                });
            }
            if scan.torn.is_none() {
                tracing::warn!(file = %path.display(), "raft log: removing an empty segment");
            }
            fs::remove_file(&path).map_err(io_error("remove", &path))?;
            fsync_dir(dir).map_err(io_error("fsync", dir))?;
            continue;
        }
        if scan.torn.is_some() {
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| {
                    f.set_len(scan.valid_len)?;
                    f.sync_all()
                })
                .map_err(io_error("truncate", &path))?;
        }
        let mut offsets = Vec::with_capacity(scan.records.len());
        for (offset, entry) in scan.records {
            offsets.push(offset);
            let index = entry.log_id.index;
            if purged.is_some_and(|p| index <= p) {
                continue;
            }
            let expected = match (last_live, purged) {
                (Some(prev), _) => prev.checked_add(1),
                (None, Some(p)) => p.checked_add(1),
                (None, None) => Some(index),
            };
            if expected != Some(index) {
                return Err(LogStoreError::Corrupt {
                    path,
                    offset,
                    reason: format!(
                        "entry {index} where {} was expected (the log has a hole or overlap)",
                        expected.map_or("nothing".to_owned(), |e| e.to_string())
                    ),
                });
            }
            last_live = Some(index);
            entries.insert(index, entry);
        }
        segments.insert(
            first,
            Segment {
                path,
                size: scan.valid_len,
                offsets,
            },
        );
    }
    // Finish a purge that a crash interrupted after persisting `purged`: its segments hold
    // nothing live, and the next append must not be appended after their records.
    if let Some(purged) = purged {
        let done: Vec<u64> = segments
            .iter()
            .take_while(|(&first, s)| {
                first.saturating_add(s.offsets.len() as u64) <= purged.saturating_add(1)
            })
            .map(|(&first, _)| first)
            .collect();
        for first in &done {
            if let Some(segment) = segments.remove(first) {
                tracing::info!(
                    file = %segment.path.display(),
                    "raft log: deleting a purged segment (finishing an interrupted purge)"
                );
                fs::remove_file(&segment.path).map_err(io_error("remove", &segment.path))?;
            }
        }
        if !done.is_empty() {
            fsync_dir(dir).map_err(io_error("fsync", dir))?;
        }
    }
    Ok((entries, segments))
}

/// What [`scan_segment`] found in one segment file.
#[derive(Debug)]
pub struct Scan {
    /// Byte offset and entry of every good record.
    pub records: Vec<(u64, Entry)>,
    /// Bytes of good records; the file is cut to this if `torn`.
    pub valid_len: u64,
    /// Offset and description of a torn final record.
    pub torn: Option<(u64, String)>,
}

/// Parses the bytes of the segment `path` (named for its first index `first`; `is_last` if no
/// segment follows it) into records, telling a torn tail from corruption (see the module
/// documentation). Pure (`path` only names the file in errors), so the log-segment fuzz target
/// can feed it arbitrary bytes: a corrupt segment must give an error, never a panic or an
/// allocation the bytes do not justify.
pub fn scan_segment(
    path: &Path,
    data: &[u8],
    first: u64,
    is_last: bool,
) -> Result<Scan, LogStoreError> {
    let mut records = Vec::new();
    let mut pos = 0usize;
    // `Some((reason, could be torn))` for the first bad record.
    let bad = loop {
        let rest = &data[pos..];
        if rest.is_empty() {
            break None;
        }
        if rest.len() < RECORD_HEADER_LEN {
            let reason = format!("incomplete record header ({} of 8 bytes)", rest.len());
            break Some((reason, true));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let Some(payload) = rest.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + len) else {
            let reason = format!(
                "record of {len} bytes runs past the end of the file ({} bytes left)",
                rest.len() - RECORD_HEADER_LEN
            );
            break Some((reason, true));
        };
        let after = rest.len() - RECORD_HEADER_LEN - len;
        if len == 0 || crc32fast::hash(payload) != crc {
            let what = if len == 0 {
                "empty record"
            } else {
                "checksum mismatch"
            };
            break Some(if after == 0 {
                (format!("{what} in the final record"), true)
            } else if rest.iter().all(|&b| b == 0) {
                (
                    format!("{what}; the remaining {} bytes are all zero", rest.len()),
                    true,
                )
            } else {
                (
                    format!("{what} with {after} more bytes after the record"),
                    false,
                )
            });
        }
        let entry: Entry = match decode(payload) {
            Ok(entry) => entry,
            Err(e) => break Some((format!("record does not decode as an entry: {e}"), false)),
        };
        let expected = first.saturating_add(records.len() as u64);
        if entry.log_id.index != expected {
            let reason = format!(
                "entry {} where the segment's next index is {expected}",
                entry.log_id
            );
            break Some((reason, false));
        }
        records.push((pos as u64, entry));
        pos += RECORD_HEADER_LEN + len;
    };
    match bad {
        None => Ok(Scan {
            records,
            valid_len: pos as u64,
            torn: None,
        }),
        Some((reason, true)) if is_last => Ok(Scan {
            records,
            valid_len: pos as u64,
            torn: Some((pos as u64, reason)),
        }),
        Some((reason, _)) => Err(LogStoreError::Corrupt {
            path: path.to_path_buf(),
            offset: pos as u64,
            reason,
        }),
    }
}

/// fsyncs a directory, making file creations, renames and deletions in it durable.
fn fsync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| with_path(e, "fsync", dir))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn with_path(e: io::Error, op: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("cannot {op} {}: {e}", path.display()))
}

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LogStoreError {
    let path = path.to_path_buf();
    move |source| LogStoreError::Io { op, path, source }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;
    use openraft::entry::RaftEntry;
    use openraft::impls::leader_id_adv::LeaderId;
    use openraft::type_config::TypeConfigExt;
    use tempfile::TempDir;

    use super::*;
    use crate::store::{Condition, Expiry, Proposal, WriteOp};

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(LeaderId { term, node_id: 1 }, index)
    }

    fn entry(term: u64, index: u64) -> Entry {
        Entry::new_normal(
            log_id(term, index),
            Proposal {
                now_ms: 1_700_000_000_000 + index,
                op: WriteOp::Set {
                    key: Bytes::from(format!("key:{index:06}")),
                    value: Bytes::from(vec![b'v'; 40]),
                    condition: Condition::Always,
                    expiry: Expiry::Clear,
                    get: false,
                },
            },
        )
    }

    fn entries(term: u64, indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
        indexes.map(|i| entry(term, i)).collect()
    }

    /// Segments of exactly three records (test records have the same size: terms and indexes
    /// below 251 are one byte in bincode's varints).
    fn tiny(fsync: FsyncPolicy) -> LogStoreOptions {
        let record = encode_record(&entry(1, 1)).expect("encode").len() as u64;
        assert_eq!(
            record,
            encode_record(&entry(9, 250)).expect("encode").len() as u64
        );
        LogStoreOptions {
            fsync,
            segment_size: 3 * record,
        }
    }

    fn open(dir: &TempDir, options: LogStoreOptions) -> LogStore {
        match LogStore::open_with_options(dir.path(), options) {
            Ok(store) => store,
            Err(e) => panic!("open failed: {e}"),
        }
    }

    /// Appends and waits for the flush callback.
    async fn append(store: &mut LogStore, batch: Vec<Entry>) -> io::Result<()> {
        let (tx, rx) = TypeConfig::oneshot();
        store.append(batch, IOFlushed::signal(tx)).await?;
        rx.await.map_err(io::Error::other)?
    }

    async fn read_all(store: &mut LogStore) -> Vec<Entry> {
        store
            .get_log_reader()
            .await
            .try_get_log_entries(..)
            .await
            .expect("read")
    }

    async fn indexes(store: &mut LogStore) -> Vec<u64> {
        read_all(store)
            .await
            .iter()
            .map(|e| e.log_id.index)
            .collect()
    }

    fn segment_files(dir: &TempDir) -> Vec<(u64, PathBuf)> {
        let mut found: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|d| {
                let d = d.expect("dirent");
                let first = d.file_name().to_str().and_then(parse_segment_name)?;
                Some((first, d.path()))
            })
            .collect();
        found.sort();
        found
    }

    /// Byte offset of every record in a segment file.
    fn record_offsets(path: &Path) -> Vec<u64> {
        let data = fs::read(path).expect("read segment");
        let mut offsets = Vec::new();
        let mut pos = 0;
        while pos + RECORD_HEADER_LEN <= data.len() {
            offsets.push(pos as u64);
            let len = u32::from_le_bytes(data[pos..pos + 4].try_into().expect("4 bytes"));
            pos += RECORD_HEADER_LEN + len as usize;
        }
        offsets
    }

    fn open_err(dir: &TempDir, options: LogStoreOptions) -> LogStoreError {
        match LogStore::open_with_options(dir.path(), options) {
            Ok(_) => panic!("open should have failed"),
            Err(e) => e,
        }
    }

    #[test]
    fn fsync_policy_parses_appendfsync_names() {
        assert_eq!("always".parse(), Ok(FsyncPolicy::Always));
        assert_eq!("everysec".parse(), Ok(FsyncPolicy::EverySec));
        assert_eq!("EverySec".parse(), Ok(FsyncPolicy::EverySec));
        assert_eq!("no".parse(), Ok(FsyncPolicy::No));
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
        assert!("".parse::<FsyncPolicy>().is_err());
        for p in [FsyncPolicy::Always, FsyncPolicy::EverySec, FsyncPolicy::No] {
            assert_eq!(p.to_string().parse(), Ok(p));
        }
        assert_eq!(FsyncPolicy::default(), FsyncPolicy::EverySec);
    }

    #[tokio::test]
    async fn append_then_read_back() {
        let dir = TempDir::new().expect("tempdir");
        let mut store = open(&dir, LogStoreOptions::default());
        let mut early_reader = store.get_log_reader().await;

        let state = store.get_log_state().await.expect("state");
        assert_eq!((state.last_purged_log_id, state.last_log_id), (None, None));

        append(&mut store, entries(1, 1..=3)).await.expect("append");
        append(&mut store, entries(2, 4..=5)).await.expect("append");

        let got = early_reader.try_get_log_entries(2..5).await.expect("read");
        assert_eq!(got, vec![entry(1, 2), entry(1, 3), entry(2, 4)]);
        assert_eq!(
            early_reader
                .try_get_log_entries(..)
                .await
                .expect("read")
                .len(),
            5
        );
        assert!(early_reader
            .try_get_log_entries(4..4)
            .await
            .expect("empty range")
            .is_empty());
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = early_reader.try_get_log_entries(5..2).await.expect("read");
        assert!(reversed.is_empty());
        assert!(early_reader
            .try_get_log_entries(6..)
            .await
            .expect("past the end")
            .is_empty());

        let state = store.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id, None);
        assert_eq!(state.last_log_id, Some(log_id(2, 5)));
    }

    #[tokio::test]
    async fn append_calls_the_callback() {
        for fsync in [FsyncPolicy::Always, FsyncPolicy::EverySec, FsyncPolicy::No] {
            let dir = TempDir::new().expect("tempdir");
            let mut store = open(&dir, tiny(fsync));
            // Several appends in flight at once (they may share one write and fsync).
            let mut pending = Vec::new();
            for i in 1..=10 {
                let (tx, rx) = TypeConfig::oneshot();
                store
                    .append([entry(1, i)], IOFlushed::signal(tx))
                    .await
                    .expect("append");
                // Readable as soon as `append` returns, whether flushed yet or not.
                let got = store
                    .reader()
                    .try_get_log_entries(i..=i)
                    .await
                    .expect("read");
                assert_eq!(got, vec![entry(1, i)]);
                pending.push(rx);
            }
            for rx in pending {
                let flushed = tokio::time::timeout(Duration::from_secs(10), rx)
                    .await
                    .expect("callback called in time")
                    .expect("callback not dropped");
                assert!(flushed.is_ok(), "{fsync}: {flushed:?}");
            }
            // An empty append still reports completion.
            let (tx, rx) = TypeConfig::oneshot();
            store
                .append(Vec::new(), IOFlushed::signal(tx))
                .await
                .expect("empty append");
            assert!(rx.await.expect("callback").is_ok());
        }
    }

    #[tokio::test]
    async fn rejects_appends_that_leave_a_hole_or_overwrite() {
        let dir = TempDir::new().expect("tempdir");
        let mut store = open(&dir, LogStoreOptions::default());
        // An empty log that never purged may start anywhere (a follower's first entries).
        append(&mut store, entries(1, 5..=6)).await.expect("append");
        let hole = append(&mut store, vec![entry(1, 8)]).await.unwrap_err();
        assert_eq!(hole.kind(), io::ErrorKind::InvalidInput);
        let overwrite = append(&mut store, vec![entry(2, 6)]).await.unwrap_err();
        assert_eq!(overwrite.kind(), io::ErrorKind::InvalidInput);
        let gap_inside = append(&mut store, vec![entry(1, 7), entry(1, 9)])
            .await
            .unwrap_err();
        assert_eq!(gap_inside.kind(), io::ErrorKind::InvalidInput);
        // Nothing of the rejected appends stuck, and the store still works.
        assert_eq!(indexes(&mut store).await, vec![5, 6]);
        append(&mut store, entries(1, 7..=8)).await.expect("append");
        drop(store);
        let mut store = open(&dir, LogStoreOptions::default());
        assert_eq!(indexes(&mut store).await, vec![5, 6, 7, 8]);
    }

    /// The in-memory log's byte count follows appends, truncations and purges, and is
    /// rebuilt on reopen: `INFO memory` reports it and it must not drift.
    #[tokio::test]
    async fn memory_follows_appends_truncations_and_purges() {
        let dir = TempDir::new().expect("tempdir");
        let per_entry = Stored {
            log_id: log_id(1, 1),
            record: Bytes::from(encode_record(&entry(1, 1)).expect("encode")),
        }
        .mem_usage();
        assert!(per_entry > RECORD_HEADER_LEN);
        {
            let mut store = open(&dir, tiny(FsyncPolicy::Always));
            assert_eq!(store.memory(), 0);
            append(&mut store, entries(1, 1..=10))
                .await
                .expect("append");
            assert_eq!(store.memory(), 10 * per_entry);
            store
                .truncate_after(Some(log_id(1, 8)))
                .await
                .expect("truncate");
            assert_eq!(store.memory(), 8 * per_entry);
            store.purge(log_id(1, 3)).await.expect("purge");
            assert_eq!(store.memory(), 5 * per_entry);
            assert_eq!(store.reader().memory(), 5 * per_entry);
        }
        let store = open(&dir, tiny(FsyncPolicy::Always));
        assert_eq!(store.memory(), 5 * per_entry);
    }

    #[tokio::test]
    async fn reopen_keeps_entries_vote_committed_and_purged() {
        let dir = TempDir::new().expect("tempdir");
        let vote = Vote::new_committed(3, 2);
        {
            let mut store = open(&dir, tiny(FsyncPolicy::Always));
            append(&mut store, entries(1, 1..=4)).await.expect("append");
            append(&mut store, entries(3, 5..=10))
                .await
                .expect("append");
            store.save_vote(&Vote::new(2, 1)).await.expect("vote");
            store.save_vote(&vote).await.expect("vote");
            store
                .save_committed(Some(log_id(3, 7)))
                .await
                .expect("committed");
            store.purge(log_id(1, 2)).await.expect("purge");
        }
        let mut store = open(&dir, tiny(FsyncPolicy::Always));
        assert_eq!(indexes(&mut store).await, (3..=10).collect::<Vec<_>>());
        assert_eq!(read_all(&mut store).await[0], entry(1, 3));
        assert_eq!(read_all(&mut store).await[7], entry(3, 10));
        assert_eq!(
            store
                .get_log_reader()
                .await
                .read_vote()
                .await
                .expect("vote"),
            Some(vote)
        );
        assert_eq!(
            store.read_committed().await.expect("committed"),
            Some(log_id(3, 7))
        );
        let state = store.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 2)));
        assert_eq!(state.last_log_id, Some(log_id(3, 10)));
        // Appending continues where the log ended.
        append(&mut store, vec![entry(3, 11)])
            .await
            .expect("append");
        store.save_committed(None).await.expect("committed");
        drop(store);
        let mut store = open(&dir, tiny(FsyncPolicy::Always));
        assert_eq!(indexes(&mut store).await, (3..=11).collect::<Vec<_>>());
        assert_eq!(store.read_committed().await.expect("committed"), None);
    }

    /// Copies every file of `from` into a new directory: what a crash would find on disk if
    /// the page cache made it there, taken while the store is still open (so dropping it, with
    /// its final flush, cannot be what wrote the files).
    fn copy_dir(from: &TempDir) -> TempDir {
        let to = TempDir::new().expect("tempdir");
        for dirent in fs::read_dir(from.path()).expect("list") {
            let dirent = dirent.expect("dirent");
            fs::copy(dirent.path(), to.path().join(dirent.file_name())).expect("copy");
        }
        to
    }

    /// The committed log id the file holds: `None` if absent (a damaged file fails the test).
    fn committed_on_disk(dir: &Path) -> Option<LogId> {
        match read_meta::<Option<LogId>>(dir, COMMITTED_FILE) {
            Ok(committed) => committed.flatten(),
            Err(e) => panic!("committed file: {e}"),
        }
    }

    #[tokio::test]
    async fn always_committed_survives_reopen_and_damage_reads_as_none() {
        let dir = TempDir::new().expect("tempdir");
        let options = tiny(FsyncPolicy::Always);
        {
            let mut store = open(&dir, options.clone());
            append(&mut store, entries(1, 1..=5)).await.expect("append");
            store
                .save_committed(Some(log_id(1, 4)))
                .await
                .expect("committed");
            // Written by the time it returns (without fsync), and no temporary file is left.
            assert_eq!(committed_on_disk(dir.path()), Some(log_id(1, 4)));
            assert!(!dir.path().join("committed.tmp").exists());
        }
        let mut store = open(&dir, options.clone());
        assert_eq!(
            store.read_committed().await.expect("committed"),
            Some(log_id(1, 4))
        );
        drop(store);

        // What a crash may leave of a file written without fsync: it reads as `None`, and the
        // rest of the log is intact.
        let path = dir.path().join(COMMITTED_FILE);
        let good = fs::read(&path).expect("read");
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x01;
        // A valid checksum over bytes that are no `Option<LogId>` (7 is no `Option` tag).
        let mut garbage = vec![0xde, 0xad, 0xbe, 0xef, 0x07, 0xff];
        let crc = crc32fast::hash(&garbage[4..]);
        garbage[..4].copy_from_slice(&crc.to_le_bytes());
        let damaged: [(&str, Vec<u8>); 5] = [
            ("empty", Vec::new()),
            ("torn checksum", good[..2].to_vec()),
            ("torn payload", good[..good.len() - 1].to_vec()),
            ("checksum mismatch", flipped),
            ("undecodable", garbage),
        ];
        for (what, bytes) in damaged {
            fs::write(&path, &bytes).expect("damage");
            let mut store = match LogStore::open_with_options(dir.path(), options.clone()) {
                Ok(store) => store,
                Err(e) => panic!("{what}: open failed: {e}"),
            };
            assert_eq!(
                store.read_committed().await.expect("committed"),
                None,
                "{what}"
            );
            assert_eq!(indexes(&mut store).await, vec![1, 2, 3, 4, 5], "{what}");
        }

        // The next save replaces the damaged file.
        let mut store = open(&dir, options.clone());
        store
            .save_committed(Some(log_id(1, 5)))
            .await
            .expect("committed");
        drop(store);
        let mut store = open(&dir, options.clone());
        assert_eq!(
            store.read_committed().await.expect("committed"),
            Some(log_id(1, 5))
        );
        drop(store);

        // Only `committed` is lenient: a damaged `purged` still fails open (as does `vote`, see
        // `corrupt_vote_fails_open`).
        let purged = encode(&log_id(1, 2), "purged").expect("encode");
        write_meta(dir.path(), PURGED_FILE, &purged, true).expect("write purged");
        let purged_path = dir.path().join(PURGED_FILE);
        let mut data = fs::read(&purged_path).expect("read");
        data[4] ^= 0x10;
        fs::write(&purged_path, data).expect("write");
        let err = open_err(&dir, options);
        assert!(matches!(err, LogStoreError::CorruptMeta { .. }), "{err:?}");
    }

    /// `EverySec`: `save_committed` writes nothing; the flusher persists the id once the entries
    /// it covers are fsynced.
    ///
    /// The "before any flush" check inspects the `committed` file directly, right after
    /// `save_committed`, and compares it with the store's durable watermark read afterwards (the
    /// watermark only grows here): in this single-threaded runtime the flusher task cannot run
    /// between the last `append` and that check, so the file is normally absent; should a slow
    /// machine have let a flush in during the appends, the check still holds. The "after" check
    /// polls the file (with a deadline) while the store is open, then opens a copy of the
    /// directory, so the store's final flush on drop cannot be what persisted it.
    #[tokio::test]
    async fn everysec_persists_committed_only_after_the_log_is_flushed() {
        let dir = TempDir::new().expect("tempdir");
        let options = tiny(FsyncPolicy::EverySec);
        let mut store = open(&dir, options.clone());
        append(&mut store, entries(1, 1..=7)).await.expect("append");
        store
            .save_committed(Some(log_id(1, 7)))
            .await
            .expect("committed");
        assert_eq!(
            store.read_committed().await.expect("committed"),
            Some(log_id(1, 7)),
            "readable at once"
        );
        let on_disk = committed_on_disk(dir.path());
        let durable = store.flush.dirty.lock().durable;
        if let Some(on_disk) = on_disk {
            assert!(
                durable.is_some_and(|d| on_disk.index <= d.index),
                "committed {on_disk} persisted past the durable log ({durable:?})"
            );
        }

        let deadline = Instant::now() + Duration::from_secs(10);
        while committed_on_disk(dir.path()) != Some(log_id(1, 7)) {
            assert!(Instant::now() < deadline, "the flusher never persisted it");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!store.has_unsynced_appends());
        assert_eq!(store.flush.dirty.lock().durable, Some(log_id(1, 7)));
        let copy = copy_dir(&dir);
        let mut reopened = open(&copy, options.clone());
        assert_eq!(
            reopened.read_committed().await.expect("committed"),
            Some(log_id(1, 7))
        );
        assert_eq!(indexes(&mut reopened).await, (1..=7).collect::<Vec<_>>());
        drop(reopened);

        // Dropping the store persists a newer committed id with its final flush.
        append(&mut store, entries(1, 8..=9)).await.expect("append");
        store
            .save_committed(Some(log_id(1, 9)))
            .await
            .expect("committed");
        drop(store);
        let mut store = open(&dir, options);
        assert_eq!(
            store.read_committed().await.expect("committed"),
            Some(log_id(1, 9))
        );
    }

    /// The flusher's bookkeeping, driven by hand (no writer, no background task): `committed`
    /// is capped at what the flushes made durable, truncation lowers the cap before anything is
    /// cut and a purge raises it.
    #[test]
    fn committed_is_capped_at_the_durable_log() {
        assert_eq!(capped_committed(None, None), Some(None));
        assert_eq!(capped_committed(Some(log_id(1, 3)), None), None);
        assert_eq!(
            capped_committed(Some(log_id(1, 3)), Some(log_id(1, 5))),
            Some(Some(log_id(1, 3)))
        );
        assert_eq!(
            capped_committed(Some(log_id(2, 9)), Some(log_id(1, 5))),
            Some(Some(log_id(1, 5)))
        );

        let dir = TempDir::new().expect("tempdir");
        let memory = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Shared {
            state: RwLock::new(MemState {
                entries: BTreeMap::new(),
                memory: memory.clone(),
                last_purged: None,
                vote: None,
                committed: None,
            }),
            memory,
            failure: Mutex::new(None),
        });
        let flush = FlushState {
            dir: dir.path().to_path_buf(),
            shared: shared.clone(),
            dirty: Mutex::new(Dirty {
                persisted: Some(None),
                ..Dirty::default()
            }),
            flushing: Mutex::new(()),
        };
        let file = Arc::new(File::create(dir.path().join("segment")).expect("create"));
        let commit = |id: LogId| shared.state.write().committed = Some(id);

        // Entries 1..=5 written; 9 committed (say, a follower told so by its leader).
        flush.mark(&[(1, file.clone())], true, Some(log_id(1, 5)));
        commit(log_id(1, 9));
        assert!(flush.needs_flush());
        flush.flush().expect("flush");
        assert_eq!(committed_on_disk(dir.path()), Some(log_id(1, 5)));
        assert!(!flush.needs_flush(), "nothing changed since");

        // Written up to 12 but not flushed yet: still 5 on disk.
        flush.mark(&[(1, file.clone())], false, Some(log_id(1, 12)));
        assert_eq!(committed_on_disk(dir.path()), Some(log_id(1, 5)));
        flush.flush().expect("flush");
        assert_eq!(committed_on_disk(dir.path()), Some(log_id(1, 9)));

        // Truncation after 10: the watermark drops to 10 at once; new entries of term 2 count
        // only once flushed.
        flush.truncating(Some(log_id(1, 10)));
        assert_eq!(flush.dirty.lock().durable, Some(log_id(1, 10)));
        flush.mark(&[(1, file.clone())], false, Some(log_id(2, 13)));
        commit(log_id(2, 13));
        assert_eq!(flush.committed_to_write(), Some(Some(log_id(1, 10))));
        flush.flush().expect("flush");
        assert_eq!(committed_on_disk(dir.path()), Some(log_id(2, 13)));
        flush.truncating(None);
        assert_eq!(flush.dirty.lock().durable, None);

        // A purge is durable: the log counts as durable up to the purged id.
        flush.purged(log_id(2, 20));
        commit(log_id(2, 20));
        flush.flush().expect("flush");
        assert_eq!(committed_on_disk(dir.path()), Some(log_id(2, 20)));

        // After the final flush nothing more is written.
        flush.close().expect("close");
        commit(log_id(2, 21));
        flush.mark(&[(1, file)], false, Some(log_id(2, 21)));
        assert!(!flush.needs_flush());
        flush.flush().expect("flush");
        assert_eq!(committed_on_disk(dir.path()), Some(log_id(2, 20)));

        // Nor after a failure.
        let flush = FlushState {
            dir: dir.path().to_path_buf(),
            shared: shared.clone(),
            dirty: Mutex::new(Dirty {
                durable: Some(log_id(2, 21)),
                ..Dirty::default()
            }),
            flushing: Mutex::new(()),
        };
        shared.fail("test".into());
        assert!(!flush.needs_flush());
        flush.flush().expect("flush");
        assert_eq!(committed_on_disk(dir.path()), Some(log_id(2, 20)));
    }

    #[tokio::test]
    async fn no_policy_never_persists_committed() {
        let dir = TempDir::new().expect("tempdir");
        let options = tiny(FsyncPolicy::No);
        let mut store = open(&dir, options.clone());
        append(&mut store, entries(1, 1..=5)).await.expect("append");
        store
            .save_committed(Some(log_id(1, 5)))
            .await
            .expect("committed");
        assert_eq!(
            store.read_committed().await.expect("committed"),
            Some(log_id(1, 5))
        );
        drop(store);
        assert!(!dir.path().join(COMMITTED_FILE).exists());
        let mut store = open(&dir, options);
        assert_eq!(store.read_committed().await.expect("committed"), None);
        assert_eq!(indexes(&mut store).await, vec![1, 2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn truncate_after_then_reopen() {
        let dir = TempDir::new().expect("tempdir");
        let options = tiny(FsyncPolicy::Always);
        {
            let mut store = open(&dir, options.clone());
            append(&mut store, entries(1, 1..=10))
                .await
                .expect("append");
            assert!(segment_files(&dir).len() >= 3);
            // Index 5 sits in the middle of a segment: cut there, later segments go.
            store
                .truncate_after(Some(log_id(1, 5)))
                .await
                .expect("truncate");
            assert_eq!(indexes(&mut store).await, vec![1, 2, 3, 4, 5]);
            let state = store.get_log_state().await.expect("state");
            assert_eq!(state.last_log_id, Some(log_id(1, 5)));
            // Past the end: nothing happens.
            store
                .truncate_after(Some(log_id(1, 50)))
                .await
                .expect("truncate");
            // A new leader's entries replace the removed ones.
            append(&mut store, entries(2, 6..=8)).await.expect("append");
        }
        let files = segment_files(&dir);
        let last_file = &files.last().expect("a segment").1;
        let expected_len = fs::read(last_file).expect("read").len() as u64;
        assert_eq!(
            expected_len,
            fs::metadata(last_file).expect("stat").len(),
            "no stray bytes past the last record"
        );
        {
            let mut store = open(&dir, options.clone());
            let got = read_all(&mut store).await;
            let mut want = entries(1, 1..=5);
            want.extend(entries(2, 6..=8));
            assert_eq!(got, want);
            store.truncate_after(None).await.expect("truncate all");
            assert!(indexes(&mut store).await.is_empty());
            let state = store.get_log_state().await.expect("state");
            assert_eq!((state.last_purged_log_id, state.last_log_id), (None, None));
        }
        assert!(segment_files(&dir).is_empty());
        let mut store = open(&dir, options);
        assert!(indexes(&mut store).await.is_empty());
        append(&mut store, entries(4, 1..=2)).await.expect("append");
        drop(store);
        let mut store = open(&dir, tiny(FsyncPolicy::Always));
        assert_eq!(read_all(&mut store).await, entries(4, 1..=2));
    }

    #[tokio::test]
    async fn purge_deletes_whole_segments_and_survives_reopen() {
        let dir = TempDir::new().expect("tempdir");
        let options = tiny(FsyncPolicy::Always);
        let mut store = open(&dir, options.clone());
        append(&mut store, entries(1, 1..=12))
            .await
            .expect("append");
        let before = segment_files(&dir);
        assert_eq!(
            before.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
            vec![1, 4, 7, 10]
        );

        // 1..=5 purged: segment 1 (1..=3) goes, segment 4 (4..=6) still holds 6 and stays.
        store.purge(log_id(1, 5)).await.expect("purge");
        let after: Vec<u64> = segment_files(&dir).iter().map(|(f, _)| *f).collect();
        assert_eq!(after, vec![4, 7, 10]);
        assert_eq!(indexes(&mut store).await, (6..=12).collect::<Vec<_>>());
        // Purging less than already purged changes nothing.
        store.purge(log_id(1, 3)).await.expect("purge");
        drop(store);

        let mut store = open(&dir, options.clone());
        assert_eq!(indexes(&mut store).await, (6..=12).collect::<Vec<_>>());
        let state = store.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 5)));
        assert_eq!(state.last_log_id, Some(log_id(1, 12)));

        // Purge past the end: every segment goes, the log continues after the purged id.
        store.purge(log_id(2, 20)).await.expect("purge");
        assert!(segment_files(&dir).is_empty());
        let state = store.get_log_state().await.expect("state");
        assert_eq!(state.last_log_id, Some(log_id(2, 20)));
        assert!(append(&mut store, vec![entry(2, 22)]).await.is_err());
        drop(store);
        let mut store = open(&dir, options.clone());
        assert!(indexes(&mut store).await.is_empty());
        append(&mut store, entries(2, 21..=22))
            .await
            .expect("append");
        drop(store);
        let mut store = open(&dir, options);
        assert_eq!(indexes(&mut store).await, vec![21, 22]);
        assert_eq!(
            store
                .get_log_state()
                .await
                .expect("state")
                .last_purged_log_id,
            Some(log_id(2, 20))
        );
    }

    #[tokio::test]
    async fn reopen_finishes_an_interrupted_purge() {
        let dir = TempDir::new().expect("tempdir");
        let options = tiny(FsyncPolicy::Always);
        {
            let mut store = open(&dir, options.clone());
            append(&mut store, entries(1, 1..=7)).await.expect("append");
        }
        // A crash right after `purge(10)` persisted `purged`, before any segment was deleted.
        let purged = encode(&log_id(1, 10), "purged").expect("encode");
        write_meta(dir.path(), PURGED_FILE, &purged, true).expect("write purged");
        let mut store = open(&dir, options.clone());
        assert!(segment_files(&dir).is_empty());
        assert!(indexes(&mut store).await.is_empty());
        let state = store.get_log_state().await.expect("state");
        assert_eq!(state.last_log_id, Some(log_id(1, 10)));
        append(&mut store, entries(2, 11..=12))
            .await
            .expect("append");
        drop(store);
        let mut store = open(&dir, options);
        assert_eq!(indexes(&mut store).await, vec![11, 12]);
    }

    #[tokio::test]
    async fn torn_tail_is_repaired_on_open() {
        let dir = TempDir::new().expect("tempdir");
        let options = tiny(FsyncPolicy::Always);
        {
            let mut store = open(&dir, options.clone());
            append(&mut store, entries(1, 1..=8)).await.expect("append");
        }
        // The last segment holds 7 and 8; cut 8 in the middle of its payload.
        let (first, path) = segment_files(&dir).pop().expect("a segment");
        assert_eq!(first, 7);
        let offsets = record_offsets(&path);
        let torn_at = offsets[1];
        let file_len = fs::metadata(&path).expect("stat").len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(file_len - 10))
            .expect("tear");

        let mut store = open(&dir, options.clone());
        assert_eq!(indexes(&mut store).await, (1..=7).collect::<Vec<_>>());
        assert_eq!(fs::metadata(&path).expect("stat").len(), torn_at);
        append(&mut store, entries(2, 8..=9)).await.expect("append");
        drop(store);
        let mut store = open(&dir, options.clone());
        let mut want = entries(1, 1..=7);
        want.extend(entries(2, 8..=9));
        assert_eq!(read_all(&mut store).await, want);
        drop(store);

        // A torn header (3 bytes of the next record) and a torn first record (the file goes).
        let (_, path) = segment_files(&dir).pop().expect("a segment");
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&[7, 0, 0]))
            .expect("append garbage");
        let mut store = open(&dir, options.clone());
        assert_eq!(indexes(&mut store).await.last(), Some(&9));
        drop(store);
        let lone = segment_path(dir.path(), 10);
        fs::write(&lone, [200, 0, 0, 0, 1, 2]).expect("write");
        let mut store = open(&dir, options);
        assert_eq!(indexes(&mut store).await.last(), Some(&9));
        assert!(
            !lone.exists(),
            "a segment with no complete record is removed"
        );
    }

    #[tokio::test]
    async fn torn_tail_with_a_bad_checksum_at_the_end_or_zeros_is_repaired() {
        let dir = TempDir::new().expect("tempdir");
        let options = tiny(FsyncPolicy::Always);
        {
            let mut store = open(&dir, options.clone());
            append(&mut store, entries(1, 1..=2)).await.expect("append");
        }
        let (_, path) = segment_files(&dir).pop().expect("a segment");
        let offsets = record_offsets(&path);

        // The final record is complete in length but its bytes never all made it.
        let mut data = fs::read(&path).expect("read");
        let last = data.len() - 1;
        data[last] ^= 0xff;
        fs::write(&path, &data).expect("write");
        let mut store = open(&dir, options.clone());
        assert_eq!(indexes(&mut store).await, vec![1]);
        assert_eq!(fs::metadata(&path).expect("stat").len(), offsets[1]);
        append(&mut store, vec![entry(1, 2)]).await.expect("append");
        drop(store);

        // The filesystem extended the file but the data never came: zeros.
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&[0; 64]))
            .expect("zeros");
        let mut store = open(&dir, options);
        assert_eq!(indexes(&mut store).await, vec![1, 2]);
        assert_eq!(fs::metadata(&path).expect("stat").len(), offsets[1] * 2);
    }

    #[tokio::test]
    async fn flipped_byte_in_the_middle_fails_open() {
        let dir = TempDir::new().expect("tempdir");
        {
            let mut store = open(&dir, LogStoreOptions::default());
            append(&mut store, entries(1, 1..=10))
                .await
                .expect("append");
        }
        let (_, path) = segment_files(&dir).pop().expect("a segment");
        let offsets = record_offsets(&path);
        let mut data = fs::read(&path).expect("read");
        let target = offsets[4] as usize + RECORD_HEADER_LEN + 5;
        data[target] ^= 0x01;
        fs::write(&path, &data).expect("write");

        let err = open_err(&dir, LogStoreOptions::default());
        let message = err.to_string();
        assert!(
            matches!(&err, LogStoreError::Corrupt { offset, .. } if *offset == offsets[4]),
            "{err:?}"
        );
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(
            message.contains(&format!("offset {}", offsets[4])),
            "{message}"
        );
        // Nothing was "repaired" behind the operator's back.
        assert_eq!(fs::read(&path).expect("read"), data);
        let io: io::Error = err.into();
        assert_eq!(io.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn damage_in_a_segment_that_is_not_the_last_fails_open() {
        let dir = TempDir::new().expect("tempdir");
        let options = tiny(FsyncPolicy::Always);
        {
            let mut store = open(&dir, options.clone());
            append(&mut store, entries(1, 1..=9)).await.expect("append");
        }
        // Cutting the middle segment's last record looks like a torn tail, but only the last
        // segment can be torn by a crash.
        let files = segment_files(&dir);
        let (_, middle) = &files[1];
        let len = fs::metadata(middle).expect("stat").len();
        let offsets = record_offsets(middle);
        OpenOptions::new()
            .write(true)
            .open(middle)
            .and_then(|f| f.set_len(len - 3))
            .expect("cut");
        let err = open_err(&dir, options.clone());
        assert!(
            matches!(&err, LogStoreError::Corrupt { path, offset, .. }
                if path == middle && *offset == offsets[2]),
            "{err:?}"
        );

        // A missing middle segment is a hole.
        let dir = TempDir::new().expect("tempdir");
        {
            let mut store = open(&dir, options.clone());
            append(&mut store, entries(1, 1..=9)).await.expect("append");
        }
        fs::remove_file(&segment_files(&dir)[1].1).expect("remove");
        let err = open_err(&dir, options);
        assert!(err.to_string().contains("hole"), "{err}");
    }

    #[tokio::test]
    async fn corrupt_vote_fails_open() {
        let dir = TempDir::new().expect("tempdir");
        {
            let mut store = open(&dir, LogStoreOptions::default());
            store.save_vote(&Vote::new(5, 1)).await.expect("vote");
        }
        let path = dir.path().join(VOTE_FILE);
        let mut data = fs::read(&path).expect("read");
        data[4] ^= 0x10;
        fs::write(&path, data).expect("write");
        // A stale temporary file is simply discarded.
        fs::write(dir.path().join("vote.tmp"), b"half").expect("write");
        let err = open_err(&dir, LogStoreOptions::default());
        assert!(matches!(err, LogStoreError::CorruptMeta { .. }), "{err:?}");
        assert!(!dir.path().join("vote.tmp").exists());
    }

    #[tokio::test]
    async fn everysec_and_always_are_durable_after_reopen() {
        for fsync in [FsyncPolicy::Always, FsyncPolicy::EverySec] {
            let dir = TempDir::new().expect("tempdir");
            let options = tiny(fsync);
            let mut store = open(&dir, options.clone());
            append(&mut store, entries(1, 1..=7)).await.expect("append");
            store.save_vote(&Vote::new(1, 1)).await.expect("vote");
            if fsync == FsyncPolicy::EverySec {
                // The background task fsyncs within about a second.
                let start = Instant::now();
                while store.has_unsynced_appends() {
                    assert!(start.elapsed() < Duration::from_secs(5), "never fsynced");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            assert!(!store.has_unsynced_appends());
            append(&mut store, vec![entry(1, 8)]).await.expect("append");
            drop(store);
            let mut store = open(&dir, options);
            assert_eq!(read_all(&mut store).await, entries(1, 1..=8), "{fsync}");
            assert_eq!(
                store.reader().read_vote().await.expect("vote"),
                Some(Vote::new(1, 1))
            );
        }
    }

    #[test]
    fn everysec_needs_a_runtime() {
        let dir = TempDir::new().expect("tempdir");
        let err = open_err(&dir, LogStoreOptions::default());
        assert!(matches!(err, LogStoreError::NoRuntime), "{err:?}");
        assert!(LogStore::open(dir.path(), FsyncPolicy::No).is_ok());
    }

    #[tokio::test]
    async fn writes_are_refused_after_a_failure() {
        let dir = TempDir::new().expect("tempdir");
        let mut store = open(&dir, tiny(FsyncPolicy::Always));
        append(&mut store, entries(1, 1..=3)).await.expect("append");
        // The next record needs a new segment file, which cannot be created.
        fs::remove_dir_all(dir.path()).expect("remove the directory");
        let err = append(&mut store, vec![entry(1, 4)]).await.unwrap_err();
        let dir_name = dir.path().display().to_string();
        assert!(err.to_string().contains(&dir_name), "{err}");
        assert!(append(&mut store, vec![entry(1, 5)]).await.is_err());
        assert!(store.save_vote(&Vote::new(1, 1)).await.is_err());
    }

    /// Just enough of a state machine for openraft's storage test suite: it remembers the last
    /// applied log id and membership, and its snapshots are exactly that.
    #[derive(Clone, Default)]
    struct SuiteStateMachine(Arc<Mutex<SuiteState>>);

    #[derive(Default)]
    struct SuiteState {
        applied: Option<LogId>,
        membership: crate::raft::types::StoredMembership,
        snapshot: Option<(crate::raft::types::SnapshotMeta, Vec<u8>)>,
    }

    type SuiteSnapshot = openraft::Snapshot<
        openraft::alias::CommittedLeaderIdOf<TypeConfig>,
        u64,
        crate::raft::types::NodeInfo,
        io::Cursor<Vec<u8>>,
    >;

    impl openraft::storage::RaftSnapshotBuilder<TypeConfig> for SuiteStateMachine {
        type SnapshotData = io::Cursor<Vec<u8>>;

        async fn build_snapshot(&mut self) -> Result<SuiteSnapshot, io::Error> {
            let mut state = self.0.lock();
            let bytes = encode(&(state.applied, &state.membership), "snapshot")?;
            let meta = crate::raft::types::SnapshotMeta {
                last_log_id: state.applied,
                last_membership: state.membership.clone(),
            };
            state.snapshot = Some((meta.clone(), bytes.clone()));
            Ok(openraft::Snapshot {
                meta,
                snapshot: io::Cursor::new(bytes),
            })
        }
    }

    impl openraft::storage::RaftStateMachine<TypeConfig> for SuiteStateMachine {
        type SnapshotData = io::Cursor<Vec<u8>>;
        type SnapshotBuilder = Self;

        async fn applied_state(
            &mut self,
        ) -> Result<(Option<LogId>, crate::raft::types::StoredMembership), io::Error> {
            let state = self.0.lock();
            Ok((state.applied, state.membership.clone()))
        }

        async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
        where
            Strm: futures::Stream<
                    Item = Result<openraft::storage::EntryResponder<TypeConfig>, io::Error>,
                > + Unpin
                + OptionalSend,
        {
            use futures::StreamExt;
            while let Some(item) = entries.next().await {
                let (entry, responder) = item?;
                {
                    let mut state = self.0.lock();
                    state.applied = Some(entry.log_id);
                    if let Some(membership) = entry.get_membership() {
                        state.membership = crate::raft::types::StoredMembership::new(
                            Some(entry.log_id),
                            membership,
                        );
                    }
                }
                if let Some(responder) = responder {
                    responder.send(shoal_protocol::Frame::Null);
                }
            }
            Ok(())
        }

        async fn get_snapshot_builder(&mut self) -> Self {
            self.clone()
        }

        async fn install_snapshot(
            &mut self,
            meta: &crate::raft::types::SnapshotMeta,
            snapshot: io::Cursor<Vec<u8>>,
        ) -> Result<(), io::Error> {
            let bytes = snapshot.into_inner();
            let (applied, membership) = decode(&bytes).map_err(io::Error::other)?;
            let mut state = self.0.lock();
            state.applied = applied;
            state.membership = membership;
            state.snapshot = Some((meta.clone(), bytes));
            Ok(())
        }

        async fn get_current_snapshot(&mut self) -> Result<Option<SuiteSnapshot>, io::Error> {
            Ok(self
                .0
                .lock()
                .snapshot
                .clone()
                .map(|(meta, bytes)| openraft::Snapshot {
                    meta,
                    snapshot: io::Cursor::new(bytes),
                }))
        }
    }

    /// Every suite test gets a fresh directory with three-record segments.
    struct SuiteBuilder(FsyncPolicy);

    impl openraft::testing::log::StoreBuilder<TypeConfig, LogStore, SuiteStateMachine, TempDir>
        for SuiteBuilder
    {
        async fn build(
            &self,
        ) -> Result<(TempDir, LogStore, SuiteStateMachine), openraft::StorageError<TypeConfig>>
        {
            let failed = |e: io::Error| {
                openraft::StorageError::from_io_error(
                    openraft::ErrorSubject::Logs,
                    openraft::ErrorVerb::Read,
                    e,
                )
            };
            let dir = TempDir::new().map_err(failed)?;
            let store = LogStore::open_with_options(dir.path(), tiny(self.0))
                .map_err(|e| failed(e.into()))?;
            Ok((dir, store, SuiteStateMachine::default()))
        }
    }

    /// openraft's own storage test suite, against this log store (and a toy state machine).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn openraft_storage_suite() {
        for fsync in [FsyncPolicy::Always, FsyncPolicy::EverySec] {
            if let Err(e) = openraft::testing::log::Suite::test_all(SuiteBuilder(fsync)).await {
                panic!("openraft storage suite failed with {fsync}: {e}");
            }
        }
    }
}
