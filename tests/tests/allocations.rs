//! After warm-up, the hot path allocates nothing: `send_to_user`,
//! `add_connection` and `remove_connection` (and the polling around them)
//! run on preallocated tables. A counting global allocator (one per test
//! binary, hence this file) counts the allocations of the current thread
//! while counting is switched on.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use userlane_core::{CloseCode, Config, Event, ManagerFactory, Transmit};
use userlane_tests::support::{at, ctx};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by this thread while `f` runs.
fn allocations_in<T>(f: impl FnOnce() -> T) -> (T, u64) {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    let out = f();
    COUNTING.with(|on| on.set(false));
    (out, ALLOCATIONS.with(Cell::get))
}

#[test]
fn the_counter_sees_an_allocation() {
    let (v, n) = allocations_in(|| std::hint::black_box(vec![7u8; 32]));
    assert_eq!((v.len(), n), (32, 1));
    let (_, none) = allocations_in(|| std::hint::black_box(3 + 4));
    assert_eq!(none, 0);
}

#[test]
fn hot_path_allocates_nothing_after_warm_up() {
    // A server-like payload: shared bytes, created before counting; fan-out
    // clones the pointer.
    type Factory = ManagerFactory<Arc<[u8]>, 16, 64, 1024>;
    let mut f = Box::new(Factory::new(Config::for_capacity(16, 64)).unwrap());
    let payload: Arc<[u8]> = Arc::from(&b"{\"type\":\"tick\"}"[..]);
    let alice = ctx("alice");
    let bob = ctx("bob");
    let m = f.create_manager(alice.clone(), at(0)).unwrap();
    let mb = f.create_manager(bob.clone(), at(0)).unwrap();
    let steady = f.add_connection(m, &alice, at(0)).unwrap();
    while f.poll_event().is_some() {}

    let mut transmitted = 0u64;
    let mut round = |f: &mut Factory, i: u64| {
        let now = at(i);
        let c = f.add_connection(m, &alice, now).unwrap();
        assert_eq!(
            f.send_to_user(m, payload.clone(), now)
                .unwrap()
                .queued_for(),
            2
        );
        assert!(f.send_to_user(mb, payload.clone(), now).is_ok()); // offline buffer
        f.handle_activity(steady, now).unwrap();
        while let Some(e) = f.poll_event() {
            if let Event::Transmit(conn) = e {
                while let Ok(Some(Transmit::Message(_))) = f.poll_transmit(conn) {
                    transmitted += 1;
                }
            }
        }
        if i % 2 == 0 {
            f.remove_connection(m, c, now).unwrap();
        } else {
            f.close_connection(m, c, CloseCode::NORMAL, now).unwrap();
            while f.poll_transmit(c).is_ok_and(|t| t.is_some()) {}
            while f.poll_event().is_some() {}
            f.handle_closed(c, now).unwrap();
        }
        let cb = f.add_connection(mb, &bob, now).unwrap(); // replays the offline message
        while f.poll_transmit(cb).is_ok_and(|t| t.is_some()) {}
        f.remove_connection(mb, cb, now).unwrap();
        while f.poll_event().is_some() {}
        let _ = f.poll_timeout();
        f.handle_timeout(now);
        assert!(f.stats().is_consistent());
    };
    // Warm-up: whatever lazy allocation exists happens here.
    for i in 0..4 {
        round(&mut f, i);
    }
    let ((), allocations) = allocations_in(|| {
        for i in 4..1_004 {
            round(&mut f, i);
        }
    });
    assert_eq!(allocations, 0, "the hot path allocated");
    // The counted rounds did the work: 2 queued messages per round delivered
    // on the wire (one per open connection of alice).
    assert_eq!(transmitted, 2 * 1_004);
    let s = f.stats();
    assert_eq!(s.total_connections_managed, 1 + 2 * 1_004);
    assert_eq!(s.offline_replayed, 1_004);
    assert_eq!(
        Arc::strong_count(&payload),
        1,
        "no payload copy is left behind"
    );
}
