//! The sequencer state machine's tests: ranges per space, repeats, early requests, the
//! bounded window, direct sessions, watermarks and malformed requests.

use super::*;

fn req(group: u32, batch_id: u64, mask: u64, counts: Vec<u32>) -> GetSeq {
    GetSeq {
        epoch: 7,
        group,
        batch_id,
        space_mask: mask,
        counts,
        committed: 0,
        session: 0,
    }
}

/// `r`, saying that its group has applied its ids up to `committed`.
fn applied_to(committed: u64, r: GetSeq) -> GetSeq {
    GetSeq { committed, ..r }
}

fn seq(spaces: u32) -> Sequencer {
    Sequencer::new(SequencerConfig {
        spaces,
        epoch: 7,
        window: 4,
        max_groups: 2,
        max_sessions: 2,
        session_window: 4,
    })
}

fn direct(session: u64, seq: u64, committed: u64) -> GetSeq {
    GetSeq {
        epoch: 0,
        session,
        batch_id: seq,
        space_mask: 1,
        counts: vec![1],
        committed,
        ..GetSeq::default()
    }
}

#[test]
fn ranges_advance_per_space() {
    let mut s = seq(3);
    let a = s.answer(&req(0, 1, 0b101, vec![3, 2])).unwrap();
    assert_eq!(
        (a.bases.clone(), a.counts.clone(), a.epoch),
        (vec![0, 0], vec![3, 2], 7)
    );
    let b = s.answer(&req(1, 1, 0b111, vec![1, 1, 1])).unwrap();
    assert_eq!(b.bases, vec![3, 0, 2]);
    assert!(!b.repeat);
    assert_eq!(s.counters(), &[4, 1, 3]);
}

#[test]
fn repeats_return_the_same_ranges() {
    let mut s = seq(1);
    let a = s.answer(&req(0, 1, 1, vec![5])).unwrap();
    s.answer(&req(0, 2, 1, vec![5])).unwrap();
    let again = s.answer(&req(0, 1, 1, vec![9])).unwrap();
    assert!(again.repeat);
    assert_eq!((again.bases, again.counts), (a.bases, a.counts));
    assert_eq!(s.counters(), &[10]);
}

#[test]
fn zero_count_ask_records_an_empty_batch() {
    let mut s = seq(1);
    let probe = s.answer(&req(0, 1, 1, vec![0])).unwrap();
    assert_eq!(probe.counts, vec![0]);
    // A late request under that id now gets nothing usable.
    let late = s.answer(&req(0, 1, 1, vec![4])).unwrap();
    assert!(late.repeat);
    assert_eq!(late.counts, vec![0]);
    assert_eq!(s.counters(), &[0]);
}

#[test]
fn early_requests_wait_for_earlier_ids_so_later_batches_get_larger_numbers() {
    let mut s = seq(1);
    let mut out = Vec::new();
    s.handle(&req(0, 3, 1, vec![2]), 30, &mut out);
    s.handle(&req(0, 2, 1, vec![2]), 20, &mut out);
    assert!(out.is_empty(), "ids 2 and 3 wait for id 1");
    // Another group is not held up.
    s.handle(&req(1, 1, 1, vec![1]), 99, &mut out);
    assert_eq!(out.len(), 1);
    out.clear();
    s.handle(&req(0, 1, 1, vec![2]), 10, &mut out);
    let got: Vec<(u64, u64, u64)> = out
        .iter()
        .map(|(o, r)| (*o, r.batch_id, r.bases[0]))
        .collect();
    assert_eq!(got, vec![(10, 1, 1), (20, 2, 3), (30, 3, 5)]);
    // A duplicate of a waiting request is answered as a repeat on release.
    out.clear();
    s.handle(&req(0, 5, 1, vec![1]), 50, &mut out);
    s.handle(&req(0, 5, 1, vec![1]), 51, &mut out);
    s.handle(&req(0, 4, 1, vec![0]), 40, &mut out);
    let got: Vec<(u64, bool)> = out.iter().map(|(o, r)| (*o, r.repeat)).collect();
    assert_eq!(got, vec![(40, false), (50, false), (51, true)]);
    assert_eq!(s.counters(), &[8]);
}

#[test]
fn window_is_bounded_and_old_ids_are_refused() {
    let mut s = seq(1);
    for id in 1..=10 {
        s.answer(&req(0, id, 1, vec![1])).unwrap();
    }
    let old = s.answer(&req(0, 2, 1, vec![1])).unwrap();
    assert_eq!(old.status, SeqStatus::TooOld as i32);
    assert!(s.answer(&req(0, 9, 1, vec![1])).unwrap().repeat);
    assert_eq!(s.groups[&0].ids.len(), 4);
    // Early requests are bounded too.
    let mut out = Vec::new();
    for id in 12..30 {
        s.handle(&req(0, id, 1, vec![1]), 0, &mut out);
    }
    assert!(out.is_empty());
    assert_eq!(s.groups[&0].early.values().map(Vec::len).sum::<usize>(), 4);
    // Early requests far ahead are not held at all.
    s.handle(&req(0, 500, 1, vec![1]), 0, &mut out);
    assert!(!s.groups[&0].early.contains_key(&500));
    // Only the configured groups are served: group 2 of 2 is refused.
    s.answer(&req(1, 1, 1, vec![1])).unwrap();
    let r = s.answer(&req(2, 1, 1, vec![1])).unwrap();
    assert_eq!(r.status, SeqStatus::Invalid as i32);
    assert_eq!(s.groups.len(), 2);
}

/// Direct sessions have their own ids (an epoch-0 request cannot take a group's next
/// batch id), forget what their client holds, and are bounded in number.
#[test]
fn direct_sessions_are_apart_from_groups_and_bounded() {
    let mut s = seq(1);
    // Epoch 0 without a session: a group's id at no epoch is not served.
    let mut out = Vec::new();
    s.handle(
        &GetSeq {
            epoch: 0,
            ..req(0, 1, 1, vec![1])
        },
        0,
        &mut out,
    );
    assert!(out.is_empty() && s.groups.is_empty());
    let a = s.answer(&direct(77, 1, 0)).unwrap();
    assert_eq!((a.bases.clone(), a.repeat), (vec![0], false));
    // The group's batch 1 is still its own.
    let g = s.answer(&req(0, 1, 1, vec![2])).unwrap();
    assert_eq!((g.bases, g.repeat), (vec![1], false));
    assert!(s.answer(&direct(77, 1, 0)).unwrap().repeat);
    let grants = s.take_grants();
    assert_eq!(
        (grants.sessions, grants.seqs, grants.numbers),
        (vec![77], vec![1], vec![0])
    );
    // What the client holds is forgotten; only the window is kept.
    for q in 2..=10 {
        s.answer(&direct(77, q, q - 1)).unwrap();
    }
    assert_eq!(s.sessions[&77].ids.len(), 1);
    // A third session pushes out the least recently used.
    s.answer(&direct(78, 1, 0)).unwrap();
    s.answer(&direct(77, 11, 10)).unwrap();
    s.answer(&direct(79, 1, 0)).unwrap();
    assert_eq!(s.sessions(), 2);
    assert!(s.sessions.contains_key(&77) && s.sessions.contains_key(&79));
    // The forgotten session's client already holds an answer: its next ids cannot be
    // told from repeats, so it is refused for good, and nothing is remembered.
    s.take_grants();
    let gone = s.answer(&direct(78, 2, 1)).unwrap();
    assert_eq!(gone.status, SeqStatus::TooOld as i32);
    assert!(gone.bases.is_empty() && !s.sessions.contains_key(&78));
    assert!(s.take_grants().sessions.is_empty());
    // A session that holds nothing yet may start (again) from its first id.
    assert_eq!(s.answer(&direct(78, 1, 0)).unwrap().status, 0);
    // A direct request at an epoch is not served.
    let mut out = Vec::new();
    s.handle(
        &GetSeq {
            epoch: 7,
            ..direct(80, 1, 0)
        },
        0,
        &mut out,
    );
    assert!(out.is_empty());
}

#[test]
fn the_watermark_stops_below_every_unapplied_batch_and_is_sent_once() {
    let mut s = seq(1);
    s.answer(&req(0, 1, 1, vec![5])).unwrap(); // group 0 id 1: [0, 5)
    s.answer(&req(1, 1, 1, vec![5])).unwrap(); // group 1 id 1: [5, 10)
    s.answer(&req(0, 2, 1, vec![5])).unwrap(); // group 0 id 2: [10, 15)
    s.collect();
    assert_eq!(s.watermarks(), &[0], "nothing is applied yet");
    // Group 0 applied id 1 (said with its next request); group 1 nothing.
    let r = s.answer(&applied_to(1, req(0, 3, 1, vec![1]))).unwrap();
    s.collect();
    assert_eq!(s.watermarks(), &[5], "group 1's id 1 holds it at 5");
    assert!(
        r.watermarks.is_empty(),
        "answered before the watermark moved"
    );
    let r = s.answer(&applied_to(1, req(1, 2, 1, vec![1]))).unwrap();
    s.collect();
    // Group 1 applied id 1; group 0's ids 2 and 3 are still open: [10, 15) and [15, 16).
    assert_eq!(s.watermarks(), &[10]);
    assert_eq!(
        r.watermarks,
        vec![5],
        "the first answer after a move carries it"
    );
    let r = s.answer(&applied_to(1, req(1, 3, 1, vec![1]))).unwrap();
    assert_eq!(r.watermarks, vec![10]);
    let r = s.answer(&applied_to(1, req(1, 4, 1, vec![1]))).unwrap();
    assert!(r.watermarks.is_empty(), "a group gets each version once");
    // A claim beyond the ids a group was given counts only up to them: group 0's ids 2
    // and 3 are applied now, and group 1's open ids 2..=4 (from 16) hold the mark.
    s.answer(&applied_to(99, req(0, 4, 1, vec![0]))).unwrap();
    s.collect();
    assert_eq!(s.watermarks(), &[16]);
}

#[test]
fn malformed_requests_are_refused_without_side_effects() {
    let mut s = seq(2);
    let r = s.answer(&req(0, 1, 0b100, vec![1])).unwrap();
    assert_eq!(r.status, SeqStatus::Invalid as i32);
    let r = s.answer(&req(0, 1, 0b11, vec![1])).unwrap();
    assert_eq!(r.status, SeqStatus::Invalid as i32);
    let r = s.answer(&req(0, 0, 0b1, vec![1])).unwrap();
    assert_eq!(r.status, SeqStatus::Invalid as i32);
    assert_eq!(s.counters(), &[0, 0]);
}
