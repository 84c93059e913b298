//! `ManagerFactory` and its tables: the struct, its lifecycle-event queue
//! entry, the handle checks and the read-only queries.
//!
//! The leaf of the factory's modules: [`commands`](super::commands),
//! [`io`](super::io), [`lanes`](super::lanes) and [`view`](super::view) add
//! methods to the struct defined here and import it; this module imports
//! none of them.

use heapless::Deque;

use super::slots::{id_hash, ConnSlot, ConnState, UserSlot};
use crate::index::SlotIndex;
use crate::list::{List, NIL};
use crate::pool::Pool;
use crate::{
    Capacity, Config, ConfigError, ConnectionHandle, Error, Event, Instant, ManagerHandle,
    ManagerStats, Stats, UserContext,
};

/// A manager lifecycle event waiting in the queue, without the factory tag
/// and with `I` counts (smaller than [`Event`]); [`LifeEvent::event`] makes
/// the public event.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LifeEvent<I> {
    Created {
        index: I,
        generation: u32,
    },
    Deactivated {
        index: I,
        generation: u32,
        closed: I,
        discarded: I,
    },
    Reclaimed {
        index: I,
        generation: u32,
        discarded: I,
    },
}

impl<I: SlotIndex> LifeEvent<I> {
    /// The public event, with handles of the factory tagged `tag`.
    pub(super) fn event(self, tag: u32) -> Event {
        let handle = |index: I, generation| ManagerHandle {
            index: index.unpack(),
            generation,
            tag,
        };
        match self {
            LifeEvent::Created { index, generation } => {
                Event::ManagerCreated(handle(index, generation))
            }
            LifeEvent::Deactivated {
                index,
                generation,
                closed,
                discarded,
            } => Event::ManagerDeactivated {
                manager: handle(index, generation),
                closed_connections: closed.unpack(),
                discarded_offline: discarded.unpack(),
            },
            LifeEvent::Reclaimed {
                index,
                generation,
                discarded,
            } => Event::ManagerReclaimed {
                manager: handle(index, generation),
                discarded_offline: discarded.unpack(),
            },
        }
    }
}

/// The documented **gateway** profile: 32 users, 128 connections (4 per
/// user), 2,048 queued messages (16 per connection), 8 pending lifecycle
/// events, `u16` links; about 32 KiB with the default `u16` payload (an index
/// into the gateway's own frame buffers). Checked by `tests/memory_budget.rs`.
pub type GatewayFactory<P = u16> = ManagerFactory<P, 32, 128, 2_048, 8, u16>;

/// The documented **server** profile: 10,000 users, 16,384 connections,
/// 262,144 queued messages, 64 pending lifecycle events, `u32` links; about
/// 10 MiB with ref-counted payloads. Checked by `tests/memory_budget.rs`.
pub type ServerFactory<P> = ManagerFactory<P, 10_000, 16_384, 262_144, 64>;

/// Creates and owns one isolated manager per user, in preallocated tables.
///
/// Capacities are compile-time constants; the [`Config`] limits are runtime
/// values no larger than them:
///
/// - `P`: the payload queued for connections (the std runtime uses a
///   ref-counted buffer, so fan-out clones a pointer, never the bytes);
/// - `USERS`: manager slots (and hash buckets);
/// - `CONNS`: connection slots, shared by all users;
/// - `SLOTS`: queued-message slots, shared by every outbound queue and
///   offline buffer;
/// - `EVENTS`: pending manager lifecycle events (default 16);
/// - `I`: the integer type of the internal links, `u32` (default) or `u16`
///   for small gateways (every capacity must then be below 65,535).
///
/// See the [crate documentation](crate) for the calling contract.
pub struct ManagerFactory<
    P,
    const USERS: usize,
    const CONNS: usize,
    const SLOTS: usize,
    const EVENTS: usize = 16,
    I: SlotIndex = u32,
> {
    pub(super) config: Config,
    pub(super) now: Instant,
    pub(super) users: [UserSlot<I>; USERS],
    pub(super) buckets: [I; USERS],
    pub(super) user_free: u32,
    /// Manager slots at or above this index have never been used.
    pub(super) user_fresh: u32,
    pub(super) conns: [ConnSlot<I>; CONNS],
    pub(super) conn_free: u32,
    /// Connection slots at or above this index have never been used.
    pub(super) conn_fresh: u32,
    /// Connections with unreported events, oldest first.
    pub(super) conn_events: List<I>,
    /// Open connections by last activity, oldest first.
    pub(super) idle: List<I>,
    /// Active managers without open connections, longest empty first.
    pub(super) empty: List<I>,
    pub(super) pool: Pool<P, SLOTS, I>,
    pub(super) events: Deque<LifeEvent<I>, EVENTS>,
    pub(super) stats: Stats,
}

impl<
        P: Clone,
        const USERS: usize,
        const CONNS: usize,
        const SLOTS: usize,
        const EVENTS: usize,
        I: SlotIndex,
    > ManagerFactory<P, USERS, CONNS, SLOTS, EVENTS, I>
{
    const CAPACITIES_OK: () = assert!(
        USERS > 0
            && CONNS > 0
            && SLOTS > 0
            && EVENTS > 0
            && USERS < I::LIMIT
            && CONNS < I::LIMIT
            && SLOTS < I::LIMIT,
        "capacities must be at least 1 and below the limit of the index type"
    );

    /// Manager slots (and hash buckets).
    pub const USERS: usize = USERS;
    /// Connection slots, shared by all users.
    pub const CONNS: usize = CONNS;
    /// Queued-message slots, shared by every queue and offline buffer.
    pub const SLOTS: usize = SLOTS;
    /// Pending manager lifecycle events.
    pub const EVENTS: usize = EVENTS;
    /// The capacities by name, for [`Config::validate`].
    pub const CAPACITY: Capacity = Capacity {
        users: USERS,
        connections: CONNS,
        slots: SLOTS,
        events: EVENTS,
    };

    /// A factory with empty tables, or the reason `config` does not fit the
    /// capacities.
    ///
    /// The value is as large as its tables: put big factories in a `static`,
    /// or build them where the stack is large enough before boxing them.
    pub const fn new(config: Config) -> Result<Self, ConfigError> {
        if let Err(e) = config.validate(Self::CAPACITY) {
            return Err(e);
        }
        Ok(Self::with_valid_config(config))
    }

    /// Builds the tables for a config already checked by [`Config::validate`].
    pub(crate) const fn with_valid_config(config: Config) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CAPACITIES_OK;
        ManagerFactory {
            config,
            now: Instant::ZERO,
            users: [const { UserSlot::UNUSED }; USERS],
            buckets: [I::NIL; USERS],
            user_free: NIL,
            user_fresh: 0,
            conns: [const { ConnSlot::UNUSED }; CONNS],
            conn_free: NIL,
            conn_fresh: 0,
            conn_events: List::EMPTY,
            idle: List::EMPTY,
            empty: List::EMPTY,
            pool: Pool::new(),
            events: Deque::new(),
            stats: Stats::ZERO,
        }
    }

    /// The runtime limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A snapshot of every counter. Reading it changes nothing.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Free queued-message slots in the shared pool.
    pub fn free_queue_slots(&self) -> u32 {
        self.pool.free()
    }

    /// The latest instant the factory has been given.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The active manager of `user_id`, if there is one. O(1) expected.
    pub fn manager_for_user(&self, user_id: &str) -> Option<ManagerHandle> {
        let mut i = self.buckets[Self::bucket(user_id, self.config.hash_seed)].unpack();
        while i != NIL {
            let slot = &self.users[i as usize];
            if slot.is_active() && slot.ctx.user_id() == user_id {
                return Some(self.manager_handle(i, slot.generation));
            }
            i = slot.next.unpack();
        }
        None
    }

    /// Whether `manager` is an active manager of this factory.
    pub fn is_active(&self, manager: ManagerHandle) -> bool {
        self.user_index(manager).is_ok()
    }

    /// The context the manager was created with.
    pub fn context(&self, manager: ManagerHandle) -> Result<&UserContext, Error> {
        let u = self.user_index(manager)?;
        Ok(&self.users[u].ctx)
    }

    /// The manager's counters. Reading them is not activity.
    pub fn manager_stats(&self, manager: ManagerHandle) -> Result<ManagerStats, Error> {
        let u = self.user_index(manager)?;
        Ok(self.users[u].stats)
    }

    /// Since when the manager has had no open connection, or `None` while it
    /// has one. A manager empty for `empty_manager_ttl_ms` is reclaimed.
    pub fn empty_since(&self, manager: ManagerHandle) -> Result<Option<Instant>, Error> {
        let u = self.user_index(manager)?;
        let user = &self.users[u];
        Ok((user.conns.len() == 0).then_some(user.empty_since))
    }

    /// The open connections of this manager's user, oldest first. Listing is
    /// not activity. Connections of other users are never listed.
    pub fn connections(
        &self,
        manager: ManagerHandle,
    ) -> Result<impl Iterator<Item = ConnectionHandle> + '_, Error> {
        let u = self.user_index(manager)?;
        let mut i = self.users[u].conns.head();
        Ok(core::iter::from_fn(move || {
            if i == NIL {
                return None;
            }
            let c = &self.conns[i as usize];
            let handle = self.connection_handle(i, c.generation);
            i = c.user_link.next();
            Some(handle)
        }))
    }

    /// Number of open connections of this manager's user.
    pub fn connection_count(&self, manager: ManagerHandle) -> Result<u32, Error> {
        let u = self.user_index(manager)?;
        Ok(self.users[u].conns.len())
    }

    /// The manager a live connection belongs to (also while it is closing).
    pub fn owner_of(&self, connection: ConnectionHandle) -> Result<ManagerHandle, Error> {
        let c = self.conn_index(connection)?;
        Ok(self.owner(c))
    }

    /// Whether the connection is open (not closing, not gone).
    pub fn is_open(&self, connection: ConnectionHandle) -> bool {
        self.conn_index(connection)
            .is_ok_and(|c| self.conns[c].is_open())
    }

    /// Messages waiting in the connection's outbound queue.
    pub fn queued(&self, connection: ConnectionHandle) -> Result<u32, Error> {
        let c = self.conn_index(connection)?;
        Ok(self.conns[c].queue.len())
    }

    /// The hash bucket of `user_id` (`USERS` buckets: a constant modulus,
    /// which compiles to a multiply).
    #[inline]
    pub(super) fn bucket(user_id: &str, seed: u32) -> usize {
        id_hash(user_id, seed) as usize % USERS
    }

    /// The handle of manager slot `index` at `generation`, tagged as this factory's.
    pub(crate) fn manager_handle(&self, index: u32, generation: u32) -> ManagerHandle {
        ManagerHandle {
            index,
            generation,
            tag: self.config.factory_tag,
        }
    }

    /// The handle of connection slot `index` at `generation`, tagged as this factory's.
    pub(crate) fn connection_handle(&self, index: u32, generation: u32) -> ConnectionHandle {
        ConnectionHandle {
            index,
            generation,
            tag: self.config.factory_tag,
        }
    }

    /// The manager connection slot `c` belongs to.
    pub(crate) fn owner(&self, c: usize) -> ManagerHandle {
        let slot = &self.conns[c];
        self.manager_handle(slot.owner_index.unpack(), slot.owner_generation)
    }

    /// Resolves a manager handle to its slot, or says why it is refused. A
    /// handle of another factory (another tag) is unknown here, whatever
    /// its index and generation.
    pub(super) fn user_index(&self, h: ManagerHandle) -> Result<usize, Error> {
        let i = h.index as usize;
        if h.tag != self.config.factory_tag {
            return Err(Error::UnknownManager(h));
        }
        let Some(slot) = self.users.get(i) else {
            return Err(Error::UnknownManager(h));
        };
        if slot.generation == h.generation && slot.is_active() {
            Ok(i)
        } else if h.generation != 0 && h.generation < slot.generation {
            Err(Error::ManagerInactive(h))
        } else {
            Err(Error::UnknownManager(h))
        }
    }

    /// Resolves a connection handle to its slot (open or closing); a handle
    /// of another factory is unknown here.
    pub(super) fn conn_index(&self, h: ConnectionHandle) -> Result<usize, Error> {
        let i = h.index as usize;
        match self.conns.get(i) {
            Some(c)
                if h.tag == self.config.factory_tag
                    && c.generation == h.generation
                    && !matches!(c.state, ConnState::Free) =>
            {
                Ok(i)
            }
            _ => Err(Error::UnknownConnection(h)),
        }
    }
}

impl<
        P,
        const USERS: usize,
        const CONNS: usize,
        const SLOTS: usize,
        const EVENTS: usize,
        I: SlotIndex,
    > core::fmt::Debug for ManagerFactory<P, USERS, CONNS, SLOTS, EVENTS, I>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ManagerFactory")
            .field("config", &self.config)
            .field("now", &self.now)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
