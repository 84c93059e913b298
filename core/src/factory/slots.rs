//! The table slots behind manager and connection handles.

use crate::index::SlotIndex;
use crate::list::{Link, List, NIL};
use crate::pool::Fifo;
use crate::{CloseFrame, Instant, ManagerHandle, ManagerStats, UserContext};

/// One entry of the manager table.
pub(crate) struct UserSlot<I> {
    /// Bumped every time the slot is freed; handles carry the value they were issued with.
    pub(crate) generation: u32,
    /// `Some` while the manager is active, `None` while the slot is free.
    pub(crate) ctx: Option<UserContext>,
    /// Next slot in the same hash bucket, or in the free list while free.
    pub(crate) next: I,
    /// Open connections of this user (through [`ConnSlot::user_link`]).
    pub(crate) conns: List,
    /// Position in the factory's empty-manager list (active with no open connection).
    pub(crate) empty_link: Link<I>,
    /// Messages waiting for the user's next connection.
    pub(crate) offline: Fifo<I>,
    /// Per-manager counters.
    pub(crate) stats: ManagerStats,
    /// When the manager last became empty (meaningful while it has no open connection).
    pub(crate) empty_since: Instant,
}

impl<I: SlotIndex> UserSlot<I> {
    /// A slot that has never been used.
    pub(crate) const UNUSED: Self = UserSlot {
        generation: 1,
        ctx: None,
        next: I::NIL,
        conns: List::EMPTY,
        empty_link: Link::DETACHED,
        offline: Fifo::EMPTY,
        stats: ManagerStats::ZERO,
        empty_since: Instant::ZERO,
    };

    pub(crate) fn is_active(&self) -> bool {
        self.ctx.is_some()
    }
}

/// Lifecycle of a connection slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnState {
    /// Not in use.
    Free,
    /// Open: receives messages, counts toward limits, watched for idleness.
    Open,
    /// Closed by the core; its queue drains, then `close` is transmitted once.
    /// The slot is released by `handle_closed` / `remove_connection`.
    Closing { close: CloseFrame, close_sent: bool },
}

/// Pending-event flags of a connection.
pub(crate) const EV_READY: u8 = 1;
pub(crate) const EV_CLOSED: u8 = 2;

/// One entry of the connection table.
pub(crate) struct ConnSlot<I> {
    pub(crate) generation: u32,
    pub(crate) state: ConnState,
    /// The manager the connection belongs to for its whole life.
    pub(crate) owner: ManagerHandle,
    /// Position in the owner's connection list (or the free list's `next`).
    pub(crate) user_link: Link<I>,
    /// Position in the idle-order list while open.
    pub(crate) idle_link: Link<I>,
    /// Position in the pending-event list while `events != 0`.
    pub(crate) event_link: Link<I>,
    /// `EV_*` flags not yet reported by `poll_event`.
    pub(crate) events: u8,
    /// Outbound messages, oldest first.
    pub(crate) queue: Fifo<I>,
    /// Last inbound activity.
    pub(crate) last_activity: Instant,
}

impl<I: SlotIndex> ConnSlot<I> {
    /// A slot that has never been used.
    pub(crate) const UNUSED: Self = ConnSlot {
        generation: 1,
        state: ConnState::Free,
        owner: ManagerHandle {
            index: NIL,
            generation: 0,
        },
        user_link: Link::DETACHED,
        idle_link: Link::DETACHED,
        event_link: Link::DETACHED,
        events: 0,
        queue: Fifo::EMPTY,
        last_activity: Instant::ZERO,
    };
}

pub(crate) fn user_link<I>(c: &mut ConnSlot<I>) -> &mut Link<I> {
    &mut c.user_link
}
pub(crate) fn idle_link<I>(c: &mut ConnSlot<I>) -> &mut Link<I> {
    &mut c.idle_link
}
pub(crate) fn event_link<I>(c: &mut ConnSlot<I>) -> &mut Link<I> {
    &mut c.event_link
}
pub(crate) fn empty_link<I>(u: &mut UserSlot<I>) -> &mut Link<I> {
    &mut u.empty_link
}

/// Generations skip 0 so that a zeroed handle is never valid.
pub(crate) fn next_generation(g: u32) -> u32 {
    match g.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

/// FNV-1a of the user id, seeded, reduced to a bucket.
pub(crate) fn bucket_of(user_id: &str, seed: u32, buckets: usize) -> usize {
    let mut h: u32 = 0x811c_9dc5 ^ seed;
    for b in user_id.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h as usize % buckets
}
