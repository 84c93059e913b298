//! The [`Cluster`] type: a node's link to the cluster, its state (the kept
//! Redis connection, local users, held leases, the subscriber's queue,
//! counters) and its plain accessors.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use redis::aio::MultiplexedConnection;

use super::config::ClusterConfig;
use super::cursor::Cursor;
use super::outcome::ClusterError;
use super::stats::{ClusterStats, RttHistogram};

/// A request to the subscriber task.
pub(super) enum SubCmd {
    Subscribe(String, Arc<Confirmed>),
    Unsubscribe(String),
}

/// Whether a user's subscription (and the drain after it) is confirmed:
/// set once by the subscriber task, awaited by every connection of the user
/// that opens meanwhile.
pub(super) type Confirmed = async_lock::OnceCell<bool>;

/// This node's local connections of one user.
pub(super) struct LocalUser {
    /// Open connections (the node is subscribed while > 0).
    pub(super) count: usize,
    /// The answer to the user's current subscription request.
    pub(super) confirmed: Arc<Confirmed>,
    /// Where this node is in the user's stream; `None` until the first
    /// drain of the subscription.
    pub(super) cursor: Option<Cursor>,
}

/// A node's link to the cluster.
pub struct Cluster {
    pub(crate) config: ClusterConfig,
    pub(super) node_id: [u8; 16],
    pub(super) client: redis::Client,
    pub(super) conn: async_lock::Mutex<Option<MultiplexedConnection>>,
    pub(super) healthy: AtomicBool,
    /// Local open connections per user (subscribed while any).
    pub(super) local: Mutex<HashMap<String, LocalUser>>,
    /// This node's connections that count against the cluster-wide cap, per
    /// user: what the refresh keeps (and re-creates) in Redis. Not the
    /// registry: a connection there may still await `ADMIT`, and a lease the
    /// refresh created first would let `ADMIT` take it as already admitted,
    /// past the cap.
    pub(super) held: Mutex<HashMap<String, HashSet<String>>>,
    pub(super) sub_tx: smol::channel::Sender<SubCmd>,
    pub(super) sub_rx: smol::channel::Receiver<SubCmd>,
    /// Round-trip times of Redis calls.
    pub(super) rtt: RttHistogram,
    /// See [`ClusterStats`].
    pub(super) unavailable_errors: AtomicU64,
    pub(super) envelopes_received: AtomicU64,
    pub(crate) local_admissions: AtomicU64,
    pub(super) offline_delivered: AtomicU64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("redis_url", &self.config.redis_url)
            .field("healthy", &self.is_healthy())
            .finish()
    }
}

impl Cluster {
    /// A node link for `config` (no I/O yet; the connection is made lazily).
    pub fn new(config: ClusterConfig) -> Result<Arc<Self>, ClusterError> {
        let client = redis::Client::open(config.redis_url.as_str())
            .map_err(|e| ClusterError::Unavailable(e.to_string()))?;
        let (sub_tx, sub_rx) = smol::channel::unbounded();
        Ok(Arc::new(Cluster {
            config,
            node_id: *uuid::Uuid::new_v4().as_bytes(),
            client,
            conn: async_lock::Mutex::new(None),
            healthy: AtomicBool::new(false),
            local: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            sub_tx,
            sub_rx,
            rtt: RttHistogram::default(),
            unavailable_errors: AtomicU64::new(0),
            envelopes_received: AtomicU64::new(0),
            local_admissions: AtomicU64::new(0),
            offline_delivered: AtomicU64::new(0),
        }))
    }

    /// A snapshot of this node's cluster counters (also in
    /// [`ServerStats::cluster`](crate::ServerStats::cluster)).
    pub fn stats(&self) -> ClusterStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (rtt_buckets, rtt_sum_us, rtt_count) = self.rtt.snapshot();
        ClusterStats {
            healthy: self.is_healthy(),
            local_users: self
                .local
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len() as u64,
            unavailable_errors: get(&self.unavailable_errors),
            envelopes_received: get(&self.envelopes_received),
            local_admissions: get(&self.local_admissions),
            offline_delivered: get(&self.offline_delivered),
            rtt_buckets,
            rtt_sum_us,
            rtt_count,
        }
    }

    /// This node's id as envelope origin.
    pub fn origin(&self) -> [u8; 16] {
        self.node_id
    }

    /// This node's id.
    pub fn node_id(&self) -> String {
        uuid::Uuid::from_bytes(self.node_id).to_string()
    }

    /// Whether the last Redis call succeeded.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(super) fn key(&self, kind: &str, user: &str) -> String {
        format!("{}:{kind}:{user}", self.config.namespace)
    }

    pub(super) fn channel_prefix(&self) -> String {
        format!("{}:user:", self.config.namespace)
    }
}
