//! On-disk records of what was bound, granted and acknowledged, read back by the checker.
//!
//! Proxy replicas append one [`BoundBatch`] per applied batch; clients append
//! [`AckChunk`]s of the answers they received; a sequencer serving the direct baseline
//! appends [`GrantChunk`]s of what it gave to whom. Records are compact: a batch stores
//! its ranges and its ops' (session, seq, spaces), and the checker derives each op's
//! numbers from the ranges on its own (see `verify`), apart from the code that answered
//! the clients. Files are sequences of length-delimited prost messages; a writer that
//! stops cleanly ends its file with an end marker, so that a reader can tell a complete
//! file from one whose last records were lost (a crash, or a process killed).

use crate::types::SpaceMask;
use prost::Message;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

/// One committed batch: ranges per space, and the ops that take numbers from them in order
/// (op i takes, in each space it touches, the next number of that space's range). Numbers
/// of a range that no op takes are noops.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BoundBatch {
    #[prost(uint32, tag = "1")]
    pub group: u32,
    #[prost(uint64, tag = "2")]
    pub batch_id: u64,
    #[prost(uint64, tag = "3")]
    pub epoch: u64,
    #[prost(fixed64, tag = "4")]
    pub space_mask: u64,
    #[prost(uint64, repeated, packed = "true", tag = "5")]
    pub bases: Vec<u64>,
    #[prost(uint32, repeated, packed = "true", tag = "6")]
    pub counts: Vec<u32>,
    /// Each op's session (see `msg::Register`).
    #[prost(uint64, repeated, packed = "true", tag = "7")]
    pub op_sessions: Vec<u64>,
    #[prost(uint64, repeated, packed = "true", tag = "8")]
    pub op_seqs: Vec<u64>,
    #[prost(uint64, repeated, packed = "true", tag = "9")]
    pub op_masks: Vec<u64>,
    /// The Raft log index of the entry that bound this (several records may share one: a
    /// takeover's holes). Aligns the records of replicas that restarted from a snapshot.
    #[prost(uint64, tag = "10")]
    pub index: u64,
}

/// Answers one client session received: op `i` has `seqs[i]`, spaces `masks[i]`, and the
/// next `masks[i].len()` entries of `numbers`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AckChunk {
    #[prost(uint64, tag = "1")]
    pub session: u64,
    #[prost(uint64, repeated, packed = "true", tag = "2")]
    pub seqs: Vec<u64>,
    #[prost(uint64, repeated, packed = "true", tag = "3")]
    pub masks: Vec<u64>,
    #[prost(uint64, repeated, packed = "true", tag = "4")]
    pub numbers: Vec<u64>,
}

/// ZooKeeper runs: acknowledged ops on znodes, as one client saw them (column `i` of each
/// field is op `i`). `writes[i]`: a setData or create (its version is the one it wrote),
/// else a getData or exists (the version it saw). Times are CLOCK_MONOTONIC microseconds,
/// one clock for every process of a machine. `created` are the paths this client created
/// and saw acknowledged; `sessions` the ZooKeeper sessions it opened and closed.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ZkHistoryChunk {
    #[prost(uint64, tag = "1")]
    pub client: u64,
    #[prost(string, repeated, tag = "2")]
    pub paths: Vec<String>,
    #[prost(int64, repeated, packed = "true", tag = "3")]
    pub czxids: Vec<i64>,
    #[prost(bool, repeated, packed = "true", tag = "4")]
    pub writes: Vec<bool>,
    #[prost(int32, repeated, packed = "true", tag = "5")]
    pub versions: Vec<i32>,
    #[prost(uint64, repeated, packed = "true", tag = "6")]
    pub sent_us: Vec<u64>,
    #[prost(uint64, repeated, packed = "true", tag = "7")]
    pub answered_us: Vec<u64>,
    #[prost(string, repeated, tag = "8")]
    pub created: Vec<String>,
    #[prost(int64, repeated, packed = "true", tag = "9")]
    pub closed_sessions: Vec<i64>,
}

/// A clock every process of a machine shares (CLOCK_MONOTONIC), in microseconds: what
/// ZooKeeper histories are timed with, so that ops of different clients compare.
pub fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec it is given, nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1000
}

/// Walks columns `(seq, mask)` with `numbers` holding each op's numbers in turn; `false`
/// if the columns do not fit together.
fn walk(
    seqs: &[u64],
    masks: &[u64],
    numbers: &[u64],
    mut f: impl FnMut(usize, u64, SpaceMask, &[u64]),
) -> bool {
    if seqs.len() != masks.len() {
        return false;
    }
    let mut at = 0usize;
    for (i, (seq, m)) in seqs.iter().zip(masks).enumerate() {
        let m = SpaceMask(*m);
        let end = at + m.len();
        let Some(nums) = numbers.get(at..end) else {
            return false;
        };
        f(i, *seq, m, nums);
        at = end;
    }
    at == numbers.len()
}

impl AckChunk {
    pub fn push(&mut self, seq: u64, mask: SpaceMask, numbers: &[u64]) {
        self.seqs.push(seq);
        self.masks.push(mask.0);
        self.numbers.extend_from_slice(numbers);
    }

    /// Calls `f(seq, mask, numbers)` for each acknowledged op; `false` if malformed.
    pub fn for_each(&self, mut f: impl FnMut(u64, SpaceMask, &[u64])) -> bool {
        walk(&self.seqs, &self.masks, &self.numbers, |_, s, m, n| {
            f(s, m, n)
        })
    }
}

/// What a sequencer gave to clients of the direct baseline (one request per op): op `i`
/// of session `sessions[i]` got `masks[i].len()` numbers of `numbers`, in turn. Repeats of
/// a request are not recorded again.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GrantChunk {
    #[prost(uint64, repeated, packed = "true", tag = "1")]
    pub sessions: Vec<u64>,
    #[prost(uint64, repeated, packed = "true", tag = "2")]
    pub seqs: Vec<u64>,
    #[prost(uint64, repeated, packed = "true", tag = "3")]
    pub masks: Vec<u64>,
    #[prost(uint64, repeated, packed = "true", tag = "4")]
    pub numbers: Vec<u64>,
}

impl GrantChunk {
    pub fn push(&mut self, session: u64, seq: u64, mask: SpaceMask, numbers: &[u64]) {
        self.sessions.push(session);
        self.seqs.push(seq);
        self.masks.push(mask.0);
        self.numbers.extend_from_slice(numbers);
    }

    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// Calls `f(session, seq, mask, numbers)` for each grant; `false` if malformed.
    pub fn for_each(&self, mut f: impl FnMut(u64, u64, SpaceMask, &[u64])) -> bool {
        if self.sessions.len() != self.seqs.len() {
            return false;
        }
        walk(&self.seqs, &self.masks, &self.numbers, |i, s, m, n| {
            f(self.sessions[i], s, m, n)
        })
    }
}

/// The last record of a file whose writer stopped cleanly (its bytes, length-delimited
/// like any record; no record of this crate encodes to them).
const END: &[u8] = b"\xffmason-records-end";

/// Appends length-delimited records to a file.
pub struct RecordWriter {
    out: BufWriter<File>,
}

impl RecordWriter {
    /// Creates (truncating) the file.
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(RecordWriter {
            out: BufWriter::with_capacity(1 << 20, File::create(path)?),
        })
    }

    /// Opens the file for appending (creating it), first cutting a torn last record (a
    /// crash mid-write) and an end marker (a clean stop) so that new records follow the
    /// last whole one.
    pub fn open_append<M: Message + Default>(path: &Path) -> io::Result<Self> {
        let mut good = 0u64;
        if path.exists() {
            let mut data = Vec::new();
            File::open(path)?.read_to_end(&mut data)?;
            let mut rest = &data[..];
            while let Some(raw) = next_raw(&mut rest) {
                if raw == END || M::decode(raw).is_err() {
                    break;
                }
                good = (data.len() - rest.len()) as u64;
            }
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        f.set_len(good)?;
        Ok(RecordWriter {
            out: BufWriter::with_capacity(1 << 20, f),
        })
    }

    pub fn append<M: Message>(&mut self, m: &M) -> io::Result<()> {
        let buf = m.encode_length_delimited_to_vec();
        self.out.write_all(&buf)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Ends the file cleanly: the end marker, flushed and synced.
    pub fn finish(mut self) -> io::Result<()> {
        let mut marker = Vec::with_capacity(END.len() + 1);
        prost::encoding::encode_varint(END.len() as u64, &mut marker);
        marker.extend_from_slice(END);
        self.out.write_all(&marker)?;
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }
}

/// The next length-delimited record's bytes, or `None` at the end or a torn record.
fn next_raw<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    if rest.is_empty() {
        return None;
    }
    let mut probe = *rest;
    let len = prost::encoding::decode_varint(&mut probe).ok()? as usize;
    if probe.len() < len {
        return None;
    }
    let (raw, after) = probe.split_at(len);
    *rest = after;
    Some(raw)
}

/// Every whole record of a file, and how the file ends.
#[derive(Debug)]
pub struct Records<M> {
    pub records: Vec<M>,
    /// The file ends inside a record (its writer crashed mid-write): that one is dropped.
    pub torn: bool,
    /// The file ends with the end marker: its writer stopped cleanly, nothing is missing.
    pub ended: bool,
}

/// Reads every whole record of a file.
pub fn read_records<M: Message + Default>(path: &Path) -> io::Result<Records<M>> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut rest = &data[..];
    let mut out = Records {
        records: Vec::new(),
        torn: false,
        ended: false,
    };
    while !rest.is_empty() {
        let Some(raw) = next_raw(&mut rest) else {
            out.torn = true;
            break;
        };
        if raw == END {
            // Records after a marker would come from a writer that did not cut it first.
            out.ended = rest.is_empty();
            continue;
        }
        match M::decode(raw) {
            Ok(m) => {
                out.ended = false;
                out.records.push(m)
            }
            Err(_) => {
                out.torn = true;
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tails_and_end_markers() {
        let dir = std::env::temp_dir().join(format!("mason-rec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("r.bin");
        let mut c = AckChunk {
            session: 3,
            ..Default::default()
        };
        c.push(1, SpaceMask(1), &[5]);
        let mut w = RecordWriter::create(&p).unwrap();
        w.append(&c).unwrap();
        w.append(&c).unwrap();
        w.finish().unwrap();
        let r = read_records::<AckChunk>(&p).unwrap();
        assert_eq!((r.records.len(), r.torn, r.ended), (2, false, true));
        // Appending again cuts the marker first; a file left without one says so.
        let mut w = RecordWriter::open_append::<AckChunk>(&p).unwrap();
        w.append(&c).unwrap();
        w.flush().unwrap();
        drop(w);
        let r = read_records::<AckChunk>(&p).unwrap();
        assert_eq!((r.records.len(), r.torn, r.ended), (3, false, false));
        // A torn last record is dropped and reported, and cut by the next writer.
        let len = std::fs::metadata(&p).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len - 2).unwrap();
        let r = read_records::<AckChunk>(&p).unwrap();
        assert_eq!((r.records.len(), r.torn, r.ended), (2, true, false));
        let mut w = RecordWriter::open_append::<AckChunk>(&p).unwrap();
        w.append(&c).unwrap();
        w.finish().unwrap();
        let r = read_records::<AckChunk>(&p).unwrap();
        assert_eq!((r.records.len(), r.torn, r.ended), (3, false, true));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn grants_walk_their_columns() {
        let mut g = GrantChunk::default();
        g.push(7, 1, SpaceMask(0b11), &[4, 9]);
        g.push(8, 1, SpaceMask(0b10), &[10]);
        let mut seen = Vec::new();
        assert!(g.for_each(|s, q, m, n| seen.push((s, q, m.0, n.to_vec()))));
        assert_eq!(seen, vec![(7, 1, 0b11, vec![4, 9]), (8, 1, 0b10, vec![10])]);
        g.numbers.pop();
        assert!(!g.for_each(|_, _, _, _| {}));
    }
}
