//! The sharded tree against the whole tree: random ops applied to one whole tree and to N
//! shard trees (views computed on every touched shard before the op, then
//! `apply_sharded` on each) must answer the same and hold the same records between them.
//! Plus the view's binary form.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::sharded_gen::{op, Rng};
use super::time_of;
use crate::shard::{owner, touched};
use crate::sharded::{apply_sharded, needs_views, view, NodeImage, View, ViewError};
use crate::{Acl, Ctx, DataTree, Request, StatPersisted};

const SHARD_COUNTS: [u32; 5] = [1, 2, 3, 4, 7];
const SEEDS: u64 = 200;
const OPS: usize = 300;

/// What the whole run saw, to show the test is not vacuous.
#[derive(Default)]
struct Seen {
    ops: usize,
    with_views: usize,
    ok_writes: usize,
    max_nodes: usize,
    /// Sessions moved, and ops answered SessionMoved (an old owner's).
    moves: usize,
    refused_moved: usize,
    /// Ops of a mover acting as its session that changed something.
    by_movers: usize,
}

/// One seed's run on `n` shards; panics on the first difference.
fn run(seed: u64, n: u32, seen: &mut Seen) {
    let mut rng = Rng::new(seed);
    let mut full = DataTree::new();
    let mut shards: Vec<DataTree> = (0..n).map(|s| DataTree::new_shard(s, n)).collect();
    check_union(&full, &shards, n, "start");
    let mut zxid = 0;
    for i in 0..OPS {
        let (session, req) = op(&mut rng, &full);
        let at = format!("seed {seed}, {n} shards, op {i}: {req:?} from {session:#x}");
        if req.is_write() {
            zxid += 1;
        }
        let ctx = Ctx {
            zxid,
            time_ms: time_of(zxid),
        };
        let expect = full.apply(ctx, session, &req);
        let mask = touched(&req, n);
        let on: Vec<u32> = (0..n).filter(|s| mask & (1 << s) != 0).collect();
        assert!(!on.is_empty(), "{at}: touches no shard");
        let views: Vec<View> = on
            .iter()
            .map(|&s| {
                let v = view(&shards[s as usize], session, &req, s, n);
                let back = View::decode(&v.encode());
                assert_eq!(back.as_ref(), Ok(&v), "{at}: view round trip");
                v
            })
            .collect();
        let before: Vec<DataTree> = shards.clone();
        for &s in &on {
            let others: Vec<View> = views.iter().filter(|v| v.shard != s).cloned().collect();
            let got = apply_sharded(&mut shards[s as usize], ctx, session, &req, &others, s, n);
            assert_eq!(got.response, expect.response, "{at}: shard {s}'s answer");
            if req.is_write() {
                assert_eq!(got.zxid, expect.zxid, "{at}: shard {s}'s zxid");
            }
            let mine: Vec<_> = expect
                .triggers
                .iter()
                .filter(|t| owner(&t.path, n) == s)
                .cloned()
                .collect();
            assert_eq!(got.triggers, mine, "{at}: shard {s}'s triggers");
        }
        for s in (0..n).filter(|s| mask & (1 << s) == 0) {
            assert_eq!(
                shards[s as usize], before[s as usize],
                "{at}: untouched {s}"
            );
        }
        check_union(&full, &shards, n, &at);
        seen.ops += 1;
        seen.with_views += usize::from(needs_views(&req, n));
        seen.ok_writes += usize::from(req.is_write() && expect.response.is_ok());
        seen.max_nodes = seen.max_nodes.max(full.nodes.len());
        let ok = expect.response.is_ok();
        seen.moves += usize::from(matches!(req, Request::MoveSession { .. }) && ok);
        seen.refused_moved += usize::from(expect.response == Err(crate::Code::SessionMoved));
        seen.by_movers += usize::from(
            super::sharded_gen::MOVERS.contains(&session)
                && req.is_write()
                && ok
                && !matches!(req, Request::MoveSession { .. }),
        );
    }
}

/// The shards hold exactly the whole tree's records, each on its owner, the same session
/// table, and between them the whole tree's ephemeral sets.
fn check_union(full: &DataTree, shards: &[DataTree], n: u32, at: &str) {
    let mut nodes = BTreeMap::new();
    let mut ephemerals: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for (s, tree) in shards.iter().enumerate() {
        assert!(
            tree.holds_only_owned(s as u32, n),
            "{at}: shard {s} holds others'"
        );
        for (path, node) in &tree.nodes {
            assert!(nodes.insert(path, node).is_none(), "{at}: {path} twice");
        }
        for (session, set) in &tree.ephemerals {
            ephemerals
                .entry(*session)
                .or_default()
                .extend(set.iter().cloned());
        }
        assert_eq!(tree.sessions, full.sessions, "{at}: shard {s}'s sessions");
        assert_eq!(tree.owners, full.owners, "{at}: shard {s}'s session owners");
        assert_eq!(tree.aliases, full.aliases, "{at}: shard {s}'s aliases");
    }
    let whole: BTreeMap<_, _> = full.nodes.iter().collect();
    assert_eq!(nodes, whole, "{at}: the shards' records");
    assert_eq!(ephemerals, full.ephemerals, "{at}: the ephemeral sets");
}

#[test]
fn shards_answer_and_hold_what_the_whole_tree_does() {
    let mut seen = Seen::default();
    for n in SHARD_COUNTS {
        for seed in 0..SEEDS {
            run(seed, n, &mut seen);
        }
    }
    assert_eq!(seen.ops, SHARD_COUNTS.len() * SEEDS as usize * OPS);
    assert!(
        seen.with_views > seen.ops / 4,
        "{} with views",
        seen.with_views
    );
    assert!(seen.ok_writes > seen.ops / 5, "{} writes", seen.ok_writes);
    assert!(seen.max_nodes > 15, "{} nodes at most", seen.max_nodes);
    assert!(seen.moves > seen.ops / 100, "{} moves", seen.moves);
    assert!(
        seen.refused_moved > seen.ops / 100,
        "{} answered SessionMoved",
        seen.refused_moved
    );
    assert!(
        seen.by_movers > seen.ops / 100,
        "{} by movers",
        seen.by_movers
    );
}

#[test]
fn fresh_shards_split_the_fresh_tree() {
    for n in SHARD_COUNTS {
        let shards: Vec<DataTree> = (0..n).map(|s| DataTree::new_shard(s, n)).collect();
        check_union(&DataTree::new(), &shards, n, "fresh");
    }
    assert_eq!(DataTree::new_shard(0, 1), DataTree::new());
}

#[test]
fn one_shard_never_needs_views() {
    let mut rng = Rng::new(7);
    let full = DataTree::new();
    for _ in 0..500 {
        assert!(!needs_views(&op(&mut rng, &full).1, 1));
    }
    assert!(needs_views(&Request::CloseSession, 2));
    assert!(!needs_views(&Request::CreateSession { timeout_ms: 1 }, 2));
    let moved = Request::MoveSession {
        session: 1,
        timeout_ms: 1,
    };
    assert!(!needs_views(&moved, 2));
}

fn sample_view() -> View {
    let mut children = BTreeSet::new();
    children.insert("x".to_string());
    children.insert("job-0000000001".to_string());
    View {
        shard: 3,
        records: vec![
            (
                "/a".into(),
                Some(NodeImage {
                    data: Bytes::from_static(b"hello"),
                    acl: Acl::open_unsafe(),
                    stat: StatPersisted {
                        czxid: 1,
                        mzxid: 2,
                        ctime: -3,
                        mtime: 4,
                        version: 5,
                        cversion: -6,
                        aversion: 7,
                        ephemeral_owner: 0x100,
                        pzxid: i64::MAX,
                    },
                    children,
                }),
            ),
            ("/a/b".into(), None),
        ],
        ephemerals: vec!["/e1".into(), "/q/job-0000000002".into()],
        descendants: 42,
    }
}

#[test]
fn a_view_survives_its_binary_form() {
    for v in [sample_view(), View::default()] {
        assert_eq!(View::decode(&v.encode()), Ok(v));
    }
}

#[test]
fn truncated_or_garbled_views_are_errors() {
    let bytes = sample_view().encode();
    for len in 0..bytes.len() {
        assert!(View::decode(&bytes[..len]).is_err(), "cut at {len}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(View::decode(&longer), Err(ViewError::TrailingBytes(1)));
    let mut format = bytes.clone();
    format[3] = 9;
    assert_eq!(View::decode(&format), Err(ViewError::UnsupportedFormat(9)));
    let mut huge = bytes.clone();
    huge[12..16].copy_from_slice(&i32::MAX.to_be_bytes()); // the record count
    assert!(View::decode(&huge).is_err());
    let mut negative = bytes;
    negative[4] = 0x80; // the shard
    assert_eq!(View::decode(&negative), Err(ViewError::Invalid("shard")));
    // Random bytes and random flips: an error or a view, never a panic.
    let mut rng = Rng::new(99);
    let good = sample_view().encode();
    for _ in 0..20_000 {
        let junk: Vec<u8> = if rng.chance(50) {
            (0..rng.below(64)).map(|_| rng.next() as u8).collect()
        } else {
            let mut b = good.clone();
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
            b
        };
        if let Ok(v) = View::decode(&junk) {
            assert_eq!(View::decode(&v.encode()), Ok(v));
        }
    }
}
