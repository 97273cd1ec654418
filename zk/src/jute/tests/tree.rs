//! The codec with the tree: requests decoded from bytes, applied, and the
//! tree's answers encoded and decoded as a client would.

use super::{b, open, payload};
use crate::jute::*;
use crate::{Code, CreateMode, Ctx, DataTree, OpResult, Request, Response};

const SESSION: i64 = 0x55;

struct Server {
    tree: DataTree,
    zxid: i64,
}

impl Server {
    fn new() -> Server {
        let mut s = Server {
            tree: DataTree::new(),
            zxid: 0,
        };
        s.apply(&Request::CreateSession { timeout_ms: 30000 })
            .unwrap();
        s
    }

    fn apply(&mut self, req: &Request) -> Result<Response, Code> {
        if req.is_write() {
            self.zxid += 1;
        }
        let ctx = Ctx {
            zxid: self.zxid,
            time_ms: 1000 + self.zxid,
        };
        self.tree.apply(ctx, SESSION, req).response
    }

    /// A client packet in, the reply packet out.
    fn serve(&mut self, packet: &[u8]) -> Vec<u8> {
        let (header, body) = split_request(payload(packet)).unwrap();
        match decode_request(header.op, body) {
            Ok(Decoded::Tree { request, shape }) => {
                let result = self.apply(&request);
                encode_response(header.xid, self.zxid, &result, &shape).unwrap()
            }
            Ok(Decoded::Special(s)) => panic!("special {s:?}"),
            Err(e) => {
                encode_response(header.xid, self.zxid, &Err(e.reply_code()), &Shape::Sync).unwrap()
            }
        }
    }
}

/// Sends `req` in form `shape` and decodes the reply as a client.
fn call(server: &mut Server, xid: i32, req: &Request, shape: &Shape) -> Result<Response, Code> {
    let reply = server.serve(&encode_request(xid, req, shape).unwrap());
    let (header, body) = split_reply(payload(&reply)).unwrap();
    assert_eq!(header.xid, xid);
    decode_response(shape, header.err, body).unwrap()
}

#[test]
fn create2_then_get_data_through_the_wire() {
    let mut s = Server::new();
    let create = Request::Create {
        path: "/a".into(),
        data: b("hi"),
        acl: open(),
        mode: CreateMode::Persistent,
    };
    let Ok(Response::Create { path, stat }) = call(&mut s, 1, &create, &Shape::Create2) else {
        panic!("create failed")
    };
    assert_eq!(path, "/a");
    assert_eq!(stat, s.tree.stat("/a").unwrap());
    let get = Request::GetData {
        path: "/a".into(),
        watch: false,
    };
    assert_eq!(
        call(&mut s, 2, &get, &Shape::GetData),
        Ok(Response::Data {
            data: b("hi"),
            stat
        })
    );
    assert_eq!(
        call(&mut s, 3, &create, &Shape::Create),
        Err(Code::NodeExists)
    );
}

#[test]
fn failed_multi_through_the_wire() {
    let mut s = Server::new();
    let multi = Request::Multi(vec![
        Request::Create {
            path: "/m".into(),
            data: b(""),
            acl: open(),
            mode: CreateMode::Persistent,
        },
        Request::Delete {
            path: "/nope".into(),
            version: -1,
        },
        Request::Check {
            path: "/".into(),
            version: -1,
        },
    ]);
    let shape = Shape::for_request(&multi).unwrap();
    assert_eq!(
        call(&mut s, 1, &multi, &shape),
        Ok(Response::Multi(vec![
            OpResult::Error(Code::Ok),
            OpResult::Error(Code::NoNode),
            OpResult::Error(Code::RuntimeInconsistency),
        ]))
    );
}

#[test]
fn ttl_and_container_creates_are_unimplemented() {
    let mut s = Server::new();
    let ttl = Request::Create {
        path: "/t".into(),
        data: b(""),
        acl: open(),
        mode: CreateMode::PersistentWithTtl,
    };
    assert_eq!(
        call(&mut s, 1, &ttl, &Shape::CreateTtl { ttl: 1000 }),
        Err(Code::Unimplemented)
    );
    let container = Request::Create {
        path: "/c".into(),
        data: b(""),
        acl: open(),
        mode: CreateMode::Container,
    };
    assert_eq!(
        call(&mut s, 2, &container, &Shape::CreateContainer),
        Err(Code::Unimplemented)
    );
}
