//! A shard server's intake: what waits for its turn is bounded, and the server goes on
//! once the hole before it is filled.

use crate::node::{NodeConfig, ZkNode};
use crate::tests::payload;
use bytes::Bytes;
use mason_common::zkmsg::{ZkDeliver, ZkItem};
use mason_zk::{shard, DataTree, Request};

/// What waits for its turn is bounded in bytes: deliveries past the bound are refused
/// (their proxy delivers them again), and the next position is always taken, so the
/// server goes on once the hole is filled.
#[test]
fn what_waits_ahead_is_bounded_in_bytes() {
    let mut cfg = NodeConfig::new(0, 1, 0, vec![3]);
    cfg.max_held_bytes = 10_000;
    let mut node = ZkNode::new(cfg, DataTree::new_shard(0, 1), 0);
    let mut out = Vec::new();
    let session = Request::CreateSession { timeout_ms: 5000 };
    let set = |pos: u64, n: usize| ZkItem {
        pos,
        noops: 0,
        session: 7,
        payload: payload(
            pos as i32 + 1,
            &Request::SetData {
                path: "/zookeeper".into(),
                data: Bytes::from(vec![b'x'; n]),
                version: -1,
            },
        ),
        time_ms: 0,
        mask: shard::spaces(
            &Request::GetData {
                path: "/".into(),
                watch: false,
            },
            1,
        ) | 1,
        numbers: vec![pos, pos],
    };
    // Positions 1..=40, 1 KB each, while position 0 has not come: about 10 are held.
    let items: Vec<ZkItem> = (1..=40).map(|p| set(p, 1000)).collect();
    node.on_deliver(
        1,
        ZkDeliver {
            group: 0,
            shard: 0,
            items: items.clone(),
        },
        &mut out,
    );
    assert_eq!(node.next(), 0);
    // Position 0 opens the session; then everything held applies, and stops at the
    // first position that was refused.
    let open = ZkItem {
        pos: 0,
        noops: 0,
        session: 7,
        payload: payload(1, &session),
        time_ms: 0,
        mask: shard::spaces(&session, 1),
        numbers: vec![0, 0],
    };
    node.on_deliver(
        1,
        ZkDeliver {
            group: 0,
            shard: 0,
            items: vec![open],
        },
        &mut out,
    );
    let stopped = node.next();
    assert!(
        (5..=11).contains(&stopped),
        "held past the bound: next {stopped}"
    );
    // Delivered again (as proxies do until answered), the rest goes through, a bounded
    // part at a time.
    for _ in 0..10 {
        let before = node.next();
        let d = ZkDeliver {
            group: 0,
            shard: 0,
            items: items.clone(),
        };
        node.on_deliver(1, d, &mut out);
        assert!(node.next() > before || node.next() == 41);
    }
    assert_eq!(node.next(), 41);
}
