//! The state every task and handle shares: the shards, the clock, the
//! cluster link, the network layer's counters and the shutdown channels.
//! The bottom of the runtime's layers (above it: connections and the
//! cluster, then the public `ServerHandle`, then the accept loop).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::auth::Authenticator;
use crate::clock::Clock;
use crate::cluster::Cluster;
use crate::config::ServerConfig;
use crate::shards::Shards;

/// Counters kept by the network layer (the core keeps the rest).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) tcp_accepted: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    pub(crate) handshakes_failed: AtomicU64,
    pub(crate) rejected_400: AtomicU64,
    pub(crate) rejected_401: AtomicU64,
    pub(crate) rejected_403: AtomicU64,
    pub(crate) requests_timed_out: AtomicU64,
    pub(crate) rejected_404: AtomicU64,
    pub(crate) rejected_429: AtomicU64,
    pub(crate) rejected_503: AtomicU64,
    pub(crate) fallback_connections: AtomicU64,
    pub(crate) closed_message_too_big: AtomicU64,
    pub(crate) closed_invalid_utf8: AtomicU64,
    pub(crate) closed_protocol_error: AtomicU64,
    pub(crate) handler_panics: AtomicU64,
    pub(crate) closed_handler_panic: AtomicU64,
    pub(crate) forced_closes: AtomicU64,
    pub(crate) inbound_discarded: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The state every task and handle shares.
pub(crate) struct ServerShared {
    pub(crate) config: ServerConfig,
    pub(crate) shards: Arc<Shards>,
    pub(crate) clock: Clock,
    pub(crate) authenticator: Option<Arc<dyn Authenticator>>,
    /// The node's link to the cluster, when one is configured.
    pub(crate) cluster: Option<Arc<Cluster>>,
    pub(crate) counters: Counters,
    /// Rate limit of refusal log lines.
    pub(crate) refusal_log: crate::bounded::RefusalLog,
    /// Open echo connections (they count toward `max_connections`).
    pub(crate) echo_open: AtomicU64,
    /// Held from admission's count of open connections to its connect, so
    /// that handshakes on other executor threads cannot all pass the
    /// server-wide `max_connections` check at once (each shard's core only
    /// enforces its own share).
    pub(crate) admitting: std::sync::Mutex<()>,
    pub(crate) accepting: AtomicBool,
    /// Closed when the accept loop must stop.
    pub(crate) stop_accepting: smol::channel::Sender<()>,
    pub(crate) stop_accepting_rx: smol::channel::Receiver<()>,
    /// Closed when remaining connections must be dropped at once.
    pub(crate) kill: smol::channel::Sender<()>,
    pub(crate) kill_rx: smol::channel::Receiver<()>,
    /// Every connection task holds a clone; `recv` fails once all are gone.
    pub(crate) tasks_rx: smol::channel::Receiver<()>,
}

impl ServerShared {
    /// Resolves when shutdown's deadline has passed and every connection
    /// still open must be dropped.
    pub(crate) async fn killed(&self) {
        let _ = self.kill_rx.recv().await;
    }
}
