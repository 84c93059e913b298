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
