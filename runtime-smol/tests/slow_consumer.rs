//! Slow consumers: a tab that stops reading while the server keeps sending
//! fills its bounded queue. Under `CloseSlowConnection` (the default) it is
//! closed with 1013 after everything it had accepted, while the user's other
//! tab and other users keep receiving; under `RejectSend` the whole send is
//! refused and the caller told, with nothing queued for anyone.
mod support;

use std::time::Duration;

use support::*;
use userlane_smol::userlane_core::{Error as CoreError, SendOutcome, SlowConsumerPolicy};
use userlane_smol::{Environment, UserError};

/// Big enough that kernel socket buffers fill after a few hundred messages.
const PAYLOAD_BYTES: usize = 32 * 1024;
/// A generous bound (about 96 MiB) on what it takes to fill the stalled
/// tab's socket buffers and its queue of 16.
const MAX_SENDS: u32 = 3_000;
/// Sends after the close that must still reach everyone else.
const AFTER_CLOSE: u32 = 20;

fn payload(i: u32) -> String {
    let mut s = format!("{i:08}|");
    s.push_str(&"x".repeat(PAYLOAD_BYTES - s.len()));
    s
}

fn seq_of(r: &Recv) -> u32 {
    match r {
        Recv::Text(t) => t[..8].parse().unwrap(),
        other => panic!("expected a sequenced message, got {other:?}"),
    }
}

#[test]
fn a_tab_that_stops_reading_is_closed_with_1013_while_everyone_else_keeps_receiving() {
    let mut cfg = config(Environment::Production);
    cfg.queue_depth = 16;
    cfg.close_grace = Duration::from_secs(10);
    assert_eq!(cfg.slow_consumer, SlowConsumerPolicy::CloseSlowConnection);
    let server = start(cfg);
    smol::block_on(async {
        let mut fast = connect(server.addr, "alice").await;
        let mut stalled = connect(server.addr, "alice").await;
        let mut bob = connect(server.addr, "bob").await;

        // Lockstep with the readers that keep up: each message is read by
        // them before the next is sent, so only the stalled tab's queue grows.
        let mut closed_at = None;
        let mut sent = 0;
        for i in 0..MAX_SENDS {
            let outcome = server.handle.send_text("alice", payload(i)).unwrap();
            match (outcome, closed_at) {
                (
                    SendOutcome::Queued {
                        queued_for: 2,
                        closed_slow: 0,
                    },
                    None,
                ) => {}
                (
                    SendOutcome::Queued {
                        queued_for: 1,
                        closed_slow: 1,
                    },
                    None,
                ) => closed_at = Some(i),
                (
                    SendOutcome::Queued {
                        queued_for: 1,
                        closed_slow: 0,
                    },
                    Some(_),
                ) => {}
                other => panic!("send {i}: unexpected {other:?}"),
            }
            assert_eq!(
                server
                    .handle
                    .send_text("bob", format!("b{i}"))
                    .unwrap()
                    .queued_for(),
                1
            );
            assert_eq!(
                seq_of(&recv(&mut fast).await),
                i,
                "the fast tab fell behind"
            );
            assert_eq!(recv(&mut bob).await, Recv::Text(format!("b{i}")));
            sent = i + 1;
            if closed_at.is_some_and(|k| i >= k + AFTER_CLOSE) {
                break;
            }
        }
        let k = closed_at.unwrap_or_else(|| {
            panic!("the stalled tab was never closed after {MAX_SENDS} × {PAYLOAD_BYTES} bytes")
        });
        eprintln!(
            "stalled tab closed at send {k} (~{} KiB buffered in sockets and queue)",
            k as usize * PAYLOAD_BYTES / 1024
        );
        assert_eq!(server.handle.user_connections("alice").len(), 1);

        // The stalled tab, reading at last, gets every message it had
        // accepted (0..k, in order, none missing), then 1013.
        for i in 0..k {
            let r = recv(&mut stalled).await;
            assert_eq!(seq_of(&r), i, "stalled tab lost or reordered a message");
        }
        assert_eq!(
            recv(&mut stalled).await,
            Recv::Close(1013, "slow consumer: outbound queue full".into())
        );

        let stats = server.stats();
        assert_consistent(&stats);
        assert_eq!(stats.core.closed_slow_consumer, 1);
        assert_eq!(stats.core.messages_closed_slow, 1);
        assert_eq!(stats.forced_closes, 0);
        assert_eq!(stats.core.messages_dropped, 0);
        // alice's tabs: the fast one got all, the stalled one 0..k; bob got all.
        let delivered = u64::from(k) + 2 * u64::from(sent);
        assert_eq!(stats.core.messages_queued, delivered);
        assert_eq!(stats.core.messages_transmitted, delivered);
    });
}

#[test]
fn with_reject_send_a_full_queue_refuses_the_whole_send_and_nothing_is_lost() {
    let mut cfg = config(Environment::Production);
    cfg.queue_depth = 16;
    cfg.slow_consumer = SlowConsumerPolicy::RejectSend;
    let server = start(cfg);
    smol::block_on(async {
        let mut fast = connect(server.addr, "alice").await;
        let mut stalled = connect(server.addr, "alice").await;
        let mut refused_at = None;
        for i in 0..MAX_SENDS {
            match server.handle.send_text("alice", payload(i)) {
                Ok(outcome) => {
                    assert_eq!(outcome.queued_for(), 2, "send {i}");
                    assert_eq!(seq_of(&recv(&mut fast).await), i);
                }
                Err(UserError::Core(CoreError::QueueFull(_))) => {
                    refused_at = Some(i);
                    break;
                }
                Err(e) => panic!("send {i}: {e}"),
            }
        }
        let r = refused_at.expect("the stalled tab's queue never filled");
        // Atomic: the refused message reached neither tab.
        assert_silent(&mut fast, Duration::from_millis(100), "fast tab").await;
        assert_eq!(server.handle.user_connections("alice").len(), 2);
        // The stalled tab catches up and nothing was lost.
        for i in 0..r {
            assert_eq!(seq_of(&recv(&mut stalled).await), i);
        }
        assert_eq!(
            server
                .handle
                .send_text("alice", payload(r))
                .unwrap()
                .queued_for(),
            2
        );
        assert_eq!(seq_of(&recv(&mut fast).await), r);
        assert_eq!(seq_of(&recv(&mut stalled).await), r);

        let stats = server.stats();
        assert_consistent(&stats);
        assert_eq!(stats.core.rejected_queue_full, 1);
        assert_eq!(stats.core.sends_refused, 1);
        assert_eq!(stats.core.closed_slow_consumer, 0);
        assert_eq!(stats.core.messages_dropped, 0);
        assert_eq!(stats.core.messages_queued, 2 * (u64::from(r) + 1));
    });
}
