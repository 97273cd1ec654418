//! The replica's durable Raft state: the latest snapshot (`<name>.snap`, replaced
//! atomically) and an append-only log of records, each holding the entries and hard state
//! of one Ready. After a snapshot the log is rewritten to hold only what follows it.
//! Replaying both rebuilds the in-memory Raft storage after a restart; a torn last record
//! (a crash mid-write) is dropped.

use crate::store::Store;
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{Entry, HardState, Snapshot};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

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

pub struct Wal {
    path: PathBuf,
    file: File,
    fsync: bool,
    buf: Vec<u8>,
}

fn snap_path(path: &Path) -> PathBuf {
    path.with_extension("snap")
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that a crash leaves
/// either the old file or the new one.
fn replace_file(path: &Path, bytes: &[u8], fsync: bool) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    if fsync {
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)?;
    if fsync {
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
    }
    Ok(())
}

fn encode_record(
    hs: Option<&HardState>,
    entries: &[Entry],
    buf: &mut Vec<u8>,
) -> Result<(), WalError> {
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
    rec.encode_length_delimited(buf)
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(())
}

impl Wal {
    /// Opens (creating) the log at `path` and replays its snapshot and records into a
    /// fresh storage whose configuration is `voters`.
    pub fn open(path: &Path, fsync: bool, voters: Vec<u64>) -> Result<(Wal, Store), WalError> {
        let storage = Store::new(voters);
        let sp = snap_path(path);
        if sp.exists() {
            let bytes = std::fs::read(&sp)?;
            let snap = Snapshot::parse_from_bytes(&bytes)?;
            storage.install(snap)?;
        }
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
            storage.replay(hs.as_ref(), &entries)?;
            good = data.len() - rest.len();
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        // Cut a torn tail so that new records follow the last whole one.
        file.set_len(good as u64)?;
        Ok((
            Wal {
                path: path.to_path_buf(),
                file,
                fsync,
                buf: Vec::new(),
            },
            storage,
        ))
    }

    /// Replaces the snapshot, then the log by one record of `hs` and `entries` (what the
    /// storage holds after the snapshot). Durable on return when fsync is on.
    pub fn install_snapshot(
        &mut self,
        snap: &Snapshot,
        hs: &HardState,
        entries: &[Entry],
    ) -> Result<(), WalError> {
        replace_file(&snap_path(&self.path), &snap.write_to_bytes()?, self.fsync)?;
        self.buf.clear();
        encode_record(Some(hs), entries, &mut self.buf)?;
        replace_file(&self.path, &self.buf, self.fsync)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        Ok(())
    }

    /// Appends one record; durable on return when fsync is on.
    pub fn append(&mut self, hs: Option<&HardState>, entries: &[Entry]) -> Result<(), WalError> {
        self.buf.clear();
        encode_record(hs, entries, &mut self.buf)?;
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

#[cfg(test)]
mod snapshot_tests {
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
    fn a_snapshot_replaces_the_log_prefix_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g0.wal");
        {
            let (mut w, s) = Wal::open(&p, true, vec![1, 2, 3]).unwrap();
            let ents: Vec<Entry> = (1..=10).map(|i| entry(i, 1)).collect();
            w.append(None, &ents).unwrap();
            s.replay(None, &ents).unwrap();
            let mut snap = Snapshot {
                data: bytes::Bytes::from_static(b"state at 8"),
                ..Default::default()
            };
            snap.mut_metadata().index = 8;
            snap.mut_metadata().term = 1;
            s.take(snap.clone(), 6).unwrap();
            let (mut hs, kept) = s.contents();
            hs.commit = 9;
            assert_eq!(kept.first().map(|e| e.index), Some(6));
            w.install_snapshot(&snap, &hs, &kept).unwrap();
            w.append(None, &[entry(11, 2)]).unwrap();
        }
        let (_, s) = Wal::open(&p, false, vec![1, 2, 3]).unwrap();
        assert_eq!(s.snapshot_now().data.as_ref(), b"state at 8");
        assert_eq!(s.first_index().unwrap(), 9);
        assert_eq!(s.last_index().unwrap(), 11);
        assert_eq!(s.term(8).unwrap(), 1);
        assert_eq!(s.term(11).unwrap(), 2);
        assert_eq!(s.initial_state().unwrap().hard_state.commit, 9);
    }
}
