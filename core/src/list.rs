//! Intrusive doubly-linked lists over table slots, addressed by `u32` index.
//!
//! Every list the factory keeps (a user's connections, the idle order, the
//! empty-manager order, connections with pending events) threads through
//! links stored in the slots themselves, so membership costs no extra memory
//! and every insert and unlink is O(1).

/// "No slot": the end of a list.
pub(crate) const NIL: u32 = u32::MAX;

use crate::index::SlotIndex;

/// The links of one slot in one list, stored as `I`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Link<I> {
    prev: I,
    next: I,
}

impl<I: SlotIndex> Link<I> {
    pub(crate) const DETACHED: Link<I> = Link {
        prev: I::NIL,
        next: I::NIL,
    };

    pub(crate) fn new(prev: u32, next: u32) -> Self {
        Link {
            prev: I::pack(prev),
            next: I::pack(next),
        }
    }
    pub(crate) fn prev(&self) -> u32 {
        self.prev.unpack()
    }
    pub(crate) fn next(&self) -> u32 {
        self.next.unpack()
    }
    pub(crate) fn set_prev(&mut self, v: u32) {
        self.prev = I::pack(v);
    }
    pub(crate) fn set_next(&mut self, v: u32) {
        self.next = I::pack(v);
    }
}

/// Head, tail and length of one list, stored as `I` (a list never holds
/// more entries than its table has slots, which is below `I::LIMIT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct List<I> {
    head: I,
    tail: I,
    len: I,
}

impl<I: SlotIndex> List<I> {
    pub(crate) const EMPTY: List<I> = List {
        head: I::NIL,
        tail: I::NIL,
        len: I::ZERO,
    };

    /// The first slot, or [`NIL`].
    pub(crate) fn head(&self) -> u32 {
        self.head.unpack()
    }

    /// Entries in the list.
    pub(crate) fn len(&self) -> u32 {
        self.len.unpack()
    }

    /// The first slot, if any.
    pub(crate) fn front(&self) -> Option<u32> {
        let head = self.head();
        (head != NIL).then_some(head)
    }

    /// Appends slot `i`, which must not be in this list.
    pub(crate) fn push_back<T>(
        &mut self,
        slots: &mut [T],
        i: u32,
        link: fn(&mut T) -> &mut Link<I>,
    ) {
        let old_tail = self.tail.unpack();
        *link(&mut slots[i as usize]) = Link::new(old_tail, NIL);
        if old_tail == NIL {
            self.head = I::pack(i);
        } else {
            link(&mut slots[old_tail as usize]).set_next(i);
        }
        self.tail = I::pack(i);
        self.len = I::pack(self.len() + 1);
    }

    /// Removes slot `i`, which must be in this list.
    pub(crate) fn unlink<T>(&mut self, slots: &mut [T], i: u32, link: fn(&mut T) -> &mut Link<I>) {
        let l = *link(&mut slots[i as usize]);
        let (prev, next) = (l.prev(), l.next());
        if prev == NIL {
            self.head = I::pack(next);
        } else {
            link(&mut slots[prev as usize]).set_next(next);
        }
        if next == NIL {
            self.tail = I::pack(prev);
        } else {
            link(&mut slots[next as usize]).set_prev(prev);
        }
        *link(&mut slots[i as usize]) = Link::DETACHED;
        self.len = I::pack(self.len() - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(l: &mut Link<u16>) -> &mut Link<u16> {
        l
    }

    fn collect(list: &List<u16>, slots: &[Link<u16>]) -> std::vec::Vec<u32> {
        let mut out = std::vec::Vec::new();
        let mut i = list.head();
        while i != NIL {
            out.push(i);
            i = slots[i as usize].next();
        }
        out
    }

    #[test]
    fn push_and_unlink_keep_order() {
        let mut slots = [Link::<u16>::DETACHED; 5];
        let mut list = List::EMPTY;
        for i in [3, 0, 4, 1] {
            list.push_back(&mut slots, i, link);
        }
        assert_eq!(collect(&list, &slots), [3, 0, 4, 1]);
        list.unlink(&mut slots, 4, link);
        list.unlink(&mut slots, 3, link);
        assert_eq!(collect(&list, &slots), [0, 1]);
        assert_eq!((list.head(), list.tail.unpack(), list.len()), (0, 1, 2));
        list.unlink(&mut slots, 1, link);
        list.unlink(&mut slots, 0, link);
        assert_eq!(list, List::EMPTY);
        assert_eq!(list.front(), None);
    }
}
