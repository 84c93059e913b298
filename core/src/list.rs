//! Intrusive doubly-linked lists over table slots, addressed by `u32` index.
//!
//! Every list the factory keeps (a user's connections, the idle order, the
//! empty-manager order, connections with pending events) threads through
//! links stored in the slots themselves, so membership costs no extra memory
//! and every insert and unlink is O(1).

/// "No slot": the end of a list.
pub(crate) const NIL: u32 = u32::MAX;

/// The links of one slot in one list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) prev: u32,
    pub(crate) next: u32,
}

impl Link {
    pub(crate) const DETACHED: Link = Link { prev: NIL, next: NIL };
}

/// Head, tail and length of one list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct List {
    pub(crate) head: u32,
    pub(crate) tail: u32,
    pub(crate) len: u32,
}

impl List {
    pub(crate) const EMPTY: List = List { head: NIL, tail: NIL, len: 0 };

    /// The first slot, if any.
    pub(crate) fn front(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }

    /// Appends slot `i`, which must not be in this list.
    pub(crate) fn push_back<T>(&mut self, slots: &mut [T], i: u32, link: fn(&mut T) -> &mut Link) {
        let old_tail = self.tail;
        *link(&mut slots[i as usize]) = Link { prev: old_tail, next: NIL };
        if old_tail == NIL {
            self.head = i;
        } else {
            link(&mut slots[old_tail as usize]).next = i;
        }
        self.tail = i;
        self.len += 1;
    }

    /// Removes slot `i`, which must be in this list.
    pub(crate) fn unlink<T>(&mut self, slots: &mut [T], i: u32, link: fn(&mut T) -> &mut Link) {
        let Link { prev, next } = *link(&mut slots[i as usize]);
        if prev == NIL {
            self.head = next;
        } else {
            link(&mut slots[prev as usize]).next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            link(&mut slots[next as usize]).prev = prev;
        }
        *link(&mut slots[i as usize]) = Link::DETACHED;
        self.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(l: &mut Link) -> &mut Link {
        l
    }

    fn collect(list: &List, slots: &[Link]) -> std::vec::Vec<u32> {
        let mut out = std::vec::Vec::new();
        let mut i = list.head;
        while i != NIL {
            out.push(i);
            i = slots[i as usize].next;
        }
        out
    }

    #[test]
    fn push_and_unlink_keep_order() {
        let mut slots = [Link::DETACHED; 5];
        let mut list = List::EMPTY;
        for i in [3, 0, 4, 1] {
            list.push_back(&mut slots, i, link);
        }
        assert_eq!(collect(&list, &slots), [3, 0, 4, 1]);
        list.unlink(&mut slots, 4, link);
        list.unlink(&mut slots, 3, link);
        assert_eq!(collect(&list, &slots), [0, 1]);
        assert_eq!((list.head, list.tail, list.len), (0, 1, 2));
        list.unlink(&mut slots, 1, link);
        list.unlink(&mut slots, 0, link);
        assert_eq!(list, List::EMPTY);
        assert_eq!(list.front(), None);
    }
}
