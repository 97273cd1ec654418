//! The sequencer state machine: requests in, answers out, nothing else.
//!
//! Each group's batch ids are dense, starting at 1, and the sequencer assigns them strictly
//! in id order: a request that arrives before the ids below it (the network may reorder,
//! and a lost request is re-sent later) waits until they arrive. So a group's later batch
//! never gets smaller numbers than an earlier one, which is what keeps one client's ops in
//! order (FIFO) although a proxy leader keeps several requests in flight. Zero-count
//! requests (a new leader probing its predecessor's ids) fill gaps like any other.
//!
//! Clients of the direct baseline (no proxies, no failover) ask with their session
//! instead of a group, one request per op, their ops' seqs as ids: they have a table of
//! their own, bounded in sessions and in ids per session, so that they can never take a
//! group's ids. Only the groups `0..max_groups` are served.

use mason_common::msg::{GetSeq, SeqReply, SeqStatus};
use mason_common::record::GrantChunk;
use mason_common::types::SpaceMask;
use smallvec::SmallVec;
use std::collections::{BTreeMap, HashMap};
use window::Window;

mod window;

#[derive(Clone, Debug)]
pub struct SequencerConfig {
    /// Number of sequence spaces, 1..=64.
    pub spaces: u32,
    /// The epoch this sequencer answers with.
    pub epoch: u64,
    /// How many of the most recent batch ids per group are remembered for repeats, and how
    /// many early requests per group may wait for earlier ids.
    pub window: usize,
    /// The groups served are `0..max_groups`; requests of others are refused as invalid.
    pub max_groups: u32,
    /// Direct-baseline sessions remembered at once; the least recently used is forgotten
    /// to make room for a new one.
    pub max_sessions: usize,
    /// Ids remembered per direct session (its client says, with `committed`, which
    /// answers it holds; those are forgotten first).
    pub session_window: usize,
}

impl Default for SequencerConfig {
    fn default() -> Self {
        SequencerConfig {
            spaces: 1,
            epoch: 1,
            window: 1024,
            max_groups: 1 << 16,
            max_sessions: 16_384,
            session_window: mason_common::msg::DIRECT_SESSION_WINDOW as usize,
        }
    }
}

/// What an id was given: kept inline for a few spaces (no allocation per request).
#[derive(Clone, Debug)]
struct Assigned {
    mask: u64,
    bases: SmallVec<[u64; 2]>,
    counts: SmallVec<[u32; 2]>,
}

struct GroupState {
    /// The next id to assign; ids below it were assigned (or forgotten).
    next: u64,
    /// The group's last applied batch id, as it last said.
    committed: u64,
    /// The watermark version this group was last sent.
    wm_sent: u64,
    /// Ids below this were forgotten: asking for them again is `TooOld`.
    forgotten_below: u64,
    ids: Window<Assigned>,
    /// Requests that arrived before the ids below them, with who sent them.
    early: BTreeMap<u64, Vec<(u64, GetSeq)>>,
    /// Direct sessions: when the session was last asked for something (a request count).
    used: u64,
}

impl Default for GroupState {
    fn default() -> Self {
        GroupState {
            next: 1,
            committed: 0,
            wm_sent: 0,
            forgotten_below: 1,
            ids: Window::default(),
            early: BTreeMap::new(),
            used: 0,
        }
    }
}

/// Which table a request's ids live in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Key {
    Group(u32),
    Session(u64),
}

/// The answer to `req` from what was assigned to its id.
fn answered(epoch: u64, req: &GetSeq, a: &Assigned, repeat: bool) -> SeqReply {
    SeqReply {
        epoch,
        group: req.group,
        batch_id: req.batch_id,
        status: SeqStatus::Ok as i32,
        repeat,
        space_mask: a.mask,
        bases: a.bases.to_vec(),
        counts: a.counts.to_vec(),
        watermarks: Vec::new(),
    }
}

fn key_of(req: &GetSeq) -> Key {
    if req.session != 0 {
        Key::Session(req.session)
    } else {
        Key::Group(req.group)
    }
}

/// One counter per space; at-most-once, in-order answers per (group, batch id) over a
/// bounded window.
pub struct Sequencer {
    cfg: SequencerConfig,
    counters: Vec<u64>,
    groups: HashMap<u32, GroupState>,
    sessions: HashMap<u64, GroupState>,
    requests: u64,
    /// Fresh grants to direct sessions since the last [`Sequencer::take_grants`].
    grants: GrantChunk,
    /// Per space: every number below is bound for good (see [`Sequencer::collect`]).
    watermarks: Vec<u64>,
    /// Bumped whenever the watermarks move; an answer carries them only to a group that
    /// has not seen this version (most answers carry none).
    wm_version: u64,
}

impl Sequencer {
    pub fn new(cfg: SequencerConfig) -> Sequencer {
        Sequencer {
            counters: vec![0; cfg.spaces as usize],
            watermarks: vec![0; cfg.spaces as usize],
            wm_version: 0,
            cfg,
            groups: HashMap::new(),
            sessions: HashMap::new(),
            requests: 0,
            grants: GrantChunk::default(),
        }
    }

    fn state(&mut self, k: Key) -> Option<&mut GroupState> {
        match k {
            Key::Group(g) => self.groups.get_mut(&g),
            Key::Session(s) => self.sessions.get_mut(&s),
        }
    }

    /// What direct sessions were given since the last call (for the sequencer's record).
    pub fn take_grants(&mut self) -> GrantChunk {
        std::mem::take(&mut self.grants)
    }

    /// How many direct sessions are remembered.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// A sequencer taking over (DESIGN.md section 5): its counters restart at `counters`,
    /// below which everything is bound, and each group's next batch id is the one after
    /// its last applied one (`last_ids`).
    pub fn recovered(
        cfg: SequencerConfig,
        counters: Vec<u64>,
        last_ids: &HashMap<u32, u64>,
    ) -> Sequencer {
        let mut s = Sequencer::new(cfg);
        for (c, n) in s.counters.iter_mut().zip(&counters) {
            *c = *n;
        }
        s.watermarks = s.counters.clone();
        s.wm_version = 1;
        for (&g, &last) in last_ids {
            s.groups.insert(
                g,
                GroupState {
                    next: last + 1,
                    committed: last,
                    forgotten_below: last + 1,
                    ..GroupState::default()
                },
            );
        }
        s
    }

    /// The garbage-collection watermarks, per space: every number below was given to a
    /// batch id that its group has since applied, so it is bound for good.
    pub fn watermarks(&self) -> &[u64] {
        &self.watermarks
    }

    /// Recomputes [`Sequencer::watermarks`] (a periodic task: it walks every group's
    /// unapplied ids, at most K per group).
    pub fn collect(&mut self) {
        let mut w = self.counters.clone();
        for g in self.groups.values() {
            if g.forgotten_below > g.committed + 1 {
                // Ids the group has not applied were forgotten: nothing is known; hold.
                return;
            }
            for a in g.ids.from(g.committed + 1) {
                for ((s, base), count) in SpaceMask(a.mask).iter().zip(&a.bases).zip(&a.counts) {
                    if *count > 0 {
                        let ws = &mut w[s as usize];
                        *ws = (*ws).min(*base);
                    }
                }
            }
        }
        let mut moved = false;
        for (old, new) in self.watermarks.iter_mut().zip(w) {
            if new > *old {
                *old = new;
                moved = true;
            }
        }
        if moved {
            self.wm_version += 1;
        }
    }

    pub fn epoch(&self) -> u64 {
        self.cfg.epoch
    }

    /// The next number each space would hand out.
    pub fn counters(&self) -> &[u64] {
        &self.counters
    }

    fn status(&self, req: &GetSeq, status: SeqStatus) -> SeqReply {
        SeqReply {
            epoch: self.cfg.epoch,
            group: req.group,
            batch_id: req.batch_id,
            status: status as i32,
            repeat: false,
            space_mask: 0,
            bases: Vec::new(),
            counts: Vec::new(),
            watermarks: Vec::new(),
        }
    }

    /// Attaches the watermarks to `reply` if its group has not seen them yet (direct
    /// sessions have no use for them).
    fn with_watermarks(&mut self, req: &GetSeq, mut reply: SeqReply) -> SeqReply {
        if req.session != 0 {
            return reply;
        }
        let version = self.wm_version;
        if let Some(g) = self.groups.get_mut(&reply.group) {
            if g.wm_sent < version {
                g.wm_sent = version;
                reply.watermarks.clone_from(&self.watermarks);
            }
        }
        reply
    }

    /// Handles `req` from `origin` (a token the caller uses to route answers). Pushes zero
    /// answers when the request waits for earlier ids of its group, one otherwise, and more
    /// when it fills a gap that later requests were waiting on.
    pub fn handle(&mut self, req: &GetSeq, origin: u64, out: &mut Vec<(u64, SeqReply)>) {
        let mask = SpaceMask(req.space_mask);
        let fits = mask.within(self.cfg.spaces) && req.counts.len() == mask.len();
        let key = key_of(req);
        let known_group = match key {
            Key::Group(g) => g < self.cfg.max_groups,
            Key::Session(_) => true,
        };
        if !fits || !known_group || req.batch_id == 0 {
            out.push((origin, self.status(req, SeqStatus::Invalid)));
            return;
        }
        match key {
            // A direct session has no failover: its requests carry epoch 0.
            Key::Session(_) if req.epoch != 0 => return,
            // Meant for another sequencer's epoch: its sender does not use our answers.
            Key::Group(_) if req.epoch != self.cfg.epoch => return,
            _ => {}
        }
        self.requests += 1;
        let (window, used) = match key {
            Key::Group(_) => (self.cfg.window, self.requests),
            Key::Session(_) => (self.cfg.session_window, self.requests),
        };
        if let Key::Session(s) = key {
            if req.committed > 0 && !self.sessions.contains_key(&s) {
                // A session this sequencer forgot (it made room for others) that already
                // holds answers: its ids cannot be told from new ones. Never grant again.
                out.push((origin, self.status(req, SeqStatus::TooOld)));
                return;
            }
            self.make_room_for(s);
        }
        let g = match key {
            Key::Group(g) => self.groups.entry(g).or_default(),
            Key::Session(s) => self.sessions.entry(s).or_default(),
        };
        g.used = used;
        g.committed = g.committed.max(req.committed.min(g.next.saturating_sub(1)));
        if let Key::Session(_) = key {
            // The client holds every answer up to `committed`: forget them.
            while g.ids.first_id().is_some_and(|id| id <= g.committed) {
                if let Some(id) = g.ids.pop_first() {
                    g.forgotten_below = g.forgotten_below.max(id + 1);
                }
            }
        }
        if req.batch_id < g.next {
            let reply = match g.ids.get(req.batch_id) {
                Some(a) => answered(self.cfg.epoch, req, a, true),
                None => self.status(req, SeqStatus::TooOld),
            };
            out.push((origin, reply));
            return;
        }
        if req.batch_id > g.next {
            let waiting: usize = g.early.values().map(Vec::len).sum();
            if waiting < window && req.batch_id - g.next <= window as u64 {
                g.early
                    .entry(req.batch_id)
                    .or_default()
                    .push((origin, req.clone()));
            }
            // Beyond that the request is dropped; its sender re-sends it.
            return;
        }
        let reply = self.assign(req);
        out.push((origin, self.with_watermarks(req, reply)));
        // Release whatever waited on this id, in order.
        loop {
            let Some(g) = self.state(key) else {
                return;
            };
            let next = g.next;
            let Some(waiting) = g.early.remove(&next) else {
                break;
            };
            let mut first = true;
            for (o, r) in waiting {
                if first {
                    let reply = self.assign(&r);
                    out.push((o, self.with_watermarks(&r, reply)));
                    first = false;
                } else {
                    let epoch = self.cfg.epoch;
                    if let Some(a) = self.state(key).and_then(|g| g.ids.get(r.batch_id)) {
                        out.push((o, answered(epoch, &r, a, true)));
                    }
                }
            }
        }
        if let Some(g) = self.state(key) {
            while g.ids.len() > window {
                if let Some(id) = g.ids.pop_first() {
                    g.forgotten_below = g.forgotten_below.max(id + 1);
                }
            }
        }
    }

    /// Before a new direct session is remembered: forget the least recently used one if
    /// the table is full.
    fn make_room_for(&mut self, s: u64) {
        if self.sessions.len() < self.cfg.max_sessions || self.sessions.contains_key(&s) {
            return;
        }
        if let Some(old) = self
            .sessions
            .iter()
            .min_by_key(|(_, g)| g.used)
            .map(|(k, _)| *k)
        {
            self.sessions.remove(&old);
        }
    }

    /// Assigns the group's next id to `req` (the caller checked it is the next one).
    /// Its answer.
    fn assign(&mut self, req: &GetSeq) -> SeqReply {
        let mask = SpaceMask(req.space_mask);
        let mut bases = SmallVec::new();
        for (s, c) in mask.iter().zip(&req.counts) {
            let ctr = &mut self.counters[s as usize];
            bases.push(*ctr);
            *ctr += u64::from(*c);
        }
        let a = Assigned {
            mask: mask.0,
            bases,
            counts: SmallVec::from_slice(&req.counts),
        };
        let key = key_of(req);
        if let Key::Session(s) = key {
            // One number per space is what a direct op asks for; the record keeps bases.
            self.grants.push(s, req.batch_id, mask, &a.bases);
        }
        let reply = answered(self.cfg.epoch, req, &a, false);
        if let Some(g) = self.state(key) {
            g.ids.push(req.batch_id, a);
            g.next = req.batch_id + 1;
        }
        reply
    }

    /// For callers that send a group's ids in order: the answer to `req`, if it was
    /// answered at once (None if it waits for earlier ids).
    pub fn answer(&mut self, req: &GetSeq) -> Option<SeqReply> {
        let mut out = Vec::new();
        self.handle(req, 0, &mut out);
        out.into_iter()
            .find(|(_, r)| r.batch_id == req.batch_id && r.group == req.group)
            .map(|(_, r)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(group: u32, batch_id: u64, mask: u64, counts: Vec<u32>) -> GetSeq {
        GetSeq {
            epoch: 7,
            group,
            batch_id,
            space_mask: mask,
            counts,
            committed: 0,
            session: 0,
        }
    }

    fn seq(spaces: u32) -> Sequencer {
        Sequencer::new(SequencerConfig {
            spaces,
            epoch: 7,
            window: 4,
            max_groups: 2,
            max_sessions: 2,
            session_window: 4,
        })
    }

    fn direct(session: u64, seq: u64, committed: u64) -> GetSeq {
        GetSeq {
            epoch: 0,
            session,
            batch_id: seq,
            space_mask: 1,
            counts: vec![1],
            committed,
            ..GetSeq::default()
        }
    }

    #[test]
    fn ranges_advance_per_space() {
        let mut s = seq(3);
        let a = s.answer(&req(0, 1, 0b101, vec![3, 2])).unwrap();
        assert_eq!(
            (a.bases.clone(), a.counts.clone(), a.epoch),
            (vec![0, 0], vec![3, 2], 7)
        );
        let b = s.answer(&req(1, 1, 0b111, vec![1, 1, 1])).unwrap();
        assert_eq!(b.bases, vec![3, 0, 2]);
        assert!(!b.repeat);
        assert_eq!(s.counters(), &[4, 1, 3]);
    }

    #[test]
    fn repeats_return_the_same_ranges() {
        let mut s = seq(1);
        let a = s.answer(&req(0, 1, 1, vec![5])).unwrap();
        s.answer(&req(0, 2, 1, vec![5])).unwrap();
        let again = s.answer(&req(0, 1, 1, vec![9])).unwrap();
        assert!(again.repeat);
        assert_eq!((again.bases, again.counts), (a.bases, a.counts));
        assert_eq!(s.counters(), &[10]);
    }

    #[test]
    fn zero_count_ask_records_an_empty_batch() {
        let mut s = seq(1);
        let probe = s.answer(&req(0, 1, 1, vec![0])).unwrap();
        assert_eq!(probe.counts, vec![0]);
        // A late request under that id now gets nothing usable.
        let late = s.answer(&req(0, 1, 1, vec![4])).unwrap();
        assert!(late.repeat);
        assert_eq!(late.counts, vec![0]);
        assert_eq!(s.counters(), &[0]);
    }

    #[test]
    fn early_requests_wait_for_earlier_ids_so_later_batches_get_larger_numbers() {
        let mut s = seq(1);
        let mut out = Vec::new();
        s.handle(&req(0, 3, 1, vec![2]), 30, &mut out);
        s.handle(&req(0, 2, 1, vec![2]), 20, &mut out);
        assert!(out.is_empty(), "ids 2 and 3 wait for id 1");
        // Another group is not held up.
        s.handle(&req(1, 1, 1, vec![1]), 99, &mut out);
        assert_eq!(out.len(), 1);
        out.clear();
        s.handle(&req(0, 1, 1, vec![2]), 10, &mut out);
        let got: Vec<(u64, u64, u64)> = out
            .iter()
            .map(|(o, r)| (*o, r.batch_id, r.bases[0]))
            .collect();
        assert_eq!(got, vec![(10, 1, 1), (20, 2, 3), (30, 3, 5)]);
        // A duplicate of a waiting request is answered as a repeat on release.
        out.clear();
        s.handle(&req(0, 5, 1, vec![1]), 50, &mut out);
        s.handle(&req(0, 5, 1, vec![1]), 51, &mut out);
        s.handle(&req(0, 4, 1, vec![0]), 40, &mut out);
        let got: Vec<(u64, bool)> = out.iter().map(|(o, r)| (*o, r.repeat)).collect();
        assert_eq!(got, vec![(40, false), (50, false), (51, true)]);
        assert_eq!(s.counters(), &[8]);
    }

    #[test]
    fn window_is_bounded_and_old_ids_are_refused() {
        let mut s = seq(1);
        for id in 1..=10 {
            s.answer(&req(0, id, 1, vec![1])).unwrap();
        }
        let old = s.answer(&req(0, 2, 1, vec![1])).unwrap();
        assert_eq!(old.status, SeqStatus::TooOld as i32);
        assert!(s.answer(&req(0, 9, 1, vec![1])).unwrap().repeat);
        assert_eq!(s.groups[&0].ids.len(), 4);
        // Early requests are bounded too.
        let mut out = Vec::new();
        for id in 12..30 {
            s.handle(&req(0, id, 1, vec![1]), 0, &mut out);
        }
        assert!(out.is_empty());
        assert_eq!(s.groups[&0].early.values().map(Vec::len).sum::<usize>(), 4);
        // Early requests far ahead are not held at all.
        s.handle(&req(0, 500, 1, vec![1]), 0, &mut out);
        assert!(!s.groups[&0].early.contains_key(&500));
        // Only the configured groups are served: group 2 of 2 is refused.
        s.answer(&req(1, 1, 1, vec![1])).unwrap();
        let r = s.answer(&req(2, 1, 1, vec![1])).unwrap();
        assert_eq!(r.status, SeqStatus::Invalid as i32);
        assert_eq!(s.groups.len(), 2);
    }

    /// Direct sessions have their own ids (an epoch-0 request cannot take a group's next
    /// batch id), forget what their client holds, and are bounded in number.
    #[test]
    fn direct_sessions_are_apart_from_groups_and_bounded() {
        let mut s = seq(1);
        // Epoch 0 without a session: a group's id at no epoch is not served.
        let mut out = Vec::new();
        s.handle(
            &GetSeq {
                epoch: 0,
                ..req(0, 1, 1, vec![1])
            },
            0,
            &mut out,
        );
        assert!(out.is_empty() && s.groups.is_empty());
        let a = s.answer(&direct(77, 1, 0)).unwrap();
        assert_eq!((a.bases.clone(), a.repeat), (vec![0], false));
        // The group's batch 1 is still its own.
        let g = s.answer(&req(0, 1, 1, vec![2])).unwrap();
        assert_eq!((g.bases, g.repeat), (vec![1], false));
        assert!(s.answer(&direct(77, 1, 0)).unwrap().repeat);
        let grants = s.take_grants();
        assert_eq!(
            (grants.sessions, grants.seqs, grants.numbers),
            (vec![77], vec![1], vec![0])
        );
        // What the client holds is forgotten; only the window is kept.
        for q in 2..=10 {
            s.answer(&direct(77, q, q - 1)).unwrap();
        }
        assert_eq!(s.sessions[&77].ids.len(), 1);
        // A third session pushes out the least recently used.
        s.answer(&direct(78, 1, 0)).unwrap();
        s.answer(&direct(77, 11, 10)).unwrap();
        s.answer(&direct(79, 1, 0)).unwrap();
        assert_eq!(s.sessions(), 2);
        assert!(s.sessions.contains_key(&77) && s.sessions.contains_key(&79));
        // The forgotten session's client already holds an answer: its next ids cannot be
        // told from repeats, so it is refused for good, and nothing is remembered.
        s.take_grants();
        let gone = s.answer(&direct(78, 2, 1)).unwrap();
        assert_eq!(gone.status, SeqStatus::TooOld as i32);
        assert!(gone.bases.is_empty() && !s.sessions.contains_key(&78));
        assert!(s.take_grants().sessions.is_empty());
        // A session that holds nothing yet may start (again) from its first id.
        assert_eq!(s.answer(&direct(78, 1, 0)).unwrap().status, 0);
        // A direct request at an epoch is not served.
        let mut out = Vec::new();
        s.handle(
            &GetSeq {
                epoch: 7,
                ..direct(80, 1, 0)
            },
            0,
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn the_watermark_stops_below_every_unapplied_batch_and_is_sent_once() {
        let mut s = seq(1);
        s.answer(&req(0, 1, 1, vec![5])).unwrap(); // group 0 id 1: [0, 5)
        s.answer(&req(1, 1, 1, vec![5])).unwrap(); // group 1 id 1: [5, 10)
        s.answer(&req(0, 2, 1, vec![5])).unwrap(); // group 0 id 2: [10, 15)
        s.collect();
        assert_eq!(s.watermarks(), &[0], "nothing is applied yet");
        // Group 0 applied id 1 (said with its next request); group 1 nothing.
        let r = s
            .answer(&GetSeq {
                committed: 1,
                ..req(0, 3, 1, vec![1])
            })
            .unwrap();
        s.collect();
        assert_eq!(s.watermarks(), &[5], "group 1's id 1 holds it at 5");
        assert!(
            r.watermarks.is_empty(),
            "answered before the watermark moved"
        );
        let r = s
            .answer(&GetSeq {
                committed: 1,
                ..req(1, 2, 1, vec![1])
            })
            .unwrap();
        s.collect();
        // Group 1 applied id 1; group 0's ids 2 and 3 are still open: [10, 15) and [15, 16).
        assert_eq!(s.watermarks(), &[10]);
        assert_eq!(
            r.watermarks,
            vec![5],
            "the first answer after a move carries it"
        );
        let r = s
            .answer(&GetSeq {
                committed: 1,
                ..req(1, 3, 1, vec![1])
            })
            .unwrap();
        assert_eq!(r.watermarks, vec![10]);
        let r = s
            .answer(&GetSeq {
                committed: 1,
                ..req(1, 4, 1, vec![1])
            })
            .unwrap();
        assert!(r.watermarks.is_empty(), "a group gets each version once");
        // A claim beyond the ids a group was given counts only up to them: group 0's ids 2
        // and 3 are applied now, and group 1's open ids 2..=4 (from 16) hold the mark.
        s.answer(&GetSeq {
            committed: 99,
            ..req(0, 4, 1, vec![0])
        })
        .unwrap();
        s.collect();
        assert_eq!(s.watermarks(), &[16]);
    }

    #[test]
    fn malformed_requests_are_refused_without_side_effects() {
        let mut s = seq(2);
        let r = s.answer(&req(0, 1, 0b100, vec![1])).unwrap();
        assert_eq!(r.status, SeqStatus::Invalid as i32);
        let r = s.answer(&req(0, 1, 0b11, vec![1])).unwrap();
        assert_eq!(r.status, SeqStatus::Invalid as i32);
        let r = s.answer(&req(0, 0, 0b1, vec![1])).unwrap();
        assert_eq!(r.status, SeqStatus::Invalid as i32);
        assert_eq!(s.counters(), &[0, 0]);
    }
}
