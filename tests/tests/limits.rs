//! Security scenarios 8, 10 and 17: limits are typed and counted, the same
//! work succeeds at every scale, and a freed place is free at once, forever.

use userlane_core::{
    CloseCode, CloseFrame, CloseReason, Config, Error, Limit, ManagerFactory, Transmit,
};
use userlane_tests::support::{at, ctx, Wire};

/// Scenario 8 — per-user limit: with a limit of 3 the 4th connection fails
/// with a typed limit error counted in `resource_limit_hits`; after one
/// removal the next add succeeds and the count is 3 again.
#[test]
fn scenario_08_per_user_limit_is_typed_counted_and_released() {
    type Factory = ManagerFactory<u32, 4, 16, 64>;
    let config = Config {
        max_connections_per_user: 3,
        ..Config::for_capacity(4, 16)
    };
    let mut f = Factory::new(config).unwrap();
    let alice = ctx("alice");
    let m = f.create_manager(alice.clone(), at(0)).unwrap();
    let conns: Vec<_> = (0..3)
        .map(|_| f.add_connection(m, &alice, at(0)).unwrap())
        .collect();
    assert_eq!(f.connection_count(m), Ok(3));

    let err = f.add_connection(m, &alice, at(1)).unwrap_err();
    assert_eq!(err, Error::LimitReached(Limit::ConnectionsPerUser));
    assert_eq!(
        err.to_string(),
        "limit reached: user reached the maximum number of connections"
    );
    let s = f.stats();
    assert_eq!(
        (s.resource_limit_hits(), s.rejected_connections_per_user),
        (1, 1)
    );
    assert_eq!(f.manager_stats(m).unwrap().limit_hits, 1);
    assert_eq!(f.connection_count(m), Ok(3));
    // Another user is not limited by alice's connections.
    let bob = ctx("bob");
    let mb = f.create_manager(bob.clone(), at(1)).unwrap();
    assert!(f.add_connection(mb, &bob, at(1)).is_ok());

    f.remove_connection(m, conns[0], at(2)).unwrap();
    assert_eq!(f.connection_count(m), Ok(2));
    let again = f.add_connection(m, &alice, at(3)).unwrap();
    assert_eq!(f.connection_count(m), Ok(3));
    assert_eq!(f.owner_of(again), Ok(m));
    assert_eq!(f.stats().resource_limit_hits(), 1);
    assert!(f.stats().is_consistent());
}

/// Scenario 10 — scaling: 5, 10 and 15 users do the same work (connect,
/// 3 messages each, deactivate) without a single error. Timing belongs to
/// the benchmarks, not here.
#[test]
fn scenario_10_same_work_at_5_10_and_15_users() {
    type Factory = ManagerFactory<(usize, u32), 16, 16, 64>;
    let mut f = Factory::new(Config::for_capacity(16, 16)).unwrap();
    let mut wire = Wire::new();
    for (round, n) in [5usize, 10, 15].into_iter().enumerate() {
        let now = round as u64;
        let before = f.stats();
        let mut lanes = Vec::new();
        for u in 0..n {
            let c = ctx(&format!("user_{u}"));
            let m = f.create_manager(c.clone(), at(now)).unwrap();
            lanes.push((m, f.add_connection(m, &c, at(now)).unwrap()));
        }
        for k in 0..3 {
            for (u, (m, _)) in lanes.iter().enumerate() {
                assert_eq!(f.send_to_user(*m, (u, k), at(now)).unwrap().queued_for(), 1);
            }
        }
        wire.drain(&mut f, Some(at(now)));
        for (u, (m, conn)) in lanes.iter().enumerate() {
            assert_eq!(wire.received(*conn), [(u, 0), (u, 1), (u, 2)]);
            assert_eq!(f.deactivate(*m, at(now)), Ok(1));
        }
        wire.drain(&mut f, Some(at(now)));
        let s = f.stats();
        assert_eq!(s.managers_created - before.managers_created, n as u64);
        assert_eq!(
            s.messages_transmitted - before.messages_transmitted,
            3 * n as u64
        );
        assert_eq!((s.managers_active, s.connections_active), (0, 0));
    }
    let s = f.stats();
    assert_eq!((s.managers_created, s.messages_transmitted), (30, 90));
    // Not one refusal of any kind.
    assert_eq!(
        (
            s.sends_refused,
            s.resource_limit_hits(),
            s.security_violations_detected,
            s.rejected_unknown_handle,
            s.rejected_inactive_manager,
            s.rejected_events_pending
        ),
        (0, 0, 0, 0, 0, 0)
    );
}

/// Scenario 17 — slot leak regression (the seed's manager-limit leak): one
/// user connects and disconnects 100,000 times with a limit of 5 while 4
/// other connections stay open, in a table of exactly 5 connection slots;
/// every connect succeeds.
#[test]
fn scenario_17_hundred_thousand_reconnects_never_leak_a_place() {
    type Factory = ManagerFactory<u32, 2, 5, 64>;
    let config = Config {
        max_connections_per_user: 5,
        ..Config::for_capacity(2, 5)
    };
    let mut f = Factory::new(config).unwrap();
    let alice = ctx("alice");
    let m = f.create_manager(alice.clone(), at(0)).unwrap();
    let steady: Vec<_> = (0..4)
        .map(|_| f.add_connection(m, &alice, at(0)).unwrap())
        .collect();
    let app_close = CloseFrame::new(CloseCode::NORMAL, CloseReason::Application);
    for i in 0..100_000u32 {
        let c = f
            .add_connection(m, &alice, at(0))
            .unwrap_or_else(|e| panic!("connect {i} refused: {e}"));
        assert_eq!(f.send_to_user(m, i, at(0)).unwrap().queued_for(), 5);
        for s in &steady {
            assert_eq!(f.poll_transmit(*s), Ok(Some(Transmit::Message(i))));
        }
        // Three ways to go away, in turn.
        match i % 3 {
            0 => assert_eq!(f.remove_connection(m, c, at(0)).unwrap().undelivered, 1),
            1 => assert_eq!(f.handle_closed(c, at(0)).unwrap().undelivered, 1),
            _ => {
                f.close_connection(m, c, CloseCode::NORMAL, at(0)).unwrap();
                assert_eq!(f.poll_transmit(c), Ok(Some(Transmit::Message(i))));
                assert_eq!(f.poll_transmit(c), Ok(Some(Transmit::Close(app_close))));
                assert_eq!(f.handle_closed(c, at(0)).unwrap().undelivered, 0);
            }
        }
    }
    assert_eq!(f.connection_count(m), Ok(4));
    let s = f.stats();
    assert_eq!(s.total_connections_managed, 100_004);
    assert_eq!(
        (
            s.connections_removed,
            s.connections_lost,
            s.closed_application
        ),
        (33_334, 33_333, 33_333)
    );
    assert_eq!(
        (s.messages_dropped, s.messages_transmitted),
        (66_667, 433_333)
    );
    assert_eq!((s.resource_limit_hits(), s.messages_queued_now), (0, 0));
    assert!(s.is_consistent());
    // The fifth place is still free, and only the fifth.
    f.add_connection(m, &alice, at(1)).unwrap();
    assert_eq!(
        f.add_connection(m, &alice, at(1)),
        Err(Error::LimitReached(Limit::ConnectionsPerUser))
    );
}
