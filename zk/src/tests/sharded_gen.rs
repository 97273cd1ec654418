//! Random ops for the sharded differential test: a tiny xorshift generator and ops over a
//! small path space (two and three levels, sequential prefixes, ephemerals spread over the
//! shards), with versions that are sometimes right, sometimes wrong, sometimes -1.

use bytes::Bytes;

use crate::{Acl, CreateMode, DataTree, Request};

/// xorshift64*: enough randomness for a test, no dependency.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub(crate) fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The sessions ops come from (some never created, so ephemerals fail for them).
pub(crate) const SESSIONS: [i64; 4] = [0x100, 0x200, 0x300, 0x400];

/// Op-sessions that are never sessions themselves: they take sessions over
/// (moveSession) and then act as them.
pub(crate) const MOVERS: [i64; 2] = [0x500, 0x600];

/// Sessions that write ephemerals more often than the rest.
const BUSY: [i64; 2] = [0x100, 0x200];

const PATHS: &[&str] = &[
    "/a",
    "/b",
    "/q",
    "/a/b",
    "/a/c",
    "/b/x",
    "/a/b/c",
    "/e1",
    "/a/e2",
    "/b/e3",
    "/q/e4",
    "/nope/x",
    "/zookeeper",
    "/zookeeper/quota",
    "/",
    "",
];
/// The last one looks like a sequential name itself: its nodes live where it hashes whole.
const SEQ_PREFIXES: &[&str] = &["/q/job-", "/a/", "/b/s-", "/", "/nope/j-", "/q/0000000001"];
const READ_PATHS: &[&str] = &["/", "", "/a", "/q", "/a/b", "/zookeeper", "/nope"];
const ACL_PATHS: &[&str] = &["/a/b", "/b/x", "/a/b/c", "/e1", "/nope"];
const PREFIXES: &[&str] = &["", "/", "/a", "/q/", " /", "/b/e"];

/// A path: often one the tree holds (sequential names included), else from the list.
fn path(rng: &mut Rng, full: &DataTree) -> String {
    if rng.chance(50) && !full.nodes.is_empty() {
        let i = rng.below(full.nodes.len());
        if let Some(p) = full.nodes.keys().nth(i) {
            return p.clone();
        }
    }
    rng.pick(PATHS).to_string()
}

/// A version for `path`: right, wrong, or any.
fn version(rng: &mut Rng, full: &DataTree, path: &str) -> i32 {
    let current = full.nodes.get(path).map_or(0, |n| n.stat.version);
    match rng.below(10) {
        0..=4 => current,
        5..=6 => current + 1 + rng.below(2) as i32,
        _ => -1,
    }
}

fn data(rng: &mut Rng) -> Bytes {
    Bytes::from(vec![b'd'; rng.below(4)])
}

fn create(rng: &mut Rng, full: &DataTree) -> Request {
    let mode = if rng.chance(3) {
        CreateMode::Container
    } else {
        *rng.pick(&[
            CreateMode::Persistent,
            CreateMode::Persistent,
            CreateMode::Ephemeral,
            CreateMode::Ephemeral,
            CreateMode::PersistentSequential,
            CreateMode::EphemeralSequential,
        ])
    };
    let seq = matches!(
        mode,
        CreateMode::PersistentSequential | CreateMode::EphemeralSequential
    );
    let path = if seq {
        rng.pick(SEQ_PREFIXES).to_string()
    } else if rng.chance(10) {
        // a name a sequential create will pick soon, so that one fails with NodeExists
        let prefix = rng.pick(SEQ_PREFIXES);
        let parent = crate::path::parent(prefix).unwrap_or("/");
        let counter = full.nodes.get(parent).map_or(0, |n| n.stat.cversion);
        format!("{prefix}{:010}", counter + rng.below(3) as i32)
    } else {
        path(rng, full)
    };
    let acl = if rng.chance(5) {
        Acl::read_unsafe()
    } else {
        Acl::open_unsafe()
    };
    Request::Create {
        path,
        data: data(rng),
        acl,
        mode,
    }
}

/// One op that may appear in a multi.
fn multi_op(rng: &mut Rng, full: &DataTree) -> Request {
    match rng.below(4) {
        0 => create(rng, full),
        1 => {
            let path = path(rng, full);
            let version = version(rng, full, &path);
            Request::Delete { path, version }
        }
        2 => {
            let path = path(rng, full);
            let version = version(rng, full, &path);
            Request::SetData {
                path,
                data: data(rng),
                version,
            }
        }
        _ => {
            let path = path(rng, full);
            let version = version(rng, full, &path);
            Request::Check { path, version }
        }
    }
}

/// A random op and the session it comes from.
pub(crate) fn op(rng: &mut Rng, full: &DataTree) -> (i64, Request) {
    let session = if rng.chance(50) {
        *rng.pick(&BUSY)
    } else if rng.chance(20) {
        *rng.pick(&MOVERS)
    } else {
        *rng.pick(&SESSIONS)
    };
    let req = match rng.below(25) {
        0..=4 => create(rng, full),
        5..=6 => {
            let path = path(rng, full);
            let version = version(rng, full, &path);
            Request::Delete { path, version }
        }
        7 => multi_op(rng, full),
        8 => coherent_multi(rng),
        9..=10 => {
            let n = 1 + rng.below(4);
            let mut ops: Vec<Request> = (0..n).map(|_| multi_op(rng, full)).collect();
            if rng.chance(3) {
                ops.push(Request::Sync { path: "/".into() });
            }
            Request::Multi(ops)
        }
        11 => {
            let path = path(rng, full);
            match rng.below(5) {
                0 => Request::GetData { path, watch: false },
                1 => Request::Exists { path, watch: false },
                2 => Request::GetAcl { path },
                3 => Request::Sync { path },
                _ => Request::GetChildren {
                    path,
                    watch: false,
                    with_stat: rng.chance(50),
                },
            }
        }
        12 => {
            // never on `/`, `/a`, `/b` or `/q`: a read-only ACL there would stay for good
            let path = rng.pick(ACL_PATHS).to_string();
            let version = if rng.chance(50) { -1 } else { 0 };
            let acl = if rng.chance(50) {
                Acl::read_unsafe()
            } else {
                Acl::open_unsafe()
            };
            Request::SetAcl { path, acl, version }
        }
        13..=14
            if !MOVERS.contains(&session)
                && (!full.sessions.contains_key(&session) || rng.chance(10)) =>
        {
            Request::CreateSession {
                timeout_ms: 1000 * (1 + rng.below(3) as i32),
            }
        }
        13..=14 => create(rng, full),
        15 => Request::CloseSession,
        20..=21 => {
            // mostly a session that holds ephemerals, to spread its deletes over shards
            let holders: Vec<i64> = full.ephemerals.keys().copied().collect();
            if rng.chance(80) && !holders.is_empty() {
                let holder = *rng.pick(&holders);
                // its owner when it moved (or, refused, the session's own id)
                let by = match full.owners.get(&holder) {
                    Some(owner) if rng.chance(70) => *owner,
                    _ => holder,
                };
                return (by, Request::CloseSession);
            }
            create(rng, full)
        }
        22..=24 => {
            // mostly a live session, to a mover, to another session or back to itself
            let live: Vec<i64> = full.sessions.keys().copied().collect();
            let target = if rng.chance(85) && !live.is_empty() {
                *rng.pick(&live)
            } else {
                *rng.pick(&SESSIONS)
            };
            let by = match rng.below(10) {
                0..=5 => *rng.pick(&MOVERS),
                6 => target,
                _ => *rng.pick(&SESSIONS),
            };
            return (
                by,
                Request::MoveSession {
                    session: target,
                    timeout_ms: 1000 * (1 + rng.below(3) as i32),
                },
            );
        }
        16..=17 => Request::GetEphemerals {
            prefix: rng.pick(PREFIXES).to_string(),
        },
        _ => Request::GetAllChildrenNumber {
            path: rng.pick(READ_PATHS).to_string(),
        },
    };
    (session, req)
}

/// A multi whose later ops depend on its earlier ones, across shards: create a node, a
/// sequential child under it (the first, so its name is known), then take them away
/// again; cut short at a random op, sometimes with a failing check last.
fn coherent_multi(rng: &mut Rng) -> Request {
    let base = rng.pick(&["/m", "/a/m", "/b/m", "/q/m"]).to_string();
    let mode = *rng.pick(&[
        CreateMode::PersistentSequential,
        CreateMode::EphemeralSequential,
    ]);
    let child = format!("{base}/k-");
    let mut ops = vec![
        Request::Create {
            path: base.clone(),
            data: Bytes::new(),
            acl: Acl::open_unsafe(),
            mode: CreateMode::Persistent,
        },
        Request::Create {
            path: child.clone(),
            data: Bytes::from_static(b"k"),
            acl: Acl::open_unsafe(),
            mode,
        },
        Request::SetData {
            path: base.clone(),
            data: Bytes::from_static(b"m"),
            version: 0,
        },
        Request::Delete {
            path: format!("{child}0000000000"),
            version: 0,
        },
        Request::Delete {
            path: base.clone(),
            version: 1,
        },
    ];
    ops.truncate(1 + rng.below(ops.len()));
    if rng.chance(25) {
        ops.push(Request::Check {
            path: base,
            version: rng.below(3) as i32 - 1,
        });
    }
    Request::Multi(ops)
}
