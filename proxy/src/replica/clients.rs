//! Client sessions and client ops at the leader.
//!
//! A client opens a session before its first op: the leader commits the request through
//! the log, and every replica gives the session the group's next id (so ids are never
//! reused, even across leaders). Ops are deduplicated per session (Once), held back until
//! their predecessors of the same session are batched (FIFO), at most the session's
//! window of them, and an op at or beyond its `acked_below` plus the window is refused. A
//! session that sends nothing for the session timeout is closed, again through the log,
//! so that dedup state stays bounded. An op of a session the group does not know is
//! answered `UnknownSession` (that copy is never batched: a closed session binds nothing);
//! a retry whose answer was forgotten is answered `SessionExpired`. Either way the client
//! opens a new session (an op retried under a new session is a new op, so it may go again
//! only if it was surely never batched).

use super::{Action, ConnId, LeaderClient, OpAnswer, Opening, Replica, SESSION_GROUP_SHIFT};
use crate::config::Mutant;
use crate::entry::{Kind, LogEntry, OpEntry, OpenSession, SessionEntry};
use bytes::Bytes;
use mason_common::msg::{ClientOp, ClientReply, Register, Registered, ReplyStatus};
use mason_common::types::SpaceMask;
use prost::Message as _;
use std::collections::BTreeMap;

/// What a client sends a replica.
#[derive(Debug)]
pub enum Incoming {
    Op(ClientOp),
    Register(Register),
}

impl Incoming {
    fn bytes(&self) -> usize {
        match self {
            Incoming::Op(op) => queued_size(op.payload.len()),
            Incoming::Register(_) => queued_size(0),
        }
    }
}

/// The shortest ZooKeeper session timeout the group grants (ZooKeeper's default
/// minimum, 2 ticks of 2 s): a shorter request gets this.
pub(crate) const MIN_ZK_SESSION_US: u64 = 4_000_000;

/// The timeout a ZooKeeper createSession request asks for (opcode -10, the body its
/// timeout in ms), or a moveSession (opcode -20, the body the session then its timeout:
/// the client session taking the ZooKeeper session over gets its timeout), if `payload`
/// is one.
pub(crate) fn zk_session_timeout(payload: &[u8]) -> Option<i32> {
    let (header, body) = mason_zk::jute::split_request(payload).ok()?;
    let mut r = mason_zk::jute::Reader::new(body);
    match header.op {
        mason_zk::opcode::CREATE_SESSION => r.read_i32().ok(),
        mason_zk::opcode::MOVE_SESSION => r.read_i64().and_then(|_| r.read_i32()).ok(),
        _ => None,
    }
}

/// The session timeout granted for a request of `asked_ms`, as ZooKeeper negotiates one:
/// at least [`MIN_ZK_SESSION_US`], at most the group's own (`--session-timeout-s`).
pub(crate) fn negotiate(asked_ms: i32, group_us: u64) -> u64 {
    let asked = u64::try_from(asked_ms).unwrap_or(0).saturating_mul(1000);
    asked.clamp(MIN_ZK_SESSION_US.min(group_us), group_us)
}

/// What an op of `payload` bytes counts against the leader's `max_queued_bytes`.
pub(super) fn queued_size(payload: usize) -> usize {
    payload + 64
}

/// The largest window a session may ask for.
pub const MAX_WINDOW: u32 = mason_common::msg::MAX_CLIENT_WINDOW;
/// Answers kept per session at least (twice its window at most), whatever its client says
/// it holds.
pub const MIN_ANSWERS: usize = 64;
/// Sessions closed per log entry at most.
const CLOSE_PER_ENTRY: usize = 4096;
/// How often the leader looks for idle sessions.
const EXPIRY_CHECK_US: u64 = 1_000_000;

pub(super) fn not_leader(conn: ConnId, inc: &Incoming, hint: u32) -> Action {
    match inc {
        Incoming::Op(op) => Action::Reply {
            conn,
            reply: Replica::reply(ReplyStatus::NotLeader, op, hint),
        },
        Incoming::Register(r) => registered_elsewhere(conn, r.nonce, hint),
    }
}

/// "Not leader" to registration `nonce`.
pub(super) fn registered_elsewhere(conn: ConnId, nonce: u64, hint: u32) -> Action {
    Action::Registered {
        conn,
        reply: Registered {
            nonce,
            status: ReplyStatus::NotLeader as i32,
            leader_hint: hint,
            session: 0,
        },
    }
}

impl Replica {
    /// The answer to op `seq` of `session`.
    pub(super) fn answered(session: u64, seq: u64, a: &OpAnswer) -> ClientReply {
        ClientReply {
            result: a.result.clone(),
            ..Self::numbered_reply(session, seq, a.mask, a.numbers.to_vec())
        }
    }

    /// The answer to op `seq` of `session`: its numbers, one per space of `mask`.
    pub(super) fn numbered_reply(
        session: u64,
        seq: u64,
        mask: u64,
        numbers: Vec<u64>,
    ) -> ClientReply {
        ClientReply {
            session,
            client_seq: seq,
            status: ReplyStatus::Ok as i32,
            leader_hint: 0,
            space_mask: mask,
            numbers,
            result: Bytes::new(),
        }
    }

    pub(super) fn reply(status: ReplyStatus, op: &ClientOp, hint: u32) -> ClientReply {
        ClientReply {
            session: op.session,
            client_seq: op.client_seq,
            status: status as i32,
            leader_hint: hint,
            space_mask: 0,
            numbers: Vec::new(),
            result: Bytes::new(),
        }
    }

    pub fn on_client_op(&mut self, conn: ConnId, op: ClientOp, out: &mut Vec<Action>) {
        self.on_incoming(conn, Incoming::Op(op), out);
    }

    pub fn on_register(&mut self, conn: ConnId, r: Register, out: &mut Vec<Action>) {
        self.on_incoming(conn, Incoming::Register(r), out);
    }

    pub(super) fn on_incoming(&mut self, conn: ConnId, inc: Incoming, out: &mut Vec<Action>) {
        if let Incoming::Op(op) = &inc {
            let mask = SpaceMask(op.space_mask);
            if op.group != self.cfg.group
                || op.client_seq == 0
                || op.session == 0
                || mask.is_empty()
                || !mask.within(self.cfg.spaces)
            {
                out.push(Action::Reply {
                    conn,
                    reply: Self::reply(ReplyStatus::Invalid, op, 0),
                });
                return;
            }
        }
        if let Incoming::Register(r) = &inc {
            if r.group != self.cfg.group {
                out.push(Action::Registered {
                    conn,
                    reply: Registered {
                        nonce: r.nonce,
                        status: ReplyStatus::Invalid as i32,
                        leader_hint: 0,
                        session: 0,
                    },
                });
                return;
            }
        }
        let hint = self.node.raft.leader_id as u32;
        let max_queued = self.cfg.max_queued_bytes;
        let Some(l) = self.leader.as_mut() else {
            out.push(not_leader(conn, &inc, hint));
            return;
        };
        if !l.started {
            let n = inc.bytes();
            if l.queued_bytes + n <= max_queued {
                l.queued_bytes += n;
                l.waiting.push((conn, inc));
            }
            return;
        }
        match inc {
            Incoming::Register(r) => {
                // A re-sent registration: answer it where it came from last, once.
                let key = (r.client_id, r.nonce);
                if let Some(c) = l.opening.get_mut(&key) {
                    *c = conn;
                    return;
                }
                if let Some(o) = l.to_open.iter_mut().find(|o| (o.client_id, o.nonce) == key) {
                    o.conn = conn;
                    return;
                }
                l.to_open.push(Opening {
                    conn,
                    client_id: r.client_id,
                    nonce: r.nonce,
                    window: r.window.clamp(1, MAX_WINDOW),
                });
            }
            Incoming::Op(op) => self.take_op(conn, op, out),
        }
    }

    /// A well-formed op at a started leader.
    fn take_op(&mut self, conn: ConnId, op: ClientOp, out: &mut Vec<Action>) {
        let now = self.now;
        let max_queued = self.cfg.max_queued_bytes;
        let no_dedup = self.cfg.mutant == Some(Mutant::NoDedup);
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        let Some(applied) = self.sessions.get(&op.session) else {
            let ours = op.session >> SESSION_GROUP_SHIFT == u64::from(self.cfg.group) + 1;
            let unapplied = op.session & ((1 << SESSION_GROUP_SHIFT) - 1) >= self.next_session;
            // A session opened after what this replica applied: it is behind (a deposed
            // leader that does not know it yet), so it must not say "unknown".
            let status = if ours && unapplied {
                ReplyStatus::NotLeader
            } else {
                ReplyStatus::UnknownSession
            };
            out.push(Action::Reply {
                conn,
                reply: Self::reply(status, &op, 0),
            });
            return;
        };
        let window = u64::from(applied.window.max(1));
        if op.client_seq >= op.acked_below.max(1).saturating_add(window) {
            // Beyond the window its client said it keeps: not a real op of the session.
            out.push(Action::Reply {
                conn,
                reply: Self::reply(ReplyStatus::Invalid, &op, 0),
            });
            return;
        }
        l.last_seen.insert(op.session, now);
        let no_hold_back = self.cfg.mutant == Some(Mutant::NoHoldBack);
        if no_hold_back {
            // The mutant batches ops as they come, in any order (each once).
            if let Some(a) = applied.answers.get(op.client_seq) {
                let reply = Self::answered(op.session, op.client_seq, a);
                self.answer_after_log(conn, reply, out);
                return;
            }
            let lc = l.clients.entry(op.session).or_insert_with(|| LeaderClient {
                next_seq: 1,
                held: BTreeMap::new(),
                conn,
                batched: Default::default(),
            });
            lc.conn = conn;
            if lc.batched.insert(op.client_seq) {
                l.batch(now, OpEntry::from(op));
            }
            return;
        }
        if op.client_seq <= applied.max_seq && !no_dedup {
            let reply = match applied.answers.get(op.client_seq) {
                Some(a) => Self::answered(op.session, op.client_seq, a),
                // Bound, and its answer forgotten (the client said it held it, or kept too
                // many): the session cannot be trusted to be in step; it must start anew.
                None => Self::reply(ReplyStatus::SessionExpired, &op, 0),
            };
            self.answer_after_log(conn, reply, out);
            return;
        }
        let lc = l.clients.entry(op.session).or_insert_with(|| LeaderClient {
            next_seq: applied.max_seq + 1,
            held: BTreeMap::new(),
            conn,
            batched: Default::default(),
        });
        lc.conn = conn;
        let bytes = queued_size(op.payload.len());
        let seq = op.client_seq;
        let entry = OpEntry::from(op);
        if seq < lc.next_seq && !no_dedup {
            return; // already batched: answered when its batch applies
        }
        // The op that lets held ones go is taken even over the budget (the held ones are
        // what fills it); anything else is dropped, and its client re-sends it.
        let unblocks = seq == lc.next_seq && !lc.held.is_empty();
        if l.queued_bytes + bytes > max_queued && !unblocks {
            return;
        }
        if no_dedup && seq < lc.next_seq {
            // The NoDedup mutant batches the retry again.
            l.queued_bytes += bytes;
            l.batch(now, entry);
            return;
        }
        if seq > lc.next_seq {
            // The session has at most `window` ops in flight: anything further ahead is
            // not a real op of it.
            if seq < lc.next_seq + window
                && lc.held.len() < window as usize
                && lc.held.insert(seq, entry).is_none()
            {
                l.queued_bytes += bytes;
            }
            return;
        }
        lc.next_seq += 1;
        // The held ops it lets go, in seq order (no allocation when none is held).
        let mut released = Vec::new();
        while let Some(e) = lc.held.remove(&lc.next_seq) {
            released.push(e);
            lc.next_seq += 1;
        }
        l.queued_bytes += bytes;
        l.batch(now, entry);
        l.open.extend(released);
    }

    /// Proposes the registrations that came in since the last flush, in one entry.
    pub(super) fn propose_sessions(&mut self) {
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        if !l.started || l.to_open.is_empty() {
            return;
        }
        let opening = std::mem::take(&mut l.to_open);
        let mut opened = Vec::with_capacity(opening.len());
        for o in opening {
            l.opening.insert((o.client_id, o.nonce), o.conn);
            opened.push(OpenSession {
                client_id: o.client_id,
                nonce: o.nonce,
                window: o.window,
            });
        }
        self.propose(Kind::Sessions(SessionEntry {
            opened,
            closed: Vec::new(),
        }));
    }

    /// The leader closes, through the log, the sessions idle for the session timeout.
    pub(super) fn expire_sessions(&mut self, now: u64) {
        let group_timeout = self.cfg.session_timeout_us;
        let sessions = &self.sessions;
        let timeout = |s: &u64| {
            sessions
                .get(s)
                .map(|a| a.timeout_us)
                .filter(|t| *t > 0)
                .unwrap_or(group_timeout)
        };
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        if !l.started || now < l.next_expiry_check {
            return;
        }
        l.next_expiry_check = now
            + EXPIRY_CHECK_US
                .min(group_timeout)
                .min(MIN_ZK_SESSION_US / 4);
        let idle: Vec<u64> = l
            .last_seen
            .iter()
            .filter(|(s, t)| now.saturating_sub(**t) >= timeout(s))
            .map(|(s, _)| *s)
            .take(CLOSE_PER_ENTRY)
            .collect();
        if idle.is_empty() {
            return;
        }
        for s in &idle {
            // Not again until the entry applies (or this leader's term ends).
            l.last_seen.remove(s);
        }
        tracing::info!(
            group = self.cfg.group,
            sessions = idle.len(),
            "closing idle sessions"
        );
        self.propose(Kind::Sessions(SessionEntry {
            opened: Vec::new(),
            closed: idle,
        }));
    }

    pub(super) fn propose(&mut self, kind: Kind) {
        let data = LogEntry { kind: Some(kind) }.encode_to_vec();
        if let Err(e) = self.node.propose(Vec::new(), data) {
            tracing::debug!(group = self.cfg.group, error = %e, "proposal dropped");
        }
    }

    /// Applies opened and closed sessions; the leader answers the registrations it
    /// proposed.
    pub(super) fn apply_sessions(&mut self, e: SessionEntry, out: &mut Vec<Action>) {
        for s in &e.closed {
            let last_seq = self.sessions.remove(s).map_or(0, |a| a.max_seq);
            self.expire_zk_session(*s);
            self.zk_expire(*s, last_seq + 1);
            if let Some(l) = self.leader.as_mut() {
                if let Some(lc) = l.clients.remove(s) {
                    let held: usize = lc.held.values().map(|o| queued_size(o.payload.len())).sum();
                    l.queued_bytes = l.queued_bytes.saturating_sub(held);
                }
                l.last_seen.remove(s);
            }
        }
        for o in e.opened {
            let (status, session) = if self.sessions.len() >= self.cfg.max_sessions {
                (ReplyStatus::TooManySessions, 0)
            } else {
                let id = (u64::from(self.cfg.group) + 1) << SESSION_GROUP_SHIFT | self.next_session;
                self.next_session += 1;
                self.sessions.insert(
                    id,
                    super::Applied {
                        client_id: o.client_id,
                        window: o.window.clamp(1, MAX_WINDOW),
                        ..Default::default()
                    },
                );
                (ReplyStatus::Ok, id)
            };
            let now = self.now;
            let Some(l) = self.leader.as_mut() else {
                continue;
            };
            if status == ReplyStatus::Ok {
                l.last_seen.insert(session, now);
            }
            if let Some(conn) = l.opening.remove(&(o.client_id, o.nonce)) {
                out.push(Action::Registered {
                    conn,
                    reply: Registered {
                        nonce: o.nonce,
                        status: status as i32,
                        leader_hint: 0,
                        session,
                    },
                });
            }
        }
    }
}
