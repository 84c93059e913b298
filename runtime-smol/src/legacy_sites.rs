//! The process-wide table of legacy call sites, which the legacy facade
//! (`compat`) records into and `ServerStats` reports.

use std::panic::Location;
use std::sync::{Mutex, PoisonError};

use userlane_core::compat::{CallSite, CallSites, LegacyMethod};

/// Call sites kept; calls from further sites are counted as overflow.
pub const CALL_SITE_CAPACITY: usize = 256;

static SITES: Mutex<CallSites<CALL_SITE_CAPACITY>> = Mutex::new(CallSites::new());

/// Records one legacy call of `method` at `at`.
pub(crate) fn record(method: LegacyMethod, at: &'static Location<'static>) {
    SITES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .record(method, at);
}

/// A copy of the whole call-site table (for the legacy stats mapping).
pub(crate) fn snapshot() -> CallSites<CALL_SITE_CAPACITY> {
    SITES.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Legacy calls made in this process: every site with its `file:line` and count.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LegacyUsage {
    /// Every legacy call.
    pub total_calls: u64,
    /// Calls from sites beyond [`CALL_SITE_CAPACITY`].
    pub overflow_calls: u64,
    /// The sites, in order of first call.
    pub sites: Vec<CallSite>,
}

/// A snapshot of the legacy call-site table.
pub fn legacy_usage() -> LegacyUsage {
    let sites = SITES.lock().unwrap_or_else(PoisonError::into_inner);
    LegacyUsage {
        total_calls: sites.total_calls(),
        overflow_calls: sites.overflow_calls(),
        sites: sites.sites().to_vec(),
    }
}
