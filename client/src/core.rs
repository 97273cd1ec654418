//! The client's protocol as a deterministic state machine: no I/O, no clock, no runtime.
//! Time comes in as `now_us` arguments and what to do goes out as [`ClientAction`]s, so the
//! async driver (`driver.rs`) and the simulator run the very same code.
//!
//! Through a proxy group, a client first opens a session (`Register`, committed through
//! the group's log, answered with the session's id); ops submitted meanwhile wait. Within
//! its session a client numbers its ops 1, 2, 3, ..., keeps them until answered, and
//! re-sends every unanswered op (or its registration) when it moves to another replica (on
//! a timeout, an unreachable replica or a "not leader" answer). Each op carries
//! `acked_below`, the lowest unanswered seq, so the group can forget older answers; an op
//! is numbered only while its seq stays below `acked_below` plus the window (later ones
//! wait, in order), so the group never holds more than a window of its answers. If the
//! group answers that the session expired, every op in flight fails (it may or may not
//! have been bound: a retry under a new session would be a new op) and the client opens a
//! new session for what comes next; if it answers that it does not know the session (it
//! closed it after an idle spell), ops that went out only that once, to that replica, are
//! surely unbound and go again under the new session. In the direct baseline the session
//! is a random id the client brings, and the sequencer itself answers.

use bytes::Bytes;
use mason_common::msg::{
    Body, ClientOp, ClientReply, Frame, GetSeq, Register, Registered, ReplyStatus, SeqReply,
    SeqStatus, DIRECT_SESSION_WINDOW, MAX_CLIENT_WINDOW,
};
use mason_common::types::SpaceMask;
use std::collections::{BTreeMap, VecDeque};

/// After a "not leader" answer that names no other leader: give the election a moment.
pub const NOT_LEADER_BACKOFF_US: u64 = 10_000;
/// After a replica could not be reached (or its connection broke).
pub const UNREACHABLE_BACKOFF_US: u64 = 20_000;
/// After the group refused a new session for want of room.
pub const FULL_BACKOFF_US: u64 = 500_000;

#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// A label for logs (the client's index).
    pub client_id: u64,
    pub target: CoreTarget,
    /// Move to another replica when the oldest op has waited this long.
    pub retry_timeout_us: u64,
    /// Ops this client keeps in flight at most (told to the group with its session; at most
    /// `MAX_CLIENT_WINDOW` through a group, `DIRECT_SESSION_WINDOW` direct).
    pub window: u32,
}

/// Where a client's ops go, by replica index.
#[derive(Clone, Debug)]
pub enum CoreTarget {
    /// The `replicas` replicas of proxy group `group`; the client tries `first` first
    /// (where it expects the leader).
    Group {
        group: u32,
        replicas: usize,
        first: usize,
    },
    /// The sequencer itself, one request per op (the direct baseline): one "replica", 0,
    /// and a session the client brings (random, never 0).
    Direct { session: u64 },
}

/// One number per space of `mask`, ascending by space, for op `seq` of `session`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiSeq {
    pub session: u64,
    /// The op's number in its session's own order (1, 2, 3, ...).
    pub seq: u64,
    pub mask: SpaceMask,
    pub numbers: Vec<u64>,
    /// What the group answered besides numbers (RSMKeeper: the ZooKeeper reply).
    pub result: Bytes,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientError {
    #[error("the op was refused as invalid (spaces out of range or empty, or unknown group)")]
    Invalid,
    #[error("the client's session expired with the op in flight: it may or may not be bound")]
    SessionExpired,
    #[error("the client has shut down")]
    Closed,
}

#[derive(Debug)]
pub enum ClientAction {
    /// Send `frame` to replica index `to` of the group (Direct: `to` is always 0, the sequencer).
    Send { to: usize, frame: Frame },
    /// Op `id` (what [`ClientCore::submit`] returned) is finished.
    Done {
        id: u64,
        result: Result<MultiSeq, ClientError>,
    },
}

struct Pending {
    id: u64,
    mask: SpaceMask,
    payload: Bytes,
    /// Give the payload's first 16 bytes the session and the seq (see `log::stamp`).
    stamp: bool,
    /// When it was last sent (or submitted, if it was held back by a back-off).
    sent_at: u64,
    /// How often it went out (only sends after the first count as re-sends), and to which
    /// replica last.
    sends: u32,
    to: usize,
}

/// A registration in flight.
struct Registering {
    nonce: u64,
    sent_at: u64,
    sent: bool,
}

pub struct ClientCore {
    cfg: CoreConfig,
    /// Replicas in the group (1 for Direct).
    n: usize,
    current: usize,
    moves: u64,
    /// Set after a move that waits before re-sending; cleared when the re-send happens.
    backoff_until: Option<u64>,
    session: Option<u64>,
    registering: Option<Registering>,
    next_nonce: u64,
    next_id: u64,
    next_seq: u64,
    /// Ops waiting for a seq: submitted before the session was open, or beyond the window.
    unnumbered: VecDeque<Pending>,
    outstanding: inflight::Inflight<Pending>,
    /// Local reads by op id: sent only while a session is open, and failed with it.
    reads: BTreeMap<u64, reads::PendingRead>,
    re_tx: u64,
    sessions_lost: u64,
}

impl ClientCore {
    pub fn new(mut cfg: CoreConfig) -> ClientCore {
        let (n, session, most, first) = match cfg.target {
            CoreTarget::Group {
                replicas, first, ..
            } => (replicas.max(1), None, MAX_CLIENT_WINDOW, first),
            CoreTarget::Direct { session } => (1, Some(session.max(1)), DIRECT_SESSION_WINDOW, 0),
        };
        cfg.window = cfg.window.clamp(1, most);
        // Distinct per client id: clients sharing a connection tell their registrations'
        // answers apart by nonce.
        let first_nonce = (cfg.client_id << 24) | 1;
        ClientCore {
            cfg,
            n,
            current: first % n,
            moves: 0,
            backoff_until: None,
            session,
            registering: None,
            next_nonce: first_nonce,
            next_id: 1,
            next_seq: 1,
            unnumbered: VecDeque::new(),
            outstanding: inflight::Inflight::default(),
            reads: BTreeMap::new(),
            re_tx: 0,
            sessions_lost: 0,
        }
    }

    pub fn client_id(&self) -> u64 {
        self.cfg.client_id
    }

    /// The open session, if any.
    pub fn session(&self) -> Option<u64> {
        self.session
    }

    /// The nonce of the registration in flight, if one is.
    pub fn registering_nonce(&self) -> Option<u64> {
        self.registering.as_ref().map(|r| r.nonce)
    }

    /// The replica index it talks to now.
    pub fn current(&self) -> usize {
        self.current
    }

    /// How many times it has moved on (to another replica, or, with a single one, to a fresh
    /// start with the same one). A runtime opens a new connection for each move, so that
    /// nothing left on an old connection is mistaken for an answer to the new one.
    pub fn moves(&self) -> u64 {
        self.moves
    }

    /// Sessions that expired on this client with ops in flight or not.
    pub fn sessions_lost(&self) -> u64 {
        self.sessions_lost
    }

    /// Takes a new op; it goes out at once if the session is open and no back-off holds.
    /// Returns the op's id (its [`ClientAction::Done`] names it).
    pub fn submit(
        &mut self,
        mask: SpaceMask,
        payload: Bytes,
        stamp: bool,
        now_us: u64,
        out: &mut Vec<ClientAction>,
    ) -> u64 {
        let id = self.new_id(now_us, out);
        self.unnumbered.push_back(Pending {
            id,
            mask,
            payload,
            stamp,
            sent_at: now_us,
            sends: 0,
            to: 0,
        });
        if self.session.is_some() {
            self.release(now_us, out);
        } else {
            self.open(now_us, out);
        }
        id
    }

    /// A new op id (after ending a back-off that is over).
    fn new_id(&mut self, now_us: u64, out: &mut Vec<ClientAction>) -> u64 {
        self.end_backoff(now_us, out);
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Opens a session now, before any op (a group target with none open or opening).
    pub fn open(&mut self, now_us: u64, out: &mut Vec<ClientAction>) {
        if self.session.is_none() && self.registering.is_none() {
            self.register(now_us, out);
        }
    }

    /// Numbers the waiting ops, in order, while the session is open and their seqs stay
    /// within the window; each goes out at once unless a back-off holds.
    fn release(&mut self, now_us: u64, out: &mut Vec<ClientAction>) {
        let Some(session) = self.session else {
            return;
        };
        while self.next_seq < self.acked_below() + u64::from(self.cfg.window) {
            let Some(mut p) = self.unnumbered.pop_front() else {
                return;
            };
            let seq = self.next_seq;
            self.next_seq += 1;
            if p.stamp {
                // Over an earlier stamp too, if the op waits again under a new session.
                p.payload = crate::log::stamp(&p.payload, session, seq);
            }
            p.sends = 0;
            p.sent_at = now_us;
            self.outstanding.insert(seq, p);
            if self.backoff_until.is_none() {
                self.send_op(seq, now_us, out);
            }
        }
    }

    fn send_op(&mut self, seq: u64, now_us: u64, out: &mut Vec<ClientAction>) {
        let acked = self.acked_below();
        let (Some(session), Some(p)) = (self.session, self.outstanding.get_mut(seq)) else {
            return;
        };
        if p.sends > 0 {
            self.re_tx += 1;
        }
        p.sends = p.sends.saturating_add(1);
        p.to = self.current;
        p.sent_at = now_us;
        let frame = Self::frame(&self.cfg, session, acked, seq, p);
        out.push(ClientAction::Send {
            to: self.current,
            frame,
        });
    }

    /// Starts opening a session (a fresh nonce), sent unless a back-off holds.
    fn register(&mut self, now_us: u64, out: &mut Vec<ClientAction>) {
        let nonce = self.next_nonce;
        self.next_nonce += 1;
        self.registering = Some(Registering {
            nonce,
            sent_at: now_us,
            sent: false,
        });
        if self.backoff_until.is_none() {
            self.send_register(now_us, out);
        }
    }

    fn send_register(&mut self, now_us: u64, out: &mut Vec<ClientAction>) {
        let CoreTarget::Group { group, .. } = self.cfg.target else {
            return;
        };
        let Some(r) = self.registering.as_mut() else {
            return;
        };
        if r.sent {
            self.re_tx += 1;
        }
        r.sent = true;
        r.sent_at = now_us;
        let frame = Frame::new(Body::Register(Register {
            group,
            client_id: self.cfg.client_id,
            nonce: r.nonce,
            window: self.cfg.window,
        }));
        out.push(ClientAction::Send {
            to: self.current,
            frame,
        });
    }

    /// A frame that arrived from replica `from`.
    pub fn on_frame(
        &mut self,
        from: usize,
        frame: Frame,
        now_us: u64,
        out: &mut Vec<ClientAction>,
    ) {
        match frame.body {
            Some(Body::ClientReply(r)) => self.on_reply(from, r, now_us, out),
            Some(Body::Registered(r)) => self.on_registered(from, r, now_us, out),
            Some(Body::SeqReply(r)) => self.on_seq_reply(*r, now_us, out),
            Some(Body::LocalReadReply(r)) => self.on_read_reply(from, r, now_us, out),
            other => tracing::warn!(?other, "unexpected frame for a client"),
        }
    }

    /// The connection to `to` broke or could not be made: move to the next replica.
    pub fn on_unreachable(&mut self, to: usize, now_us: u64, _out: &mut Vec<ClientAction>) {
        if to != self.current {
            return;
        }
        self.move_to((self.current + 1) % self.n);
        self.backoff_until = Some(now_us.saturating_add(UNREACHABLE_BACKOFF_US));
    }

    /// Timeouts and back-off expiry; call at least every retry_timeout/4.
    pub fn tick(&mut self, now_us: u64, out: &mut Vec<ClientAction>) {
        self.end_backoff(now_us, out);
        if self.backoff_until.is_some() {
            return; // everything is re-sent when the back-off ends
        }
        let timeout = self.cfg.retry_timeout_us;
        let late = |t: u64| now_us.saturating_sub(t) >= timeout;
        let late_op = self.outstanding.first().is_some_and(|p| late(p.sent_at));
        let late_reg = self.registering.as_ref().is_some_and(|r| late(r.sent_at));
        let late_read = self.session.is_some() && self.reads.values().any(|r| late(r.sent_at));
        if late_op || late_reg || late_read {
            tracing::debug!(
                client = self.cfg.client_id,
                "timeout; trying another replica"
            );
            self.move_to((self.current + 1) % self.n);
            self.resend_all(now_us, out);
        }
    }

    /// A line about what waits, for a report of a stuck client.
    pub fn describe(&self) -> String {
        format!(
            "client {} session {:?} at replica {} (moves {}): {} op(s) in flight (oldest seq {:?}), {} waiting for a seq, {} local read(s){}{}",
            self.cfg.client_id,
            self.session,
            self.current,
            self.moves,
            self.outstanding.len(),
            self.outstanding.first_seq(),
            self.unnumbered.len(),
            self.reads.len(),
            if self.registering.is_some() { ", registering" } else { "" },
            if self.backoff_until.is_some() { ", backing off" } else { "" },
        )
    }

    /// Ops submitted and not finished.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len() + self.unnumbered.len() + self.reads.len()
    }

    /// Ops (and registrations) re-sent so far (Mason's num_re_tx).
    pub fn retransmissions(&self) -> u64 {
        self.re_tx
    }

    fn move_to(&mut self, replica: usize) {
        self.current = replica;
        self.moves += 1;
    }

    fn end_backoff(&mut self, now_us: u64, out: &mut Vec<ClientAction>) {
        if self.backoff_until.is_some_and(|t| now_us >= t) {
            self.backoff_until = None;
            self.resend_all(now_us, out);
        }
    }

    /// The lowest unanswered seq, or the next seq if none is.
    fn acked_below(&self) -> u64 {
        self.outstanding.first_seq().unwrap_or(self.next_seq)
    }

    /// Sends the registration in flight, or every unanswered op, to `current`; those sent
    /// before count as re-sends.
    fn resend_all(&mut self, now_us: u64, out: &mut Vec<ClientAction>) {
        if self.registering.is_some() {
            self.send_register(now_us, out);
        }
        let seqs = self.outstanding.seqs();
        for seq in seqs {
            self.send_op(seq, now_us, out);
        }
        let reads: Vec<u64> = self.reads.keys().copied().collect();
        for id in reads {
            self.send_read(id, now_us, out);
        }
    }

    fn frame(cfg: &CoreConfig, session: u64, acked_below: u64, seq: u64, p: &Pending) -> Frame {
        match cfg.target {
            CoreTarget::Group { group, .. } => Frame::new(Body::ClientOp(ClientOp {
                session,
                client_seq: seq,
                group,
                space_mask: p.mask.0,
                payload: p.payload.clone(),
                acked_below,
            })),
            CoreTarget::Direct { .. } => Frame::new(Body::GetSeq(GetSeq {
                epoch: 0,
                group: 0,
                batch_id: seq,
                space_mask: p.mask.0,
                counts: vec![1; p.mask.len()],
                committed: acked_below.saturating_sub(1),
                session,
            })),
        }
    }
}

mod answers;
mod inflight;
mod reads;
#[cfg(test)]
mod tests;
