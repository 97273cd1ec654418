//! The replica's durable Raft state: the latest snapshot (`<name>.snap`, replaced
//! atomically) and an append-only log of records in segments (`<name>.<seq>`), each
//! record holding the entries and hard state of one Ready. A snapshot starts a new
//! segment (with the hard state and the entries after the snapshot) and the older ones are
//! deleted. Replaying both rebuilds the in-memory Raft storage after a restart; a torn last
//! record (a crash mid-write) is dropped.

use crate::store::Store;
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{Entry, HardState, Snapshot};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
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
    /// `<dir>/g<G>.wal`: segments are `<path>.<seq>`, the snapshot `<path>.snap`.
    path: PathBuf,
    seq: u64,
    file: File,
    fsync: bool,
    buf: Vec<u8>,
}

fn segment(path: &Path, seq: u64) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{seq}"));
    PathBuf::from(p)
}

fn snap_path(path: &Path) -> PathBuf {
    path.with_extension("snap")
}

/// The segments of the log at `path`, oldest first.
fn segments(path: &Path) -> io::Result<Vec<u64>> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut seqs = Vec::new();
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    for e in std::fs::read_dir(dir)? {
        let n = e?.file_name();
        let n = n.to_string_lossy();
        if let Some(seq) = n.strip_prefix(&prefix).and_then(|x| x.parse::<u64>().ok()) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
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

/// Replays one segment into `storage`; returns the length of its whole records.
fn replay_segment(p: &Path, storage: &Store) -> Result<u64, WalError> {
    let data = std::fs::read(p)?;
    let mut rest = &data[..];
    let mut good = 0usize;
    while !rest.is_empty() {
        let Ok(rec) = WalRecord::decode_length_delimited(&mut rest) else {
            tracing::warn!(path = %p.display(), "dropping a torn record at the wal's tail");
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
    Ok(good as u64)
}

impl Wal {
    /// Opens (creating) the log at `path` and replays its snapshot and the segments written
    /// since into a fresh storage whose configuration is `voters`.
    pub fn open(path: &Path, fsync: bool, voters: Vec<u64>) -> Result<(Wal, Store), WalError> {
        let storage = Store::new(voters);
        // The snapshot file: the segment it starts, then the snapshot.
        let mut from = 0u64;
        let sp = snap_path(path);
        if sp.exists() {
            let bytes = std::fs::read(&sp)?;
            if bytes.len() < 8 {
                return Err(WalError::Io(io::Error::other(format!(
                    "{}: too short for a snapshot",
                    sp.display()
                ))));
            }
            let (seq, snap) = bytes.split_at(8);
            let mut b = [0u8; 8];
            b.copy_from_slice(seq);
            from = u64::from_le_bytes(b);
            storage.install(Snapshot::parse_from_bytes(snap)?)?;
        }
        let seqs: Vec<u64> = segments(path)?.into_iter().filter(|s| *s >= from).collect();
        let mut good = 0;
        for &seq in &seqs {
            good = replay_segment(&segment(path, seq), &storage)?;
        }
        let seq = seqs.last().copied().unwrap_or(from.max(1));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment(path, seq))?;
        // Cut a torn tail so that new records follow the last whole one. (Only then: on
        // ext4 a truncated file is flushed whole when it is closed.)
        if file.metadata()?.len() > good {
            file.set_len(good)?;
        }
        Ok((
            Wal {
                path: path.to_path_buf(),
                seq,
                file,
                fsync,
                buf: Vec::new(),
            },
            storage,
        ))
    }

    /// Makes `snap` the base of the log: writes it, then starts a new segment holding `hs`
    /// and `entries` (those after the snapshot), and removes the older segments in the
    /// background (replay ignores them once the snapshot names the new segment). Durable on
    /// return when fsync is on.
    pub fn install_snapshot(
        &mut self,
        snap: &Snapshot,
        hs: &HardState,
        entries: &[Entry],
    ) -> Result<(), WalError> {
        let next = self.seq + 1;
        let seg = segment(&self.path, next);
        self.buf.clear();
        encode_record(Some(hs), entries, &mut self.buf)?;
        let mut f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&seg)?;
        f.write_all(&self.buf)?;
        if self.fsync {
            f.sync_data()?;
        }
        let mut bytes = next.to_le_bytes().to_vec();
        bytes.extend_from_slice(&snap.write_to_bytes()?);
        replace_file(&snap_path(&self.path), &bytes, self.fsync)?;
        let closing = std::mem::replace(&mut self.file, f);
        let old: Vec<PathBuf> = segments(&self.path)?
            .into_iter()
            .filter(|s| *s < next)
            .map(|s| segment(&self.path, s))
            .collect();
        self.seq = next;
        // Closing and unlinking a large file can take long; nothing waits for it.
        std::thread::spawn(move || {
            drop(closing);
            for p in old {
                let _ = std::fs::remove_file(p);
            }
        });
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
            let mut f = OpenOptions::new()
                .append(true)
                .open(segment(&p, 1))
                .unwrap();
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
            let after: Vec<Entry> = kept.into_iter().filter(|e| e.index > 8).collect();
            w.install_snapshot(&snap, &hs, &after).unwrap();
            w.append(None, &[entry(11, 2)]).unwrap();
        }
        // The old segment goes away in the background; replay ignores it either way.
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!segment(&p, 1).exists());
        let (_, s) = Wal::open(&p, false, vec![1, 2, 3]).unwrap();
        assert_eq!(s.snapshot_now().data.as_ref(), b"state at 8");
        assert_eq!(s.first_index().unwrap(), 9);
        assert_eq!(s.last_index().unwrap(), 11);
        assert_eq!(s.term(8).unwrap(), 1);
        assert_eq!(s.term(11).unwrap(), 2);
        assert_eq!(s.initial_state().unwrap().hard_state.commit, 9);
    }
}
