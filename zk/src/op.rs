//! Requests the tree applies, their result bodies, and what one apply
//! returns (`Applied`: the response, the reply zxid and the watch triggers).

use bytes::Bytes;

use crate::code::Code;
use crate::path;
use crate::types::{opcode, Acl, CreateMode, EventType, Stat};

/// A version argument that matches any version (delete, setData, check,
/// setACL).
pub const ANY_VERSION: i32 = -1;

/// One ZooKeeper request, as the tree sees it. One `Create` serves create
/// (1) and create2 (15); the response always carries the path and the Stat
/// and the wire layer drops the Stat for create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Create {
        path: String,
        data: Bytes,
        acl: Vec<Acl>,
        mode: CreateMode,
    },
    Delete {
        path: String,
        version: i32,
    },
    Exists {
        path: String,
        watch: bool,
    },
    GetData {
        path: String,
        watch: bool,
    },
    SetData {
        path: String,
        data: Bytes,
        version: i32,
    },
    GetAcl {
        path: String,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    /// getChildren (8) or, with `with_stat`, getChildren2 (12).
    GetChildren {
        path: String,
        watch: bool,
        with_stat: bool,
    },
    Sync {
        path: String,
    },
    Check {
        path: String,
        version: i32,
    },
    /// An atomic list of Create, Delete, SetData and Check requests.
    Multi(Vec<Request>),
    /// The requesting session's ephemeral nodes whose path starts with
    /// `prefix` (all of them for an empty or `/` prefix).
    GetEphemerals {
        prefix: String,
    },
    GetAllChildrenNumber {
        path: String,
    },
    /// Registers the requesting session (the `session` argument of apply).
    CreateSession {
        timeout_ms: i32,
    },
    /// Ends the requesting session (also used for expiry) and deletes its
    /// ephemeral nodes.
    CloseSession,
    /// The requesting session (a proxy client session) becomes the owner of the live
    /// ZooKeeper session `session`, whose timeout becomes `timeout_ms`: its later ops
    /// act as `session`, and the previous owner's are answered `SessionMoved` (see
    /// `DataTree::resolve_session`). Not a ZooKeeper request: opcode -20, sent only
    /// through a proxy (`MOVE_SESSION`), never decoded from a ZooKeeper client's packet.
    MoveSession {
        session: i64,
        timeout_ms: i32,
    },
}

impl Request {
    /// Whether ZooKeeper makes a transaction of this request (it takes a
    /// zxid, even when it fails).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Request::Create { .. }
                | Request::Delete { .. }
                | Request::SetData { .. }
                | Request::SetAcl { .. }
                | Request::Check { .. }
                | Request::Multi(_)
                | Request::CreateSession { .. }
                | Request::CloseSession
                | Request::MoveSession { .. }
        )
    }

    /// Whether a replica may answer this request from its own tree, outside the order
    /// of writes (`--zk-reads local`): a read of one znode that sets no watch (a watch is
    /// state every replica must set at the same place).
    pub fn is_local_read(&self) -> bool {
        matches!(
            self,
            Request::Exists { watch: false, .. }
                | Request::GetData { watch: false, .. }
                | Request::GetChildren { watch: false, .. }
                | Request::GetAcl { .. }
        )
    }

    /// ZooKeeper's opcode for this request (create for `Create`).
    pub fn opcode(&self) -> i32 {
        match self {
            Request::Create { .. } => opcode::CREATE,
            Request::Delete { .. } => opcode::DELETE,
            Request::Exists { .. } => opcode::EXISTS,
            Request::GetData { .. } => opcode::GET_DATA,
            Request::SetData { .. } => opcode::SET_DATA,
            Request::GetAcl { .. } => opcode::GET_ACL,
            Request::SetAcl { .. } => opcode::SET_ACL,
            Request::GetChildren { with_stat, .. } => {
                if *with_stat {
                    opcode::GET_CHILDREN2
                } else {
                    opcode::GET_CHILDREN
                }
            }
            Request::Sync { .. } => opcode::SYNC,
            Request::Check { .. } => opcode::CHECK,
            Request::Multi(_) => opcode::MULTI,
            Request::GetEphemerals { .. } => opcode::GET_EPHEMERALS,
            Request::GetAllChildrenNumber { .. } => opcode::GET_ALL_CHILDREN_NUMBER,
            Request::CreateSession { .. } => opcode::CREATE_SESSION,
            Request::CloseSession => opcode::CLOSE_SESSION,
            Request::MoveSession { .. } => opcode::MOVE_SESSION,
        }
    }

    /// The paths this request reads or changes, known before it runs:
    /// create and delete also touch the parent (its child list changes); a
    /// sequential create names its prefix. A multi touches the union, in
    /// order, without repeats. getEphemerals, createSession, closeSession and
    /// moveSession name no path: what they touch depends on the session's ephemerals.
    pub fn paths(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        self.collect_paths(&mut out);
        out
    }

    fn collect_paths<'a>(&'a self, out: &mut Vec<&'a str>) {
        let push = |p: &'a str, out: &mut Vec<&'a str>| {
            if !out.contains(&p) {
                out.push(p);
            }
        };
        match self {
            Request::Create { path, .. } | Request::Delete { path, .. } => {
                push(path, out);
                if let Some(parent) = path::parent(path) {
                    push(parent, out);
                }
            }
            Request::Exists { path, .. }
            | Request::GetData { path, .. }
            | Request::SetData { path, .. }
            | Request::GetAcl { path }
            | Request::SetAcl { path, .. }
            | Request::GetChildren { path, .. }
            | Request::Sync { path }
            | Request::Check { path, .. }
            | Request::GetAllChildrenNumber { path } => push(path, out),
            Request::Multi(ops) => {
                for op in ops {
                    op.collect_paths(out);
                }
            }
            Request::GetEphemerals { .. }
            | Request::CreateSession { .. }
            | Request::CloseSession
            | Request::MoveSession { .. } => {}
        }
    }
}

/// The result body of a successful request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// create / create2: the actual path (with any sequential suffix) and
    /// the new node's Stat.
    Create { path: String, stat: Stat },
    /// exists, setData, setACL.
    Stat(Stat),
    /// getData.
    Data { data: Bytes, stat: Stat },
    /// getChildren / getChildren2: child names (sorted) and the Stat.
    Children { names: Vec<String>, stat: Stat },
    /// getACL.
    Acl { acl: Vec<Acl>, stat: Stat },
    /// sync: the requested path.
    Sync { path: String },
    /// multi: one result per op. A failed multi still succeeds as a
    /// request; its results are all `OpResult::Error`.
    Multi(Vec<OpResult>),
    /// getEphemerals (sorted).
    Ephemerals(Vec<String>),
    /// getAllChildrenNumber.
    AllChildrenNumber(i32),
    /// delete, check, createSession, closeSession, moveSession: no body.
    Empty,
}

/// One op's result inside a multi reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    Create {
        path: String,
        stat: Stat,
    },
    Delete,
    SetData {
        stat: Stat,
    },
    Check,
    /// `Code::Ok` for ops before the failing one (rolled back), the real
    /// code for the failing op, `RuntimeInconsistency` for ops after it.
    Error(Code),
}

/// The transaction context a write runs in: its zxid and the leader's
/// wall-clock time in ms (ZooKeeper's txn header fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ctx {
    pub zxid: i64,
    pub time_ms: i64,
}

/// A change that may fire watches: the event type, the path it is reported
/// on, and the ACL of the node at that path when it fired (the deleted
/// node's for NodeDeleted, the parent's for NodeChildrenChanged).
/// ZooKeeper 3.8 removes every watch a trigger reaches but delivers the
/// event only to watchers that may READ the node under that ACL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Trigger {
    pub path: String,
    pub event: EventType,
    pub acl: Vec<Acl>,
}

/// What one apply produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub response: Result<Response, Code>,
    /// The zxid for the reply header: the tree's last applied zxid after
    /// this request.
    pub zxid: i64,
    /// Watch triggers, in the order ZooKeeper fires them. Empty for reads
    /// and for failed writes.
    pub triggers: Vec<Trigger>,
}
