//! A group's (or direct session's) remembered answers: the ids assigned most recently,
//! which are always consecutive (ids are assigned in order and forgotten oldest first),
//! so they sit in a ring indexed by id instead of a search tree.

use std::collections::VecDeque;

#[derive(Debug)]
pub(super) struct Window<T> {
    /// The id of `items[0]`.
    first: u64,
    items: VecDeque<T>,
}

impl<T> Default for Window<T> {
    fn default() -> Self {
        Window {
            first: 0,
            items: VecDeque::new(),
        }
    }
}

impl<T> Window<T> {
    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    pub(super) fn get(&self, id: u64) -> Option<&T> {
        let i = usize::try_from(id.checked_sub(self.first)?).ok()?;
        self.items.get(i)
    }

    /// Remembers `item` as id `id`, which must follow the last one remembered (any id
    /// when none is). Returns it, or `None` (and remembers nothing) for any other id.
    pub(super) fn push(&mut self, id: u64, item: T) -> Option<&T> {
        if self.items.is_empty() {
            self.first = id;
        } else if id != self.first + self.items.len() as u64 {
            return None;
        }
        self.items.push_back(item);
        self.items.back()
    }

    /// The oldest id remembered.
    pub(super) fn first_id(&self) -> Option<u64> {
        (!self.items.is_empty()).then_some(self.first)
    }

    /// Forgets the oldest; returns its id.
    pub(super) fn pop_first(&mut self) -> Option<u64> {
        self.items.pop_front()?;
        self.first += 1;
        Some(self.first - 1)
    }

    /// The items of ids `from` and after.
    pub(super) fn from(&self, from: u64) -> impl Iterator<Item = &T> {
        let skip = usize::try_from(from.saturating_sub(self.first)).unwrap_or(usize::MAX);
        self.items.iter().skip(skip)
    }
}

#[cfg(test)]
mod tests {
    use super::Window;

    #[test]
    fn holds_consecutive_ids_and_forgets_the_oldest() {
        let mut w = Window::default();
        assert_eq!(w.push(5, 'a'), Some(&'a'));
        assert_eq!(w.push(6, 'b'), Some(&'b'));
        assert_eq!(w.push(8, 'x'), None, "not the next id");
        assert_eq!(w.push(7, 'c'), Some(&'c'));
        assert_eq!(
            (w.get(4), w.get(5), w.get(7), w.get(8)),
            (None, Some(&'a'), Some(&'c'), None)
        );
        assert_eq!(w.from(6).collect::<String>(), "bc");
        assert_eq!(w.from(0).collect::<String>(), "abc");
        assert_eq!(w.from(9).count(), 0);
        assert_eq!(
            (w.pop_first(), w.first_id(), w.len()),
            (Some(5), Some(6), 2)
        );
        assert_eq!(
            (w.pop_first(), w.pop_first(), w.pop_first()),
            (Some(6), Some(7), None)
        );
        assert_eq!(w.first_id(), None);
        assert_eq!(w.push(42, 'z'), Some(&'z'), "empty: any id");
        assert_eq!(w.get(42), Some(&'z'));
    }
}
