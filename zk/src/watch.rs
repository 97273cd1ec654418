//! One server's watches, kept apart from the tree as ZooKeeper keeps its
//! `WatchManager`s apart from `DataTree`: watches belong to the server a
//! client talks to, the tree to every replica.
//!
//! Like ZooKeeper, there are two tables: data watches (set by getData, and
//! by exists whether or not the node exists) and child watches (set by
//! getChildren). A session holds at most one watch per table and path, so
//! setting the same watch twice yields one event. Watches are one-shot.
//! Events map to tables as in `DataTree`: NodeCreated and NodeDataChanged
//! fire data watches; NodeDeleted fires data and child watches of the path
//! (one event per session); NodeChildrenChanged fires child watches.

use std::collections::{BTreeMap, BTreeSet};

use crate::acl::check_acl;
use crate::code::Code;
use crate::op::{Request, Response, Trigger};
use crate::tree::DataTree;
use crate::types::{perms, EventType};

/// Which read set a watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchKind {
    /// getData; kept in the data table.
    Data,
    /// exists; kept in the data table too (ZooKeeper's server does not tell
    /// the two apart).
    Exist,
    /// getChildren.
    Child,
}

/// A notification for one session (sent with xid -1, zxid -1 and state
/// SyncConnected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedEvent {
    pub event_type: EventType,
    pub path: String,
}

/// Data and child watches: path -> watching sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchTable {
    data: BTreeMap<String, BTreeSet<i64>>,
    child: BTreeMap<String, BTreeSet<i64>>,
}

impl WatchTable {
    pub fn new() -> WatchTable {
        WatchTable::default()
    }

    /// Set a watch for `session` on `path`.
    pub fn register(&mut self, session: i64, path: &str, kind: WatchKind) {
        let table = match kind {
            WatchKind::Data | WatchKind::Exist => &mut self.data,
            WatchKind::Child => &mut self.child,
        };
        table.entry(path.to_string()).or_default().insert(session);
    }

    /// Set the watch a read asked for, given how the tree answered it: an
    /// exists that succeeded or found no node sets an exist watch; a
    /// getData or getChildren that succeeded sets a data or child watch.
    /// Any other outcome (a bad path, `NoAuth`) sets none.
    pub fn register_read(&mut self, session: i64, req: &Request, result: &Result<Response, Code>) {
        match (req, result) {
            (Request::Exists { path, watch: true }, Ok(_) | Err(Code::NoNode)) => {
                self.register(session, path, WatchKind::Exist)
            }
            (Request::GetData { path, watch: true }, Ok(_)) => {
                self.register(session, path, WatchKind::Data)
            }
            (
                Request::GetChildren {
                    path, watch: true, ..
                },
                Ok(_),
            ) => self.register(session, path, WatchKind::Child),
            _ => {}
        }
    }

    /// Fire the watches `triggers` reach, in trigger order and, within one
    /// trigger, in session order; each fired watch is removed. As in
    /// ZooKeeper 3.8, a watcher that may not READ the node under the
    /// trigger's ACL gets no event, but its watch is used up all the same
    /// (sessions act unauthenticated, so that holds for all or none).
    pub fn fire(&mut self, triggers: &[Trigger]) -> Vec<(i64, WatchedEvent)> {
        let mut out = Vec::new();
        for trigger in triggers {
            let readable = check_acl(&trigger.acl, perms::READ).is_ok();
            let mut sessions = BTreeSet::new();
            let (from_data, from_child) = match trigger.event {
                EventType::NodeCreated | EventType::NodeDataChanged => (true, false),
                EventType::NodeDeleted => (true, true),
                EventType::NodeChildrenChanged => (false, true),
            };
            if from_data {
                sessions.extend(self.data.remove(&trigger.path).unwrap_or_default());
            }
            if from_child {
                sessions.extend(self.child.remove(&trigger.path).unwrap_or_default());
            }
            if !readable {
                continue;
            }
            out.extend(sessions.into_iter().map(|s| {
                (
                    s,
                    WatchedEvent {
                        event_type: trigger.event,
                        path: trigger.path.clone(),
                    },
                )
            }));
        }
        out
    }

    /// Forget every watch of a session (its connection is gone).
    pub fn drop_session(&mut self, session: i64) {
        for table in [&mut self.data, &mut self.child] {
            table.retain(|_, sessions| {
                sessions.remove(&session);
                !sessions.is_empty()
            });
        }
    }

    /// Number of (path, session) watches in both tables, as mntr's
    /// `zk_watch_count` counts them.
    pub fn count(&self) -> usize {
        let data: usize = self.data.values().map(BTreeSet::len).sum();
        let child: usize = self.child.values().map(BTreeSet::len).sum();
        data + child
    }

    /// setWatches on reconnect, as `DataTree.setWatches` does it: for each
    /// path, either an event at once or the watch re-armed. A data watch on
    /// a missing node fires NodeDeleted, on a node changed after
    /// `relative_zxid` NodeDataChanged; an exist watch on a node that exists
    /// fires NodeCreated; a child watch on a missing node fires NodeDeleted,
    /// on a node whose children changed after `relative_zxid`
    /// NodeChildrenChanged.
    pub fn set_watches(
        &mut self,
        tree: &DataTree,
        session: i64,
        relative_zxid: i64,
        data: &[String],
        exist: &[String],
        child: &[String],
    ) -> Vec<WatchedEvent> {
        let mut events = Vec::new();
        let event = |event_type, path: &String| WatchedEvent {
            event_type,
            path: path.clone(),
        };
        for path in data {
            match tree.stat(path) {
                None => events.push(event(EventType::NodeDeleted, path)),
                Some(s) if s.mzxid > relative_zxid => {
                    events.push(event(EventType::NodeDataChanged, path))
                }
                Some(_) => self.register(session, path, WatchKind::Data),
            }
        }
        for path in exist {
            match tree.stat(path) {
                Some(_) => events.push(event(EventType::NodeCreated, path)),
                None => self.register(session, path, WatchKind::Exist),
            }
        }
        for path in child {
            match tree.stat(path) {
                None => events.push(event(EventType::NodeDeleted, path)),
                Some(s) if s.pzxid > relative_zxid => {
                    events.push(event(EventType::NodeChildrenChanged, path))
                }
                Some(_) => self.register(session, path, WatchKind::Child),
            }
        }
        events
    }
}
