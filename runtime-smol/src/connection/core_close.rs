//! Closing a connection through the core: with a code after what is
//! queued, and with 1011 after a handler panic.

use userlane_core::CloseCode;

use crate::info::ConnectionInfo;
use crate::state::{bump, ServerShared};

/// The handler panicked in `during` (`greeting`, `on_message`): counted,
/// logged, and the connection closed with 1011 (counted as such when this
/// call closed it).
pub(super) fn handler_panicked(shared: &ServerShared, info: &ConnectionInfo, during: &str) {
    bump(&shared.counters.handler_panics);
    log::error!(
        "handler panicked in {during} on connection {}; closing it with 1011",
        info.connection_id()
    );
    if close_with(shared, info, CloseCode::INTERNAL_ERROR, "internal error") {
        bump(&shared.counters.closed_handler_panic);
    }
}

/// Asks the core to close the connection with `code` after what is queued.
/// Returns whether it closed it (false if the connection was already closing).
pub(super) fn close_with(
    shared: &ServerShared,
    info: &ConnectionInfo,
    code: CloseCode,
    reason: &str,
) -> bool {
    let slot = &shared.shards.slots[info.shard];
    let now = shared.clock.now();
    slot.core
        .with(|f| slot.close_connection(f, info.manager, info.connection, code, reason, now))
}
