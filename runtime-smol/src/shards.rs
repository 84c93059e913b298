//! The shards: N independent core factories, each with its own lock, timer
//! task, event task and registry of live connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_tungstenite::tungstenite::Message;
use smol::Timer;
use userlane_core::shim::{shard_for, SharedFactory};
use userlane_core::{
    CloseCode, ConnectionHandle, Error as CoreError, Event, Instant, ManagerFactory, ManagerHandle,
    UserContext,
};

use crate::clock::Clock;
use crate::error::UserError;
use crate::info::ConnectionInfo;
use crate::mutex::StdRawMutex;
use crate::signals::Signals;

/// Manager slots per shard.
pub const SHARD_USERS: usize = 8_192;
/// Connection slots per shard.
pub const SHARD_CONNS: usize = 16_384;
/// Queued-message slots per shard, shared by all its queues.
pub const SHARD_SLOTS: usize = 131_072;
/// Lifecycle events buffered per shard.
pub const SHARD_EVENTS: usize = 1_024;

/// One shard of the core. Messages are tungstenite `Message`s, whose
/// payloads are ref-counted `Bytes`: fan-out clones a pointer, never the data.
pub type Shard =
    SharedFactory<StdRawMutex, Message, SHARD_USERS, SHARD_CONNS, SHARD_SLOTS, SHARD_EVENTS>;

/// The core factory inside a [`Shard`].
pub(crate) type ShardFactory =
    ManagerFactory<Message, SHARD_USERS, SHARD_CONNS, SHARD_SLOTS, SHARD_EVENTS>;

/// What the runtime keeps about a live connection, beside the core.
pub(crate) struct ConnEntry {
    pub(crate) info: Arc<ConnectionInfo>,
    /// The connection task's wake flags: raised with `CLOSING` when the core
    /// closes the connection, so the task can bound the time it spends
    /// flushing, and with `KILL` at the shutdown deadline.
    pub(crate) signals: Arc<Signals>,
    /// Reason text for the close frame, when the application gave one.
    pub(crate) reason: Option<String>,
}

/// A shard and its runtime companions.
pub(crate) struct ShardSlot {
    pub(crate) core: Arc<Shard>,
    pub(crate) registry: Mutex<HashMap<ConnectionHandle, ConnEntry>>,
}

/// The next shard's factory tag: unique within the process (a counter),
/// starting at a random value so that handles of another process do not
/// match either.
fn next_factory_tag() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    static START: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = *START.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish() as u32
    });
    start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
}

impl ShardSlot {
    /// Builds a shard on a thread whose stack holds the tables (they are
    /// megabytes; building them on a small stack would overflow it). The
    /// shard gets a factory tag of its own (`config.factory_tag` is
    /// replaced), so a handle of one shard is refused by every other.
    pub(crate) fn build(
        mut config: userlane_core::Config,
    ) -> Result<Self, userlane_core::ConfigError> {
        config.factory_tag = next_factory_tag();
        let stack = 10 * std::mem::size_of::<Shard>() + (16 << 20);
        let core = std::thread::Builder::new()
            .name("userlane-shard-init".into())
            .stack_size(stack)
            .spawn(move || Shard::new(config).map(Arc::new))
            .expect("spawn shard init thread")
            .join()
            .expect("shard init thread panicked")?;
        Ok(ShardSlot {
            core,
            registry: Mutex::new(HashMap::new()),
        })
    }

    /// Opens a connection of `ctx`'s user (creating the user's manager if
    /// it has none) and registers it, in one shard lock: a close right
    /// after (`disconnect_user`, …) finds the registry entry and records its
    /// reason for the close frame.
    pub(crate) fn open(
        &self,
        shard: usize,
        ctx: UserContext,
        remote: std::net::SocketAddr,
        anonymous: bool,
        signals: &Arc<Signals>,
        now: Instant,
    ) -> Result<Arc<ConnectionInfo>, CoreError> {
        self.core.with(|f| {
            let manager = match f.manager_for_user(ctx.user_id()) {
                Some(m) => m,
                None => f.create_manager(ctx.clone(), now)?,
            };
            let connection = f.add_connection(manager, &ctx, now)?;
            let info = Arc::new(ConnectionInfo::new(
                ctx, connection, manager, shard, remote, anonymous,
            ));
            self.registry().insert(
                connection,
                ConnEntry {
                    info: info.clone(),
                    signals: signals.clone(),
                    reason: None,
                },
            );
            Ok(info)
        })
    }

    pub(crate) fn registry(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ConnectionHandle, ConnEntry>> {
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Inside `core.with`: closes `conn` with `code` and, if the core
    /// accepted the close, records `reason` for its close frame. Both happen
    /// under the shard lock, which the writer needs to see the close, so the
    /// frame carries this reason; a connection already closing keeps its own
    /// code and reason. Returns whether this call closed it.
    pub(crate) fn close_connection(
        &self,
        f: &mut ShardFactory,
        manager: ManagerHandle,
        conn: ConnectionHandle,
        code: CloseCode,
        reason: &str,
        now: Instant,
    ) -> bool {
        if f.close_connection(manager, conn, code, now).is_err() {
            return false;
        }
        if !reason.is_empty() {
            if let Some(entry) = self.registry().get_mut(&conn) {
                entry.reason = Some(close_reason(reason));
            }
        }
        true
    }
}

/// `reason` cut at a character boundary to fit a close frame (a control
/// frame's payload is at most 125 bytes, two of them the code).
fn close_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

/// All shards of a server.
pub(crate) struct Shards {
    pub(crate) slots: Vec<ShardSlot>,
}

impl Shards {
    /// The shard `user_id` lives in.
    pub(crate) fn index_of(&self, user_id: &str) -> usize {
        shard_for(user_id, self.slots.len())
    }

    pub(crate) fn of(&self, user_id: &str) -> &ShardSlot {
        &self.slots[self.index_of(user_id)]
    }

    /// The shard of a connection this server admitted and still holds. A
    /// `ConnectionInfo` of another server (its shard index may be out of
    /// range here, its handles may name one of this server's connections)
    /// is refused: the registry must hold the very same connection id.
    pub(crate) fn slot_of(&self, info: &ConnectionInfo) -> Result<&ShardSlot, UserError> {
        let slot = self
            .slots
            .get(info.shard)
            .ok_or(UserError::UnknownConnection)?;
        let ours = slot
            .registry()
            .get(&info.connection)
            .is_some_and(|e| e.info.connection_id() == info.connection_id());
        if ours {
            Ok(slot)
        } else {
            Err(UserError::UnknownConnection)
        }
    }
}

/// Runs the shard's one timer: sleeps until the core's next deadline (or
/// until it moves earlier) and calls `handle_timeout`.
pub(crate) async fn run_timer(shard: Arc<Shard>, clock: Clock) {
    loop {
        let armed = shard.timeout();
        let sleep = async {
            match armed {
                Some(at) => {
                    Timer::at(clock.to_std(at)).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        smol::future::or(sleep, shard.deadline_changed(armed)).await;
        shard.handle_timeout(clock.now());
    }
}

/// Reads the shard's lifecycle events: tells a connection task when the core
/// closed its connection, and logs what was discarded.
pub(crate) async fn run_events(shards: Arc<Shards>, index: usize) {
    let slot = &shards.slots[index];
    loop {
        match slot.core.next_event().await {
            Event::ConnectionClosed {
                connection, close, ..
            } => {
                log::debug!(
                    "connection {} closed by the core: {} {}",
                    connection.to_bits(),
                    close.code,
                    close.reason
                );
                if let Some(entry) = slot.registry().get(&connection) {
                    entry.signals.raise(crate::signals::CLOSING);
                }
            }
            Event::ManagerDeactivated {
                discarded_offline, ..
            }
            | Event::ManagerReclaimed {
                discarded_offline, ..
            } if discarded_offline > 0 => {
                log::warn!("{discarded_offline} offline message(s) discarded with a manager (counted in stats)");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_builds_on_its_own_stack_and_fits_the_memory_budget() {
        let size = std::mem::size_of::<Shard>();
        println!(
            "one shard: {size} bytes ({:.1} MiB)",
            size as f64 / 1048576.0
        );
        assert!(size < 32 << 20, "a shard should stay within tens of MiB");
        let slot = ShardSlot::build(userlane_core::Config::for_capacity(
            SHARD_USERS as u32,
            SHARD_CONNS as u32,
        ))
        .unwrap();
        assert_eq!(slot.core.stats().managers_active, 0);
    }

    #[test]
    fn every_shard_refuses_the_handles_of_the_others() {
        let config = userlane_core::Config::for_capacity(SHARD_USERS as u32, SHARD_CONNS as u32);
        let a = ShardSlot::build(config).unwrap();
        let b = ShardSlot::build(config).unwrap();
        let tags = (
            a.core.read(|f| f.config().factory_tag),
            b.core.read(|f| f.config().factory_tag),
        );
        assert_ne!(tags.0, tags.1);
        let ctx = |u| userlane_core::UserContext::new(u, "t", "r", "q").unwrap();
        let now = Instant::ZERO;
        let alice = a.core.create_manager(ctx("alice"), now).unwrap();
        let bob = b.core.create_manager(ctx("bob"), now).unwrap();
        assert_eq!(
            (alice.index(), alice.generation()),
            (bob.index(), bob.generation())
        );
        assert_eq!(
            b.core
                .read(|f| f.context(alice).map(|c| c.user_id().to_owned())),
            Err(userlane_core::Error::UnknownManager(alice))
        );
    }
}
