//! One op at a shard server: decode the delivered ZooKeeper request, decide what every
//! touched shard decides before running it (a request that does not decode, numbers that
//! are not the spaces the request touches, a session the tree does not hold or that moved
//! to another client session), and run it
//! on the shard's records plus the other shards' views. Every decision depends only on
//! the item and on state all touched shards share at the op's position (the session
//! table), so every server of every touched shard reaches the same one.

use bytes::Bytes;
use mason_common::types::SpaceMask;
use mason_common::zkmsg::ZkItem;
use mason_zk::jute::{self, Decoded, Shape};
use mason_zk::sharded::{self, View};
use mason_zk::{shard, Code, Ctx, DataTree, Request, Trigger};

/// What a delivered op is, before it runs.
pub enum Prepared {
    /// Answered without touching the tree (the reply, header and body).
    Refused(Bytes),
    /// To be run.
    Run {
        xid: i32,
        request: Request,
        shape: Shape,
        /// The op's zxid (its clock number plus one) for a write; 0 for a read.
        zxid: i64,
    },
}

impl Prepared {
    /// Whether the touched shards exchange views before running it.
    pub fn needs_views(&self, shards: u32) -> bool {
        match self {
            Prepared::Run { request, .. } => sharded::needs_views(request, shards),
            Prepared::Refused(_) => false,
        }
    }
}

/// Decides what `item` is at this shard, whose tree is `tree`.
pub fn prepare(tree: &DataTree, item: &ZkItem, shards: u32) -> Prepared {
    let (header, body) = match jute::split_request(&item.payload) {
        Ok(x) => x,
        Err(_) => return Prepared::Refused(error_reply(0, 0, Code::MarshallingError)),
    };
    // createSession and moveSession come only from proxies' clients.
    let decoded = jute::decode_logged_request(header.op, body);
    let (request, shape) = match decoded {
        Ok(Decoded::Tree { request, shape }) => (request, shape),
        Ok(Decoded::Special(_)) => {
            return Prepared::Refused(error_reply(header.xid, 0, Code::Unimplemented))
        }
        Err(e) => return Prepared::Refused(error_reply(header.xid, 0, e.reply_code())),
    };
    // The numbers must be exactly those of the spaces the request touches: otherwise a
    // shard that should see it might not, and it could apply in part.
    let want = shard::spaces(&request, shards);
    if item.mask != want || item.numbers.len() != SpaceMask(want).len() {
        return Prepared::Refused(error_reply(header.xid, 0, Code::BadArguments));
    }
    let zxid = if request.is_write() {
        match SpaceMask(item.mask).index_of(0) {
            Some(k) => item.numbers.get(k).map_or(0, |n| *n as i64 + 1),
            None => 0,
        }
    } else {
        0
    };
    let session = item.session as i64;
    if !matches!(
        request,
        Request::CreateSession { .. } | Request::MoveSession { .. }
    ) {
        // The session table (owners included) is the same on every shard at this op.
        if let Err(code) = tree.resolve_session(session) {
            return Prepared::Refused(error_reply(header.xid, zxid, code));
        }
    }
    Prepared::Run {
        xid: header.xid,
        request,
        shape,
        zxid,
    }
}

/// Runs a prepared op on `tree` (shard `me` of `shards`) with the other touched shards'
/// views; returns the reply (header and body), the watch triggers the apply fired (for
/// the watch feed; none for a refused op or a read) and the reply's zxid.
pub fn run(
    tree: &mut DataTree,
    item: &ZkItem,
    prepared: &Prepared,
    others: &[View],
    me: u32,
    shards: u32,
) -> (Bytes, Vec<Trigger>, i64) {
    let (xid, request, shape, zxid) = match prepared {
        Prepared::Refused(reply) => return (reply.clone(), Vec::new(), 0),
        Prepared::Run {
            xid,
            request,
            shape,
            zxid,
        } => (*xid, request, shape, *zxid),
    };
    let ctx = Ctx {
        zxid,
        time_ms: item.time_ms,
    };
    let applied =
        sharded::apply_sharded(tree, ctx, item.session as i64, request, others, me, shards);
    let reply = match jute::encode_response(xid, applied.zxid, &applied.response, shape) {
        Ok(framed) => Bytes::from(framed).slice(4..),
        Err(_) => error_reply(xid, applied.zxid, Code::MarshallingError),
    };
    (reply, applied.triggers, applied.zxid)
}

/// A reply with only a header.
pub fn error_reply(xid: i32, zxid: i64, code: Code) -> Bytes {
    Bytes::from(jute::header_reply(xid, zxid, code.code()))
}
