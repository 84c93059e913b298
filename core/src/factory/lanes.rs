//! Internal bookkeeping shared by commands and I/O: handle checks that count
//! refusals, slot allocation, and the transitions of connections and managers.

use super::slots::{
    empty_link, event_link, idle_link, next_generation, user_link, ConnState, Departure, EV_CLOSED,
};
use super::tables::ManagerFactory;
use crate::inbound::Levels;
use crate::index::SlotIndex;
use crate::list::NIL;
use crate::{
    CloseFrame, CloseReason, ConnectionHandle, Error, Instant, Limit, ManagerHandle, Released,
    UserContext, Violation,
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
    /// Advances the factory's clock; an instant earlier than one already seen
    /// is treated as that one, so timers never run backwards.
    pub(super) fn tick(&mut self, now: Instant) -> Instant {
        if now > self.now {
            self.now = now;
        }
        self.now
    }

    /// [`Self::user_index`], counting the refusal.
    pub(super) fn checked_user(&mut self, h: ManagerHandle) -> Result<usize, Error> {
        self.user_index(h).inspect_err(|e| self.count_refusal(e))
    }

    /// Resolves `conn` for an operation through manager slot `u`, refusing a
    /// connection that belongs to another user.
    pub(super) fn checked_conn(
        &mut self,
        manager: ManagerHandle,
        u: usize,
        conn: ConnectionHandle,
    ) -> Result<usize, Error> {
        let c = self
            .conn_index(conn)
            .inspect_err(|e| self.count_refusal(e))?;
        let slot = &self.conns[c];
        if slot.owner_slot() != u || slot.owner_generation != manager.generation {
            let owner = self.owner(c);
            let e = Error::IsolationViolation {
                manager,
                violation: Violation::ForeignConnection { owner },
            };
            self.users[u].stats.security_violations =
                self.users[u].stats.security_violations.saturating_add(1);
            self.count_refusal(&e);
            return Err(e);
        }
        Ok(c)
    }

    /// Counts a refusal decided outside the factory (by the compat facade).
    pub(crate) fn count_external_refusal(&mut self, e: &Error) {
        self.count_refusal(e);
    }

    /// Counts a refusal in the factory stats (and the manager's, when known).
    pub(super) fn count_refusal(&mut self, e: &Error) {
        let s = &mut self.stats;
        match e {
            Error::ManagerInactive(_) => s.rejected_inactive_manager += 1,
            Error::UnknownManager(_) | Error::UnknownConnection(_) => {
                s.rejected_unknown_handle += 1
            }
            Error::ConnectionClosing(_) => s.rejected_closing_connection += 1,
            // Counted only: the caller logs it, outside any lock (the shim
            // does, after releasing the shard lock).
            Error::IsolationViolation { .. } => s.security_violations_detected += 1,
            Error::LimitReached(limit) => match limit {
                Limit::Users => s.rejected_user_limit += 1,
                Limit::ConnectionsPerUser => s.rejected_connections_per_user += 1,
                Limit::Connections => s.rejected_total_connections += 1,
                Limit::OfflineBuffer => s.rejected_offline_full += 1,
                Limit::QueueSlots => s.rejected_queue_slots += 1,
                Limit::OfflineManagers => s.rejected_offline_managers += 1,
            },
            Error::QueueFull(_) => s.rejected_queue_full += 1,
            Error::NoConnections(_) => s.rejected_no_connections += 1,
            Error::EventsPending => s.rejected_events_pending += 1,
            Error::InvalidContext(_) => {}
        }
    }

    /// Marks an event of connection `c` for `poll_event`.
    pub(super) fn flag_event(&mut self, c: usize, flag: u8) {
        let events = self.conns[c].events();
        if events == 0 {
            self.conn_events
                .push_back(&mut self.conns, c as u32, event_link);
        }
        self.conns[c].set_events(events | flag);
    }

    /// Drops every unreported event of connection `c`.
    pub(super) fn clear_events(&mut self, c: usize) {
        if self.conns[c].events() != 0 {
            self.conn_events
                .unlink(&mut self.conns, c as u32, event_link);
            self.conns[c].set_events(0);
        }
    }

    /// Takes an open connection out of its user's list and the idle order.
    /// The owner is active: a manager with open connections always is.
    fn detach_open(&mut self, c: usize, now: Instant) {
        let u = self.conns[c].owner_slot();
        self.users[u]
            .conns
            .unlink(&mut self.conns, c as u32, user_link);
        self.idle.unlink(&mut self.conns, c as u32, idle_link);
        self.stats.connections_active -= 1;
        let was_full = self.conns[c].queue.len() >= self.config.queue_depth;
        let limits = self.config.inbound_per_user;
        let user = &mut self.users[u];
        if was_full {
            user.count_full(false);
        }
        user.stats.connections -= 1;
        if user.conns.len() == 0 {
            // `empty_since` is the stamp of the user's inbound buckets while
            // it has connections: bring them up to `now` before it changes
            // meaning, so the user's budget keeps refilling while it is away.
            user.inbound = user.inbound.refilled(&limits, user.empty_since, now);
            user.empty_since = now;
            self.empty.push_back(&mut self.users, u as u32, empty_link);
        }
    }

    /// Closes an open connection: its queue drains, then `close` is sent.
    pub(super) fn begin_close(&mut self, c: usize, close: CloseFrame, now: Instant) {
        self.detach_open(c, now);
        let events = self.conns[c].events();
        self.conns[c].state = ConnState::Closing {
            events,
            close,
            close_sent: false,
        };
        self.stats.connections_closing += 1;
        let s = &mut self.stats;
        match close.reason {
            CloseReason::IdleTimeout => s.closed_idle_timeout += 1,
            CloseReason::SlowConsumer => s.closed_slow_consumer += 1,
            CloseReason::ManagerDeactivated => s.closed_deactivated += 1,
            CloseReason::Application => s.closed_application += 1,
            CloseReason::ServerShutdown => s.closed_shutdown += 1,
            CloseReason::InboundFlood => s.closed_inbound_flood += 1,
        }
        self.flag_event(c, EV_CLOSED);
    }

    /// Frees connection slot `c` in any state, discarding (and counting) what
    /// its queue still held.
    pub(super) fn release(&mut self, c: usize, why: Departure, now: Instant) -> Released {
        match self.conns[c].state {
            ConnState::Open { .. } => {
                self.detach_open(c, now);
                match why {
                    Departure::Removed => self.stats.connections_removed += 1,
                    Departure::Lost => self.stats.connections_lost += 1,
                }
            }
            ConnState::Closing { .. } => self.stats.connections_closing -= 1,
            ConnState::Free => return Released { undelivered: 0 },
        }
        self.clear_events(c);
        let undelivered = self.pool.clear(&mut self.conns[c].queue);
        self.stats.messages_dropped += u64::from(undelivered);
        self.stats.messages_queued_now -= u64::from(undelivered);
        let slot = &mut self.conns[c];
        slot.state = ConnState::Free;
        slot.generation = next_generation(slot.generation);
        slot.user_link.set_next(self.conn_free);
        self.conn_free = c as u32;
        Released { undelivered }
    }

    /// Takes a free connection slot for `owner`: a released one first, else
    /// one never used. The caller checked [`Self::conn_available`].
    pub(super) fn alloc_conn(&mut self, owner: ManagerHandle, now: Instant) -> usize {
        debug_assert!(self.conn_available(), "no free connection slot");
        let c = if self.conn_free != NIL {
            let c = self.conn_free as usize;
            self.conn_free = self.conns[c].user_link.next();
            c
        } else {
            self.conn_fresh += 1;
            self.conn_fresh as usize - 1
        };
        let inbound = Levels::full(&self.config.inbound_per_connection);
        let slot = &mut self.conns[c];
        slot.state = ConnState::Open {
            events: 0,
            strikes: 0,
            inbound,
        };
        slot.owner_index = I::pack(owner.index);
        slot.owner_generation = owner.generation;
        slot.last_activity = now;
        c
    }

    /// Whether a connection slot is free.
    pub(super) fn conn_available(&self) -> bool {
        self.conn_free != NIL || (self.conn_fresh as usize) < CONNS
    }

    /// Takes a free manager slot (one always exists below `max_users`).
    pub(super) fn alloc_user(&mut self) -> Option<usize> {
        if self.user_free != NIL {
            let u = self.user_free as usize;
            self.user_free = self.users[u].next.unpack();
            Some(u)
        } else if (self.user_fresh as usize) < USERS {
            self.user_fresh += 1;
            Some(self.user_fresh as usize - 1)
        } else {
            None
        }
    }

    /// Adds manager slot `u` to its hash bucket.
    pub(super) fn index_user(&mut self, u: usize, user_id: &str) {
        let b = Self::bucket(user_id, self.config.hash_seed);
        self.users[u].next = self.buckets[b];
        self.buckets[b] = I::pack(u as u32);
    }

    /// Retires active manager slot `u`, which has no open connection: drops
    /// its offline buffer and hash entry, and moves the generation on so every
    /// old handle is refused. Returns the discarded offline messages.
    pub(super) fn retire_user(&mut self, u: usize) -> u32 {
        let discarded = self.pool.clear(&mut self.users[u].offline);
        self.stats.offline_discarded += u64::from(discarded);
        self.stats.offline_now -= u64::from(discarded);
        self.empty.unlink(&mut self.users, u as u32, empty_link);
        debug_assert!(self.users[u].active, "only an active manager is retired");
        let b = Self::bucket(self.users[u].ctx.user_id(), self.config.hash_seed);
        let mut prev = NIL;
        let mut i = self.buckets[b].unpack();
        while i != NIL && i as usize != u {
            prev = i;
            i = self.users[i as usize].next.unpack();
        }
        let next = self.users[u].next;
        if prev == NIL {
            self.buckets[b] = next;
        } else {
            self.users[prev as usize].next = next;
        }
        // The user's ids do not outlive the manager in its slot.
        self.users[u].ctx = UserContext::VACANT;
        self.users[u].active = false;
        let slot = &mut self.users[u];
        slot.generation = next_generation(slot.generation);
        slot.next = I::pack(self.user_free);
        self.user_free = u as u32;
        self.stats.managers_active -= 1;
        discarded
    }
}
