//! The factory as the erased view [`Lanes`]: each method is the factory's
//! own of the same name.

use super::tables::ManagerFactory;
use crate::index::SlotIndex;
use crate::{
    Capacity, CloseCode, CloseFrame, Config, ConnectionHandle, Error, Event, Inbound, Instant,
    Lanes, ManagerHandle, ManagerStats, Released, SendError, SendOutcome, Stats, Transmit,
    UserContext,
};

impl<
        P: Clone,
        const USERS: usize,
        const CONNS: usize,
        const SLOTS: usize,
        const EVENTS: usize,
        I: SlotIndex,
    > Lanes<P> for ManagerFactory<P, USERS, CONNS, SLOTS, EVENTS, I>
{
    fn capacity(&self) -> Capacity {
        Self::CAPACITY
    }
    fn config(&self) -> &Config {
        Self::config(self)
    }
    fn create_manager(&mut self, ctx: UserContext, now: Instant) -> Result<ManagerHandle, Error> {
        Self::create_manager(self, ctx, now)
    }
    fn create_offline_manager(
        &mut self,
        ctx: UserContext,
        now: Instant,
    ) -> Result<ManagerHandle, Error> {
        Self::create_offline_manager(self, ctx, now)
    }
    fn add_connection(
        &mut self,
        manager: ManagerHandle,
        claim: &UserContext,
        now: Instant,
    ) -> Result<ConnectionHandle, Error> {
        Self::add_connection(self, manager, claim, now)
    }
    fn remove_connection(
        &mut self,
        manager: ManagerHandle,
        connection: ConnectionHandle,
        now: Instant,
    ) -> Result<Released, Error> {
        Self::remove_connection(self, manager, connection, now)
    }
    fn close_connection(
        &mut self,
        manager: ManagerHandle,
        connection: ConnectionHandle,
        code: CloseCode,
        now: Instant,
    ) -> Result<(), Error> {
        Self::close_connection(self, manager, connection, code, now)
    }
    fn send_to_user(
        &mut self,
        manager: ManagerHandle,
        payload: P,
        now: Instant,
    ) -> Result<SendOutcome, SendError<P>> {
        Self::send_to_user(self, manager, payload, now)
    }
    fn send_to_connection(
        &mut self,
        manager: ManagerHandle,
        connection: ConnectionHandle,
        payload: P,
        now: Instant,
    ) -> Result<SendOutcome, SendError<P>> {
        Self::send_to_connection(self, manager, connection, payload, now)
    }
    fn deactivate(&mut self, manager: ManagerHandle, now: Instant) -> Result<u32, Error> {
        Self::deactivate(self, manager, now)
    }
    fn close_all(&mut self, close: CloseFrame, now: Instant) -> u32 {
        Self::close_all(self, close, now)
    }
    fn handle_activity(&mut self, connection: ConnectionHandle, now: Instant) -> Result<(), Error> {
        Self::handle_activity(self, connection, now)
    }
    fn handle_inbound(
        &mut self,
        connection: ConnectionHandle,
        bytes: usize,
        now: Instant,
    ) -> Result<Inbound, Error> {
        Self::handle_inbound(self, connection, bytes, now)
    }
    fn handle_closed(
        &mut self,
        connection: ConnectionHandle,
        now: Instant,
    ) -> Result<Released, Error> {
        Self::handle_closed(self, connection, now)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Self::handle_timeout(self, now)
    }
    fn poll_event(&mut self) -> Option<Event> {
        Self::poll_event(self)
    }
    fn drain_events(&mut self, out: &mut dyn FnMut(Event)) {
        Self::drain_events(self, out)
    }
    fn poll_transmit(
        &mut self,
        connection: ConnectionHandle,
    ) -> Result<Option<Transmit<P>>, Error> {
        Self::poll_transmit(self, connection)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Self::poll_timeout(self)
    }
    fn stats(&self) -> Stats {
        Self::stats(self)
    }
    fn now(&self) -> Instant {
        Self::now(self)
    }
    fn free_queue_slots(&self) -> u32 {
        Self::free_queue_slots(self)
    }
    fn manager_for_user(&self, user_id: &str) -> Option<ManagerHandle> {
        Self::manager_for_user(self, user_id)
    }
    fn is_active(&self, manager: ManagerHandle) -> bool {
        Self::is_active(self, manager)
    }
    fn context(&self, manager: ManagerHandle) -> Result<&UserContext, Error> {
        Self::context(self, manager)
    }
    fn manager_stats(&self, manager: ManagerHandle) -> Result<ManagerStats, Error> {
        Self::manager_stats(self, manager)
    }
    fn empty_since(&self, manager: ManagerHandle) -> Result<Option<Instant>, Error> {
        Self::empty_since(self, manager)
    }
    fn for_each_connection(
        &self,
        manager: ManagerHandle,
        visit: &mut dyn FnMut(ConnectionHandle),
    ) -> Result<u32, Error> {
        let mut n = 0;
        for c in Self::connections(self, manager)? {
            visit(c);
            n += 1;
        }
        Ok(n)
    }
    fn connection_count(&self, manager: ManagerHandle) -> Result<u32, Error> {
        Self::connection_count(self, manager)
    }
    fn owner_of(&self, connection: ConnectionHandle) -> Result<ManagerHandle, Error> {
        Self::owner_of(self, connection)
    }
    fn is_open(&self, connection: ConnectionHandle) -> bool {
        Self::is_open(self, connection)
    }
    fn queued(&self, connection: ConnectionHandle) -> Result<u32, Error> {
        Self::queued(self, connection)
    }
}
