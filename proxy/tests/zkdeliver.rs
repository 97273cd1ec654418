//! ZK-Mason delivery over the group harness: a group with two shards of three servers
//! each (spaces: the zxid clock, then one per shard) delivers every number it binds in a
//! shard's space to that shard's servers, as ops or noops, and answers a client only
//! once a majority of the servers of every shard its op touched applied it, with the
//! reply a server computed. A new leader delivers again what its predecessor may not
//! have finished, and a retried op is answered with the reply the servers keep.

mod harness;

use bytes::Bytes;
use harness::{cfg, op, Net, TICK};
use mason_common::msg::{Body, ClientOp, LocalRead, ReplyStatus};
use mason_common::zkmsg::{ZkApplied, ZkDone, ZkItem, ZkRead, ZkReadReply};
use mason_proxy::ReplicaConfig;
use mason_zk::jute::{self, Shape};
use mason_zk::Request;
use std::collections::BTreeMap;

/// Clock (space 0) and shard 0 (space 1); shard 1 (space 2); both shards.
const SHARD0: u64 = 0b011;
const SHARD1: u64 = 0b100;
const BOTH: u64 = 0b111;

fn zk() -> ReplicaConfig {
    ReplicaConfig {
        zk_servers: vec![3, 3],
        ..cfg(3)
    }
}

/// Op `seq` of `client`, which has heard no answer yet.
fn zk_op(client: u64, seq: u64, mask: u64) -> ClientOp {
    ClientOp {
        payload: Bytes::from(format!("req {client}/{seq}")),
        acked_below: 1,
        ..op(client, seq, mask)
    }
}

/// What was delivered, per (shard, server): position -> item (the same every time).
fn delivered(net: &Net, from: Option<usize>) -> BTreeMap<(u32, u32), BTreeMap<u64, ZkItem>> {
    let mut out: BTreeMap<(u32, u32), BTreeMap<u64, ZkItem>> = BTreeMap::new();
    for (r, shard, server, body) in &net.to_zk {
        if from.is_some_and(|f| f != *r) {
            continue;
        }
        if let Body::ZkDeliver(d) = body {
            assert_eq!(d.shard, *shard);
            for it in &d.items {
                let at = out.entry((*shard, *server)).or_default();
                if let Some(old) = at.insert(it.pos, it.clone()) {
                    assert_eq!(&old, it, "two things delivered at {shard}/{}", it.pos);
                }
            }
        }
    }
    out
}

/// Server `server` of `shard` says it applied everything delivered to it so far.
fn ack(net: &mut Net, leader: usize, shard: u32, server: u32) {
    let items = delivered(net, None)
        .remove(&(shard, server))
        .unwrap_or_default();
    applied(net, leader, shard, server, items.keys());
}

/// Server `server` of `shard` applied `positions`; each reply names its place.
fn applied<'a>(
    net: &mut Net,
    leader: usize,
    shard: u32,
    server: u32,
    positions: impl Iterator<Item = &'a u64>,
) {
    let done = positions
        .map(|pos| ZkDone {
            pos: *pos,
            result: Bytes::from(format!("reply {shard}/{pos}")),
            forgotten: false,
        })
        .collect();
    let a = ZkApplied {
        group: 0,
        shard,
        server,
        done,
    };
    net.on(leader, |r, _, out| r.on_zk_applied(a, out));
}

#[test]
fn answers_wait_for_a_majority_of_every_touched_shard() {
    let (mut net, l) = Net::start(zk());
    net.send(
        l,
        &[zk_op(1, 1, BOTH), zk_op(2, 1, SHARD0), zk_op(1, 2, SHARD1)],
    );
    net.advance(3 * TICK);
    assert!(
        net.oks(1).is_empty() && net.oks(2).is_empty(),
        "nothing applied yet"
    );
    // Every number bound in a shard's space went to all three of its servers, contiguous.
    let d = delivered(&net, None);
    for shard in 0..2u32 {
        for server in 0..3 {
            let items = &d[&(shard, server)];
            let mut next = *items.keys().next().expect("something");
            for (pos, it) in items {
                assert_eq!(*pos, next, "shard {shard}: a gap before {pos}");
                next = it.end();
            }
        }
    }
    let ops: usize = d[&(0, 0)].values().filter(|i| i.is_op()).count();
    assert_eq!(ops, 2, "two ops touch shard 0");
    ack(&mut net, l, 0, 0);
    ack(&mut net, l, 0, 1);
    ack(&mut net, l, 1, 2);
    assert!(
        net.oks(1).is_empty(),
        "shard 1 has one server of three: no answer"
    );
    ack(&mut net, l, 1, 0);
    let a = net.oks(1);
    assert_eq!(a.len(), 2, "{a:?}");
    let r = a.iter().find(|r| r.client_seq == 1).expect("op 1");
    let shard0 = r.numbers[1];
    assert_eq!(
        r.result,
        Bytes::from(format!("reply 0/{shard0}")),
        "the first shard's reply"
    );
    assert_eq!(net.oks(2).len(), 1);
}

#[test]
fn a_new_leader_delivers_again_and_a_retry_is_answered_from_the_servers() {
    let (mut net, l) = Net::start(zk());
    net.send(l, &[zk_op(1, 1, BOTH), zk_op(1, 2, SHARD0)]);
    net.advance(3 * TICK);
    let before = delivered(&net, Some(l));
    assert!(!before.is_empty());
    // The leader is lost before any server answered.
    net.cut[l] = true;
    let new = net.elect();
    net.advance(3 * TICK);
    let again = delivered(&net, Some(new));
    assert_eq!(
        again, before,
        "the new leader delivers the same positions again"
    );
    for shard in 0..2 {
        for server in 0..2 {
            ack(&mut net, new, shard, server);
        }
    }
    // The client, which heard nothing, asks the new leader again.
    net.send(new, &[zk_op(1, 1, BOTH), zk_op(1, 2, SHARD0)]);
    net.advance(3 * TICK);
    let queried: Vec<_> = net
        .to_zk
        .iter()
        .filter(|(r, ..)| *r == new)
        .filter_map(|(_, shard, server, b)| match b {
            Body::ZkQuery(q) => Some((*shard, *server, q.positions.clone())),
            _ => None,
        })
        .collect();
    assert!(
        !queried.is_empty(),
        "the retries ask the servers for the kept replies"
    );
    for (shard, server, positions) in queried {
        applied(&mut net, new, shard, server, positions.iter());
    }
    let oks = net.oks(1);
    for seq in [1, 2] {
        let r = oks.iter().find(|r| r.client_seq == seq).expect("answered");
        assert_eq!(r.result, Bytes::from(format!("reply 0/{}", r.numbers[1])));
    }
    // Bound once each: the retries took no new numbers.
    let bound = net.bound_ops(new, 1);
    assert_eq!(bound.len(), 2, "{bound:?}");
}

/// A client that goes silent past the session timeout: the group closes its session
/// through the log, and its leader then sends a closeSession of that session to every
/// shard (once), so the shard servers delete its ephemerals at one place in each
/// shard's order. A leader elected after the close sends it if its predecessor had not.
#[test]
fn an_idle_session_is_closed_on_every_shard() {
    let (mut net, l) = Net::start(ReplicaConfig {
        session_timeout_us: 20 * TICK,
        ..zk()
    });
    net.send(l, &[zk_op(1, 1, SHARD0), zk_op(2, 1, SHARD1)]);
    // Client 1 stays busy; client 2 says nothing more.
    for i in 0..40u64 {
        net.send(l, &[zk_op(1, 2 + i, SHARD0)]);
        net.advance(2 * TICK);
        for shard in 0..2 {
            for server in 0..2 {
                ack(&mut net, l, shard, server);
            }
        }
    }
    let closes: Vec<ZkItem> = delivered(&net, Some(l))
        .into_values()
        .flat_map(|items| items.into_values())
        .filter(|it| it.is_op() && it.session == harness::session(2) && it.payload != "req 2/1")
        .collect();
    // One closeSession per shard (both shards' servers got the same op).
    assert!(!closes.is_empty(), "no closeSession was delivered");
    let first = &closes[0];
    assert_eq!(
        first.mask, BOTH,
        "a close touches the clock and every shard"
    );
    let header = mason_zk::jute::split_request(&first.payload)
        .expect("a request")
        .0;
    assert_eq!(header.op, mason_zk::opcode::CLOSE_SESSION);
    let distinct: std::collections::BTreeSet<Vec<u64>> =
        closes.iter().map(|c| c.numbers.clone()).collect();
    assert_eq!(distinct.len(), 1, "closed once: {distinct:?}");
    assert!(net.oks(1).len() > 10, "client 1 kept being answered");
}

/// A majority of the shard said "applied" without the reply (servers that took a peer's
/// tree past the op no longer hold it): the client is not answered with an empty reply;
/// the leader asks the shard's servers, and answers with the reply one of them keeps.
#[test]
fn an_op_applied_without_a_known_reply_waits_for_one() {
    let (mut net, l) = Net::start(zk());
    net.send(l, &[zk_op(1, 1, SHARD0)]);
    net.advance(3 * TICK);
    let pos = *delivered(&net, None)[&(0, 0)]
        .keys()
        .next()
        .expect("delivered");
    for server in 0..2 {
        let a = ZkApplied {
            group: 0,
            shard: 0,
            server,
            done: vec![ZkDone {
                pos,
                result: Bytes::new(),
                forgotten: true,
            }],
        };
        net.on(l, |r, _, out| r.on_zk_applied(a, out));
    }
    assert!(
        net.oks(1).is_empty(),
        "answered with no reply: {:?}",
        net.oks(1)
    );
    let asked = net
        .to_zk
        .iter()
        .any(|(_, _, _, b)| matches!(b, Body::ZkQuery(q) if q.positions == vec![pos]));
    assert!(asked, "the servers are asked for the reply");
    applied(&mut net, l, 0, 2, [pos].iter());
    let a = net.oks(1);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].result, Bytes::from(format!("reply 0/{pos}")));
}

/// A local read of `path` by client `client`, having seen `min_pos` of its shard.
fn local_read(client: u64, id: u64, path: &str, min_pos: u64) -> LocalRead {
    let req = Request::GetData {
        path: path.into(),
        watch: false,
    };
    let shape = Shape::for_request(&req).expect("a read");
    let framed = jute::encode_request(id as i32, &req, &shape).expect("encodes");
    LocalRead {
        session: harness::session(client),
        group: 0,
        id,
        payload: Bytes::from(framed).slice(4..),
        min_pos,
    }
}

/// The reads handed to shard servers: (server, the read).
fn reads_sent(net: &Net) -> Vec<(u32, u32, ZkRead)> {
    net.to_zk
        .iter()
        .filter_map(|(_, shard, server, body)| match body {
            Body::ZkRead(r) => Some((*shard, *server, r.clone())),
            _ => None,
        })
        .collect()
}

/// `--zk-reads local`: the leader hands a read to the server of its znode's shard known to
/// be furthest ahead, with the session's position; a server that says it is behind (or
/// stays silent) is replaced by another; the answer reaches the client with the shard's
/// space and the position the server had applied.
#[test]
fn a_local_read_goes_to_a_server_of_its_shard_and_moves_on_when_one_lags() {
    let (mut net, l) = Net::start(zk());
    let path = "/some/znode";
    let shard = mason_zk::shard::owner(path, 2);
    // Server 2 of that shard is known to have applied further than the others.
    applied(&mut net, l, shard, 1, [5u64].iter());
    applied(&mut net, l, shard, 2, [9u64].iter());
    net.on(l, |r, _, out| {
        r.on_local_read(1, local_read(1, 7, path, 8), out)
    });
    net.settle();
    let sent = reads_sent(&net);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (s, server, read) = sent[0].clone();
    assert_eq!(
        (s, server, read.min_pos),
        (shard, 2, 8),
        "the furthest ahead"
    );
    // It says it is behind after all: another server gets the read.
    let behind = ZkReadReply {
        group: 0,
        id: read.id,
        behind: true,
        ..ZkReadReply::default()
    };
    net.on(l, |r, _, out| r.on_zk_read_reply(behind, out));
    let sent = reads_sent(&net);
    assert_eq!(sent.len(), 2);
    let (_, second, read2) = sent[1].clone();
    assert_ne!(second, 2);
    // That one stays silent: after a while a third is asked.
    net.advance(60 * TICK);
    let sent = reads_sent(&net);
    assert!(sent.len() >= 3 && sent[2].1 != second, "{sent:?}");
    // The second answers late: still the answer (the client waits for any of them).
    let answer = ZkReadReply {
        group: 0,
        id: read2.id,
        result: Bytes::from_static(b"the reply"),
        pos: 12,
        behind: false,
    };
    net.on(l, |r, _, out| r.on_zk_read_reply(answer.clone(), out));
    let got: Vec<_> = net
        .read_replies
        .iter()
        .filter(|(_, _, a)| a.id == 7)
        .collect();
    assert!(
        got.is_empty(),
        "a read moved on answers only from where it went last"
    );
    let last = reads_sent(&net).last().expect("a read").2.clone();
    let answer = ZkReadReply {
        id: last.id,
        ..answer
    };
    net.on(l, |r, _, out| r.on_zk_read_reply(answer, out));
    let got: Vec<_> = net
        .read_replies
        .iter()
        .filter(|(_, _, a)| a.id == 7)
        .collect();
    assert_eq!(got.len(), 1);
    let a = &got[0].2;
    assert_eq!(a.status, ReplyStatus::Ok as i32);
    assert_eq!((a.space, a.pos), (shard + 1, 12));
    assert_eq!(a.result, Bytes::from_static(b"the reply"));
}
