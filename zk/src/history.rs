//! The per-znode linearizability check of a ZooKeeper run, from the clients' records.
//!
//! Every acknowledged op on a znode leaves an [`Event`]: when its client sent it, when the
//! answer came, and the znode version it wrote (setData, create) or saw (getData, exists).
//! A znode's life is told apart from a later one at the same path by its czxid. On each
//! znode the check asks what ZooKeeper promises a linearizable object:
//! - every acknowledged write got a version of its own;
//! - an op sent after another was answered sees it: a write gets a higher version than
//!   anything answered before it was sent, and a read at least as high a one (so a read
//!   never misses a write answered before it, and two reads in real time never go back).
//!
//! [`check_final`] looks at a replica's tree after the run: acknowledged creates are
//! there and listed by their parents, acknowledged deletes are gone, and closed or expired
//! sessions left no ephemerals.
//!
//! Sent and answered times must come from one clock (CLOCK_MONOTONIC is one per machine).
//! The sweep sorts a znode's events by answer time once and walks them by send time, so
//! the check is O(n log n) over the whole run.

use crate::path;
use crate::DataTree;
use std::collections::{BTreeMap, HashSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The op wrote `version` (a setData's new version; 0 for a create).
    Write,
    /// The op saw `version` (getData, exists).
    Read,
}

/// One acknowledged op on one znode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub path: String,
    /// The znode's czxid: which life of the path this op is about.
    pub czxid: i64,
    pub access: Access,
    pub version: i32,
    pub sent_us: u64,
    pub answered_us: u64,
    /// Who sent it (for the report).
    pub client: u64,
}

/// What the check covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Covered {
    pub znodes: usize,
    pub writes: usize,
    pub reads: usize,
}

/// The first op found to break linearizability, and the op it contradicts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("{path}: version {version} written twice (clients {first} and {second})")]
    VersionTwice {
        path: String,
        version: i32,
        first: u64,
        second: u64,
    },
    #[error(
        "{path}: client {client}'s {access:?} sent at {sent_us} us got version {version}, \
         but client {by}'s op answered at {answered_us} us had version {seen} already"
    )]
    WentBack {
        path: String,
        client: u64,
        access: Access,
        sent_us: u64,
        version: i32,
        by: u64,
        answered_us: u64,
        seen: i32,
    },
    #[error("{path}: client {client}'s op was answered at {answered_us} us, before it was sent at {sent_us} us")]
    AnsweredBeforeSent {
        path: String,
        client: u64,
        sent_us: u64,
        answered_us: u64,
    },
}

/// What a replica's tree must show after a run.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    /// Paths whose create was acknowledged, and that no op of the run deleted or may
    /// have deleted.
    pub created: Vec<String>,
    /// Paths whose delete was acknowledged, and that no later op created again.
    pub deleted: Vec<String>,
    /// Sessions closed or expired during the run.
    pub closed: Vec<i64>,
}

/// A way the final tree contradicts what was acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    #[error("{0}: created and acknowledged, but not in the tree")]
    Created(String),
    #[error("{0}: in the tree, but its parent does not list it")]
    Unlisted(String),
    #[error("{0}: deleted and acknowledged, but still in the tree or its parent's children")]
    Deleted(String),
    #[error("{path}: an ephemeral of closed session {session:#x} is still there")]
    Ephemeral { path: String, session: i64 },
    #[error("session {0:#x} was closed, but the tree still knows it")]
    Session(i64),
}

/// Checks `tree` against what the run acknowledged.
pub fn check_final(tree: &DataTree, expected: &Expected) -> Result<(), Missing> {
    let listed = |p: &str| {
        let Some(parent) = path::parent(p) else {
            return false;
        };
        let name = path::name(p);
        tree.children(parent)
            .is_some_and(|c| c.iter().any(|n| n == name))
    };
    for p in &expected.created {
        if tree.stat(p).is_none() {
            return Err(Missing::Created(p.clone()));
        }
        if !listed(p) {
            return Err(Missing::Unlisted(p.clone()));
        }
    }
    for p in &expected.deleted {
        if tree.stat(p).is_some() || listed(p) {
            return Err(Missing::Deleted(p.clone()));
        }
    }
    let open: HashSet<i64> = tree.sessions().into_iter().map(|(s, _)| s).collect();
    let closed: HashSet<i64> = expected.closed.iter().copied().collect();
    if let Some(s) = closed.iter().find(|s| open.contains(s)) {
        return Err(Missing::Session(*s));
    }
    // Every node, by walking the tree (an ephemeral's owner is in its Stat).
    let mut stack = vec!["/".to_string()];
    while let Some(p) = stack.pop() {
        if let Some(session) = tree.stat(&p).map(|st| st.ephemeral_owner) {
            if closed.contains(&session) {
                return Err(Missing::Ephemeral { path: p, session });
            }
        }
        for c in tree.children(&p).unwrap_or_default() {
            stack.push(if p == "/" {
                format!("/{c}")
            } else {
                format!("{p}/{c}")
            });
        }
    }
    Ok(())
}

/// What reads promise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// Through the log (or after a ReadIndex round): a read sees every write answered
    /// before it was sent, by anyone.
    Linearizable,
    /// From one replica that has applied what the reading session has seen (ZooKeeper's
    /// reads, `--zk-reads local` on ZK-Mason): a read sees every op of its own session
    /// answered before it was sent, and never less than those showed; writes stay
    /// linearizable.
    Sequential,
}

/// Checks every znode's events; the first violation found is returned.
pub fn check(events: &[Event]) -> Result<Covered, Violation> {
    check_reads(events, Reads::Linearizable)
}

/// As [`check`], with reads held to `reads`.
pub fn check_reads(events: &[Event], reads: Reads) -> Result<Covered, Violation> {
    let mut by_znode: BTreeMap<(&str, i64), Vec<&Event>> = BTreeMap::new();
    let mut covered = Covered::default();
    for e in events {
        if e.answered_us < e.sent_us {
            return Err(Violation::AnsweredBeforeSent {
                path: e.path.clone(),
                client: e.client,
                sent_us: e.sent_us,
                answered_us: e.answered_us,
            });
        }
        match e.access {
            Access::Write => covered.writes += 1,
            Access::Read => covered.reads += 1,
        }
        by_znode.entry((&e.path, e.czxid)).or_default().push(e);
    }
    covered.znodes = by_znode.len();
    for ops in by_znode.values_mut() {
        check_znode(ops, reads)?;
        if reads == Reads::Sequential {
            let mut by_client: BTreeMap<u64, Vec<&Event>> = BTreeMap::new();
            for e in ops.iter() {
                by_client.entry(e.client).or_default().push(e);
            }
            for mine in by_client.values_mut() {
                sweep(mine, |e| e.access == Access::Read)?;
            }
        }
    }
    Ok(covered)
}

fn check_znode(ops: &mut [&Event], reads: Reads) -> Result<(), Violation> {
    let mut written: HashSet<i32> = HashSet::new();
    let mut writers: BTreeMap<i32, u64> = BTreeMap::new();
    for e in ops.iter().filter(|e| e.access == Access::Write) {
        if !written.insert(e.version) {
            return Err(Violation::VersionTwice {
                path: e.path.clone(),
                version: e.version,
                first: writers.get(&e.version).copied().unwrap_or_default(),
                second: e.client,
            });
        }
        writers.insert(e.version, e.client);
    }
    // Every op sees what was answered before it was sent; with sequential reads, only
    // the writes are held to that here (the reads are, per session, by the caller).
    let linearizable = reads == Reads::Linearizable;
    sweep(ops, |e| linearizable || e.access == Access::Write)
}

/// Walks `ops` by send time: each op for which `checked` holds must see (read at least,
/// write above) the highest version among the ops answered before it was sent.
fn sweep(ops: &mut [&Event], checked: impl Fn(&Event) -> bool) -> Result<(), Violation> {
    let mut by_answer: Vec<&Event> = ops.to_vec();
    by_answer.sort_by_key(|e| e.answered_us);
    ops.sort_by_key(|e| e.sent_us);
    // The highest version among the ops answered so far (before the current send time).
    let mut highest: Option<&Event> = None;
    let mut next = 0;
    for e in ops.iter() {
        while next < by_answer.len() && by_answer[next].answered_us < e.sent_us {
            let a = by_answer[next];
            if highest.is_none_or(|h| a.version > h.version) {
                highest = Some(a);
            }
            next += 1;
        }
        if !checked(e) {
            continue;
        }
        let Some(h) = highest else {
            continue;
        };
        let ok = match e.access {
            Access::Write => e.version > h.version,
            Access::Read => e.version >= h.version,
        };
        if !ok {
            return Err(Violation::WentBack {
                path: e.path.clone(),
                client: e.client,
                access: e.access,
                sent_us: e.sent_us,
                version: e.version,
                by: h.client,
                answered_us: h.answered_us,
                seen: h.version,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(access: Access, version: i32, sent_us: u64, answered_us: u64, client: u64) -> Event {
        Event {
            path: "/a/b".into(),
            czxid: 7,
            access,
            version,
            sent_us,
            answered_us,
            client,
        }
    }
    use Access::{Read, Write};

    #[test]
    fn a_linearizable_history_passes() {
        let h = [
            ev(Write, 0, 0, 5, 1),   // the create
            ev(Write, 2, 10, 30, 2), // overlaps the next write: either order
            ev(Write, 1, 12, 20, 3),
            ev(Read, 1, 15, 16, 4), // overlaps both writes: may see v1
            ev(Read, 2, 31, 40, 4),
            ev(Read, 2, 41, 45, 5),
        ];
        let c = check(&h).expect("linearizable");
        assert_eq!((c.znodes, c.writes, c.reads), (1, 3, 3));
    }

    #[test]
    fn a_version_written_twice_is_caught() {
        let h = [ev(Write, 1, 0, 5, 1), ev(Write, 1, 1, 6, 2)];
        assert!(matches!(
            check(&h),
            Err(Violation::VersionTwice { version: 1, .. })
        ));
    }

    #[test]
    fn a_later_write_with_a_lower_version_is_caught() {
        let h = [ev(Write, 2, 0, 5, 1), ev(Write, 1, 6, 8, 2)];
        assert!(matches!(
            check(&h),
            Err(Violation::WentBack {
                client: 2,
                seen: 2,
                ..
            })
        ));
    }

    #[test]
    fn a_stale_read_is_caught() {
        let h = [ev(Write, 3, 0, 5, 1), ev(Read, 2, 6, 8, 2)];
        assert!(matches!(
            check(&h),
            Err(Violation::WentBack { access: Read, .. })
        ));
    }

    #[test]
    fn reads_that_go_back_in_real_time_are_caught() {
        // Neither read contradicts the concurrent write; together they go back.
        let h = [
            ev(Write, 1, 0, 100, 1),
            ev(Read, 1, 10, 20, 2),
            ev(Read, 0, 30, 40, 3),
        ];
        assert!(matches!(
            check(&h),
            Err(Violation::WentBack {
                client: 3,
                by: 2,
                ..
            })
        ));
    }

    #[test]
    fn sequential_reads_may_lag_other_sessions_but_not_their_own() {
        // Client 2 reads version 0 after client 1's write of version 1 was answered: a
        // stale read, fine for a replica that lags, not for a linearizable read.
        let lagging = vec![
            ev(Access::Write, 0, 0, 5, 1),
            ev(Access::Write, 1, 10, 20, 1),
            ev(Access::Read, 0, 30, 40, 2),
        ];
        assert!(check(&lagging).is_err());
        assert!(check_reads(&lagging, Reads::Sequential).is_ok());
        // Its own write, missed: caught either way.
        let own = vec![
            ev(Access::Write, 0, 0, 5, 1),
            ev(Access::Write, 1, 10, 20, 2),
            ev(Access::Read, 0, 30, 40, 2),
        ];
        assert!(matches!(
            check_reads(&own, Reads::Sequential),
            Err(Violation::WentBack { client: 2, .. })
        ));
        // Its own reads going back: caught.
        let back = vec![
            ev(Access::Write, 0, 0, 5, 1),
            ev(Access::Write, 1, 10, 20, 1),
            ev(Access::Read, 1, 30, 40, 2),
            ev(Access::Read, 0, 50, 60, 2),
        ];
        assert!(check_reads(&back, Reads::Sequential).is_err());
        // Writes stay linearizable: a later write below an answered one is caught.
        let writes = vec![
            ev(Access::Write, 2, 0, 5, 1),
            ev(Access::Write, 1, 10, 20, 2),
        ];
        assert!(check_reads(&writes, Reads::Sequential).is_err());
    }

    #[test]
    fn another_life_of_the_path_starts_over() {
        let mut again = ev(Write, 0, 50, 60, 2);
        again.czxid = 99;
        let h = [ev(Write, 4, 0, 5, 1), again];
        assert_eq!(check(&h).map(|c| c.znodes), Ok(2));
    }

    #[test]
    fn the_final_tree_shows_what_was_acknowledged() {
        use crate::{CreateMode, Ctx, Request};
        let mut t = DataTree::new();
        let mut zxid = 0;
        let mut run = |t: &mut DataTree, session: i64, req: Request| {
            zxid += 1;
            t.apply(Ctx { zxid, time_ms: 1 }, session, &req).response
        };
        let create = |path: &str, mode| Request::Create {
            path: path.into(),
            data: bytes::Bytes::new(),
            acl: crate::Acl::open_unsafe(),
            mode,
        };
        run(&mut t, 5, Request::CreateSession { timeout_ms: 10_000 }).expect("session");
        run(&mut t, 5, create("/a", CreateMode::Persistent)).expect("/a");
        run(&mut t, 5, create("/a/e", CreateMode::Ephemeral)).expect("/a/e");
        run(&mut t, 5, create("/b", CreateMode::Persistent)).expect("/b");
        run(
            &mut t,
            5,
            Request::Delete {
                path: "/b".into(),
                version: -1,
            },
        )
        .expect("rm /b");
        let mut want = Expected {
            created: vec!["/a".into(), "/a/e".into()],
            deleted: vec!["/b".into()],
            closed: Vec::new(),
        };
        assert_eq!(check_final(&t, &want), Ok(()));
        want.closed = vec![5];
        assert!(matches!(check_final(&t, &want), Err(Missing::Session(5))));
        run(&mut t, 5, Request::CloseSession).expect("close");
        assert_eq!(
            check_final(&t, &want),
            Err(Missing::Created("/a/e".into())),
            "the ephemeral went with its session"
        );
        want.created.pop();
        assert_eq!(check_final(&t, &want), Ok(()));
        want.created.push("/b".into());
        assert_eq!(check_final(&t, &want), Err(Missing::Created("/b".into())));
    }

    #[test]
    fn an_answer_before_its_send_is_refused() {
        assert!(matches!(
            check(&[ev(Read, 0, 9, 3, 1)]),
            Err(Violation::AnsweredBeforeSent { .. })
        ));
    }
}
