//! Logging through `log` or `defmt` when one of those features is on; nothing otherwise.

#[cfg(feature = "log")]
macro_rules! log_warn {
    ($($arg:tt)*) => { ::log::warn!($($arg)*) };
}

#[cfg(all(feature = "defmt", not(feature = "log")))]
macro_rules! log_warn {
    ($fmt:literal, $($arg:expr),* $(,)?) => {{
        $( let _ = &$arg; )*
        ::defmt::warn!("userlane: {=str}", $fmt);
    }};
}

#[cfg(not(any(feature = "log", feature = "defmt")))]
macro_rules! log_warn {
    ($fmt:literal, $($arg:expr),* $(,)?) => {{
        $( let _ = &$arg; )*
    }};
}

pub(crate) use log_warn;

/// Logs a refusal worth a warning (an isolation violation). The factory
/// itself never logs: a log call is application code (a logger may block or
/// allocate), so the shim calls this after it released the shard lock, and
/// the legacy facade after its call.
pub(crate) fn log_refusal(e: &crate::Error) {
    if let crate::Error::IsolationViolation { manager, violation } = e {
        log_warn!(
            "userlane: isolation violation refused on manager {}: {:?}",
            manager.to_bits(),
            violation
        );
    }
}
