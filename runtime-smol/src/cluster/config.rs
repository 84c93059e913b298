//! The Redis settings of a clustered server: [`ClusterConfig`] and its defaults.

use std::time::Duration;

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
