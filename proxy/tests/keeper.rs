//! RSMKeeper over the group harness: three replicas in keeper mode apply ZooKeeper
//! requests to their trees (no sequencer), the leader answers with ZooKeeper's replies, a
//! retried op is answered again without being applied again, a new leader goes on from
//! the same tree, and every replica ends with the same tree.

mod harness;

use bytes::Bytes;
use harness::{cfg, op, Net, CLIENTS, N, TICK};
use mason_common::msg::{ClientOp, LocalRead, Register, ReplyStatus};
use mason_common::zkmsg::{ZkWatchFeed, ZkWatchPoll};
use mason_proxy::ReplicaConfig;
use mason_zk::jute::{self, RequestHeader, Shape, Writer};
use mason_zk::{opcode, Acl, Code, CreateMode, Request, Response};

fn keeper() -> ReplicaConfig {
    ReplicaConfig {
        keeper: true,
        wall_base_ms: 1_700_000_000_000,
        ..cfg(1)
    }
}

fn zk_op(client: u64, seq: u64, req: &Request) -> ClientOp {
    let shape = Shape::for_request(req).expect("a tree request");
    let framed = jute::encode_request(seq as i32, req, &shape).expect("encodes");
    ClientOp {
        payload: Bytes::from(framed).slice(4..),
        acked_below: seq,
        ..op(client, seq, 1)
    }
}

fn open_session(client: u64, seq: u64) -> ClientOp {
    open_session_for(client, seq, 10_000)
}

fn open_session_for(client: u64, seq: u64, timeout_ms: i32) -> ClientOp {
    let mut w = Writer::new();
    RequestHeader {
        xid: seq as i32,
        op: opcode::CREATE_SESSION,
    }
    .write(&mut w);
    w.write_i32(timeout_ms);
    ClientOp {
        payload: Bytes::from(w.into_inner()),
        acked_below: seq,
        ..op(client, seq, 1)
    }
}

/// The reply to `client`'s op `seq`: (zxid, result).
fn reply(net: &Net, client: u64, seq: u64, req: &Request) -> (i64, Result<Response, Code>) {
    let r = net
        .oks(client)
        .into_iter()
        .rev()
        .find(|r| r.client_seq == seq)
        .unwrap_or_else(|| panic!("no answer to op {seq}"));
    let (h, body) = jute::split_reply(&r.result).expect("a reply header");
    assert_eq!(h.xid, seq as i32);
    let shape = Shape::for_request(req).expect("a tree request");
    let result = jute::decode_response(&shape, h.err, body).expect("a reply body");
    (h.zxid, result)
}

fn create(path: &str, mode: CreateMode) -> Request {
    Request::Create {
        path: path.into(),
        data: Bytes::from_static(b"v0"),
        acl: Acl::open_unsafe(),
        mode,
    }
}

fn set(path: &str, version: i32) -> Request {
    Request::SetData {
        path: path.into(),
        data: Bytes::from_static(b"v1"),
        version,
    }
}

fn get(path: &str) -> Request {
    Request::GetData {
        path: path.into(),
        watch: false,
    }
}

fn version_of(r: &Result<Response, Code>) -> i32 {
    match r {
        Ok(Response::Stat(s)) | Ok(Response::Data { stat: s, .. }) => s.version,
        other => panic!("no Stat in {other:?}"),
    }
}

#[test]
fn a_keeper_group_applies_requests_once_and_its_replicas_agree() {
    let (mut net, l) = Net::start(keeper());
    let ops = [
        create("/a", CreateMode::Persistent),
        create("/a/e", CreateMode::Ephemeral),
        set("/a", -1),
        get("/a"),
        set("/a", 7),
        create("/missing/x", CreateMode::Persistent),
    ];
    net.send(l, &[open_session(1, 1)]);
    for (i, req) in ops.iter().enumerate() {
        net.send(l, &[zk_op(1, i as u64 + 2, req)]);
        if i == 2 {
            // A retry of the setData on a new connection: the same reply, not a second
            // write (the getData after it sees version 1).
            let before = net.oks(1).len();
            net.send_on(l, 9, zk_op(1, 4, req));
            assert_eq!(net.oks(1).len(), before + 1);
            let both: Vec<&Bytes> = net
                .oks(1)
                .into_iter()
                .filter(|r| r.client_seq == 4)
                .map(|r| &r.result)
                .collect();
            assert!(both.len() == 2 && both[0] == both[1]);
        }
    }
    net.advance(3 * TICK);
    let got: Vec<(i64, Result<Response, Code>)> = ops
        .iter()
        .enumerate()
        .map(|(i, req)| reply(&net, 1, i as u64 + 2, req))
        .collect();
    assert!(matches!(&got[0].1, Ok(Response::Create { path, .. }) if path == "/a"));
    assert!(
        matches!(&got[1].1, Ok(Response::Create { stat, .. }) if stat.ephemeral_owner == harness::session(1) as i64)
    );
    assert_eq!(version_of(&got[2].1), 1);
    assert_eq!(
        version_of(&got[3].1),
        1,
        "the read sees the write before it"
    );
    assert_eq!(got[4].1, Err(Code::BadVersion));
    assert_eq!(got[5].1, Err(Code::NoNode));
    // One zxid per write, failed ones too; a read reports the last one.
    let zxids: Vec<i64> = got.iter().map(|g| g.0).collect();
    assert_eq!(zxids, vec![2, 3, 4, 4, 5, 6], "zxid 1 opened the session");

    // The leader is lost; the next one goes on from the same tree.
    net.cut[l] = true;
    let new = net.elect();
    assert_ne!(new, l);
    net.send(new, &[zk_op(1, 8, &get("/a"))]);
    net.advance(3 * TICK);
    assert_eq!(
        version_of(&reply(&net, 1, 8, &get("/a")).1),
        1,
        "written once"
    );
    net.send(new, &[zk_op(1, 9, &Request::CloseSession)]);
    net.advance(3 * TICK);
    net.cut[l] = false;
    net.advance(30 * TICK);
    let trees: Vec<_> = (0..N)
        .map(|r| net.reps[r].tree().expect("a tree"))
        .collect();
    for t in &trees[1..] {
        assert_eq!(trees[0].first_difference(t), None);
        assert_eq!(trees[0].digest(), t.digest());
    }
    assert!(
        trees[0].stat("/a/e").is_none(),
        "the ephemeral went with its session"
    );
    assert_eq!(trees[0].stat("/a").map(|s| s.version), Some(1));
    assert!(trees[0]
        .stat("/a")
        .is_some_and(|s| s.ctime >= 1_700_000_000_000));
}

/// A client that goes silent past the session timeout: the group closes its session
/// through the log, and every replica deletes its ephemerals at that point, while another
/// client's session (kept busy) and persistent znodes stay.
#[test]
fn an_idle_session_expires_with_its_ephemerals_on_every_replica() {
    let (mut net, l) = Net::start(ReplicaConfig {
        session_timeout_us: 20 * TICK,
        ..keeper()
    });
    net.send(l, &[open_session(1, 1), open_session(2, 1)]);
    net.send(l, &[zk_op(1, 2, &create("/p", CreateMode::Persistent))]);
    net.send(l, &[zk_op(2, 2, &create("/p/e2", CreateMode::Ephemeral))]);
    net.send(l, &[zk_op(1, 3, &create("/e1", CreateMode::Ephemeral))]);
    assert!(reply(&net, 2, 2, &create("/p/e2", CreateMode::Ephemeral))
        .1
        .is_ok());
    // Client 1 keeps its session alive; client 2 says nothing.
    for i in 0..40u64 {
        net.send(l, &[zk_op(1, 4 + i, &get("/p"))]);
        net.advance(2 * TICK);
    }
    net.agree_all();
    for r in 0..N {
        let t = net.reps[r].tree().expect("a tree");
        assert!(
            t.stat("/p/e2").is_none(),
            "replica {r}: expired ephemeral still there"
        );
        assert!(
            t.stat("/e1").is_some(),
            "replica {r}: the live session's ephemeral went"
        );
        assert!(t.stat("/p").is_some());
        assert!(!t
            .sessions()
            .iter()
            .any(|(s, _)| *s == harness::session(2) as i64));
    }
    // Client 2 comes back under a new client session (its old one is gone) and writes
    // without opening a ZooKeeper session: nothing of it is applied.
    let reg = Register {
        group: 0,
        client_id: 2,
        nonce: 7,
        window: 8,
    };
    net.on(l, |rep, _, out| rep.on_register(2, reg, out));
    net.settle();
    net.advance(2 * TICK);
    let fresh = CLIENTS + 1; // the group's next session
    net.send(l, &[zk_op(fresh, 1, &set("/p", -1))]);
    net.advance(3 * TICK);
    assert_eq!(
        reply(&net, fresh, 1, &set("/p", -1)).1,
        Err(Code::SessionExpired)
    );
    net.agree_all();
    let t0 = net.reps[0].tree().expect("a tree");
    assert_eq!(t0.stat("/p").map(|s| s.version), Some(0), "nothing applied");
    for r in 1..N {
        assert_eq!(net.reps[r].tree().map(|t| t.digest()), Some(t0.digest()));
    }
}

fn local_read(client: u64, id: u64, req: &Request) -> LocalRead {
    let shape = Shape::for_request(req).expect("a tree request");
    let framed = jute::encode_request(id as i32, req, &shape).expect("encodes");
    LocalRead {
        session: harness::session(client),
        group: 0,
        id,
        payload: Bytes::from(framed).slice(4..),
        min_pos: 0,
    }
}

/// Sends a local read to replica `r` on connection `conn` and lets the net settle.
fn read_at(net: &mut Net, r: usize, conn: u64, read: LocalRead) {
    net.on(r, |rep, _, out| rep.on_local_read(conn, read, out));
    net.settle();
}

/// The answers to local read `id`: (replica, status, the reply's version).
fn read_answers(net: &Net, id: u64) -> Vec<(usize, ReplyStatus, Option<i32>)> {
    net.read_replies
        .iter()
        .filter(|(_, _, a)| a.id == id)
        .map(|(r, _, a)| {
            let version = jute::split_reply(&a.result).ok().and_then(|(h, body)| {
                jute::decode_response(&Shape::GetData, h.err, body)
                    .ok()
                    .and_then(|x| x.ok())
                    .map(|resp| version_of(&Ok(resp)))
            });
            (
                *r,
                ReplyStatus::try_from(a.status).expect("a status"),
                version,
            )
        })
        .collect()
}

/// `--zk-reads local` on RSMKeeper: the leader answers a read of one znode without a log
/// entry, after a ReadIndex round, so it sees every write committed before it came;
/// followers send it to the leader; a watch, a write or a stranger's session is refused.
#[test]
fn a_local_read_is_answered_by_the_leader_after_a_read_index_round() {
    let (mut net, l) = Net::start(keeper());
    net.send(l, &[open_session(1, 1)]);
    net.send(l, &[zk_op(1, 2, &create("/a", CreateMode::Persistent))]);
    net.send(l, &[zk_op(1, 3, &set("/a", -1))]);
    net.advance(2 * TICK);
    let entries = net.reps[l].last_batch_id();
    read_at(&mut net, l, 1, local_read(1, 100, &get("/a")));
    net.advance(2 * TICK);
    assert_eq!(read_answers(&net, 100), vec![(l, ReplyStatus::Ok, Some(1))]);
    assert_eq!(
        net.reps[l].last_batch_id(),
        entries,
        "no log entry for a read"
    );

    let f = (l + 1) % N;
    read_at(&mut net, f, 1, local_read(1, 101, &get("/a")));
    let answers = net.read_replies.iter().find(|(_, _, a)| a.id == 101);
    assert!(
        answers
            .is_some_and(|(_, _, a)| a.status == ReplyStatus::NotLeader as i32
                && a.leader_hint == l as u32 + 1),
        "a follower sends the read to the leader"
    );

    let watched = Request::GetData {
        path: "/a".into(),
        watch: true,
    };
    read_at(&mut net, l, 1, local_read(1, 102, &watched));
    read_at(&mut net, l, 1, local_read(1, 103, &set("/a", -1)));
    let mut stranger = local_read(1, 104, &get("/a"));
    stranger.session = harness::session(1) + 999;
    read_at(&mut net, l, 1, stranger);
    net.advance(2 * TICK);
    let status = |id| read_answers(&net, id).first().map(|a| a.1);
    assert_eq!(
        status(102),
        Some(ReplyStatus::Invalid),
        "a watch goes through the log"
    );
    assert_eq!(
        status(103),
        Some(ReplyStatus::Invalid),
        "a write is no read"
    );
    assert_eq!(status(104), Some(ReplyStatus::UnknownSession));
}

/// A leader cut off from its peers cannot finish a ReadIndex round, so it answers no
/// local read: another leader may have taken writes meanwhile. Run with the mutant that
/// skips the round, the cut-off leader answers at once, with what may be stale; so the
/// check can fail.
fn cut_off_leader_answers(
    mutant: Option<mason_proxy::Mutant>,
) -> Vec<(usize, ReplyStatus, Option<i32>)> {
    let (mut net, l) = Net::start(ReplicaConfig { mutant, ..keeper() });
    net.send(l, &[open_session(1, 1)]);
    net.send(l, &[zk_op(1, 2, &create("/a", CreateMode::Persistent))]);
    net.advance(2 * TICK);
    net.cut[l] = true;
    read_at(&mut net, l, 1, local_read(1, 200, &get("/a")));
    let new = net.elect();
    net.send(new, &[zk_op(1, 3, &set("/a", -1))]);
    net.advance(2 * TICK);
    assert_eq!(version_of(&reply(&net, 1, 3, &set("/a", -1)).1), 1);
    net.advance(30 * TICK);
    read_answers(&net, 200)
}

#[test]
fn a_cut_off_leader_answers_no_local_read() {
    let answers = cut_off_leader_answers(None);
    assert!(
        answers.iter().all(|a| a.1 != ReplyStatus::Ok),
        "a cut-off leader answered a read: {answers:?}"
    );
    let broken = cut_off_leader_answers(Some(mason_proxy::Mutant::ReadWithoutIndex));
    assert!(
        broken
            .iter()
            .any(|a| a.1 == ReplyStatus::Ok && a.2 == Some(0)),
        "the mutant answers from the cut-off leader's stale tree: {broken:?}"
    );
}

/// A session expires after the timeout its createSession asked for (negotiated as
/// ZooKeeper does: at least 4 s, at most the group's), not the group's own.
#[test]
fn a_session_expires_after_the_timeout_it_asked_for() {
    let (mut net, l) = Net::start(ReplicaConfig {
        session_timeout_us: 60_000_000,
        ..keeper()
    });
    // Client 1 asks for 1 s (it gets 4 s); client 2 for 30 s.
    net.send(
        l,
        &[
            open_session_for(1, 1, 1_000),
            open_session_for(2, 1, 30_000),
        ],
    );
    net.send(l, &[zk_op(1, 2, &create("/e1", CreateMode::Ephemeral))]);
    net.send(l, &[zk_op(2, 2, &create("/e2", CreateMode::Ephemeral))]);
    net.advance(3_000_000);
    let t = net.reps[l].tree().expect("a tree");
    assert!(t.stat("/e1").is_some(), "not before the 4 s it was granted");
    net.advance(2_500_000);
    net.agree_all();
    for r in 0..N {
        let t = net.reps[r].tree().expect("a tree");
        assert!(t.stat("/e1").is_none(), "replica {r}: expired after 4 s");
        assert!(t.stat("/e2").is_some(), "replica {r}: 30 s not over");
    }
}

fn watch_poll(after: u64, wait_ms: u32) -> ZkWatchPoll {
    ZkWatchPoll {
        shard: 0,
        after,
        wait_ms,
        fresh: false,
    }
}

/// (zxid, event, path) of each trigger of a feed.
fn fired(f: &ZkWatchFeed) -> Vec<(i64, i32, String)> {
    f.triggers
        .iter()
        .map(|t| (t.zxid, t.event, t.path.clone()))
        .collect()
}

/// The watch feed of an RSMKeeper group: every replica feeds the triggers ZooKeeper
/// fires for each write, at the write's zxid, in zxid order (a read and a failed write
/// fire nothing), and an idle session's expiry its ephemerals' deletions; a held poll is
/// answered by the next write, or empty at its deadline; a closed connection's goes.
#[test]
fn every_replica_feeds_the_triggers_zookeeper_fires() {
    use mason_zk::EventType::*;
    let (mut net, l) = Net::start(ReplicaConfig {
        session_timeout_us: 20 * TICK,
        ..keeper()
    });
    let ops = [
        create("/a", CreateMode::Persistent),
        set("/a", -1),
        get("/a"),
        set("/a", 7),
    ];
    net.send(l, &[open_session(1, 1), open_session(2, 1)]);
    net.send(l, &[zk_op(1, 2, &ops[0])]);
    let e = create("/a/e", CreateMode::Ephemeral);
    net.send(l, &[zk_op(2, 2, &e)]);
    for (i, req) in ops.iter().enumerate().skip(1) {
        net.send(l, &[zk_op(1, i as u64 + 2, req)]);
    }
    net.advance(3 * TICK);
    let (za, ze, zs) = (
        reply(&net, 1, 2, &ops[0]).0,
        reply(&net, 2, 2, &e).0,
        reply(&net, 1, 3, &ops[1]).0,
    );
    assert!(reply(&net, 1, 5, &ops[3]).1.is_err(), "a bad version");
    let want = vec![
        (za, NodeCreated.code(), "/a".to_string()),
        (za, NodeChildrenChanged.code(), "/".to_string()),
        (ze, NodeCreated.code(), "/a/e".to_string()),
        (ze, NodeChildrenChanged.code(), "/a".to_string()),
        (zs, NodeDataChanged.code(), "/a".to_string()),
    ];
    assert!(za < ze && ze < zs);
    for r in 0..N {
        net.on(r, |rep, _, _| rep.on_watch_poll(5, watch_poll(0, 0)));
        let feeds = net.reps[r].take_feeds();
        assert_eq!(feeds.len(), 1, "replica {r}");
        let (conn, f) = &feeds[0];
        let last = net.reps[r].tree().expect("a tree").last_zxid();
        assert_eq!((*conn, f.shard, f.server, f.gap), (5, 0, r as u32, false));
        assert_eq!(
            f.upto, last as u64,
            "replica {r}: the feed is where the tree is"
        );
        assert!(f
            .triggers
            .iter()
            .all(|t| t.pos == t.zxid as u64 && t.readable));
        assert_eq!(fired(f), want, "replica {r}");
    }
    // Held on every replica (nothing past `upto`: the failed setData took a zxid and
    // fired nothing), until the next write.
    let upto = net.reps[l].feed().upto();
    assert!(upto > zs as u64);
    for r in 0..N {
        net.on(r, |rep, _, _| rep.on_watch_poll(6, watch_poll(upto, 2000)));
        net.on(r, |rep, _, _| rep.on_watch_poll(7, watch_poll(upto, 2000)));
        net.on(r, |rep, _, _| rep.on_watch_closed(7));
        assert!(net.reps[r].take_feeds().is_empty(), "replica {r}: not held");
    }
    net.send(l, &[zk_op(1, 6, &set("/a", -1))]);
    net.advance(TICK);
    let zs2 = reply(&net, 1, 6, &set("/a", -1)).0;
    for r in 0..N {
        let feeds = net.reps[r].take_feeds();
        assert_eq!(feeds.len(), 1, "replica {r}: the held poll, once");
        let (conn, f) = &feeds[0];
        assert_eq!((*conn, f.after, f.upto), (6, upto, zs2 as u64));
        assert_eq!(fired(f), vec![(zs2, NodeDataChanged.code(), "/a".into())]);
    }
    // Client 2 goes idle: its session expires, and the deletion of its ephemeral fires.
    for i in 0..30u64 {
        net.send(l, &[zk_op(1, 7 + i, &get("/a"))]);
        net.advance(2 * TICK);
    }
    net.agree_all();
    for r in 0..N {
        assert!(net.reps[r].tree().expect("a tree").stat("/a/e").is_none());
        net.on(r, |rep, _, _| {
            rep.on_watch_poll(8, watch_poll(zs2 as u64, 0))
        });
        let feeds = net.reps[r].take_feeds();
        let f = &feeds[0].1;
        let gone = vec![
            (zs2 + 1, NodeDeleted.code(), "/a/e".to_string()),
            (zs2 + 1, NodeChildrenChanged.code(), "/a".to_string()),
        ];
        assert_eq!(fired(f), gone, "replica {r}: the expiry's triggers");
        // Nothing comes: answered empty at the deadline, not before.
        let at = f.upto;
        net.on(r, |rep, _, _| rep.on_watch_poll(9, watch_poll(at, 100)));
        assert!(net.reps[r].take_feeds().is_empty());
    }
    net.advance(9 * TICK);
    for r in 0..N {
        assert!(net.reps[r].take_feeds().is_empty(), "replica {r}: early");
    }
    net.advance(TICK);
    for r in 0..N {
        let feeds = net.reps[r].take_feeds();
        assert_eq!(feeds.len(), 1, "replica {r}: at the deadline");
        let f = &feeds[0].1;
        assert!(f.triggers.is_empty() && f.upto == f.after && !f.gap);
    }
}

/// `client`'s moveSession (opcode -20) of ZooKeeper session `session`.
fn move_session(client: u64, seq: u64, session: i64, timeout_ms: i32) -> ClientOp {
    let mut w = Writer::new();
    RequestHeader {
        xid: seq as i32,
        op: opcode::MOVE_SESSION,
    }
    .write(&mut w);
    w.write_i64(session);
    w.write_i32(timeout_ms);
    ClientOp {
        payload: Bytes::from(w.into_inner()),
        acked_below: seq,
        ..op(client, seq, 1)
    }
}

#[test]
fn a_moved_session_keeps_its_ephemerals_and_expires_with_its_new_owner_only() {
    let (mut net, l) = Net::start(ReplicaConfig {
        session_timeout_us: 60_000_000,
        ..keeper()
    });
    let s1 = harness::session(1) as i64;
    net.send(l, &[open_session_for(1, 1, 4_000)]);
    net.send(l, &[zk_op(1, 2, &create("/e1", CreateMode::Ephemeral))]);
    // Client 2 takes the session over: its ops act as it.
    net.send(l, &[move_session(2, 1, s1, 4_000)]);
    net.send(l, &[zk_op(2, 2, &create("/e2", CreateMode::Ephemeral))]);
    let (_, moved) = reply(&net, 2, 1, &Request::CloseSession);
    assert_eq!(moved, Ok(Response::Empty));
    let (_, made) = reply(&net, 2, 2, &create("/e2", CreateMode::Ephemeral));
    assert!(matches!(made, Ok(Response::Create { stat, .. }) if stat.ephemeral_owner == s1));
    // Client 1 lost it: its ops are answered SessionMoved and change nothing.
    net.send(l, &[zk_op(1, 3, &create("/x", CreateMode::Persistent))]);
    net.send(l, &[zk_op(1, 4, &Request::CloseSession)]);
    net.advance(3 * TICK);
    let (_, x) = reply(&net, 1, 3, &create("/x", CreateMode::Persistent));
    assert_eq!(x, Err(Code::SessionMoved));
    let (_, closed) = reply(&net, 1, 4, &Request::CloseSession);
    assert_eq!(closed, Err(Code::SessionMoved));
    // Client 1 goes idle past its 4 s; client 2 keeps the session alive: it stays.
    for i in 0..12u64 {
        net.send(l, &[zk_op(2, 3 + i, &get("/e1"))]);
        net.advance(500_000);
    }
    net.agree_all();
    // Client 1's client session is closed by now.
    net.send(l, &[zk_op(1, 5, &get("/e1"))]);
    let status = net
        .replies
        .iter()
        .rev()
        .find(|(_, _, rep)| rep.session == harness::session(1) && rep.client_seq == 5)
        .map(|(_, _, rep)| rep.status);
    assert_eq!(status, Some(ReplyStatus::UnknownSession as i32));
    for r in 0..N {
        let t = net.reps[r].tree().expect("a tree");
        assert!(t.stat("/x").is_none(), "replica {r}: the old owner wrote");
        assert!(
            t.stat("/e1").is_some(),
            "replica {r}: gone with the old owner"
        );
        assert!(
            t.stat("/e2").is_some(),
            "replica {r}: gone with the old owner"
        );
        assert_eq!(t.owners(), vec![(s1, harness::session(2) as i64)]);
    }
    // Client 2 goes idle: past the 4 s its move asked for, the session expires.
    net.advance(5_500_000);
    net.agree_all();
    for r in 0..N {
        let t = net.reps[r].tree().expect("a tree");
        assert!(
            t.stat("/e1").is_none() && t.stat("/e2").is_none(),
            "replica {r}"
        );
        assert!(
            t.sessions().is_empty() && t.owners().is_empty(),
            "replica {r}"
        );
        assert_eq!(Some(t.digest()), net.reps[0].tree().map(|t| t.digest()));
    }
}
