//! Round trips: every request kind encodes and decodes back to itself,
//! and every reply kind too.

use bytes::Bytes;

use super::{b, open, payload, stat};
use crate::jute::*;
use crate::{Acl, Code, CreateMode, OpResult, Request, Response, Stat};

/// Every tree request kind, in each of its forms.
pub(crate) fn requests() -> Vec<(Request, Shape)> {
    let create = |mode| Request::Create {
        path: "/n".into(),
        data: b("data"),
        acl: vec![
            Acl::new(31, "world", "anyone"),
            Acl::new(1, "digest", "u:h"),
        ],
        mode,
    };
    let mut out = vec![
        (create(CreateMode::Persistent), Shape::Create),
        (create(CreateMode::EphemeralSequential), Shape::Create2),
        (
            create(CreateMode::PersistentWithTtl),
            Shape::CreateTtl { ttl: 5000 },
        ),
        (
            create(CreateMode::PersistentSequentialWithTtl),
            Shape::CreateTtl { ttl: 1 },
        ),
        (create(CreateMode::Container), Shape::CreateContainer),
        (
            Request::Delete {
                path: "/n".into(),
                version: -1,
            },
            Shape::Delete,
        ),
        (
            Request::Exists {
                path: "/n".into(),
                watch: true,
            },
            Shape::Exists,
        ),
        (
            Request::GetData {
                path: "/n".into(),
                watch: false,
            },
            Shape::GetData,
        ),
        (
            Request::SetData {
                path: "/n".into(),
                data: Bytes::new(),
                version: 7,
            },
            Shape::SetData,
        ),
        (Request::GetAcl { path: "/n".into() }, Shape::GetAcl),
        (
            Request::SetAcl {
                path: "/n".into(),
                acl: open(),
                version: 2,
            },
            Shape::SetAcl,
        ),
        (
            Request::GetChildren {
                path: "/".into(),
                watch: true,
                with_stat: false,
            },
            Shape::GetChildren,
        ),
        (
            Request::GetChildren {
                path: "/".into(),
                watch: false,
                with_stat: true,
            },
            Shape::GetChildren2,
        ),
        (Request::Sync { path: "/".into() }, Shape::Sync),
        (
            Request::Check {
                path: "/n".into(),
                version: 0,
            },
            Shape::Check,
        ),
        (
            Request::GetEphemerals {
                prefix: "/e".into(),
            },
            Shape::GetEphemerals,
        ),
        (
            Request::GetAllChildrenNumber { path: "/".into() },
            Shape::GetAllChildrenNumber,
        ),
        (Request::CloseSession, Shape::CloseSession),
        (Request::Multi(vec![]), Shape::Multi(vec![])),
    ];
    let members: Vec<(Request, Shape)> = out
        .iter()
        .filter(|(r, _)| {
            matches!(
                r,
                Request::Create { .. }
                    | Request::Delete { .. }
                    | Request::SetData { .. }
                    | Request::Check { .. }
            )
        })
        .cloned()
        .collect();
    let (ops, shapes) = members.into_iter().unzip();
    out.push((Request::Multi(ops), Shape::Multi(shapes)));
    out
}

/// Every special request kind.
pub(crate) fn specials() -> Vec<Special> {
    let sw = SetWatches {
        relative_zxid: 0x1_0000_0001,
        data: vec!["/a".into(), "/b".into()],
        exist: vec!["/c".into()],
        child: vec!["/".into()],
        persistent: vec!["/p".into()],
        persistent_recursive: vec!["/r".into(), "/s".into()],
    };
    let v1 = SetWatches {
        persistent: vec![],
        persistent_recursive: vec![],
        ..sw.clone()
    };
    vec![
        Special::Ping,
        Special::WhoAmI,
        Special::Auth {
            auth_type: 0,
            scheme: "digest".into(),
            auth: b("user:pw"),
        },
        Special::SetWatches(v1),
        Special::SetWatches2(sw),
        Special::AddWatch {
            path: "/w".into(),
            mode: 1,
        },
        Special::RemoveWatches {
            path: "/w".into(),
            watcher_type: 3,
        },
        Special::CheckWatches {
            path: "/w".into(),
            watcher_type: 2,
        },
        Special::MultiRead(vec![
            Request::GetChildren {
                path: "/".into(),
                watch: false,
                with_stat: false,
            },
            Request::GetData {
                path: "/a".into(),
                watch: false,
            },
        ]),
        Special::MultiRead(vec![]),
        Special::Reconfig {
            joining: Some("server.4=h:2888:3888".into()),
            leaving: None,
            new_members: Some(String::new()),
            cur_config_id: -1,
        },
        Special::Sasl { token: b("tok") },
    ]
}

#[test]
fn every_request_round_trips() {
    for (xid, (req, shape)) in requests().into_iter().enumerate() {
        let xid = xid as i32 + 1;
        let packet = encode_request(xid, &req, &shape).unwrap();
        let (header, body) = split_request(payload(&packet)).unwrap();
        assert_eq!(
            header,
            RequestHeader {
                xid,
                op: shape.opcode()
            }
        );
        let got = decode_request(header.op, body).unwrap();
        assert_eq!(
            got,
            Decoded::Tree {
                request: req.clone(),
                shape: shape.clone()
            },
            "{req:?}"
        );
    }
}

#[test]
fn every_special_round_trips() {
    for special in specials() {
        let packet = encode_special_request(-8, &special).unwrap();
        let (header, body) = split_request(payload(&packet)).unwrap();
        assert_eq!(header.op, special.opcode());
        assert_eq!(
            decode_request(header.op, body).unwrap(),
            Decoded::Special(special.clone())
        );
    }
}

#[test]
fn shape_for_request_matches_the_decoded_forms() {
    for (req, shape) in requests() {
        let default = Shape::for_request(&req).unwrap();
        match shape {
            Shape::Create | Shape::CreateTtl { .. } => assert_eq!(default, Shape::Create2),
            Shape::Multi(_) => assert_eq!(default.opcode(), 14),
            other => assert_eq!(default, other),
        }
        // The default form always encodes.
        encode_request(1, &req, &default).unwrap();
    }
    assert_eq!(
        Shape::for_request(&Request::CreateSession { timeout_ms: 1 }),
        None
    );
}

/// Every reply kind with the form it answers; the Stat is dropped on the
/// wire for create (1) and getChildren (8), so those use the default Stat.
pub(crate) fn responses() -> Vec<(Result<Response, Code>, Shape)> {
    let s = stat();
    vec![
        (
            Ok(Response::Create {
                path: "/n".into(),
                stat: Stat::default(),
            }),
            Shape::Create,
        ),
        (
            Ok(Response::Create {
                path: "/n0000000001".into(),
                stat: s,
            }),
            Shape::Create2,
        ),
        (
            Ok(Response::Create {
                path: "/n".into(),
                stat: s,
            }),
            Shape::CreateTtl { ttl: 10 },
        ),
        (
            Ok(Response::Create {
                path: "/n".into(),
                stat: s,
            }),
            Shape::CreateContainer,
        ),
        (Ok(Response::Empty), Shape::Delete),
        (Ok(Response::Stat(s)), Shape::Exists),
        (
            Ok(Response::Data {
                data: b("v"),
                stat: s,
            }),
            Shape::GetData,
        ),
        (
            Ok(Response::Data {
                data: Bytes::new(),
                stat: s,
            }),
            Shape::GetData,
        ),
        (Ok(Response::Stat(s)), Shape::SetData),
        (
            Ok(Response::Acl {
                acl: open(),
                stat: s,
            }),
            Shape::GetAcl,
        ),
        (Ok(Response::Stat(s)), Shape::SetAcl),
        (
            Ok(Response::Children {
                names: vec!["a".into(), "b".into()],
                stat: Stat::default(),
            }),
            Shape::GetChildren,
        ),
        (
            Ok(Response::Children {
                names: vec![],
                stat: s,
            }),
            Shape::GetChildren2,
        ),
        (Ok(Response::Sync { path: "/".into() }), Shape::Sync),
        (Ok(Response::Empty), Shape::Check),
        (Ok(Response::Stat(s)), Shape::Check),
        (
            Ok(Response::Ephemerals(vec!["/e/1".into(), "/e/2".into()])),
            Shape::GetEphemerals,
        ),
        (
            Ok(Response::AllChildrenNumber(42)),
            Shape::GetAllChildrenNumber,
        ),
        (Ok(Response::Empty), Shape::CloseSession),
        (Ok(Response::Multi(vec![])), Shape::Multi(vec![])),
        (
            Ok(Response::Multi(vec![
                OpResult::Create {
                    path: "/a".into(),
                    stat: Stat::default(),
                },
                OpResult::Create {
                    path: "/b".into(),
                    stat: s,
                },
                OpResult::Delete,
                OpResult::SetData { stat: s },
                OpResult::Check,
            ])),
            Shape::Multi(vec![
                Shape::Create,
                Shape::CreateContainer,
                Shape::Delete,
                Shape::SetData,
                Shape::Check,
            ]),
        ),
        (
            Ok(Response::Multi(vec![
                OpResult::Error(Code::Ok),
                OpResult::Error(Code::NodeExists),
                OpResult::Error(Code::RuntimeInconsistency),
            ])),
            Shape::Multi(vec![Shape::Create2, Shape::Create2, Shape::Delete]),
        ),
        (Err(Code::NoNode), Shape::Exists),
        (Err(Code::NodeExists), Shape::Create2),
        (Err(Code::BadVersion), Shape::SetData),
        (Err(Code::NotEmpty), Shape::Delete),
        (Err(Code::Unimplemented), Shape::CreateTtl { ttl: 1 }),
        (Err(Code::MarshallingError), Shape::Multi(vec![])),
    ]
}

#[test]
fn every_response_round_trips() {
    for (resp, shape) in responses() {
        let packet = encode_response(9, 0x77, &resp, &shape).unwrap();
        let (header, body) = split_reply(payload(&packet)).unwrap();
        assert_eq!((header.xid, header.zxid), (9, 0x77));
        if let Err(code) = &resp {
            assert_eq!(header.err, code.code());
            assert!(body.is_empty());
        }
        assert_eq!(
            decode_response(&shape, header.err, body).unwrap(),
            resp,
            "{shape:?}"
        );
    }
}

#[test]
fn create_and_get_children_drop_the_stat() {
    let resp = Ok(Response::Create {
        path: "/n".into(),
        stat: stat(),
    });
    let short = encode_response(1, 1, &resp, &Shape::Create).unwrap();
    let long = encode_response(1, 1, &resp, &Shape::Create2).unwrap();
    assert_eq!(long.len() - short.len(), STAT_LEN);
    let resp = Ok(Response::Children {
        names: vec!["x".into()],
        stat: stat(),
    });
    let short = encode_response(1, 1, &resp, &Shape::GetChildren).unwrap();
    let long = encode_response(1, 1, &resp, &Shape::GetChildren2).unwrap();
    assert_eq!(long.len() - short.len(), STAT_LEN);
}

/// Every special reply kind with the request it answers.
pub(crate) fn special_responses() -> Vec<(Special, Result<SpecialResponse, Code>)> {
    let specials = specials();
    let find = |op: i32| specials.iter().find(|s| s.opcode() == op).cloned().unwrap();
    vec![
        (Special::Ping, Ok(SpecialResponse::Empty)),
        (find(100), Ok(SpecialResponse::Empty)),
        (find(100), Err(Code::AuthFailed)),
        (find(101), Ok(SpecialResponse::Empty)),
        (find(105), Ok(SpecialResponse::Empty)),
        (find(106), Ok(SpecialResponse::AddWatch)),
        (find(18), Err(Code::NoWatcher)),
        (find(17), Ok(SpecialResponse::Empty)),
        (
            Special::WhoAmI,
            Ok(SpecialResponse::WhoAmI(vec![ClientInfo {
                auth_scheme: "ip".into(),
                user: "127.0.0.1".into(),
            }])),
        ),
        (
            find(22),
            Ok(SpecialResponse::MultiRead(vec![
                ReadResult::Children(vec!["a".into()]),
                ReadResult::Data {
                    data: b("x"),
                    stat: stat(),
                },
                ReadResult::Error(Code::NoNode),
            ])),
        ),
        (
            find(16),
            Ok(SpecialResponse::Reconfig {
                data: b("server.1=h:2888:3888"),
                stat: stat(),
            }),
        ),
        (find(16), Err(Code::ReconfigDisabled)),
        (find(102), Ok(SpecialResponse::Sasl { token: b("t") })),
    ]
}

#[test]
fn every_special_response_round_trips() {
    for (asked, resp) in special_responses() {
        let packet = encode_special_response(4, 5, &resp).unwrap();
        let (header, body) = split_reply(payload(&packet)).unwrap();
        assert_eq!(
            decode_special_response(&asked, header.err, body).unwrap(),
            resp,
            "{asked:?}"
        );
    }
}

#[test]
fn watcher_events_round_trip() {
    for (t, path) in [(1, "/a"), (2, "/a/b"), (3, "/"), (4, "/x")] {
        let event = WatcherEvent {
            event_type: t,
            state: crate::KEEPER_STATE_SYNC_CONNECTED,
            path: path.into(),
        };
        let packet = encode_notification(&event).unwrap();
        let (_, body) = split_reply(payload(&packet)).unwrap();
        assert_eq!(decode_notification(body).unwrap(), event);
    }
}
