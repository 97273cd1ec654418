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
