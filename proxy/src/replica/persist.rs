//! Raft's readies: what a replica sends at once, what it hands the runtime to persist
//! (raft-rs's asynchronous ready: the runtime reports each write back with
//! [`Replica::on_persisted`]), what waits for the disk (a follower's acknowledgements,
//! votes), and what it applies. Also when a leader tells its followers of a commit by a
//! message of its own.

use super::{Action, Mutant, Replica};
use bytes::Bytes;
use protobuf::Message as _;
use raft::prelude::Message;
use raft::StateRole;

impl Replica {
    /// A leader tells its followers of a commit with its next append (raft-rs's
    /// `skip_bcast_commit`), not with a message to each of its own and an answer from each,
    /// which raft-rs sends by default: four messages per batch at saturation, and per op at
    /// one op in flight. Called at each tick: if the leader is idle then, with everything
    /// it proposed committed and no batch on its way (open, out at the sequencer, or
    /// answered and not yet proposed), it sends those messages, so that followers apply
    /// within a tick when the load pauses or ends. If a batch on its way never comes, a
    /// heartbeat carries the commit within `heartbeat_ticks` (as it does to a follower
    /// this broadcast skips, one being sent a snapshot, say). Answers to clients and reads
    /// come from the leader, so a follower that applies later delays only its own state,
    /// and its ZooKeeper watch feed, which the front ends merge with the leader's.
    pub(super) fn tell_commit_when_idle(&mut self) {
        let raft = &self.node.raft;
        let committed = raft.raft_log.committed;
        if raft.state != StateRole::Leader
            || committed <= self.commit_told
            || committed < raft.raft_log.last_index()
        {
            return;
        }
        let coming = self.leader.as_ref().is_some_and(|l| {
            !l.open.is_empty()
                || l.inflight
                    .iter()
                    .any(|b| !matches!(b.stage, super::Stage::Proposed { .. }))
        });
        if !coming {
            self.commit_told = committed;
            self.node.raft.bcast_append();
        }
    }

    pub(super) fn drive_raft(&mut self, out: &mut Vec<Action>) {
        if !self.node.has_ready() {
            return;
        }
        let mut rd = self.node.ready();
        // A leader's messages go before its own write (raft thesis 10.2.1).
        self.send_all(rd.take_messages(), out);
        self.on_read_states(rd.take_read_states());
        let mut snapshot = false;
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            self.install_snapshot(snap, out);
            snapshot = true;
        }
        let committed = rd.take_committed_entries();
        self.apply(committed, out);
        let entries = rd.take_entries();
        let hard_state = rd.hs().cloned();
        let must_sync = rd.must_sync() && self.cfg.mutant != Some(Mutant::SyncNothing);
        {
            let store = self.node.store().clone();
            let mut core = store.mem().wl();
            if !entries.is_empty() {
                if let Err(e) = core.append(&entries) {
                    tracing::error!(group = self.cfg.group, error = %e, "append to raft storage");
                }
            }
            if let Some(hs) = &hard_state {
                core.set_hardstate(hs.clone());
            }
        }
        let writes = snapshot || !entries.is_empty() || hard_state.is_some();
        if writes || !self.unpersisted.is_empty() {
            // Persisted by the runtime while this replica goes on; `on_persisted` sends
            // what waits for it and tells Raft. (A ready with nothing to write still
            // waits behind those that have: readies are persisted in order.)
            let number = rd.number();
            if snapshot {
                self.snapshot_unpersisted = Some(number);
            }
            self.unpersisted
                .push_back((number, rd.take_persisted_messages()));
            out.push(Action::Persist {
                number,
                hard_state,
                entries,
                must_sync,
            });
            self.node.advance_append_async(rd);
            if self.cfg.mutant == Some(Mutant::AckBeforePersist) {
                self.on_persisted(number, out);
                return;
            }
            self.note_applied();
        } else {
            self.send_all(rd.take_persisted_messages(), out);
            let mut light = self.node.advance(rd);
            if let Some(c) = light.commit_index() {
                self.node.store().mem().wl().mut_hard_state().set_commit(c);
            }
            self.send_all(light.take_messages(), out);
            let committed = light.take_committed_entries();
            self.apply(committed, out);
            self.node.advance_apply();
        }
        self.answer_indexed_reads(out);
        self.maybe_snapshot(out);
    }

    /// The runtime made every `Persist` up to `number` durable: what waited for them goes
    /// out, and Raft counts them (a leader's own write towards commit).
    pub fn on_persisted(&mut self, number: u64, out: &mut Vec<Action>) {
        let mut last = None;
        while let Some((n, _)) = self.unpersisted.front() {
            if *n > number {
                break;
            }
            if let Some((n, msgs)) = self.unpersisted.pop_front() {
                self.send_all(msgs, out);
                last = Some(n);
            }
        }
        // A number this replica did not hand out (a late report after a restart of the
        // runtime's writer, say) is ignored rather than believed.
        let Some(last) = last else {
            return;
        };
        self.node.on_persist_ready(last);
        if self.snapshot_unpersisted.is_some_and(|n| n <= last) {
            self.snapshot_unpersisted = None;
        }
        self.note_applied();
        self.flush(self.now, out);
    }

    /// Tells Raft what this replica applied, as far as it is persisted here too (a
    /// snapshot from the leader is applied before it is durable; Raft may not hear of it
    /// until it is).
    fn note_applied(&mut self) {
        let log = &self.node.raft.raft_log;
        let to = self.applied_index.min(log.persisted).min(log.committed);
        if to > log.applied {
            self.node.advance_apply_to(to);
        }
    }

    pub(super) fn send_all(&self, msgs: Vec<Message>, out: &mut Vec<Action>) {
        for m in msgs {
            let to = m.to;
            match m.write_to_bytes() {
                Ok(b) if to >= 1 => out.push(Action::SendRaft {
                    to: (to - 1) as u32,
                    data: Bytes::from(b),
                }),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "encode raft message"),
            }
        }
    }
}
