//! Managers: creation, the user limit, the event back-pressure, deactivation,
//! dead and unknown handles, slot reuse, `close_all`.

mod common;

use common::*;
use userlane_core::{
    CloseCode, Config, Error, Event, Limit, ManagerFactory, ManagerStats, SendOutcome, Stats,
    Transmit,
};

#[test]
fn create_manager_makes_an_active_manager_and_reports_it_once() {
    let mut f = lanes();
    let alice = ctx_thread("alice", "thread-1");
    let m = f.create_manager(alice.clone(), t(1_000)).unwrap();

    assert!(f.is_active(m));
    assert_eq!(f.manager_for_user("alice"), Some(m));
    assert_eq!(f.manager_for_user("bob"), None);
    assert_eq!(f.context(m), Ok(&alice));
    assert_eq!(f.connection_count(m), Ok(0));
    assert_eq!(f.connections(m).unwrap().count(), 0);
    assert_eq!(f.empty_since(m), Ok(Some(t(1_000))));
    assert_eq!(
        f.manager_stats(m),
        Ok(ManagerStats {
            created_at: t(1_000),
            ..ManagerStats::default()
        })
    );
    assert_eq!(
        f.stats(),
        Stats {
            managers_created: 1,
            managers_active: 1,
            ..Stats::default()
        }
    );
    assert_eq!(events(&mut f), [Event::ManagerCreated(m)]);
    assert!(f.stats().is_consistent());
}

#[test]
fn create_manager_for_the_same_user_returns_the_same_handle_and_creates_nothing() {
    let mut f = lanes();
    let first = ctx_thread("alice", "thread-1");
    let m = f.create_manager(first.clone(), t(0)).unwrap();
    assert_eq!(events(&mut f), [Event::ManagerCreated(m)]);
    let before = f.stats();

    // Another thread of the same user: same manager, first context kept.
    let again = f
        .create_manager(ctx_thread("alice", "thread-2"), t(5))
        .unwrap();
    assert_eq!(again, m);
    assert_eq!(f.context(m).unwrap().thread_id(), "thread-1");
    assert_eq!(f.context(m), Ok(&first));
    assert_eq!(f.stats(), before);
    assert_eq!(f.stats().managers_created, 1);
    assert_eq!(events(&mut f), []);
    assert_eq!(f.manager_stats(m).unwrap().created_at, t(0));
}

#[test]
fn different_users_get_different_managers() {
    let mut f = lanes();
    let a = f.create_manager(ctx("alice"), t(0)).unwrap();
    let b = f.create_manager(ctx("bob"), t(0)).unwrap();
    assert_ne!(a, b);
    assert_eq!(f.manager_for_user("alice"), Some(a));
    assert_eq!(f.manager_for_user("bob"), Some(b));
    assert_eq!(f.context(b).unwrap().user_id(), "bob");
    assert_eq!(f.stats().managers_active, 2);
}

#[test]
fn create_manager_refuses_a_user_over_max_users() {
    let mut f = lanes_with(Config {
        max_users: 2,
        ..small_config()
    });
    let a = f.create_manager(ctx("alice"), t(0)).unwrap();
    f.create_manager(ctx("bob"), t(0)).unwrap();

    assert_eq!(
        f.create_manager(ctx("carol"), t(0)),
        Err(Error::LimitReached(Limit::Users))
    );
    assert_eq!(f.manager_for_user("carol"), None);
    let s = f.stats();
    assert_eq!(
        (
            s.managers_created,
            s.managers_active,
            s.rejected_user_limit,
            s.resource_limit_hits()
        ),
        (2, 2, 1, 1)
    );
    assert!(s.is_consistent());

    // An existing user is still found at the limit.
    assert_eq!(f.create_manager(ctx("alice"), t(0)), Ok(a));
    assert_eq!(f.stats().rejected_user_limit, 1);

    // Deactivating one frees its place at once.
    assert_eq!(f.deactivate(a, t(1)), Ok(0));
    let c = f.create_manager(ctx("carol"), t(2)).unwrap();
    assert!(f.is_active(c));
    assert_eq!(f.stats().managers_active, 2);
    assert_eq!(
        Error::LimitReached(Limit::Users).to_string(),
        "limit reached: maximum number of active users reached"
    );
}

#[test]
fn create_manager_fails_with_events_pending_when_the_event_queue_is_full() {
    let mut f: ManagerFactory<u32, 4, 8, 16, 2> = ManagerFactory::new(small_config()).unwrap();
    let a = f.create_manager(ctx("alice"), t(0)).unwrap();
    let b = f.create_manager(ctx("bob"), t(0)).unwrap();

    assert_eq!(
        f.create_manager(ctx("carol"), t(0)),
        Err(Error::EventsPending)
    );
    assert_eq!(
        Error::EventsPending.to_string(),
        "event queue is full; drain poll_event first"
    );
    let s = f.stats();
    assert_eq!(
        (
            s.managers_created,
            s.rejected_events_pending,
            s.resource_limit_hits()
        ),
        (2, 1, 0)
    );
    assert_eq!(f.manager_for_user("carol"), None);
    // Looking up an existing manager emits no event, so it still works.
    assert_eq!(f.create_manager(ctx("alice"), t(0)), Ok(a));

    // Nothing was lost: both events are there, then carol can be created.
    assert_eq!(
        events(&mut f),
        [Event::ManagerCreated(a), Event::ManagerCreated(b)]
    );
    let c = f.create_manager(ctx("carol"), t(0)).unwrap();
    assert_eq!(events(&mut f), [Event::ManagerCreated(c)]);
    assert!(f.stats().is_consistent());
}

#[test]
fn deactivate_fails_with_events_pending_and_changes_nothing() {
    let mut f: ManagerFactory<u32, 4, 8, 16, 1> = ManagerFactory::new(small_config()).unwrap();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c = f.add_connection(a, &alice, t(0)).unwrap();

    assert_eq!(f.deactivate(a, t(1)), Err(Error::EventsPending));
    assert!(f.is_active(a));
    assert!(f.is_open(c));
    assert_eq!(f.stats().rejected_events_pending, 1);
    assert_eq!(f.stats().managers_deactivated, 0);

    assert_eq!(events(&mut f), [Event::ManagerCreated(a)]);
    assert_eq!(f.deactivate(a, t(2)), Ok(1));
    assert!(!f.is_active(a));
}

#[test]
fn deactivate_closes_every_connection_with_1000_and_reports_it() {
    let mut f = lanes();
    let (alice, bob) = (ctx("alice"), ctx("bob"));
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let b = f.create_manager(bob.clone(), t(0)).unwrap();
    let a1 = f.add_connection(a, &alice, t(0)).unwrap();
    let a2 = f.add_connection(a, &alice, t(0)).unwrap();
    let b1 = f.add_connection(b, &bob, t(0)).unwrap();
    f.send_to_user(a, 7, t(0)).unwrap();
    events(&mut f);
    assert_eq!(messages(&mut f, a2), [7]); // a1 keeps its message queued

    assert_eq!(f.deactivate(a, t(10)), Ok(2));
    assert_eq!(
        events(&mut f),
        [
            Event::ManagerDeactivated {
                manager: a,
                closed_connections: 2,
                discarded_offline: 0
            },
            Event::ConnectionClosed {
                connection: a1,
                manager: a,
                close: DEACTIVATED
            },
            Event::ConnectionClosed {
                connection: a2,
                manager: a,
                close: DEACTIVATED
            },
        ]
    );
    // Queued messages first, then the close, exactly once.
    assert_eq!(
        transmits(&mut f, a1),
        [Transmit::Message(7), Transmit::Close(DEACTIVATED)]
    );
    assert_eq!(transmits(&mut f, a2), [Transmit::Close(DEACTIVATED)]);
    assert_eq!(f.poll_transmit(a1), Ok(None));
    assert_eq!(DEACTIVATED.code, CloseCode::NORMAL);
    assert_eq!(DEACTIVATED.code.as_u16(), 1000);

    // Bob is untouched.
    assert!(f.is_open(b1));
    assert!(f.is_active(b));
    assert!(!f.is_open(a1) && !f.is_open(a2));

    let s = f.stats();
    assert_eq!(s.managers_deactivated, 1);
    assert_eq!(s.managers_cleaned_up(), 1);
    assert_eq!(s.managers_active, 1);
    assert_eq!(s.closed_deactivated, 2);
    assert_eq!(s.connections_active, 1);
    assert_eq!(s.connections_closing, 2);
    assert!(s.is_consistent());

    // The runtime releases the closed sockets even though the manager is dead.
    assert_eq!(f.handle_closed(a1, t(11)).unwrap().undelivered, 0);
    assert_eq!(f.handle_closed(a2, t(11)).unwrap().undelivered, 0);
    assert_eq!(f.stats().connections_closing, 0);
    assert!(f.stats().is_consistent());
}

#[test]
fn every_operation_through_a_deactivated_handle_fails_with_manager_inactive() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c = f.add_connection(a, &alice, t(0)).unwrap();
    assert_eq!(f.deactivate(a, t(1)), Ok(1));
    let inactive = Error::ManagerInactive(a);
    let before = f.stats();

    // Queries: refused, not counted.
    assert_eq!(f.connections(a).err(), Some(inactive));
    assert_eq!(f.context(a), Err(inactive));
    assert_eq!(f.manager_stats(a), Err(inactive));
    assert_eq!(f.empty_since(a), Err(inactive));
    assert_eq!(f.connection_count(a), Err(inactive));
    assert!(!f.is_active(a));
    assert_eq!(f.manager_for_user("alice"), None);
    assert_eq!(f.stats(), before);

    // Commands: refused and counted.
    assert_eq!(f.add_connection(a, &alice, t(2)), Err(inactive));
    assert_eq!(f.remove_connection(a, c, t(2)), Err(inactive));
    assert_eq!(
        f.close_connection(a, c, CloseCode::NORMAL, t(2)),
        Err(inactive)
    );
    assert_eq!(
        f.send_to_user(a, 1, t(2)).map_err(Error::from),
        Err(inactive)
    );
    assert_eq!(f.deactivate(a, t(2)), Err(inactive));
    assert_eq!(inactive.to_string(), "manager is no longer active");

    let s = f.stats();
    assert_eq!(s.rejected_inactive_manager, 5);
    assert_eq!(s.sends_refused, 1);
    assert_eq!(s.sends_accepted, 0);
    assert_eq!(s.managers_deactivated, 1);
    assert_eq!(s.total_connections_managed, 1);
    assert!(s.is_consistent());
}

#[test]
fn deactivate_discards_the_offline_buffer_and_counts_it() {
    let mut f = lanes();
    let a = f.create_manager(ctx("alice"), t(0)).unwrap();
    for p in 1..=3 {
        f.send_to_user(a, p, t(0)).unwrap();
    }
    assert_eq!(f.free_queue_slots(), 13);
    events(&mut f);

    assert_eq!(f.deactivate(a, t(1)), Ok(0));
    assert_eq!(
        events(&mut f),
        [Event::ManagerDeactivated {
            manager: a,
            closed_connections: 0,
            discarded_offline: 3
        }]
    );
    let s = f.stats();
    assert_eq!(
        (s.offline_buffered, s.offline_discarded, s.offline_now),
        (3, 3, 0)
    );
    assert_eq!(f.free_queue_slots(), 16);
    assert!(s.is_consistent());
}

#[test]
fn create_manager_after_deactivate_gives_a_fresh_handle() {
    let mut f = lanes();
    let alice = ctx("alice");
    let old = f.create_manager(alice.clone(), t(0)).unwrap();
    f.add_connection(old, &alice, t(0)).unwrap();
    f.send_to_user(old, 1, t(0)).unwrap();
    f.deactivate(old, t(1)).unwrap();

    let new = f.create_manager(alice.clone(), t(2)).unwrap();
    assert_ne!(new, old);
    assert_eq!(f.manager_for_user("alice"), Some(new));
    // Counters start again; the old handle stays dead.
    assert_eq!(
        f.manager_stats(new),
        Ok(ManagerStats {
            created_at: t(2),
            ..ManagerStats::default()
        })
    );
    assert_eq!(
        f.send_to_user(old, 2, t(3)).map_err(Error::from),
        Err(Error::ManagerInactive(old))
    );
    let c = f.add_connection(new, &alice, t(3)).unwrap();
    assert_eq!(
        f.send_to_user(new, 3, t(3)),
        Ok(SendOutcome::Queued {
            queued_for: 1,
            closed_slow: 0
        })
    );
    events(&mut f);
    assert_eq!(messages(&mut f, c), [3]);
    assert_eq!(f.stats().managers_created, 2);
    assert!(f.stats().is_consistent());
}

#[test]
fn a_stale_handle_is_refused_after_its_slot_is_reused_by_another_user() {
    let mut f = lanes();
    let (alice, bob) = (ctx("alice"), ctx("bob"));
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    f.deactivate(a, t(1)).unwrap();
    let b = f.create_manager(bob.clone(), t(2)).unwrap();
    // Same table slot, new generation.
    assert_eq!(b.index(), a.index());
    assert_ne!(b.generation(), a.generation());
    let b1 = f.add_connection(b, &bob, t(2)).unwrap();
    events(&mut f);

    assert_eq!(
        f.send_to_user(a, 99, t(3)).map_err(Error::from),
        Err(Error::ManagerInactive(a))
    );
    assert_eq!(
        f.add_connection(a, &alice, t(3)),
        Err(Error::ManagerInactive(a))
    );
    assert_eq!(
        f.add_connection(a, &bob, t(3)),
        Err(Error::ManagerInactive(a))
    );
    assert_eq!(
        f.remove_connection(a, b1, t(3)),
        Err(Error::ManagerInactive(a))
    );
    assert_eq!(f.context(a), Err(Error::ManagerInactive(a)));

    // Nothing reached bob.
    assert_eq!(f.queued(b1), Ok(0));
    assert_eq!(f.poll_event(), None);
    assert!(f.is_open(b1));
    let bs = f.manager_stats(b).unwrap();
    assert_eq!((bs.sends_accepted, bs.connections), (0, 1));
    assert_eq!(f.stats().rejected_inactive_manager, 4);
}

#[test]
fn handles_this_factory_never_issued_are_unknown() {
    let mut big: ManagerFactory<u32, 4, 8, 16> = ManagerFactory::new(small_config()).unwrap();
    let handles: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|u| big.create_manager(ctx(u), t(0)).unwrap())
        .collect();
    let mut small: ManagerFactory<u32, 2, 4, 8> = ManagerFactory::new(Config {
        max_users: 2,
        max_connections: 4,
        ..small_config()
    })
    .unwrap();

    // A slot that exists but was never used, and a slot that does not exist.
    let unused = handles[0];
    let out_of_range = *handles.iter().max_by_key(|h| h.index()).unwrap();
    assert!(out_of_range.index() >= 2);
    for h in [unused, out_of_range] {
        assert!(!small.is_active(h));
        assert_eq!(small.context(h), Err(Error::UnknownManager(h)));
        assert_eq!(
            small.send_to_user(h, 1, t(0)).map_err(Error::from),
            Err(Error::UnknownManager(h))
        );
        assert_eq!(
            small.add_connection(h, &ctx("a"), t(0)),
            Err(Error::UnknownManager(h))
        );
        assert_eq!(small.deactivate(h, t(0)), Err(Error::UnknownManager(h)));
    }
    assert_eq!(
        Error::UnknownManager(unused).to_string(),
        "unknown manager handle"
    );
    let s = small.stats();
    assert_eq!(s.rejected_unknown_handle, 6);
    assert_eq!(s.rejected_inactive_manager, 0);
    assert_eq!(s.sends_refused, 2);
    assert!(s.is_consistent());
}

#[test]
fn close_all_closes_every_connection_and_keeps_managers_active() {
    let mut f = lanes();
    let (alice, bob) = (ctx("alice"), ctx("bob"));
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let b = f.create_manager(bob.clone(), t(0)).unwrap();
    let a1 = f.add_connection(a, &alice, t(0)).unwrap();
    let b1 = f.add_connection(b, &bob, t(0)).unwrap();
    let b2 = f.add_connection(b, &bob, t(0)).unwrap();
    events(&mut f);

    assert_eq!(f.close_all(SHUTDOWN, t(5)), 3);
    let closed: Vec<_> = events(&mut f)
        .into_iter()
        .map(|e| match e {
            Event::ConnectionClosed {
                connection,
                manager,
                close,
            } => {
                assert_eq!(close, SHUTDOWN);
                (connection, manager)
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(closed, [(a1, a), (b1, b), (b2, b)]);
    for c in [a1, b1, b2] {
        assert_eq!(transmits(&mut f, c), [Transmit::Close(SHUTDOWN)]);
    }
    assert!(f.is_active(a) && f.is_active(b));
    assert_eq!(f.connection_count(b), Ok(0));
    assert_eq!(f.empty_since(a), Ok(Some(t(5))));
    let s = f.stats();
    assert_eq!((s.closed_shutdown, s.connections_active), (3, 0));
    assert!(s.is_consistent());

    // Messages sent meanwhile wait offline.
    assert_eq!(
        f.send_to_user(a, 1, t(6)),
        Ok(SendOutcome::Buffered { buffered: 1 })
    );
    assert_eq!(f.close_all(SHUTDOWN, t(7)), 0);
}

#[test]
fn the_u16_link_variant_behaves_the_same() {
    let mut f = Lanes16::new(small_config()).unwrap();
    let (alice, bob) = (ctx("alice"), ctx("bob"));
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let b = f.create_manager(bob.clone(), t(0)).unwrap();
    assert_eq!(
        f.send_to_user(a, 1, t(0)),
        Ok(SendOutcome::Buffered { buffered: 1 })
    );
    let a1 = f.add_connection(a, &alice, t(0)).unwrap();
    let b1 = f.add_connection(b, &bob, t(0)).unwrap();
    assert_eq!(
        f.add_connection(a, &bob, t(0)),
        Err(Error::IsolationViolation {
            manager: a,
            violation: userlane_core::Violation::ForeignUser
        })
    );
    f.send_to_user(a, 2, t(0)).unwrap();
    f.send_to_user(b, 10, t(0)).unwrap();
    assert_eq!(
        events(&mut f),
        [
            Event::ManagerCreated(a),
            Event::ManagerCreated(b),
            Event::Transmit(a1),
            Event::Transmit(b1)
        ]
    );
    assert_eq!(messages(&mut f, a1), [1, 2]);
    assert_eq!(messages(&mut f, b1), [10]);

    assert_eq!(f.deactivate(a, t(1)), Ok(1));
    f.handle_closed(a1, t(1)).unwrap();
    let c = f.create_manager(ctx("carol"), t(2)).unwrap();
    assert_eq!(c.index(), a.index());
    assert_eq!(
        f.send_to_user(a, 3, t(2)).map_err(Error::from),
        Err(Error::ManagerInactive(a))
    );
    assert_eq!(f.poll_transmit(a1), Err(Error::UnknownConnection(a1)));

    // Timers work the same.
    assert_eq!(f.poll_timeout(), Some(t(30_002)));
    f.handle_timeout(t(30_002));
    assert!(!f.is_active(c));
    assert!(f.is_active(b));
    let s = f.stats();
    assert_eq!(
        (
            s.managers_created,
            s.managers_deactivated,
            s.managers_reclaimed
        ),
        (3, 1, 1)
    );
    assert!(s.is_consistent());
}
