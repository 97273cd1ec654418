//! Tests of the segment-file store: round trips, reopening, segment rolling, torn tails,
//! damaged payloads and headers (at open and after), repair, and `next_position`.

use super::*;
use std::ops::Range;
use tempfile::TempDir;

fn small() -> DiskOptions {
    DiskOptions {
        segment_bytes: 4096,
        max_payload: 1024,
        sync: true,
    }
}

/// A payload of `n` bytes that depends on `pos`, so misplaced reads show.
fn entry(pos: u64, n: usize) -> Entry {
    let payload: Vec<u8> = (0..n).map(|i| (pos as usize * 31 + i * 7) as u8).collect();
    Entry {
        kind: LogKind::Data,
        payload: Bytes::from(payload),
    }
}

fn open(dir: &Path, opts: DiskOptions) -> (DiskStore, OpenReport) {
    DiskStore::open(dir, opts).unwrap()
}

fn fill(st: &mut DiskStore, range: Range<u64>, n: usize) {
    for p in range {
        st.append(p, &entry(p, n), false).unwrap();
    }
    st.sync().unwrap();
}

fn assert_entries(st: &DiskStore, range: Range<u64>, n: usize) {
    for p in range {
        assert_eq!(st.get(p).unwrap(), Some(entry(p, n)), "position {p}");
    }
}

/// The file and offset of `pos`'s record.
fn loc(st: &DiskStore, pos: u64) -> (PathBuf, u64) {
    let l = st.index[&pos];
    (st.segments[l.seg].path.clone(), l.offset)
}

fn flip(path: &Path, offset: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], offset).unwrap();
}

fn truncate(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn is_corrupt(r: Result<Option<Entry>, StoreError>, want: u64) -> bool {
    matches!(r, Err(StoreError::Corrupt { pos, .. }) if pos == want)
}

#[test]
fn round_trip_kinds_limits_and_occupied() {
    let tmp = TempDir::new().unwrap();
    let (mut st, rep) = open(&tmp.path().join("new"), small());
    assert_eq!(rep, OpenReport::default());
    assert!(st.is_empty() && st.get(0).unwrap().is_none() && !st.contains(0));

    let junk = Entry {
        kind: LogKind::Junk,
        payload: Bytes::new(),
    };
    let empty = Entry {
        kind: LogKind::Data,
        payload: Bytes::new(),
    };
    let full = entry(3, 1024);
    st.append(0, &entry(0, 10), false).unwrap();
    st.append(1, &junk, false).unwrap();
    st.append(2, &empty, false).unwrap();
    st.append(3, &full, false).unwrap();
    // Read back before any sync: no user-space buffering.
    assert_eq!(st.get(0).unwrap(), Some(entry(0, 10)));
    assert_eq!(st.get(1).unwrap(), Some(junk.clone()));
    assert_eq!(st.get(2).unwrap(), Some(empty.clone()));
    assert_eq!(st.get(3).unwrap(), Some(full.clone()));
    assert!(st.contains(3) && !st.contains(4));

    let big = entry(4, 1025);
    assert!(matches!(
        st.append(4, &big, false),
        Err(StoreError::TooLarge {
            len: 1025,
            max: 1024
        })
    ));
    assert!(!st.contains(4));
    assert!(matches!(
        st.append(1, &entry(1, 5), false),
        Err(StoreError::Occupied { pos: 1 })
    ));
    // `repair` only replaces what is known corrupt.
    assert!(matches!(
        st.append(1, &entry(1, 5), true),
        Err(StoreError::Occupied { pos: 1 })
    ));
    assert_eq!(st.get(1).unwrap(), Some(junk.clone()));
    // On a free position `repair` is a plain append.
    st.append(9, &entry(9, 5), true).unwrap();
    st.sync().unwrap();
    assert_eq!(st.len(), 5);
    assert_eq!(st.next_position(), 10);

    drop(st);
    let (st, rep) = open(&tmp.path().join("new"), small());
    assert_eq!(rep.entries, 5);
    assert_eq!(st.get(1).unwrap(), Some(junk));
    assert_eq!(st.get(2).unwrap(), Some(empty));
    assert_eq!(st.get(3).unwrap(), Some(full));
    assert_eq!(st.get(9).unwrap(), Some(entry(9, 5)));
}

#[test]
fn reopen_after_sync_returns_every_entry() {
    let tmp = TempDir::new().unwrap();
    let (mut st, _) = open(tmp.path(), DiskOptions::default());
    fill(&mut st, 0..100, 200);
    drop(st);
    let (mut st, rep) = open(tmp.path(), DiskOptions::default());
    assert_eq!(rep.entries, 100);
    assert_eq!(rep.segments, 1);
    assert!(rep.torn_tail.is_none() && rep.corrupt.is_empty());
    assert!(st.damaged().is_empty());
    assert_entries(&st, 0..100, 200);
    // Appends continue in the same (not full) segment.
    fill(&mut st, 100..110, 200);
    drop(st);
    let (st, rep) = open(tmp.path(), DiskOptions::default());
    assert_eq!((rep.entries, rep.segments), (110, 1));
    assert_entries(&st, 0..110, 200);
}

#[test]
fn sync_off_still_round_trips() {
    let tmp = TempDir::new().unwrap();
    let opts = DiskOptions {
        sync: false,
        ..small()
    };
    let (mut st, _) = open(tmp.path(), opts);
    fill(&mut st, 0..50, 100);
    drop(st);
    let (st, rep) = open(tmp.path(), opts);
    assert_eq!(rep.entries, 50);
    assert_entries(&st, 0..50, 100);
}

#[test]
fn segments_roll_and_reopen() {
    let tmp = TempDir::new().unwrap();
    let (mut st, _) = open(tmp.path(), small());
    // 128-byte records, 32 to a 4 KiB segment: 200 make 7 segments.
    fill(&mut st, 0..200, 100);
    drop(st);
    let segs = list_segments(tmp.path()).unwrap();
    assert_eq!(segs.len(), 7);
    for (i, (num, path)) in segs.iter().enumerate() {
        assert_eq!(*num, i as u64);
        assert!(path.ends_with(format!("seg-{i:08}.log")));
        assert!(file_len(path) <= 4096);
    }
    let (mut st, rep) = open(tmp.path(), small());
    assert_eq!((rep.entries, rep.segments), (200, 7));
    assert!(rep.torn_tail.is_none() && rep.corrupt.is_empty());
    assert_entries(&st, 0..200, 100);
    assert_eq!(st.next_position(), 200);
    fill(&mut st, 200..300, 100);
    drop(st);
    let (st, rep) = open(tmp.path(), small());
    assert_eq!((rep.entries, rep.segments), (300, 10));
    assert_entries(&st, 0..300, 100);
}

/// Writes 0..10 over two segments, cuts the last record `cut` bytes in, reopens.
fn torn_tail(cut: u64) {
    let tmp = TempDir::new().unwrap();
    let opts = DiskOptions {
        segment_bytes: 1024,
        ..small()
    };
    let (mut st, _) = open(tmp.path(), opts);
    fill(&mut st, 0..10, 100); // 8 records to a segment
    let (path, off) = loc(&st, 9);
    assert_eq!(st.index[&9].seg, 1);
    drop(st);
    truncate(&path, off + cut);

    let (mut st, rep) = open(tmp.path(), opts);
    assert_eq!(rep.torn_tail, Some((path.clone(), off, cut)));
    assert!(rep.corrupt.is_empty());
    assert_eq!(rep.entries, 9);
    assert_eq!(file_len(&path), off);
    assert_entries(&st, 0..9, 100);
    assert_eq!(st.get(9).unwrap(), None);
    assert!(!st.contains(9) && st.damaged().is_empty());
    assert_eq!(st.next_position(), 9);

    st.append(9, &entry(9, 50), false).unwrap();
    st.append(10, &entry(10, 100), false).unwrap();
    st.sync().unwrap();
    assert_eq!(loc(&st, 9), (path.clone(), off));
    drop(st);
    let (st, rep) = open(tmp.path(), opts);
    assert!(rep.torn_tail.is_none() && rep.corrupt.is_empty());
    assert_eq!(rep.entries, 11);
    assert_entries(&st, 0..9, 100);
    assert_eq!(st.get(9).unwrap(), Some(entry(9, 50)));
    assert_eq!(st.get(10).unwrap(), Some(entry(10, 100)));
}

#[test]
fn torn_tail_in_payload_is_truncated() {
    torn_tail(HDR as u64 + 40);
}

#[test]
fn torn_tail_in_header_is_truncated() {
    torn_tail(11);
}

#[test]
fn flipped_payload_byte_is_reported_and_repairable() {
    let tmp = TempDir::new().unwrap();
    let (mut st, _) = open(tmp.path(), small());
    fill(&mut st, 0..20, 100);
    let (path, off) = loc(&st, 7);
    drop(st);
    flip(&path, off + HDR as u64 + 50);

    let (mut st, rep) = open(tmp.path(), small());
    assert_eq!(rep.corrupt, vec![(path.clone(), off, Some(7))]);
    assert!(rep.torn_tail.is_none());
    assert_eq!(rep.entries, 19);
    assert_eq!(file_len(&path), 20 * 128, "nothing truncated");
    match st.get(7) {
        Err(StoreError::Corrupt {
            pos,
            path: p,
            offset,
            ..
        }) => {
            assert_eq!((pos, p, offset), (7, path.clone(), off));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_entries(&st, 0..7, 100);
    assert_entries(&st, 8..20, 100);
    assert_eq!(st.damaged(), vec![7]);
    assert!(st.contains(7));
    assert_eq!(st.next_position(), 20);

    assert!(matches!(
        st.append(7, &entry(7, 100), false),
        Err(StoreError::Occupied { pos: 7 })
    ));
    st.append(7, &entry(7, 100), true).unwrap();
    assert_eq!(st.get(7).unwrap(), Some(entry(7, 100)));
    assert!(st.damaged().is_empty());
    st.sync().unwrap();
    drop(st);

    let (st, rep) = open(tmp.path(), small());
    // The damaged record is still on disk, but the repair after it wins.
    assert_eq!(rep.corrupt, vec![(path, off, Some(7))]);
    assert_eq!(rep.entries, 20);
    assert!(st.damaged().is_empty());
    assert_entries(&st, 0..20, 100);
}

#[test]
fn flipped_header_byte_resynchronises() {
    let tmp = TempDir::new().unwrap();
    let (mut st, _) = open(tmp.path(), small());
    fill(&mut st, 0..20, 100);
    let (path, off) = loc(&st, 7);
    drop(st);
    flip(&path, off + 9); // inside the position field

    let (mut st, rep) = open(tmp.path(), small());
    assert_eq!(rep.corrupt, vec![(path.clone(), off, None)]);
    assert!(rep.torn_tail.is_none());
    assert_eq!(file_len(&path), 20 * 128, "nothing truncated");
    assert_eq!(rep.entries, 19);
    assert_entries(&st, 0..7, 100);
    assert_entries(&st, 8..20, 100);
    // Its position could not be read, so it is simply missing.
    assert_eq!(st.get(7).unwrap(), None);
    assert!(st.damaged().is_empty());
    st.append(7, &entry(7, 100), false).unwrap();
    st.sync().unwrap();
    drop(st);
    let (st, rep) = open(tmp.path(), small());
    assert_eq!(rep.corrupt, vec![(path, off, None)]);
    assert_entries(&st, 0..20, 100);
}

#[test]
fn damaged_last_header_is_a_torn_tail() {
    let tmp = TempDir::new().unwrap();
    let (mut st, _) = open(tmp.path(), small());
    fill(&mut st, 0..5, 100);
    let (path, off) = loc(&st, 4);
    drop(st);
    flip(&path, off); // the magic of the last record

    let (st, rep) = open(tmp.path(), small());
    assert_eq!(rep.torn_tail, Some((path.clone(), off, 128)));
    assert!(rep.corrupt.is_empty());
    assert_eq!(file_len(&path), off);
    assert_entries(&st, 0..4, 100);
    assert_eq!(st.next_position(), 4);
}

#[test]
fn damage_in_a_non_last_segment_is_reported_not_truncated() {
    let tmp = TempDir::new().unwrap();
    let opts = DiskOptions {
        segment_bytes: 1024,
        ..small()
    };
    let (mut st, _) = open(tmp.path(), opts);
    fill(&mut st, 0..24, 100); // three segments of 8 records
    let (seg0, off7) = loc(&st, 7);
    let (seg1, off15) = loc(&st, 15);
    assert_ne!(seg0, seg1);
    drop(st);
    // Segment 0 loses half of its last record; segment 1's last header is damaged.
    truncate(&seg0, off7 + 60);
    flip(&seg1, off15 + 17);

    let (mut st, rep) = open(tmp.path(), opts);
    assert!(rep.torn_tail.is_none());
    assert_eq!(
        rep.corrupt,
        vec![(seg0.clone(), off7, Some(7)), (seg1.clone(), off15, None)]
    );
    assert_eq!(file_len(&seg0), off7 + 60);
    assert_eq!(file_len(&seg1), 1024);
    assert_eq!(rep.entries, 22);
    assert!(is_corrupt(st.get(7), 7));
    assert_eq!(st.get(15).unwrap(), None);
    assert_eq!(st.damaged(), vec![7]);
    assert_entries(&st, 0..7, 100);
    assert_entries(&st, 8..15, 100);
    assert_entries(&st, 16..24, 100);
    st.append(7, &entry(7, 100), true).unwrap();
    st.append(15, &entry(15, 100), false).unwrap();
    st.sync().unwrap();
    drop(st);
    let (st, rep) = open(tmp.path(), opts);
    assert_eq!(rep.corrupt.len(), 2);
    assert!(st.damaged().is_empty());
    assert_entries(&st, 0..24, 100);
}

#[test]
fn corruption_after_open_is_found_on_read() {
    let tmp = TempDir::new().unwrap();
    let (mut st, _) = open(tmp.path(), small());
    fill(&mut st, 0..10, 100);
    let (path, off) = loc(&st, 3);
    flip(&path, off + HDR as u64 + 99);
    let (_, off5) = loc(&st, 5);
    flip(&path, off5 + 16); // the length field: the header no longer checks out

    assert!(is_corrupt(st.get(3), 3));
    assert!(is_corrupt(st.get(3), 3), "still corrupt on a second read");
    assert!(is_corrupt(st.get(5), 5));
    assert_eq!(st.damaged(), vec![3, 5]);
    assert!(st.contains(3));
    for p in [0, 1, 2, 4, 6, 7, 8, 9] {
        assert_eq!(st.get(p).unwrap(), Some(entry(p, 100)));
    }
    st.append(3, &entry(3, 100), true).unwrap();
    assert_eq!(st.get(3).unwrap(), Some(entry(3, 100)));
    assert_eq!(st.damaged(), vec![5]);

    // A store truncated under the reader: the record cannot be read back whole.
    let (_, off9) = loc(&st, 9);
    truncate(&path, off9 + 20);
    assert!(is_corrupt(st.get(9), 9));
    assert_eq!(st.damaged(), vec![5, 9]);
}

#[test]
fn next_position_after_open() {
    let tmp = TempDir::new().unwrap();
    let (mut st, _) = open(tmp.path(), small());
    assert_eq!(st.next_position(), 0);
    st.append(7, &entry(7, 10), false).unwrap();
    st.append(3, &entry(3, 10), false).unwrap();
    assert_eq!(st.next_position(), 8);
    st.sync().unwrap();
    drop(st);
    let (mut st, _) = open(tmp.path(), small());
    assert_eq!(st.next_position(), 8);
    st.append(12, &entry(12, 10), false).unwrap();
    st.append(13, &entry(13, 10), false).unwrap();
    st.sync().unwrap();
    let (path, off) = loc(&st, 13);
    drop(st);
    // A damaged highest position still counts as held.
    flip(&path, off + HDR as u64);
    let (st, rep) = open(tmp.path(), small());
    assert_eq!(rep.corrupt, vec![(path.clone(), off, Some(13))]);
    assert_eq!(st.damaged(), vec![13]);
    assert_eq!(st.next_position(), 14);
    drop(st);
    // A torn highest record does not.
    truncate(&path, off + HDR as u64 + 5);
    let (st, rep) = open(tmp.path(), small());
    assert_eq!(rep.torn_tail, Some((path, off, HDR as u64 + 5)));
    assert!(st.damaged().is_empty());
    assert_eq!(st.next_position(), 13);
}

#[test]
fn scan_resynchronises_and_finds_tails() {
    let rec = |p: u64| {
        let e = entry(p, 33);
        let mut r = header_of(p, &e).to_bytes().to_vec();
        r.extend_from_slice(&e.payload);
        r
    };
    let mut b = b"not a record at all, just noise".to_vec();
    let r1 = rec(1);
    b.extend_from_slice(&r1);
    b.extend_from_slice(&rec(2)[..HDR + 5]);
    let s = scan(&b);
    assert_eq!(s.found.len(), 2);
    assert_eq!(s.found[0], Found::Garbage(0, 31));
    assert!(matches!(
        s.found[1],
        Found::Record(
            31,
            Header {
                pos: 1,
                len: 33,
                ..
            }
        )
    ));
    assert_eq!(s.tail, Some((31 + r1.len() as u64, Some(2))));

    // An unknown kind with a valid header is stepped over as damaged.
    let mut odd = rec(4);
    odd[24] = 9;
    let h = crc32fast::hash(&odd[8..HDR]);
    odd[4..8].copy_from_slice(&h.to_le_bytes());
    odd.extend_from_slice(&rec(5));
    let s = scan(&odd);
    assert!(matches!(&s.found[0], Found::Bad(0, 4, _)));
    assert!(matches!(
        s.found[1],
        Found::Record(_, Header { pos: 5, .. })
    ));
    assert_eq!(s.tail, None);

    assert_eq!(scan(&[]), Scan::default());
    assert_eq!(scan(&[1, 2, 3]).tail, Some((0, None)));
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<DiskStore>();
}
