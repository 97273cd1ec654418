//! Wire messages. Every connection carries length-prefixed [`Frame`]s (see `frame`).
//!
//! The structs are written by hand with prost's derive macros, so no `protoc` is needed.
//! Raft messages travel as opaque bytes (raft-rs's own protobuf encoding) in [`RaftMsg`].

use bytes::Bytes;

/// One message on the wire.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Frame {
    #[prost(oneof = "Body", tags = "1, 2, 3, 4, 5, 6")]
    pub body: Option<Body>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Body {
    #[prost(message, tag = "1")]
    GetSeq(GetSeq),
    #[prost(message, tag = "2")]
    SeqReply(SeqReply),
    #[prost(message, tag = "3")]
    Raft(RaftMsg),
    #[prost(message, tag = "4")]
    ClientOp(ClientOp),
    #[prost(message, tag = "5")]
    ClientReply(ClientReply),
    #[prost(message, tag = "6")]
    PeerHello(PeerHello),
}

impl Frame {
    pub fn new(body: Body) -> Frame {
        Frame { body: Some(body) }
    }
}

/// "Batch `batch_id` of group `group` needs `counts[i]` numbers in the i-th space of
/// `space_mask`." Zero counts are allowed: they ask what was assigned, and record the id as
/// used if it was not (a new proxy leader does this for its predecessor's batch ids).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetSeq {
    #[prost(uint64, tag = "1")]
    pub epoch: u64,
    #[prost(uint32, tag = "2")]
    pub group: u32,
    #[prost(uint64, tag = "3")]
    pub batch_id: u64,
    #[prost(fixed64, tag = "4")]
    pub space_mask: u64,
    #[prost(uint32, repeated, packed = "true", tag = "5")]
    pub counts: Vec<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum SeqStatus {
    /// Fresh ranges, or (with `repeat`) the ranges this id got before.
    Ok = 0,
    /// The id is older than the sequencer still remembers; nothing is assigned.
    TooOld = 1,
    /// The request is malformed (a space out of range, counts not matching the mask).
    Invalid = 2,
}

/// The sequencer's answer: per space of `space_mask`, `[bases[i], bases[i] + counts[i])`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SeqReply {
    #[prost(uint64, tag = "1")]
    pub epoch: u64,
    #[prost(uint32, tag = "2")]
    pub group: u32,
    #[prost(uint64, tag = "3")]
    pub batch_id: u64,
    #[prost(enumeration = "SeqStatus", tag = "4")]
    pub status: i32,
    #[prost(bool, tag = "5")]
    pub repeat: bool,
    #[prost(fixed64, tag = "6")]
    pub space_mask: u64,
    #[prost(uint64, repeated, packed = "true", tag = "7")]
    pub bases: Vec<u64>,
    #[prost(uint32, repeated, packed = "true", tag = "8")]
    pub counts: Vec<u32>,
}

/// The first frame on a proxy's link to a peer proxy: only connections that introduced
/// themselves this way may carry Raft messages.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PeerHello {
    /// The sender's replica index.
    #[prost(uint32, tag = "1")]
    pub replica: u32,
}

/// A raft-rs message for one group, in raft-rs's own encoding.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RaftMsg {
    #[prost(uint32, tag = "1")]
    pub group: u32,
    #[prost(bytes = "bytes", tag = "2")]
    pub data: Bytes,
}

/// A client's operation. Clients number their ops 1, 2, 3, ... and say, with
/// `acked_below`, that they hold the answers of every op below that number.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ClientOp {
    #[prost(uint64, tag = "1")]
    pub client_id: u64,
    #[prost(uint64, tag = "2")]
    pub client_seq: u64,
    #[prost(uint32, tag = "3")]
    pub group: u32,
    #[prost(fixed64, tag = "4")]
    pub space_mask: u64,
    #[prost(bytes = "bytes", tag = "5")]
    pub payload: Bytes,
    #[prost(uint64, tag = "6")]
    pub acked_below: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum ReplyStatus {
    Ok = 0,
    /// This replica does not lead the group; `leader_hint` (replica index + 1) may.
    NotLeader = 1,
    /// The op is malformed (spaces out of range, no space, unknown group).
    Invalid = 2,
}

/// The answer to a [`ClientOp`]: one number per space of `space_mask`, ascending by space.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ClientReply {
    #[prost(uint64, tag = "1")]
    pub client_id: u64,
    #[prost(uint64, tag = "2")]
    pub client_seq: u64,
    #[prost(enumeration = "ReplyStatus", tag = "3")]
    pub status: i32,
    #[prost(uint32, tag = "4")]
    pub leader_hint: u32,
    #[prost(fixed64, tag = "5")]
    pub space_mask: u64,
    #[prost(uint64, repeated, packed = "true", tag = "6")]
    pub numbers: Vec<u64>,
}
