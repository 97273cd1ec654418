//! Local reads at one shard server (`--zk-reads local`): a read waits until the server
//! has applied the position the reading session has seen, then sees everything up to
//! there; one that waits too long is sent back as "behind"; a read of a znode another
//! shard owns is refused.

use crate::node::READ_WAIT_US;
use crate::node::{NodeAction, NodeConfig, NodeMutant, ZkNode};
use bytes::Bytes;
use mason_common::msg::Body;
use mason_common::zkmsg::{ZkDeliver, ZkItem, ZkRead, ZkReadReply};
use mason_zk::jute::{self, Shape};
use mason_zk::{shard, Acl, Code, CreateMode, DataTree, Request, Response};

const SESSION: u64 = 7;

fn payload(xid: i32, req: &Request) -> Bytes {
    if let Request::CreateSession { timeout_ms } = req {
        return session_payload(xid, *timeout_ms);
    }
    let shape = Shape::for_request(req).expect("a request");
    Bytes::from(jute::encode_request(xid, req, &shape).expect("encodes")).slice(4..)
}

/// createSession's payload: the header `{xid, -10}` and the timeout.
fn session_payload(xid: i32, timeout_ms: i32) -> Bytes {
    let mut w = jute::Writer::new();
    jute::RequestHeader {
        xid,
        op: mason_zk::opcode::CREATE_SESSION,
    }
    .write(&mut w);
    w.write_i32(timeout_ms);
    Bytes::from(w.into_inner())
}

/// Op `req` at position `pos` of a one-shard deployment (the clock's number is `pos`).
fn item(pos: u64, req: &Request) -> ZkItem {
    let mask = shard::spaces(req, 1);
    let numbers = vec![pos; mask.count_ones() as usize];
    ZkItem {
        pos,
        noops: 0,
        session: SESSION,
        payload: payload(pos as i32 + 1, req),
        time_ms: 1,
        mask,
        numbers,
    }
}

fn deliver(node: &mut ZkNode, items: Vec<ZkItem>, out: &mut Vec<NodeAction>) {
    let d = ZkDeliver {
        group: 0,
        shard: 0,
        items,
    };
    node.on_deliver(1, d, out);
    node.flush(out);
}

fn read(id: u64, path: &str, min_pos: u64) -> ZkRead {
    let req = Request::GetData {
        path: path.into(),
        watch: false,
    };
    ZkRead {
        group: 0,
        shard: 0,
        id,
        session: SESSION,
        payload: payload(id as i32, &req),
        min_pos,
    }
}

/// The read answers in `out`: id -> the answer.
fn answers(out: &[NodeAction]) -> Vec<ZkReadReply> {
    out.iter()
        .filter_map(|a| match a {
            NodeAction::Send {
                body: Body::ZkReadReply(r),
                ..
            } => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn version(r: &ZkReadReply) -> Result<i32, Code> {
    let (h, body) = jute::split_reply(&r.result).expect("a reply");
    match jute::decode_response(&Shape::GetData, h.err, body).expect("decodes") {
        Ok(Response::Data { stat, .. }) => Ok(stat.version),
        Ok(other) => panic!("{other:?}"),
        Err(c) => Err(c),
    }
}

/// A session that wrote version 1 at position 2 reads from a server that has applied
/// only up to position 1: the answer must wait and show version 1.
fn lagging_server_read(mutant: Option<NodeMutant>) -> ZkReadReply {
    let mut cfg = NodeConfig::new(0, 1, 0, vec![3]);
    cfg.mutant = mutant;
    let mut node = ZkNode::new(cfg, DataTree::new_shard(0, 1), 0);
    let mut out = Vec::new();
    let create = Request::Create {
        path: "/a".into(),
        data: Bytes::from_static(b"v0"),
        acl: Acl::open_unsafe(),
        mode: CreateMode::Persistent,
    };
    let set = Request::SetData {
        path: "/a".into(),
        data: Bytes::from_static(b"v1"),
        version: -1,
    };
    let open = Request::CreateSession { timeout_ms: 5000 };
    deliver(&mut node, vec![item(0, &open), item(1, &create)], &mut out);
    out.clear();
    node.on_read(1, read(10, "/a", 2), &mut out);
    node.flush(&mut out);
    let early = answers(&out);
    if let Some(a) = early.first() {
        return a.clone();
    }
    deliver(&mut node, vec![item(2, &set)], &mut out);
    let got = answers(&out);
    assert_eq!(got.len(), 1, "answered once caught up");
    got[0].clone()
}

#[test]
fn a_read_waits_for_the_position_its_session_saw() {
    let a = lagging_server_read(None);
    assert!(!a.behind);
    assert_eq!((version(&a), a.pos), (Ok(1), 2));
    // The mutant answers at once, from before the session's own write: caught.
    let stale = lagging_server_read(Some(NodeMutant::ReadAnyState));
    assert_eq!(version(&stale), Ok(0));
}

#[test]
fn a_read_that_waits_too_long_is_sent_back_and_a_strangers_is_refused() {
    let mut node = ZkNode::new(
        NodeConfig::new(0, 2, 0, vec![3, 3]),
        DataTree::new_shard(0, 2),
        0,
    );
    let mut out = Vec::new();
    let open = Request::CreateSession { timeout_ms: 5000 };
    let mut it = item(0, &open);
    // Two shards: the session's opening touches both, with the clock.
    it.mask = shard::spaces(&open, 2);
    it.numbers = vec![0; it.mask.count_ones() as usize];
    deliver(&mut node, vec![it], &mut out);
    out.clear();
    node.tick(1_000, &mut out);
    node.on_read(1, read(1, "/x", 50), &mut out);
    node.tick(1_000 + READ_WAIT_US / 2, &mut out);
    assert!(answers(&out).is_empty(), "still waiting");
    node.tick(1_000 + READ_WAIT_US, &mut out);
    let a = answers(&out);
    assert!(a.len() == 1 && a[0].behind, "{a:?}");
    // A znode shard 0 does not own: refused, not answered from part of the tree.
    let theirs = (0..100)
        .map(|k| format!("/n{k}"))
        .find(|p| shard::owner(p, 2) == 1)
        .expect("a path of shard 1");
    out.clear();
    node.on_read(1, read(2, &theirs, 0), &mut out);
    let a = answers(&out);
    assert_eq!(version(&a[0]), Err(Code::BadArguments));
    let ours = (0..100)
        .map(|k| format!("/n{k}"))
        .find(|p| shard::owner(p, 2) == 0)
        .expect("a path of shard 0");
    out.clear();
    node.on_read(1, read(3, &ours, 0), &mut out);
    let a = answers(&out);
    assert_eq!(version(&a[0]), Err(Code::NoNode));
}
