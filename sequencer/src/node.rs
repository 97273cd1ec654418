//! One sequencer process as a state machine: the active [`Sequencer`] of some epoch, an
//! idle backup, or a backup taking over (DESIGN.md section 5). Frames and ticks (carrying
//! the time) come in; [`SeqOut`]s go out. No I/O, no clock.
//!
//! A takeover: pick an epoch above every epoch seen that this sequencer owns (epochs are
//! ballots: see [`epoch_owner`]); ask every group to commit a promise of it; once *every*
//! group has promised, union what they recorded per space, assign every hole below the
//! highest recorded number to a group to commit as noops, wait until each has, and start
//! serving with counters at the highest recorded number + 1. A group that promised a higher
//! epoch refuses, and this takeover gives up.
//!
//! Every message of a takeover may arrive twice, late, or out of order, and changes
//! nothing the second time: a `Takeover` about an epoch older than the newest this node
//! knows of starts nothing; promises, fills and their acknowledgements count only for the
//! takeover (epoch and ballot) they belong to. The ballot is this process's random
//! incarnation: a sequencer restarts with no memory of the epochs it used, and a group
//! promises each epoch to one ballot only, so a restarted sequencer can never complete a
//! second takeover at an epoch it (or anyone) already used.

use crate::state::{Sequencer, SequencerConfig};
use mason_common::msg::{
    epoch_owner, next_owned_epoch, Activate, Body, Fill, Promise, Ranges, Switch,
};
use mason_common::record::GrantChunk;
use mason_common::statusmsg::{SeqState, SequencerStatus};
use std::collections::{BTreeMap, HashMap};

#[derive(Clone, Debug)]
pub struct SeqNodeConfig {
    /// This sequencer's index among `sequencers`.
    pub id: u32,
    pub sequencers: u32,
    /// Every group of the deployment: a takeover needs a promise from each.
    pub groups: u32,
    pub spaces: u32,
    /// Serve epoch 1 from the start (the first primary of a fresh deployment only: a
    /// restarted sequencer must start as a backup).
    pub primary: bool,
    pub window: usize,
    /// Re-send unanswered takeover messages this often.
    pub retry_us: u64,
    /// Recompute the garbage-collection watermarks this often (0: never, GC off).
    pub gc_us: u64,
    /// This process's ballot: a random number drawn at start (the simulator draws it from
    /// its seed). Never 0.
    pub ballot: u64,
    pub mutant: Option<SeqMutant>,
}

impl Default for SeqNodeConfig {
    fn default() -> Self {
        SeqNodeConfig {
            id: 0,
            sequencers: 1,
            groups: 1,
            spaces: 1,
            primary: true,
            window: 1024,
            retry_us: 20_000,
            gc_us: 10_000,
            ballot: 1,
            mutant: None,
        }
    }
}

/// Deliberate breakages of the takeover, for proving that the checker catches each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqMutant {
    /// Holes are not assigned: they stay holes.
    NoFill,
    /// The takeover goes ahead with the promises of a majority of groups only.
    MajorityPromises,
}

/// What the runtime must send.
#[derive(Debug)]
pub enum SeqOut {
    /// To the connection a frame came from.
    Reply(u64, Body),
    /// To every connection that hosts a replica of the group.
    Group(u32, Body),
    /// To every proxy connection.
    Broadcast(Body),
    /// Grants to direct-baseline sessions, for the sequencer's record.
    Record(GrantChunk),
}

struct Taking {
    epoch: u64,
    promises: BTreeMap<u32, Promise>,
    /// Holes assigned and not yet acknowledged, per group (empty while collecting).
    filling: BTreeMap<u32, Fill>,
    collected: bool,
    counters: Vec<u64>,
    sent_at: u64,
}

enum Role {
    Backup,
    Active(Sequencer),
    Taking(Taking),
}

pub struct SeqNode {
    cfg: SeqNodeConfig,
    role: Role,
    max_seen: u64,
    gc_at: u64,
}

/// The proxy group a frame speaks for, if it is one a group sends (a group's `GetSeq`,
/// heartbeat, takeover, promise or fill ack).
pub fn group_of(body: &Body) -> Option<u32> {
    match body {
        Body::GetSeq(r) if r.session == 0 => Some(r.group),
        Body::Heartbeat(h) => Some(h.group),
        Body::Takeover(t) => Some(t.group),
        Body::Promise(p) => Some(p.group),
        Body::FillAck(a) => Some(a.group),
        _ => None,
    }
}

impl SeqNode {
    pub fn new(cfg: SeqNodeConfig) -> SeqNode {
        let role = if cfg.primary {
            Role::Active(Sequencer::new(seq_config(&cfg, 1)))
        } else {
            Role::Backup
        };
        SeqNode {
            max_seen: u64::from(cfg.primary),
            role,
            cfg,
            gc_at: 0,
        }
    }

    /// The epoch this node serves, if it is active.
    pub fn active_epoch(&self) -> Option<u64> {
        match &self.role {
            Role::Active(s) => Some(s.epoch()),
            _ => None,
        }
    }

    pub fn sequencer(&self) -> Option<&Sequencer> {
        match &self.role {
            Role::Active(s) => Some(s),
            _ => None,
        }
    }

    /// Handles one frame from connection `origin`. `Err` names a frame a sequencer never
    /// accepts (the runtime closes that connection).
    pub fn on_frame(
        &mut self,
        origin: u64,
        body: Body,
        now: u64,
        out: &mut Vec<SeqOut>,
    ) -> Result<(), &'static str> {
        let group = group_of(&body);
        if group.is_some_and(|g| g >= self.cfg.groups) {
            return Err("a group this sequencer does not serve");
        }
        match body {
            Body::GetSeq(req) => {
                if let Role::Active(s) = &mut self.role {
                    let mut replies = Vec::new();
                    s.handle(&req, origin, &mut replies);
                    out.extend(
                        replies
                            .into_iter()
                            .map(|(o, r)| SeqOut::Reply(o, Body::SeqReply(Box::new(r)))),
                    );
                    let grants = s.take_grants();
                    if !grants.is_empty() {
                        out.push(SeqOut::Record(grants));
                    }
                }
            }
            Body::Heartbeat(h) => {
                if self.active_epoch() == Some(h.epoch) {
                    out.push(SeqOut::Reply(origin, Body::Heartbeat(h)));
                }
            }
            Body::Takeover(t) => self.on_takeover(origin, t.epoch, t.group, now, out),
            Body::Promise(p) => self.on_promise(*p, now, out),
            Body::FillAck(a) => {
                if let Role::Taking(t) = &mut self.role {
                    if t.epoch == a.epoch && a.ballot == self.cfg.ballot && t.collected {
                        t.filling.remove(&a.group);
                        if t.filling.is_empty() {
                            self.activate(out);
                        }
                    }
                }
            }
            Body::SeqHello(_) => {}
            _ => return Err("not a sequencer message"),
        }
        Ok(())
    }

    /// What `mason status` shows of this sequencer: its state, epoch, and (active) its
    /// next number and watermark per space.
    pub fn status(&self) -> SequencerStatus {
        let (state, epoch, next, watermarks) = match &self.role {
            Role::Backup => (SeqState::Backup, self.max_seen, Vec::new(), Vec::new()),
            Role::Taking(t) => (SeqState::TakingOver, t.epoch, Vec::new(), Vec::new()),
            Role::Active(s) => (
                SeqState::Active,
                s.epoch(),
                s.counters().to_vec(),
                s.watermarks().to_vec(),
            ),
        };
        SequencerStatus {
            index: self.cfg.id,
            state: state as i32,
            epoch,
            next,
            watermarks,
        }
    }

    /// When [`SeqNode::tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<u64> {
        match &self.role {
            Role::Active(_) if self.cfg.gc_us > 0 => Some(self.gc_at),
            Role::Taking(t) => Some(t.sent_at + self.cfg.retry_us),
            _ => None,
        }
    }

    /// Periodic work: re-send what a takeover waits for, and recompute the watermarks.
    pub fn tick(&mut self, now: u64, out: &mut Vec<SeqOut>) {
        let retry = self.cfg.retry_us;
        let groups = self.cfg.groups;
        match &mut self.role {
            Role::Active(s) if self.cfg.gc_us > 0 && now >= self.gc_at => {
                s.collect();
                self.gc_at = now + self.cfg.gc_us;
            }
            Role::Taking(t) if now.saturating_sub(t.sent_at) >= retry => {
                t.sent_at = now;
                if !t.collected {
                    for g in (0..groups).filter(|g| !t.promises.contains_key(g)) {
                        let s = Switch {
                            epoch: t.epoch,
                            group: g,
                            ballot: self.cfg.ballot,
                        };
                        out.push(SeqOut::Group(g, Body::Switch(s)));
                    }
                } else {
                    for (g, f) in &t.filling {
                        out.push(SeqOut::Group(*g, Body::Fill(f.clone())));
                    }
                }
            }
            _ => {}
        }
    }

    fn on_takeover(
        &mut self,
        origin: u64,
        epoch: u64,
        group: u32,
        now: u64,
        out: &mut Vec<SeqOut>,
    ) {
        match &self.role {
            Role::Active(s) if s.epoch() == epoch => {
                // The group thinks this sequencer is gone, but it is here.
                out.push(SeqOut::Reply(
                    origin,
                    Body::Activate(Activate {
                        epoch,
                        ballot: self.cfg.ballot,
                    }),
                ));
                return;
            }
            Role::Active(s) if s.epoch() > epoch => return,
            Role::Taking(t) if t.epoch >= epoch => return,
            _ => {}
        }
        if epoch < self.max_seen {
            // About an epoch that something newer already replaced: a late or repeated
            // request. The group asks again, about its current epoch, if it still must.
            return;
        }
        self.max_seen = epoch;
        let epoch = next_owned_epoch(self.max_seen, self.cfg.id, self.cfg.sequencers);
        self.max_seen = epoch;
        tracing::warn!(
            epoch,
            asked_by = group,
            "taking over: asking every group to promise the new epoch"
        );
        self.role = Role::Taking(Taking {
            epoch,
            promises: BTreeMap::new(),
            filling: BTreeMap::new(),
            collected: false,
            counters: Vec::new(),
            sent_at: now,
        });
        for g in 0..self.cfg.groups {
            out.push(SeqOut::Group(
                g,
                Body::Switch(Switch {
                    epoch,
                    group: g,
                    ballot: self.cfg.ballot,
                }),
            ));
        }
    }

    fn on_promise(&mut self, p: Promise, now: u64, out: &mut Vec<SeqOut>) {
        self.max_seen = self.max_seen.max(p.promised).max(p.epoch);
        let Role::Taking(t) = &mut self.role else {
            return;
        };
        if p.epoch != t.epoch || t.collected || p.group >= self.cfg.groups {
            return;
        }
        // A promise of this epoch to another ballot (this sequencer before a restart) is
        // a refusal too: the epoch is used.
        if !p.ok || p.ballot != self.cfg.ballot {
            if p.promised >= t.epoch {
                tracing::warn!(
                    epoch = t.epoch,
                    group = p.group,
                    promised = p.promised,
                    "giving up the takeover: a group promised this epoch elsewhere, or a higher one"
                );
                self.role = Role::Backup;
            }
            return;
        }
        t.promises.insert(p.group, p);
        let need = match self.cfg.mutant {
            Some(SeqMutant::MajorityPromises) => self.cfg.groups / 2 + 1,
            _ => self.cfg.groups,
        };
        if (t.promises.len() as u32) < need {
            return;
        }
        let (counters, holes) = recover(self.cfg.spaces, t.promises.values());
        t.counters = counters;
        t.collected = true;
        t.sent_at = now;
        let nholes = holes.len();
        if self.cfg.mutant != Some(SeqMutant::NoFill) {
            // Round-robin over groups; each group gets one Fill with all its holes.
            for (i, (s, base, len)) in holes.into_iter().enumerate() {
                let g = (i as u32) % self.cfg.groups;
                let f = t.filling.entry(g).or_insert_with(|| Fill {
                    epoch: t.epoch,
                    group: g,
                    holes: Some(Ranges::default()),
                    ballot: self.cfg.ballot,
                });
                if let Some(r) = f.holes.as_mut() {
                    r.push(s, base, len);
                }
            }
        }
        tracing::warn!(
            epoch = t.epoch,
            holes = nholes,
            counters = ?t.counters,
            "every group promised; filling holes"
        );
        for (g, f) in &t.filling {
            out.push(SeqOut::Group(*g, Body::Fill(f.clone())));
        }
        if t.filling.is_empty() {
            self.activate(out);
        }
    }

    fn activate(&mut self, out: &mut Vec<SeqOut>) {
        let Role::Taking(t) = &mut self.role else {
            return;
        };
        let epoch = t.epoch;
        let last_ids: HashMap<u32, u64> = t
            .promises
            .iter()
            .map(|(g, p)| (*g, p.last_batch_id))
            .collect();
        let counters = std::mem::take(&mut t.counters);
        tracing::warn!(epoch, ?counters, "took over: serving");
        self.role = Role::Active(Sequencer::recovered(
            seq_config(&self.cfg, epoch),
            counters,
            &last_ids,
        ));
        out.push(SeqOut::Broadcast(Body::Activate(Activate {
            epoch,
            ballot: self.cfg.ballot,
        })));
    }

    /// Whether `epoch` belongs to this sequencer (for the runtime's logs).
    pub fn owns(&self, epoch: u64) -> bool {
        epoch_owner(epoch, self.cfg.sequencers) == self.cfg.id
    }
}

fn seq_config(cfg: &SeqNodeConfig, epoch: u64) -> SequencerConfig {
    SequencerConfig {
        spaces: cfg.spaces,
        epoch,
        window: cfg.window,
        max_groups: cfg.groups,
        ..SequencerConfig::default()
    }
}

/// From every group's promise: the counters to restart at, per space, and the holes below
/// them as (space, base, len). Everything below a group's watermark is bound (the group
/// forgot it only once it was), so holes are looked for above the highest watermark.
pub fn recover<'a>(
    spaces: u32,
    promises: impl Iterator<Item = &'a Promise>,
) -> (Vec<u64>, Vec<(u32, u64, u64)>) {
    let n = spaces as usize;
    let mut floor = vec![0u64; n];
    let mut ranges: Vec<Vec<(u64, u64)>> = vec![Vec::new(); n];
    for p in promises {
        for (f, w) in floor.iter_mut().zip(&p.watermarks) {
            *f = (*f).max(*w);
        }
        let Some(it) = p.recorded.as_ref().and_then(|r| r.iter()) else {
            continue;
        };
        for (s, base, len) in it {
            if let Some(v) = ranges.get_mut(s as usize) {
                if len > 0 {
                    v.push((base, base.saturating_add(len)));
                }
            }
        }
    }
    let mut counters = floor.clone();
    let mut holes = Vec::new();
    for (s, v) in ranges.iter_mut().enumerate() {
        v.sort_unstable();
        let mut at = floor[s];
        for &(b, e) in v.iter() {
            if e <= at {
                continue;
            }
            if b > at {
                holes.push((s as u32, at, b - at));
            }
            at = e;
        }
        counters[s] = at;
    }
    (counters, holes)
}

#[cfg(test)]
mod tests;
