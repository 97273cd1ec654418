//! A proxy process's write-ahead log, shared by every group it hosts: one append-only log
//! of records in segments (`<dir>/proxy.wal.<seq>`), each record holding one group's
//! entries and hard state from one Raft ready, and per group its latest snapshot
//! (`<dir>/g<G>.snap`, replaced atomically). One write makes durable every record staged
//! meanwhile, whichever group staged it: group commit across the groups of a process,
//! which syncs once where it synced once per group. With fsync on that write is direct
//! and synchronous (`O_DIRECT | O_DSYNC`, `wal/direct.rs`), or, where the file system
//! refuses, a write to the page cache and an fdatasync.
//!
//! A snapshot is paired with a *reset* record that names it (its index and term) and holds
//! the group's hard state and the entries after it. A group's replay starts at the last
//! reset naming the snapshot in its snapshot file, and skips the group's records before
//! it. The reset is durable before the snapshot file is replaced; after a crash between
//! the two, the old snapshot still has its own reset, and the new reset (which nothing
//! follows, and on which nothing was acknowledged) is ignored: opening the log then writes
//! a fresh reset of the old snapshot, so that what the group writes next follows one.
//!
//! When the open segment passes [`SEGMENT_BYTES`] the log goes on in a new one, and a
//! segment is deleted once every group has a reset in a later one: a group's records
//! before its last reset are never replayed. A busy group's snapshots write its resets;
//! for a group that pins more than [`RETAIN_SEGMENTS`] segments (an idle one, say) a new
//! segment starts with a reset of it (from the log's copy of its live tail: its hard
//! state and the entries since its snapshot), unless that would write more than half of
//! what it frees. So starting a new segment is cheap, and rarely writes more than the
//! records it was given, and the log keeps about [`RETAIN_SEGMENTS`] segments at most
//! (more only for tails that large). With fsync on, a segment is preallocated
//! [`PREALLOCATE`] bytes at a time ahead of its records, by writing zeros (on a thread of
//! its own, while the writer writes below), and records are written over them: an
//! fdatasync that changes no metadata is cheaper (on this project's VM, 156-167 us instead
//! of 250 for a small record). A segment ends at its last record, or where only zeros
//! follow.
//!
//! Records are framed and checksummed, and damage refused or cut as a torn tail, by
//! `wal/frame.rs`. When in doubt the proxy refuses to start: its groups go on with the
//! other replicas, and a replica started afresh catches up from them.

use crate::store::Store;
use bytes::Bytes;
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{Entry, HardState, Snapshot};
use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

mod direct;
mod frame;
mod grow;
mod remove;
mod replay;
#[cfg(test)]
mod tests;

use direct::Direct;
use replay::{read_snapshot, Replay};

/// The size past which the log starts a new segment and drops the older ones.
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// With fsync on, a segment grows by this much at a time, ahead of its records.
pub const PREALLOCATE: u64 = 4 << 20;
/// Past this many segments kept for one group's records before its last reset, a new
/// segment starts with a reset of that group.
pub const RETAIN_SEGMENTS: u64 = 4;

#[derive(Clone, PartialEq, prost::Message)]
struct WalRecord {
    /// raft-rs HardState in its own encoding, if it changed.
    #[prost(bytes = "bytes", optional, tag = "1")]
    hard_state: Option<Bytes>,
    /// raft-rs Entries in their own encoding.
    #[prost(bytes = "bytes", repeated, tag = "2")]
    entries: Vec<Bytes>,
    #[prost(uint32, tag = "3")]
    group: u32,
    /// A reset: the group's log restarts here, after this snapshot.
    #[prost(message, optional, tag = "4")]
    reset: Option<Base>,
}

/// The snapshot a group's log starts after (0, 0: none).
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
struct Base {
    #[prost(uint64, tag = "1")]
    index: u64,
    #[prost(uint64, tag = "2")]
    term: u64,
}

impl Base {
    fn of(snap: &Snapshot) -> Base {
        let m = snap.get_metadata();
        Base {
            index: m.index,
            term: m.term,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("wal i/o: {0}")]
    Io(#[from] io::Error),
    #[error("wal record does not decode: {0}")]
    Protobuf(#[from] protobuf::ProtobufError),
    #[error("wal replay: {0}")]
    Raft(#[from] raft::Error),
    #[error("{path} is damaged at offset {offset}: {reason} (records after it were acknowledged; refusing to start without them)")]
    Damaged {
        path: String,
        offset: u64,
        reason: String,
    },
    #[error("{0} is a per-group log of an older mason; this one keeps one log per proxy (start this replica from an empty data dir: it catches up from the other replicas)")]
    Legacy(String),
    #[error("{0} is a log of an older mason (its records are not numbered by write); start this replica from an empty data dir: it catches up from the other replicas")]
    OldFormat(String),
    #[error("group {0} is not hosted by this log")]
    UnknownGroup(u32),
}

impl WalError {
    fn damaged(path: &Path, offset: u64, reason: &str) -> WalError {
        WalError::Damaged {
            path: path.display().to_string(),
            offset,
            reason: reason.to_string(),
        }
    }
}

/// A group's live tail, as replay would rebuild it: what a reset of it holds.
#[derive(Default)]
struct Tail {
    base: Base,
    hard_state: Option<Bytes>,
    entries: VecDeque<(u64, Bytes)>,
}

impl Tail {
    /// About the bytes a reset of this tail takes (its entries' and hard state's).
    fn bytes(&self) -> usize {
        let hs = self.hard_state.as_ref().map_or(0, Bytes::len);
        hs + self
            .entries
            .iter()
            .map(|(_, e)| e.len() + 16)
            .sum::<usize>()
    }

    fn append(&mut self, hs: Option<Bytes>, entries: Vec<(u64, Bytes)>) {
        if hs.is_some() {
            self.hard_state = hs;
        }
        if let Some((first, _)) = entries.first() {
            while self.entries.back().is_some_and(|(i, _)| i >= first) {
                self.entries.pop_back();
            }
        }
        self.entries.extend(entries);
    }

    fn record(&self, group: u32) -> WalRecord {
        WalRecord {
            hard_state: self.hard_state.clone(),
            entries: self.entries.iter().map(|(_, b)| b.clone()).collect(),
            group,
            reset: Some(self.base),
        }
    }
}

/// A hard state and entries in raft-rs's encoding, each entry with its index.
type Encoded = (Option<Bytes>, Vec<(u64, Bytes)>);

fn encode(hs: Option<&HardState>, entries: &[Entry]) -> Result<Encoded, WalError> {
    let hs = match hs {
        Some(hs) => Some(Bytes::from(hs.write_to_bytes()?)),
        None => None,
    };
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        out.push((e.index, Bytes::from(e.write_to_bytes()?)));
    }
    Ok((hs, out))
}

fn push_record(buf: &mut Vec<u8>, rec: &WalRecord) -> Result<(), WalError> {
    frame::push(buf, |b| {
        rec.encode(b)
            .map_err(|e| WalError::Io(io::Error::other(e.to_string())))
    })
}

const PREFIX: &str = "proxy.wal.";

fn segment(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{seq}"))
}

fn snap_path(dir: &Path, group: u32) -> PathBuf {
    dir.join(format!("g{group}.snap"))
}

/// The log's segments in `dir`, oldest first; refuses a per-group log of an older mason
/// (its records would otherwise be silently ignored).
fn segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut seqs = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let n = e?.file_name();
        let n = n.to_string_lossy();
        if let Some(seq) = n.strip_prefix(PREFIX).and_then(|x| x.parse::<u64>().ok()) {
            seqs.push(seq);
        } else if n.starts_with('g') && n.contains(".wal") {
            return Err(WalError::Legacy(dir.join(&*n).display().to_string()));
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Makes segment `seq` (it must not exist).
fn create_segment(dir: &Path, seq: u64) -> io::Result<File> {
    OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(segment(dir, seq))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that a crash leaves
/// either the old file or the new one.
/// The file replaced is freed on a thread of its own (`wal/remove.rs`).
fn replace_file(path: &Path, bytes: &[u8], fsync: bool) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    if fsync {
        f.sync_data()?;
    }
    // Held across the rename, so that the old file's blocks are not freed in this thread.
    let old = File::open(path).ok();
    std::fs::rename(&tmp, path)?;
    remove::drop_in_background(old);
    if fsync {
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
    }
    Ok(())
}

pub struct Wal {
    dir: PathBuf,
    seq: u64,
    file: File,
    /// Bytes in the open segment's records.
    len: u64,
    /// The number of the next write (consecutive across segments and restarts; see
    /// `wal/frame.rs`).
    next_write: u64,
    /// The open segment's size on disk (its records, then zeros).
    allocated: u64,
    /// Preallocating (fsync on, and the file system can).
    prealloc: bool,
    fsync: bool,
    /// With fsync on, the open segment's handle for direct, synchronous writes (none
    /// where the file system refuses them: then a write is followed by an fdatasync).
    direct: Option<Direct>,
    buf: Vec<u8>,
    tails: BTreeMap<u32, Tail>,
    /// Per group, the segment its replay starts in: the one holding its last reset (the
    /// oldest segment kept, for a group that has none).
    reset_in: BTreeMap<u32, u64>,
    /// The bytes of every segment kept before the open one.
    closed: BTreeMap<u64, u64>,
    segment_bytes: u64,
    /// Resets the log wrote by itself, for groups that pinned old segments (tests).
    forced_resets: u64,
    /// With fsync on, the open segment's growth under way on a thread of its own: the end
    /// it will have preallocated to, and whether it could.
    growing: Option<(u64, std::thread::JoinHandle<bool>)>,
    /// Preallocations the writer did itself, in its own path (tests).
    grown_inline: u64,
}

impl Wal {
    /// Opens (creating) the log in `dir` for `groups`, and replays each group's snapshot
    /// and records into a fresh storage whose configuration is `voters`.
    pub fn open(
        dir: &Path,
        fsync: bool,
        groups: &[u32],
        voters: Vec<u64>,
    ) -> Result<(Wal, BTreeMap<u32, Store>), WalError> {
        std::fs::create_dir_all(dir)?;
        let seqs = segments(dir)?;
        let mut replays = BTreeMap::new();
        for &g in groups {
            let snap = read_snapshot(&snap_path(dir, g))?;
            replays.insert(g, Replay::new(voters.clone(), snap)?);
        }
        let mut good = 0;
        let mut zeros_after = true;
        // The last segment's bytes from the start of the block its last record ends in.
        let mut tail = Vec::new();
        let mut chain = frame::Chain::default();
        let mut closed = BTreeMap::new();
        for (i, &seq) in seqs.iter().enumerate() {
            let path = segment(dir, seq);
            let data = std::fs::read(&path)?;
            // A write that a killed process left unsynced reads back whole from the page
            // cache: make it durable before anything that follows it is written or
            // acknowledged (a torn write must be the last one).
            if fsync {
                File::open(&path)?.sync_data()?;
            }
            let scanned = frame::records(&data, &path, i + 1 == seqs.len(), &mut chain)?;
            good = scanned.end as u64;
            if i + 1 < seqs.len() {
                closed.insert(seq, good);
            }
            zeros_after = data[scanned.end..].iter().all(|b| *b == 0);
            let from = scanned.end - scanned.end % direct::BLOCK as usize;
            tail = data[from..scanned.end].to_vec();
            for (offset, range) in scanned.records {
                let rec = WalRecord::decode(&data[range]).map_err(|e| {
                    WalError::damaged(
                        &path,
                        offset as u64,
                        &format!("a record that does not decode: {e}"),
                    )
                })?;
                let Some(r) = replays.get_mut(&rec.group) else {
                    let why = format!(
                        "a record of group {}, which this proxy does not host",
                        rec.group
                    );
                    return Err(WalError::damaged(&path, offset as u64, &why));
                };
                r.apply(rec, seq, &path, offset)?;
            }
        }
        let mut stores = BTreeMap::new();
        let mut tails = BTreeMap::new();
        let mut reset_in = BTreeMap::new();
        let mut orphaned = Vec::new();
        let oldest = seqs.first().copied().unwrap_or(1);
        for (g, r) in replays {
            reset_in.insert(g, r.reset_in.unwrap_or(oldest));
            if r.orphaned {
                orphaned.push(g);
            }
            if !r.started && r.snap.is_some() {
                let why = format!(
                    "no record in the log starts after this snapshot (index {}, term {})",
                    r.base.index, r.base.term
                );
                return Err(WalError::damaged(&snap_path(dir, g), 0, &why));
            }
            stores.insert(g, r.store);
            tails.insert(g, r.tail);
        }
        let (seq, file) = match seqs.last() {
            Some(&seq) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(segment(dir, seq))?;
                // Cut a torn tail so that what follows the last whole record reads as
                // zeros. (Only then: on ext4 a truncated file is flushed whole when it is
                // closed.)
                // The cut is durable before anything is written after it, so that no
                // record of the torn write can reappear after the ones that follow.
                if !zeros_after {
                    file.set_len(good)?;
                    if fsync {
                        file.sync_all()?;
                    }
                }
                (seq, file)
            }
            None => {
                let file = create_segment(dir, 1)?;
                if fsync {
                    sync_dir(dir)?;
                }
                (1, file)
            }
        };
        let allocated = file.metadata()?.len();
        let direct = if fsync {
            Direct::open(&segment(dir, seq), &tail)
        } else {
            None
        };
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            seq,
            file,
            len: good,
            next_write: chain.next_write(),
            allocated,
            prealloc: fsync,
            fsync,
            direct,
            buf: Vec::new(),
            tails,
            reset_in,
            closed,
            segment_bytes: SEGMENT_BYTES,
            forced_resets: 0,
            growing: None,
            grown_inline: 0,
        };
        // A group whose last reset is an orphan starts again from its old snapshot: a
        // fresh reset of it goes first, so that the records it writes now follow a reset
        // that names its snapshot (replay would refuse them after the orphan).
        for &g in &orphaned {
            if let Some(t) = wal.tails.get(&g) {
                push_record(&mut wal.buf, &t.record(g))?;
            }
        }
        wal.write()?;
        for g in orphaned {
            wal.reset_in.insert(g, wal.seq);
        }
        // Segments left by a process that ended before it deleted them.
        remove::leftovers_in_background(dir);
        wal.collect(None);
        wal.maybe_roll()?;
        Ok((wal, stores))
    }

    /// Where the next record goes in the open segment.
    #[cfg(test)]
    fn end(&self) -> u64 {
        self.len
    }

    /// Starts a new segment past `bytes` instead of [`SEGMENT_BYTES`] (tests).
    pub fn set_segment_bytes(&mut self, bytes: u64) {
        self.segment_bytes = bytes.max(1);
    }

    /// Encodes one record of `group` to be written by the next [`Wal::commit`] (group
    /// commit: the records staged meanwhile share one write and one fdatasync).
    pub fn stage(
        &mut self,
        group: u32,
        hs: Option<&HardState>,
        entries: &[Entry],
    ) -> Result<(), WalError> {
        let tail = self
            .tails
            .get_mut(&group)
            .ok_or(WalError::UnknownGroup(group))?;
        let (hs, encoded) = encode(hs, entries)?;
        let rec = WalRecord {
            hard_state: hs.clone(),
            entries: encoded.iter().map(|(_, b)| b.clone()).collect(),
            group,
            reset: None,
        };
        push_record(&mut self.buf, &rec)?;
        tail.append(hs, encoded);
        Ok(())
    }

    /// Makes `snap` the base of `group`'s log: a reset holding `hs` and `entries` (those
    /// after the snapshot) is written and synced with what was staged before it, then the
    /// snapshot file is replaced. Durable on return when fsync is on.
    pub fn install_snapshot(
        &mut self,
        group: u32,
        snap: &Snapshot,
        hs: &HardState,
        entries: &[Entry],
    ) -> Result<(), WalError> {
        if !self.tails.contains_key(&group) {
            return Err(WalError::UnknownGroup(group));
        }
        let (hs, encoded) = encode(Some(hs), entries)?;
        let tail = Tail {
            base: Base::of(snap),
            hard_state: hs,
            entries: encoded.into(),
        };
        push_record(&mut self.buf, &tail.record(group))?;
        self.write()?;
        let body = snap.write_to_bytes()?;
        let mut bytes = crc32c::crc32c(&body).to_le_bytes().to_vec();
        bytes.extend_from_slice(&body);
        replace_file(&snap_path(&self.dir, group), &bytes, self.fsync)?;
        self.tails.insert(group, tail);
        self.reset_in.insert(group, self.seq);
        self.collect(None);
        self.maybe_roll()
    }

    /// Appends one record; durable on return when fsync is on.
    pub fn append(
        &mut self,
        group: u32,
        hs: Option<&HardState>,
        entries: &[Entry],
    ) -> Result<(), WalError> {
        self.stage(group, hs, entries)?;
        self.commit()?;
        Ok(())
    }

    /// Writes the staged records, and syncs them when fsync is on: durable on return.
    /// Returns the bytes written.
    pub fn commit(&mut self) -> Result<usize, WalError> {
        let n = self.write()?;
        self.maybe_roll()?;
        Ok(n)
    }

    fn write(&mut self) -> Result<usize, WalError> {
        let n = self.buf.len();
        if n > 0 {
            self.make_room(n as u64);
            frame::seal(&mut self.buf, self.next_write);
            if !self.write_direct()? {
                self.file.write_all_at(&self.buf, self.len)?;
                if self.fsync {
                    self.file.sync_data()?;
                }
            }
            self.next_write += 1;
            self.buf.clear();
            self.len += n as u64;
        }
        Ok(n)
    }

    /// Writes the sealed buffer through the direct handle, if there is one; whether it
    /// did. A direct write refused as invalid (an alignment this device does not take)
    /// drops the handle: this write and the later ones go through the page cache.
    fn write_direct(&mut self) -> Result<bool, WalError> {
        let Some(d) = self.direct.as_mut() else {
            return Ok(false);
        };
        match d.write(self.len, &self.buf) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::warn!(error = %e, "wal: direct write refused; writing through the page cache and fdatasync");
                self.direct = None;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Past the segment size: a new segment, which starts with a reset of each group that
    /// pins too many old ones ([`Wal::force_resets`]); the segments no group needs any
    /// more are removed (in the background).
    fn maybe_roll(&mut self) -> Result<(), WalError> {
        if self.len < self.segment_bytes {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let next = self.seq + 1;
        let f = create_segment(&self.dir, next)?;
        if self.fsync {
            sync_dir(&self.dir)?;
        }
        // The old segment's growth (if one is under way) ends before it is closed.
        self.finish_growing();
        let closing = std::mem::replace(&mut self.file, f);
        self.closed.insert(self.seq, self.len);
        self.seq = next;
        (self.len, self.allocated) = (0, 0);
        if self.direct.is_some() {
            self.direct = Direct::open(&segment(&self.dir, next), &[]);
        }
        let forced = self.force_resets()?;
        tracing::info!(
            segment = next,
            forced,
            kept = self.closed.len(),
            us = started.elapsed().as_micros() as u64,
            "wal: a new segment"
        );
        self.collect(Some(closing));
        Ok(())
    }

    /// When a group's last reset is more than [`RETAIN_SEGMENTS`] segments back: a reset of
    /// every group whose last one is before the previous segment, written now, unless
    /// those resets would take more than half of the bytes they free. Returns how many.
    fn force_resets(&mut self) -> Result<usize, WalError> {
        let Some(&oldest) = self.reset_in.values().min() else {
            return Ok(0);
        };
        if self.seq - oldest <= RETAIN_SEGMENTS {
            return Ok(0);
        }
        let before = self.seq - 1;
        let pinning: Vec<u32> = self
            .reset_in
            .iter()
            .filter(|(_, s)| **s < before)
            .map(|(g, _)| *g)
            .collect();
        let resets: usize = pinning
            .iter()
            .filter_map(|g| self.tails.get(g))
            .map(Tail::bytes)
            .sum();
        let freed: u64 = self.closed.range(..before).map(|(_, b)| b).sum();
        if resets as u64 > freed / 2 {
            return Ok(0);
        }
        for g in &pinning {
            if let Some(t) = self.tails.get(g) {
                push_record(&mut self.buf, &t.record(*g))?;
            }
        }
        self.write()?;
        for g in &pinning {
            self.reset_in.insert(*g, self.seq);
        }
        self.forced_resets += pinning.len() as u64;
        Ok(pinning.len())
    }

    /// Removes, in the background, the segments before every group's last reset (once
    /// that reset is durable: the callers wrote it), and closes `closing`: closing and
    /// unlinking a large file can take long, and nothing waits for it. A segment is
    /// renamed out of the log and cut a step at a time (`wal/remove.rs`).
    fn collect(&mut self, closing: Option<File>) {
        let from = self
            .reset_in
            .values()
            .min()
            .copied()
            .unwrap_or(self.seq)
            .min(self.seq);
        let old: Vec<PathBuf> = self
            .closed
            .range(..from)
            .map(|(s, _)| segment(&self.dir, *s))
            .collect();
        self.closed.retain(|s, _| *s >= from);
        if old.is_empty() && closing.is_none() {
            return;
        }
        remove::segments_in_background(self.dir.clone(), old, closing, self.fsync);
    }
}
