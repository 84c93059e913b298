//! Scale-out on Redis: several nodes serve the same users.
//!
//! - **User-targeted send from any node.** The sending node delivers to its
//!   own connections of the user directly, then runs one Lua script that
//!   `PUBLISH`es a postcard envelope, prefixed by its stream id, on the
//!   user's channel (`<ns>:user:<id>`) and appends it to the user's stream
//!   (`<ns>:offline:<id>`), flagged as stored for nobody when no node was
//!   subscribed and nothing was delivered locally — atomically, so a message
//!   is published and logged, or refused, never half. Too many messages
//!   stored for nobody is reported to the caller, never trimmed; the rest is
//!   kept for `replay_window`.
//! - **Subscriptions follow connections; each node has its own cursor.** A
//!   node subscribes to a user's channel when it opens its first connection
//!   of that user and unsubscribes when the last one leaves. After every
//!   subscription the subscriber task reads the streams (read-only, one
//!   script per batch) before it reads any published message: a new
//!   subscription takes what was stored for nobody, a resubscription every
//!   message after the node's cursor. Then it acknowledges. Published
//!   messages a drain delivered already are skipped by id, so each node
//!   delivers each message once and in order, whichever way it came, and a
//!   drain whose reply is lost is simply read again.
//! - **Hard cluster-wide per-user cap.** Admission is one Lua script over the
//!   user's sorted set of connection leases (`<ns>:conns:<id>`, score =
//!   expiry): drop expired leases, refuse if `ZCARD >= cap`, else `ZADD`.
//!   Nodes refresh their leases every `lease_ttl / 3`, re-creating any that
//!   Redis lost (a restart without persistence); a node that dies frees its
//!   slots when its leases expire.
//! - **Faults.** Every Redis call has a timeout. While Redis is unreachable
//!   the node keeps serving its local users, cross-node operations return
//!   [`ClusterError::Unavailable`], admission falls back to the local cap,
//!   and a background task reconnects with backoff, resubscribes and drains.
//!   A call that may run twice is retried once on a new connection when it
//!   failed on one Redis dropped (the first call after a restart).

use async_tungstenite::tungstenite::Message;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use serde::{Deserialize, Serialize};

/// Envelope format version: the first byte of every message between nodes.
pub const ENVELOPE_VERSION: u8 = 1;

/// Redis settings of a clustered server.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://host:port/db`.
    pub redis_url: String,
    /// Prefix of every key and channel.
    pub namespace: String,
    /// Lifetime of a connection lease; a dead node's slots free up after it. Default 30 s.
    pub lease_ttl: Duration,
    /// Most messages in a user's offline stream. Default 64.
    pub offline_max: u32,
    /// An offline stream expires this long after its last message. Default 24 h.
    pub offline_ttl: Duration,
    /// Timeout of one Redis call. Default 1 s.
    pub op_timeout: Duration,
    /// How long a user's messages stay in their stream after they reached a
    /// node, for a node that holds the user and resubscribes (Redis came
    /// back) to deliver what it missed. Default 60 s.
    pub replay_window: Duration,
}

impl ClusterConfig {
    /// Defaults for `redis_url`.
    pub fn new(redis_url: impl Into<String>) -> Self {
        ClusterConfig {
            redis_url: redis_url.into(),
            namespace: "userlane".into(),
            lease_ttl: Duration::from_secs(30),
            offline_max: 64,
            offline_ttl: Duration::from_secs(24 * 3600),
            op_timeout: Duration::from_secs(1),
            replay_window: Duration::from_secs(60),
        }
    }
}

/// Why a cross-node operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// Redis is unreachable (or timed out); only local delivery happened.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// The user's offline stream is full; the message was not stored.
    #[error("offline stream of the user is full")]
    OfflineFull,
}

/// What a cross-node send did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remote {
    /// Published to this many nodes (the sender included if it holds the user).
    Published(u32),
    /// No node holds the user: stored in the offline stream (now this long).
    Stored(u32),
}

/// A message between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Envelope {
    /// Deliver to every local connection of the user.
    Deliver {
        /// The node that accepted the message.
        origin: [u8; 16],
        /// Text (true) or binary frame.
        text: bool,
        /// The payload.
        payload: Vec<u8>,
    },
    /// Close every local connection of the user.
    Disconnect {
        /// The node that asked.
        origin: [u8; 16],
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// Deactivate the user's manager on every node.
    Deactivate {
        /// The node that asked.
        origin: [u8; 16],
    },
}

impl Envelope {
    /// Version byte + postcard.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ENVELOPE_VERSION];
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    /// Decodes bytes from [`Envelope::encode`]; `None` for another version or garbage.
    pub fn decode(bytes: &[u8]) -> Option<Envelope> {
        match bytes.split_first() {
            Some((&ENVELOPE_VERSION, rest)) => postcard::from_bytes(rest).ok(),
            _ => None,
        }
    }

    /// The node that sent it.
    pub fn origin(&self) -> [u8; 16] {
        match self {
            Envelope::Deliver { origin, .. }
            | Envelope::Disconnect { origin, .. }
            | Envelope::Deactivate { origin } => *origin,
        }
    }
}

/// The envelope carrying `message` from node `origin` (text or binary; other
/// frame kinds are not application messages and give `None`).
pub fn envelope_of(message: &Message, origin: [u8; 16]) -> Option<Envelope> {
    match message {
        Message::Text(t) => Some(Envelope::Deliver {
            origin,
            text: true,
            payload: t.as_bytes().to_vec(),
        }),
        Message::Binary(b) => Some(Envelope::Deliver {
            origin,
            text: false,
            payload: b.to_vec(),
        }),
        _ => None,
    }
}

/// The message a `Deliver` envelope carries.
pub fn message_of(envelope: Envelope) -> Option<Message> {
    match envelope {
        Envelope::Deliver {
            text: true,
            payload,
            ..
        } => String::from_utf8(payload).ok().map(Message::text),
        Envelope::Deliver {
            text: false,
            payload,
            ..
        } => Some(Message::binary(payload)),
        _ => None,
    }
}

const ADMIT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return 1
"#;

/// Sets (not only updates: a lease Redis lost is re-created) the expiry of
/// each member. No cap check: these connections are open already.
const REFRESH: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now + ttl, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return 1
"#;

/// Publishes a message and appends it to the user's stream, in one atomic
/// step. `KEYS`: channel, stream, meta (hash: `seen`, the last id a drain
/// covered; `waiting`, messages stored for nobody since). `ARGV`: envelope,
/// mode (`s` store if nobody is subscribed, `l` delivered locally too, `c`
/// control: published only), most waiting, offline ttl, replay window (ms).
/// The stream id (`ms-seq`, from Redis `TIME`, above the stream's last one)
/// is chosen first so that the published payload carries it: `<id> <env>`.
/// Returns `{subscribers, waiting}`: waiting 0 when not stored, -1 full.
const SEND: &str = r#"
if ARGV[2] == 'c' then return {redis.call('PUBLISH', KEYS[1], ' ' .. ARGV[1]), 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms, seq = now, 0
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #last > 0 then
  local lms, lseq = string.match(last[1][1], '^(%d+)-(%d+)$')
  if tonumber(lms) >= now then ms = tonumber(lms); seq = tonumber(lseq) + 1 end
end
local id = string.format('%.0f-%.0f', ms, seq)
local waiting = tonumber(redis.call('HGET', KEYS[3], 'waiting') or '0')
local n = redis.call('PUBLISH', KEYS[1], id .. ' ' .. ARGV[1])
local stored = n == 0 and ARGV[2] == 's'
if stored and waiting >= tonumber(ARGV[3]) then return {0, -1} end
redis.call('XADD', KEYS[2], id, 'e', ARGV[1], 'w', stored and '1' or '0')
if stored then waiting = redis.call('HINCRBY', KEYS[3], 'waiting', 1) end
local ttl = ARGV[5]
if waiting > 0 then
  ttl = ARGV[4]
else
  redis.call('XTRIM', KEYS[2], 'MINID', '~', string.format('%.0f', now - tonumber(ARGV[5])))
end
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
if stored then return {0, waiting} end
return {n, 0}
"#;

/// Reads users' streams without removing anything. `KEYS`: the epoch key,
/// then each user's stream and meta. `ARGV[1]`: an epoch to set if Redis
/// has none (it lost its data); then per user the epoch of the node's
/// cursor and the cursor (`''`: a new subscription, which takes only the
/// messages stored for nobody since the last drain). A cursor of another
/// epoch reads the whole stream. Writes nothing but the epoch: the node
/// acknowledges with `ACK` once it has delivered. Returns `{epoch, heads, lists}`: per user
/// the stream's last id (`''` if empty) and `{id, w, envelope, ...}`.
const DRAIN_MANY: &str = r#"
local epoch = redis.call('GET', KEYS[1])
if not epoch then epoch = ARGV[1]; redis.call('SET', KEYS[1], epoch) end
local heads, lists = {}, {}
for k = 1, (#KEYS - 1) / 2 do
  local s, m = KEYS[2 * k], KEYS[2 * k + 1]
  local cursor = ARGV[2 * k + 1]
  local fresh = cursor == ''
  local from = '-'
  if fresh then
    local seen = redis.call('HGET', m, 'seen')
    if seen then from = '(' .. seen end
  elseif ARGV[2 * k] == epoch then
    from = '(' .. cursor
  end
  local out = {}
  for _, e in ipairs(redis.call('XRANGE', s, from, '+')) do
    if not fresh or e[2][4] == '1' then
      out[#out + 1] = e[1]; out[#out + 1] = e[2][4]; out[#out + 1] = e[2][2]
    end
  end
  local top = redis.call('XREVRANGE', s, '+', '-', 'COUNT', 1)
  heads[k] = ''
  if #top > 0 then heads[k] = top[1][1] end
  lists[k] = out
end
return {epoch, heads, lists}
"#;

/// After a drain delivered up to `ARGV[k]` (a stream id) of the stream
/// `KEYS[2k]`: a new subscription no longer takes what is up to there
/// (`seen`), and `waiting` counts what was stored for nobody after it. The
/// hash expires with the stream.
const ACK: &str = r#"
local function id(s) local a, b = string.match(s, '^(%d+)-(%d+)$'); return {tonumber(a), tonumber(b)} end
for k = 1, #ARGV do
  local m, head = KEYS[2 * k], ARGV[k]
  local seen = redis.call('HGET', m, 'seen')
  local h, o = id(head), seen and id(seen)
  if not o or h[1] > o[1] or (h[1] == o[1] and h[2] > o[2]) then
    local waiting = 0
    for _, e in ipairs(redis.call('XRANGE', KEYS[2 * k - 1], '(' .. head, '+')) do
      if e[2][4] == '1' then waiting = waiting + 1 end
    end
    redis.call('HSET', m, 'seen', head, 'waiting', waiting)
    local ttl = redis.call('PTTL', KEYS[2 * k - 1])
    if ttl > 0 then redis.call('PEXPIRE', m, ttl) else redis.call('DEL', m) end
  end
end
return 1
"#;

/// The scripts, each hashed once: `invoke_async` sends `EVALSHA` and falls
/// back to `EVAL` when Redis does not have the script cached.
static ADMIT_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(ADMIT));
static REFRESH_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(REFRESH));
static SEND_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SEND));
static ACK_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(ACK));
static DRAIN_MANY_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(DRAIN_MANY));

/// Most users whose offline streams one `DRAIN_MANY` call takes.
pub const DRAIN_BATCH: usize = 128;

/// Upper bounds (µs) of the Redis round-trip histogram buckets.
pub const RTT_BUCKETS_US: [u64; 10] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000,
];

/// Redis round-trip times: a fixed-bucket histogram.
#[derive(Debug, Default)]
pub(crate) struct RttHistogram {
    buckets: [AtomicU64; RTT_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl RttHistogram {
    fn observe(&self, d: Duration) {
        let us = d.as_micros() as u64;
        let i = RTT_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(RTT_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Per-bucket counts, the sum in microseconds and the count.
    fn snapshot(&self) -> ([u64; RTT_BUCKETS_US.len() + 1], u64, u64) {
        (
            std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            self.sum_us.load(Ordering::Relaxed),
            self.count.load(Ordering::Relaxed),
        )
    }
}

/// A snapshot of a node's cluster counters, part of
/// [`ServerStats`](crate::ServerStats) when the node runs in a cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClusterStats {
    /// Whether Redis answered the last call.
    pub healthy: bool,
    /// Users this node holds (and is subscribed for).
    pub local_users: u64,
    /// Cross-node operations that failed because Redis was unreachable.
    pub unavailable_errors: u64,
    /// Envelopes received from other nodes.
    pub envelopes_received: u64,
    /// Admissions decided by the local cap because Redis was unreachable.
    pub local_admissions: u64,
    /// Messages this node read from users' streams right after
    /// (re)subscribing and delivered to its open connections: stored for
    /// nobody, or missed while it was not subscribed.
    pub offline_delivered: u64,
    /// Redis round trips per bucket of [`RTT_BUCKETS_US`] (not cumulative;
    /// the last counts those over the largest bound).
    pub rtt_buckets: [u64; RTT_BUCKETS_US.len() + 1],
    /// The round trips' total, in microseconds.
    pub rtt_sum_us: u64,
    /// Round trips measured.
    pub rtt_count: u64,
}

/// A request to the subscriber task.
enum SubCmd {
    Subscribe(String, Arc<Confirmed>),
    Unsubscribe(String),
}

/// Whether a user's subscription (and the drain after it) is confirmed:
/// set once by the subscriber task, awaited by every connection of the user
/// that opens meanwhile.
type Confirmed = async_lock::OnceCell<bool>;

/// This node's local connections of one user.
struct LocalUser {
    /// Open connections (the node is subscribed while > 0).
    count: usize,
    /// The answer to the user's current subscription request.
    confirmed: Arc<Confirmed>,
    /// Where this node is in the user's stream; `None` until the first
    /// drain of the subscription.
    cursor: Option<Cursor>,
}

/// A stream id, `ms-seq`.
type StreamId = (u64, u64);

fn parse_id(s: &[u8]) -> Option<StreamId> {
    let (ms, seq) = std::str::from_utf8(s).ok()?.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// A published payload: `<stream id> <envelope>`, `' '<envelope>` (control),
/// or a bare envelope (a node of the previous release; it starts with the
/// version byte, never a digit or a space).
fn split_published(payload: &[u8]) -> (Option<StreamId>, &[u8]) {
    match payload.iter().position(|b| *b == b' ') {
        Some(space)
            if payload[..space]
                .iter()
                .all(|b| b.is_ascii_digit() || *b == b'-') =>
        {
            (parse_id(&payload[..space]), &payload[space + 1..])
        }
        _ => (None, payload),
    }
}

/// A node's position in one user's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    /// The Redis data set the ids belong to (a new one after Redis lost its data).
    epoch: String,
    /// Every message up to here was delivered to this node's connections of
    /// the user, or sent before it subscribed: a later drain reads after it.
    at: StreamId,
    /// Every message up to here was delivered: a published one at or below it
    /// is a duplicate (a drain delivered it already).
    delivered: Option<StreamId>,
}

/// What one drain read for a user: the stream's last id and `(id, stored
/// for nobody, envelope)` per message.
type Drained = (Option<StreamId>, Vec<(StreamId, bool, Envelope)>);

/// A node's link to the cluster.
pub struct Cluster {
    pub(crate) config: ClusterConfig,
    node_id: [u8; 16],
    client: redis::Client,
    conn: async_lock::Mutex<Option<MultiplexedConnection>>,
    healthy: AtomicBool,
    /// Local open connections per user (subscribed while any).
    local: Mutex<HashMap<String, LocalUser>>,
    /// This node's connections that count against the cluster-wide cap, per
    /// user: what the refresh keeps (and re-creates) in Redis. Not the
    /// registry: a connection there may still await `ADMIT`, and a lease the
    /// refresh created first would let `ADMIT` take it as already admitted,
    /// past the cap.
    held: Mutex<HashMap<String, HashSet<String>>>,
    sub_tx: smol::channel::Sender<SubCmd>,
    sub_rx: smol::channel::Receiver<SubCmd>,
    /// Round-trip times of Redis calls.
    rtt: RttHistogram,
    /// See [`ClusterStats`].
    unavailable_errors: AtomicU64,
    envelopes_received: AtomicU64,
    pub(crate) local_admissions: AtomicU64,
    offline_delivered: AtomicU64,
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

    fn key(&self, kind: &str, user: &str) -> String {
        format!("{}:{kind}:{user}", self.config.namespace)
    }

    fn channel_prefix(&self) -> String {
        format!("{}:user:", self.config.namespace)
    }

    /// Runs one Redis operation with the timeout, reconnecting lazily. Not
    /// retried: for operations that must not run twice (a send).
    async fn call<T, F, Fut>(&self, op: F) -> Result<T, ClusterError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let started = Instant::now();
        let result = self.attempt(op).await.map_err(|(e, _)| e);
        self.record(started, &result).await;
        result
    }

    /// [`call`](Self::call) for an operation that may run twice: if it failed
    /// on a connection Redis had dropped (the first call after a restart finds
    /// its kept connection dead), it runs once more on a new connection, so a
    /// Redis that is back answers the first call (an admission does not fall
    /// back to the local cap because of a stale connection).
    async fn call_idempotent<T, F, Fut>(&self, op: F) -> Result<T, ClusterError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let started = Instant::now();
        let result = match self.attempt(&op).await {
            Err((_, true)) => {
                *self.conn.lock().await = None;
                self.attempt(&op).await.map_err(|(e, _)| e)
            }
            other => other.map_err(|(e, _)| e),
        };
        self.record(started, &result).await;
        result
    }

    /// One try of `op` within `op_timeout`; on failure, whether it failed on
    /// a kept connection that Redis dropped (worth one more try).
    async fn attempt<T, F, Fut>(&self, op: F) -> Result<T, (ClusterError, bool)>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let timeout = self.config.op_timeout;
        smol::future::or(
            async {
                let (conn, kept) = {
                    let mut guard = self.conn.lock().await;
                    match guard.as_ref() {
                        Some(c) => (c.clone(), true),
                        None => {
                            let c = self
                                .client
                                .get_multiplexed_async_connection()
                                .await
                                .map_err(|e| (ClusterError::Unavailable(e.to_string()), false))?;
                            *guard = Some(c.clone());
                            (c, false)
                        }
                    }
                };
                op(conn).await.map_err(|e| {
                    let dropped = kept && (e.is_connection_dropped() || e.is_io_error());
                    (ClusterError::Unavailable(e.to_string()), dropped)
                })
            },
            async {
                smol::Timer::after(timeout).await;
                Err((
                    ClusterError::Unavailable(format!("redis call timed out after {timeout:?}")),
                    false,
                ))
            },
        )
        .await
    }

    /// Counts a call's outcome: its round trip, or the outage (the kept
    /// connection is dropped, the next call makes a new one).
    async fn record<T>(&self, started: Instant, result: &Result<T, ClusterError>) {
        match result {
            Ok(_) => {
                self.rtt.observe(started.elapsed());
                self.healthy.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                if self.healthy.swap(false, Ordering::Relaxed) {
                    log::warn!("redis unreachable: {e}; serving local users only");
                }
                self.unavailable_errors.fetch_add(1, Ordering::Relaxed);
                *self.conn.lock().await = None;
            }
        }
    }

    /// Takes a cluster-wide lease for connection `member` of `user`:
    /// `Ok(true)` admitted, `Ok(false)` the user is at `cap` across the cluster.
    pub async fn admit(&self, user: &str, member: &str, cap: u32) -> Result<bool, ClusterError> {
        let key = self.key("conns", user);
        let ttl = self.config.lease_ttl.as_millis() as u64;
        let member = format!("{}:{member}", self.node_id());
        // Idempotent: a second run finds the member's lease and renews it.
        self.call_idempotent(|mut c| {
            let (key, member) = (key.clone(), member.clone());
            async move {
                ADMIT_SCRIPT
                    .key(key)
                    .arg(member)
                    .arg(cap)
                    .arg(ttl)
                    .invoke_async::<i64>(&mut c)
                    .await
            }
        })
        .await
        .map(|n| n == 1)
    }

    /// Records that connection `member` of `user` holds a lease (admitted
    /// by [`admit`](Self::admit), or under the local cap while Redis was
    /// unreachable): the refresh keeps its lease alive, re-creating it if
    /// Redis lost it, until [`forget_lease`](Self::forget_lease).
    pub fn hold_lease(&self, user: &str, member: &str) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(user.to_owned())
            .or_default()
            .insert(member.to_owned());
    }

    /// Stops refreshing the lease of connection `member` of `user` (its
    /// connection closed); [`release_lease`](Self::release_lease) removes it.
    pub fn forget_lease(&self, user: &str, member: &str) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(members) = held.get_mut(user) {
            members.remove(member);
            if members.is_empty() {
                held.remove(user);
            }
        }
    }

    /// Whether connection `member` of `user` is held (see [`hold_lease`](Self::hold_lease)).
    fn holds(&self, user: &str, member: &str) -> bool {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(user)
            .is_some_and(|m| m.contains(member))
    }

    /// Forgets the lease and gives it back (best effort: it expires anyway).
    pub async fn release_lease(&self, user: &str, member: &str) {
        self.forget_lease(user, member);
        self.remove_leases(user, std::slice::from_ref(&member.to_owned()))
            .await;
    }

    /// `ZREM`s the leases of `members` (this node's connections of `user`).
    async fn remove_leases(&self, user: &str, members: &[String]) {
        let key = self.key("conns", user);
        let node = self.node_id();
        let members: Vec<String> = members.iter().map(|m| format!("{node}:{m}")).collect();
        let _ = self
            .call(|mut c| async move {
                redis::cmd("ZREM")
                    .arg(key)
                    .arg(members)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await;
    }

    /// Refreshes the leases of `members` (this node's connections of
    /// `user`), re-creating those Redis no longer has.
    pub async fn refresh_leases(&self, user: &str, members: &[String]) -> Result<(), ClusterError> {
        let key = self.key("conns", user);
        let ttl = self.config.lease_ttl.as_millis() as u64;
        let node = self.node_id();
        let args: Vec<String> = members.iter().map(|m| format!("{node}:{m}")).collect();
        self.call(|mut c| async move {
            let mut inv = REFRESH_SCRIPT.key(key);
            inv.arg(ttl);
            for a in &args {
                inv.arg(a);
            }
            inv.invoke_async::<i64>(&mut c).await
        })
        .await
        .map(|_| ())
    }

    /// Publishes `envelope` for `user` and, for a message, appends it to the
    /// user's stream (kept for `replay_window`, for nodes that resubscribe);
    /// stored there for the user's next connection when no node is
    /// subscribed and nothing was delivered locally (`store_offline`).
    pub async fn publish(
        &self,
        user: &str,
        envelope: &Envelope,
        store_offline: bool,
    ) -> Result<Remote, ClusterError> {
        let keys = [
            self.key("user", user),
            self.key("offline", user),
            self.key("offmeta", user),
        ];
        let mode = match envelope {
            Envelope::Deliver { .. } if store_offline => "s",
            Envelope::Deliver { .. } => "l",
            _ => "c",
        };
        let args = (
            self.config.offline_max,
            self.config.offline_ttl.as_millis() as u64,
            self.config.replay_window.as_millis() as u64,
        );
        let bytes = envelope.encode();
        let (n, stored): (i64, i64) = self
            .call(|mut c| async move {
                let [channel, stream, meta] = keys;
                SEND_SCRIPT
                    .key(channel)
                    .key(stream)
                    .key(meta)
                    .arg(bytes)
                    .arg(mode)
                    .arg(args.0)
                    .arg(args.1)
                    .arg(args.2)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        match (n, stored) {
            (_, -1) => Err(ClusterError::OfflineFull),
            (_, s) if s > 0 => Ok(Remote::Stored(s as u32)),
            (n, _) => Ok(Remote::Published(n as u32)),
        }
    }

    /// Takes the messages stored for `user` while no node was subscribed,
    /// oldest first (what a new connection would get).
    pub async fn drain_offline(&self, user: &str) -> Result<Vec<Envelope>, ClusterError> {
        let mut all = self.drain_offline_many(&[user.to_owned()]).await?;
        Ok(all.pop().unwrap_or_default())
    }

    /// [`drain_offline`](Self::drain_offline) for each of `users`, in atomic
    /// batches of [`DRAIN_BATCH`] users.
    pub async fn drain_offline_many(
        &self,
        users: &[String],
    ) -> Result<Vec<Vec<Envelope>>, ClusterError> {
        let mut all = Vec::with_capacity(users.len());
        for batch in users.chunks(DRAIN_BATCH) {
            let reqs: Vec<(String, Option<Cursor>)> =
                batch.iter().map(|u| (u.clone(), None)).collect();
            let (_, drained) = self.read_streams(&reqs).await?;
            let heads: Vec<_> = batch
                .iter()
                .cloned()
                .zip(drained.iter().map(|d| d.0))
                .collect();
            self.ack(&heads).await?;
            all.extend(
                drained
                    .into_iter()
                    .map(|(_, list)| list.into_iter().map(|(_, _, e)| e).collect()),
            );
        }
        Ok(all)
    }

    /// Tells Redis that what a drain read of each user's stream (up to the
    /// stream's last id then) was delivered: a new subscription no longer takes it. Run after the
    /// delivery, so a drain whose reply was lost loses nothing (the next one
    /// reads the same); an `ACK` that fails only lets a later new
    /// subscription on another node take the same stored messages again.
    async fn ack(&self, read: &[(String, Option<StreamId>)]) -> Result<(), ClusterError> {
        let mut keys = Vec::new();
        let mut heads = Vec::new();
        for (user, head) in read {
            if let Some((ms, seq)) = head {
                keys.extend([self.key("offline", user), self.key("offmeta", user)]);
                heads.push(format!("{ms}-{seq}"));
            }
        }
        if heads.is_empty() {
            return Ok(());
        }
        self.call_idempotent(|mut c| {
            let mut inv = ACK_SCRIPT.prepare_invoke();
            for k in &keys {
                inv.key(k);
            }
            for h in &heads {
                inv.arg(h);
            }
            async move { inv.invoke_async::<i64>(&mut c).await }
        })
        .await
        .map(|_| ())
    }

    /// One `DRAIN_MANY` call: reads the stream of each user after its cursor
    /// (`None`: what was stored for nobody). Removes nothing, so a call whose
    /// reply is lost is simply made again.
    async fn read_streams(
        &self,
        reqs: &[(String, Option<Cursor>)],
    ) -> Result<(String, Vec<Drained>), ClusterError> {
        let mut keys = vec![format!("{}:epoch", self.config.namespace)];
        let mut args = vec![uuid::Uuid::new_v4().to_string()];
        for (user, cursor) in reqs {
            keys.push(self.key("offline", user));
            keys.push(self.key("offmeta", user));
            match cursor {
                Some(c) => args.extend([c.epoch.clone(), format!("{}-{}", c.at.0, c.at.1)]),
                None => args.extend([String::new(), String::new()]),
            }
        }
        type Raw = (String, Vec<String>, Vec<Vec<Vec<u8>>>);
        let (epoch, heads, lists): Raw = self
            .call_idempotent(|mut c| {
                let mut inv = DRAIN_MANY_SCRIPT.prepare_invoke();
                for k in &keys {
                    inv.key(k);
                }
                for a in &args {
                    inv.arg(a);
                }
                async move { inv.invoke_async(&mut c).await }
            })
            .await?;
        let drained = heads
            .iter()
            .zip(lists)
            .map(|(head, list)| {
                let entries = list
                    .chunks_exact(3)
                    .filter_map(|e| {
                        Some((parse_id(&e[0])?, e[1] == b"1", Envelope::decode(&e[2])?))
                    })
                    .collect();
                (parse_id(head.as_bytes()), entries)
            })
            .collect();
        Ok((epoch, drained))
    }

    /// Reads the streams of `users`, which this node has just (re)subscribed
    /// to, from its cursors, hands what it missed to `deliver` in order, then
    /// acknowledges; one batch of [`DRAIN_BATCH`] users after the other. Runs
    /// on the subscriber task before it reads any further pub/sub message, so
    /// a drained message is delivered before any message published after the
    /// subscription. A batch Redis does not answer is retried with backoff
    /// (reading removes nothing), keeping the subscription: messages
    /// published to it meanwhile wait in the pub/sub connection. Should the
    /// subscription have died, the subscriber finds out right after and
    /// resubscribes (and drains again).
    async fn drain_into(&self, users: &[String], deliver: &impl Fn(&str, Envelope)) {
        for batch in users.chunks(DRAIN_BATCH) {
            // A user whose last connection here closed since is left alone:
            // their stream waits for their next connection.
            let reqs: Vec<(String, Option<Cursor>)> = {
                let local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
                batch
                    .iter()
                    .filter_map(|u| Some((u.clone(), local.get(u.as_str())?.cursor.clone())))
                    .collect()
            };
            if reqs.is_empty() {
                continue;
            }
            let mut backoff = Duration::from_millis(100);
            let (epoch, drained) = loop {
                match self.read_streams(&reqs).await {
                    Ok(r) => break r,
                    Err(e) => {
                        log::warn!(
                            "streams of {} user(s) not read yet ({e}); retrying in {backoff:?}",
                            reqs.len()
                        );
                        smol::Timer::after(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            };
            // Acknowledged: what was delivered to users still held here. The
            // stream of a user whose last connection closed meanwhile waits
            // for their next connection.
            let mut acked = Vec::new();
            for ((user, cursor), read) in reqs.iter().zip(drained) {
                let head = read.0;
                let Some(envelopes) = self.advance(user, cursor.as_ref(), &epoch, read) else {
                    continue;
                };
                for env in envelopes {
                    self.offline_delivered.fetch_add(1, Ordering::Relaxed);
                    deliver(user, env);
                }
                acked.push((user.clone(), head));
            }
            if let Err(e) = self.ack(&acked).await {
                log::warn!("drained streams not acknowledged ({e}); a new connection elsewhere may get their stored messages again");
            }
        }
    }

    /// Moves `user`'s cursor past what a drain from `cursor` read, and
    /// returns the messages to deliver: after a new subscription (`None`),
    /// those stored for nobody; after a resubscription, every message after
    /// the cursor but this node's own (delivered locally when sent).
    /// `None` when the node no longer holds the user.
    fn advance(
        &self,
        user: &str,
        cursor: Option<&Cursor>,
        epoch: &str,
        (head, entries): Drained,
    ) -> Option<Vec<Envelope>> {
        let same_epoch = cursor.filter(|c| c.epoch == epoch);
        let at = head.or(same_epoch.map(|c| c.at)).unwrap_or((0, 0));
        let mut delivered = cursor.is_some().then_some(at);
        let mut out = Vec::with_capacity(entries.len());
        for (id, stored, env) in entries {
            if cursor.is_none() {
                delivered = delivered.max(Some(id));
            } else if !stored && env.origin() == self.node_id {
                continue;
            }
            out.push(env);
        }
        let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        local.get_mut(user)?.cursor = Some(Cursor {
            epoch: epoch.to_owned(),
            at,
            delivered,
        });
        Some(out)
    }

    /// Counts a local connection of `user`; the first one subscribes this
    /// node to the user's channel and, once subscribed, the subscriber task
    /// delivers the user's offline stream to this node's connections of the
    /// user (the new one included) before anything published after the
    /// subscription. Every connection that opens while that subscription is
    /// pending waits for the same answer (at most `op_timeout`): returns
    /// whether subscription and drain are confirmed.
    pub async fn local_opened(&self, user: &str) -> bool {
        let (first, confirmed) = {
            let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = local.entry(user.to_owned()).or_insert_with(|| LocalUser {
                count: 0,
                confirmed: Arc::new(Confirmed::new()),
                cursor: None,
            });
            entry.count += 1;
            (entry.count == 1, entry.confirmed.clone())
        };
        if first
            && self
                .sub_tx
                .try_send(SubCmd::Subscribe(user.to_owned(), confirmed.clone()))
                .is_err()
        {
            let _ = confirmed.set(false).await;
        }
        smol::future::or(async { *confirmed.wait().await }, async {
            smol::Timer::after(self.config.op_timeout).await;
            false
        })
        .await
    }

    /// After a (re)subscription of `users` and its drain: their connections
    /// that open from now on find their subscription confirmed.
    fn confirm(&self, users: &[String]) {
        let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        for user in users {
            let Some(user) = local.get_mut(user) else {
                continue;
            };
            if user.confirmed.get() != Some(&true) {
                let confirmed = Confirmed::new();
                let _ = confirmed.set_blocking(true);
                user.confirmed = Arc::new(confirmed);
            }
        }
    }

    /// Counts a local connection of `user` gone; the last one unsubscribes.
    pub fn local_closed(&self, user: &str) {
        let last = {
            let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
            match local.get_mut(user) {
                Some(u) if u.count > 1 => {
                    u.count -= 1;
                    false
                }
                Some(_) => {
                    local.remove(user);
                    true
                }
                None => false,
            }
        };
        if last {
            let _ = self.sub_tx.try_send(SubCmd::Unsubscribe(user.to_owned()));
        }
    }

    /// Whether the published message `id` of `user` is not yet delivered
    /// here (a drain after a resubscription may have delivered it); moves
    /// the user's cursor past it. Control messages (no id) always are.
    fn first_delivery(&self, user: &str, id: Option<StreamId>) -> bool {
        let Some(id) = id else { return true };
        let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(cursor) = local.get_mut(user).and_then(|u| u.cursor.as_mut()) else {
            return true;
        };
        if cursor.delivered.is_some_and(|d| id <= d) {
            return false;
        }
        cursor.at = cursor.at.max(id);
        cursor.delivered = Some(id);
        true
    }

    /// Users this node holds (and is subscribed for).
    pub fn local_users(&self) -> Vec<String> {
        self.local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// Connections and users with leases across the cluster (a `SCAN` of the
    /// lease sets; for metrics).
    pub async fn cluster_gauges(&self) -> Result<(u64, u64), ClusterError> {
        let pattern = format!("{}:conns:*", self.config.namespace);
        self.call(|mut c| async move {
            let mut cursor: u64 = 0;
            let (mut users, mut conns) = (0u64, 0u64);
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut c)
                    .await?;
                for k in keys {
                    let n: u64 = redis::cmd("ZCARD").arg(&k).query_async(&mut c).await?;
                    if n > 0 {
                        users += 1;
                        conns += n;
                    }
                }
                if next == 0 {
                    return Ok((users, conns));
                }
                cursor = next;
            }
        })
        .await
    }

    /// The subscriber task: keeps one pub/sub connection, (re)subscribes to
    /// every locally held user with backoff, and hands each envelope from
    /// another node to `deliver`.
    pub(crate) async fn run_subscriber(self: Arc<Self>, deliver: impl Fn(&str, Envelope)) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let Some((mut sink, mut stream, users)) = self.subscribe_held().await else {
                self.healthy.store(false, Ordering::Relaxed);
                smol::Timer::after(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            };
            // Subscribed to every held user: whatever a sender stored while
            // this node was not subscribed is in the streams now, and nothing
            // more is stored for these users while the subscription lasts.
            // Deliver it before reading any published message.
            self.drain_into(&users, &deliver).await;
            // A request of one of these users still queued is answered
            // again when it is read (subscribing twice is harmless).
            self.confirm(&users);
            backoff = Duration::from_millis(100);
            self.healthy.store(true, Ordering::Relaxed);
            log::info!(
                "subscribed to {} user channel(s) on redis",
                self.local_users().len()
            );
            if !self.serve_pubsub(&mut sink, &mut stream, &deliver).await {
                return;
            }
            log::warn!("redis pub/sub connection lost; reconnecting");
            self.healthy.store(false, Ordering::Relaxed);
        }
    }

    /// Opens a pub/sub connection and subscribes it to every locally held
    /// user; returns it and those users, or `None` when Redis did not take
    /// it (pending subscribe requests are then answered "not confirmed").
    async fn subscribe_held(&self) -> Option<(PubSubSink, PubSubStream, Vec<String>)> {
        let pubsub = smol::future::or(async { self.client.get_async_pubsub().await.ok() }, async {
            smol::Timer::after(self.config.op_timeout).await;
            None
        })
        .await;
        let Some(pubsub) = pubsub else {
            while let Ok(cmd) = self.sub_rx.try_recv() {
                if let SubCmd::Subscribe(_, ack) = cmd {
                    let _ = ack.set(false).await;
                }
            }
            return None;
        };
        let (mut sink, stream) = pubsub.split();
        let prefix = self.channel_prefix();
        let users = self.local_users();
        for user in &users {
            if sink.subscribe(format!("{prefix}{user}")).await.is_err() {
                return None;
            }
        }
        Some((sink, stream, users))
    }

    /// Serves one subscribed pub/sub connection: hands every envelope of
    /// another node to `deliver`, and (un)subscribes users as their first
    /// connection opens or their last one closes. Returns false when the
    /// node is gone (no more requests can come), true when the connection
    /// was lost and must be made anew.
    async fn serve_pubsub(
        &self,
        sink: &mut PubSubSink,
        stream: &mut PubSubStream,
        deliver: &impl Fn(&str, Envelope),
    ) -> bool {
        enum Step {
            Msg(Option<redis::Msg>),
            Cmd(Option<SubCmd>),
        }
        let prefix = self.channel_prefix();
        loop {
            let step = smol::future::or(async { Step::Msg(stream.next().await) }, async {
                Step::Cmd(self.sub_rx.recv().await.ok())
            })
            .await;
            match step {
                Step::Msg(Some(msg)) => self.receive(&prefix, &msg, deliver),
                Step::Msg(None) => return true,
                Step::Cmd(Some(SubCmd::Subscribe(user, ack))) => {
                    let r = sink.subscribe(format!("{prefix}{user}")).await.is_ok();
                    if r {
                        self.drain_into(std::slice::from_ref(&user), deliver).await;
                    }
                    let _ = ack.set(r).await;
                    if !r {
                        return true;
                    }
                }
                Step::Cmd(Some(SubCmd::Unsubscribe(user))) => {
                    if sink.unsubscribe(format!("{prefix}{user}")).await.is_err() {
                        return true;
                    }
                }
                Step::Cmd(None) => return false,
            }
        }
    }

    /// One published envelope: handed to `deliver` unless this node sent it
    /// or a drain delivered it already.
    fn receive(&self, prefix: &str, msg: &redis::Msg, deliver: &impl Fn(&str, Envelope)) {
        let Some(user) = msg.get_channel_name().strip_prefix(prefix) else {
            return;
        };
        let (id, envelope) = split_published(msg.get_payload_bytes());
        if !self.first_delivery(user, id) {
            return;
        }
        let Some(env) = Envelope::decode(envelope) else {
            log::warn!(
                "dropping an envelope of unknown version on {}",
                msg.get_channel_name()
            );
            return;
        };
        if env.origin() != self.node_id {
            self.envelopes_received.fetch_add(1, Ordering::Relaxed);
            deliver(user, env);
        }
    }
}

/// Refreshes this node's leases every `lease_ttl / 3`, for as long as the
/// server runs: the lease of every held connection is set to expire
/// `lease_ttl` from now, and re-created if Redis lost it (a restart without
/// persistence empties every lease set; without this the cap would
/// undercount the connections that stayed open).
///
/// Race with a close: a refresh works on a snapshot of the held connections,
/// so one that closes meanwhile may have its lease re-created after its
/// `ZREM`. Once a user's refresh has returned (Redis ran it), the members of
/// the snapshot that are no longer held are removed again; a close after
/// that check sends its own `ZREM` after the refresh ran. Either way the
/// lease of a closed connection is gone unless that `ZREM` fails or the
/// refresh's reply is lost (a timeout after Redis ran it): then the stale
/// lease is never refreshed again and expires within `lease_ttl`.
pub(crate) async fn refresh_leases_forever(cluster: Arc<Cluster>) {
    let period = cluster.config.lease_ttl / 3;
    loop {
        smol::Timer::after(period).await;
        cluster.refresh_held().await;
    }
}

impl Cluster {
    /// One refresh of every held lease (see [`refresh_leases_forever`]).
    async fn refresh_held(&self) {
        let by_user: Vec<(String, Vec<String>)> = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(user, members)| (user.clone(), members.iter().cloned().collect()))
            .collect();
        for (user, members) in by_user {
            if let Err(e) = self.refresh_leases(&user, &members).await {
                log::warn!(
                    "lease refresh failed ({e}); leases expire after {:?} unless Redis returns",
                    self.config.lease_ttl
                );
                return;
            }
            let closed: Vec<String> = members
                .into_iter()
                .filter(|m| !self.holds(&user, m))
                .collect();
            if !closed.is_empty() {
                self.remove_leases(&user, &closed).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_with_a_version_byte() {
        let e = Envelope::Deliver {
            origin: [7; 16],
            text: true,
            payload: b"hello".to_vec(),
        };
        let bytes = e.encode();
        assert_eq!(bytes[0], ENVELOPE_VERSION);
        assert_eq!(Envelope::decode(&bytes), Some(e));
        let mut other = bytes.clone();
        other[0] = 2;
        assert_eq!(Envelope::decode(&other), None);
        assert_eq!(Envelope::decode(&[]), None);
        assert_eq!(Envelope::decode(&[ENVELOPE_VERSION, 0xff, 0xff]), None);
    }

    #[test]
    fn published_payloads_carry_a_stream_id_and_bare_envelopes_still_decode() {
        let e = Envelope::Deactivate { origin: [9; 16] };
        let bytes = e.encode();
        let mut with_id = b"1764320000000-7 ".to_vec();
        with_id.extend(&bytes);
        assert_eq!(
            split_published(&with_id),
            (Some((1_764_320_000_000, 7)), &bytes[..])
        );
        let mut control = b" ".to_vec();
        control.extend(&bytes);
        assert_eq!(split_published(&control), (None, &bytes[..]));
        // From a node of the previous release: the version byte comes first.
        assert_eq!(split_published(&bytes), (None, &bytes[..]));
        assert_eq!(Envelope::decode(split_published(&with_id).1), Some(e));
        assert_eq!(parse_id(b"12-x"), None);
    }

    #[test]
    fn rtt_histogram_buckets() {
        let h = RttHistogram::default();
        h.observe(Duration::from_micros(80));
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_secs(3));
        let (b, sum, n) = h.snapshot();
        assert_eq!((b[0], b[2], b[RTT_BUCKETS_US.len()], n), (1, 1, 1, 3));
        assert_eq!(sum, 80 + 300 + 3_000_000);
    }
}
