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
use std::hash::{BuildHasherDefault, Hasher};
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

/// Hashes a group id with one multiplication (Fibonacci hashing). Group ids are small,
/// bounded by `max_groups` and come from authenticated proxies, so the per-request cost of
/// SipHash buys nothing here; direct sessions, whose ids clients choose, keep SipHash.
#[derive(Default)]
struct GroupHasher(u64);

impl Hasher for GroupHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
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
        session: req.session,
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
    groups: HashMap<u32, GroupState, BuildHasherDefault<GroupHasher>>,
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
            groups: HashMap::default(),
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
            session: req.session,
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
mod tests;
