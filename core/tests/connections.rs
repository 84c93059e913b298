//! Connections: adding (limits, isolation, offline replay), removing, closing,
//! `handle_closed` and `handle_activity` in every state, stale handles, and
//! long connect/disconnect runs.

mod common;

use common::*;
use userlane_core::{
    CloseCode, Config, ConnectionHandle, Error, Event, Limit, ManagerFactory, Released,
    SendOutcome, Transmit, Violation,
};

#[test]
fn add_connection_opens_a_connection_of_that_user() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let claim = alice.clone().with_connection_id("tab-1").unwrap();
    let c = f.add_connection(a, &claim, t(10)).unwrap();

    assert!(f.is_open(c));
    assert_eq!(f.owner_of(c), Ok(a));
    assert_eq!(f.queued(c), Ok(0));
    assert_eq!(f.connection_count(a), Ok(1));
    assert_eq!(f.connections(a).unwrap().collect::<Vec<_>>(), [c]);
    assert_eq!(f.empty_since(a), Ok(None));
    let ms = f.manager_stats(a).unwrap();
    assert_eq!((ms.connections, ms.connections_opened), (1, 1));
    let s = f.stats();
    assert_eq!((s.total_connections_managed, s.connections_active), (1, 1));
    assert!(s.is_consistent());
    // Nothing to transmit yet: only the manager's creation is reported.
    assert_eq!(events(&mut f), [Event::ManagerCreated(a)]);
    assert_eq!(f.poll_transmit(c), Ok(None));
}

#[test]
fn connections_are_listed_oldest_first_and_only_for_their_user() {
    let mut f = lanes();
    let (alice, bob) = (ctx("alice"), ctx("bob"));
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let b = f.create_manager(bob.clone(), t(0)).unwrap();
    let a1 = f.add_connection(a, &alice, t(0)).unwrap();
    let b1 = f.add_connection(b, &bob, t(0)).unwrap();
    let a2 = f.add_connection(a, &alice, t(0)).unwrap();
    let a3 = f.add_connection(a, &alice, t(0)).unwrap();
    assert_eq!(f.connections(a).unwrap().collect::<Vec<_>>(), [a1, a2, a3]);
    assert_eq!(f.connections(b).unwrap().collect::<Vec<_>>(), [b1]);
    f.remove_connection(a, a2, t(1)).unwrap();
    assert_eq!(f.connections(a).unwrap().collect::<Vec<_>>(), [a1, a3]);
    assert_eq!(f.owner_of(b1), Ok(b));
}

#[test]
fn a_connection_claiming_another_user_is_an_isolation_violation() {
    let mut f = lanes();
    let (alice, mallory) = (ctx("alice"), ctx("mallory"));
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let m = f.create_manager(mallory.clone(), t(0)).unwrap();

    let err = f.add_connection(a, &mallory, t(1)).unwrap_err();
    assert_eq!(
        err,
        Error::IsolationViolation {
            manager: a,
            violation: Violation::ForeignUser
        }
    );
    assert_eq!(
        err.to_string(),
        "isolation violation: connection belongs to another user"
    );
    // Same user id with other thread/run ids is the same user.
    f.add_connection(a, &ctx_thread("alice", "other"), t(1))
        .unwrap();

    let s = f.stats();
    assert_eq!(s.security_violations_detected, 1);
    assert_eq!(s.resource_limit_hits(), 0);
    assert_eq!(s.total_connections_managed, 1);
    assert_eq!(f.manager_stats(a).unwrap().security_violations, 1);
    assert_eq!(f.manager_stats(a).unwrap().connections, 1);
    assert_eq!(f.manager_stats(m).unwrap().security_violations, 0);
    assert_eq!(f.connection_count(m), Ok(0));
    assert!(s.is_consistent());
}

#[test]
fn connections_per_user_limit_is_enforced_per_user() {
    let mut f = lanes_with(Config {
        max_connections_per_user: 2,
        ..small_config()
    });
    let (alice, bob) = (ctx("alice"), ctx("bob"));
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let b = f.create_manager(bob.clone(), t(0)).unwrap();
    f.add_connection(a, &alice, t(0)).unwrap();
    f.add_connection(a, &alice, t(0)).unwrap();

    let err = f.add_connection(a, &alice, t(0)).unwrap_err();
    assert_eq!(err, Error::LimitReached(Limit::ConnectionsPerUser));
    assert_eq!(
        err.to_string(),
        "limit reached: user reached the maximum number of connections"
    );
    // Bob is not affected by alice's limit.
    f.add_connection(b, &bob, t(0)).unwrap();

    let s = f.stats();
    assert_eq!(
        (
            s.rejected_connections_per_user,
            s.resource_limit_hits(),
            s.connections_active
        ),
        (1, 1, 3)
    );
    assert_eq!(f.manager_stats(a).unwrap().limit_hits, 1);
    assert_eq!(f.manager_stats(b).unwrap().limit_hits, 0);
    assert_eq!(f.connection_count(a), Ok(2));
    assert!(s.is_consistent());
}

#[test]
fn total_connections_limit_is_enforced_across_users() {
    let mut f = lanes_with(Config {
        max_connections: 3,
        max_connections_per_user: 2,
        ..small_config()
    });
    let (alice, bob) = (ctx("alice"), ctx("bob"));
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let b = f.create_manager(bob.clone(), t(0)).unwrap();
    let a1 = f.add_connection(a, &alice, t(0)).unwrap();
    f.add_connection(a, &alice, t(0)).unwrap();
    f.add_connection(b, &bob, t(0)).unwrap();

    let err = f.add_connection(b, &bob, t(0)).unwrap_err();
    assert_eq!(err, Error::LimitReached(Limit::Connections));
    assert_eq!(
        err.to_string(),
        "limit reached: maximum number of connections reached"
    );
    let s = f.stats();
    assert_eq!(
        (
            s.rejected_total_connections,
            s.rejected_connections_per_user,
            s.resource_limit_hits()
        ),
        (1, 0, 1)
    );
    assert_eq!(f.manager_stats(b).unwrap().limit_hits, 1);

    // Removing alice's connection makes room for bob at once.
    f.remove_connection(a, a1, t(1)).unwrap();
    f.add_connection(b, &bob, t(1)).unwrap();
    assert_eq!(f.stats().connections_active, 3);
    assert!(f.stats().is_consistent());
}

#[test]
fn closing_connections_free_their_place_at_once_but_hold_their_slot_until_released() {
    // Two connection slots in the table.
    let mut f: ManagerFactory<u32, 2, 2, 8> = ManagerFactory::new(Config {
        max_users: 2,
        max_connections: 2,
        max_connections_per_user: 1,
        ..small_config()
    })
    .unwrap();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c1 = f.add_connection(a, &alice, t(0)).unwrap();
    f.close_connection(a, c1, CloseCode::NORMAL, t(1)).unwrap();

    // The per-user place is free at once.
    let c2 = f.add_connection(a, &alice, t(1)).unwrap();
    f.close_connection(a, c2, CloseCode::NORMAL, t(2)).unwrap();
    assert_eq!(f.stats().connections_active, 0);
    assert_eq!(f.stats().connections_closing, 2);

    // But both table slots are held by closing connections.
    assert_eq!(
        f.add_connection(a, &alice, t(2)),
        Err(Error::LimitReached(Limit::Connections))
    );
    assert_eq!(f.stats().rejected_total_connections, 1);

    // Releasing one lets the user connect again.
    assert_eq!(f.handle_closed(c1, t(3)), Ok(Released { undelivered: 0 }));
    let c3 = f.add_connection(a, &alice, t(3)).unwrap();
    assert!(f.is_open(c3));
    assert_ne!(c3, c1);
    assert!(f.stats().is_consistent());
}

#[test]
fn offline_messages_are_replayed_in_order_to_the_first_connection_only() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    for (p, n) in [(1, 1), (2, 2), (3, 3)] {
        assert_eq!(
            f.send_to_user(a, p, t(0)),
            Ok(SendOutcome::Buffered { buffered: n })
        );
    }
    events(&mut f);

    let c1 = f.add_connection(a, &alice, t(1)).unwrap();
    assert_eq!(f.queued(c1), Ok(3));
    let c2 = f.add_connection(a, &alice, t(1)).unwrap();
    assert_eq!(f.queued(c2), Ok(0));
    f.send_to_user(a, 4, t(2)).unwrap();

    assert_eq!(events(&mut f), [Event::Transmit(c1), Event::Transmit(c2)]);
    assert_eq!(messages(&mut f, c1), [1, 2, 3, 4]);
    assert_eq!(messages(&mut f, c2), [4]);

    let s = f.stats();
    assert_eq!(
        (
            s.offline_buffered,
            s.offline_replayed,
            s.offline_now,
            s.offline_discarded
        ),
        (3, 3, 0, 0)
    );
    assert_eq!(
        (
            s.messages_queued,
            s.messages_transmitted,
            s.messages_queued_now
        ),
        (5, 5, 0)
    );
    let ms = f.manager_stats(a).unwrap();
    assert_eq!(
        (
            ms.offline_buffered,
            ms.offline_replayed,
            ms.offline_now,
            ms.messages_queued
        ),
        (3, 3, 0, 5)
    );
    assert!(s.is_consistent());
}

#[test]
fn remove_connection_frees_the_slot_immediately() {
    let mut f = lanes_with(Config {
        max_connections_per_user: 1,
        ..small_config()
    });
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c1 = f.add_connection(a, &alice, t(0)).unwrap();
    assert_eq!(
        f.add_connection(a, &alice, t(0)),
        Err(Error::LimitReached(Limit::ConnectionsPerUser))
    );

    assert_eq!(
        f.remove_connection(a, c1, t(5)),
        Ok(Released { undelivered: 0 })
    );
    assert!(!f.is_open(c1));
    assert_eq!(f.owner_of(c1), Err(Error::UnknownConnection(c1)));
    assert_eq!(f.connection_count(a), Ok(0));
    assert_eq!(f.empty_since(a), Ok(Some(t(5))));
    let s = f.stats();
    assert_eq!(
        (
            s.connections_removed,
            s.connections_active,
            s.connections_closing
        ),
        (1, 0, 0)
    );
    assert_eq!(f.manager_stats(a).unwrap().connections, 0);

    let c2 = f.add_connection(a, &alice, t(5)).unwrap();
    assert_ne!(c2, c1);
    assert!(f.stats().is_consistent());
}

#[test]
fn remove_connection_counts_undelivered_messages_as_dropped() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c = f.add_connection(a, &alice, t(0)).unwrap();
    for p in 1..=3 {
        f.send_to_user(a, p, t(0)).unwrap();
    }
    assert_eq!(f.poll_transmit(c), Ok(Some(Transmit::Message(1))));
    assert_eq!(f.free_queue_slots(), 14);

    assert_eq!(
        f.remove_connection(a, c, t(1)),
        Ok(Released { undelivered: 2 })
    );
    let s = f.stats();
    assert_eq!(
        (
            s.messages_queued,
            s.messages_transmitted,
            s.messages_dropped,
            s.messages_queued_now
        ),
        (3, 1, 2, 0)
    );
    assert_eq!(f.free_queue_slots(), 16);
    // The pending Transmit of the removed connection is gone with it.
    assert_eq!(events(&mut f), [Event::ManagerCreated(a)]);
    assert_eq!(f.poll_transmit(c), Err(Error::UnknownConnection(c)));
    assert!(s.is_consistent());
}

#[test]
fn removing_another_users_connection_is_an_isolation_violation() {
    let mut f = lanes();
    let (alice, bob) = (ctx("alice"), ctx("bob"));
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let b = f.create_manager(bob.clone(), t(0)).unwrap();
    let a1 = f.add_connection(a, &alice, t(0)).unwrap();
    f.send_to_user(a, 1, t(0)).unwrap();

    let err = f.remove_connection(b, a1, t(1)).unwrap_err();
    assert_eq!(
        err,
        Error::IsolationViolation {
            manager: b,
            violation: Violation::ForeignConnection { owner: a }
        }
    );
    assert_eq!(
        err.to_string(),
        "isolation violation: connection is owned by another user's manager"
    );
    assert!(f.is_open(a1));
    assert_eq!(f.queued(a1), Ok(1));
    assert_eq!(f.stats().security_violations_detected, 1);
    assert_eq!(f.stats().connections_removed, 0);
    assert_eq!(f.manager_stats(b).unwrap().security_violations, 1);
    assert_eq!(f.manager_stats(a).unwrap().security_violations, 0);
    assert!(f.stats().is_consistent());
}

#[test]
fn remove_connection_with_a_stale_handle_is_unknown_connection() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c = f.add_connection(a, &alice, t(0)).unwrap();
    f.remove_connection(a, c, t(1)).unwrap();

    let err = f.remove_connection(a, c, t(2)).unwrap_err();
    assert_eq!(err, Error::UnknownConnection(c));
    assert_eq!(err.to_string(), "unknown connection handle");
    let s = f.stats();
    assert_eq!((s.rejected_unknown_handle, s.connections_removed), (1, 1));
    assert!(s.is_consistent());
}

#[test]
fn remove_connection_releases_a_closing_connection() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c = f.add_connection(a, &alice, t(0)).unwrap();
    f.send_to_user(a, 1, t(0)).unwrap();
    f.close_connection(a, c, CloseCode::NORMAL, t(1)).unwrap();
    assert_eq!(f.stats().connections_closing, 1);

    assert_eq!(
        f.remove_connection(a, c, t(2)),
        Ok(Released { undelivered: 1 })
    );
    let s = f.stats();
    assert_eq!(
        (
            s.connections_closing,
            s.closed_application,
            s.connections_removed,
            s.messages_dropped
        ),
        (0, 1, 0, 1)
    );
    assert_eq!(f.poll_transmit(c), Err(Error::UnknownConnection(c)));
    assert!(s.is_consistent());
}

#[test]
fn close_connection_drains_the_queue_then_sends_the_close_exactly_once() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c = f.add_connection(a, &alice, t(0)).unwrap();
    let other = f.add_connection(a, &alice, t(0)).unwrap();
    f.send_to_user(a, 1, t(0)).unwrap();
    f.send_to_user(a, 2, t(0)).unwrap();
    events(&mut f);
    let code = CloseCode::new(4001).unwrap();

    assert_eq!(f.close_connection(a, c, code, t(1)), Ok(()));
    // Closing: not open, not listed, not counted, still owned and addressable.
    assert!(!f.is_open(c));
    assert_eq!(f.owner_of(c), Ok(a));
    assert_eq!(f.queued(c), Ok(2));
    assert_eq!(f.connections(a).unwrap().collect::<Vec<_>>(), [other]);
    assert_eq!(f.connection_count(a), Ok(1));
    assert_eq!(f.manager_stats(a).unwrap().connections, 1);

    assert_eq!(
        events(&mut f),
        [Event::ConnectionClosed {
            connection: c,
            manager: a,
            close: app_close(code)
        }]
    );
    // New messages only reach the open connection.
    assert_eq!(
        f.send_to_user(a, 3, t(2)),
        Ok(SendOutcome::Queued {
            queued_for: 1,
            closed_slow: 0
        })
    );
    assert_eq!(
        transmits(&mut f, c),
        [
            Transmit::Message(1),
            Transmit::Message(2),
            Transmit::Close(app_close(code))
        ]
    );
    assert_eq!(f.poll_transmit(c), Ok(None));
    assert_eq!(f.poll_transmit(c), Ok(None));
    assert_eq!(messages(&mut f, other), [1, 2, 3]);

    // A second close is refused.
    let err = f
        .close_connection(a, c, CloseCode::NORMAL, t(3))
        .unwrap_err();
    assert_eq!(err, Error::ConnectionClosing(c));
    assert_eq!(err.to_string(), "connection is closing");

    let s = f.stats();
    assert_eq!(
        (
            s.closed_application,
            s.connections_closing,
            s.rejected_closing_connection,
            s.connections_active
        ),
        (1, 1, 1, 1)
    );
    assert!(s.is_consistent());

    assert_eq!(f.handle_closed(c, t(4)), Ok(Released { undelivered: 0 }));
    assert_eq!(f.stats().connections_closing, 0);
    assert_eq!(
        f.close_connection(a, c, CloseCode::NORMAL, t(5)),
        Err(Error::UnknownConnection(c))
    );
    assert!(f.stats().is_consistent());
}

#[test]
fn closing_another_users_connection_is_an_isolation_violation() {
    let mut f = lanes();
    let (alice, bob) = (ctx("alice"), ctx("bob"));
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let b = f.create_manager(bob.clone(), t(0)).unwrap();
    let b1 = f.add_connection(b, &bob, t(0)).unwrap();
    assert_eq!(
        f.close_connection(a, b1, CloseCode::NORMAL, t(1)),
        Err(Error::IsolationViolation {
            manager: a,
            violation: Violation::ForeignConnection { owner: b }
        })
    );
    assert!(f.is_open(b1));
    assert_eq!(f.stats().closed_application, 0);
    assert_eq!(f.stats().security_violations_detected, 1);
    assert_eq!(f.manager_stats(a).unwrap().security_violations, 1);
}

#[test]
fn handle_closed_on_an_open_connection_counts_it_lost_with_its_queue() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c = f.add_connection(a, &alice, t(0)).unwrap();
    f.send_to_user(a, 1, t(0)).unwrap();
    f.send_to_user(a, 2, t(0)).unwrap();

    assert_eq!(f.handle_closed(c, t(7)), Ok(Released { undelivered: 2 }));
    assert_eq!(f.connection_count(a), Ok(0));
    assert_eq!(f.empty_since(a), Ok(Some(t(7))));
    let s = f.stats();
    assert_eq!(
        (
            s.connections_lost,
            s.connections_active,
            s.messages_dropped,
            s.messages_queued_now
        ),
        (1, 0, 2, 0)
    );
    assert_eq!(events(&mut f), [Event::ManagerCreated(a)]);
    assert!(s.is_consistent());
}

#[test]
fn handle_closed_on_a_closing_connection_before_and_after_its_close_was_sent() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let before = f.add_connection(a, &alice, t(0)).unwrap();
    let after = f.add_connection(a, &alice, t(0)).unwrap();
    f.send_to_user(a, 1, t(0)).unwrap();
    f.close_connection(a, before, CloseCode::NORMAL, t(1))
        .unwrap();
    f.close_connection(a, after, CloseCode::NORMAL, t(1))
        .unwrap();
    assert_eq!(
        transmits(&mut f, after),
        [
            Transmit::Message(1),
            Transmit::Close(app_close(CloseCode::NORMAL))
        ]
    );

    // Closed by the peer before anything was written.
    assert_eq!(
        f.handle_closed(before, t(2)),
        Ok(Released { undelivered: 1 })
    );
    // Closed after its close was written.
    assert_eq!(
        f.handle_closed(after, t(2)),
        Ok(Released { undelivered: 0 })
    );
    let s = f.stats();
    assert_eq!(
        (
            s.connections_closing,
            s.connections_lost,
            s.closed_application,
            s.messages_dropped,
            s.messages_transmitted
        ),
        (0, 0, 2, 1, 1)
    );
    // No event is left for released connections.
    assert_eq!(events(&mut f), [Event::ManagerCreated(a)]);
    assert!(s.is_consistent());
}

#[test]
fn handle_closed_on_a_released_connection_is_unknown_connection() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c = f.add_connection(a, &alice, t(0)).unwrap();
    f.handle_closed(c, t(1)).unwrap();
    assert_eq!(f.handle_closed(c, t(2)), Err(Error::UnknownConnection(c)));
    assert_eq!(f.stats().rejected_unknown_handle, 1);
    assert_eq!(f.stats().connections_lost, 1);
    assert!(f.stats().is_consistent());
}

#[test]
fn handle_closed_works_after_the_manager_is_gone() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c = f.add_connection(a, &alice, t(0)).unwrap();
    f.send_to_user(a, 1, t(0)).unwrap();
    f.deactivate(a, t(1)).unwrap();
    // The dead manager cannot remove it, the runtime can release it.
    assert_eq!(
        f.remove_connection(a, c, t(2)),
        Err(Error::ManagerInactive(a))
    );
    assert_eq!(f.owner_of(c), Ok(a));
    assert_eq!(f.handle_closed(c, t(2)), Ok(Released { undelivered: 1 }));
    let s = f.stats();
    assert_eq!(
        (
            s.connections_closing,
            s.closed_deactivated,
            s.messages_dropped
        ),
        (0, 1, 1)
    );
    assert!(s.is_consistent());
}

#[test]
fn handle_activity_in_every_state() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c = f.add_connection(a, &alice, t(0)).unwrap();
    assert_eq!(f.handle_activity(c, t(10)), Ok(()));
    assert!(f.is_open(c));

    // Closing: accepted, changes nothing.
    f.close_connection(a, c, CloseCode::NORMAL, t(20)).unwrap();
    let before = f.stats();
    assert_eq!(f.handle_activity(c, t(30)), Ok(()));
    assert!(!f.is_open(c));
    assert_eq!(f.stats(), before);
    assert_eq!(f.connection_count(a), Ok(0));

    // Gone: refused and counted.
    f.handle_closed(c, t(40)).unwrap();
    assert_eq!(
        f.handle_activity(c, t(50)),
        Err(Error::UnknownConnection(c))
    );
    assert_eq!(f.stats().rejected_unknown_handle, 1);
}

#[test]
fn a_stale_connection_handle_never_reaches_the_connection_that_reuses_its_slot() {
    let mut f = lanes();
    let (alice, bob) = (ctx("alice"), ctx("bob"));
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let b = f.create_manager(bob.clone(), t(0)).unwrap();
    let old = f.add_connection(a, &alice, t(0)).unwrap();
    f.remove_connection(a, old, t(1)).unwrap();
    let reused = f.add_connection(b, &bob, t(1)).unwrap();
    assert_eq!(reused.index(), old.index());
    assert_ne!(reused, old);
    f.send_to_user(b, 42, t(1)).unwrap();

    assert_eq!(f.poll_transmit(old), Err(Error::UnknownConnection(old)));
    assert_eq!(f.queued(old), Err(Error::UnknownConnection(old)));
    assert_eq!(f.owner_of(old), Err(Error::UnknownConnection(old)));
    assert!(!f.is_open(old));
    assert_eq!(
        f.handle_activity(old, t(2)),
        Err(Error::UnknownConnection(old))
    );
    assert_eq!(
        f.handle_closed(old, t(2)),
        Err(Error::UnknownConnection(old))
    );
    assert_eq!(
        f.close_connection(a, old, CloseCode::NORMAL, t(2)),
        Err(Error::UnknownConnection(old))
    );
    assert_eq!(
        f.remove_connection(a, old, t(2)),
        Err(Error::UnknownConnection(old))
    );
    assert_eq!(
        f.remove_connection(b, old, t(2)),
        Err(Error::UnknownConnection(old))
    );

    // Bob's connection is untouched.
    assert!(f.is_open(reused));
    assert_eq!(f.queued(reused), Ok(1));
    assert_eq!(messages(&mut f, reused), [42]);
    assert_eq!(f.stats().rejected_unknown_handle, 5);
    assert_eq!(f.stats().security_violations_detected, 0);
}

#[test]
fn one_hundred_thousand_connect_disconnect_cycles_always_succeed() {
    let mut f = lanes_with(Config {
        max_connections_per_user: 5,
        ..small_config()
    });
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    // Four stay open; the fifth place is reused 100,000 times.
    let resident: Vec<ConnectionHandle> = (0..4)
        .map(|_| f.add_connection(a, &alice, t(0)).unwrap())
        .collect();
    let mut previous: Option<ConnectionHandle> = None;
    for i in 0..100_000u64 {
        let now = t(i);
        let c = f
            .add_connection(a, &alice, now)
            .unwrap_or_else(|e| panic!("cycle {i}: {e}"));
        assert_ne!(Some(c), previous);
        assert_eq!(f.connection_count(a), Ok(5));
        match i % 3 {
            0 => {
                f.remove_connection(a, c, now).unwrap();
            }
            1 => {
                f.handle_closed(c, now).unwrap();
            }
            _ => {
                f.close_connection(a, c, CloseCode::NORMAL, now).unwrap();
                f.handle_closed(c, now).unwrap();
            }
        }
        previous = Some(c);
    }
    assert_eq!(f.connection_count(a), Ok(4));
    assert_eq!(f.connections(a).unwrap().collect::<Vec<_>>(), resident);
    let s = f.stats();
    assert_eq!(s.total_connections_managed, 100_004);
    assert_eq!(s.connections_active, 4);
    assert_eq!(s.connections_closing, 0);
    assert_eq!(s.connections_removed, 33_334);
    assert_eq!(s.connections_lost, 33_333);
    assert_eq!(s.closed_application, 33_333);
    assert_eq!(s.resource_limit_hits(), 0);
    assert_eq!(f.manager_stats(a).unwrap().connections_opened, 100_004);
    assert_eq!(events(&mut f), [Event::ManagerCreated(a)]);
    assert!(s.is_consistent());
}
