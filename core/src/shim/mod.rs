//! Async shims (feature `shim`): a lockable [`SharedFactory`] that any
//! executor can await on, and [`shard_for`] to spread users over shards.
//!
//! Built on embassy-sync, generic over its [`RawMutex`], still `no_std`
//! and allocation-free. The lock is a blocking mutex held only for the few
//! instructions of one core call; no lock is ever held across an `.await`, so
//! a failed or stalled socket can never deadlock a send. After every call the
//! shim pumps the core's events itself:
//!
//! - [`Event::Transmit`] and [`Event::ConnectionClosed`] wake the writer
//!   waiting in [`SharedFactory::next_transmit`] for that connection;
//! - lifecycle events ([`Event::ConnectionClosed`] and the manager events)
//!   go to a bounded queue read with [`SharedFactory::next_event`]; if nobody
//!   reads it, the oldest are dropped and counted in
//!   [`SharedFactory::events_dropped`] (messages are never dropped);
//! - when the next deadline moves earlier, the timer task waiting in
//!   [`SharedFactory::deadline_changed`] is woken.
//!
//! One `SharedFactory` is one **shard**. A multi-core server runs N shards
//! and routes each user with [`shard_for`], so users never contend on one
//! global lock — as long as each shard's `RawMutex` is its own lock: on a
//! std host use a mutex per instance (`userlane_smol::StdRawMutex`), not
//! `CriticalSectionRawMutex`, which there is one process-wide lock. A
//! single-core gateway uses one shard in a `static`:
//!
//! ```
//! use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
//! use userlane_core::{shim::SharedFactory, Config};
//!
//! static SHARD: SharedFactory<CriticalSectionRawMutex, u16, 8, 32, 256, 8, u16> =
//!     SharedFactory::new_static(Config::for_capacity(8, 32));
//! assert_eq!(SHARD.with(|lanes| lanes.stats().managers_active), 0);
//! ```

use core::cell::RefCell;
use core::future::poll_fn;
use core::task::{Context, Poll};

use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::waitqueue::WakerRegistration;
use heapless::Deque;

use crate::{
    CloseFrame, Config, ConfigError, ConnectionHandle, Error, Event, Inbound, Instant,
    ManagerFactory, ManagerHandle, Released, SendError, SendOutcome, SlotIndex, Stats, Transmit,
    UserContext,
};

/// The shard a user lives in, out of `shards` (FNV-1a 64 of the user id).
/// Stable across runs, processes and platforms, so every node and thread
/// routes a user to the same shard. `shards` of 0 is treated as 1.
pub fn shard_for(user_id: &str, shards: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in user_id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % shards.max(1) as u64) as usize
}

/// Logs `e` if it is worth a warning (an isolation violation), through
/// `log` or `defmt` when one of those features is on. The core never logs
/// (a logger is application code, which must not run inside the shard
/// lock): the shim's named methods call this after releasing the lock;
/// callers of [`SharedFactory::with`], which hands the core's results back
/// untouched, call it once `with` has returned.
pub fn log_refusal(e: &Error) {
    crate::log::log_refusal(e);
}

/// `r`, logged with [`log_refusal`] (the lock is already released).
fn logged<T>(r: Result<T, Error>) -> Result<T, Error> {
    if let Err(e) = &r {
        log_refusal(e);
    }
    r
}

/// A shard of the documented gateway profile
/// ([`GatewayFactory`](crate::GatewayFactory)) behind the raw mutex `M`.
pub type GatewayShard<M, P = u16> = SharedFactory<M, P, 32, 128, 2_048, 8, u16>;

/// A shard of the documented server profile
/// ([`ServerFactory`](crate::ServerFactory)) behind the raw mutex `M`.
pub type ServerShard<M, P> = SharedFactory<M, P, 10_000, 16_384, 262_144, 64>;

/// The state behind the lock.
struct Inner<
    P,
    const USERS: usize,
    const CONNS: usize,
    const SLOTS: usize,
    const EVENTS: usize,
    I: SlotIndex,
> {
    factory: ManagerFactory<P, USERS, CONNS, SLOTS, EVENTS, I>,
    /// One writer waker per connection slot.
    writers: [WakerRegistration; CONNS],
    /// Lifecycle events for [`SharedFactory::next_event`].
    events: Deque<Event, EVENTS>,
    event_waker: WakerRegistration,
    timer_waker: WakerRegistration,
    events_dropped: u64,
    /// The factory's `poll_timeout` as of the last pump: every change to the
    /// factory goes through a pump, so this is the value before the next
    /// call, without computing it again under the lock.
    deadline: Option<Instant>,
}

/// A [`ManagerFactory`] behind an embassy-sync blocking mutex, with wakers
/// for connection writers, the event reader and the shard's timer task.
///
/// Shareable between tasks and threads (`Sync` when `M` is), constructible in
/// a `static` with [`SharedFactory::new_static`]. See the [module docs](self).
pub struct SharedFactory<
    M: RawMutex,
    P,
    const USERS: usize,
    const CONNS: usize,
    const SLOTS: usize,
    const EVENTS: usize = 16,
    I: SlotIndex = u32,
> {
    inner: Mutex<M, RefCell<Inner<P, USERS, CONNS, SLOTS, EVENTS, I>>>,
}

impl<
        M: RawMutex,
        P: Clone,
        const USERS: usize,
        const CONNS: usize,
        const SLOTS: usize,
        const EVENTS: usize,
        I: SlotIndex,
    > SharedFactory<M, P, USERS, CONNS, SLOTS, EVENTS, I>
{
    /// A shard with empty tables, or why `config` does not fit.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        config.validate(ManagerFactory::<P, USERS, CONNS, SLOTS, EVENTS, I>::CAPACITY)?;
        Ok(Self::new_static(config))
    }

    /// A shard for a `static`: a config that does not fit the capacities is
    /// a compile-time error there (and a panic if called at run time).
    pub const fn new_static(config: Config) -> Self {
        if config
            .validate(ManagerFactory::<P, USERS, CONNS, SLOTS, EVENTS, I>::CAPACITY)
            .is_err()
        {
            panic!("userlane: Config does not fit the shard's capacities");
        }
        SharedFactory {
            inner: Mutex::new(RefCell::new(Inner {
                factory: ManagerFactory::with_valid_config(config),
                writers: [const { WakerRegistration::new() }; CONNS],
                events: Deque::new(),
                event_waker: WakerRegistration::new(),
                timer_waker: WakerRegistration::new(),
                events_dropped: 0,
                deadline: None,
            })),
        }
    }

    /// Runs `f` on the factory under the lock, then pumps events, transmits
    /// and the timer. `f` must not block, and must not drain `poll_event` / `drain_events` or
    /// `poll_transmit` itself (the shim does that for its waiters).
    pub fn with<R>(
        &self,
        f: impl FnOnce(&mut ManagerFactory<P, USERS, CONNS, SLOTS, EVENTS, I>) -> R,
    ) -> R {
        self.locked(|inner| f(&mut inner.factory))
    }

    /// Runs `f` on the shard's state under the lock, then pumps.
    fn locked<R>(&self, f: impl FnOnce(&mut Inner<P, USERS, CONNS, SLOTS, EVENTS, I>) -> R) -> R {
        self.inner.lock(|cell| {
            let mut inner = cell.borrow_mut();
            let r = f(&mut inner);
            inner.pump();
            r
        })
    }

    /// Reads the factory under the lock without pumping anything.
    pub fn read<R>(
        &self,
        f: impl FnOnce(&ManagerFactory<P, USERS, CONNS, SLOTS, EVENTS, I>) -> R,
    ) -> R {
        self.inner.lock(|cell| f(&cell.borrow().factory))
    }

    /// [`ManagerFactory::create_manager`].
    pub fn create_manager(&self, ctx: UserContext, now: Instant) -> Result<ManagerHandle, Error> {
        self.with(|f| f.create_manager(ctx, now))
    }

    /// [`ManagerFactory::create_offline_manager`].
    pub fn create_offline_manager(
        &self,
        ctx: UserContext,
        now: Instant,
    ) -> Result<ManagerHandle, Error> {
        self.with(|f| f.create_offline_manager(ctx, now))
    }

    /// Creates (or finds) the user's manager and opens a connection in one
    /// locked step, so no other task can deactivate the manager in between.
    pub fn connect(
        &self,
        ctx: &UserContext,
        now: Instant,
    ) -> Result<(ManagerHandle, ConnectionHandle), Error> {
        logged(self.with(|f| {
            // Clone the context only when a manager has to be created.
            let m = f
                .as_lanes()
                .manager_or_create_with(ctx.user_id(), || ctx.clone(), now)?;
            let c = f.add_connection(m, ctx, now)?;
            Ok((m, c))
        }))
    }

    /// [`ManagerFactory::add_connection`].
    pub fn add_connection(
        &self,
        manager: ManagerHandle,
        claim: &UserContext,
        now: Instant,
    ) -> Result<ConnectionHandle, Error> {
        logged(self.with(|f| f.add_connection(manager, claim, now)))
    }

    /// [`ManagerFactory::remove_connection`].
    /// The connection's writer, if waiting, is woken and sees it gone.
    pub fn remove_connection(
        &self,
        manager: ManagerHandle,
        conn: ConnectionHandle,
        now: Instant,
    ) -> Result<Released, Error> {
        logged(self.with_release(conn, |f| f.remove_connection(manager, conn, now)))
    }

    /// [`ManagerFactory::send_to_user`].
    pub fn send_to_user(
        &self,
        manager: ManagerHandle,
        payload: P,
        now: Instant,
    ) -> Result<SendOutcome, SendError<P>> {
        self.with(|f| f.send_to_user(manager, payload, now))
    }

    /// [`ManagerFactory::send_to_connection`].
    pub fn send_to_connection(
        &self,
        manager: ManagerHandle,
        conn: ConnectionHandle,
        payload: P,
        now: Instant,
    ) -> Result<SendOutcome, SendError<P>> {
        self.with(|f| f.send_to_connection(manager, conn, payload, now))
            .inspect_err(|refused| log_refusal(&refused.error))
    }

    /// Sends to the active manager of `user_id`; `Ok(None)` if the user has
    /// no manager on this shard (the payload is then dropped after the lock
    /// is released).
    pub fn send_to_user_id(
        &self,
        user_id: &str,
        payload: P,
        now: Instant,
    ) -> Result<Option<SendOutcome>, SendError<P>> {
        let sent = self.with(|f| match f.manager_for_user(user_id) {
            Some(m) => Ok(f.send_to_user(m, payload, now)),
            None => Err(payload),
        });
        match sent {
            Ok(result) => result.map(Some),
            Err(unsent) => {
                drop(unsent);
                Ok(None)
            }
        }
    }

    /// [`ManagerFactory::deactivate`].
    pub fn deactivate(&self, manager: ManagerHandle, now: Instant) -> Result<u32, Error> {
        self.with(|f| f.deactivate(manager, now))
    }

    /// [`ManagerFactory::close_all`].
    pub fn close_all(&self, close: CloseFrame, now: Instant) -> u32 {
        self.with(|f| f.close_all(close, now))
    }

    /// [`ManagerFactory::handle_activity`].
    pub fn handle_activity(&self, conn: ConnectionHandle, now: Instant) -> Result<(), Error> {
        self.with(|f| f.handle_activity(conn, now))
    }

    /// [`ManagerFactory::handle_inbound`]. A connection closed for flooding
    /// has its writer woken to send the queued messages and then the close.
    pub fn handle_inbound(
        &self,
        conn: ConnectionHandle,
        bytes: usize,
        now: Instant,
    ) -> Result<Inbound, Error> {
        self.with(|f| f.handle_inbound(conn, bytes, now))
    }

    /// [`ManagerFactory::handle_closed`].
    /// The connection's writer, if waiting, is woken and sees it gone.
    pub fn handle_closed(&self, conn: ConnectionHandle, now: Instant) -> Result<Released, Error> {
        self.with_release(conn, |f| f.handle_closed(conn, now))
    }

    fn with_release(
        &self,
        conn: ConnectionHandle,
        f: impl FnOnce(
            &mut ManagerFactory<P, USERS, CONNS, SLOTS, EVENTS, I>,
        ) -> Result<Released, Error>,
    ) -> Result<Released, Error> {
        self.locked(|inner| {
            let r = f(&mut inner.factory);
            if r.is_ok() {
                if let Some(w) = inner.writers.get_mut(conn.index() as usize) {
                    w.wake();
                }
            }
            r
        })
    }

    /// [`ManagerFactory::handle_timeout`].
    pub fn handle_timeout(&self, now: Instant) {
        self.with(|f| f.handle_timeout(now))
    }

    /// [`ManagerFactory::poll_timeout`]: the shard's next deadline.
    pub fn timeout(&self) -> Option<Instant> {
        self.inner.lock(|cell| cell.borrow().deadline())
    }

    /// [`ManagerFactory::stats`].
    pub fn stats(&self) -> Stats {
        self.read(|f| f.stats())
    }

    /// Lifecycle events dropped because nobody read [`Self::next_event`].
    pub fn events_dropped(&self) -> u64 {
        self.inner.lock(|cell| cell.borrow().events_dropped)
    }

    /// Takes up to `max` items to write on `conn` in one locked step, for
    /// writers that feed many frames and flush once. Returns how many were
    /// taken, or `None` if the connection is gone.
    pub fn drain_transmits(
        &self,
        conn: ConnectionHandle,
        max: usize,
        mut out: impl FnMut(Transmit<P>),
    ) -> Option<usize> {
        self.inner.lock(|cell| {
            let mut inner = cell.borrow_mut();
            let mut n = 0;
            while n < max {
                match inner.factory.poll_transmit(conn) {
                    Ok(Some(t)) => {
                        out(t);
                        n += 1;
                    }
                    Ok(None) => break,
                    Err(_) if n == 0 => return None,
                    Err(_) => break,
                }
            }
            Some(n)
        })
    }

    /// The next item to write on `conn`: `Ready(Some(_))`, `Ready(None)` once
    /// the connection is gone, or `Pending` with the waker registered.
    pub fn poll_transmit(
        &self,
        conn: ConnectionHandle,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Transmit<P>>> {
        self.inner.lock(|cell| {
            let mut inner = cell.borrow_mut();
            match inner.factory.poll_transmit(conn) {
                Err(_) => Poll::Ready(None),
                Ok(Some(t)) => Poll::Ready(Some(t)),
                Ok(None) => {
                    if let Some(w) = inner.writers.get_mut(conn.index() as usize) {
                        w.register(cx.waker());
                    }
                    Poll::Pending
                }
            }
        })
    }

    /// [`poll_transmit`](Self::poll_transmit) that also says, in the same
    /// locked step, whether more is waiting behind the item (a queued message
    /// or the close frame): `Ready(Some((item, more)))`, `Ready(None)` once
    /// the connection is gone, or `Pending`.
    ///
    /// When it returns `Pending` **or** an item with `more == false`, the
    /// waker is registered under the same lock, so anything queued afterwards
    /// wakes it. A writer that saw `more == false` can therefore wait for its
    /// next wake without locking again only to find the queue empty: one lock
    /// per item, and none for the final empty check. Items are taken one at a
    /// time, so a writer that hands each to its socket buffer before asking
    /// for the next never holds a local batch that a forced close would lose
    /// uncounted.
    pub fn poll_transmit_more(
        &self,
        conn: ConnectionHandle,
        cx: &mut Context<'_>,
    ) -> Poll<Option<(Transmit<P>, bool)>> {
        self.inner.lock(|cell| {
            let mut inner = cell.borrow_mut();
            let Ok(item) = inner.factory.poll_transmit(conn) else {
                return Poll::Ready(None);
            };
            let more = match &item {
                // A closing connection still owes its close frame after the
                // last message (nothing is queued to it once it closes).
                Some(Transmit::Message(_)) => {
                    inner.factory.queued(conn).is_ok_and(|n| n > 0) || !inner.factory.is_open(conn)
                }
                Some(Transmit::Close(_)) | None => false,
            };
            if !more {
                if let Some(w) = inner.writers.get_mut(conn.index() as usize) {
                    w.register(cx.waker());
                }
            }
            match item {
                Some(t) => Poll::Ready(Some((t, more))),
                None => Poll::Pending,
            }
        })
    }

    /// Waits for the next item to write on `conn`; `None` once it is gone.
    pub async fn next_transmit(&self, conn: ConnectionHandle) -> Option<Transmit<P>> {
        poll_fn(|cx| self.poll_transmit(conn, cx)).await
    }

    /// The next lifecycle event, or `Pending` with the waker registered.
    pub fn poll_event(&self, cx: &mut Context<'_>) -> Poll<Event> {
        self.inner.lock(|cell| {
            let mut inner = cell.borrow_mut();
            match inner.events.pop_front() {
                Some(e) => Poll::Ready(e),
                None => {
                    inner.event_waker.register(cx.waker());
                    Poll::Pending
                }
            }
        })
    }

    /// Waits for the next lifecycle event.
    pub async fn next_event(&self) -> Event {
        poll_fn(|cx| self.poll_event(cx)).await
    }

    /// `Ready` when the shard's deadline is earlier than `armed` (the
    /// deadline the timer task is sleeping until, `None` for "no timer"),
    /// otherwise registers the waker.
    pub fn poll_deadline_changed(&self, armed: Option<Instant>, cx: &mut Context<'_>) -> Poll<()> {
        self.inner.lock(|cell| {
            let mut inner = cell.borrow_mut();
            if earlier(inner.deadline(), armed) {
                Poll::Ready(())
            } else {
                inner.timer_waker.register(cx.waker());
                Poll::Pending
            }
        })
    }

    /// Waits until the shard's deadline moves earlier than `armed`. A timer
    /// task sleeps on `min(armed, this)` and then calls
    /// [`Self::handle_timeout`]: one timer per shard, not one per connection.
    pub async fn deadline_changed(&self, armed: Option<Instant>) {
        poll_fn(|cx| self.poll_deadline_changed(armed, cx)).await
    }
}

impl<
        P: Clone,
        const USERS: usize,
        const CONNS: usize,
        const SLOTS: usize,
        const EVENTS: usize,
        I: SlotIndex,
    > Inner<P, USERS, CONNS, SLOTS, EVENTS, I>
{
    /// Routes every pending core event to its waiter, and wakes the timer
    /// task if the next deadline moved earlier.
    fn pump(&mut self) {
        let mut lifecycle = false;
        let Inner {
            factory,
            writers,
            events,
            events_dropped,
            ..
        } = self;
        factory.drain_events(|event| {
            match event {
                Event::Transmit(c) => {
                    if let Some(w) = writers.get_mut(c.index() as usize) {
                        w.wake();
                    }
                    return;
                }
                Event::ConnectionClosed { connection, .. } => {
                    if let Some(w) = writers.get_mut(connection.index() as usize) {
                        w.wake();
                    }
                }
                _ => {}
            }
            if events.is_full() {
                events.pop_front();
                *events_dropped += 1;
            }
            let _ = events.push_back(event);
            lifecycle = true;
        });
        if lifecycle {
            self.event_waker.wake();
        }
        let deadline = self.factory.poll_timeout();
        let moved_earlier = earlier(deadline, self.deadline);
        self.deadline = deadline;
        if moved_earlier {
            self.timer_waker.wake();
        }
    }

    /// The factory's next deadline, as of the last pump (nothing that moves
    /// a deadline happens outside one).
    fn deadline(&self) -> Option<Instant> {
        debug_assert_eq!(self.deadline, self.factory.poll_timeout());
        self.deadline
    }
}

/// Whether deadline `new` comes before `than` (`None`: no deadline).
fn earlier(new: Option<Instant>, than: Option<Instant>) -> bool {
    match (new, than) {
        (Some(d), Some(t)) => d < t,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests;
