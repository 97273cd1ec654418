//! Tests of the takeover state machine: hole finding, a full takeover, and racing backups.

use super::*;
use mason_common::msg::{FillAck, GetSeq, Heartbeat, Takeover};

fn promise(
    epoch: u64,
    group: u32,
    last: u64,
    w: Vec<u64>,
    recorded: &[(u32, u64, u64)],
) -> Promise {
    let mut r = Ranges::default();
    for &(s, b, l) in recorded {
        r.push(s, b, l);
    }
    Promise {
        epoch,
        group,
        ok: true,
        promised: epoch,
        last_batch_id: last,
        watermarks: w,
        recorded: Some(r),
        ballot: BALLOT,
    }
}

const BALLOT: u64 = 0xba11;

fn backup(id: u32, groups: u32) -> SeqNode {
    SeqNode::new(SeqNodeConfig {
        id,
        sequencers: 3,
        groups,
        spaces: 2,
        primary: false,
        ballot: BALLOT,
        ..SeqNodeConfig::default()
    })
}

#[test]
fn holes_are_the_gaps_above_the_highest_watermark() {
    let a = promise(2, 0, 5, vec![10, 0], &[(0, 12, 3), (0, 20, 5), (1, 0, 4)]);
    let b = promise(2, 1, 7, vec![4, 0], &[(0, 15, 2), (1, 6, 1)]);
    let (counters, holes) = recover(2, [&a, &b].into_iter());
    assert_eq!(counters, vec![25, 7]);
    assert_eq!(holes, vec![(0, 10, 2), (0, 17, 3), (1, 4, 2)]);
}

#[test]
fn a_takeover_collects_fills_and_serves_above_the_highest_recorded_number() {
    let mut n = backup(1, 2);
    let mut out = Vec::new();
    n.on_frame(
        9,
        Body::Takeover(Takeover { epoch: 1, group: 0 }),
        0,
        &mut out,
    )
    .unwrap();
    // Epoch 2 is the first above 1 that sequencer 1 of 3 owns.
    let switches: Vec<u32> = out
        .iter()
        .filter_map(|o| match o {
            SeqOut::Group(g, Body::Switch(s)) if s.epoch == 2 => Some(*g),
            _ => None,
        })
        .collect();
    assert_eq!(switches, vec![0, 1]);
    out.clear();
    n.on_frame(
        1,
        Body::Promise(Box::new(promise(2, 0, 3, vec![0, 0], &[(0, 0, 5)]))),
        0,
        &mut out,
    )
    .unwrap();
    assert!(
        out.is_empty() && n.active_epoch().is_none(),
        "waits for every group"
    );
    n.on_frame(
        1,
        Body::Promise(Box::new(promise(2, 1, 8, vec![0, 0], &[(0, 9, 1)]))),
        0,
        &mut out,
    )
    .unwrap();
    let fills: Vec<(u32, Vec<u64>)> = out
        .iter()
        .filter_map(|o| match o {
            SeqOut::Group(g, Body::Fill(f)) => Some((*g, f.holes.clone().unwrap().bases)),
            _ => None,
        })
        .collect();
    assert_eq!(fills, vec![(0, vec![5])]);
    assert!(
        n.active_epoch().is_none(),
        "serves only once the holes are committed"
    );
    out.clear();
    n.on_frame(
        1,
        Body::FillAck(FillAck {
            epoch: 2,
            group: 0,
            ballot: BALLOT,
        }),
        0,
        &mut out,
    )
    .unwrap();
    assert_eq!(n.active_epoch(), Some(2));
    assert!(matches!(
        out[0],
        SeqOut::Broadcast(Body::Activate(Activate {
            epoch: 2,
            ballot: BALLOT
        }))
    ));
    // Counters restart at the highest recorded number + 1; group 1's next id is 9.
    out.clear();
    let req = GetSeq {
        epoch: 2,
        group: 1,
        batch_id: 9,
        space_mask: 1,
        counts: vec![4],
        committed: 8,
        session: 0,
    };
    n.on_frame(3, Body::GetSeq(req.clone()), 0, &mut out)
        .unwrap();
    match &out[..] {
        [SeqOut::Reply(3, Body::SeqReply(r))] => assert_eq!(r.bases, vec![10]),
        other => panic!("{other:?}"),
    }
    // A request still carrying the old epoch is not served.
    out.clear();
    let old = GetSeq {
        epoch: 1,
        batch_id: 10,
        ..req
    };
    n.on_frame(3, Body::GetSeq(old), 0, &mut out).unwrap();
    assert!(out.is_empty());
}

#[test]
fn a_backup_that_meets_a_higher_promise_gives_up() {
    let mut a = backup(1, 1);
    let mut out = Vec::new();
    a.on_frame(
        9,
        Body::Takeover(Takeover { epoch: 1, group: 0 }),
        0,
        &mut out,
    )
    .unwrap();
    let refusal = Promise {
        ok: false,
        promised: 3,
        ..promise(2, 0, 0, vec![], &[])
    };
    a.on_frame(1, Body::Promise(Box::new(refusal)), 0, &mut out)
        .unwrap();
    out.clear();
    // A late promise of its epoch changes nothing now.
    a.on_frame(
        1,
        Body::Promise(Box::new(promise(2, 0, 0, vec![0, 0], &[]))),
        0,
        &mut out,
    )
    .unwrap();
    assert!(a.active_epoch().is_none() && out.is_empty());
    // Asked again by a group that promised 3, it picks an epoch above 3 that it owns.
    a.on_frame(
        9,
        Body::Takeover(Takeover { epoch: 3, group: 0 }),
        0,
        &mut out,
    )
    .unwrap();
    assert!(matches!(&out[0], SeqOut::Group(0, Body::Switch(s)) if s.epoch == 5));
}

#[test]
fn the_primary_answers_heartbeats_and_takeover_requests_of_its_own_epoch() {
    let mut p = SeqNode::new(SeqNodeConfig::default());
    let mut out = Vec::new();
    p.on_frame(
        4,
        Body::Heartbeat(Heartbeat { epoch: 1, group: 0 }),
        0,
        &mut out,
    )
    .unwrap();
    p.on_frame(
        4,
        Body::Heartbeat(Heartbeat { epoch: 2, group: 0 }),
        0,
        &mut out,
    )
    .unwrap();
    p.on_frame(
        4,
        Body::Takeover(Takeover { epoch: 1, group: 0 }),
        0,
        &mut out,
    )
    .unwrap();
    assert_eq!(out.len(), 2);
    assert!(matches!(out[1], SeqOut::Reply(4, Body::Activate(_))));
    assert!(p
        .on_frame(4, Body::ClientReply(Default::default()), 0, &mut out)
        .is_err());
}

/// Every takeover message again, and late: nothing happens twice. A repeated `Takeover`
/// starts no second takeover, repeated promises and acknowledgements count once, and
/// after activation none of them changes anything.
#[test]
fn repeated_and_late_takeover_messages_change_nothing() {
    let mut n = backup(1, 2);
    let mut out = Vec::new();
    let ask = |epoch| Body::Takeover(Takeover { epoch, group: 0 });
    n.on_frame(9, ask(1), 0, &mut out).unwrap();
    n.on_frame(9, ask(1), 0, &mut out).unwrap();
    let switches = out
        .iter()
        .filter(|o| matches!(o, SeqOut::Group(_, Body::Switch(_))))
        .count();
    assert_eq!(switches, 2, "one Switch per group, once");
    out.clear();
    let p0 = promise(2, 0, 3, vec![0, 0], &[(0, 0, 5)]);
    let p1 = promise(2, 1, 8, vec![0, 0], &[(0, 9, 1)]);
    for p in [&p0, &p0, &p1, &p0, &p1] {
        n.on_frame(1, Body::Promise(Box::new(p.clone())), 0, &mut out)
            .unwrap();
    }
    let fills = out
        .iter()
        .filter(|o| matches!(o, SeqOut::Group(_, Body::Fill(_))))
        .count();
    assert_eq!(fills, 1, "holes assigned once");
    let ack = |ballot| {
        Body::FillAck(FillAck {
            epoch: 2,
            group: 0,
            ballot,
        })
    };
    out.clear();
    // An acknowledgement of another ballot's fill (this sequencer before a restart).
    n.on_frame(1, ack(BALLOT + 1), 0, &mut out).unwrap();
    assert!(n.active_epoch().is_none());
    n.on_frame(1, ack(BALLOT), 0, &mut out).unwrap();
    n.on_frame(1, ack(BALLOT), 0, &mut out).unwrap();
    assert_eq!(n.active_epoch(), Some(2));
    let activations = out
        .iter()
        .filter(|o| matches!(o, SeqOut::Broadcast(Body::Activate(_))))
        .count();
    assert_eq!(activations, 1);
    // Late copies of everything once active: no new takeover, no change of epoch.
    out.clear();
    n.on_frame(9, ask(1), 0, &mut out).unwrap();
    n.on_frame(1, Body::Promise(Box::new(p0.clone())), 0, &mut out)
        .unwrap();
    n.on_frame(1, ack(BALLOT), 0, &mut out).unwrap();
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(n.active_epoch(), Some(2));
}

/// A sequencer that restarted (a new ballot) and hears a late `Takeover` about an epoch
/// it had already taken over before the restart: the groups refuse, since they promised
/// that epoch to the old ballot, and it gives up instead of serving that epoch again.
#[test]
fn a_restarted_sequencer_cannot_take_over_an_epoch_again() {
    let mut n = SeqNode::new(SeqNodeConfig {
        ballot: BALLOT + 7,
        ..backup(1, 1).cfg
    });
    let mut out = Vec::new();
    n.on_frame(
        9,
        Body::Takeover(Takeover { epoch: 1, group: 0 }),
        0,
        &mut out,
    )
    .unwrap();
    assert!(
        matches!(&out[0], SeqOut::Group(0, Body::Switch(s)) if s.epoch == 2 && s.ballot == BALLOT + 7)
    );
    // The group promised epoch 2 to the old ballot: a re-sent promise of it is no promise
    // to this one.
    out.clear();
    n.on_frame(
        1,
        Body::Promise(Box::new(promise(2, 0, 3, vec![0, 0], &[]))),
        0,
        &mut out,
    )
    .unwrap();
    assert!(n.active_epoch().is_none() && out.is_empty());
    // Asked again about epoch 2, it moves past it.
    n.on_frame(
        9,
        Body::Takeover(Takeover { epoch: 2, group: 0 }),
        0,
        &mut out,
    )
    .unwrap();
    assert!(matches!(&out[0], SeqOut::Group(0, Body::Switch(s)) if s.epoch == 5));
}

#[test]
fn groups_it_does_not_serve_are_refused() {
    let mut n = backup(1, 2);
    let mut out = Vec::new();
    assert!(n
        .on_frame(
            9,
            Body::Takeover(Takeover { epoch: 1, group: 2 }),
            0,
            &mut out
        )
        .is_err());
    assert!(out.is_empty() && n.next_deadline().is_none());
}
