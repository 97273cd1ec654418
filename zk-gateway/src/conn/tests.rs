//! The connection state machine driven by hand: the handshake, replies in request order
//! whatever order the backend answers in, pings, what is not served, and bad input.

use super::*;
use mason_zk::jute::{RequestHeader, Writer};
use mason_zk::{Acl, CreateMode};

fn conn() -> GwConn {
    GwConn::new(GwConfig::default(), "127.0.0.1".into())
}

fn connect_packet(session: i64, timeout_ms: i32, read_only: Option<bool>) -> Vec<u8> {
    ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        timeout_ms,
        session_id: session,
        passwd: Bytes::from_static(&[0u8; 16]),
        read_only,
    }
    .encode()
    .unwrap()
}

fn request(xid: i32, req: &Request) -> Vec<u8> {
    let shape = jute::Shape::for_request(req).unwrap();
    jute::encode_request(xid, req, &shape).unwrap()
}

fn get(xid: i32, path: &str) -> Vec<u8> {
    request(
        xid,
        &Request::GetData {
            path: path.into(),
            watch: false,
        },
    )
}

fn open(c: &mut GwConn) -> Vec<GwAction> {
    let mut out = Vec::new();
    c.on_bytes(&connect_packet(0, 10_000, Some(false)), &mut out);
    assert_eq!(out, vec![GwAction::Open { timeout_ms: 10_000 }]);
    out.clear();
    c.opened(42, 10_000, Bytes::from_static(&[7u8; 16]), 0, &mut out);
    out
}

/// The (xid, err) of each framed reply written.
fn replies(out: &[GwAction]) -> Vec<(i32, i32)> {
    out.iter()
        .filter_map(|a| match a {
            GwAction::Write(b) => {
                let r = jute::split_frame(b, usize::MAX).unwrap().unwrap();
                jute::split_reply(&b[r]).ok().map(|(h, _)| (h.xid, h.err))
            }
            _ => None,
        })
        .collect()
}

fn tickets(out: &[GwAction]) -> Vec<u64> {
    out.iter()
        .filter_map(|a| match a {
            GwAction::Submit { ticket, .. } => Some(*ticket),
            _ => None,
        })
        .collect()
}

fn reply(xid: i32, zxid: i64, err: i32) -> Bytes {
    Bytes::from(jute::header_reply(xid, zxid, err))
}

#[test]
fn the_handshake_answers_with_the_session_and_echoes_read_only() {
    let mut c = conn();
    let out = open(&mut c);
    let [GwAction::Write(b)] = &out[..] else {
        panic!("{out:?}")
    };
    let r = jute::split_frame(b, usize::MAX).unwrap().unwrap();
    let resp = ConnectResponse::decode(&b[r]).unwrap();
    assert_eq!(
        (resp.protocol_version, resp.timeout_ms, resp.session_id),
        (0, 10_000, 42)
    );
    assert_eq!(resp.passwd.len(), 16);
    assert_eq!(
        resp.read_only,
        Some(false),
        "echoed because the client sent one"
    );
    assert_eq!(c.session(), Some(42));

    // A timeout out of range is clamped; an old client without the byte gets none back.
    let mut c = conn();
    let mut out = Vec::new();
    c.on_bytes(&connect_packet(0, 100, None), &mut out);
    assert_eq!(out, vec![GwAction::Open { timeout_ms: 4_000 }]);
    out.clear();
    c.opened(9, 4_000, Bytes::from_static(&[1u8; 16]), 0, &mut out);
    let GwAction::Write(b) = &out[0] else {
        panic!()
    };
    let r = jute::split_frame(b, usize::MAX).unwrap().unwrap();
    assert_eq!(ConnectResponse::decode(&b[r]).unwrap().read_only, None);
}

#[test]
fn replies_go_out_in_request_order_whatever_order_the_backend_answers_in() {
    let mut c = conn();
    open(&mut c);
    let mut out = Vec::new();
    let mut bytes = get(1, "/a");
    bytes.extend(get(2, "/b"));
    bytes.extend(get(3, "/c"));
    // Split anywhere: the packets still come out whole.
    let (x, y) = bytes.split_at(7);
    c.on_bytes(x, &mut out);
    c.on_bytes(y, &mut out);
    let t = tickets(&out);
    assert_eq!(t.len(), 3);
    out.clear();
    c.answer(t[2], reply(3, 9, 0), &mut out);
    c.answer(t[1], reply(2, 8, 0), &mut out);
    assert!(out.is_empty(), "held behind the first");
    c.answer(t[0], reply(1, 7, 0), &mut out);
    assert_eq!(replies(&out), vec![(1, 0), (2, 0), (3, 0)]);
    assert_eq!(c.pending(), 0);
}

#[test]
fn a_ping_is_answered_in_order_with_the_last_zxid() {
    let mut c = conn();
    open(&mut c);
    let mut out = Vec::new();
    c.on_bytes(&get(1, "/a"), &mut out);
    let t = tickets(&out);
    let mut ping = Writer::framed();
    RequestHeader {
        xid: jute::xid::PING,
        op: opcode::PING,
    }
    .write(&mut ping);
    c.on_bytes(&ping.finish_frame().unwrap(), &mut out);
    assert!(out.contains(&GwAction::Ping));
    assert!(
        replies(&out).is_empty(),
        "the ping waits for the read before it"
    );
    out.clear();
    c.answer(t[0], reply(1, 77, 0), &mut out);
    assert_eq!(replies(&out), vec![(1, 0), (jute::xid::PING, 0)]);
    let GwAction::Write(b) = &out[1] else {
        panic!()
    };
    let (h, _) = jute::split_reply(&b[4..]).unwrap();
    assert_eq!(h.zxid, 77);
}

#[test]
fn what_is_not_served_is_answered_unimplemented_and_the_connection_goes_on() {
    let mut c = conn();
    open(&mut c);
    let mut out = Vec::new();
    let add = jute::encode_special_request(
        9,
        &Special::AddWatch {
            path: "/a".into(),
            mode: 0,
        },
    )
    .unwrap();
    c.on_bytes(&add, &mut out);
    // An opcode nobody knows.
    let mut w = Writer::framed();
    RequestHeader { xid: 5, op: 999 }.write(&mut w);
    c.on_bytes(&w.finish_frame().unwrap(), &mut out);
    c.on_bytes(&get(6, "/a"), &mut out);
    let unimpl = Code::Unimplemented.code();
    assert_eq!(replies(&out), vec![(9, unimpl), (5, unimpl)]);
    assert_eq!(tickets(&out).len(), 1, "the getData after them runs");
    assert!(!c.is_done());
}

/// The (xid, event type, path) of each notification written.
fn notifications(out: &[GwAction]) -> Vec<(i32, String)> {
    out.iter()
        .filter_map(|a| match a {
            GwAction::Write(b) => {
                let r = jute::split_frame(b, usize::MAX).unwrap().unwrap();
                let (h, body) = jute::split_reply(&b[r]).ok()?;
                (h.xid == jute::xid::NOTIFICATION).then(|| {
                    let e = jute::decode_notification(body).unwrap();
                    (e.event_type, e.path)
                })
            }
            _ => None,
        })
        .collect()
}

#[test]
fn set_watches_goes_to_the_runtime_and_events_follow_the_replies_answered_before_them() {
    let mut c = conn();
    open(&mut c);
    let mut out = Vec::new();
    let watches = jute::SetWatches {
        relative_zxid: 7,
        data: vec!["/a".into()],
        ..jute::SetWatches::default()
    };
    let sw = jute::encode_special_request(
        jute::xid::SET_WATCHES,
        &Special::SetWatches(watches.clone()),
    )
    .unwrap();
    c.on_bytes(&sw, &mut out);
    let [GwAction::SetWatches {
        ticket,
        xid,
        watches: got,
    }] = &out[..]
    else {
        panic!("{out:?}")
    };
    assert_eq!((*xid, got), (jute::xid::SET_WATCHES, &watches));
    let sw_ticket = *ticket;
    out.clear();
    c.on_bytes(&get(1, "/a"), &mut out);
    c.on_bytes(&get(2, "/b"), &mut out);
    let t = tickets(&out);
    out.clear();
    let changed = |path: &str| WatchedEvent {
        event_type: mason_zk::EventType::NodeDataChanged,
        path: path.into(),
    };
    // With nothing answered yet, an event goes out at once.
    c.notify(&changed("/x"), &mut out);
    assert_eq!(notifications(&out), vec![(3, "/x".to_string())]);
    out.clear();
    // The second getData is answered (held behind the first): an event now follows it.
    c.answer(t[1], reply(2, 9, 0), &mut out);
    c.notify(&changed("/b"), &mut out);
    assert!(out.is_empty(), "{out:?}");
    c.answer(sw_ticket, reply(jute::xid::SET_WATCHES, 9, 0), &mut out);
    c.answer(t[0], reply(1, 9, 0), &mut out);
    let xids: Vec<i32> = replies(&out).into_iter().map(|(x, _)| x).collect();
    assert_eq!(
        xids,
        vec![jute::xid::SET_WATCHES, 1, 2, jute::xid::NOTIFICATION]
    );
    assert_eq!(notifications(&out), vec![(3, "/b".to_string())]);
}

#[test]
fn close_session_is_the_last_request_and_closes_after_its_reply() {
    let mut c = conn();
    open(&mut c);
    let mut out = Vec::new();
    c.on_bytes(&request(1, &Request::CloseSession), &mut out);
    c.on_bytes(&get(2, "/late"), &mut out);
    let t = tickets(&out);
    assert_eq!(t.len(), 1, "nothing after a close is taken");
    out.clear();
    c.answer(t[0], reply(1, 3, 0), &mut out);
    assert_eq!(replies(&out), vec![(1, 0)]);
    assert!(matches!(out.last(), Some(GwAction::Close(_))));
}

#[test]
fn an_expired_session_is_answered_then_closed() {
    let mut c = conn();
    open(&mut c);
    let mut out = Vec::new();
    c.on_bytes(&get(1, "/a"), &mut out);
    c.on_bytes(&get(2, "/b"), &mut out);
    let t = tickets(&out);
    out.clear();
    c.fail(t[0], 1, Code::SessionExpired, &mut out);
    assert_eq!(replies(&out), vec![(1, Code::SessionExpired.code())]);
    assert!(matches!(out.last(), Some(GwAction::Close(_))));
    assert!(c.is_done());
}

#[test]
fn a_reconnect_is_resumed_or_refused_as_zookeeper_refuses_it() {
    let mut c = conn();
    let mut out = Vec::new();
    c.on_bytes(&connect_packet(42, 10_000, Some(false)), &mut out);
    assert!(matches!(
        &out[..],
        [GwAction::Resume {
            session: 42,
            timeout_ms: 10_000,
            ..
        }]
    ));
    out.clear();
    c.refused("unknown session", &mut out);
    let GwAction::Write(b) = &out[0] else {
        panic!()
    };
    let resp = ConnectResponse::decode(&b[4..]).unwrap();
    assert_eq!((resp.timeout_ms, resp.session_id), (0, 0));
    assert_eq!(resp.passwd, Bytes::from_static(&[0u8; 16]));
    assert!(matches!(out.last(), Some(GwAction::Close(_))));
}

#[test]
fn requests_sent_before_the_answer_to_connect_wait_for_it() {
    let mut c = conn();
    let mut out = Vec::new();
    let mut bytes = connect_packet(0, 10_000, None);
    bytes.extend(get(1, "/a"));
    c.on_bytes(&bytes, &mut out);
    assert_eq!(out, vec![GwAction::Open { timeout_ms: 10_000 }]);
    out.clear();
    c.opened(5, 10_000, Bytes::from_static(&[1u8; 16]), 0, &mut out);
    assert_eq!(tickets(&out).len(), 1);
}

#[test]
fn four_letter_words_are_told_apart_from_a_connect() {
    let mut c = conn();
    let mut out = Vec::new();
    c.on_bytes(b"ru", &mut out);
    assert!(out.is_empty());
    c.on_bytes(b"ok", &mut out);
    assert_eq!(out, vec![GwAction::FourLetter("ruok")]);
    assert!(c.is_done());
}

#[test]
fn bad_input_closes_the_connection_with_a_reason() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a negative length", (-5i32).to_be_bytes().to_vec()),
        (
            "a length over jute.maxbuffer",
            ((jute::DEFAULT_MAX_BUFFER + 1) as i32)
                .to_be_bytes()
                .to_vec(),
        ),
        ("garbage as a connect request", {
            let mut v = 3i32.to_be_bytes().to_vec();
            v.extend([1, 2, 3]);
            v
        }),
    ];
    for (what, bytes) in cases {
        let mut c = conn();
        let mut out = Vec::new();
        c.on_bytes(&bytes, &mut out);
        assert!(
            matches!(out.last(), Some(GwAction::Close(_))),
            "{what}: {out:?}"
        );
        assert!(c.is_done(), "{what}");
    }
    // After the handshake: a header cut short, and a create whose body is cut short.
    let mut c = conn();
    open(&mut c);
    let mut out = Vec::new();
    c.on_bytes(&jute::frame(&[0, 0, 0]).unwrap(), &mut out);
    assert!(matches!(out.last(), Some(GwAction::Close(_))), "{out:?}");
    let mut c = conn();
    open(&mut c);
    let mut out = Vec::new();
    let create = request(
        1,
        &Request::Create {
            path: "/a".into(),
            data: Bytes::from_static(b"x"),
            acl: Acl::open_unsafe(),
            mode: CreateMode::Persistent,
        },
    );
    let cut = jute::frame(&create[4..create.len() - 3]).unwrap();
    c.on_bytes(&cut, &mut out);
    assert!(matches!(out.last(), Some(GwAction::Close(_))), "{out:?}");
    // Bytes after the close are ignored.
    out.clear();
    c.on_bytes(&get(2, "/a"), &mut out);
    assert!(out.is_empty());
}
