//! What the group answers a client: replies to its ops and registrations, "not leader"
//! redirects, and a session the group expired or forgot (what in flight fails or waits).

use super::{
    Bytes, ClientAction, ClientCore, ClientError, ClientReply, MultiSeq, Registered, ReplyStatus,
    SeqReply, SeqStatus, SpaceMask, FULL_BACKOFF_US, NOT_LEADER_BACKOFF_US,
};

impl ClientCore {
    pub(super) fn on_reply(
        &mut self,
        from: usize,
        r: ClientReply,
        now_us: u64,
        out: &mut Vec<ClientAction>,
    ) {
        if Some(r.session) != self.session {
            return; // about a session this client no longer has
        }
        match ReplyStatus::try_from(r.status) {
            Ok(ReplyStatus::Ok) => {
                let m = MultiSeq {
                    session: r.session,
                    seq: r.client_seq,
                    mask: SpaceMask(r.space_mask),
                    numbers: r.numbers,
                    result: r.result,
                };
                self.finish(r.client_seq, Ok(m), out);
            }
            // Only the replica it talks to now can send it elsewhere, and only about what
            // was sent there since it moved (nothing is, while a back-off holds the re-send).
            Ok(ReplyStatus::NotLeader) if from == self.current && self.backoff_until.is_none() => {
                self.redirect(r.leader_hint, now_us, out)
            }
            Ok(ReplyStatus::NotLeader) => {}
            // About an op in flight (a late copy of an answered op's retry says nothing).
            Ok(ReplyStatus::SessionExpired) if self.outstanding.contains(r.client_seq) => {
                self.session_expired(now_us, out)
            }
            Ok(ReplyStatus::SessionExpired) => {}
            Ok(ReplyStatus::UnknownSession) if self.outstanding.contains(r.client_seq) => {
                self.session_unknown(from, now_us, out)
            }
            Ok(ReplyStatus::UnknownSession) => {}
            Ok(ReplyStatus::Invalid) | Ok(ReplyStatus::TooManySessions) | Err(_) => {
                self.finish(r.client_seq, Err(ClientError::Invalid), out)
            }
        }
        self.release(now_us, out);
    }

    pub(super) fn on_registered(
        &mut self,
        from: usize,
        r: Registered,
        now_us: u64,
        out: &mut Vec<ClientAction>,
    ) {
        if self.registering.as_ref().map(|x| x.nonce) != Some(r.nonce) {
            return; // an answer to an earlier attempt
        }
        match ReplyStatus::try_from(r.status) {
            Ok(ReplyStatus::Ok) if r.session != 0 => {
                self.registering = None;
                self.session = Some(r.session);
                self.next_seq = 1;
                self.release(now_us, out);
                let reads: Vec<u64> = self.reads.keys().copied().collect();
                for id in reads {
                    self.send_read(id, now_us, out);
                }
            }
            Ok(ReplyStatus::NotLeader) if from == self.current && self.backoff_until.is_none() => {
                self.redirect(r.leader_hint, now_us, out)
            }
            Ok(ReplyStatus::TooManySessions) => {
                self.backoff_until = Some(now_us.saturating_add(FULL_BACKOFF_US));
            }
            Ok(ReplyStatus::Invalid) => {
                self.registering = None;
                for p in std::mem::take(&mut self.unnumbered) {
                    out.push(ClientAction::Done {
                        id: p.id,
                        result: Err(ClientError::Invalid),
                    });
                }
                for (id, _) in std::mem::take(&mut self.reads) {
                    out.push(ClientAction::Done {
                        id,
                        result: Err(ClientError::Invalid),
                    });
                }
            }
            _ => {}
        }
    }

    /// "Not leader": go where the hint says, or to the next replica after a back-off.
    pub(super) fn redirect(&mut self, leader_hint: u32, now_us: u64, out: &mut Vec<ClientAction>) {
        let hint = (leader_hint as usize)
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

    /// The group forgot an answer this session still needed: what is in flight is lost to
    /// it (bound or not), and a new session is opened for what comes next.
    fn session_expired(&mut self, now_us: u64, out: &mut Vec<ClientAction>) {
        self.lose_session(None, now_us, out);
    }

    /// Replica `from` does not know this client's session (the group closed it after an
    /// idle spell): it batched none of the ops it was sent, and closed sessions bind
    /// nothing, so the ops that went out only once, to `from`, wait for the new session
    /// (ahead of those that never went); the rest fail, as on an expiry.
    fn session_unknown(&mut self, from: usize, now_us: u64, out: &mut Vec<ClientAction>) {
        self.lose_session(Some(from), now_us, out);
    }

    pub(super) fn lose_session(
        &mut self,
        unknown_at: Option<usize>,
        now_us: u64,
        out: &mut Vec<ClientAction>,
    ) {
        if unknown_at.is_some() {
            tracing::info!(client = self.cfg.client_id, session = ?self.session, "the group closed the idle session; opening a new one");
        } else {
            tracing::warn!(client = self.cfg.client_id, session = ?self.session, in_flight = self.outstanding.len(), "the session expired; opening a new one");
        }
        self.sessions_lost += 1;
        self.session = None;
        let mut again = Vec::new();
        for p in self.outstanding.take_all() {
            // Sent nowhere yet (a back-off held it), or only once, to the replica that
            // did not know the session: surely unbound. (A lost answer makes the client
            // send again within the retry timeout, far below the session timeout, so an
            // op the group may have bound has gone out twice by the time it closes an
            // idle session.)
            if unknown_at.is_some_and(|r| p.sends == 0 || (p.sends == 1 && p.to == r)) {
                again.push(p);
            } else {
                out.push(ClientAction::Done {
                    id: p.id,
                    result: Err(ClientError::SessionExpired),
                });
            }
        }
        for p in again.into_iter().rev() {
            self.unnumbered.push_front(p);
        }
        // A read belongs to the session it was submitted under (its positions are that
        // session's): it fails with it.
        for (id, _) in std::mem::take(&mut self.reads) {
            out.push(ClientAction::Done {
                id,
                result: Err(ClientError::SessionExpired),
            });
        }
        self.register(now_us, out);
    }

    pub(super) fn on_seq_reply(&mut self, r: SeqReply, now_us: u64, out: &mut Vec<ClientAction>) {
        let Some(session) = self.session else {
            return;
        };
        // About another session (0: a sequencer that echoes none).
        if r.session != 0 && r.session != session {
            return;
        }
        let result = match SeqStatus::try_from(r.status) {
            Ok(SeqStatus::Ok) => Ok(MultiSeq {
                session,
                seq: r.batch_id,
                mask: SpaceMask(r.space_mask),
                numbers: r.bases,
                result: Bytes::new(),
            }),
            _ => Err(ClientError::Invalid),
        };
        self.finish(r.batch_id, result, out);
        self.release(now_us, out);
    }

    fn finish(
        &mut self,
        seq: u64,
        result: Result<MultiSeq, ClientError>,
        out: &mut Vec<ClientAction>,
    ) {
        if let Some(p) = self.outstanding.remove(seq) {
            out.push(ClientAction::Done { id: p.id, result });
        }
    }
}
