//! A WAL record's frame on disk, and which damage to a segment may be cut as a torn tail.
//!
//! Every record is checksummed (CRC-32C), little-endian:
//!
//! ```text
//! offset  size  field
//!      0     4  magic            "MWAL"
//!      4     4  payload length
//!      8     4  payload checksum crc32c of the payload
//!     12     4  header checksum  crc32c of bytes 0..12
//!     16     n  payload
//! ```
//!
//! Only a record that runs to the very end of the last segment may be a torn tail (a
//! crash mid-write: it was never acknowledged), and is cut: one cut short, one whose
//! payload fails its checksum with nothing but zeros after it, or a damaged header with
//! no valid record anywhere after it. Any other damage (a flipped bit anywhere else, a damaged
//! segment that is not the last) refuses to start, naming the file and the offset: records
//! after it may have been synced and acknowledged, and dropping them would lose votes and
//! entries.

use super::WalError;
use std::ops::Range;
use std::path::Path;

const MAGIC: u32 = u32::from_le_bytes(*b"MWAL");
pub(super) const HDR: usize = 16;
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
/// tail: the damaged record must reach the end of what was written (the end of the file,
/// or only zeros after it: a preallocated segment). With its header intact, its declared
/// length says where it ends; with its header damaged, no valid record may start
/// anywhere after it.
fn torn_tail(rest: &[u8]) -> bool {
    match header(rest) {
        Some((len, _)) => rest
            .get(HDR + len..)
            .is_none_or(|after| after.iter().all(|b| *b == 0)),
        None if rest.len() < HDR => true,
        None => (1..rest.len()).all(|i| record_at(&rest[i..]).is_none()),
    }
}

/// Appends one framed record to `buf`, its payload written by `payload`. On an error
/// `buf` is left as it was.
pub(super) fn push<E>(
    buf: &mut Vec<u8>,
    payload: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; HDR]);
    if let Err(e) = payload(buf) {
        buf.truncate(start);
        return Err(e);
    }
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

/// A segment's whole records.
pub(super) struct Scanned {
    /// Each record's offset and payload range.
    pub(super) records: Vec<(usize, Range<usize>)>,
    /// Where the last whole record ends.
    pub(super) end: usize,
}

/// The whole records of a segment's bytes `data` read from `path`. A segment ends at its
/// last record, or where only zeros follow (a preallocated segment's unwritten rest).
/// Damage is refused, except a torn tail of the last segment (`last`).
pub(super) fn records(data: &[u8], path: &Path, last: bool) -> Result<Scanned, WalError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let rest = &data[at..];
        if rest.iter().all(|b| *b == 0) {
            break;
        }
        let problem = match header(rest) {
            None if rest.len() < HDR => "an incomplete record header",
            None => "a record header that fails its checksum",
            Some((len, _)) if rest.len() < HDR + len => "a record cut short",
            Some((len, crc)) if crc32c::crc32c(&rest[HDR..HDR + len]) != crc => {
                "a record that fails its checksum"
            }
            Some((len, _)) => {
                out.push((at, at + HDR..at + HDR + len));
                at += HDR + len;
                continue;
            }
        };
        if last && torn_tail(rest) {
            tracing::warn!(path = %path.display(), offset = at, bytes = rest.len(), what = problem, "cutting a torn record at the wal's tail");
            break;
        }
        return Err(WalError::damaged(path, at as u64, problem));
    }
    Ok(Scanned {
        records: out,
        end: at,
    })
}
