//! The segment-file store a log server runs on: [`DiskStore`], a [`Storage`] that keeps every
//! entry in append-only, checksummed segment files and rebuilds its index when opened.
//!
//! Entries are appended to `seg-<n>.log` files (`n` zero-padded to 8 digits) in one directory;
//! once a segment would grow past [`DiskOptions::segment_bytes`] the next one is started.
//! Each entry is one record, all integers little-endian:
//!
//! ```text
//! offset  size  field
//!      0     4  magic            "CRFU" (0x55465243)
//!      4     4  header checksum  crc32 of bytes 8..28
//!      8     8  position
//!     16     4  payload length
//!     20     4  payload checksum crc32 of the payload
//!     24     1  kind             0 = Data, 1 = Junk
//!     25     3  reserved         zero
//!     28     n  payload
//! ```
//!
//! The header checksum makes the length trustworthy, so a record with a damaged payload can
//! be stepped over, and a scan can resynchronise after a damaged header by searching for the
//! next offset with the magic and a valid header checksum. Every read re-checks the header and
//! the payload checksum; what fails is [`StoreError::Corrupt`], never data, and is remembered
//! in [`Storage::damaged`].
//!
//! Opening scans every segment (each is read whole: memory peaks at one segment). A record
//! cut off by the end of the last segment (what a crash mid-write leaves) is a torn tail and
//! is truncated away; damage elsewhere is reported in [`OpenReport`]. When one position has
//! two records (a repair after damage), the later wins. Appends then continue in the last
//! segment (after its torn tail, if any, was cut) unless it is full.

use crate::storage::{Entry, Storage, StoreError};
use bytes::Bytes;
use mason_common::logmsg::LogKind;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

#[cfg(test)]
mod tests;

const MAGIC: u32 = u32::from_le_bytes(*b"CRFU");
/// Bytes of a record before its payload.
const HDR: usize = 28;

/// How a [`DiskStore`] lays out and syncs its files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskOptions {
    /// A segment is closed once the next record would take it past this size.
    pub segment_bytes: u64,
    /// The largest payload `append` accepts.
    pub max_payload: usize,
    /// Whether `sync` calls fdatasync (off: appends are durable only when the OS says so).
    pub sync: bool,
}

impl Default for DiskOptions {
    fn default() -> DiskOptions {
        DiskOptions {
            segment_bytes: 64 << 20,
            max_payload: 1 << 20,
            sync: true,
        }
    }
}

/// What [`DiskStore::open`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Readable entries in the index.
    pub entries: u64,
    /// Segment files found.
    pub segments: u32,
    /// A record cut off by the end of the last segment: (file, offset cut at, bytes dropped).
    pub torn_tail: Option<(PathBuf, u64, u64)>,
    /// Damaged records or regions: (file, offset, position when the header was readable).
    pub corrupt: Vec<(PathBuf, u64, Option<u64>)>,
}

/// A record header whose magic and checksum hold (the kind byte is checked separately).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    pos: u64,
    len: u32,
    crc: u32,
    kind: u8,
}

impl Header {
    /// Parses the header at the start of `b`.
    fn parse(b: &[u8]) -> Option<Header> {
        let b: &[u8; HDR] = b.get(..HDR)?.try_into().ok()?;
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if u32_at(0) != MAGIC || u32_at(4) != crc32fast::hash(&b[8..]) {
            return None;
        }
        let pos = u64::from(u32_at(8)) | u64::from(u32_at(12)) << 32;
        let (len, crc, kind) = (u32_at(16), u32_at(20), b[24]);
        Some(Header {
            pos,
            len,
            crc,
            kind,
        })
    }

    fn to_bytes(self) -> [u8; HDR] {
        let mut b = [0u8; HDR];
        b[..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[8..16].copy_from_slice(&self.pos.to_le_bytes());
        b[16..20].copy_from_slice(&self.len.to_le_bytes());
        b[20..24].copy_from_slice(&self.crc.to_le_bytes());
        b[24] = self.kind;
        let hcrc = crc32fast::hash(&b[8..]);
        b[4..8].copy_from_slice(&hcrc.to_le_bytes());
        b
    }
}

/// The header of `entry` stored at `pos`.
fn header_of(pos: u64, entry: &Entry) -> Header {
    let len = entry.payload.len() as u32;
    let crc = crc32fast::hash(&entry.payload);
    Header {
        pos,
        len,
        crc,
        kind: entry.kind as i32 as u8,
    }
}

/// What a scan of one segment's bytes found, in file order.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// A whole, valid record at an offset.
    Record(u64, Header),
    /// A readable header whose payload (or kind) is damaged: offset, position, what is wrong.
    Bad(u64, u64, String),
    /// Bytes with no valid header (offset, length), skipped up to the next valid one.
    Garbage(u64, u64),
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Scan {
    found: Vec<Found>,
    /// From this offset to the end nothing whole and valid was found; with the position of
    /// the record there when its header was readable but its payload cut off.
    tail: Option<(u64, Option<u64>)>,
}

/// Whether a valid header whose payload fits in `b` starts at `at`.
fn whole_record_at(b: &[u8], at: usize) -> bool {
    Header::parse(&b[at..]).is_some_and(|h| b.len() - at - HDR >= h.len as usize)
}

fn scan(b: &[u8]) -> Scan {
    let mut s = Scan::default();
    let mut o = 0usize;
    while o < b.len() {
        let Some(h) = Header::parse(&b[o..]) else {
            // Resynchronise: the next offset with a valid header whose record fits.
            let last = b.len().saturating_sub(HDR - 1);
            let Some(q) = (o + 1..last).find(|&q| whole_record_at(b, q)) else {
                s.tail = Some((o as u64, None));
                break;
            };
            s.found.push(Found::Garbage(o as u64, (q - o) as u64));
            o = q;
            continue;
        };
        let end = o + HDR + h.len as usize;
        if end > b.len() {
            s.tail = Some((o as u64, Some(h.pos)));
            break;
        }
        let computed = crc32fast::hash(&b[o + HDR..end]);
        s.found.push(if computed != h.crc {
            let why = format!("payload checksum {computed:#010x}, stored {:#010x}", h.crc);
            Found::Bad(o as u64, h.pos, why)
        } else if LogKind::try_from(i32::from(h.kind)).is_err() {
            Found::Bad(o as u64, h.pos, format!("unknown kind {}", h.kind))
        } else {
            Found::Record(o as u64, h)
        });
        o = end;
    }
    s
}

/// Where the record of a readable position lies.
#[derive(Clone, Copy, Debug)]
struct Loc {
    seg: usize,
    offset: u64,
    h: Header,
}

/// Where a damaged position's record lies (segment index, offset), and what is wrong.
#[derive(Clone, Debug)]
struct Damage(usize, u64, String);

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    num: u64,
    file: File,
    len: u64,
}

impl Segment {
    fn open(num: u64, path: PathBuf, create: bool) -> Result<Segment, StoreError> {
        let mut oo = OpenOptions::new();
        oo.read(true).append(true).create_new(create);
        let file = oo.open(&path).map_err(|e| io_err(&path, e))?;
        Ok(Segment {
            path,
            num,
            file,
            len: 0,
        })
    }
}

/// Entries in segment files under one directory; see the module documentation.
#[derive(Debug)]
pub struct DiskStore {
    dir: PathBuf,
    opts: DiskOptions,
    segments: Vec<Segment>,
    index: HashMap<u64, Loc>,
    /// Positions whose latest record is known corrupt (found at open or on a read).
    damaged: Mutex<BTreeMap<u64, Damage>>,
    /// The segment appends go to; `None` until the first append starts a new one.
    current: Option<usize>,
    /// Segments written since the last sync.
    dirty: BTreeSet<usize>,
    /// Whether a segment file was created since the last sync (the directory needs one too).
    dir_dirty: bool,
    /// One past the highest position held (readable or damaged).
    next: u64,
}

fn io_err(path: &Path, source: std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    StoreError::Io { path, source }
}

/// `seg-<n>.log` files in `dir`, by `n`.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut segs = Vec::new();
    for ent in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let ent = ent.map_err(|e| io_err(dir, e))?;
        let name = ent.file_name();
        let num = name
            .to_str()
            .and_then(|n| n.strip_prefix("seg-")?.strip_suffix(".log"));
        let num = num
            .filter(|d| !d.starts_with('+'))
            .and_then(|d| d.parse::<u64>().ok());
        if let Some(num) = num {
            segs.push((num, ent.path()));
        }
    }
    segs.sort();
    Ok(segs)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DiskStore {
    /// Opens (creating if need be) the store in `dir`, scanning every segment to rebuild the
    /// index; a torn tail of the last segment is truncated away.
    pub fn open(dir: &Path, opts: DiskOptions) -> Result<(DiskStore, OpenReport), StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let listed = list_segments(dir)?;
        let (dir, count) = (dir.to_path_buf(), listed.len());
        let mut st = DiskStore {
            dir,
            opts,
            segments: Vec::with_capacity(count),
            index: HashMap::new(),
            damaged: Mutex::new(BTreeMap::new()),
            current: None,
            dirty: BTreeSet::new(),
            dir_dirty: false,
            next: 0,
        };
        let mut report = OpenReport::default();
        for (i, (num, path)) in listed.into_iter().enumerate() {
            let mut seg = Segment::open(num, path, false)?;
            let data = std::fs::read(&seg.path).map_err(|e| io_err(&seg.path, e))?;
            seg.len = data.len() as u64;
            let Scan { mut found, tail } = scan(&data);
            match tail {
                // A segment that is not the last cannot have been torn by a crash.
                Some((off, pos)) if i + 1 < count => found.push(match pos {
                    Some(p) => Found::Bad(off, p, "cut off by the end of the segment".into()),
                    None => Found::Garbage(off, seg.len - off),
                }),
                Some((off, _)) => {
                    let (path, dropped) = (seg.path.clone(), seg.len - off);
                    tracing::warn!(path = %path.display(), offset = off, bytes = dropped,
                        "torn tail of the last segment: truncating");
                    seg.file.set_len(off).map_err(|e| io_err(&path, e))?;
                    if opts.sync {
                        seg.file.sync_data().map_err(|e| io_err(&path, e))?;
                    }
                    seg.len = off;
                    report.torn_tail = Some((path, off, dropped));
                }
                None => {}
            }
            st.apply(i, &seg.path, found, &mut report);
            if i + 1 == count && seg.len < opts.segment_bytes {
                st.current = Some(i);
            }
            st.segments.push(seg);
        }
        (report.entries, report.segments) = (st.index.len() as u64, count as u32);
        Ok((st, report))
    }

    /// Applies what the scan of segment `seg` found to the index and the damaged set.
    fn apply(&mut self, seg: usize, path: &Path, found: Vec<Found>, report: &mut OpenReport) {
        for f in found {
            match f {
                Found::Record(offset, h) => {
                    self.index.insert(h.pos, Loc { seg, offset, h });
                    lock(&self.damaged).remove(&h.pos);
                    self.next = self.next.max(h.pos.saturating_add(1));
                }
                Found::Bad(offset, pos, reason) => {
                    tracing::error!(path = %path.display(), offset, pos, "corrupt record: {reason}");
                    self.index.remove(&pos);
                    self.next = self.next.max(pos.saturating_add(1));
                    lock(&self.damaged).insert(pos, Damage(seg, offset, reason));
                    report.corrupt.push((path.to_path_buf(), offset, Some(pos)));
                }
                Found::Garbage(offset, len) => {
                    tracing::error!(path = %path.display(), offset, bytes = len,
                        "damaged record header: skipped to the next valid record");
                    report.corrupt.push((path.to_path_buf(), offset, None));
                }
            }
        }
    }

    /// Readable entries held (damaged positions not counted).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The segment the next record of `rec_len` bytes goes to, starting a new one if need be.
    fn writable_segment(&mut self, rec_len: u64) -> Result<usize, StoreError> {
        if let Some(i) = self.current {
            let s = &self.segments[i];
            if s.len == 0 || s.len + rec_len <= self.opts.segment_bytes {
                return Ok(i);
            }
        }
        let num = self.segments.last().map_or(0, |s| s.num + 1);
        let path = self.dir.join(format!("seg-{num:08}.log"));
        self.segments.push(Segment::open(num, path, true)?);
        self.dir_dirty = true;
        self.current = Some(self.segments.len() - 1);
        Ok(self.segments.len() - 1)
    }

    fn corrupt(&self, pos: u64, Damage(seg, offset, reason): &Damage) -> StoreError {
        let (path, offset, reason) = (self.segments[*seg].path.clone(), *offset, reason.clone());
        StoreError::Corrupt {
            pos,
            path,
            offset,
            reason,
        }
    }

    /// Reads the record at `loc` back and checks it is the one indexed.
    /// `Err(Ok(reason))` when it is corrupt, `Err(Err(_))` on an i/o error.
    fn read_checked(&self, loc: &Loc) -> Result<Entry, Result<String, StoreError>> {
        let seg = &self.segments[loc.seg];
        let mut buf = vec![0u8; HDR + loc.h.len as usize];
        if let Err(e) = seg.file.read_exact_at(&mut buf, loc.offset) {
            return Err(match e.kind() {
                std::io::ErrorKind::UnexpectedEof => Ok("file ends before the record does".into()),
                _ => Err(io_err(&seg.path, e)),
            });
        }
        match Header::parse(&buf) {
            None => return Err(Ok("record header no longer valid".into())),
            Some(h) if h != loc.h => return Err(Ok(format!("record header changed: {h:?}"))),
            Some(_) => {}
        }
        let computed = crc32fast::hash(&buf[HDR..]);
        if computed != loc.h.crc {
            let stored = loc.h.crc;
            let why = format!("payload checksum {computed:#010x}, stored {stored:#010x}");
            return Err(Ok(why));
        }
        let kind = LogKind::try_from(i32::from(loc.h.kind)).map_err(|e| Ok(e.to_string()))?;
        let payload = Bytes::from(buf).slice(HDR..);
        Ok(Entry { kind, payload })
    }
}

impl Storage for DiskStore {
    fn get(&self, pos: u64) -> Result<Option<Entry>, StoreError> {
        if let Some(d) = lock(&self.damaged).get(&pos) {
            return Err(self.corrupt(pos, d));
        }
        let Some(loc) = self.index.get(&pos) else {
            return Ok(None);
        };
        match self.read_checked(loc) {
            Ok(e) => Ok(Some(e)),
            Err(Err(e)) => Err(e),
            Err(Ok(reason)) => {
                let path = self.segments[loc.seg].path.display();
                tracing::error!(path = %path, offset = loc.offset, pos, "corrupt on read: {reason}");
                let d = Damage(loc.seg, loc.offset, reason);
                let err = self.corrupt(pos, &d);
                lock(&self.damaged).insert(pos, d);
                Err(err)
            }
        }
    }

    fn contains(&self, pos: u64) -> bool {
        self.index.contains_key(&pos) || lock(&self.damaged).contains_key(&pos)
    }

    fn append(&mut self, pos: u64, entry: &Entry, repair: bool) -> Result<(), StoreError> {
        let len = entry.payload.len();
        let max = self.opts.max_payload.min(u32::MAX as usize);
        if len > max {
            return Err(StoreError::TooLarge { len, max });
        }
        let replacing = repair && lock(&self.damaged).contains_key(&pos);
        if !replacing && self.contains(pos) {
            return Err(StoreError::Occupied { pos });
        }
        let h = header_of(pos, entry);
        let mut rec = Vec::with_capacity(HDR + len);
        rec.extend_from_slice(&h.to_bytes());
        rec.extend_from_slice(&entry.payload);
        let i = self.writable_segment(rec.len() as u64)?;
        let seg = &mut self.segments[i];
        let offset = seg.len;
        if let Err(e) = seg.file.write_all(&rec) {
            // Cut off whatever part was written; if even that fails, leave this segment.
            if seg.file.set_len(offset).is_err() {
                self.current = None;
            }
            return Err(io_err(&seg.path, e));
        }
        seg.len += rec.len() as u64;
        self.dirty.insert(i);
        self.index.insert(pos, Loc { seg: i, offset, h });
        lock(&self.damaged).remove(&pos);
        self.next = self.next.max(pos.saturating_add(1));
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        if !self.opts.sync {
            return Ok(());
        }
        while let Some(&i) = self.dirty.first() {
            let seg = &self.segments[i];
            seg.file.sync_data().map_err(|e| io_err(&seg.path, e))?;
            self.dirty.remove(&i);
        }
        if self.dir_dirty {
            let d = File::open(&self.dir).and_then(|d| d.sync_all());
            d.map_err(|e| io_err(&self.dir, e))?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    fn next_position(&self) -> u64 {
        self.next
    }

    fn damaged(&self) -> Vec<u64> {
        lock(&self.damaged).keys().copied().collect()
    }
}
