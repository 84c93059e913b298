//! Runs a sequence of [`Op`]s against `userlane-core` and the reference
//! [`Model`] side by side, with tiny capacities so that every limit is hit.
//!
//! After every operation the harness requires:
//!
//! - **the same observable results**: every call's return value (error
//!   variants included, handles translated to model keys), every event, every
//!   transmitted item, the complete [`Stats`] and, for every live or recently
//!   used handle, every query (`context`, `manager_stats`, `empty_since`,
//!   `connections`, `connection_count`, `owner_of`, `is_open`, `queued`),
//!   plus `manager_for_user`, `poll_timeout`, `now` and `free_queue_slots`;
//! - **the invariants**, checked on the core alone: `stats().is_consistent()`;
//!   isolation (each message transmitted on a connection was sent to that
//!   connection's manager, connection lists of managers are disjoint and each
//!   listed connection is owned by its manager); per-connection order (each
//!   connection transmits messages in increasing send order and nothing after
//!   its close); limits (per-user, total, users, queue depth, table
//!   capacities); and the pool balance (free slots + queued + offline = `SLOTS`);
//! - no panic (a panic in the core propagates to the caller, which is how the
//!   fuzzer sees it).
//!
//! # Two factories
//!
//! The harness drives two factories of the same profile with distinct
//! [`TAGS`], each with its own model and bindings; `Op::Select` picks the
//! one later operations go to, and `MgrRef::Foreign` / `ConnRef::Foreign`
//! name handles of the other one, which the model refuses as never issued.
//! After every operation both factories are compared with their models, so
//! an operation on one that changes the other is caught too.
//!
//! # Mapping between core and model
//!
//! The core is more detailed than the model in one respect: handles carry a
//! table index and a generation. The harness binds each handle the core issues
//! to the model key issued by the same operation, one to one; a handle it
//! forges (`MgrRef::Forged`, `ConnRef::Forged`) is the model key of the
//! handle it equals if the core issued one, otherwise [`Key::Raw`], which the
//! model refuses as never issued; so is a handle of the other factory (its
//! tag differs, so it equals no handle of this one). Table indexes, hash buckets, the link type
//! `I` and the free lists are not modelled: they show only through handles.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use userlane_core::{
    CloseCode, CloseFrame, CloseReason, Config, ConnectionHandle, Error, Event, Inbound,
    InboundLimits, Instant, Lanes, ManagerFactory, ManagerHandle, ManagerStats, Rate, Released,
    SendError, SendOutcome, SlowConsumerPolicy, Stats, Transmit, UserContext, Violation,
};

use crate::model::{Caps, Key, MErr, MEvent, MTransmit, MViolation, Model, Msg};
use crate::ops::{ConnRef, MgrRef, Op, CLOSE_CODES, RECENT_CONNS, USER_IDS};

/// The open connections of `h`, oldest first, through the erased view.
fn connections(core: &dyn Lanes<Msg>, h: ManagerHandle) -> Result<Vec<ConnectionHandle>, Error> {
    let mut out = Vec::new();
    core.for_each_connection(h, &mut |c| out.push(c))?;
    Ok(out)
}

/// 3 users, 4 connections, 6 queued messages, 2 lifecycle events, `u16` links.
pub type SmallFactory = ManagerFactory<Msg, 3, 4, 6, 2, u16>;
/// 4 users, 6 connections, 12 queued messages, 4 lifecycle events, `u32` links.
pub type RoomyFactory = ManagerFactory<Msg, 4, 6, 12, 4>;

/// A configuration profile: capacities and limits.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// What it exercises.
    pub name: &'static str,
    /// The capacities of its factory type.
    pub caps: Caps,
    /// The runtime limits.
    pub config: Config,
    small: bool,
}

const SMALL: Caps = Caps {
    users: 3,
    conns: 4,
    slots: 6,
    events: 2,
};
const ROOMY: Caps = Caps {
    users: 4,
    conns: 6,
    slots: 12,
    events: 4,
};

/// The profiles `Op::Reset` chooses from (`profile % 4`); a run starts with 0.
pub const PROFILES: [Profile; 4] = [
    Profile {
        name: "small: reject-send, offline 2, idle 100 ms, empty ttl 50 ms, tight inbound budget",
        caps: SMALL,
        config: Config {
            max_users: 2,
            max_connections_per_user: 2,
            max_connections: 3,
            queue_depth: 2,
            offline_buffer: 2,
            slow_consumer: SlowConsumerPolicy::RejectSend,
            idle_timeout_ms: Some(100),
            empty_manager_ttl_ms: Some(50),
            hash_seed: 0,
            factory_tag: 0,
            max_offline_managers: 1,
            inbound_per_connection: InboundLimits {
                messages: Some(Rate::new(5, 2)),
                bytes: Some(Rate::new(200, 100)),
            },
            inbound_per_user: InboundLimits {
                messages: Some(Rate::new(8, 3)),
                bytes: None,
            },
            inbound_strikes: 3,
        },
        small: true,
    },
    Profile {
        name: "small: close-slow, no offline buffer, no timers, every user slot usable, no inbound budget, no offline managers",
        caps: SMALL,
        config: Config {
            max_users: 3,
            max_connections_per_user: 3,
            max_connections: 4,
            queue_depth: 3,
            offline_buffer: 0,
            slow_consumer: SlowConsumerPolicy::CloseSlowConnection,
            idle_timeout_ms: None,
            empty_manager_ttl_ms: None,
            hash_seed: 7,
            factory_tag: 0,
            max_offline_managers: 0,
            inbound_per_connection: InboundLimits::UNLIMITED,
            inbound_per_user: InboundLimits::UNLIMITED,
            inbound_strikes: 1,
        },
        small: true,
    },
    Profile {
        name: "roomy: close-slow, offline 1, idle 40 ms, empty managers reclaimed after 1 ms, user budgets",
        caps: ROOMY,
        config: Config {
            max_users: 3,
            max_connections_per_user: 2,
            max_connections: 5,
            queue_depth: 2,
            offline_buffer: 1,
            slow_consumer: SlowConsumerPolicy::CloseSlowConnection,
            idle_timeout_ms: Some(40),
            empty_manager_ttl_ms: Some(1),
            hash_seed: 1,
            factory_tag: 0,
            max_offline_managers: 2,
            inbound_per_connection: InboundLimits {
                messages: None,
                bytes: Some(Rate::new(1_000, 500)),
            },
            inbound_per_user: InboundLimits {
                messages: Some(Rate::new(2, 4)),
                bytes: Some(Rate::new(300, 200)),
            },
            inbound_strikes: 2,
        },
        small: false,
    },
    Profile {
        name: "roomy: reject-send, limits at capacity, idle 1 s, empty ttl 300 ms, 1 message/s",
        caps: ROOMY,
        config: Config {
            max_users: 4,
            max_connections_per_user: 4,
            max_connections: 6,
            queue_depth: 4,
            offline_buffer: 4,
            slow_consumer: SlowConsumerPolicy::RejectSend,
            idle_timeout_ms: Some(1000),
            empty_manager_ttl_ms: Some(300),
            hash_seed: 0xdead_beef,
            factory_tag: 0,
            max_offline_managers: 4,
            inbound_per_connection: InboundLimits {
                messages: Some(Rate::new(1, 1)),
                bytes: None,
            },
            inbound_per_user: InboundLimits {
                messages: None,
                bytes: Some(Rate::new(u32::MAX, u32::MAX)),
            },
            inbound_strikes: 5,
        },
        small: false,
    },
];

impl Profile {
    fn build(&self) -> Box<dyn Lanes<Msg>> {
        let fits = "every profile fits its capacities";
        if self.small {
            Box::new(SmallFactory::new(self.config).expect(fits))
        } else {
            Box::new(RoomyFactory::new(self.config).expect(fits))
        }
    }
}

/// What one call returned, in model terms (handles as [`Key`]s).
#[derive(Debug, Clone, PartialEq)]
pub enum Obs {
    /// A manager handle.
    Manager(Result<Key, MErr>),
    /// A connection handle.
    Conn(Result<Key, MErr>),
    /// `remove_connection` / `handle_closed`.
    Released(Result<Released, MErr>),
    /// A command with no value.
    Done(Result<(), MErr>),
    /// `send_to_user`.
    Sent(Result<SendOutcome, MErr>),
    /// `deactivate` / `connection_count` / `queued`.
    Count(Result<u32, MErr>),
    /// `close_all`.
    Closed(u32),
    /// `poll_event`.
    Event(Option<MEvent>),
    /// `poll_transmit` (an error: the connection is gone).
    Transmit(Result<Option<MTransmit>, MErr>),
    /// `poll_timeout` / `now` (milliseconds).
    Time(Option<u64>),
    /// `context`.
    Context(Result<Box<UserContext>, MErr>),
    /// `manager_stats`.
    ManagerStats(Result<ManagerStats, MErr>),
    /// `empty_since`.
    EmptySince(Result<Option<u64>, MErr>),
    /// `connections`.
    Connections(Result<Vec<Key>, MErr>),
    /// `manager_for_user`.
    Lookup(Option<Key>),
    /// `is_active` / `is_open`.
    Flag(bool),
    /// `stats`.
    Stats(Box<Stats>),
    /// `handle_inbound`.
    Inbound(Result<Inbound, MErr>),
    /// `drain_events`.
    Events(Vec<MEvent>),
    /// Nothing returned (`handle_timeout`, clock moves, skipped operations).
    Nothing,
}

fn err_name(e: &MErr) -> &'static str {
    match e {
        MErr::ManagerInactive(_) => "Err(ManagerInactive)",
        MErr::UnknownManager(_) => "Err(UnknownManager)",
        MErr::UnknownConnection(_) => "Err(UnknownConnection)",
        MErr::ConnectionClosing(_) => "Err(ConnectionClosing)",
        MErr::IsolationViolation {
            violation: MViolation::ForeignUser,
            ..
        } => "Err(IsolationViolation(ForeignUser))",
        MErr::IsolationViolation {
            violation: MViolation::ForeignConnection { .. },
            ..
        } => "Err(IsolationViolation(ForeignConnection))",
        MErr::LimitReached(l) => match l {
            userlane_core::Limit::Users => "Err(LimitReached(Users))",
            userlane_core::Limit::ConnectionsPerUser => "Err(LimitReached(ConnectionsPerUser))",
            userlane_core::Limit::Connections => "Err(LimitReached(Connections))",
            userlane_core::Limit::OfflineBuffer => "Err(LimitReached(OfflineBuffer))",
            userlane_core::Limit::QueueSlots => "Err(LimitReached(QueueSlots))",
            userlane_core::Limit::OfflineManagers => "Err(LimitReached(OfflineManagers))",
        },
        MErr::QueueFull(_) => "Err(QueueFull)",
        MErr::NoConnections(_) => "Err(NoConnections)",
        MErr::EventsPending => "Err(EventsPending)",
    }
}

fn res_name<T>(r: &Result<T, MErr>) -> &'static str {
    match r {
        Ok(_) => "Ok",
        Err(e) => err_name(e),
    }
}

impl Obs {
    /// A coarse name of the outcome, for coverage counts.
    pub fn outcome(&self) -> &'static str {
        match self {
            Obs::Manager(r) | Obs::Conn(r) => res_name(r),
            Obs::Released(r) => res_name(r),
            Obs::Done(r) => res_name(r),
            Obs::Sent(Ok(SendOutcome::Queued { closed_slow: 0, .. })) => "Ok(Queued)",
            Obs::Sent(Ok(SendOutcome::Queued { .. })) => "Ok(Queued, closed slow)",
            Obs::Sent(Ok(SendOutcome::Buffered { .. })) => "Ok(Buffered)",
            Obs::Sent(r) => res_name(r),
            Obs::Count(r) => res_name(r),
            Obs::Closed(0) => "0",
            Obs::Closed(_) => "some",
            Obs::Event(None) | Obs::Transmit(Ok(None)) | Obs::Time(None) | Obs::Lookup(None) => {
                "None"
            }
            Obs::Transmit(r @ Err(_)) => res_name(r),
            Obs::Event(Some(e)) => match e {
                MEvent::Transmit(_) => "Transmit",
                MEvent::ConnectionClosed { close, .. } => match close.reason {
                    CloseReason::IdleTimeout => "ConnectionClosed(IdleTimeout)",
                    CloseReason::SlowConsumer => "ConnectionClosed(SlowConsumer)",
                    CloseReason::ManagerDeactivated => "ConnectionClosed(ManagerDeactivated)",
                    CloseReason::Application => "ConnectionClosed(Application)",
                    CloseReason::ServerShutdown => "ConnectionClosed(ServerShutdown)",
                    CloseReason::InboundFlood => "ConnectionClosed(InboundFlood)",
                    _ => "ConnectionClosed(?)",
                },
                MEvent::ManagerCreated(_) => "ManagerCreated",
                MEvent::ManagerDeactivated { .. } => "ManagerDeactivated",
                MEvent::ManagerReclaimed { .. } => "ManagerReclaimed",
            },
            Obs::Transmit(Ok(Some(MTransmit::Message(_)))) => "Message",
            Obs::Transmit(Ok(Some(MTransmit::Close(_)))) => "Close",
            Obs::Time(Some(_)) | Obs::Lookup(Some(_)) => "Some",
            Obs::Context(r) => res_name(r),
            Obs::ManagerStats(r) => res_name(r),
            Obs::EmptySince(r) => res_name(r),
            Obs::Connections(r) => res_name(r),
            Obs::Flag(b) => {
                if *b {
                    "true"
                } else {
                    "false"
                }
            }
            Obs::Inbound(Ok(Inbound::Accepted)) => "Accepted",
            Obs::Inbound(Ok(Inbound::Refused(_))) => "Refused",
            Obs::Inbound(Ok(Inbound::Closed(_))) => "Closed",
            Obs::Inbound(r) => res_name(r),
            Obs::Events(events) if events.is_empty() => "None",
            Obs::Events(_) => "Some",
            Obs::Stats(_) | Obs::Nothing => "-",
        }
    }
}

/// A divergence between core and model, or a broken invariant, at one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// Index of the operation in the sequence.
    pub step: usize,
    /// The operation.
    pub op: Op,
    /// What went wrong.
    pub what: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {} ({:?}): {}", self.step, self.op, self.what)
    }
}

impl std::error::Error for Failure {}

/// How often each call ended with each outcome over a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Coverage {
    /// `(call, outcome)` → count.
    pub outcomes: BTreeMap<(&'static str, &'static str), u64>,
    /// Operations applied (skipped ones included).
    pub ops: u64,
    /// Operations skipped because they named a handle that was never issued.
    pub skipped: u64,
}

impl Coverage {
    /// How often `call` ended with `outcome`.
    pub fn count(&self, call: &str, outcome: &str) -> u64 {
        self.outcomes
            .iter()
            .filter(|((c, o), _)| *c == call && *o == outcome)
            .map(|(_, n)| n)
            .sum()
    }

    /// Adds another run's counts.
    pub fn merge(&mut self, other: &Coverage) {
        for (k, n) in &other.outcomes {
            *self.outcomes.entry(*k).or_default() += n;
        }
        self.ops += other.ops;
        self.skipped += other.skipped;
    }
}

/// What the wire has seen on one connection (checked on the core alone).
#[derive(Default)]
struct WireState {
    last_seq: Option<u32>,
    closed: bool,
}

/// One factory under test, its model and the bindings between them.
struct Side {
    profile: Profile,
    /// The factory's tag (distinct per side).
    tag: u32,
    core: Box<dyn Lanes<Msg>>,
    model: Model,
    mgr_key: HashMap<ManagerHandle, u64>,
    mgr_handle: HashMap<u64, ManagerHandle>,
    conn_key: HashMap<ConnectionHandle, u64>,
    conn_handle: HashMap<u64, ConnectionHandle>,
    /// Manager handles issued per user index, oldest first.
    mgr_history: [Vec<ManagerHandle>; 4],
    /// The user index of each issued manager.
    mgr_user: HashMap<ManagerHandle, usize>,
    /// Connection handles issued, oldest first, and the model id of the
    /// manager each was opened through.
    conn_history: Vec<ConnectionHandle>,
    conn_owner: HashMap<ConnectionHandle, u64>,
    wire: HashMap<ConnectionHandle, WireState>,
}

/// The factory tags of the two factories under test.
pub const TAGS: [u32; 2] = [0, 0x7a6_0001];

impl Side {
    fn new(profile: Profile, tag: u32) -> Self {
        let profile = Profile {
            config: Config {
                factory_tag: tag,
                ..profile.config
            },
            ..profile
        };
        Side {
            profile,
            tag,
            core: profile.build(),
            model: Model::new(profile.caps, profile.config),
            mgr_key: HashMap::new(),
            mgr_handle: HashMap::new(),
            conn_key: HashMap::new(),
            conn_handle: HashMap::new(),
            mgr_history: Default::default(),
            mgr_user: HashMap::new(),
            conn_history: Vec::new(),
            conn_owner: HashMap::new(),
            wire: HashMap::new(),
        }
    }
}

/// Two factories with distinct tags and a model of each, side by side.
/// Operations go to the selected one (`cur`) and may name handles the other
/// one issued, which the selected one must refuse as unknown.
pub struct Harness {
    cur: Side,
    other: Side,
    /// Which factory `cur` is (0 or 1).
    selected: usize,
    clock: u64,
    seq: u32,
    coverage: Coverage,
    trace: Option<Vec<String>>,
    /// True while [`Harness::check`] runs: its queries are not traced.
    checking: bool,
}

type Check = Result<(), String>;

fn forge_manager(index: u8, generation: u8, tag: u32) -> ManagerHandle {
    let bytes = postcard::to_allocvec(&(u32::from(index), u32::from(generation), tag)).unwrap();
    postcard::from_bytes(&bytes).expect("a handle is three u32s")
}

fn forge_conn(index: u8, generation: u8, tag: u32) -> ConnectionHandle {
    let bytes = postcard::to_allocvec(&(u32::from(index), u32::from(generation), tag)).unwrap();
    postcard::from_bytes(&bytes).expect("a handle is three u32s")
}

/// The context of user `u` (thread id by `variant`).
pub fn user_context(u: usize, variant: u8) -> UserContext {
    let thread = if variant % 2 == 0 { "t-a" } else { "t-b" };
    UserContext::new(USER_IDS[u % USER_IDS.len()], thread, "run", "req")
        .expect("the harness's contexts are valid")
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// A harness on profile 0, factory 0 selected.
    pub fn new() -> Self {
        Self::with_profile(PROFILES[0])
    }

    fn with_profile(profile: Profile) -> Self {
        Harness {
            cur: Side::new(profile, TAGS[0]),
            other: Side::new(profile, TAGS[1]),
            selected: 0,
            clock: 0,
            seq: 0,
            coverage: Coverage::default(),
            trace: None,
            checking: false,
        }
    }

    /// Selects factory `factory % 2` for the next operations.
    fn select(&mut self, factory: u8) {
        let f = usize::from(factory) % 2;
        if f != self.selected {
            std::mem::swap(&mut self.cur, &mut self.other);
            self.selected = f;
        }
    }

    /// Records a readable line for every call (see [`Harness::take_trace`]).
    pub fn with_trace(mut self) -> Self {
        self.trace = Some(Vec::new());
        self
    }

    /// The calls made since the last time, with what they returned.
    pub fn take_trace(&mut self) -> Vec<String> {
        self.trace.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The counts so far.
    pub fn coverage(&self) -> &Coverage {
        &self.coverage
    }

    /// The profile in force.
    pub fn profile(&self) -> &Profile {
        &self.cur.profile
    }

    fn reset(&mut self, profile: u8) {
        let trace = self.trace.take();
        let coverage = std::mem::take(&mut self.coverage);
        *self = Harness::with_profile(PROFILES[usize::from(profile) % PROFILES.len()]);
        self.trace = trace;
        self.coverage = coverage;
    }

    fn now(&self) -> Instant {
        Instant::from_millis(self.clock)
    }

    // ----- translation from core terms to model terms -----

    fn mkey(&self, h: ManagerHandle) -> Key {
        match self.cur.mgr_key.get(&h) {
            Some(id) => Key::Id(*id),
            None => Key::Raw {
                index: h.index(),
                generation: h.generation(),
            },
        }
    }

    fn ckey(&self, h: ConnectionHandle) -> Key {
        match self.cur.conn_key.get(&h) {
            Some(id) => Key::Id(*id),
            None => Key::Raw {
                index: h.index(),
                generation: h.generation(),
            },
        }
    }

    fn err(&self, e: Error) -> Result<MErr, String> {
        Ok(match e {
            Error::ManagerInactive(h) => MErr::ManagerInactive(self.mkey(h)),
            Error::UnknownManager(h) => MErr::UnknownManager(self.mkey(h)),
            Error::UnknownConnection(h) => MErr::UnknownConnection(self.ckey(h)),
            Error::ConnectionClosing(h) => MErr::ConnectionClosing(self.ckey(h)),
            Error::IsolationViolation { manager, violation } => MErr::IsolationViolation {
                manager: self.mkey(manager),
                violation: match violation {
                    Violation::ForeignUser => MViolation::ForeignUser,
                    Violation::ForeignConnection { owner } => MViolation::ForeignConnection {
                        owner: self.mkey(owner),
                    },
                },
            },
            Error::LimitReached(l) => MErr::LimitReached(l),
            Error::QueueFull(h) => MErr::QueueFull(self.ckey(h)),
            Error::NoConnections(h) => MErr::NoConnections(self.mkey(h)),
            Error::EventsPending => MErr::EventsPending,
            other => {
                return Err(format!(
                    "core returned an error the model never does: {other:?}"
                ))
            }
        })
    }

    fn res<T, U>(
        &self,
        r: Result<T, Error>,
        ok: impl FnOnce(T) -> U,
    ) -> Result<Result<U, MErr>, String> {
        match r {
            Ok(v) => Ok(Ok(ok(v))),
            Err(e) => Ok(Err(self.err(e)?)),
        }
    }

    fn event(&self, e: Event) -> Result<MEvent, String> {
        Ok(match e {
            Event::Transmit(c) => MEvent::Transmit(self.ckey(c)),
            Event::ConnectionClosed {
                connection,
                manager,
                close,
            } => MEvent::ConnectionClosed {
                connection: self.ckey(connection),
                manager: self.mkey(manager),
                close,
            },
            Event::ManagerCreated(m) => MEvent::ManagerCreated(self.mkey(m)),
            Event::ManagerDeactivated {
                manager,
                closed_connections,
                discarded_offline,
            } => MEvent::ManagerDeactivated {
                manager: self.mkey(manager),
                closed_connections,
                discarded_offline,
            },
            Event::ManagerReclaimed {
                manager,
                discarded_offline,
            } => MEvent::ManagerReclaimed {
                manager: self.mkey(manager),
                discarded_offline,
            },
            other => {
                return Err(format!(
                    "core returned an event the model never does: {other:?}"
                ))
            }
        })
    }

    // ----- comparing -----

    fn compare(
        &mut self,
        call: &'static str,
        args: fmt::Arguments<'_>,
        core: Obs,
        model: Obs,
    ) -> Check {
        if !self.checking {
            if let Some(t) = &mut self.trace {
                t.push(format!("{call}({args}) -> {core:?}"));
            }
            *self
                .coverage
                .outcomes
                .entry((call, core.outcome()))
                .or_default() += 1;
        }
        if core == model {
            Ok(())
        } else {
            Err(format!(
                "{call}({args}): core returned {core:?}, the model expects {model:?}"
            ))
        }
    }

    fn bind_manager(
        &mut self,
        core: &Result<ManagerHandle, Error>,
        model: &Result<Key, MErr>,
        user: usize,
    ) {
        if let (Ok(h), Ok(Key::Id(id))) = (core, model) {
            if !self.cur.mgr_key.contains_key(h) && !self.cur.mgr_handle.contains_key(id) {
                self.cur.mgr_key.insert(*h, *id);
                self.cur.mgr_handle.insert(*id, *h);
                self.cur.mgr_history[user].push(*h);
                self.cur.mgr_user.insert(*h, user);
            }
        }
    }

    fn bind_conn(
        &mut self,
        core: &Result<ConnectionHandle, Error>,
        model: &Result<Key, MErr>,
        owner: Key,
    ) {
        if let (Ok(h), Ok(Key::Id(id)), Key::Id(owner)) = (core, model, owner) {
            if !self.cur.conn_key.contains_key(h) && !self.cur.conn_handle.contains_key(id) {
                self.cur.conn_key.insert(*h, *id);
                self.cur.conn_handle.insert(*id, *h);
                self.cur.conn_history.push(*h);
                self.cur.conn_owner.insert(*h, owner);
            }
        }
    }

    fn manager_ref(&self, r: MgrRef) -> Option<(ManagerHandle, Key)> {
        let h = match r {
            MgrRef::User { user, back } => {
                let hist = &self.cur.mgr_history[usize::from(user) % USER_IDS.len()];
                if hist.is_empty() {
                    return None;
                }
                hist[hist.len() - 1 - usize::from(back) % hist.len()]
            }
            MgrRef::Forged { index, generation } => forge_manager(index, generation, self.cur.tag),
            // A handle the other factory issued; while it has issued none
            // for that user, the handle it would issue first (slot `user`,
            // generation 1), which the selected factory may well have
            // issued itself with its own tag.
            MgrRef::Foreign { user, back } => {
                let hist = &self.other.mgr_history[usize::from(user) % USER_IDS.len()];
                if hist.is_empty() {
                    forge_manager(user % 4, 1, self.other.tag)
                } else {
                    hist[hist.len() - 1 - usize::from(back) % hist.len()]
                }
            }
        };
        Some((h, self.mkey(h)))
    }

    fn conn_ref(&self, r: ConnRef) -> Option<(ConnectionHandle, Key)> {
        let h = match r {
            ConnRef::Recent { back } => {
                let n = self.cur.conn_history.len().min(RECENT_CONNS);
                if n == 0 {
                    return None;
                }
                self.cur.conn_history[self.cur.conn_history.len() - 1 - usize::from(back) % n]
            }
            ConnRef::Forged { index, generation } => forge_conn(index, generation, self.cur.tag),
            ConnRef::Foreign { back } => {
                let hist = &self.other.conn_history;
                let n = hist.len().min(RECENT_CONNS);
                if n == 0 {
                    forge_conn(back % RECENT_CONNS as u8, 1, self.other.tag)
                } else {
                    hist[hist.len() - 1 - usize::from(back) % n]
                }
            }
        };
        Some((h, self.ckey(h)))
    }

    /// Checks a transmitted item against the wire invariants (core only).
    fn wire_check(&mut self, c: ConnectionHandle, t: &Option<Transmit<Msg>>) -> Check {
        let Some(t) = t else { return Ok(()) };
        let owner = self.cur.conn_owner.get(&c).copied();
        let wire = self.cur.wire.entry(c).or_default();
        if wire.closed {
            return Err(format!("{c:?} transmitted {t:?} after its close"));
        }
        match t {
            Transmit::Message(m) => {
                if Some(m.to) != owner {
                    return Err(format!(
                        "isolation: {c:?} of manager {owner:?} transmitted {m:?}, sent to manager {}",
                        m.to
                    ));
                }
                if wire.last_seq.is_some_and(|s| s >= m.seq) {
                    return Err(format!(
                        "order: {c:?} transmitted seq {} after seq {:?}",
                        m.seq, wire.last_seq
                    ));
                }
                wire.last_seq = Some(m.seq);
            }
            Transmit::Close(_) => wire.closed = true,
        }
        Ok(())
    }

    fn transmit(&self, t: Option<Transmit<Msg>>) -> Option<MTransmit> {
        t.map(|t| match t {
            Transmit::Message(m) => MTransmit::Message(m),
            Transmit::Close(c) => MTransmit::Close(c),
        })
    }

    // ----- primitive steps, each applied to both and compared -----

    fn poll_event(&mut self) -> Result<Option<MEvent>, String> {
        let core = self.cur.core.poll_event();
        let core = match core {
            Some(e) => Some(self.event(e)?),
            None => None,
        };
        let model = self.cur.model.poll_event();
        self.compare(
            "poll_event",
            format_args!(""),
            Obs::Event(core),
            Obs::Event(model),
        )?;
        Ok(core)
    }

    fn poll_transmit(&mut self, c: ConnectionHandle, k: Key) -> Result<Option<MTransmit>, String> {
        let core = self.cur.core.poll_transmit(c);
        if let Ok(t) = &core {
            self.wire_check(c, t)?;
        }
        let core = self.res(core, |t| self.transmit(t))?;
        let model = self.cur.model.poll_transmit(k);
        self.compare(
            "poll_transmit",
            format_args!("{k:?}"),
            Obs::Transmit(core),
            Obs::Transmit(model),
        )?;
        Ok(core.ok().flatten())
    }

    fn handle_closed(&mut self, c: ConnectionHandle, k: Key) -> Check {
        let now = self.now();
        let core = self.cur.core.handle_closed(c, now);
        let core = self.res(core, |r| r)?;
        let model = self.cur.model.handle_closed(k, self.clock);
        self.compare(
            "handle_closed",
            format_args!("{k:?}"),
            Obs::Released(core),
            Obs::Released(model),
        )
    }

    fn handle_timeout(&mut self) -> Check {
        let clock = self.clock;
        self.cur.core.handle_timeout(self.now());
        self.cur.model.handle_timeout(clock);
        self.compare(
            "handle_timeout",
            format_args!("{clock}"),
            Obs::Nothing,
            Obs::Nothing,
        )
    }

    fn poll_timeout(&mut self) -> Result<Option<u64>, String> {
        let core = self.cur.core.poll_timeout().map(Instant::as_millis);
        let model = self.cur.model.poll_timeout();
        self.compare(
            "poll_timeout",
            format_args!(""),
            Obs::Time(core),
            Obs::Time(model),
        )?;
        Ok(core)
    }

    /// Every query through a manager handle.
    fn query_manager(&mut self, h: ManagerHandle, k: Key) -> Check {
        let a = Obs::Flag(self.cur.core.is_active(h));
        let b = Obs::Flag(self.cur.model.is_active(k));
        self.compare("is_active", format_args!("{k:?}"), a, b)?;
        let a = Obs::Context(self.res(self.cur.core.context(h).cloned(), Box::new)?);
        let b = Obs::Context(self.cur.model.context(k).cloned().map(Box::new));
        self.compare("context", format_args!("{k:?}"), a, b)?;
        let a = Obs::ManagerStats(self.res(self.cur.core.manager_stats(h), |s| s)?);
        let b = Obs::ManagerStats(self.cur.model.manager_stats(k));
        self.compare("manager_stats", format_args!("{k:?}"), a, b)?;
        let a =
            Obs::EmptySince(self.res(self.cur.core.empty_since(h), |e| e.map(Instant::as_millis))?);
        let b = Obs::EmptySince(self.cur.model.empty_since(k));
        self.compare("empty_since", format_args!("{k:?}"), a, b)?;
        let conns = connections(&*self.cur.core, h);
        let a = Obs::Connections(self.res(conns.clone(), |v| {
            v.into_iter().map(|c| self.ckey(c)).collect()
        })?);
        let b = Obs::Connections(self.cur.model.connections(k));
        self.compare("connections", format_args!("{k:?}"), a, b)?;
        let a = Obs::Count(self.res(self.cur.core.connection_count(h), |n| n)?);
        let b = Obs::Count(self.cur.model.connections(k).map(|v| v.len() as u32));
        self.compare("connection_count", format_args!("{k:?}"), a, b)?;
        // Isolation and the per-user limit, on the core alone.
        if let Ok(conns) = conns {
            if conns.len() > self.cur.profile.config.max_connections_per_user as usize {
                return Err(format!(
                    "limit: {k:?} has {} open connections, per-user limit {}",
                    conns.len(),
                    self.cur.profile.config.max_connections_per_user
                ));
            }
            for c in conns {
                if self.cur.core.owner_of(c) != Ok(h) || !self.cur.core.is_open(c) {
                    return Err(format!(
                        "isolation: {k:?} lists {c:?}, owned by {:?}, open {}",
                        self.cur.core.owner_of(c),
                        self.cur.core.is_open(c)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every query through a connection handle.
    fn query_conn(&mut self, h: ConnectionHandle, k: Key) -> Check {
        let a = Obs::Manager(self.res(self.cur.core.owner_of(h), |m| self.mkey(m))?);
        let b = Obs::Manager(self.cur.model.owner_of(k));
        self.compare("owner_of", format_args!("{k:?}"), a, b)?;
        let a = Obs::Flag(self.cur.core.is_open(h));
        let b = Obs::Flag(self.cur.model.is_open(k));
        self.compare("is_open", format_args!("{k:?}"), a, b)?;
        let queued = self.cur.core.queued(h);
        let a = Obs::Count(self.res(queued, |n| n)?);
        let b = Obs::Count(self.cur.model.queued(k));
        self.compare("queued", format_args!("{k:?}"), a, b)?;
        if let Ok(n) = queued {
            if n > self.cur.profile.config.queue_depth {
                return Err(format!(
                    "limit: {k:?} holds {n} messages, queue depth {}",
                    self.cur.profile.config.queue_depth
                ));
            }
        }
        Ok(())
    }

    /// Compares the whole observable state of both factories and checks
    /// the invariants (an operation on one factory must leave the other
    /// exactly as its model says: untouched).
    pub fn check(&mut self) -> Check {
        self.checking = true;
        let mut result = self.check_all();
        if result.is_ok() {
            std::mem::swap(&mut self.cur, &mut self.other);
            result = self
                .check_all()
                .map_err(|e| format!("the other factory: {e}"));
            std::mem::swap(&mut self.cur, &mut self.other);
        }
        self.checking = false;
        result
    }

    fn check_all(&mut self) -> Check {
        let core = self.cur.core.stats();
        let model = self.cur.model.stats();
        if core != model {
            return Err(format!(
                "stats differ:\n  core  {core:?}\n  model {model:?}"
            ));
        }
        if !core.is_consistent() {
            return Err(format!("stats are not consistent: {core:?}"));
        }
        let cfg = self.cur.profile.config;
        let caps = self.cur.profile.caps;
        if core.managers_active > u64::from(cfg.max_users)
            || core.connections_active > u64::from(cfg.max_connections)
            || core.connections_active + core.connections_closing > caps.conns as u64
        {
            return Err(format!("limits exceeded: {core:?}"));
        }
        let free = self.cur.core.free_queue_slots();
        if u64::from(free) + core.messages_queued_now + core.offline_now != caps.slots as u64 {
            return Err(format!(
                "pool: {free} free + {} queued + {} offline != {} slots",
                core.messages_queued_now, core.offline_now, caps.slots
            ));
        }
        let a = Obs::Count(Ok(free));
        let b = Obs::Count(Ok(self.cur.model.free_queue_slots()));
        self.compare("free_queue_slots", format_args!(""), a, b)?;
        let a = Obs::Time(Some(self.cur.core.now().as_millis()));
        let b = Obs::Time(Some(self.cur.model.now()));
        self.compare("now", format_args!(""), a, b)?;
        self.poll_timeout()?;
        for (u, id) in USER_IDS.iter().enumerate() {
            let a = Obs::Lookup(self.cur.core.manager_for_user(id).map(|h| self.mkey(h)));
            let b = Obs::Lookup(self.cur.model.manager_for_user(id));
            self.compare("manager_for_user", format_args!("{u}"), a, b)?;
        }
        // Active managers, and the last few handles of each user (dead ones
        // must stay refused).
        let mut managers: Vec<ManagerHandle> = Vec::new();
        for k in self.cur.model.active_managers() {
            let Key::Id(id) = k else { continue };
            match self.cur.mgr_handle.get(&id) {
                Some(h) => managers.push(*h),
                None => return Err(format!("model manager {id} was never bound to a handle")),
            }
        }
        for hist in &self.cur.mgr_history {
            managers.extend(hist.iter().rev().take(2));
        }
        managers.sort_unstable();
        managers.dedup();
        let mut listed = HashSet::new();
        for h in managers {
            let k = self.mkey(h);
            self.query_manager(h, k)?;
            if let Ok(conns) = connections(&*self.cur.core, h) {
                for c in conns {
                    if !listed.insert(c) {
                        return Err(format!("isolation: {c:?} is listed by two managers"));
                    }
                }
            }
        }
        // Live connections and the recent handles.
        let mut conns: Vec<ConnectionHandle> = Vec::new();
        for k in self.cur.model.live_connections() {
            let Key::Id(id) = k else { continue };
            match self.cur.conn_handle.get(&id) {
                Some(h) => conns.push(*h),
                None => return Err(format!("model connection {id} was never bound to a handle")),
            }
        }
        conns.extend(self.cur.conn_history.iter().rev().take(RECENT_CONNS));
        conns.sort_unstable();
        conns.dedup();
        for h in conns {
            let k = self.ckey(h);
            self.query_conn(h, k)?;
        }
        Ok(())
    }

    /// Applies one operation to both and compares every result.
    pub fn apply(&mut self, op: &Op) -> Check {
        self.coverage.ops += 1;
        match *op {
            Op::CreateManager { .. }
            | Op::CreateOfflineManager { .. }
            | Op::AddConnection { .. }
            | Op::Deactivate { .. } => self.apply_manager_op(op),
            Op::RemoveConnection { .. } | Op::CloseConnection { .. } | Op::CloseAll { .. } => {
                self.apply_connection_op(op)
            }
            Op::Send { .. } | Op::SendToConnection { .. } => self.apply_send_op(op),
            Op::Activity { .. }
            | Op::Inbound { .. }
            | Op::HandleClosed { .. }
            | Op::Advance { .. }
            | Op::ClockBack { .. }
            | Op::FarFuture
            | Op::HandleTimeout
            | Op::FireTimer => self.apply_fact_op(op),
            Op::PollEvent
            | Op::PollTransmit { .. }
            | Op::Drain { .. }
            | Op::DrainEvents
            | Op::Query { .. }
            | Op::Select { .. }
            | Op::Reset { .. } => self.apply_output_op(op),
        }
    }

    /// An operation naming a handle that was never issued: counted, not run.
    fn skipped(&mut self) -> Check {
        self.coverage.skipped += 1;
        Ok(())
    }

    /// Manager commands: create (live or offline), add a connection, deactivate.
    fn apply_manager_op(&mut self, op: &Op) -> Check {
        match *op {
            Op::CreateManager { user, variant } => {
                let u = usize::from(user) % USER_IDS.len();
                let ctx = user_context(u, variant);
                let core = self.cur.core.create_manager(ctx.clone(), self.now());
                let model = self.cur.model.create_manager(ctx, self.clock);
                self.bind_manager(&core, &model, u);
                let core = self.res(core, |h| self.mkey(h))?;
                self.compare(
                    "create_manager",
                    format_args!("u{u}, variant {}", variant % 2),
                    Obs::Manager(core),
                    Obs::Manager(model),
                )
            }
            Op::CreateOfflineManager { user, variant } => {
                let u = usize::from(user) % USER_IDS.len();
                let ctx = user_context(u, variant);
                let core = self
                    .cur
                    .core
                    .create_offline_manager(ctx.clone(), self.now());
                let model = self.cur.model.create_offline_manager(ctx, self.clock);
                self.bind_manager(&core, &model, u);
                let core = self.res(core, |h| self.mkey(h))?;
                self.compare(
                    "create_offline_manager",
                    format_args!("u{u}, variant {}", variant % 2),
                    Obs::Manager(core),
                    Obs::Manager(model),
                )
            }
            Op::AddConnection { manager, claim } => {
                let Some((h, k)) = self.manager_ref(manager) else {
                    return self.skipped();
                };
                let own = self.cur.mgr_user.get(&h).copied().unwrap_or(0);
                let claimed = claim.map_or(own, |c| usize::from(c) % USER_IDS.len());
                let ctx = user_context(claimed, 0);
                let core = self.cur.core.add_connection(h, &ctx, self.now());
                let model = self.cur.model.add_connection(k, &ctx, self.clock);
                self.bind_conn(&core, &model, k);
                let core = self.res(core, |c| self.ckey(c))?;
                self.compare(
                    "add_connection",
                    format_args!("{k:?}, claim u{claimed}"),
                    Obs::Conn(core),
                    Obs::Conn(model),
                )
            }
            Op::Deactivate { manager } => {
                let Some((h, k)) = self.manager_ref(manager) else {
                    return self.skipped();
                };
                let core = self.cur.core.deactivate(h, self.now());
                let core = self.res(core, |n| n)?;
                let model = self.cur.model.deactivate(k, self.clock);
                self.compare(
                    "deactivate",
                    format_args!("{k:?}"),
                    Obs::Count(core),
                    Obs::Count(model),
                )
            }
            _ => unreachable!("apply dispatches {op:?} elsewhere"),
        }
    }

    /// Connection commands: remove, close, close all.
    fn apply_connection_op(&mut self, op: &Op) -> Check {
        match *op {
            Op::RemoveConnection { manager, conn } => {
                let (Some((h, k)), Some((c, ck))) =
                    (self.manager_ref(manager), self.conn_ref(conn))
                else {
                    return self.skipped();
                };
                let core = self.cur.core.remove_connection(h, c, self.now());
                let core = self.res(core, |r| r)?;
                let model = self.cur.model.remove_connection(k, ck, self.clock);
                self.compare(
                    "remove_connection",
                    format_args!("{k:?}, {ck:?}"),
                    Obs::Released(core),
                    Obs::Released(model),
                )
            }
            Op::CloseConnection {
                manager,
                conn,
                code,
            } => {
                let (Some((h, k)), Some((c, ck))) =
                    (self.manager_ref(manager), self.conn_ref(conn))
                else {
                    return self.skipped();
                };
                let code = CloseCode::new(CLOSE_CODES[usize::from(code) % CLOSE_CODES.len()])
                    .expect("the harness's close codes are valid");
                let core = self.cur.core.close_connection(h, c, code, self.now());
                let core = self.res(core, |r| r)?;
                let model = self.cur.model.close_connection(k, ck, code, self.clock);
                self.compare(
                    "close_connection",
                    format_args!("{k:?}, {ck:?}, {code}"),
                    Obs::Done(core),
                    Obs::Done(model),
                )
            }
            Op::CloseAll { shutdown } => {
                let close = if shutdown {
                    CloseFrame::new(CloseCode::GOING_AWAY, CloseReason::ServerShutdown)
                } else {
                    CloseFrame::new(CloseCode::NORMAL, CloseReason::Application)
                };
                let core = self.cur.core.close_all(close, self.now());
                let model = self.cur.model.close_all(close, self.clock);
                self.compare(
                    "close_all",
                    format_args!("{close:?}"),
                    Obs::Closed(core),
                    Obs::Closed(model),
                )
            }
            _ => unreachable!("apply dispatches {op:?} elsewhere"),
        }
    }

    /// Sends: to a user, to one connection.
    fn apply_send_op(&mut self, op: &Op) -> Check {
        match *op {
            Op::Send { manager, tag } => {
                let Some((h, k)) = self.manager_ref(manager) else {
                    return self.skipped();
                };
                let msg = self.next_msg(k, tag);
                let core = self.cur.core.send_to_user(h, msg, self.now());
                let core = self.sent(core, msg)?;
                let model = self.cur.model.send_to_user(k, msg, self.clock);
                self.compare(
                    "send_to_user",
                    format_args!("{k:?}, seq {} tag {tag}", msg.seq),
                    Obs::Sent(core),
                    Obs::Sent(model),
                )
            }
            Op::SendToConnection { manager, conn, tag } => {
                let (Some((h, k)), Some((c, ck))) =
                    (self.manager_ref(manager), self.conn_ref(conn))
                else {
                    return self.skipped();
                };
                let msg = self.next_msg(k, tag);
                let core = self.cur.core.send_to_connection(h, c, msg, self.now());
                let core = self.sent(core, msg)?;
                let model = self.cur.model.send_to_connection(k, ck, msg, self.clock);
                self.compare(
                    "send_to_connection",
                    format_args!("{k:?}, {ck:?}, seq {} tag {tag}", msg.seq),
                    Obs::Sent(core),
                    Obs::Sent(model),
                )
            }
            _ => unreachable!("apply dispatches {op:?} elsewhere"),
        }
    }

    /// Facts and the clock: activity, inbound, closed sockets, time, timers.
    fn apply_fact_op(&mut self, op: &Op) -> Check {
        match *op {
            Op::Activity { conn } => {
                let Some((c, ck)) = self.conn_ref(conn) else {
                    return self.skipped();
                };
                let core = self.cur.core.handle_activity(c, self.now());
                let core = self.res(core, |r| r)?;
                let model = self.cur.model.handle_activity(ck, self.clock);
                self.compare(
                    "handle_activity",
                    format_args!("{ck:?}"),
                    Obs::Done(core),
                    Obs::Done(model),
                )
            }
            Op::Inbound { conn, bytes } => {
                let Some((c, ck)) = self.conn_ref(conn) else {
                    return self.skipped();
                };
                let core = self
                    .cur
                    .core
                    .handle_inbound(c, usize::from(bytes), self.now());
                let core = self.res(core, |r| r)?;
                let model = self
                    .cur
                    .model
                    .handle_inbound(ck, u64::from(bytes), self.clock);
                self.compare(
                    "handle_inbound",
                    format_args!("{ck:?}, {bytes} bytes"),
                    Obs::Inbound(core),
                    Obs::Inbound(model),
                )
            }
            Op::HandleClosed { conn } => {
                let Some((c, ck)) = self.conn_ref(conn) else {
                    return self.skipped();
                };
                self.handle_closed(c, ck)
            }
            Op::Advance { ms } => {
                self.clock = self.clock.saturating_add(u64::from(ms));
                Ok(())
            }
            Op::ClockBack { ms } => {
                self.clock = self.clock.saturating_sub(u64::from(ms));
                Ok(())
            }
            Op::FarFuture => {
                self.clock = u64::MAX - 1_000;
                Ok(())
            }
            Op::HandleTimeout => self.handle_timeout(),
            Op::FireTimer => {
                if let Some(t) = self.poll_timeout()? {
                    self.clock = self.clock.max(t);
                    self.handle_timeout()?;
                }
                Ok(())
            }
            _ => unreachable!("apply dispatches {op:?} elsewhere"),
        }
    }

    /// Outputs, queries and the harness itself: polls, drains, queries, select, reset.
    fn apply_output_op(&mut self, op: &Op) -> Check {
        match *op {
            Op::PollEvent => self.poll_event().map(drop),
            Op::PollTransmit { conn } => {
                let Some((c, ck)) = self.conn_ref(conn) else {
                    return self.skipped();
                };
                self.poll_transmit(c, ck).map(drop)
            }
            Op::Drain { close_sockets } => self.drain(close_sockets),
            Op::DrainEvents => self.drain_events(),
            Op::Query { manager } => {
                let Some((h, k)) = self.manager_ref(manager) else {
                    return self.skipped();
                };
                self.query_manager(h, k)
            }
            Op::Select { factory } => {
                self.select(factory);
                if let Some(t) = &mut self.trace {
                    t.push(format!("select factory {}", self.selected));
                }
                Ok(())
            }
            Op::Reset { profile } => {
                self.reset(profile);
                if let Some(t) = &mut self.trace {
                    t.push(format!("reset to profile {}", self.cur.profile.name));
                }
                Ok(())
            }
            _ => unreachable!("apply dispatches {op:?} elsewhere"),
        }
    }

    /// A fresh message for manager `k`.
    fn next_msg(&mut self, k: Key, tag: u8) -> Msg {
        self.seq += 1;
        Msg {
            to: match k {
                Key::Id(id) => id,
                Key::Raw { .. } => u64::MAX,
            },
            seq: self.seq,
            tag,
        }
    }

    /// A send's result in model terms; a refusal must hand `msg` back.
    fn sent(
        &self,
        core: Result<SendOutcome, SendError<Msg>>,
        msg: Msg,
    ) -> Result<Result<SendOutcome, MErr>, String> {
        if let Err(refused) = &core {
            if refused.payload != msg {
                return Err(format!("a refused send handed back {refused:?}"));
            }
        }
        self.res(core.map_err(Error::from), |r| r)
    }

    /// `drain_events` on both, compared with each other as one list.
    fn drain_events(&mut self) -> Check {
        let mut events = Vec::new();
        self.cur.core.drain_events(&mut |e| events.push(e));
        let core = events
            .into_iter()
            .map(|e| self.event(e))
            .collect::<Result<Vec<_>, _>>()?;
        let model = self.cur.model.drain_events();
        self.compare(
            "drain_events",
            format_args!(""),
            Obs::Events(core),
            Obs::Events(model),
        )
    }

    /// The drain rule of the crate documentation.
    fn drain(&mut self, close_sockets: bool) -> Check {
        let mut woken: Vec<Key> = Vec::new();
        let mut polls = 0;
        while let Some(e) = self.poll_event()? {
            polls += 1;
            if polls > 10_000 {
                return Err("poll_event never returns None".into());
            }
            if let MEvent::Transmit(c) | MEvent::ConnectionClosed { connection: c, .. } = e {
                if !woken.contains(&c) {
                    woken.push(c);
                }
            }
        }
        for k in woken {
            let Key::Id(id) = k else {
                return Err(format!("an event named {k:?}, a handle never issued"));
            };
            let c = self.cur.conn_handle[&id];
            let mut closed = false;
            let mut items = 0;
            while let Some(t) = self.poll_transmit(c, k)? {
                items += 1;
                if items > 10_000 {
                    return Err("poll_transmit never returns None".into());
                }
                closed |= matches!(t, MTransmit::Close(_));
            }
            if closed && close_sockets {
                self.handle_closed(c, k)?;
            }
        }
        Ok(())
    }
}

impl Harness {
    /// The end of a run, on both factories: every pending event is drained,
    /// every connection ever issued has its transmits drained and, once its
    /// close is written, its socket reported closed (each call compared with
    /// the model). Then nothing may be left queued or closing, and every
    /// message ever queued was either transmitted or counted as dropped.
    pub fn drain_all(&mut self) -> Check {
        for _ in 0..2 {
            self.drain(true)?;
            for c in self.cur.conn_history.clone() {
                let k = self.ckey(c);
                while let Some(t) = self.poll_transmit(c, k)? {
                    if let MTransmit::Close(_) = t {
                        break;
                    }
                }
                let written = self.cur.wire.get(&c).is_some_and(|w| w.closed);
                if written && self.cur.core.owner_of(c).is_ok() {
                    self.handle_closed(c, k)?;
                }
            }
            self.drain(true)?;
            self.check()?;
            let s = self.cur.core.stats();
            if s.messages_queued_now != 0
                || s.connections_closing != 0
                || s.messages_queued != s.messages_transmitted + s.messages_dropped
            {
                return Err(format!("left after a full drain: {s:#?}"));
            }
            self.select(1 - self.selected as u8);
        }
        Ok(())
    }
}

/// Runs `ops` from a fresh harness, checking after every operation.
pub fn run(ops: &[Op]) -> Result<Coverage, Failure> {
    let mut h = Harness::new();
    h.check().map_err(|what| Failure {
        step: 0,
        op: Op::Reset { profile: 0 },
        what,
    })?;
    for (step, op) in ops.iter().enumerate() {
        h.apply(op)
            .and_then(|()| h.check())
            .map_err(|what| Failure {
                step,
                op: *op,
                what,
            })?;
    }
    Ok(h.coverage)
}
