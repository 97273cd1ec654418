//! A hosted group's driver: [`Group`] routes what its replica says (answers to the
//! connections they belong to, bound batches to watchers and the record, the rest to
//! [`GroupIo`]), and [`GroupIo`] carries it out: WAL writes through the group's writer,
//! Raft messages to the peers, requests to the sequencers, log servers and shard servers.

use super::links::Links;
use super::metrics;
use super::wal_writer::{Job, WalHandle};
use super::{Event, RECORD_FLUSH_US};
use crate::replica::{Action, ConnId, Incoming, Replica};
use bytes::Bytes;
use mason_common::codec::{encode_body, FramesPerConn};
use mason_common::conn::Outbox;
use mason_common::driver::{Executor, Machine};
use mason_common::msg::{epoch_owner, Body, Frame, RaftMsg};
use mason_common::record::{BoundBatch, RecordWriter};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What a group's driver does: its replica, and where its answers go.
pub(super) struct Group {
    pub(super) metrics: metrics::GroupMetrics,
    /// The group's inbox, to sample its depth (weak: it does not keep the inbox open).
    pub(super) inbox: Option<mpsc::WeakSender<Event>>,
    pub(super) replica: Replica,
    /// Client connections this group has heard from.
    pub(super) conns: HashMap<ConnId, Outbox>,
    /// Watchers: (connection, ranges only).
    pub(super) watchers: Vec<(Outbox, bool)>,
    pub(super) tick: u64,
    pub(super) next_tick: u64,
    pub(super) next_flush: u64,
    pub(super) stopped: bool,
    /// The replica's actions of one turn: kept between turns, so that a turn that answers
    /// a whole batch does not grow a new vector op by op.
    pub(super) acts: Vec<Action>,
}

/// A group's actions, routed: what the executor does.
pub(super) enum Todo {
    /// Everything the replica asked for that touches disk or a link.
    Replica(Action),
    Send(Outbox, Frame),
    /// Whole frames (each with its prefix) to one connection.
    SendFramed(Outbox, Bytes),
    /// One encoded frame, to many connections.
    SendBody(Outbox, Bytes),
    Record(BoundBatch),
    FlushRecord,
}

/// The most actions' room a group keeps between turns (a batch's answers fit).
const KEPT_ACTS: usize = 4096;

impl Group {
    /// Keeps a turn's emptied action vector for the next turn, unless a rare turn (a
    /// recovery's) grew it past [`KEPT_ACTS`].
    fn keep_acts(&mut self, acts: Vec<Action>) {
        debug_assert!(acts.is_empty());
        if acts.capacity() <= KEPT_ACTS {
            self.acts = acts;
        }
    }

    /// One event (each of a `Many`'s in turn), and its actions routed.
    fn on_one(&mut self, ev: Event, out: &mut Vec<Todo>) {
        if let Event::Many(evs, _permit) = ev {
            for ev in evs {
                self.on_one(ev, out);
            }
            return;
        }
        let mut acts = std::mem::take(&mut self.acts);
        let r = &mut self.replica;
        match ev {
            Event::Client { conn, out: o, inc } => {
                self.conns.entry(conn).or_insert(o);
                match inc {
                    Incoming::Op(op) => r.on_client_op(conn, op, &mut acts),
                    Incoming::Register(x) => r.on_register(conn, x, &mut acts),
                }
            }
            Event::Watch {
                conn,
                out: o,
                ranges_only,
            } => {
                let snap = r.promise(true, r.promised());
                tracing::info!(group = r.group(), conn, "a client watches this group");
                if o.send(Frame::new(Body::Promise(Box::new(snap)))).is_ok() {
                    self.watchers.push((o, ranges_only));
                }
            }
            Event::Read { conn, out: o, read } => {
                self.conns.entry(conn).or_insert(o);
                r.on_local_read(conn, read, &mut acts);
            }
            Event::Poll { conn, out: o, poll } => {
                self.conns.entry(conn).or_insert(o);
                r.on_watch_poll(conn, poll);
            }
            Event::Many(..) => {} // taken apart above
            Event::Closed(conn) => {
                self.conns.remove(&conn);
                r.on_watch_closed(conn);
            }
            Event::Raft(from, data) => r.on_raft(from, &data),
            Event::Seq(x) => r.on_seq_reply(x),
            Event::SeqOther(b) => match b {
                Body::Heartbeat(h) => r.on_heartbeat(h),
                Body::Switch(s) => r.on_switch(s, &mut acts),
                Body::Fill(f) => r.on_fill(f, &mut acts),
                Body::Activate(a) => r.on_activate(a, &mut acts),
                _ => {}
            },
            Event::SeqConnected => r.on_seq_connected(&mut acts),
            Event::LogReply(x) => r.on_log_reply(x, &mut acts),
            Event::ZkApplied(x) => r.on_zk_applied(x, &mut acts),
            Event::ZkReadReply(x) => r.on_zk_read_reply(x, &mut acts),
            Event::Persisted(n) => r.on_persisted(n, &mut acts),
            Event::Status(tx) => {
                let _ = tx.send(r.status());
            }
            Event::Shutdown => self.stopped = true,
        }
        self.route(&mut acts, out);
        self.keep_acts(acts);
    }

    fn route(&mut self, actions: &mut Vec<Action>, out: &mut Vec<Todo>) {
        for (conn, f) in self.replica.take_feeds() {
            if let Some(o) = self.conns.get(&conn) {
                out.push(Todo::Send(o.clone(), Frame::new(Body::ZkWatchFeed(f))));
            }
        }
        // Answers to one client connection are framed into one buffer, queued once.
        let mut framed = FramesPerConn::default();
        for a in actions.drain(..) {
            match a {
                Action::Reply { conn, reply } => {
                    framed.add(conn, &Frame::new(Body::ClientReply(reply)))
                }
                Action::Registered { conn, reply } => {
                    framed.add(conn, &Frame::new(Body::Registered(reply)))
                }
                Action::ReadReply { conn, reply } => {
                    framed.add(conn, &Frame::new(Body::LocalReadReply(reply)))
                }
                Action::Bound(b) => {
                    self.metrics.bound(&b);
                    if !self.watchers.is_empty() {
                        self.notify_watchers(&b, out);
                    }
                    out.push(Todo::Record(b));
                }
                other => out.push(Todo::Replica(other)),
            }
        }
        for (conn, frames) in framed.drain() {
            if let Some(o) = self.conns.get(&conn) {
                out.push(Todo::SendFramed(o.clone(), frames));
            }
        }
    }

    fn notify_watchers(&mut self, b: &BoundBatch, out: &mut Vec<Todo>) {
        let full = encode_body(&Frame::new(Body::Bound(Box::new(b.clone()))));
        let ranges = encode_body(&Frame::new(Body::Bound(Box::new(BoundBatch {
            op_sessions: Vec::new(),
            op_seqs: Vec::new(),
            op_masks: Vec::new(),
            ..b.clone()
        }))));
        self.watchers.retain(|(o, _)| !o.is_closed());
        for (o, ranges_only) in &self.watchers {
            let body = if *ranges_only { &ranges } else { &full };
            out.push(Todo::SendBody(o.clone(), body.clone()));
        }
    }
}

impl Machine for Group {
    type Event = Event;
    type Action = Todo;

    fn on_event(&mut self, ev: Event, _now: u64, out: &mut Vec<Todo>) {
        // A group's events need no clock: its timers come through `on_time`.
        self.on_one(ev, out);
    }

    fn on_time(&mut self, now: u64, out: &mut Vec<Todo>) {
        let mut acts = std::mem::take(&mut self.acts);
        if now >= self.next_tick {
            self.replica.tick(now, &mut acts);
            self.next_tick = self.next_tick.max(now.saturating_sub(self.tick)) + self.tick;
        }
        self.replica.flush(now, &mut acts);
        self.route(&mut acts, out);
        self.keep_acts(acts);
        if let Some(inbox) = &self.inbox {
            self.metrics.sample(&self.replica, now, inbox);
        }
        if now >= self.next_flush {
            out.push(Todo::FlushRecord);
            self.next_flush = now + RECORD_FLUSH_US;
        }
    }

    fn next_deadline(&self) -> Option<u64> {
        let mut d = self.next_tick.min(self.next_flush);
        if let Some(b) = self.replica.next_deadline() {
            d = d.min(b);
        }
        Some(d)
    }

    fn finished(&self) -> bool {
        self.stopped
    }
}

/// A group's disk and links.
pub(super) struct GroupIo {
    pub(super) group: u32,
    pub(super) wal: WalHandle,
    pub(super) record: Option<RecordWriter>,
    pub(super) links: Arc<Links>,
    pub(super) metrics: metrics::GroupMetrics,
}

impl Executor<Group> for GroupIo {
    fn execute(&mut self, t: Todo, feedback: &mut Vec<Event>) {
        match t {
            Todo::Send(o, f) => {
                let _ = o.send(f);
            }
            Todo::SendBody(o, b) => {
                let _ = o.send_body(b);
            }
            Todo::SendFramed(o, frames) => {
                let _ = o.send_framed(frames);
            }
            Todo::Record(b) => {
                if let Some(r) = self.record.as_mut() {
                    if let Err(e) = r.append(&b) {
                        tracing::error!(group = self.group, error = %e, "writing the bound record");
                    }
                }
            }
            Todo::FlushRecord => {
                if let Some(r) = self.record.as_mut() {
                    let _ = r.flush();
                }
            }
            Todo::Replica(a) => {
                if let Some(n) = self.replica_action(a) {
                    feedback.push(Event::Persisted(n));
                }
            }
        }
    }
}

impl GroupIo {
    /// Returns the Raft ready a write made durable at once (inline, fsync off).
    fn replica_action(&mut self, a: Action) -> Option<u64> {
        match a {
            Action::Persist {
                number,
                hard_state,
                entries,
                must_sync,
            } => {
                return self.wal.send(Job::Append {
                    number,
                    hard_state,
                    entries,
                    must_sync,
                })
            }
            Action::Snapshot {
                snapshot,
                hard_state,
                entries,
            } => {
                return self.wal.send(Job::Snapshot {
                    snapshot,
                    hard_state,
                    entries,
                })
            }
            Action::SendRaft { to, data } => {
                self.metrics.raft_sent();
                if let Some(Some(link)) = self.links.peers.get(to as usize) {
                    let m = RaftMsg {
                        group: self.group,
                        data,
                    };
                    let _ = link.send(Frame::new(Body::Raft(m)));
                }
            }
            Action::SendSeq(req) => {
                let to = epoch_owner(req.epoch, self.links.seqs.len() as u32);
                if let Some(link) = self.links.seqs.get(to as usize) {
                    let _ = link.send(Frame::new(Body::GetSeq(req)));
                }
            }
            Action::ToSeq { seq, body } => {
                if let Some(link) = self.links.seqs.get(seq as usize) {
                    let _ = link.send(Frame::new(body));
                }
            }
            Action::ToZk {
                shard,
                server,
                body,
            } => {
                let link = self
                    .links
                    .zk
                    .get(shard as usize)
                    .and_then(|s| s.get(server as usize));
                if let Some(link) = link {
                    let _ = link.send(Frame::new(body));
                }
            }
            Action::LogWrite(w) => {
                if let Some(link) = self.links.logs.get(w.shard as usize) {
                    let _ = link.send(Frame::new(Body::LogWrite(w)));
                }
            }
            // Routed by the group before they get here.
            Action::Reply { .. }
            | Action::Registered { .. }
            | Action::ReadReply { .. }
            | Action::Bound(_) => {}
        }
        None
    }
}
