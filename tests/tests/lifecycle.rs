//! Security scenarios 7, 9 and 14: deactivation closes everything, many
//! managers leave nothing behind, and a dead handle stays dead.

use userlane_core::{
    CloseCode, CloseFrame, CloseReason, Config, ConnectionHandle, Error, Event, ManagerFactory,
    ManagerHandle, SendOutcome, UserContext,
};
use userlane_tests::support::{at, ctx, Wire};

/// Scenario 7 — cleanup on deactivation: 5 connections, deactivate → 0
/// connections, each got its queued message and then one close (1000), the
/// manager is inactive.
#[test]
fn scenario_07_deactivation_closes_every_connection() {
    type Factory = ManagerFactory<&'static str, 4, 8, 64>;
    let mut f = Factory::new(Config::for_capacity(4, 8)).unwrap();
    let alice = ctx("alice");
    let m = f.create_manager(alice.clone(), at(0)).unwrap();
    let conns: Vec<_> = (0..5)
        .map(|_| f.add_connection(m, &alice, at(0)).unwrap())
        .collect();
    assert_eq!(f.connection_count(m), Ok(5));
    assert_eq!(
        f.send_to_user(m, "last words", at(1)).unwrap().queued_for(),
        5
    );

    assert_eq!(f.deactivate(m, at(2)), Ok(5));
    assert!(!f.is_active(m));
    assert_eq!(f.connection_count(m), Err(Error::ManagerInactive(m)));
    assert_eq!(f.stats().connections_active, 0);
    assert_eq!(f.stats().connections_closing, 5);

    let mut wire = Wire::new();
    wire.drain(&mut f, Some(at(3)));
    let close = CloseFrame::new(CloseCode::NORMAL, CloseReason::ManagerDeactivated);
    for c in &conns {
        assert_eq!(wire.received(*c), ["last words"]);
        assert_eq!(wire.closes_of(*c), [close]);
    }
    assert!(wire.events.contains(&Event::ManagerDeactivated {
        manager: m,
        closed_connections: 5,
        discarded_offline: 0
    }));
    let closed_events = wire
        .events
        .iter()
        .filter(|e| matches!(e, Event::ConnectionClosed { manager, close: c, .. } if *manager == m && *c == close))
        .count();
    assert_eq!(closed_events, 5);
    let s = f.stats();
    assert_eq!(
        (
            s.connections_active,
            s.connections_closing,
            s.closed_deactivated,
            s.managers_active,
            s.managers_deactivated
        ),
        (0, 0, 5, 0, 1)
    );
    assert_eq!((s.messages_transmitted, s.messages_dropped), (5, 0));
    assert!(s.is_consistent());
}

/// Scenario 9 — no leaks over many managers: 5 batches × 10 managers
/// created, used and reclaimed (half deactivated, half reclaimed by the
/// empty-manager timer) → 0 active, every slot free again.
#[test]
fn scenario_09_fifty_managers_through_ten_slots_leave_nothing() {
    type Factory = ManagerFactory<u32, 10, 10, 20>;
    let config = Config {
        queue_depth: 2,
        offline_buffer: 2,
        ..Config::for_capacity(10, 10)
    };
    let mut f = Factory::new(config).unwrap();
    let mut wire = Wire::new();
    let mut now = 0;
    for batch in 0..5 {
        let mut live = Vec::new();
        for i in 0..10 {
            let c = ctx(&format!("user_{i}_batch_{batch}"));
            let m = f.create_manager(c.clone(), at(now)).unwrap();
            let conn = f.add_connection(m, &c, at(now)).unwrap();
            assert_eq!(
                f.send_to_user(m, batch * 10 + i, at(now))
                    .unwrap()
                    .queued_for(),
                1
            );
            live.push((m, conn));
        }
        wire.drain(&mut f, Some(at(now)));
        for (i, (m, conn)) in live.iter().enumerate() {
            assert_eq!(wire.received(*conn), [batch * 10 + i as u32]);
            if i % 2 == 0 {
                assert_eq!(f.deactivate(*m, at(now)), Ok(1));
            } else {
                assert_eq!(
                    f.remove_connection(*m, *conn, at(now)).unwrap().undelivered,
                    0
                );
            }
        }
        wire.drain(&mut f, Some(at(now)));
        now += 30_000; // the empty-manager ttl
        f.handle_timeout(at(now));
        wire.drain(&mut f, Some(at(now)));
        assert_eq!(f.stats().managers_active, 0, "batch {batch}");
        for (m, _) in &live {
            assert!(!f.is_active(*m));
        }
    }
    let s = f.stats();
    assert_eq!(
        (
            s.managers_created,
            s.managers_active,
            s.managers_deactivated,
            s.managers_reclaimed
        ),
        (50, 0, 25, 25)
    );
    assert_eq!((s.connections_active, s.connections_closing), (0, 0));
    assert_eq!((s.messages_queued_now, s.offline_now), (0, 0));
    assert_eq!(s.messages_transmitted, 50);
    assert_eq!(f.free_queue_slots(), 20);
    assert!(s.is_consistent());
    // Every slot is free: 10 managers with 10 connections fit again, the
    // 11th user does not.
    for i in 0..10 {
        let c = ctx(&format!("again_{i}"));
        let m = f.create_manager(c.clone(), at(now)).unwrap();
        f.add_connection(m, &c, at(now)).unwrap();
        while f.poll_event().is_some() {}
    }
    assert_eq!(
        f.create_manager(ctx("one_too_many"), at(now)),
        Err(Error::LimitReached(userlane_core::Limit::Users))
    );
    assert_eq!(f.stats().connections_active, 10);
}

/// One manager slot and one connection slot, so reuse is certain.
type OneSlot = ManagerFactory<&'static str, 1, 1, 8>;

/// Every command and query through manager `m` (and its connection `c`),
/// each with its result.
fn refusals_through(
    f: &mut OneSlot,
    m: ManagerHandle,
    c: ConnectionHandle,
    alice: &UserContext,
) -> [(&'static str, Result<(), Error>); 9] {
    [
        ("add", f.add_connection(m, alice, at(2)).map(drop)),
        ("remove", f.remove_connection(m, c, at(2)).map(drop)),
        (
            "send",
            f.send_to_user(m, "late", at(2))
                .map(drop)
                .map_err(Error::from),
        ),
        ("get context", f.context(m).map(drop)),
        ("get stats", f.manager_stats(m).map(drop)),
        ("list", f.connections(m).map(drop)),
        ("count", f.connection_count(m).map(drop)),
        ("close", f.close_connection(m, c, CloseCode::NORMAL, at(2))),
        ("deactivate", f.deactivate(m, at(2)).map(drop)),
    ]
}

/// Scenario 14 — deactivated manager: add, remove, send, get, list — each
/// fails with "is no longer active", and so does a stale handle after its
/// slot is reused. (The seed's only failing test.)
#[test]
fn scenario_14_deactivated_manager_refuses_everything() {
    let config = Config {
        queue_depth: 4,
        offline_buffer: 4,
        ..Config::for_capacity(1, 1)
    };
    let mut f = OneSlot::new(config).unwrap();
    let alice = ctx("alice");
    let m = f.create_manager(alice.clone(), at(0)).unwrap();
    let c = f.add_connection(m, &alice, at(0)).unwrap();
    assert!(f.is_active(m));
    assert_eq!(f.deactivate(m, at(1)), Ok(1));
    assert!(!f.is_active(m));

    let dead = Error::ManagerInactive(m);
    let refusals = refusals_through(&mut f, m, c, &alice);
    for (what, r) in &refusals {
        assert_eq!(r, &Err(dead), "{what}");
        assert_eq!(
            r.as_ref().unwrap_err().to_string(),
            "manager is no longer active",
            "{what}"
        );
    }
    // Queries take &self and count nothing; the 5 commands are counted.
    assert_eq!(f.stats().rejected_inactive_manager, 5);
    assert_eq!(f.stats().sends_refused, 1);
    assert_eq!(f.stats().security_violations_detected, 0);

    // The connection closes and its slot is released.
    let mut wire = Wire::new();
    wire.drain(&mut f, Some(at(3)));
    assert_eq!(wire.closes_of(c).len(), 1);

    // Bob gets the same manager slot and the same connection slot.
    let bob = ctx("bob");
    let mb = f.create_manager(bob.clone(), at(4)).unwrap();
    let cb = f.add_connection(mb, &bob, at(4)).unwrap();
    assert_eq!((mb.index(), cb.index()), (m.index(), c.index()));
    assert_ne!((mb, cb), (m, c));
    // The stale handles reach nothing of bob's.
    assert_eq!(
        f.send_to_user(m, "to alice", at(5)).map_err(Error::from),
        Err(dead)
    );
    assert_eq!(f.context(m), Err(dead));
    assert_eq!(f.add_connection(m, &bob, at(5)), Err(dead));
    assert_eq!(
        f.remove_connection(mb, c, at(5)),
        Err(Error::UnknownConnection(c))
    );
    assert_eq!(
        f.handle_activity(c, at(5)),
        Err(Error::UnknownConnection(c))
    );
    assert_eq!(f.handle_closed(c, at(5)), Err(Error::UnknownConnection(c)));
    assert_eq!(f.poll_transmit(c), Err(Error::UnknownConnection(c)));
    assert_eq!(f.connection_count(mb), Ok(1));
    assert!(f.is_open(cb));
    assert_eq!(f.queued(cb), Ok(0));
    // A new manager for alice is a new handle; the old one stays dead.
    assert_eq!(f.deactivate(mb, at(6)), Ok(1));
    wire.drain(&mut f, Some(at(6)));
    let m2 = f.create_manager(alice.clone(), at(7)).unwrap();
    assert_ne!(m2, m);
    assert_eq!(
        f.send_to_user(m2, "fresh", at(7)),
        Ok(SendOutcome::Buffered { buffered: 1 })
    );
    assert_eq!(
        f.send_to_user(m, "stale", at(7)).map_err(Error::from),
        Err(dead)
    );
    assert!(f.stats().is_consistent());
}
