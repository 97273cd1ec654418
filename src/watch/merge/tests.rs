//! The merge's invariants: every number printed once, in order, only once everything below
//! is known; replicas' duplicates ignored; snapshot ranges used only where no batch is
//! known; the bound on what waits.

use super::*;
use mason_common::msg::Ranges;

/// A batch of `group` binding `base..base+count` of space 0 (and `other` numbers of space
/// 1 at 1000), whose ops are `(session, seq, mask)`.
fn batch(group: u32, base: u64, count: u32, ops: &[(u64, u64, u64)]) -> Notice {
    Notice::Bound(BoundBatch {
        group,
        batch_id: base + 1,
        epoch: 1,
        space_mask: 0b11,
        bases: vec![base, 1000],
        counts: vec![count, 10],
        op_sessions: ops.iter().map(|o| o.0).collect(),
        op_seqs: ops.iter().map(|o| o.1).collect(),
        op_masks: ops.iter().map(|o| o.2).collect(),
        index: base + 1,
    })
}

fn snapshot(group: u32, watermark: u64, ranges: &[(u64, u64)]) -> Notice {
    Notice::Snapshot(Promise {
        group,
        watermarks: vec![watermark, 0],
        recorded: Some(Ranges {
            spaces: ranges.iter().map(|_| 0).collect(),
            bases: ranges.iter().map(|r| r.0).collect(),
            lens: ranges.iter().map(|r| r.1 - r.0).collect(),
        }),
        ..Default::default()
    })
}

fn drain(m: &mut Merge) -> Vec<Line> {
    std::iter::from_fn(|| m.pop()).collect()
}

/// The lines tile `from..` with no gap and no overlap.
fn assert_tiles(lines: &[Line], from: u64) -> u64 {
    let mut next = from;
    for l in lines {
        let (a, b) = l.span();
        assert_eq!(a, next, "line {l:?} does not start at {next}: {lines:?}");
        assert!(b > a, "empty line {l:?}");
        next = b;
    }
    next
}

fn op(number: u64, group: u32, session: u64, seq: u64) -> Line {
    Line::Op {
        number,
        group,
        session,
        seq,
    }
}

#[test]
fn lines_wait_for_the_numbers_below_them() {
    let mut m = Merge::new(0, 2, 1000);
    m.start(0, None);
    // Group 1's batch (3..6) comes first: nothing below it is known yet.
    m.note(&batch(1, 3, 3, &[(7, 1, 0b01), (7, 2, 0b10), (7, 3, 0b11)]))
        .unwrap();
    assert_eq!(drain(&mut m), vec![]);
    // Group 0's batch 0..3 fills the hole: its op, its noops, then group 1's.
    m.note(&batch(0, 0, 3, &[(5, 1, 0b01)])).unwrap();
    let lines = drain(&mut m);
    assert_eq!(
        lines,
        vec![
            op(0, 0, 5, 1),
            Line::Noop {
                start: 1,
                end: 3,
                group: 0
            },
            op(3, 1, 7, 1),
            // (7, 2) touches space 1 only: it takes no number here.
            op(4, 1, 7, 3),
            Line::Noop {
                start: 5,
                end: 6,
                group: 1
            },
        ]
    );
    assert_eq!(assert_tiles(&lines, 0), 6);
    assert_eq!(m.held(), 0, "everything printed is forgotten");
}

#[test]
fn replicas_copies_and_late_batches_print_nothing_twice() {
    let mut m = Merge::new(0, 1, 1000);
    m.start(0, None);
    let b = batch(0, 0, 2, &[(1, 1, 0b11), (1, 2, 0b11)]);
    m.note(&b).unwrap();
    m.note(&b).unwrap(); // another replica's copy, before printing
    let first = drain(&mut m);
    m.note(&b).unwrap(); // a lagging replica's copy, after
    assert_eq!(drain(&mut m), vec![]);
    assert_eq!(first, vec![op(0, 0, 1, 1), op(1, 0, 1, 2)]);
    assert_eq!(m.held(), 0);
}

#[test]
fn snapshot_ranges_fill_in_only_where_no_batch_is_known() {
    let mut m = Merge::new(0, 2, 1000);
    m.start(0, None);
    // Below 4: bound, nobody records whose. Group 0 recorded 4..10 and 12..20.
    m.note(&snapshot(0, 4, &[(4, 10), (12, 20)])).unwrap();
    // A batch in detail inside the snapshot's range wins there.
    m.note(&batch(0, 6, 2, &[(3, 9, 0b01)])).unwrap();
    let lines = drain(&mut m);
    assert_eq!(
        lines,
        vec![
            Line::Earlier {
                start: 0,
                end: 4,
                group: None
            },
            Line::Earlier {
                start: 4,
                end: 6,
                group: Some(0)
            },
            op(6, 0, 3, 9),
            Line::Noop {
                start: 7,
                end: 8,
                group: 0
            },
            Line::Earlier {
                start: 8,
                end: 10,
                group: Some(0)
            },
        ]
    );
    // 10..12 is group 1's: until it says so, 12.. waits.
    m.note(&snapshot(1, 0, &[(10, 12)])).unwrap();
    let more = drain(&mut m);
    assert_eq!(assert_tiles(&more, 10), 20);
    assert_eq!(
        more[0],
        Line::Earlier {
            start: 10,
            end: 12,
            group: Some(1)
        }
    );
}

#[test]
fn overlapping_snapshots_merge_and_touching_ones_keep_their_groups() {
    let mut m = Merge::new(0, 2, 1000);
    m.note(&snapshot(0, 0, &[(0, 10)])).unwrap();
    m.note(&snapshot(0, 0, &[(0, 14)])).unwrap(); // a later replica's view
    m.note(&snapshot(1, 0, &[(14, 20)])).unwrap();
    assert!(m.heard_all());
    assert_eq!(m.known_prefix(), 20);
    m.start(0, None);
    let lines = drain(&mut m);
    assert_eq!(
        lines,
        vec![
            Line::Earlier {
                start: 0,
                end: 14,
                group: Some(0)
            },
            Line::Earlier {
                start: 14,
                end: 20,
                group: Some(1)
            },
        ]
    );
}

#[test]
fn the_default_start_is_where_the_groups_stand() {
    let mut m = Merge::new(0, 2, 1000);
    m.note(&snapshot(0, 100, &[(100, 110)])).unwrap();
    assert!(!m.heard_all());
    assert_eq!(m.unheard(), vec![1]);
    m.note(&snapshot(1, 50, &[(110, 115), (120, 130)])).unwrap();
    assert!(m.heard_all());
    // 115..120 is in flight somewhere: the prefix stops there.
    assert_eq!(m.known_prefix(), 115);
    m.start(115, Some(10));
    assert_eq!(drain(&mut m), vec![]);
    m.note(&batch(0, 115, 5, &[])).unwrap();
    let lines = drain(&mut m);
    // The count stops the last range at 125.
    assert_eq!(assert_tiles(&lines, 115), 125);
    assert!(m.done());
    assert_eq!(m.pop(), None);
}

#[test]
fn what_waits_above_a_hole_is_bounded() {
    let mut m = Merge::new(0, 2, 10);
    m.start(0, None);
    // Group 0 never reports 0..1; group 1's ops pile up above it.
    let mut r = Ok(());
    for k in 0..5 {
        r = m.note(&batch(1, 1 + 2 * k, 2, &[(1, 2 * k, 1), (1, 2 * k + 1, 1)]));
        if r.is_err() {
            break;
        }
    }
    assert_eq!(
        r,
        Err(Stop::Overflow {
            waiting_at: 0,
            held: 12,
            max: 10
        })
    );
    assert_eq!(drain(&mut m), vec![]);
}

#[test]
fn a_space_the_cluster_lacks_is_refused() {
    let mut m = Merge::new(3, 1, 10);
    assert_eq!(
        m.note(&snapshot(0, 0, &[])),
        Err(Stop::NoSuchSpace {
            space: 3,
            spaces: 2
        })
    );
}

#[test]
fn a_malformed_batch_is_ignored() {
    let mut m = Merge::new(0, 1, 100);
    m.start(0, None);
    let Notice::Bound(mut b) = batch(0, 0, 1, &[(1, 1, 1), (1, 2, 1)]) else {
        unreachable!()
    };
    m.note(&Notice::Bound(b.clone())).unwrap(); // two ops for one number
    b.op_seqs.pop();
    m.note(&Notice::Bound(b)).unwrap(); // columns of different lengths
    assert_eq!(m.held(), 0);
    assert_eq!(drain(&mut m), vec![]);
}

#[test]
fn text_and_json_lines() {
    assert_eq!(
        op(17, 1, 5, 9).text(),
        "17 op group=1 session=5 seq=9".to_string()
    );
    let e = Line::Earlier {
        start: 0,
        end: 4,
        group: None,
    };
    assert_eq!(e.text(), "0..4 earlier group=?");
    let v: serde_json::Value = serde_json::from_str(&e.json()).unwrap();
    assert_eq!(v["kind"], "earlier");
    assert_eq!(v["end"], 4);
    assert!(v["group"].is_null());
}
