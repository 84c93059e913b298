//! Every call the gateway makes into userlane-core, in one place: the shard
//! type, admission, the inbound budget, sends, the writer's queue, closes and
//! the timer task. The rest of the firmware talks to a [`Lane`].

use embassy_futures::select::{select, Either};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_time::Timer;
use userlane_core::shim::SharedFactory;
use userlane_core::{
    CloseCode, Config, ConnectionHandle, Error, Inbound, Instant, Limit, ManagerHandle,
    SendOutcome, SlowConsumerPolicy, Transmit, UserContext,
};

use crate::{Outbound, CONNECTIONS, QUEUE_DEPTH, USERS};

/// Queued-message slots shared by every connection's queue: a full queue
/// for each connection.
pub const SLOTS: usize = CONNECTIONS * QUEUE_DEPTH;
/// Lifecycle events kept for a reader (none reads them: the oldest go).
pub const EVENTS: usize = 8;

/// The gateway's one shard: a factory for [`USERS`] users and
/// [`CONNECTIONS`] connections, `u16` links, behind a critical section.
pub type Shard =
    SharedFactory<CriticalSectionRawMutex, Outbound, USERS, CONNECTIONS, SLOTS, EVENTS, u16>;

/// The core's limits for the gateway: at most `per_user` connections of a
/// user, [`CONNECTIONS`] in all, [`QUEUE_DEPTH`] queued frames each (a slow
/// reader beyond is closed with 1013), no offline buffer (a message is only
/// ever sent to the user of a connection that is open), idle connections
/// closed after `idle_timeout_ms`, the default inbound budget.
pub const fn config(per_user: u32, idle_timeout_ms: u64) -> Config {
    let mut c = Config::for_capacity(USERS as u32, CONNECTIONS as u32);
    c.max_connections_per_user = per_user;
    c.queue_depth = QUEUE_DEPTH as u32;
    c.offline_buffer = 0;
    c.slow_consumer = SlowConsumerPolicy::CloseSlowConnection;
    c.idle_timeout_ms = Some(idle_timeout_ms);
    c.empty_manager_ttl_ms = Some(1_000);
    c
}

/// A shard with `config`, or `None` if it does not fit the capacities.
pub fn new_shard(config: Config) -> Option<Shard> {
    Shard::new(config).ok()
}

/// The time on the core's clock: milliseconds since boot.
pub fn now() -> Instant {
    Instant::from_millis(embassy_time::Instant::now().as_millis())
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The user has all the connections they may have (HTTP 429).
    PerUserCap,
    /// The gateway has all the users or connections it can hold (HTTP 503).
    Full,
    /// The token's identity is not a valid user context (HTTP 401).
    BadIdentity,
}

/// One admitted connection in the shard.
pub struct Lane {
    shard: &'static Shard,
    manager: ManagerHandle,
    conn: ConnectionHandle,
}

/// What the inbound budget said about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Handle it.
    Accepted,
    /// Drop it; the connection stays open.
    Refused,
    /// Drop it; the connection is closing (flooded now, or before).
    Closing,
}

/// Admits a connection of `ctx`'s user: its manager is created or found and
/// the connection opened in one locked step.
pub fn admit(shard: &'static Shard, ctx: &UserContext) -> Result<Lane, Refusal> {
    match shard.connect(ctx, now()) {
        Ok((manager, conn)) => Ok(Lane {
            shard,
            manager,
            conn,
        }),
        Err(Error::LimitReached(Limit::ConnectionsPerUser)) => Err(Refusal::PerUserCap),
        Err(Error::InvalidContext(_)) => Err(Refusal::BadIdentity),
        Err(_) => Err(Refusal::Full),
    }
}

impl Lane {
    /// Queues `frame` for this connection only; `false` if it was refused
    /// (the queue is full or the connection is closing).
    pub fn send_to_self(&self, frame: Outbound) -> bool {
        matches!(
            self.shard
                .send_to_connection(self.manager, self.conn, frame, now()),
            Ok(SendOutcome::Queued { .. })
        )
    }

    /// Queues `frame` for every open connection of this user (a slow one is
    /// closed with 1013); `false` if nothing was queued.
    pub fn send_to_user(&self, frame: Outbound) -> bool {
        matches!(
            self.shard.send_to_user(self.manager, frame, now()),
            Ok(SendOutcome::Queued { queued_for, .. }) if queued_for > 0
        )
    }

    /// Checks a message of `bytes` against the connection's and the user's
    /// inbound budget (also the connection's activity for the idle timer).
    pub fn inbound(&self, bytes: usize) -> Verdict {
        match self.shard.handle_inbound(self.conn, bytes, now()) {
            Ok(Inbound::Accepted) => Verdict::Accepted,
            Ok(Inbound::Refused(_)) => Verdict::Refused,
            Ok(Inbound::Closed(_)) | Err(_) => Verdict::Closing,
        }
    }

    /// Closes the connection with `code` after its queued frames.
    pub fn close(&self, code: u16) {
        if let Ok(code) = CloseCode::new(code) {
            let _ = self
                .shard
                .with(|f| f.close_connection(self.manager, self.conn, code, now()));
        }
    }

    /// The next frame to write: a message, then at most one close; `None`
    /// once the connection is gone.
    pub async fn next(&self) -> Option<Transmit<Outbound>> {
        self.shard.next_transmit(self.conn).await
    }
}

/// Dropping the lane tells the core the socket is gone, on every path (a
/// handshake cut by its deadline included): the connection's place is free
/// again, and what it never transmitted is counted as dropped.
impl Drop for Lane {
    fn drop(&mut self) {
        let _ = self.shard.handle_closed(self.conn, now());
    }
}

/// The shard's one timer: sleeps until the core's next deadline (or until it
/// moves earlier) and runs the core's timeouts (idle connections, empty
/// managers).
pub async fn run_timers(shard: &'static Shard) -> ! {
    loop {
        let armed = shard.timeout();
        match armed {
            Some(at) => {
                let at = embassy_time::Instant::from_millis(at.as_millis());
                if let Either::First(()) =
                    select(Timer::at(at), shard.deadline_changed(armed)).await
                {
                    shard.handle_timeout(now());
                }
            }
            None => shard.deadline_changed(None).await,
        }
    }
}
