//! Replay: rebuilding each hosted group's Raft storage from its snapshot file and the
//! log's records, starting at the last reset that names that snapshot.

use super::{Base, Tail, WalError, WalRecord};
use crate::store::Store;
use bytes::Bytes;
use protobuf::Message as _;
use raft::prelude::{Entry, HardState, Snapshot};
use std::io;
use std::path::Path;

/// A group's snapshot file: its checksum (crc32c, 4 bytes little-endian), then the
/// snapshot.
pub(super) fn read_snapshot(path: &Path) -> Result<Option<Snapshot>, WalError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let damaged = |reason: &str| WalError::damaged(path, 0, reason);
    let Some((head, body)) = bytes.split_first_chunk::<4>() else {
        return Err(damaged("too short for a snapshot"));
    };
    if u32::from_le_bytes(*head) != crc32c::crc32c(body) {
        return Err(damaged("the snapshot fails its checksum"));
    }
    Snapshot::parse_from_bytes(body)
        .map(Some)
        .map_err(|e| damaged(&format!("the snapshot does not decode: {e}")))
}

/// One group's replay: its store so far, and where its log starts.
pub(super) struct Replay {
    pub(super) voters: Vec<u64>,
    pub(super) snap: Option<Snapshot>,
    pub(super) base: Base,
    pub(super) store: Store,
    /// Past the reset naming its snapshot (from the start when it has none).
    pub(super) started: bool,
    /// Past a reset whose snapshot file never landed: no record of the group follows it
    /// before the fresh reset that opening the log then writes.
    pub(super) orphaned: bool,
    pub(super) tail: Tail,
    /// The segment of the last reset that names its snapshot, if any.
    pub(super) reset_in: Option<u64>,
}

impl Replay {
    pub(super) fn new(voters: Vec<u64>, snap: Option<Snapshot>) -> Result<Replay, WalError> {
        let base = snap.as_ref().map(Base::of).unwrap_or_default();
        let store = Replay::fresh(&voters, &snap)?;
        Ok(Replay {
            started: snap.is_none(),
            voters,
            snap,
            base,
            store,
            orphaned: false,
            tail: Tail {
                base,
                ..Tail::default()
            },
            reset_in: None,
        })
    }

    fn fresh(voters: &[u64], snap: &Option<Snapshot>) -> Result<Store, WalError> {
        let store = Store::new(voters.to_vec());
        if let Some(s) = snap {
            store.install(s.clone())?;
        }
        Ok(store)
    }

    pub(super) fn apply(
        &mut self,
        rec: WalRecord,
        segment: u64,
        path: &Path,
        offset: usize,
    ) -> Result<(), WalError> {
        let mut entries = Vec::with_capacity(rec.entries.len());
        for b in &rec.entries {
            entries.push(Entry::parse_from_bytes(b)?);
        }
        let hs = match &rec.hard_state {
            Some(b) => Some(HardState::parse_from_bytes(b)?),
            None => None,
        };
        let encoded: Vec<(u64, Bytes)> = entries.iter().map(|e| e.index).zip(rec.entries).collect();
        match rec.reset {
            Some(b) if b == self.base => {
                self.store = Replay::fresh(&self.voters, &self.snap)?;
                self.started = true;
                self.orphaned = false;
                self.reset_in = Some(segment);
                self.tail = Tail {
                    base: b,
                    ..Tail::default()
                };
            }
            Some(b) if self.started && b.index > self.base.index => {
                tracing::warn!(path = %path.display(), offset, group = rec.group, index = b.index, "ignoring a snapshot's reset whose snapshot was never written (a crash between the two)");
                self.orphaned = true;
                return Ok(());
            }
            // The reset of a snapshot older than the group's: what follows it is
            // superseded by the group's own reset, later in the log.
            Some(_) => {
                self.started = false;
                return Ok(());
            }
            None if !self.started => return Ok(()),
            None if self.orphaned => {
                return Err(WalError::damaged(
                    path,
                    offset as u64,
                    &format!(
                        "a record of group {} after a reset that has no snapshot",
                        rec.group
                    ),
                ))
            }
            None => {}
        }
        self.store.replay(hs.as_ref(), &entries)?;
        self.tail.append(rec.hard_state, encoded);
        Ok(())
    }
}
