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
    /// Accepting, shutting down, killed.
    pub(crate) lifecycle: Lifecycle,
}

/// The server's shutdown state: whether it accepts, and the channels that
/// tell the accept loop to stop, tell connections still open at the
/// shutdown deadline to drop, and tell shutdown that every connection task
/// is gone.
pub(crate) struct Lifecycle {
    accepting: AtomicBool,
    /// Closed when the accept loop must stop.
    stop_accepting: smol::channel::Sender<()>,
    stop_accepting_rx: smol::channel::Receiver<()>,
    /// Closed when remaining connections must be dropped at once.
    kill: smol::channel::Sender<()>,
    kill_rx: smol::channel::Receiver<()>,
    /// Every connection task holds a clone of its sender; `recv` fails once
    /// all are gone.
    tasks_rx: smol::channel::Receiver<()>,
}

impl Lifecycle {
    /// A server that accepts, and the sender every connection task holds a
    /// clone of (see [`all_tasks_done`](Self::all_tasks_done)).
    pub(crate) fn new() -> (Self, smol::channel::Sender<()>) {
        let (stop_accepting, stop_accepting_rx) = smol::channel::bounded(1);
        let (kill, kill_rx) = smol::channel::bounded(1);
        let (tasks_tx, tasks_rx) = smol::channel::bounded(1);
        let lifecycle = Lifecycle {
            accepting: AtomicBool::new(true),
            stop_accepting,
            stop_accepting_rx,
            kill,
            kill_rx,
            tasks_rx,
        };
        (lifecycle, tasks_tx)
    }

    /// Whether the server still accepts connections.
    pub(crate) fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    /// No more connections: admission refuses, the accept loop and the echo
    /// connections are told to stop.
    pub(crate) fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::Release);
        self.stop_accepting.close();
    }

    /// Resolves once [`stop_accepting`](Self::stop_accepting) was called.
    pub(crate) async fn accepting_stopped(&self) {
        let _ = self.stop_accepting_rx.recv().await;
    }

    /// The shutdown deadline passed: every connection still open must drop.
    pub(crate) fn kill(&self) {
        self.kill.close();
    }

    /// Whether [`kill`](Self::kill) was called.
    pub(crate) fn is_killed(&self) -> bool {
        self.kill_rx.is_closed()
    }

    /// Resolves once [`kill`](Self::kill) was called.
    pub(crate) async fn killed(&self) {
        let _ = self.kill_rx.recv().await;
    }

    /// Resolves once every connection task (and the accept loop) has
    /// dropped its sender.
    pub(crate) async fn all_tasks_done(&self) {
        let _ = self.tasks_rx.recv().await;
    }
}
