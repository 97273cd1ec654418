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
    /// watermark), in order.
    pub fn missing(&self, space: u32, base: u64, len: u64) -> Vec<(u64, u64)> {
        let Some(m) = self.spaces.get(space as usize) else {
            return Vec::new();
        };
        let mut at = base.max(self.watermarks[space as usize]);
        let end = base.saturating_add(len);
        let mut out = Vec::new();
        if let Some((_, &e)) = m.range(..=at).next_back() {
            at = at.max(e);
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
}
