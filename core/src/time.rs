//! The core's notion of time: milliseconds on a clock the caller owns.

/// A point in time, in milliseconds since an origin chosen by the caller.
///
/// The core never reads a clock. Every operation that depends on time takes an
/// `Instant` from the caller, so tests can drive it faster than real time and
/// two runs with the same inputs behave identically. Instants passed to the
/// same [`ManagerFactory`](crate::ManagerFactory) should not go backwards; if
/// one does, the factory treats it as the latest instant it has already seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant(u64);

impl Instant {
    /// The origin of the caller's clock.
    pub const ZERO: Instant = Instant(0);

    /// An instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis)
    }

    /// Milliseconds since the origin.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// This instant plus `millis`, saturating at the end of time.
    pub const fn saturating_add_millis(self, millis: u64) -> Self {
        Instant(self.0.saturating_add(millis))
    }

    /// Milliseconds from `earlier` to `self`, or 0 if `earlier` is later.
    pub const fn saturating_millis_since(self, earlier: Instant) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}
