//! [`Lanes`]: one object-safe view of a [`ManagerFactory`] whatever its
//! capacities, the way heapless's `VecView` and embassy-sync's
//! `DynamicSender` erase theirs.
//!
//! Code that works at the user level (a test harness, the shim's helpers, the
//! legacy facade, a gateway's dispatcher) takes `&mut dyn Lanes<P>` and is
//! written once, instead of spelling out `P, USERS, CONNS, SLOTS, EVENTS, I`.
//! The capacities are still there, as values: [`Lanes::capacity`].

// For the doc links only: the factory implements this module's trait (in
// `factory::view`) and names it in `as_lanes`, so the seam's code does not
// import it.
#[cfg(doc)]
use crate::ManagerFactory;
use crate::{
    Capacity, CloseCode, CloseFrame, Config, ConnectionHandle, Error, Event, Inbound, Instant,
    ManagerHandle, ManagerStats, Released, SendError, SendOutcome, Stats, Transmit, UserContext,
};

/// The user-level surface of a [`ManagerFactory`] of any capacity, as an
/// object-safe trait: `&mut dyn Lanes<P>`. Every method is the factory's
/// method of the same name (see there for the rules and errors), except
/// where its signature had to change to stay object-safe:
/// [`for_each_connection`](Self::for_each_connection) stands for
/// `connections`, and [`drain_events`](Self::drain_events) takes a
/// `&mut dyn FnMut`.
///
/// `dyn Lanes<P>` also carries the one lookup-or-create,
/// `manager_or_create_with(user_id, || context, now)` and
/// `try_manager_or_create_with`; a concrete factory reaches them through
/// [`ManagerFactory::as_lanes`].
pub trait Lanes<P> {
    /// The compile-time capacities ([`ManagerFactory::CAPACITY`]).
    fn capacity(&self) -> Capacity;
    /// [`ManagerFactory::config`].
    fn config(&self) -> &Config;

    /// [`ManagerFactory::create_manager`].
    fn create_manager(&mut self, ctx: UserContext, now: Instant) -> Result<ManagerHandle, Error>;
    /// [`ManagerFactory::create_offline_manager`].
    fn create_offline_manager(
        &mut self,
        ctx: UserContext,
        now: Instant,
    ) -> Result<ManagerHandle, Error>;
    /// [`ManagerFactory::add_connection`].
    fn add_connection(
        &mut self,
        manager: ManagerHandle,
        claim: &UserContext,
        now: Instant,
    ) -> Result<ConnectionHandle, Error>;
    /// [`ManagerFactory::remove_connection`].
    fn remove_connection(
        &mut self,
        manager: ManagerHandle,
        connection: ConnectionHandle,
        now: Instant,
    ) -> Result<Released, Error>;
    /// [`ManagerFactory::close_connection`].
    fn close_connection(
        &mut self,
        manager: ManagerHandle,
        connection: ConnectionHandle,
        code: CloseCode,
        now: Instant,
    ) -> Result<(), Error>;
    /// [`ManagerFactory::send_to_user`].
    fn send_to_user(
        &mut self,
        manager: ManagerHandle,
        payload: P,
        now: Instant,
    ) -> Result<SendOutcome, SendError<P>>;
    /// [`ManagerFactory::send_to_connection`].
    fn send_to_connection(
        &mut self,
        manager: ManagerHandle,
        connection: ConnectionHandle,
        payload: P,
        now: Instant,
    ) -> Result<SendOutcome, SendError<P>>;
    /// [`ManagerFactory::deactivate`].
    fn deactivate(&mut self, manager: ManagerHandle, now: Instant) -> Result<u32, Error>;
    /// [`ManagerFactory::close_all`].
    fn close_all(&mut self, close: CloseFrame, now: Instant) -> u32;

    /// [`ManagerFactory::handle_activity`].
    fn handle_activity(&mut self, connection: ConnectionHandle, now: Instant) -> Result<(), Error>;
    /// [`ManagerFactory::handle_inbound`].
    fn handle_inbound(
        &mut self,
        connection: ConnectionHandle,
        bytes: usize,
        now: Instant,
    ) -> Result<Inbound, Error>;
    /// [`ManagerFactory::handle_closed`].
    fn handle_closed(
        &mut self,
        connection: ConnectionHandle,
        now: Instant,
    ) -> Result<Released, Error>;
    /// [`ManagerFactory::handle_timeout`].
    fn handle_timeout(&mut self, now: Instant);

    /// [`ManagerFactory::poll_event`].
    #[must_use = "an event taken from the core is not reported again"]
    fn poll_event(&mut self) -> Option<Event>;
    /// [`ManagerFactory::drain_events`].
    fn drain_events(&mut self, out: &mut dyn FnMut(Event));
    /// [`ManagerFactory::poll_transmit`].
    #[must_use = "a transmit taken from the queue is gone from the core"]
    fn poll_transmit(&mut self, connection: ConnectionHandle)
        -> Result<Option<Transmit<P>>, Error>;
    /// [`ManagerFactory::poll_timeout`].
    #[must_use]
    fn poll_timeout(&self) -> Option<Instant>;

    /// [`ManagerFactory::stats`].
    fn stats(&self) -> Stats;
    /// [`ManagerFactory::now`].
    fn now(&self) -> Instant;
    /// [`ManagerFactory::free_queue_slots`].
    fn free_queue_slots(&self) -> u32;
    /// [`ManagerFactory::manager_for_user`].
    fn manager_for_user(&self, user_id: &str) -> Option<ManagerHandle>;
    /// [`ManagerFactory::is_active`].
    fn is_active(&self, manager: ManagerHandle) -> bool;
    /// [`ManagerFactory::context`].
    fn context(&self, manager: ManagerHandle) -> Result<&UserContext, Error>;
    /// [`ManagerFactory::manager_stats`].
    fn manager_stats(&self, manager: ManagerHandle) -> Result<ManagerStats, Error>;
    /// [`ManagerFactory::empty_since`].
    fn empty_since(&self, manager: ManagerHandle) -> Result<Option<Instant>, Error>;
    /// [`ManagerFactory::connections`], handed to `visit` oldest first;
    /// returns how many there were. Listing is not activity.
    fn for_each_connection(
        &self,
        manager: ManagerHandle,
        visit: &mut dyn FnMut(ConnectionHandle),
    ) -> Result<u32, Error>;
    /// [`ManagerFactory::connection_count`].
    fn connection_count(&self, manager: ManagerHandle) -> Result<u32, Error>;
    /// [`ManagerFactory::owner_of`].
    fn owner_of(&self, connection: ConnectionHandle) -> Result<ManagerHandle, Error>;
    /// [`ManagerFactory::is_open`].
    fn is_open(&self, connection: ConnectionHandle) -> bool;
    /// [`ManagerFactory::queued`].
    fn queued(&self, connection: ConnectionHandle) -> Result<u32, Error>;
}

impl<P> dyn Lanes<P> + '_ {
    /// The active manager of `user_id`, or, if it has none, a new one
    /// created with [`create_manager`](Lanes::create_manager) from
    /// `context()`, which is called only then (so a context is built or
    /// cloned only when a manager is created). The crate's one
    /// lookup-or-create: the shim's `connect` and the legacy facade use it;
    /// on a concrete factory, call it through
    /// [`ManagerFactory::as_lanes`].
    ///
    /// Errors: those of `create_manager`.
    pub fn manager_or_create_with(
        &mut self,
        user_id: &str,
        context: impl FnOnce() -> UserContext,
        now: Instant,
    ) -> Result<ManagerHandle, Error> {
        self.try_manager_or_create_with(user_id, || Ok(context()), Creation::Live, now)
    }

    /// `manager_or_create_with` for a context
    /// that may fail to build (its error is returned and nothing is
    /// created), creating along `creation`.
    pub fn try_manager_or_create_with<E: From<Error>>(
        &mut self,
        user_id: &str,
        context: impl FnOnce() -> Result<UserContext, E>,
        creation: Creation,
        now: Instant,
    ) -> Result<ManagerHandle, E> {
        if let Some(m) = self.manager_for_user(user_id) {
            return Ok(m);
        }
        let ctx = context()?;
        Ok(match creation {
            Creation::Live => self.create_manager(ctx, now)?,
            Creation::Offline => self.create_offline_manager(ctx, now)?,
        })
    }
}

/// How a lookup-or-create creates a manager the user does not have yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Creation {
    /// [`create_manager`](ManagerFactory::create_manager): a user who is
    /// connecting.
    Live,
    /// [`create_offline_manager`](ManagerFactory::create_offline_manager):
    /// a user who may have no connection (a service's message), bounded by
    /// `max_offline_managers`.
    Offline,
}
