//! On-disk records of what was bound and what was acknowledged, read back by the checker.
//!
//! Proxy replicas append one [`BoundBatch`] per applied batch; clients append
//! [`AckChunk`]s of acknowledged answers. Both are compact: a batch stores its ranges and
//! its ops' (client, seq, spaces), and the number of each op follows from the ranges.
//! Files are sequences of length-delimited prost messages; a torn tail is ignored.

use crate::types::SpaceMask;
use prost::Message;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

/// One committed batch: ranges per space, and the ops that take numbers from them in order.
/// Numbers of a range that no op takes are noops.
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
    #[prost(uint64, repeated, packed = "true", tag = "7")]
    pub op_clients: Vec<u64>,
    #[prost(uint64, repeated, packed = "true", tag = "8")]
    pub op_seqs: Vec<u64>,
    #[prost(uint64, repeated, packed = "true", tag = "9")]
    pub op_masks: Vec<u64>,
    /// The Raft log index of the entry that bound this (several records may share one: a
    /// takeover's holes). Aligns the records of replicas that restarted from a snapshot.
    #[prost(uint64, tag = "10")]
    pub index: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchShapeError {
    #[error("batch {0}: {1} bases and {2} counts for {3} spaces")]
    Ranges(u64, usize, usize, usize),
    #[error("batch {0}: op columns of different lengths")]
    Columns(u64),
    #[error("batch {0}: ops need more numbers in space {1} than its range holds")]
    Overflow(u64, u32),
}

impl BoundBatch {
    /// Calls `f(client, seq, mask, numbers)` for each op in order, giving each the next
    /// number of every space it touches.
    pub fn for_each_op(
        &self,
        mut f: impl FnMut(u64, u64, SpaceMask, &[u64]),
    ) -> Result<(), BatchShapeError> {
        let mask = SpaceMask(self.space_mask);
        if self.bases.len() != mask.len() || self.counts.len() != mask.len() {
            return Err(BatchShapeError::Ranges(
                self.batch_id,
                self.bases.len(),
                self.counts.len(),
                mask.len(),
            ));
        }
        let n = self.op_clients.len();
        if self.op_seqs.len() != n || self.op_masks.len() != n {
            return Err(BatchShapeError::Columns(self.batch_id));
        }
        let mut used = vec![0u64; mask.len()];
        let mut numbers = Vec::with_capacity(mask.len());
        for i in 0..n {
            numbers.clear();
            let om = SpaceMask(self.op_masks[i]);
            for s in om.iter() {
                let Some(k) = mask.index_of(s) else {
                    return Err(BatchShapeError::Overflow(self.batch_id, s));
                };
                if used[k] >= u64::from(self.counts[k]) {
                    return Err(BatchShapeError::Overflow(self.batch_id, s));
                }
                numbers.push(self.bases[k] + used[k]);
                used[k] += 1;
            }
            f(self.op_clients[i], self.op_seqs[i], om, &numbers);
        }
        Ok(())
    }
}

/// Acknowledged answers of one client: op `i` has `seqs[i]`, spaces `masks[i]`, and the
/// next `masks[i].len()` entries of `numbers`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AckChunk {
    #[prost(uint64, tag = "1")]
    pub client_id: u64,
    #[prost(uint64, repeated, packed = "true", tag = "2")]
    pub seqs: Vec<u64>,
    #[prost(uint64, repeated, packed = "true", tag = "3")]
    pub masks: Vec<u64>,
    #[prost(uint64, repeated, packed = "true", tag = "4")]
    pub numbers: Vec<u64>,
}

impl AckChunk {
    pub fn push(&mut self, seq: u64, mask: SpaceMask, numbers: &[u64]) {
        self.seqs.push(seq);
        self.masks.push(mask.0);
        self.numbers.extend_from_slice(numbers);
    }

    /// Calls `f(seq, mask, numbers)` for each acknowledged op; `false` if malformed.
    pub fn for_each(&self, mut f: impl FnMut(u64, SpaceMask, &[u64])) -> bool {
        if self.seqs.len() != self.masks.len() {
            return false;
        }
        let mut at = 0usize;
        for (seq, m) in self.seqs.iter().zip(&self.masks) {
            let m = SpaceMask(*m);
            let end = at + m.len();
            let Some(nums) = self.numbers.get(at..end) else {
                return false;
            };
            f(*seq, m, nums);
            at = end;
        }
        at == self.numbers.len()
    }
}

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
    /// crash mid-write) so that new records follow the last whole one.
    pub fn open_append<M: Message + Default>(path: &Path) -> io::Result<Self> {
        let mut good = 0u64;
        if path.exists() {
            let mut data = Vec::new();
            File::open(path)?.read_to_end(&mut data)?;
            let mut rest = &data[..];
            while !rest.is_empty() && M::decode_length_delimited(&mut rest).is_ok() {
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
}

/// Reads every whole record of a file; a torn last record is dropped and counted.
pub fn read_records<M: Message + Default>(path: &Path) -> io::Result<(Vec<M>, bool)> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut rest = &data[..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        match M::decode_length_delimited(&mut rest) {
            Ok(m) => out.push(m),
            Err(_) => return Ok((out, true)),
        }
    }
    Ok((out, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_take_numbers_in_order() {
        let b = BoundBatch {
            group: 0,
            batch_id: 1,
            epoch: 1,
            space_mask: 0b11,
            bases: vec![10, 20],
            counts: vec![2, 3],
            op_clients: vec![7, 7, 8],
            op_seqs: vec![1, 2, 1],
            op_masks: vec![0b11, 0b10, 0b01],
            index: 1,
        };
        let mut seen = vec![];
        b.for_each_op(|c, s, m, n| seen.push((c, s, m.0, n.to_vec())))
            .unwrap();
        assert_eq!(
            seen,
            vec![
                (7, 1, 0b11, vec![10, 20]),
                (7, 2, 0b10, vec![21]),
                (8, 1, 0b01, vec![11])
            ]
        );
        let mut bad = b.clone();
        bad.counts[0] = 1; // space 0 needs two numbers
        assert!(bad.for_each_op(|_, _, _, _| {}).is_err());
    }

    #[test]
    fn torn_tail_is_dropped() {
        let dir = std::env::temp_dir().join(format!("mason-rec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("r.bin");
        let mut w = RecordWriter::create(&p).unwrap();
        let mut c = AckChunk {
            client_id: 3,
            ..Default::default()
        };
        c.push(1, SpaceMask(1), &[5]);
        w.append(&c).unwrap();
        w.append(&c).unwrap();
        w.flush().unwrap();
        drop(w);
        let len = std::fs::metadata(&p).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len - 2).unwrap();
        let (recs, torn) = read_records::<AckChunk>(&p).unwrap();
        assert_eq!(recs.len(), 1);
        assert!(torn);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
