//! Timers: idle connections, empty managers, `poll_timeout`, activity, what
//! is not activity, the caller's clock going backwards, deferred reclamation.

mod common;

use common::*;
use userlane_core::{
    CloseCode, Config, Error, Event, ManagerFactory, Released, SendOutcome, Transmit,
};

#[test]
fn an_empty_factory_has_no_timer() {
    let mut f = lanes();
    assert_eq!(f.poll_timeout(), None);
    f.handle_timeout(t(1_000_000));
    assert_eq!(f.now(), t(1_000_000));
    assert_eq!(f.stats(), userlane_core::Stats::default());
}

#[test]
fn poll_timeout_reports_the_earliest_deadline() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(1_000)).unwrap();
    // Empty manager: reclaimed 30 s after creation.
    assert_eq!(f.poll_timeout(), Some(t(31_000)));
    let c = f.add_connection(a, &alice, t(2_000)).unwrap();
    // Connected: only the idle timer of the connection remains.
    assert_eq!(f.poll_timeout(), Some(t(62_000)));
    f.handle_activity(c, t(10_000)).unwrap();
    assert_eq!(f.poll_timeout(), Some(t(70_000)));
    f.create_manager(ctx("bob"), t(20_000)).unwrap();
    assert_eq!(f.poll_timeout(), Some(t(50_000)));
}

#[test]
fn an_idle_connection_is_closed_with_1000_at_its_deadline() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c = f.add_connection(a, &alice, t(0)).unwrap();
    f.send_to_user(a, 5, t(0)).unwrap();
    events(&mut f);

    f.handle_timeout(t(59_999));
    assert!(f.is_open(c));
    assert_eq!(f.poll_event(), None);

    f.handle_timeout(t(60_000));
    assert!(!f.is_open(c));
    assert_eq!(
        events(&mut f),
        [Event::ConnectionClosed {
            connection: c,
            manager: a,
            close: IDLE
        }]
    );
    assert_eq!(
        transmits(&mut f, c),
        [Transmit::Message(5), Transmit::Close(IDLE)]
    );
    assert_eq!(IDLE.code, CloseCode::NORMAL);
    assert_eq!(f.empty_since(a), Ok(Some(t(60_000))));
    let s = f.stats();
    assert_eq!(
        (
            s.closed_idle_timeout,
            s.connections_active,
            s.connections_closing
        ),
        (1, 0, 1)
    );
    assert!(s.is_consistent());
    // The manager is still there, now on its empty timer.
    assert!(f.is_active(a));
    assert_eq!(f.poll_timeout(), Some(t(90_000)));
}

#[test]
fn activity_postpones_the_idle_close() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c = f.add_connection(a, &alice, t(0)).unwrap();
    f.handle_activity(c, t(30_000)).unwrap();

    f.handle_timeout(t(60_000));
    assert!(f.is_open(c));
    assert_eq!(f.poll_timeout(), Some(t(90_000)));
    f.handle_timeout(t(89_999));
    assert!(f.is_open(c));
    f.handle_timeout(t(90_000));
    assert!(!f.is_open(c));
    assert_eq!(f.stats().closed_idle_timeout, 1);
}

#[test]
fn idle_connections_are_closed_in_order_of_last_activity() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c1 = f.add_connection(a, &alice, t(0)).unwrap();
    let c2 = f.add_connection(a, &alice, t(10)).unwrap();
    let c3 = f.add_connection(a, &alice, t(20)).unwrap();
    f.handle_activity(c1, t(30)).unwrap();
    events(&mut f);

    assert_eq!(f.poll_timeout(), Some(t(60_010)));
    f.handle_timeout(t(60_020));
    assert_eq!(
        (f.is_open(c1), f.is_open(c2), f.is_open(c3)),
        (true, false, false)
    );
    let closed: Vec<_> = events(&mut f)
        .into_iter()
        .map(|e| match e {
            Event::ConnectionClosed { connection, .. } => connection,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(closed, [c2, c3]);
    assert_eq!(f.poll_timeout(), Some(t(60_030)));
    f.handle_timeout(t(60_030));
    assert!(!f.is_open(c1));
    assert_eq!(f.stats().closed_idle_timeout, 3);
}

#[test]
fn reading_stats_or_listing_connections_is_not_activity() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c = f.add_connection(a, &alice, t(0)).unwrap();
    events(&mut f);

    for ms in [10_000, 30_000, 59_999] {
        let _ = f.stats();
        let _ = f.manager_stats(a).unwrap();
        let _ = f.connections(a).unwrap().count();
        let _ = f.connection_count(a).unwrap();
        let _ = f.context(a).unwrap();
        let _ = f.empty_since(a).unwrap();
        let _ = f.owner_of(c).unwrap();
        let _ = f.queued(c).unwrap();
        let _ = f.is_open(c);
        let _ = f.is_active(a);
        let _ = f.manager_for_user("alice");
        let _ = f.poll_transmit(c);
        // Outbound messages are not inbound activity either.
        f.send_to_user(a, ms as u32, t(ms)).unwrap();
        events(&mut f);
        messages(&mut f, c);
        assert_eq!(f.poll_timeout(), Some(t(60_000)));
    }
    f.handle_timeout(t(60_000));
    assert!(!f.is_open(c));
    assert_eq!(f.stats().closed_idle_timeout, 1);
}

#[test]
fn an_empty_manager_is_reclaimed_after_its_ttl() {
    let mut f = lanes();
    let a = f.create_manager(ctx("alice"), t(0)).unwrap();
    events(&mut f);

    f.handle_timeout(t(29_999));
    assert!(f.is_active(a));
    f.handle_timeout(t(30_000));
    assert!(!f.is_active(a));
    assert_eq!(
        events(&mut f),
        [Event::ManagerReclaimed {
            manager: a,
            discarded_offline: 0
        }]
    );
    assert_eq!(
        f.send_to_user(a, 1, t(30_001)).map_err(Error::from),
        Err(Error::ManagerInactive(a))
    );
    assert_eq!(
        f.add_connection(a, &ctx("alice"), t(30_001)),
        Err(Error::ManagerInactive(a))
    );
    assert_eq!(f.deactivate(a, t(30_001)), Err(Error::ManagerInactive(a)));
    assert_eq!(f.manager_stats(a), Err(Error::ManagerInactive(a)));
    assert_eq!(f.manager_for_user("alice"), None);
    assert_eq!(f.poll_timeout(), None);
    let s = f.stats();
    assert_eq!(
        (
            s.managers_reclaimed,
            s.managers_cleaned_up(),
            s.managers_active
        ),
        (1, 1, 0)
    );
    assert!(s.is_consistent());

    let again = f.create_manager(ctx("alice"), t(30_002)).unwrap();
    assert_ne!(again, a);
    assert!(f.is_active(again));
}

#[test]
fn the_ttl_runs_from_when_the_last_connection_left() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c1 = f.add_connection(a, &alice, t(10_000)).unwrap();
    let c2 = f.add_connection(a, &alice, t(10_000)).unwrap();
    f.remove_connection(a, c1, t(15_000)).unwrap();
    assert_eq!(f.empty_since(a), Ok(None));
    f.handle_closed(c2, t(20_000)).unwrap();
    assert_eq!(f.empty_since(a), Ok(Some(t(20_000))));
    assert_eq!(f.poll_timeout(), Some(t(50_000)));

    f.handle_timeout(t(30_000));
    assert!(f.is_active(a));
    f.handle_timeout(t(50_000));
    assert!(!f.is_active(a));
}

#[test]
fn a_reclaimed_manager_discards_its_offline_buffer() {
    let mut f = lanes();
    let a = f.create_manager(ctx("alice"), t(0)).unwrap();
    f.send_to_user(a, 1, t(0)).unwrap();
    f.send_to_user(a, 2, t(0)).unwrap();
    events(&mut f);
    f.handle_timeout(t(30_000));
    assert_eq!(
        events(&mut f),
        [Event::ManagerReclaimed {
            manager: a,
            discarded_offline: 2
        }]
    );
    let s = f.stats();
    assert_eq!((s.offline_discarded, s.offline_now), (2, 0));
    assert_eq!(f.free_queue_slots(), 16);
    assert!(s.is_consistent());
}

#[test]
fn an_idle_close_then_reclamation_leaves_the_closing_connection_releasable() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c = f.add_connection(a, &alice, t(0)).unwrap();
    f.send_to_user(a, 1, t(0)).unwrap();
    events(&mut f);

    f.handle_timeout(t(60_000));
    assert_eq!(f.poll_timeout(), Some(t(90_000)));
    f.handle_timeout(t(90_000));
    assert_eq!(
        events(&mut f),
        [
            Event::ManagerReclaimed {
                manager: a,
                discarded_offline: 0
            },
            Event::ConnectionClosed {
                connection: c,
                manager: a,
                close: IDLE
            }
        ]
    );
    assert!(!f.is_active(a));
    assert_eq!(f.owner_of(c), Ok(a));
    assert_eq!(
        f.handle_closed(c, t(90_001)),
        Ok(Released { undelivered: 1 })
    );
    let s = f.stats();
    assert_eq!(
        (
            s.closed_idle_timeout,
            s.managers_reclaimed,
            s.messages_dropped,
            s.connections_closing
        ),
        (1, 1, 1, 0)
    );
    assert!(s.is_consistent());
}

#[test]
fn a_connection_that_keeps_sending_activity_is_never_reaped() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c = f.add_connection(a, &alice, t(0)).unwrap();
    let mut now = 0;
    for _ in 0..1_000 {
        // A pong every 50 s against a 60 s idle timeout and a 30 s ttl.
        now += 50_000;
        f.handle_activity(c, t(now)).unwrap();
        let deadline = f.poll_timeout().unwrap();
        assert_eq!(deadline, t(now + 60_000));
        f.handle_timeout(t(now));
        f.handle_timeout(t(now + 49_999));
        assert!(f.is_open(c));
        assert!(f.is_active(a));
    }
    let s = f.stats();
    assert_eq!(
        (
            s.closed_idle_timeout,
            s.managers_reclaimed,
            s.connections_active
        ),
        (0, 0, 1)
    );
    assert_eq!(events(&mut f), [Event::ManagerCreated(a)]);
}

#[test]
fn time_going_backwards_is_clamped_to_the_latest_instant() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(50_000)).unwrap();
    assert_eq!(f.now(), t(50_000));
    let c = f.add_connection(a, &alice, t(10_000)).unwrap();
    // Added "at 10 s" but the factory has seen 50 s already.
    assert_eq!(f.poll_timeout(), Some(t(110_000)));
    f.handle_activity(c, t(80_000)).unwrap();
    f.handle_activity(c, t(20_000)).unwrap();
    assert_eq!(f.now(), t(80_000));
    assert_eq!(f.poll_timeout(), Some(t(140_000)));

    // A late timer with an old instant closes nothing.
    f.handle_timeout(t(0));
    assert!(f.is_open(c));
    let b = f.create_manager(ctx("bob"), t(1)).unwrap();
    assert_eq!(f.manager_stats(b).unwrap().created_at, t(80_000));
    assert_eq!(f.empty_since(b), Ok(Some(t(80_000))));
    f.remove_connection(a, c, t(5)).unwrap();
    assert_eq!(f.empty_since(a), Ok(Some(t(80_000))));
    assert_eq!(f.poll_timeout(), Some(t(110_000)));
    assert_eq!(f.now(), t(80_000));
}

#[test]
fn without_timers_nothing_is_closed_or_reclaimed() {
    let mut f = lanes_with(Config {
        idle_timeout_ms: None,
        empty_manager_ttl_ms: None,
        ..small_config()
    });
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let e = f.create_manager(ctx("empty"), t(0)).unwrap();
    let c = f.add_connection(a, &alice, t(0)).unwrap();
    assert_eq!(f.poll_timeout(), None);
    f.handle_timeout(t(u64::MAX));
    assert!(f.is_open(c));
    assert!(f.is_active(e));
    assert_eq!(f.stats().managers_reclaimed, 0);
}

#[test]
fn only_the_idle_timer_or_only_the_ttl_can_be_on() {
    let mut idle_only = lanes_with(Config {
        empty_manager_ttl_ms: None,
        ..small_config()
    });
    let alice = ctx("alice");
    let a = idle_only.create_manager(alice.clone(), t(0)).unwrap();
    assert_eq!(idle_only.poll_timeout(), None);
    let c = idle_only.add_connection(a, &alice, t(0)).unwrap();
    assert_eq!(idle_only.poll_timeout(), Some(t(60_000)));
    idle_only.handle_timeout(t(60_000));
    assert!(!idle_only.is_open(c));
    assert_eq!(idle_only.poll_timeout(), None);
    assert!(idle_only.is_active(a));

    let mut ttl_only = lanes_with(Config {
        idle_timeout_ms: None,
        ..small_config()
    });
    let a = ttl_only.create_manager(alice.clone(), t(0)).unwrap();
    let c = ttl_only.add_connection(a, &alice, t(0)).unwrap();
    assert_eq!(ttl_only.poll_timeout(), None);
    ttl_only.handle_closed(c, t(1)).unwrap();
    assert_eq!(ttl_only.poll_timeout(), Some(t(30_001)));
}

#[test]
fn a_reclamation_waits_while_the_event_queue_is_full() {
    let mut f: ManagerFactory<u32, 4, 8, 16, 1> = ManagerFactory::new(small_config()).unwrap();
    let a = f.create_manager(ctx("alice"), t(0)).unwrap();
    // The ManagerCreated event is not drained: the queue is full.
    f.handle_timeout(t(30_000));
    assert!(f.is_active(a));
    assert_eq!(f.stats().managers_reclaimed, 0);
    // Still due.
    assert_eq!(f.poll_timeout(), Some(t(30_000)));

    assert_eq!(f.poll_event(), Some(Event::ManagerCreated(a)));
    f.handle_timeout(t(30_001));
    assert!(!f.is_active(a));
    assert_eq!(
        events(&mut f),
        [Event::ManagerReclaimed {
            manager: a,
            discarded_offline: 0
        }]
    );
    assert!(f.stats().is_consistent());
}

#[test]
fn activity_and_sends_keep_a_connected_manager_from_being_reclaimed() {
    let mut f = lanes_with(Config {
        idle_timeout_ms: None,
        ..small_config()
    });
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c = f.add_connection(a, &alice, t(0)).unwrap();
    f.handle_timeout(t(1_000_000));
    assert!(f.is_active(a));
    assert_eq!(
        f.send_to_user(a, 1, t(1_000_000)),
        Ok(SendOutcome::Queued {
            queued_for: 1,
            closed_slow: 0
        })
    );
    assert_eq!(f.queued(c), Ok(1));
}
