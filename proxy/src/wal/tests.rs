//! The shared log's replay: entries, hard states and snapshots of several groups across
//! restarts, new segments, a crash between a reset and its snapshot file, and damage.

use super::frame::HDR;
use super::*;
use raft::Storage;

mod torn;

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: bytes::Bytes::from(vec![index as u8]),
        ..Default::default()
    }
}

const VOTERS: [u64; 3] = [1, 2, 3];

fn open(dir: &Path, groups: &[u32]) -> (Wal, BTreeMap<u32, Store>) {
    Wal::open(dir, false, groups, VOTERS.to_vec()).unwrap()
}

fn refused(dir: &Path, groups: &[u32]) -> String {
    match Wal::open(dir, false, groups, VOTERS.to_vec()) {
        Ok(_) => panic!("opened a damaged log"),
        Err(e) => e.to_string(),
    }
}

fn snapshot(index: u64, term: u64, data: &'static [u8]) -> Snapshot {
    let mut snap = Snapshot {
        data: bytes::Bytes::from_static(data),
        ..Default::default()
    };
    snap.mut_metadata().index = index;
    snap.mut_metadata().term = term;
    snap.mut_metadata()
        .set_conf_state(raft::prelude::ConfState::from((VOTERS.to_vec(), vec![])));
    snap
}

fn hs(term: u64, commit: u64) -> HardState {
    HardState {
        term,
        commit,
        ..Default::default()
    }
}

#[test]
fn replays_entries_hard_state_and_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut w, _) = open(dir.path(), &[0]);
        w.append(0, None, &[entry(1, 1), entry(2, 1), entry(3, 1)])
            .unwrap();
        // A new leader overwrote index 3.
        w.append(0, Some(&hs(2, 2)), &[entry(3, 2)]).unwrap();
    }
    // Tear the tail: a partial record follows.
    {
        let mut f = OpenOptions::new()
            .append(true)
            .open(segment(dir.path(), 1))
            .unwrap();
        f.write_all(b"MWAL").unwrap();
        f.write_all(&[0x20, 1, 2]).unwrap();
    }
    let (mut w, s) = open(dir.path(), &[0]);
    assert_eq!(s[&0].last_index().unwrap(), 3);
    assert_eq!(s[&0].term(3).unwrap(), 2);
    assert_eq!(s[&0].initial_state().unwrap().hard_state.commit, 2);
    w.append(0, None, &[entry(4, 2)]).unwrap();
    drop(w);
    let (_, s) = open(dir.path(), &[0]);
    assert_eq!(s[&0].last_index().unwrap(), 4);
}

/// The groups of a process share one commit (one write, one fdatasync), and replay
/// hands each group its own records.
#[test]
fn groups_share_one_commit_and_replay_apart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut w, _) = Wal::open(dir.path(), true, &[0, 1, 2], VOTERS.to_vec()).unwrap();
        w.stage(0, None, &[entry(1, 1), entry(2, 1)]).unwrap();
        w.stage(1, Some(&hs(3, 1)), &[entry(1, 3)]).unwrap();
        w.stage(0, None, &[entry(3, 1)]).unwrap();
        // Nothing is written before the commit.
        assert_eq!(w.end(), 0);
        let n = w.commit().unwrap();
        assert_eq!(w.end(), n as u64);
        assert_eq!(w.commit().unwrap(), 0, "nothing staged, nothing written");
        assert!(matches!(
            w.stage(7, None, &[entry(1, 1)]),
            Err(WalError::UnknownGroup(7))
        ));
    }
    let (_, s) = open(dir.path(), &[0, 1, 2]);
    assert_eq!(s[&0].last_index().unwrap(), 3);
    assert_eq!(s[&0].initial_state().unwrap().hard_state.term, 0);
    assert_eq!(s[&1].last_index().unwrap(), 1);
    assert_eq!(s[&1].term(1).unwrap(), 3);
    assert_eq!(s[&1].initial_state().unwrap().hard_state.term, 3);
    assert_eq!(s[&2].last_index().unwrap(), 0);
    // A log that holds a group this process no longer hosts is refused, not dropped.
    let e = refused(dir.path(), &[0, 2]);
    assert!(e.contains("group 1") && e.contains("proxy.wal.1"), "{e}");
}

#[test]
fn a_snapshot_replaces_the_log_prefix_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut w, s) = open(dir.path(), &[0, 1]);
        let ents: Vec<Entry> = (1..=10).map(|i| entry(i, 1)).collect();
        w.append(0, None, &ents).unwrap();
        w.append(1, None, &ents[..4]).unwrap();
        s[&0].replay(None, &ents).unwrap();
        let snap = snapshot(8, 1, b"state at 8");
        s[&0].take(snap.clone(), 6).unwrap();
        let (mut h, kept) = s[&0].contents();
        h.commit = 9;
        assert_eq!(kept.first().map(|e| e.index), Some(6));
        let after: Vec<Entry> = kept.into_iter().filter(|e| e.index > 8).collect();
        // Staged before the snapshot: written first, in order.
        w.stage(1, None, &[entry(5, 1)]).unwrap();
        w.install_snapshot(0, &snap, &h, &after).unwrap();
        w.append(0, None, &[entry(11, 2)]).unwrap();
    }
    let (_, s) = open(dir.path(), &[0, 1]);
    let s0 = &s[&0];
    assert_eq!(s0.snapshot_now().data.as_ref(), b"state at 8");
    assert_eq!(s0.first_index().unwrap(), 9);
    assert_eq!(s0.last_index().unwrap(), 11);
    assert_eq!(s0.term(8).unwrap(), 1);
    assert_eq!(s0.term(11).unwrap(), 2);
    assert_eq!(s0.initial_state().unwrap().hard_state.commit, 9);
    assert_eq!(s[&1].last_index().unwrap(), 5);
}

/// A crash after a snapshot's reset is durable but before its snapshot file is replaced:
/// the group restarts from its old snapshot and the records after it, as if the new
/// snapshot had never been taken.
#[test]
fn a_reset_without_its_snapshot_file_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let sp = snap_path(dir.path(), 0);
    {
        let (mut w, _) = open(dir.path(), &[0]);
        let ents: Vec<Entry> = (1..=6).map(|i| entry(i, 1)).collect();
        w.append(0, None, &ents).unwrap();
        w.install_snapshot(0, &snapshot(3, 1, b"at 3"), &hs(1, 3), &ents[3..])
            .unwrap();
        w.append(0, Some(&hs(1, 6)), &[entry(7, 1)]).unwrap();
        let old = std::fs::read(&sp).unwrap();
        w.install_snapshot(0, &snapshot(6, 1, b"at 6"), &hs(1, 6), &[entry(7, 1)])
            .unwrap();
        // The crash: the snapshot file was never replaced.
        std::fs::write(&sp, old).unwrap();
    }
    {
        let (mut w, s) = open(dir.path(), &[0]);
        assert_eq!(s[&0].snapshot_now().data.as_ref(), b"at 3");
        assert_eq!(s[&0].first_index().unwrap(), 4);
        assert_eq!(s[&0].last_index().unwrap(), 7);
        assert_eq!(s[&0].initial_state().unwrap().hard_state.commit, 6);
        // It goes on from there, and restarts again (the records it writes now follow
        // the orphan in the log).
        w.append(0, Some(&hs(1, 7)), &[entry(8, 1)]).unwrap();
    }
    for _ in 0..2 {
        let (_, s) = open(dir.path(), &[0]);
        assert_eq!(s[&0].snapshot_now().data.as_ref(), b"at 3");
        assert_eq!(s[&0].last_index().unwrap(), 8);
        assert_eq!(s[&0].initial_state().unwrap().hard_state.commit, 7);
    }
    // A snapshot file that no reset in the log starts from is refused.
    for seq in segments(dir.path()).unwrap() {
        std::fs::write(segment(dir.path(), seq), b"").unwrap();
    }
    let e = refused(dir.path(), &[0]);
    assert!(e.contains("g0.snap") && e.contains("index 3"), "{e}");
}

/// Past the segment size the log goes on in a new segment, and deletes the old ones no
/// group's replay needs: a busy group's snapshots free them, and an idle group that pins
/// too many gets a reset of its own in a new one. Replay after many new segments gives
/// every group what it wrote.
#[test]
fn new_segments_keep_what_every_group_needs_and_old_ones_go() {
    rolls(false);
}

/// The same with fsync on, where the records go out as direct writes of whole blocks
/// (`wal/direct.rs`), each segment's through a handle of its own.
#[test]
fn new_segments_keep_what_every_group_needs_with_direct_writes() {
    rolls(true);
}

/// Whether the file system under `dir` takes direct writes.
fn takes_direct_writes(dir: &Path) -> bool {
    let path = dir.join("probe");
    std::fs::write(&path, []).unwrap();
    let ok = direct::Direct::open(&path, &[]).is_some_and(|mut d| d.write(0, b"probe").is_ok());
    std::fs::remove_file(&path).unwrap();
    ok
}

fn rolls(fsync: bool) {
    let dir = tempfile::tempdir().unwrap();
    let direct = fsync && takes_direct_writes(dir.path());
    {
        let (mut w, _) = Wal::open(dir.path(), fsync, &[0, 1, 2], VOTERS.to_vec()).unwrap();
        w.set_segment_bytes(300);
        // Group 2 writes once and then stays idle: its record must be kept until the log
        // writes a reset of it.
        w.append(2, Some(&hs(5, 1)), &[entry(1, 5)]).unwrap();
        let mut rolls = 0;
        for i in 1..=60 {
            w.stage(0, Some(&hs(1, i - 1)), &[entry(i, 1)]).unwrap();
            w.stage(1, None, &[entry(i, 1)]).unwrap();
            let (seq, forced) = (w.seq, w.forced_resets);
            w.commit().unwrap();
            if w.seq != seq {
                rolls += 1;
                // A new segment starts empty, or with the resets the log had to write.
                assert_eq!(w.len == 0, w.forced_resets == forced, "roll {i}");
            }
            if i % 9 == 0 {
                w.install_snapshot(0, &snapshot(i, 1, b"g0"), &hs(1, i), &[])
                    .unwrap();
            }
            if i % 7 == 0 {
                w.install_snapshot(1, &snapshot(i, 1, b"g1"), &hs(1, i), &[])
                    .unwrap();
            }
            assert!(
                w.closed.len() as u64 <= RETAIN_SEGMENTS,
                "{} segments kept before the open one at {i}",
                w.closed.len()
            );
        }
        assert!(rolls >= 10, "{rolls} new segments");
        assert!(w.forced_resets >= 1, "the idle group was never reset");
        // A follower's log overwritten by a new leader, after the new segments.
        w.append(0, Some(&hs(2, 58)), &[entry(59, 2)]).unwrap();
        // No write fell back to the page cache (one refused would have).
        assert_eq!(w.direct.is_some(), direct);
    }
    // Old segments go in the background.
    let mut segs = segments(dir.path()).unwrap();
    for _ in 0..100 {
        if segs.len() as u64 <= RETAIN_SEGMENTS + 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        segs = segments(dir.path()).unwrap();
    }
    assert!(segs.len() as u64 <= RETAIN_SEGMENTS + 1, "{segs:?}");
    assert!(segs[0] > 2, "old segments are removed: {segs:?}");
    let (_, s) = Wal::open(dir.path(), fsync, &[0, 1, 2], VOTERS.to_vec()).unwrap();
    assert_eq!(s[&0].snapshot_now().data.as_ref(), b"g0");
    assert_eq!(s[&0].first_index().unwrap(), 55);
    assert_eq!(s[&0].last_index().unwrap(), 59);
    assert_eq!(s[&0].term(59).unwrap(), 2);
    assert_eq!(s[&0].initial_state().unwrap().hard_state.commit, 58);
    assert_eq!(s[&1].snapshot_now().data.as_ref(), b"g1");
    assert_eq!(s[&1].first_index().unwrap(), 57);
    assert_eq!(s[&1].last_index().unwrap(), 60);
    assert_eq!(s[&2].last_index().unwrap(), 1);
    assert_eq!(s[&2].initial_state().unwrap().hard_state.term, 5);
}

#[test]
fn a_per_group_log_of_an_older_mason_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("g0.wal.1"), b"old").unwrap();
    let e = refused(dir.path(), &[0]);
    assert!(e.contains("g0.wal.1") && e.contains("older mason"), "{e}");
}

/// Three records of group 0 in segment 1; returns their offsets.
fn three_records(dir: &Path) -> Vec<u64> {
    let (mut w, _) = open(dir, &[0]);
    let mut offsets = Vec::new();
    for i in 1..=3 {
        offsets.push(std::fs::metadata(segment(dir, 1)).unwrap().len());
        w.append(0, None, &[entry(i, 1)]).unwrap();
    }
    offsets
}

fn flip(path: &Path, offset: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[offset as usize] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

fn cut(path: &Path, by: u64) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - by).unwrap();
}

/// A flipped byte in the middle of the log: the records after it were acknowledged, so
/// the proxy refuses to start, naming the file and the offset.
#[test]
fn a_flipped_byte_mid_log_refuses_to_start() {
    for field in [2u64, 9, HDR as u64 + 3] {
        let dir = tempfile::tempdir().unwrap();
        let off = three_records(dir.path());
        flip(&segment(dir.path(), 1), off[1] + field);
        let msg = refused(dir.path(), &[0]);
        assert!(
            msg.contains("proxy.wal.1") && msg.contains(&format!("offset {}", off[1])),
            "{msg}"
        );
    }
}

/// The same flip in the last record is a torn tail: cut, and the rest replays.
#[test]
fn a_damaged_last_record_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let seg = segment(dir.path(), 1);
    let off = three_records(dir.path());
    flip(&seg, off[2] + HDR as u64 + 1);
    let (_, s) = open(dir.path(), &[0]);
    assert_eq!(s[&0].last_index().unwrap(), 2);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), off[2]);
    // A truncated last record likewise.
    cut(&seg, 3);
    let (_, s) = open(dir.path(), &[0]);
    assert_eq!(s[&0].last_index().unwrap(), 1);
}

/// A client's payload may hold bytes that look like a whole record. When the record that
/// carries it is torn, that look-alike is not taken for a record written after the
/// damage: the tail is still cut, and the proxy starts.
#[test]
fn a_record_inside_a_torn_payload_is_still_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let seg = segment(dir.path(), 1);
    let off = three_records(dir.path());
    let mut inner = Vec::new();
    let rec = WalRecord {
        entries: vec![Bytes::from(entry(99, 1).write_to_bytes().unwrap())],
        ..Default::default()
    };
    push_record(&mut inner, &rec).unwrap();
    let mut data = b"head".to_vec();
    data.extend_from_slice(&inner);
    data.extend_from_slice(&[7u8; 64]);
    let end = std::fs::metadata(&seg).unwrap().len();
    {
        let (mut w, _) = open(dir.path(), &[0]);
        let mut e = entry(4, 1);
        e.data = bytes::Bytes::from(data);
        w.append(0, None, &[e]).unwrap();
    }
    // Torn after the look-alike, before the carrying record's end.
    cut(&seg, 10);
    let (_, s) = open(dir.path(), &[0]);
    assert_eq!(s[&0].last_index().unwrap(), 3);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), end);
    assert!(end > off[2]);
}

/// Damage mid-log followed by a torn tail is still damage mid-log: the records after it
/// may have been acknowledged, so the proxy refuses to start instead of cutting them with
/// the tail.
#[test]
fn damage_before_a_torn_tail_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let seg = segment(dir.path(), 1);
    let off = three_records(dir.path());
    {
        let (mut w, _) = open(dir.path(), &[0]);
        w.append(0, None, &[entry(4, 1)]).unwrap();
    }
    flip(&seg, off[1] + HDR as u64 + 1);
    cut(&seg, 3);
    let e = refused(dir.path(), &[0]);
    assert!(e.contains(&format!("offset {}", off[1])), "{e}");
}

/// Damage in a segment that is not the last one refuses to start, even at its end; so
/// does a damaged snapshot file.
#[test]
fn a_damaged_segment_that_is_not_the_last_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let off = three_records(dir.path());
    std::fs::write(segment(dir.path(), 2), b"").unwrap();
    let f = OpenOptions::new()
        .write(true)
        .open(segment(dir.path(), 1))
        .unwrap();
    f.set_len(off[2] + 5).unwrap();
    let e = refused(dir.path(), &[0]);
    assert!(e.contains("proxy.wal.1"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    three_records(dir.path());
    std::fs::write(snap_path(dir.path(), 0), [0u8; 20]).unwrap();
    let e = refused(dir.path(), &[0]);
    assert!(e.contains("snapshot") && e.contains("g0.snap"), "{e}");
}

/// With fsync on, a segment is preallocated and written in place: it replays up to its
/// last record, a torn record inside the preallocated zeros is cut, and damage before the
/// last record is still refused.
#[test]
fn a_preallocated_segment_is_written_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let seg = segment(dir.path(), 1);
    let sync_open = || Wal::open(dir.path(), true, &[0], VOTERS.to_vec()).unwrap();
    let mut offsets = Vec::new();
    {
        let (mut w, _) = sync_open();
        for i in 1..=3 {
            offsets.push(w.end());
            w.append(0, None, &[entry(i, 1)]).unwrap();
        }
    }
    let physical = std::fs::metadata(&seg).unwrap().len();
    let end = {
        let (mut w, s) = sync_open();
        assert_eq!(s[&0].last_index().unwrap(), 3);
        assert_eq!(w.end(), offsets[2] + (offsets[2] - offsets[1]));
        w.append(0, None, &[entry(4, 1)]).unwrap();
        w.end()
    };
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), physical.max(end));
    // A record torn inside the zeros that follow.
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(b"MWAL\x20\x01\x02", end).unwrap();
    drop(f);
    {
        let (mut w, s) = sync_open();
        assert_eq!(s[&0].last_index().unwrap(), 4);
        assert_eq!(w.end(), end);
        w.append(0, None, &[entry(5, 1)]).unwrap();
    }
    let (_, s) = sync_open();
    assert_eq!(s[&0].last_index().unwrap(), 5);
    flip(&seg, offsets[1] + HDR as u64 + 1);
    let e = refused(dir.path(), &[0]);
    assert!(e.contains(&format!("offset {}", offsets[1])), "{e}");
}

/// A record staged and not yet written (the writer defers one that only moves a commit
/// index) goes out with the next commit, in order.
#[test]
fn a_staged_record_goes_out_with_the_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut w, _) = Wal::open(dir.path(), true, &[0], VOTERS.to_vec()).unwrap();
        w.append(0, Some(&hs(1, 0)), &[entry(1, 1)]).unwrap();
        let end = w.end();
        w.stage(0, Some(&hs(1, 1)), &[]).unwrap();
        assert_eq!(w.end(), end, "staged, not written");
        w.append(0, None, &[entry(2, 1)]).unwrap();
    }
    let (_, s) = open(dir.path(), &[0]);
    assert_eq!(s[&0].last_index().unwrap(), 2);
    assert_eq!(s[&0].initial_state().unwrap().hard_state.commit, 1);
}

/// With fsync on, a record whose header reached the disk but part of whose payload did not
/// (a power loss mid-write: zeros where its last pages should be) is a torn tail, though
/// the preallocated zeros follow it: cut, and the log goes on.
#[test]
fn a_torn_payload_in_a_preallocated_segment_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let seg = segment(dir.path(), 1);
    let sync_open = || Wal::open(dir.path(), true, &[0], VOTERS.to_vec()).unwrap();
    let big = |i: u64| Entry {
        data: bytes::Bytes::from(vec![i as u8 + 1; 9000]),
        ..entry(i, 1)
    };
    let (start, end) = {
        let (mut w, _) = sync_open();
        w.append(0, None, &[big(1)]).unwrap();
        w.append(0, None, &[big(2)]).unwrap();
        let start = w.end();
        w.append(0, None, &[big(3)]).unwrap();
        (start, w.end())
    };
    // Its last 5,000 bytes never landed.
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(&[0u8; 5000], end - 5000).unwrap();
    drop(f);
    {
        let (mut w, s) = sync_open();
        assert_eq!(s[&0].last_index().unwrap(), 2);
        assert_eq!(w.end(), start);
        w.append(0, None, &[big(3)]).unwrap();
    }
    {
        let (mut w, s) = sync_open();
        assert_eq!(s[&0].last_index().unwrap(), 3);
        w.append(0, None, &[big(4)]).unwrap();
    }
    // The same damage with a record after it is damage mid-log.
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(&[0u8; 100], start + 200).unwrap();
    drop(f);
    let e = refused(dir.path(), &[0]);
    assert!(e.contains(&format!("offset {start}")), "{e}");
}

/// A segment is kept while a group's replay needs it, however much the other groups
/// write and snapshot after it.
#[test]
fn a_segment_is_kept_while_a_group_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut w, _) = open(dir.path(), &[0, 1]);
        w.set_segment_bytes(300);
        w.append(0, Some(&hs(3, 1)), &[entry(1, 3)]).unwrap();
        let mut i = 0;
        while w.seq < RETAIN_SEGMENTS {
            i += 1;
            w.append(1, Some(&hs(1, i)), &[entry(i, 1)]).unwrap();
            w.install_snapshot(1, &snapshot(i, 1, b"g1"), &hs(1, i), &[])
                .unwrap();
        }
        assert_eq!(w.forced_resets, 0);
        assert!(w.reset_in[&1] + 1 >= w.seq, "group 1 reset lately");
        let kept: Vec<u64> = w.closed.keys().copied().collect();
        assert_eq!(kept, (1..w.seq).collect::<Vec<_>>(), "group 0 needs them");
    }
    let (_, s) = open(dir.path(), &[0, 1]);
    assert_eq!(s[&0].last_index().unwrap(), 1);
    assert_eq!(s[&0].initial_state().unwrap().hard_state.term, 3);
}

/// A group's tail larger than the segments it pins is not written again at every new
/// segment: the log keeps the old segments until a reset of it would free at least twice
/// its size, and then writes one, and the old segments go.
#[test]
fn large_tails_are_not_rewritten_at_every_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = open(dir.path(), &[0]);
    w.set_segment_bytes(300);
    let ents: Vec<Entry> = (1..=20)
        .map(|i| Entry {
            data: bytes::Bytes::from(vec![7u8; 100]),
            ..entry(i, 1)
        })
        .collect();
    w.append(0, None, &ents).unwrap();
    let tail = w.tails[&0].bytes() as u64;
    let (mut commits, mut kept) = (0, 0);
    while w.forced_resets == 0 {
        w.append(0, Some(&hs(1, commits)), &[]).unwrap();
        commits += 1;
        assert!(commits < 10_000, "no reset after {commits} commits");
        if w.forced_resets == 0 {
            // Until then every segment is kept (the first holds the tail).
            kept = w.closed.values().sum();
            assert!(
                kept < 2 * tail + 300,
                "{kept} bytes kept, the tail is {tail}"
            );
        }
    }
    assert_eq!(w.forced_resets, 1);
    assert!(kept >= 2 * tail, "a reset of {tail} bytes freed {kept}");
    assert!(w.closed.len() <= 1, "{:?}", w.closed);
    drop(w);
    // The old segments go in the background.
    for _ in 0..100 {
        if segments(dir.path()).unwrap().len() <= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(segments(dir.path()).unwrap().len() <= 2);
    let (_, s) = open(dir.path(), &[0]);
    assert_eq!(s[&0].last_index().unwrap(), 20);
    assert_eq!(
        s[&0].initial_state().unwrap().hard_state.commit,
        commits - 1
    );
}

/// With fsync on, the writer preallocates a segment itself only at its start: past that a
/// thread of its own grows it ahead of the records, the writer never writes past what
/// was preallocated, and every record reads back whole (no zeros landed on one).
#[test]
fn a_segment_grows_ahead_of_its_writer() {
    let dir = tempfile::tempdir().unwrap();
    let step = 64 << 10;
    let n = 3 * PREALLOCATE / step;
    let payload = |i: u64| bytes::Bytes::from(vec![i as u8; step as usize]);
    {
        let (mut w, _) = Wal::open(dir.path(), true, &[0], VOTERS.to_vec()).unwrap();
        for i in 1..=n {
            let e = Entry {
                index: i,
                term: 1,
                data: payload(i),
                ..Default::default()
            };
            w.append(0, None, &[e]).unwrap();
            if !w.prealloc {
                return; // a file system that cannot preallocate: nothing to test here
            }
            assert!(w.allocated >= w.end(), "wrote past the preallocated end");
        }
        assert_eq!(
            w.grown_inline, 1,
            "the writer grew the segment in its own path"
        );
        assert!(w.allocated >= 3 * PREALLOCATE, "{}", w.allocated);
    }
    let (_, s) = Wal::open(dir.path(), true, &[0], VOTERS.to_vec()).unwrap();
    assert_eq!(s[&0].last_index().unwrap(), n);
    let all = s[&0].entries(1, n + 1, None, raft::GetEntriesContext::empty(false));
    for e in all.unwrap() {
        assert_eq!(e.data, payload(e.index), "entry {}", e.index);
    }
}

/// A segment a process left half removed (renamed `.gone`, part cut) is not read as part
/// of the log, and opening the log removes it.
#[test]
fn a_half_removed_segment_is_not_replayed_and_goes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut w, _) = open(dir.path(), &[0]);
        w.append(0, None, &[entry(1, 1), entry(2, 1)]).unwrap();
    }
    // What is left of an old segment cut short: valid-looking bytes, then nothing.
    let seg = std::fs::read(segment(dir.path(), 1)).unwrap();
    let gone = dir.path().join(format!("{PREFIX}0{}", remove::GONE));
    std::fs::write(&gone, &seg[..seg.len() / 2]).unwrap();
    let (_, s) = open(dir.path(), &[0]);
    assert_eq!(s[&0].last_index().unwrap(), 2);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while gone.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} is still there",
            gone.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
