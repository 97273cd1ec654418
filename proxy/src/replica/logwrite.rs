//! CorfuMason delivery (DESIGN.md section 8): with a shared log configured, space 0's
//! numbers are log positions. Every committed entry that binds numbers there becomes a
//! *delivery*: its ops' payloads as data entries and every other number it bound as a
//! noop (junk) entry, to be written to the log servers. The leader writes them, idempotently,
//! and answers a client only once every delivery up to the one that bound its op is
//! written, so an answered append is in the log and the log has no hole.
//!
//! Deliveries are applied state, kept by every replica (and in snapshots): a new leader
//! writes again whatever its predecessor may not have finished. A leader says in each batch
//! entry it proposes (`log_done_below`) which deliveries are fully written; replicas forget
//! those when they apply the entry.

use super::{Action, ConnId, Replica};
use bytes::Bytes;
use mason_common::logmsg::{shard_of, LogItem, LogStatus, LogWrite, LogWriteReply};
use mason_common::msg::ClientReply;
use mason_common::types::SpaceMask;
use std::collections::{BTreeMap, BTreeSet};

/// What one committed entry bound in the log, and who waits on it.
#[derive(Default)]
pub(crate) struct Delivery {
    pub(crate) items: BTreeMap<u32, Vec<LogItem>>,
    /// Shards not yet acknowledged (while being written by this leader).
    waiting: BTreeSet<u32>,
    sent: bool,
    replies: Vec<(ConnId, ClientReply)>,
}

pub(crate) struct LogReq {
    index: u64,
    shard: u32,
    sent_at: u64,
}

impl Replica {
    fn log_on(&self) -> bool {
        self.cfg.log_shards > 0
    }

    /// After applying entry `index` (its actions are `out[from..]`): with a log, what it
    /// bound in space 0 becomes a delivery, and its answers wait for it.
    pub(super) fn deliver_to_log(&mut self, index: u64, from: usize, out: &mut Vec<Action>) {
        if !self.log_on() {
            return;
        }
        let stash = std::mem::take(&mut self.log_stash);
        let mut d = Delivery::default();
        // The entry's answers move into the delivery; every other action stays, in order.
        let actions: Vec<Action> = out.drain(from..).collect();
        for a in actions {
            match a {
                Action::Reply { conn, reply } => d.replies.push((conn, reply)),
                Action::Bound(b) => {
                    if let Some(k) = SpaceMask(b.space_mask).index_of(0) {
                        let base = b.bases.get(k).copied().unwrap_or(0);
                        let count = b.counts.get(k).copied().unwrap_or(0);
                        for pos in base..base + u64::from(count) {
                            let item = match stash.get(&pos) {
                                Some(p) => LogItem::data(pos, p.clone()),
                                None => LogItem::junk(pos),
                            };
                            let shard = shard_of(pos, self.cfg.log_shards);
                            d.items.entry(shard).or_default().push(item);
                        }
                    }
                    out.push(Action::Bound(b));
                }
                other => out.push(other),
            }
        }
        if d.items.is_empty() {
            // Nothing to write; its answers still wait for earlier deliveries.
            match self.deliveries.values_mut().next_back() {
                Some(last) => last.replies.append(&mut d.replies),
                None => out.extend(
                    d.replies
                        .into_iter()
                        .map(|(conn, reply)| Action::Reply { conn, reply }),
                ),
            }
            return;
        }
        self.deliveries.insert(index, d);
        if self.is_serving() {
            self.send_delivery(index, out);
        }
    }

    /// Remembers an applied op's payload for the delivery of the entry being applied.
    pub(super) fn stash_payload(&mut self, pos: u64, payload: &Bytes) {
        if self.log_on() {
            self.log_stash.insert(pos, payload.clone());
        }
    }

    /// An answer from the dedup cache: it waits for every delivery pending now (its op's
    /// is among them or already written).
    pub(super) fn answer_after_log(
        &mut self,
        conn: ConnId,
        reply: ClientReply,
        out: &mut Vec<Action>,
    ) {
        if self.zk_on() {
            self.zk_answer_again(conn, reply, out);
            return;
        }
        let on = self.log_on();
        match self.deliveries.values_mut().next_back() {
            Some(last) if on => last.replies.push((conn, reply)),
            _ => out.push(Action::Reply { conn, reply }),
        }
    }

    fn send_delivery(&mut self, index: u64, out: &mut Vec<Action>) {
        let now = self.now;
        let Some(d) = self.deliveries.get_mut(&index) else {
            return;
        };
        d.sent = true;
        d.waiting = d.items.keys().copied().collect();
        for (shard, items) in &d.items {
            let id = self.next_log_req;
            self.next_log_req += 1;
            self.log_reqs.insert(
                id,
                LogReq {
                    index,
                    shard: *shard,
                    sent_at: now,
                },
            );
            out.push(Action::LogWrite(LogWrite {
                id,
                shard: *shard,
                items: items.clone(),
            }));
        }
    }

    /// A new leader writes every delivery its predecessor may not have finished.
    pub(super) fn start_deliveries(&mut self, out: &mut Vec<Action>) {
        if self.cfg.mutant == Some(crate::config::Mutant::NoLogRedo) {
            self.deliveries.clear();
        }
        let unsent: Vec<u64> = self
            .deliveries
            .iter()
            .filter(|(_, d)| !d.sent)
            .map(|(i, _)| *i)
            .collect();
        for index in unsent {
            self.send_delivery(index, out);
        }
        self.release_deliveries(out);
        self.zk_start(out);
    }

    /// Leadership is lost: nothing is being written by this replica any more.
    pub(super) fn stop_deliveries(&mut self) {
        self.zk_stop();
        self.zk_closes_batched.clear();
        self.log_reqs.clear();
        for d in self.deliveries.values_mut() {
            d.sent = false;
            d.waiting.clear();
            d.replies.clear();
        }
    }

    /// A log server's answer to one of this leader's writes.
    pub fn on_log_reply(&mut self, r: LogWriteReply, out: &mut Vec<Action>) {
        let Some(req) = self.log_reqs.get(&r.id) else {
            return;
        };
        let (index, shard) = (req.index, req.shard);
        let mut all_ok = true;
        for res in &r.results {
            match res.status() {
                LogStatus::Ok => {}
                LogStatus::Taken => {
                    // Someone else wrote there: the log disagrees with what this group
                    // bound. Nothing here can undo it; say so loudly.
                    tracing::error!(
                        group = self.cfg.group,
                        pos = res.pos,
                        "log position holds a different value than the group bound"
                    );
                    self.anomalies += 1;
                }
                s => {
                    tracing::debug!(group = self.cfg.group, pos = res.pos, status = ?s, "log write not done");
                    all_ok = false;
                }
            }
        }
        if !all_ok {
            // Left in place: the tick writes it again.
            if let Some(req) = self.log_reqs.get_mut(&r.id) {
                req.sent_at = 0;
            }
            return;
        }
        self.log_reqs.remove(&r.id);
        if let Some(d) = self.deliveries.get_mut(&index) {
            d.waiting.remove(&shard);
        }
        self.release_deliveries(out);
    }

    /// Answers the clients of every written delivery that has no unwritten one before it.
    fn release_deliveries(&mut self, out: &mut Vec<Action>) {
        while let Some(mut e) = self.deliveries.first_entry() {
            let d = e.get_mut();
            if !d.sent || !d.waiting.is_empty() {
                return;
            }
            for (conn, reply) in std::mem::take(&mut d.replies) {
                out.push(Action::Reply { conn, reply });
            }
            e.remove();
        }
    }

    /// Re-sends writes unanswered (or refused for now) for `log_retry_us`.
    pub(super) fn retry_log_writes(&mut self, now: u64, out: &mut Vec<Action>) {
        self.zk_retry(now, out);
        let retry = self.cfg.log_retry_us;
        for (id, req) in self.log_reqs.iter_mut() {
            if now.saturating_sub(req.sent_at) < retry {
                continue;
            }
            let Some(items) = self
                .deliveries
                .get(&req.index)
                .and_then(|d| d.items.get(&req.shard))
            else {
                continue;
            };
            req.sent_at = now;
            out.push(Action::LogWrite(LogWrite {
                id: *id,
                shard: req.shard,
                items: items.clone(),
            }));
        }
    }

    /// The index below which every delivery is written (for the next batch entry).
    pub(super) fn log_done_below(&self) -> u64 {
        self.deliveries
            .keys()
            .next()
            .copied()
            .unwrap_or(self.applied_index + 1)
    }

    /// A leader said every delivery below `below` is written: forget them.
    pub(super) fn forget_written(&mut self, below: u64) {
        if below == 0 || self.is_serving() {
            return;
        }
        while self
            .deliveries
            .first_key_value()
            .is_some_and(|(i, _)| *i < below)
        {
            self.deliveries.pop_first();
        }
    }

    /// Deliveries not known to be written (for snapshots).
    pub(super) fn pending_deliveries(&self) -> impl Iterator<Item = (u64, &Delivery)> {
        self.deliveries.iter().map(|(i, d)| (*i, d))
    }

    pub(super) fn restore_delivery(&mut self, index: u64, items: Vec<LogItem>) {
        let mut d = Delivery::default();
        for it in items {
            let shard = shard_of(it.pos, self.cfg.log_shards);
            d.items.entry(shard).or_default().push(it);
        }
        self.deliveries.insert(index, d);
    }

    /// Deliveries not yet written (a test and the simulator's checks read this).
    pub fn unwritten_deliveries(&self) -> usize {
        self.deliveries.len()
    }
}
