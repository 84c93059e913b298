//! The gateway profile, the scenarios' shared set-up, and the one place that
//! calls the core's outputs (`poll_event`, `poll_transmit`) and sends: when
//! those signatures change, only this module changes, not the scenarios.

use heapless::Vec;
use userlane_core::{
    Config, ConnectionHandle, Error, Event, GatewayFactory, Instant, ManagerHandle, SendError,
    SendOutcome, Transmit, UserContext,
};

use crate::check::{ensure, ensure_eq, Failure};

/// The core's documented gateway profile ([`GatewayFactory`]): 32 users, 128
/// connections, 2,048 queued messages, 8 lifecycle events, `u16` links;
/// payloads are `u16` indexes into the gateway's own frame buffers.
pub type Gateway = GatewayFactory<u16>;

/// Users of [`Gateway`].
pub const USERS: u32 = 32;
/// Connections of [`Gateway`].
pub const CONNS: u32 = 128;
/// Queued-message slots of [`Gateway`].
pub const SLOTS: u32 = 2_048;

/// More outputs than one drain in any scenario: a drain that does not end
/// fails the scenario instead of hanging it.
const MAX_OUTPUTS: usize = 160;

/// The defaults for the gateway's capacities ([`Config::for_capacity`]).
pub fn config() -> Config {
    Config::for_capacity(USERS, CONNS)
}

/// A gateway factory with `config`, on the caller's stack.
pub fn gateway(config: Config) -> Result<Gateway, Failure> {
    Ok(Gateway::new(config)?)
}

/// A context for `user` (thread, run and request ids fixed).
pub fn ctx(user: &str) -> Result<UserContext, Failure> {
    Ok(UserContext::new(user, "thread", "run", "req")?)
}

/// The instant `ms` milliseconds after the origin.
pub fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// Fails unless the factory's counters add up ([`userlane_core::Stats::is_consistent`]).
#[track_caller]
pub fn consistent(f: &Gateway) -> Result<(), Failure> {
    ensure!(f.stats().is_consistent());
    Ok(())
}

/// Every pending event, in the order `poll_event` reports them.
pub fn events(f: &mut Gateway) -> Result<Vec<Event, MAX_OUTPUTS>, Failure> {
    let mut all = Vec::new();
    while let Some(event) = f.poll_event() {
        ensure!(all.push(event).is_ok());
    }
    Ok(all)
}

/// Every pending transmit of `conn`, in the order `poll_transmit` gives them.
pub fn transmits(
    f: &mut Gateway,
    conn: ConnectionHandle,
) -> Result<Vec<Transmit<u16>, MAX_OUTPUTS>, Failure> {
    let mut all = Vec::new();
    while let Some(item) = f.poll_transmit(conn)? {
        ensure!(all.push(item).is_ok());
    }
    Ok(all)
}

/// The pending messages of `conn`; fails on a close among them.
pub fn messages(f: &mut Gateway, conn: ConnectionHandle) -> Result<Vec<u16, MAX_OUTPUTS>, Failure> {
    let mut all = Vec::new();
    for item in transmits(f, conn)? {
        match item {
            Transmit::Message(p) => ensure!(all.push(p).is_ok()),
            Transmit::Close(_) => ensure!(matches!(item, Transmit::Message(_))),
        }
    }
    Ok(all)
}

/// [`GatewayFactory::send_to_user`]: the outcome, or the refusal; a refused
/// payload must come back unchanged (a gateway frees its frame buffer with it).
pub fn send_to_user(
    f: &mut Gateway,
    manager: ManagerHandle,
    payload: u16,
    now: Instant,
) -> Result<SendOutcome, Error> {
    refused(f.send_to_user(manager, payload, now), payload)
}

/// [`GatewayFactory::send_to_connection`]: the outcome, or the refusal; a
/// refused payload must come back unchanged.
pub fn send_to_connection(
    f: &mut Gateway,
    manager: ManagerHandle,
    conn: ConnectionHandle,
    payload: u16,
    now: Instant,
) -> Result<SendOutcome, Error> {
    refused(f.send_to_connection(manager, conn, payload, now), payload)
}

/// The refusal's error, after checking that it handed back `sent`.
fn refused(result: Result<SendOutcome, SendError<u16>>, sent: u16) -> Result<SendOutcome, Error> {
    result.map_err(|refusal| {
        assert_eq!(
            refusal.payload, sent,
            "a refused send must hand its payload back"
        );
        refusal.error
    })
}

/// Alice's and bob's managers with their open connections.
pub struct AliceAndBob {
    /// Alice's manager.
    pub a: ManagerHandle,
    /// Bob's manager.
    pub b: ManagerHandle,
    /// Alice's connections, in the order they were added.
    pub alice: Vec<ConnectionHandle, 5>,
    /// Bob's connections, in the order they were added.
    pub bob: Vec<ConnectionHandle, 5>,
}

/// Managers for alice and bob at 0 ms with `alice` and `bob` connections
/// (at most 5 each, the per-user cap), the lifecycle events drained.
pub fn alice_and_bob(f: &mut Gateway, alice: usize, bob: usize) -> Result<AliceAndBob, Failure> {
    let (alice_ctx, bob_ctx) = (ctx("alice")?, ctx("bob")?);
    let a = f.create_manager(alice_ctx.clone(), t(0))?;
    let b = f.create_manager(bob_ctx.clone(), t(0))?;
    let mut two = AliceAndBob {
        a,
        b,
        alice: Vec::new(),
        bob: Vec::new(),
    };
    for _ in 0..alice {
        ensure!(two
            .alice
            .push(f.add_connection(a, &alice_ctx, t(0))?)
            .is_ok());
    }
    for _ in 0..bob {
        ensure!(two.bob.push(f.add_connection(b, &bob_ctx, t(0))?).is_ok());
    }
    ensure_eq!(
        events(f)?,
        [Event::ManagerCreated(a), Event::ManagerCreated(b)]
    );
    consistent(f)?;
    Ok(two)
}

/// The handles as an array of exactly `N`, for destructuring.
#[track_caller]
pub fn take<const N: usize>(
    handles: &[ConnectionHandle],
) -> Result<[ConnectionHandle; N], Failure> {
    match handles.try_into() {
        Ok(array) => Ok(array),
        Err(_) => Err(Failure::check("as many handles as asked for")),
    }
}
