//! Applying committed entries: every replica binds each batch's ops to numbers in order,
//! keeps the per-session dedup state (Once), and records what it bound (the recorded set,
//! and a record for the checker); the leader also answers the clients. Batches from an
//! epoch below the group's promise are fenced off: they bind nothing. An op of a session
//! that is no longer open binds nothing either (its numbers become noops).

use super::{Action, Applied, OpAnswer, Replica};
use crate::config::Mutant;
use crate::entry::OpEntry;
use crate::entry::{BatchEntry, Kind, LogEntry};
use mason_common::types::SpaceMask;
use prost::Message as _;
use raft::prelude::Entry;

impl Replica {
    pub(super) fn apply(&mut self, entries: Vec<Entry>, out: &mut Vec<Action>) {
        for e in entries {
            self.applied_index = e.index;
            self.applied_bytes += e.data.len() as u64;
            if e.data.is_empty() {
                continue;
            }
            let from = out.len();
            if let Some(b) = self.take_proposed(e.index, e.term) {
                self.apply_batch(b, out);
                self.after_entry(e.index, from, out);
                continue;
            }
            match LogEntry::decode(&e.data[..]) {
                Ok(LogEntry {
                    kind: Some(Kind::Batch(b)),
                }) => self.apply_batch(b, out),
                Ok(LogEntry {
                    kind: Some(Kind::Switch(sw)),
                }) => self.apply_switch(sw, out),
                Ok(LogEntry {
                    kind: Some(Kind::Fill(f)),
                }) => self.apply_fill(f, out),
                Ok(LogEntry {
                    kind: Some(Kind::Sessions(x)),
                }) => self.apply_sessions(x, out),
                Ok(LogEntry { kind: None }) => {
                    tracing::error!(group = self.cfg.group, index = e.index, "empty entry")
                }
                Err(err) => {
                    tracing::error!(group = self.cfg.group, index = e.index, error = %err, "undecodable entry")
                }
            }
            self.after_entry(e.index, from, out);
        }
    }

    /// The batch this leader proposed at `index` in `term`, as it proposed it, if it kept
    /// it there (see [`super::Stage::Proposed`]).
    fn take_proposed(&mut self, index: u64, term: u64) -> Option<BatchEntry> {
        let l = self.leader.as_mut()?;
        l.inflight.iter_mut().find_map(|b| match &mut b.stage {
            super::Stage::Proposed {
                index: i,
                term: t,
                entry,
            } if *i == index && *t == term => entry.take(),
            _ => None,
        })
    }

    /// What follows the entry at `index` whose actions start at `out[from]`: its bound
    /// batch gets its index, and its ops go to the log or ZooKeeper.
    fn after_entry(&mut self, index: u64, from: usize, out: &mut Vec<Action>) {
        for a in &mut out[from..] {
            if let Action::Bound(b) = a {
                b.index = index;
            }
        }
        self.deliver_to_log(index, from, out);
        self.deliver_to_zk(index, from, out);
    }

    fn apply_batch(&mut self, b: BatchEntry, out: &mut Vec<Action>) {
        if self.fenced(b.epoch) {
            tracing::info!(
                group = self.cfg.group,
                batch = b.batch_id,
                epoch = b.epoch,
                promised = self.promised,
                "fenced: a batch from an older sequencer epoch binds nothing"
            );
            return;
        }
        if b.batch_id <= self.last_batch_id {
            tracing::error!(
                group = self.cfg.group,
                batch = b.batch_id,
                last = self.last_batch_id,
                "batch id committed twice; ignoring the second"
            );
            self.anomalies += 1;
            return;
        }
        if b.batch_id != self.last_batch_id + 1 {
            tracing::error!(
                group = self.cfg.group,
                batch = b.batch_id,
                last = self.last_batch_id,
                "batch ids not dense"
            );
            self.anomalies += 1;
        }
        self.last_batch_id = b.batch_id;
        let mut kept = Vec::with_capacity(b.ops.len());
        let mut dups = Vec::new();
        for o in &b.ops {
            // ZK-Mason: the group's own closeSession of an expired session.
            if self.zk_take_close(o) {
                kept.push(o);
                continue;
            }
            // A session closed since its op was batched: the op binds nothing.
            let Some(a) = self.sessions.get_mut(&o.session) else {
                continue;
            };
            let dup = match self.cfg.mutant {
                Some(Mutant::NoDedup) => false,
                // Ops come in any order: a dup is one already answered.
                Some(Mutant::NoHoldBack) => a.answers.contains(o.client_seq),
                _ => o.client_seq <= a.max_seq,
            };
            if dup {
                dups.push(o);
            } else {
                a.max_seq = a.max_seq.max(o.client_seq);
                if self.cfg.keeper || !self.cfg.zk_servers.is_empty() {
                    if let Some(t) = super::clients::zk_session_timeout(&o.payload) {
                        a.timeout_us = super::clients::negotiate(t, self.cfg.session_timeout_us);
                    }
                }
                kept.push(o);
            }
        }
        if self.cfg.keeper {
            self.apply_requests(&b, &kept, &dups, out);
            return;
        }
        let bound = b.bound(self.cfg.group, &kept);
        for ((s, base), count) in SpaceMask(b.space_mask).iter().zip(&b.bases).zip(&b.counts) {
            self.recorded.insert(s, *base, u64::from(*count));
        }
        if b.watermarks.len() == self.cfg.spaces as usize {
            self.recorded.advance(&b.watermarks);
        }
        let mut numbered = b.number(&kept).unwrap_or_else(|| {
            tracing::error!(
                group = self.cfg.group,
                batch = b.batch_id,
                "batch ranges do not cover its ops"
            );
            Vec::new()
        });
        self.forget_written(b.log_done_below);
        self.zk_forget(b.log_done_below);
        self.zk_stash(&b, &kept, &numbered);
        // Only a started leader answers, with the numbers once more; elsewhere the kept
        // answer takes them.
        let replying = self.leader.as_ref().is_some_and(|l| l.started);
        for (o, n) in kept.iter().zip(numbered.iter_mut()) {
            if SpaceMask(n.mask).index_of(0) == Some(0) {
                if let Some(pos) = n.numbers.first() {
                    self.stash_payload(*pos, &o.payload);
                }
            }
            let Some(a) = self.sessions.get_mut(&n.session) else {
                continue;
            };
            let numbers = if replying {
                n.numbers.clone()
            } else {
                std::mem::take(&mut n.numbers)
            };
            a.keep_answer(n.seq, OpAnswer::numbered(n.mask, numbers), o.acked_below);
        }
        if self.cfg.mutant == Some(Mutant::WrongNumbers) && numbered.len() >= 2 {
            let (x, y) = numbered.split_at_mut(1);
            if x[0].mask == y[0].mask {
                std::mem::swap(&mut x[0].numbers, &mut y[0].numbers);
            }
        }
        out.push(Action::Bound(bound));
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        if !l.started {
            return;
        }
        if l.inflight.front().is_some_and(|f| f.id == b.batch_id) {
            l.inflight.pop_front();
        }
        for n in numbered {
            if let Some(lc) = l.clients.get(&n.session) {
                out.push(Action::Reply {
                    conn: lc.conn,
                    reply: Replica::numbered_reply(n.session, n.seq, n.mask, n.numbers.into_vec()),
                });
            }
        }
        if self.zk_on() {
            self.zk_answer_dups(&dups, out);
        } else {
            self.answer_dups(&dups, out);
        }
    }

    /// A batch's ops that were applied before: their kept answers, again.
    pub(super) fn answer_dups(&self, dups: &[&OpEntry], out: &mut Vec<Action>) {
        let Some(l) = self.leader.as_ref() else {
            return;
        };
        for o in dups {
            let cached = self
                .sessions
                .get(&o.session)
                .and_then(|a| a.answers.get(o.client_seq));
            if let (Some(lc), Some(a)) = (l.clients.get(&o.session), cached) {
                out.push(Action::Reply {
                    conn: lc.conn,
                    reply: Replica::answered(o.session, o.client_seq, a),
                });
            }
        }
    }
}

/// The bytes of ZooKeeper replies (RSMKeeper) a session's kept answers hold at most: past
/// it the oldest are forgotten, and a retry of one is told its session expired.
pub const MAX_ANSWER_BYTES: usize = 8 << 20;

impl Applied {
    /// Keeps op `seq`'s answer, then forgets what its client no longer needs.
    pub(super) fn keep_answer(&mut self, seq: u64, answer: OpAnswer, acked_below: u64) {
        self.answer_bytes += answer.result.len();
        if let Some(old) = self.answers.insert(seq, answer) {
            self.answer_bytes = self.answer_bytes.saturating_sub(old.result.len());
        }
        self.forget_answers(acked_below);
    }

    /// The client holds every answer below `acked_below`: forget them. Every op of the
    /// session is below its `acked_below` plus the window (the leader refuses the others),
    /// so what is left is at most a window of answers; twice that is kept, a backstop that
    /// never drops one its client may still ask for, and at most `MAX_ANSWER_BYTES` of
    /// replies (a retry of one forgotten is told its session expired).
    fn forget_answers(&mut self, acked_below: u64) {
        let keep = (2 * self.window as usize).max(super::clients::MIN_ANSWERS);
        while self.answers.first().is_some_and(|seq| {
            seq < acked_below || self.answers.len() > keep || self.answer_bytes > MAX_ANSWER_BYTES
        }) {
            if let Some((_, a)) = self.answers.pop_first() {
                self.answer_bytes = self.answer_bytes.saturating_sub(a.result.len());
            }
        }
    }
}
