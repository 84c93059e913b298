//! Inbound is bounded: a message over the connection's budget is dropped
//! unprocessed and the peer told so (at most once a second); a connection
//! that keeps exceeding is closed with 1008 while the user's other
//! connections and other users carry on; and nothing a closing connection
//! still sends reaches the handler.
mod support;

use std::time::Duration;

use support::*;
use userlane_smol::userlane_core::{InboundLimits, Rate};
use userlane_smol::Environment;

#[test]
fn messages_over_the_budget_are_refused_then_the_connection_is_closed_with_1008() {
    let handler = TestHandler::echo();
    let mut cfg = config(Environment::Production);
    cfg.inbound_per_connection = InboundLimits {
        messages: Some(Rate::new(1, 2)),
        bytes: None,
    };
    cfg.inbound_strikes = 5;
    let server = start_with(cfg, handler.clone());
    smol::block_on(async {
        let mut flooder = connect(server.addr, "alice").await;
        let mut sibling = connect(server.addr, "alice").await;
        let mut bob = connect(server.addr, "bob").await;
        for i in 0..10 {
            send_text(&mut flooder, &format!("m{i}")).await;
        }
        // The burst of two is echoed; the third is refused (one notice);
        // strikes 1..5 close the connection.
        let mut echoes = Vec::new();
        let mut notices = 0;
        let close = loop {
            match recv(&mut flooder).await {
                Recv::Text(t) if t.starts_with("echo|") => echoes.push(t),
                Recv::Text(t) if t.contains("rate_limited") => notices += 1,
                Recv::Close(code, reason) => break (code, reason),
                other => panic!("flooder: unexpected {other:?}"),
            }
        };
        assert_eq!(echoes, ["echo|alice|m0", "echo|alice|m1"]);
        assert_eq!(notices, 1, "refusal notices are rate-limited");
        assert_eq!(close, (1008, "inbound rate limit exceeded".into()));
        // The same user's other tab got the two echoes and stays open; bob
        // never noticed.
        for m in ["m0", "m1"] {
            assert_eq!(
                recv(&mut sibling).await,
                Recv::Text(format!("echo|alice|{m}"))
            );
        }
        send_text(&mut bob, "hi").await;
        assert_eq!(recv(&mut bob).await, Recv::Text("echo|bob|hi".into()));
    });
    let inbound = handler.state.inbound.lock().unwrap().clone();
    assert_eq!(inbound.iter().filter(|(u, _, _)| u == "alice").count(), 2);
    let stats = server.stats();
    assert_consistent(&stats);
    assert_eq!(stats.core.closed_inbound_flood, 1);
    assert_eq!(stats.core.inbound_refused_connection_messages, 5);
}

#[test]
fn a_closing_connection_hands_nothing_more_to_the_handler() {
    let handler = TestHandler::echo();
    let mut cfg = config(Environment::Production);
    cfg.queue_depth = 4;
    cfg.offline_buffer = 4;
    let server = start_with(cfg, handler.clone());
    smol::block_on(async {
        let mut tab = connect(server.addr, "alice").await;
        send_text(&mut tab, "before").await;
        assert_eq!(recv(&mut tab).await, Recv::Text("echo|alice|before".into()));
        // The tab stops reading; the server's sends fill the socket, then
        // its queue: the core closes it as a slow consumer (1013), and its
        // close frame waits behind what the tab never read.
        let big = "z".repeat(60_000);
        for _ in 0..2_000 {
            if server.stats().core.closed_slow_consumer == 1 {
                break;
            }
            let _ = server.handle.send_text("alice", big.clone());
            smol::Timer::after(Duration::from_millis(1)).await;
        }
        assert_eq!(server.stats().core.closed_slow_consumer, 1);
        // What the closing connection still sends is read and dropped.
        for i in 0..50 {
            send_text(&mut tab, &format!("after{i}")).await;
        }
        assert!(
            eventually(Duration::from_secs(5), || server.stats().inbound_discarded
                == 50)
            .await,
            "discarded: {}",
            server.stats().inbound_discarded
        );
        // The tab still gets what was queued before, then the close.
        let close = loop {
            match recv(&mut tab).await {
                Recv::Text(t) if t.starts_with("zzz") => {}
                Recv::Close(code, _) => break code,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(close, 1013);
    });
    let inbound = handler.state.inbound.lock().unwrap().clone();
    assert_eq!(
        inbound
            .iter()
            .map(|(_, _, t)| t.as_str())
            .collect::<Vec<_>>(),
        ["before"],
        "the handler saw messages of a closing connection"
    );
}

#[test]
fn a_byte_burst_smaller_than_the_largest_message_is_refused_at_start() {
    let mut cfg = config(Environment::Production);
    cfg.max_message_bytes = 64 * 1024;
    cfg.inbound_per_user.bytes = Some(Rate::new(1024, 4096));
    let err = cfg.validate().unwrap_err();
    assert!(err.to_string().contains("inbound byte burst"), "{err}");
}
