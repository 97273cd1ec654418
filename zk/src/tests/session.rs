//! Sessions: registration, and closing (or expiring) one deletes its
//! ephemerals in one step with the triggers for each deletion.

use super::*;
use crate::{EventType, Trigger, WatchTable, WatchedEvent};

#[test]
fn sessions_are_listed_with_timeouts() {
    let mut t = T::new();
    t.run(S2, Request::CreateSession { timeout_ms: 4000 });
    t.run(S1, Request::CreateSession { timeout_ms: 30_000 });
    assert_eq!(t.tree.sessions(), vec![(S1, 30_000), (S2, 4000)]);
    assert_eq!(t.tree.last_zxid(), 2);
    t.run(S2, Request::CreateSession { timeout_ms: 6000 });
    assert_eq!(t.tree.sessions(), vec![(S1, 30_000), (S2, 6000)]);
}

#[test]
fn close_session_deletes_its_ephemerals_with_triggers() {
    let mut t = T::new();
    t.run(S1, Request::CreateSession { timeout_ms: 10_000 }); // 1
    t.run(S2, Request::CreateSession { timeout_ms: 10_000 }); // 2
    t.mk("/e", CreateMode::Persistent); // 3
    t.run(S1, create("/e/b", b"", CreateMode::Ephemeral)); // 4
    t.run(S1, create("/e/a", b"", CreateMode::Ephemeral)); // 5
    t.run(S1, create("/top", b"", CreateMode::Ephemeral)); // 6
    t.run(S2, create("/e/other", b"", CreateMode::Ephemeral)); // 7
    let mut watches = WatchTable::new();
    let get = get_data("/e/a", true);
    let read = t.run(S2, get.clone());
    watches.register_read(S2, &get, &read.response);

    let applied = t.run(S1, Request::CloseSession); // 8
    assert_eq!(applied.response, Ok(Response::Empty));
    let trig = |p: &str, event| Trigger {
        path: p.to_string(),
        event,
        acl: crate::Acl::open_unsafe(),
    };
    assert_eq!(
        applied.triggers,
        vec![
            trig("/e/a", EventType::NodeDeleted),
            trig("/e", EventType::NodeChildrenChanged),
            trig("/e/b", EventType::NodeDeleted),
            trig("/e", EventType::NodeChildrenChanged),
            trig("/top", EventType::NodeDeleted),
            trig("/", EventType::NodeChildrenChanged),
        ]
    );
    assert_eq!(t.tree.stat("/e/a"), None);
    assert_eq!(t.tree.stat("/top"), None);
    assert_eq!(t.tree.children("/e"), Some(vec!["other".to_string()]));
    let e = t.stat("/e");
    assert_eq!((e.pzxid, e.cversion, e.num_children), (8, 5, 1));
    assert_eq!(t.stat("/").pzxid, 8);
    assert!(t.tree.ephemerals(S1).is_empty());
    assert_eq!(t.tree.ephemerals(S2), vec!["/e/other".to_string()]);
    assert_eq!(t.tree.sessions(), vec![(S2, 10_000)]);
    assert_eq!(
        watches.fire(&applied.triggers),
        vec![(
            S2,
            WatchedEvent {
                event_type: EventType::NodeDeleted,
                path: "/e/a".to_string()
            }
        )]
    );
    // an ephemeral create for the closed session now fails
    let again = create("/z", b"", CreateMode::Ephemeral);
    assert_eq!(code(&t.run(S1, again)), Code::SessionExpired);
}

#[test]
fn close_unknown_session_changes_nothing() {
    let mut t = T::new();
    let digest = t.tree.digest();
    let applied = t.run(S1, Request::CloseSession);
    assert_eq!(applied.response, Ok(Response::Empty));
    assert!(applied.triggers.is_empty());
    assert_eq!(t.tree.digest(), digest);
    assert_eq!(t.tree.last_zxid(), 1);
}

#[test]
fn get_ephemerals_filters_by_prefix() {
    let mut t = T::new();
    t.run(S1, Request::CreateSession { timeout_ms: 10_000 });
    t.mk("/a", CreateMode::Persistent);
    t.mk("/a/e1", CreateMode::Ephemeral);
    t.mk("/b", CreateMode::Ephemeral);
    let get = |t: &mut T, prefix: &str| {
        t.run(
            S1,
            Request::GetEphemerals {
                prefix: prefix.to_string(),
            },
        )
        .response
    };
    let all = Response::Ephemerals(vec!["/a/e1".to_string(), "/b".to_string()]);
    assert_eq!(get(&mut t, ""), Ok(all.clone()));
    assert_eq!(get(&mut t, " / "), Ok(all));
    assert_eq!(
        get(&mut t, "/a"),
        Ok(Response::Ephemerals(vec!["/a/e1".to_string()]))
    );
    assert_eq!(get(&mut t, "/c"), Ok(Response::Ephemerals(vec![])));
    let other = t.run(
        S2,
        Request::GetEphemerals {
            prefix: String::new(),
        },
    );
    assert_eq!(other.response, Ok(Response::Ephemerals(vec![])));
}
