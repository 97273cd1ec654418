//! The data tree: znodes by path, the session table, the per-session
//! ephemeral sets and the last applied zxid; `apply` runs one request.
//!
//! The start state is what a fresh ZooKeeper 3.8 shows a client (see
//! `DataTree`'s constructor): `/`, `/zookeeper`, `/zookeeper/quota` and
//! `/zookeeper/config`, all with zeroed stats; `/zookeeper/config` is
//! world-readable only (`READ_ACL_UNSAFE`) and its aversion is -1, because
//! ZooKeeper sets that ACL with version -1. Reported cversions follow from
//! zero stored child creates: `/` shows -1 and `/zookeeper` shows -2.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::code::Code;
use crate::op::{Applied, Ctx, OpResult, Request, Response};
use crate::types::{Acl, Stat, StatPersisted};

/// The reserved subtree and its fixed nodes.
pub const ZOOKEEPER_PATH: &str = "/zookeeper";
pub const QUOTA_PATH: &str = "/zookeeper/quota";
pub const CONFIG_PATH: &str = "/zookeeper/config";

/// One znode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) data: Bytes,
    pub(crate) acl: Vec<Acl>,
    /// Persisted status; `stat.cversion` is the stored child-create counter.
    pub(crate) stat: StatPersisted,
    pub(crate) children: BTreeSet<String>,
}

impl Node {
    pub(crate) fn new(data: Bytes, acl: Vec<Acl>, stat: StatPersisted) -> Node {
        Node {
            data,
            acl,
            stat,
            children: BTreeSet::new(),
        }
    }

    /// The Stat a client sees.
    pub(crate) fn client_stat(&self) -> Stat {
        self.stat.to_stat(self.data.len(), self.children.len())
    }
}

/// ZooKeeper's data tree as a deterministic state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataTree {
    pub(crate) nodes: BTreeMap<String, Node>,
    /// Ephemeral paths by owning session (derived from the nodes).
    pub(crate) ephemerals: BTreeMap<i64, BTreeSet<String>>,
    /// Live sessions and their timeouts in ms.
    pub(crate) sessions: BTreeMap<i64, i32>,
    /// Moved sessions: a live session's owner, the op-session that acts as it, where that
    /// is not the session's own id (`MoveSession`). Replicated state: digest and snapshot.
    pub(crate) owners: BTreeMap<i64, i64>,
    /// The reverse of `owners` (owner to session; derived).
    pub(crate) aliases: BTreeMap<i64, i64>,
    pub(crate) last_zxid: i64,
}

impl Default for DataTree {
    fn default() -> Self {
        DataTree::new()
    }
}

impl DataTree {
    /// A fresh tree as a standalone ZooKeeper 3.8 server shows it:
    /// `/zookeeper/config` is empty with version 0.
    pub fn new() -> DataTree {
        let mut nodes = BTreeMap::new();
        let zeroed = StatPersisted::default();
        let mut root = Node::new(Bytes::new(), Acl::open_unsafe(), zeroed);
        root.children.insert("zookeeper".to_string());
        let mut proc_node = Node::new(Bytes::new(), Acl::open_unsafe(), zeroed);
        proc_node.children.insert("quota".to_string());
        proc_node.children.insert("config".to_string());
        let quota = Node::new(Bytes::new(), Acl::open_unsafe(), zeroed);
        let config_stat = StatPersisted {
            aversion: -1,
            ..zeroed
        };
        let config = Node::new(Bytes::new(), Acl::read_unsafe(), config_stat);
        nodes.insert("/".to_string(), root);
        nodes.insert(ZOOKEEPER_PATH.to_string(), proc_node);
        nodes.insert(QUOTA_PATH.to_string(), quota);
        nodes.insert(CONFIG_PATH.to_string(), config);
        DataTree {
            nodes,
            ephemerals: BTreeMap::new(),
            sessions: BTreeMap::new(),
            owners: BTreeMap::new(),
            aliases: BTreeMap::new(),
            last_zxid: 0,
        }
    }

    /// A fresh tree as a quorum (ensemble) member shows it: ZooKeeper
    /// writes the quorum configuration into `/zookeeper/config` with
    /// version -1, mzxid = the configuration's version, mtime = the time it
    /// started (`ZKDatabase.initConfigInZKDatabase`).
    pub fn new_with_config(config: Bytes, config_version: i64, time_ms: i64) -> DataTree {
        let mut tree = DataTree::new();
        if let Some(node) = tree.nodes.get_mut(CONFIG_PATH) {
            node.data = config;
            node.stat.version = -1;
            node.stat.mzxid = config_version;
            node.stat.mtime = time_ms;
        }
        tree
    }

    /// The largest zxid applied so far; replies report it.
    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    /// Number of znodes, the root included.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The Stat a client would see for `path`.
    pub fn stat(&self, path: &str) -> Option<Stat> {
        self.lookup(path).map(Node::client_stat)
    }

    pub fn data(&self, path: &str) -> Option<Bytes> {
        self.lookup(path).map(|n| n.data.clone())
    }

    pub fn acl(&self, path: &str) -> Option<&[Acl]> {
        self.lookup(path).map(|n| n.acl.as_slice())
    }

    /// Child names of `path`, sorted.
    pub fn children(&self, path: &str) -> Option<Vec<String>> {
        self.lookup(path)
            .map(|n| n.children.iter().cloned().collect())
    }

    /// Whether `session` is live (created and not closed).
    pub fn has_session(&self, session: i64) -> bool {
        self.sessions.contains_key(&session)
    }

    /// The live ZooKeeper session op-session `x` acts as: `Ok(s)` when `x` owns `s`
    /// (it moved `s` to itself), or `x` is a live session still its own owner;
    /// `Err(SessionMoved)` when `x` is a live session another op-session owns;
    /// `Err(SessionExpired)` otherwise (never created, closed, expired, or an owner that
    /// lost its session to a later mover).
    pub fn resolve_session(&self, x: i64) -> Result<i64, Code> {
        if let Some(s) = self.aliases.get(&x) {
            return Ok(*s);
        }
        if !self.sessions.contains_key(&x) {
            Err(Code::SessionExpired)
        } else if self.owners.contains_key(&x) {
            Err(Code::SessionMoved)
        } else {
            Ok(x)
        }
    }

    /// Moved sessions with their owners (session, owning op-session), by session id.
    pub fn owners(&self) -> Vec<(i64, i64)> {
        self.owners.iter().map(|(s, o)| (*s, *o)).collect()
    }

    /// Live sessions with their timeouts (ms), by session id.
    pub fn sessions(&self) -> Vec<(i64, i32)> {
        self.sessions.iter().map(|(id, t)| (*id, *t)).collect()
    }

    /// The ephemeral paths a session owns, sorted.
    pub fn ephemerals(&self, session: i64) -> Vec<String> {
        self.ephemerals
            .get(&session)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Node lookup as ZooKeeper's node map does it: `""` is an alias of
    /// the root.
    pub(crate) fn lookup(&self, path: &str) -> Option<&Node> {
        self.nodes.get(if path.is_empty() { "/" } else { path })
    }

    /// Apply one request. A write takes `ctx.zxid` whether it succeeds or
    /// fails (ZooKeeper logs a failed write as an error txn); a read ignores
    /// `ctx` and leaves the tree unchanged. `session` is the requesting
    /// session (the txn header's client id), the op-session: it acts as the
    /// ZooKeeper session it owns ([`DataTree::resolve_session`]). A request
    /// of a session moved to another owner is answered `SessionMoved` and
    /// changes nothing but the last zxid (a write's error txn); one of an
    /// unknown session runs as that id (an ephemeral create then fails with
    /// `SessionExpired`: the callers refuse such requests before).
    pub fn apply(&mut self, ctx: Ctx, session: i64, req: &Request) -> Applied {
        let session = match req {
            Request::CreateSession { .. } | Request::MoveSession { .. } => Ok(session),
            _ => match self.resolve_session(session) {
                Err(Code::SessionMoved) => Err(Code::SessionMoved),
                Ok(acting) => Ok(acting),
                Err(_) => Ok(session),
            },
        };
        let session = match session {
            Ok(s) => s,
            Err(code) => {
                if req.is_write() && ctx.zxid > self.last_zxid {
                    self.last_zxid = ctx.zxid;
                }
                return Applied {
                    response: Err(code),
                    zxid: self.last_zxid,
                    triggers: Vec::new(),
                };
            }
        };
        if !req.is_write() {
            return Applied {
                response: self.read(session, req),
                zxid: self.last_zxid,
                triggers: Vec::new(),
            };
        }
        let mut triggers = Vec::new();
        let response = match req {
            Request::Multi(ops) => self.multi(ctx, session, ops, &mut triggers),
            Request::CreateSession { timeout_ms } => {
                self.create_session(session, *timeout_ms);
                Ok(Response::Empty)
            }
            Request::CloseSession => {
                self.close_session(ctx, session, &mut triggers);
                Ok(Response::Empty)
            }
            Request::MoveSession {
                session: target,
                timeout_ms,
            } => self
                .move_session(session, *target, *timeout_ms)
                .map(|()| Response::Empty),
            Request::SetAcl { path, acl, version } => {
                self.set_acl(path, acl, *version).map(Response::Stat)
            }
            _ => {
                let mut undo = Vec::new();
                self.write_op(ctx, session, req, &mut undo, &mut triggers)
                    .map(single_response)
            }
        };
        if response.is_err() {
            triggers.clear();
        }
        if ctx.zxid > self.last_zxid {
            self.last_zxid = ctx.zxid;
        }
        Applied {
            response,
            zxid: self.last_zxid,
            triggers,
        }
    }
}

/// The reply body of a single (not multi) write.
fn single_response(result: OpResult) -> Response {
    match result {
        OpResult::Create { path, stat } => Response::Create { path, stat },
        OpResult::SetData { stat } => Response::Stat(stat),
        OpResult::Delete | OpResult::Check | OpResult::Error(_) => Response::Empty,
    }
}

impl DataTree {
    /// Whether `path` is one of the nodes ZooKeeper refuses to delete.
    pub(crate) fn is_special_path(path: &str) -> bool {
        path == "/" || path == ZOOKEEPER_PATH || path == QUOTA_PATH || path == CONFIG_PATH
    }
}
