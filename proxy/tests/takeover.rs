//! A group's side of sequencer failover, over `harness::Net` (three replicas, a primary
//! sequencer node and a backup): every takeover message may come twice, late, or out of
//! order, and a repeated one changes nothing. Among them the fill a backup re-sends every
//! 20 ms until acknowledged: applied once, it must be harmless again (it once panicked the
//! group's task, and since the entry was committed, every restart replayed it).

mod harness;

use harness::{cfg, op, Net, TICK};
use mason_common::msg::{Body, Fill, Ranges, Switch};
use mason_proxy::Replica;

/// Brings the backup in: the primary goes down, the leader times out on it and asks the
/// backup, which takes over. Returns the leader.
fn take_over(net: &mut Net) -> usize {
    net.seq_up[0] = false;
    for _ in 0..400 {
        net.advance(TICK);
        if net.seqs[1].active_epoch().is_some() {
            let l = net.elect();
            net.advance(5 * TICK);
            return l;
        }
    }
    panic!("the backup never took over");
}

fn fill(net: &Net, holes: &[(u32, u64, u64)]) -> Fill {
    let r = &net.reps[0];
    let mut h = Ranges::default();
    for &(s, b, l) in holes {
        h.push(s, b, l);
    }
    Fill {
        epoch: r.promised(),
        group: 0,
        holes: Some(h),
        ballot: 0xb1,
    }
}

fn fills_acked(net: &Net) -> usize {
    net.to_seq
        .iter()
        .filter(|(_, _, b)| matches!(b, Body::FillAck(_)))
        .count()
}

#[test]
fn a_fill_resent_after_it_was_applied_is_acknowledged_and_binds_nothing() {
    let (mut net, _) = Net::start(cfg(1));
    let l = net.elect();
    net.send(l, &[op(1, 1, 1), op(2, 1, 1), op(3, 1, 1)]);
    net.advance(3 * TICK);
    let l = take_over(&mut net);
    assert_eq!(net.reps[l].promised(), 2, "the backup's epoch");
    // More ops at the new epoch: numbers 3.. bound, in one range with 0..3.
    net.send(l, &[op(1, 2, 1), op(2, 2, 1)]);
    net.advance(3 * TICK);
    let before: Vec<usize> = net.bound.iter().map(Vec::len).collect();
    let acks = fills_acked(&net);
    // A late copy of a fill of number 1, recorded long ago inside a longer range.
    let f = fill(&net, &[(0, 1, 1)]);
    net.on(l, |r: &mut Replica, _, out| r.on_fill(f.clone(), out));
    net.settle();
    net.on(l, |r: &mut Replica, _, out| r.on_fill(f, out));
    net.settle();
    net.advance(3 * TICK);
    assert_eq!(fills_acked(&net), acks + 2, "acknowledged again, each time");
    let after: Vec<usize> = net.bound.iter().map(Vec::len).collect();
    assert_eq!(before, after, "nothing bound again");
    // The group still serves.
    net.send(l, &[op(3, 2, 1)]);
    net.advance(3 * TICK);
    assert_eq!(net.oks(3).len(), 2);
    net.check(l);
    net.agree_all();
}

/// A fill re-sent before the first copy committed commits twice; here a batch binding
/// the numbers right after the hole commits between them (the second copy once panicked).
#[test]
fn a_fill_committed_twice_around_a_batch_binds_its_hole_once() {
    let (mut net, l) = Net::start_with_groups(cfg(1), 2);
    net.send(l, &[op(1, 1, 1)]);
    net.advance(3 * TICK);
    // Another group takes a number and never binds it: a hole below the counter, which a
    // takeover would assign to this group as a fill.
    let taken = net
        .seq_answer(mason_common::msg::GetSeq {
            epoch: 1,
            group: 1,
            batch_id: 1,
            space_mask: 1,
            counts: vec![1],
            committed: 0,
            session: 0,
        })
        .expect("answered");
    let hole = taken.bases[0];
    let f = Fill {
        epoch: 1,
        group: 0,
        holes: Some({
            let mut h = Ranges::default();
            h.push(0, hole, 1);
            h
        }),
        ballot: 0,
    };
    // The fill, a batch (numbers right after the hole), and the fill again, all proposed
    // before any of them commits.
    net.mute[l] = true;
    net.on(l, |r: &mut Replica, _, out| r.on_fill(f.clone(), out));
    net.send(l, &[op(2, 1, 1)]);
    net.on(l, |r: &mut Replica, _, out| r.on_fill(f, out));
    net.settle();
    net.mute[l] = false;
    net.advance(10 * TICK);
    let noops: Vec<u64> = net.bound[l]
        .iter()
        .filter(|b| b.batch_id == 0 && !b.bases.is_empty())
        .map(|b| b.bases[0])
        .collect();
    assert_eq!(noops, vec![hole], "the hole is bound once");
    assert_eq!(net.bound_ops(l, 2), vec![(1, vec![hole + 1])]);
    assert_eq!(net.oks(2).len(), 1);
    net.check(l);
    net.agree_all();
}

#[test]
fn switches_promise_one_ballot_per_epoch_and_repeat_the_promise() {
    let (mut net, l) = Net::start(cfg(1));
    let sw = |epoch, ballot| Switch {
        epoch,
        group: 0,
        ballot,
    };
    // Sequencer 1 of 2 owns epoch 2.
    for _ in 0..3 {
        net.on(l, |r: &mut Replica, _, out| r.on_switch(sw(2, 7), out));
    }
    net.settle();
    net.advance(3 * TICK);
    let l = net.elect();
    assert_eq!(net.reps[l].promised(), 2);
    let switch_entries = net.bound[l]
        .iter()
        .filter(|b| b.batch_id == 0 && b.bases.is_empty() && b.epoch == 2)
        .count();
    assert_eq!(switch_entries, 1, "promised once");
    let promises = |net: &Net, ok: bool| {
        net.to_seq
            .iter()
            .filter(|(_, _, b)| matches!(b, Body::Promise(p) if p.ok == ok && p.epoch == 2))
            .count()
    };
    let oks = promises(&net, true);
    assert!(oks >= 1);
    // A re-sent Switch of the same ballot gets the promise again; another ballot's (a
    // restarted sequencer reusing the epoch) is refused.
    net.on(l, |r: &mut Replica, _, out| r.on_switch(sw(2, 7), out));
    net.settle();
    assert_eq!(promises(&net, true), oks + 1);
    net.on(l, |r: &mut Replica, _, out| r.on_switch(sw(2, 8), out));
    net.settle();
    assert_eq!(promises(&net, false), 1);
    assert_eq!(net.reps[l].promised(), 2);
    // A fill of the other ballot is ignored.
    let before = net.bound[l].len();
    let f = Fill {
        epoch: 2,
        group: 0,
        holes: Some({
            let mut h = Ranges::default();
            h.push(0, 1000, 5);
            h
        }),
        ballot: 8,
    };
    net.on(l, |r: &mut Replica, _, out| r.on_fill(f, out));
    net.settle();
    net.advance(3 * TICK);
    assert_eq!(net.bound[l].len(), before, "nothing bound");
}

/// A leader whose process did not run for 1.5 s (SIGSTOP, a long pause) must not take
/// its own silence for the sequencer's: it watches the sequencer afresh, and the healthy
/// sequencer answers its heartbeat.
#[test]
fn a_paused_leader_does_not_ask_for_a_takeover() {
    let (mut net, l) = Net::start(cfg(1));
    net.send(l, &[op(1, 1, 1)]);
    net.advance(20 * TICK);
    let asked = |net: &Net| {
        net.to_seq
            .iter()
            .filter(|(_, _, b)| matches!(b, Body::Takeover(_)))
            .count()
    };
    assert_eq!(asked(&net), 0);
    // Nothing runs for 1.5 s (the default sequencer timeout is 1 s).
    net.now += 1_500_000;
    net.advance(30 * TICK);
    assert_eq!(asked(&net), 0, "no takeover for a pause of its own");
    assert_eq!(net.reps[l].promised(), 1);
    assert!(net.seqs[1].active_epoch().is_none());
    // A sequencer that really is silent is still replaced.
    net.seq_up[0] = false;
    net.advance(150 * TICK);
    assert!(asked(&net) > 0);
    assert!(net.seqs[1].active_epoch().is_some());
}
