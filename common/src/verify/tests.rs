//! Tests of the checker: a good run passes; each invariant fails on a run made to break
//! it; ops take their numbers in order; replicas must agree.

use super::*;

fn batch(id: u64, bases: Vec<u64>, counts: Vec<u32>, ops: &[(u64, u64, u64)]) -> BoundBatch {
    BoundBatch {
        group: 0,
        batch_id: id,
        epoch: 1,
        space_mask: SpaceMask::first(bases.len() as u32).0,
        bases,
        counts,
        op_sessions: ops.iter().map(|o| o.0).collect(),
        op_seqs: ops.iter().map(|o| o.1).collect(),
        op_masks: ops.iter().map(|o| o.2).collect(),
        index: id,
    }
}

#[test]
fn good_run_passes_with_noops_counted() {
    let mut c = Checker::new(2);
    c.bind_batch(&batch(
        1,
        vec![0, 0],
        vec![2, 1],
        &[(1, 1, 0b11), (1, 2, 0b01)],
    ))
    .unwrap();
    c.bind_batch(&batch(2, vec![2, 1], vec![2, 1], &[(2, 1, 0b01)]))
        .unwrap();
    c.ack(1, 1, SpaceMask(0b11), &[0, 0]);
    c.ack(1, 2, SpaceMask(0b01), &[1]);
    c.ack(2, 1, SpaceMask(0b01), &[2]);
    let r = c.finish().unwrap();
    assert_eq!(r.numbers, vec![4, 2]);
    assert_eq!(r.noops, vec![1, 1]);
}

#[test]
fn each_invariant_can_fail() {
    let mut c = Checker::new(1);
    c.bind_batch(&batch(1, vec![0], vec![2], &[])).unwrap();
    c.bind_batch(&batch(2, vec![1], vec![1], &[])).unwrap();
    assert_eq!(c.finish().unwrap_err().invariant, "Unique");

    let mut c = Checker::new(1);
    c.bind_batch(&batch(1, vec![0], vec![2], &[])).unwrap();
    c.bind_batch(&batch(2, vec![3], vec![1], &[])).unwrap();
    assert_eq!(c.finish().unwrap_err().invariant, "Contiguous");

    let mut c = Checker::new(1);
    c.bind_batch(&batch(1, vec![0], vec![2], &[(1, 1, 1), (1, 1, 1)]))
        .unwrap();
    assert_eq!(c.finish().unwrap_err().invariant, "Once");

    let mut c = Checker::new(1);
    c.bind_batch(&batch(1, vec![0], vec![2], &[(1, 2, 1), (1, 1, 1)]))
        .unwrap();
    assert_eq!(c.finish().unwrap_err().invariant, "FIFO");

    let mut c = Checker::new(1);
    c.bind_batch(&batch(1, vec![0], vec![1], &[(1, 1, 1)]))
        .unwrap();
    c.ack(1, 1, SpaceMask(1), &[7]);
    assert_eq!(c.finish().unwrap_err().invariant, "Stable");

    let mut c = Checker::new(1);
    c.ack(1, 1, SpaceMask(1), &[0]);
    assert_eq!(c.finish().unwrap_err().invariant, "Stable");
}

/// The checker's numbering against a hand-made batch (ops take numbers in op order in
/// each space they touch), and against malformed ones.
#[test]
fn ops_take_numbers_in_order() {
    let b = BoundBatch {
        group: 0,
        batch_id: 1,
        epoch: 1,
        space_mask: 0b11,
        bases: vec![10, 20],
        counts: vec![2, 3],
        op_sessions: vec![7, 7, 8],
        op_seqs: vec![1, 2, 1],
        op_masks: vec![0b11, 0b10, 0b01],
        index: 1,
    };
    let seen: Vec<(u64, u64, u64, Vec<u64>)> = op_numbers(&b)
        .unwrap()
        .into_iter()
        .map(|(c, s, m, n)| (c, s, m.0, n))
        .collect();
    assert_eq!(
        seen,
        vec![
            (7, 1, 0b11, vec![10, 20]),
            (7, 2, 0b10, vec![21]),
            (8, 1, 0b01, vec![11])
        ]
    );
    let mut bad = b.clone();
    bad.counts[0] = 1; // space 0 needs two numbers
    assert!(op_numbers(&bad).is_err());
    let mut bad = b.clone();
    bad.op_masks[2] = 0b100; // outside the batch
    assert!(op_numbers(&bad).is_err());
    let mut bad = b;
    bad.op_seqs.pop();
    assert!(op_numbers(&bad).is_err());
}

#[test]
fn replicas_must_agree() {
    let a = batch(1, vec![0], vec![1], &[]);
    let b = batch(2, vec![1], vec![1], &[]);
    let c = batch(2, vec![5], vec![1], &[]);
    assert_eq!(
        agree(0, vec![vec![a.clone()], vec![a.clone(), b.clone()]])
            .unwrap()
            .len(),
        2
    );
    assert!(agree(
        0,
        vec![vec![a.clone(), c.clone()], vec![a.clone(), b.clone()]]
    )
    .is_err());
    // A replica that restarted from a snapshot holds only the tail; one that replayed
    // its log holds a prefix twice. Together they make the whole log.
    let d = batch(3, vec![2], vec![1], &[]);
    let log = agree(
        0,
        vec![
            vec![a.clone(), b.clone(), a.clone()],
            vec![d.clone()],
            vec![b.clone(), d.clone()],
        ],
    )
    .unwrap();
    assert_eq!(log, vec![a.clone(), b.clone(), d]);
    // A replica that crashed right after an index and replays it: the same record
    // twice in a row is one record.
    assert_eq!(
        agree(
            0,
            vec![
                vec![a.clone(), b.clone(), b.clone()],
                vec![a.clone(), b.clone()]
            ]
        )
        .unwrap()
        .len(),
        2
    );
    // Replaying an index differently is caught too.
    assert!(agree(0, vec![vec![a.clone(), b, a, c]]).is_err());
}
