//! The inbound budget: token buckets on what a connection and a user send.

use crate::Instant;

/// A token bucket: `per_second` units refill each second, up to `burst`.
///
/// Both must be at least 1 ([`Config::validate`](crate::Config::validate)).
/// A bucket starts full. Refills are computed on the caller's clock in
/// whole units on a fixed grid (the bucket gains `⌊per_second · t / 1000⌋ −
/// ⌊per_second · t₀ / 1000⌋` units from `t₀` to `t`, in milliseconds), so a
/// bucket refilled every millisecond gains exactly as much as one refilled
/// once a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rate {
    /// Units added per second.
    pub per_second: u32,
    /// Most units the bucket holds (the largest burst).
    pub burst: u32,
}

impl Rate {
    /// `per_second` units a second, bursts of up to `burst`.
    pub const fn new(per_second: u32, burst: u32) -> Self {
        Rate { per_second, burst }
    }
}

/// Message and byte budgets; `None` = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct InboundLimits {
    /// Messages (one unit per message).
    pub messages: Option<Rate>,
    /// Bytes (one unit per byte of payload).
    pub bytes: Option<Rate>,
}

impl InboundLimits {
    /// No budget at all.
    pub const UNLIMITED: Self = InboundLimits {
        messages: None,
        bytes: None,
    };
}

/// Which budget refused an inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum InboundLimit {
    /// [`Config::inbound_per_connection`](crate::Config::inbound_per_connection)`.messages`.
    ConnectionMessages,
    /// [`Config::inbound_per_connection`](crate::Config::inbound_per_connection)`.bytes`.
    ConnectionBytes,
    /// [`Config::inbound_per_user`](crate::Config::inbound_per_user)`.messages`,
    /// shared by all the user's connections.
    UserMessages,
    /// [`Config::inbound_per_user`](crate::Config::inbound_per_user)`.bytes`,
    /// shared by all the user's connections.
    UserBytes,
}

impl core::fmt::Display for InboundLimit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            InboundLimit::ConnectionMessages => "connection message rate exceeded",
            InboundLimit::ConnectionBytes => "connection byte rate exceeded",
            InboundLimit::UserMessages => "user message rate exceeded",
            InboundLimit::UserBytes => "user byte rate exceeded",
        })
    }
}

/// The verdict on one inbound message, from
/// [`handle_inbound`](crate::ManagerFactory::handle_inbound).
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Inbound {
    /// Within every budget: hand the message to the application.
    Accepted,
    /// Over this budget: discard the message (it consumed nothing); the
    /// connection stays open and earned a strike.
    Refused(InboundLimit),
    /// Over this budget for the
    /// [`inbound_strikes`](crate::Config::inbound_strikes)-th time: discard the
    /// message; the core has closed the connection with 1008
    /// ([`CloseReason::InboundFlood`](crate::CloseReason::InboundFlood)), sent
    /// after its queued messages.
    Closed(InboundLimit),
}

/// The levels of a message bucket and a byte bucket at one instant (unused
/// when the matching [`Rate`] is `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Levels {
    pub(crate) messages: u32,
    pub(crate) bytes: u32,
}

impl Levels {
    /// Full buckets for `limits` (0 for an unlimited one).
    pub(crate) const fn full(limits: &InboundLimits) -> Self {
        Levels {
            messages: match limits.messages {
                Some(r) => r.burst,
                None => 0,
            },
            bytes: match limits.bytes {
                Some(r) => r.burst,
                None => 0,
            },
        }
    }

    /// The levels at `to`, from the levels at `from` (`from <= to`).
    pub(crate) fn refilled(self, limits: &InboundLimits, from: Instant, to: Instant) -> Self {
        Levels {
            messages: refill(self.messages, limits.messages, from, to),
            bytes: refill(self.bytes, limits.bytes, from, to),
        }
    }
}

/// Units a bucket of `per_second` gains from `from` to `to` on the grid:
/// `⌊r·b/1000⌋ − ⌊r·a/1000⌋`, computed without overflow.
fn gained(per_second: u32, from: Instant, to: Instant) -> u64 {
    let (a, b) = (from.as_millis(), to.as_millis().max(from.as_millis()));
    let r = u64::from(per_second);
    let part = |t: u64| r * (t % 1000) / 1000;
    r.saturating_mul(b / 1000 - a / 1000)
        .saturating_add(part(b))
        .saturating_sub(part(a))
}

fn refill(level: u32, rate: Option<Rate>, from: Instant, to: Instant) -> u32 {
    match rate {
        Some(r) => {
            let level = u64::from(level).saturating_add(gained(r.per_second, from, to));
            level.min(u64::from(r.burst)) as u32
        }
        None => level,
    }
}

/// Whole seconds of the caller's clock begun between `from` and `to`: one
/// strike is forgiven for each.
pub(crate) fn seconds_crossed(from: Instant, to: Instant) -> u64 {
    (to.as_millis() / 1000).saturating_sub(from.as_millis() / 1000)
}

/// Whether `units` fit in a bucket at `level` (always, without a rate).
pub(crate) fn fits(level: u32, rate: Option<Rate>, units: u64) -> bool {
    rate.is_none() || u64::from(level) >= units
}

/// `level` minus `units` if the bucket has a rate (the caller checked [`fits`]).
pub(crate) fn take(level: u32, rate: Option<Rate>, units: u64) -> u32 {
    match rate {
        Some(_) => level - units as u32,
        None => level,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn refills_lose_no_fraction_however_often_they_run() {
        let r = Some(Rate::new(3, 1_000));
        // 3 units per second, refilled every 7 ms for 10 s: exactly 30.
        let mut level = 0;
        let mut t = 0;
        while t + 7 <= 10_000 {
            level = refill(level, r, at(t), at(t + 7));
            t += 7;
        }
        level = refill(level, r, at(t), at(10_000));
        assert_eq!(level, 30);
        assert_eq!(refill(0, r, at(0), at(10_000)), 30);
        // Capped at the burst, and huge gaps or rates never overflow.
        assert_eq!(refill(999, r, at(0), at(u64::MAX)), 1_000);
        let big = Some(Rate::new(u32::MAX, u32::MAX));
        assert_eq!(refill(0, big, at(0), at(u64::MAX - 1)), u32::MAX);
        assert_eq!(refill(5, None, at(0), at(9_000)), 5);
    }

    #[test]
    fn strikes_are_forgiven_per_second_boundary() {
        assert_eq!(seconds_crossed(at(999), at(1_000)), 1);
        assert_eq!(seconds_crossed(at(0), at(999)), 0);
        assert_eq!(seconds_crossed(at(1_500), at(4_200)), 3);
    }
}
