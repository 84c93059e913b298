//! Server configuration: environment, limits, timeouts and buffer sizes.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use userlane_core::{InboundLimits, SlowConsumerPolicy};

/// The core's default inbound budgets (`Config::for_capacity` does not
/// depend on the capacities for them).
const INBOUND_DEFAULTS: userlane_core::Config = userlane_core::Config::for_capacity(1, 1);

pub use crate::origin::OriginPolicy;
use crate::shards::{SHARD_CONNS, SHARD_USERS};

/// The default of [`JwtAuthenticator::with_max_lifetime`](crate::JwtAuthenticator::with_max_lifetime)
/// and [`ServerConfig::jwt_max_lifetime`]: 24 h.
pub const DEFAULT_JWT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Where the server runs; decides how a connection without a token is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Environment {
    /// Requires a JWT secret; a missing token is refused with 401.
    Production,
    /// Like production.
    Staging,
    /// A connection without a token gets a fresh anonymous user (its own
    /// isolated manager), a migration warning in the log, and is counted as a
    /// fallback connection.
    Development,
    /// Like development.
    Testing,
}

impl Environment {
    /// Whether the server refuses to start without a JWT secret and refuses
    /// connections without a token.
    pub fn requires_authentication(self) -> bool {
        matches!(self, Environment::Production | Environment::Staging)
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Production => "production",
            Environment::Staging => "staging",
            Environment::Development => "development",
            Environment::Testing => "testing",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An environment name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown environment {0:?} (expected production, staging, development or testing)")]
pub struct UnknownEnvironment(pub String);

impl FromStr for Environment {
    type Err = UnknownEnvironment;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "production" | "prod" => Ok(Environment::Production),
            "staging" => Ok(Environment::Staging),
            "development" | "dev" => Ok(Environment::Development),
            "testing" | "test" => Ok(Environment::Testing),
            _ => Err(UnknownEnvironment(s.to_owned())),
        }
    }
}

/// Everything a [`Server`](crate::Server) needs besides its authenticator
/// and handler.
#[derive(Clone)]
pub struct ServerConfig {
    /// The environment; see [`Environment`].
    pub environment: Environment,
    /// HS256 secret for the built-in JWT authenticator. Required in
    /// production and staging; there is no default secret anywhere.
    pub jwt_secret: Option<Vec<u8>>,
    /// Path of the WebSocket endpoint.
    pub ws_path: String,
    /// Most users with a manager, over all shards: admission answers 503 to a
    /// user without a manager once the shards together hold this many.
    pub max_users: u32,
    /// Most users with a manager but no open connection that the service
    /// path ([`ServerHandle::send_to_user`](crate::ServerHandle::send_to_user)
    /// for a user who is not connected) may create, so that messages for
    /// offline users cannot take the manager slots of users who connect;
    /// below `max_users`, and applied to each shard the way `max_users` is.
    /// Beyond it such a send is refused with `Limit::OfflineManagers` (the
    /// example service API answers 503). `None` (the default): a quarter of
    /// `max_users`, whatever `max_users` is set to.
    pub max_offline_users: Option<u32>,
    /// Most open connections, over all shards (503 beyond).
    pub max_connections: u32,
    /// Inbound budget of each connection: messages and bytes per second,
    /// with bursts (see `userlane_core::Config::inbound_per_connection`). A
    /// message over it is dropped unprocessed and the connection is told so
    /// ([`Handler::refusal`](crate::Handler::refusal)). Default 100
    /// messages/s (bursts of 200) and 1 MiB/s (bursts of 2 MiB); a byte
    /// burst must hold at least one `max_message_bytes` message.
    pub inbound_per_connection: InboundLimits,
    /// Inbound budget of each user, shared by all its connections on this
    /// node. Default 500 messages/s (bursts of 1,000) and 5 MiB/s (bursts
    /// of 10 MiB).
    pub inbound_per_user: InboundLimits,
    /// Refused inbound messages after which the connection is closed with
    /// 1008; one is forgiven per second. Default 64.
    pub inbound_strikes: u32,
    /// Most open connections of one user (429 beyond). Default 5.
    pub max_connections_per_user: u32,
    /// Outbound messages queued per connection. Default 64.
    pub queue_depth: u32,
    /// Messages held for a user with no connection; 0 disables. Default 16.
    pub offline_buffer: u32,
    /// What to do with a connection whose queue is full. Default: close it
    /// with 1013 so the user's other connections keep receiving.
    pub slow_consumer: SlowConsumerPolicy,
    /// Largest inbound message; a bigger one closes the connection with 1009. Default 64 KiB.
    pub max_message_bytes: usize,
    /// tungstenite read buffer per connection (at most 8 KiB). Default 4 KiB.
    pub read_buffer_bytes: usize,
    /// tungstenite write buffer target per connection. Default 4 KiB.
    pub write_buffer_bytes: usize,
    /// A ping is sent this often. Default 25 s.
    pub ping_interval: Duration,
    /// A connection with no inbound frame or pong for this long is closed. Default 60 s.
    pub idle_timeout: Duration,
    /// A user manager without connections is reclaimed after this long
    /// (its offline buffer with it). Default 5 min.
    pub empty_manager_ttl: Duration,
    /// How long a connection the server closes may take to flush its queue
    /// and close frame before the socket is dropped. Default 5 s.
    pub close_grace: Duration,
    /// Path of a plain WebSocket echo endpoint (no manager, no auth) for
    /// protocol-conformance tests; `None` disables it. Keep it off in production.
    pub echo_path: Option<String>,
    /// Largest body of a plain HTTP request (413 beyond). Default 64 KiB.
    pub max_http_body_bytes: usize,
    /// The request deadline, counted from the moment the socket is accepted:
    /// the request head, a plain-HTTP body, the service's answer being
    /// written, and for an upgrade its admission and handshake response must
    /// all be done by then, or the socket is closed (with `408 Request
    /// Timeout` when the request was still being read). Bounds how long a
    /// slow client (slowloris) can hold a socket before it is a connection.
    /// Default 10 s.
    pub request_timeout: Duration,
    /// Most plain HTTP requests one connection carries (HTTP/1.1
    /// keep-alive); the last is answered with `Connection: close`. 1 means
    /// one request per connection. Default 1,000.
    pub max_requests_per_connection: u32,
    /// How long a kept-alive connection may wait, between a response and the
    /// first byte of the next request, before it is closed; the next request
    /// then has its own `request_timeout`. Default 5 s.
    pub http_idle_timeout: Duration,
    /// Clock skew accepted on a JWT's `exp` and `nbf`. Default 30 s.
    pub jwt_leeway: Duration,
    /// When set, a JWT's `iss` must be this. Default none (not checked).
    pub jwt_issuer: Option<String>,
    /// When set, a JWT's `aud` must be (or contain) this. When none is set, a
    /// token naming any audience is refused (it was minted for another
    /// service). Default none.
    pub jwt_audience: Option<String>,
    /// Longest JWT lifetime accepted: `exp` more than this ahead of now (beyond
    /// the leeway), or `exp - iat` more than this, is refused. Default 24 h.
    pub jwt_max_lifetime: Duration,
    /// Which browser pages may open the WebSocket and echo endpoints (by
    /// their `Origin` header; 403 otherwise). Default: [`OriginPolicy::SameHost`]
    /// in production and staging, [`OriginPolicy::Any`] in development and testing.
    pub allowed_origins: OriginPolicy,
    /// Redis settings when several nodes serve the same users; `None` runs
    /// a single node.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// Independent shards (each with its own lock and timer). Default: the
    /// number of cores. Each shard's tables hold its share of `max_users`
    /// and `max_connections` with room for uneven hashing (users are routed
    /// by a hash of their id), so more shards means smaller ones: idle
    /// memory follows the limits, not the shard count. A shard that fills
    /// up before the server does answers like a full server (503).
    pub shards: usize,
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("environment", &self.environment)
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<set>"))
            .field("ws_path", &self.ws_path)
            .field("max_users", &self.max_users)
            .field("max_offline_users", &self.max_offline_users)
            .field("inbound_per_connection", &self.inbound_per_connection)
            .field("inbound_per_user", &self.inbound_per_user)
            .field("inbound_strikes", &self.inbound_strikes)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_user", &self.max_connections_per_user)
            .field("queue_depth", &self.queue_depth)
            .field("offline_buffer", &self.offline_buffer)
            .field("slow_consumer", &self.slow_consumer)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("read_buffer_bytes", &self.read_buffer_bytes)
            .field("write_buffer_bytes", &self.write_buffer_bytes)
            .field("ping_interval", &self.ping_interval)
            .field("idle_timeout", &self.idle_timeout)
            .field("empty_manager_ttl", &self.empty_manager_ttl)
            .field("close_grace", &self.close_grace)
            .field("echo_path", &self.echo_path)
            .field("max_http_body_bytes", &self.max_http_body_bytes)
            .field("request_timeout", &self.request_timeout)
            .field(
                "max_requests_per_connection",
                &self.max_requests_per_connection,
            )
            .field("http_idle_timeout", &self.http_idle_timeout)
            .field("jwt_leeway", &self.jwt_leeway)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_max_lifetime", &self.jwt_max_lifetime)
            .field("allowed_origins", &self.allowed_origins)
            .field("cluster", &self.cluster.as_ref().map(|c| &c.redis_url))
            .field("shards", &self.shards)
            .finish()
    }
}

impl ServerConfig {
    /// Defaults for `environment`, with no secret.
    pub fn new(environment: Environment) -> Self {
        ServerConfig {
            environment,
            jwt_secret: None,
            ws_path: "/ws".to_owned(),
            max_users: 10_000,
            max_offline_users: None,
            max_connections: 10_000,
            inbound_per_connection: INBOUND_DEFAULTS.inbound_per_connection,
            inbound_per_user: INBOUND_DEFAULTS.inbound_per_user,
            inbound_strikes: INBOUND_DEFAULTS.inbound_strikes,
            max_connections_per_user: 5,
            queue_depth: 64,
            offline_buffer: 16,
            slow_consumer: SlowConsumerPolicy::CloseSlowConnection,
            max_message_bytes: 64 * 1024,
            read_buffer_bytes: 4 * 1024,
            write_buffer_bytes: 4 * 1024,
            ping_interval: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(60),
            empty_manager_ttl: Duration::from_secs(300),
            close_grace: Duration::from_secs(5),
            echo_path: None,
            cluster: None,
            max_http_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            max_requests_per_connection: 1_000,
            http_idle_timeout: Duration::from_secs(5),
            jwt_leeway: Duration::from_secs(30),
            jwt_issuer: None,
            jwt_audience: None,
            jwt_max_lifetime: DEFAULT_JWT_MAX_LIFETIME,
            allowed_origins: if environment.requires_authentication() {
                OriginPolicy::SameHost
            } else {
                OriginPolicy::Any
            },
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// Checks the configuration before the server starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.environment.requires_authentication() && self.jwt_secret.is_none() {
            return Err(ConfigError::MissingSecret(self.environment));
        }
        if self.jwt_secret.as_ref().is_some_and(|s| s.len() < 16) {
            return Err(ConfigError::WeakSecret);
        }
        if self.shards == 0 || self.shards > 256 {
            return Err(ConfigError::Invalid("shards must be between 1 and 256"));
        }
        if self.read_buffer_bytes == 0 || self.read_buffer_bytes > 8 * 1024 {
            return Err(ConfigError::Invalid(
                "read_buffer_bytes must be between 1 and 8192",
            ));
        }
        if self.max_message_bytes < 16 {
            return Err(ConfigError::Invalid(
                "max_message_bytes must be at least 16",
            ));
        }
        let bursts = [
            self.inbound_per_connection.bytes,
            self.inbound_per_user.bytes,
        ];
        if self.max_offline_users.is_some_and(|n| n >= self.max_users) {
            return Err(ConfigError::Invalid(
                "max_offline_users must be below max_users (live users keep the rest)",
            ));
        }
        if bursts
            .iter()
            .flatten()
            .any(|r| (r.burst as usize) < self.max_message_bytes)
        {
            return Err(ConfigError::Invalid(
                "an inbound byte burst must hold at least one max_message_bytes message",
            ));
        }
        self.validate_durations()?;
        if !self.ws_path.starts_with('/') {
            return Err(ConfigError::Invalid("ws_path must start with '/'"));
        }
        let users_cap = SHARD_USERS as u64 * self.shards as u64;
        let conns_cap = SHARD_CONNS as u64 * self.shards as u64;
        if u64::from(self.max_users) > users_cap || self.max_users == 0 {
            return Err(ConfigError::Capacity {
                what: "max_users",
                value: self.max_users.into(),
                capacity: users_cap,
            });
        }
        if u64::from(self.max_connections) > conns_cap || self.max_connections == 0 {
            return Err(ConfigError::Capacity {
                what: "max_connections",
                value: self.max_connections.into(),
                capacity: conns_cap,
            });
        }
        self.core_config(0)
            .validate(self.shard_capacity())
            .map_err(ConfigError::Core)
    }

    /// The timers and the keep-alive bound are positive, and a ping comes
    /// before the idle timeout.
    fn validate_durations(&self) -> Result<(), ConfigError> {
        if self.ping_interval.is_zero()
            || self.idle_timeout.is_zero()
            || self.empty_manager_ttl.is_zero()
        {
            return Err(ConfigError::Invalid(
                "ping_interval, idle_timeout and empty_manager_ttl must be positive",
            ));
        }
        if self.ping_interval >= self.idle_timeout {
            return Err(ConfigError::Invalid(
                "ping_interval must be shorter than idle_timeout",
            ));
        }
        if self.request_timeout.is_zero() || self.jwt_max_lifetime.is_zero() {
            return Err(ConfigError::Invalid(
                "request_timeout and jwt_max_lifetime must be positive",
            ));
        }
        if self.max_requests_per_connection == 0 || self.http_idle_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "max_requests_per_connection and http_idle_timeout must be positive",
            ));
        }
        Ok(())
    }

    /// [`max_offline_users`](Self::max_offline_users), or its default.
    pub fn offline_users(&self) -> u32 {
        self.max_offline_users.unwrap_or(self.max_users / 4)
    }

    /// The tungstenite settings of every connection. The write buffer has no
    /// upper bound of its own (`max_write_buffer_size` stays unlimited):
    /// the writer feeds a message only after `poll_ready`, so the buffer
    /// holds at most `write_buffer_bytes` plus one message, and a message
    /// taken from the core is never refused by the socket for its size,
    /// whatever size the application sent.
    pub(crate) fn websocket_config(
        &self,
    ) -> async_tungstenite::tungstenite::protocol::WebSocketConfig {
        async_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(self.read_buffer_bytes)
            .write_buffer_size(self.write_buffer_bytes)
            .max_write_buffer_size(usize::MAX)
            .max_message_size(Some(self.max_message_bytes))
            .max_frame_size(Some(self.max_message_bytes))
    }

    /// The capacities of every shard's tables: the smallest profile that
    /// holds one shard's share of `max_users` and of `max_connections`
    /// ([`shard_share`]).
    pub(crate) fn shard_capacity(&self) -> userlane_core::Capacity {
        crate::shards::profile_for(
            shard_share(self.max_users, self.shards),
            shard_share(self.max_connections, self.shards),
        )
    }

    /// The core limits of one shard. Its `factory_tag` is 0:
    /// [`ShardSlot::build`](crate::shards::ShardSlot::build) gives every
    /// shard its own. A shard admits users and connections up to what its
    /// tables hold (never more than the server-wide limits), and keeps the
    /// server's proportion of offline managers, so the users who connect
    /// always find the rest of its slots.
    pub(crate) fn core_config(&self, _shard: usize) -> userlane_core::Config {
        let capacity = self.shard_capacity();
        let per_shard = |total: u32, cap: usize| total.min(cap as u32);
        let max_users = per_shard(self.max_users, capacity.users);
        let offline = u64::from(self.offline_users()) * u64::from(max_users)
            / u64::from(self.max_users.max(1));
        userlane_core::Config {
            max_users,
            max_offline_managers: (offline as u32).min(max_users),
            max_connections_per_user: self.max_connections_per_user,
            max_connections: per_shard(self.max_connections, capacity.connections),
            queue_depth: self.queue_depth,
            offline_buffer: self.offline_buffer,
            slow_consumer: self.slow_consumer,
            idle_timeout_ms: Some(self.idle_timeout.as_millis() as u64),
            empty_manager_ttl_ms: Some(self.empty_manager_ttl.as_millis() as u64),
            hash_seed: std::process::id(),
            factory_tag: 0,
            inbound_per_connection: self.inbound_per_connection,
            inbound_per_user: self.inbound_per_user,
            inbound_strikes: self.inbound_strikes,
        }
    }
}

/// What one shard must hold of a server-wide limit `total` over `shards`
/// shards: its even share, plus a quarter of it and 32 more, because users
/// are routed by a hash of their id and a shard may get more than its share
/// (10,000 users on 8 shards: about 1,250 ± 33 a shard, against a margin of
/// 344); never more than `total`. The profile chosen rounds it up again.
/// A shard that is full answers like a full server (503).
fn shard_share(total: u32, shards: usize) -> usize {
    let total = total as usize;
    let share = total.div_ceil(shards.max(1));
    (share + share / 4 + 32).min(total)
}

/// Why a [`ServerConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Production and staging need a JWT secret.
    #[error("{0} requires a JWT secret (USERLANE_JWT_SECRET); refusing to start without one")]
    MissingSecret(Environment),
    /// A secret shorter than 16 bytes.
    #[error("the JWT secret must be at least 16 bytes")]
    WeakSecret,
    /// A value out of range.
    #[error("invalid configuration: {0}")]
    Invalid(&'static str),
    /// A limit above what the shards can hold.
    #[error("{what} = {value} exceeds the capacity of the shards ({capacity})")]
    Capacity {
        /// The setting.
        what: &'static str,
        /// Its value.
        value: u64,
        /// What the configured shards hold.
        capacity: u64,
    },
    /// A limit the core refuses.
    #[error("{0}")]
    Core(userlane_core::ConfigError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offline_user_cap_follows_max_users_and_stays_below_it() {
        let mut c = ServerConfig::new(Environment::Production);
        c.jwt_secret = Some(vec![7; 32]);
        c.max_users = 1_000;
        assert_eq!(c.offline_users(), 250);
        assert_eq!(c.core_config(0).max_offline_managers, 250);
        c.max_offline_users = Some(1_000);
        assert!(
            c.validate().is_err(),
            "a cap of every slot protects nothing"
        );
        c.max_offline_users = Some(999);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn shard_tables_follow_the_limits_not_the_shard_count() {
        // The default limits (10,000 users and connections): the more
        // shards, the smaller each one's tables.
        let mut c = ServerConfig::new(Environment::Testing);
        for (shards, users) in [
            (2, 8_192),
            (4, 4_096),
            (8, 2_048),
            (16, 1_024),
            (32, 512),
            (64, 256),
        ] {
            c.shards = shards;
            let capacity = c.shard_capacity();
            assert_eq!(
                (capacity.users, capacity.connections),
                (users, 2 * users),
                "{shards} shards"
            );
            assert_eq!(c.validate(), Ok(()));
            // A shard admits what its tables hold, up to the server's limits.
            let core = c.core_config(0);
            assert_eq!(core.max_users, users.min(10_000) as u32);
            assert_eq!(core.max_connections, (2 * users).min(10_000) as u32);
            assert_eq!(core.max_offline_managers, core.max_users / 4);
        }
        // Small limits on many shards: the smallest tables, the server's limits.
        c.shards = 8;
        c.max_users = 100;
        c.max_connections = 100;
        let core = c.core_config(0);
        assert_eq!(c.shard_capacity().users, 256);
        assert_eq!(
            (
                core.max_users,
                core.max_connections,
                core.max_offline_managers
            ),
            (100, 100, 25)
        );
        // Each shard holds its even share with room for uneven hashing.
        assert_eq!(shard_share(10_000, 8), 1_250 + 312 + 32);
        assert_eq!(shard_share(100, 8), 13 + 3 + 32);
        assert_eq!(shard_share(10, 1), 10);
    }

    #[test]
    fn production_and_staging_refuse_to_start_without_a_secret() {
        for env in [Environment::Production, Environment::Staging] {
            assert_eq!(
                ServerConfig::new(env).validate(),
                Err(ConfigError::MissingSecret(env))
            );
            let mut c = ServerConfig::new(env);
            c.jwt_secret = Some(b"0123456789abcdef0123".to_vec());
            assert_eq!(c.validate(), Ok(()));
        }
        for env in [Environment::Development, Environment::Testing] {
            assert_eq!(ServerConfig::new(env).validate(), Ok(()));
        }
    }

    #[test]
    fn bad_values_are_named() {
        let mut c = ServerConfig::new(Environment::Testing);
        c.read_buffer_bytes = 128 * 1024;
        assert_eq!(
            c.validate(),
            Err(ConfigError::Invalid(
                "read_buffer_bytes must be between 1 and 8192"
            ))
        );
        let mut c = ServerConfig::new(Environment::Testing);
        c.offline_buffer = c.queue_depth + 1;
        assert!(matches!(c.validate(), Err(ConfigError::Core(_))));
        let mut c = ServerConfig::new(Environment::Testing);
        c.jwt_secret = Some(b"short".to_vec());
        assert_eq!(c.validate(), Err(ConfigError::WeakSecret));
        assert_eq!("PROD".parse::<Environment>(), Ok(Environment::Production));
        assert!("qa".parse::<Environment>().is_err());
    }
}
