//! Sequence spaces and multi-sequence numbers.
//!
//! A set of spaces is a 64-bit mask (mason supports 1..=64 spaces); the numbers of one
//! operation are listed in ascending space order, one per set bit.

use std::fmt;

/// The most spaces one deployment can have: one bit each in a `u64`.
pub const MAX_SPACES: u32 = 64;

/// A set of sequence spaces, one bit per space.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct SpaceMask(pub u64);

impl SpaceMask {
    /// The spaces `0..n`.
    pub fn first(n: u32) -> SpaceMask {
        if n >= 64 {
            SpaceMask(u64::MAX)
        } else {
            SpaceMask((1u64 << n) - 1)
        }
    }
    pub fn single(space: u32) -> SpaceMask {
        SpaceMask(1u64 << space)
    }
    pub fn contains(self, space: u32) -> bool {
        space < 64 && self.0 & (1u64 << space) != 0
    }
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The spaces in ascending order.
    pub fn iter(self) -> SpaceIter {
        SpaceIter(self.0)
    }
    /// Whether every space in this set is below `n`.
    pub fn within(self, n: u32) -> bool {
        n >= 64 || self.0 >> n == 0
    }
    /// Position of `space` among the set bits, if present.
    pub fn index_of(self, space: u32) -> Option<usize> {
        if !self.contains(space) {
            return None;
        }
        let below = if space == 0 {
            0
        } else {
            self.0 & ((1u64 << space) - 1)
        };
        Some(below.count_ones() as usize)
    }
}

impl fmt::Debug for SpaceMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

pub struct SpaceIter(u64);

impl Iterator for SpaceIter {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.0 == 0 {
            return None;
        }
        let s = self.0.trailing_zeros();
        self.0 &= self.0 - 1;
        Some(s)
    }
}

/// A half-open range `[base, base + count)` of one space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeqRange {
    pub space: u32,
    pub base: u64,
    pub count: u64,
}

impl SeqRange {
    pub fn end(&self) -> u64 {
        self.base + self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_iteration_and_index() {
        let m = SpaceMask(0b1011_0001);
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![0, 4, 5, 7]);
        assert_eq!(m.index_of(5), Some(2));
        assert_eq!(m.index_of(1), None);
        assert_eq!(SpaceMask::first(64).len(), 64);
        assert_eq!(SpaceMask::first(3).0, 7);
        assert!(SpaceMask(0b111).within(3));
        assert!(!SpaceMask(0b1000).within(3));
        assert_eq!(SpaceMask::single(63).index_of(63), Some(0));
    }
}
