//! The client's protocol as a deterministic state machine: no I/O, no clock, no runtime.
//! Time comes in as `now_us` arguments and what to do goes out as [`ClientAction`]s, so the
//! async driver (`driver.rs`) and the simulator run the very same code.
//!
//! A client numbers its ops 1, 2, 3, ..., keeps them until answered, and re-sends every
//! unanswered op when it moves to another replica (on a timeout, an unreachable replica or a
//! "not leader" answer). Each op carries `acked_below`, the lowest unanswered seq, so the
//! group can forget older answers.

use bytes::Bytes;
use mason_common::msg::{
    Body, ClientOp, ClientReply, Frame, GetSeq, ReplyStatus, SeqReply, SeqStatus,
};
use mason_common::types::SpaceMask;
use std::collections::BTreeMap;

/// After a "not leader" answer that names no other leader: give the election a moment.
pub const NOT_LEADER_BACKOFF_US: u64 = 10_000;
/// After a replica could not be reached (or its connection broke).
pub const UNREACHABLE_BACKOFF_US: u64 = 20_000;

#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub client_id: u64,
    pub target: CoreTarget,
    /// Move to another replica when the oldest op has waited this long.
    pub retry_timeout_us: u64,
}

/// Where a client's ops go, by replica index.
#[derive(Clone, Debug)]
pub enum CoreTarget {
    /// The `replicas` replicas of proxy group `group`.
    Group { group: u32, replicas: usize },
    /// The sequencer itself, one request per op (the direct baseline): one "replica", 0.
    Direct,
}

/// One number per space of `mask`, ascending by space, for the client's op `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiSeq {
    /// The op's number in this client's own order (1, 2, 3, ...).
    pub seq: u64,
    pub mask: SpaceMask,
    pub numbers: Vec<u64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientError {
    #[error("the op was refused as invalid (spaces out of range or empty, or unknown group)")]
    Invalid,
    #[error("the client has shut down")]
    Closed,
}

#[derive(Debug)]
pub enum ClientAction {
    /// Send `frame` to replica index `to` of the group (Direct: `to` is always 0, the sequencer).
    Send { to: usize, frame: Frame },
    /// Op `seq` is finished (answered, or refused as Invalid).
    Done {
        seq: u64,
        result: Result<MultiSeq, ClientError>,
    },
}

struct Pending {
    mask: SpaceMask,
    payload: Bytes,
    /// When it was last sent (or submitted, if it was held back by a back-off).
    sent_at: u64,
    /// Whether it went out at least once: only later sends count as re-sends.
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
    next_seq: u64,
    outstanding: BTreeMap<u64, Pending>,
    re_tx: u64,
}

impl ClientCore {
    pub fn new(cfg: CoreConfig) -> ClientCore {
        let n = match cfg.target {
            CoreTarget::Group { replicas, .. } => replicas.max(1),
            CoreTarget::Direct => 1,
        };
        ClientCore {
            cfg,
            n,
            current: 0,
            moves: 0,
            backoff_until: None,
            next_seq: 1,
            outstanding: BTreeMap::new(),
            re_tx: 0,
        }
    }

    pub fn client_id(&self) -> u64 {
        self.cfg.client_id
    }

    /// The seq the next submitted op will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
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

    /// Numbers a new op (1, 2, 3, ...), keeps it until answered, sends it to `current()`
    /// unless in back-off; returns its seq.
    pub fn submit(
        &mut self,
        mask: SpaceMask,
        payload: Bytes,
        now_us: u64,
        out: &mut Vec<ClientAction>,
    ) -> u64 {
        self.end_backoff(now_us, out);
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut p = Pending {
            mask,
            payload,
            sent_at: now_us,
            sent: false,
        };
        if self.backoff_until.is_none() {
            p.sent = true;
            let acked = self.outstanding.keys().next().copied().unwrap_or(seq);
            let frame = Self::frame(&self.cfg, acked, seq, &p);
            let to = self.current;
            out.push(ClientAction::Send { to, frame });
        }
        self.outstanding.insert(seq, p);
        seq
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
            Some(Body::SeqReply(r)) => self.on_seq_reply(r, out),
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
        let late = self
            .outstanding
            .values()
            .next()
            .is_some_and(|p| now_us.saturating_sub(p.sent_at) >= self.cfg.retry_timeout_us);
        if late {
            tracing::debug!(
                client = self.cfg.client_id,
                "timeout; trying another replica"
            );
            self.move_to((self.current + 1) % self.n);
            self.resend_all(now_us, out);
        }
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Ops re-sent so far (Mason's num_re_tx).
    pub fn retransmissions(&self) -> u64 {
        self.re_tx
    }

    fn on_reply(&mut self, from: usize, r: ClientReply, now_us: u64, out: &mut Vec<ClientAction>) {
        match ReplyStatus::try_from(r.status) {
            Ok(ReplyStatus::Ok) => {
                let m = MultiSeq {
                    seq: r.client_seq,
                    mask: SpaceMask(r.space_mask),
                    numbers: r.numbers,
                };
                self.finish(r.client_seq, Ok(m), out);
            }
            // Only the replica it talks to now can send it elsewhere, and only about what
            // was sent there since it moved (nothing is, while a back-off holds the re-send).
            Ok(ReplyStatus::NotLeader) if from == self.current && self.backoff_until.is_none() => {
                let hint = (r.leader_hint as usize)
                    .checked_sub(1)
                    .filter(|h| *h < self.n && *h != self.current);
                match hint {
                    Some(h) => {
                        self.move_to(h);
                        self.resend_all(now_us, out);
                    }
                    None => {
                        self.move_to((self.current + 1) % self.n);
                        self.backoff_until = Some(now_us.saturating_add(NOT_LEADER_BACKOFF_US));
                    }
                }
            }
            Ok(ReplyStatus::NotLeader) => {}
            Ok(ReplyStatus::Invalid) | Err(_) => {
                self.finish(r.client_seq, Err(ClientError::Invalid), out)
            }
        }
    }

    fn on_seq_reply(&mut self, r: SeqReply, out: &mut Vec<ClientAction>) {
        let result = match SeqStatus::try_from(r.status) {
            Ok(SeqStatus::Ok) => Ok(MultiSeq {
                seq: r.batch_id,
                mask: SpaceMask(r.space_mask),
                numbers: r.bases,
            }),
            _ => Err(ClientError::Invalid),
        };
        self.finish(r.batch_id, result, out);
    }

    fn finish(
        &mut self,
        seq: u64,
        result: Result<MultiSeq, ClientError>,
        out: &mut Vec<ClientAction>,
    ) {
        if self.outstanding.remove(&seq).is_some() {
            out.push(ClientAction::Done { seq, result });
        }
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
        self.outstanding
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_seq)
    }

    /// Sends every unanswered op to `current`; those sent before count as re-sends.
    fn resend_all(&mut self, now_us: u64, out: &mut Vec<ClientAction>) {
        let acked = self.acked_below();
        for (&seq, p) in self.outstanding.iter_mut() {
            if p.sent {
                self.re_tx += 1;
            }
            p.sent = true;
            p.sent_at = now_us;
            out.push(ClientAction::Send {
                to: self.current,
                frame: Self::frame(&self.cfg, acked, seq, p),
            });
        }
    }

    fn frame(cfg: &CoreConfig, acked_below: u64, seq: u64, p: &Pending) -> Frame {
        match cfg.target {
            CoreTarget::Group { group, .. } => Frame::new(Body::ClientOp(ClientOp {
                client_id: cfg.client_id,
                client_seq: seq,
                group,
                space_mask: p.mask.0,
                payload: p.payload.clone(),
                acked_below,
            })),
            CoreTarget::Direct => Frame::new(Body::GetSeq(GetSeq {
                epoch: 0,
                group: cfg.client_id as u32,
                batch_id: seq,
                space_mask: p.mask.0,
                counts: vec![1; p.mask.len()],
                committed: 0,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RT: u64 = 100_000;

    fn core(target: CoreTarget) -> ClientCore {
        let cfg = CoreConfig {
            client_id: 7,
            target,
            retry_timeout_us: RT,
        };
        ClientCore::new(cfg)
    }

    fn group() -> ClientCore {
        core(CoreTarget::Group {
            group: 3,
            replicas: 3,
        })
    }

    fn submit(c: &mut ClientCore, now: u64, out: &mut Vec<ClientAction>) -> u64 {
        c.submit(SpaceMask(0b101), Bytes::from_static(b"p"), now, out)
    }

    /// (to, seq, acked_below) of each ClientOp sent; drains `out`, which must hold only sends.
    fn sent(out: &mut Vec<ClientAction>) -> Vec<(usize, u64, u64)> {
        out.drain(..)
            .map(|a| match a {
                ClientAction::Send {
                    to,
                    frame:
                        Frame {
                            body: Some(Body::ClientOp(op)),
                        },
                } => {
                    assert_eq!((op.client_id, op.group, op.space_mask), (7, 3, 0b101));
                    (to, op.client_seq, op.acked_below)
                }
                other => panic!("expected a ClientOp send, got {other:?}"),
            })
            .collect()
    }

    fn done(out: &mut Vec<ClientAction>) -> Vec<(u64, Result<MultiSeq, ClientError>)> {
        out.drain(..)
            .map(|a| match a {
                ClientAction::Done { seq, result } => (seq, result),
                other => panic!("expected Done, got {other:?}"),
            })
            .collect()
    }

    fn reply(seq: u64, status: ReplyStatus, leader_hint: u32) -> Frame {
        Frame::new(Body::ClientReply(ClientReply {
            client_id: 7,
            client_seq: seq,
            status: status as i32,
            leader_hint,
            space_mask: 0b101,
            numbers: vec![seq * 10, seq * 10 + 1],
        }))
    }

    fn answer(seq: u64) -> (u64, Result<MultiSeq, ClientError>) {
        let m = MultiSeq {
            seq,
            mask: SpaceMask(0b101),
            numbers: vec![seq * 10, seq * 10 + 1],
        };
        (seq, Ok(m))
    }

    #[test]
    fn numbers_ops_and_acks_below_the_lowest_unanswered() {
        let (mut c, mut out) = (group(), Vec::new());
        assert_eq!([1, 2, 3].map(|_| submit(&mut c, 0, &mut out)), [1, 2, 3]);
        assert_eq!(sent(&mut out), [(0, 1, 1), (0, 2, 1), (0, 3, 1)]);
        c.on_frame(0, reply(1, ReplyStatus::Ok, 0), 5, &mut out);
        assert_eq!(done(&mut out), [answer(1)]);
        assert_eq!(submit(&mut c, 6, &mut out), 4);
        assert_eq!(sent(&mut out), [(0, 4, 2)]);
        for s in [3, 2, 4] {
            c.on_frame(0, reply(s, ReplyStatus::Ok, 0), 7, &mut out);
        }
        assert_eq!(done(&mut out), [answer(3), answer(2), answer(4)]);
        assert_eq!(c.outstanding(), 0);
        assert_eq!(submit(&mut c, 8, &mut out), 5);
        assert_eq!(sent(&mut out), [(0, 5, 5)]);
        assert_eq!((c.current(), c.retransmissions(), c.client_id()), (0, 0, 7));
    }

    #[test]
    fn not_leader_with_a_hint_moves_there_and_resends_everything_once() {
        let (mut c, mut out) = (group(), Vec::new());
        submit(&mut c, 0, &mut out);
        submit(&mut c, 0, &mut out);
        out.clear();
        c.on_frame(0, reply(1, ReplyStatus::NotLeader, 3), 10, &mut out);
        assert_eq!(c.current(), 2);
        assert_eq!(sent(&mut out), [(2, 1, 1), (2, 2, 1)]);
        assert_eq!(c.retransmissions(), 2);
        // The old replica's answer to the other op changes nothing.
        c.on_frame(0, reply(2, ReplyStatus::NotLeader, 3), 11, &mut out);
        assert!(out.is_empty());
        assert_eq!((c.current(), c.retransmissions()), (2, 2));
    }

    #[test]
    fn not_leader_without_a_hint_backs_off_then_resends_on_tick() {
        let (mut c, mut out) = (group(), Vec::new());
        submit(&mut c, 0, &mut out);
        out.clear();
        // A hint naming the replica itself is no hint.
        c.on_frame(0, reply(1, ReplyStatus::NotLeader, 1), 1_000, &mut out);
        assert_eq!(c.current(), 1);
        assert!(out.is_empty());
        assert_eq!(submit(&mut c, 2_000, &mut out), 2);
        c.tick(1_000 + NOT_LEADER_BACKOFF_US - 1, &mut out);
        assert!(out.is_empty(), "nothing goes out during the back-off");
        c.tick(1_000 + NOT_LEADER_BACKOFF_US, &mut out);
        assert_eq!(sent(&mut out), [(1, 1, 1), (1, 2, 1)]);
        assert_eq!(c.retransmissions(), 1, "op 2 had never been sent");
        c.tick(1_000 + NOT_LEADER_BACKOFF_US + 1, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn not_leader_from_another_replica_is_ignored() {
        let (mut c, mut out) = (group(), Vec::new());
        submit(&mut c, 0, &mut out);
        out.clear();
        c.on_frame(1, reply(1, ReplyStatus::NotLeader, 3), 10, &mut out);
        c.on_frame(2, reply(1, ReplyStatus::NotLeader, 0), 10, &mut out);
        assert!(out.is_empty());
        assert_eq!(
            (c.current(), c.retransmissions(), c.outstanding()),
            (0, 0, 1)
        );
    }

    #[test]
    fn timeout_moves_on_and_resends() {
        let (mut c, mut out) = (group(), Vec::new());
        submit(&mut c, 0, &mut out);
        out.clear();
        c.tick(RT - 1, &mut out);
        assert!(out.is_empty());
        c.tick(RT, &mut out);
        assert_eq!(sent(&mut out), [(1, 1, 1)]);
        c.tick(2 * RT - 1, &mut out);
        assert!(out.is_empty(), "the re-send restarted the clock");
        c.tick(2 * RT, &mut out);
        c.tick(3 * RT, &mut out);
        assert_eq!(sent(&mut out), [(2, 1, 1), (0, 1, 1)]);
        assert_eq!((c.current(), c.retransmissions()), (0, 3));
    }

    #[test]
    fn unreachable_replica_moves_on_after_a_back_off() {
        let (mut c, mut out) = (group(), Vec::new());
        submit(&mut c, 0, &mut out);
        out.clear();
        c.on_unreachable(1, 5, &mut out);
        assert_eq!(c.current(), 0, "only the current replica counts");
        c.on_unreachable(0, 5, &mut out);
        assert_eq!(c.current(), 1);
        c.tick(5 + UNREACHABLE_BACKOFF_US - 1, &mut out);
        assert!(out.is_empty());
        // A submit once the back-off has passed re-sends too, before its own op.
        assert_eq!(submit(&mut c, 5 + UNREACHABLE_BACKOFF_US, &mut out), 2);
        assert_eq!(sent(&mut out), [(1, 1, 1), (1, 2, 1)]);
        assert_eq!(c.retransmissions(), 1);
    }

    #[test]
    fn duplicate_answers_finish_an_op_once() {
        let (mut c, mut out) = (group(), Vec::new());
        submit(&mut c, 0, &mut out);
        out.clear();
        c.on_frame(2, reply(1, ReplyStatus::Ok, 0), 1, &mut out);
        c.on_frame(0, reply(1, ReplyStatus::Ok, 0), 2, &mut out);
        c.on_frame(0, reply(9, ReplyStatus::Ok, 0), 2, &mut out);
        assert_eq!(done(&mut out), [answer(1)]);
        assert_eq!(c.outstanding(), 0);
        c.tick(10 * RT, &mut out);
        assert!(out.is_empty(), "nothing is left to time out");
    }

    #[test]
    fn invalid_finishes_with_an_error() {
        let (mut c, mut out) = (group(), Vec::new());
        submit(&mut c, 0, &mut out);
        out.clear();
        c.on_frame(0, reply(1, ReplyStatus::Invalid, 0), 1, &mut out);
        assert_eq!(done(&mut out), [(1, Err(ClientError::Invalid))]);
        assert_eq!(c.outstanding(), 0);
    }

    #[test]
    fn direct_asks_the_sequencer_for_one_number_per_space() {
        let (mut c, mut out) = (core(CoreTarget::Direct), Vec::new());
        assert_eq!(submit(&mut c, 0, &mut out), 1);
        let want = GetSeq {
            epoch: 0,
            group: 7,
            batch_id: 1,
            space_mask: 0b101,
            counts: vec![1, 1],
            committed: 0,
        };
        let expect_get_seq = |out: &mut Vec<ClientAction>| match out.pop() {
            Some(ClientAction::Send { to: 0, frame }) if out.is_empty() => {
                assert_eq!(frame, Frame::new(Body::GetSeq(want.clone())))
            }
            other => panic!("expected one GetSeq to 0, got {other:?} and {out:?}"),
        };
        expect_get_seq(&mut out);
        c.tick(RT, &mut out);
        expect_get_seq(&mut out);
        assert_eq!((c.current(), c.retransmissions()), (0, 1));
        let seq_reply = |batch_id, status: SeqStatus| {
            let bases = vec![40, 41];
            let r = SeqReply {
                epoch: 0,
                group: 7,
                batch_id,
                status: status as i32,
                repeat: false,
                space_mask: 0b101,
                bases,
                counts: vec![1, 1],
                watermarks: Vec::new(),
            };
            Frame::new(Body::SeqReply(r))
        };
        c.on_frame(0, seq_reply(1, SeqStatus::Ok), RT + 1, &mut out);
        c.on_frame(0, seq_reply(1, SeqStatus::Ok), RT + 1, &mut out);
        let m = MultiSeq {
            seq: 1,
            mask: SpaceMask(0b101),
            numbers: vec![40, 41],
        };
        assert_eq!(done(&mut out), [(1, Ok(m))]);
        assert_eq!(submit(&mut c, RT + 2, &mut out), 2);
        out.clear();
        c.on_frame(0, seq_reply(2, SeqStatus::Invalid), RT + 3, &mut out);
        assert_eq!(done(&mut out), [(2, Err(ClientError::Invalid))]);
    }
}
