//! Group tests (over `harness::Net`): three replicas of one proxy group and a real sequencer, wired by a
//! deterministic in-memory network (no threads, no sockets; time is a `u64` of microseconds
//! advanced by hand, with a Raft tick every 10 ms). They cover the normal path (DESIGN.md
//! section 3: batching, FIFO hold-back, dedup, at most K outstanding sequencer requests),
//! proxy-leader failover (section 4: the new leader re-asks its predecessor's batch ids with
//! zero counts and commits the ranges as noops) and the invariants of section 7 (Unique,
//! Contiguous, Stable, Once, FIFO) via `mason_common::verify`, plus replica agreement.
//!
//! Raft-rs draws election timeouts from `thread_rng`, so which follower wins an election
//! varies between runs; the tests hold for any winner.

mod harness;

use harness::{cfg, op, shuffle, FromSeq, Net, N, TICK};
use mason_common::msg::{ClientReply, GetSeq, ReplyStatus};
use mason_common::record::BoundBatch;
use mason_proxy::{ConnId, ReplicaConfig};

#[test]
fn burst_is_batched_and_every_op_is_answered_once() {
    let (mut net, l) = Net::start(ReplicaConfig {
        max_batch_ops: 16,
        ..cfg(2)
    });
    let before = net.bound[l].len();
    let masks = [0b01, 0b10, 0b11];
    let mut ops = Vec::new();
    for c in 1..=4u64 {
        for s in 1..=10u64 {
            ops.push(op(c, s, masks[((c + s) % 3) as usize]));
        }
    }
    shuffle(&mut ops, 7); // per-client order is scrambled too: hold-back restores it
    net.send(l, &ops);
    net.advance(3 * TICK);

    let batches: Vec<&BoundBatch> = net.bound[l][before..].iter().collect();
    let sizes: Vec<usize> = batches.iter().map(|b| b.op_seqs.len()).collect();
    assert_eq!(
        sizes,
        vec![16, 16, 8],
        "40 ops in one burst, 16 per batch at most"
    );
    for c in 1..=4u64 {
        let mut seqs: Vec<u64> = net.oks(c).iter().map(|r| r.client_seq).collect();
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (1..=10).collect::<Vec<_>>(),
            "client {c}: one Ok per op"
        );
    }
    assert_eq!(net.replies.len(), 40);
    assert!(net.replies.iter().all(|(r, conn, rep)| *r == l
        && rep.session == harness::session(*conn)
        && rep.status == ReplyStatus::Ok as i32));
    let report = net.check(l);
    assert_eq!(report.ops, 40);
    let per_space = |s: u64| ops.iter().filter(|o| o.space_mask & (1 << s) != 0).count() as u64;
    assert_eq!(report.numbers, vec![per_space(0), per_space(1)]);
    assert_eq!(report.noops, vec![0, 0]);
    net.agree_all();
}

#[test]
fn fifo_hold_back_binds_in_client_seq_order() {
    let (mut net, l) = Net::start(cfg(2));
    net.send(l, &[op(1, 3, 0b11)]);
    assert!(net.oks(1).is_empty());
    assert!(net.bound_ops(l, 1).is_empty(), "seq 3 batched before seq 1");
    net.send(l, &[op(2, 1, 0b01)]); // another client is not held up
    assert_eq!(net.oks(2).len(), 1);
    net.send(l, &[op(1, 1, 0b01)]);
    let answered: Vec<u64> = net.oks(1).iter().map(|r| r.client_seq).collect();
    assert_eq!(answered, vec![1], "seq 3 must wait for seq 2");
    assert_eq!(net.bound_ops(l, 1).len(), 1);
    net.send(l, &[op(1, 2, 0b10)]);

    let answered: Vec<u64> = net.oks(1).iter().map(|r| r.client_seq).collect();
    assert_eq!(answered, vec![1, 2, 3], "answers in seq order");
    let bound = net.bound_ops(l, 1);
    assert_eq!(bound.iter().map(|b| b.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    // seq 1 = {space 0}, seq 2 = {space 1}, seq 3 = {0, 1}: later ops, larger numbers.
    assert!(bound[2].1[0] > bound[0].1[0] && bound[2].1[1] > bound[1].1[0]);
    net.check(l);
    net.agree_all();
}

#[test]
fn duplicates_are_bound_once_and_answered_alike() {
    let (mut net, l) = Net::start(cfg(2));
    net.hold_seq = true;
    net.send_on(l, 1, op(1, 1, 0b11));
    net.send_on(l, 1, op(1, 1, 0b11)); // retry while its batch is in flight
    net.send(l, &[op(2, 1, 0b01), op(2, 1, 0b01)]); // twice in one burst
    assert!(net.oks(1).is_empty());
    net.release();
    net.advance(2 * TICK);
    assert_eq!(net.oks(1).len(), 1, "one answer for two sends");
    assert_eq!(net.oks(2).len(), 1);
    let first = net.oks(1)[0].clone();
    let counters = net.counters();
    let log_len = net.bound[l].len();

    net.send_on(l, 9, op(1, 1, 0b11)); // retry after the answer, on a new connection
    let again: Vec<&(usize, ConnId, ClientReply)> =
        net.replies.iter().filter(|x| x.1 == 9).collect();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].2, first, "the retry gets the first answer back");
    assert_eq!(net.bound[l].len(), log_len, "nothing new bound");
    assert_eq!(net.counters(), &counters[..], "no new numbers asked for");
    assert_eq!(net.bound_ops(l, 1).len(), 1);
    assert_eq!(net.bound_ops(l, 2).len(), 1);
    let report = net.check(l);
    assert_eq!(report.ops, 2);
    assert_eq!(report.noops, vec![0, 0]);
    net.agree_all();
}

#[test]
fn at_most_k_batch_ids_outstanding() {
    let k = 4;
    let (mut net, l) = Net::start(ReplicaConfig {
        max_outstanding: k,
        ..cfg(1)
    });
    let last = net.last_bound(l);
    assert_eq!(
        last, k as u64,
        "start-up re-asks 1..=K, committed as empty batches"
    );
    net.hold_seq = true;
    for s in 1..=10 {
        net.send(l, &[op(1, s, 1)]); // one batch per burst while slots are free
    }
    net.advance(60 * TICK); // past seq_retry_us: unanswered requests are re-sent
    assert!(net.reps[l].is_serving());
    assert_eq!(net.last_bound(l), last, "nothing commits without answers");
    assert_eq!(
        net.reps[l].next_deadline(),
        None,
        "open ops wait for a free slot"
    );
    let ids: Vec<u64> = net
        .asks
        .iter()
        .filter(|a| a.0 == l && a.1.batch_id > last)
        .map(|a| a.1.batch_id)
        .collect();
    assert_eq!(
        *ids.iter().max().expect("asks"),
        last + k as u64,
        "the limit is reached"
    );
    assert!(ids.len() > k, "re-sent after seq_retry_us");
    assert!(net.oks(1).is_empty());

    net.release(); // answers arrive latest first, repeats included
    net.advance(3 * TICK);
    let seqs: Vec<u64> = net.oks(1).iter().map(|r| r.client_seq).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    let with_ops = net.bound[l]
        .iter()
        .filter(|b| !b.op_seqs.is_empty())
        .count();
    assert_eq!(with_ops, k + 1, "K single-op batches, then the rest in one");
    assert_eq!(net.check(l).ops, 10);
    net.agree_all();
}

#[test]
fn new_leader_commits_predecessors_ranges_as_noops() {
    let (mut net, old) = Net::start(cfg(2));
    net.send(old, &[op(1, 1, 0b11), op(2, 1, 0b01)]);
    assert_eq!(net.oks(1).len() + net.oks(2).len(), 2);
    net.advance(3 * TICK);

    // The old leader gets its answer for the next batch, but its proposal reaches nobody.
    net.mute[old] = true;
    let lost = [op(1, 2, 0b11), op(2, 2, 0b10), op(3, 1, 0b01)];
    net.send(old, &lost);
    let (_, req, doomed) = net.asks.last().expect("the old leader asked").clone();
    assert_eq!(
        (req.batch_id, doomed.counts.clone()),
        (net.last_bound(old) + 1, vec![2, 2])
    );
    assert!(net
        .bound
        .iter()
        .all(|log| log.iter().all(|b| b.batch_id < req.batch_id)));
    net.cut[old] = true;
    net.hold_seq = true;
    let asked = net.asks.len();
    let new = net.elect();
    assert_ne!(new, old);

    // Elected and started, the new leader's re-asks are held: the numbers the sequencer
    // gave the lost batch are bound by nothing yet. Without the re-ask they never would be.
    let last = net.last_bound(new);
    let reasks: Vec<&GetSeq> = net.asks[asked..]
        .iter()
        .filter(|a| a.0 == new)
        .map(|a| &a.1)
        .collect();
    assert_eq!(
        reasks.iter().map(|r| r.batch_id).collect::<Vec<_>>(),
        (last + 1..=last + net.k).collect::<Vec<_>>()
    );
    assert!(
        reasks.iter().all(|r| r.counts.iter().all(|c| *c == 0)),
        "zero counts"
    );
    assert!(reasks.iter().any(|r| r.batch_id == req.batch_id));
    assert_eq!(
        net.holes(new),
        vec![2, 2],
        "a hole exactly the size of the lost batch"
    );

    net.release();
    net.advance(2 * TICK);
    assert_eq!(net.holes(new), vec![0, 0], "the hole is closed");
    let noop = net.bound[new]
        .iter()
        .find(|b| b.batch_id == req.batch_id)
        .expect("recovered");
    assert!(
        noop.op_seqs.is_empty(),
        "the lost batch is committed as noops"
    );
    assert_eq!((&noop.bases, &noop.counts), (&doomed.bases, &doomed.counts));

    // Clients retry at the new leader (one also retries an op already answered).
    let mut retry = lost.to_vec();
    retry.push(op(1, 1, 0b11));
    net.send(new, &retry);
    net.send(new, &[op(3, 2, 0b11)]);
    net.advance(2 * TICK);
    for c in 1..=3 {
        let mut seqs: Vec<u64> = net.oks(c).iter().map(|r| r.client_seq).collect();
        seqs.sort_unstable();
        seqs.dedup(); // client 1 asked for seq 1 twice; Stable (below) checks both answers
        assert_eq!(seqs, vec![1, 2], "client {c}");
    }
    assert_eq!(net.oks(1).len(), 3);
    let report = net.check(new); // Contiguous fails here if the lost ranges were skipped
    assert_eq!(report.noops, vec![2, 2]);
    assert_eq!(net.holes(new), vec![0, 0]);

    // The old leader heals, steps down, and converges on the same log.
    net.cut[old] = false;
    net.mute[old] = false;
    net.advance(50 * TICK);
    assert!(!net.reps[old].is_leader());
    assert!(net
        .replies
        .iter()
        .any(|(r, _, rep)| *r == old && rep.status == ReplyStatus::NotLeader as i32));
    net.agree_all();
}

#[test]
fn successor_commits_a_replicated_batch_and_retries_get_its_numbers() {
    let (mut net, old) = Net::start(cfg(1));
    // Followers append the old leader's batch, but their acks never reach it.
    net.deaf[old] = true;
    net.send(old, &[op(1, 1, 1), op(1, 2, 1)]);
    let (_, req, given) = net.asks.last().expect("asked").clone();
    assert!(net.oks(1).is_empty());
    net.cut[old] = true;
    let new = net.elect();
    net.advance(3 * TICK);
    let b = net.bound[new]
        .iter()
        .find(|b| b.batch_id == req.batch_id)
        .expect("committed");
    assert_eq!(
        (b.op_seqs.clone(), b.bases.clone()),
        (vec![1, 2], given.bases.clone())
    );

    net.send(new, &[op(1, 1, 1), op(1, 2, 1), op(1, 3, 1)]);
    net.advance(2 * TICK);
    let got: Vec<(u64, Vec<u64>)> = net
        .oks(1)
        .iter()
        .map(|r| (r.client_seq, r.numbers.clone()))
        .collect();
    let base = given.bases[0];
    assert_eq!(
        got[..2],
        [(1, vec![base]), (2, vec![base + 1])],
        "original numbers"
    );
    assert_eq!(got.len(), 3);
    assert_eq!(net.bound_ops(new, 1).len(), 3, "each op bound once");
    net.check(new);
    net.agree_all();
}

#[test]
fn invalid_ops_and_followers_are_refused() {
    let (mut net, l) = Net::start(cfg(2));
    let f = (l + 1) % N;
    let mut wrong_group = op(3, 1, 0b01);
    wrong_group.group = 7;
    let bad = [op(1, 1, 0), op(2, 1, 0b100), wrong_group];
    net.send(l, &bad);
    net.send(f, &bad);
    assert_eq!(net.replies.len(), 6);
    for (_, conn, rep) in &net.replies {
        assert_eq!(rep.status, ReplyStatus::Invalid as i32);
        assert_eq!((rep.session, rep.client_seq), (harness::session(*conn), 1));
    }
    net.advance(3 * TICK);
    assert_eq!(net.counters(), vec![0, 0], "no numbers asked for");
    assert!(
        net.bound.iter().flatten().all(|b| b.op_seqs.is_empty()),
        "nothing bound"
    );

    net.replies.clear();
    net.send(f, &[op(4, 1, 0b11)]);
    let (r, conn, rep) = net.replies.last().expect("answered").clone();
    assert_eq!((r, conn, rep.client_seq), (f, 4, 1));
    assert_eq!(rep.status, ReplyStatus::NotLeader as i32);
    assert_eq!(
        rep.leader_hint as usize,
        l + 1,
        "hint: the leader's raft id"
    );
    // The client follows the hint.
    net.send(rep.leader_hint as usize - 1, &[op(4, 1, 0b11)]);
    assert_eq!(net.oks(4).len(), 1);
    net.check(l);
}

#[test]
fn uncovered_answer_restarts_leadership_without_binding_anything_twice() {
    let k = 4u64;
    let (mut net, l) = Net::start(ReplicaConfig {
        max_outstanding: k as usize,
        ..cfg(1)
    });
    let last = net.last_bound(l);
    // A rival's recovery probe claims the leader's next batch id first, as empty.
    let probe = net
        .seq_answer(GetSeq {
            epoch: 1,
            group: 0,
            batch_id: last + 1,
            space_mask: 1,
            counts: vec![0],
            committed: 0,
            session: 0,
        })
        .expect("the next id is answered at once");
    assert_eq!(probe.counts, vec![0]);
    net.send(l, &[op(1, 1, 1)]);
    net.advance(3 * TICK);
    let not_leader = net
        .replies
        .iter()
        .any(|(r, _, rep)| *r == l && rep.status == ReplyStatus::NotLeader as i32);
    assert!(not_leader, "the client is told to re-send");
    assert!(
        net.oks(1).is_empty(),
        "nothing answered from an uncovered batch"
    );
    assert!(net.reps[l].is_serving(), "leadership restarted in place");
    assert!(
        net.last_bound(l) >= last + k,
        "the restarted leader re-asked and committed the next K ids"
    );
    // The client re-sends; the op is bound once, with fresh numbers, and nothing is lost.
    net.send(l, &[op(1, 1, 1)]);
    net.advance(3 * TICK);
    assert_eq!(net.oks(1).len(), 1);
    assert_eq!(net.bound_ops(l, 1).len(), 1);
    assert_eq!(net.holes(l), vec![0]);
    assert_eq!(net.check(l).ops, 1);
    net.agree_all();
}

/// A leader that commits lets its next append tell the followers, rather than sending
/// each a message of its own (and hearing an answer to it). When nothing more is coming,
/// it tells them at its next tick; and if what was coming never comes, a heartbeat tells
/// them. (Heartbeats every 100 ticks here, so that none tells a follower anything before
/// the test means one to.)
#[test]
fn a_commit_rides_on_the_next_append_or_goes_out_at_the_next_tick() {
    let (mut net, l) = Net::start(ReplicaConfig {
        heartbeat_ticks: 100,
        election_ticks: 1_000,
        ..cfg(1)
    });
    let followers = [(l + 1) % N, (l + 2) % N];
    let start = net.last_bound(l);
    for f in followers {
        assert_eq!(
            net.last_bound(f),
            start,
            "every replica applied the start-up"
        );
    }

    // Nothing else coming: the leader answers at once, and the followers hear of the
    // commit at the leader's next tick.
    let sent = net.raft_sent;
    net.send(l, &[op(1, 1, 1)]);
    assert_eq!(net.last_bound(l), start + 1, "the leader applied batch 1");
    assert_eq!(net.oks(1).len(), 1, "and answered its op");
    assert_eq!(net.raft_sent[l] - sent[l], 2, "batch 1's appends, no more");
    for f in followers {
        assert_eq!(net.last_bound(f), start, "follower {f} waits for the tick");
    }
    net.advance(TICK);
    for r in 0..N {
        assert_eq!(net.last_bound(r), start + 1, "replica {r} applied batch 1");
    }

    // Batch 2 commits while batch 3 is out at the sequencer.
    net.hold_seq = true;
    net.send(l, &[op(1, 2, 1)]);
    net.send(l, &[op(1, 3, 1)]);
    assert_eq!(net.held.len(), 2, "both batches are out at the sequencer");
    let (r, answer) = net.held.remove(0);
    net.from_seq.push_back(FromSeq::Reply(r, answer));
    let sent = net.raft_sent;
    net.settle();
    assert_eq!(net.last_bound(l), start + 2, "the leader committed batch 2");
    assert_eq!(
        net.raft_sent[l] - sent[l],
        2,
        "the leader sent batch 2's appends, and nothing when it committed"
    );
    for f in followers {
        assert_eq!(net.raft_sent[f] - sent[f], 1, "follower {f} answered once");
    }
    assert_eq!(net.oks(1).len(), 2, "and answered its op");
    net.advance(TICK);
    for f in followers {
        assert_eq!(
            net.last_bound(f),
            start + 1,
            "follower {f} hears of batch 2's commit with batch 3's append"
        );
    }
    net.release();
    assert_eq!(net.last_bound(l), start + 3);
    for f in followers {
        assert_eq!(
            net.last_bound(f),
            start + 2,
            "follower {f} heard of batch 2's commit with batch 3's append"
        );
    }
    net.advance(TICK);
    for r in 0..N {
        assert_eq!(
            net.last_bound(r),
            start + 3,
            "replica {r} applied batches 2 and 3"
        );
    }

    // Batch 4 commits while batch 5's answer never comes: a heartbeat carries the commit.
    net.hold_seq = true;
    net.send(l, &[op(1, 4, 1)]);
    net.send(l, &[op(1, 5, 1)]);
    let (r, answer) = net.held.remove(0);
    net.from_seq.push_back(FromSeq::Reply(r, answer));
    net.settle();
    net.advance(TICK);
    for f in followers {
        assert_eq!(
            net.last_bound(f),
            start + 3,
            "no tick's message while batch 5 is out"
        );
    }
    net.advance(100 * TICK);
    for f in followers {
        assert_eq!(
            net.last_bound(f),
            start + 4,
            "follower {f} heard batch 4's commit"
        );
    }
    net.release();
    net.advance(3 * TICK);
    assert_eq!(net.oks(1).len(), 5);
    net.agree_all();
}
