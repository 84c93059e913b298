//! The shared pool of queued-message slots and the FIFO queues built on it.
//!
//! Every outbound queue and offline buffer takes its slots from one pool of
//! `N` entries, so preallocated memory grows with the total number of queued
//! messages, not with users × connections × queue depth. A queue is a singly
//! linked FIFO through the pool; handing an offline buffer to a connection is
//! an O(1) splice.

use crate::index::SlotIndex;
use crate::list::NIL;

/// A FIFO of pool slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fifo<I> {
    head: I,
    tail: I,
    /// Never more than the pool's `N` slots, which is below `I::LIMIT`.
    len: I,
}

impl<I: SlotIndex> Fifo<I> {
    pub(crate) const EMPTY: Fifo<I> = Fifo {
        head: I::NIL,
        tail: I::NIL,
        len: I::ZERO,
    };

    /// Items in the queue.
    pub(crate) fn len(&self) -> u32 {
        self.len.unpack()
    }
}

/// `N` message slots and their free list. Slots at or above `fresh` have
/// never been used; they are handed out after the free list is empty, which
/// lets [`Pool::new`] be a `const fn` with no initialization loop.
pub(crate) struct Pool<P, const N: usize, I> {
    items: [Option<P>; N],
    next: [I; N],
    free_head: u32,
    fresh: u32,
    free_len: u32,
}

impl<P, const N: usize, I: SlotIndex> Pool<P, N, I> {
    pub(crate) const fn new() -> Self {
        Pool {
            items: [const { None }; N],
            next: [I::NIL; N],
            free_head: NIL,
            fresh: 0,
            free_len: N as u32,
        }
    }

    /// Takes a free slot index, preferring recycled ones.
    fn take(&mut self) -> Option<u32> {
        let i = self.free_head;
        if i != NIL {
            self.free_head = self.next[i as usize].unpack();
        } else if (self.fresh as usize) < N {
            self.fresh += 1;
            return Some(self.fresh - 1);
        } else {
            return None;
        }
        Some(i)
    }

    /// Free slots.
    pub(crate) fn free(&self) -> u32 {
        self.free_len
    }

    /// Appends `item` to `q`, or gives it back when the pool is empty.
    pub(crate) fn push(&mut self, q: &mut Fifo<I>, item: P) -> Result<(), P> {
        let Some(i) = self.take() else {
            return Err(item);
        };
        self.free_len -= 1;
        self.items[i as usize] = Some(item);
        self.next[i as usize] = I::NIL;
        if q.tail == I::NIL {
            q.head = I::pack(i);
        } else {
            self.next[q.tail.unpack() as usize] = I::pack(i);
        }
        q.tail = I::pack(i);
        q.len = I::pack(q.len() + 1);
        Ok(())
    }

    /// Takes the oldest item of `q`.
    pub(crate) fn pop(&mut self, q: &mut Fifo<I>) -> Option<P> {
        let i = q.head.unpack();
        if i == NIL {
            return None;
        }
        q.head = self.next[i as usize];
        if q.head == I::NIL {
            q.tail = I::NIL;
        }
        q.len = I::pack(q.len() - 1);
        self.next[i as usize] = I::pack(self.free_head);
        self.free_head = i;
        self.free_len += 1;
        self.items[i as usize].take()
    }

    /// Empties `q`, returning how many items were discarded.
    pub(crate) fn clear(&mut self, q: &mut Fifo<I>) -> u32 {
        let mut n = 0;
        while self.pop(q).is_some() {
            n += 1;
        }
        n
    }

    /// Moves every item of `src` to the end of `dst`, keeping order. O(1).
    pub(crate) fn append(&mut self, dst: &mut Fifo<I>, src: &mut Fifo<I>) {
        if src.head == I::NIL {
            return;
        }
        if dst.tail == I::NIL {
            dst.head = src.head;
        } else {
            self.next[dst.tail.unpack() as usize] = src.head;
        }
        dst.tail = src.tail;
        dst.len = I::pack(dst.len() + src.len());
        *src = Fifo::EMPTY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_share_the_pool_and_keep_order() {
        let mut pool: Pool<u32, 4, u16> = Pool::new();
        let (mut a, mut b) = (Fifo::EMPTY, Fifo::EMPTY);
        assert_eq!(pool.push(&mut a, 1), Ok(()));
        assert_eq!(pool.push(&mut b, 10), Ok(()));
        assert_eq!(pool.push(&mut a, 2), Ok(()));
        assert_eq!(pool.push(&mut b, 11), Ok(()));
        assert_eq!(pool.free(), 0);
        assert_eq!(pool.push(&mut a, 3), Err(3));
        assert_eq!(pool.pop(&mut a), Some(1));
        assert_eq!(pool.push(&mut b, 12), Ok(()));
        pool.append(&mut a, &mut b);
        assert_eq!((a.len(), b.len()), (4, 0));
        let drained: std::vec::Vec<u32> = core::iter::from_fn(|| pool.pop(&mut a)).collect();
        assert_eq!(drained, [2, 10, 11, 12]);
        assert_eq!(pool.free(), 4);
        assert_eq!(pool.pop(&mut b), None);
    }

    #[test]
    fn clear_returns_every_slot() {
        let mut pool: Pool<u8, 3, u32> = Pool::new();
        let mut q = Fifo::EMPTY;
        for i in 0..3 {
            pool.push(&mut q, i).unwrap();
        }
        assert_eq!(pool.clear(&mut q), 3);
        assert_eq!((pool.free(), q), (3, Fifo::EMPTY));
    }
}
