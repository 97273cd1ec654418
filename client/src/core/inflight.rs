//! A client's ops in flight, by seq. Seqs are handed out one after another, so the ops in
//! flight are a run of seqs from the lowest unanswered one, with holes where later ops were
//! answered first: a deque indexed by `seq - base` holds them without a tree's node
//! moves, and the lowest unanswered seq (`acked_below`) is its front.

use std::collections::VecDeque;

#[derive(Debug)]
pub(super) struct Inflight<T> {
    /// The seq of `slots[0]`; `slots[0]` is never a hole.
    base: u64,
    slots: VecDeque<Option<T>>,
    len: usize,
}

impl<T> Default for Inflight<T> {
    fn default() -> Self {
        Inflight {
            base: 0,
            slots: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> Inflight<T> {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The lowest seq in flight.
    pub(super) fn first_seq(&self) -> Option<u64> {
        (self.len > 0).then_some(self.base)
    }

    /// The op with the lowest seq.
    pub(super) fn first(&self) -> Option<&T> {
        self.slots.front().and_then(Option::as_ref)
    }

    fn slot(&self, seq: u64) -> Option<usize> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        (i < self.slots.len()).then_some(i)
    }

    /// Puts `value` at `seq` (normally the seq after the highest one here), in place of
    /// what was there.
    pub(super) fn insert(&mut self, seq: u64, value: T) {
        if self.len == 0 {
            self.slots.clear();
            self.base = seq;
        }
        while seq < self.base {
            self.slots.push_front(None);
            self.base -= 1;
        }
        let i = (seq - self.base) as usize;
        while self.slots.len() <= i {
            self.slots.push_back(None);
        }
        if self.slots[i].replace(value).is_none() {
            self.len += 1;
        }
    }

    pub(super) fn get_mut(&mut self, seq: u64) -> Option<&mut T> {
        let i = self.slot(seq)?;
        self.slots[i].as_mut()
    }

    pub(super) fn contains(&self, seq: u64) -> bool {
        self.slot(seq).is_some_and(|i| self.slots[i].is_some())
    }

    pub(super) fn remove(&mut self, seq: u64) -> Option<T> {
        let i = self.slot(seq)?;
        let v = self.slots[i].take()?;
        self.len -= 1;
        while self.slots.front().is_some_and(Option::is_none) {
            self.slots.pop_front();
            self.base += 1;
        }
        Some(v)
    }

    /// The seqs in flight, ascending.
    pub(super) fn seqs(&self) -> Vec<u64> {
        (self.base..)
            .zip(&self.slots)
            .filter_map(|(s, v)| v.as_ref().map(|_| s))
            .collect()
    }

    /// Everything in flight, ascending by seq; leaves it empty.
    pub(super) fn take_all(&mut self) -> Vec<T> {
        self.len = 0;
        std::mem::take(&mut self.slots)
            .into_iter()
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Inflight;
    use std::collections::BTreeMap;

    /// Against a `BTreeMap` under random inserts (mostly the next seq, sometimes a jump
    /// or an earlier one), removals of seqs in and out of range, and lookups.
    #[test]
    fn agrees_with_a_sorted_map() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut a: Inflight<u64> = Inflight::default();
        let mut b: BTreeMap<u64, u64> = BTreeMap::new();
        let mut seq = 1u64;
        for step in 0..50_000u64 {
            match next() % 10 {
                0..=4 => {
                    let s = match next() % 20 {
                        0 => seq + next() % 5,
                        1 => seq.saturating_sub(next() % 40),
                        _ => seq,
                    };
                    seq = seq.max(s + 1);
                    a.insert(s, step);
                    b.insert(s, step);
                }
                5..=8 => {
                    let lo = b.keys().next().copied().unwrap_or(seq);
                    let s = lo + next() % 70;
                    assert_eq!(a.remove(s), b.remove(&s), "remove {s}");
                }
                _ => {
                    let s = seq.saturating_sub(next() % 80);
                    assert_eq!(a.contains(s), b.contains_key(&s));
                    assert_eq!(a.get_mut(s).copied(), b.get(&s).copied());
                }
            }
            assert_eq!(a.len(), b.len());
            assert_eq!(a.first_seq(), b.keys().next().copied());
            assert_eq!(a.first(), b.values().next());
            if step % 5_000 == 0 {
                assert_eq!(a.seqs(), b.keys().copied().collect::<Vec<_>>());
            }
        }
        assert_eq!(a.remove(u64::MAX), None);
        assert_eq!(a.remove(0), b.remove(&0));
        let all: Vec<u64> = b.values().copied().collect();
        assert_eq!(a.take_all(), all);
        assert_eq!((a.len(), a.first_seq()), (0, None));
    }
}
