//! Session tests (over `harness::Net`): what the leader does with ops that fill its
//! budget, run ahead of their window, or belong to a session it does not know, and with a
//! registration that comes twice.

mod harness;

use harness::{cfg, op, session, Net, CLIENTS, TICK};
use mason_common::msg::{ClientOp, Register, ReplyStatus};
use mason_proxy::ReplicaConfig;

fn statuses(net: &Net, client: u64) -> Vec<(u64, i32)> {
    net.replies
        .iter()
        .filter(|(_, _, r)| r.session == session(client) && r.space_mask != u64::MAX)
        .map(|(_, _, r)| (r.client_seq, r.status))
        .collect()
}

/// Held-back ops that fill the leader's byte budget must not keep out the op they wait
/// for: it lets them go.
#[test]
fn held_ops_filling_the_budget_do_not_stall_their_session() {
    let (mut net, l) = Net::start(ReplicaConfig {
        max_queued_bytes: 3 * 64,
        ..cfg(1)
    });
    net.send(l, &[op(1, 2, 1), op(1, 3, 1), op(1, 4, 1)]);
    assert!(net.oks(1).is_empty(), "held for seq 1");
    net.send(l, &[op(1, 1, 1)]);
    net.advance(3 * TICK);
    let answered: Vec<u64> = net.oks(1).iter().map(|r| r.client_seq).collect();
    assert_eq!(answered, vec![1, 2, 3, 4]);
    net.check(l);
    net.agree_all();
}

/// An op at or beyond its `acked_below` plus the session's window is refused, so the
/// answers the group keeps (a backstop of twice the window) always hold every op its
/// client may still ask about: a lost answer can be asked for again.
#[test]
fn ops_beyond_the_window_are_refused_and_every_answer_in_it_is_kept() {
    let (mut net, l) = Net::start(cfg(1));
    let ops: Vec<ClientOp> = (1..=200)
        .map(|s| ClientOp {
            acked_below: 1,
            ..op(1, s, 1)
        })
        .collect();
    net.send(l, &ops);
    net.advance(3 * TICK);
    let got = statuses(&net, 1);
    let ok: Vec<u64> = got
        .iter()
        .filter(|x| x.1 == ReplyStatus::Ok as i32)
        .map(|x| x.0)
        .collect();
    let refused = got
        .iter()
        .filter(|x| x.1 == ReplyStatus::Invalid as i32)
        .count();
    assert_eq!(
        ok,
        (1..=64).collect::<Vec<_>>(),
        "a window of 64 from seq 1"
    );
    assert_eq!(refused, 200 - 64);
    let first = net.oks(1)[0].clone();
    // The answer of op 1 was lost on the way; its retry gets it back.
    net.send_on(
        l,
        9,
        ClientOp {
            acked_below: 1,
            ..op(1, 1, 1)
        },
    );
    let again: Vec<_> = net.replies.iter().filter(|x| x.1 == 9).collect();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].2, first);
    let report = net.check(l);
    assert_eq!(report.ops, 64);
    net.agree_all();
}

/// A registration sent twice (a retry on a new connection) opens one session, answered
/// on the newer connection.
#[test]
fn a_registration_sent_twice_opens_one_session() {
    let (mut net, l) = Net::start(cfg(1));
    let reg = |client_id, nonce| Register {
        group: 0,
        client_id,
        nonce,
        window: 8,
    };
    net.on(l, |rep, _, out| rep.on_register(20, reg(20, 5), out));
    net.on(l, |rep, _, out| rep.on_register(21, reg(20, 5), out));
    net.settle();
    net.advance(2 * TICK);
    net.on(l, |rep, _, out| rep.on_register(30, reg(30, 1), out));
    net.settle();
    net.advance(2 * TICK);
    let opened: Vec<(u64, u64)> = net
        .replies
        .iter()
        .filter(|(_, _, r)| r.space_mask == u64::MAX && r.status == ReplyStatus::Ok as i32)
        .map(|(_, conn, r)| (*conn, r.session))
        .collect();
    let next = session(CLIENTS + 1);
    assert_eq!(opened, vec![(21, next), (30, next + 1)], "ids are dense");
}

/// Ops of a session the group closed after an idle spell, or of another group's session,
/// are answered `UnknownSession`; an op of a session newer than what the leader applied
/// is answered `NotLeader` (the replica is behind, not the client).
#[test]
fn unknown_closed_and_future_sessions_are_told_apart() {
    let (mut net, l) = Net::start(ReplicaConfig {
        session_timeout_us: 20 * TICK,
        ..cfg(1)
    });
    net.send(l, &[op(1, 1, 1)]);
    assert_eq!(net.oks(1).len(), 1);
    for _ in 0..60 {
        net.send(l, &[]);
        net.advance(TICK);
    }
    net.replies.clear();
    net.send(l, &[op(1, 2, 1)]);
    let future = ClientOp {
        session: session(CLIENTS + 50),
        ..op(1, 1, 1)
    };
    let other_group = ClientOp {
        session: 2 << 40 | 3,
        ..op(1, 1, 1)
    };
    net.send_on(l, 40, future);
    net.send_on(l, 41, other_group);
    let by_conn = |c: u64| {
        net.replies
            .iter()
            .filter(|x| x.1 == c)
            .map(|x| x.2.status)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        statuses(&net, 1),
        vec![(2, ReplyStatus::UnknownSession as i32)],
        "closed for idleness"
    );
    assert_eq!(by_conn(40), vec![ReplyStatus::NotLeader as i32]);
    assert_eq!(by_conn(41), vec![ReplyStatus::UnknownSession as i32]);
    assert!(
        net.bound_ops(l, 1).len() == 1,
        "nothing more bound for the closed session"
    );
}
