//! The table slots behind manager and connection handles.

use crate::inbound::Levels;
use crate::index::SlotIndex;
use crate::list::{Link, List};
use crate::pool::Fifo;
use crate::{CloseFrame, Instant, ManagerStats, UserContext};

/// One entry of the manager table.
///
/// `repr(C)`, in the order a send reads it: the counters, the handle check
/// and the connection list, then the context, whose `user_id` comes first (a
/// lookup by id compares it); what only connects, disconnects and timers
/// read comes last, so a send by id with a short id reads about the first
/// hundred bytes of the slot (callgrind: 10.1 -> 8.5 L1 misses per send). Neither
/// index type leaves padding inside the hot part.
#[repr(C)]
pub(crate) struct UserSlot<I> {
    /// Per-manager counters.
    pub(crate) stats: ManagerStats,
    /// Bumped every time the slot is freed; handles carry the value they were issued with.
    pub(crate) generation: u32,
    /// Open connections of this user (through [`ConnSlot::user_link`]).
    pub(crate) conns: List<I>,
    /// Next slot in the same hash bucket, or in the free list while free.
    pub(crate) next: I,
    /// How many open connections have a full queue (`queue_depth`
    /// messages), so that a send knows what it will enqueue without walking
    /// the list first. Below `CONNS`, so it fits the index type.
    full: I,
    /// Whether the manager is active; `ctx` is meaningful only then.
    pub(crate) active: bool,
    /// The context the manager was created with ([`UserContext::VACANT`]
    /// while the slot is free).
    pub(crate) ctx: UserContext,
    /// Messages waiting for the user's next connection.
    pub(crate) offline: Fifo<I>,
    /// Position in the factory's empty-manager list (active with no open connection).
    pub(crate) empty_link: Link<I>,
    /// While the manager has no open connection: when it last became empty
    /// (or was created). While it has some: the instant `inbound` was last
    /// brought up to date (the user's inbound budget shares this stamp).
    pub(crate) empty_since: Instant,
    /// The user's inbound buckets at `empty_since`, shared by all its connections.
    pub(crate) inbound: Levels,
}

impl<I: SlotIndex> UserSlot<I> {
    /// A slot that has never been used.
    pub(crate) const UNUSED: Self = UserSlot {
        stats: ManagerStats::ZERO,
        empty_since: Instant::ZERO,
        generation: 1,
        conns: List::EMPTY,
        offline: Fifo::EMPTY,
        next: I::NIL,
        empty_link: Link::DETACHED,
        full: I::ZERO,
        active: false,
        ctx: UserContext::VACANT,
        inbound: Levels {
            messages: 0,
            bytes: 0,
        },
    };

    pub(crate) fn is_active(&self) -> bool {
        self.active
    }

    /// Open connections with a full queue.
    pub(crate) fn full(&self) -> u32 {
        self.full.unpack()
    }

    /// One more (`true`) or one fewer (`false`) open connection with a full queue.
    pub(crate) fn count_full(&mut self, more: bool) {
        let n = self.full.unpack();
        self.full = I::pack(if more { n + 1 } else { n - 1 });
    }
}

/// Lifecycle of a connection slot, with what each state alone needs (an
/// open connection's inbound budget, a closing one's close frame) sharing
/// the same bytes; both carry the pending-event flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnState {
    /// Not in use.
    Free,
    /// Open: receives messages, counts toward limits, watched for idleness.
    Open {
        /// `EV_*` flags not yet reported by `poll_event`.
        events: u8,
        /// Inbound strikes at `last_activity`.
        strikes: u16,
        /// The connection's inbound buckets at `last_activity`.
        inbound: Levels,
    },
    /// Closed by the core; its queue drains, then `close` is transmitted once.
    /// The slot is released by `handle_closed` / `remove_connection`.
    Closing {
        /// `EV_*` flags not yet reported by `poll_event`.
        events: u8,
        /// The close to transmit.
        close: CloseFrame,
        /// Whether it was transmitted.
        close_sent: bool,
    },
}

/// Why an open connection stopped being open, for the stats.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Departure {
    Removed,
    Lost,
}

/// Pending-event flags of a connection.
pub(crate) const EV_READY: u8 = 1;
pub(crate) const EV_CLOSED: u8 = 2;

/// One entry of the connection table (48 bytes with `u16` links).
pub(crate) struct ConnSlot<I> {
    pub(crate) generation: u32,
    pub(crate) state: ConnState,
    /// The manager the connection belongs to for its whole life: its slot
    /// and generation (the factory tag is the factory's own, not stored).
    pub(crate) owner_index: I,
    pub(crate) owner_generation: u32,
    /// Position in the owner's connection list (or the free list's `next`).
    pub(crate) user_link: Link<I>,
    /// Position in the idle-order list while open.
    pub(crate) idle_link: Link<I>,
    /// Position in the pending-event list while it has events.
    pub(crate) event_link: Link<I>,
    /// Outbound messages, oldest first.
    pub(crate) queue: Fifo<I>,
    /// Last inbound activity; also the instant the inbound buckets and
    /// strikes in [`ConnState::Open`] were last brought up to date.
    pub(crate) last_activity: Instant,
}

impl<I: SlotIndex> ConnSlot<I> {
    /// A slot that has never been used.
    pub(crate) const UNUSED: Self = ConnSlot {
        generation: 1,
        state: ConnState::Free,
        owner_index: I::NIL,
        owner_generation: 0,
        user_link: Link::DETACHED,
        idle_link: Link::DETACHED,
        event_link: Link::DETACHED,
        queue: Fifo::EMPTY,
        last_activity: Instant::ZERO,
    };

    /// `EV_*` flags not yet reported (none while free).
    pub(crate) fn events(&self) -> u8 {
        match self.state {
            ConnState::Free => 0,
            ConnState::Open { events, .. } | ConnState::Closing { events, .. } => events,
        }
    }

    /// Sets the pending-event flags (ignored while free).
    pub(crate) fn set_events(&mut self, flags: u8) {
        match &mut self.state {
            ConnState::Free => {}
            ConnState::Open { events, .. } | ConnState::Closing { events, .. } => *events = flags,
        }
    }

    /// Whether the connection is open.
    pub(crate) fn is_open(&self) -> bool {
        matches!(self.state, ConnState::Open { .. })
    }

    /// The owner's manager slot.
    pub(crate) fn owner_slot(&self) -> usize {
        self.owner_index.unpack() as usize
    }
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

/// The hash of a user id for the bucket table: a seeded multiply-xorshift hash that reads
/// the id eight bytes at a time (a 10-byte id takes two rounds, where a
/// byte-at-a-time hash takes ten dependent multiplies). A tail shorter than
/// eight bytes is read as an overlapping word; the length is part of the
/// seed, so overlapping reads cannot make two ids of different lengths equal.
#[inline]
pub(crate) fn id_hash(user_id: &str, seed: u32) -> u32 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mix = |h: u64, word: u64| {
        let h = (h ^ word).wrapping_mul(K);
        h ^ (h >> 29)
    };
    let bytes = user_id.as_bytes();
    let n = bytes.len();
    let mut h = (u64::from(seed) << 32 | n as u64) ^ K;
    if n >= 8 {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            h = mix(h, u64_at(w, 0));
        }
        if !words.remainder().is_empty() {
            h = mix(h, u64_at(bytes, n - 8));
        }
    } else if n >= 4 {
        h = mix(
            h,
            u64::from(u32_at(bytes, 0)) | u64::from(u32_at(bytes, n - 4)) << 32,
        );
    } else if n > 0 {
        let word =
            u64::from(bytes[0]) | u64::from(bytes[n / 2]) << 8 | u64::from(bytes[n - 1]) << 16;
        h = mix(h, word);
    }
    (h.wrapping_mul(K) >> 32) as u32
}

/// The little-endian `u64` at `bytes[at..at + 8]` (the caller checked the length).
#[inline]
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The little-endian `u32` at `bytes[at..at + 4]` (the caller checked the length).
#[inline]
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::id_hash;

    /// Longest bucket chain when `ids` are hashed into `buckets` buckets.
    fn longest_chain(ids: impl Iterator<Item = heapless::String<64>>, buckets: usize) -> usize {
        let mut counts = [0u16; 16_384];
        let mut longest = 0;
        for id in ids {
            let b = id_hash(&id, 7) as usize % buckets;
            counts[b] += 1;
            longest = longest.max(counts[b] as usize);
        }
        longest
    }

    fn format(args: core::fmt::Arguments<'_>) -> heapless::String<64> {
        let mut s = heapless::String::new();
        core::fmt::write(&mut s, args).unwrap();
        s
    }

    #[test]
    fn sequential_and_uuid_like_ids_spread_over_the_buckets() {
        // 10,000 ids into 16,384 buckets: a uniform hash gives chains of
        // about 6 at most; a weak one piles the near-identical ids up.
        let seq = longest_chain(
            (0..10_000).map(|k| format(format_args!("user-{k:05}"))),
            16_384,
        );
        assert!(seq <= 8, "sequential ids: longest chain {seq}");
        let uuid = longest_chain(
            (0..10_000u32).map(|k| {
                format(format_args!(
                    "{:08x}-7d1e-4c2b-9f3a-{:012x}",
                    k.wrapping_mul(2_654_435_761),
                    k
                ))
            }),
            16_384,
        );
        assert!(uuid <= 8, "uuid-like ids: longest chain {uuid}");
        let short = longest_chain((0..1_000).map(|k| format(format_args!("{k}"))), 1_024);
        assert!(short <= 8, "short ids: longest chain {short}");
    }

    #[test]
    fn every_byte_and_the_length_change_the_hash() {
        let base = "0123456789abcdefghij";
        for n in 1..=base.len() {
            let id = &base[..n];
            assert_ne!(id_hash(id, 0), id_hash(&base[..n - 1], 0), "length {n}");
            for i in 0..n {
                let mut changed = heapless::String::<64>::new();
                changed.push_str(id).unwrap();
                let mut bytes = changed.into_bytes();
                bytes[i] ^= 1;
                let changed = core::str::from_utf8(&bytes).unwrap();
                assert_ne!(id_hash(id, 0), id_hash(changed, 0), "byte {i} of {id:?}");
            }
        }
        assert_ne!(id_hash("user-1", 1), id_hash("user-1", 2), "the seed");
    }
}
