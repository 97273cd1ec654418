//! Reads that take no seq (`--zk-reads local`): a client sends each as a [`LocalRead`]
//! to the replica it talks to, under its open session, and re-sends it as it re-sends
//! ops (on a move, a timeout or a "not leader"). A read belongs to the session it went
//! out under: if the group says the session is gone, the read fails with it.

use super::{ClientAction, ClientCore, ClientError, CoreTarget, MultiSeq};
use bytes::Bytes;
use mason_common::msg::{Body, Frame, LocalRead, LocalReadReply, ReplyStatus};
use mason_common::types::SpaceMask;

/// A read that takes no seq (`--zk-reads local`), waiting for its answer.
pub(super) struct PendingRead {
    payload: Bytes,
    min_pos: u64,
    pub(super) sent_at: u64,
    sends: u32,
}

impl ClientCore {
    /// Takes a read that goes to the leader without a seq ([`LocalRead`]): the leader
    /// answers it from state that holds at least `min_pos` of the read's space. Its
    /// answer comes as a [`MultiSeq`] with seq 0, the answering server's space and
    /// position as its mask and number, and the reply as its result. Reads go out only
    /// under an open session; if the session is lost, they fail with it.
    pub fn submit_read(
        &mut self,
        payload: Bytes,
        min_pos: u64,
        now_us: u64,
        out: &mut Vec<ClientAction>,
    ) -> u64 {
        let id = self.new_id(now_us, out);
        self.reads.insert(
            id,
            PendingRead {
                payload,
                min_pos,
                sent_at: now_us,
                sends: 0,
            },
        );
        if self.session.is_none() {
            self.open(now_us, out);
        } else if self.backoff_until.is_none() {
            self.send_read(id, now_us, out);
        }
        id
    }

    pub(super) fn send_read(&mut self, id: u64, now_us: u64, out: &mut Vec<ClientAction>) {
        let CoreTarget::Group { group, .. } = self.cfg.target else {
            return;
        };
        let (Some(session), Some(r)) = (self.session, self.reads.get_mut(&id)) else {
            return;
        };
        if r.sends > 0 {
            self.re_tx += 1;
        }
        r.sends = r.sends.saturating_add(1);
        r.sent_at = now_us;
        let frame = Frame::new(Body::LocalRead(LocalRead {
            session,
            group,
            id,
            payload: r.payload.clone(),
            min_pos: r.min_pos,
        }));
        out.push(ClientAction::Send {
            to: self.current,
            frame,
        });
    }

    pub(super) fn on_read_reply(
        &mut self,
        from: usize,
        r: LocalReadReply,
        now_us: u64,
        out: &mut Vec<ClientAction>,
    ) {
        if Some(r.session) != self.session || !self.reads.contains_key(&r.id) {
            return;
        }
        match ReplyStatus::try_from(r.status) {
            Ok(ReplyStatus::Ok) => {
                self.reads.remove(&r.id);
                let m = MultiSeq {
                    session: r.session,
                    seq: 0,
                    mask: SpaceMask::single(r.space),
                    numbers: vec![r.pos],
                    result: r.result,
                };
                out.push(ClientAction::Done {
                    id: r.id,
                    result: Ok(m),
                });
            }
            Ok(ReplyStatus::NotLeader) if from == self.current && self.backoff_until.is_none() => {
                self.redirect(r.leader_hint, now_us, out)
            }
            Ok(ReplyStatus::NotLeader) => {}
            Ok(ReplyStatus::UnknownSession) => self.lose_session(Some(from), now_us, out),
            Ok(ReplyStatus::SessionExpired) => self.lose_session(None, now_us, out),
            Ok(ReplyStatus::Invalid) | Ok(ReplyStatus::TooManySessions) | Err(_) => {
                self.reads.remove(&r.id);
                out.push(ClientAction::Done {
                    id: r.id,
                    result: Err(ClientError::Invalid),
                });
            }
        }
    }
}
