//! The texts of `user_message`s on their way to a user's connections: a
//! fixed number of fixed-size slots, shared by every copy of a message the
//! core queues (a fan-out to four connections holds one slot, not four).
//!
//! A [`Shared`] is a counted reference to a slot: cloning it (the core does,
//! once per connection) adds a reference, dropping it (after the write, or
//! when the core drops a queued message) removes one, and the slot is free
//! again with the last. Every slot is behind one blocking mutex held for a
//! few instructions; a full pool refuses the message, which the sender is
//! told about (`BUSY`), so nothing is lost silently.

use core::cell::RefCell;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use heapless::String;

/// Longest text kept, in bytes: the JSON string as the client sent it.
pub const MAX_TEXT: usize = 1024;

struct Slot {
    refs: u16,
    from: u32,
    text: String<MAX_TEXT>,
}

impl Slot {
    const EMPTY: Slot = Slot {
        refs: 0,
        from: 0,
        text: String::new(),
    };
}

/// `N` message slots of [`MAX_TEXT`] bytes, for a `static`.
pub struct MessagePool<const N: usize> {
    slots: Mutex<CriticalSectionRawMutex, RefCell<[Slot; N]>>,
}

impl<const N: usize> MessagePool<N> {
    /// An empty pool.
    pub const fn new() -> Self {
        MessagePool {
            slots: Mutex::new(RefCell::new([Slot::EMPTY; N])),
        }
    }

    /// Stores `text` sent by connection `from` in a free slot; `None` when
    /// every slot is taken or the text is longer than [`MAX_TEXT`].
    pub fn store(&'static self, from: u32, text: &str) -> Option<Shared<N>> {
        self.slots.lock(|cell| {
            let mut slots = cell.borrow_mut();
            let (index, slot) = slots.iter_mut().enumerate().find(|(_, s)| s.refs == 0)?;
            slot.text.clear();
            slot.text.push_str(text).ok()?;
            slot.from = from;
            slot.refs = 1;
            Some(Shared {
                pool: self,
                index: index as u8,
            })
        })
    }

    /// Slots in use.
    pub fn in_use(&self) -> usize {
        self.slots
            .lock(|cell| cell.borrow().iter().filter(|s| s.refs > 0).count())
    }
}

impl<const N: usize> Default for MessagePool<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// A counted reference to a stored message.
pub struct Shared<const N: usize> {
    pool: &'static MessagePool<N>,
    index: u8,
}

impl<const N: usize> Shared<N> {
    /// Runs `f` on the sending connection's id and the text.
    pub fn read<R>(&self, f: impl FnOnce(u32, &str) -> R) -> R {
        self.pool.slots.lock(|cell| {
            let slots = cell.borrow();
            let slot = &slots[usize::from(self.index)];
            f(slot.from, &slot.text)
        })
    }
}

impl<const N: usize> Clone for Shared<N> {
    fn clone(&self) -> Self {
        self.pool.slots.lock(|cell| {
            let slot = &mut cell.borrow_mut()[usize::from(self.index)];
            slot.refs = slot.refs.saturating_add(1);
        });
        Shared {
            pool: self.pool,
            index: self.index,
        }
    }
}

impl<const N: usize> Drop for Shared<N> {
    fn drop(&mut self) {
        self.pool.slots.lock(|cell| {
            let slot = &mut cell.borrow_mut()[usize::from(self.index)];
            slot.refs = slot.refs.saturating_sub(1);
        });
    }
}

impl<const N: usize> core::fmt::Debug for Shared<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Shared({})", self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static POOL: MessagePool<2> = MessagePool::new();

    #[test]
    fn a_slot_is_free_again_with_its_last_reference() {
        let a = POOL.store(7, "hello").unwrap();
        let copies = [a.clone(), a.clone()];
        let b = POOL.store(8, "world").unwrap();
        assert!(POOL.store(9, "full").is_none(), "two slots, two messages");
        assert_eq!(copies[1].read(|from, t| (from, t.len())), (7, 5));
        drop(a);
        drop(copies);
        let c = POOL.store(9, "again").unwrap();
        assert_eq!(c.read(|from, t| (from, t == "again")), (9, true));
        assert!(b.read(|_, t| t == "world"));
        assert_eq!(POOL.in_use(), 2);
        let long = [b'x'; MAX_TEXT + 1];
        drop(c);
        assert!(POOL
            .store(1, core::str::from_utf8(&long).unwrap())
            .is_none());
        assert_eq!(POOL.in_use(), 1, "a refused text holds no slot");
    }
}
