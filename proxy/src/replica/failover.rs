//! A group's side of sequencer failover (DESIGN.md section 5): the leader watches its
//! sequencer (heartbeats when idle) and asks a backup to take over when it falls silent;
//! it answers a backup's `Switch` by committing a promise of the new epoch through Raft and
//! reporting its recorded set; it commits the holes it is assigned as noops. Every replica
//! applies promises and holes the same way, and binds nothing from an epoch below its
//! promise (the fence).
//!
//! Each of these messages may come twice, late, or out of order. A group promises an
//! epoch to one ballot (one takeover attempt) only: a `Switch` of that epoch from another
//! ballot is refused, and fills and activations count only from the ballot promised. A
//! re-sent `Switch` or `Fill` of the promised ballot is answered again (a promise once
//! committed, a fill once recorded), never applied twice.

use super::{Action, Replica};
use crate::config::Mutant;
use crate::entry::{FillEntry, Kind, SwitchEntry};
use mason_common::msg::{Activate, Body, Fill, FillAck, Heartbeat, Promise, Switch, Takeover};
use mason_common::record::BoundBatch;
use mason_common::types::SpaceMask;

impl Replica {
    /// Leaders only: a heartbeat when the sequencer has been quiet, and a takeover request
    /// to the next backup when it has been silent for the timeout, with a heartbeat sent
    /// meanwhile unanswered (silence observed while this process ran: see `tick`).
    pub(super) fn watch_sequencer(&mut self, now: u64, out: &mut Vec<Action>) {
        if !self.is_leader() || self.leader.is_none() || self.cfg.keeper {
            return;
        }
        let quiet = now.saturating_sub(self.seq_heard);
        if quiet >= self.cfg.seq_timeout_us && self.heartbeat_sent > self.seq_heard {
            if self.cfg.sequencers > 1 {
                let mut target = self.owner(self.promised + 1 + self.takeover_asks);
                if target == self.owner(self.promised) {
                    self.takeover_asks += 1;
                    target = self.owner(self.promised + 1 + self.takeover_asks);
                }
                tracing::warn!(
                    group = self.cfg.group,
                    epoch = self.promised,
                    quiet_ms = quiet / 1000,
                    backup = target,
                    "the sequencer is silent; asking a backup to take over"
                );
                out.push(Action::ToSeq {
                    seq: target,
                    body: Body::Takeover(Takeover {
                        epoch: self.promised,
                        group: self.cfg.group,
                    }),
                });
            }
            self.takeover_asks += 1;
            self.seq_heard = now;
        } else if quiet >= self.cfg.seq_heartbeat_us
            && now.saturating_sub(self.heartbeat_sent) >= self.cfg.seq_heartbeat_us
        {
            self.heartbeat_sent = now;
            out.push(Action::ToSeq {
                seq: self.owner(self.promised),
                body: Body::Heartbeat(Heartbeat {
                    epoch: self.promised,
                    group: self.cfg.group,
                }),
            });
        }
    }

    pub fn on_heartbeat(&mut self, h: Heartbeat) {
        if h.epoch == self.promised {
            self.seq_heard = self.now;
            self.takeover_asks = 0;
        }
    }

    /// The sequencer of `epoch` serves now: re-send what is unanswered at once.
    pub fn on_activate(&mut self, a: Activate, out: &mut Vec<Action>) {
        if a.epoch == self.promised
            && (self.promised_ballot == 0 || a.ballot == self.promised_ballot)
        {
            self.seq_heard = self.now;
            self.takeover_asks = 0;
            self.on_seq_connected(out);
        }
    }

    /// What this group promised and still records, as a [`Promise`] (also the snapshot a
    /// watcher gets first).
    pub fn promise(&self, ok: bool, epoch: u64) -> Promise {
        Promise {
            epoch,
            group: self.cfg.group,
            ok,
            promised: self.promised,
            last_batch_id: self.last_batch_id,
            watermarks: self.recorded.watermarks().to_vec(),
            recorded: ok.then(|| self.recorded.ranges()),
            ballot: self.promised_ballot,
        }
    }

    pub fn on_switch(&mut self, sw: Switch, out: &mut Vec<Action>) {
        if !self.is_leader() || sw.group != self.cfg.group {
            return;
        }
        let to = self.owner(sw.epoch);
        let same = sw.epoch == self.promised && sw.ballot == self.promised_ballot;
        if sw.epoch < self.promised || (sw.epoch == self.promised && !same) {
            // An older epoch, or this one promised to another ballot.
            out.push(Action::ToSeq {
                seq: to,
                body: Body::Promise(Box::new(self.promise(false, sw.epoch))),
            });
        } else if same {
            // A re-sent Switch: the promise is committed already.
            out.push(Action::ToSeq {
                seq: to,
                body: Body::Promise(Box::new(self.promise(true, sw.epoch))),
            });
        } else if let Some(l) = self.leader.as_mut() {
            // Proposed once per (epoch, ballot) by this leader; a lost proposal is
            // proposed again by the next leader, whom the backup asks again.
            if l.proposed_switch != Some((sw.epoch, sw.ballot)) {
                l.proposed_switch = Some((sw.epoch, sw.ballot));
                self.propose(Kind::Switch(SwitchEntry {
                    epoch: sw.epoch,
                    ballot: sw.ballot,
                }));
            }
        }
        self.flush(self.now, out);
    }

    pub fn on_fill(&mut self, f: Fill, out: &mut Vec<Action>) {
        if !self.is_leader()
            || f.group != self.cfg.group
            || f.epoch != self.promised
            || f.ballot != self.promised_ballot
        {
            return;
        }
        let Some(holes) = f.holes else {
            return;
        };
        let Some(it) = holes.iter() else {
            tracing::warn!(group = self.cfg.group, "malformed fill: columns differ");
            return;
        };
        let done = it
            .collect::<Vec<_>>()
            .into_iter()
            .all(|(s, b, l)| self.recorded.missing(s, b, l).is_empty());
        if done {
            out.push(Action::ToSeq {
                seq: self.owner(f.epoch),
                body: Body::FillAck(FillAck {
                    epoch: f.epoch,
                    group: self.cfg.group,
                    ballot: f.ballot,
                }),
            });
        } else {
            // Re-sent fills may commit this more than once: applying it binds only what
            // is still missing.
            self.propose(Kind::Fill(FillEntry {
                epoch: f.epoch,
                holes: Some(holes),
                ballot: f.ballot,
            }));
            self.flush(self.now, out);
        }
    }

    /// Applies a committed promise: the fence goes up, the leader reports what it
    /// recorded to the new sequencer and restarts its leadership (its requests to the old
    /// sequencer are void; it re-asks their ids at the new epoch once that one serves).
    pub(super) fn apply_switch(&mut self, sw: SwitchEntry, out: &mut Vec<Action>) {
        if sw.epoch <= self.promised {
            return;
        }
        self.promised = sw.epoch;
        self.promised_ballot = sw.ballot;
        tracing::info!(
            group = self.cfg.group,
            epoch = sw.epoch,
            "promised a new sequencer epoch"
        );
        out.push(Action::Bound(BoundBatch {
            group: self.cfg.group,
            epoch: sw.epoch,
            ..BoundBatch::default()
        }));
        if self.leader.is_some() {
            out.push(Action::ToSeq {
                seq: self.owner(sw.epoch),
                body: Body::Promise(Box::new(self.promise(true, sw.epoch))),
            });
            self.step_down(out);
            self.seq_heard = self.now;
            self.takeover_asks = 0;
        }
    }

    /// Applies a takeover's holes: binds as noops every part not yet recorded.
    pub(super) fn apply_fill(&mut self, f: FillEntry, out: &mut Vec<Action>) {
        if f.epoch != self.promised || f.ballot != self.promised_ballot {
            return;
        }
        let Some(it) = f.holes.as_ref().and_then(|h| h.iter()) else {
            return;
        };
        for (s, b, l) in it.collect::<Vec<_>>() {
            if s >= self.cfg.spaces {
                continue;
            }
            for (base, len) in self.recorded.missing(s, b, l) {
                self.recorded.insert(s, base, len);
                let mut at = base;
                let end = base + len;
                while at < end {
                    let n = (end - at).min(u64::from(u32::MAX));
                    out.push(Action::Bound(BoundBatch {
                        group: self.cfg.group,
                        epoch: f.epoch,
                        space_mask: SpaceMask::single(s).0,
                        bases: vec![at],
                        counts: vec![n as u32],
                        ..BoundBatch::default()
                    }));
                    at += n;
                }
            }
        }
        if self.leader.is_some() {
            out.push(Action::ToSeq {
                seq: self.owner(f.epoch),
                body: Body::FillAck(FillAck {
                    epoch: f.epoch,
                    group: self.cfg.group,
                    ballot: f.ballot,
                }),
            });
        }
    }

    /// Whether a committed batch of `epoch` is fenced off by the group's promise.
    pub(super) fn fenced(&self, epoch: u64) -> bool {
        epoch < self.promised && self.cfg.mutant != Some(Mutant::NoFence)
    }
}
