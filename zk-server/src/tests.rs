//! Shard servers in one process, on in-memory stores and a shuffled in-memory network:
//! ops numbered as the sequencer numbers them, delivered to every server of every shard
//! they touch in any order and some twice, noops among them. Checked against one
//! unsharded tree applying the same ops in zxid order: every reply, every shard's
//! servers' trees, and the shards' union.

use crate::node::{NodeAction, NodeConfig, NodeMutant, ZkNode};
use crate::store::{self, run_store_action, Done};
use bytes::Bytes;
use mason_common::msg::Body;
use mason_common::zkmsg::{shard_space, ZkApplied, ZkDeliver, ZkItem};
use mason_corfu_server::storage::MemStore;
use mason_zk::jute::{self, RequestHeader, Shape, Writer};
use mason_zk::{opcode, shard, Acl, Code, CreateMode, Ctx, DataTree, Request};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Server {
    node: ZkNode,
    store: MemStore,
    down: bool,
}

/// A message in flight: to (shard, index), from (shard, index), or a proxy's delivery.
enum Msg {
    Peer {
        to: (u32, u32),
        from: (u32, u32),
        body: Body,
    },
    Proxy {
        to: (u32, u32),
        body: Body,
    },
}

struct World {
    shards: u32,
    /// A server cut off from every server of the other shards (its own shard's still
    /// reach it, and so do the proxies).
    cut_off: Option<(u32, u32)>,
    servers: Vec<Vec<Server>>,
    net: VecDeque<Msg>,
    applied: Vec<ZkApplied>,
    /// Watch feed answers: (shard, server, answer).
    feeds: Vec<(u32, u32, mason_common::zkmsg::ZkWatchFeed)>,
    rng: Rng,
    now: u64,
}

/// A request as a proxy's client sends it (header and body); createSession and
/// moveSession too.
pub(crate) fn payload(xid: i32, req: &Request) -> Bytes {
    if let Request::CreateSession { timeout_ms } = req {
        let mut w = Writer::new();
        RequestHeader {
            xid,
            op: opcode::CREATE_SESSION,
        }
        .write(&mut w);
        w.write_i32(*timeout_ms);
        return Bytes::from(w.into_inner());
    }
    if let Request::MoveSession {
        session,
        timeout_ms,
    } = req
    {
        let mut w = Writer::new();
        RequestHeader {
            xid,
            op: opcode::MOVE_SESSION,
        }
        .write(&mut w);
        w.write_i64(*session);
        w.write_i32(*timeout_ms);
        return Bytes::from(w.into_inner());
    }
    let shape = Shape::for_request(req).expect("a shape");
    let framed = jute::encode_request(xid, req, &shape).expect("encodes");
    Bytes::from(framed).slice(4..)
}

impl World {
    /// Shards of 3 servers each; `mutant` breaks server 0 of every shard.
    fn new(shards: u32, seed: u64, mutant: Option<NodeMutant>) -> World {
        let servers = (0..shards)
            .map(|s| {
                (0..3)
                    .map(|i| Server {
                        node: ZkNode::new(
                            NodeConfig {
                                mutant: mutant.filter(|_| i == 0),
                                ..NodeConfig::new(s, shards, i, vec![3; shards as usize])
                            },
                            DataTree::new_shard(s, shards),
                            0,
                        ),
                        store: MemStore::new(),
                        down: false,
                    })
                    .collect()
            })
            .collect();
        World {
            shards,
            cut_off: None,
            servers,
            net: VecDeque::new(),
            applied: Vec::new(),
            feeds: Vec::new(),
            rng: Rng(seed | 1),
            now: 0,
        }
    }

    fn carry_out(&mut self, at: (u32, u32), actions: Vec<NodeAction>) {
        let mut todo: VecDeque<NodeAction> = actions.into();
        while let Some(a) = todo.pop_front() {
            let srv = &mut self.servers[at.0 as usize][at.1 as usize];
            match a {
                NodeAction::Send { body, .. } => match body {
                    Body::ZkApplied(x) => self.applied.push(x),
                    Body::ZkWatchFeed(f) => self.feeds.push((at.0, at.1, f)),
                    _ => {}
                },
                NodeAction::ToServer { shard, index, body } => self.net.push_back(Msg::Peer {
                    to: (shard, index),
                    from: at,
                    body,
                }),
                other => {
                    let mut more = Vec::new();
                    match run_store_action(&mut srv.store, Path::new("/nonexistent"), other) {
                        Ok(Done::Looked(t, found)) => srv.node.on_looked(t, found, &mut more),
                        Ok(Done::Synced(g)) => srv.node.on_synced(g, &mut more),
                        Ok(Done::Nothing) => {}
                        // Snapshots go to a directory that is not there: not kept here.
                        Err(e) => assert!(e.contains("tree.snap"), "{e}"),
                    }
                    todo.extend(more);
                }
            }
        }
    }

    /// Delivers or drops (when down) one message; flushes the receiver.
    fn step(&mut self, m: Msg) {
        let (to, mut out) = (
            match &m {
                Msg::Peer { to, .. } | Msg::Proxy { to, .. } => *to,
            },
            Vec::new(),
        );
        if let (Msg::Peer { from, .. }, Some(cut)) = (&m, self.cut_off) {
            let across = from.0 != to.0;
            if across && (*from == cut || to == cut) {
                return;
            }
        }
        let srv = &mut self.servers[to.0 as usize][to.1 as usize];
        if srv.down {
            return;
        }
        srv.node.tick(self.now, &mut out);
        match m {
            Msg::Proxy {
                body: Body::ZkDeliver(d),
                ..
            } => srv.node.on_deliver(7, d, &mut out),
            Msg::Peer { from, body, .. } => match body {
                Body::ZkView(v) => srv.node.on_view(v, &mut out),
                Body::ZkViewPull(p) => srv.node.on_view_pull(from.0, from.1, p, &mut out),
                Body::ZkFetch(f) => srv.node.on_fetch(from.1, f, &mut out),
                Body::ZkFetchReply(r) => srv.node.on_fetch_reply(r, &mut out),
                _ => {}
            },
            _ => {}
        }
        srv.node.flush(&mut out);
        self.carry_out(to, out);
    }

    /// Runs the network (in a shuffled order) until it is quiet, ticking the clock.
    fn settle(&mut self) {
        for _ in 0..200 {
            while !self.net.is_empty() {
                let k = self.rng.below(self.net.len() as u64) as usize;
                let m = self.net.remove(k).expect("in range");
                self.step(m);
            }
            self.now += 250_000;
            for s in 0..self.shards {
                for i in 0..3 {
                    let mut out = Vec::new();
                    let srv = &mut self.servers[s as usize][i as usize];
                    if srv.down {
                        continue;
                    }
                    srv.node.tick(self.now, &mut out);
                    srv.node.flush(&mut out);
                    self.carry_out((s, i), out);
                }
            }
        }
    }
}

/// A random op over a small path space, by one of the sessions.
fn random_op(rng: &mut Rng, sessions: &[i64]) -> (i64, Request) {
    let names = ["/a", "/b", "/a/x", "/a/y", "/b/x", "/q", "/q/job-"];
    let path = names[rng.below(names.len() as u64) as usize].to_string();
    let session = sessions[rng.below(sessions.len() as u64) as usize];
    let data = Bytes::from(format!("v{}", rng.below(100)));
    let req = match rng.below(10) {
        0..=2 => Request::Create {
            mode: match rng.below(4) {
                0 => CreateMode::Ephemeral,
                1 => CreateMode::PersistentSequential,
                2 => CreateMode::EphemeralSequential,
                _ => CreateMode::Persistent,
            },
            path,
            data,
            acl: Acl::open_unsafe(),
        },
        3 => Request::Delete { path, version: -1 },
        4 | 5 => Request::SetData {
            path,
            data,
            version: -1,
        },
        6 => Request::GetData { path, watch: false },
        7 => Request::GetChildren {
            path,
            watch: false,
            with_stat: true,
        },
        8 => Request::Multi(vec![
            Request::Create {
                path: "/m".into(),
                data: Bytes::new(),
                acl: Acl::open_unsafe(),
                mode: CreateMode::Persistent,
            },
            Request::SetData {
                path,
                data,
                version: -1,
            },
        ]),
        _ => Request::Exists { path, watch: false },
    };
    (session, req)
}

#[test]
fn shards_apply_in_order_and_agree_with_one_tree() {
    for seed in 1..=12u64 {
        for shards in [1u32, 2, 3] {
            check_run(seed, shards, Fault::None);
        }
    }
}

#[test]
fn a_server_that_lost_everything_catches_up_from_its_peers() {
    for seed in 1..=6u64 {
        check_run(seed, 2, Fault::Crash);
    }
}

/// A server that gets every delivery but no view (the other shards cannot reach it)
/// still keeps up: it fetches what it waits on from its own shard's peers, whose records
/// carry the views.
#[test]
fn a_server_cut_off_from_the_other_shards_keeps_up() {
    for seed in 1..=6u64 {
        check_run(seed, 2, Fault::CutOff);
    }
}

/// A session closed in the middle of the run (its later ops fail everywhere alike): every
/// server ends its session at the close's place in the order. The mutant that ends it
/// when the close arrives, ahead of its turn, on one server of each shard is caught.
#[test]
fn a_session_closes_at_the_same_place_on_every_server() {
    for seed in 1..=6u64 {
        check_run(seed, 2, Fault::MidClose);
    }
    let caught = (1..=6u64).filter(|seed| {
        std::panic::catch_unwind(|| {
            check_run_with(*seed, 2, Fault::MidClose, Some(NodeMutant::CloseOnArrival))
        })
        .is_err()
    });
    assert!(
        caught.count() > 0,
        "the close-on-arrival mutant went unnoticed"
    );
}

/// A session moved to another client session in the middle of the run: the old owner's
/// ops, its expiry's closeSession among them, are answered SessionMoved on every shard and
/// change nothing; the new owner's act as the session; every server agrees.
#[test]
fn a_moved_session_is_refused_to_its_old_owner_on_every_shard() {
    for seed in 1..=6u64 {
        for shards in [1u32, 3] {
            check_run(seed, shards, Fault::Moved);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Crash,
    CutOff,
    /// Session 102 closes after 60 of the random ops, not at the end.
    MidClose,
    /// Client session [`MOVER`] takes session 101 over after 40 of the random ops.
    Moved,
}

/// The client session that takes a ZooKeeper session over (`Fault::Moved`).
const MOVER: i64 = 201;

/// What the unsharded tree answered, to show a run is not vacuous.
#[derive(Default)]
struct Outcomes {
    /// The senders of ops answered SessionMoved.
    moved: Vec<i64>,
    /// Writes of the mover that succeeded.
    by_mover: usize,
}

fn check_run(seed: u64, shards: u32, fault: Fault) {
    check_run_with(seed, shards, fault, None);
}

/// A run, checked: the world as it ended, and the triggers the unsharded tree fired, by
/// zxid in order.
struct Ran {
    w: World,
    fired: Vec<(i64, mason_zk::Trigger)>,
}

fn check_run_with(seed: u64, shards: u32, fault: Fault, mutant: Option<NodeMutant>) -> Ran {
    let crash = fault == Fault::Crash;
    let mut w = World::new(shards, seed, mutant);
    if fault == Fault::CutOff {
        w.cut_off = Some((0, 1));
    }
    let mut full = DataTree::new();
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    // The sequencer's counters: the clock, then each shard.
    let mut next = vec![0u64; shards as usize + 1];
    let mut expected: BTreeMap<(u32, u64), (Bytes, bool)> = BTreeMap::new();
    let mut fired = Vec::new();
    let sessions = [101i64, 102, 103];
    let mut ops: Vec<(i64, Request)> = sessions
        .iter()
        .map(|s| (*s, Request::CreateSession { timeout_ms: 5000 }))
        .collect();
    // Moved: client session 201 (no ZooKeeper session of its own) also sends ops.
    let senders = [101i64, 102, 103, MOVER];
    let senders = if fault == Fault::Moved {
        &senders[..]
    } else {
        &sessions[..]
    };
    for _ in 0..120 {
        ops.push(random_op(&mut rng, senders));
    }
    if fault == Fault::MidClose {
        ops.insert(sessions.len() + 60, (102, Request::CloseSession));
    } else {
        ops.push((102, Request::CloseSession));
    }
    if fault == Fault::Moved {
        // 201 takes session 101 over; then 101, idle, is closed as the group expires an
        // idle client session (its closeSession as its next op): SessionMoved, nothing
        // changes. At the end 201 closes 101, ephemerals and all.
        let moved = Request::MoveSession {
            session: 101,
            timeout_ms: 6000,
        };
        ops.insert(sessions.len() + 40, (MOVER, moved));
        ops.insert(sessions.len() + 41, (101, Request::CloseSession));
        ops.push((MOVER, Request::CloseSession));
    }
    let mut outcomes = Outcomes::default();
    for (k, (session, req)) in ops.into_iter().enumerate() {
        if crash && k == 60 {
            // Server 1 of shard 0 loses its disk and memory, and is away for a while.
            w.servers[0][1].down = true;
        }
        if crash && k == 90 {
            let fresh = ZkNode::new(
                NodeConfig::new(0, shards, 1, vec![3; shards as usize]),
                DataTree::new_shard(0, shards),
                0,
            );
            w.servers[0][1] = Server {
                node: fresh,
                store: MemStore::new(),
                down: false,
            };
        }
        let mask = shard::spaces(&req, shards);
        let mut numbers = Vec::new();
        for space in mason_common::types::SpaceMask(mask).iter() {
            numbers.push(next[space as usize]);
            next[space as usize] += 1;
        }
        // Now and then a noop range in a shard first (a takeover's holes).
        if rng.below(8) == 0 {
            let s = rng.below(u64::from(shards)) as u32;
            let pos = next[shard_space(s) as usize];
            let n = 1 + rng.below(3);
            next[shard_space(s) as usize] += n;
            for i in 0..3 {
                w.net.push_back(Msg::Proxy {
                    to: (s, i),
                    body: Body::ZkDeliver(ZkDeliver {
                        group: 0,
                        shard: s,
                        items: vec![ZkItem::noops(pos, n)],
                    }),
                });
            }
            // Its numbers are taken after this op's.
            let _ = pos;
        }
        let xid = k as i32 + 1;
        let item = ZkItem {
            pos: 0,
            noops: 0,
            session: session as u64,
            payload: payload(xid, &req),
            time_ms: 1000 + k as i64,
            mask,
            numbers: numbers.clone(),
        };
        // The unsharded tree, in zxid order, with the same checks a shard makes.
        let zxid = if req.is_write() {
            numbers[0] as i64 + 1
        } else {
            0
        };
        let refused = match req {
            Request::CreateSession { .. } | Request::MoveSession { .. } => None,
            _ => full.resolve_session(session).err(),
        };
        let want = if let Some(code) = refused {
            crate::op::error_reply(xid, zxid, code)
        } else {
            let ctx = Ctx {
                zxid,
                time_ms: item.time_ms,
            };
            let applied = full.apply(ctx, session, &req);
            fired.extend(applied.triggers.iter().map(|t| (applied.zxid, t.clone())));
            if session == MOVER && req.is_write() && applied.response.is_ok() {
                outcomes.by_mover += 1;
            }
            let shape = Shape::for_request(&req).unwrap_or(Shape::CloseSession);
            Bytes::from(
                jute::encode_response(xid, applied.zxid, &applied.response, &shape)
                    .expect("encodes"),
            )
            .slice(4..)
        };
        if jute::split_reply(&want).is_ok_and(|(h, _)| h.err == Code::SessionMoved.code()) {
            outcomes.moved.push(session);
        }
        for (j, space) in mason_common::types::SpaceMask(mask).iter().enumerate() {
            if space == 0 {
                continue;
            }
            let s = space - 1;
            let pos = numbers[j];
            expected.insert((s, pos), (want.clone(), req.is_write()));
            let mut it = item.clone();
            it.pos = pos;
            for i in 0..3 {
                let copies = 1 + u64::from(rng.below(5) == 0);
                for _ in 0..copies {
                    w.net.push_back(Msg::Proxy {
                        to: (s, i),
                        body: Body::ZkDeliver(ZkDeliver {
                            group: 0,
                            shard: s,
                            items: vec![it.clone()],
                        }),
                    });
                }
            }
        }
        if rng.below(4) == 0 {
            w.settle();
        }
    }
    w.settle();
    // Every server of every shard applied everything, in agreement.
    let mut parts = Vec::new();
    for s in 0..shards {
        let t0 = w.servers[s as usize][0].node.tree().clone();
        for i in 0..3 {
            let n = &w.servers[s as usize][i].node;
            assert_eq!(
                n.next(),
                next[shard_space(s) as usize],
                "seed {seed} shards {shards}: shard {s} server {i} stopped early"
            );
            assert_eq!(
                n.tree().digest(),
                t0.digest(),
                "seed {seed} shard {s} server {i}"
            );
        }
        parts.push(t0);
    }
    let whole = mason_zk::sharded::merge(&parts).expect("merges");
    assert_eq!(
        whole.first_difference(&full),
        None,
        "seed {seed} shards {shards}: the shards' union is not the tree"
    );
    // Every reply the servers gave is the unsharded tree's reply.
    let mut seen = 0;
    for a in &w.applied {
        for d in &a.done {
            if let Some((want, write)) = expected.get(&(a.shard, d.pos)) {
                if !d.forgotten {
                    let (gh, gb) = jute::split_reply(&d.result).expect("a reply");
                    let (wh, wb) = jute::split_reply(want).expect("a reply");
                    let at = format!("seed {seed} shard {} pos {}", a.shard, d.pos);
                    assert_eq!((gh.xid, gh.err, gb), (wh.xid, wh.err, wb), "{at}");
                    // A read reports its shard's last zxid, not the whole tree's.
                    if *write {
                        assert_eq!(gh.zxid, wh.zxid, "{at}");
                    }
                    seen += 1;
                }
            }
        }
    }
    assert!(seen > 100, "seed {seed}: only {seen} replies");
    if fault == Fault::Moved {
        // The old owner's ops (its close among them) were refused; the mover wrote as 101,
        // and its close ended 101 on every shard.
        assert!(outcomes.moved.len() > 1 && outcomes.moved.iter().all(|s| *s == 101));
        assert!(
            outcomes.by_mover > 1,
            "seed {seed}: the mover wrote nothing"
        );
        assert!(!whole.has_session(101) && whole.owners().is_empty());
        assert!(whole.ephemerals(101).is_empty());
    } else {
        assert!(outcomes.moved.is_empty());
    }
    // A server restarted from its store alone replays to the same tree.
    let srv = &w.servers[0][0];
    let mut again = ZkNode::new(
        NodeConfig::new(0, shards, 0, vec![3; shards as usize]),
        DataTree::new_shard(0, shards),
        0,
    );
    store::replay(&srv.store, &mut again).expect("replays");
    assert_eq!(again.next(), srv.node.next());
    assert_eq!(again.tree().digest(), srv.node.tree().digest());
    Ran { w, fired }
}

#[path = "tests_feed.rs"]
mod feed;
