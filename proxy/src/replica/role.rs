//! Becoming the group's leader and stopping being it: a replica that Raft made leader
//! sets up its leader state, waits until everything before its term's first entry is
//! applied, re-asks its predecessor's batch ids with zero counts (so that their ranges
//! are bound, as ops or noops), and only then takes new ops; one that lost leadership
//! tells every client it was serving to look elsewhere.

use super::{clients, Action, Inflight, Leader, Replica, Stage};
use crate::config::Mutant;
use bytes::Bytes;
use mason_common::msg::{ClientReply, GetSeq, ReplyStatus};
use mason_common::types::SpaceMask;
use std::collections::{BTreeMap, VecDeque};

impl Replica {
    pub(super) fn sync_role(&mut self, out: &mut Vec<Action>) {
        let term = self.node.raft.term;
        let leading = self.is_leader();
        if self
            .leader
            .as_ref()
            .is_some_and(|l| !leading || l.term != term)
        {
            self.step_down(out);
        }
        if leading && self.leader.is_none() {
            self.leader = Some(Leader {
                term,
                start_index: self.node.raft.raft_log.last_index(),
                started: false,
                next_batch_id: 0,
                inflight: VecDeque::new(),
                open: VecDeque::new(),
                open_since: self.now,
                clients: Default::default(),
                waiting: Vec::new(),
                queued_bytes: 0,
                seq_watermarks: Vec::new(),
                to_open: Vec::new(),
                opening: BTreeMap::new(),
                last_seen: Default::default(),
                next_expiry_check: self.now
                    + clients::MIN_ZK_SESSION_US.min(self.cfg.session_timeout_us),
                proposed_switch: None,
            });
            self.seq_heard = self.now;
            self.takeover_asks = 0;
        }
        self.maybe_start(out);
    }

    /// Leadership is lost: tell every client with ops in flight to look elsewhere.
    pub(super) fn step_down(&mut self, out: &mut Vec<Action>) {
        let Some(l) = self.leader.take() else {
            return;
        };
        self.stop_deliveries();
        let hint = self.node.raft.leader_id as u32;
        self.drop_local_reads(hint, out);
        for (session, lc) in l.clients {
            out.push(Action::Reply {
                conn: lc.conn,
                reply: ClientReply {
                    session,
                    client_seq: 0,
                    status: ReplyStatus::NotLeader as i32,
                    leader_hint: hint,
                    space_mask: 0,
                    numbers: Vec::new(),
                    result: Bytes::new(),
                },
            });
        }
        let opening = l.to_open.into_iter().map(|o| (o.conn, o.nonce));
        for (conn, nonce) in opening.chain(l.opening.into_iter().map(|((_, n), c)| (c, n))) {
            out.push(clients::registered_elsewhere(conn, nonce, hint));
        }
        for (conn, inc) in l.waiting {
            out.push(clients::not_leader(conn, &inc, hint));
        }
    }

    /// Once everything before this term's first entry is applied, the predecessor's batch
    /// ids are known: re-ask each with zero counts, and only then take new ops.
    fn maybe_start(&mut self, out: &mut Vec<Action>) {
        let applied = self.applied_index;
        let k = self.cfg.max_outstanding as u64;
        let all = SpaceMask::first(self.cfg.spaces);
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        if l.started || applied < l.start_index {
            return;
        }
        l.started = true;
        let first = self.last_batch_id + 1;
        let probes = if self.cfg.mutant == Some(Mutant::SkipReask) || self.cfg.keeper {
            first..first
        } else {
            first..first + k
        };
        for id in probes {
            let request = GetSeq {
                epoch: self.promised,
                group: self.cfg.group,
                batch_id: id,
                space_mask: all.0,
                counts: vec![0; all.len()],
                committed: self.last_batch_id,
                session: 0,
            };
            out.push(Action::SendSeq(request.clone()));
            l.inflight.push_back(Inflight {
                id,
                ops: Vec::new(),
                request,
                stage: Stage::Requested { sent_at: self.now },
                resends: 0,
            });
        }
        // A keeper's batch ids take no numbers: nothing of its predecessor's to re-ask.
        l.next_batch_id = if self.cfg.keeper { first } else { first + k };
        // Every open session gets a full timeout from now: this leader has not watched it.
        let now = self.now;
        l.last_seen = self.sessions.keys().map(|s| (*s, now)).collect();
        l.queued_bytes = 0;
        tracing::info!(
            group = self.cfg.group,
            term = l.term,
            epoch = self.promised,
            last_batch = self.last_batch_id,
            sessions = self.sessions.len(),
            "leading; re-asking the predecessor's batch ids"
        );
        let waiting = std::mem::take(&mut l.waiting);
        self.start_deliveries(out);
        for (conn, inc) in waiting {
            self.on_incoming(conn, inc, out);
        }
    }
}
