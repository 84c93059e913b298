//! The async shim (`userlane_core::shim::SharedFactory` with
//! `userlane_smol::StdRawMutex`) is runtime-agnostic: the same scenario —
//! writers awaiting their connection's next transmit, a lifecycle-event
//! reader and a timer task, all woken by a plain OS thread driving the core —
//! runs on smol and on `futures::executor`, with the same results.
mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;
use support::within;
use userlane_smol::userlane_core::shim::SharedFactory;
use userlane_smol::userlane_core::{
    CloseCode, CloseFrame, CloseReason, Config, ConnectionHandle, Event, Instant, SendOutcome,
    Transmit, UserContext,
};
use userlane_smol::StdRawMutex;

/// 4 users, 8 connections, 64 queued messages, 8 lifecycle events.
type Shard = SharedFactory<StdRawMutex, String, 4, 8, 64, 8>;

const T0: Instant = Instant::from_millis(1_000);
const IDLE_MS: u64 = 60_000;

fn ctx(user: &str) -> UserContext {
    UserContext::new(user, "thread", "run", "req").unwrap()
}

/// What a writer saw on its connection: messages, then the close.
type Written = (Vec<String>, CloseFrame);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The scenario's async parts, to be run by some executor, and the thread
/// that drives the core.
struct Scenario {
    shard: Arc<Shard>,
    writers: Vec<BoxFuture<Written>>,
    events: BoxFuture<Vec<Event>>,
    timer: BoxFuture<Option<Instant>>,
    producer: std::thread::JoinHandle<()>,
}

/// Waits for the connection handle, then drains the connection like a
/// network writer: messages, the close, `handle_closed`, then `None`.
async fn writer(shard: Arc<Shard>, conn: oneshot::Receiver<ConnectionHandle>) -> Written {
    let conn = conn.await.expect("producer sends the handle");
    let mut messages = Vec::new();
    let mut close = None;
    while let Some(t) = shard.next_transmit(conn).await {
        match t {
            Transmit::Message(m) => {
                assert!(close.is_none(), "a message after the close");
                messages.push(m);
            }
            Transmit::Close(frame) => {
                close = Some(frame);
                // The "socket" is closed: release the slot; the next
                // next_transmit then reports the connection gone.
                shard.handle_closed(conn, T0).unwrap();
            }
        }
    }
    (messages, close.expect("no close frame"))
}

fn scenario() -> Scenario {
    let shard = Arc::new(Shard::new(Config::for_capacity(4, 8)).unwrap());
    let mut senders = Vec::new();
    let mut writers: Vec<BoxFuture<Written>> = Vec::new();
    for _ in 0..3 {
        let (tx, rx) = oneshot::channel();
        senders.push(tx);
        writers.push(Box::pin(writer(shard.clone(), rx)));
    }
    let events = {
        let shard = shard.clone();
        Box::pin(async move {
            // 2 managers created, 3 connections closed, 1 manager deactivated.
            let mut seen = Vec::new();
            while seen.len() < 6 {
                seen.push(shard.next_event().await);
            }
            seen
        }) as BoxFuture<Vec<Event>>
    };
    let (timer_woke, timer_woke_rx) = mpsc::channel();
    let timer = {
        let shard = shard.clone();
        Box::pin(async move {
            // No connection yet, so no deadline: wait until one appears.
            shard.deadline_changed(None).await;
            let deadline = shard.timeout();
            timer_woke.send(()).unwrap();
            deadline
        }) as BoxFuture<Option<Instant>>
    };
    let producer = {
        let shard = shard.clone();
        std::thread::spawn(move || {
            // Let the executor park every task on its waker first.
            std::thread::sleep(Duration::from_millis(20));
            let (alice, a1) = shard.connect(&ctx("alice"), T0).unwrap();
            let (_, a2) = shard.connect(&ctx("alice"), T0).unwrap();
            let (bob, b1) = shard.connect(&ctx("bob"), T0).unwrap();
            // The timer task must have been woken by the first deadline.
            timer_woke_rx
                .recv_timeout(Duration::from_secs(5))
                .expect("the timer task was never woken");
            for (tx, conn) in senders.into_iter().zip([a1, a2, b1]) {
                tx.send(conn).unwrap();
            }
            for i in 0..10 {
                assert_eq!(
                    shard.send_to_user(alice, format!("a{i}"), T0),
                    Ok(SendOutcome::Queued {
                        queued_for: 2,
                        closed_slow: 0
                    })
                );
                if i % 3 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            for i in 0..5 {
                assert_eq!(
                    shard
                        .send_to_user(bob, format!("b{i}"), T0)
                        .map(|o| o.queued_for()),
                    Ok(1)
                );
            }
            assert_eq!(shard.deactivate(alice, T0), Ok(2));
            // Bob's only connection has been silent for the idle timeout.
            shard.handle_timeout(Instant::from_millis(T0.as_millis() + IDLE_MS));
        })
    };
    Scenario {
        shard,
        writers,
        events,
        timer,
        producer,
    }
}

/// The same numbers whatever ran the scenario.
fn check(shard: &Shard, written: Vec<Written>, events: Vec<Event>, deadline: Option<Instant>) {
    assert_eq!(
        deadline,
        Some(Instant::from_millis(T0.as_millis() + IDLE_MS))
    );
    let alice: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
    let bob: Vec<String> = (0..5).map(|i| format!("b{i}")).collect();
    let deactivated = CloseFrame::new(CloseCode::NORMAL, CloseReason::ManagerDeactivated);
    let idle = CloseFrame::new(CloseCode::NORMAL, CloseReason::IdleTimeout);
    assert_eq!(
        written,
        vec![
            (alice.clone(), deactivated),
            (alice, deactivated),
            (bob, idle)
        ]
    );

    let created = events
        .iter()
        .filter(|e| matches!(e, Event::ManagerCreated(_)))
        .count();
    let closed: Vec<CloseFrame> = events
        .iter()
        .filter_map(|e| match e {
            Event::ConnectionClosed { close, .. } => Some(*close),
            _ => None,
        })
        .collect();
    let deactivations: Vec<(u32, u32)> = events
        .iter()
        .filter_map(|e| match e {
            Event::ManagerDeactivated {
                closed_connections,
                discarded_offline,
                ..
            } => Some((*closed_connections, *discarded_offline)),
            _ => None,
        })
        .collect();
    assert_eq!(created, 2, "{events:?}");
    assert_eq!(closed.iter().filter(|c| **c == deactivated).count(), 2);
    assert_eq!(closed.iter().filter(|c| **c == idle).count(), 1);
    assert_eq!(deactivations, vec![(2, 0)]);

    let stats = shard.stats();
    assert!(stats.is_consistent(), "{stats:?}");
    assert_eq!(stats.messages_queued, 25);
    assert_eq!(stats.messages_transmitted, 25);
    assert_eq!(stats.messages_dropped, 0);
    assert_eq!(stats.closed_deactivated, 2);
    assert_eq!(stats.closed_idle_timeout, 1);
    assert_eq!(stats.connections_active, 0);
    assert_eq!(stats.connections_closing, 0);
    assert_eq!(shard.events_dropped(), 0);
}

#[test]
fn the_shim_runs_on_smol() {
    let s = scenario();
    let (written, events, deadline) = smol::block_on(async {
        // Every part is its own task on smol's executor.
        let writers: Vec<smol::Task<Written>> = s.writers.into_iter().map(smol::spawn).collect();
        let events = smol::spawn(s.events);
        let timer = smol::spawn(s.timer);
        within(Duration::from_secs(10), async {
            let written = futures::future::join_all(writers).await;
            (written, events.await, timer.await)
        })
        .await
        .expect("the scenario stalled on smol")
    });
    s.producer.join().unwrap();
    check(&s.shard, written, events, deadline);
}

#[test]
fn the_shim_runs_on_futures_executor() {
    use futures::executor::LocalPool;
    use futures::task::LocalSpawnExt;

    let s = scenario();
    let mut pool = LocalPool::new();
    let spawner = pool.spawner();
    let writers: Vec<_> = s
        .writers
        .into_iter()
        .map(|w| spawner.spawn_local_with_handle(w).unwrap())
        .collect();
    let events = spawner.spawn_local_with_handle(s.events).unwrap();
    let timer = spawner.spawn_local_with_handle(s.timer).unwrap();
    // The pool parks this thread between wake-ups; a watchdog bounds the run.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            eprintln!("the scenario stalled on futures::executor");
            std::process::abort();
        }
    });
    let (written, events, deadline) = pool.run_until(async {
        let written = futures::future::join_all(writers).await;
        (written, events.await, timer.await)
    });
    done_tx.send(()).unwrap();
    watchdog.join().unwrap();
    s.producer.join().unwrap();
    check(&s.shard, written, events, deadline);
}
