//! An independent check of the files `mason local` leaves behind (the proxies' bound
//! records and the clients' acknowledgements), written without the product's checker, and
//! a test that it catches each kind of broken record.

#![allow(dead_code)]

use mason_common::record::{read_records, AckChunk, BoundBatch};
use mason_common::SpaceMask;
use std::collections::HashMap;
use std::path::Path;

/// An op as the records bind it: its spaces and its numbers (ascending by space).
pub type Bound = HashMap<(u64, u64), (u64, Vec<u64>)>;

/// An acknowledged op: ((session, seq), mask, numbers).
pub type Ack = ((u64, u64), u64, Vec<u64>);

/// What this test finds in one replica's records, checked on its own.
pub struct Tiling {
    /// Per space: numbers bound (the ranges tile `0..numbers[s]`).
    pub numbers: Vec<u64>,
    /// Per space: numbers that no op took.
    pub noops: Vec<u64>,
    pub ops: Bound,
    pub batches: usize,
}

/// A replica's records by Raft index, first occurrence kept: a replica that restarted
/// applies part of its log again (the same records, which the callers compare separately).
pub fn by_index(log: Vec<BoundBatch>) -> std::collections::BTreeMap<u64, BoundBatch> {
    let mut m = std::collections::BTreeMap::new();
    for b in log {
        m.entry(b.index).or_insert(b);
    }
    m
}

/// Reads `bound-g<g>-r<replica>.bin` of every group and checks, without the product's
/// checker: each batch is well-formed (one base and count per space of its mask, masks
/// within `spaces`, ops fit their ranges), batch ids increase within a group, the ranges of
/// each space tile `0..max` exactly (no overlap, no hole), and no (client, seq) is bound
/// twice.
pub fn check_tiling(dir: &Path, groups: u32, replica: u32, spaces: u32) -> Tiling {
    let mut ranges: Vec<Vec<(u64, u64, u32, u64)>> = vec![Vec::new(); spaces as usize];
    let mut taken = vec![0u64; spaces as usize];
    let mut ops: Bound = HashMap::new();
    let mut batches = 0;
    for g in 0..groups {
        let p = dir.join(format!("bound-g{g}-r{replica}.bin"));
        let recs = read_records::<BoundBatch>(&p)
            .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
        assert!(
            !recs.torn,
            "{} has a torn tail after a clean stop",
            p.display()
        );
        assert!(
            recs.ended,
            "{} has no end marker after a clean stop",
            p.display()
        );
        let log = recs.records;
        let log: Vec<BoundBatch> = by_index(log).into_values().collect();
        assert!(!log.is_empty(), "{} holds no batch", p.display());
        batches += log.len();
        let mut last_id = None;
        for b in &log {
            assert_eq!(b.group, g, "{}: batch of another group", p.display());
            if let Some(prev) = last_id {
                assert!(
                    b.batch_id > prev,
                    "group {g}: batch id {} applied after {prev}",
                    b.batch_id
                );
            }
            last_id = Some(b.batch_id);
            let mask = SpaceMask(b.space_mask);
            assert!(
                mask.within(spaces),
                "group {g} batch {}: mask {mask:?} beyond {spaces} spaces",
                b.batch_id
            );
            assert_eq!(b.bases.len(), mask.len(), "group {g} batch {}", b.batch_id);
            assert_eq!(b.counts.len(), mask.len(), "group {g} batch {}", b.batch_id);
            for ((s, base), count) in mask.iter().zip(&b.bases).zip(&b.counts) {
                if *count > 0 {
                    ranges[s as usize].push((*base, u64::from(*count), g, b.batch_id));
                }
            }
            // Ops take the numbers of their batch's ranges in order, per space.
            assert_eq!(b.op_seqs.len(), b.op_sessions.len());
            assert_eq!(b.op_masks.len(), b.op_sessions.len());
            let mut used = vec![0u64; mask.len()];
            for i in 0..b.op_sessions.len() {
                let om = SpaceMask(b.op_masks[i]);
                assert!(
                    !om.is_empty(),
                    "group {g} batch {}: op with no space",
                    b.batch_id
                );
                let mut nums = Vec::new();
                for s in om.iter() {
                    let k = mask.index_of(s).unwrap_or_else(|| {
                        panic!(
                            "group {g} batch {}: op touches space {s} outside {mask:?}",
                            b.batch_id
                        )
                    });
                    assert!(
                        used[k] < u64::from(b.counts[k]),
                        "group {g} batch {}: ops overflow space {s}'s range",
                        b.batch_id
                    );
                    nums.push(b.bases[k] + used[k]);
                    used[k] += 1;
                    taken[s as usize] += 1;
                }
                let key = (b.op_sessions[i], b.op_seqs[i]);
                let prev = ops.insert(key, (om.0, nums));
                assert!(
                    prev.is_none(),
                    "session {} op {} bound twice (Once)",
                    key.0,
                    key.1
                );
            }
        }
    }
    let mut numbers = Vec::new();
    for (s, rs) in ranges.iter_mut().enumerate() {
        rs.sort_unstable();
        let mut next = 0u64;
        for &(base, count, g, id) in rs.iter() {
            assert!(
                base >= next,
                "space {s}: group {g} batch {id} range {base}+{count} overlaps numbers below {next}"
            );
            assert_eq!(
                base, next,
                "space {s}: hole {next}..{base} before group {g} batch {id}"
            );
            next = base + count;
        }
        numbers.push(next);
    }
    let noops = numbers.iter().zip(&taken).map(|(n, t)| n - t).collect();
    Tiling {
        numbers,
        noops,
        ops,
        batches,
    }
}

/// Every acknowledged op of every client: ((client, seq), mask, numbers), in the order
/// each client received them.
pub fn read_acks(dir: &Path, clients: u32) -> Vec<Ack> {
    let mut all = Vec::new();
    for i in 0..clients {
        let p = dir.join(format!("acks-{i}.bin"));
        let recs =
            read_records::<AckChunk>(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
        assert!(!recs.torn, "{} is torn", p.display());
        for c in &recs.records {
            let ok = c.for_each(|seq, mask, nums| {
                all.push(((c.session, seq), mask.0, nums.to_vec()));
            });
            assert!(
                ok,
                "{}: malformed chunk of session {}",
                p.display(),
                c.session
            );
        }
    }
    all
}

/// Stable and FIFO, checked here: every acknowledged op is bound with exactly the numbers
/// it was told, and per client and space a later op has a larger number.
pub fn check_acks_against(bound: &Bound, acks: &[Ack]) {
    assert!(!acks.is_empty(), "no acknowledged op");
    for (key, mask, nums) in acks {
        let b = bound
            .get(key)
            .unwrap_or_else(|| panic!("client {} op {} acked but never bound", key.0, key.1));
        assert_eq!(
            (&b.0, &b.1),
            (mask, nums),
            "client {} op {}: acknowledged numbers differ from the bound ones",
            key.0,
            key.1
        );
    }
    check_fifo(bound);
}

pub fn check_fifo(bound: &Bound) {
    // Per client: (seq, mask, numbers) of each bound op.
    type OpsOf<'a> = Vec<(u64, u64, &'a Vec<u64>)>;
    let mut per_client: HashMap<u64, OpsOf> = HashMap::new();
    for ((c, seq), (m, nums)) in bound {
        per_client.entry(*c).or_default().push((*seq, *m, nums));
    }
    for (c, mut ops) in per_client {
        ops.sort_unstable_by_key(|o| o.0);
        let mut last: HashMap<u32, (u64, u64)> = HashMap::new();
        for (seq, m, nums) in ops {
            for (s, n) in SpaceMask(m).iter().zip(nums) {
                if let Some((pseq, pn)) = last.get(&s) {
                    assert!(
                        n > pn,
                        "FIFO: client {c} space {s}: op {seq} got {n}, op {pseq} got {pn}"
                    );
                }
                last.insert(s, (seq, *n));
            }
        }
    }
}

pub fn files_matching(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The independent checks above must be able to fail: fed records with an overlap, a hole,
/// an op bound twice, or an acknowledgement that differs from the binding, they panic.
#[test]
fn independent_checks_catch_broken_records() {
    use mason_common::record::RecordWriter;
    let batch = |id: u64, bases: Vec<u64>, counts: Vec<u32>, ops: &[(u64, u64, u64)]| BoundBatch {
        group: 0,
        batch_id: id,
        epoch: 1,
        space_mask: 0b11,
        bases,
        counts,
        op_sessions: ops.iter().map(|o| o.0).collect(),
        op_seqs: ops.iter().map(|o| o.1).collect(),
        op_masks: ops.iter().map(|o| o.2).collect(),
        index: id,
    };
    let write = |dir: &Path, log: &[BoundBatch]| {
        let mut w = RecordWriter::create(&dir.join("bound-g0-r0.bin")).expect("create");
        for b in log {
            w.append(b).expect("append");
        }
        w.finish().expect("finish");
    };
    let good = vec![
        batch(1, vec![0, 0], vec![2, 1], &[(1, 1, 0b11), (1, 2, 0b01)]),
        batch(2, vec![2, 1], vec![1, 2], &[(1, 3, 0b11)]),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), &good);
    let t = check_tiling(dir.path(), 1, 0, 2);
    assert_eq!(t.numbers, [3, 3]);
    assert_eq!(t.noops, [0, 1]);
    let acks = vec![((1, 1), 0b11, vec![0, 0]), ((1, 3), 0b11, vec![2, 1])];
    check_acks_against(&t.ops, &acks);

    let fails = |log: Vec<BoundBatch>, acks: Vec<Ack>| {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), &log);
        let r = std::panic::catch_unwind(|| {
            let t = check_tiling(dir.path(), 1, 0, 2);
            check_acks_against(&t.ops, &acks);
        });
        r.is_err()
    };
    let ok_acks = || vec![((1, 1), 0b11, vec![0, 0])];
    // Overlap: batch 2 reuses number 1 of space 0.
    assert!(fails(
        vec![
            batch(1, vec![0, 0], vec![2, 1], &[(1, 1, 0b11)]),
            batch(2, vec![1, 1], vec![1, 1], &[]),
        ],
        ok_acks()
    ));
    // Hole: number 2 of space 0 is never bound.
    assert!(fails(
        vec![
            batch(1, vec![0, 0], vec![2, 1], &[(1, 1, 0b11)]),
            batch(2, vec![3, 1], vec![1, 1], &[]),
        ],
        ok_acks()
    ));
    // Once: op (1, 1) bound in two batches.
    assert!(fails(
        vec![
            batch(1, vec![0, 0], vec![1, 1], &[(1, 1, 0b11)]),
            batch(2, vec![1, 1], vec![1, 1], &[(1, 1, 0b11)]),
        ],
        ok_acks()
    ));
    // Stable: acknowledged numbers differ from the bound ones.
    assert!(fails(
        vec![batch(1, vec![0, 0], vec![1, 1], &[(1, 1, 0b11)])],
        vec![((1, 1), 0b11, vec![0, 1])]
    ));
    // FIFO: a later op of client 1 got a smaller number in space 1.
    assert!(fails(
        vec![
            batch(1, vec![0, 0], vec![1, 1], &[(1, 2, 0b11)]),
            batch(2, vec![1, 1], vec![1, 1], &[(1, 1, 0b11)]),
        ],
        vec![((1, 2), 0b11, vec![0, 0])]
    ));
    // Ops overflowing their range.
    assert!(fails(
        vec![batch(
            1,
            vec![0, 0],
            vec![1, 1],
            &[(1, 1, 0b11), (1, 2, 0b01)]
        )],
        ok_acks()
    ));
}
