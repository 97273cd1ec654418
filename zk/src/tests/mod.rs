//! Unit tests, written from ZooKeeper 3.8's documented and source-verified
//! behaviour; each asserts exact Stat fields and result codes.

mod create;
mod fresh;
mod moved;
mod multi;
mod op;
mod oracle;
mod session;
mod sharded;
mod sharded_gen;
mod state;
mod watch;
mod write;

use bytes::Bytes;

use crate::{Acl, Applied, Code, CreateMode, Ctx, DataTree, Request, Response, Stat};

/// Session ids used by the tests.
pub(crate) const S1: i64 = 0x100;
pub(crate) const S2: i64 = 0x200;

/// A tree plus a zxid counter: every write takes the next zxid, at time
/// `1_000_000 + 10 * zxid` ms.
pub(crate) struct T {
    pub(crate) tree: DataTree,
    pub(crate) zxid: i64,
}

pub(crate) fn time_of(zxid: i64) -> i64 {
    1_000_000 + 10 * zxid
}

impl T {
    pub(crate) fn new() -> T {
        T {
            tree: DataTree::new(),
            zxid: 0,
        }
    }

    /// Apply a request; writes take the next zxid.
    pub(crate) fn run(&mut self, session: i64, req: Request) -> Applied {
        if req.is_write() {
            self.zxid += 1;
        }
        let ctx = Ctx {
            zxid: self.zxid,
            time_ms: time_of(self.zxid),
        };
        self.tree.apply(ctx, session, &req)
    }

    /// Create a node and return its actual path; panics on failure.
    pub(crate) fn mk(&mut self, path: &str, mode: CreateMode) -> String {
        match self.run(S1, create(path, b"", mode)).response {
            Ok(Response::Create { path, .. }) => path,
            other => panic!("create {path} failed: {other:?}"),
        }
    }

    pub(crate) fn stat(&self, path: &str) -> Stat {
        self.tree.stat(path).expect("node exists")
    }
}

pub(crate) fn create(path: &str, data: &[u8], mode: CreateMode) -> Request {
    Request::Create {
        path: path.to_string(),
        data: Bytes::copy_from_slice(data),
        acl: Acl::open_unsafe(),
        mode,
    }
}

pub(crate) fn delete(path: &str, version: i32) -> Request {
    Request::Delete {
        path: path.to_string(),
        version,
    }
}

pub(crate) fn set_data(path: &str, data: &[u8], version: i32) -> Request {
    Request::SetData {
        path: path.to_string(),
        data: Bytes::copy_from_slice(data),
        version,
    }
}

pub(crate) fn check(path: &str, version: i32) -> Request {
    Request::Check {
        path: path.to_string(),
        version,
    }
}

pub(crate) fn exists(path: &str, watch: bool) -> Request {
    Request::Exists {
        path: path.to_string(),
        watch,
    }
}

pub(crate) fn get_data(path: &str, watch: bool) -> Request {
    Request::GetData {
        path: path.to_string(),
        watch,
    }
}

pub(crate) fn get_children(path: &str, watch: bool) -> Request {
    Request::GetChildren {
        path: path.to_string(),
        watch,
        with_stat: true,
    }
}

/// The error code of an apply, or `Code::Ok` on success.
pub(crate) fn code(applied: &Applied) -> Code {
    match &applied.response {
        Ok(_) => Code::Ok,
        Err(c) => *c,
    }
}
