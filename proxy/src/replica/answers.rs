//! A session's kept answers, by its ops' sequence numbers: a deque kept sorted by sequence
//! number. A session's ops apply in its order (FIFO), so a new answer goes on the back and
//! the oldest come off the front, with no tree to rebalance on every op. Any other insert
//! (a snapshot's, a test mutant's out-of-order apply) finds its place by binary search.

use super::OpAnswer;
use std::collections::VecDeque;

/// Past this many slots, an emptied deque gives its memory back.
const SHRINK_ABOVE: usize = 256;

#[derive(Debug, Default)]
pub(crate) struct Answers(VecDeque<(u64, OpAnswer)>);

impl Answers {
    fn find(&self, seq: u64) -> Result<usize, usize> {
        self.0.binary_search_by_key(&seq, |(s, _)| *s)
    }

    pub(crate) fn get(&self, seq: u64) -> Option<&OpAnswer> {
        self.find(seq).ok().map(|i| &self.0[i].1)
    }

    pub(crate) fn contains(&self, seq: u64) -> bool {
        self.find(seq).is_ok()
    }

    /// Keeps `answer` for `seq`; the answer it replaces, if any.
    pub(crate) fn insert(&mut self, seq: u64, answer: OpAnswer) -> Option<OpAnswer> {
        if self.0.back().is_none_or(|(last, _)| *last < seq) {
            self.0.push_back((seq, answer));
            return None;
        }
        match self.find(seq) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, answer)),
            Err(i) => {
                self.0.insert(i, (seq, answer));
                None
            }
        }
    }

    /// The lowest sequence number kept.
    pub(crate) fn first(&self) -> Option<u64> {
        self.0.front().map(|(s, _)| *s)
    }

    pub(crate) fn pop_first(&mut self) -> Option<(u64, OpAnswer)> {
        let first = self.0.pop_front();
        if self.0.is_empty() && self.0.capacity() > SHRINK_ABOVE {
            self.0 = VecDeque::new();
        }
        first
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// In sequence-number order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &OpAnswer)> {
        self.0.iter().map(|(s, a)| (*s, a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn answer(n: u64) -> OpAnswer {
        OpAnswer::numbered(1, smallvec::smallvec![n])
    }

    /// Any order of inserts, replacements, lookups and pops agrees with a sorted map.
    #[test]
    fn agrees_with_a_sorted_map_in_any_order() {
        // A fixed xorshift: the same steps every run.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut below = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut a = Answers::default();
        let mut m = BTreeMap::new();
        let mut next = 0u64;
        for step in 0..20_000u64 {
            match below(10) {
                // Mostly the next in order, as ops apply.
                0..=4 => {
                    next += 1;
                    assert_eq!(a.insert(next, answer(step)), m.insert(next, answer(step)));
                }
                // Sometimes anywhere near, new or a replacement.
                5 => {
                    let s = next.saturating_sub(below(20)) + below(3);
                    assert_eq!(a.insert(s, answer(step)), m.insert(s, answer(step)));
                }
                6..=7 => {
                    assert_eq!(a.pop_first(), m.pop_first());
                }
                _ => {
                    let s = next.saturating_sub(below(30));
                    assert_eq!(a.get(s), m.get(&s));
                    assert_eq!(a.contains(s), m.contains_key(&s));
                }
            }
            assert_eq!(a.len(), m.len());
            assert_eq!(a.first(), m.first_key_value().map(|(s, _)| *s));
        }
        let all: Vec<_> = a.iter().map(|(s, x)| (s, x.clone())).collect();
        let want: Vec<_> = m.iter().map(|(s, x)| (*s, x.clone())).collect();
        assert_eq!(all, want);
    }

    #[test]
    fn an_emptied_large_deque_gives_its_memory_back() {
        let mut a = Answers::default();
        for s in 0..1000 {
            a.insert(s, answer(s));
        }
        while a.pop_first().is_some() {}
        assert_eq!(a.0.capacity(), 0);
    }
}
