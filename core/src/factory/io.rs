//! The sans-IO surface: facts from outside (`handle_*`) and what the caller
//! must act on (`poll_*`).

use super::slots::{idle_link, ConnState, Departure, EV_CLOSED};
use super::tables::{LifeEvent, ManagerFactory};
use crate::inbound::{fits, seconds_crossed, take};
use crate::index::SlotIndex;
use crate::list::{Link, List, NIL};
use crate::{
    CloseCode, CloseFrame, CloseReason, ConnectionHandle, Error, Event, Inbound, InboundLimit,
    Instant, Released, Transmit,
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
    /// Inbound activity on a connection (a frame, a pong): it is not idle.
    /// Activity on a closing connection (its close handshake) is accepted and
    /// changes nothing.
    pub fn handle_activity(
        &mut self,
        connection: ConnectionHandle,
        now: Instant,
    ) -> Result<(), Error> {
        let now = self.tick(now);
        let c = self
            .conn_index(connection)
            .inspect_err(|e| self.count_refusal(e))?;
        if self.conns[c].is_open() {
            self.touch(c, now);
        }
        Ok(())
    }

    /// An inbound message of `bytes` bytes arrived on `connection`: checks it
    /// against the connection's and the user's budgets
    /// ([`Config::inbound_per_connection`](crate::Config::inbound_per_connection),
    /// [`Config::inbound_per_user`](crate::Config::inbound_per_user)).
    ///
    /// - [`Inbound::Accepted`]: the message fits every budget and is taken
    ///   from all four buckets;
    /// - [`Inbound::Refused`]: it does not fit the budget named (checked in
    ///   the order connection messages, connection bytes, user messages, user
    ///   bytes); it takes nothing from any bucket and earns the connection a
    ///   strike;
    /// - [`Inbound::Closed`]: the refusal was the connection's
    ///   [`inbound_strikes`](crate::Config::inbound_strikes)-th strike (one
    ///   is forgiven per second): the core closed the connection with 1008
    ///   ([`CloseReason::InboundFlood`]) after its queued messages, reported
    ///   by an [`Event::ConnectionClosed`].
    ///
    /// Either way the message is inbound activity (the peer is alive), with
    /// the effect of [`handle_activity`](Self::handle_activity). A message
    /// larger than a byte bucket's `burst` is always refused.
    ///
    /// Errors: [`Error::UnknownConnection`]; [`Error::ConnectionClosing`]
    /// once the connection is closing (discard the message).
    pub fn handle_inbound(
        &mut self,
        connection: ConnectionHandle,
        bytes: usize,
        now: Instant,
    ) -> Result<Inbound, Error> {
        let now = self.tick(now);
        let c = self
            .conn_index(connection)
            .inspect_err(|e| self.count_refusal(e))?;
        if !self.conns[c].is_open() {
            let e = Error::ConnectionClosing(connection);
            self.count_refusal(&e);
            return Err(e);
        }
        self.touch(c, now);
        let u = self.conns[c].owner_slot();
        let user_limits = self.config.inbound_per_user;
        let user = &mut self.users[u];
        user.inbound = user.inbound.refilled(&user_limits, user.empty_since, now);
        user.empty_since = now;
        let user_levels = user.inbound;
        let ConnState::Open {
            strikes, inbound, ..
        } = &mut self.conns[c].state
        else {
            return Ok(Inbound::Accepted);
        };
        let conn = self.config.inbound_per_connection;
        let size = bytes as u64;
        let refused = if !fits(inbound.messages, conn.messages, 1) {
            Some(InboundLimit::ConnectionMessages)
        } else if !fits(inbound.bytes, conn.bytes, size) {
            Some(InboundLimit::ConnectionBytes)
        } else if !fits(user_levels.messages, user_limits.messages, 1) {
            Some(InboundLimit::UserMessages)
        } else if !fits(user_levels.bytes, user_limits.bytes, size) {
            Some(InboundLimit::UserBytes)
        } else {
            None
        };
        let Some(limit) = refused else {
            inbound.messages = take(inbound.messages, conn.messages, 1);
            inbound.bytes = take(inbound.bytes, conn.bytes, size);
            let user = &mut self.users[u].inbound;
            user.messages = take(user.messages, user_limits.messages, 1);
            user.bytes = take(user.bytes, user_limits.bytes, size);
            self.stats.inbound_accepted += 1;
            return Ok(Inbound::Accepted);
        };
        *strikes = strikes.saturating_add(1);
        let closing = u32::from(*strikes) >= self.config.inbound_strikes;
        let s = &mut self.stats;
        match limit {
            InboundLimit::ConnectionMessages => s.inbound_refused_connection_messages += 1,
            InboundLimit::ConnectionBytes => s.inbound_refused_connection_bytes += 1,
            InboundLimit::UserMessages => s.inbound_refused_user_messages += 1,
            InboundLimit::UserBytes => s.inbound_refused_user_bytes += 1,
        }
        if !closing {
            return Ok(Inbound::Refused(limit));
        }
        let close = CloseFrame::new(CloseCode::POLICY_VIOLATION, CloseReason::InboundFlood);
        self.begin_close(c, close, now);
        Ok(Inbound::Closed(limit))
    }

    /// Inbound activity on open connection `c` at `now`: brings its buckets
    /// and strikes up to `now` (they share the `last_activity` stamp) and
    /// moves it to the back of the idle order.
    fn touch(&mut self, c: usize, now: Instant) {
        let limits = self.config.inbound_per_connection;
        let slot = &mut self.conns[c];
        let from = slot.last_activity;
        if let ConnState::Open {
            strikes, inbound, ..
        } = &mut slot.state
        {
            *inbound = inbound.refilled(&limits, from, now);
            let forgiven = seconds_crossed(from, now).min(u64::from(u16::MAX)) as u16;
            *strikes = strikes.saturating_sub(forgiven);
        }
        slot.last_activity = now;
        self.idle.unlink(&mut self.conns, c as u32, idle_link);
        self.idle.push_back(&mut self.conns, c as u32, idle_link);
    }

    /// The connection's socket is gone (closed by the peer, failed, or closed
    /// after its close frame). Frees the slot in any state; messages still
    /// queued are counted as dropped and reported. Works whether or not the
    /// owning manager is still active, so a runtime can always release what
    /// it holds.
    pub fn handle_closed(
        &mut self,
        connection: ConnectionHandle,
        now: Instant,
    ) -> Result<Released, Error> {
        let now = self.tick(now);
        let c = self
            .conn_index(connection)
            .inspect_err(|e| self.count_refusal(e))?;
        Ok(self.release(c, Departure::Lost, now))
    }

    /// Runs every timer due at `now`: closes connections idle for
    /// `idle_timeout_ms` (code 1000, [`CloseReason::IdleTimeout`]) and reclaims
    /// managers empty for `empty_manager_ttl_ms`. A reclamation that finds the
    /// event queue full waits until it has been drained; `poll_timeout` then
    /// still reports it as due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.tick(now);
        if let Some(idle) = self.config.idle_timeout_ms {
            let close = CloseFrame::new(CloseCode::NORMAL, CloseReason::IdleTimeout);
            while let Some(c) = self.idle.front() {
                let c = c as usize;
                if self.conns[c].last_activity.saturating_add_millis(idle) > now {
                    break;
                }
                self.begin_close(c, close, now);
            }
        }
        if let Some(ttl) = self.config.empty_manager_ttl_ms {
            while let Some(u) = self.empty.front() {
                let u = u as usize;
                let since = self.users[u].empty_since;
                if since.saturating_add_millis(ttl) > now || self.events.is_full() {
                    break;
                }
                let generation = self.users[u].generation;
                let discarded = self.retire_user(u);
                self.stats.managers_reclaimed += 1;
                let _ = self.events.push_back(LifeEvent::Reclaimed {
                    index: I::pack(u as u32),
                    generation,
                    discarded: I::pack(discarded),
                });
            }
        }
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout)
    /// has work, or `None` if no timer is armed. O(1).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let idle = self.config.idle_timeout_ms.and_then(|t| {
            self.idle.front().map(|c| {
                self.conns[c as usize]
                    .last_activity
                    .saturating_add_millis(t)
            })
        });
        let empty = self.config.empty_manager_ttl_ms.and_then(|t| {
            self.empty
                .front()
                .map(|u| self.users[u as usize].empty_since.saturating_add_millis(t))
        });
        match (idle, empty) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next item to write on `connection`: queued messages in FIFO order,
    /// then, if the connection is closing, its close frame (once).
    ///
    /// - `Ok(Some(_))`: write it;
    /// - `Ok(None)`: nothing to write now (the connection is still live: wait
    ///   for its next [`Event::Transmit`] or [`Event::ConnectionClosed`]);
    /// - `Err(`[`Error::UnknownConnection`]`)`: the connection is gone (or the
    ///   handle is stale, or of another factory): stop its writer. Not counted
    ///   as a refusal.
    #[must_use = "a transmit taken from the queue is gone from the core"]
    pub fn poll_transmit(
        &mut self,
        connection: ConnectionHandle,
    ) -> Result<Option<Transmit<P>>, Error> {
        let c = self.conn_index(connection)?;
        let was_full = self.conns[c].queue.len() >= self.config.queue_depth;
        if let Some(p) = self.pool.pop(&mut self.conns[c].queue) {
            if was_full && self.conns[c].is_open() {
                self.users[self.conns[c].owner_slot()].count_full(false);
            }
            self.stats.messages_transmitted += 1;
            self.stats.messages_queued_now -= 1;
            return Ok(Some(Transmit::Message(p)));
        }
        match &mut self.conns[c].state {
            ConnState::Closing {
                close, close_sent, ..
            } if !*close_sent => {
                *close_sent = true;
                Ok(Some(Transmit::Close(*close)))
            }
            _ => Ok(None),
        }
    }

    /// The next event for the caller: manager lifecycle events first, then
    /// connection events (closed, or queue became non-empty) oldest first.
    #[must_use = "an event taken from the core is not reported again"]
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(e) = self.events.pop_front() {
            return Some(e.event(self.config.factory_tag));
        }
        let c = self.conn_events.front()? as usize;
        let event = self.conn_event(c);
        self.clear_events(c);
        Some(event)
    }

    /// Hands every pending event to `out`, in the order repeated
    /// [`poll_event`](Self::poll_event) calls would return them, in one walk
    /// of the pending list (no unlinking one by one). What the async shim
    /// does after every call.
    pub fn drain_events(&mut self, mut out: impl FnMut(Event)) {
        while let Some(e) = self.events.pop_front() {
            out(e.event(self.config.factory_tag));
        }
        let mut c = self.conn_events.head();
        while c != NIL {
            out(self.conn_event(c as usize));
            let slot = &mut self.conns[c as usize];
            slot.set_events(0);
            c = slot.event_link.next();
            slot.event_link = Link::DETACHED;
        }
        self.conn_events = List::EMPTY;
    }

    /// The event connection slot `c` has pending.
    fn conn_event(&self, c: usize) -> Event {
        let slot = &self.conns[c];
        let connection = self.connection_handle(c as u32, slot.generation);
        match slot.state {
            ConnState::Closing { close, events, .. } if events & EV_CLOSED != 0 => {
                Event::ConnectionClosed {
                    connection,
                    manager: self.owner(c),
                    close,
                }
            }
            _ => Event::Transmit(connection),
        }
    }
}
