//! A ZK-Mason shard server's intake: every number of its space, applied strictly in order.
//!
//! Proxies deliver each bound op, and each range of noops, to the three servers of every
//! shard the op touched, after commit; a new proxy leader redelivers what its predecessor
//! may not have. So a position may arrive twice, late, or ahead of its predecessors.
//! [`InOrder`] takes them in any order and hands them out in number order, each once:
//! a shard never applies past a hole, and never stalls on one for good either, because
//! Mason's spaces are contiguous (every number is bound to an op or a noop, and each is
//! delivered until acknowledged). What waits ahead is bounded: a position too far past
//! the next one is refused, and its sender delivers it again later.

use std::collections::BTreeMap;

/// What a position holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot<T> {
    Op(T),
    /// `count` noops from the position on.
    Noops(u64),
}

/// What became of an offered position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// Kept, to be handed out in order.
    Taken,
    /// Already held or applied, the same: nothing to do (answer it again if asked).
    Duplicate,
    /// Too far ahead of the next position: refused, to be delivered again later.
    TooFar,
    /// Held or applied with something else: two different things were bound to one
    /// number. Never in a correct run; counted and refused.
    Conflict,
}

/// A space's positions from `next` on, held until their turn.
#[derive(Debug)]
pub struct InOrder<T> {
    next: u64,
    ahead: BTreeMap<u64, Slot<T>>,
    max_ahead: u64,
    conflicts: u64,
}

impl<T: PartialEq> InOrder<T> {
    /// Positions from `next` on; at most `max_ahead` past it are held.
    pub fn new(next: u64, max_ahead: u64) -> InOrder<T> {
        InOrder {
            next,
            ahead: BTreeMap::new(),
            max_ahead: max_ahead.max(1),
            conflicts: 0,
        }
    }

    /// The first position not handed out yet.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Positions held, waiting for their turn.
    pub fn held(&self) -> usize {
        self.ahead.len()
    }

    /// Offers seen with a different content for a taken number.
    pub fn conflicts(&self) -> u64 {
        self.conflicts
    }

    /// Offers `slot` at `pos`. Whether a position below `next` was the same cannot be told
    /// here (it is applied and gone): the caller keeps what it needs to answer it again.
    pub fn offer(&mut self, pos: u64, slot: Slot<T>) -> Offer {
        if let Slot::Noops(0) = slot {
            return Offer::Duplicate;
        }
        if pos < self.next {
            return match slot {
                Slot::Noops(n) if pos.saturating_add(n) > self.next => {
                    self.conflicts += 1;
                    Offer::Conflict
                }
                _ => Offer::Duplicate,
            };
        }
        if pos - self.next >= self.max_ahead {
            return Offer::TooFar;
        }
        if let Some(held) = self.ahead.get(&pos) {
            return if *held == slot {
                Offer::Duplicate
            } else {
                self.conflicts += 1;
                Offer::Conflict
            };
        }
        let end = match &slot {
            Slot::Op(_) => pos + 1,
            Slot::Noops(n) => pos.saturating_add(*n),
        };
        let overlaps_before = self
            .ahead
            .range(..pos)
            .next_back()
            .is_some_and(|(p, s)| matches!(s, Slot::Noops(n) if p + n > pos));
        let overlaps_after = self.ahead.range(pos + 1..end).next().is_some();
        if overlaps_before || overlaps_after {
            self.conflicts += 1;
            return Offer::Conflict;
        }
        self.ahead.insert(pos, slot);
        Offer::Taken
    }

    /// The next position's content, if it has come, without taking it: (position, slot).
    pub fn peek(&self) -> Option<(u64, &Slot<T>)> {
        self.ahead.get(&self.next).map(|slot| (self.next, slot))
    }

    /// Everything held, in position order (to move what waits into a new intake).
    pub fn into_held(self) -> Vec<(u64, Slot<T>)> {
        self.ahead.into_iter().collect()
    }

    /// The next position's content, if it has come: (position, slot). Call until `None`.
    pub fn pop(&mut self) -> Option<(u64, Slot<T>)> {
        let slot = self.ahead.remove(&self.next)?;
        let pos = self.next;
        self.next = match &slot {
            Slot::Op(_) => pos.saturating_add(1),
            Slot::Noops(n) => pos.saturating_add(*n),
        };
        Some((pos, slot))
    }

    /// Moves the next position up to `next` (what is below it was applied another way:
    /// from a peer); returns what was held below it. Nothing moves back.
    pub fn advance_to(&mut self, next: u64) -> Vec<(u64, Slot<T>)> {
        if next <= self.next {
            return Vec::new();
        }
        let keep = self.ahead.split_off(&next);
        let below = std::mem::replace(&mut self.ahead, keep);
        self.next = next;
        below.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut InOrder<&'static str>) -> Vec<(u64, Slot<&'static str>)> {
        std::iter::from_fn(|| q.pop()).collect()
    }

    #[test]
    fn out_of_order_and_twice_is_applied_in_order_once() {
        let mut q = InOrder::new(1, 100);
        assert_eq!(q.offer(3, Slot::Op("c")), Offer::Taken);
        assert_eq!(q.offer(2, Slot::Noops(1)), Offer::Taken);
        assert!(
            drain(&mut q).is_empty(),
            "1 is a hole: nothing goes past it"
        );
        assert_eq!(q.offer(3, Slot::Op("c")), Offer::Duplicate);
        assert_eq!(q.offer(1, Slot::Op("a")), Offer::Taken);
        assert_eq!(
            drain(&mut q),
            vec![(1, Slot::Op("a")), (2, Slot::Noops(1)), (3, Slot::Op("c"))]
        );
        assert_eq!(q.next(), 4);
        assert_eq!(
            q.offer(1, Slot::Op("a")),
            Offer::Duplicate,
            "already applied"
        );
        assert!(drain(&mut q).is_empty());
    }

    #[test]
    fn peek_shows_the_next_position_without_taking_it() {
        let mut q = InOrder::new(1, 100);
        assert_eq!(q.peek(), None);
        q.offer(2, Slot::Op("b"));
        assert_eq!(q.peek(), None, "1 has not come");
        q.offer(1, Slot::Noops(1));
        assert_eq!(q.peek(), Some((1, &Slot::Noops(1))));
        assert_eq!(q.peek(), Some((1, &Slot::Noops(1))), "still there");
        assert_eq!(q.held(), 2);
        assert_eq!(q.pop(), Some((1, Slot::Noops(1))));
        assert_eq!(q.peek(), Some((2, &Slot::Op("b"))));
        q.pop();
        assert_eq!(q.peek(), None);
    }

    #[test]
    fn a_noop_range_moves_past_all_its_numbers() {
        let mut q = InOrder::new(10, 100);
        assert_eq!(q.offer(10, Slot::Noops(5)), Offer::Taken);
        assert_eq!(q.offer(15, Slot::Op("x")), Offer::Taken);
        assert_eq!(
            drain(&mut q),
            vec![(10, Slot::Noops(5)), (15, Slot::Op("x"))]
        );
        assert_eq!(q.next(), 16);
    }

    #[test]
    fn two_things_bound_to_one_number_are_refused() {
        let mut q = InOrder::new(1, 100);
        assert_eq!(q.offer(2, Slot::Op("b")), Offer::Taken);
        assert_eq!(q.offer(2, Slot::Op("other")), Offer::Conflict);
        assert_eq!(q.offer(1, Slot::Noops(3)), Offer::Conflict, "covers 2");
        assert_eq!(q.offer(5, Slot::Noops(3)), Offer::Taken);
        assert_eq!(q.offer(6, Slot::Op("inside")), Offer::Conflict);
        assert_eq!(q.conflicts(), 3);
        assert_eq!(q.offer(1, Slot::Op("a")), Offer::Taken);
        drain(&mut q);
        assert_eq!(q.next(), 3);
    }

    #[test]
    fn advancing_drops_what_is_below_and_keeps_the_rest() {
        let mut q = InOrder::new(1, 100);
        q.offer(2, Slot::Op("b"));
        q.offer(5, Slot::Op("e"));
        let below = q.advance_to(4);
        assert_eq!(below, vec![(2, Slot::Op("b"))]);
        assert_eq!(q.next(), 4);
        assert!(q.advance_to(3).is_empty(), "never back");
        q.offer(4, Slot::Noops(1));
        assert_eq!(drain(&mut q), vec![(4, Slot::Noops(1)), (5, Slot::Op("e"))]);
        // A range that would run past the last number ends there.
        q.offer(6, Slot::Noops(u64::MAX));
        drain(&mut q);
        assert_eq!(q.next(), u64::MAX);
    }

    #[test]
    fn what_waits_ahead_is_bounded() {
        let mut q = InOrder::new(1, 4);
        assert_eq!(q.offer(4, Slot::Op("d")), Offer::Taken);
        assert_eq!(q.offer(5, Slot::Op("e")), Offer::TooFar);
        assert_eq!(q.held(), 1);
        q.offer(1, Slot::Noops(3));
        drain(&mut q);
        assert_eq!(q.offer(5, Slot::Op("e")), Offer::Taken, "in reach now");
    }
}
