//! Writes that take long to become durable: a replica goes on meanwhile, and what depends
//! on the write waits for it.

mod harness;

use harness::*;
use mason_common::msg::ClientOp;

fn acked_op(client: u64, seq: u64) -> ClientOp {
    ClientOp {
        acked_below: seq,
        ..op(client, seq, 1)
    }
}

/// A follower cut off long enough catches up from the leader's snapshot. While that
/// snapshot is still being written the leader goes silent: the follower must not campaign
/// (its log already starts after the snapshot, while Raft's applied index is still below
/// it; raft-rs aborts on such a campaign). Once the write is durable it may, and the
/// group goes on with every replica agreeing.
#[test]
fn a_follower_writing_the_leaders_snapshot_waits_for_it_before_it_campaigns() {
    let mut tpl = cfg(1);
    tpl.snapshot_entries = 100;
    let (mut net, l) = Net::start(tpl);
    let f = (l + 1) % N;
    let other = (l + 2) % N;
    net.cut[f] = true;
    let before = net.reps[f].status().applied;
    // Past KEEP_BEHIND (1,000) entries beyond the follower: the leader compacts them.
    let mut seq = 0;
    for _ in 0..1_300 {
        seq += 1;
        net.send(l, &[acked_op(1, seq)]);
    }
    net.cut[f] = false;
    net.hold_persist[f] = true;
    net.from_snapshot[f] = true;
    net.advance(3 * TICK);
    let caught_up = net.reps[f].status().applied;
    assert!(
        caught_up > before + 1_000,
        "the follower caught up from a snapshot ({before} -> {caught_up})"
    );
    assert!(
        net.held_persist[f].is_some(),
        "its write is still in flight"
    );
    // The leader and the third replica go silent, for several election timeouts.
    net.cut[l] = true;
    net.cut[other] = true;
    net.advance(200 * TICK);
    assert!(!net.reps[f].is_leader());
    net.release_persist(f);
    net.cut = [false; N];
    let leader = net.elect();
    for _ in 0..20 {
        seq += 1;
        net.send(leader, &[acked_op(1, seq)]);
    }
    net.advance(10 * TICK);
    assert!(
        net.oks(1).iter().any(|r| r.client_seq == seq),
        "the group serves again"
    );
    // What the follower applied after the snapshot is what the others applied.
    let after: Vec<_> = net.bound[f].clone();
    assert!(after.len() >= 20, "the follower applied the new batches");
    for r in [l, other] {
        let same: Vec<_> = net.bound[r]
            .iter()
            .filter(|b| after.iter().any(|a| a.index == b.index))
            .cloned()
            .collect();
        let mine: Vec<_> = after.iter().filter(|a| a.batch_id > 0).cloned().collect();
        let theirs: Vec<_> = same.into_iter().filter(|b| b.batch_id > 0).collect();
        assert_eq!(
            mine.len(),
            theirs.len(),
            "replica {r} applied the same batches"
        );
        for (a, b) in mine.iter().zip(&theirs) {
            assert_eq!(
                (a.batch_id, &a.bases, &a.counts),
                (b.batch_id, &b.bases, &b.counts)
            );
        }
    }
}

/// With snapshots by entries off, a replica still snapshots once the entries it applied
/// since its last snapshot pass `snapshot_bytes`: a group whose entries are large keeps
/// its log (and what a new WAL segment starts with) bounded in bytes.
#[test]
fn large_entries_are_snapshotted_by_their_bytes() {
    let mut tpl = cfg(1);
    tpl.snapshot_entries = 0;
    tpl.snapshot_bytes = 64 << 10;
    let (mut net, l) = Net::start(tpl);
    // 200 ops of 4 KiB, one per batch: about 800 KiB of entries.
    for seq in 1..=200 {
        let o = ClientOp {
            payload: vec![7u8; 4 << 10].into(),
            ..acked_op(1, seq)
        };
        net.send(l, &[o]);
    }
    net.advance(3 * TICK);
    assert!(
        net.oks(1).iter().any(|r| r.client_seq == 200),
        "every op was answered"
    );
    for r in 0..N {
        let snaps = &net.snapshots[r];
        // About one per 64 KiB applied (16 ops): at least 8 in 800 KiB, at most 50.
        assert!(
            (8..=50).contains(&snaps.len()),
            "replica {r} took {} snapshots: {snaps:?}",
            snaps.len()
        );
        assert!(snaps.windows(2).all(|w| w[0] < w[1]));
    }
}
