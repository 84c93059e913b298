//! Per-connection wake flags. One task drives a connection's reader, writer
//! and timers; each source of wakes has its own waker that sets its own bit,
//! so a poll touches only the parts that can make progress: a message queued
//! by the core does not make the reader try (and fail) another socket read,
//! and bytes arriving on the socket do not make the writer lock the shard.
//!
//! The same flags carry the two signals from outside the task: the core
//! closed the connection (start the close grace) and the shutdown deadline
//! passed (drop the socket): a few bytes in one allocation the task holds
//! anyway, where a channel and an event listener per connection would cost
//! most of a kilobyte.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};

use futures_util::task::AtomicWaker;

/// The socket may be readable or writable (tungstenite's read and write
/// wakers: async-tungstenite wakes both on either readiness).
pub(crate) const SOCKET: u8 = 1;
/// The core has something for this connection (a queued message, its close
/// frame, or it is gone).
pub(crate) const CORE: u8 = 2;
/// One of the connection's timers (ping, close deadline, activity report) fired.
pub(crate) const TIMER: u8 = 16;
/// The core closed the connection: its flush is now bounded by `close_grace`.
pub(crate) const CLOSING: u8 = 4;
/// The shutdown deadline passed: drop the socket now.
pub(crate) const KILL: u8 = 8;
/// Set while the task polls: wakes then only set their bit, and the poll
/// looks at the flags again before it returns instead of being rescheduled.
const POLLING: u8 = 0x80;

/// The wake flags of one connection and the waker of the task that drives it.
/// Its own waker (via [`Wake`]) sets [`CORE`]; [`Signals::waker`] makes
/// one that sets another bit ([`SOCKET`], [`TIMER`]).
#[derive(Debug)]
pub(crate) struct Signals {
    flags: AtomicU8,
    task: AtomicWaker,
}

impl Signals {
    /// Flags for a connection not polled yet: every source counts as woken,
    /// so the first poll looks at all of them.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Signals {
            flags: AtomicU8::new(SOCKET | CORE | TIMER),
            task: AtomicWaker::new(),
        })
    }

    /// Sets `bits` and wakes the task, unless it is polling right now (then
    /// it sees the bits before it returns).
    pub(crate) fn raise(&self, bits: u8) {
        let before = self.flags.fetch_or(bits, Ordering::AcqRel);
        if before & POLLING == 0 {
            self.task.wake();
        }
    }

    /// Starts a poll of the task whose waker is `task`.
    pub(crate) fn begin_poll(&self, task: &Waker) {
        self.task.register(task);
        self.flags.fetch_or(POLLING, Ordering::AcqRel);
    }

    /// Takes the bits raised so far (the poll goes on).
    pub(crate) fn take(&self) -> u8 {
        self.flags.fetch_and(POLLING, Ordering::AcqRel) & !POLLING
    }

    /// Ends a poll if nothing was raised since the last [`take`](Self::take):
    /// later raises wake the task. Returns false (still polling) otherwise.
    pub(crate) fn try_end_poll(&self) -> bool {
        self.flags
            .compare_exchange(POLLING, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Ends a poll early, with `bits` raised for the next one, and asks the
    /// executor to poll the task again (a cooperative yield).
    pub(crate) fn yield_with(&self, bits: u8, task: &Waker) {
        self.flags.fetch_or(bits, Ordering::AcqRel);
        self.flags.fetch_and(!POLLING, Ordering::AcqRel);
        task.wake_by_ref();
    }

    /// A waker that raises `bit`.
    pub(crate) fn waker(self: &Arc<Self>, bit: u8) -> Waker {
        Waker::from(Arc::new(BitWake {
            signals: self.clone(),
            bit,
        }))
    }
}

impl Wake for Signals {
    fn wake(self: Arc<Self>) {
        self.raise(CORE);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.raise(CORE);
    }
}

/// A waker that raises one bit on the connection's flags.
struct BitWake {
    signals: Arc<Signals>,
    bit: u8,
}

impl Wake for BitWake {
    fn wake(self: Arc<Self>) {
        self.signals.raise(self.bit);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.signals.raise(self.bit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn each_waker_raises_its_own_bit_and_wakes_the_task_only_outside_a_poll() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let task = Waker::from(count.clone());
        let s = Signals::new();
        s.begin_poll(&task);
        assert_eq!(
            s.take(),
            SOCKET | CORE | TIMER,
            "a new connection polls everything"
        );
        assert!(s.try_end_poll());

        // Outside a poll: the bit is set and the task woken.
        let core = Waker::from(s.clone());
        core.wake_by_ref();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        s.begin_poll(&task);
        assert_eq!(s.take(), CORE);

        // During a poll: only the bit; the poll cannot end until it took it.
        s.waker(SOCKET).wake();
        s.waker(TIMER).wake_by_ref();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(!s.try_end_poll());
        assert_eq!(s.take(), SOCKET | TIMER);
        assert!(s.try_end_poll());

        // Signals from outside the task: the first wakes it, the second
        // finds it woken already (the next poll registers again).
        s.raise(CLOSING);
        s.raise(KILL);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        s.begin_poll(&task);
        assert_eq!(s.take(), CLOSING | KILL);

        // A yield keeps the bits for the next poll and wakes the task.
        s.yield_with(SOCKET, &task);
        assert_eq!(count.0.load(Ordering::SeqCst), 3);
        s.begin_poll(&task);
        assert_eq!(s.take(), SOCKET);
        assert!(s.try_end_poll());
    }
}
