//! Watches on one connection: replies held until the watch feeds have reached them,
//! watches armed as their replies go out, events written in ZooKeeper's order, and
//! setWatches on a reconnect.
//!
//! A reply is held when it sets a watch or when its session watches anything: it goes
//! out once the feed of every shard it touched has reached its position there (the
//! events of everything before it are then in the connection's inbox, and go first).
//! Events are taken from the inbox with the hub locked, so no feed can move between
//! taking them and checking positions.
//!
//! setWatches (a client that reconnected re-registers its watches with the last zxid it
//! saw) is decided as ZooKeeper's `DataTree.setWatches` decides it, from an exists read
//! of each path: a data watch on a missing node fires NodeDeleted and on a node changed
//! since the client's zxid NodeDataChanged; an exist watch on a node that exists fires
//! NodeCreated; a child watch on a missing node fires NodeDeleted and on a node whose
//! children changed since NodeChildrenChanged; any other watch is armed at its read's
//! position. The events go out before setWatches' reply, as ZooKeeper sends them.

use super::{ConnTask, Note};
use crate::conn::GwAction;
use crate::watches::Armed;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use mason_client::zk::{RawAnswer, ZkClient, ZkError};
use mason_zk::jute::{self, Reader, SetWatches};
use mason_zk::{Code, EventType, Request, Stat, WatchKind, WatchedEvent};
use std::sync::Arc;

/// The xid of the exists reads a setWatches makes (the setWatches' own).
const READ_XID: i32 = jute::xid::SET_WATCHES;

/// A reply waiting for the watch feeds.
pub(super) struct Held {
    ticket: u64,
    /// The reply (header and body, no length).
    reply: Bytes,
    /// Positions the feeds must reach first: (shard, position).
    need: Vec<(u32, u64)>,
    /// Events due before the reply (setWatches).
    events: Vec<WatchedEvent>,
    /// Watches to arm as the reply goes out: (path, kind, position of the read).
    arms: Vec<(String, WatchKind, u64)>,
}

/// The watch a request asks for.
pub(super) fn watch_of(req: &Request) -> Option<(String, WatchKind)> {
    match req {
        Request::Exists { path, watch: true } => Some((path.clone(), WatchKind::Exist)),
        Request::GetData { path, watch: true } => Some((path.clone(), WatchKind::Data)),
        Request::GetChildren {
            path, watch: true, ..
        } => Some((path.clone(), WatchKind::Child)),
        _ => None,
    }
}

/// A setWatches' watches, in order: data, exist, child (persistent ones are not served).
fn listed(w: &SetWatches) -> impl Iterator<Item = (WatchKind, &String)> {
    let data = w.data.iter().map(|p| (WatchKind::Data, p));
    let exist = w.exist.iter().map(|p| (WatchKind::Exist, p));
    let child = w.child.iter().map(|p| (WatchKind::Child, p));
    data.chain(exist).chain(child)
}

/// Starts an exists read of every path a setWatches names (taken now, in order).
pub(super) fn start_reads(
    zk: &Arc<ZkClient>,
    w: &SetWatches,
) -> Vec<BoxFuture<'static, Result<RawAnswer, ZkError>>> {
    listed(w)
        .map(|(_, path)| {
            let req = Request::Exists {
                path: path.clone(),
                watch: false,
            };
            match mason_client::zk::request_payload(READ_XID, &req) {
                Ok((payload, _)) => zk.start_raw(&req, payload).boxed(),
                Err(e) => futures::future::ready(Err(e)).boxed(),
            }
        })
        .collect()
}

/// An exists reply: the Stat, None for NoNode, or the error code.
fn exists_result(reply: &[u8]) -> Result<(i64, Option<Stat>), Code> {
    let (header, body) = jute::split_reply(reply).map_err(|e| e.reply_code())?;
    if header.err == Code::NoNode.code() {
        return Ok((header.zxid, None));
    }
    if header.err != 0 {
        return Err(Code::from_code(header.err).unwrap_or(Code::SystemError));
    }
    let stat = jute::read_stat(&mut Reader::new(body)).map_err(|e| e.reply_code())?;
    Ok((header.zxid, Some(stat)))
}

impl ConnTask {
    /// Where an answer was made, per shard: (shard, position). RSMKeeper has one order,
    /// its zxids; ZK-Mason's are the shards' spaces (space 0 is the clock, not a shard).
    fn place(&self, answer: &RawAnswer, zxid: i64) -> Vec<(u32, u64)> {
        if self.shared.cfg.shards == 0 {
            return vec![(0, zxid.max(0) as u64)];
        }
        answer
            .at
            .iter()
            .filter(|(space, _)| *space >= 1)
            .map(|(space, n)| (space - 1, *n))
            .collect()
    }

    /// The position of `path`'s shard in `place`.
    fn pos_of(&self, path: &str, place: &[(u32, u64)]) -> Option<u64> {
        let shard = self.shared.hub.lock().ok()?.shard_of(path);
        place.iter().find(|(s, _)| *s == shard).map(|(_, p)| *p)
    }

    /// A request's answer: out now, or held for the feeds.
    pub(super) fn answered(
        &mut self,
        ticket: u64,
        answer: RawAnswer,
        watch: Option<(String, WatchKind)>,
        out: &mut Vec<GwAction>,
    ) {
        let Some(session) = self.session.as_ref().map(|s| s.zk.session()) else {
            self.conn.answer(ticket, answer.reply, out);
            return;
        };
        let (zxid, err) =
            jute::split_reply(&answer.reply).map_or((0, -1), |(h, _)| (h.zxid, h.err));
        if err == Code::SessionMoved.code() {
            // Another gateway took the session over: forget it here; the connection closes
            // after this reply, and the client's reconnect takes the session back.
            if let Ok(mut t) = self.shared.sessions.lock() {
                t.remove(&session);
            }
            self.closing
                .get_or_insert("the session moved to another gateway".into());
        }
        let place = self.place(&answer, zxid);
        let arm = watch
            .filter(|(_, kind)| {
                err == 0 || (*kind == WatchKind::Exist && err == Code::NoNode.code())
            })
            .and_then(|(path, kind)| {
                let pos = self.pos_of(&path, &place)?;
                Some((path, kind, pos))
            });
        let watching = self.shared.hub.lock().is_ok_and(|h| h.watching(session));
        if arm.is_none() && !watching {
            self.conn.answer(ticket, answer.reply, out);
            return;
        }
        self.held.push(Held {
            ticket,
            reply: answer.reply,
            need: place,
            events: Vec::new(),
            arms: arm.into_iter().collect(),
        });
        self.release(out);
    }

    /// A setWatches' reads are back: decide each watch, then hold the reply for the feeds.
    pub(super) fn rewatched(
        &mut self,
        ticket: u64,
        xid: i32,
        w: &SetWatches,
        reads: Vec<Result<RawAnswer, ZkError>>,
        out: &mut Vec<GwAction>,
    ) {
        let rel = w.relative_zxid;
        let mut held = Held {
            ticket,
            reply: Bytes::new(),
            need: Vec::new(),
            events: Vec::new(),
            arms: Vec::new(),
        };
        for ((kind, path), read) in listed(w).zip(reads) {
            let answer = match read {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(path, error = %e, "a setWatches read failed");
                    return self.conn.fail(ticket, xid, super::failure_code(&e), out);
                }
            };
            let (zxid, stat) = match exists_result(&answer.reply) {
                Ok(x) => x,
                Err(code) => return self.conn.fail(ticket, xid, code, out),
            };
            let event = |event_type| {
                Some(WatchedEvent {
                    event_type,
                    path: path.clone(),
                })
            };
            let due = match (kind, stat) {
                (WatchKind::Data, None) | (WatchKind::Child, None) => event(EventType::NodeDeleted),
                (WatchKind::Data, Some(s)) if s.mzxid > rel => event(EventType::NodeDataChanged),
                (WatchKind::Child, Some(s)) if s.pzxid > rel => {
                    event(EventType::NodeChildrenChanged)
                }
                (WatchKind::Exist, Some(_)) => event(EventType::NodeCreated),
                _ => None,
            };
            let place = self.place(&answer, zxid);
            match due {
                Some(e) => held.events.push(e),
                None => {
                    let Some(pos) = self.pos_of(path, &place) else {
                        return self.conn.fail(ticket, xid, Code::SystemError, out);
                    };
                    held.arms.push((path.clone(), kind, pos));
                }
            }
            held.need.extend(place);
        }
        let zxid = self.session.as_ref().map_or(0, |s| s.zk.last_zxid());
        held.reply = Bytes::from(jute::header_reply(xid, zxid, 0));
        self.held.push(held);
        self.release(out);
    }

    /// A note from the watch feeds.
    pub(super) fn on_note(&mut self, note: Note, out: &mut Vec<GwAction>) {
        match note {
            Note::Event(e) => self.conn.notify(&e, out),
            Note::Lost => {
                self.closing
                    .get_or_insert("its watches were lost to a gap in a watch feed".into());
            }
        }
    }

    /// Lets out the held replies whose positions the feeds have reached, after the events
    /// before them.
    pub(super) fn release(&mut self, out: &mut Vec<GwAction>) {
        let Some(session) = self.session.as_ref().map(|s| s.zk.session()) else {
            return;
        };
        let mut notes = Vec::new();
        let mut ready = Vec::new();
        {
            let Ok(mut hub) = self.shared.hub.lock() else {
                return;
            };
            if let Some(rx) = self.notes.as_mut() {
                while let Ok(n) = rx.try_recv() {
                    notes.push(n);
                }
            }
            let mut i = 0;
            while i < self.held.len() {
                if self.held[i].need.iter().all(|(s, p)| hub.reached(*s, *p)) {
                    let h = self.held.remove(i);
                    let armed: Vec<Armed> = h
                        .arms
                        .iter()
                        .map(|(path, kind, pos)| hub.arm(session, path, *kind, *pos))
                        .collect();
                    ready.push((h, armed));
                } else {
                    i += 1;
                }
            }
        }
        for n in notes {
            self.on_note(n, out);
        }
        for (h, armed) in ready {
            for e in &h.events {
                self.conn.notify(e, out);
            }
            self.conn.answer(h.ticket, h.reply, out);
            for a in armed {
                match a {
                    Armed::Fired(Some(e)) => self.conn.notify(&e, out),
                    Armed::Fired(None) | Armed::Waiting => {}
                    Armed::Unknown => {
                        self.closing.get_or_insert(
                            "a watch could not be decided; the client will set it again".into(),
                        );
                    }
                }
            }
        }
    }
}
