//! `send_to_connection`: a reply to one connection of the user, same queue rules.

use userlane_core::{
    CloseCode, CloseFrame, CloseReason, Config, Error, Instant, ManagerFactory, SendOutcome,
    SlowConsumerPolicy, Transmit, UserContext, Violation,
};

type Lanes = ManagerFactory<u32, 4, 8, 64>;
const T: Instant = Instant::ZERO;

fn ctx(u: &str) -> UserContext {
    UserContext::new(u, "t", "r", "q").unwrap()
}

fn lanes(policy: SlowConsumerPolicy) -> Lanes {
    Lanes::new(Config {
        queue_depth: 2,
        offline_buffer: 0,
        slow_consumer: policy,
        ..Config::for_capacity(4, 8)
    })
    .unwrap()
}

#[test]
fn only_the_named_connection_receives() {
    let mut l = lanes(SlowConsumerPolicy::RejectSend);
    let m = l.create_manager(ctx("a"), T).unwrap();
    let c1 = l.add_connection(m, &ctx("a"), T).unwrap();
    let c2 = l.add_connection(m, &ctx("a"), T).unwrap();
    assert_eq!(
        l.send_to_connection(m, c2, 9, T),
        Ok(SendOutcome::Queued {
            queued_for: 1,
            closed_slow: 0
        })
    );
    assert_eq!(l.poll_transmit(c1), Ok(None));
    assert_eq!(l.poll_transmit(c2), Ok(Some(Transmit::Message(9))));
    let s = l.stats();
    assert_eq!(
        (s.sends_accepted, s.messages_queued, s.messages_transmitted),
        (1, 1, 1)
    );
    assert!(s.is_consistent());
}

#[test]
fn another_users_connection_is_an_isolation_violation() {
    let mut l = lanes(SlowConsumerPolicy::RejectSend);
    let a = l.create_manager(ctx("a"), T).unwrap();
    let b = l.create_manager(ctx("b"), T).unwrap();
    let bc = l.add_connection(b, &ctx("b"), T).unwrap();
    assert_eq!(
        l.send_to_connection(a, bc, 1, T).map_err(Error::from),
        Err(Error::IsolationViolation {
            manager: a,
            violation: Violation::ForeignConnection { owner: b }
        })
    );
    assert_eq!(l.poll_transmit(bc), Ok(None));
    let s = l.stats();
    assert_eq!(
        (
            s.security_violations_detected,
            s.sends_refused,
            s.messages_queued
        ),
        (1, 1, 0)
    );
    assert!(s.is_consistent());
}

#[test]
fn full_queue_rejects_or_closes_per_policy() {
    let mut l = lanes(SlowConsumerPolicy::RejectSend);
    let m = l.create_manager(ctx("a"), T).unwrap();
    let c = l.add_connection(m, &ctx("a"), T).unwrap();
    l.send_to_connection(m, c, 1, T).unwrap();
    l.send_to_connection(m, c, 2, T).unwrap();
    assert_eq!(
        l.send_to_connection(m, c, 3, T).map_err(Error::from),
        Err(Error::QueueFull(c))
    );
    assert_eq!(l.stats().rejected_queue_full, 1);

    let mut l = lanes(SlowConsumerPolicy::CloseSlowConnection);
    let m = l.create_manager(ctx("a"), T).unwrap();
    let c = l.add_connection(m, &ctx("a"), T).unwrap();
    l.send_to_connection(m, c, 1, T).unwrap();
    l.send_to_connection(m, c, 2, T).unwrap();
    assert_eq!(
        l.send_to_connection(m, c, 3, T),
        Ok(SendOutcome::Queued {
            queued_for: 0,
            closed_slow: 1
        })
    );
    assert_eq!(l.poll_transmit(c), Ok(Some(Transmit::Message(1))));
    assert_eq!(l.poll_transmit(c), Ok(Some(Transmit::Message(2))));
    assert_eq!(
        l.poll_transmit(c),
        Ok(Some(Transmit::Close(CloseFrame::new(
            CloseCode::TRY_AGAIN_LATER,
            CloseReason::SlowConsumer
        ))))
    );
    assert_eq!(
        l.send_to_connection(m, c, 4, T).map_err(Error::from),
        Err(Error::ConnectionClosing(c))
    );
    let s = l.stats();
    assert_eq!(
        (
            s.closed_slow_consumer,
            s.messages_closed_slow,
            s.rejected_closing_connection
        ),
        (1, 1, 1)
    );
    assert!(s.is_consistent());
}
