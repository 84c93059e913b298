//! `StdRawMutex`: an embassy-sync raw mutex backed by `std::sync::Mutex`.
//!
//! embassy's `CriticalSectionRawMutex` on a std host takes one process-wide
//! lock, so every shard would contend on it. Each `StdRawMutex` is its own
//! lock, so shards are truly independent.

use std::sync::atomic::{AtomicUsize, Ordering};

use embassy_sync::blocking_mutex::raw::RawMutex;

/// A per-instance blocking lock for [`userlane_core::shim::SharedFactory`].
///
/// **A closure run under the lock must not take the same lock again.** The
/// shard's core runs the application's code in a few places while it holds
/// the lock (the `log` facade's logger for the core's warnings, the `Drop`
/// of a payload's owner); such code must not call back into the same shard
/// (`ServerHandle::send_to_user`, `send_text`, `disconnect_user`, …): it
/// would wait for itself forever. A re-lock on the thread that holds the
/// lock panics with a message that says so, instead of hanging the thread
/// (and with it every admission, which reads every shard).
#[derive(Debug, Default)]
pub struct StdRawMutex {
    lock: std::sync::Mutex<()>,
    /// The id of the thread inside `lock` (see [`thread_id`]), 0 when none.
    owner: AtomicUsize,
}

/// A number unique to the calling thread while it lives, never 0: the
/// address of a thread-local.
fn thread_id() -> usize {
    thread_local!(static ID: u8 = const { 0 });
    ID.with(|id| std::ptr::from_ref(id) as usize)
}

/// Clears the owner when the closure returns or unwinds.
struct Owned<'a>(&'a AtomicUsize);

impl Drop for Owned<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

// SAFETY: `RawMutex` requires that `lock` gives mutual exclusion between all
// callers of the same instance for the duration of the closure. We hold the
// guard of a `std::sync::Mutex` owned by this instance while `f` runs, and
// std's mutex provides exactly that exclusion across threads. A same-thread
// re-lock never reaches std's mutex (it panics first, see below), so no
// caller ever holds two guards of it.
//
// A panic while `f` ran poisons std's mutex; we take the guard out of the
// poison error, so the shard stays usable. Nothing detects state that the
// panic left half-updated: the embassy `Mutex` around a `RefCell` only
// catches a borrow that is still active, and unwinding releases it. What
// makes this sound is that the protected data is only reached through safe
// Rust (the core is `#![forbid(unsafe_code)]`), so a half-finished
// operation can break the core's bookkeeping, never memory safety; the core
// is written to leave its tables consistent at every point where it calls
// out (logging, dropping a payload).
unsafe impl RawMutex for StdRawMutex {
    const INIT: Self = StdRawMutex {
        lock: std::sync::Mutex::new(()),
        owner: AtomicUsize::new(0),
    };

    fn lock<R>(&self, f: impl FnOnce() -> R) -> R {
        let me = thread_id();
        // Only this thread stores its own id, so reading it back means this
        // thread is inside `f` of this very lock.
        assert!(
            self.owner.load(Ordering::Acquire) != me,
            "StdRawMutex locked again on the thread that holds it: code run under a shard's \
             lock (a logger, a payload's Drop) called back into the same shard, which would \
             wait for itself forever; defer that call (for example to a task or a channel)"
        );
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.owner.store(me, Ordering::Release);
        let _owned = Owned(&self.owner);
        f()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::sync::Arc;

    /// Two threads increment a non-atomic counter under the lock; without
    /// mutual exclusion some increments would be lost.
    #[test]
    fn lock_excludes_other_threads() {
        struct Shared {
            mutex: StdRawMutex,
            counter: Cell<u64>,
        }
        // SAFETY (test only): `counter` is only touched inside `mutex.lock`.
        unsafe impl Sync for Shared {}
        let shared = Arc::new(Shared {
            mutex: StdRawMutex::INIT,
            counter: Cell::new(0),
        });
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = shared.clone();
                std::thread::spawn(move || {
                    for _ in 0..100_000 {
                        s.mutex.lock(|| {
                            let v = s.counter.get();
                            std::hint::black_box(v);
                            s.counter.set(v + 1);
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(shared.counter.get(), 400_000);
    }

    #[test]
    fn lock_returns_the_closure_value_and_survives_a_panic() {
        let m = Arc::new(StdRawMutex::INIT);
        let m2 = m.clone();
        let _ = std::thread::spawn(move || m2.lock(|| panic!("boom"))).join();
        assert_eq!(m.lock(|| 7), 7);
    }

    #[test]
    fn a_relock_on_the_same_thread_panics_instead_of_hanging() {
        let m = Arc::new(StdRawMutex::INIT);
        let m2 = m.clone();
        // On a thread of its own: a hang fails the test by its timeout
        // instead of hanging the test binary.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                m2.lock(|| m2.lock(|| ()));
            }));
            let message = r.err().and_then(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            });
            let _ = tx.send(message);
        });
        let message = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a same-thread re-lock hung instead of panicking");
        let message = message.expect("a same-thread re-lock did not panic");
        assert!(
            message.contains("locked again on the thread that holds it"),
            "{message}"
        );
        // The outer lock was released by the unwinding: usable again.
        assert_eq!(m.lock(|| 3), 3);
        // Other threads still wait for the holder instead of panicking.
        let m3 = m.clone();
        let held = m.lock(|| std::thread::spawn(move || m3.lock(|| 5)));
        assert_eq!(held.join().unwrap(), 5);
    }
}
