//! The hub against ZooKeeper's watch rules, fed as a server's feed would feed it.

use super::*;

fn entry(pos: u64, event: EventType, path: &str) -> FeedEntry {
    FeedEntry {
        pos,
        zxid: pos as i64,
        event,
        path: path.into(),
        readable: true,
    }
}

fn feed(after: u64, upto: u64, entries: Vec<FeedEntry>) -> FeedIn {
    FeedIn {
        after,
        upto,
        entries,
        gap: false,
    }
}

fn ev(event_type: EventType, path: &str) -> WatchedEvent {
    WatchedEvent {
        event_type,
        path: path.into(),
    }
}

#[test]
fn a_watch_fires_once_on_the_first_later_trigger_of_its_table() {
    let mut hub = WatchHub::new(0);
    hub.on_feed(0, feed(0, 10, vec![]), 0);
    assert_eq!(hub.arm(1, "/a", WatchKind::Data, 10), Armed::Waiting);
    assert_eq!(hub.arm(2, "/a", WatchKind::Child, 10), Armed::Waiting);
    assert_eq!(hub.arm(3, "/b", WatchKind::Exist, 10), Armed::Waiting);
    assert!(hub.watching(1));
    // A child change fires only the child watch; a data change only data watches.
    let f = hub.on_feed(
        0,
        feed(
            10,
            12,
            vec![
                entry(11, EventType::NodeChildrenChanged, "/a"),
                entry(12, EventType::NodeDataChanged, "/a"),
            ],
        ),
        1,
    );
    assert_eq!(
        f.events,
        vec![
            (2, ev(EventType::NodeChildrenChanged, "/a")),
            (1, ev(EventType::NodeDataChanged, "/a"))
        ]
    );
    // One-shot: the same triggers again fire nothing.
    let f = hub.on_feed(
        0,
        feed(12, 13, vec![entry(13, EventType::NodeDataChanged, "/a")]),
        2,
    );
    assert!(f.events.is_empty());
    assert!(!hub.watching(1) && !hub.watching(2) && hub.watching(3));
    // An exist watch fires on the create.
    let f = hub.on_feed(
        0,
        feed(13, 14, vec![entry(14, EventType::NodeCreated, "/b")]),
        3,
    );
    assert_eq!(f.events, vec![(3, ev(EventType::NodeCreated, "/b"))]);
    assert_eq!(hub.count(), 0);
}

#[test]
fn a_delete_fires_data_and_child_watches_once_per_session() {
    let mut hub = WatchHub::new(0);
    hub.on_feed(0, feed(0, 5, vec![]), 0);
    hub.arm(7, "/x", WatchKind::Data, 5);
    hub.arm(7, "/x", WatchKind::Child, 5);
    hub.arm(7, "/x", WatchKind::Data, 5);
    assert_eq!(hub.count(), 2);
    let f = hub.on_feed(
        0,
        feed(5, 6, vec![entry(6, EventType::NodeDeleted, "/x")]),
        1,
    );
    assert_eq!(f.events, vec![(7, ev(EventType::NodeDeleted, "/x"))]);
}

#[test]
fn triggers_at_or_before_the_watch_do_not_fire_it() {
    let mut hub = WatchHub::new(0);
    hub.on_feed(0, feed(0, 5, vec![]), 0);
    hub.arm(1, "/a", WatchKind::Data, 8);
    let f = hub.on_feed(
        0,
        feed(
            5,
            9,
            vec![
                entry(7, EventType::NodeDataChanged, "/a"),
                entry(8, EventType::NodeDataChanged, "/a"),
                entry(9, EventType::NodeDataChanged, "/a"),
            ],
        ),
        1,
    );
    assert_eq!(f.events, vec![(1, ev(EventType::NodeDataChanged, "/a"))]);
}

#[test]
fn a_watch_armed_after_the_feed_passed_its_trigger_fires_at_once() {
    let mut hub = WatchHub::new(0);
    hub.on_feed(0, feed(0, 5, vec![]), 0);
    hub.on_feed(
        0,
        feed(
            5,
            9,
            vec![
                entry(6, EventType::NodeDataChanged, "/a"),
                entry(8, EventType::NodeChildrenChanged, "/a"),
                entry(9, EventType::NodeDataChanged, "/a"),
            ],
        ),
        1,
    );
    // Set by a read at 7: the data change at 9 fired it (the child change at 8 is not its
    // table's).
    assert_eq!(
        hub.arm(1, "/a", WatchKind::Data, 7),
        Armed::Fired(Some(ev(EventType::NodeDataChanged, "/a")))
    );
    assert_eq!(
        hub.arm(1, "/a", WatchKind::Child, 7),
        Armed::Fired(Some(ev(EventType::NodeChildrenChanged, "/a")))
    );
    assert_eq!(hub.arm(1, "/a", WatchKind::Data, 9), Armed::Waiting);
    assert_eq!(hub.arm(2, "/a", WatchKind::Data, 4), Armed::Unknown);
}

#[test]
fn answers_from_several_servers_overlap_and_count_once() {
    let mut hub = WatchHub::new(0);
    hub.on_feed(0, feed(0, 5, vec![]), 0);
    hub.arm(1, "/a", WatchKind::Data, 5);
    let both = vec![entry(6, EventType::NodeDataChanged, "/a")];
    let f = hub.on_feed(0, feed(5, 6, both.clone()), 1);
    assert_eq!(f.events.len(), 1);
    hub.arm(1, "/a", WatchKind::Data, 6);
    // A slower server's answer covering the same position again fires nothing.
    assert!(hub.on_feed(0, feed(5, 6, both), 2).events.is_empty());
    // One that covers more is taken from where the hub is.
    let f = hub.on_feed(
        0,
        feed(
            4,
            7,
            vec![
                entry(6, EventType::NodeDataChanged, "/a"),
                entry(7, EventType::NodeDataChanged, "/a"),
            ],
        ),
        3,
    );
    assert_eq!(f.events.len(), 1);
    assert_eq!(hub.upto(0), Some(7));
}

#[test]
fn sharded_feeds_take_each_trigger_from_its_owner_only() {
    let shards = 3;
    let mut hub = WatchHub::new(shards);
    let path = "/owned";
    let owner = mason_zk::shard::owner(path, shards);
    let other = (owner + 1) % shards;
    for s in 0..shards {
        hub.on_feed(s, feed(0, 1, vec![]), 0);
    }
    hub.arm(1, path, WatchKind::Data, 1);
    // The other shard reports it too (an op that touched both): ignored there.
    let f = hub.on_feed(
        other,
        feed(1, 2, vec![entry(2, EventType::NodeDataChanged, path)]),
        1,
    );
    assert!(f.events.is_empty());
    let f = hub.on_feed(
        owner,
        feed(1, 2, vec![entry(2, EventType::NodeDataChanged, path)]),
        1,
    );
    assert_eq!(f.events.len(), 1);
}

#[test]
fn an_unreadable_trigger_uses_the_watch_up_silently() {
    let mut hub = WatchHub::new(0);
    hub.on_feed(0, feed(0, 1, vec![]), 0);
    hub.arm(1, "/s", WatchKind::Data, 1);
    let mut e = entry(2, EventType::NodeDataChanged, "/s");
    e.readable = false;
    let f = hub.on_feed(0, feed(1, 2, vec![e]), 1);
    assert!(f.events.is_empty());
    assert!(!hub.watching(1));
}

#[test]
fn a_gap_loses_the_shards_watches_once_the_feed_stalls() {
    let mut hub = WatchHub::new(0);
    hub.on_feed(0, feed(0, 5, vec![]), 0);
    hub.arm(1, "/a", WatchKind::Data, 5);
    hub.arm(2, "/b", WatchKind::Child, 5);
    let gap = |upto| FeedIn {
        after: 5,
        upto,
        entries: vec![],
        gap: true,
    };
    // Soon after progress, a gap from one server is not believed yet.
    assert!(hub.on_feed(0, gap(50), 10).lost.is_empty());
    assert!(hub.watching(1));
    let f = hub.on_feed(0, gap(50), GAP_PATIENCE_US + 10);
    assert_eq!(f.lost, vec![1, 2]);
    assert_eq!(hub.count(), 0);
    assert_eq!(hub.upto(0), Some(50));
}

#[test]
fn a_dropped_session_gets_nothing() {
    let mut hub = WatchHub::new(0);
    hub.on_feed(0, feed(0, 1, vec![]), 0);
    hub.arm(1, "/a", WatchKind::Data, 1);
    hub.arm(2, "/a", WatchKind::Data, 1);
    hub.drop_session(1);
    let f = hub.on_feed(
        0,
        feed(1, 2, vec![entry(2, EventType::NodeDataChanged, "/a")]),
        1,
    );
    assert_eq!(f.events, vec![(2, ev(EventType::NodeDataChanged, "/a"))]);
}

/// A random run of the hub against a model of ZooKeeper's watches. Each shard has a
/// history of triggers by position (a sharded history also reports triggers of paths it
/// does not own, as a touched non-owner shard does). Three servers per shard answer polls
/// as the network delivers them: lagging, from stale positions, repeated, cut into
/// pieces. Sessions arm watches at positions the feed has reached (as the runtime does),
/// in position order per watch. The model replays, shard by shard in position order,
/// the triggers at each position (firing the watches registered in their tables, one
/// event per session) and then the arms at it (registering; one watch per session,
/// table and path). The hub must send exactly the model's events and hold exactly its
/// watches at the end.
fn run_model(seed: u64, shards: u32) {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    const N: u64 = 300;
    const SESSIONS: i64 = 4;
    let mut rng = StdRng::seed_from_u64(seed);
    let paths = ["/a", "/b", "/c", "/a/x", "/b/y", "/d", "/e", "/f", "/g/h"];
    let events = [
        EventType::NodeCreated,
        EventType::NodeDeleted,
        EventType::NodeDataChanged,
        EventType::NodeChildrenChanged,
    ];
    let feeds = shards.max(1);
    let owner = |p: &str| {
        if shards == 0 {
            0
        } else {
            mason_zk::shard::owner(p, shards)
        }
    };
    let mut logs: Vec<Vec<FeedEntry>> = vec![Vec::new(); feeds as usize];
    for (s, log) in logs.iter_mut().enumerate() {
        for pos in 1..=N {
            for _ in 0..rng.gen_range(0..3) {
                let path = paths[rng.gen_range(0..paths.len())];
                // A sharded feed mostly reports its own paths, and some of others'.
                if shards > 0 && owner(path) != s as u32 && rng.gen_bool(0.5) {
                    continue;
                }
                log.push(FeedEntry {
                    pos,
                    zxid: pos as i64,
                    event: events[rng.gen_range(0..events.len())],
                    path: path.into(),
                    readable: rng.gen_bool(0.9),
                });
            }
        }
    }
    let answer = |log: &[FeedEntry], after: u64, upto: u64| FeedIn {
        after,
        upto,
        entries: log
            .iter()
            .filter(|e| e.pos > after && e.pos <= upto)
            .cloned()
            .collect(),
        gap: false,
    };
    let mut hub = WatchHub::new(shards);
    for s in 0..feeds {
        hub.on_feed(s, answer(&[], 0, 0), 0);
    }
    // Where each server has applied up to.
    let mut servers = vec![[0u64; 3]; feeds as usize];
    let mut arms: Vec<(i64, String, WatchKind, u64)> = Vec::new();
    let mut last_arm: std::collections::HashMap<(i64, String, bool), u64> = Default::default();
    let mut got: Vec<(i64, WatchedEvent)> = Vec::new();
    let mut now = 1;
    for _ in 0..3000 {
        now += 1;
        if rng.gen_bool(0.6) {
            let s = rng.gen_range(0..feeds) as usize;
            let i = rng.gen_range(0..3);
            servers[s][i] = (servers[s][i] + rng.gen_range(0..4)).min(N);
            let hub_at = hub.upto(s as u32).unwrap_or(0);
            // From the hub's position, or from a stale one (an old poll's answer).
            let after = if rng.gen_bool(0.8) {
                hub_at
            } else {
                hub_at.saturating_sub(rng.gen_range(0..20))
            };
            let upto = servers[s][i].max(after);
            let a = answer(&logs[s], after, upto);
            got.extend(hub.on_feed(s as u32, a, now).events);
            if rng.gen_bool(0.1) {
                // The same answer again.
                got.extend(
                    hub.on_feed(s as u32, answer(&logs[s], after, upto), now)
                        .events,
                );
            }
        } else {
            let session = rng.gen_range(1..=SESSIONS);
            let path = paths[rng.gen_range(0..paths.len())];
            let kind = [WatchKind::Data, WatchKind::Exist, WatchKind::Child][rng.gen_range(0..3)];
            let reached = hub.upto(owner(path)).unwrap_or(0);
            let key = (session, path.to_string(), kind == WatchKind::Child);
            let low = last_arm.get(&key).copied().unwrap_or(0);
            if reached < low {
                continue;
            }
            let pos = rng.gen_range(low.max(reached.saturating_sub(25))..=reached);
            last_arm.insert(key, pos);
            match hub.arm(session, path, kind, pos) {
                Armed::Fired(Some(e)) => got.push((session, e)),
                Armed::Fired(None) | Armed::Waiting => {}
                Armed::Unknown => panic!("seed {seed}: a watch at {pos} could not be decided"),
            }
            arms.push((session, path.to_string(), kind, pos));
        }
    }
    for (s, log) in logs.iter().enumerate() {
        let at = hub.upto(s as u32).unwrap_or(0);
        got.extend(hub.on_feed(s as u32, answer(log, at, N), now + 1).events);
    }
    // The model, shard by shard in position order.
    let mut want: Vec<(i64, WatchedEvent)> = Vec::new();
    let mut held = 0;
    for s in 0..feeds {
        // (session, path, child table?) registered.
        let mut reg: std::collections::BTreeSet<(i64, String, bool)> = Default::default();
        for pos in 0..=N {
            for e in logs[s as usize]
                .iter()
                .filter(|e| e.pos == pos && owner(&e.path) == s)
            {
                let tables: &[bool] = match e.event {
                    EventType::NodeCreated | EventType::NodeDataChanged => &[false],
                    EventType::NodeDeleted => &[false, true],
                    EventType::NodeChildrenChanged => &[true],
                };
                let mut hit = std::collections::BTreeSet::new();
                reg.retain(|(session, p, child)| {
                    let fire = *p == e.path && tables.contains(child);
                    if fire {
                        hit.insert(*session);
                    }
                    !fire
                });
                if e.readable {
                    want.extend(
                        hit.into_iter()
                            .map(|session| (session, ev(e.event, &e.path))),
                    );
                }
            }
            for (session, path, kind, _) in arms
                .iter()
                .filter(|(_, p, _, at)| *at == pos && owner(p) == s)
            {
                reg.insert((*session, path.clone(), *kind == WatchKind::Child));
            }
        }
        held += reg.len();
    }
    let key = |v: &mut Vec<(i64, WatchedEvent)>| {
        v.sort_by(|a, b| {
            (a.0, &a.1.path, a.1.event_type.code()).cmp(&(b.0, &b.1.path, b.1.event_type.code()))
        })
    };
    key(&mut got);
    key(&mut want);
    assert!(arms.len() > 100, "seed {seed}: {} arms", arms.len());
    if got != want {
        let (mut extra, mut missing) = (got.clone(), Vec::new());
        for w in &want {
            match extra.iter().position(|g| g == w) {
                Some(i) => {
                    extra.remove(i);
                }
                None => missing.push(w.clone()),
            }
        }
        panic!(
            "seed {seed}, {shards} shards: {} events, the model {}; extra {extra:?}, missing {missing:?}",
            got.len(),
            want.len()
        );
    }
    assert_eq!(
        hub.count(),
        held,
        "seed {seed}, {shards} shards: watches held"
    );
}

#[test]
fn watches_fire_as_zookeepers_whatever_order_the_feeds_come_in() {
    let mut events = 0;
    for seed in 0..30 {
        for shards in [0, 3] {
            run_model(seed, shards);
            events += 1;
        }
    }
    assert_eq!(events, 60);
}
