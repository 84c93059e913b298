//! Security scenario 15: the whole path, from creation through per-user
//! secrets on the wire to reclamation.

use std::collections::HashSet;

use userlane_core::{Config, Event, ManagerFactory};
use userlane_tests::ops::Rng;
use userlane_tests::support::{at, ctx, Wire};

/// `msg`, the `n`-th received by user `u`, carries that user's `n`-th
/// secret and names no other user.
fn assert_only_own_secret(msg: &str, u: usize, n: usize, uids: &[String]) {
    assert!(
        msg.contains(&format!("\"secret_data_for_{}_{n}\"", uids[u])),
        "{msg}"
    );
    for (other, uid) in uids.iter().enumerate() {
        if other != u {
            assert!(
                !msg.contains(&format!("{uid}\"")),
                "{uid} leaked into {msg}"
            );
            assert!(
                !msg.contains(&format!("for_{uid}_")),
                "{uid} leaked into {msg}"
            );
        }
    }
}

/// Scenario 15 — end to end: 5 users × 10 messages carrying per-user
/// secrets → each gets exactly its 10, no foreign secret anywhere; after
/// reclaiming all, 0 active and 0 violations.
#[test]
fn scenario_15_per_user_secrets_end_to_end() {
    type Factory = ManagerFactory<String, 8, 8, 128>;
    let mut f = Factory::new(Config::for_capacity(8, 8)).unwrap();
    let uids: Vec<String> = (0..5).map(|u| format!("user_{u}")).collect();
    let mut lanes = Vec::new();
    for uid in &uids {
        let c = ctx(uid);
        let m = f.create_manager(c.clone(), at(0)).unwrap();
        lanes.push((m, f.add_connection(m, &c, at(0)).unwrap()));
    }
    let s = f.stats();
    assert_eq!((s.managers_active, s.users_with_active_managers()), (5, 5));
    // No manager lists another user's connection.
    let mut all = HashSet::new();
    for (m, conn) in &lanes {
        let listed: Vec<_> = f.connections(*m).unwrap().collect();
        assert_eq!(listed, [*conn]);
        assert!(all.insert(*conn));
    }

    let mut order: Vec<usize> = (0..50).map(|i| i % 5).collect();
    let mut rng = Rng::new(15);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u32 + 1) as usize);
    }
    let mut next = [0u32; 5];
    for u in order {
        let secret = format!(
            r#"{{"type":"e2e_test","user_id":"{0}","message_id":{1},"sensitive_data":"secret_data_for_{0}_{1}"}}"#,
            uids[u], next[u]
        );
        assert_eq!(
            f.send_to_user(lanes[u].0, secret, at(1))
                .unwrap()
                .queued_for(),
            1
        );
        next[u] += 1;
    }
    let mut wire = Wire::new();
    wire.drain(&mut f, None);
    for (u, (_, conn)) in lanes.iter().enumerate() {
        let got = wire.received(*conn);
        assert_eq!(got.len(), 10, "user {u}");
        for (n, msg) in got.iter().enumerate() {
            assert_only_own_secret(msg, u, n, &uids);
        }
    }
    assert_eq!(wire.total_messages(), 50);

    // Reclaim everything.
    for (m, _) in &lanes {
        assert_eq!(f.deactivate(*m, at(2)), Ok(1));
    }
    wire.drain(&mut f, Some(at(2)));
    let deactivated = wire
        .events
        .iter()
        .filter(|e| matches!(e, Event::ManagerDeactivated { .. }))
        .count();
    assert_eq!(deactivated, 5);
    let s = f.stats();
    assert_eq!(
        (
            s.managers_active,
            s.users_with_active_managers(),
            s.connections_active,
            s.connections_closing
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(s.security_violations_detected, 0);
    assert_eq!((s.messages_transmitted, s.messages_dropped), (50, 0));
    assert!(s.is_consistent());
}
