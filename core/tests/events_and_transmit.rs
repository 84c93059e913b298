//! The polling contract: `poll_event` order and exactly-once reporting,
//! `poll_transmit` FIFO order and the single close, a full drain loop.

mod common;

use common::*;
use std::collections::HashMap;

use userlane_core::{CloseCode, ConnectionHandle, Error, Event, ManagerFactory, Transmit};

#[test]
fn lifecycle_events_come_before_connection_events() {
    let mut f = lanes();
    let (alice, bob) = (ctx("alice"), ctx("bob"));
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let a1 = f.add_connection(a, &alice, t(0)).unwrap();
    f.send_to_user(a, 1, t(0)).unwrap();
    // Created after a1's Transmit was raised, reported before it.
    let b = f.create_manager(bob.clone(), t(0)).unwrap();
    let b1 = f.add_connection(b, &bob, t(0)).unwrap();
    f.send_to_user(b, 2, t(0)).unwrap();
    f.deactivate(b, t(1)).unwrap();

    assert_eq!(
        events(&mut f),
        [
            Event::ManagerCreated(a),
            Event::ManagerCreated(b),
            Event::ManagerDeactivated {
                manager: b,
                closed_connections: 1,
                discarded_offline: 0
            },
            Event::Transmit(a1),
            // b1's Transmit became its close: one event, at its first place.
            Event::ConnectionClosed {
                connection: b1,
                manager: b,
                close: DEACTIVATED
            },
        ]
    );
    assert_eq!(f.poll_event(), None);
}

#[test]
fn drain_events_reports_what_poll_event_would_in_the_same_order() {
    // The same commands on two factories: one drained with `poll_event`,
    // one with `drain_events`.
    let scenario = || {
        let mut f = lanes();
        let (alice, bob) = (ctx("alice"), ctx("bob"));
        let a = f.create_manager(alice.clone(), t(0)).unwrap();
        let a1 = f.add_connection(a, &alice, t(0)).unwrap();
        let a2 = f.add_connection(a, &alice, t(0)).unwrap();
        f.send_to_user(a, 1, t(0)).unwrap();
        let b = f.create_manager(bob.clone(), t(0)).unwrap();
        f.add_connection(b, &bob, t(0)).unwrap();
        f.send_to_user(b, 2, t(0)).unwrap();
        f.close_connection(a, a2, CloseCode::NORMAL, t(1)).unwrap();
        f.deactivate(b, t(1)).unwrap();
        (f, a, a1)
    };
    let (mut polled, _, _) = scenario();
    let (mut drained, a, a1) = scenario();
    let by_poll = events(&mut polled);
    let mut by_drain = Vec::new();
    drained.drain_events(|e| by_drain.push(e));
    assert_eq!(by_drain, by_poll);
    assert_eq!(by_drain.len(), 6);
    assert_eq!(drained.poll_event(), None);

    // The pending list starts afresh: the next events are raised again.
    while drained.poll_transmit(a1).is_ok_and(|t| t.is_some()) {}
    drained.send_to_user(a, 3, t(2)).unwrap();
    let mut again = Vec::new();
    drained.drain_events(|e| again.push(e));
    assert_eq!(again, [Event::Transmit(a1)]);
    drained.drain_events(|_| panic!("an event reported twice"));
}

#[test]
fn connection_events_are_reported_oldest_first() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c1 = f.add_connection(a, &alice, t(0)).unwrap();
    let c2 = f.add_connection(a, &alice, t(0)).unwrap();
    let c3 = f.add_connection(a, &alice, t(0)).unwrap();
    events(&mut f);
    f.close_connection(a, c2, CloseCode::NORMAL, t(1)).unwrap();
    f.send_to_user(a, 1, t(2)).unwrap();
    assert_eq!(
        events(&mut f),
        [
            Event::ConnectionClosed {
                connection: c2,
                manager: a,
                close: app_close(CloseCode::NORMAL)
            },
            Event::Transmit(c1),
            Event::Transmit(c3),
        ]
    );
}

#[test]
fn a_transmit_event_is_raised_only_when_a_queue_becomes_non_empty() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c = f.add_connection(a, &alice, t(0)).unwrap();
    events(&mut f);

    f.send_to_user(a, 1, t(0)).unwrap();
    f.send_to_user(a, 2, t(0)).unwrap();
    assert_eq!(events(&mut f), [Event::Transmit(c)]);
    // Not yet drained: a third message raises nothing new.
    f.send_to_user(a, 3, t(0)).unwrap();
    assert_eq!(events(&mut f), []);
    assert_eq!(messages(&mut f, c), [1, 2, 3]);
    // Drained: the next message wakes the writer again.
    f.send_to_user(a, 4, t(0)).unwrap();
    assert_eq!(events(&mut f), [Event::Transmit(c)]);
    // Partly drained: still non-empty, no new event.
    f.send_to_user(a, 5, t(0)).unwrap();
    assert_eq!(f.poll_transmit(c), Ok(Some(Transmit::Message(4))));
    f.send_to_user(a, 6, t(0)).unwrap();
    assert_eq!(events(&mut f), []);
    assert_eq!(messages(&mut f, c), [5, 6]);
}

#[test]
fn a_replay_raises_a_transmit_event() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    f.send_to_user(a, 1, t(0)).unwrap();
    events(&mut f);
    let c = f.add_connection(a, &alice, t(0)).unwrap();
    assert_eq!(events(&mut f), [Event::Transmit(c)]);
    assert_eq!(messages(&mut f, c), [1]);
}

#[test]
fn poll_transmit_gives_messages_in_order_then_one_close_then_nothing() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c = f.add_connection(a, &alice, t(0)).unwrap();
    assert_eq!(f.poll_transmit(c), Ok(None));
    for p in [10, 20, 30] {
        f.send_to_user(a, p, t(0)).unwrap();
    }
    assert_eq!(f.poll_transmit(c), Ok(Some(Transmit::Message(10))));
    let code = CloseCode::POLICY_VIOLATION;
    f.close_connection(a, c, code, t(1)).unwrap();
    assert_eq!(f.poll_transmit(c), Ok(Some(Transmit::Message(20))));
    assert_eq!(f.poll_transmit(c), Ok(Some(Transmit::Message(30))));
    assert_eq!(
        f.poll_transmit(c),
        Ok(Some(Transmit::Close(app_close(code))))
    );
    for _ in 0..3 {
        assert_eq!(f.poll_transmit(c), Ok(None));
    }
    let s = f.stats();
    assert_eq!(
        (
            s.messages_transmitted,
            s.messages_queued_now,
            s.messages_dropped
        ),
        (3, 0, 0)
    );
    assert!(s.is_consistent());
}

#[test]
fn poll_transmit_on_a_released_handle_says_gone_and_changes_nothing() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c = f.add_connection(a, &alice, t(0)).unwrap();
    f.send_to_user(a, 1, t(0)).unwrap();
    f.handle_closed(c, t(1)).unwrap();
    let before = f.stats();
    assert_eq!(f.poll_transmit(c), Err(Error::UnknownConnection(c)));
    assert_eq!(f.stats(), before);
}

#[test]
fn events_are_reported_exactly_once() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c = f.add_connection(a, &alice, t(0)).unwrap();
    f.send_to_user(a, 1, t(0)).unwrap();
    assert_eq!(f.poll_event(), Some(Event::ManagerCreated(a)));
    assert_eq!(f.poll_event(), Some(Event::Transmit(c)));
    assert_eq!(f.poll_event(), None);
    assert_eq!(f.poll_event(), None);
    f.close_connection(a, c, CloseCode::NORMAL, t(1)).unwrap();
    assert_eq!(
        f.poll_event(),
        Some(Event::ConnectionClosed {
            connection: c,
            manager: a,
            close: app_close(CloseCode::NORMAL)
        })
    );
    assert_eq!(f.poll_event(), None);
    // Draining the closing connection raises nothing further.
    transmits(&mut f, c);
    assert_eq!(f.poll_event(), None);
}

/// A factory whose lifecycle queue holds a single event.
type OneEvent = ManagerFactory<u32, 4, 8, 16, 1>;

/// What a runtime does after every call: drain the events, write every
/// woken connection's transmits, release the sockets it closed. Messages
/// written are recorded per user of the connection as (user, round).
fn drain_like_a_runtime(
    f: &mut OneEvent,
    user_of: &HashMap<ConnectionHandle, usize>,
    written: &mut [Vec<(usize, u32)>],
    now: u64,
) {
    while let Some(event) = f.poll_event() {
        let conn = match event {
            Event::Transmit(c) => c,
            Event::ConnectionClosed { connection, .. } => connection,
            _ => continue,
        };
        while let Ok(Some(tx)) = f.poll_transmit(conn) {
            match tx {
                Transmit::Message(p) => {
                    written[user_of[&conn]].push((p as usize / 1000, p % 1000));
                }
                Transmit::Close(_) => {
                    f.handle_closed(conn, t(now)).unwrap();
                }
            }
        }
    }
}

#[test]
fn a_runtime_following_the_drain_rule_delivers_everything_and_never_sees_events_pending() {
    let mut f = OneEvent::new(small_config()).unwrap();
    let users = ["u0", "u1", "u2", "u3"];
    let mut written: Vec<Vec<(usize, u32)>> = vec![Vec::new(); users.len()];
    let mut user_of = HashMap::new();
    let mut now = 0u64;

    for round in 0..20u32 {
        for (i, u) in users.iter().enumerate() {
            let c = ctx(u);
            // Every call below would fail with EventsPending (one slot) if
            // the previous event had not been drained.
            let m = f.create_manager(c.clone(), t(now)).unwrap();
            drain_like_a_runtime(&mut f, &user_of, &mut written, now);
            if f.connection_count(m).unwrap() < 2 {
                let conn = f.add_connection(m, &c, t(now)).unwrap();
                user_of.insert(conn, i);
                drain_like_a_runtime(&mut f, &user_of, &mut written, now);
            }
            // Payload: user * 1000 + round.
            f.send_to_user(m, (i as u32) * 1000 + round, t(now))
                .unwrap();
            drain_like_a_runtime(&mut f, &user_of, &mut written, now);
            if round % 7 == 6 {
                assert_eq!(f.deactivate(m, t(now)), Ok(2));
                drain_like_a_runtime(&mut f, &user_of, &mut written, now);
            }
        }
        now += 1_000;
        f.handle_timeout(t(now));
        drain_like_a_runtime(&mut f, &user_of, &mut written, now);
    }

    let s = f.stats();
    assert_eq!(s.rejected_events_pending, 0);
    assert_eq!(s.managers_deactivated, 8);
    assert_eq!(s.sends_accepted, 80);
    assert_eq!(s.messages_dropped, 0);
    assert_eq!(s.messages_queued, s.messages_transmitted);
    assert_eq!(s.messages_queued_now, 0);
    assert_eq!(s.connections_closing, 0);
    assert!(s.is_consistent());
    for (i, w) in written.iter().enumerate() {
        // Only the user's own messages, in order, every round delivered.
        assert!(w.iter().all(|&(u, _)| u == i), "user {i} got {w:?}");
        assert!(w.windows(2).all(|p| p[0].1 <= p[1].1), "user {i}: {w:?}");
        let rounds: std::collections::BTreeSet<u32> = w.iter().map(|&(_, r)| r).collect();
        assert_eq!(rounds.len(), 20, "user {i}: {w:?}");
    }
}
