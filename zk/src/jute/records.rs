//! The small fixed records of `zookeeper.jute`: `Stat` (68 bytes), `ACL`
//! (perms, then the `Id` scheme and id), `RequestHeader`, `ReplyHeader`,
//! `MultiHeader` and `WatcherEvent`.

use crate::types::{Acl, Stat};

use super::prim::{Reader, Writer};
use super::JuteError;

/// A `Stat` on the wire: 6 longs and 5 ints.
pub const STAT_LEN: usize = 68;

/// Reads a `Stat`, fields in the schema's order.
pub fn read_stat(r: &mut Reader<'_>) -> Result<Stat, JuteError> {
    Ok(Stat {
        czxid: r.read_i64()?,
        mzxid: r.read_i64()?,
        ctime: r.read_i64()?,
        mtime: r.read_i64()?,
        version: r.read_i32()?,
        cversion: r.read_i32()?,
        aversion: r.read_i32()?,
        ephemeral_owner: r.read_i64()?,
        data_length: r.read_i32()?,
        num_children: r.read_i32()?,
        pzxid: r.read_i64()?,
    })
}

pub fn write_stat(w: &mut Writer, s: &Stat) {
    w.write_i64(s.czxid);
    w.write_i64(s.mzxid);
    w.write_i64(s.ctime);
    w.write_i64(s.mtime);
    w.write_i32(s.version);
    w.write_i32(s.cversion);
    w.write_i32(s.aversion);
    w.write_i64(s.ephemeral_owner);
    w.write_i32(s.data_length);
    w.write_i32(s.num_children);
    w.write_i64(s.pzxid);
}

fn read_acl(r: &mut Reader<'_>) -> Result<Acl, JuteError> {
    Ok(Acl {
        perms: r.read_i32()?,
        scheme: r.read_string()?,
        id: r.read_string()?,
    })
}

fn write_acl(w: &mut Writer, a: &Acl) {
    w.write_i32(a.perms);
    w.write_string(&a.scheme);
    w.write_string(&a.id);
}

/// Reads a `vector<ACL>`; null reads as empty (which the tree refuses as
/// `InvalidACL`, as ZooKeeper's `fixupACL` does a null list).
pub fn read_acl_vec(r: &mut Reader<'_>) -> Result<Vec<Acl>, JuteError> {
    r.read_vec(read_acl)
}

pub fn write_acl_vec(w: &mut Writer, acl: &[Acl]) {
    w.write_vec(acl, write_acl);
}

/// The header of every request after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub xid: i32,
    /// The opcode (`opcode::*`).
    pub op: i32,
}

impl RequestHeader {
    pub fn read(r: &mut Reader<'_>) -> Result<RequestHeader, JuteError> {
        Ok(RequestHeader {
            xid: r.read_i32()?,
            op: r.read_i32()?,
        })
    }

    pub fn write(&self, w: &mut Writer) {
        w.write_i32(self.xid);
        w.write_i32(self.op);
    }
}

/// The header of every reply after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHeader {
    pub xid: i32,
    pub zxid: i64,
    /// 0, or a `Code` number; a reply with a nonzero err has no body.
    pub err: i32,
}

impl ReplyHeader {
    pub fn read(r: &mut Reader<'_>) -> Result<ReplyHeader, JuteError> {
        Ok(ReplyHeader {
            xid: r.read_i32()?,
            zxid: r.read_i64()?,
            err: r.read_i32()?,
        })
    }

    pub fn write(&self, w: &mut Writer) {
        w.write_i32(self.xid);
        w.write_i64(self.zxid);
        w.write_i32(self.err);
    }
}

/// The header before each op of a multi request or reply; `{-1, true, -1}`
/// ends the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultiHeader {
    pub op: i32,
    pub done: bool,
    pub err: i32,
}

impl MultiHeader {
    /// The header that ends a multi request or reply.
    pub const END: MultiHeader = MultiHeader {
        op: -1,
        done: true,
        err: -1,
    };

    pub fn read(r: &mut Reader<'_>) -> Result<MultiHeader, JuteError> {
        Ok(MultiHeader {
            op: r.read_i32()?,
            done: r.read_bool()?,
            err: r.read_i32()?,
        })
    }

    pub fn write(&self, w: &mut Writer) {
        w.write_i32(self.op);
        w.write_bool(self.done);
        w.write_i32(self.err);
    }
}

/// A watch notification's body (sent with xid -1, zxid -1, err 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherEvent {
    /// `EventType::code()` (or 0, None, for a state change).
    pub event_type: i32,
    /// The keeper state: 3 (SyncConnected) for node events.
    pub state: i32,
    pub path: String,
}

impl WatcherEvent {
    pub fn read(r: &mut Reader<'_>) -> Result<WatcherEvent, JuteError> {
        Ok(WatcherEvent {
            event_type: r.read_i32()?,
            state: r.read_i32()?,
            path: r.read_string()?,
        })
    }

    pub fn write(&self, w: &mut Writer) {
        w.write_i32(self.event_type);
        w.write_i32(self.state);
        w.write_string(&self.path);
    }
}
