//! Watches: which reads set them, which changes fire them, one-shot.

use super::*;
use crate::{EventType, WatchKind, WatchTable, WatchedEvent};

fn ev(event_type: EventType, path: &str) -> WatchedEvent {
    WatchedEvent {
        event_type,
        path: path.to_string(),
    }
}

/// Run a read for `session` and register the watch it asks for.
fn watch_read(t: &mut T, w: &mut WatchTable, session: i64, req: Request) -> Code {
    let applied = t.run(session, req.clone());
    w.register_read(session, &req, &applied.response);
    code(&applied)
}

/// Run a write and fire what it triggers.
fn write_fire(t: &mut T, w: &mut WatchTable, req: Request) -> Vec<(i64, WatchedEvent)> {
    let applied = t.run(S1, req);
    w.fire(&applied.triggers)
}

#[test]
fn exists_watch_on_missing_node_fires_node_created() {
    let (mut t, mut w) = (T::new(), WatchTable::new());
    assert_eq!(
        watch_read(&mut t, &mut w, S2, exists("/a", true)),
        Code::NoNode
    );
    assert_eq!(w.count(), 1);
    let fired = write_fire(&mut t, &mut w, create("/a", b"", CreateMode::Persistent));
    assert_eq!(fired, vec![(S2, ev(EventType::NodeCreated, "/a"))]);
    assert_eq!(w.count(), 0);
}

#[test]
fn data_watch_is_one_shot_and_set_once() {
    let (mut t, mut w) = (T::new(), WatchTable::new());
    t.mk("/a", CreateMode::Persistent);
    watch_read(&mut t, &mut w, S2, get_data("/a", true));
    watch_read(&mut t, &mut w, S2, get_data("/a", true));
    watch_read(&mut t, &mut w, S2, exists("/a", true));
    assert_eq!(w.count(), 1);
    let fired = write_fire(&mut t, &mut w, set_data("/a", b"1", -1));
    assert_eq!(fired, vec![(S2, ev(EventType::NodeDataChanged, "/a"))]);
    assert!(write_fire(&mut t, &mut w, set_data("/a", b"2", -1)).is_empty());
}

#[test]
fn child_watch_fires_on_child_create_and_delete_once() {
    let (mut t, mut w) = (T::new(), WatchTable::new());
    t.mk("/p", CreateMode::Persistent);
    watch_read(&mut t, &mut w, S1, get_children("/p", true));
    watch_read(&mut t, &mut w, S2, get_children("/p", true));
    // a data change of the parent fires no child watch
    assert!(write_fire(&mut t, &mut w, set_data("/p", b"x", -1)).is_empty());
    let fired = write_fire(&mut t, &mut w, create("/p/c", b"", CreateMode::Persistent));
    assert_eq!(
        fired,
        vec![
            (S1, ev(EventType::NodeChildrenChanged, "/p")),
            (S2, ev(EventType::NodeChildrenChanged, "/p")),
        ]
    );
    assert!(write_fire(&mut t, &mut w, delete("/p/c", -1)).is_empty());
    watch_read(&mut t, &mut w, S2, get_children("/p", true));
    let fired = write_fire(&mut t, &mut w, create("/p/d", b"", CreateMode::Persistent));
    assert_eq!(fired, vec![(S2, ev(EventType::NodeChildrenChanged, "/p"))]);
    watch_read(&mut t, &mut w, S1, get_children("/p", true));
    let fired = write_fire(&mut t, &mut w, delete("/p/d", -1));
    assert_eq!(fired, vec![(S1, ev(EventType::NodeChildrenChanged, "/p"))]);
}

#[test]
fn delete_fires_data_exist_and_child_watches_once_per_session() {
    let (mut t, mut w) = (T::new(), WatchTable::new());
    t.mk("/p", CreateMode::Persistent);
    t.mk("/p/c", CreateMode::Persistent);
    watch_read(&mut t, &mut w, S1, get_data("/p/c", true));
    watch_read(&mut t, &mut w, S1, get_children("/p/c", true));
    watch_read(&mut t, &mut w, S2, exists("/p/c", true));
    watch_read(&mut t, &mut w, S2, get_children("/p", true));
    assert_eq!(w.count(), 4);
    let fired = write_fire(&mut t, &mut w, delete("/p/c", -1));
    assert_eq!(
        fired,
        vec![
            (S1, ev(EventType::NodeDeleted, "/p/c")),
            (S2, ev(EventType::NodeDeleted, "/p/c")),
            (S2, ev(EventType::NodeChildrenChanged, "/p")),
        ]
    );
    assert_eq!(w.count(), 0);
}

#[test]
fn refused_reads_set_no_watch() {
    let (mut t, mut w) = (T::new(), WatchTable::new());
    assert_eq!(
        watch_read(&mut t, &mut w, S1, get_data("/none", true)),
        Code::NoNode
    );
    assert_eq!(
        watch_read(&mut t, &mut w, S1, get_children("/none", true)),
        Code::NoNode
    );
    assert_eq!(
        watch_read(&mut t, &mut w, S1, exists("/bad\0", true)),
        Code::BadArguments
    );
    assert_eq!(
        watch_read(&mut t, &mut w, S1, exists("/x", false)),
        Code::NoNode
    );
    assert_eq!(w.count(), 0);
}

#[test]
fn drop_session_forgets_its_watches() {
    let mut w = WatchTable::new();
    w.register(S1, "/a", WatchKind::Data);
    w.register(S1, "/a", WatchKind::Child);
    w.register(S2, "/a", WatchKind::Exist);
    assert_eq!(w.count(), 3);
    w.drop_session(S1);
    assert_eq!(w.count(), 1);
    let trig = crate::Trigger {
        path: "/a".to_string(),
        event: EventType::NodeDeleted,
        acl: crate::Acl::open_unsafe(),
    };
    assert_eq!(
        w.fire(&[trig]),
        vec![(S2, ev(EventType::NodeDeleted, "/a"))]
    );
}

#[test]
fn set_watches_on_reconnect() {
    let (mut t, mut w) = (T::new(), WatchTable::new());
    t.mk("/old", CreateMode::Persistent); // 1
    t.mk("/new", CreateMode::Persistent); // 2
    t.run(S1, set_data("/new", b"x", -1)); // 3
    t.mk("/new/c", CreateMode::Persistent); // 4
    let s = |v: &[&str]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    let events = w.set_watches(
        &t.tree,
        S2,
        2,
        &s(&["/old", "/new", "/gone"]),
        &s(&["/old", "/later"]),
        &s(&["/old", "/new", "/gone"]),
    );
    assert_eq!(
        events,
        vec![
            ev(EventType::NodeDataChanged, "/new"),
            ev(EventType::NodeDeleted, "/gone"),
            ev(EventType::NodeCreated, "/old"),
            ev(EventType::NodeChildrenChanged, "/new"),
            ev(EventType::NodeDeleted, "/gone"),
        ]
    );
    // re-armed: data /old, exist /later, child /old
    assert_eq!(w.count(), 3);
    let fired = write_fire(
        &mut t,
        &mut w,
        create("/later", b"", CreateMode::Persistent),
    );
    assert_eq!(fired, vec![(S2, ev(EventType::NodeCreated, "/later"))]);
}
