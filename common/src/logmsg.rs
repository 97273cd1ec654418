//! Wire messages of the shared log (DESIGN.md section 8): writes down a chain of log
//! servers, reads from it, and tail queries. Positions are striped over shards
//! (`pos % shards`); each shard is a chain of servers, head first.

use bytes::Bytes;

/// What a log position holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, prost::Enumeration)]
#[repr(i32)]
pub enum LogKind {
    /// An appended entry.
    Data = 0,
    /// A junk entry (Corfu's hole fill) or a noop (CorfuMason): nothing was appended here.
    Junk = 1,
}

/// One position and what to write there (or what is there).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogItem {
    #[prost(uint64, tag = "1")]
    pub pos: u64,
    #[prost(enumeration = "LogKind", tag = "2")]
    pub kind: i32,
    #[prost(bytes = "bytes", tag = "3")]
    pub payload: Bytes,
}

impl LogItem {
    pub fn data(pos: u64, payload: Bytes) -> LogItem {
        LogItem {
            pos,
            kind: LogKind::Data as i32,
            payload,
        }
    }

    pub fn junk(pos: u64) -> LogItem {
        LogItem {
            pos,
            kind: LogKind::Junk as i32,
            payload: Bytes::new(),
        }
    }

    pub fn is_junk(&self) -> bool {
        self.kind == LogKind::Junk as i32
    }
}

/// A writer -> the head of `shard`'s chain, or a chain member -> its successor. Each item
/// is written once: the same value again is acknowledged, a different value is refused.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogWrite {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint32, tag = "2")]
    pub shard: u32,
    #[prost(message, repeated, tag = "3")]
    pub items: Vec<LogItem>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum LogStatus {
    /// Written (and durable down the whole chain), or read: the entry is in the result.
    Ok = 0,
    /// The position already holds a different value, which is in the result.
    Taken = 1,
    /// Nothing is written there (yet).
    NotWritten = 2,
    /// The position does not belong to this server's shard.
    WrongShard = 3,
    /// The payload is larger than the server accepts.
    TooLarge = 4,
    /// What is stored there fails its checksum: it is not returned, and not overwritten.
    Corrupt = 5,
    /// The rest of the chain did not acknowledge in time, or the disk failed: try again.
    Unavailable = 6,
    /// Writes go to the head of the chain, which this server is not.
    NotHead = 7,
    /// Malformed (a junk entry with a payload, an unknown kind).
    Invalid = 8,
}

/// The outcome at one position; with `Ok` on a read or with `Taken`, the entry there.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogResult {
    #[prost(uint64, tag = "1")]
    pub pos: u64,
    #[prost(enumeration = "LogStatus", tag = "2")]
    pub status: i32,
    #[prost(enumeration = "LogKind", tag = "3")]
    pub kind: i32,
    #[prost(bytes = "bytes", tag = "4")]
    pub payload: Bytes,
}

impl LogResult {
    pub fn is_junk(&self) -> bool {
        self.kind == LogKind::Junk as i32
    }
}

/// The answer to a [`LogWrite`]: one result per item, in order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogWriteReply {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(message, repeated, tag = "2")]
    pub results: Vec<LogResult>,
}

/// Read these positions of `shard`. The answer may stop early (a size cap); ask again for
/// the rest.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogRead {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint32, tag = "2")]
    pub shard: u32,
    #[prost(uint64, repeated, packed = "true", tag = "3")]
    pub positions: Vec<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LogReadReply {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(message, repeated, tag = "2")]
    pub results: Vec<LogResult>,
}

/// "What is the highest position you hold?"
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogTail {
    #[prost(uint64, tag = "1")]
    pub id: u64,
}

/// `next` is one past the highest position this server holds durably (0 when empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogTailReply {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint32, tag = "2")]
    pub shard: u32,
    #[prost(uint64, tag = "3")]
    pub next: u64,
}

/// The shard that holds `pos` when positions are striped over `shards` shards.
pub fn shard_of(pos: u64, shards: u32) -> u32 {
    if shards == 0 {
        return 0;
    }
    (pos % u64::from(shards)) as u32
}
