//! A WAL record's frame on disk, and which damage to a segment may be cut as a torn tail.
//!
//! Every record is checksummed (CRC-32C) and numbered by the write that carried it,
//! little-endian:
//!
//! ```text
//! offset  size  field
//!      0     4  magic            "MWL2"
//!      4     4  payload length
//!      8     4  payload checksum crc32c of the payload
//!     12     8  write            the number of the write (one pwrite) that carried it
//!     20     4  after            how many records follow it in that write
//!     24     4  reserved, zero
//!     28     4  header checksum  crc32c of bytes 0..28
//!     32     n  payload
//! ```
//!
//! Writes are numbered consecutively, so the records of a log form a chain: each one is
//! the next of its write, or the first of the next write. With fsync on, a write is
//! synced before the next one starts, so a power loss can tear only the last write, and
//! tear it anyhow: its pages may land in any order. Damage may therefore be cut as a torn
//! tail only in the last segment and only when it is in the last write: every valid record
//! after it belongs to that same write. The whole torn write is then cut (none of it was
//! acknowledged), and so is a last write whose last records are missing. Any other damage
//! (a flipped bit with a later write after it, a damaged segment that is not the last, a
//! record out of sequence) refuses to start, naming the file and the offset: records after
//! it may have been synced and acknowledged, and dropping them would lose votes and
//! entries.

use super::WalError;
use std::ops::Range;
use std::path::Path;

const MAGIC: u32 = u32::from_le_bytes(*b"MWL2");
/// The magic of the format before writes were numbered.
const OLD_MAGIC: &[u8; 4] = b"MWAL";
pub(super) const HDR: usize = 32;
/// No record is larger (a Ready of a few thousand entries); a header announcing more is
/// damaged.
const MAX_RECORD: usize = 1 << 30;

/// A record header whose magic and checksum hold.
#[derive(Clone, Copy, Debug)]
struct Header {
    len: usize,
    crc: u32,
    write: u64,
    after: u32,
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn header(b: &[u8]) -> Option<Header> {
    let b: &[u8; HDR] = b.get(..HDR)?.try_into().ok()?;
    if u32_at(b, 0) != MAGIC || u32_at(b, 28) != crc32c::crc32c(&b[..28]) {
        return None;
    }
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[12..20]);
    let len = u32_at(b, 4) as usize;
    (len <= MAX_RECORD).then_some(Header {
        len,
        crc: u32_at(b, 8),
        write: u64::from_le_bytes(w),
        after: u32_at(b, 20),
    })
}

/// The whole, valid record at the start of `b`, if there is one.
fn record_at(b: &[u8]) -> Option<Header> {
    let h = header(b)?;
    let p = b.get(HDR..HDR + h.len)?;
    (crc32c::crc32c(p) == h.crc).then_some(h)
}

/// Appends one framed record to `buf`, its payload written by `payload`; [`seal`] numbers
/// it when its write goes out. On an error `buf` is left as it was.
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
    set_place(h, 0, 0);
    Ok(())
}

/// Writes a header's write number and count of records after it, and its checksum.
fn set_place(h: &mut [u8], write: u64, after: u32) {
    h[12..20].copy_from_slice(&write.to_le_bytes());
    h[20..24].copy_from_slice(&after.to_le_bytes());
    h[24..28].copy_from_slice(&[0; 4]);
    let hcrc = crc32c::crc32c(&h[..28]);
    h[28..32].copy_from_slice(&hcrc.to_le_bytes());
}

/// Numbers the records pushed into `buf` as the records of write `write`.
pub(super) fn seal(buf: &mut [u8], write: u64) {
    let mut starts = Vec::new();
    let mut at = 0;
    while at + HDR <= buf.len() {
        starts.push(at);
        at += HDR + u32_at(buf, at + 4) as usize;
    }
    let n = starts.len();
    for (i, s) in starts.into_iter().enumerate() {
        set_place(&mut buf[s..s + HDR], write, (n - 1 - i) as u32);
    }
}

/// Where the chain of records stands: the last record's write and how many records
/// were still to follow it in that write (none before the first record).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Chain {
    pub(super) last: Option<(u64, u32)>,
}

impl Chain {
    /// The number of the next write: the one after the last whole write.
    pub(super) fn next_write(&self) -> u64 {
        self.last.map_or(1, |(w, _)| w + 1)
    }

    /// Whether `h` may come next.
    fn admits(&self, h: &Header) -> bool {
        match self.last {
            None => true,
            Some((w, 0)) => h.write == w + 1,
            Some((w, a)) => h.write == w && h.after == a - 1,
        }
    }

    /// The write that a record at this point belongs to. Before the first record of the
    /// log that is write 1: a log whose first segment was deleted starts with a new
    /// segment's first write, which was durable before the deletion, so damage there is
    /// never a torn write.
    fn current(&self) -> u64 {
        match self.last {
            None => 1,
            Some((w, 0)) => w + 1,
            Some((w, _)) => w,
        }
    }
}

/// Whether damage at `at` (in the last segment) lies in the last write, number `write`:
/// every valid record from there on belongs to that write. The bytes of a damaged record
/// whose header is intact are its own (its checksummed length says so, and a client's
/// payload may look like a record). After that every offset is tried, even inside the
/// records found: a look-alike in a payload must not hide a record of a later write.
fn in_last_write(data: &[u8], at: usize, write: u64) -> bool {
    let end = data.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
    let mut i = match header(&data[at..]) {
        Some(h) if h.write == write => at + HDR + h.len,
        Some(_) => return false,
        None => at + 1,
    };
    while i < end {
        if record_at(&data[i..]).is_some_and(|h| h.write != write) {
            return false;
        }
        i += 1;
    }
    true
}

/// A segment's whole records.
pub(super) struct Scanned {
    /// Each record's offset and payload range.
    pub(super) records: Vec<(usize, Range<usize>)>,
    /// Where the last whole record ends.
    pub(super) end: usize,
}

/// The whole records of a segment's bytes `data` read from `path`, which must go on
/// `chain`. A segment ends at its last record, or where only zeros follow (a
/// preallocated segment's unwritten rest). Damage is refused, except a torn last write
/// of the last segment (`last`), which is cut whole.
pub(super) fn records(
    data: &[u8],
    path: &Path,
    last: bool,
    chain: &mut Chain,
) -> Result<Scanned, WalError> {
    if data.starts_with(OLD_MAGIC) {
        return Err(WalError::OldFormat(path.display().to_string()));
    }
    let mut out = Vec::new();
    // Where the last whole write ends: records kept, offset, chain.
    let mut whole = (0, 0, *chain);
    let mut at = 0usize;
    // The damage found, and whether it may be a torn last write.
    let (problem, may_be_torn) = loop {
        let rest = &data[at..];
        if rest.iter().all(|b| *b == 0) {
            if chain.last.is_some_and(|(_, a)| a > 0) {
                break ("a write whose last records are missing", true);
            }
            return Ok(Scanned {
                records: out,
                end: at,
            });
        }
        let problem = match header(rest) {
            None if rest.len() < HDR => "an incomplete record header",
            None => "a record header that fails its checksum",
            Some(h) if rest.len() < HDR + h.len => "a record cut short",
            Some(h) if crc32c::crc32c(&rest[HDR..HDR + h.len]) != h.crc => {
                "a record that fails its checksum"
            }
            Some(h) if !chain.admits(&h) => break ("a record out of sequence", false),
            Some(h) => {
                out.push((at, at + HDR..at + HDR + h.len));
                at += HDR + h.len;
                chain.last = Some((h.write, h.after));
                if h.after == 0 {
                    whole = (out.len(), at, *chain);
                }
                continue;
            }
        };
        break (problem, last && in_last_write(data, at, chain.current()));
    };
    if !(last && may_be_torn) {
        return Err(WalError::damaged(path, at as u64, problem));
    }
    let (kept, end, before) = whole;
    tracing::warn!(path = %path.display(), offset = at, cut_from = end, bytes = data.len() - end, what = problem, "cutting a torn last write at the wal's tail");
    out.truncate(kept);
    *chain = before;
    Ok(Scanned { records: out, end })
}
