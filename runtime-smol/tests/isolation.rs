//! Isolation between users over real sockets: under concurrent load no
//! connection ever receives another user's message, every connection gets
//! each of its user's messages exactly once and in order, a reused
//! connection slot never inherits its previous owner's traffic, and users
//! spread over shards stay apart.
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use support::*;
use userlane_smol::userlane_core::shim::shard_for;
use userlane_smol::userlane_core::SendOutcome;
use userlane_smol::Environment;

const USERS: [&str; 2] = ["alice", "bob"];
const TABS: usize = 3;
/// Application threads sending to each user at the same time.
const SENDERS: usize = 2;
const PER_SENDER: u32 = 500;
/// Messages each tab sends; the handler echoes each to all tabs of its user.
const INBOUND_PER_TAB: u32 = 50;
const EXPECTED_PER_TAB: usize = SENDERS * PER_SENDER as usize + TABS * INBOUND_PER_TAB as usize;

/// Checks one received message against the tab's user and the per-source
/// sequence numbers seen so far. Sources: `svc|<user>|<sender>|<seq>` from
/// the application threads, `echo|<server-side user>|<user>|t<tab>|<seq>`
/// from the handler.
fn check(user: &str, tab: usize, text: &str, next: &mut HashMap<String, u32>) {
    let parts: Vec<&str> = text.split('|').collect();
    let (source, seq) = match parts.as_slice() {
        ["svc", to, sender, seq] => {
            assert_eq!(*to, user, "{user} tab {tab} got a foreign message: {text}");
            (format!("svc{sender}"), seq)
        }
        ["echo", owner, from, from_tab, seq] => {
            assert_eq!(
                *owner, user,
                "{user} tab {tab} got another user's echo: {text}"
            );
            assert_eq!(
                *from, user,
                "{user} tab {tab}: the server attributed {from}'s message to {owner}: {text}"
            );
            (format!("echo{from_tab}"), seq)
        }
        _ => panic!("{user} tab {tab}: unexpected message {text}"),
    };
    let seq: u32 = seq.parse().unwrap();
    let expected = next.entry(source.clone()).or_insert(0);
    assert_eq!(
        seq, *expected,
        "{user} tab {tab}: {source} out of order or duplicated ({text})"
    );
    *expected += 1;
}

/// One tab: sends its inbound messages while reading, checks everything it
/// reads, and returns how many messages it got.
async fn run_tab(user: &'static str, tab: usize, client: Client) -> usize {
    let (mut tx, mut rx) = client.split();
    let writer = async move {
        for seq in 0..INBOUND_PER_TAB {
            let text = format!("{user}|t{tab}|{seq}");
            within(RECV_TIMEOUT, tx.send(Message::text(text)))
                .await
                .expect("send timed out")
                .unwrap();
            if seq % 8 == 0 {
                smol::future::yield_now().await;
            }
        }
        tx
    };
    let reader = async move {
        let mut next = HashMap::new();
        let mut got = 0;
        while got < EXPECTED_PER_TAB {
            match within(RECV_TIMEOUT, rx.next()).await {
                Some(Some(Ok(Message::Text(t)))) => {
                    check(user, tab, t.as_str(), &mut next);
                    got += 1;
                }
                Some(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                other => panic!("{user} tab {tab}: after {got} messages: {other:?}"),
            }
        }
        // Nothing more may arrive: no duplicate, no stray message.
        match within(Duration::from_millis(150), rx.next()).await {
            None => {}
            Some(other) => panic!("{user} tab {tab}: unexpected extra {other:?}"),
        }
        (got, next)
    };
    let (_tx, (got, next)) = futures_util::future::join(writer, reader).await;
    for sender in 0..SENDERS {
        assert_eq!(next.get(&format!("svc{sender}")), Some(&PER_SENDER));
    }
    for from in 0..TABS {
        assert_eq!(next.get(&format!("echot{from}")), Some(&INBOUND_PER_TAB));
    }
    got
}

#[test]
fn two_users_with_three_tabs_each_never_see_each_others_messages_under_load() {
    let mut cfg = config(Environment::Production);
    // Deep enough for every message of the test: no connection can be
    // closed as a slow consumer however the threads are scheduled.
    cfg.queue_depth = 2 * EXPECTED_PER_TAB as u32;
    let handler = TestHandler::echo();
    let server = start_with(cfg, handler.clone());

    let tabs: Vec<(&'static str, usize, Client)> = smol::block_on(async {
        let mut tabs = Vec::new();
        for user in USERS {
            for (tab, client) in connect_tabs(server.addr, user, TABS)
                .await
                .into_iter()
                .enumerate()
            {
                tabs.push((user, tab, client));
            }
        }
        tabs
    });
    for user in USERS {
        assert_eq!(server.handle.user_connections(user).len(), TABS);
    }

    // The application threads start together once every tab is open.
    let start = Arc::new(Barrier::new(USERS.len() * SENDERS + 1));
    let senders: Vec<_> = USERS
        .iter()
        .flat_map(|&user| (0..SENDERS).map(move |s| (user, s)))
        .map(|(user, s)| {
            let handle = server.handle.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                for seq in 0..PER_SENDER {
                    let outcome = handle
                        .send_text(user, format!("svc|{user}|{s}|{seq}"))
                        .unwrap_or_else(|e| panic!("send to {user} refused: {e}"));
                    assert_eq!(
                        outcome,
                        SendOutcome::Queued {
                            queued_for: TABS as u32,
                            closed_slow: 0
                        }
                    );
                    if seq % 16 == 0 {
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    start.wait();
    let received: Vec<usize> = smol::block_on(futures_util::future::join_all(
        tabs.into_iter()
            .map(|(user, tab, client)| run_tab(user, tab, client)),
    ));
    for s in senders {
        s.join().unwrap();
    }
    assert_eq!(received, vec![EXPECTED_PER_TAB; USERS.len() * TABS]);

    let total = (USERS.len() * TABS * EXPECTED_PER_TAB) as u64;
    let stats = server.stats();
    assert_consistent(&stats);
    assert_eq!(stats.core.security_violations_detected, 0);
    assert_eq!(stats.core.messages_queued, total);
    assert_eq!(stats.core.messages_transmitted, total);
    assert_eq!(stats.core.messages_dropped, 0);
    assert_eq!(stats.core.closed_slow_consumer, 0);
    assert_eq!(stats.core.sends_refused, 0);
    assert_eq!(handler.echo_errors(), 0);
    // The handler saw every inbound message under the sender's own identity.
    let inbound = handler.state.inbound.lock().unwrap();
    assert_eq!(inbound.len(), USERS.len() * TABS * INBOUND_PER_TAB as usize);
    for (user, _conn, text) in inbound.iter() {
        assert!(
            text.starts_with(&format!("{user}|")),
            "{text} attributed to {user}"
        );
    }
}

#[test]
fn a_reused_connection_slot_never_receives_its_previous_owners_messages() {
    let server = start(config(Environment::Production));
    smol::block_on(async {
        let mut alice = connect(server.addr, "alice").await;
        let alice_conn = server.handle.user_connections("alice")[0].connection();
        alice.close(None).await.unwrap();
        assert!(
            eventually(Duration::from_secs(5), || server
                .handle
                .user_connections("alice")
                .is_empty())
            .await
        );
        let mut bob = connect(server.addr, "bob").await;
        let bob_conn = server.handle.user_connections("bob")[0].connection();
        // The premise: the core hands bob the slot alice just released, under
        // a new generation, so a stale handle could only reach bob by mistake.
        assert_eq!(bob_conn.index(), alice_conn.index(), "slot was not reused");
        assert_ne!(bob_conn, alice_conn);

        // alice has no connection now: her message waits in her offline buffer.
        assert_eq!(
            server.handle.send_text("alice", "for alice only").unwrap(),
            SendOutcome::Buffered { buffered: 1 }
        );
        server.handle.send_text("bob", "for bob").unwrap();
        assert_eq!(recv(&mut bob).await, Recv::Text("for bob".into()));
        assert_silent(&mut bob, Duration::from_millis(100), "bob").await;

        // alice gets it on her next connection.
        let mut alice = connect(server.addr, "alice").await;
        assert_eq!(recv(&mut alice).await, Recv::Text("for alice only".into()));
    });
    let stats = server.stats();
    assert_consistent(&stats);
    assert_eq!(stats.core.offline_replayed, 1);
    assert_eq!(stats.core.security_violations_detected, 0);
}

#[test]
fn users_on_two_shards_each_get_only_their_own_messages() {
    let mut cfg = config(Environment::Production);
    cfg.shards = 2;
    let server = start(cfg);
    let users: Vec<String> = (0..8).map(|i| format!("user-{i}")).collect();
    let on_shard: Vec<usize> = users.iter().map(|u| shard_for(u, 2)).collect();
    assert!(
        on_shard.contains(&0) && on_shard.contains(&1),
        "the test users must cover both shards: {on_shard:?}"
    );
    let stats = smol::block_on(async {
        let mut clients = Vec::new();
        for u in &users {
            clients.push(connect_tabs(server.addr, u, 2).await);
        }
        for (u, shard) in users.iter().zip(&on_shard) {
            let conns = server.handle.user_connections(u);
            assert_eq!(conns.len(), 2);
            assert!(conns
                .iter()
                .all(|c| c.shard() == *shard && c.user_id() == u));
        }
        for round in 0..3 {
            for u in &users {
                let outcome = server.handle.send_text(u, format!("{u}|{round}")).unwrap();
                assert_eq!(outcome.queued_for(), 2);
            }
        }
        for (u, tabs) in users.iter().zip(clients.iter_mut()) {
            for tab in tabs.iter_mut() {
                for round in 0..3 {
                    assert_eq!(recv(tab).await, Recv::Text(format!("{u}|{round}")));
                }
            }
        }
        for tabs in clients.iter_mut() {
            for tab in tabs.iter_mut() {
                assert_silent(tab, Duration::from_millis(50), "after three rounds").await;
            }
        }
        server.stats()
    });
    assert_consistent(&stats);
    assert_eq!(stats.core.managers_active, 8);
    assert_eq!(stats.core.connections_active, 16);
    assert_eq!(stats.core.messages_transmitted, 8 * 2 * 3);
}
