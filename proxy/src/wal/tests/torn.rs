//! Writes torn by a power loss with their pages landed in any order, told apart from
//! damage that must refuse to start.

use super::*;

/// Two whole writes (entries 1 and 2 of group 0), then one write of three records:
/// group 0's entry 3, group 1's entry 1, group 0's entry 4. Fsync on: a preallocated
/// segment. Returns the three records' offsets and where the write ends.
fn a_three_record_write(dir: &Path) -> (Vec<u64>, u64) {
    let (mut w, _) = Wal::open(dir, true, &[0, 1], VOTERS.to_vec()).unwrap();
    w.append(0, Some(&hs(1, 0)), &[entry(1, 1)]).unwrap();
    w.append(0, None, &[entry(2, 1)]).unwrap();
    let start = w.end();
    w.stage(0, None, &[entry(3, 1)]).unwrap();
    w.stage(1, Some(&hs(1, 0)), &[entry(1, 1)]).unwrap();
    w.stage(0, None, &[entry(4, 1)]).unwrap();
    w.commit().unwrap();
    let data = std::fs::read(segment(dir, 1)).unwrap();
    let mut offsets = vec![start];
    for _ in 0..2 {
        let o = *offsets.last().unwrap() as usize;
        let len = u32::from_le_bytes(data[o + 4..o + 8].try_into().unwrap());
        offsets.push((o + HDR) as u64 + len as u64);
    }
    (offsets, w.end())
}

fn zero(path: &Path, at: u64, len: u64) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&vec![0u8; len as usize], at).unwrap();
}

/// A power loss may land a write's pages in any order: a record of the last write that
/// did not land, with later records of that write that did, is a torn last write. It is
/// cut whole (none of it was acknowledged), and the log goes on after the writes before
/// it; so is a last write whose last record did not land.
#[test]
fn a_write_torn_out_of_order_is_cut_whole() {
    let sync_open = |dir: &Path| Wal::open(dir, true, &[0, 1], VOTERS.to_vec()).unwrap();
    // (what did not land: record, from byte, bytes)
    for (rec, from, bytes) in [
        (1usize, 0u64, None),
        (0, 0, Some(HDR as u64)),
        (2, 0, None),
        (0, 40, Some(8)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let seg = segment(dir.path(), 1);
        let (off, end) = a_three_record_write(dir.path());
        let rec_end = off.get(rec + 1).copied().unwrap_or(end);
        zero(
            &seg,
            off[rec] + from,
            bytes.unwrap_or(rec_end - off[rec] - from),
        );
        {
            let (mut w, s) = sync_open(dir.path());
            assert_eq!(s[&0].last_index().unwrap(), 2, "record {rec} torn");
            assert_eq!(s[&1].last_index().unwrap(), 0, "record {rec} torn");
            assert_eq!(
                w.end(),
                off[0],
                "record {rec} torn: cut at the write's start"
            );
            w.append(1, None, &[entry(1, 2)]).unwrap();
            w.append(0, None, &[entry(3, 2)]).unwrap();
        }
        let (_, s) = sync_open(dir.path());
        assert_eq!(s[&0].last_index().unwrap(), 3);
        assert_eq!(s[&0].term(3).unwrap(), 2);
        assert_eq!(s[&1].last_index().unwrap(), 1);
        assert_eq!(s[&1].term(1).unwrap(), 2);
    }
}

/// Damage in a write before the last one is not a torn tail, though the last write is
/// torn too: the damaged write was synced and acknowledged.
#[test]
fn a_torn_last_write_does_not_hide_damage_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let seg = segment(dir.path(), 1);
    let (off, _) = a_three_record_write(dir.path());
    zero(&seg, off[1], 8);
    let second = off[0] - (off[1] - off[0]);
    flip(&seg, second + HDR as u64 + 1);
    let e = match Wal::open(dir.path(), true, &[0, 1], VOTERS.to_vec()) {
        Ok(_) => panic!("opened a damaged log"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains(&format!("offset {second}")), "{e}");
}

/// A whole, valid record out of sequence (here a copy of the first one after the last)
/// is not taken for a torn write: the proxy refuses to start.
#[test]
fn a_record_out_of_sequence_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let seg = segment(dir.path(), 1);
    let off = three_records(dir.path());
    let data = std::fs::read(&seg).unwrap();
    let end = data.len();
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&data[..off[1] as usize]).unwrap();
    drop(f);
    let e = refused(dir.path(), &[0]);
    assert!(
        e.contains(&format!("offset {end}")) && e.contains("out of sequence"),
        "{e}"
    );
}

/// A log written before records were numbered by write is refused with a clear error.
#[test]
fn a_log_of_the_older_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(segment(dir.path(), 1), b"MWAL\x10\0\0\0").unwrap();
    let e = refused(dir.path(), &[0]);
    assert!(
        e.contains("proxy.wal.1") && e.contains("older mason"),
        "{e}"
    );
}

/// Damage at the very start of the log is a torn write only if it is in the log's first
/// write: a damaged first record followed by one later, synced write is refused; a first
/// write of three records whose first header did not land is cut.
#[test]
fn damage_at_the_start_of_the_log_is_torn_only_in_its_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let seg = segment(dir.path(), 1);
    {
        let (mut w, _) = open(dir.path(), &[0]);
        w.append(0, None, &[entry(1, 1)]).unwrap();
        w.append(0, None, &[entry(2, 1)]).unwrap();
    }
    flip(&seg, 2);
    let e = refused(dir.path(), &[0]);
    assert!(e.contains("offset 0"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let seg = segment(dir.path(), 1);
    {
        let (mut w, _) = open(dir.path(), &[0]);
        for i in 1..=3 {
            w.stage(0, None, &[entry(i, 1)]).unwrap();
        }
        w.commit().unwrap();
    }
    zero(&seg, 0, HDR as u64);
    let (w, s) = open(dir.path(), &[0]);
    assert_eq!(s[&0].last_index().unwrap(), 0);
    assert_eq!(w.end(), 0);
}

/// A record look-alike in the payload of a record whose header is damaged, numbered as the
/// last write and long enough to cover the writes after it, does not hide them: the
/// damage is refused.
#[test]
fn a_look_alike_cannot_hide_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    let seg = segment(dir.path(), 1);
    {
        let (mut w, _) = open(dir.path(), &[0]);
        let mut e = entry(1, 1);
        e.data = bytes::Bytes::from(vec![7u8; 200]);
        w.append(0, None, &[e]).unwrap();
        w.append(0, None, &[entry(2, 1)]).unwrap();
        w.append(0, None, &[entry(3, 1)]).unwrap();
    }
    let mut data = std::fs::read(&seg).unwrap();
    // Inside the first record's payload: a header numbered write 1, whose payload is
    // everything after it (the later writes included), with a valid checksum.
    let at = HDR + 60;
    let mut fake = Vec::new();
    frame::push(&mut fake, |b| {
        b.extend_from_slice(&data[at + HDR..]);
        Ok::<(), ()>(())
    })
    .unwrap();
    frame::seal(&mut fake, 1);
    data[at..at + HDR].copy_from_slice(&fake[..HDR]);
    // The first record's header is damaged.
    data[2] ^= 0x40;
    std::fs::write(&seg, &data).unwrap();
    let e = refused(dir.path(), &[0]);
    assert!(e.contains("offset 0"), "{e}");
}
