//! Commands from the application: create, connect, send, close, deactivate.

use super::slots::{empty_link, idle_link, user_link, Departure, EV_READY};
use super::tables::{LifeEvent, ManagerFactory};
use crate::inbound::Levels;
use crate::index::SlotIndex;
use crate::list::NIL;
use crate::{
    CloseCode, CloseFrame, CloseReason, ConnectionHandle, Error, Instant, Limit, ManagerHandle,
    Released, SendError, SendOutcome, SlowConsumerPolicy, UserContext, Violation,
};

impl<
        P: Clone,
        const USERS: usize,
        const CONNS: usize,
        const SLOTS: usize,
        const EVENTS: usize,
        I: SlotIndex,
    > ManagerFactory<P, USERS, CONNS, SLOTS, EVENTS, I>
{
    /// Returns the isolated manager of `ctx.user_id()`, creating it if the
    /// user has none. Calling it again while the manager is active returns the
    /// same handle, creates nothing and keeps the first context.
    ///
    /// This is the live path (a user who is connecting): it is bounded by
    /// `max_users` only. For a user who may have no connection (a message
    /// from a service), use [`create_offline_manager`](Self::create_offline_manager).
    ///
    /// Errors: [`Limit::Users`] when `max_users` managers are active;
    /// [`Error::EventsPending`] when the event queue must be drained first.
    pub fn create_manager(
        &mut self,
        ctx: UserContext,
        now: Instant,
    ) -> Result<ManagerHandle, Error> {
        self.create(ctx, now, false)
    }

    /// Like [`create_manager`](Self::create_manager), for a user who may have
    /// no open connection (a message sent by a service to a user who is
    /// offline): returns the user's manager if it has one; otherwise creates
    /// one only while fewer than [`Config::max_offline_managers`](crate::Config::max_offline_managers)
    /// active managers have no open connection, so that offline users can
    /// never take the manager slots that connecting users need.
    ///
    /// Errors: [`Limit::OfflineManagers`], then those of `create_manager`.
    pub fn create_offline_manager(
        &mut self,
        ctx: UserContext,
        now: Instant,
    ) -> Result<ManagerHandle, Error> {
        self.create(ctx, now, true)
    }

    /// This factory as the erased view [`Lanes`](crate::Lanes), which also
    /// carries the lookup-or-create:
    /// `factory.as_lanes().manager_or_create_with(user_id, || context, now)`.
    pub fn as_lanes(&mut self) -> &mut dyn crate::Lanes<P> {
        self
    }

    fn create(
        &mut self,
        ctx: UserContext,
        now: Instant,
        offline: bool,
    ) -> Result<ManagerHandle, Error> {
        let now = self.tick(now);
        if let Some(existing) = self.manager_for_user(ctx.user_id()) {
            return Ok(existing);
        }
        let refused = if offline && self.empty.len() >= self.config.max_offline_managers {
            Some(Error::LimitReached(Limit::OfflineManagers))
        } else if self.stats.managers_active >= u64::from(self.config.max_users) {
            Some(Error::LimitReached(Limit::Users))
        } else if self.events.is_full() {
            Some(Error::EventsPending)
        } else {
            None
        };
        if let Some(e) = refused {
            self.count_refusal(&e);
            return Err(e);
        }
        let Some(u) = self.alloc_user() else {
            let e = Error::LimitReached(Limit::Users);
            self.count_refusal(&e);
            return Err(e);
        };
        self.index_user(u, ctx.user_id());
        let inbound = Levels::full(&self.config.inbound_per_user);
        let slot = &mut self.users[u];
        slot.ctx = ctx;
        slot.active = true;
        debug_assert_eq!(slot.full(), 0, "a free manager slot has no connection");
        slot.stats = crate::ManagerStats::default();
        slot.stats.created_at = now;
        slot.empty_since = now;
        slot.inbound = inbound;
        let generation = slot.generation;
        let handle = self.manager_handle(u as u32, generation);
        self.empty.push_back(&mut self.users, u as u32, empty_link);
        self.stats.managers_created += 1;
        self.stats.managers_active += 1;
        // Capacity was checked above.
        let _ = self.events.push_back(LifeEvent::Created {
            index: I::pack(u as u32),
            generation,
        });
        Ok(handle)
    }

    /// Opens a connection for the manager's user. `claim` is the identity the
    /// connection authenticated as; if it names another user the connection
    /// is refused as an isolation violation. If the user had no open
    /// connection, the offline buffer is replayed into the new connection's
    /// queue, in order.
    ///
    /// Errors: inactive/unknown manager, [`Error::IsolationViolation`],
    /// [`Limit::ConnectionsPerUser`], [`Limit::Connections`].
    pub fn add_connection(
        &mut self,
        manager: ManagerHandle,
        claim: &UserContext,
        now: Instant,
    ) -> Result<ConnectionHandle, Error> {
        let now = self.tick(now);
        let u = self.checked_user(manager)?;
        let user = &self.users[u];
        // `checked_user` resolved an active manager: its context is set.
        let same_user = user.ctx.user_id() == claim.user_id();
        let refused = if !same_user {
            Some(Error::IsolationViolation {
                manager,
                violation: Violation::ForeignUser,
            })
        } else if user.conns.len() >= self.config.max_connections_per_user {
            Some(Error::LimitReached(Limit::ConnectionsPerUser))
        } else if self.stats.connections_active >= u64::from(self.config.max_connections)
            || !self.conn_available()
        {
            Some(Error::LimitReached(Limit::Connections))
        } else {
            None
        };
        if let Some(e) = refused {
            let st = &mut self.users[u].stats;
            match e {
                Error::IsolationViolation { .. } => {
                    st.security_violations = st.security_violations.saturating_add(1)
                }
                _ => st.limit_hits = st.limit_hits.saturating_add(1),
            }
            self.count_refusal(&e);
            return Err(e);
        }
        let c = self.alloc_conn(manager, now);
        if self.users[u].conns.len() == 0 {
            self.empty.unlink(&mut self.users, u as u32, empty_link);
        }
        self.users[u]
            .conns
            .push_back(&mut self.conns, c as u32, user_link);
        self.idle.push_back(&mut self.conns, c as u32, idle_link);
        self.stats.total_connections_managed += 1;
        self.stats.connections_active += 1;
        let user = &mut self.users[u];
        user.stats.connections += 1;
        user.stats.connections_opened = user.stats.connections_opened.saturating_add(1);
        let replayed = user.offline.len();
        if replayed > 0 {
            let mut offline = core::mem::replace(&mut user.offline, crate::pool::Fifo::EMPTY);
            user.stats.offline_now = 0;
            user.stats.offline_replayed = user.stats.offline_replayed.saturating_add(replayed);
            user.stats.messages_queued = user.stats.messages_queued.saturating_add(replayed);
            self.pool.append(&mut self.conns[c].queue, &mut offline);
            if self.conns[c].queue.len() >= self.config.queue_depth {
                self.users[u].count_full(true);
            }
            let r = u64::from(replayed);
            self.stats.offline_now -= r;
            self.stats.offline_replayed += r;
            self.stats.messages_queued += r;
            self.stats.messages_queued_now += r;
            self.flag_event(c, EV_READY);
        }
        Ok(self.connection_handle(c as u32, self.conns[c].generation))
    }

    /// Removes one of the user's connections at once (open or closing): its
    /// slot is free for the next connection, and messages still queued for it
    /// are counted as dropped and reported in [`Released`].
    ///
    /// Errors: inactive/unknown manager, unknown connection,
    /// [`Error::IsolationViolation`] for another user's connection.
    pub fn remove_connection(
        &mut self,
        manager: ManagerHandle,
        connection: ConnectionHandle,
        now: Instant,
    ) -> Result<Released, Error> {
        let now = self.tick(now);
        let u = self.checked_user(manager)?;
        let c = self.checked_conn(manager, u, connection)?;
        Ok(self.release(c, Departure::Removed, now))
    }

    /// Closes one of the user's open connections with `code` (reason
    /// [`CloseReason::Application`]): queued messages are transmitted first,
    /// then the close. The connection stops counting toward the limits at once.
    pub fn close_connection(
        &mut self,
        manager: ManagerHandle,
        connection: ConnectionHandle,
        code: CloseCode,
        now: Instant,
    ) -> Result<(), Error> {
        let now = self.tick(now);
        let u = self.checked_user(manager)?;
        let c = self.checked_conn(manager, u, connection)?;
        if !self.conns[c].is_open() {
            let e = Error::ConnectionClosing(connection);
            self.count_refusal(&e);
            return Err(e);
        }
        self.begin_close(c, CloseFrame::new(code, CloseReason::Application), now);
        Ok(())
    }

    /// Queues `payload` for every open connection of the manager's user,
    /// keeping each connection's FIFO order. With no open connection the
    /// message goes to the offline buffer. Nothing is dropped silently: the
    /// outcome says how many connections got it, and every refusal is decided
    /// before anything was enqueued and hands the payload back in
    /// [`SendError`].
    ///
    /// Errors: inactive/unknown manager; [`Error::QueueFull`] (policy
    /// `RejectSend`); [`Limit::QueueSlots`]; [`Limit::OfflineBuffer`];
    /// [`Error::NoConnections`] when buffering is off.
    pub fn send_to_user(
        &mut self,
        manager: ManagerHandle,
        payload: P,
        now: Instant,
    ) -> Result<SendOutcome, SendError<P>> {
        let now = self.tick(now);
        let u = match self.checked_user(manager) {
            Ok(u) => u,
            Err(error) => return Err(self.refused_send(error, payload)),
        };
        let result = if self.users[u].conns.len() == 0 {
            self.buffer_offline(u, manager, payload)
        } else {
            self.fan_out(u, payload, now)
        };
        self.account_send(u, result.as_ref().map_err(|e| &e.error), true);
        result
    }

    /// A send refused before its manager was resolved (counted by
    /// `checked_user`; a refused send all the same).
    fn refused_send(&mut self, error: Error, payload: P) -> SendError<P> {
        self.stats.sends_refused += 1;
        SendError { error, payload }
    }

    /// Counts a send's result in the factory's and the manager's stats;
    /// `count_refusal` is false when the refusal was already counted.
    fn account_send(
        &mut self,
        u: usize,
        result: Result<&SendOutcome, &Error>,
        count_refusal: bool,
    ) {
        match result {
            Ok(_) => {
                self.stats.sends_accepted += 1;
                let st = &mut self.users[u].stats;
                st.sends_accepted = st.sends_accepted.saturating_add(1);
            }
            Err(e) => {
                if count_refusal {
                    self.count_refusal(e);
                }
                self.stats.sends_refused += 1;
                let st = &mut self.users[u].stats;
                st.sends_refused = st.sends_refused.saturating_add(1);
                if matches!(e, Error::LimitReached(_) | Error::QueueFull(_)) {
                    st.limit_hits = st.limit_hits.saturating_add(1);
                }
            }
        }
    }

    fn buffer_offline(
        &mut self,
        u: usize,
        manager: ManagerHandle,
        payload: P,
    ) -> Result<SendOutcome, SendError<P>> {
        let cap = self.config.offline_buffer;
        let error = if cap == 0 {
            Error::NoConnections(manager)
        } else if self.users[u].offline.len() >= cap {
            Error::LimitReached(Limit::OfflineBuffer)
        } else {
            match self.pool.push(&mut self.users[u].offline, payload) {
                Ok(()) => return Ok(self.count_buffered(u)),
                Err(payload) => {
                    return Err(SendError {
                        error: Error::LimitReached(Limit::QueueSlots),
                        payload,
                    })
                }
            }
        };
        Err(SendError { error, payload })
    }

    /// Counts a message just put in manager slot `u`'s offline buffer.
    fn count_buffered(&mut self, u: usize) -> SendOutcome {
        let st = &mut self.users[u].stats;
        st.offline_now += 1;
        st.offline_buffered = st.offline_buffered.saturating_add(1);
        self.stats.offline_buffered += 1;
        self.stats.offline_now += 1;
        SendOutcome::Buffered {
            buffered: self.users[u].offline.len(),
        }
    }

    /// How many of manager slot `u`'s connections a send would reach, or why
    /// it is refused. Every refusal is decided here, before anything is
    /// enqueued: the count of full queues is kept up to date, so one walk of
    /// the list suffices.
    fn fan_out_room(&self, u: usize) -> Result<u32, Error> {
        let depth = self.config.queue_depth;
        let full = self.users[u].full();
        if full > 0 && self.config.slow_consumer == SlowConsumerPolicy::RejectSend {
            let mut i = self.users[u].conns.head();
            while i != NIL && self.conns[i as usize].queue.len() < depth {
                i = self.conns[i as usize].user_link.next();
            }
            debug_assert!(i != NIL, "a full queue is counted but not listed");
            let generation = self.conns.get(i as usize).map_or(0, |c| c.generation);
            return Err(Error::QueueFull(self.connection_handle(i, generation)));
        }
        let wanted = self.users[u].conns.len() - full;
        if self.pool.free() < wanted {
            return Err(Error::LimitReached(Limit::QueueSlots));
        }
        Ok(wanted)
    }

    fn fan_out(&mut self, u: usize, payload: P, now: Instant) -> Result<SendOutcome, SendError<P>> {
        let wanted = match self.fan_out_room(u) {
            Ok(wanted) => wanted,
            Err(error) => return Err(SendError { error, payload }),
        };
        let full = self.users[u].full();
        // The last connection gets the payload itself: one clone fewer per
        // send (for a user with one connection, no clone at all).
        let mut payload = Some(payload);
        let mut left = wanted;
        let mut seen_full = 0u32;
        let mut i = self.users[u].conns.head();
        while i != NIL {
            let c = i as usize;
            i = self.conns[c].user_link.next();
            if self.conns[c].queue.len() >= self.config.queue_depth {
                seen_full += 1;
                self.close_slow(c, now);
                continue;
            }
            left = left.saturating_sub(1);
            let item = if left == 0 {
                payload.take()
            } else {
                payload.clone()
            };
            if let Some(item) = item {
                self.enqueue(u, c, item);
            }
        }
        debug_assert_eq!(seen_full, full, "the count of full queues is off");
        Ok(self.count_queued(u, wanted, full))
    }

    /// Queues `item` on open connection `c` of manager slot `u`; the caller
    /// checked that the queue has room and the pool a free slot.
    fn enqueue(&mut self, u: usize, c: usize, item: P) {
        let len = self.conns[c].queue.len();
        let pushed = self.pool.push(&mut self.conns[c].queue, item);
        debug_assert!(pushed.is_ok(), "the pool was checked for a free slot");
        if len + 1 >= self.config.queue_depth {
            self.users[u].count_full(true);
        }
        if len == 0 {
            self.flag_event(c, EV_READY);
        }
    }

    /// Closes open connection `c`, whose queue is full, as a slow consumer
    /// (1013).
    fn close_slow(&mut self, c: usize, now: Instant) {
        let slow = CloseFrame::new(CloseCode::TRY_AGAIN_LATER, CloseReason::SlowConsumer);
        self.begin_close(c, slow, now);
    }

    /// Counts a send of manager slot `u` that queued the message for
    /// `queued` connections and closed `closed_slow` slow ones instead.
    fn count_queued(&mut self, u: usize, queued: u32, closed_slow: u32) -> SendOutcome {
        let q = u64::from(queued);
        self.stats.messages_queued += q;
        self.stats.messages_queued_now += q;
        self.stats.messages_closed_slow += u64::from(closed_slow);
        let st = &mut self.users[u].stats;
        st.messages_queued = st.messages_queued.saturating_add(queued);
        st.messages_closed_slow = st.messages_closed_slow.saturating_add(closed_slow);
        SendOutcome::Queued {
            queued_for: queued,
            closed_slow,
        }
    }

    /// Queues `payload` for one open connection of the manager's user (a
    /// reply to that connection only). The same queue rules as
    /// [`send_to_user`](Self::send_to_user) apply: a full queue fails with
    /// [`Error::QueueFull`] under `RejectSend`, or closes the connection with
    /// 1013 under `CloseSlowConnection` (the outcome then says `queued_for: 0,
    /// closed_slow: 1`). A refusal hands the payload back in [`SendError`].
    ///
    /// Errors: inactive/unknown manager, unknown connection,
    /// [`Error::IsolationViolation`] for another user's connection,
    /// [`Error::ConnectionClosing`], [`Error::QueueFull`], [`Limit::QueueSlots`].
    pub fn send_to_connection(
        &mut self,
        manager: ManagerHandle,
        connection: ConnectionHandle,
        payload: P,
        now: Instant,
    ) -> Result<SendOutcome, SendError<P>> {
        let now = self.tick(now);
        let u = match self.checked_user(manager) {
            Ok(u) => u,
            Err(error) => return Err(self.refused_send(error, payload)),
        };
        let result = match self.checked_conn(manager, u, connection) {
            Ok(c) => self.send_one(u, c, connection, payload, now),
            Err(error) => Err(SendError { error, payload }),
        };
        // Isolation and unknown-handle refusals were counted by `checked_conn`.
        let counted = matches!(
            result,
            Err(SendError {
                error: Error::IsolationViolation { .. } | Error::UnknownConnection(_),
                ..
            })
        );
        self.account_send(u, result.as_ref().map_err(|e| &e.error), !counted);
        result
    }

    /// [`send_to_connection`](Self::send_to_connection) to connection slot
    /// `c` of manager slot `u`, both checked.
    fn send_one(
        &mut self,
        u: usize,
        c: usize,
        connection: ConnectionHandle,
        payload: P,
        now: Instant,
    ) -> Result<SendOutcome, SendError<P>> {
        let error = if !self.conns[c].is_open() {
            Error::ConnectionClosing(connection)
        } else if self.conns[c].queue.len() >= self.config.queue_depth {
            if self.config.slow_consumer == SlowConsumerPolicy::CloseSlowConnection {
                self.close_slow(c, now);
                return Ok(self.count_queued(u, 0, 1));
            }
            Error::QueueFull(connection)
        } else if self.pool.free() == 0 {
            Error::LimitReached(Limit::QueueSlots)
        } else {
            self.enqueue(u, c, payload);
            return Ok(self.count_queued(u, 1, 0));
        };
        Err(SendError { error, payload })
    }

    /// Deactivates the manager for good: every open connection is closed
    /// (code 1000, reason [`CloseReason::ManagerDeactivated`]), the offline
    /// buffer is discarded (and counted), and from now on every operation
    /// through this handle fails with [`Error::ManagerInactive`]. A later
    /// [`create_manager`](Self::create_manager) for the user makes a fresh
    /// manager with a new handle. Returns the number of connections closed.
    pub fn deactivate(&mut self, manager: ManagerHandle, now: Instant) -> Result<u32, Error> {
        let now = self.tick(now);
        let u = self.checked_user(manager)?;
        if self.events.is_full() {
            let e = Error::EventsPending;
            self.count_refusal(&e);
            return Err(e);
        }
        let closed = self.close_all_of(
            u,
            CloseFrame::new(CloseCode::NORMAL, CloseReason::ManagerDeactivated),
            now,
        );
        let discarded_offline = self.retire_user(u);
        self.stats.managers_deactivated += 1;
        let _ = self.events.push_back(LifeEvent::Deactivated {
            index: I::pack(manager.index),
            generation: manager.generation,
            closed: I::pack(closed),
            discarded: I::pack(discarded_offline),
        });
        Ok(closed)
    }

    /// Closes every open connection of every user with `close` (for example
    /// 1001 / [`CloseReason::ServerShutdown`] on shutdown). Managers stay
    /// active, so messages sent meanwhile go to offline buffers. Returns the
    /// number of connections closed. O(open connections).
    pub fn close_all(&mut self, close: CloseFrame, now: Instant) -> u32 {
        let now = self.tick(now);
        let mut closed = 0;
        while let Some(c) = self.idle.front() {
            self.begin_close(c as usize, close, now);
            closed += 1;
        }
        closed
    }

    fn close_all_of(&mut self, u: usize, close: CloseFrame, now: Instant) -> u32 {
        let mut closed = 0;
        while let Some(c) = self.users[u].conns.front() {
            self.begin_close(c as usize, close, now);
            closed += 1;
        }
        closed
    }
}
