//! The client's state machine driven by hand: sessions, re-sends, answers and failures.

use super::*;
use mason_common::msg::LocalReadReply;

const RT: u64 = 100_000;

const SESSION: u64 = 77;
/// The first registration nonce of client 7 (each client's nonces start apart).
const N1: u64 = (7 << 24) | 1;

fn core(target: CoreTarget) -> ClientCore {
    let cfg = CoreConfig {
        client_id: 7,
        target,
        retry_timeout_us: RT,
        window: 16,
    };
    ClientCore::new(cfg)
}

fn registered(nonce: u64, session: u64) -> Frame {
    Frame::new(Body::Registered(Registered {
        nonce,
        status: ReplyStatus::Ok as i32,
        leader_hint: 0,
        session,
    }))
}

/// A client of group 3 with its session open.
fn group() -> ClientCore {
    let mut c = core(CoreTarget::Group {
        group: 3,
        replicas: 3,
        first: 0,
    });
    let mut out = Vec::new();
    c.open(0, &mut out);
    assert!(matches!(
        &out[..],
        [ClientAction::Send { to: 0, frame: Frame { body: Some(Body::Register(r)) } }]
            if r.group == 3 && r.window == 16 && r.nonce == N1
    ));
    out.clear();
    c.on_frame(0, registered(N1, SESSION), 0, &mut out);
    assert!(out.is_empty());
    c
}

fn submit(c: &mut ClientCore, now: u64, out: &mut Vec<ClientAction>) -> u64 {
    c.submit(SpaceMask(0b101), Bytes::from_static(b"p"), false, now, out)
}

/// (to, seq, acked_below) of each ClientOp sent; drains `out`, which must hold only sends.
fn sent(out: &mut Vec<ClientAction>) -> Vec<(usize, u64, u64)> {
    out.drain(..)
        .map(|a| match a {
            ClientAction::Send {
                to,
                frame: Frame {
                    body: Some(Body::ClientOp(op)),
                },
            } => {
                assert_eq!((op.session, op.group, op.space_mask), (SESSION, 3, 0b101));
                (to, op.client_seq, op.acked_below)
            }
            other => panic!("expected a ClientOp send, got {other:?}"),
        })
        .collect()
}

fn done(out: &mut Vec<ClientAction>) -> Vec<(u64, Result<MultiSeq, ClientError>)> {
    out.drain(..)
        .map(|a| match a {
            ClientAction::Done { id, result } => (id, result),
            other => panic!("expected Done, got {other:?}"),
        })
        .collect()
}

fn reply(seq: u64, status: ReplyStatus, leader_hint: u32) -> Frame {
    Frame::new(Body::ClientReply(ClientReply {
        session: SESSION,
        client_seq: seq,
        status: status as i32,
        leader_hint,
        space_mask: 0b101,
        numbers: vec![seq * 10, seq * 10 + 1],
        result: Bytes::new(),
    }))
}

fn answer(seq: u64) -> (u64, Result<MultiSeq, ClientError>) {
    let m = MultiSeq {
        session: SESSION,
        seq,
        mask: SpaceMask(0b101),
        numbers: vec![seq * 10, seq * 10 + 1],
        result: Bytes::new(),
    };
    (seq, Ok(m))
}

#[test]
fn numbers_ops_and_acks_below_the_lowest_unanswered() {
    let (mut c, mut out) = (group(), Vec::new());
    assert_eq!([1, 2, 3].map(|_| submit(&mut c, 0, &mut out)), [1, 2, 3]);
    assert_eq!(sent(&mut out), [(0, 1, 1), (0, 2, 1), (0, 3, 1)]);
    c.on_frame(0, reply(1, ReplyStatus::Ok, 0), 5, &mut out);
    assert_eq!(done(&mut out), [answer(1)]);
    assert_eq!(submit(&mut c, 6, &mut out), 4);
    assert_eq!(sent(&mut out), [(0, 4, 2)]);
    for s in [3, 2, 4] {
        c.on_frame(0, reply(s, ReplyStatus::Ok, 0), 7, &mut out);
    }
    assert_eq!(done(&mut out), [answer(3), answer(2), answer(4)]);
    assert_eq!(c.outstanding(), 0);
    assert_eq!(submit(&mut c, 8, &mut out), 5);
    assert_eq!(sent(&mut out), [(0, 5, 5)]);
    assert_eq!((c.current(), c.retransmissions(), c.client_id()), (0, 0, 7));
}

#[test]
fn not_leader_with_a_hint_moves_there_and_resends_everything_once() {
    let (mut c, mut out) = (group(), Vec::new());
    submit(&mut c, 0, &mut out);
    submit(&mut c, 0, &mut out);
    out.clear();
    c.on_frame(0, reply(1, ReplyStatus::NotLeader, 3), 10, &mut out);
    assert_eq!(c.current(), 2);
    assert_eq!(sent(&mut out), [(2, 1, 1), (2, 2, 1)]);
    assert_eq!(c.retransmissions(), 2);
    // The old replica's answer to the other op changes nothing.
    c.on_frame(0, reply(2, ReplyStatus::NotLeader, 3), 11, &mut out);
    assert!(out.is_empty());
    assert_eq!((c.current(), c.retransmissions()), (2, 2));
}

#[test]
fn not_leader_without_a_hint_backs_off_then_resends_on_tick() {
    let (mut c, mut out) = (group(), Vec::new());
    submit(&mut c, 0, &mut out);
    out.clear();
    // A hint naming the replica itself is no hint.
    c.on_frame(0, reply(1, ReplyStatus::NotLeader, 1), 1_000, &mut out);
    assert_eq!(c.current(), 1);
    assert!(out.is_empty());
    assert_eq!(submit(&mut c, 2_000, &mut out), 2);
    c.tick(1_000 + NOT_LEADER_BACKOFF_US - 1, &mut out);
    assert!(out.is_empty(), "nothing goes out during the back-off");
    c.tick(1_000 + NOT_LEADER_BACKOFF_US, &mut out);
    assert_eq!(sent(&mut out), [(1, 1, 1), (1, 2, 1)]);
    assert_eq!(c.retransmissions(), 1, "op 2 had never been sent");
    c.tick(1_000 + NOT_LEADER_BACKOFF_US + 1, &mut out);
    assert!(out.is_empty());
}

#[test]
fn not_leader_from_another_replica_is_ignored() {
    let (mut c, mut out) = (group(), Vec::new());
    submit(&mut c, 0, &mut out);
    out.clear();
    c.on_frame(1, reply(1, ReplyStatus::NotLeader, 3), 10, &mut out);
    c.on_frame(2, reply(1, ReplyStatus::NotLeader, 0), 10, &mut out);
    assert!(out.is_empty());
    assert_eq!(
        (c.current(), c.retransmissions(), c.outstanding()),
        (0, 0, 1)
    );
}

#[test]
fn timeout_moves_on_and_resends() {
    let (mut c, mut out) = (group(), Vec::new());
    submit(&mut c, 0, &mut out);
    out.clear();
    c.tick(RT - 1, &mut out);
    assert!(out.is_empty());
    c.tick(RT, &mut out);
    assert_eq!(sent(&mut out), [(1, 1, 1)]);
    c.tick(2 * RT - 1, &mut out);
    assert!(out.is_empty(), "the re-send restarted the clock");
    c.tick(2 * RT, &mut out);
    c.tick(3 * RT, &mut out);
    assert_eq!(sent(&mut out), [(2, 1, 1), (0, 1, 1)]);
    assert_eq!((c.current(), c.retransmissions()), (0, 3));
}

#[test]
fn unreachable_replica_moves_on_after_a_back_off() {
    let (mut c, mut out) = (group(), Vec::new());
    submit(&mut c, 0, &mut out);
    out.clear();
    c.on_unreachable(1, 5, &mut out);
    assert_eq!(c.current(), 0, "only the current replica counts");
    c.on_unreachable(0, 5, &mut out);
    assert_eq!(c.current(), 1);
    c.tick(5 + UNREACHABLE_BACKOFF_US - 1, &mut out);
    assert!(out.is_empty());
    // A submit once the back-off has passed re-sends too, before its own op.
    assert_eq!(submit(&mut c, 5 + UNREACHABLE_BACKOFF_US, &mut out), 2);
    assert_eq!(sent(&mut out), [(1, 1, 1), (1, 2, 1)]);
    assert_eq!(c.retransmissions(), 1);
}

#[test]
fn duplicate_answers_finish_an_op_once() {
    let (mut c, mut out) = (group(), Vec::new());
    submit(&mut c, 0, &mut out);
    out.clear();
    c.on_frame(2, reply(1, ReplyStatus::Ok, 0), 1, &mut out);
    c.on_frame(0, reply(1, ReplyStatus::Ok, 0), 2, &mut out);
    c.on_frame(0, reply(9, ReplyStatus::Ok, 0), 2, &mut out);
    assert_eq!(done(&mut out), [answer(1)]);
    assert_eq!(c.outstanding(), 0);
    c.tick(10 * RT, &mut out);
    assert!(out.is_empty(), "nothing is left to time out");
}

#[test]
fn invalid_finishes_with_an_error() {
    let (mut c, mut out) = (group(), Vec::new());
    submit(&mut c, 0, &mut out);
    out.clear();
    c.on_frame(0, reply(1, ReplyStatus::Invalid, 0), 1, &mut out);
    assert_eq!(done(&mut out), [(1, Err(ClientError::Invalid))]);
    assert_eq!(c.outstanding(), 0);
}

#[test]
fn direct_asks_the_sequencer_for_one_number_per_space() {
    let (mut c, mut out) = (core(CoreTarget::Direct { session: 99 }), Vec::new());
    assert_eq!(submit(&mut c, 0, &mut out), 1);
    let want = GetSeq {
        epoch: 0,
        group: 0,
        batch_id: 1,
        space_mask: 0b101,
        counts: vec![1, 1],
        committed: 0,
        session: 99,
    };
    let expect_get_seq = |out: &mut Vec<ClientAction>| match out.pop() {
        Some(ClientAction::Send { to: 0, frame }) if out.is_empty() => {
            assert_eq!(frame, Frame::new(Body::GetSeq(want.clone())))
        }
        other => panic!("expected one GetSeq to 0, got {other:?} and {out:?}"),
    };
    expect_get_seq(&mut out);
    c.tick(RT, &mut out);
    expect_get_seq(&mut out);
    assert_eq!((c.current(), c.retransmissions()), (0, 1));
    let seq_reply = |batch_id, status: SeqStatus, session: u64| {
        let bases = vec![40, 41];
        let r = SeqReply {
            epoch: 0,
            group: 0,
            batch_id,
            status: status as i32,
            repeat: false,
            space_mask: 0b101,
            bases,
            counts: vec![1, 1],
            watermarks: Vec::new(),
            session,
        };
        Frame::new(Body::SeqReply(Box::new(r)))
    };
    // An answer that names another session (a client that shared this connection before)
    // is not this one's.
    c.on_frame(0, seq_reply(1, SeqStatus::Ok, 7), RT + 1, &mut out);
    assert!(out.is_empty(), "{out:?}");
    // Its own (the session echoed), then a duplicate from a sequencer that echoes none.
    c.on_frame(0, seq_reply(1, SeqStatus::Ok, 99), RT + 1, &mut out);
    c.on_frame(0, seq_reply(1, SeqStatus::Ok, 0), RT + 1, &mut out);
    let m = MultiSeq {
        session: 99,
        seq: 1,
        mask: SpaceMask(0b101),
        numbers: vec![40, 41],
        result: Bytes::new(),
    };
    assert_eq!(done(&mut out), [(1, Ok(m))]);
    assert_eq!(submit(&mut c, RT + 2, &mut out), 2);
    match out.pop() {
        Some(ClientAction::Send {
            frame: Frame {
                body: Some(Body::GetSeq(g)),
            },
            ..
        }) => {
            assert_eq!(g.committed, 1, "the client holds the answer to op 1")
        }
        other => panic!("{other:?}"),
    }
    c.on_frame(0, seq_reply(2, SeqStatus::Invalid, 99), RT + 3, &mut out);
    assert_eq!(done(&mut out), [(2, Err(ClientError::Invalid))]);
}

/// Ops submitted before the session is open wait for it, then go out numbered 1, 2.
#[test]
fn ops_wait_for_the_session_and_a_lost_registration_is_retried_elsewhere() {
    let mut c = core(CoreTarget::Group {
        group: 3,
        replicas: 3,
        first: 0,
    });
    let mut out = Vec::new();
    assert_eq!([1, 2].map(|_| submit(&mut c, 0, &mut out)), [1, 2]);
    assert_eq!(out.len(), 1, "one registration, no op yet");
    out.clear();
    c.tick(RT, &mut out);
    assert!(matches!(
        &out[..],
        [ClientAction::Send { to: 1, frame: Frame { body: Some(Body::Register(r)) } }] if r.nonce == N1
    ));
    out.clear();
    // An answer to another attempt is not this one's.
    c.on_frame(1, registered(9, 5), RT, &mut out);
    assert!(out.is_empty() && c.session().is_none());
    c.on_frame(1, registered(N1, SESSION), RT, &mut out);
    assert_eq!(sent(&mut out), [(1, 1, 1), (1, 2, 1)]);
}

/// The group forgot the session: what is in flight fails (it may have been bound), a
/// new session opens, and later ops are numbered afresh in it.
#[test]
fn an_expired_session_fails_what_is_in_flight_and_opens_another() {
    let (mut c, mut out) = (group(), Vec::new());
    submit(&mut c, 0, &mut out);
    submit(&mut c, 0, &mut out);
    out.clear();
    c.on_frame(0, reply(1, ReplyStatus::SessionExpired, 0), 5, &mut out);
    let failed: Vec<(u64, bool)> = out
        .iter()
        .filter_map(|a| match a {
            ClientAction::Done { id, result } => {
                Some((*id, *result == Err(ClientError::SessionExpired)))
            }
            _ => None,
        })
        .collect();
    assert_eq!(failed, vec![(1, true), (2, true)]);
    assert!(out.iter().any(|a| matches!(
        a,
        ClientAction::Send { frame: Frame { body: Some(Body::Register(r)) }, .. } if r.nonce == N1 + 1
    )));
    out.clear();
    assert_eq!(submit(&mut c, 6, &mut out), 3);
    assert!(out.is_empty(), "waits for the new session");
    c.on_frame(0, registered(N1 + 1, SESSION), 7, &mut out);
    assert_eq!(sent(&mut out), [(0, 1, 1)]);
    assert_eq!(c.sessions_lost(), 1);
}

/// Ops beyond the lowest unanswered seq plus the window wait, in order, and go as the
/// lowest is answered (an answer further up releases nothing).
#[test]
fn ops_beyond_the_window_wait_for_the_lowest_answer() {
    let (mut c, mut out) = (group(), Vec::new());
    for _ in 0..20 {
        submit(&mut c, 0, &mut out);
    }
    let seqs: Vec<u64> = sent(&mut out).iter().map(|s| s.1).collect();
    assert_eq!(seqs, (1..=16).collect::<Vec<_>>(), "a window of 16");
    assert_eq!(c.outstanding(), 20);
    c.on_frame(0, reply(2, ReplyStatus::Ok, 0), 1, &mut out);
    assert_eq!(done(&mut out).len(), 1);
    c.on_frame(0, reply(1, ReplyStatus::Ok, 0), 2, &mut out);
    let (finished, sends): (Vec<_>, Vec<_>) = out
        .drain(..)
        .partition(|a| matches!(a, ClientAction::Done { .. }));
    assert_eq!(finished.len(), 1);
    let mut sends = sends;
    assert_eq!(sent(&mut sends), [(0, 17, 3), (0, 18, 3)]);
}

/// A replica that does not know the session (the group closed it while the client was
/// idle) batched none of what it was sent: an op that went only there, once, goes again
/// under the new session; one that went elsewhere too fails (it may have been bound).
#[test]
fn an_unknown_session_sends_surely_unbound_ops_again() {
    let (mut c, mut out) = (group(), Vec::new());
    submit(&mut c, 0, &mut out);
    c.tick(RT, &mut out); // op 1 goes to replica 1 too
    assert_eq!(sent(&mut out), [(0, 1, 1), (1, 1, 1)]);
    submit(&mut c, RT, &mut out);
    assert_eq!(sent(&mut out), [(1, 2, 1)]);
    c.on_frame(
        1,
        reply(2, ReplyStatus::UnknownSession, 0),
        RT + 1,
        &mut out,
    );
    let mut failed = Vec::new();
    let mut registers = 0;
    for a in out.drain(..) {
        match a {
            ClientAction::Done { id, result } => failed.push((id, result)),
            ClientAction::Send {
                frame: Frame {
                    body: Some(Body::Register(r)),
                },
                ..
            } => registers += r.nonce,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(failed, vec![(1, Err(ClientError::SessionExpired))]);
    assert_eq!(registers, N1 + 1, "a new registration");
    assert_eq!(c.outstanding(), 1, "op 2 waits for the new session");
    c.on_frame(1, registered(N1 + 1, SESSION), RT + 2, &mut out);
    assert_eq!(
        sent(&mut out),
        [(1, 1, 1)],
        "op 2 is seq 1 of the new session"
    );
    c.on_frame(1, reply(1, ReplyStatus::Ok, 0), RT + 3, &mut out);
    assert_eq!(done(&mut out)[0].0, 2);
}

fn read_reply(id: u64, status: ReplyStatus, leader_hint: u32) -> Frame {
    Frame::new(Body::LocalReadReply(LocalReadReply {
        session: SESSION,
        id,
        status: status as i32,
        leader_hint,
        result: Bytes::from_static(b"reply"),
        space: 2,
        pos: 41,
    }))
}

/// (to, id, min_pos) of each LocalRead sent; drains `out`, which must hold only those.
fn reads_sent(out: &mut Vec<ClientAction>) -> Vec<(usize, u64, u64)> {
    out.drain(..)
        .map(|a| match a {
            ClientAction::Send {
                to,
                frame: Frame {
                    body: Some(Body::LocalRead(r)),
                },
            } => {
                assert_eq!((r.session, r.group), (SESSION, 3));
                (to, r.id, r.min_pos)
            }
            other => panic!("expected a LocalRead send, got {other:?}"),
        })
        .collect()
}

/// A local read takes no seq, follows the leader like an op, is re-sent on a timeout,
/// and finishes with the answering server's space and position.
#[test]
fn a_local_read_follows_the_leader_and_finishes_with_its_position() {
    let mut c = group();
    let mut out = Vec::new();
    let id = c.submit_read(Bytes::from_static(b"get"), 9, 0, &mut out);
    assert_eq!(reads_sent(&mut out), vec![(0, id, 9)]);
    c.on_frame(0, read_reply(id, ReplyStatus::NotLeader, 3), 10, &mut out);
    assert_eq!(
        reads_sent(&mut out),
        vec![(2, id, 9)],
        "to the leader named"
    );
    c.tick(10 + RT, &mut out);
    let again = reads_sent(&mut out);
    assert_eq!(again, vec![(0, id, 9)], "a timeout moves it on");
    // An op numbered meanwhile still starts at seq 1: reads take none.
    let op = submit(&mut c, 20 + RT, &mut out);
    assert_eq!(sent(&mut out), vec![(0, 1, 1)]);
    c.on_frame(0, read_reply(id, ReplyStatus::Ok, 0), 30 + RT, &mut out);
    let d = done(&mut out);
    assert_eq!(d.len(), 1);
    let m = d[0].1.as_ref().expect("answered");
    assert_eq!(
        (d[0].0, m.seq, m.mask, &m.numbers[..]),
        (id, 0, SpaceMask(0b100), &[41][..])
    );
    assert_eq!(c.outstanding(), 1, "the op {op} waits");
}

/// Reads belong to their session: when the group says it is gone, they fail with it.
#[test]
fn a_local_read_fails_with_its_session() {
    let mut c = group();
    let mut out = Vec::new();
    let id = c.submit_read(Bytes::from_static(b"get"), 0, 0, &mut out);
    out.clear();
    c.on_frame(
        0,
        read_reply(id, ReplyStatus::SessionExpired, 0),
        5,
        &mut out,
    );
    let failed: Vec<_> = out
        .iter()
        .filter_map(|a| match a {
            ClientAction::Done { id, result } => Some((*id, result.as_ref().err())),
            _ => None,
        })
        .collect();
    assert_eq!(failed, vec![(id, Some(&ClientError::SessionExpired))]);
    assert_eq!(c.outstanding(), 0);
}
