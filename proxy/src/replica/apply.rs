//! Applying committed entries: every replica binds each batch's ops to numbers in order,
//! keeps the per-client dedup state (Once), and records what it bound (the recorded set,
//! and a record for the checker); the leader also answers the clients. Batches from an
//! epoch below the group's promise are fenced off: they bind nothing.

use super::{Action, Replica};
use crate::config::Mutant;
use crate::entry::{BatchEntry, Kind, LogEntry};
use mason_common::types::SpaceMask;
use prost::Message as _;
use raft::prelude::Entry;

impl Replica {
    pub(super) fn apply(&mut self, entries: Vec<Entry>, out: &mut Vec<Action>) {
        for e in entries {
            self.applied_index = e.index;
            if e.data.is_empty() {
                continue;
            }
            let from = out.len();
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
                Ok(LogEntry { kind: None }) => {
                    tracing::error!(group = self.cfg.group, index = e.index, "empty entry")
                }
                Err(err) => {
                    tracing::error!(group = self.cfg.group, index = e.index, error = %err, "undecodable entry")
                }
            }
            for a in &mut out[from..] {
                if let Action::Bound(b) = a {
                    b.index = e.index;
                }
            }
            self.deliver_to_log(e.index, from, out);
        }
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
            let a = self.clients.entry(o.client_id).or_default();
            if o.client_seq <= a.max_seq && self.cfg.mutant != Some(Mutant::NoDedup) {
                dups.push(o);
            } else {
                a.max_seq = o.client_seq;
                kept.push(o);
            }
        }
        let bound = b.bound(self.cfg.group, &kept);
        for ((s, base), count) in SpaceMask(b.space_mask).iter().zip(&b.bases).zip(&b.counts) {
            self.recorded.insert(s, *base, u64::from(*count));
        }
        if b.watermarks.len() == self.cfg.spaces as usize {
            self.recorded.advance(&b.watermarks);
        }
        let mut numbered = Vec::with_capacity(kept.len());
        if let Err(e) = bound.for_each_op(|c, s, m, n| numbered.push((c, s, m.0, n.to_vec()))) {
            tracing::error!(group = self.cfg.group, error = %e, "batch ranges do not cover its ops");
        }
        self.forget_written(b.log_done_below);
        for (o, (c, s, m, n)) in kept.iter().zip(&numbered) {
            if SpaceMask(*m).index_of(0) == Some(0) {
                if let Some(pos) = n.first() {
                    self.stash_payload(*pos, &o.payload);
                }
            }
            let a = self.clients.entry(*c).or_default();
            a.answers.insert(*s, (*m, n.clone()));
            // The client holds every answer below `acked_below`: forget them.
            while a
                .answers
                .first_key_value()
                .is_some_and(|(seq, _)| *seq < o.acked_below)
            {
                a.answers.pop_first();
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
        for (c, s, m, n) in numbered {
            if let Some(lc) = l.clients.get(&c) {
                out.push(Action::Reply {
                    conn: lc.conn,
                    reply: Replica::answered(c, s, m, n),
                });
            }
        }
        for o in dups {
            let cached = self
                .clients
                .get(&o.client_id)
                .and_then(|a| a.answers.get(&o.client_seq));
            if let (Some(lc), Some((m, n))) = (l.clients.get(&o.client_id), cached) {
                out.push(Action::Reply {
                    conn: lc.conn,
                    reply: Replica::answered(o.client_id, o.client_seq, *m, n.clone()),
                });
            }
        }
    }
}
