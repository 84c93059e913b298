//! `StdRawMutex`: an embassy-sync raw mutex backed by `std::sync::Mutex`.
//!
//! embassy's `CriticalSectionRawMutex` on a std host takes one process-wide
//! lock, so every shard would contend on it. Each `StdRawMutex` is its own
//! lock, so shards are truly independent.

use embassy_sync::blocking_mutex::raw::RawMutex;

/// A per-instance blocking lock for [`userlane_core::shim::SharedFactory`].
#[derive(Debug, Default)]
pub struct StdRawMutex(std::sync::Mutex<()>);

// SAFETY: `RawMutex` requires that `lock` gives mutual exclusion between all
// callers of the same instance for the duration of the closure. We hold the
// guard of a `std::sync::Mutex` owned by this instance while `f` runs, and
// std's mutex provides exactly that exclusion across threads. A poisoned
// mutex (a panic while `f` ran) still excludes other holders; we take the
// guard out of the poison error, as the protected data lives in the embassy
// `Mutex` around `RefCell`, whose borrow flag catches any torn state.
unsafe impl RawMutex for StdRawMutex {
    const INIT: Self = StdRawMutex(std::sync::Mutex::new(()));

    fn lock<R>(&self, f: impl FnOnce() -> R) -> R {
        let _guard = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
}
