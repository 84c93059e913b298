//! Property tests: random operation sequences over a few users and
//! connections with tiny capacities, so that every limit is hit.
//!
//! A reference model runs beside the factory. It predicts the exact result of
//! every command (including each error variant), the exact queue of every
//! connection and each user's offline buffer, and after every step the
//! invariants are checked:
//!
//! - counts never exceed the configured limits, and stats add up
//!   (`Stats::is_consistent`, the pool's free slots, the model's totals);
//! - a transmitted message always belongs to the connection's owner (payloads
//!   carry their user) and arrives in order, with nothing lost or duplicated;
//! - no live handle aliases another, and no handle is ever issued twice;
//! - every close is reported once and transmitted once, and every connection
//!   with something to write has had its writer woken by an event.
//!
//! Operations: create, add (sometimes claiming another user), remove, close,
//! `send_to_user`, `send_to_connection`, deactivate, `close_all`, activity,
//! `handle_closed`, time passing (and going backwards) with
//! `handle_timeout`, draining events, partial `poll_transmit` drains. Handles
//! are picked from every one ever issued, so stale and foreign handles are
//! exercised too. Each case ends with a full drain: everything accepted is
//! then either transmitted or counted as dropped.

mod common;

use std::collections::{HashMap, HashSet, VecDeque};

use common::t;
use proptest::prelude::*;
use userlane_core::{
    CloseCode, CloseReason, Config, ConnectionHandle, Error, Event, InboundLimits, Limit,
    ManagerFactory, ManagerHandle, Released, SendOutcome, SlotIndex, SlowConsumerPolicy, Transmit,
    UserContext, Violation,
};

const USERS: usize = 3;
const CONNS: usize = 4;
const SLOTS: usize = 4;
const EVENTS: usize = 2;
/// One more user than manager slots, so the user limit is reached.
const NAMES: [&str; 4] = ["u0", "u1", "u2", "u3"];

/// (user index, per-user sequence number).
type Payload = (u8, u32);
type Lanes<I> = ManagerFactory<Payload, USERS, CONNS, SLOTS, EVENTS, I>;

#[derive(Debug, Clone)]
enum Op {
    /// `create_manager` for a user.
    Create(u8),
    /// `add_connection` through a manager handle (any ever issued); claims
    /// another user when `claim % 5 == 0`.
    Add {
        via: u8,
        claim: u8,
    },
    /// `remove_connection` through a manager handle.
    Remove {
        via: u8,
        conn: u8,
    },
    /// `close_connection` through a manager handle.
    Close {
        via: u8,
        conn: u8,
        code: bool,
    },
    /// `send_to_connection` through a manager handle.
    SendConn {
        via: u8,
        conn: u8,
    },
    /// `send_to_user` through a manager handle.
    Send(u8),
    /// `send_to_user` through the newest handle of a user.
    SendUser(u8),
    Deactivate(u8),
    Activity(u8),
    Closed(u8),
    /// Time passes, then `handle_timeout`.
    Tick(u16),
    /// `handle_timeout` with an instant in the past.
    TickBack(u16),
    /// Drain the events: `poll_event` until `None`, or (`true`) one
    /// `drain_events` call.
    Events(bool),
    /// Up to `max` `poll_transmit` calls on one connection.
    Transmit {
        conn: u8,
        max: u8,
    },
    CloseAll,
}

fn op() -> impl Strategy<Value = Op> {
    let b = any::<u8>;
    prop_oneof![
        3 => b().prop_map(Op::Create),
        3 => (b(), b()).prop_map(|(via, claim)| Op::Add { via, claim }),
        1 => (b(), b()).prop_map(|(via, conn)| Op::Remove { via, conn }),
        1 => (b(), b(), any::<bool>()).prop_map(|(via, conn, code)| Op::Close { via, conn, code }),
        2 => b().prop_map(Op::Send),
        2 => (b(), b()).prop_map(|(via, conn)| Op::SendConn { via, conn }),
        4 => b().prop_map(Op::SendUser),
        1 => b().prop_map(Op::Deactivate),
        1 => b().prop_map(Op::Activity),
        1 => b().prop_map(Op::Closed),
        2 => (0u16..200).prop_map(Op::Tick),
        1 => (0u16..200).prop_map(Op::TickBack),
        2 => any::<bool>().prop_map(Op::Events),
        3 => (b(), 1u8..5).prop_map(|(conn, max)| Op::Transmit { conn, max }),
        1 => Just(Op::CloseAll),
    ]
}

fn config() -> impl Strategy<Value = Config> {
    (
        1u32..=3,
        1u32..=4,
        1u32..=3,
        0u32..=3,
        any::<bool>(),
        proptest::option::weighted(0.8, 50u64..1_500),
        proptest::option::weighted(0.8, 50u64..1_500),
        any::<u32>(),
    )
        .prop_flat_map(
            |(max_users, max_connections, queue_depth, offline, close_slow, idle, ttl, seed)| {
                (1..=max_connections).prop_map(move |per_user| Config {
                    max_users,
                    max_connections_per_user: per_user,
                    max_connections,
                    queue_depth,
                    offline_buffer: offline.min(queue_depth),
                    slow_consumer: if close_slow {
                        SlowConsumerPolicy::CloseSlowConnection
                    } else {
                        SlowConsumerPolicy::RejectSend
                    },
                    idle_timeout_ms: idle,
                    empty_manager_ttl_ms: ttl,
                    hash_seed: seed,
                    factory_tag: seed.rotate_left(7),
                    max_offline_managers: max_users,
                    inbound_per_connection: InboundLimits::UNLIMITED,
                    inbound_per_user: InboundLimits::UNLIMITED,
                    inbound_strikes: 1,
                })
            },
        )
}

struct Mgr {
    handle: ManagerHandle,
    user: u8,
    /// Sequence numbers waiting in the offline buffer, oldest first.
    offline: VecDeque<u32>,
    /// What a `ManagerDeactivated` event must report: (closed, discarded).
    deactivated: Option<(u32, u32)>,
    reclaimed_seen: bool,
}

struct Conn {
    handle: ConnectionHandle,
    user: u8,
    owner: ManagerHandle,
    released: bool,
    close_reported: bool,
    close_sent: bool,
    /// An event woke this connection's writer, which has not seen `None`
    /// from `poll_transmit` since.
    woken: bool,
    /// Sequence numbers queued for this connection, oldest first.
    expected: VecDeque<u32>,
}

struct Model<I: SlotIndex> {
    f: Lanes<I>,
    config: Config,
    now: u64,
    mgrs: Vec<Mgr>,
    conns: Vec<Conn>,
    conn_ix: HashMap<ConnectionHandle, usize>,
    seq: [u32; NAMES.len()],
    /// Lifecycle events waiting in the factory's queue.
    pending_lifecycle: usize,
    transmitted: u64,
    dropped: u64,
}

fn ctx(user: u8) -> UserContext {
    UserContext::new(NAMES[user as usize], "thread", "run", "req").unwrap()
}

impl<I: SlotIndex> Model<I> {
    fn new(config: Config) -> Self {
        Model {
            f: Lanes::<I>::new(config).expect("generated configs are valid"),
            config,
            now: 0,
            mgrs: Vec::new(),
            conns: Vec::new(),
            conn_ix: HashMap::new(),
            seq: [0; NAMES.len()],
            pending_lifecycle: 0,
            transmitted: 0,
            dropped: 0,
        }
    }

    fn now(&self) -> userlane_core::Instant {
        t(self.now)
    }

    /// Usually an active manager, sometimes any ever issued (possibly dead).
    fn pick_mgr(&self, via: u8) -> Option<usize> {
        let active: Vec<usize> = (0..self.mgrs.len())
            .filter(|&i| self.f.is_active(self.mgrs[i].handle))
            .collect();
        if via % 4 != 0 && !active.is_empty() {
            Some(active[(via / 4) as usize % active.len()])
        } else if !self.mgrs.is_empty() {
            Some((via / 4) as usize % self.mgrs.len())
        } else {
            None
        }
    }

    /// Usually a live connection, sometimes any ever issued (possibly stale).
    fn pick_conn(&self, pick: u8) -> Option<usize> {
        let live: Vec<usize> = (0..self.conns.len())
            .filter(|&i| !self.conns[i].released)
            .collect();
        if pick % 4 != 0 && !live.is_empty() {
            Some(live[(pick / 4) as usize % live.len()])
        } else if !self.conns.is_empty() {
            Some((pick / 4) as usize % self.conns.len())
        } else {
            None
        }
    }

    fn open_conns(&self, h: ManagerHandle) -> Vec<ConnectionHandle> {
        self.f
            .connections(h)
            .map(|i| i.collect())
            .unwrap_or_default()
    }

    fn live_conns(&self) -> usize {
        self.conns.iter().filter(|c| !c.released).count()
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Create(user) => self.create(user % NAMES.len() as u8),
            Op::Add { via, claim } => {
                if let Some(m) = self.pick_mgr(via) {
                    let user = self.mgrs[m].user;
                    let claim_user = if claim % 5 == 0 {
                        (user + 1 + claim % 3) % NAMES.len() as u8
                    } else {
                        user
                    };
                    self.add(m, claim_user);
                }
            }
            Op::Remove { via, conn } => {
                if let (Some(m), Some(c)) = (self.pick_mgr(via), self.pick_conn(conn)) {
                    self.remove_or_close(m, c, None);
                }
            }
            Op::Close { via, conn, code } => {
                if let (Some(m), Some(c)) = (self.pick_mgr(via), self.pick_conn(conn)) {
                    let code = if code {
                        CloseCode::NORMAL
                    } else {
                        CloseCode::new(4000).unwrap()
                    };
                    self.remove_or_close(m, c, Some(code));
                }
            }
            Op::Send(via) => {
                if let Some(m) = self.pick_mgr(via) {
                    self.send(m);
                }
            }
            Op::SendConn { via, conn } => {
                if let (Some(m), Some(c)) = (self.pick_mgr(via), self.pick_conn(conn)) {
                    self.send_to_connection(m, c);
                }
            }
            Op::SendUser(user) => {
                let user = user % NAMES.len() as u8;
                // The user's active manager, else its newest (dead) handle.
                let active = self.f.manager_for_user(NAMES[user as usize]);
                let m = match active {
                    Some(h) => self.mgrs.iter().position(|m| m.handle == h),
                    None => self.mgrs.iter().rposition(|m| m.user == user),
                };
                if let Some(m) = m {
                    self.send(m);
                }
            }
            Op::Deactivate(via) => {
                if let Some(m) = self.pick_mgr(via) {
                    self.deactivate(m);
                }
            }
            Op::Activity(pick) => {
                if let Some(c) = self.pick_conn(pick) {
                    let h = self.conns[c].handle;
                    let was_open = self.f.is_open(h);
                    let r = self.f.handle_activity(h, self.now());
                    if self.conns[c].released {
                        assert_eq!(r, Err(Error::UnknownConnection(h)));
                    } else {
                        assert_eq!(r, Ok(()));
                        assert_eq!(self.f.is_open(h), was_open);
                    }
                }
            }
            Op::Closed(pick) => {
                if let Some(c) = self.pick_conn(pick) {
                    self.closed(c);
                }
            }
            Op::Tick(ms) => {
                self.now += u64::from(ms);
                self.timeout(self.now);
            }
            Op::TickBack(ms) => self.timeout(self.now.saturating_sub(u64::from(ms))),
            Op::Events(drain) => self.events(drain),
            Op::Transmit { conn, max } => {
                if let Some(c) = self.pick_conn(conn) {
                    self.transmit(c, max as usize);
                }
            }
            Op::CloseAll => {
                let active = self.f.stats().connections_active;
                let closed = self.f.close_all(
                    userlane_core::CloseFrame::new(
                        CloseCode::GOING_AWAY,
                        CloseReason::ServerShutdown,
                    ),
                    self.now(),
                );
                assert_eq!(u64::from(closed), active);
                assert_eq!(self.f.stats().connections_active, 0);
            }
        }
    }

    fn create(&mut self, user: u8) {
        let current = self
            .mgrs
            .iter()
            .rev()
            .find(|m| m.user == user && self.f.is_active(m.handle))
            .map(|m| m.handle);
        let before = self.f.stats();
        let r = self.f.create_manager(ctx(user), self.now());
        if let Some(h) = current {
            assert_eq!(r, Ok(h));
            assert_eq!(self.f.stats(), before);
            return;
        }
        if before.managers_active >= u64::from(self.config.max_users) {
            assert_eq!(r, Err(Error::LimitReached(Limit::Users)));
        } else if self.pending_lifecycle == EVENTS {
            assert_eq!(r, Err(Error::EventsPending));
        } else {
            let h = r.expect("a free manager slot and room for the event");
            assert!(
                self.mgrs.iter().all(|m| m.handle != h),
                "manager handle {h:?} issued twice"
            );
            assert_eq!(self.f.manager_for_user(NAMES[user as usize]), Some(h));
            self.pending_lifecycle += 1;
            self.mgrs.push(Mgr {
                handle: h,
                user,
                offline: VecDeque::new(),
                deactivated: None,
                reclaimed_seen: false,
            });
        }
    }

    fn add(&mut self, m: usize, claim_user: u8) {
        let h = self.mgrs[m].handle;
        let active = self.f.is_active(h);
        let count = self.f.connection_count(h).unwrap_or(0);
        let stats = self.f.stats();
        let r = self.f.add_connection(h, &ctx(claim_user), self.now());
        if !active {
            assert_eq!(r, Err(Error::ManagerInactive(h)));
        } else if claim_user != self.mgrs[m].user {
            assert_eq!(
                r,
                Err(Error::IsolationViolation {
                    manager: h,
                    violation: Violation::ForeignUser
                })
            );
        } else if count >= self.config.max_connections_per_user {
            assert_eq!(r, Err(Error::LimitReached(Limit::ConnectionsPerUser)));
        } else if stats.connections_active >= u64::from(self.config.max_connections)
            || self.live_conns() == CONNS
        {
            assert_eq!(r, Err(Error::LimitReached(Limit::Connections)));
        } else {
            let c = r.expect("room for a connection");
            assert!(
                !self.conn_ix.contains_key(&c),
                "connection handle {c:?} issued twice"
            );
            let expected = if count == 0 {
                core::mem::take(&mut self.mgrs[m].offline)
            } else {
                assert!(self.mgrs[m].offline.is_empty());
                VecDeque::new()
            };
            assert_eq!(self.f.queued(c), Ok(expected.len() as u32));
            self.conn_ix.insert(c, self.conns.len());
            self.conns.push(Conn {
                handle: c,
                user: self.mgrs[m].user,
                owner: h,
                released: false,
                close_reported: false,
                close_sent: false,
                woken: false,
                expected,
            });
        }
    }

    /// `remove_connection` (`code == None`) or `close_connection`.
    fn remove_or_close(&mut self, m: usize, c: usize, code: Option<CloseCode>) {
        let h = self.mgrs[m].handle;
        let ch = self.conns[c].handle;
        let active = self.f.is_active(h);
        let was_open = self.f.is_open(ch);
        let now = self.now();
        let r = match code {
            None => self.f.remove_connection(h, ch, now).map(Some),
            Some(code) => self.f.close_connection(h, ch, code, now).map(|()| None),
        };
        let conn = &mut self.conns[c];
        if !active {
            assert_eq!(r, Err(Error::ManagerInactive(h)));
        } else if conn.released {
            assert_eq!(r, Err(Error::UnknownConnection(ch)));
        } else if conn.owner != h {
            assert_eq!(
                r,
                Err(Error::IsolationViolation {
                    manager: h,
                    violation: Violation::ForeignConnection { owner: conn.owner }
                })
            );
            assert_eq!(self.f.is_open(ch), was_open);
        } else if code.is_some() && !was_open {
            assert_eq!(r, Err(Error::ConnectionClosing(ch)));
        } else if code.is_some() {
            assert_eq!(r, Ok(None));
            assert!(!self.f.is_open(ch));
            assert_eq!(self.f.queued(ch), Ok(conn.expected.len() as u32));
        } else {
            let undelivered = conn.expected.len() as u32;
            assert_eq!(r, Ok(Some(Released { undelivered })));
            self.dropped += u64::from(undelivered);
            conn.expected.clear();
            conn.released = true;
        }
    }

    fn send(&mut self, m: usize) {
        let h = self.mgrs[m].handle;
        let user = self.mgrs[m].user;
        self.seq[user as usize] += 1;
        let seq = self.seq[user as usize];
        let active = self.f.is_active(h);
        let open = self.open_conns(h);
        let queued: Vec<u32> = open.iter().map(|&c| self.f.queued(c).unwrap()).collect();
        let free = self.f.free_queue_slots();
        let depth = self.config.queue_depth;
        let r = self.f.send_to_user(h, (user, seq), self.now());
        // A refusal hands the payload back untouched.
        if let Err(e) = &r {
            assert_eq!(e.payload, (user, seq));
        }
        let r = r.map_err(Error::from);

        if !active {
            assert_eq!(r, Err(Error::ManagerInactive(h)));
            return;
        }
        // The exact outcome, predicted.
        let offline = &mut self.mgrs[m].offline;
        if open.is_empty() {
            let cap = self.config.offline_buffer;
            if cap == 0 {
                assert_eq!(r, Err(Error::NoConnections(h)));
            } else if offline.len() as u32 >= cap {
                assert_eq!(r, Err(Error::LimitReached(Limit::OfflineBuffer)));
            } else if free == 0 {
                assert_eq!(r, Err(Error::LimitReached(Limit::QueueSlots)));
            } else {
                offline.push_back(seq);
                assert_eq!(
                    r,
                    Ok(SendOutcome::Buffered {
                        buffered: offline.len() as u32
                    })
                );
            }
            return;
        }
        let full: Vec<usize> = (0..open.len()).filter(|&i| queued[i] >= depth).collect();
        let wanted = (open.len() - full.len()) as u32;
        let reject = self.config.slow_consumer == SlowConsumerPolicy::RejectSend;
        if reject && !full.is_empty() {
            assert_eq!(r, Err(Error::QueueFull(open[full[0]])));
        } else if free < wanted {
            assert_eq!(r, Err(Error::LimitReached(Limit::QueueSlots)));
        } else {
            assert_eq!(
                r,
                Ok(SendOutcome::Queued {
                    queued_for: wanted,
                    closed_slow: full.len() as u32
                })
            );
        }
        // Every connection of the user either got the message (once, at the
        // end of its queue), was closed as a slow consumer, or, if the send
        // was refused, is unchanged.
        for (i, &c) in open.iter().enumerate() {
            let conn = &mut self.conns[self.conn_ix[&c]];
            assert_eq!(conn.user, user);
            let now_queued = self.f.queued(c).unwrap();
            match r {
                Ok(_) if full.contains(&i) => {
                    assert!(!self.f.is_open(c));
                    assert_eq!(now_queued, queued[i]);
                }
                Ok(_) => {
                    assert!(self.f.is_open(c));
                    assert_eq!(now_queued, queued[i] + 1);
                    conn.expected.push_back(seq);
                }
                Err(_) => {
                    assert!(self.f.is_open(c));
                    assert_eq!(now_queued, queued[i]);
                }
            }
        }
    }

    fn send_to_connection(&mut self, m: usize, c: usize) {
        let h = self.mgrs[m].handle;
        let user = self.mgrs[m].user;
        self.seq[user as usize] += 1;
        let seq = self.seq[user as usize];
        let ch = self.conns[c].handle;
        let active = self.f.is_active(h);
        let was_open = self.f.is_open(ch);
        let queued = self.f.queued(ch).unwrap_or(0);
        let free = self.f.free_queue_slots();
        let r = self.f.send_to_connection(h, ch, (user, seq), self.now());
        if let Err(e) = &r {
            assert_eq!(e.payload, (user, seq));
        }
        let r = r.map_err(Error::from);

        let conn = &mut self.conns[c];
        let unchanged = if !active {
            assert_eq!(r, Err(Error::ManagerInactive(h)));
            true
        } else if conn.released {
            assert_eq!(r, Err(Error::UnknownConnection(ch)));
            true
        } else if conn.owner != h {
            assert_eq!(
                r,
                Err(Error::IsolationViolation {
                    manager: h,
                    violation: Violation::ForeignConnection { owner: conn.owner }
                })
            );
            true
        } else if !was_open {
            assert_eq!(r, Err(Error::ConnectionClosing(ch)));
            true
        } else if queued >= self.config.queue_depth {
            if self.config.slow_consumer == SlowConsumerPolicy::RejectSend {
                assert_eq!(r, Err(Error::QueueFull(ch)));
                true
            } else {
                assert_eq!(
                    r,
                    Ok(SendOutcome::Queued {
                        queued_for: 0,
                        closed_slow: 1
                    })
                );
                assert!(!self.f.is_open(ch));
                assert_eq!(self.f.queued(ch), Ok(queued));
                false
            }
        } else if free == 0 {
            assert_eq!(r, Err(Error::LimitReached(Limit::QueueSlots)));
            true
        } else {
            assert_eq!(
                r,
                Ok(SendOutcome::Queued {
                    queued_for: 1,
                    closed_slow: 0
                })
            );
            assert_eq!(self.f.queued(ch), Ok(queued + 1));
            conn.expected.push_back(seq);
            false
        };
        if unchanged && !conn.released {
            assert_eq!(self.f.is_open(ch), was_open);
            assert_eq!(self.f.queued(ch), Ok(queued));
        }
    }

    fn deactivate(&mut self, m: usize) {
        let h = self.mgrs[m].handle;
        let active = self.f.is_active(h);
        let open = self.open_conns(h);
        let r = self.f.deactivate(h, self.now());
        if !active {
            assert_eq!(r, Err(Error::ManagerInactive(h)));
        } else if self.pending_lifecycle == EVENTS {
            assert_eq!(r, Err(Error::EventsPending));
            assert!(self.f.is_active(h));
            assert_eq!(self.open_conns(h), open);
        } else {
            assert_eq!(r, Ok(open.len() as u32));
            assert!(!self.f.is_active(h));
            assert!(open.iter().all(|&c| !self.f.is_open(c)));
            let discarded = self.mgrs[m].offline.len() as u32;
            self.mgrs[m].offline.clear();
            self.mgrs[m].deactivated = Some((open.len() as u32, discarded));
            self.pending_lifecycle += 1;
            assert_eq!(
                self.f
                    .send_to_user(h, (self.mgrs[m].user, 0), self.now())
                    .map_err(Error::from),
                Err(Error::ManagerInactive(h))
            );
            assert_eq!(
                self.f.context(h).unwrap_err().to_string(),
                "manager is no longer active"
            );
        }
    }

    fn closed(&mut self, c: usize) {
        let h = self.conns[c].handle;
        let r = self.f.handle_closed(h, self.now());
        let conn = &mut self.conns[c];
        if conn.released {
            assert_eq!(r, Err(Error::UnknownConnection(h)));
        } else {
            let undelivered = conn.expected.len() as u32;
            assert_eq!(r, Ok(Released { undelivered }));
            self.dropped += u64::from(undelivered);
            conn.expected.clear();
            conn.released = true;
        }
    }

    fn timeout(&mut self, at: u64) {
        let latest = self.f.now();
        let reclaimed = self.f.stats().managers_reclaimed;
        self.f.handle_timeout(t(at));
        assert_eq!(self.f.now(), latest.max(t(at)));
        let new = (self.f.stats().managers_reclaimed - reclaimed) as usize;
        self.pending_lifecycle += new;
        assert!(self.pending_lifecycle <= EVENTS);
        // Whatever is due and not blocked by the event queue has run.
        if let Some(due) = self.f.poll_timeout() {
            assert!(
                due > self.f.now() || self.pending_lifecycle == EVENTS,
                "timer {due:?} due at {:?} was not run",
                self.f.now()
            );
        }
    }

    fn events(&mut self, drain: bool) {
        let mut drained = Vec::new();
        if drain {
            self.f.drain_events(|e| drained.push(e));
            assert_eq!(self.f.poll_event(), None, "drain_events left an event");
        }
        let mut drained = drained.into_iter();
        let mut polled = 0;
        while let Some(e) = if drain {
            drained.next()
        } else {
            self.f.poll_event()
        } {
            polled += 1;
            assert!(polled <= EVENTS + CONNS, "poll_event never returns None");
            match e {
                Event::ManagerCreated(h) => {
                    assert!(self.mgrs.iter().any(|m| m.handle == h));
                    self.pending_lifecycle -= 1;
                }
                Event::ManagerDeactivated {
                    manager,
                    closed_connections,
                    discarded_offline,
                } => {
                    let m = self.mgrs.iter().find(|m| m.handle == manager).unwrap();
                    assert_eq!(m.deactivated, Some((closed_connections, discarded_offline)));
                    self.pending_lifecycle -= 1;
                }
                Event::ManagerReclaimed {
                    manager,
                    discarded_offline,
                } => {
                    assert!(!self.f.is_active(manager));
                    let m = self.mgrs.iter_mut().find(|m| m.handle == manager).unwrap();
                    assert!(m.deactivated.is_none() && !m.reclaimed_seen);
                    assert_eq!(discarded_offline, m.offline.len() as u32);
                    m.offline.clear();
                    m.reclaimed_seen = true;
                    // Its connections, if any, were all closed before.
                    assert!(self
                        .conns
                        .iter()
                        .filter(|c| c.owner == manager && !c.released)
                        .all(|c| !self.f.is_open(c.handle)));
                    self.pending_lifecycle -= 1;
                }
                Event::Transmit(c) => {
                    let ix = self.conn_ix[&c];
                    let conn = &mut self.conns[ix];
                    assert!(!conn.released);
                    conn.woken = true;
                }
                Event::ConnectionClosed {
                    connection,
                    manager,
                    close,
                } => {
                    let ix = self.conn_ix[&connection];
                    assert!(!self.f.is_open(connection));
                    let conn = &mut self.conns[ix];
                    assert!(!conn.released);
                    assert_eq!(manager, conn.owner);
                    assert!(!conn.close_reported, "{connection:?} reported closed twice");
                    conn.close_reported = true;
                    conn.woken = true;
                    if close.reason == CloseReason::SlowConsumer {
                        assert_eq!(close.code, CloseCode::TRY_AGAIN_LATER);
                    }
                }
                other => panic!("unknown event {other:?}"),
            }
        }
        assert_eq!(self.pending_lifecycle, 0);
        // Every connection the core closed has been reported, and every
        // connection with something to write has had its writer woken.
        for conn in self.conns.iter().filter(|c| !c.released) {
            let open = self.f.is_open(conn.handle);
            assert_eq!(!open, conn.close_reported);
            let work = !conn.expected.is_empty() || (!open && !conn.close_sent);
            assert!(
                !work || conn.woken,
                "{:?} has work but no event",
                conn.handle
            );
        }
    }

    fn transmit(&mut self, c: usize, max: usize) {
        let h = self.conns[c].handle;
        for _ in 0..max {
            let open = self.f.is_open(h);
            let tx = self.f.poll_transmit(h);
            let conn = &mut self.conns[c];
            match tx {
                // Gone: only a released connection.
                Err(e) => {
                    assert!(conn.released);
                    assert_eq!(e, Error::UnknownConnection(h));
                    conn.woken = false;
                    break;
                }
                Ok(None) => {
                    conn.woken = false;
                    assert!(!conn.released && conn.expected.is_empty());
                    assert!(open || conn.close_sent);
                    break;
                }
                Ok(Some(Transmit::Message((user, seq)))) => {
                    assert!(!conn.released && !conn.close_sent);
                    // Isolation: only the owner's messages reach a connection.
                    assert_eq!(user, conn.user, "message of another user on {h:?}");
                    // Order: exactly the next message queued for it.
                    assert_eq!(conn.expected.pop_front(), Some(seq));
                    self.transmitted += 1;
                }
                Ok(Some(Transmit::Close(_))) => {
                    assert!(!conn.released && !open && !conn.close_sent);
                    assert!(conn.expected.is_empty());
                    conn.close_sent = true;
                }
            }
        }
    }

    /// The invariants that hold after every step.
    fn check(&self) {
        let f = &self.f;
        let s = f.stats();
        let cfg = &self.config;
        assert!(s.is_consistent(), "{s:#?}");
        assert!(s.managers_active <= u64::from(cfg.max_users));
        assert!(s.connections_active <= u64::from(cfg.max_connections));
        assert_eq!(
            u64::from(f.free_queue_slots()) + s.messages_queued_now + s.offline_now,
            SLOTS as u64
        );
        assert_eq!(s.messages_transmitted, self.transmitted);
        assert_eq!(s.messages_dropped, self.dropped);
        assert!(f.now() <= t(self.now));

        // Managers: one active per user, within limits, listing their own.
        let mut active_users = HashSet::new();
        let mut listed = 0u64;
        let mut offline = 0u64;
        for m in &self.mgrs {
            if !f.is_active(m.handle) {
                assert!(matches!(
                    f.manager_stats(m.handle),
                    Err(Error::ManagerInactive(_))
                ));
                continue;
            }
            assert!(m.deactivated.is_none() && !m.reclaimed_seen);
            assert!(
                active_users.insert(m.user),
                "two active managers for a user"
            );
            assert_eq!(f.manager_for_user(NAMES[m.user as usize]), Some(m.handle));
            let count = f.connection_count(m.handle).unwrap();
            assert!(count <= cfg.max_connections_per_user);
            let ms = f.manager_stats(m.handle).unwrap();
            assert_eq!(ms.connections, count);
            assert_eq!(ms.offline_now, m.offline.len() as u32);
            assert!(ms.offline_now <= cfg.offline_buffer);
            offline += u64::from(ms.offline_now);
            if count > 0 {
                assert_eq!(ms.offline_now, 0);
            }
            let open: Vec<_> = f.connections(m.handle).unwrap().collect();
            assert_eq!(open.len() as u32, count);
            for c in open {
                assert!(f.is_open(c));
                assert_eq!(f.owner_of(c), Ok(m.handle));
                assert_eq!(self.conns[self.conn_ix[&c]].owner, m.handle);
            }
            listed += u64::from(count);
        }
        assert_eq!(active_users.len() as u64, s.managers_active);
        assert_eq!(listed, s.connections_active);
        assert_eq!(offline, s.offline_now);

        // Connections: live handles are distinct and resolve to their owner;
        // released handles resolve to nothing.
        let mut live = HashSet::new();
        let (mut open, mut closing, mut queued) = (0u64, 0u64, 0u64);
        for conn in &self.conns {
            if conn.released {
                assert_eq!(
                    f.owner_of(conn.handle),
                    Err(Error::UnknownConnection(conn.handle))
                );
                assert!(!f.is_open(conn.handle));
                continue;
            }
            assert!(
                live.insert(conn.handle),
                "live handle {:?} aliased",
                conn.handle
            );
            assert_eq!(f.owner_of(conn.handle), Ok(conn.owner));
            let q = f.queued(conn.handle).unwrap();
            assert_eq!(q, conn.expected.len() as u32);
            assert!(q <= cfg.queue_depth);
            queued += u64::from(q);
            if f.is_open(conn.handle) {
                open += 1;
                assert!(!conn.close_sent);
            } else {
                closing += 1;
            }
        }
        assert!(live.len() <= CONNS);
        assert_eq!(open, s.connections_active);
        assert_eq!(closing, s.connections_closing);
        assert_eq!(queued, s.messages_queued_now);
    }

    /// The runtime's drain until everything queued is written and every
    /// closed socket released.
    fn drain_all(&mut self) {
        self.events(false);
        let live: Vec<usize> = (0..self.conns.len())
            .filter(|&i| !self.conns[i].released)
            .collect();
        for c in live {
            self.transmit(c, usize::MAX);
            if self.conns[c].close_sent {
                self.closed(c);
            }
        }
        self.check();
        // Writing and releasing raise no further event.
        assert_eq!(self.f.poll_event(), None);
        let s = self.f.stats();
        assert_eq!(s.messages_queued_now, 0);
        assert_eq!(s.connections_closing, 0);
        assert_eq!(
            s.messages_queued,
            s.messages_transmitted + s.messages_dropped
        );
    }
}

fn run<I: SlotIndex>(config: Config, ops: &[Op]) {
    let mut model = Model::<I>::new(config);
    model.check();
    for op in ops {
        model.apply(op);
        model.check();
    }
    model.drain_all();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operations_keep_every_invariant(
        config in config(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        run::<u32>(config, &ops);
    }

    #[test]
    fn random_operations_keep_every_invariant_with_u16_links(
        config in config(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        run::<u16>(config, &ops);
    }
}

/// Every limit and error the model predicts is reached by the generated
/// sequences often enough to matter (guards against a generator that
/// silently stops exercising them).
#[test]
fn the_generator_reaches_every_refusal() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let mut total = userlane_core::Stats::default();
    for _ in 0..256 {
        let config = config().new_tree(&mut runner).unwrap().current();
        let ops = proptest::collection::vec(op(), 60..120)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let mut model = Model::<u32>::new(config);
        for op in &ops {
            model.apply(op);
            model.check();
        }
        let s = model.f.stats();
        total.rejected_user_limit += s.rejected_user_limit;
        total.rejected_connections_per_user += s.rejected_connections_per_user;
        total.rejected_total_connections += s.rejected_total_connections;
        total.rejected_queue_full += s.rejected_queue_full;
        total.rejected_offline_full += s.rejected_offline_full;
        total.rejected_queue_slots += s.rejected_queue_slots;
        total.rejected_no_connections += s.rejected_no_connections;
        total.rejected_events_pending += s.rejected_events_pending;
        total.rejected_inactive_manager += s.rejected_inactive_manager;
        total.rejected_unknown_handle += s.rejected_unknown_handle;
        total.rejected_closing_connection += s.rejected_closing_connection;
        total.security_violations_detected += s.security_violations_detected;
        total.closed_idle_timeout += s.closed_idle_timeout;
        total.closed_slow_consumer += s.closed_slow_consumer;
        total.managers_reclaimed += s.managers_reclaimed;
        total.offline_replayed += s.offline_replayed;
        total.messages_transmitted += s.messages_transmitted;
    }
    let reached = [
        ("user limit", total.rejected_user_limit),
        ("connections per user", total.rejected_connections_per_user),
        ("total connections", total.rejected_total_connections),
        ("queue full", total.rejected_queue_full),
        ("offline full", total.rejected_offline_full),
        ("queue slots", total.rejected_queue_slots),
        ("no connections", total.rejected_no_connections),
        ("events pending", total.rejected_events_pending),
        ("inactive manager", total.rejected_inactive_manager),
        ("unknown handle", total.rejected_unknown_handle),
        ("closing connection", total.rejected_closing_connection),
        ("isolation violations", total.security_violations_detected),
        ("idle closes", total.closed_idle_timeout),
        ("slow-consumer closes", total.closed_slow_consumer),
        ("reclamations", total.managers_reclaimed),
        ("offline replays", total.offline_replayed),
        ("transmitted", total.messages_transmitted),
    ];
    for (what, n) in reached {
        eprintln!("{what}: {n}");
        assert!(n >= 5, "the generator reached {what} only {n} times");
    }
}
