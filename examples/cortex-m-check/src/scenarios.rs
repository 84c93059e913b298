//! The lifecycle scenarios, each on its own gateway factory. Every step that
//! changes the factory is followed by a check that its counters add up.
//! What each asserts is the behaviour documented and tested on the host in
//! `core/tests/` (lifecycle, sending, timers, inbound).

use core::mem::size_of;

use cortex_m_semihosting::hprintln;
use userlane_core::{
    CloseCode, CloseFrame, CloseReason, Config, Error, Event, Inbound, InboundLimit, InboundLimits,
    Limit, Rate, Released, SendOutcome, SlowConsumerPolicy, Transmit, Violation,
};

use crate::check::{ensure, ensure_eq, found, Failure};
use crate::lane::{
    alice_and_bob, config, consistent, ctx, events, gateway, messages, send_to_connection,
    send_to_user, t, take, transmits, AliceAndBob, Gateway, CONNS, SLOTS, USERS,
};

/// 1000 / manager deactivated.
const DEACTIVATED: CloseFrame = CloseFrame::new(CloseCode::NORMAL, CloseReason::ManagerDeactivated);
/// 1000 / idle timeout.
const IDLE: CloseFrame = CloseFrame::new(CloseCode::NORMAL, CloseReason::IdleTimeout);
/// 1013 / slow consumer.
const SLOW: CloseFrame = CloseFrame::new(CloseCode::TRY_AGAIN_LATER, CloseReason::SlowConsumer);
/// 1008 / inbound flood.
const FLOOD: CloseFrame = CloseFrame::new(CloseCode::POLICY_VIOLATION, CloseReason::InboundFlood);
/// 1001 / server shutdown.
const SHUTDOWN: CloseFrame = CloseFrame::new(CloseCode::GOING_AWAY, CloseReason::ServerShutdown);

/// What [`Config::for_capacity`] gives a queue.
const QUEUE_DEPTH: u16 = 16;

/// A release with nothing left undelivered.
const RELEASED_CLEAN: Released = Released { undelivered: 0 };

/// The target really is 32-bit, and the gateway profile keeps its budget.
pub fn usize_is_32_bits() -> Result<(), Failure> {
    ensure_eq!(size_of::<usize>(), 4);
    ensure_eq!(size_of::<*const u8>(), 4);
    let bytes = size_of::<Gateway>();
    hprintln!("     gateway profile: {} bytes on this target", bytes);
    ensure!(bytes <= 32 * 1024);
    Ok(())
}

/// Two users get two managers; the same user again gets the same one.
pub fn create_managers_for_two_users() -> Result<(), Failure> {
    let mut f = gateway(config())?;
    let a = f.create_manager(ctx("alice")?, t(1_000))?;
    consistent(&f)?;
    let b = f.create_manager(ctx("bob")?, t(1_000))?;
    consistent(&f)?;
    ensure!(a != b);
    ensure!(f.is_active(a) && f.is_active(b));
    ensure_eq!(f.manager_for_user("alice"), Some(a));
    ensure_eq!(f.manager_for_user("bob"), Some(b));
    ensure_eq!(f.manager_for_user("carol"), None);
    ensure_eq!(f.context(b)?.user_id(), "bob");
    ensure_eq!(f.connection_count(a)?, 0);
    ensure_eq!(f.empty_since(a)?, Some(t(1_000)));

    // Another thread of alice: the same manager, nothing created.
    let again = f.create_manager(
        userlane_core::UserContext::new("alice", "thread-2", "run", "req")?,
        t(1_005),
    )?;
    ensure_eq!(again, a);
    ensure_eq!(f.context(a)?.thread_id(), "thread");
    ensure_eq!(
        events(&mut f)?,
        [Event::ManagerCreated(a), Event::ManagerCreated(b)]
    );
    let s = f.stats();
    ensure_eq!(
        (
            s.managers_created,
            s.managers_active,
            s.users_with_active_managers()
        ),
        (2, 2, 2)
    );
    consistent(&f)
}

/// Connections per user up to the cap, the cap's refusal, a claim for
/// another user refused, and a removed connection freeing its place.
pub fn connections_and_the_per_user_cap() -> Result<(), Failure> {
    let mut f = gateway(config())?;
    let cap = config().max_connections_per_user;
    ensure_eq!(cap, 5);
    let (alice, bob) = (ctx("alice")?, ctx("bob")?);
    let a = f.create_manager(alice.clone(), t(0))?;
    let b = f.create_manager(bob.clone(), t(0))?;
    let mut tabs = heapless::Vec::<_, 5>::new();
    for _ in 0..cap {
        let c = f.add_connection(a, &alice, t(0))?;
        consistent(&f)?;
        ensure!(f.is_open(c));
        ensure_eq!(f.owner_of(c)?, a);
        ensure!(tabs.push(c).is_ok());
    }
    ensure_eq!(f.connection_count(a)?, cap);
    ensure_eq!(
        f.add_connection(a, &alice, t(1)),
        Err(Error::LimitReached(Limit::ConnectionsPerUser))
    );
    consistent(&f)?;
    // The cap is per user: bob still connects.
    let b1 = f.add_connection(b, &bob, t(1))?;
    ensure_eq!(f.owner_of(b1)?, b);
    // A connection authenticated as bob is refused by alice's manager.
    ensure_eq!(
        f.add_connection(a, &bob, t(2)),
        Err(Error::IsolationViolation {
            manager: a,
            violation: Violation::ForeignUser
        })
    );
    consistent(&f)?;
    let s = f.stats();
    ensure_eq!(
        (
            s.rejected_connections_per_user,
            s.resource_limit_hits(),
            s.security_violations_detected,
            s.connections_active
        ),
        (1, 1, 1, 6)
    );
    // A removed connection frees its place at once.
    ensure_eq!(f.remove_connection(a, tabs[0], t(3))?, RELEASED_CLEAN);
    consistent(&f)?;
    ensure!(!f.is_open(tabs[0]));
    ensure_eq!(f.owner_of(tabs[0]), Err(Error::UnknownConnection(tabs[0])));
    let again = f.add_connection(a, &alice, t(4))?;
    ensure!(again != tabs[0]);
    ensure_eq!(f.connection_count(a)?, cap);
    ensure_eq!(f.stats().connections_removed, 1);
    consistent(&f)
}

/// `send_to_user` reaches every open connection of that user, in order, and
/// none of another user's.
pub fn fan_out_reaches_only_that_users_connections() -> Result<(), Failure> {
    let mut f = gateway(config())?;
    let AliceAndBob { a, b, alice, bob } = alice_and_bob(&mut f, 3, 2)?;
    let ([a1, a2, a3], [b1, b2]) = (take(&alice)?, take(&bob)?);

    ensure_eq!(
        send_to_user(&mut f, a, 7, t(1))?,
        SendOutcome::Queued {
            queued_for: 3,
            closed_slow: 0
        }
    );
    consistent(&f)?;
    ensure_eq!(
        events(&mut f)?,
        [
            Event::Transmit(a1),
            Event::Transmit(a2),
            Event::Transmit(a3)
        ]
    );
    for c in [a1, a2, a3] {
        ensure_eq!(messages(&mut f, c)?, [7]);
    }
    consistent(&f)?;
    for c in [b1, b2] {
        ensure_eq!(f.queued(c)?, 0);
        ensure_eq!(f.poll_transmit(c), Ok(None));
    }

    // Bob's messages reach bob's connections only, each in send order.
    for p in [20, 21, 22] {
        ensure_eq!(send_to_user(&mut f, b, p, t(2))?.queued_for(), 2);
        consistent(&f)?;
    }
    ensure_eq!(events(&mut f)?, [Event::Transmit(b1), Event::Transmit(b2)]);
    for c in [a1, a2, a3] {
        ensure_eq!(f.queued(c)?, 0);
    }
    for c in [b1, b2] {
        ensure_eq!(messages(&mut f, c)?, [20, 21, 22]);
    }
    let s = f.stats();
    ensure_eq!(
        (s.sends_accepted, s.messages_queued, s.messages_transmitted),
        (4, 9, 9)
    );
    ensure_eq!(f.manager_stats(a)?.messages_queued, 3);
    ensure_eq!(f.manager_stats(b)?.messages_queued, 6);
    consistent(&f)
}

/// `send_to_connection` reaches the one named connection of the user, and
/// naming another user's connection is an isolation violation.
pub fn send_to_connection_reaches_one_connection() -> Result<(), Failure> {
    let mut f = gateway(config())?;
    let AliceAndBob { a, b, alice, bob } = alice_and_bob(&mut f, 2, 1)?;
    let ([a1, a2], [b1]) = (take(&alice)?, take(&bob)?);

    ensure_eq!(
        send_to_connection(&mut f, a, a2, 9, t(1))?,
        SendOutcome::Queued {
            queued_for: 1,
            closed_slow: 0
        }
    );
    consistent(&f)?;
    ensure_eq!(events(&mut f)?, [Event::Transmit(a2)]);
    ensure_eq!(f.poll_transmit(a1), Ok(None));
    ensure_eq!(messages(&mut f, a2)?, [9]);

    ensure_eq!(
        send_to_connection(&mut f, a, b1, 1, t(2)),
        Err(Error::IsolationViolation {
            manager: a,
            violation: Violation::ForeignConnection { owner: b }
        })
    );
    consistent(&f)?;
    ensure_eq!(f.poll_transmit(b1), Ok(None));
    let s = f.stats();
    ensure_eq!(
        (
            s.sends_accepted,
            s.sends_refused,
            s.security_violations_detected,
            s.messages_transmitted
        ),
        (1, 1, 1, 1)
    );
    consistent(&f)
}

/// Under the default `RejectSend`, a connection that never drains makes
/// the whole send fail before anything is queued; once it drains, sends
/// go through again.
pub fn a_full_queue_refuses_the_whole_send() -> Result<(), Failure> {
    let mut f = gateway(config())?;
    let alice = ctx("alice")?;
    let a = f.create_manager(alice.clone(), t(0))?;
    let slow = f.add_connection(a, &alice, t(0))?;
    let fast = f.add_connection(a, &alice, t(0))?;
    for p in 0..QUEUE_DEPTH {
        ensure_eq!(send_to_user(&mut f, a, p, t(1))?.queued_for(), 2);
        ensure_eq!(messages(&mut f, fast)?, [p]);
    }
    events(&mut f)?;
    let free = f.free_queue_slots();
    ensure_eq!(free, SLOTS - u32::from(QUEUE_DEPTH));

    ensure_eq!(
        send_to_user(&mut f, a, 99, t(2)),
        Err(Error::QueueFull(slow))
    );
    consistent(&f)?;
    ensure_eq!(f.queued(fast)?, 0);
    ensure_eq!(f.queued(slow)?, u32::from(QUEUE_DEPTH));
    ensure_eq!(f.free_queue_slots(), free);
    ensure_eq!(f.poll_event(), None);
    ensure!(f.is_open(slow));
    let s = f.stats();
    ensure_eq!(
        (
            s.rejected_queue_full,
            s.sends_refused,
            s.resource_limit_hits()
        ),
        (1, 1, 1)
    );

    let drained = messages(&mut f, slow)?;
    ensure_eq!(drained.len(), usize::from(QUEUE_DEPTH));
    ensure!(drained.iter().copied().eq(0..QUEUE_DEPTH));
    ensure_eq!(send_to_user(&mut f, a, 99, t(3))?.queued_for(), 2);
    consistent(&f)
}

/// Under `CloseSlowConnection`, a connection that never drains is closed
/// with 1013 after what it had queued, and its user's other connection keeps
/// receiving.
pub fn a_slow_consumer_is_closed_with_1013() -> Result<(), Failure> {
    let mut f = gateway(Config {
        slow_consumer: SlowConsumerPolicy::CloseSlowConnection,
        ..config()
    })?;
    let alice = ctx("alice")?;
    let a = f.create_manager(alice.clone(), t(0))?;
    let slow = f.add_connection(a, &alice, t(0))?;
    let fast = f.add_connection(a, &alice, t(0))?;
    for p in 0..QUEUE_DEPTH {
        send_to_user(&mut f, a, p, t(1))?;
        ensure_eq!(messages(&mut f, fast)?, [p]);
        consistent(&f)?;
    }
    events(&mut f)?;

    ensure_eq!(
        send_to_user(&mut f, a, 99, t(2))?,
        SendOutcome::Queued {
            queued_for: 1,
            closed_slow: 1
        }
    );
    consistent(&f)?;
    ensure_eq!(
        events(&mut f)?,
        [
            Event::ConnectionClosed {
                connection: slow,
                manager: a,
                close: SLOW
            },
            Event::Transmit(fast)
        ]
    );
    ensure!(!f.is_open(slow));
    ensure_eq!(messages(&mut f, fast)?, [99]);
    // What it had queued, then the close, never message 99.
    let out = transmits(&mut f, slow)?;
    ensure_eq!(out.len(), usize::from(QUEUE_DEPTH) + 1);
    for (p, item) in (0..QUEUE_DEPTH).zip(out.iter()) {
        ensure_eq!(*item, Transmit::Message(p));
    }
    ensure_eq!(out.last(), Some(&Transmit::Close(SLOW)));
    ensure_eq!(SLOW.code.as_u16(), 1013);
    ensure_eq!(f.poll_transmit(slow), Ok(None));
    consistent(&f)?;
    let s = f.stats();
    ensure_eq!(
        (
            s.closed_slow_consumer,
            s.messages_closed_slow,
            s.connections_active,
            s.connections_closing
        ),
        (1, 1, 1, 1)
    );
    // The writer reports the socket gone; the slot is free again.
    ensure_eq!(f.handle_closed(slow, t(3))?, RELEASED_CLEAN);
    consistent(&f)?;
    ensure_eq!(f.stats().connections_closing, 0);
    ensure_eq!(f.owner_of(slow), Err(Error::UnknownConnection(slow)));
    consistent(&f)
}

/// `deactivate` closes every connection of the user with 1000 after their
/// queued messages, kills the handle, and leaves the other user alone.
pub fn deactivate_closes_every_connection_with_1000() -> Result<(), Failure> {
    let mut f = gateway(config())?;
    let AliceAndBob { a, b, alice, bob } = alice_and_bob(&mut f, 2, 1)?;
    let ([a1, a2], [b1]) = (take(&alice)?, take(&bob)?);
    let alice = ctx("alice")?;
    send_to_user(&mut f, a, 7, t(0))?;
    events(&mut f)?;
    ensure_eq!(messages(&mut f, a2)?, [7]); // a1 keeps its message queued

    ensure_eq!(f.deactivate(a, t(10))?, 2);
    consistent(&f)?;
    ensure_eq!(
        events(&mut f)?,
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
    ensure_eq!(
        transmits(&mut f, a1)?,
        [Transmit::Message(7), Transmit::Close(DEACTIVATED)]
    );
    ensure_eq!(transmits(&mut f, a2)?, [Transmit::Close(DEACTIVATED)]);
    ensure_eq!(DEACTIVATED.code.as_u16(), 1000);
    consistent(&f)?;

    // Bob is untouched.
    ensure!(f.is_active(b) && f.is_open(b1));
    // The dead handle is refused from now on.
    ensure!(!f.is_active(a));
    ensure_eq!(
        send_to_user(&mut f, a, 8, t(11)),
        Err(Error::ManagerInactive(a))
    );
    ensure_eq!(
        f.add_connection(a, &alice, t(11)),
        Err(Error::ManagerInactive(a))
    );
    consistent(&f)?;
    for c in [a1, a2] {
        ensure_eq!(f.handle_closed(c, t(12))?, RELEASED_CLEAN);
        consistent(&f)?;
    }
    let s = f.stats();
    ensure_eq!(
        (
            s.managers_deactivated,
            s.managers_active,
            s.closed_deactivated,
            s.connections_active,
            s.connections_closing,
            s.rejected_inactive_manager
        ),
        (1, 1, 2, 1, 0, 2)
    );
    // Alice coming back gets a new manager with a new handle.
    let a_again = f.create_manager(alice, t(13))?;
    ensure!(a_again != a);
    ensure_eq!(events(&mut f)?, [Event::ManagerCreated(a_again)]);
    consistent(&f)
}

/// The idle timeout and the empty-manager reclamation, driven only by the
/// `now` the caller passes: `poll_timeout` names each deadline and
/// `handle_timeout` acts on it, not a millisecond early.
pub fn timers_follow_the_callers_clock() -> Result<(), Failure> {
    let mut f = gateway(config())?;
    let (alice, bob) = (ctx("alice")?, ctx("bob")?);
    ensure_eq!(f.poll_timeout(), None);
    let a = f.create_manager(alice.clone(), t(1_000))?;
    // Empty manager: reclaimed 30 s after creation.
    ensure_eq!(f.poll_timeout(), Some(t(31_000)));
    let c = f.add_connection(a, &alice, t(2_000))?;
    // Connected: only the idle timer (60 s) is left.
    ensure_eq!(f.poll_timeout(), Some(t(62_000)));
    f.handle_activity(c, t(10_000))?;
    ensure_eq!(f.poll_timeout(), Some(t(70_000)));
    consistent(&f)?;
    // Bob keeps his connection alive every 20 s.
    let b = f.create_manager(bob.clone(), t(10_000))?;
    let b1 = f.add_connection(b, &bob, t(10_000))?;
    events(&mut f)?;

    f.handle_timeout(t(69_999));
    ensure!(f.is_open(c));
    ensure_eq!(f.poll_event(), None);

    // A timer loop: sleep until the next deadline or bob's next ping,
    // whichever comes first; bob pings every 20 s, alice never does.
    let mut woke = 0;
    let mut next_ping = 30_000;
    while let Some(deadline) = f.poll_timeout() {
        if deadline > t(200_000) {
            break;
        }
        if t(next_ping) < deadline {
            f.handle_activity(b1, t(next_ping))?;
            next_ping += 20_000;
            continue;
        }
        f.handle_timeout(deadline);
        consistent(&f)?;
        woke += 1;
        for event in events(&mut f)? {
            match event {
                Event::ConnectionClosed {
                    connection,
                    manager,
                    close,
                } => {
                    ensure_eq!((connection, manager, close), (c, a, IDLE));
                    ensure_eq!(deadline, t(70_000));
                    ensure_eq!(transmits(&mut f, c)?, [Transmit::Close(IDLE)]);
                    ensure_eq!(f.empty_since(a)?, Some(t(70_000)));
                    ensure_eq!(f.handle_closed(c, deadline)?, RELEASED_CLEAN);
                }
                Event::ManagerReclaimed {
                    manager,
                    discarded_offline,
                } => {
                    ensure_eq!((manager, discarded_offline), (a, 0));
                    // 30 s after its last connection left.
                    ensure_eq!(deadline, t(100_000));
                }
                other => {
                    hprintln!("  unexpected {:?}", other);
                    ensure!(false);
                }
            }
            consistent(&f)?;
        }
    }
    ensure_eq!(woke, 2);
    ensure_eq!(IDLE.code.as_u16(), 1000);
    ensure!(!f.is_active(a));
    ensure_eq!(f.manager_for_user("alice"), None);
    ensure_eq!(
        send_to_user(&mut f, a, 1, t(100_001)),
        Err(Error::ManagerInactive(a))
    );
    // Bob, active every 20 s, is still there.
    ensure!(f.is_active(b) && f.is_open(b1));
    let s = f.stats();
    ensure_eq!(
        (
            s.closed_idle_timeout,
            s.managers_reclaimed,
            s.managers_active,
            s.connections_active
        ),
        (1, 1, 1, 1)
    );
    consistent(&f)
}

/// The caller's clock past 2^32 ms (49.7 days of uptime), where a 32-bit
/// millisecond counter would wrap: deadlines and the inbound buckets' refill
/// stay exact across it.
pub fn timers_across_the_32_bit_millisecond_wrap() -> Result<(), Failure> {
    const WRAP: u64 = 1 << 32;
    let mut f = gateway(Config {
        inbound_per_connection: InboundLimits {
            messages: Some(Rate::new(10, 1)),
            bytes: None,
        },
        ..config()
    })?;
    let alice = ctx("alice")?;
    let start = WRAP - 10_000;
    let a = f.create_manager(alice.clone(), t(start))?;
    let c = f.add_connection(a, &alice, t(start))?;
    events(&mut f)?;
    // The idle deadline lies 50 s past the wrap.
    ensure_eq!(f.poll_timeout(), Some(t(WRAP + 50_000)));

    // 10 a second refill on a fixed grid: a token at each multiple of
    // 100 ms of the caller's clock. The first one past 2^32 is 2^32 + 4.
    let grid = WRAP + 4;
    ensure_eq!(grid % 100, 0);
    let over = Inbound::Refused(InboundLimit::ConnectionMessages);
    ensure_eq!(f.handle_inbound(c, 1, t(WRAP - 50))?, Inbound::Accepted);
    ensure_eq!(f.handle_inbound(c, 1, t(WRAP - 1))?, over);
    ensure_eq!(f.handle_inbound(c, 1, t(WRAP))?, over);
    ensure_eq!(f.handle_inbound(c, 1, t(grid - 1))?, over);
    ensure_eq!(f.handle_inbound(c, 1, t(grid))?, Inbound::Accepted);
    ensure_eq!(f.handle_inbound(c, 1, t(grid + 99))?, over);
    ensure_eq!(f.handle_inbound(c, 1, t(grid + 100))?, Inbound::Accepted);
    consistent(&f)?;

    // Inbound messages are activity: idle 60 s after the last one.
    let deadline = t(grid + 100 + 60_000);
    ensure_eq!(f.poll_timeout(), Some(deadline));
    f.handle_timeout(t(grid + 100 + 59_999));
    ensure!(f.is_open(c));
    f.handle_timeout(deadline);
    ensure!(!f.is_open(c));
    ensure_eq!(transmits(&mut f, c)?, [Transmit::Close(IDLE)]);
    ensure_eq!(f.handle_closed(c, deadline)?, RELEASED_CLEAN);
    // Reclaimed 30 s later, still on the 64-bit clock.
    let reclaim = t(grid + 100 + 90_000);
    ensure_eq!(f.poll_timeout(), Some(reclaim));
    f.handle_timeout(reclaim);
    ensure!(!f.is_active(a));
    ensure_eq!(f.now(), reclaim);
    ensure_eq!(f.stats().inbound_refused_connection_messages, 4);
    consistent(&f)
}

/// The inbound budget: within the burst accepted, over it refused, and at
/// `inbound_strikes` refusals the connection is closed with 1008 after its
/// queued messages; another user's connection has its own budget.
pub fn the_inbound_budget_refuses_then_closes_with_1008() -> Result<(), Failure> {
    let mut f = gateway(Config {
        inbound_per_connection: InboundLimits {
            messages: Some(Rate::new(10, 5)),
            bytes: None,
        },
        inbound_per_user: InboundLimits::UNLIMITED,
        inbound_strikes: 3,
        idle_timeout_ms: None,
        ..config()
    })?;
    let AliceAndBob { a, alice, bob, .. } = alice_and_bob(&mut f, 1, 1)?;
    let ([c], [b1]) = (take(&alice)?, take(&bob)?);
    send_to_user(&mut f, a, 1, t(0))?;
    send_to_user(&mut f, a, 2, t(0))?;
    events(&mut f)?;

    for _ in 0..5 {
        ensure_eq!(f.handle_inbound(c, 1, t(0))?, Inbound::Accepted);
        consistent(&f)?;
    }
    let over = InboundLimit::ConnectionMessages;
    ensure_eq!(f.handle_inbound(c, 1, t(0))?, Inbound::Refused(over));
    consistent(&f)?;
    ensure_eq!(f.handle_inbound(c, 1, t(0))?, Inbound::Refused(over));
    consistent(&f)?;
    // Bob's connection has a budget of its own.
    for _ in 0..5 {
        ensure_eq!(f.handle_inbound(b1, 1, t(0))?, Inbound::Accepted);
    }
    ensure_eq!(f.handle_inbound(c, 1, t(0))?, Inbound::Closed(over));
    consistent(&f)?;
    ensure!(!f.is_open(c));
    ensure!(f.is_open(b1));
    ensure_eq!(
        events(&mut f)?,
        [Event::ConnectionClosed {
            connection: c,
            manager: a,
            close: FLOOD
        }]
    );
    ensure_eq!(
        transmits(&mut f, c)?,
        [
            Transmit::Message(1),
            Transmit::Message(2),
            Transmit::Close(FLOOD)
        ]
    );
    ensure_eq!(FLOOD.code.as_u16(), 1008);
    ensure_eq!(FLOOD.reason.as_str(), "inbound rate limit exceeded");
    // A closing connection takes no more inbound messages.
    ensure_eq!(
        f.handle_inbound(c, 1, t(10)),
        Err(Error::ConnectionClosing(c))
    );
    // 10 a second refills bob's bucket one message every 100 ms.
    ensure_eq!(f.handle_inbound(b1, 1, t(99))?, Inbound::Refused(over));
    ensure_eq!(f.handle_inbound(b1, 1, t(100))?, Inbound::Accepted);
    consistent(&f)?;
    let s = f.stats();
    ensure_eq!(
        (
            s.inbound_accepted,
            s.inbound_refused_connection_messages,
            s.closed_inbound_flood,
            s.rejected_closing_connection
        ),
        // Refused: alice's two, the one that closed her, bob's early one.
        (11, 4, 1, 1)
    );
    ensure_eq!(f.handle_closed(c, t(10))?, RELEASED_CLEAN);
    consistent(&f)
}

/// Every table of the gateway profile filled to its capacity, on `u16`
/// links: 32 users, 128 connections, 2,048 queued messages; the limits
/// refuse one more of each, then a shutdown closes everything with 1001.
pub fn the_gateway_profile_at_full_capacity() -> Result<(), Failure> {
    let mut f = gateway(config())?;
    const PER_USER: u32 = CONNS / USERS;
    let mut names: heapless::Vec<heapless::String<8>, 32> = heapless::Vec::new();
    for u in 0..USERS {
        let mut name = heapless::String::new();
        ensure!(core::fmt::write(&mut name, format_args!("user{u}")).is_ok());
        ensure!(names.push(name).is_ok());
    }
    for name in names.iter() {
        let user = ctx(name)?;
        let m = f.create_manager(user.clone(), t(0))?;
        for _ in 0..PER_USER {
            f.add_connection(m, &user, t(0))?;
        }
        // The drain rule keeps the 8-entry event queue from filling.
        ensure_eq!(events(&mut f)?, [Event::ManagerCreated(m)]);
        consistent(&f)?;
    }
    let s = f.stats();
    ensure_eq!(
        (s.managers_active, s.connections_active),
        (u64::from(USERS), u64::from(CONNS))
    );
    ensure_eq!(
        f.create_manager(ctx("one-more")?, t(1)),
        Err(Error::LimitReached(Limit::Users))
    );
    let first = found(f.manager_for_user("user0"))?;
    ensure_eq!(
        f.add_connection(first, &ctx("user0")?, t(1)),
        Err(Error::LimitReached(Limit::Connections))
    );
    consistent(&f)?;

    // Fill every queue: 128 connections × 16 = every slot of the pool.
    for name in names.iter() {
        let m = found(f.manager_for_user(name))?;
        for p in 0..QUEUE_DEPTH {
            ensure_eq!(send_to_user(&mut f, m, p, t(2))?.queued_for(), PER_USER);
        }
    }
    consistent(&f)?;
    ensure_eq!(f.free_queue_slots(), 0);
    ensure_eq!(f.stats().messages_queued_now, u64::from(SLOTS));
    // One more is refused whole: every queue is full.
    ensure!(matches!(
        send_to_user(&mut f, first, 0, t(3)),
        Err(Error::QueueFull(_))
    ));
    consistent(&f)?;

    // Shutdown: every connection gets its 16 messages, then 1001.
    ensure_eq!(f.close_all(SHUTDOWN, t(4)), CONNS);
    consistent(&f)?;
    let mut closed = 0;
    for event in events(&mut f)? {
        match event {
            Event::ConnectionClosed {
                connection, close, ..
            } => {
                ensure_eq!(close, SHUTDOWN);
                let out = transmits(&mut f, connection)?;
                ensure_eq!(out.len(), usize::from(QUEUE_DEPTH) + 1);
                ensure_eq!(out.last(), Some(&Transmit::Close(SHUTDOWN)));
                ensure_eq!(f.handle_closed(connection, t(5))?, RELEASED_CLEAN);
                closed += 1;
            }
            other => {
                hprintln!("  unexpected {:?}", other);
                ensure!(false);
            }
        }
    }
    ensure_eq!(closed, CONNS);
    ensure_eq!(f.free_queue_slots(), SLOTS);
    let s = f.stats();
    ensure_eq!(
        (
            s.connections_active,
            s.connections_closing,
            s.closed_shutdown,
            s.messages_transmitted,
            s.managers_active
        ),
        (0, 0, u64::from(CONNS), u64::from(SLOTS), u64::from(USERS))
    );
    consistent(&f)
}
