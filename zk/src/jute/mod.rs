//! ZooKeeper's client wire protocol (jute's binary encoding), as pure
//! functions with no I/O.
//!
//! Every packet on a client connection is a 4-byte big-endian length and
//! then a payload ([`split_frame`] finds one; the `encode_*` functions
//! return whole framed packets ready to write). The first packet each way
//! is the connect handshake ([`ConnectRequest`], [`ConnectResponse`]: no
//! header). After it, a request payload is a [`RequestHeader`] and a body
//! ([`split_request`], then [`decode_request`]), and a reply payload is a
//! [`ReplyHeader`] and a body ([`encode_response`] on the server,
//! [`split_reply`] and [`decode_response`] on the client). Requests that
//! the tree does not model (ping, auth, setWatches, ...) are [`Special`]s
//! with their own replies ([`SpecialResponse`]); watch notifications are
//! [`WatcherEvent`]s sent with xid -1.
//!
//! Decoding never panics: every read is bounds-checked, and any malformed
//! input is a [`JuteError`], which [`JuteError::reply_code`] maps to the
//! code ZooKeeper would answer with.

mod connect;
mod prim;
mod records;
mod request;
mod response;
mod special;

#[cfg(test)]
mod tests;

use std::ops::Range;

use thiserror::Error;

use crate::code::Code;

pub use connect::{ConnectRequest, ConnectResponse};
pub use prim::{Reader, Writer};
pub use records::{
    read_acl_vec, read_stat, write_acl_vec, write_stat, MultiHeader, ReplyHeader, RequestHeader,
    WatcherEvent, STAT_LEN,
};
pub use request::{
    decode_logged_request, decode_request, encode_request, read_request, split_request, Decoded,
    Shape,
};
pub use response::{
    decode_notification, decode_response, encode_notification, encode_response, header_reply,
    read_response, split_reply,
};
pub use special::{
    decode_special_response, encode_special_request, encode_special_response, ClientInfo,
    ReadResult, SetWatches, Special, SpecialResponse,
};

/// `jute.maxbuffer`'s default: the largest packet (and field) a ZooKeeper
/// server accepts, 0xfffff bytes.
pub const DEFAULT_MAX_BUFFER: usize = 0xfffff;

/// The xids with a fixed meaning (`ClientCnxn`).
pub mod xid {
    /// A watch notification (server to client; zxid -1).
    pub const NOTIFICATION: i32 = -1;
    /// A ping and its reply.
    pub const PING: i32 = -2;
    /// An auth packet and its reply.
    pub const AUTH: i32 = -4;
    /// setWatches / setWatches2 on reconnect, and its reply.
    pub const SET_WATCHES: i32 = -8;
}

/// What can be wrong with a packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JuteError {
    #[error("truncated: {needed} more bytes needed, {left} left")]
    Truncated { needed: usize, left: usize },
    #[error("invalid length {0}")]
    BadLength(i32),
    #[error("length {len} is over the maximum {max}")]
    TooLong { len: usize, max: usize },
    #[error("unknown opcode {0}")]
    UnknownOpcode(i32),
    #[error("opcode {0} is not allowed here")]
    BadMultiOp(i32),
    #[error("invalid create flags {0}")]
    BadFlags(i32),
    #[error("invalid create flags {0} in a multi")]
    BadMultiFlags(i32),
    #[error("createTTL with a non-TTL mode and ttl {0}")]
    BadTtl(i64),
    #[error("unknown result code {0}")]
    UnknownCode(i32),
    #[error("the request does not fit the shape {0}")]
    ShapeMismatch(&'static str),
    #[error("packet of {0} bytes is too large to frame")]
    Oversize(usize),
}

impl JuteError {
    /// The code a ZooKeeper server answers a request whose body fails to
    /// decode with: `Unimplemented` for an unknown opcode, `BadArguments`
    /// for invalid create flags or ttl (`CreateMode.fromFlag`,
    /// `validateTTL`), `MarshallingError` for anything else.
    pub fn reply_code(&self) -> Code {
        match self {
            JuteError::UnknownOpcode(_) => Code::Unimplemented,
            JuteError::BadFlags(_) | JuteError::BadTtl(_) => Code::BadArguments,
            _ => Code::MarshallingError,
        }
    }
}

/// Finds the first framed packet in `buf`: `Ok(None)` until the 4-byte
/// length and the whole payload are there, then the payload's range in
/// `buf` (the packet ends at `range.end`). A length below 0 or over `max`
/// is an error, as ZooKeeper closes such a connection.
pub fn split_frame(buf: &[u8], max: usize) -> Result<Option<Range<usize>>, JuteError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let len = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let len = usize::try_from(len).map_err(|_| JuteError::BadLength(len))?;
    if len > max {
        return Err(JuteError::TooLong { len, max });
    }
    let end = 4 + len;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some(4..end))
}

/// `payload` with its 4-byte length prefix.
pub fn frame(payload: &[u8]) -> Result<Vec<u8>, JuteError> {
    let len = i32::try_from(payload.len()).map_err(|_| JuteError::Oversize(payload.len()))?;
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}
