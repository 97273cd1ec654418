//! The sequencer state machine: requests in, answers out, nothing else.

use mason_common::msg::{GetSeq, SeqReply, SeqStatus};
use mason_common::types::SpaceMask;
use std::collections::{BTreeMap, HashMap};

#[derive(Clone, Debug)]
pub struct SequencerConfig {
    /// Number of sequence spaces, 1..=64.
    pub spaces: u32,
    /// The epoch this sequencer answers with.
    pub epoch: u64,
    /// How many of the most recent batch ids per group are remembered for repeats.
    pub window: usize,
    /// How many groups are remembered; a new group beyond that evicts the one that asked
    /// least recently.
    pub max_groups: usize,
}

impl Default for SequencerConfig {
    fn default() -> Self {
        SequencerConfig {
            spaces: 1,
            epoch: 1,
            window: 1024,
            max_groups: 1 << 16,
        }
    }
}

#[derive(Clone, Debug)]
struct Assigned {
    mask: u64,
    bases: Vec<u64>,
    counts: Vec<u32>,
}

#[derive(Default)]
struct GroupWindow {
    /// Ids below this were forgotten: asking for them again is `TooOld`.
    forgotten_below: u64,
    ids: BTreeMap<u64, Assigned>,
    last_used: u64,
}

/// One counter per space; at-most-once answers per (group, batch id) over a bounded window.
pub struct Sequencer {
    cfg: SequencerConfig,
    counters: Vec<u64>,
    groups: HashMap<u32, GroupWindow>,
    clock: u64,
}

impl Sequencer {
    pub fn new(cfg: SequencerConfig) -> Sequencer {
        Sequencer {
            counters: vec![0; cfg.spaces as usize],
            cfg,
            groups: HashMap::new(),
            clock: 0,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.cfg.epoch
    }

    /// The next number each space would hand out.
    pub fn counters(&self) -> &[u64] {
        &self.counters
    }

    fn reply(&self, req: &GetSeq, status: SeqStatus) -> SeqReply {
        SeqReply {
            epoch: self.cfg.epoch,
            group: req.group,
            batch_id: req.batch_id,
            status: status as i32,
            repeat: false,
            space_mask: 0,
            bases: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// Answers one request.
    pub fn handle(&mut self, req: &GetSeq) -> SeqReply {
        let mask = SpaceMask(req.space_mask);
        if !mask.within(self.cfg.spaces) || req.counts.len() != mask.len() {
            return self.reply(req, SeqStatus::Invalid);
        }
        self.clock += 1;
        let clock = self.clock;
        if !self.groups.contains_key(&req.group) && self.groups.len() >= self.cfg.max_groups {
            self.evict_one_group();
        }
        let window = self.cfg.window;
        let g = self.groups.entry(req.group).or_default();
        g.last_used = clock;
        let epoch = self.cfg.epoch;
        if let Some(a) = g.ids.get(&req.batch_id) {
            return SeqReply {
                epoch,
                group: req.group,
                batch_id: req.batch_id,
                status: SeqStatus::Ok as i32,
                repeat: true,
                space_mask: a.mask,
                bases: a.bases.clone(),
                counts: a.counts.clone(),
            };
        }
        if req.batch_id < g.forgotten_below {
            return self.reply(req, SeqStatus::TooOld);
        }
        let mut bases = Vec::with_capacity(mask.len());
        for (s, c) in mask.iter().zip(&req.counts) {
            let ctr = &mut self.counters[s as usize];
            bases.push(*ctr);
            *ctr += u64::from(*c);
        }
        let a = Assigned {
            mask: mask.0,
            bases,
            counts: req.counts.clone(),
        };
        g.ids.insert(req.batch_id, a.clone());
        while g.ids.len() > window {
            if let Some((id, _)) = g.ids.pop_first() {
                g.forgotten_below = g.forgotten_below.max(id + 1);
            }
        }
        SeqReply {
            epoch: self.cfg.epoch,
            group: req.group,
            batch_id: req.batch_id,
            status: SeqStatus::Ok as i32,
            repeat: false,
            space_mask: a.mask,
            bases: a.bases,
            counts: a.counts,
        }
    }

    fn evict_one_group(&mut self) {
        if let Some((&g, _)) = self.groups.iter().min_by_key(|(_, w)| w.last_used) {
            self.groups.remove(&g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(group: u32, batch_id: u64, mask: u64, counts: Vec<u32>) -> GetSeq {
        GetSeq {
            epoch: 1,
            group,
            batch_id,
            space_mask: mask,
            counts,
        }
    }

    fn seq(spaces: u32) -> Sequencer {
        Sequencer::new(SequencerConfig {
            spaces,
            epoch: 7,
            window: 4,
            max_groups: 2,
        })
    }

    #[test]
    fn ranges_advance_per_space() {
        let mut s = seq(3);
        let a = s.handle(&req(0, 1, 0b101, vec![3, 2]));
        assert_eq!(
            (a.bases.clone(), a.counts.clone(), a.epoch),
            (vec![0, 0], vec![3, 2], 7)
        );
        let b = s.handle(&req(1, 1, 0b111, vec![1, 1, 1]));
        assert_eq!(b.bases, vec![3, 0, 2]);
        assert!(!b.repeat);
        assert_eq!(s.counters(), &[4, 1, 3]);
    }

    #[test]
    fn repeats_return_the_same_ranges() {
        let mut s = seq(1);
        let a = s.handle(&req(0, 1, 1, vec![5]));
        s.handle(&req(0, 2, 1, vec![5]));
        let again = s.handle(&req(0, 1, 1, vec![9]));
        assert!(again.repeat);
        assert_eq!((again.bases, again.counts), (a.bases, a.counts));
        assert_eq!(s.counters(), &[10]);
    }

    #[test]
    fn zero_count_ask_records_an_empty_batch() {
        let mut s = seq(1);
        let probe = s.handle(&req(0, 3, 1, vec![0]));
        assert_eq!(probe.counts, vec![0]);
        // A late request under that id now gets nothing usable.
        let late = s.handle(&req(0, 3, 1, vec![4]));
        assert!(late.repeat);
        assert_eq!(late.counts, vec![0]);
        assert_eq!(s.counters(), &[0]);
    }

    #[test]
    fn window_is_bounded_and_old_ids_are_refused() {
        let mut s = seq(1);
        for id in 1..=10 {
            s.handle(&req(0, id, 1, vec![1]));
        }
        let old = s.handle(&req(0, 2, 1, vec![1]));
        assert_eq!(old.status, SeqStatus::TooOld as i32);
        assert!(s.handle(&req(0, 9, 1, vec![1])).repeat);
        assert_eq!(s.groups[&0].ids.len(), 4);
        // Groups are bounded too.
        s.handle(&req(1, 1, 1, vec![1]));
        s.handle(&req(2, 1, 1, vec![1]));
        assert_eq!(s.groups.len(), 2);
    }

    #[test]
    fn malformed_requests_are_refused_without_side_effects() {
        let mut s = seq(2);
        let r = s.handle(&req(0, 1, 0b100, vec![1]));
        assert_eq!(r.status, SeqStatus::Invalid as i32);
        let r = s.handle(&req(0, 1, 0b11, vec![1]));
        assert_eq!(r.status, SeqStatus::Invalid as i32);
        assert_eq!(s.counters(), &[0, 0]);
    }
}
