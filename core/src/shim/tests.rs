//! The shim on `futures::executor` (smol is exercised by `userlane-smol`).

extern crate std;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::vec::Vec;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use futures::executor::block_on;
use futures::task::noop_waker_ref;

use super::{shard_for, SharedFactory};
use crate::{CloseCode, CloseFrame, CloseReason, Config, Event, Instant, Transmit, UserContext};

type Shard = SharedFactory<CriticalSectionRawMutex, u32, 16, 64, 512>;

fn ctx(user: &str) -> UserContext {
    UserContext::new(user, "thread", "run", "req").unwrap()
}

fn shard() -> Arc<Shard> {
    Arc::new(Shard::new(Config::for_capacity(16, 64)).unwrap())
}

const T0: Instant = Instant::from_millis(0);

#[test]
fn waiting_writer_is_woken_by_a_send_from_another_thread() {
    let s = shard();
    let (m, c) = s.connect(&ctx("alice"), T0).unwrap();
    let sender = {
        let s = s.clone();
        std::thread::spawn(move || {
            for i in 0..100u32 {
                // Wait for room rather than fail: RejectSend is the default policy.
                while s.send_to_user(m, i, T0).is_err() {
                    std::thread::yield_now();
                }
            }
        })
    };
    let received: Vec<u32> = block_on(async {
        let mut got = Vec::new();
        while got.len() < 100 {
            match s.next_transmit(c).await {
                Some(Transmit::Message(i)) => got.push(i),
                other => panic!("unexpected {other:?}"),
            }
        }
        got
    });
    sender.join().unwrap();
    assert_eq!(received, (0..100).collect::<Vec<_>>());
}

#[test]
fn writer_sees_its_connection_gone() {
    let s = shard();
    let (_, c) = s.connect(&ctx("alice"), T0).unwrap();
    let mut cx = Context::from_waker(noop_waker_ref());
    assert_eq!(s.poll_transmit(c, &mut cx), Poll::Pending);
    let closer = {
        let s = s.clone();
        std::thread::spawn(move || s.handle_closed(c, T0).unwrap())
    };
    closer.join().unwrap();
    assert_eq!(block_on(s.next_transmit(c)), None);
}

#[test]
fn close_is_delivered_after_queued_messages() {
    let s = shard();
    let (m, c) = s.connect(&ctx("alice"), T0).unwrap();
    s.send_to_user(m, 7, T0).unwrap();
    assert_eq!(s.deactivate(m, T0), Ok(1));
    let mut items = Vec::new();
    assert_eq!(s.drain_transmits(c, 10, |t| items.push(t)), Some(2));
    assert_eq!(
        items,
        [
            Transmit::Message(7),
            Transmit::Close(CloseFrame::new(
                CloseCode::NORMAL,
                CloseReason::ManagerDeactivated
            ))
        ]
    );
}

#[test]
fn lifecycle_events_reach_the_event_reader() {
    let s = shard();
    let (m, c) = s.connect(&ctx("bob"), T0).unwrap();
    s.send_to_user(m, 1, T0).unwrap();
    s.deactivate(m, T0).unwrap();
    let events: Vec<Event> = block_on(async {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(s.next_event().await);
        }
        v
    });
    assert_eq!(events[0], Event::ManagerCreated(m));
    assert!(
        matches!(events[1], Event::ManagerDeactivated { manager, closed_connections: 1, .. } if manager == m)
    );
    assert!(matches!(events[2], Event::ConnectionClosed { connection, .. } if connection == c));
    assert_eq!(s.events_dropped(), 0);
}

#[test]
fn unread_events_are_dropped_oldest_first_and_counted() {
    let s = shard();
    let managers: Vec<_> = (0..16)
        .map(|i| {
            s.create_manager(ctx(&std::format!("user-{i}")), T0)
                .unwrap()
        })
        .collect();
    for m in &managers[12..] {
        s.deactivate(*m, T0).unwrap();
    }
    // 20 events, 16 fit in the queue; the 4 oldest were dropped.
    assert_eq!(s.events_dropped(), 4);
    let first = block_on(s.next_event());
    let Event::ManagerCreated(m) = first else {
        panic!("{first:?}")
    };
    assert_eq!(
        s.read(|f| f.context(m).unwrap().user_id().to_owned()),
        "user-4"
    );
}

#[test]
fn timer_task_is_woken_when_the_deadline_moves_earlier() {
    let s = shard();
    let mut cx = Context::from_waker(noop_waker_ref());
    // No manager, no deadline.
    assert_eq!(s.timeout(), None);
    assert_eq!(s.poll_deadline_changed(None, &mut cx), Poll::Pending);
    let (_, c) = s.connect(&ctx("carol"), T0).unwrap();
    // Idle deadline 60 s, empty-manager deadline gone.
    assert_eq!(s.timeout(), Some(Instant::from_millis(60_000)));
    assert_eq!(s.poll_deadline_changed(None, &mut cx), Poll::Ready(()));
    let armed = s.timeout();
    s.handle_activity(c, Instant::from_millis(10_000)).unwrap();
    // Later deadline: the armed timer just fires early, no wake needed.
    assert_eq!(s.poll_deadline_changed(armed, &mut cx), Poll::Pending);
    s.handle_timeout(Instant::from_millis(70_000));
    assert_eq!(s.read(|f| f.stats().closed_idle_timeout), 1);
}

#[test]
fn ten_threads_create_ten_managers() {
    static SHARD: Shard = Shard::new_static(Config::for_capacity(16, 64));
    let threads: Vec<_> = (0..10)
        .map(|i| {
            std::thread::spawn(move || {
                SHARD
                    .create_manager(ctx(&std::format!("t{i}")), T0)
                    .unwrap()
            })
        })
        .collect();
    let mut handles: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    handles.sort();
    handles.dedup();
    let stats = SHARD.stats();
    assert_eq!(
        (handles.len(), stats.managers_active, stats.managers_created),
        (10, 10, 10)
    );
}

#[test]
fn shard_for_is_stable_and_spreads_users() {
    // Fixed values: routing must never change between releases or nodes.
    assert_eq!(shard_for("alice", 8), shard_for("alice", 8));
    assert_eq!(shard_for("", 1), 0);
    assert_eq!(shard_for("x", 0), 0);
    let mut counts = [0u32; 4];
    for i in 0..4000 {
        counts[shard_for(&std::format!("user-{i}"), 4)] += 1;
    }
    assert!(
        counts.iter().all(|&n| (800..1200).contains(&n)),
        "{counts:?}"
    );
}

/// A waker that counts its wakes.
struct CountWakes(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountWakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn poll_transmit_more_says_what_follows_and_registers_when_nothing_does() {
    let s = shard();
    let (m, c) = s.connect(&ctx("dave"), T0).unwrap();
    let counter = Arc::new(CountWakes(std::sync::atomic::AtomicUsize::new(0)));
    let waker = std::task::Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    let wakes = || counter.0.load(std::sync::atomic::Ordering::SeqCst);

    // Nothing queued: Pending, waker registered; a send wakes it.
    assert_eq!(s.poll_transmit_more(c, &mut cx), Poll::Pending);
    s.send_to_user(m, 1, T0).unwrap();
    assert_eq!(wakes(), 1);

    // Two queued: the first says more follows, the second does not (and
    // registers), so the third send wakes the writer again.
    s.send_to_user(m, 2, T0).unwrap();
    assert_eq!(
        s.poll_transmit_more(c, &mut cx),
        Poll::Ready(Some((Transmit::Message(1), true)))
    );
    assert_eq!(
        s.poll_transmit_more(c, &mut cx),
        Poll::Ready(Some((Transmit::Message(2), false)))
    );
    let before = wakes();
    s.send_to_user(m, 3, T0).unwrap();
    assert_eq!(wakes(), before + 1);

    // Closing: the last message says the close frame follows; after the
    // close nothing does.
    s.deactivate(m, T0).unwrap();
    assert_eq!(
        s.poll_transmit_more(c, &mut cx),
        Poll::Ready(Some((Transmit::Message(3), true)))
    );
    assert_eq!(
        s.poll_transmit_more(c, &mut cx),
        Poll::Ready(Some((
            Transmit::Close(CloseFrame::new(
                CloseCode::NORMAL,
                CloseReason::ManagerDeactivated
            )),
            false
        )))
    );
    assert_eq!(s.poll_transmit_more(c, &mut cx), Poll::Pending);

    // Gone: Ready(None), and the waiting writer was woken by the release.
    let before = wakes();
    s.handle_closed(c, T0).unwrap();
    assert!(wakes() > before);
    assert_eq!(s.poll_transmit_more(c, &mut cx), Poll::Ready(None));
    assert!(s.stats().is_consistent());
}

#[test]
fn a_flood_close_wakes_the_waiting_writer_and_offline_creation_is_capped() {
    let s = Arc::new(
        Shard::new(Config {
            inbound_per_connection: crate::InboundLimits {
                messages: Some(crate::Rate::new(1, 1)),
                bytes: None,
            },
            inbound_strikes: 2,
            max_offline_managers: 1,
            ..Config::for_capacity(16, 64)
        })
        .unwrap(),
    );
    let (_, c) = s.connect(&ctx("erin"), T0).unwrap();
    let counter = Arc::new(CountWakes(std::sync::atomic::AtomicUsize::new(0)));
    let waker = std::task::Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    assert_eq!(s.poll_transmit_more(c, &mut cx), Poll::Pending);

    let limit = crate::InboundLimit::ConnectionMessages;
    assert_eq!(s.handle_inbound(c, 3, T0), Ok(crate::Inbound::Accepted));
    assert_eq!(
        s.handle_inbound(c, 3, T0),
        Ok(crate::Inbound::Refused(limit))
    );
    assert_eq!(counter.0.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(
        s.handle_inbound(c, 3, T0),
        Ok(crate::Inbound::Closed(limit))
    );
    assert_eq!(counter.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    let flood = CloseFrame::new(CloseCode::POLICY_VIOLATION, CloseReason::InboundFlood);
    assert_eq!(
        s.poll_transmit_more(c, &mut cx),
        Poll::Ready(Some((Transmit::Close(flood), false)))
    );
    assert_eq!(
        s.handle_inbound(c, 3, T0),
        Err(crate::Error::ConnectionClosing(c))
    );

    // erin has no open connection any more: she is the one offline manager.
    assert_eq!(
        s.create_offline_manager(ctx("frank"), T0),
        Err(crate::Error::LimitReached(crate::Limit::OfflineManagers))
    );
    assert!(s.create_manager(ctx("frank"), T0).is_ok());
    assert!(s.stats().is_consistent());
}
