//! Security scenarios 4, 5 and 6: creation from many threads, interleaved
//! sending, and interleaved connection management.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use userlane_core::shim::{shard_for, SharedFactory};

use userlane_core::{Config, Error, ManagerFactory, ManagerHandle, SendOutcome, Stats};
use userlane_tests::ops::Rng;
use userlane_tests::support::{at, ctx, Wire};

/// Scenario 4 — concurrent manager creation: 10 contexts created from 10 OS
/// threads at once, through the sharded shim (`userlane_core::shim`: each
/// user routed by `shard_for` to one of 2 `SharedFactory` shards), give 10
/// managers; over the shards `managers_active == 10`, `managers_created == 10`.
#[test]
fn scenario_04_ten_threads_create_ten_managers() {
    type Shard = SharedFactory<CriticalSectionRawMutex, u32, 16, 16, 64>;
    static SHARDS: [Shard; 2] = [
        Shard::new_static(Config::for_capacity(16, 16)),
        Shard::new_static(Config::for_capacity(16, 16)),
    ];
    let start = Arc::new(Barrier::new(10));
    let threads: Vec<_> = (0..10u64)
        .map(|i| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let user = format!("user_{i:02}");
                let shard = &SHARDS[shard_for(&user, SHARDS.len())];
                start.wait();
                let m = shard.create_manager(ctx(&user), at(i)).unwrap();
                // Asking again from the same thread returns the same manager.
                assert_eq!(shard.create_manager(ctx(&user), at(i)).unwrap(), m);
                (user, m)
            })
        })
        .collect();
    let created: Vec<(String, ManagerHandle)> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();

    assert_eq!(created.len(), 10);
    let distinct: HashSet<_> = created
        .iter()
        .map(|(user, m)| (shard_for(user, SHARDS.len()), *m))
        .collect();
    assert_eq!(distinct.len(), 10);
    for (user, m) in &created {
        let shard = &SHARDS[shard_for(user, SHARDS.len())];
        shard.read(|f| {
            assert_eq!(f.context(*m).unwrap().user_id(), user);
            assert_eq!(f.manager_for_user(user), Some(*m));
        });
    }
    let mut s = Stats::default();
    for shard in &SHARDS {
        s += shard.stats();
    }
    assert_eq!((s.managers_active, s.managers_created), (10, 10));
    assert_eq!(s.users_with_active_managers(), 10);
    // Both shards took part: users never contend on one global lock.
    assert!(SHARDS.iter().all(|sh| sh.stats().managers_active > 0));
}

/// Scenario 5 — concurrent sending: 5 users × 5 messages in a shuffled
/// interleaving; each connection gets exactly its 5, all its own, in order.
#[test]
fn scenario_05_interleaved_sends_reach_only_their_user() {
    type Factory = ManagerFactory<(usize, u32), 8, 8, 64>;
    let mut f = Factory::new(Config::for_capacity(8, 8)).unwrap();
    let mut managers = Vec::new();
    let mut conns = Vec::new();
    for u in 0..5 {
        let c = ctx(&format!("user_{u}"));
        let m = f.create_manager(c.clone(), at(0)).unwrap();
        conns.push(f.add_connection(m, &c, at(0)).unwrap());
        managers.push(m);
    }
    // Each user appears 5 times, in a shuffled order.
    let mut order: Vec<usize> = (0..25).map(|i| i % 5).collect();
    let mut rng = Rng::new(5);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u32 + 1) as usize);
    }
    let mut next = [0u32; 5];
    let mut wire = Wire::new();
    for (i, u) in order.into_iter().enumerate() {
        let outcome = f.send_to_user(managers[u], (u, next[u]), at(1)).unwrap();
        assert_eq!(
            outcome,
            SendOutcome::Queued {
                queued_for: 1,
                closed_slow: 0
            }
        );
        next[u] += 1;
        if i % 7 == 6 {
            wire.drain(&mut f, None);
        }
    }
    wire.drain(&mut f, None);
    for (u, c) in conns.iter().enumerate() {
        let expected: Vec<(usize, u32)> = (0..5).map(|n| (u, n)).collect();
        assert_eq!(wire.received(*c), expected, "user {u}");
    }
    assert_eq!(wire.total_messages(), 25);
    assert_eq!(f.stats().messages_transmitted, 25);
}

/// Scenario 6 — race in connection management: add 5, then interleave adding
/// 5 more with removing 3; 7 remain, all of that user, tables consistent.
#[test]
fn scenario_06_interleaved_add_and_remove_leave_seven() {
    type Factory = ManagerFactory<u32, 4, 16, 64>;
    let config = Config {
        max_connections_per_user: 10,
        ..Config::for_capacity(4, 16)
    };
    let mut f = Factory::new(config).unwrap();
    let alice = ctx("alice");
    let m = f.create_manager(alice.clone(), at(0)).unwrap();
    let mut conns: Vec<_> = (0..5)
        .map(|_| f.add_connection(m, &alice, at(1)).unwrap())
        .collect();
    assert_eq!(f.connection_count(m), Ok(5));

    // add #5, remove #0, add #6, remove #1, add #7, remove #2, add #8, add #9
    for step in 0..8 {
        if step % 2 == 1 && step < 6 {
            let victim = conns[step / 2];
            assert_eq!(
                f.remove_connection(m, victim, at(2)).map(|r| r.undelivered),
                Ok(0)
            );
        } else {
            conns.push(f.add_connection(m, &alice, at(2)).unwrap());
        }
    }
    let listed: Vec<_> = f.connections(m).unwrap().collect();
    assert_eq!(listed, conns[3..]);
    assert_eq!(listed.len(), 7);
    assert_eq!(f.connection_count(m), Ok(7));
    for c in &listed {
        assert_eq!(f.owner_of(*c), Ok(m));
        assert!(f.is_open(*c));
    }
    // New connections reuse the freed slots but never the removed handles.
    for gone in &conns[..3] {
        assert!(!listed.contains(gone));
        assert_eq!(
            f.remove_connection(m, *gone, at(3)),
            Err(Error::UnknownConnection(*gone))
        );
    }
    let s = f.stats();
    assert_eq!(
        (
            s.connections_active,
            s.total_connections_managed,
            s.connections_removed
        ),
        (7, 10, 3)
    );
    let ms = f.manager_stats(m).unwrap();
    assert_eq!((ms.connections, ms.connections_opened), (7, 10));
    assert!(s.is_consistent());
}
