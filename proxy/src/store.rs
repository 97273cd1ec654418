//! A replica's Raft storage: raft-rs's `MemStorage` for entries and hard state, plus the
//! latest snapshot of the replica's state machine with its data (`MemStorage` makes
//! snapshots without data). A replica compacts its log behind a snapshot it takes; a
//! follower that fell behind the compacted prefix is sent that snapshot instead.

use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use std::sync::{Arc, RwLock};

#[derive(Clone)]
pub struct Store {
    mem: MemStorage,
    snap: Arc<RwLock<Snapshot>>,
}

impl Store {
    pub fn new(voters: Vec<u64>) -> Store {
        Store {
            mem: MemStorage::new_with_conf_state(ConfState::from((voters, vec![]))),
            snap: Arc::new(RwLock::new(Snapshot::default())),
        }
    }

    pub fn mem(&self) -> &MemStorage {
        &self.mem
    }

    /// The latest snapshot (index 0 if there is none).
    pub fn snapshot_now(&self) -> Snapshot {
        self.snap.read().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snap
            .read()
            .map(|s| s.get_metadata().index)
            .unwrap_or(0)
    }

    /// Installs a snapshot received from the leader or read back from disk: the log up to
    /// it is replaced by it.
    pub fn install(&self, snap: Snapshot) -> Result<(), raft::Error> {
        self.mem.wl().apply_snapshot(snap.clone())?;
        if let Ok(mut s) = self.snap.write() {
            *s = snap;
        }
        Ok(())
    }

    /// Keeps a snapshot this replica took of its own applied state, and drops the log's
    /// entries below `compact_to` (at most the snapshot's index, so the log keeps its tail).
    pub fn take(&self, snap: Snapshot, compact_to: u64) -> Result<(), raft::Error> {
        let to = compact_to.min(snap.get_metadata().index);
        self.mem.wl().compact(to)?;
        if let Ok(mut s) = self.snap.write() {
            *s = snap;
        }
        Ok(())
    }

    /// Appends entries replayed from disk, skipping those the snapshot already holds.
    pub fn replay(&self, hs: Option<&HardState>, entries: &[Entry]) -> Result<(), raft::Error> {
        let floor = self.snapshot_index();
        let mut core = self.mem.wl();
        let keep: Vec<Entry> = entries
            .iter()
            .filter(|e| e.index > floor)
            .cloned()
            .collect();
        if !keep.is_empty() {
            core.append(&keep)?;
        }
        if let Some(hs) = hs {
            let mut hs = hs.clone();
            hs.commit = hs.commit.max(floor);
            core.set_hardstate(hs);
        }
        Ok(())
    }

    /// The hard state and every entry held, for rewriting the log after a snapshot.
    pub fn contents(&self) -> (HardState, Vec<Entry>) {
        self.contents_after(0)
    }

    /// The hard state and the entries held past `index` (those a log rewritten at a
    /// snapshot of `index` keeps; not the ones kept in memory behind it).
    pub fn contents_after(&self, index: u64) -> (HardState, Vec<Entry>) {
        let core = self.mem.rl();
        let hs = core.hard_state().clone();
        drop(core);
        let (first, last) = (
            self.first_index().unwrap_or(1).max(index + 1),
            self.last_index().unwrap_or(0),
        );
        let entries = if last >= first {
            self.mem
                .entries(first, last + 1, None, GetEntriesContext::empty(false))
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        (hs, entries)
    }
}

impl Storage for Store {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if let Ok(s) = self.snap.read() {
            let m = s.get_metadata();
            if m.index > 0 && idx == m.index {
                return Ok(m.term);
            }
        }
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let s = self.snapshot_now();
        if s.get_metadata().index == 0 {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(s)
    }
}
