//! The sans-IO surface: facts from outside (`handle_*`) and what the caller
//! must act on (`poll_*`).

use super::lanes::Departure;
use super::slots::{idle_link, ConnState, EV_CLOSED};
use super::ManagerFactory;
use crate::index::SlotIndex;
use crate::list::{Link, List, NIL};
use crate::{
    CloseCode, CloseFrame, CloseReason, ConnectionHandle, Error, Event, Instant, Released, Transmit,
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
        if self.conns[c].state == ConnState::Open {
            self.conns[c].last_activity = now;
            self.idle.unlink(&mut self.conns, c as u32, idle_link);
            self.idle.push_back(&mut self.conns, c as u32, idle_link);
        }
        Ok(())
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
                let manager = crate::ManagerHandle {
                    index: u as u32,
                    generation: self.users[u].generation,
                };
                let discarded_offline = self.retire_user(u);
                self.stats.managers_reclaimed += 1;
                let _ = self.events.push_back(Event::ManagerReclaimed {
                    manager,
                    discarded_offline,
                });
            }
        }
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout)
    /// has work, or `None` if no timer is armed. O(1).
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
    /// then, if the connection is closing, its close frame (once). `None` when
    /// there is nothing to send or the handle is stale.
    pub fn poll_transmit(&mut self, connection: ConnectionHandle) -> Option<Transmit<P>> {
        let c = self.conn_index(connection).ok()?;
        let was_full = self.conns[c].queue.len >= self.config.queue_depth;
        if let Some(p) = self.pool.pop(&mut self.conns[c].queue) {
            if was_full && self.conns[c].state == ConnState::Open {
                self.users[self.conns[c].owner.index as usize].count_full(false);
            }
            self.stats.messages_transmitted += 1;
            self.stats.messages_queued_now -= 1;
            return Some(Transmit::Message(p));
        }
        match self.conns[c].state {
            ConnState::Closing {
                close,
                close_sent: false,
            } => {
                self.conns[c].state = ConnState::Closing {
                    close,
                    close_sent: true,
                };
                Some(Transmit::Close(close))
            }
            _ => None,
        }
    }

    /// The next event for the caller: manager lifecycle events first, then
    /// connection events (closed, or queue became non-empty) oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
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
            out(e);
        }
        let mut c = self.conn_events.head;
        while c != NIL {
            out(self.conn_event(c as usize));
            let slot = &mut self.conns[c as usize];
            slot.events = 0;
            c = slot.event_link.next();
            slot.event_link = Link::DETACHED;
        }
        self.conn_events = List::EMPTY;
    }

    /// The event connection slot `c` has pending.
    fn conn_event(&self, c: usize) -> Event {
        let slot = &self.conns[c];
        let connection = ConnectionHandle {
            index: c as u32,
            generation: slot.generation,
        };
        match slot.state {
            ConnState::Closing { close, .. } if slot.events & EV_CLOSED != 0 => {
                Event::ConnectionClosed {
                    connection,
                    manager: slot.owner,
                    close,
                }
            }
            _ => Event::Transmit(connection),
        }
    }
}
