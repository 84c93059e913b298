//! Security scenarios 11 and 16: isolation and per-connection order hold
//! under load, whatever the interleaving of sends and transmits.

use userlane_core::{Config, ManagerFactory, Transmit};
use userlane_tests::ops::Rng;
use userlane_tests::support::{at, ctx, Wire};

/// Scenario 11 — isolation under load: 10 users × 50 messages in a shuffled
/// interleaving, drained now and then → each connection gets exactly its 50,
/// in order.
#[test]
fn scenario_11_ten_users_fifty_messages_each_in_order() {
    type Factory = ManagerFactory<(usize, u32), 16, 16, 640>;
    let config = Config {
        queue_depth: 64,
        ..Config::for_capacity(16, 16)
    };
    let mut f = Factory::new(config).unwrap();
    let mut lanes = Vec::new();
    for u in 0..10 {
        let c = ctx(&format!("user_{u}"));
        let m = f.create_manager(c.clone(), at(0)).unwrap();
        lanes.push((m, f.add_connection(m, &c, at(0)).unwrap()));
    }
    let mut order: Vec<usize> = (0..500).map(|i| i % 10).collect();
    let mut rng = Rng::new(11);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u32 + 1) as usize);
    }
    let mut next = [0u32; 10];
    let mut wire = Wire::new();
    for (i, u) in order.into_iter().enumerate() {
        let (m, _) = lanes[u];
        assert_eq!(
            f.send_to_user(m, (u, next[u]), at(1)).unwrap().queued_for(),
            1
        );
        next[u] += 1;
        if i % 37 == 36 {
            wire.drain(&mut f, None);
        }
    }
    wire.drain(&mut f, None);
    for (u, (_, conn)) in lanes.iter().enumerate() {
        let expected: Vec<(usize, u32)> = (0..50).map(|n| (u, n)).collect();
        assert_eq!(wire.received(*conn), expected, "user {u}");
    }
    assert_eq!(wire.total_messages(), 500);
    let s = f.stats();
    assert_eq!((s.messages_transmitted, s.messages_dropped), (500, 0));
    assert_eq!(s.security_violations_detected, 0);
}

/// Scenario 16 — message ordering integrity (claimed by the seed, never
/// tested): 3 connections of one user, 1,000 messages, transmits drained in
/// random amounts between sends → each connection sees them in send order.
#[test]
fn scenario_16_thousand_messages_in_send_order_on_three_connections() {
    type Factory = ManagerFactory<u32, 2, 4, 64>;
    let depth = 16;
    let mut f = Factory::new(Config::for_capacity(2, 4)).unwrap();
    assert_eq!(f.config().queue_depth, depth);
    let alice = ctx("alice");
    let m = f.create_manager(alice.clone(), at(0)).unwrap();
    let conns: Vec<_> = (0..3)
        .map(|_| f.add_connection(m, &alice, at(0)).unwrap())
        .collect();
    let mut seen: Vec<Vec<u32>> = vec![Vec::new(); 3];
    let mut rng = Rng::new(16);
    let pop = |f: &mut Factory, k: usize, seen: &mut Vec<Vec<u32>>| match f.poll_transmit(conns[k])
    {
        Ok(Some(Transmit::Message(n))) => {
            seen[k].push(n);
            true
        }
        Ok(Some(Transmit::Close(c))) => panic!("connection {k} closed: {c:?}"),
        Ok(None) => false,
        Err(e) => panic!("connection {k} gone: {e}"),
    };
    for n in 0..1_000u32 {
        // Make room where a queue is full, so every send is accepted.
        for (k, c) in conns.iter().enumerate() {
            if f.queued(*c) == Ok(depth) {
                assert!(pop(&mut f, k, &mut seen));
            }
        }
        assert_eq!(f.send_to_user(m, n, at(1)).unwrap().queued_for(), 3);
        for k in 0..3 {
            for _ in 0..rng.below(3) {
                pop(&mut f, k, &mut seen);
            }
        }
    }
    for k in 0..3 {
        while pop(&mut f, k, &mut seen) {}
    }
    let expected: Vec<u32> = (0..1_000).collect();
    for (k, got) in seen.iter().enumerate() {
        assert_eq!(got, &expected, "connection {k}");
    }
    let s = f.stats();
    assert_eq!((s.messages_queued, s.messages_transmitted), (3_000, 3_000));
    assert_eq!(s.sends_refused, 0);
}
