//! The leader's batching: closing open batches into sequencer requests (at most K ids in
//! flight), and proposing answered batches through Raft in batch-id order. An answer that
//! does not cover its batch makes the leader restart its leadership instead of binding.

use super::{Action, Inflight, LeaderClient, OpAnswer, Replica, SessionMap, Stage};
use crate::config::Mutant;
use crate::entry::{BatchEntry, OpEntry};
use mason_common::msg::{GetSeq, SeqReply, SeqStatus};
use mason_common::types::SpaceMask;

impl Replica {
    pub(super) fn close_batches(&mut self, out: &mut Vec<Action>) {
        let now = self.now;
        let cfg = &self.cfg;
        let (epoch, committed) = (self.promised, self.last_batch_id);
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        while l.started
            && !l.open.is_empty()
            && l.inflight.len() < cfg.max_outstanding
            && (l.open.len() >= cfg.max_batch_ops
                || now.saturating_sub(l.open_since) >= cfg.batch_delay_us)
        {
            // At most `max_batch_ops` ops and (past the first) `max_batch_bytes` bytes.
            let mut n = 0;
            let mut bytes = 0;
            let mut queued = 0;
            for o in l.open.iter().take(cfg.max_batch_ops) {
                if n > 0 && bytes + o.payload.len() > cfg.max_batch_bytes {
                    break;
                }
                bytes += o.payload.len();
                queued += super::clients::queued_size(o.payload.len());
                n += 1;
            }
            let ops: Vec<OpEntry> = l.open.drain(..n).collect();
            l.queued_bytes = l.queued_bytes.saturating_sub(queued);
            let mut mask = 0u64;
            for o in &ops {
                mask |= o.space_mask;
            }
            let mask = SpaceMask(mask);
            let mut counts = vec![0u32; mask.len()];
            for o in &ops {
                for s in SpaceMask(o.space_mask).iter() {
                    if let Some(i) = mask.index_of(s) {
                        counts[i] += 1;
                    }
                }
            }
            let id = l.next_batch_id;
            l.next_batch_id += 1;
            let mut request = GetSeq {
                epoch,
                group: cfg.group,
                batch_id: id,
                space_mask: mask.0,
                counts,
                committed,
                session: 0,
            };
            let stage = if cfg.keeper {
                // No sequencer: the batch takes no numbers and goes straight to the log.
                request.space_mask = 0;
                request.counts.clear();
                Stage::Answered(SeqReply {
                    epoch,
                    batch_id: id,
                    status: SeqStatus::Ok as i32,
                    ..Default::default()
                })
            } else {
                out.push(Action::SendSeq(request.clone()));
                Stage::Requested { sent_at: now }
            };
            l.inflight.push_back(Inflight {
                id,
                ops,
                request,
                stage,
                resends: 0,
            });
            l.open_since = now;
        }
    }

    pub(super) fn propose_answered(&mut self, out: &mut Vec<Action>) {
        let mut restart = false;
        let log_done_below = if self.cfg.log_shards > 0 {
            self.log_done_below()
        } else if self.zk_on() {
            self.zk_done_below()
        } else {
            0
        };
        let time_ms = if self.cfg.keeper || self.zk_on() {
            self.cfg.wall_base_ms + (self.now / 1000) as i64
        } else {
            0
        };
        if let Some(l) = self.leader.as_mut() {
            for b in l.inflight.iter_mut() {
                let reply = match &b.stage {
                    Stage::Proposed { .. } => continue,
                    Stage::Requested { .. } => break,
                    Stage::Answered(r) => r.clone(),
                };
                if !covers(&reply, &b.request) {
                    tracing::warn!(
                        group = self.cfg.group,
                        batch = b.id,
                        status = reply.status,
                        "sequencer answer does not cover the batch; restarting leadership"
                    );
                    restart = true;
                    break;
                }
                let watermarks = if l.seq_watermarks.as_slice() != self.recorded.watermarks() {
                    l.seq_watermarks.clone()
                } else {
                    Vec::new()
                };
                let entry = BatchEntry {
                    epoch: reply.epoch,
                    batch_id: b.id,
                    space_mask: reply.space_mask,
                    bases: reply.bases.clone(),
                    counts: reply.counts.clone(),
                    ops: std::mem::take(&mut b.ops),
                    watermarks,
                    log_done_below,
                    time_ms,
                };
                let data = entry.log_entry_bytes();
                let last = self.node.raft.raft_log.last_index();
                if let Err(e) = self.node.propose(Vec::new(), data) {
                    tracing::debug!(group = self.cfg.group, error = %e, "proposal dropped");
                    b.ops = entry.ops;
                    break;
                }
                if self.cfg.mutant == Some(Mutant::AnswerBeforeCommit) {
                    answer_early(&entry.ops, b.id, &reply, &l.clients, out);
                }
                let index = self.node.raft.raft_log.last_index();
                b.stage = Stage::Proposed {
                    index,
                    term: self.node.raft.term,
                    // Kept only if the proposal is the one entry the log gained.
                    entry: (index == last + 1).then_some(entry),
                };
            }
        }
        if restart {
            // Drop this batch and every later unproposed one; clients re-send their ops.
            // The next `sync_role` starts afresh: once everything already proposed is
            // applied, it re-asks the next K ids, which commits whatever ranges those ids
            // got as noops, exactly as a new leader does.
            self.step_down(out);
        }
    }
}

/// The `AnswerBeforeCommit` mutant: answers every op of a batch that is only proposed.
fn answer_early(
    ops: &[OpEntry],
    id: u64,
    reply: &SeqReply,
    clients: &SessionMap<LeaderClient>,
    out: &mut Vec<Action>,
) {
    let entry = BatchEntry {
        epoch: reply.epoch,
        batch_id: id,
        space_mask: reply.space_mask,
        bases: reply.bases.clone(),
        counts: reply.counts.clone(),
        ops: Vec::new(),
        watermarks: Vec::new(),
        log_done_below: 0,
        time_ms: 0,
    };
    let ops: Vec<&OpEntry> = ops.iter().collect();
    for n in entry.number(&ops).unwrap_or_default() {
        if let Some(lc) = clients.get(&n.session) {
            out.push(Action::Reply {
                conn: lc.conn,
                reply: Replica::answered(n.session, n.seq, &OpAnswer::numbered(n.mask, n.numbers)),
            });
        }
    }
}

/// Whether a sequencer answer gives the batch every number it asked for.
fn covers(reply: &SeqReply, req: &GetSeq) -> bool {
    if reply.status != SeqStatus::Ok as i32 {
        return false;
    }
    let have = SpaceMask(reply.space_mask);
    if reply.bases.len() != have.len() || reply.counts.len() != have.len() {
        return false;
    }
    SpaceMask(req.space_mask)
        .iter()
        .zip(&req.counts)
        .all(|(s, want)| match have.index_of(s) {
            Some(i) => reply.counts[i] >= *want,
            None => *want == 0,
        })
}
