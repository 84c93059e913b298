//! Security scenarios 1, 2, 3 and 13: one isolated manager per user, and no
//! connection or message ever crosses from one user's lane into another's.

use std::collections::HashSet;

use userlane_core::{
    Config, Error, Event, ManagerFactory, SendOutcome, Transmit, UserContext, Violation,
};
use userlane_tests::support::{at, ctx, Wire};

type Factory = ManagerFactory<String, 8, 16, 64>;

fn factory() -> Factory {
    Factory::new(Config::for_capacity(8, 16)).unwrap()
}

fn users(n: usize) -> Vec<UserContext> {
    (0..n).map(|i| ctx(&format!("user_{i:02}"))).collect()
}

/// Scenario 1 — factory isolation: 5 users give 5 distinct managers, each
/// with its own context, no connection, and active.
#[test]
fn scenario_01_factory_creates_one_isolated_manager_per_user() {
    let mut f = factory();
    let contexts = users(5);
    let managers: Vec<_> = contexts
        .iter()
        .map(|c| f.create_manager(c.clone(), at(10)).unwrap())
        .collect();

    assert_eq!(managers.iter().collect::<HashSet<_>>().len(), 5);
    for (m, c) in managers.iter().zip(&contexts) {
        assert!(f.is_active(*m));
        assert_eq!(f.context(*m), Ok(c));
        assert_eq!(f.manager_for_user(c.user_id()), Some(*m));
        assert_eq!(f.connection_count(*m), Ok(0));
        assert_eq!(f.connections(*m).unwrap().count(), 0);
        let s = f.manager_stats(*m).unwrap();
        assert_eq!((s.connections, s.created_at), (0, at(10)));
    }
    let s = f.stats();
    assert_eq!(
        (
            s.managers_created,
            s.managers_active,
            s.users_with_active_managers()
        ),
        (5, 5, 5)
    );
    // Asking again returns the same manager and creates nothing.
    assert_eq!(
        f.create_manager(contexts[2].clone(), at(11)),
        Ok(managers[2])
    );
    assert_eq!(f.stats().managers_created, 5);
    // State is per manager: a connection of user 0 changes nobody else.
    f.add_connection(managers[0], &contexts[0], at(12)).unwrap();
    let counts: Vec<u32> = managers
        .iter()
        .map(|m| f.connection_count(*m).unwrap())
        .collect();
    assert_eq!(counts, [1, 0, 0, 0, 0]);
    let created: Vec<Event> = std::iter::from_fn(|| f.poll_event()).take(5).collect();
    assert_eq!(
        created,
        managers
            .iter()
            .map(|m| Event::ManagerCreated(*m))
            .collect::<Vec<_>>()
    );
}

/// Scenario 2 — hijack prevention: a connection of user B offered to A's
/// manager fails with the isolation error, A keeps exactly its own
/// connection, and the violation is counted.
#[test]
fn scenario_02_connection_of_another_user_is_refused_and_counted() {
    let mut f = factory();
    let [a, b] = [ctx("user_a"), ctx("user_b")];
    let ma = f.create_manager(a.clone(), at(0)).unwrap();
    let own = f.add_connection(ma, &a, at(0)).unwrap();
    assert_eq!(f.connection_count(ma), Ok(1));

    let err = f.add_connection(ma, &b, at(1)).unwrap_err();
    assert_eq!(
        err,
        Error::IsolationViolation {
            manager: ma,
            violation: Violation::ForeignUser
        }
    );
    assert_eq!(
        err.to_string(),
        "isolation violation: connection belongs to another user"
    );
    assert_eq!(f.connections(ma).unwrap().collect::<Vec<_>>(), [own]);
    assert_eq!(f.owner_of(own), Ok(ma));
    assert_eq!(f.stats().security_violations_detected, 1);
    assert_eq!(f.manager_stats(ma).unwrap().security_violations, 1);
    assert_eq!(f.stats().total_connections_managed, 1);
    // B's own manager is no way in either.
    let mb = f.create_manager(b.clone(), at(2)).unwrap();
    assert!(matches!(
        f.add_connection(mb, &a, at(2)),
        Err(Error::IsolationViolation { manager, .. }) if manager == mb
    ));
    assert_eq!(f.connection_count(mb), Ok(0));
    assert_eq!(f.stats().security_violations_detected, 2);
    assert!(f.stats().is_consistent());
}

/// Scenario 3 — message boundary: a message sent to user 0 reaches exactly
/// user 0's connection, once, unchanged; users 1 and 2 receive nothing; then
/// the reverse.
#[test]
fn scenario_03_a_message_reaches_exactly_its_users_connection() {
    let mut f = factory();
    let contexts = users(3);
    let mut managers = Vec::new();
    let mut conns = Vec::new();
    for c in &contexts {
        let m = f.create_manager(c.clone(), at(0)).unwrap();
        conns.push(f.add_connection(m, c, at(0)).unwrap());
        managers.push(m);
    }
    let mut wire = Wire::new();
    let first = r#"{"type":"test","content":"secret message","timestamp":1}"#.to_string();
    assert_eq!(
        f.send_to_user(managers[0], first.clone(), at(1)),
        Ok(SendOutcome::Queued {
            queued_for: 1,
            closed_slow: 0
        })
    );
    wire.drain(&mut f, None);
    assert_eq!(wire.received(conns[0]), std::slice::from_ref(&first));
    assert_eq!(wire.received(conns[1]).len(), 0);
    assert_eq!(wire.received(conns[2]).len(), 0);

    let second = r#"{"type":"test","content":"for user 1 only"}"#.to_string();
    assert_eq!(
        f.send_to_user(managers[1], second.clone(), at(2))
            .unwrap()
            .queued_for(),
        1
    );
    wire.drain(&mut f, None);
    assert_eq!(wire.received(conns[0]), [first]);
    assert_eq!(wire.received(conns[1]), [second]);
    assert_eq!(wire.received(conns[2]).len(), 0);
    assert_eq!(wire.total_messages(), 2);
    assert_eq!(f.stats().messages_transmitted, 2);
}

/// Scenario 13 — connection security: a connection claiming another user is
/// refused and receives nothing afterwards, and another user's connection
/// handle cannot be used through this manager.
#[test]
fn scenario_13_refused_connection_receives_nothing() {
    let mut f = factory();
    let alice = ctx("alice");
    let mallory = ctx("different_user");
    let ma = f.create_manager(alice.clone(), at(0)).unwrap();
    let legit = f.add_connection(ma, &alice, at(0)).unwrap();

    assert_eq!(
        f.add_connection(ma, &mallory, at(1)),
        Err(Error::IsolationViolation {
            manager: ma,
            violation: Violation::ForeignUser
        })
    );
    assert_eq!(f.connections(ma).unwrap().collect::<Vec<_>>(), [legit]);

    // Mallory is a real user elsewhere, with her own connection.
    let mm = f.create_manager(mallory.clone(), at(2)).unwrap();
    let theirs = f.add_connection(mm, &mallory, at(2)).unwrap();
    // Her connection cannot be removed or closed through alice's manager.
    let foreign = Error::IsolationViolation {
        manager: ma,
        violation: Violation::ForeignConnection { owner: mm },
    };
    assert_eq!(f.remove_connection(ma, theirs, at(3)), Err(foreign));
    assert_eq!(
        f.close_connection(ma, theirs, userlane_core::CloseCode::NORMAL, at(3)),
        Err(foreign)
    );
    assert!(f.is_open(theirs));

    let mut wire = Wire::new();
    let msg = r#"{"type":"test","message":"secure message"}"#.to_string();
    assert_eq!(
        f.send_to_user(ma, msg.clone(), at(4)).unwrap().queued_for(),
        1
    );
    wire.drain(&mut f, None);
    assert_eq!(wire.received(legit), [msg]);
    assert_eq!(wire.received(theirs).len(), 0);
    assert_eq!(wire.total_messages(), 1);
    assert_eq!(f.poll_transmit(theirs), Ok(None::<Transmit<String>>));
    assert_eq!(f.stats().security_violations_detected, 3);
    assert_eq!(f.manager_stats(ma).unwrap().security_violations, 3);
    assert_eq!(f.manager_stats(mm).unwrap().security_violations, 0);
}
