//! Malformed input: every truncated packet is an error (never a panic),
//! bad lengths are refused, nulls read as empty, unknown opcodes and bad
//! create flags map to ZooKeeper's answers.

use bytes::Bytes;

use super::roundtrip::{requests, responses, special_responses, specials};
use super::{hex, payload};
use crate::jute::*;
use crate::{Code, CreateMode, Request};

/// Decodes one payload, keeping only whether it decoded.
type Decode = Box<dyn Fn(&[u8]) -> Result<(), JuteError>>;

/// Each packet's payload, and how to decode it.
fn all_payloads() -> Vec<(Vec<u8>, Decode)> {
    let mut out: Vec<(Vec<u8>, Decode)> = Vec::new();
    for (req, shape) in requests() {
        let p = payload(&encode_request(1, &req, &shape).unwrap()).to_vec();
        out.push((
            p,
            Box::new(|p: &[u8]| {
                let (h, body) = split_request(p)?;
                decode_request(h.op, body).map(drop)
            }),
        ));
    }
    for special in specials() {
        let p = payload(&encode_special_request(1, &special).unwrap()).to_vec();
        out.push((
            p,
            Box::new(|p: &[u8]| {
                let (h, body) = split_request(p)?;
                decode_request(h.op, body).map(drop)
            }),
        ));
    }
    for (resp, shape) in responses() {
        let p = payload(&encode_response(1, 2, &resp, &shape).unwrap()).to_vec();
        out.push((
            p,
            Box::new(move |p: &[u8]| {
                let (h, body) = split_reply(p)?;
                decode_response(&shape, h.err, body).map(drop)
            }),
        ));
    }
    for (asked, resp) in special_responses() {
        let p = payload(&encode_special_response(1, 2, &resp).unwrap()).to_vec();
        out.push((
            p,
            Box::new(move |p: &[u8]| {
                let (h, body) = split_reply(p)?;
                decode_special_response(&asked, h.err, body).map(drop)
            }),
        ));
    }
    out
}

/// Replies whose body may legitimately be absent or ignored: errors
/// (header only), bodiless successes, a top-level check's optional Stat,
/// and specials whose body the client ignores.
fn body_optional(p: &[u8], decode: &dyn Fn(&[u8]) -> Result<(), JuteError>) -> bool {
    p.len() > 16 && decode(&p[..16]).is_ok()
}

#[test]
fn every_truncated_packet_is_an_error() {
    let mut checked = 0;
    for (p, decode) in all_payloads() {
        decode(&p).unwrap();
        // A reply body that decodes from the header alone has nothing
        // required after it (a top-level check's Stat is optional).
        let first_required = if body_optional(&p, decode.as_ref()) {
            16
        } else {
            p.len()
        };
        for cut in 0..first_required {
            assert!(decode(&p[..cut]).is_err(), "{:?} cut at {cut}", p);
            checked += 1;
        }
        // Past the header, a cut anywhere still never panics.
        for cut in first_required..p.len() {
            let _ = decode(&p[..cut]);
        }
    }
    assert!(checked > 1000, "{checked}");
}

#[test]
fn truncated_connect_is_an_error_until_read_only_byte() {
    let req = ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 5,
        timeout_ms: 4000,
        session_id: 9,
        passwd: Bytes::from(vec![7u8; 16]),
        read_only: Some(false),
    };
    let p = payload(&req.encode().unwrap()).to_vec();
    for cut in 0..p.len() - 1 {
        assert!(ConnectRequest::decode(&p[..cut]).is_err(), "cut {cut}");
    }
    let without = ConnectRequest::decode(&p[..p.len() - 1]).unwrap();
    assert_eq!(without.read_only, None);
    let resp = ConnectResponse {
        protocol_version: 0,
        timeout_ms: 4000,
        session_id: 9,
        passwd: Bytes::from(vec![7u8; 16]),
        read_only: Some(true),
    };
    let p = payload(&resp.encode().unwrap()).to_vec();
    for cut in 0..p.len() - 1 {
        assert!(ConnectResponse::decode(&p[..cut]).is_err(), "cut {cut}");
    }
}

#[test]
fn garbage_never_panics() {
    // A fixed-seed LCG: mutate valid payloads byte by byte and decode.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    for (p, decode) in all_payloads() {
        for _ in 0..50 {
            let mut q = p.clone();
            let flips = 1 + next() % 3;
            for _ in 0..flips {
                let i = next() % q.len();
                q[i] = next() as u8;
            }
            let _ = decode(&q);
            let _ = ConnectRequest::decode(&q);
            let _ = ConnectResponse::decode(&q);
        }
    }
}

#[test]
fn split_frame_checks_the_length() {
    let max = DEFAULT_MAX_BUFFER;
    assert_eq!(split_frame(&[], max), Ok(None));
    assert_eq!(split_frame(&[0, 0, 0], max), Ok(None));
    assert_eq!(split_frame(&hex("00 00 00 02 aa"), max), Ok(None));
    assert_eq!(
        split_frame(&hex("00 00 00 02 aa bb cc"), max),
        Ok(Some(4..6))
    );
    assert_eq!(split_frame(&hex("00 00 00 00"), max), Ok(Some(4..4)));
    assert_eq!(
        split_frame(&hex("ff ff ff ff"), max),
        Err(JuteError::BadLength(-1))
    );
    assert_eq!(
        split_frame(&hex("ff ff ff fe"), max),
        Err(JuteError::BadLength(-2))
    );
    assert_eq!(
        split_frame(&hex("00 10 00 00"), max),
        Err(JuteError::TooLong { len: 0x100000, max })
    );
    // Exactly max is allowed (ZooKeeper refuses len > maxBuffer).
    assert_eq!(split_frame(&hex("00 0f ff ff"), max), Ok(None));
    // A four-letter word read as a length is far over the limit.
    assert!(split_frame(b"ruok", max).is_err());
    assert_eq!(frame(b"ab").unwrap(), hex("00 00 00 02 61 62"));
}

#[test]
fn bad_lengths_are_refused() {
    // String length -2.
    let buf = hex("ff ff ff fe 61 62");
    let mut r = Reader::new(&buf);
    assert_eq!(r.read_string(), Err(JuteError::BadLength(-2)));
    // Buffer length over the reader's max.
    let buf = hex("00 00 00 05 01 02 03 04 05");
    let mut r = Reader::with_max(&buf, 4);
    assert_eq!(r.read_buffer(), Err(JuteError::TooLong { len: 5, max: 4 }));
    let buf = hex("7f ff ff ff");
    let mut r = Reader::new(&buf);
    assert!(matches!(r.read_buffer(), Err(JuteError::TooLong { .. })));
    // A length past the end.
    let buf = hex("00 00 00 05 01 02");
    let mut r = Reader::new(&buf);
    assert_eq!(
        r.read_buffer(),
        Err(JuteError::Truncated { needed: 5, left: 2 })
    );
    // Vector count -2, and a count larger than the bytes left.
    let buf = hex("ff ff ff fe");
    let mut r = Reader::new(&buf);
    assert_eq!(r.read_string_vec(), Err(JuteError::BadLength(-2)));
    let buf = hex("00 01 00 00 00 00");
    let mut r = Reader::new(&buf);
    assert!(matches!(
        r.read_string_vec(),
        Err(JuteError::Truncated { .. })
    ));
    // Inside a request: getData with path length -2.
    let body = hex("ff ff ff fe 00");
    assert_eq!(decode_request(4, &body), Err(JuteError::BadLength(-2)));
}

#[test]
fn nulls_read_as_empty() {
    let buf = hex("ff ff ff ff ff ff ff ff ff ff ff ff ff ff ff ff");
    let mut r = Reader::new(&buf);
    assert_eq!(r.read_opt_string(), Ok(None));
    assert_eq!(r.read_string(), Ok(String::new()));
    assert_eq!(r.read_buffer(), Ok(Bytes::new()));
    assert_eq!(r.read_opt_buffer(), Ok(None));
    assert_eq!(r.remaining(), 0);
    // kazoo's create with data -1 and a null ACL list.
    let body = hex("00 00 00 02 2f 61  ff ff ff ff  ff ff ff ff  00 00 00 00");
    assert_eq!(
        decode_request(1, &body).unwrap(),
        Decoded::Tree {
            request: Request::Create {
                path: "/a".into(),
                data: Bytes::new(),
                acl: vec![],
                mode: CreateMode::Persistent,
            },
            shape: Shape::Create,
        }
    );
    // setData with null data; getEphemerals with a null prefix.
    let body = hex("00 00 00 02 2f 61  ff ff ff ff  ff ff ff ff");
    assert_eq!(
        decode_request(5, &body).unwrap(),
        Decoded::Tree {
            request: Request::SetData {
                path: "/a".into(),
                data: Bytes::new(),
                version: -1
            },
            shape: Shape::SetData,
        }
    );
    assert_eq!(
        decode_request(103, &hex("ff ff ff ff")).unwrap(),
        Decoded::Tree {
            request: Request::GetEphemerals {
                prefix: String::new()
            },
            shape: Shape::GetEphemerals,
        }
    );
    // A connect with a null passwd.
    let connect = hex(
        "00 00 00 00  00 00 00 00 00 00 00 00  00 00 75 30  00 00 00 00 00 00 00 00  ff ff ff ff",
    );
    assert_eq!(
        ConnectRequest::decode(&connect).unwrap().passwd,
        Bytes::new()
    );
    // The writer writes None as -1.
    let mut w = Writer::new();
    w.write_opt_string(None);
    w.write_opt_buffer(None);
    assert_eq!(w.into_inner(), hex("ff ff ff ff ff ff ff ff"));
}

#[test]
fn invalid_utf8_is_replaced_not_refused() {
    let buf = hex("00 00 00 03 2f ff 61");
    let mut r = Reader::new(&buf);
    assert_eq!(r.read_string().unwrap(), "/\u{fffd}a");
}

#[test]
fn unknown_opcodes_are_unimplemented() {
    for op in [0, 10, 20, 23, 99, 108, 1000, -1, -10, -12] {
        let err = decode_request(op, &[]).unwrap_err();
        assert_eq!(err, JuteError::UnknownOpcode(op));
        assert_eq!(err.reply_code(), Code::Unimplemented);
    }
}

#[test]
fn create_flags_and_ttl() {
    let create = |flags: &str, ttl: &str| {
        hex(&format!(
            "00 00 00 02 2f 61  00 00 00 00  00 00 00 00  {flags} {ttl}"
        ))
    };
    let mode_of = |d: Decoded| match d {
        Decoded::Tree {
            request: Request::Create { mode, .. },
            shape,
        } => (mode, shape),
        other => panic!("{other:?}"),
    };
    // createTTL and createContainer decode into modes the tree refuses.
    let d = decode_request(21, &create("00 00 00 05", "00 00 00 00 00 00 03 e8")).unwrap();
    assert_eq!(
        mode_of(d),
        (
            CreateMode::PersistentWithTtl,
            Shape::CreateTtl { ttl: 1000 }
        )
    );
    let d = decode_request(21, &create("00 00 00 06", "00 00 00 00 00 00 03 e8")).unwrap();
    assert_eq!(mode_of(d).0, CreateMode::PersistentSequentialWithTtl);
    let d = decode_request(19, &create("00 00 00 04", "")).unwrap();
    assert_eq!(mode_of(d), (CreateMode::Container, Shape::CreateContainer));
    // Unknown flags: BadArguments (CreateMode.fromFlag).
    let err = decode_request(1, &create("00 00 00 07", "")).unwrap_err();
    assert_eq!(err, JuteError::BadFlags(7));
    assert_eq!(err.reply_code(), Code::BadArguments);
    // createTTL with a non-TTL mode and a ttl: BadArguments (validateTTL).
    let err = decode_request(21, &create("00 00 00 00", "00 00 00 00 00 00 00 01")).unwrap_err();
    assert_eq!(err, JuteError::BadTtl(1));
    assert_eq!(err.reply_code(), Code::BadArguments);
    // ... but with ttl -1 it is a plain create.
    let d = decode_request(21, &create("00 00 00 00", "ff ff ff ff ff ff ff ff")).unwrap();
    assert_eq!(mode_of(d).0, CreateMode::Persistent);
}

#[test]
fn multi_member_errors() {
    // A getData member in a multi (14): only writes are allowed.
    let body = hex("00 00 00 04 00 ff ff ff ff  00 00 00 02 2f 61 00  ff ff ff ff 01 ff ff ff ff");
    let err = decode_request(14, &body).unwrap_err();
    assert_eq!(err, JuteError::BadMultiOp(4));
    assert_eq!(err.reply_code(), Code::MarshallingError);
    // ... but in a multiRead (22) it is fine.
    assert!(matches!(
        decode_request(22, &body),
        Ok(Decoded::Special(Special::MultiRead(_)))
    ));
    // Bad create flags in a multi: MultiOperationRecord's IOException.
    let body = hex(
        "00 00 00 01 00 ff ff ff ff  00 00 00 02 2f 61 00 00 00 00 00 00 00 00 00 00 00 09
         ff ff ff ff 01 ff ff ff ff",
    );
    let err = decode_request(14, &body).unwrap_err();
    assert_eq!(err, JuteError::BadMultiFlags(9));
    assert_eq!(err.reply_code(), Code::MarshallingError);
    // A createTTL member with a plain mode is a plain create (1).
    let body = hex(
        "00 00 00 15 00 ff ff ff ff  00 00 00 02 2f 61 00 00 00 00 00 00 00 00 00 00 00 00
         00 00 00 00 00 00 00 05  ff ff ff ff 01 ff ff ff ff",
    );
    let Decoded::Tree { shape, .. } = decode_request(14, &body).unwrap() else {
        panic!("not a tree request")
    };
    assert_eq!(shape, Shape::Multi(vec![Shape::Create]));
    // Any header with done set ends the list, as in Java.
    let body = hex("00 00 00 00 01 00 00 00 00");
    assert_eq!(
        decode_request(14, &body).unwrap(),
        Decoded::Tree {
            request: Request::Multi(vec![]),
            shape: Shape::Multi(vec![])
        }
    );
}

#[test]
fn encode_refuses_mismatched_shapes() {
    let get = Request::GetChildren {
        path: "/".into(),
        watch: false,
        with_stat: false,
    };
    assert!(matches!(
        encode_request(1, &get, &Shape::GetChildren2),
        Err(JuteError::ShapeMismatch(_))
    ));
    assert!(matches!(
        encode_request(1, &get, &Shape::Delete),
        Err(JuteError::ShapeMismatch(_))
    ));
    assert!(matches!(
        encode_request(
            1,
            &Request::Multi(vec![get.clone()]),
            &Shape::Multi(vec![Shape::GetChildren])
        ),
        Err(JuteError::BadMultiOp(8))
    ));
    assert!(matches!(
        encode_request(
            1,
            &Request::Multi(vec![]),
            &Shape::Multi(vec![Shape::Delete])
        ),
        Err(JuteError::ShapeMismatch(_))
    ));
    assert!(encode_request(
        1,
        &Request::CreateSession { timeout_ms: 1 },
        &Shape::CloseSession
    )
    .is_err());
    let sync = Request::Sync { path: "/".into() };
    assert!(matches!(
        encode_special_request(1, &Special::MultiRead(vec![sync])),
        Err(JuteError::BadMultiOp(9))
    ));
    // An unknown code in a reply.
    assert_eq!(
        decode_response(&Shape::Exists, -9999, &[]),
        Err(JuteError::UnknownCode(-9999))
    );
}
