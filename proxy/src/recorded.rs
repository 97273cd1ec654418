//! A group's recorded set (DESIGN.md section 6): per space, the ranges of numbers it has
//! bound, merged where they touch, above a watermark below which everything is bound for
//! good and forgotten. A takeover unions every group's recorded set to find the holes.

use mason_common::msg::Ranges;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Per space: start -> end of disjoint, non-touching ranges, all ending above the
    /// space's watermark.
    spaces: Vec<BTreeMap<u64, u64>>,
    watermarks: Vec<u64>,
}

impl Recorded {
    pub fn new(spaces: u32) -> Recorded {
        Recorded {
            spaces: vec![BTreeMap::new(); spaces as usize],
            watermarks: vec![0; spaces as usize],
        }
    }

    pub fn watermarks(&self) -> &[u64] {
        &self.watermarks
    }

    /// How many ranges are held (for memory checks).
    pub fn len(&self) -> usize {
        self.spaces.iter().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records `[base, base + len)` of `space` as bound.
    pub fn insert(&mut self, space: u32, base: u64, len: u64) {
        let Some(m) = self.spaces.get_mut(space as usize) else {
            return;
        };
        let w = self.watermarks[space as usize];
        let mut start = base.max(w);
        let mut end = base.saturating_add(len);
        if end <= start {
            return;
        }
        // Merge with a range that ends at or after `start` and begins at or before `end`.
        if let Some((&s, &e)) = m.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
                m.remove(&s);
            }
        }
        while let Some((&s, &e)) = m.range(start..=end).next() {
            end = end.max(e);
            m.remove(&s);
        }
        m.insert(start, end);
    }

    /// The parts of `[base, base + len)` of `space` that are not recorded (nor below the
    /// watermark), in order. Any range may be asked about, recorded or not: a hole that is
    /// already filled (a re-sent `Fill`, or a fill committed twice) has no missing part.
    pub fn missing(&self, space: u32, base: u64, len: u64) -> Vec<(u64, u64)> {
        let Some(m) = self.spaces.get(space as usize) else {
            return Vec::new();
        };
        let end = base.saturating_add(len);
        let mut at = base.max(self.watermarks[space as usize]);
        // A range that starts at or before `at` may cover it (and run past `end`).
        if let Some((_, &e)) = m.range(..=at).next_back() {
            at = at.max(e);
        }
        let mut out = Vec::new();
        if at >= end {
            return out;
        }
        for (&s, &e) in m.range(at..end) {
            if s > at {
                out.push((at, s - at));
            }
            at = at.max(e);
        }
        if at < end {
            out.push((at, end - at));
        }
        out
    }

    /// Forgets everything below `w[s]` in each space (a watermark never goes back).
    pub fn advance(&mut self, w: &[u64]) {
        for (s, (m, old)) in self
            .spaces
            .iter_mut()
            .zip(self.watermarks.iter_mut())
            .enumerate()
        {
            let Some(&new) = w.get(s) else {
                break;
            };
            if new <= *old {
                continue;
            }
            *old = new;
            while let Some((&st, &e)) = m.first_key_value() {
                if e > new {
                    break;
                }
                m.remove(&st);
            }
        }
    }

    /// Every recorded range, as wire columns.
    pub fn ranges(&self) -> Ranges {
        let mut r = Ranges::default();
        for (s, m) in self.spaces.iter().enumerate() {
            for (&b, &e) in m {
                r.push(s as u32, b, e - b);
            }
        }
        r
    }

    /// Rebuilds a recorded set from [`Recorded::ranges`] and watermarks (a snapshot).
    pub fn restore(spaces: u32, watermarks: &[u64], ranges: &Ranges) -> Recorded {
        let mut r = Recorded::new(spaces);
        r.advance(watermarks);
        if let Some(it) = ranges.iter() {
            for (s, b, l) in it {
                r.insert(s, b, l);
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_gaps_are_found() {
        let mut r = Recorded::new(1);
        r.insert(0, 10, 5);
        r.insert(0, 20, 5);
        r.insert(0, 15, 2);
        assert_eq!(r.missing(0, 0, 30), vec![(0, 10), (17, 3), (25, 5)]);
        r.insert(0, 17, 3);
        assert_eq!(r.len(), 1);
        assert_eq!(r.missing(0, 12, 13), vec![]);
        r.advance(&[12]);
        assert_eq!(r.missing(0, 0, 30), vec![(25, 5)]);
        r.advance(&[26]);
        assert_eq!(r.len(), 0);
        assert_eq!(r.missing(0, 0, 30), vec![(26, 4)]);
        r.insert(0, 20, 8);
        assert_eq!(r.ranges().bases, vec![26]);
        let back = Recorded::restore(1, r.watermarks(), &r.ranges());
        assert_eq!(back, r);
    }

    /// A hole that is already recorded, inside a range that runs past it: nothing is
    /// missing (this once panicked: a re-sent `Fill` took a whole group down).
    #[test]
    fn an_already_recorded_hole_inside_a_longer_range_is_not_missing() {
        let mut r = Recorded::new(1);
        r.insert(0, 0, 100);
        assert_eq!(r.missing(0, 10, 5), vec![]);
        assert_eq!(r.missing(0, 99, 1), vec![]);
        assert_eq!(r.missing(0, 95, 10), vec![(100, 5)]);
        r.advance(&[50]);
        assert_eq!(r.missing(0, 10, 5), vec![]);
        assert_eq!(r.missing(0, 0, 0), vec![]);
    }

    /// Against a plain set of numbers, for many random inserts, watermarks and queries.
    #[test]
    fn agrees_with_a_set_of_numbers() {
        use std::collections::BTreeSet;
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..200 {
            let mut r = Recorded::new(1);
            let mut set = BTreeSet::new();
            let mut w = 0u64;
            for _ in 0..40 {
                match next(4) {
                    0 | 1 => {
                        let (b, l) = (next(200), next(20));
                        r.insert(0, b, l);
                        set.extend((b..b + l).filter(|n| *n >= w));
                    }
                    2 => {
                        w = w.max(next(150));
                        r.advance(&[w]);
                        set.retain(|n| *n >= w);
                    }
                    _ => {}
                }
                let (b, l) = (next(220), next(40));
                let want: Vec<u64> = (b..b + l).filter(|n| *n >= w && !set.contains(n)).collect();
                let got: Vec<u64> = r
                    .missing(0, b, l)
                    .into_iter()
                    .flat_map(|(s, n)| s..s + n)
                    .collect();
                assert_eq!(got, want, "missing({b}, {l}) with watermark {w}");
            }
        }
    }
}
