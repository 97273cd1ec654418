//! Byte-exact encodings, each checked against bytes written out by hand
//! from `zookeeper.jute`'s layouts, and decoded back.

use bytes::Bytes;

use super::{b, hex, open, payload, stat};
use crate::jute::*;
use crate::{Code, CreateMode, OpResult, Request, Response};

const STAT_HEX: &str = "
    00 00 00 00 00 00 01 01  00 00 00 00 00 00 01 05   czxid mzxid
    00 00 00 00 00 00 03 e8  00 00 00 00 00 00 07 d0   ctime mtime
    00 00 00 03  00 00 00 04  00 00 00 05              version cversion aversion
    01 23 45 67 89 ab cd ef                             ephemeralOwner
    00 00 00 02  00 00 00 06                            dataLength numChildren
    00 00 00 00 00 00 01 03                             pzxid";

#[test]
fn stat_is_68_bytes_in_schema_order() {
    let mut w = Writer::new();
    write_stat(&mut w, &stat());
    assert_eq!(w.as_slice(), hex(STAT_HEX).as_slice());
    assert_eq!(w.as_slice().len(), STAT_LEN);
    assert_eq!(read_stat(&mut Reader::new(&hex(STAT_HEX))).unwrap(), stat());
}

fn new_session_connect(read_only: Option<bool>) -> ConnectRequest {
    ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        timeout_ms: 30000,
        session_id: 0,
        passwd: Bytes::from(vec![0u8; 16]),
        read_only,
    }
}

const CONNECT_HEX: &str = "
    00 00 00 00                                         protocolVersion
    00 00 00 00 00 00 00 00                             lastZxidSeen
    00 00 75 30                                         timeOut 30000
    00 00 00 00 00 00 00 00                             sessionId
    00 00 00 10  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  passwd";

#[test]
fn connect_request_without_read_only_byte() {
    let packet = new_session_connect(None).encode().unwrap();
    let want = [hex("00 00 00 2c"), hex(CONNECT_HEX)].concat();
    assert_eq!(packet, want);
    let got = ConnectRequest::decode(payload(&packet)).unwrap();
    assert_eq!(got, new_session_connect(None));
}

#[test]
fn connect_request_with_read_only_byte() {
    let packet = new_session_connect(Some(false)).encode().unwrap();
    let want = [hex("00 00 00 2d"), hex(CONNECT_HEX), hex("00")].concat();
    assert_eq!(packet, want);
    assert_eq!(
        ConnectRequest::decode(payload(&packet)).unwrap(),
        new_session_connect(Some(false))
    );
    // Any nonzero byte is true, as Java's readBoolean.
    let mut body = hex(CONNECT_HEX);
    body.push(0x02);
    assert_eq!(ConnectRequest::decode(&body).unwrap().read_only, Some(true));
}

#[test]
fn connect_request_resuming_a_session() {
    let req = ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0x1_0000_0005,
        timeout_ms: 10000,
        session_id: 0x0123_4567_89ab_cdef,
        passwd: Bytes::from((1u8..=16).collect::<Vec<u8>>()),
        read_only: Some(true),
    };
    let want = hex("00 00 00 2d
         00 00 00 00
         00 00 00 01 00 00 00 05
         00 00 27 10
         01 23 45 67 89 ab cd ef
         00 00 00 10 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10
         01");
    assert_eq!(req.encode().unwrap(), want);
    assert_eq!(ConnectRequest::decode(&want[4..]).unwrap(), req);
}

#[test]
fn connect_response_read_only_byte_only_when_asked() {
    let mut resp = ConnectResponse {
        protocol_version: 0,
        timeout_ms: 10000,
        session_id: 0x0123_4567_89ab_cdef,
        passwd: Bytes::from((1u8..=16).collect::<Vec<u8>>()),
        read_only: None,
    };
    let body = "00 00 00 00  00 00 27 10  01 23 45 67 89 ab cd ef
                00 00 00 10 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10";
    let packet = resp.encode().unwrap();
    assert_eq!(packet, [hex("00 00 00 24"), hex(body)].concat());
    assert_eq!(ConnectResponse::decode(payload(&packet)).unwrap(), resp);

    resp.read_only = Some(false);
    let packet = resp.encode().unwrap();
    assert_eq!(packet, [hex("00 00 00 25"), hex(body), hex("00")].concat());
    assert_eq!(ConnectResponse::decode(payload(&packet)).unwrap(), resp);
}

const CREATE2_HEX: &str = "
    00 00 00 33
    00 00 00 01  00 00 00 0f                 xid 1, create2
    00 00 00 02 2f 61                        path /a
    00 00 00 02 68 69                        data hi
    00 00 00 01                              one ACL
    00 00 00 1f                              perms ALL
    00 00 00 05 77 6f 72 6c 64               world
    00 00 00 06 61 6e 79 6f 6e 65            anyone
    00 00 00 01                              flags: ephemeral";

fn create_a() -> Request {
    Request::Create {
        path: "/a".into(),
        data: b("hi"),
        acl: open(),
        mode: CreateMode::Ephemeral,
    }
}

#[test]
fn create2_request() {
    let packet = encode_request(1, &create_a(), &Shape::Create2).unwrap();
    assert_eq!(packet, hex(CREATE2_HEX));
    let (header, body) = split_request(payload(&packet)).unwrap();
    assert_eq!(header, RequestHeader { xid: 1, op: 15 });
    assert_eq!(
        decode_request(header.op, body).unwrap(),
        Decoded::Tree {
            request: create_a(),
            shape: Shape::Create2
        }
    );
}

#[test]
fn get_data_reply_with_stat() {
    let resp = Ok(Response::Data {
        data: b("v1"),
        stat: stat(),
    });
    let packet = encode_response(7, 0x105, &resp, &Shape::GetData).unwrap();
    let want = [
        hex("00 00 00 5a
             00 00 00 07  00 00 00 00 00 00 01 05  00 00 00 00
             00 00 00 02 76 31"),
        hex(STAT_HEX),
    ]
    .concat();
    assert_eq!(packet, want);
    let (header, body) = split_reply(payload(&packet)).unwrap();
    assert_eq!(
        header,
        ReplyHeader {
            xid: 7,
            zxid: 0x105,
            err: 0
        }
    );
    assert_eq!(
        decode_response(&Shape::GetData, header.err, body).unwrap(),
        resp
    );
}

#[test]
fn error_reply_has_no_body() {
    let packet = encode_response(5, 0x105, &Err(Code::NoNode), &Shape::Exists).unwrap();
    let want = hex("00 00 00 10  00 00 00 05  00 00 00 00 00 00 01 05  ff ff ff 9b");
    assert_eq!(packet, want);
    let (header, body) = split_reply(payload(&packet)).unwrap();
    assert!(body.is_empty());
    assert_eq!(
        decode_response(&Shape::Exists, header.err, body).unwrap(),
        Err(Code::NoNode)
    );
}

fn multi() -> (Request, Shape) {
    let ops = vec![
        Request::Create {
            path: "/m".into(),
            data: Bytes::new(),
            acl: open(),
            mode: CreateMode::Persistent,
        },
        Request::SetData {
            path: "/m".into(),
            data: b("x"),
            version: -1,
        },
        Request::Delete {
            path: "/m".into(),
            version: 0,
        },
        Request::Check {
            path: "/a".into(),
            version: 2,
        },
    ];
    let shapes = vec![Shape::Create, Shape::SetData, Shape::Delete, Shape::Check];
    (Request::Multi(ops), Shape::Multi(shapes))
}

#[test]
fn multi_request() {
    let (req, shape) = multi();
    let packet = encode_request(3, &req, &shape).unwrap();
    let want = hex("00 00 00 81
         00 00 00 03  00 00 00 0e                      xid 3, multi
         00 00 00 01  00  ff ff ff ff                  {create, false, -1}
         00 00 00 02 2f 6d  00 00 00 00                /m, empty data
         00 00 00 01  00 00 00 1f  00 00 00 05 77 6f 72 6c 64  00 00 00 06 61 6e 79 6f 6e 65
         00 00 00 00                                   persistent
         00 00 00 05  00  ff ff ff ff                  {setData, false, -1}
         00 00 00 02 2f 6d  00 00 00 01 78  ff ff ff ff
         00 00 00 02  00  ff ff ff ff                  {delete, false, -1}
         00 00 00 02 2f 6d  00 00 00 00
         00 00 00 0d  00  ff ff ff ff                  {check, false, -1}
         00 00 00 02 2f 61  00 00 00 02
         ff ff ff ff  01  ff ff ff ff                  {-1, true, -1}");
    assert_eq!(packet, want);
    let (header, body) = split_request(payload(&packet)).unwrap();
    assert_eq!(header, RequestHeader { xid: 3, op: 14 });
    assert_eq!(
        decode_request(header.op, body).unwrap(),
        Decoded::Tree {
            request: req,
            shape
        }
    );
}

#[test]
fn multi_success_reply() {
    let (_, shape) = multi();
    let resp = Ok(Response::Multi(vec![
        OpResult::Create {
            path: "/m".into(),
            stat: stat(),
        },
        OpResult::SetData { stat: stat() },
        OpResult::Delete,
        OpResult::Check,
    ]));
    let packet = encode_response(3, 0x200, &resp, &shape).unwrap();
    let want = [
        hex("00 00 00 87
             00 00 00 03  00 00 00 00 00 00 02 00  00 00 00 00
             00 00 00 01  00  00 00 00 00              {create, false, 0}
             00 00 00 02 2f 6d                         path only (create, not create2)
             00 00 00 05  00  00 00 00 00              {setData, false, 0}"),
        hex(STAT_HEX),
        hex(
            "00 00 00 02  00  00 00 00 00              {delete, false, 0}
             00 00 00 0d  00  00 00 00 00              {check, false, 0}
             ff ff ff ff  01  ff ff ff ff",
        ),
    ]
    .concat();
    assert_eq!(packet, want);
    let (header, body) = split_reply(payload(&packet)).unwrap();
    let got = decode_response(&shape, header.err, body).unwrap();
    // create (1) carries no Stat: it decodes as the default.
    let Ok(Response::Multi(results)) = got else {
        panic!("not a multi: {got:?}")
    };
    assert_eq!(
        results[0],
        OpResult::Create {
            path: "/m".into(),
            stat: crate::Stat::default()
        }
    );
    assert_eq!(
        results[1..],
        [
            OpResult::SetData { stat: stat() },
            OpResult::Delete,
            OpResult::Check
        ]
    );
}

#[test]
fn multi_create2_member_reply_has_stat() {
    let shape = Shape::Multi(vec![Shape::Create2]);
    let resp = Ok(Response::Multi(vec![OpResult::Create {
        path: "/m".into(),
        stat: stat(),
    }]));
    let packet = encode_response(3, 0x200, &resp, &shape).unwrap();
    let want = [
        hex("00 00 00 6c
             00 00 00 03  00 00 00 00 00 00 02 00  00 00 00 00
             00 00 00 0f  00  00 00 00 00
             00 00 00 02 2f 6d"),
        hex(STAT_HEX),
        hex("ff ff ff ff  01  ff ff ff ff"),
    ]
    .concat();
    assert_eq!(packet, want);
    let (header, body) = split_reply(payload(&packet)).unwrap();
    assert_eq!(decode_response(&shape, header.err, body).unwrap(), resp);
}

#[test]
fn multi_failure_reply() {
    let (_, shape) = multi();
    let resp = Ok(Response::Multi(vec![
        OpResult::Error(Code::Ok),
        OpResult::Error(Code::BadVersion),
        OpResult::Error(Code::RuntimeInconsistency),
        OpResult::Error(Code::RuntimeInconsistency),
    ]));
    let packet = encode_response(3, 0x200, &resp, &shape).unwrap();
    let want = hex("00 00 00 4d
         00 00 00 03  00 00 00 00 00 00 02 00  00 00 00 00    outer err 0
         ff ff ff ff  00  00 00 00 00  00 00 00 00            rolled back: 0
         ff ff ff ff  00  ff ff ff 99  ff ff ff 99            BadVersion -103
         ff ff ff ff  00  ff ff ff fe  ff ff ff fe            RuntimeInconsistency -2
         ff ff ff ff  00  ff ff ff fe  ff ff ff fe
         ff ff ff ff  01  ff ff ff ff");
    assert_eq!(packet, want);
    let (header, body) = split_reply(payload(&packet)).unwrap();
    assert_eq!(header.err, 0);
    assert_eq!(decode_response(&shape, header.err, body).unwrap(), resp);
}

#[test]
fn notification_and_ping() {
    let event = WatcherEvent {
        event_type: 3,
        state: 3,
        path: "/a".into(),
    };
    let packet = encode_notification(&event).unwrap();
    let want = hex("00 00 00 1e
         ff ff ff ff  ff ff ff ff ff ff ff ff  00 00 00 00
         00 00 00 03  00 00 00 03  00 00 00 02 2f 61");
    assert_eq!(packet, want);
    let (header, body) = split_reply(payload(&packet)).unwrap();
    assert_eq!(header.xid, xid::NOTIFICATION);
    assert_eq!(header.zxid, -1);
    assert_eq!(decode_notification(body).unwrap(), event);

    let ping = encode_special_request(xid::PING, &Special::Ping).unwrap();
    assert_eq!(ping, hex("00 00 00 08  ff ff ff fe  00 00 00 0b"));
    let (header, body) = split_request(payload(&ping)).unwrap();
    assert_eq!(header, RequestHeader { xid: -2, op: 11 });
    assert_eq!(
        decode_request(header.op, body).unwrap(),
        Decoded::Special(Special::Ping)
    );

    let reply = encode_special_response(xid::PING, 0x105, &Ok(SpecialResponse::Empty)).unwrap();
    assert_eq!(
        reply,
        hex("00 00 00 10  ff ff ff fe  00 00 00 00 00 00 01 05  00 00 00 00")
    );
}

#[test]
fn add_watch_reply_is_error_response_zero() {
    let packet = encode_special_response(9, 1, &Ok(SpecialResponse::AddWatch)).unwrap();
    assert_eq!(
        packet,
        hex("00 00 00 14  00 00 00 09  00 00 00 00 00 00 00 01  00 00 00 00  00 00 00 00")
    );
}

#[test]
fn set_watches_request() {
    let sw = SetWatches {
        relative_zxid: 0x105,
        data: vec!["/a".into()],
        exist: vec![],
        child: vec!["/".into()],
        ..SetWatches::default()
    };
    let packet =
        encode_special_request(xid::SET_WATCHES, &Special::SetWatches(sw.clone())).unwrap();
    let want = hex("00 00 00 27
         ff ff ff f8  00 00 00 65                 xid -8, setWatches
         00 00 00 00 00 00 01 05                  relativeZxid
         00 00 00 01  00 00 00 02 2f 61           data [/a]
         00 00 00 00                              exist []
         00 00 00 01  00 00 00 01 2f              child [/]");
    assert_eq!(packet, want);
    let (header, body) = split_request(payload(&packet)).unwrap();
    assert_eq!(
        decode_request(header.op, body).unwrap(),
        Decoded::Special(Special::SetWatches(sw))
    );
}
