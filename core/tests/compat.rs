//! The legacy singleton calls over isolated managers.
#![allow(deprecated)] // These tests are the legacy call sites.

use userlane_core::compat::{LegacyManager, LegacyMetadata, LegacyMethod};
use userlane_core::{
    CloseCode, Config, Error, Event, Instant, ManagerHandle, SendOutcome, Transmit, Violation,
};

type Legacy = LegacyManager<u32, 8, 16, 256>;
const T: Instant = Instant::ZERO;

fn legacy() -> Legacy {
    Legacy::new(Config::for_capacity(8, 16)).unwrap()
}

/// Plays the runtime: writes what is queued and releases closed sockets.
fn drain(l: &mut Legacy) -> Vec<(u32, Transmit<u32>)> {
    let mut out = Vec::new();
    let f = l.factory_mut();
    while let Some(e) = f.poll_event() {
        let c = match e {
            Event::Transmit(c) | Event::ConnectionClosed { connection: c, .. } => c,
            _ => continue,
        };
        while let Ok(Some(t)) = f.poll_transmit(c) {
            if let Transmit::Close(_) = t {
                f.handle_closed(c, T).unwrap();
            }
            out.push((c.index(), t));
        }
    }
    out
}

#[test]
fn legacy_connects_share_the_users_one_isolated_manager() {
    let mut l = legacy();
    let a1 = l
        .connect_user("alice", LegacyMetadata::default(), T)
        .unwrap();
    let a2 = l
        .connect_user("alice", LegacyMetadata::default(), T)
        .unwrap();
    let b1 = l.connect_user("bob", LegacyMetadata::default(), T).unwrap();
    assert_eq!(
        l.send_to_user("alice", 7, T),
        Ok(SendOutcome::Queued {
            queued_for: 2,
            closed_slow: 0
        })
    );
    let written = drain(&mut l);
    assert_eq!(
        written,
        vec![
            (a1.index(), Transmit::Message(7)),
            (a2.index(), Transmit::Message(7))
        ]
    );
    let conns: Vec<_> = l.get_user_connections("alice").collect();
    assert_eq!(conns, vec![a1, a2]);
    assert_eq!(l.get_user_connections("nobody").count(), 0);
    let stats = l.get_stats();
    assert_eq!(
        (
            stats.active_connections,
            stats.total_connections,
            stats.unique_users,
            stats.isolated_managers
        ),
        (3, 3, 2, 2)
    );
    assert_eq!((stats.messages_sent, stats.messages_failed), (1, 0));
    assert!(l.factory().stats().is_consistent());
    assert!(!written.iter().any(|(c, _)| *c == b1.index()));
}

#[test]
fn metadata_cannot_change_the_user_and_leaves_no_orphan() {
    let mut l = legacy();
    let meta = LegacyMetadata {
        user_id: Some("attacker"),
        ..Default::default()
    };
    assert_eq!(
        l.connect_user("victim", meta, T),
        Err(Error::IsolationViolation {
            manager: ManagerHandle::NONE,
            violation: Violation::ForeignUser
        })
    );
    let s = l.factory().stats();
    assert_eq!((s.managers_created, s.security_violations_detected), (0, 1));
    assert!(l.factory().manager_for_user("attacker").is_none());
    assert!(l.factory().manager_for_user("victim").is_none());
    let same = LegacyMetadata {
        user_id: Some("victim"),
        thread_id: Some("thread-9"),
        ..Default::default()
    };
    l.connect_user("victim", same, T).unwrap();
    let m = l.factory().manager_for_user("victim").unwrap();
    assert_eq!(l.factory().context(m).unwrap().thread_id(), "thread-9");
}

#[test]
fn a_thousand_connect_disconnect_cycles_never_hit_the_limit() {
    let mut l = legacy();
    for i in 0..1_000 {
        let c = l
            .connect_user("carol", LegacyMetadata::default(), T)
            .unwrap_or_else(|e| panic!("cycle {i}: {e}"));
        l.disconnect_user("carol", c, CloseCode::NORMAL, T).unwrap();
        let written = drain(&mut l);
        assert!(
            matches!(written.last(), Some((_, Transmit::Close(f))) if f.code == CloseCode::NORMAL)
        );
    }
    let s = l.factory().stats();
    assert_eq!(
        (
            s.total_connections_managed,
            s.connections_active,
            s.closed_application
        ),
        (1_000, 0, 1_000)
    );
    assert_eq!(s.managers_created, 1);
}

#[test]
fn legacy_send_buffers_for_a_user_without_connections_and_replays() {
    let mut l = legacy();
    assert_eq!(
        l.send_to_user("dave", 1, T),
        Ok(SendOutcome::Buffered { buffered: 1 })
    );
    assert_eq!(
        l.send_to_user("dave", 2, T),
        Ok(SendOutcome::Buffered { buffered: 2 })
    );
    let c = l
        .connect_user("dave", LegacyMetadata::default(), T)
        .unwrap();
    let written = drain(&mut l);
    assert_eq!(
        written,
        vec![
            (c.index(), Transmit::Message(1)),
            (c.index(), Transmit::Message(2))
        ]
    );
}

#[test]
fn deactivation_applies_to_legacy_callers_too() {
    let mut l = legacy();
    let c = l
        .connect_user("erin", LegacyMetadata::default(), T)
        .unwrap();
    let m = l.factory().manager_for_user("erin").unwrap();
    l.factory_mut().deactivate(m, T).unwrap();
    drain(&mut l);
    assert_eq!(
        l.disconnect_user("erin", c, CloseCode::NORMAL, T),
        Err(Error::UnknownConnection(c))
    );
    // A later legacy send makes a fresh manager (new handle) and buffers.
    assert_eq!(
        l.send_to_user("erin", 5, T),
        Ok(SendOutcome::Buffered { buffered: 1 })
    );
    assert_ne!(l.factory().manager_for_user("erin"), Some(m));
}

#[test]
fn call_sites_are_the_real_lines_of_this_file() {
    let mut l = legacy();
    let meta = LegacyMetadata::default();
    let connect_line = line!() + 1;
    let c = l.connect_user("frank", meta, T).unwrap();
    for _ in 0..3 {
        let _ = l.send_to_user("frank", 1, T); // same site three times
    }
    let send_line = line!() - 2;
    let disconnect_line = line!() + 1;
    l.disconnect_user("frank", c, CloseCode::NORMAL, T).unwrap();
    let stats_line = line!() + 1;
    let stats = l.get_stats();
    let sites: Vec<_> = stats
        .migration_status
        .sites
        .iter()
        .map(|s| (s.method, s.file, s.line, s.count))
        .collect();
    assert_eq!(
        sites,
        vec![
            (LegacyMethod::ConnectUser, file!(), connect_line, 1),
            (LegacyMethod::SendToUser, file!(), send_line, 3),
            (LegacyMethod::DisconnectUser, file!(), disconnect_line, 1),
            (LegacyMethod::GetStats, file!(), stats_line, 1),
        ]
    );
    assert_eq!(stats.migration_status.legacy_calls_total, 6);
    assert_eq!(stats.migration_status.unique_warning_sites, 4);
    assert!(stats.migration_status.is_legacy_adapter);
}

#[test]
fn sites_beyond_the_table_are_counted_not_lost() {
    let mut l: LegacyManager<u32, 8, 16, 256, 16, u32, 2> =
        LegacyManager::new(Config::for_capacity(8, 16)).unwrap();
    let _ = l.send_to_user("g", 1, T);
    let _ = l.send_to_user("g", 2, T);
    let _ = l.send_to_user("g", 3, T);
    let _ = l.send_to_user("g", 4, T);
    let status = l.get_stats().migration_status;
    assert_eq!(
        (
            status.sites.len(),
            status.overflow_calls,
            status.legacy_calls_total
        ),
        (2, 3, 5)
    );
}
