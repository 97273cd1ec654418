//! The ZooKeeper client's payloads and reply decoding.

use super::*;

fn reply(xid: i32, zxid: i64, result: &Result<Response, Code>, shape: &Shape) -> Bytes {
    let framed = jute::encode_response(xid, zxid, result, shape).unwrap();
    Bytes::from(framed).slice(4..)
}

fn stat(version: i32) -> Stat {
    Stat {
        czxid: 3,
        mzxid: 9,
        version,
        data_length: 2,
        ..Stat::default()
    }
}

#[test]
fn a_create2_reply_decodes_with_its_stat_and_zxid() {
    let req = Request::Create {
        path: "/a".into(),
        data: Bytes::from_static(b"hi"),
        acl: Acl::open_unsafe(),
        mode: CreateMode::Persistent,
    };
    let (payload, shape) = request_payload(7, &req).unwrap();
    assert_eq!(shape, Shape::Create2);
    let (h, body) = jute::split_request(&payload).unwrap();
    assert_eq!((h.xid, h.op), (7, opcode::CREATE2));
    match jute::decode_request(h.op, body).unwrap() {
        jute::Decoded::Tree { request, .. } => assert_eq!(request, req),
        other => panic!("{other:?}"),
    }
    let resp = Response::Create {
        path: "/a".into(),
        stat: stat(0),
    };
    let bytes = reply(7, 42, &Ok(resp.clone()), &shape);
    assert_eq!(decode_reply(7, &shape, &bytes).unwrap(), (42, Ok(resp)));
}

#[test]
fn an_error_reply_is_its_code_with_the_zxid() {
    let shape = Shape::SetData;
    let bytes = reply(3, 11, &Err(Code::BadVersion), &shape);
    assert_eq!(
        decode_reply(3, &shape, &bytes).unwrap(),
        (11, Err(Code::BadVersion))
    );
}

#[test]
fn a_reply_to_another_xid_or_cut_short_is_refused() {
    let shape = Shape::GetData;
    let ok = Ok(Response::Data {
        data: Bytes::from_static(b"hi"),
        stat: stat(4),
    });
    let bytes = reply(5, 1, &ok, &shape);
    assert_eq!(
        decode_reply(6, &shape, &bytes),
        Err(ZkError::Xid { sent: 6, got: 5 })
    );
    assert!(matches!(
        decode_reply(5, &shape, &bytes[..bytes.len() - 1]),
        Err(ZkError::Decode(_))
    ));
    assert!(matches!(
        decode_reply(5, &shape, &bytes[..10]),
        Err(ZkError::Decode(_))
    ));
    assert!(matches!(
        decode_reply(5, &shape, &[]),
        Err(ZkError::Decode(_))
    ));
}

#[test]
fn a_failed_multi_is_a_list_of_codes() {
    let ops = vec![
        Request::Check {
            path: "/a".into(),
            version: 0,
        },
        Request::Delete {
            path: "/b".into(),
            version: -1,
        },
    ];
    let (_, shape) = request_payload(2, &Request::Multi(ops)).unwrap();
    let results = vec![OpResult::Error(Code::Ok), OpResult::Error(Code::NoNode)];
    let bytes = reply(2, 8, &Ok(Response::Multi(results.clone())), &shape);
    assert_eq!(
        decode_reply(2, &shape, &bytes).unwrap(),
        (8, Ok(Response::Multi(results)))
    );
}

#[test]
fn move_session_is_a_header_the_session_and_the_timeout() {
    let p = move_session_payload(1, 0x1_0000_0002, 6_000);
    let (h, body) = jute::split_request(&p).unwrap();
    assert_eq!((h.xid, h.op), (1, opcode::MOVE_SESSION));
    assert_eq!(body[..8], 0x1_0000_0002i64.to_be_bytes());
    assert_eq!(body[8..], 6_000i32.to_be_bytes());
    let moved = Request::MoveSession {
        session: 0x1_0000_0002,
        timeout_ms: 6_000,
    };
    match jute::decode_logged_request(h.op, body).unwrap() {
        jute::Decoded::Tree { request, shape } => {
            assert_eq!((request, shape), (moved.clone(), Shape::CloseSession))
        }
        other => panic!("{other:?}"),
    }
    // Not a request a ZooKeeper client sends, nor one that decodes from its packet.
    assert!(matches!(
        request_payload(1, &moved),
        Err(ZkError::Encode(_))
    ));
    assert!(jute::decode_request(h.op, body).is_err());
    // Numbered as a createSession: the clock and every shard.
    let open = Request::CreateSession { timeout_ms: 6_000 };
    for shards in [0, 1, 3] {
        assert_eq!(op_mask(&moved, shards), op_mask(&open, shards));
    }
}

#[test]
fn create_session_is_a_header_and_the_timeout() {
    let p = create_session_payload(1, 10_000);
    let (h, body) = jute::split_request(&p).unwrap();
    assert_eq!((h.xid, h.op), (1, opcode::CREATE_SESSION));
    assert_eq!(body, 10_000i32.to_be_bytes());
    assert!(matches!(
        request_payload(1, &Request::CreateSession { timeout_ms: 1 }),
        Err(ZkError::Encode(_))
    ));
    // Its reply has no body.
    let bytes = reply(1, 1, &Ok(Response::Empty), &Shape::CloseSession);
    assert_eq!(
        decode_reply(1, &Shape::CloseSession, &bytes).unwrap(),
        (1, Ok(Response::Empty))
    );
}
