//! What a proxy group commits through Raft: one [`BatchEntry`] per batch id. Its ranges come
//! from the sequencer; its ops take numbers from them in order; what is left is noops. A
//! batch with no ops is how a new leader commits a predecessor's ranges as noops.

use bytes::Bytes;
use mason_common::record::BoundBatch;

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
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OpEntry {
    #[prost(uint64, tag = "1")]
    pub client_id: u64,
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

impl BatchEntry {
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
            op_clients: ops.iter().map(|o| o.client_id).collect(),
            op_seqs: ops.iter().map(|o| o.client_seq).collect(),
            op_masks: ops.iter().map(|o| o.space_mask).collect(),
        }
    }
}
