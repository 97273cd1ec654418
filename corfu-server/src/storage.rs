//! Where a log server keeps its entries: the [`Storage`] trait the runtimes carry a node's
//! disk actions out on ([`run_disk_action`]), and [`MemStore`], which keeps them in memory
//! (the simulator's disk: what was synced survives a crash, the rest does not).

use bytes::Bytes;
use mason_common::logmsg::LogKind;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// What one position holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: LogKind,
    pub payload: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// What is stored for `pos` fails its checksum (or cannot be read back whole).
    #[error("position {pos}: corrupt entry in {path} at offset {offset}: {reason}")]
    Corrupt {
        pos: u64,
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("position {pos} already holds an entry")]
    Occupied { pos: u64 },
    #[error("entry of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
}

/// What a lookup found at one position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Nothing is stored there.
    Free(u64),
    /// This entry, checked against its checksum.
    Held(u64, Entry),
    /// What is stored fails its checksum: never returned as data.
    Corrupt(u64, String),
    /// The disk could not be read.
    Failed(u64, String),
}

/// Looks up the positions in order, stopping once the entries found pass `budget` bytes
/// of payload.
pub fn lookup<S: Storage>(store: &S, positions: &[u64], budget: usize) -> Vec<Lookup> {
    let mut out = Vec::with_capacity(positions.len());
    let mut bytes = 0usize;
    for &p in positions {
        if bytes >= budget {
            break;
        }
        out.push(match store.get(p) {
            Ok(None) => Lookup::Free(p),
            Ok(Some(e)) => {
                bytes = bytes.saturating_add(e.payload.len());
                Lookup::Held(p, e)
            }
            Err(StoreError::Corrupt {
                reason,
                path,
                offset,
                ..
            }) => Lookup::Corrupt(
                p,
                format!("{} at offset {offset}: {reason}", path.display()),
            ),
            Err(e) => Lookup::Failed(p, e.to_string()),
        });
    }
    out
}

/// What a disk action asks the node to hear back.
pub enum DiskDone {
    Looked(u64, Vec<Lookup>),
    Synced(u64),
}

/// Carries out a node's disk action on `store`: a lookup's findings or a sync's
/// completion to report back, or nothing (an append). An error means the server must
/// stop: an append or sync that failed may have left the disk in an unknown state.
pub fn run_disk_action<S: Storage>(
    store: &mut S,
    a: crate::node::NodeAction,
) -> Result<Option<DiskDone>, StoreError> {
    use crate::node::NodeAction;
    match a {
        NodeAction::Lookup {
            token,
            positions,
            budget,
        } => Ok(Some(DiskDone::Looked(
            token,
            lookup(store, &positions, budget),
        ))),
        NodeAction::Append { pos, entry, repair } => {
            store.append(pos, &entry, repair)?;
            Ok(None)
        }
        NodeAction::Sync(gen) => {
            store.sync()?;
            Ok(Some(DiskDone::Synced(gen)))
        }
        NodeAction::Send { .. } | NodeAction::Forward(_) => Ok(None),
    }
}

/// A log server's entries by position. Appends become durable at the next [`Storage::sync`].
pub trait Storage {
    /// The entry at `pos`, checked against its checksum; `Ok(None)` if nothing is there.
    fn get(&self, pos: u64) -> Result<Option<Entry>, StoreError>;
    /// Whether something (possibly corrupt) is stored at `pos`.
    fn contains(&self, pos: u64) -> bool;
    /// Stores `entry` at `pos`. `pos` must be free, unless `repair` is set and what is
    /// stored there is known to be corrupt (then the new entry replaces it).
    fn append(&mut self, pos: u64, entry: &Entry, repair: bool) -> Result<(), StoreError>;
    /// Makes every append so far durable (fdatasync, unless syncing is off).
    fn sync(&mut self) -> Result<(), StoreError>;
    /// One past the highest position held (0 when empty).
    fn next_position(&self) -> u64;
    /// Positions whose stored entry was found corrupt (when opened, or when read since).
    fn damaged(&self) -> Vec<u64>;
}

/// Entries in memory. `synced` is what a crash keeps.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    entries: HashMap<u64, Entry>,
    unsynced: BTreeMap<u64, Entry>,
    /// One past the highest synced position.
    next: u64,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// What survives a crash: the synced entries only.
    pub fn crash(&self) -> MemStore {
        MemStore {
            entries: self.entries.clone(),
            unsynced: BTreeMap::new(),
            next: self.next,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len() + self.unsynced.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Storage for MemStore {
    fn get(&self, pos: u64) -> Result<Option<Entry>, StoreError> {
        Ok(self
            .unsynced
            .get(&pos)
            .or_else(|| self.entries.get(&pos))
            .cloned())
    }

    fn contains(&self, pos: u64) -> bool {
        self.entries.contains_key(&pos) || self.unsynced.contains_key(&pos)
    }

    fn append(&mut self, pos: u64, entry: &Entry, repair: bool) -> Result<(), StoreError> {
        if self.contains(pos) && !repair {
            return Err(StoreError::Occupied { pos });
        }
        self.unsynced.insert(pos, entry.clone());
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        let moved = std::mem::take(&mut self.unsynced);
        if let Some((p, _)) = moved.last_key_value() {
            self.next = self.next.max(p + 1);
        }
        self.entries.extend(moved);
        Ok(())
    }

    fn next_position(&self) -> u64 {
        let b = self.unsynced.keys().next_back().map_or(0, |p| p + 1);
        self.next.max(b)
    }

    fn damaged(&self) -> Vec<u64> {
        Vec::new()
    }
}
