//! Tests of the jute codec: byte-exact encodings checked against
//! hand-written bytes, round trips of every request and reply kind, and
//! malformed input (truncation, bad lengths) refused without a panic.

mod exact;
mod robust;
mod roundtrip;
mod tree;

use bytes::Bytes;

use super::split_frame;
use crate::{Acl, Stat};

/// Bytes from hex pairs separated by whitespace; on each line, the first
/// token that is not a hex pair starts a comment.
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in s.lines() {
        for token in line.split_whitespace() {
            match u8::from_str_radix(token, 16) {
                Ok(byte) if token.len() == 2 => out.push(byte),
                _ => break,
            }
        }
    }
    out
}

/// The payload of a framed packet, checking the frame is exactly one
/// packet.
pub(crate) fn payload(packet: &[u8]) -> &[u8] {
    let range = split_frame(packet, super::DEFAULT_MAX_BUFFER)
        .unwrap()
        .expect("a whole frame");
    assert_eq!(range.end, packet.len());
    &packet[range]
}

pub(crate) fn open() -> Vec<Acl> {
    Acl::open_unsafe()
}

pub(crate) fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A Stat with every field distinct.
pub(crate) fn stat() -> Stat {
    Stat {
        czxid: 0x101,
        mzxid: 0x105,
        ctime: 1000,
        mtime: 2000,
        version: 3,
        cversion: 4,
        aversion: 5,
        ephemeral_owner: 0x0123_4567_89ab_cdef,
        data_length: 2,
        num_children: 6,
        pzxid: 0x103,
    }
}
