//! Moved sessions: moveSession hands a live session to another op-session, whose ops
//! then act as it; the previous owner's are answered SessionMoved and change nothing;
//! the owners are in the digest and in snapshots; and a ZooKeeper client's packet can
//! never carry a moveSession.

use super::*;
use crate::jute::{self, Decoded, JuteError, Shape};

/// Proxy sessions that take sessions over (not sessions themselves).
const X1: i64 = 0x900;
const X2: i64 = 0xa00;

fn move_to(session: i64, timeout_ms: i32) -> Request {
    Request::MoveSession {
        session,
        timeout_ms,
    }
}

/// S1 is live with two ephemerals (one under /p) and a persistent /p; S2 is live.
fn setup() -> T {
    let mut t = T::new();
    t.run(S1, Request::CreateSession { timeout_ms: 10_000 });
    t.run(S2, Request::CreateSession { timeout_ms: 10_000 });
    t.mk("/p", CreateMode::Persistent);
    t.run(S1, create("/e", b"", CreateMode::Ephemeral));
    t.run(S1, create("/p/e", b"", CreateMode::Ephemeral));
    t
}

#[test]
fn a_moved_session_keeps_its_ephemerals_and_its_new_owner_acts_as_it() {
    let mut t = setup();
    let before = t.tree.ephemerals(S1);
    let moved = t.run(X1, move_to(S1, 20_000));
    assert_eq!(moved.response, Ok(Response::Empty));
    assert_eq!(moved.zxid, t.zxid, "a write: it takes its zxid");
    assert_eq!(t.tree.ephemerals(S1), before);
    assert_eq!(t.tree.sessions(), vec![(S1, 20_000), (S2, 10_000)]);
    assert_eq!(t.tree.owners(), vec![(S1, X1)]);
    assert_eq!(t.tree.resolve_session(X1), Ok(S1));
    assert_eq!(t.tree.resolve_session(S1), Err(Code::SessionMoved));
    assert_eq!(t.tree.resolve_session(S2), Ok(S2));
    assert_eq!(t.tree.resolve_session(0x7777), Err(Code::SessionExpired));
    // The new owner's ephemeral belongs to S1; getEphemerals lists S1's.
    let made = t.run(X1, create("/p/f", b"", CreateMode::Ephemeral));
    match made.response {
        Ok(Response::Create { stat, .. }) => assert_eq!(stat.ephemeral_owner, S1),
        other => panic!("{other:?}"),
    }
    let listed = t.run(X1, Request::GetEphemerals { prefix: "/".into() });
    let want: Vec<String> = ["/e", "/p/e", "/p/f"].map(String::from).to_vec();
    assert_eq!(listed.response, Ok(Response::Ephemerals(want)));
    // Moving to the owner again only sets the timeout.
    assert_eq!(t.run(X1, move_to(S1, 30_000)).response, Ok(Response::Empty));
    assert_eq!(t.tree.owners(), vec![(S1, X1)]);
    assert_eq!(t.tree.sessions()[0], (S1, 30_000));
}

#[test]
fn the_old_owner_is_answered_session_moved_and_changes_nothing() {
    let mut t = setup();
    t.run(X1, move_to(S1, 10_000));
    let digest = t.tree.digest();
    let ops = [
        create("/new", b"", CreateMode::Persistent),
        create("/eph", b"", CreateMode::Ephemeral),
        set_data("/p", b"x", -1),
        delete("/e", -1),
        Request::Multi(vec![check("/p", -1)]),
        get_data("/p", false),
        Request::GetEphemerals { prefix: "/".into() },
        Request::CloseSession,
    ];
    for req in ops {
        let got = t.run(S1, req.clone());
        assert_eq!(got.response, Err(Code::SessionMoved), "{req:?}");
        assert!(got.triggers.is_empty());
        assert_eq!(t.tree.digest(), digest, "{req:?} changed the tree");
    }
    assert_eq!(t.tree.last_zxid(), t.zxid, "failed writes still take zxids");
    assert_eq!(t.tree.ephemerals(S1), vec!["/e".to_string(), "/p/e".into()]);
}

#[test]
fn the_new_owner_closes_the_session_and_its_ephemerals_go() {
    let mut t = setup();
    t.run(X1, move_to(S1, 10_000));
    let closed = t.run(X1, Request::CloseSession);
    assert_eq!(closed.response, Ok(Response::Empty));
    assert_eq!(t.tree.stat("/e"), None);
    assert_eq!(t.tree.stat("/p/e"), None);
    assert!(t.tree.stat("/p").is_some());
    assert_eq!(t.tree.sessions(), vec![(S2, 10_000)]);
    assert!(
        t.tree.owners().is_empty(),
        "the alias goes with the session"
    );
    assert_eq!(t.tree.resolve_session(X1), Err(Code::SessionExpired));
    assert_eq!(t.tree.resolve_session(S1), Err(Code::SessionExpired));
    assert_eq!(t.tree, {
        // The same tree as S1 closing itself, but for the zxid of the move.
        let mut u = setup();
        u.zxid += 1;
        u.run(S1, Request::CloseSession);
        u.tree
    });
}

#[test]
fn moving_a_dead_session_is_session_expired_and_changes_nothing() {
    let mut t = setup();
    let digest = t.tree.digest();
    let got = t.run(X1, move_to(0x4242, 10_000));
    assert_eq!(got.response, Err(Code::SessionExpired));
    t.run(S1, Request::CloseSession);
    let digest_closed = t.tree.digest();
    assert_ne!(digest, digest_closed);
    assert_eq!(
        t.run(X1, move_to(S1, 10_000)).response,
        Err(Code::SessionExpired)
    );
    assert_eq!(t.tree.digest(), digest_closed);
    assert!(t.tree.owners().is_empty());
}

#[test]
fn a_later_mover_takes_over_and_the_session_can_come_home() {
    let mut t = setup();
    t.run(X1, move_to(S1, 10_000));
    assert_eq!(t.run(X2, move_to(S1, 10_000)).response, Ok(Response::Empty));
    assert_eq!(t.tree.owners(), vec![(S1, X2)], "one alias per session");
    assert_eq!(t.tree.resolve_session(X1), Err(Code::SessionExpired));
    // The tree runs an unknown op-session as itself (the servers refuse it before):
    // it owns nothing, so its ephemeral create fails.
    assert_eq!(
        t.run(X1, create("/x1", b"", CreateMode::Ephemeral))
            .response,
        Err(Code::SessionExpired)
    );
    assert_eq!(t.tree.resolve_session(X2), Ok(S1));
    // An op-session that acts as one live session cannot take another.
    assert_eq!(
        t.run(X2, move_to(S2, 10_000)).response,
        Err(Code::BadArguments)
    );
    assert_eq!(
        t.run(S2, move_to(S1, 10_000)).response,
        Err(Code::BadArguments)
    );
    // S1's own id takes it back: no alias left.
    assert_eq!(t.run(S1, move_to(S1, 10_000)).response, Ok(Response::Empty));
    assert!(t.tree.owners().is_empty());
    assert_eq!(t.tree.resolve_session(S1), Ok(S1));
    assert_eq!(
        t.run(X2, Request::CloseSession).response,
        Ok(Response::Empty),
        "X2 is no session: its close changes nothing"
    );
    assert_eq!(t.tree.ephemerals(S1).len(), 2);
    // A session moved away can still take over another.
    t.run(X1, move_to(S2, 10_000));
    assert_eq!(t.run(S2, move_to(S1, 10_000)).response, Ok(Response::Empty));
    assert_eq!(t.tree.owners(), vec![(S1, S2), (S2, X1)]);
    assert_eq!(t.tree.resolve_session(S2), Ok(S1));
    assert_eq!(t.tree.resolve_session(X1), Ok(S2));
    assert_eq!(t.tree.resolve_session(S1), Err(Code::SessionMoved));
}

#[test]
fn owners_are_in_the_digest_and_in_snapshots() {
    let plain = setup();
    let mut a = setup();
    let mut b = setup();
    a.run(X1, move_to(S1, 10_000));
    b.run(X2, move_to(S1, 10_000));
    assert_ne!(a.tree.digest(), b.tree.digest());
    assert_eq!(
        a.tree.first_difference(&b.tree).as_deref(),
        Some("owner of session 0x100")
    );
    // Without moves the digest and the image are what they were.
    assert_eq!(plain.tree.snapshot()[4..8], 1u32.to_be_bytes());
    assert_eq!(plain.tree.shard_snapshot()[4..8], 2u32.to_be_bytes());
    for (image, version) in [(a.tree.snapshot(), 3u32), (a.tree.shard_snapshot(), 4)] {
        assert_eq!(image[4..8], version.to_be_bytes());
        let back = DataTree::restore(&image).expect("restores");
        assert_eq!(back, a.tree);
        assert_eq!(back.resolve_session(X1), Ok(S1));
        assert_eq!(back.digest(), a.tree.digest());
        for len in 0..image.len() {
            assert!(DataTree::restore(&image[..len]).is_err(), "cut at {len}");
        }
    }
    // Shards keep the owners through merge.
    let whole = crate::sharded::merge(&[a.tree.clone()]).expect("merges");
    assert_eq!(whole.owners(), vec![(S1, X1)]);
    assert!(crate::sharded::merge(&[a.tree.clone(), b.tree.clone()]).is_err());
}

#[test]
fn a_client_packet_cannot_carry_a_move() {
    let mut body = S1.to_be_bytes().to_vec();
    body.extend_from_slice(&5000i32.to_be_bytes());
    assert_eq!(
        jute::decode_request(crate::opcode::MOVE_SESSION, &body),
        Err(JuteError::UnknownOpcode(-20))
    );
    assert_eq!(
        jute::decode_logged_request(crate::opcode::MOVE_SESSION, &body),
        Ok(Decoded::Tree {
            request: move_to(S1, 5000),
            shape: Shape::CloseSession,
        })
    );
    assert!(jute::decode_logged_request(crate::opcode::MOVE_SESSION, &body[..11]).is_err());
    assert_eq!(Shape::for_request(&move_to(S1, 1)), None);
    assert_eq!(move_to(S1, 1).opcode(), -20);
    // A multi member either.
    let multi = Request::Multi(vec![move_to(S1, 1)]);
    assert!(jute::encode_request(1, &multi, &Shape::Multi(vec![Shape::CloseSession])).is_err());
}

#[test]
fn a_local_read_of_a_moved_session_is_session_moved() {
    let mut t = setup();
    t.run(X1, move_to(S1, 10_000));
    let req = get_data("/p", false);
    let shape = Shape::for_request(&req).expect("a read");
    let payload = bytes::Bytes::from(jute::encode_request(3, &req, &shape).expect("encodes"));
    let answer = |s| crate::local::answer(&t.tree, s, &payload[4..]).expect("a local read");
    let code_of = |b: bytes::Bytes| jute::split_reply(&b).expect("a header").0.err;
    assert_eq!(code_of(answer(S1)), Code::SessionMoved.code());
    assert_eq!(code_of(answer(X1)), 0);
    assert_eq!(code_of(answer(X2)), Code::SessionExpired.code());
}
