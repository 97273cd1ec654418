//! The replica's durable Raft state: the latest snapshot (`<name>.snap`, replaced
//! atomically) and an append-only log of records in segments (`<name>.<seq>`), each
//! record holding the entries and hard state of one Ready. A snapshot starts a new
//! segment (with the hard state and the entries after the snapshot) and the older ones are
//! deleted. Replaying both rebuilds the in-memory Raft storage after a restart.
//!
//! Every record is checksummed (CRC-32C), little-endian:
//!
//! ```text
//! offset  size  field
//!      0     4  magic            "MWAL"
//!      4     4  payload length
//!      8     4  payload checksum crc32c of the payload
//!     12     4  header checksum  crc32c of bytes 0..12
//!     16     n  payload          a WalRecord (prost)
//! ```
//!
//! Only a record that runs to the very end of the last segment may be a torn tail (a
//! crash mid-write: it was never acknowledged), and is cut: one cut short, one whose
//! payload fails its checksum with nothing after it, or a damaged header with no valid
//! record anywhere after it. Any other damage (a flipped bit anywhere else, a damaged
//! segment that is not the last) refuses to start, naming the file and the offset: records
//! after it may have been synced and acknowledged, and dropping them would lose votes and
//! entries. When in doubt the replica refuses: the group goes on with the others, and a
//! replica started afresh catches up from them. The snapshot file carries a checksum too.

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
    #[error("{path} is damaged at offset {offset}: {reason} (records after it were acknowledged; refusing to start without them)")]
    Damaged {
        path: String,
        offset: u64,
        reason: String,
    },
}

const MAGIC: u32 = u32::from_le_bytes(*b"MWAL");
const HDR: usize = 16;
/// No record is larger (a Ready of a few thousand entries); a header announcing more is
/// damaged.
const MAX_RECORD: usize = 1 << 30;

/// A record header whose magic and checksum hold: (payload length, payload checksum).
fn header(b: &[u8]) -> Option<(usize, u32)> {
    let b: &[u8; HDR] = b.get(..HDR)?.try_into().ok()?;
    let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    if u(0) != MAGIC || u(12) != crc32c::crc32c(&b[..12]) {
        return None;
    }
    let len = u(4) as usize;
    (len <= MAX_RECORD).then_some((len, u(8)))
}

/// The length of the whole, valid record at the start of `b`, if there is one.
fn record_at(b: &[u8]) -> Option<usize> {
    let (len, crc) = header(b)?;
    let p = b.get(HDR..HDR + len)?;
    (crc32c::crc32c(p) == crc).then_some(HDR + len)
}

/// Whether damage at the start of `rest` (the rest of the last segment) can be a torn
/// tail: the damaged record must reach the end of the file. With its header intact, its
/// declared length says where it ends; with its header damaged, no valid record may start
/// anywhere after it.
fn torn_tail(rest: &[u8]) -> bool {
    match header(rest) {
        Some((len, _)) => HDR + len >= rest.len(),
        None if rest.len() < HDR => true,
        None => (1..rest.len()).all(|i| record_at(&rest[i..]).is_none()),
    }
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
    let start = buf.len();
    buf.extend_from_slice(&[0u8; HDR]);
    rec.encode(buf)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let len = buf.len() - start - HDR;
    let crc = crc32c::crc32c(&buf[start + HDR..]);
    let h = &mut buf[start..start + HDR];
    h[..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    h[8..12].copy_from_slice(&crc.to_le_bytes());
    let hcrc = crc32c::crc32c(&h[..12]);
    h[12..16].copy_from_slice(&hcrc.to_le_bytes());
    Ok(())
}

/// Replays one segment into `storage`; returns the length of its whole records. Damage
/// is refused, except a torn tail of the last segment (`last`).
fn replay_segment(p: &Path, storage: &Store, last: bool) -> Result<u64, WalError> {
    let data = std::fs::read(p)?;
    let mut at = 0usize;
    let damaged = |offset: usize, reason: &str| WalError::Damaged {
        path: p.display().to_string(),
        offset: offset as u64,
        reason: reason.to_string(),
    };
    while at < data.len() {
        let rest = &data[at..];
        let problem = match header(rest) {
            None if rest.len() < HDR => "an incomplete record header",
            None => "a record header that fails its checksum",
            Some((len, _)) if rest.len() < HDR + len => "a record cut short",
            Some((len, crc)) if crc32c::crc32c(&rest[HDR..HDR + len]) != crc => {
                "a record that fails its checksum"
            }
            Some(_) => "",
        };
        if !problem.is_empty() {
            if last && torn_tail(rest) {
                tracing::warn!(path = %p.display(), offset = at, bytes = rest.len(), what = problem, "cutting a torn record at the wal's tail");
                break;
            }
            return Err(damaged(at, problem));
        }
        let Some((len, _)) = header(rest) else {
            break;
        };
        let rec = WalRecord::decode(&rest[HDR..HDR + len])
            .map_err(|e| damaged(at, &format!("a record that does not decode: {e}")))?;
        let mut entries = Vec::with_capacity(rec.entries.len());
        for e in &rec.entries {
            entries.push(Entry::parse_from_bytes(e)?);
        }
        let hs = match rec.hard_state {
            Some(hs) => Some(HardState::parse_from_bytes(&hs)?),
            None => None,
        };
        storage.replay(hs.as_ref(), &entries)?;
        at += HDR + len;
    }
    Ok(at as u64)
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
            let damaged = |reason: &str| WalError::Damaged {
                path: sp.display().to_string(),
                offset: 0,
                reason: reason.to_string(),
            };
            if bytes.len() < 12 {
                return Err(damaged("too short for a snapshot"));
            }
            let (head, snap) = bytes.split_at(12);
            let u = |r: std::ops::Range<usize>| {
                let mut b = [0u8; 8];
                b[..r.len()].copy_from_slice(&head[r]);
                u64::from_le_bytes(b)
            };
            if u(8..12) != u64::from(crc32c::crc32c(snap)) {
                return Err(damaged("the snapshot fails its checksum"));
            }
            from = u(0..8);
            storage.install(Snapshot::parse_from_bytes(snap)?)?;
        }
        let seqs: Vec<u64> = segments(path)?.into_iter().filter(|s| *s >= from).collect();
        let mut good = 0;
        for (i, &seq) in seqs.iter().enumerate() {
            good = replay_segment(&segment(path, seq), &storage, i + 1 == seqs.len())?;
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
        // What was staged goes first, into the segment it was meant for.
        self.commit()?;
        let next = self.seq + 1;
        let seg = segment(&self.path, next);
        encode_record(Some(hs), entries, &mut self.buf)?;
        let mut f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&seg)?;
        f.write_all(&self.buf)?;
        self.buf.clear();
        if self.fsync {
            f.sync_data()?;
        }
        let body = snap.write_to_bytes()?;
        let mut bytes = next.to_le_bytes().to_vec();
        bytes.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
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
        self.stage(hs, entries)?;
        self.commit()?;
        Ok(())
    }

    /// Encodes one record to be written by the next [`Wal::commit`] (group commit: the
    /// records staged meanwhile share one write and one fdatasync).
    pub fn stage(&mut self, hs: Option<&HardState>, entries: &[Entry]) -> Result<(), WalError> {
        let at = self.buf.len();
        let r = encode_record(hs, entries, &mut self.buf);
        if r.is_err() {
            self.buf.truncate(at);
        }
        r
    }

    /// Writes the staged records, and syncs them when fsync is on: durable on return.
    /// Returns the bytes written.
    pub fn commit(&mut self) -> Result<usize, WalError> {
        let n = self.buf.len();
        if n > 0 {
            self.file.write_all(&self.buf)?;
            self.buf.clear();
            if self.fsync {
                self.file.sync_data()?;
            }
        }
        Ok(n)
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
            f.write_all(&MAGIC.to_le_bytes()).unwrap();
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
    fn staged_records_share_one_commit_and_a_snapshot_writes_them_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g0.wal");
        {
            let (mut w, _) = Wal::open(&p, true, vec![1, 2, 3]).unwrap();
            w.stage(None, &[entry(1, 1), entry(2, 1)]).unwrap();
            w.stage(None, &[entry(3, 1)]).unwrap();
            // Nothing is on disk before the commit.
            assert_eq!(std::fs::metadata(segment(&p, 1)).unwrap().len(), 0);
            let n = w.commit().unwrap();
            assert_eq!(std::fs::metadata(segment(&p, 1)).unwrap().len(), n as u64);
            assert_eq!(w.commit().unwrap(), 0, "nothing staged, nothing written");
            // Staged before a snapshot: written to the old segment first, so the entries
            // the snapshot's new segment carries follow it in order.
            let hs = HardState {
                term: 1,
                commit: 4,
                ..Default::default()
            };
            w.stage(Some(&hs), &[entry(4, 1)]).unwrap();
            let mut snap = Snapshot::default();
            snap.mut_metadata().index = 2;
            snap.mut_metadata().term = 1;
            snap.mut_metadata()
                .set_conf_state(raft::prelude::ConfState::from((vec![1, 2, 3], vec![])));
            w.install_snapshot(&snap, &hs, &[entry(3, 1), entry(4, 1)])
                .unwrap();
            w.stage(None, &[entry(5, 1)]).unwrap();
            w.commit().unwrap();
        }
        let (_, s) = Wal::open(&p, false, vec![1, 2, 3]).unwrap();
        assert_eq!(s.first_index().unwrap(), 3);
        assert_eq!(s.last_index().unwrap(), 5);
        assert_eq!(s.initial_state().unwrap().hard_state.commit, 4);
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

    /// Three records in segment 1; returns their offsets.
    fn three_records(p: &Path) -> Vec<u64> {
        let (mut w, _) = Wal::open(p, false, vec![1, 2, 3]).unwrap();
        let mut offsets = Vec::new();
        for i in 1..=3 {
            offsets.push(std::fs::metadata(segment(p, 1)).unwrap().len());
            w.append(None, &[entry(i, 1)]).unwrap();
        }
        offsets
    }

    fn flip(path: &Path, offset: u64) {
        let mut b = std::fs::read(path).unwrap();
        b[offset as usize] ^= 0x40;
        std::fs::write(path, b).unwrap();
    }

    /// A flipped byte in the middle of the log: the records after it were acknowledged,
    /// so the replica refuses to start, naming the file and the offset (it used to cut the
    /// log there, or apply a record that still decoded).
    #[test]
    fn a_flipped_byte_mid_log_refuses_to_start() {
        for field in [2u64, 9, HDR as u64 + 3] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("g0.wal");
            let off = three_records(&p);
            flip(&segment(&p, 1), off[1] + field);
            let e = Wal::open(&p, false, vec![1, 2, 3]).err().expect("refused");
            let msg = e.to_string();
            assert!(
                msg.contains("g0.wal.1") && msg.contains(&format!("offset {}", off[1])),
                "{msg}"
            );
        }
    }

    /// The same flip in the last record is a torn tail: cut, and the rest replays.
    #[test]
    fn a_damaged_last_record_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g0.wal");
        let off = three_records(&p);
        flip(&segment(&p, 1), off[2] + HDR as u64 + 1);
        let (_, s) = Wal::open(&p, false, vec![1, 2, 3]).unwrap();
        assert_eq!(s.last_index().unwrap(), 2);
        assert_eq!(std::fs::metadata(segment(&p, 1)).unwrap().len(), off[2]);
        // A truncated last record likewise.
        let f = OpenOptions::new().write(true).open(segment(&p, 1)).unwrap();
        f.set_len(off[2] - 3).unwrap();
        let (_, s) = Wal::open(&p, false, vec![1, 2, 3]).unwrap();
        assert_eq!(s.last_index().unwrap(), 1);
    }

    /// A client's payload may hold bytes that look like a whole record. When the record
    /// that carries it is torn, that look-alike is not taken for a record written after
    /// the damage: the tail is still cut, and the replica starts.
    #[test]
    fn a_record_inside_a_torn_payload_is_still_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g0.wal");
        let off = three_records(&p);
        let mut inner = Vec::new();
        encode_record(None, &[entry(99, 1)], &mut inner).unwrap();
        let mut data = b"head".to_vec();
        data.extend_from_slice(&inner);
        data.extend_from_slice(&[7u8; 64]);
        let end = std::fs::metadata(segment(&p, 1)).unwrap().len();
        {
            let (mut w, _) = Wal::open(&p, false, vec![1, 2, 3]).unwrap();
            let mut e = entry(4, 1);
            e.data = bytes::Bytes::from(data);
            w.append(None, &[e]).unwrap();
        }
        // Torn after the look-alike, before the carrying record's end.
        let f = OpenOptions::new().write(true).open(segment(&p, 1)).unwrap();
        f.set_len(std::fs::metadata(segment(&p, 1)).unwrap().len() - 10)
            .unwrap();
        let (_, s) = Wal::open(&p, false, vec![1, 2, 3]).unwrap();
        assert_eq!(s.last_index().unwrap(), 3);
        assert_eq!(std::fs::metadata(segment(&p, 1)).unwrap().len(), end);
        assert!(end > off[2]);
    }

    /// Damage mid-log followed by a torn tail is still damage mid-log: the records after
    /// it may have been acknowledged, so the replica refuses to start instead of cutting
    /// them with the tail.
    #[test]
    fn damage_before_a_torn_tail_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g0.wal");
        let off = three_records(&p);
        {
            let (mut w, _) = Wal::open(&p, false, vec![1, 2, 3]).unwrap();
            w.append(None, &[entry(4, 1)]).unwrap();
        }
        flip(&segment(&p, 1), off[1] + HDR as u64 + 1);
        let f = OpenOptions::new().write(true).open(segment(&p, 1)).unwrap();
        f.set_len(std::fs::metadata(segment(&p, 1)).unwrap().len() - 3)
            .unwrap();
        let e = Wal::open(&p, false, vec![1, 2, 3]).err().expect("refused");
        assert!(e.to_string().contains(&format!("offset {}", off[1])), "{e}");
    }

    /// Damage in a segment that is not the last one refuses to start, even at its end.
    #[test]
    fn a_damaged_segment_that_is_not_the_last_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g0.wal");
        let off = three_records(&p);
        std::fs::write(segment(&p, 2), b"").unwrap();
        let f = OpenOptions::new().write(true).open(segment(&p, 1)).unwrap();
        f.set_len(off[2] + 5).unwrap();
        let e = Wal::open(&p, false, vec![1, 2, 3]).err().expect("refused");
        assert!(e.to_string().contains("g0.wal.1"), "{e}");
        // A damaged snapshot, too.
        std::fs::write(snap_path(&p), [0u8; 20]).unwrap();
        let e = Wal::open(&p, false, vec![1, 2, 3]).err().expect("refused");
        assert!(e.to_string().contains("snapshot"), "{e}");
    }
}
