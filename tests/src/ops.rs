//! Operations on a factory, as data: a sequence of [`Op`]s is a postcard byte
//! string, so a fuzzer input or a corpus entry is replayable, printable and
//! shrinkable.
//!
//! Every field is a small number that the harness reduces modulo a tiny range
//! (four user ids, the last eight connection handles, a handful of close codes
//! and configuration profiles), so almost every byte string decodes to a
//! meaningful sequence and a mutation of one byte changes one decision.

use serde::{Deserialize, Serialize};

/// The user ids operations pick from (`user % 4`). One more than the largest
/// `max_users` of any profile, so the user limit is reachable.
pub const USER_IDS: [&str; 4] = ["u0", "u1", "u2", "u3"];

/// The close codes `CloseConnection` picks from (`code % 7`).
pub const CLOSE_CODES: [u16; 7] = [1000, 1001, 1008, 1011, 1013, 3000, 4999];

/// How many of the most recent connection handles [`ConnRef::Recent`] reaches.
pub const RECENT_CONNS: usize = 8;

/// Most operations taken from one fuzzer input.
pub const MAX_OPS: usize = 512;

/// Names a manager handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MgrRef {
    /// A handle issued for user `user % 4`: `back = 0` is the newest, `1` the
    /// one before (dead by then), and so on, modulo the number issued. The
    /// operation is skipped if that user never had a manager.
    User {
        /// User index.
        user: u8,
        /// How far back in that user's handles.
        back: u8,
    },
    /// A handle built from raw parts (and the selected factory's tag):
    /// refused unless it happens to equal a handle the core issued.
    Forged {
        /// Table index.
        index: u8,
        /// Generation.
        generation: u8,
    },
    /// Like `User`, but a handle the *other* factory issued (or, while it
    /// has issued none for that user, the one it would issue first: slot
    /// `user`, generation 1, its tag): the selected factory must refuse it
    /// as unknown, even where its index and generation name one of its own
    /// live managers.
    Foreign {
        /// User index.
        user: u8,
        /// How far back in that user's handles.
        back: u8,
    },
}

/// Names a connection handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConnRef {
    /// One of the last [`RECENT_CONNS`] connection handles issued (of any
    /// user, live or not): `back = 0` is the newest. Skipped if none was issued.
    Recent {
        /// How far back.
        back: u8,
    },
    /// A handle built from raw parts.
    Forged {
        /// Table index.
        index: u8,
        /// Generation.
        generation: u8,
    },
    /// Like `Recent`, among the handles the *other* factory issued (or, while
    /// it has issued none, slot `back % 8` at generation 1 with its tag):
    /// refused as unknown by the selected one.
    Foreign {
        /// How far back.
        back: u8,
    },
}

/// One step applied to both the core and the model.
///
/// The harness drives two factories with distinct tags, each with its own
/// model; every operation goes to the selected one (factory 0 at the start
/// and after `Reset`). New variants are only ever appended, so the
/// postcard-encoded corpus keeps decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// Start over with configuration profile `profile % PROFILES` (capacities,
    /// limits, slow-consumer policy, timers). A run starts with profile 0.
    Reset {
        /// Profile index.
        profile: u8,
    },
    /// `create_manager` for user `user % 4`; `variant` picks the thread id,
    /// so asking again with another variant shows that the first context is kept.
    CreateManager {
        /// User index.
        user: u8,
        /// Context variant.
        variant: u8,
    },
    /// `add_connection` through `manager` for a connection authenticated as
    /// user `claim % 4`, or as the manager's own user when `claim` is `None`
    /// (user 0 for a handle the core never issued). Another user than the
    /// manager's is an isolation violation.
    AddConnection {
        /// Manager.
        manager: MgrRef,
        /// Claimed user index.
        claim: Option<u8>,
    },
    /// `remove_connection`.
    RemoveConnection {
        /// Manager.
        manager: MgrRef,
        /// Connection.
        conn: ConnRef,
    },
    /// `close_connection` with `CLOSE_CODES[code % 7]`.
    CloseConnection {
        /// Manager.
        manager: MgrRef,
        /// Connection.
        conn: ConnRef,
        /// Close code index.
        code: u8,
    },
    /// `send_to_user` of a fresh message carrying `tag`.
    Send {
        /// Manager.
        manager: MgrRef,
        /// Payload tag.
        tag: u8,
    },
    /// `deactivate`.
    Deactivate {
        /// Manager.
        manager: MgrRef,
    },
    /// `close_all` with 1001 server shutdown (`true`) or 1000 application.
    CloseAll {
        /// Shutdown or application close.
        shutdown: bool,
    },
    /// `handle_activity`.
    Activity {
        /// Connection.
        conn: ConnRef,
    },
    /// `handle_closed`.
    HandleClosed {
        /// Connection.
        conn: ConnRef,
    },
    /// Moves the caller's clock forward (no call into the factory).
    Advance {
        /// Milliseconds.
        ms: u16,
    },
    /// Moves the caller's clock backward: the next calls pass an earlier
    /// instant, which the factory must treat as the latest one it has seen.
    ClockBack {
        /// Milliseconds.
        ms: u16,
    },
    /// Moves the caller's clock to just before the end of time (saturation).
    FarFuture,
    /// `handle_timeout(now)`.
    HandleTimeout,
    /// The timer the caller armed fires: the clock moves to `poll_timeout()`
    /// (if later) and `handle_timeout` runs.
    FireTimer,
    /// One `poll_event`.
    PollEvent,
    /// One `poll_transmit`.
    PollTransmit {
        /// Connection.
        conn: ConnRef,
    },
    /// The drain rule: `poll_event` until `None`, and for each woken
    /// connection `poll_transmit` until `None`; with `close_sockets`, a
    /// connection that transmitted its close is reported with `handle_closed`.
    Drain {
        /// Report closed sockets.
        close_sockets: bool,
    },
    /// Every query through `manager` (context, stats, connections, …).
    Query {
        /// Manager.
        manager: MgrRef,
    },
    /// Later operations go to factory `factory % 2`.
    Select {
        /// Factory index.
        factory: u8,
    },
    /// `handle_inbound` of a message of `bytes` bytes.
    Inbound {
        /// Connection.
        conn: ConnRef,
        /// Size of the message.
        bytes: u16,
    },
    /// `create_offline_manager` for user `user % 4` (context variant as in
    /// `CreateManager`).
    CreateOfflineManager {
        /// User index.
        user: u8,
        /// Context variant.
        variant: u8,
    },
    /// `send_to_connection` of a fresh message carrying `tag`, through
    /// `manager` to `conn`.
    SendToConnection {
        /// Manager.
        manager: MgrRef,
        /// Connection.
        conn: ConnRef,
        /// Payload tag.
        tag: u8,
    },
    /// `drain_events`: every pending event in one call, in `poll_event`'s
    /// order.
    DrainEvents,
}

/// The name of every operation kind, in declaration order.
pub const OP_KINDS: [&str; 24] = [
    "Reset",
    "CreateManager",
    "AddConnection",
    "RemoveConnection",
    "CloseConnection",
    "Send",
    "Deactivate",
    "CloseAll",
    "Activity",
    "HandleClosed",
    "Advance",
    "ClockBack",
    "FarFuture",
    "HandleTimeout",
    "FireTimer",
    "PollEvent",
    "PollTransmit",
    "Drain",
    "Query",
    "Select",
    "Inbound",
    "CreateOfflineManager",
    "SendToConnection",
    "DrainEvents",
];

impl Op {
    /// The operation's kind, one of [`OP_KINDS`].
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Reset { .. } => "Reset",
            Op::CreateManager { .. } => "CreateManager",
            Op::AddConnection { .. } => "AddConnection",
            Op::RemoveConnection { .. } => "RemoveConnection",
            Op::CloseConnection { .. } => "CloseConnection",
            Op::Send { .. } => "Send",
            Op::Deactivate { .. } => "Deactivate",
            Op::CloseAll { .. } => "CloseAll",
            Op::Activity { .. } => "Activity",
            Op::HandleClosed { .. } => "HandleClosed",
            Op::Advance { .. } => "Advance",
            Op::ClockBack { .. } => "ClockBack",
            Op::FarFuture => "FarFuture",
            Op::HandleTimeout => "HandleTimeout",
            Op::FireTimer => "FireTimer",
            Op::PollEvent => "PollEvent",
            Op::PollTransmit { .. } => "PollTransmit",
            Op::Drain { .. } => "Drain",
            Op::Query { .. } => "Query",
            Op::Select { .. } => "Select",
            Op::Inbound { .. } => "Inbound",
            Op::CreateOfflineManager { .. } => "CreateOfflineManager",
            Op::SendToConnection { .. } => "SendToConnection",
            Op::DrainEvents => "DrainEvents",
        }
    }
}

/// Encodes a sequence as a postcard `Vec<Op>` (the corpus format).
pub fn encode(ops: &[Op]) -> Vec<u8> {
    postcard::to_allocvec(ops).expect("postcard encoding into a Vec cannot fail")
}

/// Decodes a whole postcard `Vec<Op>`, refusing anything malformed.
pub fn decode(bytes: &[u8]) -> Result<Vec<Op>, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// Decodes a postcard `Vec<Op>` leniently, as the fuzz target does: the
/// length prefix, then operations one by one until the length, the input, the
/// first malformed operation or [`MAX_OPS`] ends it. A truncated or
/// partly mutated sequence keeps its valid prefix, so the fuzzer's byte
/// mutations stay meaningful.
pub fn decode_lenient(bytes: &[u8]) -> Vec<Op> {
    let Ok((len, mut rest)) = postcard::take_from_bytes::<u32>(bytes) else {
        return Vec::new();
    };
    let mut ops = Vec::new();
    while ops.len() < (len as usize).min(MAX_OPS) {
        match postcard::take_from_bytes::<Op>(rest) {
            Ok((op, tail)) => {
                ops.push(op);
                rest = tail;
            }
            Err(_) => break,
        }
    }
    ops
}

/// A small deterministic PRNG (xorshift64*), so random campaigns replay.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Self {
        Rng((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    fn small(&mut self, n: u32) -> u8 {
        self.below(n) as u8
    }

    fn mgr(&mut self) -> MgrRef {
        let pick = self.below(16);
        if pick == 0 {
            MgrRef::Forged {
                index: self.small(6),
                generation: self.small(4),
            }
        } else if pick == 1 {
            MgrRef::Foreign {
                user: self.small(4),
                back: 0,
            }
        } else {
            MgrRef::User {
                user: self.small(4),
                back: if self.below(4) == 0 { self.small(3) } else { 0 },
            }
        }
    }

    fn conn(&mut self) -> ConnRef {
        let pick = self.below(16);
        if pick == 0 {
            ConnRef::Forged {
                index: self.small(8),
                generation: self.small(4),
            }
        } else if pick == 1 {
            ConnRef::Foreign {
                back: self.small(RECENT_CONNS as u32),
            }
        } else {
            ConnRef::Recent {
                back: self.small(RECENT_CONNS as u32),
            }
        }
    }

    /// A random operation, weighted toward the interesting ones.
    pub fn op(&mut self) -> Op {
        match self.below(125) {
            0 => Op::Reset {
                profile: self.byte(),
            },
            1..=10 => Op::CreateManager {
                user: self.small(4),
                variant: self.small(2),
            },
            11..=24 => Op::AddConnection {
                manager: self.mgr(),
                claim: (self.below(8) == 0).then(|| self.small(4)),
            },
            25..=30 => Op::RemoveConnection {
                manager: self.mgr(),
                conn: self.conn(),
            },
            31..=34 => Op::CloseConnection {
                manager: self.mgr(),
                conn: self.conn(),
                code: self.small(7),
            },
            35..=52 => Op::Send {
                manager: self.mgr(),
                tag: self.byte(),
            },
            53..=55 => Op::Deactivate {
                manager: self.mgr(),
            },
            56 => Op::CloseAll {
                shutdown: self.below(2) == 0,
            },
            57..=60 => Op::Activity { conn: self.conn() },
            61..=64 => Op::HandleClosed { conn: self.conn() },
            65..=69 => Op::Advance {
                ms: self.below(120) as u16,
            },
            70 => Op::ClockBack {
                ms: self.below(50) as u16,
            },
            71 => {
                if self.below(8) == 0 {
                    Op::FarFuture
                } else {
                    Op::HandleTimeout
                }
            }
            72..=75 => Op::FireTimer,
            76..=81 => Op::PollEvent,
            82..=88 => Op::PollTransmit { conn: self.conn() },
            89..=95 => Op::Drain {
                close_sockets: self.below(3) != 0,
            },
            96..=99 => Op::Query {
                manager: self.mgr(),
            },
            100 => Op::Select {
                factory: self.small(2),
            },
            101..=111 => Op::Inbound {
                conn: self.conn(),
                bytes: if self.below(4) == 0 {
                    self.below(1_000) as u16
                } else {
                    self.below(60) as u16
                },
            },
            112..=114 => Op::CreateOfflineManager {
                user: self.small(4),
                variant: self.small(2),
            },
            115..=121 => Op::SendToConnection {
                manager: self.mgr(),
                conn: self.conn(),
                tag: self.byte(),
            },
            _ => Op::DrainEvents,
        }
    }

    /// `n` random operations.
    pub fn ops(&mut self, n: usize) -> Vec<Op> {
        (0..n).map(|_| self.op()).collect()
    }
}
