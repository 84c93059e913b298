//! The shards: N independent core factories, each with its own lock, timer
//! task, event task and registry of live connections.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_tungstenite::tungstenite::Message;
use smol::Timer;
use userlane_core::shim::{shard_for, SharedFactory};
use userlane_core::{
    Capacity, CloseCode, CloseFrame, ConfigError, ConnectionHandle, Error as CoreError, Event,
    Inbound, Instant, Lanes, ManagerHandle, Released, SendError, SendOutcome, Stats, Transmit,
    UserContext,
};

use crate::clock::Clock;
use crate::error::UserError;
use crate::info::ConnectionInfo;
use crate::mutex::StdRawMutex;
use crate::signals::Signals;

/// Manager slots of the largest shard (a server's `max_users` is at most
/// this many per shard).
pub const SHARD_USERS: usize = 8_192;
/// Connection slots of the largest shard.
pub const SHARD_CONNS: usize = 16_384;
/// Queued-message slots of the largest shard, shared by all its queues.
pub const SHARD_SLOTS: usize = 131_072;
/// Lifecycle events buffered by the largest shard.
pub const SHARD_EVENTS: usize = 1_024;

/// The largest shard of the core. Messages are tungstenite `Message`s, whose
/// payloads are ref-counted `Bytes`: fan-out clones a pointer, never the data.
///
/// A server builds each shard with the smallest of its capacity profiles
/// that holds the shard's share of the configured limits (see
/// `ServerConfig::max_users`); this, the largest, is about 12 MiB.
pub type Shard =
    SharedFactory<StdRawMutex, Message, SHARD_USERS, SHARD_CONNS, SHARD_SLOTS, SHARD_EVENTS>;

/// A shard profile of `U` users: `2 U` connections, `16 U` queued-message
/// slots and `U / 8` lifecycle events, the proportions of [`Shard`].
macro_rules! profile {
    ($users:literal) => {
        SharedFactory<StdRawMutex, Message, $users, { 2 * $users }, { 16 * $users }, { $users / 8 }>
    };
}

/// One shard's core, in the smallest capacity profile that holds its share
/// of the server's limits (each profile is half the one above: about
/// 12 MiB for 8,192 users down to about 0.4 MiB for 256). Commands run on
/// the erased factory (`&mut dyn Lanes<Message>`); the async and writer
/// calls dispatch by `match`: no lock or allocation is added to any path.
#[derive(Clone)]
pub(crate) enum ShardCore {
    U256(Arc<profile!(256)>),
    U512(Arc<profile!(512)>),
    U1024(Arc<profile!(1024)>),
    U2048(Arc<profile!(2048)>),
    U4096(Arc<profile!(4096)>),
    U8192(Arc<Shard>),
}

/// The users of each profile, smallest first.
const PROFILE_USERS: [usize; 6] = [256, 512, 1024, 2048, 4096, SHARD_USERS];

/// Runs `$body` with `$s` bound to the shard's `Arc<SharedFactory<…>>`,
/// whatever its profile.
macro_rules! each {
    ($core:expr, $s:ident => $body:expr) => {
        match $core {
            ShardCore::U256($s) => $body,
            ShardCore::U512($s) => $body,
            ShardCore::U1024($s) => $body,
            ShardCore::U2048($s) => $body,
            ShardCore::U4096($s) => $body,
            ShardCore::U8192($s) => $body,
        }
    };
}

/// The capacities of the smallest profile with at least `users` manager
/// slots and `connections` connection slots; the largest if none has.
pub(crate) fn profile_for(users: usize, connections: usize) -> Capacity {
    let users = PROFILE_USERS
        .into_iter()
        .find(|&u| u >= users && 2 * u >= connections)
        .unwrap_or(SHARD_USERS);
    Capacity {
        users,
        connections: 2 * users,
        slots: 16 * users,
        events: users / 8,
    }
}

impl ShardCore {
    /// Builds the profile of `capacity` (one of [`profile_for`]'s) for
    /// `config`, on a thread whose stack holds the tables (they are up to
    /// megabytes; building them on a small stack would overflow it).
    fn build(capacity: Capacity, config: userlane_core::Config) -> Result<Self, ConfigError> {
        fn on_stack<T: Send + 'static>(
            size: usize,
            make: impl FnOnce() -> T + Send + 'static,
        ) -> T {
            std::thread::Builder::new()
                .name("userlane-shard-init".into())
                .stack_size(10 * size + (16 << 20))
                .spawn(make)
                .expect("spawn shard init thread")
                .join()
                .expect("shard init thread panicked")
        }
        macro_rules! build {
            ($variant:ident, $ty:ty) => {
                on_stack(std::mem::size_of::<$ty>(), move || {
                    <$ty>::new(config).map(|s| ShardCore::$variant(Arc::new(s)))
                })
            };
        }
        match capacity.users {
            256 => build!(U256, profile!(256)),
            512 => build!(U512, profile!(512)),
            1024 => build!(U1024, profile!(1024)),
            2048 => build!(U2048, profile!(2048)),
            4096 => build!(U4096, profile!(4096)),
            _ => build!(U8192, Shard),
        }
    }

    /// The capacities of this shard's tables.
    pub(crate) fn capacity(&self) -> Capacity {
        each!(self, s => s.read(Lanes::capacity))
    }

    /// Runs `op` on the factory under the shard lock, then pumps events,
    /// transmits and the timer ([`SharedFactory::with`]).
    pub(crate) fn with<R>(&self, op: impl FnOnce(&mut dyn Lanes<Message>) -> R) -> R {
        each!(self, s => s.with(|f| op(f)))
    }

    /// Reads the factory under the shard lock ([`SharedFactory::read`]).
    pub(crate) fn read<R>(&self, op: impl FnOnce(&dyn Lanes<Message>) -> R) -> R {
        each!(self, s => s.read(|f| op(f)))
    }

    /// [`SharedFactory::handle_inbound`].
    pub(crate) fn handle_inbound(
        &self,
        conn: ConnectionHandle,
        bytes: usize,
        now: Instant,
    ) -> Result<Inbound, CoreError> {
        each!(self, s => s.handle_inbound(conn, bytes, now))
    }

    /// [`SharedFactory::handle_closed`].
    pub(crate) fn handle_closed(
        &self,
        conn: ConnectionHandle,
        now: Instant,
    ) -> Result<Released, CoreError> {
        each!(self, s => s.handle_closed(conn, now))
    }

    /// [`SharedFactory::send_to_connection`].
    pub(crate) fn send_to_connection(
        &self,
        manager: ManagerHandle,
        conn: ConnectionHandle,
        payload: Message,
        now: Instant,
    ) -> Result<SendOutcome, SendError<Message>> {
        each!(self, s => s.send_to_connection(manager, conn, payload, now))
    }

    /// [`SharedFactory::close_all`].
    pub(crate) fn close_all(&self, close: CloseFrame, now: Instant) -> u32 {
        each!(self, s => s.close_all(close, now))
    }

    /// [`SharedFactory::stats`].
    pub(crate) fn stats(&self) -> Stats {
        each!(self, s => s.stats())
    }

    /// [`SharedFactory::events_dropped`].
    pub(crate) fn events_dropped(&self) -> u64 {
        each!(self, s => s.events_dropped())
    }

    /// [`SharedFactory::poll_transmit_more`]: the writer's one call per item.
    pub(crate) fn poll_transmit_more(
        &self,
        conn: ConnectionHandle,
        cx: &mut Context<'_>,
    ) -> Poll<Option<(Transmit<Message>, bool)>> {
        each!(self, s => s.poll_transmit_more(conn, cx))
    }

    /// [`SharedFactory::timeout`].
    fn timeout(&self) -> Option<Instant> {
        each!(self, s => s.timeout())
    }

    /// [`SharedFactory::handle_timeout`].
    fn handle_timeout(&self, now: Instant) {
        each!(self, s => s.handle_timeout(now))
    }

    /// [`SharedFactory::deadline_changed`].
    async fn deadline_changed(&self, armed: Option<Instant>) {
        poll_fn(|cx| each!(self, s => s.poll_deadline_changed(armed, cx))).await
    }

    /// [`SharedFactory::next_event`].
    async fn next_event(&self) -> Event {
        poll_fn(|cx| each!(self, s => s.poll_event(cx))).await
    }
}

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
    pub(crate) core: ShardCore,
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
    /// Builds a shard of the smallest profile that holds `config`'s
    /// `max_users` and `max_connections`. The shard gets a factory tag of
    /// its own (`config.factory_tag` is replaced), so a handle of one shard
    /// is refused by every other.
    pub(crate) fn build(
        mut config: userlane_core::Config,
    ) -> Result<Self, userlane_core::ConfigError> {
        config.factory_tag = next_factory_tag();
        let capacity = profile_for(config.max_users as usize, config.max_connections as usize);
        Ok(ShardSlot {
            core: ShardCore::build(capacity, config)?,
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
            // The core's one lookup-or-create: the context is cloned only
            // when the user has no manager yet.
            let manager = f.manager_or_create_with(ctx.user_id(), || ctx.clone(), now)?;
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
        f: &mut dyn Lanes<Message>,
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
pub(crate) async fn run_timer(shard: ShardCore, clock: Clock) {
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
        let largest = Capacity {
            users: SHARD_USERS,
            connections: SHARD_CONNS,
            slots: SHARD_SLOTS,
            events: SHARD_EVENTS,
        };
        assert_eq!(slot.core.capacity(), largest);
    }

    #[test]
    fn a_shard_is_the_smallest_profile_that_holds_its_limits() {
        assert_eq!(profile_for(1, 1).users, 256);
        assert_eq!(profile_for(256, 512).users, 256);
        assert_eq!(profile_for(257, 1).users, 512);
        assert_eq!(profile_for(1, 513).users, 512);
        assert_eq!(profile_for(1_594, 1_594).users, 2_048);
        assert_eq!(profile_for(SHARD_USERS + 1, 1).users, SHARD_USERS);
        for users in PROFILE_USERS {
            let c = profile_for(users, 1);
            let slot = ShardSlot::build(userlane_core::Config::for_capacity(
                users as u32,
                c.connections as u32,
            ))
            .unwrap();
            assert_eq!(slot.core.capacity(), c);
        }
        let small = ShardSlot::build(userlane_core::Config::for_capacity(100, 100)).unwrap();
        assert_eq!(small.core.capacity().users, 256);
        assert!(matches!(small.core, ShardCore::U256(_)));
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
        let alice = a
            .core
            .with(|f| f.create_manager(ctx("alice"), now))
            .unwrap();
        let bob = b.core.with(|f| f.create_manager(ctx("bob"), now)).unwrap();
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
