//! The server's clock: milliseconds since the server started, as the core's `Instant`.

use std::time::{Duration, Instant as StdInstant};

use userlane_core::Instant;

/// Converts between wall-clock `std::time::Instant` and the core's
/// milliseconds-since-start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    start: StdInstant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            start: StdInstant::now(),
        }
    }

    /// Now, for the core.
    pub(crate) fn now(&self) -> Instant {
        Instant::from_millis(self.start.elapsed().as_millis() as u64)
    }

    /// A core instant as a wall-clock instant, for timers.
    pub(crate) fn to_std(self, at: Instant) -> StdInstant {
        self.start + Duration::from_millis(at.as_millis())
    }
}
