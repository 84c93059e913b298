//! Multi-tab fan-out: one send reaches every open connection of that user
//! exactly once, in order, and nobody else; a user with no connection gets
//! the bounded offline buffer replayed on the next one.
mod support;

use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use support::*;
use userlane_smol::userlane_core::SendOutcome;
use userlane_smol::{Environment, UserError};

#[test]
fn one_send_reaches_every_tab_of_the_user_exactly_once() {
    let server = start(config(Environment::Production));
    smol::block_on(async {
        let mut alice = connect_tabs(server.addr, "alice", 4).await;
        let mut bob = connect(server.addr, "bob").await;
        let conns = server.handle.user_connections("alice");
        assert_eq!(conns.len(), 4);
        let mut ids: Vec<&str> = conns.iter().map(|c| c.connection_id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 4, "every tab has its own connection id");
        assert!(conns
            .iter()
            .all(|c| c.user_id() == "alice" && !c.anonymous()));

        assert_eq!(
            server.handle.send_text("alice", "m1").unwrap(),
            SendOutcome::Queued {
                queued_for: 4,
                closed_slow: 0
            }
        );
        assert_eq!(
            server
                .handle
                .send_to_user("alice", Message::binary(vec![1u8, 2, 3]))
                .unwrap()
                .queued_for(),
            4
        );
        server.handle.send_text("alice", "m2").unwrap();
        for (i, tab) in alice.iter_mut().enumerate() {
            assert_eq!(recv(tab).await, Recv::Text("m1".into()), "tab {i}");
            assert_eq!(recv(tab).await, Recv::Binary(vec![1, 2, 3]), "tab {i}");
            // m1 is not repeated: the next message is m2.
            assert_eq!(recv(tab).await, Recv::Text("m2".into()), "tab {i}");
        }
        // bob received none of alice's three: his first message is his own.
        server.handle.send_text("bob", "b1").unwrap();
        assert_eq!(recv(&mut bob).await, Recv::Text("b1".into()));
        for tab in alice.iter_mut() {
            assert_silent(tab, Duration::from_millis(50), "alice after m2").await;
        }

        // A closed tab drops out of the fan-out at once.
        let mut closed = alice.pop().unwrap();
        closed.close(None).await.unwrap();
        assert!(
            eventually(Duration::from_secs(5), || server
                .handle
                .user_connections("alice")
                .len()
                == 3)
            .await
        );
        assert_eq!(
            server.handle.send_text("alice", "m3").unwrap().queued_for(),
            3
        );
        for tab in alice.iter_mut() {
            assert_eq!(recv(tab).await, Recv::Text("m3".into()));
        }
    });
    let stats = server.stats();
    assert_consistent(&stats);
    // 3 messages × 4 tabs + 1 for bob + 1 × 3 tabs.
    assert_eq!(stats.core.messages_queued, 16);
    assert_eq!(stats.core.messages_transmitted, 16);
    assert_eq!(stats.core.sends_accepted, 5);
}

#[test]
fn messages_for_a_user_without_connections_are_buffered_and_replayed_in_order() {
    let mut cfg = config(Environment::Production);
    cfg.offline_buffer = 3;
    let server = start(cfg);
    for (i, text) in ["o1", "o2", "o3"].into_iter().enumerate() {
        assert_eq!(
            server.handle.send_text("carol", text).unwrap(),
            SendOutcome::Buffered {
                buffered: i as u32 + 1
            }
        );
    }
    // The buffer is bounded: the fourth is refused, not silently dropped.
    assert!(matches!(
        server.handle.send_text("carol", "o4"),
        Err(UserError::Core(_))
    ));
    smol::block_on(async {
        let mut carol = connect(server.addr, "carol").await;
        for text in ["o1", "o2", "o3"] {
            assert_eq!(recv(&mut carol).await, Recv::Text(text.into()));
        }
        server.handle.send_text("carol", "live").unwrap();
        assert_eq!(recv(&mut carol).await, Recv::Text("live".into()));
        // A second tab opened later does not get the replay again.
        let mut second = connect(server.addr, "carol").await;
        server.handle.send_text("carol", "both").unwrap();
        assert_eq!(recv(&mut second).await, Recv::Text("both".into()));
        assert_eq!(recv(&mut carol).await, Recv::Text("both".into()));
    });
    let stats = server.stats();
    assert_consistent(&stats);
    assert_eq!(stats.core.offline_buffered, 3);
    assert_eq!(stats.core.offline_replayed, 3);
    assert_eq!(stats.core.rejected_offline_full, 1);
    assert_eq!(stats.core.messages_dropped, 0);
}
