//! The watch feed at shard servers: after a run of the world tests (creates, sets,
//! deletes, multis, sessions closing with ephemerals; servers crashed or cut off), every
//! server of a shard feeds the same triggers, and those of the paths the shard owns are
//! exactly what one unsharded tree fires for them, in order; a server restarted from a
//! snapshot and its store feeds the same after the snapshot; a long poll is answered by
//! the next apply, or empty at its deadline.

use super::{check_run_with, payload, Fault, Ran};
use crate::node::{NodeAction, NodeConfig, ZkNode};
use crate::store;
use mason_common::msg::Body;
use mason_common::zkmsg::{ZkDeliver, ZkItem, ZkRecord, ZkWatchFeed, ZkWatchPoll};
use mason_corfu_server::storage::Storage;
use mason_zk::{check_acl, perms, shard, Acl, CreateMode, DataTree, EventType, Request};
use prost::Message as _;

/// A trigger as the gateway compares them: (zxid, event, path, readable).
type Fired = (i64, i32, String, bool);

fn poll(shard: u32, after: u64, wait_ms: u32) -> ZkWatchPoll {
    ZkWatchPoll {
        shard,
        after,
        wait_ms,
        fresh: false,
    }
}

fn feeds(out: &[NodeAction]) -> Vec<ZkWatchFeed> {
    out.iter()
        .filter_map(|a| match a {
            NodeAction::Send {
                body: Body::ZkWatchFeed(f),
                ..
            } => Some(f.clone()),
            _ => None,
        })
        .collect()
}

/// What `node` answers a poll from 0 at once.
fn feed_from_zero(node: &mut ZkNode) -> ZkWatchFeed {
    let mut out = Vec::new();
    let shard = node.config().shard;
    node.on_watch_poll(1, poll(shard, 0, 0), &mut out);
    let mut f = feeds(&out);
    assert_eq!(f.len(), 1);
    f.remove(0)
}

fn check_feeds(seed: u64, shards: u32, fault: Fault) {
    let Ran { mut w, fired } = check_run_with(seed, shards, fault, None);
    let mut owned_total = 0;
    for s in 0..shards {
        let want: Vec<Fired> = fired
            .iter()
            .filter(|(_, t)| shard::owner(&t.path, shards) == s)
            .map(|(z, t)| {
                let readable = check_acl(&t.acl, perms::READ).is_ok();
                (*z, t.event.code(), t.path.clone(), readable)
            })
            .collect();
        owned_total += want.len();
        let first = feed_from_zero(&mut w.servers[s as usize][0].node);
        for i in 0..3 {
            let at = format!("seed {seed} shards {shards} shard {s} server {i}");
            let node = &mut w.servers[s as usize][i].node;
            let f = feed_from_zero(node);
            assert!(!f.gap, "{at}: a gap");
            assert_eq!((f.shard, f.server, f.after), (s, i as u32, 0), "{at}");
            assert_eq!(f.upto, node.next() - 1, "{at}: not where it applied");
            assert!(
                f.triggers.windows(2).all(|p| p[0].pos <= p[1].pos),
                "{at}: out of order"
            );
            assert_eq!(f.triggers, first.triggers, "{at}: not its peers' feed");
            let got: Vec<Fired> = f
                .triggers
                .iter()
                .filter(|t| shard::owner(&t.path, shards) == s)
                .map(|t| (t.zxid, t.event, t.path.clone(), t.readable))
                .collect();
            assert_eq!(got, want, "{at}: not what one tree fires");
        }
    }
    assert!(owned_total > 20, "seed {seed}: only {owned_total} triggers");
}

#[test]
fn every_server_feeds_what_one_tree_fires_for_its_shard() {
    for seed in 1..=6u64 {
        for shards in [1u32, 2, 3] {
            check_feeds(seed, shards, Fault::None);
        }
        check_feeds(seed, 2, Fault::MidClose);
        check_feeds(seed, 2, Fault::Crash);
        check_feeds(seed, 2, Fault::CutOff);
    }
}

/// A server restarted from a snapshot taken half way and its store answers the same
/// triggers after the snapshot's position, and a gap before it.
#[test]
fn a_restarted_server_feeds_the_same_after_its_snapshot() {
    for seed in 1..=4u64 {
        let shards = 2;
        let Ran { mut w, .. } = check_run_with(seed, shards, Fault::None, None);
        let srv = &mut w.servers[0][0];
        let cfg = NodeConfig::new(0, shards, 0, vec![3; shards as usize]);
        let half = srv.node.next() / 2;
        let mut first = ZkNode::new(cfg.clone(), DataTree::new_shard(0, shards), 0);
        while first.next() < half {
            let e = srv.store.get(first.next()).expect("reads").expect("stored");
            let rec = ZkRecord::decode(&e.payload[..]).expect("decodes");
            assert!(first.replay(&rec));
        }
        let at = first.next();
        let tree = DataTree::restore(&first.tree().shard_snapshot()).expect("restores");
        let mut again = ZkNode::new(cfg, tree, at);
        assert_eq!(again.feed().upto(), at - 1);
        store::replay(&srv.store, &mut again).expect("replays");
        assert_eq!(again.next(), srv.node.next());
        let big = 1 << 30;
        let want = srv.node.feed().answer(at - 1, big);
        assert!(
            !want.entries.is_empty(),
            "seed {seed}: nothing fired after {at}"
        );
        assert_eq!(again.feed().answer(at - 1, big), want, "seed {seed}");
        assert!(again.feed().answer(at - 2, big).gap, "seed {seed}");
        // And the full replay from nothing feeds everything the server fed.
        let mut all = ZkNode::new(
            NodeConfig::new(0, shards, 0, vec![3; shards as usize]),
            DataTree::new_shard(0, shards),
            0,
        );
        store::replay(&srv.store, &mut all).expect("replays");
        assert_eq!(all.feed().answer(0, big), srv.node.feed().answer(0, big));
    }
}

/// Op `req` of session 7 at position `pos` of a one-shard deployment.
fn item(pos: u64, req: &Request) -> ZkItem {
    let mask = shard::spaces(req, 1);
    ZkItem {
        pos,
        noops: 0,
        session: 7,
        payload: payload(pos as i32 + 1, req),
        time_ms: 1,
        mask,
        numbers: vec![pos; mask.count_ones() as usize],
    }
}

fn deliver(node: &mut ZkNode, now: u64, items: Vec<ZkItem>) -> Vec<ZkWatchFeed> {
    let mut out = Vec::new();
    node.tick(now, &mut out);
    let d = ZkDeliver {
        group: 0,
        shard: 0,
        items,
    };
    node.on_deliver(1, d, &mut out);
    node.flush(&mut out);
    feeds(&out)
}

#[test]
fn a_long_poll_is_answered_by_the_next_apply_or_at_its_deadline() {
    let mut node = ZkNode::new(
        NodeConfig::new(0, 1, 0, vec![1]),
        DataTree::new_shard(0, 1),
        0,
    );
    let create = Request::Create {
        path: "/a".into(),
        data: Default::default(),
        acl: Acl::open_unsafe(),
        mode: CreateMode::Persistent,
    };
    let open = Request::CreateSession { timeout_ms: 5000 };
    assert!(deliver(&mut node, 0, vec![item(0, &open), item(1, &create)]).is_empty());
    let all = feed_from_zero(&mut node);
    let got: Vec<(u64, i64, i32, &str)> = all
        .triggers
        .iter()
        .map(|t| (t.pos, t.zxid, t.event, t.path.as_str()))
        .collect();
    let (created, children) = (
        EventType::NodeCreated.code(),
        EventType::NodeChildrenChanged.code(),
    );
    assert_eq!(got, vec![(1, 2, created, "/a"), (1, 2, children, "/")]);
    assert!(all.triggers.iter().all(|t| t.readable));
    // A fresh poll learns where the server is.
    let mut out = Vec::new();
    let fresh = ZkWatchPoll {
        fresh: true,
        ..poll(0, 0, 1000)
    };
    node.on_watch_poll(3, fresh, &mut out);
    let f = feeds(&out);
    assert_eq!((f[0].after, f[0].upto, f[0].triggers.len()), (1, 1, 0));
    // Nothing past 1: held, until the next write.
    out.clear();
    node.on_watch_poll(3, poll(0, 1, 1000), &mut out);
    node.on_watch_poll(4, poll(0, 1, 1000), &mut out);
    assert!(feeds(&out).is_empty());
    assert_eq!(node.held_polls(), 2);
    node.on_closed(4);
    assert_eq!(node.held_polls(), 1, "a closed connection's poll goes");
    let set = Request::SetData {
        path: "/a".into(),
        data: Default::default(),
        version: -1,
    };
    let f = deliver(&mut node, 100_000, vec![item(2, &set)]);
    assert_eq!(f.len(), 1, "the write answers the held poll");
    assert_eq!((f[0].after, f[0].upto), (1, 2));
    let t = &f[0].triggers;
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].pos, t[0].zxid), (2, 3));
    assert_eq!(
        (t[0].event, t[0].path.as_str()),
        (EventType::NodeDataChanged.code(), "/a")
    );
    // A read moves the feed on (no triggers): a held poll learns it.
    out.clear();
    node.on_watch_poll(3, poll(0, 2, 500), &mut out);
    assert!(feeds(&out).is_empty());
    let read = Request::GetData {
        path: "/a".into(),
        watch: false,
    };
    let f = deliver(&mut node, 200_000, vec![item(3, &read)]);
    assert_eq!((f.len(), f[0].upto, f[0].triggers.len()), (1, 3, 0));
    // Nothing comes: answered empty at the deadline (now + 500 ms), not before.
    out.clear();
    node.on_watch_poll(3, poll(0, 3, 500), &mut out);
    assert!(node.next_deadline() <= 700_000);
    node.tick(699_999, &mut out);
    assert!(feeds(&out).is_empty());
    node.tick(700_000, &mut out);
    let f = feeds(&out);
    assert_eq!(f.len(), 1, "answered at its deadline");
    assert_eq!(
        (f[0].after, f[0].upto, f[0].triggers.len(), f[0].gap),
        (3, 3, 0, false)
    );
    // A poll for another shard: a gap, nothing else.
    out.clear();
    node.on_watch_poll(3, poll(5, 0, 0), &mut out);
    let f = feeds(&out);
    assert!(f[0].gap && f[0].upto == 0 && f[0].triggers.is_empty());
}
