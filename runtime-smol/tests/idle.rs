//! Pings and the idle timeout (ping every 100 ms, idle after 400 ms here): a
//! client that answers pings stays connected for many idle periods; a peer
//! that completed the handshake but never reads or answers is closed with
//! 1000 "idle timeout" by the shard's timer.
mod support;

use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use support::*;
use userlane_smol::{Environment, ServerConfig};

const PING: Duration = Duration::from_millis(100);
const IDLE: Duration = Duration::from_millis(400);

fn short_timers() -> ServerConfig {
    let mut cfg = config(Environment::Production);
    cfg.ping_interval = PING;
    cfg.idle_timeout = IDLE;
    cfg
}

#[test]
fn a_client_that_answers_pings_is_never_idle() {
    let server = start(short_timers());
    smol::block_on(async {
        let mut client = connect(server.addr, "alice").await;
        // Five idle periods with no application traffic at all; reading is
        // what lets tungstenite answer each ping with a pong.
        let until = Instant::now() + 5 * IDLE;
        let mut pings = 0;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match within(left, client.next()).await {
                None => break,
                Some(Some(Ok(Message::Ping(_)))) => pings += 1,
                Some(other) => panic!("after {pings} pings: {other:?}"),
            }
        }
        assert!(pings >= 5, "only {pings} pings in {:?}", 5 * IDLE);
        assert_eq!(server.stats().core.closed_idle_timeout, 0);
        assert_eq!(server.handle.user_connections("alice").len(), 1);
        server.handle.send_text("alice", "still here").unwrap();
        assert_eq!(recv(&mut client).await, Recv::Text("still here".into()));
    });
}

#[test]
fn a_peer_that_never_answers_is_closed_after_the_idle_timeout() {
    let server = start(short_timers());
    let token = jwt("silent", 300);
    let before_upgrade = Instant::now();
    let mut raw = RawClient::upgrade(server.addr, "/ws", Some(&token));
    assert_eq!(raw.status(), 101, "{}", raw.head);
    // The connection was admitted after `before_upgrade`, so it cannot be
    // idle-closed before `before_upgrade + IDLE`: check while that holds.
    let early = server.stats().core.closed_idle_timeout;
    if before_upgrade.elapsed() < IDLE {
        assert_eq!(early, 0, "closed before the idle timeout");
    }
    assert_eq!(server.handle.user_connections("silent").len(), 1);

    // Neither read nor answer anything; the server's timer must act.
    assert!(
        eventually_blocking(Duration::from_secs(5), || server
            .stats()
            .core
            .closed_idle_timeout
            == 1),
        "the silent peer was never closed"
    );
    let closed_after = before_upgrade.elapsed();
    assert!(closed_after >= IDLE, "closed after only {closed_after:?}");

    // What the peer finally reads: pings it never answered, then the close.
    let (frames, ended) = raw.read_until_end(Duration::from_secs(5));
    assert!(ended, "the server did not end the connection");
    let pings = frames.iter().filter(|(op, _)| *op == 0x9).count();
    assert!(pings >= 1, "no ping was sent: {frames:?}");
    let (op, payload) = frames.last().expect("no frame at all");
    assert_eq!(*op, 0x8, "the last frame is not a close: {frames:?}");
    assert_eq!(close_payload(payload), (1000, "idle timeout".into()));
    assert!(
        frames[..frames.len() - 1].iter().all(|(op, _)| *op == 0x9),
        "only pings precede the close: {frames:?}"
    );

    assert!(eventually_blocking(Duration::from_secs(5), || server
        .handle
        .user_connections("silent")
        .is_empty()));
    let stats = server.stats();
    assert_consistent(&stats);
    assert_eq!(stats.core.connections_active, 0);
    assert_eq!(stats.forced_closes, 0);
}
