//! One ZooKeeper client connection as a state machine with no I/O: bytes from the client
//! come in ([`GwConn::on_bytes`]); what to write back, which requests to run and when to
//! close go out as [`GwAction`]s. The runtime (`server.rs`) does the I/O and runs the
//! requests on the session's backend; their answers come back in through
//! [`GwConn::answer`], in any order, and are written in request order, as ZooKeeper's
//! clients require (they match replies against a FIFO of pending requests).
//!
//! The first packet is the connect request (no header). A new session is opened by the
//! runtime ([`GwAction::Open`]); a reconnect names its session and password
//! ([`GwAction::Resume`]). Then each packet is a request: pings and whoAmI are answered
//! here, tree requests go to the backend ([`GwAction::Submit`]), anything else is
//! answered Unimplemented. A connection whose first four bytes are a four-letter word
//! gets that word's text answer ([`GwAction::FourLetter`]).
//!
//! Bad input closes the connection with a reason ([`GwAction::Close`]): a negative or
//! oversized length (`jute.maxbuffer`), a connect request that does not decode, a request
//! header cut short, or a known request whose body does not decode. It never affects
//! another connection or session.

use bytes::{Bytes, BytesMut};
use mason_zk::jute::{
    self, ClientInfo, ConnectRequest, ConnectResponse, Decoded, SetWatches, Special, WatcherEvent,
};
use mason_zk::{opcode, Code, Request, WatchedEvent, KEEPER_STATE_SYNC_CONNECTED};
use std::collections::VecDeque;

/// The words answered as ZooKeeper answers them (with `4lw.commands.whitelist=*`).
pub const FOUR_LETTER_WORDS: [&str; 18] = [
    "conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "ruok", "stmk", "srvr", "srst", "stat",
    "wchc", "wchp", "wchs", "mntr", "isro", "hash",
];

/// How a gateway treats its connections.
#[derive(Clone, Debug)]
pub struct GwConfig {
    /// `jute.maxbuffer`: the largest packet accepted.
    pub max_buffer: usize,
    /// The session timeouts granted: a request is clamped to [min, max] (ZooKeeper's
    /// 2 and 20 ticks).
    pub min_timeout_ms: i32,
    pub max_timeout_ms: i32,
}

impl Default for GwConfig {
    fn default() -> Self {
        GwConfig {
            max_buffer: jute::DEFAULT_MAX_BUFFER,
            min_timeout_ms: 4_000,
            max_timeout_ms: 60_000,
        }
    }
}

/// What the connection asks its runtime to do, in order.
#[derive(Debug, PartialEq)]
pub enum GwAction {
    /// Write these bytes (whole framed packets, or a four-letter word's text) to the client.
    Write(Bytes),
    /// Open a new session of `timeout_ms` (negotiated); answer with
    /// [`GwConn::opened`] or [`GwConn::refused`].
    Open { timeout_ms: i32 },
    /// The client reconnects to `session` with `passwd`; answer with
    /// [`GwConn::opened`] (the session is alive and the password right) or
    /// [`GwConn::refused`].
    Resume {
        session: i64,
        passwd: Bytes,
        timeout_ms: i32,
        last_zxid: i64,
    },
    /// Run `request` (its jute `payload`: header and body, no length) for the session;
    /// answer with [`GwConn::answer`] and `ticket`.
    Submit {
        ticket: u64,
        request: Request,
        payload: Bytes,
    },
    /// The client re-registers its watches (setWatches or setWatches2 on a reconnect):
    /// decide each against the tree, send the events due with [`GwConn::notify`], then
    /// answer with [`GwConn::answer`] (a header-only reply with `xid`).
    SetWatches {
        ticket: u64,
        xid: i32,
        watches: SetWatches,
    },
    /// The client pinged: its session is alive.
    Ping,
    /// Answer this four-letter word, then close.
    FourLetter(&'static str),
    /// Close the connection once what came before is written; the reason is for the log.
    Close(String),
}

enum Phase {
    /// Waiting for the connect request (or a four-letter word).
    Start,
    /// The connect request is with the runtime; later packets wait in the buffer.
    Connecting {
        read_only: Option<bool>,
    },
    Open {
        session: i64,
    },
    /// Closed (or closing): nothing more is read.
    Done,
}

/// A request in order: answered or not yet.
struct Slot {
    ticket: u64,
    /// The framed reply; a ping's is made when its turn comes (with the zxid then).
    reply: Option<Bytes>,
    ping: bool,
    /// Close the connection once this reply is written (closeSession, an expired session).
    then_close: Option<String>,
    /// Watch notifications to write right after this reply.
    then_events: Vec<Bytes>,
}

pub struct GwConn {
    cfg: GwConfig,
    peer_ip: String,
    phase: Phase,
    buf: BytesMut,
    order: VecDeque<Slot>,
    next_ticket: u64,
    last_zxid: i64,
}

impl GwConn {
    /// A connection from a client at `peer_ip` (whoAmI's answer).
    pub fn new(cfg: GwConfig, peer_ip: String) -> GwConn {
        GwConn {
            cfg,
            peer_ip,
            phase: Phase::Start,
            buf: BytesMut::new(),
            order: VecDeque::new(),
            next_ticket: 1,
            last_zxid: 0,
        }
    }

    /// The session this connection serves, once open.
    pub fn session(&self) -> Option<i64> {
        match self.phase {
            Phase::Open { session } => Some(session),
            _ => None,
        }
    }

    /// Requests taken and not yet answered to the client.
    pub fn pending(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing more will be read.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Bytes the client sent.
    pub fn on_bytes(&mut self, data: &[u8], out: &mut Vec<GwAction>) {
        if self.is_done() {
            return;
        }
        self.buf.extend_from_slice(data);
        self.process(out);
    }

    fn process(&mut self, out: &mut Vec<GwAction>) {
        loop {
            match self.phase {
                Phase::Start => {
                    let Some(word) = self.buf.get(..4) else {
                        return;
                    };
                    if let Some(w) = FOUR_LETTER_WORDS.iter().find(|w| w.as_bytes() == word) {
                        self.phase = Phase::Done;
                        out.push(GwAction::FourLetter(w));
                        return;
                    }
                }
                // Requests before the session is open wait (bounded: the buffer may hold
                // one more packet than a request's own limit).
                Phase::Connecting { .. } => {
                    if self.buf.len() > 2 * self.cfg.max_buffer + 8 {
                        self.close("too much sent before the session was open", out);
                    }
                    return;
                }
                Phase::Done => return,
                Phase::Open { .. } => {}
            }
            let range = match jute::split_frame(&self.buf, self.cfg.max_buffer) {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    self.close(&format!("bad packet length: {e}"), out);
                    return;
                }
            };
            let packet = self.buf.split_to(range.end).freeze().slice(range.start..);
            match self.phase {
                Phase::Start => self.on_connect(&packet, out),
                _ => self.on_request(packet, out),
            }
        }
    }

    fn on_connect(&mut self, packet: &[u8], out: &mut Vec<GwAction>) {
        let req = match ConnectRequest::decode(packet) {
            Ok(r) => r,
            Err(e) => return self.close(&format!("connect request does not decode: {e}"), out),
        };
        let timeout_ms = req
            .timeout_ms
            .clamp(self.cfg.min_timeout_ms, self.cfg.max_timeout_ms);
        self.phase = Phase::Connecting {
            read_only: req.read_only,
        };
        self.last_zxid = req.last_zxid_seen.max(0);
        if req.session_id == 0 {
            out.push(GwAction::Open { timeout_ms });
        } else {
            out.push(GwAction::Resume {
                session: req.session_id,
                passwd: req.passwd,
                timeout_ms,
                last_zxid: req.last_zxid_seen,
            });
        }
    }

    /// The session is open (new, or resumed): answer the connect request, then go on with
    /// what the client sent meanwhile.
    pub fn opened(
        &mut self,
        session: i64,
        timeout_ms: i32,
        passwd: Bytes,
        last_zxid: i64,
        out: &mut Vec<GwAction>,
    ) {
        let Phase::Connecting { read_only } = self.phase else {
            return;
        };
        self.last_zxid = self.last_zxid.max(last_zxid);
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout_ms,
            session_id: session,
            passwd,
            read_only: read_only.map(|_| false),
        };
        match resp.encode() {
            Ok(bytes) => out.push(GwAction::Write(Bytes::from(bytes))),
            Err(e) => return self.close(&format!("connect response: {e}"), out),
        }
        self.phase = Phase::Open { session };
        self.process(out);
    }

    /// The session could not be opened or resumed (expired, unknown, a wrong password):
    /// ZooKeeper's answer is a connect response with timeout 0, session 0 and a zero
    /// password, then the connection closes.
    pub fn refused(&mut self, why: &str, out: &mut Vec<GwAction>) {
        let Phase::Connecting { read_only } = self.phase else {
            return;
        };
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout_ms: 0,
            session_id: 0,
            passwd: Bytes::from_static(&[0u8; 16]),
            read_only: read_only.map(|_| false),
        };
        if let Ok(bytes) = resp.encode() {
            out.push(GwAction::Write(Bytes::from(bytes)));
        }
        self.close(why, out);
    }

    fn on_request(&mut self, packet: Bytes, out: &mut Vec<GwAction>) {
        let (header, body) = match jute::split_request(&packet) {
            Ok(x) => x,
            Err(e) => return self.close(&format!("request header: {e}"), out),
        };
        let xid = header.xid;
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        if header.op == opcode::CLOSE_SESSION {
            self.order.push_back(Slot {
                ticket,
                reply: None,
                ping: false,
                then_close: Some("the client closed its session".into()),
                then_events: Vec::new(),
            });
            // No more requests after a close.
            self.phase = Phase::Done;
            out.push(GwAction::Submit {
                ticket,
                request: Request::CloseSession,
                payload: packet,
            });
            return;
        }
        let decoded = if header.op == opcode::CREATE_SESSION {
            // Sessions open with the connect handshake, not a request.
            Err(Code::Unimplemented)
        } else {
            jute::decode_request(header.op, body).map_err(|e| e.reply_code())
        };
        match decoded {
            Ok(Decoded::Tree { request, .. }) => {
                self.order.push_back(Slot {
                    ticket,
                    reply: None,
                    ping: false,
                    then_close: None,
                    then_events: Vec::new(),
                });
                out.push(GwAction::Submit {
                    ticket,
                    request,
                    payload: packet,
                });
            }
            Ok(Decoded::Special(Special::Ping)) => {
                out.push(GwAction::Ping);
                self.order.push_back(Slot {
                    ticket,
                    reply: None,
                    ping: true,
                    then_close: None,
                    then_events: Vec::new(),
                });
                self.flush(out);
            }
            Ok(Decoded::Special(Special::WhoAmI)) => {
                let infos = vec![ClientInfo {
                    auth_scheme: "ip".into(),
                    user: self.peer_ip.clone(),
                }];
                let result = Ok(jute::SpecialResponse::WhoAmI(infos));
                match jute::encode_special_response(xid, self.last_zxid, &result) {
                    Ok(bytes) => self.ready(ticket, Bytes::from(bytes), out),
                    Err(e) => self.close(&format!("whoAmI reply: {e}"), out),
                }
            }
            Ok(Decoded::Special(Special::SetWatches(watches)))
            | Ok(Decoded::Special(Special::SetWatches2(watches))) => {
                self.order.push_back(Slot {
                    ticket,
                    reply: None,
                    ping: false,
                    then_close: None,
                    then_events: Vec::new(),
                });
                out.push(GwAction::SetWatches {
                    ticket,
                    xid,
                    watches,
                });
            }
            // addWatch, removeWatches, checkWatches, auth, reconfig and the rest are not
            // served: ZooKeeper's answer to a request it does not implement.
            Ok(Decoded::Special(_)) | Err(Code::Unimplemented) => {
                let reply = jute::header_reply(xid, self.last_zxid, Code::Unimplemented.code());
                self.ready(ticket, framed(&reply), out);
            }
            // A known request whose body does not decode: ZooKeeper drops the connection.
            Err(code) => self.close(
                &format!(
                    "request {} (xid {xid}) does not decode: {code:?}",
                    header.op
                ),
                out,
            ),
        }
    }

    /// Puts an answered slot in order and writes what is ready.
    fn ready(&mut self, ticket: u64, framed: Bytes, out: &mut Vec<GwAction>) {
        self.order.push_back(Slot {
            ticket,
            reply: Some(framed),
            ping: false,
            then_close: None,
            then_events: Vec::new(),
        });
        self.flush(out);
    }

    /// The backend's answer to request `ticket`: the reply (header and body, no length).
    /// A session-expired answer is written and the connection closes after it.
    pub fn answer(&mut self, ticket: u64, reply: Bytes, out: &mut Vec<GwAction>) {
        let header = jute::split_reply(&reply).ok().map(|(h, _)| h);
        let Some(slot) = self.order.iter_mut().find(|s| s.ticket == ticket) else {
            return;
        };
        if let Some(h) = header {
            self.last_zxid = self.last_zxid.max(h.zxid);
            if h.err == Code::SessionExpired.code() {
                slot.then_close.get_or_insert("the session expired".into());
            }
        }
        slot.reply = Some(framed(&reply));
        self.flush(out);
    }

    /// The backend could not answer request `ticket` with a reply: answer `code` in its
    /// place (SessionExpired closes the connection after it).
    pub fn fail(&mut self, ticket: u64, xid: i32, code: Code, out: &mut Vec<GwAction>) {
        let reply = jute::header_reply(xid, self.last_zxid, code.code());
        self.answer(ticket, Bytes::from(reply), out);
    }

    /// A watch notification for this connection's session. It goes out after every reply
    /// that was answered before it (one of them may have set the watch; the event must
    /// not reach the client before the reply does), ahead of those answered after it.
    pub fn notify(&mut self, event: &WatchedEvent, out: &mut Vec<GwAction>) {
        if self.is_done() {
            return;
        }
        let ev = WatcherEvent {
            event_type: event.event_type.code(),
            state: KEEPER_STATE_SYNC_CONNECTED,
            path: event.path.clone(),
        };
        let Ok(bytes) = jute::encode_notification(&ev) else {
            return;
        };
        let bytes = Bytes::from(bytes);
        match self.order.iter_mut().rev().find(|s| s.reply.is_some()) {
            Some(slot) => slot.then_events.push(bytes),
            None => out.push(GwAction::Write(bytes)),
        }
    }

    /// Writes the answered prefix of the order.
    fn flush(&mut self, out: &mut Vec<GwAction>) {
        while self
            .order
            .front()
            .is_some_and(|s| s.reply.is_some() || s.ping)
        {
            let Some(slot) = self.order.pop_front() else {
                return;
            };
            if slot.ping {
                let reply = jute::header_reply(jute::xid::PING, self.last_zxid, 0);
                out.push(GwAction::Write(framed(&reply)));
            }
            if let Some(bytes) = slot.reply {
                out.push(GwAction::Write(bytes));
            }
            out.extend(slot.then_events.into_iter().map(GwAction::Write));
            if let Some(why) = slot.then_close {
                self.order.clear();
                self.phase = Phase::Done;
                out.push(GwAction::Close(why));
                return;
            }
        }
    }

    fn close(&mut self, why: &str, out: &mut Vec<GwAction>) {
        self.phase = Phase::Done;
        self.order.clear();
        out.push(GwAction::Close(why.to_string()));
    }
}

fn framed(payload: &[u8]) -> Bytes {
    // A reply is far below i32::MAX bytes (its request fit in jute.maxbuffer).
    Bytes::from(jute::frame(payload).unwrap_or_default())
}

#[cfg(test)]
mod tests;
