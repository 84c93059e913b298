//! Connection churn: a closed connection frees its place in the per-user
//! limit at once, so 10,000 connect/disconnect cycles of one user never hit it.
mod support;

use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WireCloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame as WireCloseFrame;
use support::*;
use userlane_smol::Environment;

const CYCLES: usize = 10_000;
/// Cycles in flight at once, all for the same user: below the per-user
/// limit of 5, so a single refusal means a closed connection kept its place.
const PIPELINES: usize = 4;

/// One client-initiated cycle: upgrade, close with 1000, read the server's
/// close reply and the end of the stream.
async fn cycle(addr: std::net::SocketAddr, token: &str, i: usize) {
    let (mut client, _) = connect_raw(addr, "/ws", Some(token))
        .await
        .unwrap_or_else(|e| panic!("cycle {i}: refused: {e}"));
    let bye = WireCloseFrame {
        code: WireCloseCode::Normal,
        reason: "bye".into(),
    };
    within(RECV_TIMEOUT, client.close(Some(bye)))
        .await
        .expect("close timed out")
        .unwrap();
    // The server answers the close (RFC 6455 §5.5.1), then ends the stream.
    match recv(&mut client).await {
        Recv::Close(1000, _) => {}
        other => panic!("cycle {i}: the close handshake was not completed: {other:?}"),
    }
    assert!(
        matches!(recv(&mut client).await, Recv::Ended(_)),
        "cycle {i}: the stream did not end after the close"
    );
}

#[test]
fn ten_thousand_connect_disconnect_cycles_of_one_user_never_hit_the_limit() {
    let mut cfg = config(Environment::Production);
    assert_eq!(cfg.max_connections_per_user, 5);
    cfg.max_connections = 16;
    let server = start(cfg);
    let token = jwt("churner", 600);
    let started = Instant::now();
    smol::block_on(async {
        let pipelines = (0..PIPELINES).map(|p| {
            let token = token.clone();
            let addr = server.addr;
            async move {
                for i in (p..CYCLES).step_by(PIPELINES) {
                    cycle(addr, &token, i).await;
                }
            }
        });
        futures_util::future::join_all(pipelines).await;
    });
    let elapsed = started.elapsed();
    eprintln!(
        "{CYCLES} connect/disconnect cycles ({PIPELINES} in flight) in {:.2} s ({:.0} µs per cycle)",
        elapsed.as_secs_f64(),
        elapsed.as_micros() as f64 / CYCLES as f64
    );

    assert!(
        eventually_blocking(Duration::from_secs(5), || server
            .stats()
            .core
            .connections_active
            == 0),
        "connections still counted as open: {:?}",
        server.stats().core
    );
    let stats = server.stats();
    assert_consistent(&stats);
    assert_eq!(stats.rejected_user_limit, 0);
    assert_eq!(stats.rejected_server_full, 0);
    assert_eq!(stats.core.rejected_connections_per_user, 0);
    assert_eq!(stats.core.resource_limit_hits(), 0);
    assert_eq!(stats.core.total_connections_managed, CYCLES as u64);
    // Every one was closed by its peer, none by the core.
    assert_eq!(stats.core.connections_closed(), 0);
    assert_eq!(stats.tcp_accepted, CYCLES as u64);
    assert_eq!(stats.handshakes_failed, 0);
    assert_eq!(stats.forced_closes, 0);
    assert_eq!(
        stats.core.managers_created, 1,
        "one manager for the whole churn"
    );

    // The limit itself still holds: five tabs at once, the sixth is refused.
    smol::block_on(async {
        let tabs = connect_tabs(server.addr, "churner", 5).await;
        assert_eq!(server.handle.user_connections("churner").len(), 5);
        assert_eq!(refused_status(server.addr, "/ws", Some(&token)).await, 429);
        drop(tabs);
    });
    assert_eq!(server.stats().rejected_user_limit, 1);
}

#[test]
fn peers_that_vanish_without_a_close_frame_are_counted_as_lost_and_free_their_place() {
    let mut cfg = config(Environment::Production);
    cfg.max_connections_per_user = 2;
    let server = start(cfg);
    smol::block_on(async {
        for round in 0..20 {
            let tabs = connect_tabs(server.addr, "alice", 2).await;
            // Dropped without a close frame: the TCP connection just ends.
            drop(tabs);
            assert!(
                eventually(Duration::from_secs(5), || server
                    .handle
                    .user_connections("alice")
                    .is_empty())
                .await,
                "round {round}: vanished tabs still hold their place"
            );
        }
    });
    let stats = server.stats();
    assert_consistent(&stats);
    assert_eq!(stats.core.total_connections_managed, 40);
    assert_eq!(stats.core.connections_lost, 40);
    // A vanished peer is neither a protocol error nor closed by the server.
    assert_eq!(stats.closed_protocol_error, 0);
    assert_eq!(stats.core.connections_closed(), 0);
    assert_eq!(stats.rejected_user_limit, 0);
}

/// A close that lands right after admission's `connect` keeps its reason:
/// the registry entry that carries it is inserted in the same shard lock as
/// the connection (it used to be inserted after, under a lock of its own,
/// and a close in between went out with the core's generic reason).
#[test]
fn a_close_racing_admission_keeps_its_reason() {
    const ROUNDS: usize = 1_000;
    let server = start(config(Environment::Production));
    let handle = server.handle.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let kicker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let code = userlane_smol::userlane_core::CloseCode::new(4001).unwrap();
            let mut closed = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                closed += handle.disconnect_user("racer", code, "kicked");
            }
            closed
        })
    };
    smol::block_on(async {
        let token = jwt("racer", 300);
        for round in 0..ROUNDS {
            let (mut client, _) = connect_raw(server.addr, "/ws", Some(&token))
                .await
                .unwrap_or_else(|e| panic!("round {round}: refused: {e}"));
            assert_eq!(
                recv(&mut client).await,
                Recv::Close(4001, "kicked".into()),
                "round {round}"
            );
        }
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(kicker.join().unwrap() >= ROUNDS);
}
