//! `send_to_user`: fan-out, isolation between users, the two slow-consumer
//! policies, pool exhaustion, offline buffering and its limits.

mod common;

use common::*;
use userlane_core::{
    Config, Error, Event, Limit, ManagerFactory, SendOutcome, SlowConsumerPolicy, Transmit,
};

#[test]
fn a_message_fans_out_to_every_open_connection_of_the_user_only() {
    let mut f = lanes();
    let (alice, bob) = (ctx("alice"), ctx("bob"));
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let b = f.create_manager(bob.clone(), t(0)).unwrap();
    let a1 = f.add_connection(a, &alice, t(0)).unwrap();
    let b1 = f.add_connection(b, &bob, t(0)).unwrap();
    let a2 = f.add_connection(a, &alice, t(0)).unwrap();
    let a3 = f.add_connection(a, &alice, t(0)).unwrap();
    events(&mut f);

    let outcome = f.send_to_user(a, 7, t(1)).unwrap();
    assert_eq!(
        outcome,
        SendOutcome::Queued {
            queued_for: 3,
            closed_slow: 0
        }
    );
    assert_eq!(outcome.queued_for(), 3);
    assert_eq!(
        events(&mut f),
        [
            Event::Transmit(a1),
            Event::Transmit(a2),
            Event::Transmit(a3)
        ]
    );
    for c in [a1, a2, a3] {
        assert_eq!(messages(&mut f, c), [7]);
    }
    assert_eq!(f.queued(b1), Ok(0));
    assert_eq!(f.poll_transmit(b1), Ok(None));

    let s = f.stats();
    assert_eq!(
        (s.sends_accepted, s.messages_queued, s.messages_transmitted),
        (1, 3, 3)
    );
    let ms = f.manager_stats(a).unwrap();
    assert_eq!((ms.sends_accepted, ms.messages_queued), (1, 3));
    assert_eq!(f.manager_stats(b).unwrap().messages_queued, 0);
    assert!(s.is_consistent());
}

#[test]
fn messages_keep_their_order_on_each_connection() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c1 = f.add_connection(a, &alice, t(0)).unwrap();
    f.send_to_user(a, 1, t(0)).unwrap();
    let c2 = f.add_connection(a, &alice, t(0)).unwrap();
    f.send_to_user(a, 2, t(0)).unwrap();
    f.send_to_user(a, 3, t(0)).unwrap();
    assert_eq!(messages(&mut f, c1), [1, 2, 3]);
    assert_eq!(messages(&mut f, c2), [2, 3]);
    f.send_to_user(a, 4, t(0)).unwrap();
    assert_eq!(messages(&mut f, c2), [4]);
    assert_eq!(messages(&mut f, c1), [4]);
}

#[test]
fn reject_send_refuses_the_whole_send_when_one_queue_is_full() {
    let mut f = lanes_with(Config {
        queue_depth: 2,
        offline_buffer: 2,
        ..small_config()
    });
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let slow = f.add_connection(a, &alice, t(0)).unwrap();
    let fast = f.add_connection(a, &alice, t(0)).unwrap();
    f.send_to_user(a, 1, t(0)).unwrap();
    f.send_to_user(a, 2, t(0)).unwrap();
    events(&mut f);
    assert_eq!(messages(&mut f, fast), [1, 2]);
    let free = f.free_queue_slots();
    let before = f.stats();

    let refused = f.send_to_user(a, 3, t(1)).unwrap_err();
    // The payload is handed back, not dropped.
    assert_eq!(refused.payload, 3);
    let err = Error::from(refused);
    assert_eq!(err, Error::QueueFull(slow));
    assert_eq!(
        err.to_string(),
        "outbound queue of a connection is full; nothing was sent"
    );
    // Nothing was enqueued anywhere.
    assert_eq!(f.queued(fast), Ok(0));
    assert_eq!(f.queued(slow), Ok(2));
    assert_eq!(f.free_queue_slots(), free);
    assert_eq!(f.poll_event(), None);
    assert!(f.is_open(slow));

    let s = f.stats();
    assert_eq!(s.messages_queued, before.messages_queued);
    assert_eq!(
        (
            s.rejected_queue_full,
            s.resource_limit_hits(),
            s.sends_refused,
            s.sends_accepted
        ),
        (1, 1, 1, 2)
    );
    let ms = f.manager_stats(a).unwrap();
    assert_eq!(
        (ms.sends_refused, ms.limit_hits, ms.sends_accepted),
        (1, 1, 2)
    );
    assert!(s.is_consistent());

    // Once the slow connection drains, sends succeed again.
    assert_eq!(messages(&mut f, slow), [1, 2]);
    assert_eq!(
        f.send_to_user(a, 3, t(2)),
        Ok(SendOutcome::Queued {
            queued_for: 2,
            closed_slow: 0
        })
    );
}

#[test]
fn close_slow_connection_closes_the_full_queue_with_1013_and_delivers_to_the_rest() {
    let mut f = lanes_with(Config {
        queue_depth: 2,
        offline_buffer: 2,
        slow_consumer: SlowConsumerPolicy::CloseSlowConnection,
        ..small_config()
    });
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let slow = f.add_connection(a, &alice, t(0)).unwrap();
    let fast = f.add_connection(a, &alice, t(0)).unwrap();
    f.send_to_user(a, 1, t(0)).unwrap();
    f.send_to_user(a, 2, t(0)).unwrap();
    events(&mut f);
    assert_eq!(messages(&mut f, fast), [1, 2]);

    assert_eq!(
        f.send_to_user(a, 3, t(1)),
        Ok(SendOutcome::Queued {
            queued_for: 1,
            closed_slow: 1
        })
    );
    assert_eq!(
        events(&mut f),
        [
            Event::ConnectionClosed {
                connection: slow,
                manager: a,
                close: SLOW
            },
            Event::Transmit(fast)
        ]
    );
    assert_eq!(SLOW.code.as_u16(), 1013);
    // The slow connection gets what it had queued, then 1013, not message 3.
    assert_eq!(
        transmits(&mut f, slow),
        [
            Transmit::Message(1),
            Transmit::Message(2),
            Transmit::Close(SLOW)
        ]
    );
    assert_eq!(messages(&mut f, fast), [3]);
    assert!(!f.is_open(slow));
    assert_eq!(f.connections(a).unwrap().collect::<Vec<_>>(), [fast]);

    let s = f.stats();
    assert_eq!(
        (
            s.closed_slow_consumer,
            s.messages_closed_slow,
            s.sends_accepted,
            s.resource_limit_hits()
        ),
        (1, 1, 3, 0)
    );
    assert_eq!(f.manager_stats(a).unwrap().messages_closed_slow, 1);
    assert!(s.is_consistent());
}

#[test]
fn close_slow_connection_with_every_queue_full_reaches_no_connection() {
    let mut f = lanes_with(Config {
        queue_depth: 1,
        offline_buffer: 1,
        slow_consumer: SlowConsumerPolicy::CloseSlowConnection,
        ..small_config()
    });
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c1 = f.add_connection(a, &alice, t(0)).unwrap();
    let c2 = f.add_connection(a, &alice, t(0)).unwrap();
    f.send_to_user(a, 1, t(0)).unwrap();

    let outcome = f.send_to_user(a, 2, t(5)).unwrap();
    assert_eq!(
        outcome,
        SendOutcome::Queued {
            queued_for: 0,
            closed_slow: 2
        }
    );
    assert_eq!(outcome.queued_for(), 0);
    assert!(!f.is_open(c1) && !f.is_open(c2));
    assert_eq!(f.empty_since(a), Ok(Some(t(5))));
    assert_eq!(f.stats().messages_closed_slow, 2);
    // With no open connection left, the next message waits offline.
    assert_eq!(
        f.send_to_user(a, 3, t(6)),
        Ok(SendOutcome::Buffered { buffered: 1 })
    );
    assert!(f.stats().is_consistent());
}

#[test]
fn an_exhausted_pool_refuses_the_whole_send() {
    // 4 queued-message slots shared by everyone.
    let mut f: ManagerFactory<u32, 4, 8, 4> = ManagerFactory::new(Config {
        queue_depth: 4,
        offline_buffer: 2,
        ..small_config()
    })
    .unwrap();
    let (alice, bob) = (ctx("alice"), ctx("bob"));
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let b = f.create_manager(bob.clone(), t(0)).unwrap();
    let a1 = f.add_connection(a, &alice, t(0)).unwrap();
    let a2 = f.add_connection(a, &alice, t(0)).unwrap();
    let b1 = f.add_connection(b, &bob, t(0)).unwrap();
    f.send_to_user(b, 100, t(0)).unwrap();
    f.send_to_user(b, 101, t(0)).unwrap();
    f.send_to_user(a, 1, t(0)).unwrap(); // one slot per connection: 2
    assert_eq!(f.free_queue_slots(), 0);

    // Bob's queue is not full (2 < 4), the shared pool is.
    let err = Error::from(f.send_to_user(b, 102, t(0)).unwrap_err());
    assert_eq!(err, Error::LimitReached(Limit::QueueSlots));
    assert_eq!(
        err.to_string(),
        "limit reached: no free queued-message slot"
    );
    assert_eq!(f.queued(b1), Ok(2));

    // One free slot is not enough for alice's two connections: neither gets it.
    assert_eq!(messages(&mut f, b1), [100, 101]);
    f.send_to_user(b, 103, t(0)).unwrap();
    assert_eq!(f.free_queue_slots(), 1);
    assert_eq!(
        f.send_to_user(a, 2, t(0)).map_err(Error::from),
        Err(Error::LimitReached(Limit::QueueSlots))
    );
    assert_eq!((f.queued(a1), f.queued(a2)), (Ok(1), Ok(1)));
    assert_eq!(f.free_queue_slots(), 1);

    let s = f.stats();
    assert_eq!(
        (
            s.rejected_queue_slots,
            s.resource_limit_hits(),
            s.sends_refused
        ),
        (2, 2, 2)
    );
    assert_eq!(f.manager_stats(a).unwrap().limit_hits, 1);
    assert_eq!(f.manager_stats(b).unwrap().limit_hits, 1);
    assert!(s.is_consistent());

    // Draining frees the slots at once.
    events(&mut f);
    assert_eq!(messages(&mut f, a1), [1]);
    assert_eq!(messages(&mut f, a2), [1]);
    assert_eq!(
        f.send_to_user(a, 2, t(1)),
        Ok(SendOutcome::Queued {
            queued_for: 2,
            closed_slow: 0
        })
    );
}

#[test]
fn an_exhausted_pool_closes_no_slow_connection_either() {
    let mut f: ManagerFactory<u32, 4, 8, 2> = ManagerFactory::new(Config {
        queue_depth: 1,
        offline_buffer: 1,
        slow_consumer: SlowConsumerPolicy::CloseSlowConnection,
        ..small_config()
    })
    .unwrap();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let full = f.add_connection(a, &alice, t(0)).unwrap();
    let drained = f.add_connection(a, &alice, t(0)).unwrap();
    f.send_to_user(a, 1, t(0)).unwrap();
    assert_eq!(messages(&mut f, drained), [1]);
    let fresh = f.add_connection(a, &alice, t(0)).unwrap();
    assert_eq!(f.free_queue_slots(), 1);

    // Two connections would get the message, one slot is free.
    assert_eq!(
        f.send_to_user(a, 2, t(1)).map_err(Error::from),
        Err(Error::LimitReached(Limit::QueueSlots))
    );
    assert!(f.is_open(full));
    assert_eq!(
        (f.queued(full), f.queued(drained), f.queued(fresh)),
        (Ok(1), Ok(0), Ok(0))
    );
    let s = f.stats();
    assert_eq!((s.closed_slow_consumer, s.messages_closed_slow), (0, 0));
    assert_eq!(s.rejected_queue_slots, 1);
    assert!(s.is_consistent());
}

#[test]
fn a_user_without_connections_gets_a_bounded_offline_buffer() {
    let mut f = lanes_with(Config {
        offline_buffer: 2,
        ..small_config()
    });
    let a = f.create_manager(ctx("alice"), t(0)).unwrap();
    let b = f.create_manager(ctx("bob"), t(0)).unwrap();

    assert_eq!(
        f.send_to_user(a, 1, t(0)),
        Ok(SendOutcome::Buffered { buffered: 1 })
    );
    assert_eq!(
        f.send_to_user(a, 2, t(0)),
        Ok(SendOutcome::Buffered { buffered: 2 })
    );
    assert_eq!(SendOutcome::Buffered { buffered: 2 }.queued_for(), 0);
    let err = Error::from(f.send_to_user(a, 3, t(0)).unwrap_err());
    assert_eq!(err, Error::LimitReached(Limit::OfflineBuffer));
    assert_eq!(
        err.to_string(),
        "limit reached: offline buffer of the user is full"
    );
    // Every user has a buffer of their own.
    assert_eq!(
        f.send_to_user(b, 10, t(0)),
        Ok(SendOutcome::Buffered { buffered: 1 })
    );

    let s = f.stats();
    assert_eq!(
        (
            s.offline_buffered,
            s.offline_now,
            s.rejected_offline_full,
            s.resource_limit_hits()
        ),
        (3, 3, 1, 1)
    );
    assert_eq!((s.sends_accepted, s.sends_refused), (3, 1));
    assert_eq!(f.free_queue_slots(), 13);
    let ms = f.manager_stats(a).unwrap();
    assert_eq!(
        (
            ms.offline_now,
            ms.offline_buffered,
            ms.sends_accepted,
            ms.sends_refused,
            ms.limit_hits
        ),
        (2, 2, 2, 1, 1)
    );
    assert_eq!(f.manager_stats(b).unwrap().offline_now, 1);
    assert!(s.is_consistent());

    // Buffering never produces a transmit.
    assert_eq!(
        events(&mut f),
        [Event::ManagerCreated(a), Event::ManagerCreated(b)]
    );
}

#[test]
fn offline_buffering_is_refused_when_the_pool_is_exhausted() {
    let mut f: ManagerFactory<u32, 4, 8, 2> = ManagerFactory::new(Config {
        queue_depth: 2,
        offline_buffer: 2,
        ..small_config()
    })
    .unwrap();
    let a = f.create_manager(ctx("alice"), t(0)).unwrap();
    let b = f.create_manager(ctx("bob"), t(0)).unwrap();
    f.send_to_user(a, 1, t(0)).unwrap();
    f.send_to_user(a, 2, t(0)).unwrap();
    assert_eq!(
        f.send_to_user(b, 3, t(0)).map_err(Error::from),
        Err(Error::LimitReached(Limit::QueueSlots))
    );
    let s = f.stats();
    assert_eq!((s.rejected_queue_slots, s.offline_now), (1, 2));
    assert_eq!(f.manager_stats(b).unwrap().offline_now, 0);
    assert!(s.is_consistent());
}

#[test]
fn with_buffering_off_a_user_without_connections_gets_no_connections() {
    let mut f = lanes_with(Config {
        offline_buffer: 0,
        ..small_config()
    });
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();

    let err = Error::from(f.send_to_user(a, 1, t(0)).unwrap_err());
    assert_eq!(err, Error::NoConnections(a));
    assert_eq!(
        err.to_string(),
        "user has no open connection and offline buffering is disabled"
    );
    let s = f.stats();
    assert_eq!(
        (
            s.rejected_no_connections,
            s.resource_limit_hits(),
            s.sends_refused,
            s.offline_buffered
        ),
        (1, 0, 1, 0)
    );
    let ms = f.manager_stats(a).unwrap();
    assert_eq!((ms.sends_refused, ms.limit_hits), (1, 0));
    assert_eq!(f.free_queue_slots(), 16);
    assert!(s.is_consistent());

    // With a connection the same send goes through; nothing was kept for it.
    let c = f.add_connection(a, &alice, t(1)).unwrap();
    assert_eq!(f.queued(c), Ok(0));
    assert_eq!(
        f.send_to_user(a, 2, t(1)),
        Ok(SendOutcome::Queued {
            queued_for: 1,
            closed_slow: 0
        })
    );
}

#[test]
fn messages_sent_while_every_connection_is_closing_wait_for_the_next_one() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let old = f.add_connection(a, &alice, t(0)).unwrap();
    f.send_to_user(a, 1, t(0)).unwrap();
    f.close_connection(a, old, userlane_core::CloseCode::NORMAL, t(1))
        .unwrap();

    assert_eq!(
        f.send_to_user(a, 2, t(2)),
        Ok(SendOutcome::Buffered { buffered: 1 })
    );
    let new = f.add_connection(a, &alice, t(3)).unwrap();
    assert_eq!(
        transmits(&mut f, old),
        [
            Transmit::Message(1),
            Transmit::Close(app_close(userlane_core::CloseCode::NORMAL))
        ]
    );
    assert_eq!(messages(&mut f, new), [2]);
    assert!(f.stats().is_consistent());
}

#[test]
fn a_send_through_a_dead_or_unknown_handle_is_refused_and_counted() {
    let mut f = lanes();
    let a = f.create_manager(ctx("alice"), t(0)).unwrap();
    f.deactivate(a, t(0)).unwrap();
    assert_eq!(
        f.send_to_user(a, 1, t(1)).map_err(Error::from),
        Err(Error::ManagerInactive(a))
    );
    let s = f.stats();
    assert_eq!(
        (
            s.sends_refused,
            s.rejected_inactive_manager,
            s.sends_accepted
        ),
        (1, 1, 0)
    );
    assert!(s.is_consistent());
}
