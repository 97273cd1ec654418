//! What a proxy group commits through Raft ([`LogEntry`]): one [`BatchEntry`] per batch id
//! (its ranges come from the sequencer; its ops take numbers from them in order; what is
//! left is noops; a batch with no ops is how a new leader commits a predecessor's ranges as
//! noops), a [`SwitchEntry`] promising a new sequencer epoch, a [`FillEntry`] binding a
//! takeover's holes as noops, and a [`SessionEntry`] opening and closing client sessions.

use bytes::Bytes;
use mason_common::msg::Ranges;
use mason_common::record::BoundBatch;
use mason_common::types::SpaceMask;
use smallvec::SmallVec;

#[derive(Clone, PartialEq, prost::Message)]
pub struct LogEntry {
    #[prost(oneof = "Kind", tags = "1, 2, 3, 4")]
    pub kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    #[prost(message, tag = "1")]
    Batch(BatchEntry),
    #[prost(message, tag = "2")]
    Switch(SwitchEntry),
    #[prost(message, tag = "3")]
    Fill(FillEntry),
    #[prost(message, tag = "4")]
    Sessions(SessionEntry),
}

/// From this entry on, the group binds nothing from an epoch below `epoch`, and takes
/// that epoch's holes and activation from `ballot` only.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SwitchEntry {
    #[prost(uint64, tag = "1")]
    pub epoch: u64,
    #[prost(uint64, tag = "2")]
    pub ballot: u64,
}

/// Sessions opened (each gets the group's next session id, in order) and closed (idle
/// longer than the session timeout: their dedup state is forgotten).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionEntry {
    #[prost(message, repeated, tag = "1")]
    pub opened: Vec<OpenSession>,
    #[prost(uint64, repeated, packed = "true", tag = "2")]
    pub closed: Vec<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OpenSession {
    #[prost(uint64, tag = "1")]
    pub client_id: u64,
    #[prost(uint64, tag = "2")]
    pub nonce: u64,
    /// Ops the client keeps in flight at most.
    #[prost(uint32, tag = "3")]
    pub window: u32,
}

/// Holes a takeover at `epoch` assigned to this group: bound as noops (the parts not
/// already recorded, so that applying it twice binds nothing twice).
#[derive(Clone, PartialEq, prost::Message)]
pub struct FillEntry {
    #[prost(uint64, tag = "1")]
    pub epoch: u64,
    #[prost(message, optional, tag = "2")]
    pub holes: Option<Ranges>,
    #[prost(uint64, tag = "3")]
    pub ballot: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BatchEntry {
    #[prost(uint64, tag = "1")]
    pub epoch: u64,
    #[prost(uint64, tag = "2")]
    pub batch_id: u64,
    #[prost(fixed64, tag = "3")]
    pub space_mask: u64,
    #[prost(uint64, repeated, packed = "true", tag = "4")]
    pub bases: Vec<u64>,
    #[prost(uint32, repeated, packed = "true", tag = "5")]
    pub counts: Vec<u32>,
    #[prost(message, repeated, tag = "6")]
    pub ops: Vec<OpEntry>,
    /// The sequencer's garbage-collection watermarks, when they moved (empty otherwise):
    /// every replica forgets its records below them on applying this entry.
    #[prost(uint64, repeated, packed = "true", tag = "7")]
    pub watermarks: Vec<u64>,
    /// CorfuMason: the proposing leader had written every delivery of an entry below this
    /// index to the log (0: no log, or nothing said).
    #[prost(uint64, tag = "8")]
    pub log_done_below: u64,
    /// RSMKeeper: the proposing leader's wall clock (Unix ms), the ops' ctime and mtime.
    #[prost(int64, tag = "9")]
    pub time_ms: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OpEntry {
    #[prost(uint64, tag = "1")]
    pub session: u64,
    #[prost(uint64, tag = "2")]
    pub client_seq: u64,
    #[prost(fixed64, tag = "3")]
    pub space_mask: u64,
    #[prost(bytes = "bytes", tag = "4")]
    pub payload: Bytes,
    /// The client holds every answer below this seq; the group may forget them.
    #[prost(uint64, tag = "5")]
    pub acked_below: u64,
}

impl From<mason_common::msg::ClientOp> for OpEntry {
    fn from(op: mason_common::msg::ClientOp) -> OpEntry {
        OpEntry {
            session: op.session,
            client_seq: op.client_seq,
            space_mask: op.space_mask,
            payload: op.payload,
            acked_below: op.acked_below,
        }
    }
}

/// An op's numbers, one per space it touches, held inline for up to two spaces: every
/// replica numbers every op of every batch it applies, and most ops touch one space.
pub type Numbers = SmallVec<[u64; 2]>;

/// One op's numbers: one per space of `mask`, ascending by space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Numbered {
    pub session: u64,
    pub seq: u64,
    pub mask: u64,
    pub numbers: Numbers,
}

impl BatchEntry {
    /// This batch as a log entry's bytes (`LogEntry { kind: Batch(self) }`), encoded
    /// without giving the batch up.
    pub fn log_entry_bytes(&self) -> Vec<u8> {
        const BATCH_TAG: u32 = 1;
        let len = prost::encoding::message::encoded_len(BATCH_TAG, self);
        let mut buf = Vec::with_capacity(len);
        prost::encoding::message::encode(BATCH_TAG, self, &mut buf);
        buf
    }

    /// The record of what this batch bound, for `group`, listing only `ops` (the ops that
    /// were applied; duplicates are left out and their numbers become noops).
    pub fn bound(&self, group: u32, ops: &[&OpEntry]) -> BoundBatch {
        BoundBatch {
            group,
            batch_id: self.batch_id,
            epoch: self.epoch,
            space_mask: self.space_mask,
            bases: self.bases.clone(),
            counts: self.counts.clone(),
            op_sessions: ops.iter().map(|o| o.session).collect(),
            op_seqs: ops.iter().map(|o| o.client_seq).collect(),
            op_masks: ops.iter().map(|o| o.space_mask).collect(),
            index: 0,
        }
    }

    /// The numbers of `ops` (the applied ones, in order): op by op, each takes the next
    /// number of every space it touches. `None` if the ranges do not cover them.
    pub fn number(&self, ops: &[&OpEntry]) -> Option<Vec<Numbered>> {
        let mask = SpaceMask(self.space_mask);
        if self.bases.len() != mask.len() || self.counts.len() != mask.len() {
            return None;
        }
        let mut used = vec![0u32; mask.len()];
        let mut out = Vec::with_capacity(ops.len());
        for o in ops {
            let om = SpaceMask(o.space_mask);
            let mut numbers = Numbers::with_capacity(om.len());
            for s in om.iter() {
                let k = mask.index_of(s)?;
                if used[k] >= self.counts[k] {
                    return None;
                }
                numbers.push(self.bases[k] + u64::from(used[k]));
                used[k] += 1;
            }
            out.push(Numbered {
                session: o.session,
                seq: o.client_seq,
                mask: o.space_mask,
                numbers,
            });
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use prost::Message as _;

    /// A batch's own encoding is the log entry's, and decodes back to it.
    #[test]
    fn a_batch_encodes_as_its_log_entry() {
        let b = BatchEntry {
            epoch: 3,
            batch_id: 9,
            space_mask: 0b101,
            bases: vec![10, 20],
            counts: vec![2, 1],
            ops: vec![
                OpEntry {
                    session: 7,
                    client_seq: 1,
                    space_mask: 0b1,
                    payload: Bytes::from_static(b"abc"),
                    ..Default::default()
                },
                OpEntry {
                    session: 8,
                    client_seq: 4,
                    space_mask: 0b101,
                    ..Default::default()
                },
            ],
            watermarks: vec![5],
            log_done_below: 2,
            time_ms: 1234,
        };
        let whole = LogEntry {
            kind: Some(Kind::Batch(b.clone())),
        }
        .encode_to_vec();
        assert_eq!(b.log_entry_bytes(), whole);
        let back = LogEntry::decode(&whole[..]).map(|e| e.kind);
        assert_eq!(back.ok().flatten(), Some(Kind::Batch(b)));
    }
}
