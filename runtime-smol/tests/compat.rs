//! The legacy singleton API over the running server: the seed's three usage
//! patterns compile and work unchanged, and every call site is recorded.
#![allow(deprecated)] // This file plays the legacy application.

mod support;

use support::*;
use userlane_core::compat::LegacyMethod;
use userlane_smol::compat::{
    create_websocket_manager, get_websocket_manager, legacy_usage, CompatError, LegacyHandle,
};
use userlane_smol::userlane_core::{self, UserContext};
use userlane_smol::{Environment, Message};

/// Pattern 2: a service that keeps the legacy handle in a field.
struct NotificationService {
    ws: LegacyHandle,
}

impl NotificationService {
    async fn notify(&self, user: &str, text: &str) -> usize {
        self.ws
            .send_to_user(user, Message::text(text.to_owned()))
            .await
            .unwrap()
            .queued_for() as usize
    }
}

/// Pattern 3: a handler that receives the legacy handle as an argument.
async fn on_order_shipped(ws: &LegacyHandle, user: &str) -> usize {
    ws.send_to_user(user, Message::text("order shipped"))
        .await
        .unwrap()
        .queued_for() as usize
}

#[test]
fn legacy_patterns_work_over_the_running_server() {
    // Before any server: a clear error, never a fresh empty manager.
    assert_eq!(
        get_websocket_manager().unwrap_err(),
        CompatError::ServerNotRunning
    );
    let server = start(config(Environment::Production));
    // `run` installs the handle when it starts; wait for it.
    let ws = (0..200)
        .find_map(|_| {
            get_websocket_manager().ok().or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(10));
                None
            })
        })
        .expect("legacy handle bound to the running server");
    smol::block_on(async {
        let mut a1 = connect(server.addr, "alice").await;
        let mut a2 = connect(server.addr, "alice").await;
        let mut bob = connect(server.addr, "bob").await;

        // Pattern 1: direct use.
        let manager = get_websocket_manager().unwrap();
        let direct_line = line!() + 1;
        let outcome = manager.send_to_user("alice", "direct").await.unwrap();
        assert_eq!(outcome.queued_for(), 2);
        let service = NotificationService { ws: ws.clone() };
        assert_eq!(service.notify("alice", "from a service").await, 2);
        assert_eq!(on_order_shipped(&ws, "alice").await, 2);
        for client in [&mut a1, &mut a2] {
            assert_eq!(next_text(client).await.as_deref(), Some("direct"));
            assert_eq!(next_text(client).await.as_deref(), Some("from a service"));
            assert_eq!(next_text(client).await.as_deref(), Some("order shipped"));
        }
        // Bob got nothing: a legacy send is still isolated.
        assert_eq!(
            server
                .handle
                .send_text("bob", "only bob")
                .unwrap()
                .queued_for(),
            1
        );
        assert_eq!(next_text(&mut bob).await.as_deref(), Some("only bob"));

        let conns_line = line!() + 1;
        let ids = ws.get_user_connections("alice");
        assert_eq!(ids.len(), 2);
        let stats_line = line!() + 1;
        let stats = ws.get_stats().await;
        assert_eq!(
            (
                stats.active_connections,
                stats.unique_users,
                stats.isolated_managers
            ),
            (3, 2, 2)
        );
        assert!(stats.migration_status.is_legacy_adapter);

        let disconnect_line = line!() + 1;
        let kicked = ws.disconnect_user("alice", 4001, "legacy kick").await;
        assert_eq!(kicked, Ok(2));
        assert_eq!(close_code(&mut a1).await, Some(4001));
        assert_eq!(close_code(&mut a2).await, Some(4001));
        assert_eq!(
            ws.disconnect_user("alice", 1005, "").await,
            Err(CompatError::InvalidCloseCode(1005))
        );

        // The new path.
        let ctx = UserContext::new("bob", "thread-1", "run-1", "req-1").unwrap();
        let lane = create_websocket_manager(ctx).unwrap();
        assert_eq!(
            lane.send(Message::text("new path")).unwrap().queued_for(),
            1
        );
        assert_eq!(next_text(&mut bob).await.as_deref(), Some("new path"));
        assert_eq!(lane.connections().len(), 1);

        // The call-site table names the lines of this file.
        let usage = legacy_usage();
        let here = |method: LegacyMethod, line: u32| {
            usage.sites.iter().find(|s| {
                s.method == method && s.line == line && s.file.ends_with("tests/compat.rs")
            })
        };
        assert_eq!(
            here(LegacyMethod::SendToUser, direct_line).map(|s| s.count),
            Some(1)
        );
        assert_eq!(
            here(LegacyMethod::GetUserConnections, conns_line).map(|s| s.count),
            Some(1)
        );
        assert_eq!(
            here(LegacyMethod::GetStats, stats_line).map(|s| s.count),
            Some(1)
        );
        assert_eq!(
            here(LegacyMethod::DisconnectUser, disconnect_line).map(|s| s.count),
            Some(1)
        );
        // One site each inside NotificationService::notify and on_order_shipped.
        let sends: Vec<_> = usage
            .sites
            .iter()
            .filter(|s| s.method == LegacyMethod::SendToUser)
            .collect();
        assert_eq!(sends.len(), 3);
        assert_eq!(server.handle.stats().legacy_calls, usage.total_calls);
        assert!(server.handle.stats().core.is_consistent());
    });
    let _ = userlane_core::Instant::ZERO;
}
