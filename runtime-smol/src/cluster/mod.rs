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

mod config;
mod cursor;
mod envelope;
mod leases;
mod local;
mod node;
mod outcome;
mod redis_conn;
mod scripts;
mod stats;
mod streams;
mod subscriber;

pub use config::ClusterConfig;
pub use envelope::{envelope_of, message_of, Envelope, ENVELOPE_VERSION};
pub(crate) use leases::refresh_leases_forever;
pub use node::Cluster;
pub use outcome::{ClusterError, Remote};
pub use stats::{ClusterStats, RTT_BUCKETS_US};
pub use streams::DRAIN_BATCH;
