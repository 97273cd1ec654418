//! The replica's durable Raft state: an append-only file of records, each holding the
//! entries and hard state of one Ready. Replaying it rebuilds the in-memory Raft storage
//! after a restart; a torn last record (a crash mid-write) is dropped.

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState};
use raft::storage::MemStorage;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

#[derive(Clone, PartialEq, prost::Message)]
struct WalRecord {
    /// raft-rs HardState in its own encoding, if it changed.
    #[prost(bytes = "vec", optional, tag = "1")]
    hard_state: Option<Vec<u8>>,
    /// raft-rs Entries in their own encoding.
    #[prost(bytes = "vec", repeated, tag = "2")]
    entries: Vec<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("wal i/o: {0}")]
    Io(#[from] io::Error),
    #[error("wal record does not decode: {0}")]
    Protobuf(#[from] protobuf::ProtobufError),
    #[error("wal replay: {0}")]
    Raft(#[from] raft::Error),
}

/// Applies one persisted record (what one `Persist` action wrote) to a storage being
/// rebuilt: entries overwrite any conflicting suffix, the hard state replaces the last.
pub fn replay_record(
    storage: &MemStorage,
    hs: Option<&HardState>,
    entries: &[Entry],
) -> Result<(), raft::Error> {
    let mut core = storage.wl();
    if !entries.is_empty() {
        core.append(entries)?;
    }
    if let Some(hs) = hs {
        core.set_hardstate(hs.clone());
    }
    Ok(())
}

pub struct Wal {
    file: File,
    fsync: bool,
    buf: Vec<u8>,
}

impl Wal {
    /// Opens (creating) the log at `path` and replays it into a fresh storage whose
    /// configuration is `voters`.
    pub fn open(path: &Path, fsync: bool, voters: Vec<u64>) -> Result<(Wal, MemStorage), WalError> {
        let storage = MemStorage::new_with_conf_state(ConfState::from((voters, vec![])));
        let mut data = Vec::new();
        if path.exists() {
            File::open(path)?.read_to_end(&mut data)?;
        }
        let mut rest = &data[..];
        let mut good = 0usize;
        while !rest.is_empty() {
            let Ok(rec) = WalRecord::decode_length_delimited(&mut rest) else {
                tracing::warn!(path = %path.display(), "dropping a torn record at the wal's tail");
                break;
            };
            let mut entries = Vec::with_capacity(rec.entries.len());
            for e in &rec.entries {
                entries.push(Entry::parse_from_bytes(e)?);
            }
            let hs = match rec.hard_state {
                Some(hs) => Some(HardState::parse_from_bytes(&hs)?),
                None => None,
            };
            replay_record(&storage, hs.as_ref(), &entries)?;
            good = data.len() - rest.len();
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        // Cut a torn tail so that new records follow the last whole one.
        file.set_len(good as u64)?;
        Ok((
            Wal {
                file,
                fsync,
                buf: Vec::new(),
            },
            storage,
        ))
    }

    /// Appends one record; durable on return when fsync is on.
    pub fn append(&mut self, hs: Option<&HardState>, entries: &[Entry]) -> Result<(), WalError> {
        let mut rec = WalRecord {
            hard_state: None,
            entries: Vec::with_capacity(entries.len()),
        };
        if let Some(hs) = hs {
            rec.hard_state = Some(hs.write_to_bytes()?);
        }
        for e in entries {
            rec.entries.push(e.write_to_bytes()?);
        }
        self.buf.clear();
        rec.encode_length_delimited(&mut self.buf)
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.file.write_all(&self.buf)?;
        if self.fsync {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: bytes::Bytes::from(vec![index as u8]),
            ..Default::default()
        }
    }

    #[test]
    fn replays_entries_hard_state_and_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g0.wal");
        {
            let (mut w, _) = Wal::open(&p, true, vec![1, 2, 3]).unwrap();
            w.append(None, &[entry(1, 1), entry(2, 1), entry(3, 1)])
                .unwrap();
            let hs = HardState {
                term: 2,
                commit: 2,
                ..Default::default()
            };
            // A new leader overwrote index 3.
            w.append(Some(&hs), &[entry(3, 2)]).unwrap();
        }
        // Tear the tail: a partial record follows.
        {
            let mut f = OpenOptions::new().append(true).open(&p).unwrap();
            f.write_all(&[0x20, 1, 2]).unwrap();
        }
        let (mut w, s) = Wal::open(&p, false, vec![1, 2, 3]).unwrap();
        assert_eq!(s.last_index().unwrap(), 3);
        assert_eq!(s.term(3).unwrap(), 2);
        assert_eq!(s.initial_state().unwrap().hard_state.commit, 2);
        w.append(None, &[entry(4, 2)]).unwrap();
        drop(w);
        let (_, s) = Wal::open(&p, false, vec![1, 2, 3]).unwrap();
        assert_eq!(s.last_index().unwrap(), 4);
    }
}
