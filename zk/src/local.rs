//! Reads answered outside the order of writes (`--zk-reads local`): RSMKeeper's leader
//! answers them from its tree after a ReadIndex round, and a ZK-Mason shard server from
//! its shard's records once it has applied what the reading session has seen. Only a
//! read of one znode that sets no watch qualifies ([`Request::is_local_read`]).

use crate::jute::{self, Decoded};
use crate::{Code, DataTree, Request};
use bytes::Bytes;

/// Why a request may not be answered as a local read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotLocal {
    #[error("the request does not decode")]
    Undecodable,
    #[error("opcode {0} is not a read of one znode without a watch")]
    NotARead(i32),
}

/// Decodes `payload` (header and body, no length prefix) as a local read.
pub fn decode(payload: &[u8]) -> Result<(i32, Request), NotLocal> {
    let (header, body) = jute::split_request(payload).map_err(|_| NotLocal::Undecodable)?;
    match jute::decode_request(header.op, body) {
        Ok(Decoded::Tree { request, .. }) if request.is_local_read() => Ok((header.xid, request)),
        Ok(_) => Err(NotLocal::NotARead(header.op)),
        Err(_) => Err(NotLocal::Undecodable),
    }
}

/// Answers `payload`, a local read of `session`, from `tree`: ZooKeeper's reply (header
/// and body), with the tree's last zxid. A session the tree does not hold is answered
/// SessionExpired, as a ZooKeeper server answers a request of an expired session, and one
/// moved to another owner SessionMoved ([`DataTree::resolve_session`]).
pub fn answer(tree: &DataTree, session: i64, payload: &[u8]) -> Result<Bytes, NotLocal> {
    let (xid, request) = decode(payload)?;
    let zxid = tree.last_zxid();
    let session = match tree.resolve_session(session) {
        Ok(acting) => acting,
        Err(code) => return Ok(Bytes::from(jute::header_reply(xid, zxid, code.code()))),
    };
    let Some(shape) = jute::Shape::for_request(&request) else {
        return Err(NotLocal::NotARead(request.opcode()));
    };
    let response = tree.read(session, &request);
    Ok(match jute::encode_response(xid, zxid, &response, &shape) {
        Ok(framed) => Bytes::from(framed).slice(4..),
        Err(_) => Bytes::from(jute::header_reply(xid, zxid, Code::MarshallingError.code())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Acl, CreateMode, Ctx, Response};

    fn payload(xid: i32, req: &Request) -> Bytes {
        let shape = jute::Shape::for_request(req).unwrap();
        Bytes::from(jute::encode_request(xid, req, &shape).unwrap()).slice(4..)
    }

    #[test]
    fn a_local_read_answers_as_the_log_would_and_changes_nothing() {
        let mut tree = DataTree::new();
        let ctx = |zxid| Ctx { zxid, time_ms: 1 };
        tree.apply(ctx(1), 7, &Request::CreateSession { timeout_ms: 5000 });
        let create = Request::Create {
            path: "/a".into(),
            data: Bytes::from_static(b"x"),
            acl: Acl::open_unsafe(),
            mode: CreateMode::Persistent,
        };
        tree.apply(ctx(2), 7, &create);
        let get = Request::GetData {
            path: "/a".into(),
            watch: false,
        };
        let digest = tree.digest();
        let local = answer(&tree, 7, &payload(5, &get)).unwrap();
        assert_eq!(tree.digest(), digest);
        let (h, body) = jute::split_reply(&local).unwrap();
        assert_eq!((h.xid, h.zxid, h.err), (5, 2, 0));
        let shape = jute::Shape::GetData;
        let logged = tree.apply(ctx(3), 7, &get);
        assert_eq!(
            jute::decode_response(&shape, h.err, body).unwrap(),
            logged.response
        );
        assert!(matches!(logged.response, Ok(Response::Data { .. })));
    }

    #[test]
    fn writes_watches_and_strangers_are_not_local_reads() {
        let mut tree = DataTree::new();
        tree.apply(
            Ctx {
                zxid: 1,
                time_ms: 1,
            },
            7,
            &Request::CreateSession { timeout_ms: 5000 },
        );
        let watched = Request::Exists {
            path: "/a".into(),
            watch: true,
        };
        assert_eq!(
            answer(&tree, 7, &payload(1, &watched)),
            Err(NotLocal::NotARead(crate::opcode::EXISTS))
        );
        let set = Request::SetData {
            path: "/a".into(),
            data: Bytes::new(),
            version: -1,
        };
        assert!(matches!(
            answer(&tree, 7, &payload(1, &set)),
            Err(NotLocal::NotARead(_))
        ));
        assert_eq!(answer(&tree, 7, b"\x00\x01"), Err(NotLocal::Undecodable));
        let get = Request::GetData {
            path: "/a".into(),
            watch: false,
        };
        let stranger = answer(&tree, 99, &payload(3, &get)).unwrap();
        let (h, _) = jute::split_reply(&stranger).unwrap();
        assert_eq!(h.err, Code::SessionExpired.code());
    }
}
