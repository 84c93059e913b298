//! The reference model: the rules of `userlane-core` written as plainly as
//! possible, with `HashMap`s, `Vec`s and `VecDeque`s and no slot tables,
//! free lists, intrusive links or generations. It is the specification in
//! executable form; [`crate::harness`] runs it side by side with the core and
//! demands the same observable behaviour after every operation.
//!
//! # What the model does not know
//!
//! The model never sees a table index or a generation. Every manager and
//! connection it creates gets a fresh, never reused number ([`Key::Id`]); the
//! harness binds each number to the handle the core returned for the same
//! operation and requires the binding to be one-to-one. A handle the harness
//! forges that the core never issued, or one another factory issued, is
//! [`Key::Raw`]: the model treats it as unknown.
//!
//! Handle refusals follow one rule, which is the only place where the core's
//! generations show through:
//!
//! - a manager handle that was issued and is no longer active is
//!   `ManagerInactive` (deactivated or reclaimed: the core's slot generation
//!   has moved past it);
//! - a manager handle that was never issued is `UnknownManager`;
//! - a connection handle that is not live (never issued, removed or reported
//!   closed) is `UnknownConnection`.
//!
//! # Orders
//!
//! Where the core keeps an intrusive list the model keeps a stamp and sorts:
//!
//! - a user's connections are listed in the order they were added;
//! - idle order: open connections by their last touch (added or activity);
//!   the core's list is in touch order and time never goes backwards, so it is
//!   also last-activity order;
//! - empty managers: by the moment they became empty (created, or lost their
//!   last open connection);
//! - connection events: a connection joins the back of the queue when it gets
//!   its first unreported flag and leaves it when reported or released; it is
//!   reported as `ConnectionClosed` if it is closing with the closed flag,
//!   otherwise as `Transmit`. Lifecycle events always come first.
//!
//! # Inbound budget
//!
//! Each bucket is a level and the instant it was taken at, kept per bucket
//! (the core shares stamps with other fields). Its level at `t` is
//! `min(burst, level + ⌊r·t/1000⌋ − ⌊r·at/1000⌋)`, computed in `u128`; a
//! connection's strikes drop by one for each multiple of 1,000 ms passed
//! since they were last counted. A message takes one message unit and its
//! size in bytes from the connection's and the user's buckets, all or none.

use std::collections::{HashMap, HashSet, VecDeque};

use userlane_core::{
    CloseCode, CloseFrame, CloseReason, Config, Inbound, InboundLimit, InboundLimits, Limit,
    ManagerStats, Rate, Released, SendOutcome, SlowConsumerPolicy, Stats, UserContext,
};

/// One token bucket: `level` units at instant `at` (ms); `None` rate = unlimited.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    rate: Option<Rate>,
    level: u64,
    at: u64,
}

impl Bucket {
    fn full(rate: Option<Rate>, now: u64) -> Self {
        Bucket {
            rate,
            level: rate.map_or(0, |r| u64::from(r.burst)),
            at: now,
        }
    }

    /// The level at `now`.
    fn level(&self, now: u64) -> u64 {
        let Some(r) = self.rate else { return 0 };
        let grid = |t: u64| u128::from(r.per_second) * u128::from(t) / 1000;
        let gained = grid(now) - grid(self.at);
        (u128::from(self.level) + gained).min(u128::from(r.burst)) as u64
    }

    fn fits(&self, units: u64, now: u64) -> bool {
        self.rate.is_none() || self.level(now) >= units
    }

    fn take(&mut self, units: u64, now: u64) {
        if self.rate.is_some() {
            self.level = self.level(now) - units;
            self.at = now;
        }
    }
}

/// A message bucket and a byte bucket.
#[derive(Debug, Clone, Copy)]
struct Budget {
    messages: Bucket,
    bytes: Bucket,
}

impl Budget {
    fn full(limits: InboundLimits, now: u64) -> Self {
        Budget {
            messages: Bucket::full(limits.messages, now),
            bytes: Bucket::full(limits.bytes, now),
        }
    }
}

/// A manager or connection as the model knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// Issued by the model (and bound by the harness to one core handle).
    Id(u64),
    /// A handle the core never issued, by its raw parts.
    Raw {
        /// Table index.
        index: u32,
        /// Generation.
        generation: u32,
    },
}

/// The payload the harness sends: who it was addressed to, a sequence number
/// unique over the run, and the operation's tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Msg {
    /// The model id of the manager the message was sent to.
    pub to: u64,
    /// Increasing over the whole run.
    pub seq: u32,
    /// The tag of the `Send` operation.
    pub tag: u8,
}

/// The model's version of [`userlane_core::Violation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MViolation {
    /// A connection claiming another user.
    ForeignUser,
    /// Another manager's connection.
    ForeignConnection {
        /// Its owner.
        owner: Key,
    },
}

/// The model's version of [`userlane_core::Error`], with keys for handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MErr {
    /// Dead manager handle.
    ManagerInactive(Key),
    /// Never-issued manager handle.
    UnknownManager(Key),
    /// Connection handle that is not live.
    UnknownConnection(Key),
    /// The connection is closing.
    ConnectionClosing(Key),
    /// Isolation refused.
    IsolationViolation {
        /// The manager the operation went through.
        manager: Key,
        /// What was crossed.
        violation: MViolation,
    },
    /// A limit.
    LimitReached(Limit),
    /// A full queue under `RejectSend`.
    QueueFull(Key),
    /// No connection and no offline buffer.
    NoConnections(Key),
    /// Lifecycle event queue full.
    EventsPending,
}

/// The model's version of [`userlane_core::Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MEvent {
    /// Queue became non-empty.
    Transmit(Key),
    /// The core closed a connection.
    ConnectionClosed {
        /// The connection.
        connection: Key,
        /// Its owner.
        manager: Key,
        /// The close frame.
        close: CloseFrame,
    },
    /// A manager was created.
    ManagerCreated(Key),
    /// A manager was deactivated.
    ManagerDeactivated {
        /// The dead handle.
        manager: Key,
        /// Connections closed.
        closed_connections: u32,
        /// Offline messages discarded.
        discarded_offline: u32,
    },
    /// A manager was reclaimed.
    ManagerReclaimed {
        /// The dead handle.
        manager: Key,
        /// Offline messages discarded.
        discarded_offline: u32,
    },
}

/// The model's version of [`userlane_core::Transmit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MTransmit {
    /// A message.
    Message(Msg),
    /// The close frame, last.
    Close(CloseFrame),
}

/// The compile-time capacities of the factory under test, as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// `USERS`
    pub users: usize,
    /// `CONNS`
    pub conns: usize,
    /// `SLOTS`
    pub slots: usize,
    /// `EVENTS`
    pub events: usize,
}

struct Manager {
    ctx: UserContext,
    /// Open connections, in the order they were added.
    open: Vec<u64>,
    offline: VecDeque<Msg>,
    stats: ManagerStats,
    /// When it last became empty, and a stamp ordering the empty managers.
    empty: Option<(u64, u64)>,
    /// The user's inbound budget.
    budget: Budget,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Closing { close: CloseFrame, sent: bool },
}

struct Conn {
    owner: u64,
    state: State,
    queue: VecDeque<Msg>,
    last_activity: u64,
    /// Orders the idle list: the stamp of the last touch.
    touch: u64,
    ready: bool,
    closed_flag: bool,
    /// The connection's inbound budget.
    budget: Budget,
    /// Strikes as of `strikes_at` (ms).
    strikes: u64,
    strikes_at: u64,
}

/// The reference model of one factory.
pub struct Model {
    caps: Caps,
    cfg: Config,
    now: u64,
    managers: HashMap<u64, Manager>,
    retired: HashSet<u64>,
    by_user: HashMap<String, u64>,
    conns: HashMap<u64, Conn>,
    lifecycle: VecDeque<MEvent>,
    conn_events: VecDeque<u64>,
    next_id: u64,
    stamp: u64,
    stats: Stats,
}

impl Model {
    /// An empty factory with these capacities and limits (the caller checks
    /// that `cfg` fits `caps`).
    pub fn new(caps: Caps, cfg: Config) -> Self {
        Model {
            caps,
            cfg,
            now: 0,
            managers: HashMap::new(),
            retired: HashSet::new(),
            by_user: HashMap::new(),
            conns: HashMap::new(),
            lifecycle: VecDeque::new(),
            conn_events: VecDeque::new(),
            next_id: 1,
            stamp: 0,
            stats: Stats::default(),
        }
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn next_stamp(&mut self) -> u64 {
        self.stamp += 1;
        self.stamp
    }

    /// Time never goes backwards: an earlier `now` is the latest seen.
    fn tick(&mut self, now: u64) -> u64 {
        self.now = self.now.max(now);
        self.now
    }

    /// Every refusal is counted by reason.
    fn count(&mut self, e: &MErr) {
        let s = &mut self.stats;
        match e {
            MErr::ManagerInactive(_) => s.rejected_inactive_manager += 1,
            MErr::UnknownManager(_) | MErr::UnknownConnection(_) => s.rejected_unknown_handle += 1,
            MErr::ConnectionClosing(_) => s.rejected_closing_connection += 1,
            MErr::IsolationViolation { .. } => s.security_violations_detected += 1,
            MErr::LimitReached(l) => match l {
                Limit::Users => s.rejected_user_limit += 1,
                Limit::ConnectionsPerUser => s.rejected_connections_per_user += 1,
                Limit::Connections => s.rejected_total_connections += 1,
                Limit::OfflineBuffer => s.rejected_offline_full += 1,
                Limit::QueueSlots => s.rejected_queue_slots += 1,
                Limit::OfflineManagers => s.rejected_offline_managers += 1,
            },
            MErr::QueueFull(_) => s.rejected_queue_full += 1,
            MErr::NoConnections(_) => s.rejected_no_connections += 1,
            MErr::EventsPending => s.rejected_events_pending += 1,
        }
    }

    /// Resolves a manager key without counting.
    fn manager_id(&self, k: Key) -> Result<u64, MErr> {
        match k {
            Key::Id(id) if self.managers.contains_key(&id) => Ok(id),
            Key::Id(id) if self.retired.contains(&id) => Err(MErr::ManagerInactive(k)),
            _ => Err(MErr::UnknownManager(k)),
        }
    }

    fn checked_manager(&mut self, k: Key) -> Result<u64, MErr> {
        self.manager_id(k).inspect_err(|e| self.count(e))
    }

    /// Resolves a live (open or closing) connection key without counting.
    fn conn_id(&self, k: Key) -> Result<u64, MErr> {
        match k {
            Key::Id(id) if self.conns.contains_key(&id) => Ok(id),
            _ => Err(MErr::UnknownConnection(k)),
        }
    }

    /// A connection named through manager `m` must belong to it.
    fn checked_conn(&mut self, m: u64, k: Key) -> Result<u64, MErr> {
        let c = self.conn_id(k).inspect_err(|e| self.count(e))?;
        let owner = self.conns[&c].owner;
        if owner != m {
            let e = MErr::IsolationViolation {
                manager: Key::Id(m),
                violation: MViolation::ForeignConnection {
                    owner: Key::Id(owner),
                },
            };
            self.managers.get_mut(&m).unwrap().stats.security_violations += 1;
            self.count(&e);
            return Err(e);
        }
        Ok(c)
    }

    fn pool_used(&self) -> usize {
        self.conns.values().map(|c| c.queue.len()).sum::<usize>()
            + self
                .managers
                .values()
                .map(|m| m.offline.len())
                .sum::<usize>()
    }

    /// Free queued-message slots: every queue and offline buffer shares `SLOTS`.
    pub fn free_queue_slots(&self) -> u32 {
        (self.caps.slots - self.pool_used()) as u32
    }

    fn flag(&mut self, c: u64, closed: bool) {
        let conn = self.conns.get_mut(&c).unwrap();
        if !conn.ready && !conn.closed_flag {
            self.conn_events.push_back(c);
        }
        if closed {
            conn.closed_flag = true;
        } else {
            conn.ready = true;
        }
    }

    fn clear_flags(&mut self, c: u64) {
        self.conn_events.retain(|x| *x != c);
        let conn = self.conns.get_mut(&c).unwrap();
        conn.ready = false;
        conn.closed_flag = false;
    }

    /// An open connection stops being open: it leaves its user's list, and a
    /// user left without open connections becomes empty from `now`.
    fn detach_open(&mut self, c: u64, now: u64) {
        let owner = self.conns[&c].owner;
        self.stats.connections_active -= 1;
        let stamp = self.next_stamp();
        let m = self.managers.get_mut(&owner).unwrap();
        m.open.retain(|x| *x != c);
        m.stats.connections -= 1;
        if m.open.is_empty() {
            m.empty = Some((now, stamp));
        }
    }

    fn begin_close(&mut self, c: u64, close: CloseFrame, now: u64) {
        self.detach_open(c, now);
        self.conns.get_mut(&c).unwrap().state = State::Closing { close, sent: false };
        self.stats.connections_closing += 1;
        let s = &mut self.stats;
        match close.reason {
            CloseReason::IdleTimeout => s.closed_idle_timeout += 1,
            CloseReason::SlowConsumer => s.closed_slow_consumer += 1,
            CloseReason::ManagerDeactivated => s.closed_deactivated += 1,
            CloseReason::Application => s.closed_application += 1,
            CloseReason::ServerShutdown => s.closed_shutdown += 1,
            CloseReason::InboundFlood => s.closed_inbound_flood += 1,
            _ => unreachable!("a close reason the model does not know"),
        }
        self.flag(c, true);
    }

    /// Frees a live connection; its queue is dropped and counted.
    fn release(&mut self, c: u64, removed: bool, now: u64) -> Released {
        match self.conns[&c].state {
            State::Open => {
                self.detach_open(c, now);
                if removed {
                    self.stats.connections_removed += 1;
                } else {
                    self.stats.connections_lost += 1;
                }
            }
            State::Closing { .. } => self.stats.connections_closing -= 1,
        }
        self.clear_flags(c);
        let conn = self.conns.remove(&c).unwrap();
        let n = conn.queue.len() as u64;
        self.stats.messages_dropped += n;
        self.stats.messages_queued_now -= n;
        Released {
            undelivered: n as u32,
        }
    }

    /// A manager with no open connection leaves for good.
    fn retire(&mut self, m: u64) -> u32 {
        let mgr = self.managers.remove(&m).unwrap();
        debug_assert!(mgr.open.is_empty());
        self.by_user.remove(mgr.ctx.user_id());
        self.retired.insert(m);
        let n = mgr.offline.len() as u64;
        self.stats.offline_discarded += n;
        self.stats.offline_now -= n;
        self.stats.managers_active -= 1;
        n as u32
    }

    /// `create_manager`: one manager per user id; asking again returns it.
    pub fn create_manager(&mut self, ctx: UserContext, now: u64) -> Result<Key, MErr> {
        self.create(ctx, now, false)
    }

    /// `create_offline_manager`: `create_manager`, but a new manager only
    /// while fewer than `max_offline_managers` managers have no open connection.
    pub fn create_offline_manager(&mut self, ctx: UserContext, now: u64) -> Result<Key, MErr> {
        self.create(ctx, now, true)
    }

    fn create(&mut self, ctx: UserContext, now: u64, offline: bool) -> Result<Key, MErr> {
        let now = self.tick(now);
        if let Some(m) = self.by_user.get(ctx.user_id()) {
            return Ok(Key::Id(*m));
        }
        let without_connection = self.managers.values().filter(|m| m.open.is_empty()).count();
        let refused = if offline && without_connection >= self.cfg.max_offline_managers as usize {
            Some(MErr::LimitReached(Limit::OfflineManagers))
        } else if self.managers.len() >= self.cfg.max_users as usize {
            Some(MErr::LimitReached(Limit::Users))
        } else if self.lifecycle.len() >= self.caps.events {
            Some(MErr::EventsPending)
        } else {
            None
        };
        if let Some(e) = refused {
            self.count(&e);
            return Err(e);
        }
        let id = self.fresh_id();
        let stamp = self.next_stamp();
        self.by_user.insert(ctx.user_id().to_owned(), id);
        let stats = ManagerStats {
            created_at: userlane_core::Instant::from_millis(now),
            ..ManagerStats::default()
        };
        self.managers.insert(
            id,
            Manager {
                ctx,
                open: Vec::new(),
                offline: VecDeque::new(),
                stats,
                empty: Some((now, stamp)),
                budget: Budget::full(self.cfg.inbound_per_user, now),
            },
        );
        self.stats.managers_created += 1;
        self.stats.managers_active += 1;
        self.lifecycle
            .push_back(MEvent::ManagerCreated(Key::Id(id)));
        Ok(Key::Id(id))
    }

    /// `add_connection`: same user only, within the per-user and total
    /// limits; the offline buffer moves into the new connection's queue.
    pub fn add_connection(
        &mut self,
        manager: Key,
        claim: &UserContext,
        now: u64,
    ) -> Result<Key, MErr> {
        let now = self.tick(now);
        let m = self.checked_manager(manager)?;
        let mgr = &self.managers[&m];
        let refused = if mgr.ctx.user_id() != claim.user_id() {
            Some(MErr::IsolationViolation {
                manager,
                violation: MViolation::ForeignUser,
            })
        } else if mgr.open.len() >= self.cfg.max_connections_per_user as usize {
            Some(MErr::LimitReached(Limit::ConnectionsPerUser))
        } else if self.stats.connections_active >= u64::from(self.cfg.max_connections)
            || self.conns.len() >= self.caps.conns
        {
            Some(MErr::LimitReached(Limit::Connections))
        } else {
            None
        };
        if let Some(e) = refused {
            let st = &mut self.managers.get_mut(&m).unwrap().stats;
            match e {
                MErr::IsolationViolation { .. } => st.security_violations += 1,
                _ => st.limit_hits += 1,
            }
            self.count(&e);
            return Err(e);
        }
        let c = self.fresh_id();
        let touch = self.next_stamp();
        let mgr = self.managers.get_mut(&m).unwrap();
        mgr.open.push(c);
        mgr.empty = None;
        mgr.stats.connections += 1;
        mgr.stats.connections_opened += 1;
        let replay: VecDeque<Msg> = std::mem::take(&mut mgr.offline);
        let n = replay.len() as u32;
        if n > 0 {
            mgr.stats.offline_now = 0;
            mgr.stats.offline_replayed += n;
            mgr.stats.messages_queued += n;
        }
        self.stats.total_connections_managed += 1;
        self.stats.connections_active += 1;
        self.conns.insert(
            c,
            Conn {
                owner: m,
                state: State::Open,
                queue: replay,
                last_activity: now,
                touch,
                ready: false,
                closed_flag: false,
                budget: Budget::full(self.cfg.inbound_per_connection, now),
                strikes: 0,
                strikes_at: now,
            },
        );
        if n > 0 {
            let n = u64::from(n);
            self.stats.offline_now -= n;
            self.stats.offline_replayed += n;
            self.stats.messages_queued += n;
            self.stats.messages_queued_now += n;
            self.flag(c, false);
        }
        Ok(Key::Id(c))
    }

    /// `remove_connection`: the user's own connection, open or closing, freed now.
    pub fn remove_connection(
        &mut self,
        manager: Key,
        conn: Key,
        now: u64,
    ) -> Result<Released, MErr> {
        let now = self.tick(now);
        let m = self.checked_manager(manager)?;
        let c = self.checked_conn(m, conn)?;
        Ok(self.release(c, true, now))
    }

    /// `close_connection`: only an open connection of the user.
    pub fn close_connection(
        &mut self,
        manager: Key,
        conn: Key,
        code: CloseCode,
        now: u64,
    ) -> Result<(), MErr> {
        let now = self.tick(now);
        let m = self.checked_manager(manager)?;
        let c = self.checked_conn(m, conn)?;
        if self.conns[&c].state != State::Open {
            let e = MErr::ConnectionClosing(conn);
            self.count(&e);
            return Err(e);
        }
        self.begin_close(c, CloseFrame::new(code, CloseReason::Application), now);
        Ok(())
    }

    /// `send_to_user`: every open connection of the user, or the offline buffer.
    pub fn send_to_user(&mut self, manager: Key, msg: Msg, now: u64) -> Result<SendOutcome, MErr> {
        let now = self.tick(now);
        let m = self.sending_manager(manager)?;
        let result = if self.managers[&m].open.is_empty() {
            self.buffer_offline(m, msg)
        } else {
            self.fan_out(m, msg, now)
        }
        .inspect_err(|e| self.count(e));
        self.account_send(m, &result);
        result
    }

    /// The manager a send goes through; a refused handle is a refused send.
    fn sending_manager(&mut self, manager: Key) -> Result<u64, MErr> {
        self.checked_manager(manager)
            .inspect_err(|_| self.stats.sends_refused += 1)
    }

    /// A send's result in the factory's and manager `m`'s counters (the
    /// refusal itself is already counted).
    fn account_send(&mut self, m: u64, result: &Result<SendOutcome, MErr>) {
        let st = &mut self.managers.get_mut(&m).unwrap().stats;
        match result {
            Ok(_) => {
                self.stats.sends_accepted += 1;
                st.sends_accepted += 1;
            }
            Err(e) => {
                self.stats.sends_refused += 1;
                st.sends_refused += 1;
                if matches!(e, MErr::LimitReached(_) | MErr::QueueFull(_)) {
                    st.limit_hits += 1;
                }
            }
        }
    }

    /// `send_to_connection`: one open connection of the manager's user, under
    /// the same queue rules as `send_to_user`.
    pub fn send_to_connection(
        &mut self,
        manager: Key,
        conn: Key,
        msg: Msg,
        now: u64,
    ) -> Result<SendOutcome, MErr> {
        let now = self.tick(now);
        let m = self.sending_manager(manager)?;
        // A foreign or unknown connection is counted by `checked_conn`.
        let result = match self.checked_conn(m, conn) {
            Ok(c) => self
                .queue_one(m, c, conn, msg, now)
                .inspect_err(|e| self.count(e)),
            Err(e) => Err(e),
        };
        self.account_send(m, &result);
        result
    }

    fn queue_one(
        &mut self,
        m: u64,
        c: u64,
        conn: Key,
        msg: Msg,
        now: u64,
    ) -> Result<SendOutcome, MErr> {
        if self.conns[&c].state != State::Open {
            return Err(MErr::ConnectionClosing(conn));
        }
        if self.conns[&c].queue.len() >= self.cfg.queue_depth as usize {
            if self.cfg.slow_consumer == SlowConsumerPolicy::RejectSend {
                return Err(MErr::QueueFull(conn));
            }
            let slow = CloseFrame::new(CloseCode::TRY_AGAIN_LATER, CloseReason::SlowConsumer);
            self.begin_close(c, slow, now);
            self.stats.messages_closed_slow += 1;
            self.managers
                .get_mut(&m)
                .unwrap()
                .stats
                .messages_closed_slow += 1;
            return Ok(SendOutcome::Queued {
                queued_for: 0,
                closed_slow: 1,
            });
        }
        if self.free_queue_slots() == 0 {
            return Err(MErr::LimitReached(Limit::QueueSlots));
        }
        let entry = self.conns.get_mut(&c).unwrap();
        entry.queue.push_back(msg);
        if entry.queue.len() == 1 {
            self.flag(c, false);
        }
        self.stats.messages_queued += 1;
        self.stats.messages_queued_now += 1;
        self.managers.get_mut(&m).unwrap().stats.messages_queued += 1;
        Ok(SendOutcome::Queued {
            queued_for: 1,
            closed_slow: 0,
        })
    }

    fn buffer_offline(&mut self, m: u64, msg: Msg) -> Result<SendOutcome, MErr> {
        let cap = self.cfg.offline_buffer as usize;
        if cap == 0 {
            return Err(MErr::NoConnections(Key::Id(m)));
        }
        if self.managers[&m].offline.len() >= cap {
            return Err(MErr::LimitReached(Limit::OfflineBuffer));
        }
        if self.free_queue_slots() == 0 {
            return Err(MErr::LimitReached(Limit::QueueSlots));
        }
        let mgr = self.managers.get_mut(&m).unwrap();
        mgr.offline.push_back(msg);
        mgr.stats.offline_now += 1;
        mgr.stats.offline_buffered += 1;
        let buffered = mgr.offline.len() as u32;
        self.stats.offline_buffered += 1;
        self.stats.offline_now += 1;
        Ok(SendOutcome::Buffered { buffered })
    }

    fn fan_out(&mut self, m: u64, msg: Msg, now: u64) -> Result<SendOutcome, MErr> {
        let depth = self.cfg.queue_depth as usize;
        let open = self.managers[&m].open.clone();
        let full: Vec<u64> = open
            .iter()
            .copied()
            .filter(|c| self.conns[c].queue.len() >= depth)
            .collect();
        if let (Some(first), SlowConsumerPolicy::RejectSend) =
            (full.first(), self.cfg.slow_consumer)
        {
            return Err(MErr::QueueFull(Key::Id(*first)));
        }
        let wanted = (open.len() - full.len()) as u32;
        if self.free_queue_slots() < wanted {
            return Err(MErr::LimitReached(Limit::QueueSlots));
        }
        let slow = CloseFrame::new(CloseCode::TRY_AGAIN_LATER, CloseReason::SlowConsumer);
        for c in open {
            if full.contains(&c) {
                self.begin_close(c, slow, now);
                continue;
            }
            let conn = self.conns.get_mut(&c).unwrap();
            let was_empty = conn.queue.is_empty();
            conn.queue.push_back(msg);
            if was_empty {
                self.flag(c, false);
            }
        }
        let (w, f) = (u64::from(wanted), full.len() as u32);
        self.stats.messages_queued += w;
        self.stats.messages_queued_now += w;
        self.stats.messages_closed_slow += u64::from(f);
        let st = &mut self.managers.get_mut(&m).unwrap().stats;
        st.messages_queued += wanted;
        st.messages_closed_slow += f;
        Ok(SendOutcome::Queued {
            queued_for: wanted,
            closed_slow: f,
        })
    }

    /// `deactivate`: closes every open connection (1000), discards the
    /// offline buffer, and the manager is gone for good.
    pub fn deactivate(&mut self, manager: Key, now: u64) -> Result<u32, MErr> {
        let now = self.tick(now);
        let m = self.checked_manager(manager)?;
        if self.lifecycle.len() >= self.caps.events {
            let e = MErr::EventsPending;
            self.count(&e);
            return Err(e);
        }
        let open = self.managers[&m].open.clone();
        let close = CloseFrame::new(CloseCode::NORMAL, CloseReason::ManagerDeactivated);
        for c in &open {
            self.begin_close(*c, close, now);
        }
        let discarded_offline = self.retire(m);
        self.stats.managers_deactivated += 1;
        self.lifecycle.push_back(MEvent::ManagerDeactivated {
            manager,
            closed_connections: open.len() as u32,
            discarded_offline,
        });
        Ok(open.len() as u32)
    }

    fn idle_order(&self) -> Vec<u64> {
        let mut open: Vec<(u64, u64)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.state == State::Open)
            .map(|(id, c)| (c.touch, *id))
            .collect();
        open.sort_unstable();
        open.into_iter().map(|(_, id)| id).collect()
    }

    fn empty_order(&self) -> Vec<u64> {
        let mut empty: Vec<(u64, u64)> = self
            .managers
            .iter()
            .filter_map(|(id, m)| m.empty.map(|(_, stamp)| (stamp, *id)))
            .collect();
        empty.sort_unstable();
        empty.into_iter().map(|(_, id)| id).collect()
    }

    /// `close_all`: every open connection of every user, in idle order.
    pub fn close_all(&mut self, close: CloseFrame, now: u64) -> u32 {
        let now = self.tick(now);
        let order = self.idle_order();
        for c in &order {
            self.begin_close(*c, close, now);
        }
        order.len() as u32
    }

    /// `handle_activity`: an open connection is touched; a closing one is not.
    pub fn handle_activity(&mut self, conn: Key, now: u64) -> Result<(), MErr> {
        let now = self.tick(now);
        let c = self.conn_id(conn).inspect_err(|e| self.count(e))?;
        if self.conns[&c].state == State::Open {
            let touch = self.next_stamp();
            let conn = self.conns.get_mut(&c).unwrap();
            conn.last_activity = now;
            conn.touch = touch;
        }
        Ok(())
    }

    /// `handle_inbound`: an open connection's message is activity, then it
    /// fits all four buckets (and takes from each) or is refused whole and
    /// earns a strike; at `inbound_strikes` the connection closes with 1008.
    pub fn handle_inbound(&mut self, conn: Key, bytes: u64, now: u64) -> Result<Inbound, MErr> {
        let now = self.tick(now);
        let c = self.conn_id(conn).inspect_err(|e| self.count(e))?;
        if self.conns[&c].state != State::Open {
            let e = MErr::ConnectionClosing(conn);
            self.count(&e);
            return Err(e);
        }
        let touch = self.next_stamp();
        let owner = self.conns[&c].owner;
        let user = self.managers[&owner].budget;
        let cn = self.conns.get_mut(&c).unwrap();
        cn.last_activity = now;
        cn.touch = touch;
        let refused = if !cn.budget.messages.fits(1, now) {
            Some(InboundLimit::ConnectionMessages)
        } else if !cn.budget.bytes.fits(bytes, now) {
            Some(InboundLimit::ConnectionBytes)
        } else if !user.messages.fits(1, now) {
            Some(InboundLimit::UserMessages)
        } else if !user.bytes.fits(bytes, now) {
            Some(InboundLimit::UserBytes)
        } else {
            None
        };
        let Some(limit) = refused else {
            cn.budget.messages.take(1, now);
            cn.budget.bytes.take(bytes, now);
            let u = &mut self.managers.get_mut(&owner).unwrap().budget;
            u.messages.take(1, now);
            u.bytes.take(bytes, now);
            self.stats.inbound_accepted += 1;
            return Ok(Inbound::Accepted);
        };
        let forgiven = now / 1000 - cn.strikes_at / 1000;
        cn.strikes = cn.strikes.saturating_sub(forgiven) + 1;
        cn.strikes_at = now;
        let strikes = cn.strikes;
        let s = &mut self.stats;
        match limit {
            InboundLimit::ConnectionMessages => s.inbound_refused_connection_messages += 1,
            InboundLimit::ConnectionBytes => s.inbound_refused_connection_bytes += 1,
            InboundLimit::UserMessages => s.inbound_refused_user_messages += 1,
            InboundLimit::UserBytes => s.inbound_refused_user_bytes += 1,
        }
        if strikes < u64::from(self.cfg.inbound_strikes) {
            return Ok(Inbound::Refused(limit));
        }
        let close = CloseFrame::new(CloseCode::POLICY_VIOLATION, CloseReason::InboundFlood);
        self.begin_close(c, close, now);
        Ok(Inbound::Closed(limit))
    }

    /// `handle_closed`: the socket is gone; the slot is freed in any state.
    pub fn handle_closed(&mut self, conn: Key, now: u64) -> Result<Released, MErr> {
        let now = self.tick(now);
        let c = self.conn_id(conn).inspect_err(|e| self.count(e))?;
        Ok(self.release(c, false, now))
    }

    /// `handle_timeout`: idle connections close first, then empty managers
    /// past their time are reclaimed while the lifecycle queue has room.
    pub fn handle_timeout(&mut self, now: u64) {
        let now = self.tick(now);
        if let Some(idle) = self.cfg.idle_timeout_ms {
            for c in self.idle_order() {
                if self.conns[&c].last_activity.saturating_add(idle) > now {
                    break;
                }
                let close = CloseFrame::new(CloseCode::NORMAL, CloseReason::IdleTimeout);
                self.begin_close(c, close, now);
            }
        }
        if let Some(ttl) = self.cfg.empty_manager_ttl_ms {
            for m in self.empty_order() {
                let (since, _) = self.managers[&m].empty.unwrap();
                if since.saturating_add(ttl) > now || self.lifecycle.len() >= self.caps.events {
                    break;
                }
                let discarded_offline = self.retire(m);
                self.stats.managers_reclaimed += 1;
                self.lifecycle.push_back(MEvent::ManagerReclaimed {
                    manager: Key::Id(m),
                    discarded_offline,
                });
            }
        }
    }

    /// `poll_timeout`: the earliest idle deadline or reclamation deadline.
    pub fn poll_timeout(&self) -> Option<u64> {
        let idle = self.cfg.idle_timeout_ms.and_then(|t| {
            self.conns
                .values()
                .filter(|c| c.state == State::Open)
                .map(|c| c.last_activity.saturating_add(t))
                .min()
        });
        let empty = self.cfg.empty_manager_ttl_ms.and_then(|t| {
            self.managers
                .values()
                .filter_map(|m| m.empty.map(|(since, _)| since.saturating_add(t)))
                .min()
        });
        match (idle, empty) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// `poll_transmit`: queued messages in order, then the close once;
    /// an error once the connection is gone (not counted).
    pub fn poll_transmit(&mut self, conn: Key) -> Result<Option<MTransmit>, MErr> {
        let c = self.conn_id(conn)?;
        let conn = self.conns.get_mut(&c).unwrap();
        if let Some(msg) = conn.queue.pop_front() {
            self.stats.messages_transmitted += 1;
            self.stats.messages_queued_now -= 1;
            return Ok(Some(MTransmit::Message(msg)));
        }
        Ok(match conn.state {
            State::Closing { close, sent: false } => {
                conn.state = State::Closing { close, sent: true };
                Some(MTransmit::Close(close))
            }
            _ => None,
        })
    }

    /// `poll_event`: lifecycle events, then connection events oldest first.
    pub fn poll_event(&mut self) -> Option<MEvent> {
        if let Some(e) = self.lifecycle.pop_front() {
            return Some(e);
        }
        let c = self.conn_events.pop_front()?;
        let conn = self.conns.get_mut(&c).unwrap();
        let event = match conn.state {
            State::Closing { close, .. } if conn.closed_flag => MEvent::ConnectionClosed {
                connection: Key::Id(c),
                manager: Key::Id(conn.owner),
                close,
            },
            _ => MEvent::Transmit(Key::Id(c)),
        };
        conn.ready = false;
        conn.closed_flag = false;
        Some(event)
    }

    /// `drain_events`: every pending event, in `poll_event`'s order.
    pub fn drain_events(&mut self) -> Vec<MEvent> {
        core::iter::from_fn(|| self.poll_event()).collect()
    }

    // ----- queries -----

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The latest instant seen.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The limits.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The capacities.
    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// The active manager of a user.
    pub fn manager_for_user(&self, user_id: &str) -> Option<Key> {
        self.by_user.get(user_id).map(|m| Key::Id(*m))
    }

    /// Active managers, oldest first.
    pub fn active_managers(&self) -> Vec<Key> {
        let mut ids: Vec<u64> = self.managers.keys().copied().collect();
        ids.sort_unstable();
        ids.into_iter().map(Key::Id).collect()
    }

    /// Live connections (open or closing), oldest first.
    pub fn live_connections(&self) -> Vec<Key> {
        let mut ids: Vec<u64> = self.conns.keys().copied().collect();
        ids.sort_unstable();
        ids.into_iter().map(Key::Id).collect()
    }

    /// Whether the key names an active manager.
    pub fn is_active(&self, manager: Key) -> bool {
        self.manager_id(manager).is_ok()
    }

    /// The context a manager was created with.
    pub fn context(&self, manager: Key) -> Result<&UserContext, MErr> {
        Ok(&self.managers[&self.manager_id(manager)?].ctx)
    }

    /// The manager's counters.
    pub fn manager_stats(&self, manager: Key) -> Result<ManagerStats, MErr> {
        Ok(self.managers[&self.manager_id(manager)?].stats)
    }

    /// Since when the manager has had no open connection.
    pub fn empty_since(&self, manager: Key) -> Result<Option<u64>, MErr> {
        Ok(self.managers[&self.manager_id(manager)?]
            .empty
            .map(|(since, _)| since))
    }

    /// Open connections of the manager, oldest first.
    pub fn connections(&self, manager: Key) -> Result<Vec<Key>, MErr> {
        Ok(self.managers[&self.manager_id(manager)?]
            .open
            .iter()
            .map(|c| Key::Id(*c))
            .collect())
    }

    /// The owner of a live connection.
    pub fn owner_of(&self, conn: Key) -> Result<Key, MErr> {
        Ok(Key::Id(self.conns[&self.conn_id(conn)?].owner))
    }

    /// Whether the connection is open.
    pub fn is_open(&self, conn: Key) -> bool {
        self.conn_id(conn)
            .is_ok_and(|c| self.conns[&c].state == State::Open)
    }

    /// Messages waiting for the connection.
    pub fn queued(&self, conn: Key) -> Result<u32, MErr> {
        Ok(self.conns[&self.conn_id(conn)?].queue.len() as u32)
    }
}
