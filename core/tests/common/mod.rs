//! Helpers shared by the integration tests: contexts, instants, configs and
//! the drain loops of the polling contract.
#![allow(dead_code)]

use userlane_core::{
    CloseCode, CloseFrame, CloseReason, Config, ConnectionHandle, Event, InboundLimits, Instant,
    ManagerFactory, SlotIndex, SlowConsumerPolicy, Transmit, UserContext,
};

/// A small factory: 4 users, 8 connections, 16 queued-message slots, 8 events.
pub type Lanes = ManagerFactory<u32, 4, 8, 16, 8>;

/// The same factory with `u16` links.
pub type Lanes16 = ManagerFactory<u32, 4, 8, 16, 8, u16>;

/// A context for `user` (the other fields are fixed).
pub fn ctx(user: &str) -> UserContext {
    UserContext::new(user, "thread", "run", "req").expect("valid context")
}

/// A context for `user` with a distinctive thread id.
pub fn ctx_thread(user: &str, thread: &str) -> UserContext {
    UserContext::new(user, thread, "run", "req").expect("valid context")
}

/// The instant `ms` milliseconds after the origin.
pub fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// Limits that fit [`Lanes`]: 4 users, 3 connections per user, 8 connections,
/// queues of 4, offline buffer of 3, idle 60 s, empty ttl 30 s, one
/// offline manager, no inbound budget.
pub fn small_config() -> Config {
    Config {
        max_users: 4,
        max_connections_per_user: 3,
        max_connections: 8,
        queue_depth: 4,
        offline_buffer: 3,
        slow_consumer: SlowConsumerPolicy::RejectSend,
        idle_timeout_ms: Some(60_000),
        empty_manager_ttl_ms: Some(30_000),
        hash_seed: 0,
        factory_tag: 0,
        max_offline_managers: 1,
        inbound_per_connection: InboundLimits::UNLIMITED,
        inbound_per_user: InboundLimits::UNLIMITED,
        inbound_strikes: 1,
    }
}

/// A factory of type [`Lanes`] with [`small_config`].
pub fn lanes() -> Lanes {
    Lanes::new(small_config()).expect("config fits")
}

/// A factory of type [`Lanes`] with `config`.
pub fn lanes_with(config: Config) -> Lanes {
    Lanes::new(config).expect("config fits")
}

/// More outputs than any test produces: a core that keeps returning some
/// fails the test instead of hanging it.
const MAX_OUTPUTS: usize = 10_000;

/// Every pending event, in the order `poll_event` reports them.
pub fn events<
    P: Clone,
    const U: usize,
    const C: usize,
    const S: usize,
    const E: usize,
    I: SlotIndex,
>(
    f: &mut ManagerFactory<P, U, C, S, E, I>,
) -> Vec<Event> {
    let all: Vec<Event> = core::iter::from_fn(|| f.poll_event())
        .take(MAX_OUTPUTS + 1)
        .collect();
    assert!(all.len() <= MAX_OUTPUTS, "poll_event never returns None");
    all
}

/// Every pending transmit of `conn`, in the order `poll_transmit` gives them.
pub fn transmits<
    P: Clone,
    const U: usize,
    const C: usize,
    const S: usize,
    const E: usize,
    I: SlotIndex,
>(
    f: &mut ManagerFactory<P, U, C, S, E, I>,
    conn: ConnectionHandle,
) -> Vec<Transmit<P>> {
    let all: Vec<Transmit<P>> = core::iter::from_fn(|| f.poll_transmit(conn).ok().flatten())
        .take(MAX_OUTPUTS + 1)
        .collect();
    assert!(all.len() <= MAX_OUTPUTS, "poll_transmit never returns None");
    all
}

/// The messages of `transmits`, asserting that no close is among them.
pub fn messages<
    P: Clone + core::fmt::Debug,
    const U: usize,
    const C: usize,
    const S: usize,
    const E: usize,
    I: SlotIndex,
>(
    f: &mut ManagerFactory<P, U, C, S, E, I>,
    conn: ConnectionHandle,
) -> Vec<P> {
    transmits(f, conn)
        .into_iter()
        .map(|t| match t {
            Transmit::Message(p) => p,
            Transmit::Close(c) => panic!("unexpected close {c:?} on {conn:?}"),
        })
        .collect()
}

/// The close frame an application close with `code` sends.
pub fn app_close(code: CloseCode) -> CloseFrame {
    CloseFrame::new(code, CloseReason::Application)
}

/// 1000 / manager deactivated.
pub const DEACTIVATED: CloseFrame =
    CloseFrame::new(CloseCode::NORMAL, CloseReason::ManagerDeactivated);

/// 1000 / idle timeout.
pub const IDLE: CloseFrame = CloseFrame::new(CloseCode::NORMAL, CloseReason::IdleTimeout);

/// 1013 / slow consumer.
pub const SLOW: CloseFrame = CloseFrame::new(CloseCode::TRY_AGAIN_LATER, CloseReason::SlowConsumer);

/// 1001 / server shutdown.
pub const SHUTDOWN: CloseFrame =
    CloseFrame::new(CloseCode::GOING_AWAY, CloseReason::ServerShutdown);
