//! The openraft state machine of a shard group: committed entries go to the deterministic
//! [`StateMachine`], and its keyspace is persisted as snapshot files.
//!
//! # Applying entries
//!
//! A normal entry is a [`Proposal`]; [`ShardStateMachine`] hands it to [`StateMachine::apply`] and
//! sends the [`Frame`] it returned to the waiting client, unchanged (ARCHITECTURE.md invariant 2).
//! A blank entry (a new leader's first) answers [`Frame::Null`]; a membership entry is recorded
//! and answers `+OK`.
//!
//! `apply` never returns an `io::Error` because of a command. A command that fails (`INCR` on a
//! non-integer, `RENAME` of a missing key, ...) fails *identically on every replica*, because
//! apply is deterministic: its error is a reply, an error [`Frame`], which is sent to the client
//! like any other reply. To openraft an `Err` from `apply` means the storage is broken: the group
//! stops (`Fatal`), on every replica alike, since they all apply the same entry. The only errors
//! `apply` passes on are those of the log stream it reads from.
//!
//! # Snapshot file format (version 2)
//!
//! One file per snapshot, `snapshot-<term>-<index>.snap` named after its last log id
//! (`snapshot-none.snap` for a snapshot of nothing applied):
//!
//! ```text
//! magic          8 bytes   "SHOALSNP"
//! version        u32 LE    SNAPSHOT_FORMAT_VERSION
//! meta           bincode (serde, standard config) of (SnapshotMeta, snapshot id: String);
//!                SnapshotMeta is last_log_id, last_membership and openraft's reserved
//!                (always empty) 0.9 snapshot_id slot; the id after it is ours, for logs
//! records        per key, bincode (standard config) of (key: bytes, value: bytes,
//!                expires_at: Option<u64> unix ms, collection: Option<bytes>); slot 0's keys
//!                first, then slot 1's, ...
//! stamps         u32 LE count n, then n times: slot u16 LE, 16 write stamps u32 LE each
//!                (`keyspace::Stamps`), slots in increasing order; a slot not listed has
//!                none (all zero)
//! record count   u64 LE
//! crc32          u32 LE    CRC-32 (IEEE) of every byte before the trailer
//! ```
//!
//! Expired keys not yet deleted are records like any other: replicas decide expiry by the clock
//! in each entry, so a snapshot reproduces the stored state exactly, due keys included.
//!
//! The write stamps (what `WATCH` compares besides the data, see `store::keyspace`) are
//! replicated state too: `apply` of an `EXEC` reads them, so a replica started from a snapshot
//! must hold the very stamps the snapshot's writer held at its last log id, or it could decide
//! an `EXEC` differently. Each slot's stamps are taken under the same read lock as its records
//! (and saved with them by the copy-on-write capture). Slots never move between groups (the
//! ring is fixed for the cluster's life; a shard's move changes its replicas, which catch up by
//! snapshot and log), so no stamps travel any other way.
//!
//! Version 1 (no stamps section) is still read: its slots load with all stamps zero. A replica
//! that loads a version-1 file may thus hold other stamps than one that applied the same log
//! (until both restart from version-2 snapshots of the same state), so after an upgrade a
//! `WATCH`ed `EXEC` could abort on some replicas only; upgrade with no transaction using
//! `WATCH` in flight, and let every group take a new snapshot before relying on them.
//!
//! A snapshot is written to a `.tmp` sibling, fsynced, renamed into place, and the directory
//! fsynced; then all but the newest [`SNAPSHOTS_KEPT`] snapshots are deleted. A reader checks
//! the magic and version, then the CRC of the whole file, and only then decodes anything, so a
//! damaged file is rejected before a single length from it is trusted.
//!
//! # Building without stopping writes
//!
//! openraft builds a snapshot in a spawned task while `apply` keeps running, and requires the
//! builder to see the state at one point. Copying the whole keyspace up front would double its
//! memory; holding it locked would stall every reader and writer. Instead the build exports the
//! keyspace slot by slot (each slot's read lock held only while that slot is copied), and slots
//! are copy-on-write for the duration: before `apply` writes a slot the build has not copied
//! yet, it saves that slot's image first (`Capture`). Every slot thus lands in the file as it
//! was when the builder was created, which is also when its meta (last applied log id and
//! membership) was taken. This relies on the adapter being the keyspace's only writer, which
//! is the replication design: every write is a log entry. An install waits for a running build
//! to finish instead of racing it.
//!
//! # Startup
//!
//! [`ShardStateMachine::open`] loads the newest valid snapshot of its directory. A snapshot that
//! fails verification is logged, renamed to `*.corrupt` (kept for inspection, never loaded
//! again) and the next older one is tried; with none valid the state machine starts empty,
//! also with a warning. openraft then re-applies the log from the loaded snapshot on; if the log
//! was already purged past that point it refuses to start rather than lose writes silently.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use parking_lot::Mutex;
use shoal_protocol::{key_slot, Frame, SLOT_COUNT};
use tokio::io::AsyncWriteExt;

use super::types::{Entry as LogEntry, LogId, SnapshotMeta, StoredMembership, TypeConfig};
use crate::cluster::events::{self, GroupIds};
use crate::store::keyspace::{Stamps, STAMP_BUCKETS};
use crate::store::state_machine::MAX_STRING_LEN;
use crate::store::value::Value;
use crate::store::{Entry, Keyspace, StateMachine, WriteOp};

#[cfg(doc)]
use crate::store::Proposal;

/// The first bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"SHOALSNP";
/// The layout described in the module documentation, which this build writes.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 2;
/// The oldest layout a reader accepts (version 1: no stamps section).
pub const SNAPSHOT_OLDEST_VERSION: u32 = 1;
/// Size of one slot's entry in the stamps section.
const STAMP_RECORD_LEN: usize = 2 + 4 * STAMP_BUCKETS;
/// Snapshot files a directory keeps: the newest, and one to fall back on if it is damaged.
pub const SNAPSHOTS_KEPT: usize = 2;

/// Magic and version.
const HEADER_LEN: u64 = 12;
/// Record count and CRC.
const TRAILER_LEN: u64 = 12;
/// Bound on the decoded meta (the membership config is small).
const META_LIMIT: usize = 64 << 20;
/// Bound on one decoded record: a key and a value, each at most `proto-max-bulk-len`.
const RECORD_LIMIT: usize = 2 * MAX_STRING_LEN as usize + 64;
const IO_BUFFER: usize = 1 << 20;

/// The data of a snapshot, as openraft moves it between the state machine and the network.
///
/// A plain [`tokio::fs::File`] handle, positioned anywhere (readers seek to the start):
/// - a snapshot is as large as the keyspace, so it must stream: the sender reads it in chunks
///   ([`tokio::io::AsyncRead`]) and the receiver appends chunks to a file, never holding it
///   whole in memory;
/// - an open handle stays readable even if newer snapshots make this one's file get deleted
///   meanwhile, which a path would not;
/// - it is what the peer network already streams (`raft::network::SnapshotFile` is implemented
///   for it), so the network and this adapter share no other type.
///
/// [`install_snapshot`](RaftStateMachine::install_snapshot) trusts nothing about the handle: it
/// verifies the bytes and copies them into its own directory, so the caller may delete its file
/// afterwards.
pub type SnapshotData = tokio::fs::File;

/// A snapshot with its meta, as openraft passes it around.
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotData>;

/// A shard group's openraft state machine: [`StateMachine`] plus last applied log id,
/// membership and snapshots.
pub struct ShardStateMachine {
    sm: StateMachine,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    dir: SnapshotDir,
    /// The copy-on-write capture of the snapshot being built, if one is.
    building: Weak<Capture>,
}

impl ShardStateMachine {
    /// Opens the state machine over `sm`, whose keyspace is replaced by the newest valid snapshot
    /// in `snapshot_dir` (created if missing). Damaged snapshots are renamed to `*.corrupt` and
    /// skipped with a warning; with no valid one, `sm` is left as it is (normally empty) and
    /// nothing counts as applied. Leftover `*.tmp` files are removed: the directory belongs to
    /// this state machine alone.
    ///
    /// Blocking: it reads the snapshot. An async caller runs it in `spawn_blocking`.
    ///
    /// `ids` name the node and group in the snapshot event lines (`cluster::events`).
    pub fn open(
        snapshot_dir: &Path,
        sm: StateMachine,
        ids: GroupIds,
    ) -> io::Result<ShardStateMachine> {
        fs::create_dir_all(snapshot_dir)?;
        let dir = SnapshotDir::new(fs::canonicalize(snapshot_dir)?, ids);
        dir.remove_temp_files()?;
        let mut this = ShardStateMachine {
            sm,
            last_applied: None,
            last_membership: StoredMembership::default(),
            dir,
            building: Weak::new(),
        };
        let candidates = this.dir.list()?;
        for (_, path) in &candidates {
            match load_file(path) {
                Ok(loaded) => {
                    events::snapshot_applied(
                        events::SnapshotSource::Loaded,
                        ids,
                        &loaded.meta,
                        &loaded.id,
                        path,
                        loaded.entries.len(),
                    );
                    this.sm
                        .keyspace()
                        .replace_all(loaded.entries, loaded.stamps);
                    this.last_applied = loaded.meta.last_log_id;
                    this.last_membership = loaded.meta.last_membership.clone();
                    *this.dir.inner.current.lock() = Some((loaded.meta, path.clone()));
                    return Ok(this);
                }
                Err(e) if is_corruption(&e) => {
                    let quarantined = path.with_extension("snap.corrupt");
                    tracing::warn!(
                        path = %path.display(),
                        error = %e,
                        "snapshot failed verification; renamed to *.corrupt, trying an older one"
                    );
                    if let Err(e) = fs::rename(path, &quarantined) {
                        tracing::warn!(path = %path.display(), error = %e, "cannot rename damaged snapshot");
                    }
                }
                // Not the file's fault (permissions, I/O): falling back would silently lose
                // the newer state, so refuse to start.
                Err(e) => return Err(e),
            }
        }
        if !candidates.is_empty() {
            tracing::warn!(
                dir = %this.dir.inner.path.display(),
                "no valid snapshot; starting with an empty state machine"
            );
        }
        Ok(this)
    }

    /// The deterministic state machine, for reads of its keyspace.
    pub fn state_machine(&self) -> &StateMachine {
        &self.sm
    }

    pub fn keyspace(&self) -> &Arc<Keyspace> {
        self.sm.keyspace()
    }

    /// Where this group's snapshots live (canonicalized).
    pub fn snapshot_dir(&self) -> &Path {
        &self.dir.inner.path
    }

    /// A fresh, empty, readable and writable file to receive a snapshot into, for a network
    /// layer that has no directory of its own: write the received bytes into it, then pass it to
    /// `Raft::install_full_snapshot`. The file is unlinked at once (it lives as long as the
    /// handle), so an abandoned transfer leaves nothing behind.
    pub async fn begin_receiving_snapshot(&self) -> io::Result<SnapshotData> {
        let path = self
            .dir
            .inner
            .path
            .join(format!("receive-{:016x}.tmp", rand::random::<u64>()));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        // If unlinking fails, `open` removes the `.tmp` file next time.
        let _ = tokio::fs::remove_file(&path).await;
        Ok(file)
    }

    /// Applies one entry and returns the reply for the client that proposed it.
    fn apply_entry(&mut self, entry: LogEntry) -> Frame {
        let reply = match entry.payload {
            EntryPayload::Blank => Frame::Null,
            EntryPayload::Normal(proposal) => {
                if let Some(capture) = self.building.upgrade() {
                    // The slots `StateMachine::apply` locks, hence the only ones it can change.
                    let keyspace = self.sm.keyspace();
                    match &proposal.op {
                        WriteOp::FlushAll => capture.before_write(keyspace, 0..SLOT_COUNT),
                        op => capture.before_write(keyspace, op.keys().into_iter().map(key_slot)),
                    }
                }
                self.sm.apply(&proposal)
            }
            EntryPayload::Membership(membership) => {
                self.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                Frame::ok()
            }
        };
        self.last_applied = Some(entry.log_id);
        reply
    }

    /// Bytes held by the copy-on-write images of a snapshot being built (0 when none is):
    /// under a steady stream of writes a build can end up holding a copy of most of the shard.
    /// Shared with the builders, so it can be read once the state machine belongs to openraft.
    pub fn capture_memory(&self) -> Arc<AtomicUsize> {
        self.dir.inner.capture_memory.clone()
    }

    fn new_builder(&mut self, permit: tokio::sync::OwnedMutexGuard<()>) -> ShardSnapshotBuilder {
        let capture = Arc::new(Capture::new(self.dir.inner.capture_memory.clone()));
        self.building = Arc::downgrade(&capture);
        ShardSnapshotBuilder {
            job: Some(BuildJob {
                keyspace: self.sm.keyspace().clone(),
                meta: SnapshotMeta {
                    last_log_id: self.last_applied,
                    last_membership: self.last_membership.clone(),
                },
                dir: self.dir.clone(),
                capture,
                _permit: permit,
            }),
        }
    }
}

impl RaftStateMachine<TypeConfig> for ShardStateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = ShardSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            // An error here is the log store's (reading the entry), never a command's.
            let (entry, responder) = item?;
            let reply = self.apply_entry(entry);
            if let Some(responder) = responder {
                responder.send(reply);
            }
        }
        Ok(())
    }

    /// Defers (returns `None`) when not forced and a build is already running; a forced request
    /// waits for it.
    async fn try_create_snapshot_builder(&mut self, force: bool) -> Option<ShardSnapshotBuilder> {
        let permit = match self.dir.inner.build_permit.clone().try_lock_owned() {
            Ok(permit) => permit,
            Err(_) if !force => return None,
            Err(_) => self.dir.inner.build_permit.clone().lock_owned().await,
        };
        Some(self.new_builder(permit))
    }

    /// Waits for a running build (only one runs at a time) and returns a builder of the state as
    /// it is now. A builder must be used or dropped before the next one can be created.
    async fn get_snapshot_builder(&mut self) -> ShardSnapshotBuilder {
        let permit = self.dir.inner.build_permit.clone().lock_owned().await;
        self.new_builder(permit)
    }

    /// Verifies `snapshot` (magic, version, CRC, that its meta is `meta`), copies it into the
    /// snapshot directory, then replaces the keyspace with it. A snapshot that fails is rejected
    /// with `InvalidData` and nothing changes: not the keyspace, not the applied state, not the
    /// directory.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        mut snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        // A running build is copying the keyspace this replaces: let it finish first.
        let _permit = self.dir.inner.build_permit.clone().lock_owned().await;
        snapshot.flush().await?;
        let file = snapshot.into_std().await;
        let dir = self.dir.clone();
        let keyspace = self.sm.keyspace().clone();
        let want = meta.clone();
        tokio::task::spawn_blocking(move || dir.install(file, &want, &keyspace))
            .await
            .map_err(io::Error::other)??;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let current = self.dir.inner.current.lock().clone();
        let Some((meta, path)) = current else {
            return Ok(None);
        };
        let snapshot = tokio::fs::File::open(&path).await?;
        Ok(Some(Snapshot { meta, snapshot }))
    }
}

/// Builds one snapshot of the state at the builder's creation (see the module documentation).
pub struct ShardSnapshotBuilder {
    job: Option<BuildJob>,
}

impl RaftSnapshotBuilder<TypeConfig> for ShardSnapshotBuilder {
    type SnapshotData = SnapshotData;

    /// Writes the snapshot file and returns it. A builder builds once: its consistent view
    /// ends with the build.
    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let job = self
            .job
            .take()
            .ok_or_else(|| io::Error::other("this snapshot builder has already built"))?;
        let (meta, file) = tokio::task::spawn_blocking(move || job.run())
            .await
            .map_err(io::Error::other)??;
        Ok(Snapshot {
            meta,
            snapshot: tokio::fs::File::from_std(file),
        })
    }
}

struct BuildJob {
    keyspace: Arc<Keyspace>,
    meta: SnapshotMeta,
    dir: SnapshotDir,
    capture: Arc<Capture>,
    /// Held until the file is written: no other build, and no install, meanwhile.
    _permit: tokio::sync::OwnedMutexGuard<()>,
}

impl BuildJob {
    fn run(self) -> io::Result<(SnapshotMeta, File)> {
        let started = std::time::Instant::now();
        let dir = &self.dir.inner.path;
        let name = snapshot_file_name(self.meta.last_log_id.as_ref());
        let path = dir.join(&name);
        let tmp = dir.join(format!("{name}.{:016x}.tmp", rand::random::<u64>()));
        let written = self.write(&tmp).and_then(|records| {
            fs::rename(&tmp, &path)?;
            sync_dir(dir)?;
            Ok(records)
        });
        let records = match written {
            Ok(records) => records,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        // Opened before the permit is released: nothing can prune it first.
        let file = File::open(&path)?;
        events::snapshot_built(
            self.dir.inner.ids,
            &self.meta,
            &path,
            records,
            started.elapsed(),
        );
        self.dir.set_current_if_newer(&self.meta, &path);
        self.dir.prune();
        Ok((self.meta, file))
    }

    /// Writes the whole snapshot to `tmp` and fsyncs it; returns the record count.
    fn write(&self, tmp: &Path) -> io::Result<u64> {
        let file = OpenOptions::new().write(true).create_new(true).open(tmp)?;
        let mut out = CrcWriter::new(BufWriter::with_capacity(IO_BUFFER, file));
        out.write_all(&SNAPSHOT_MAGIC)?;
        out.write_all(&SNAPSHOT_FORMAT_VERSION.to_le_bytes())?;
        let id = snapshot_id(&self.meta);
        bincode::serde::encode_into_std_write(
            (&self.meta, &id),
            &mut out,
            bincode::config::standard(),
        )
        .map_err(io::Error::other)?;
        let mut image = SlotImage::default();
        let mut records = 0;
        let mut stamps = Vec::new();
        for slot in 0..SLOT_COUNT {
            self.capture.take(&self.keyspace, slot, &mut image);
            out.write_all(&image.bytes)?;
            records += image.records;
            if let Some(s) = image.stamps {
                stamps.push((slot, s));
            }
        }
        write_stamps(&mut out, &stamps)?;
        let (mut out, crc) = out.finish();
        out.write_all(&records.to_le_bytes())?;
        out.write_all(&crc.to_le_bytes())?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(records)
    }
}

/// A snapshot build's copy-on-write view of the keyspace: every slot's records as they were
/// when the build began, whether the builder copies the slot itself or `apply` saved it first.
struct Capture {
    state: Mutex<CaptureState>,
    /// The group's count of bytes the saved images hold (`DirInner::capture_memory`).
    memory: Arc<AtomicUsize>,
}

struct CaptureState {
    /// Slots whose image is taken: copied by the builder or saved by `apply`.
    taken: Box<[bool]>,
    /// Images `apply` saved before writing to a slot the builder had not reached.
    saved: HashMap<u16, SlotImage>,
}

/// One slot's encoded records, and its write stamps as they were with them.
#[derive(Default)]
struct SlotImage {
    bytes: Vec<u8>,
    records: u64,
    stamps: Option<Stamps>,
}

impl SlotImage {
    fn mem_usage(&self) -> usize {
        crate::store::entry::allocation_size(self.bytes.capacity())
    }
}

impl Drop for Capture {
    /// A build that stops early leaves images nobody took.
    fn drop(&mut self) {
        let left: usize = self
            .state
            .lock()
            .saved
            .values()
            .map(SlotImage::mem_usage)
            .sum();
        self.memory.fetch_sub(left, Ordering::Relaxed);
    }
}

impl Capture {
    fn new(memory: Arc<AtomicUsize>) -> Capture {
        Capture {
            memory,
            state: Mutex::new(CaptureState {
                taken: vec![false; SLOT_COUNT as usize].into_boxed_slice(),
                saved: HashMap::new(),
            }),
        }
    }

    /// Called by `apply` before it writes to `slots`: saves the image of each the build has not
    /// copied yet.
    fn before_write(&self, keyspace: &Keyspace, slots: impl IntoIterator<Item = u16>) {
        let mut state = self.state.lock();
        for slot in slots {
            if !state.taken[slot as usize] {
                let mut image = SlotImage::default();
                encode_slot(keyspace, slot, &mut image);
                self.memory.fetch_add(image.mem_usage(), Ordering::Relaxed);
                state.saved.insert(slot, image);
                state.taken[slot as usize] = true;
            }
        }
    }

    /// The builder's turn for `slot`: the saved image if `apply` took one, else a copy made now
    /// (under the capture lock, so `apply` cannot write the slot in between).
    fn take(&self, keyspace: &Keyspace, slot: u16, out: &mut SlotImage) {
        let mut state = self.state.lock();
        state.taken[slot as usize] = true;
        match state.saved.remove(&slot) {
            Some(image) => {
                self.memory.fetch_sub(image.mem_usage(), Ordering::Relaxed);
                *out = image;
            }
            None => encode_slot(keyspace, slot, out),
        }
    }
}

/// Encodes every entry of `slot` (expired ones included) into `out`, replacing its contents.
fn encode_slot(keyspace: &Keyspace, slot: u16, out: &mut SlotImage) {
    out.bytes.clear();
    out.records = 0;
    out.stamps = keyspace.export_slot(slot, &mut |entry: &Entry| {
        // A collection travels as its serde form after an empty string value.
        let collection = entry.collection().map(|v| {
            bincode::serde::encode_to_vec(v, bincode::config::standard())
                .expect("encoding a value into a Vec cannot fail")
        });
        bincode::encode_into_std_write(
            (entry.key(), entry.value(), entry.expires_at(), collection),
            &mut out.bytes,
            bincode::config::standard(),
        )
        .expect("encoding bytes and integers into a Vec cannot fail");
        out.records += 1;
    });
}

/// Writes the stamps section (see the module documentation).
fn write_stamps(out: &mut impl Write, stamps: &[(u16, Stamps)]) -> io::Result<()> {
    out.write_all(&(stamps.len() as u32).to_le_bytes())?;
    for (slot, s) in stamps {
        out.write_all(&slot.to_le_bytes())?;
        for stamp in s {
            out.write_all(&stamp.to_le_bytes())?;
        }
    }
    Ok(())
}

/// Reads the stamps section: at most one entry per slot, slots in increasing order.
fn read_stamps(reader: &mut impl Read) -> io::Result<Vec<(u16, Stamps)>> {
    let mut count = [0u8; 4];
    reader.read_exact(&mut count)?;
    let count = u32::from_le_bytes(count);
    if count > SLOT_COUNT as u32 {
        return Err(invalid_data(format!(
            "snapshot lists stamps of {count} slots"
        )));
    }
    let mut stamps: Vec<(u16, Stamps)> = Vec::with_capacity(count as usize);
    let mut record = [0u8; STAMP_RECORD_LEN];
    for _ in 0..count {
        reader.read_exact(&mut record)?;
        let slot = u16::from_le_bytes([record[0], record[1]]);
        if slot >= SLOT_COUNT || stamps.last().is_some_and(|(prev, _)| *prev >= slot) {
            return Err(invalid_data(format!(
                "snapshot stamps of slot {slot} out of range or order"
            )));
        }
        let mut s: Stamps = [0; STAMP_BUCKETS];
        for (i, stamp) in s.iter_mut().enumerate() {
            let at = 2 + 4 * i;
            *stamp = u32::from_le_bytes(record[at..at + 4].try_into().expect("4 bytes"));
        }
        stamps.push((slot, s));
    }
    Ok(stamps)
}

/// A group's snapshot directory, shared by the state machine and its builders.
#[derive(Clone)]
struct SnapshotDir {
    inner: Arc<DirInner>,
}

struct DirInner {
    path: PathBuf,
    /// Node and group, for the event lines.
    ids: GroupIds,
    /// What `get_current_snapshot` serves: the newest snapshot built, installed or loaded.
    current: Mutex<Option<(SnapshotMeta, PathBuf)>>,
    /// Held by a builder from its creation to the end of its build.
    build_permit: Arc<tokio::sync::Mutex<()>>,
    /// Bytes in the running build's saved slot images.
    capture_memory: Arc<AtomicUsize>,
}

impl SnapshotDir {
    fn new(path: PathBuf, ids: GroupIds) -> SnapshotDir {
        SnapshotDir {
            inner: Arc::new(DirInner {
                path,
                ids,
                current: Mutex::new(None),
                build_permit: Arc::new(tokio::sync::Mutex::new(())),
                capture_memory: Arc::default(),
            }),
        }
    }

    /// The snapshot files, newest first.
    fn list(&self) -> io::Result<Vec<(SnapshotKey, PathBuf)>> {
        let mut found = Vec::new();
        for dirent in fs::read_dir(&self.inner.path)? {
            let dirent = dirent?;
            let name = dirent.file_name();
            if let Some(key) = name.to_str().and_then(parse_snapshot_file_name) {
                found.push((key, dirent.path()));
            }
        }
        found.sort_by_key(|(key, _)| std::cmp::Reverse(*key));
        Ok(found)
    }

    fn remove_temp_files(&self) -> io::Result<()> {
        for dirent in fs::read_dir(&self.inner.path)? {
            let path = dirent?.path();
            if path.extension().is_some_and(|ext| ext == "tmp") {
                tracing::info!(path = %path.display(), "removing leftover temporary file");
                fs::remove_file(&path)?;
            }
        }
        Ok(())
    }

    fn set_current_if_newer(&self, meta: &SnapshotMeta, path: &Path) {
        let mut current = self.inner.current.lock();
        if current
            .as_ref()
            .is_none_or(|(cur, _)| cur.last_log_id <= meta.last_log_id)
        {
            *current = Some((meta.clone(), path.to_owned()));
        }
    }

    /// Deletes all but the newest [`SNAPSHOTS_KEPT`] snapshots, never the current one. Failing
    /// to delete costs only disk space, so failures are logged, not returned.
    fn prune(&self) {
        let current = self.inner.current.lock().as_ref().map(|(_, p)| p.clone());
        let listed = match self.list() {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list snapshots to prune them");
                return;
            }
        };
        let mut removed = false;
        for (_, path) in listed.into_iter().skip(SNAPSHOTS_KEPT) {
            if current.as_ref() == Some(&path) {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => removed = true,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove old snapshot")
                }
            }
        }
        if removed {
            if let Err(e) = sync_dir(&self.inner.path) {
                tracing::warn!(error = %e, "cannot sync snapshot directory");
            }
        }
    }

    /// Verifies `file` against `meta`, makes it this directory's current snapshot, and replaces
    /// the keyspace with it. On error nothing has changed.
    fn install(&self, mut file: File, meta: &SnapshotMeta, keyspace: &Keyspace) -> io::Result<()> {
        let dir = &self.inner.path;
        let name = snapshot_file_name(meta.last_log_id.as_ref());
        let path = dir.join(&name);
        let tmp = dir.join(format!("{name}.{:016x}.tmp", rand::random::<u64>()));
        let loaded = (|| {
            let copy = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            let mut copy = BufWriter::with_capacity(IO_BUFFER, copy);
            let records = verify(&mut file, Some(&mut copy))?;
            let mut copy = copy.into_inner().map_err(|e| e.into_error())?;
            copy.sync_all()?;
            // Decoded from our own copy, not from a handle someone else may still write to.
            let loaded = decode(&mut copy, records)?;
            if loaded.meta != *meta {
                return Err(invalid_data(format!(
                    "snapshot file holds {}, expected {}",
                    loaded.meta, meta
                )));
            }
            fs::rename(&tmp, &path)?;
            sync_dir(dir)?;
            Ok(loaded)
        })();
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                tracing::warn!(meta = %meta, error = %e, "rejected snapshot");
                return Err(e);
            }
        };
        events::snapshot_applied(
            events::SnapshotSource::Installed,
            self.inner.ids,
            meta,
            &loaded.id,
            &path,
            loaded.entries.len(),
        );
        keyspace.replace_all(loaded.entries, loaded.stamps);
        *self.inner.current.lock() = Some((meta.clone(), path));
        self.prune();
        Ok(())
    }
}

/// Orders snapshot files: by last log index, then term; `None` (nothing applied) first.
type SnapshotKey = Option<(u64, u64)>;

fn snapshot_file_name(last_log_id: Option<&LogId>) -> String {
    match last_log_id {
        Some(id) => format!("snapshot-{}-{}.snap", id.leader_id.term, id.index),
        None => "snapshot-none.snap".to_owned(),
    }
}

fn parse_snapshot_file_name(name: &str) -> Option<SnapshotKey> {
    let stem = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    if stem == "none" {
        return Some(None);
    }
    let (term, index) = stem.split_once('-')?;
    Some(Some((index.parse().ok()?, term.parse().ok()?)))
}

/// A name for logs: the last log id and when the snapshot was made.
fn snapshot_id(meta: &SnapshotMeta) -> String {
    let at = crate::store::now_ms();
    match &meta.last_log_id {
        Some(id) => format!(
            "{}-{}-{}-{at}",
            id.leader_id.term, id.leader_id.node_id, id.index
        ),
        None => format!("none-{at}"),
    }
}

/// The contents of a verified snapshot file.
struct Loaded {
    meta: SnapshotMeta,
    id: String,
    entries: Vec<Entry>,
    /// Write stamps of the slots that have any (none from a version-1 file).
    stamps: Vec<(u16, Stamps)>,
}

fn load_file(path: &Path) -> io::Result<Loaded> {
    let mut file = File::open(path)?;
    let records = verify(&mut file, None::<&mut io::Sink>)?;
    decode(&mut file, records)
}

/// Reads `file` from its start, checking magic, version and CRC, and copying every byte to `copy`
/// if given. Returns the record count of the trailer.
fn verify(file: &mut File, mut copy: Option<&mut impl Write>) -> io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    let len = file.metadata()?.len();
    if len < HEADER_LEN + TRAILER_LEN {
        return Err(invalid_data(format!("snapshot is {len} bytes, too short")));
    }
    let mut reader = BufReader::with_capacity(IO_BUFFER, file);
    let mut header = [0u8; HEADER_LEN as usize];
    reader.read_exact(&mut header)?;
    if header[..8] != SNAPSHOT_MAGIC {
        return Err(invalid_data("not a shoal snapshot (bad magic)".to_owned()));
    }
    let version = u32::from_le_bytes(header[8..].try_into().expect("4 bytes"));
    if !(SNAPSHOT_OLDEST_VERSION..=SNAPSHOT_FORMAT_VERSION).contains(&version) {
        return Err(invalid_data(format!(
            "snapshot format version {version}, this build reads \
             {SNAPSHOT_OLDEST_VERSION} to {SNAPSHOT_FORMAT_VERSION}"
        )));
    }
    let mut crc = crc32fast::Hasher::new();
    let mut feed = |bytes: &[u8], crc: &mut crc32fast::Hasher| -> io::Result<()> {
        crc.update(bytes);
        match copy.as_mut() {
            Some(out) => out.write_all(bytes),
            None => Ok(()),
        }
    };
    feed(&header, &mut crc)?;
    let mut remaining = len - HEADER_LEN - TRAILER_LEN;
    while remaining > 0 {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let n = chunk
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        feed(&chunk[..n], &mut crc)?;
        reader.consume(n);
        remaining -= n as u64;
    }
    let crc = crc.finalize();
    let mut trailer = [0u8; TRAILER_LEN as usize];
    reader.read_exact(&mut trailer)?;
    if let Some(out) = copy.as_mut() {
        out.write_all(&trailer)?;
    }
    let records = u64::from_le_bytes(trailer[..8].try_into().expect("8 bytes"));
    let want = u32::from_le_bytes(trailer[8..].try_into().expect("4 bytes"));
    if crc != want {
        return Err(invalid_data(format!(
            "snapshot checksum mismatch (crc32 {crc:08x}, trailer says {want:08x})"
        )));
    }
    Ok(records)
}

/// Decodes a file [`verify`] accepted.
fn decode(file: &mut File, records: u64) -> io::Result<Loaded> {
    let len = file.metadata()?.len();
    let mut header = [0u8; HEADER_LEN as usize];
    file.seek(SeekFrom::Start(0))?;
    file.read_exact(&mut header)?;
    let version = u32::from_le_bytes(header[8..].try_into().expect("4 bytes"));
    let mut reader = CountingReader {
        inner: BufReader::with_capacity(IO_BUFFER, file),
        read: HEADER_LEN,
    };
    let (meta, id): (SnapshotMeta, String) = bincode::serde::decode_from_std_read(
        &mut reader,
        bincode::config::standard().with_limit::<META_LIMIT>(),
    )
    .map_err(|e| invalid_data(format!("snapshot meta: {e}")))?;
    // The count is checksummed, but allocate from it only modestly all the same.
    let mut entries = Vec::with_capacity(records.min(1 << 20) as usize);
    for _ in 0..records {
        let (key, value, expires_at, collection): (Vec<u8>, Vec<u8>, Option<u64>, Option<Vec<u8>>) =
            bincode::decode_from_std_read(
                &mut reader,
                bincode::config::standard().with_limit::<RECORD_LIMIT>(),
            )
            .map_err(|e| invalid_data(format!("snapshot record {}: {e}", entries.len())))?;
        // `Entry::new` takes 0 as "no deadline"; `apply` never stores a deadline of 0 (it
        // deletes a key whose deadline is not after the entry's clock).
        let entry = match collection {
            None => Entry::new(&key, &value, expires_at.unwrap_or(0)),
            Some(bytes) => {
                let (v, _): (Value, _) = super::bounded_decode::decode_bounded(&bytes)
                    .map_err(|e| invalid_data(format!("snapshot record {}: {e}", entries.len())))?;
                Entry::new_collection(&key, v, expires_at.unwrap_or(0))
            }
        };
        entries.push(entry);
    }
    let stamps = match version {
        1 => Vec::new(),
        _ => read_stamps(&mut reader)?,
    };
    if reader.read != len - TRAILER_LEN {
        return Err(invalid_data(format!(
            "snapshot records end at byte {}, the trailer starts at {}",
            reader.read,
            len - TRAILER_LEN
        )));
    }
    Ok(Loaded {
        meta,
        id,
        entries,
        stamps,
    })
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Whether an error means the file's content is bad (as opposed to not being able to read it).
fn is_corruption(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
    )
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Computes the CRC-32 of everything written through it.
struct CrcWriter<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> CrcWriter<W> {
    fn new(inner: W) -> Self {
        CrcWriter {
            inner,
            crc: crc32fast::Hasher::new(),
        }
    }

    fn finish(self) -> (W, u32) {
        (self.inner, self.crc.finalize())
    }
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Counts the bytes read through it (the position in the file).
struct CountingReader<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use bytes::Bytes;
    use openraft::vote::RaftLeaderIdExt;
    use openraft::{Membership, RaftTypeConfig};
    use tempfile::TempDir;
    use tokio::io::{AsyncReadExt, AsyncSeekExt};

    use super::*;
    use crate::error::CommandError;
    use crate::store::{Expiry, Proposal};

    type Record = (Vec<u8>, Vec<u8>, Option<u64>);

    fn log_id(term: u64, index: u64) -> LogId {
        let leader = <TypeConfig as RaftTypeConfig>::LeaderId::new_committed(term, 1);
        LogId::new(leader, index)
    }

    fn normal(index: u64, now_ms: u64, op: WriteOp) -> LogEntry {
        LogEntry {
            log_id: log_id(1, index),
            payload: EntryPayload::Normal(Proposal { now_ms, op }),
        }
    }

    fn voters(ids: &[u64]) -> Membership<u64, crate::raft::types::NodeInfo> {
        Membership::new_with_defaults(vec![ids.iter().copied().collect::<BTreeSet<_>>()], [])
    }

    fn membership(index: u64, ids: &[u64]) -> LogEntry {
        LogEntry {
            log_id: log_id(1, index),
            payload: EntryPayload::Membership(voters(ids)),
        }
    }

    fn blank(index: u64) -> LogEntry {
        LogEntry {
            log_id: log_id(1, index),
            payload: EntryPayload::Blank,
        }
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn set(key: &str, value: &str, expiry: Expiry) -> WriteOp {
        WriteOp::set(b(key), b(value), expiry)
    }

    fn incr(key: &str) -> WriteOp {
        WriteOp::IncrBy {
            key: b(key),
            delta: 1,
        }
    }

    fn open(dir: &Path) -> ShardStateMachine {
        ShardStateMachine::open(
            dir,
            StateMachine::new(Arc::new(Keyspace::new())),
            GroupIds::default(),
        )
        .unwrap()
    }

    async fn apply_all(sm: &mut ShardStateMachine, entries: Vec<LogEntry>) {
        let items = entries.into_iter().map(|e| Ok((e, None)));
        sm.apply(futures::stream::iter(items)).await.unwrap();
    }

    /// Every stored entry, expired ones included, sorted.
    fn dump(ks: &Keyspace) -> Vec<Record> {
        let mut all = Vec::new();
        for slot in 0..SLOT_COUNT {
            ks.export_slot(slot, &mut |e: &Entry| {
                all.push((e.key().to_vec(), e.value().to_vec(), e.expires_at()))
            });
        }
        all.sort();
        all
    }

    /// `count` SETs from log index `first`, at clock 1000; every third key gets a deadline
    /// between 10 000 and 10 000 + 2 * count.
    fn sets(first: u64, count: u64, prefix: &str) -> Vec<LogEntry> {
        (0..count)
            .map(|i| {
                let expiry = if i % 3 == 0 {
                    Expiry::At(10_000 + 2 * i as i64)
                } else {
                    Expiry::Clear
                };
                let op = set(&format!("{prefix}{i}"), &format!("value-{i}"), expiry);
                normal(first + i, 1000, op)
            })
            .collect()
    }

    async fn build(sm: &mut ShardStateMachine) -> Snapshot {
        let mut builder = sm.get_snapshot_builder().await;
        builder.build_snapshot().await.unwrap()
    }

    async fn read_all(file: &mut SnapshotData) -> Vec<u8> {
        file.seek(SeekFrom::Start(0)).await.unwrap();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).await.unwrap();
        bytes
    }

    fn snap_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|d| d.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn apply_replies_with_what_state_machine_apply_returns() {
        let dir = TempDir::new().unwrap();
        let mut sm = open(dir.path());
        let reference = StateMachine::new(Arc::new(Keyspace::new()));
        let ops = vec![
            set("k", "v", Expiry::Clear),
            incr("n"),
            incr("n"),
            incr("k"),
            WriteOp::Rename {
                from: b("missing"),
                to: b("x"),
                only_if_absent: false,
            },
            WriteOp::GetDel { key: b("k") },
            WriteOp::FlushAll,
        ];
        let mut replies = Vec::new();
        for (i, op) in ops.into_iter().enumerate() {
            let want = reference.apply(&Proposal {
                now_ms: 1000,
                op: op.clone(),
            });
            let got = sm.apply_entry(normal(i as u64 + 1, 1000, op));
            assert_eq!(got, want);
            replies.push(got);
        }
        assert_eq!(
            replies,
            vec![
                Frame::ok(),
                Frame::Integer(1),
                Frame::Integer(2),
                Frame::from(CommandError::NotInteger),
                Frame::from(CommandError::NoSuchKey),
                Frame::bulk("v"),
                Frame::ok(),
            ]
        );
        assert_eq!(sm.apply_entry(blank(8)), Frame::Null);
        assert_eq!(sm.apply_entry(membership(9, &[1, 2])), Frame::ok());
        assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 9)));
    }

    #[tokio::test]
    async fn applied_state_tracks_last_log_id_and_membership() {
        let dir = TempDir::new().unwrap();
        let mut sm = open(dir.path());
        assert_eq!(
            sm.applied_state().await.unwrap(),
            (None, StoredMembership::default())
        );
        apply_all(
            &mut sm,
            vec![
                blank(1),
                membership(2, &[1, 2, 3]),
                normal(3, 1000, set("a", "1", Expiry::Clear)),
                // A command error is a reply, not a storage error: apply goes on.
                normal(4, 1000, incr("a")),
                normal(5, 1000, incr("a")),
            ],
        )
        .await;
        let (last, mem) = sm.applied_state().await.unwrap();
        assert_eq!(last, Some(log_id(1, 5)));
        assert_eq!(
            mem,
            StoredMembership::new(Some(log_id(1, 2)), voters(&[1, 2, 3]))
        );
        let now = 1000;
        let slot = sm.keyspace().read_key_slot(b"a");
        assert_eq!(slot.get(b"a", now).unwrap().value(), b"3");
    }

    #[tokio::test]
    async fn snapshot_of_10k_keys_installs_identically_and_survives_reopen() {
        let (src_dir, dst_dir) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        let mut src = open(src_dir.path());
        let mut entries = vec![membership(1, &[1, 2, 3])];
        entries.extend(sets(2, 10_000, "key:"));
        // A later clock: keys with deadlines before 20 000 are now expired but still stored.
        entries.push(normal(10_002, 20_000, incr("counter")));
        apply_all(&mut src, entries).await;
        let want = dump(src.keyspace());
        assert_eq!(want.len(), 10_001);
        let expired = want
            .iter()
            .filter(|(_, _, at)| at.is_some_and(|at| at < 20_000))
            .count();
        assert!(expired > 1000, "expired-but-stored keys: {expired}");

        let snap = build(&mut src).await;
        assert_eq!(snap.meta.last_log_id, Some(log_id(1, 10_002)));
        assert_eq!(
            snap.meta.last_membership,
            StoredMembership::new(Some(log_id(1, 1)), voters(&[1, 2, 3]))
        );

        let mut dst = open(dst_dir.path());
        dst.install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        assert_eq!(dump(dst.keyspace()), want);
        assert_eq!(dst.keyspace().len(), src.keyspace().len());
        assert_eq!(dst.keyspace().volatile_len(), src.keyspace().volatile_len());
        assert_eq!(dst.keyspace().volatile_len(), 3334);
        assert_eq!(
            dst.applied_state().await.unwrap(),
            src.applied_state().await.unwrap()
        );
        let current = dst.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snap.meta);

        // Both directories now hold the snapshot: reopening either restores the state.
        let applied = src.applied_state().await.unwrap();
        drop((src, dst));
        for dir in [src_dir.path(), dst_dir.path()] {
            let mut reopened = open(dir);
            assert_eq!(dump(reopened.keyspace()), want);
            assert_eq!(reopened.keyspace().volatile_len(), 3334);
            assert_eq!(reopened.applied_state().await.unwrap(), applied);
            let current = reopened.get_current_snapshot().await.unwrap().unwrap();
            assert_eq!(current.meta.last_log_id, Some(log_id(1, 10_002)));
        }
    }

    #[tokio::test]
    async fn collections_survive_a_snapshot_with_their_encoding() {
        let (src_dir, dst_dir) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        let mut src = open(src_dir.path());
        let data = |args: &[&str]| WriteOp::Data {
            args: args.iter().map(|a| b(a)).collect(),
        };
        let mut entries = vec![membership(1, &[1, 2, 3])];
        let mut index = 2;
        for i in 0..300 {
            let ops = [
                data(&["HSET", "h", &format!("f{i}"), "v"]),
                data(&["ZADD", "z", &i.to_string(), &format!("m{}", i % 50)]),
                data(&["RPUSH", "l", &i.to_string()]),
                data(&["SADD", "s", &i.to_string()]),
            ];
            for op in ops {
                entries.push(normal(index, 1000, op));
                index += 1;
            }
        }
        entries.push(normal(index, 1000, data(&["SADD", "small", "1", "2"])));
        apply_all(&mut src, entries).await;
        let digest = src.keyspace().digest(1000);
        let snap = build(&mut src).await;
        let mut dst = open(dst_dir.path());
        dst.install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        assert_eq!(dst.keyspace().digest(1000), digest);
        let encoding = |key: &[u8]| {
            let slot = dst.keyspace().read_key_slot(key);
            let entry = slot.get(key, 1000).expect("restored");
            entry.collection().expect("a collection").encoding()
        };
        assert_eq!(encoding(b"h"), "hashtable");
        assert_eq!(encoding(b"z"), "listpack");
        assert_eq!(encoding(b"l"), "quicklist");
        assert_eq!(encoding(b"s"), "intset");
        assert_eq!(encoding(b"small"), "intset");
    }

    #[tokio::test]
    async fn get_current_snapshot_returns_the_built_snapshot() {
        let dir = TempDir::new().unwrap();
        let mut sm = open(dir.path());
        assert!(sm.get_current_snapshot().await.unwrap().is_none());
        apply_all(&mut sm, sets(1, 500, "k")).await;
        let mut built = build(&mut sm).await;
        let mut current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, built.meta);
        let bytes = read_all(&mut built.snapshot).await;
        assert_eq!(read_all(&mut current.snapshot).await, bytes);
        assert_eq!(&bytes[..8], b"SHOALSNP");
        assert_eq!(snap_files(dir.path()), vec!["snapshot-1-500.snap"]);
    }

    #[tokio::test]
    async fn a_damaged_snapshot_is_rejected_by_install_and_skipped_by_open() {
        let (src_dir, dst_dir) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        let mut src = open(src_dir.path());
        apply_all(&mut src, sets(1, 300, "a")).await;
        let older_state = dump(src.keyspace());
        build(&mut src).await;
        apply_all(&mut src, sets(301, 300, "b")).await;
        let newer = build(&mut src).await;
        let newer_path = src_dir.path().join("snapshot-1-600.snap");
        let good = fs::read(&newer_path).unwrap();

        // The follower has state of its own, which a rejected install must leave alone.
        let mut dst = open(dst_dir.path());
        apply_all(
            &mut dst,
            vec![normal(1, 1000, set("mine", "1", Expiry::Clear))],
        )
        .await;
        let dst_state = dump(dst.keyspace());
        let dst_applied = dst.applied_state().await.unwrap();

        let len = good.len();
        for at in [0, 9, 15, len / 2, len - 10, len - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x20;
            let bad_path = src_dir.path().join("bad-copy");
            fs::write(&bad_path, &bad).unwrap();
            let file = tokio::fs::File::open(&bad_path).await.unwrap();
            let err = dst.install_snapshot(&newer.meta, file).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "byte {at}: {err}");
            assert_eq!(dump(dst.keyspace()), dst_state);
            assert_eq!(dst.applied_state().await.unwrap(), dst_applied);
            assert!(dst.get_current_snapshot().await.unwrap().is_none());
            assert!(snap_files(dst_dir.path()).is_empty());
            fs::remove_file(&bad_path).unwrap();
        }

        // A meta that does not match the file is rejected too.
        let mut wrong = newer.meta.clone();
        wrong.last_log_id = Some(log_id(1, 601));
        let file = tokio::fs::File::open(&newer_path).await.unwrap();
        let err = dst.install_snapshot(&wrong, file).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(dump(dst.keyspace()), dst_state);

        // open falls back to the older valid snapshot, quarantining the damaged one.
        drop(src);
        let mut bad = good.clone();
        bad[len / 2] ^= 1;
        fs::write(&newer_path, &bad).unwrap();
        let mut reopened = open(src_dir.path());
        assert_eq!(
            reopened.applied_state().await.unwrap().0,
            Some(log_id(1, 300))
        );
        assert_eq!(dump(reopened.keyspace()), older_state);
        assert_eq!(
            snap_files(src_dir.path()),
            vec!["snapshot-1-300.snap", "snapshot-1-600.snap.corrupt"]
        );
        let current = reopened.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.last_log_id, Some(log_id(1, 300)));

        // With no valid snapshot left it starts empty.
        drop(reopened);
        let older_path = src_dir.path().join("snapshot-1-300.snap");
        let mut bytes = fs::read(&older_path).unwrap();
        bytes[20] ^= 1;
        fs::write(&older_path, &bytes).unwrap();
        let mut empty = open(src_dir.path());
        assert_eq!(
            empty.applied_state().await.unwrap(),
            (None, StoredMembership::default())
        );
        assert!(empty.keyspace().is_empty());
        assert!(empty.get_current_snapshot().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn writes_applied_during_a_build_stay_out_of_the_snapshot() {
        let (src_dir, dst_dir) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        let mut src = open(src_dir.path());
        apply_all(&mut src, sets(1, 3000, "k")).await;
        let at_build = dump(src.keyspace());
        let stamps_at_build = all_stamps(src.keyspace());
        let applied = src.applied_state().await.unwrap();

        let mut builder = src.get_snapshot_builder().await;
        // Not forced and a build is pending: deferred.
        assert!(src.try_create_snapshot_builder(false).await.is_none());
        let build = tokio::spawn(async move { builder.build_snapshot().await });
        // Writes racing the build (it runs on a blocking thread), touching every slot.
        let mut index = 3001;
        let mut more = Vec::new();
        for i in 0..2000u64 {
            let op = match i % 4 {
                0 => set(&format!("k{i}"), "changed", Expiry::Clear),
                1 => WriteOp::Delete {
                    keys: vec![b(&format!("k{i}"))],
                },
                2 => set(&format!("new{i}"), "x", Expiry::At(50_000)),
                _ => incr(&format!("n{i}")),
            };
            more.push(normal(index, 2000, op));
            index += 1;
            if i == 1000 {
                more.push(normal(index, 2000, WriteOp::FlushAll));
                index += 1;
            }
            if more.len() >= 50 {
                apply_all(&mut src, std::mem::take(&mut more)).await;
                tokio::task::yield_now().await;
            }
        }
        apply_all(&mut src, more).await;
        let snap = build.await.unwrap().unwrap();
        assert_eq!(
            (snap.meta.last_log_id, snap.meta.last_membership.clone()),
            applied
        );
        assert_ne!(dump(src.keyspace()), at_build);

        let mut dst = open(dst_dir.path());
        dst.install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        assert_eq!(dump(dst.keyspace()), at_build);
        assert_eq!(all_stamps(dst.keyspace()), stamps_at_build);
        assert_ne!(all_stamps(src.keyspace()), stamps_at_build);
        assert_eq!(dst.applied_state().await.unwrap(), applied);
    }

    /// Every slot's write stamps.
    fn all_stamps(ks: &Keyspace) -> Vec<Option<Stamps>> {
        (0..SLOT_COUNT).map(|slot| ks.slot_stamps(slot)).collect()
    }

    /// What `WATCH key` records at clock 1000.
    fn watch_print(ks: &Keyspace, key: &str) -> u64 {
        ks.read_slots([key.as_bytes()])
            .watch_print(key.as_bytes(), 1000)
    }

    #[tokio::test]
    async fn write_stamps_survive_a_snapshot_and_version_1_files_still_load() {
        let (src_dir, dst_dir, v1_dir) = (
            TempDir::new().unwrap(),
            TempDir::new().unwrap(),
            TempDir::new().unwrap(),
        );
        let mut src = open(src_dir.path());
        let mut entries = sets(1, 500, "k");
        // Rewrites with the same value: only the stamps tell them apart.
        entries.extend((0..100).map(|i| {
            let op = set(&format!("k{i}"), &format!("value-{i}"), Expiry::Clear);
            normal(501 + i, 1000, op)
        }));
        apply_all(&mut src, entries).await;
        let stamps = all_stamps(src.keyspace());
        assert!(stamps.iter().flatten().any(|s| s.iter().any(|&n| n > 1)));
        let prints: Vec<u64> = (0..500)
            .map(|i| watch_print(src.keyspace(), &format!("k{i}")))
            .collect();

        let snap = build(&mut src).await;
        let mut file = snap.snapshot;
        let bytes = read_all(&mut file).await;
        let mut dst = open(dst_dir.path());
        dst.install_snapshot(&snap.meta, file).await.unwrap();
        assert_eq!(all_stamps(dst.keyspace()), stamps);
        let dst_prints: Vec<u64> = (0..500)
            .map(|i| watch_print(dst.keyspace(), &format!("k{i}")))
            .collect();
        assert_eq!(dst_prints, prints);
        drop(dst);
        assert_eq!(all_stamps(open(dst_dir.path()).keyspace()), stamps);

        // The same snapshot as version 1 wrote it: no stamps section.
        let with_stamps = stamps.iter().flatten().count();
        let body_end = bytes.len() - TRAILER_LEN as usize - (4 + with_stamps * STAMP_RECORD_LEN);
        let mut v1 = bytes[..body_end].to_vec();
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        let records = bytes[bytes.len() - 12..bytes.len() - 4].to_vec();
        let crc = crc32fast::hash(&v1);
        v1.extend_from_slice(&records);
        v1.extend_from_slice(&crc.to_le_bytes());
        let name = snapshot_file_name(snap.meta.last_log_id.as_ref());
        fs::write(v1_dir.path().join(name), &v1).unwrap();
        let mut old = open(v1_dir.path());
        assert_eq!(dump(old.keyspace()), dump(src.keyspace()));
        assert!(all_stamps(old.keyspace()).iter().all(Option::is_none));
        assert_eq!(
            old.applied_state().await.unwrap(),
            src.applied_state().await.unwrap()
        );
    }

    #[tokio::test]
    async fn only_the_newest_two_snapshots_are_kept() {
        let dir = TempDir::new().unwrap();
        let mut sm = open(dir.path());
        for round in 0..4u64 {
            apply_all(&mut sm, sets(round * 10 + 1, 10, &format!("r{round}-"))).await;
            build(&mut sm).await;
        }
        assert_eq!(
            snap_files(dir.path()),
            vec!["snapshot-1-30.snap", "snapshot-1-40.snap"]
        );
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.last_log_id, Some(log_id(1, 40)));
    }

    #[tokio::test]
    async fn a_received_snapshot_file_installs() {
        let (src_dir, dst_dir) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        let mut src = open(src_dir.path());
        apply_all(&mut src, sets(1, 100, "k")).await;
        let mut snap = build(&mut src).await;
        let bytes = read_all(&mut snap.snapshot).await;

        let mut dst = open(dst_dir.path());
        let mut received = dst.begin_receiving_snapshot().await.unwrap();
        for chunk in bytes.chunks(1000) {
            received.write_all(chunk).await.unwrap();
        }
        dst.install_snapshot(&snap.meta, received).await.unwrap();
        assert_eq!(dump(dst.keyspace()), dump(src.keyspace()));
        assert_eq!(snap_files(dst_dir.path()), vec!["snapshot-1-100.snap"]);
    }
}
