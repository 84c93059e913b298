//! Command line and environment of `userlane-server` (clap).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use userlane_smol::userlane_core::{InboundLimits, Rate};
use userlane_smol::{Environment, OriginPolicy, ServerConfig, SHARD_USERS};

use super::agent::{DEFAULT_RUNS_PER_USER, DEFAULT_RUNS_TOTAL};
use super::health::DEFAULT_MEMORY_SPIKE_PERCENT;
use super::ops::OpsListen;

/// Where the ops listener goes in production and staging unless told.
pub const DEFAULT_OPS_LISTEN: &str = "127.0.0.1:9601";

/// A WebSocket server that gives every user an isolated, bounded lane, with a
/// demo agent, a service API, health checks and metrics (on an internal ops
/// address in production and staging: --ops-listen).
///
/// Secrets come from the environment, never from flags: USERLANE_JWT_SECRET
/// (or --jwt-secret-file) signs user tokens, USERLANE_SERVICE_TOKEN guards the
/// service API. Logging: RUST_LOG (default info).
#[derive(Debug, Clone, Parser)]
#[command(name = "userlane-server", version)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "USERLANE_LISTEN", default_value = "127.0.0.1:9600")]
    pub listen: SocketAddr,
    /// production | staging | development | testing.
    #[arg(long = "env", env = "USERLANE_ENV", default_value = "development")]
    pub environment: Environment,
    /// File holding the JWT secret (instead of USERLANE_JWT_SECRET).
    #[arg(long, env = "USERLANE_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// Open connections allowed per user (429 beyond).
    #[arg(long, env = "USERLANE_MAX_CONNECTIONS_PER_USER", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_connections_per_user: u32,
    /// Open connections allowed in total (503 beyond).
    #[arg(long, env = "USERLANE_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Largest inbound message and service-API body, in bytes (1009 / 413 beyond).
    #[arg(long, env = "USERLANE_MAX_MESSAGE_BYTES", default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(16..=16_777_216))]
    pub max_message_bytes: u64,
    /// Most items of a `/api/send-batch` call, or users of a `/api/send-many` call (413 beyond).
    #[arg(long, env = "USERLANE_MAX_BATCH_ITEMS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_batch_items: u64,
    /// Largest body of a `/api/send-batch` or `/api/send-many` call, in bytes (413 beyond).
    #[arg(long, env = "USERLANE_MAX_BATCH_BYTES", default_value_t = 1_048_576, value_parser = clap::value_parser!(u64).range(16..=67_108_864))]
    pub max_batch_bytes: u64,
    /// Most plain HTTP requests one kept-alive connection carries.
    #[arg(long, env = "USERLANE_MAX_REQUESTS_PER_CONNECTION", default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_requests_per_connection: u32,
    /// Seconds a kept-alive connection may wait for its next request before it is closed.
    #[arg(long, env = "USERLANE_HTTP_IDLE_TIMEOUT", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http_idle_timeout: u64,
    /// Inbound messages per second each connection may send (bursts of twice
    /// as many); more are refused, and a connection that keeps on is closed (1008).
    #[arg(long, env = "USERLANE_INBOUND_MESSAGES_PER_SECOND", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub inbound_messages_per_second: u32,
    /// Inbound bytes per second each connection may send (bursts of twice as
    /// many, and at least one largest message).
    #[arg(long, env = "USERLANE_INBOUND_BYTES_PER_SECOND", default_value_t = 1 << 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub inbound_bytes_per_second: u32,
    /// Inbound messages per second of one user, all its connections together.
    #[arg(long, env = "USERLANE_USER_INBOUND_MESSAGES_PER_SECOND", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub user_inbound_messages_per_second: u32,
    /// Inbound bytes per second of one user, all its connections together.
    #[arg(long, env = "USERLANE_USER_INBOUND_BYTES_PER_SECOND", default_value_t = 5 << 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub user_inbound_bytes_per_second: u32,
    /// Refused inbound messages (one forgiven per second) after which a connection is closed with 1008.
    #[arg(long, env = "USERLANE_INBOUND_STRIKES", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65_535))]
    pub inbound_strikes: u32,
    /// Outbound messages queued per connection before it counts as a slow consumer (1013).
    #[arg(long, env = "USERLANE_QUEUE_DEPTH", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub queue_depth: u32,
    /// Messages held for a user with no connection (0 disables; at most the queue depth).
    #[arg(long, env = "USERLANE_OFFLINE_BUFFER", default_value_t = 16)]
    pub offline_buffer: u32,
    /// Seconds between pings.
    #[arg(long, env = "USERLANE_PING_INTERVAL", default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..))]
    pub ping_interval: u64,
    /// Seconds without inbound traffic before a connection is closed.
    #[arg(long, env = "USERLANE_IDLE_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(2..))]
    pub idle_timeout: u64,
    /// Independent shards (default: number of cores).
    #[arg(long, env = "USERLANE_SHARDS", value_parser = clap::value_parser!(u64).range(1..=256))]
    pub shards: Option<u64>,
    /// Redis URL: run as one node of a cluster (omit for a single node).
    #[arg(long, env = "USERLANE_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Seconds a connection lease lives without refresh (a crashed node's slots free up after it).
    #[arg(long, env = "USERLANE_LEASE_TTL", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub lease_ttl: u64,
    /// Most messages held in Redis for a user connected nowhere.
    #[arg(long, env = "USERLANE_OFFLINE_STREAM_LEN", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub offline_stream_len: u32,
    /// Seconds a user's messages stay in Redis for a node that holds them and
    /// resubscribes (Redis came back) to deliver what it missed.
    #[arg(long, env = "USERLANE_REPLAY_WINDOW", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub replay_window: u64,
    /// Seconds a client has to complete a request from the accept: head, body
    /// and answer, or the WebSocket upgrade (408 / closed beyond).
    #[arg(long, env = "USERLANE_REQUEST_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout: u64,
    /// Required JWT issuer (`iss`); omit to accept any issuer.
    #[arg(long, env = "USERLANE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required JWT audience (`aud`); omit to refuse every token that names an audience.
    #[arg(long, env = "USERLANE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Seconds of clock skew accepted on a JWT's `exp` and `nbf`.
    #[arg(long, env = "USERLANE_JWT_LEEWAY", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub jwt_leeway: u64,
    /// Longest JWT lifetime accepted, in seconds (`exp` further ahead, or `exp - iat` longer, is refused).
    #[arg(long, env = "USERLANE_JWT_MAX_LIFETIME", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..))]
    pub jwt_max_lifetime: u64,
    /// Browser origins allowed to open /ws and /echo: `*` (any), `same-host`
    /// (the Origin must match the Host header), or a comma-separated list of
    /// scheme://host[:port]. Default: same-host in production/staging, * in
    /// development/testing. Clients that send no Origin are always allowed.
    #[arg(long, env = "USERLANE_ALLOWED_ORIGINS")]
    pub allowed_origins: Option<OriginPolicy>,
    /// Milliseconds between the demo agent's events.
    #[arg(long, env = "USERLANE_AGENT_STEP_MS", default_value_t = 300)]
    pub agent_step_ms: u64,
    /// Demo agent runs going at once per user; more messages are answered AGENT_BUSY.
    #[arg(long, env = "USERLANE_AGENT_RUNS_PER_USER", default_value_t = DEFAULT_RUNS_PER_USER, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub agent_runs_per_user: u32,
    /// Demo agent runs going at once on this node; more messages are answered AGENT_BUSY.
    #[arg(long, env = "USERLANE_AGENT_RUNS_TOTAL", default_value_t = DEFAULT_RUNS_TOTAL, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub agent_runs_total: u32,
    /// Where /metrics and the detailed /healthz are served: an address, "public"
    /// (the main port) or "off" [default: 127.0.0.1:9601 in production and
    /// staging, public in development and testing].
    #[arg(long, env = "USERLANE_OPS_LISTEN")]
    pub ops_listen: Option<OpsListen>,
    /// /healthz is unhealthy when resident memory exceeds this percentage of the baseline.
    #[arg(long, env = "USERLANE_MEMORY_SPIKE_PERCENT", default_value_t = DEFAULT_MEMORY_SPIKE_PERCENT, value_parser = clap::value_parser!(u32).range(101..=100_000))]
    pub memory_spike_percent: u32,
    /// Seconds after start over which the memory baseline is taken (the largest resident memory seen).
    #[arg(long, env = "USERLANE_MEMORY_BASELINE_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub memory_baseline_secs: u64,
    /// Whether --env / USERLANE_ENV was given (not the default).
    #[arg(skip)]
    pub environment_explicit: bool,
}

impl Args {
    /// Parses the command line and environment, remembering whether the
    /// environment was given explicitly; exits with code 2 on bad values.
    pub fn parse_explicit() -> Self {
        let matches = Args::command().get_matches();
        let mut args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        args.environment_explicit =
            matches.value_source("environment") != Some(ValueSource::DefaultValue);
        args
    }

    /// [`parse_explicit`](Self::parse_explicit) from given arguments (tests).
    pub fn try_parse_explicit_from<I, T>(itr: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Args::command().try_get_matches_from(itr)?;
        let mut args = Args::from_arg_matches(&matches)?;
        args.environment_explicit =
            matches.value_source("environment") != Some(ValueSource::DefaultValue);
        Ok(args)
    }

    /// Refuses a configured secret without an explicit environment: the
    /// default (development) would mint tokens for anyone who asks and admit
    /// anonymous clients, next to production nodes sharing that secret.
    pub fn check_secret_has_environment(&self, secret_configured: bool) -> Result<(), String> {
        if secret_configured && !self.environment_explicit {
            return Err(
                "a JWT secret is configured but no environment: set USERLANE_ENV \
                 (or --env) to production, staging, development or testing; refusing to start"
                    .into(),
            );
        }
        Ok(())
    }

    /// Where the operational endpoints go: `--ops-listen`, else
    /// [`DEFAULT_OPS_LISTEN`] in production and staging and the main port in
    /// development and testing.
    pub fn ops_listen(&self) -> OpsListen {
        match self.ops_listen {
            Some(o) => o,
            None if self.environment.requires_authentication() => {
                OpsListen::Addr(DEFAULT_OPS_LISTEN.parse().expect("a valid address"))
            }
            None => OpsListen::Public,
        }
    }

    /// The JWT secret: the file if given, else USERLANE_JWT_SECRET.
    pub fn jwt_secret(&self) -> Result<Option<Vec<u8>>, String> {
        if let Some(path) = &self.jwt_secret_file {
            let s = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            return Ok(Some(s.trim().as_bytes().to_vec()));
        }
        Ok(std::env::var("USERLANE_JWT_SECRET")
            .ok()
            .filter(|s| !s.is_empty())
            .map(String::into_bytes))
    }

    /// The server configuration these arguments describe.
    pub fn server_config(&self, jwt_secret: Option<Vec<u8>>) -> Result<ServerConfig, String> {
        let mut c = ServerConfig::new(self.environment);
        c.jwt_secret = jwt_secret;
        c.max_connections_per_user = self.max_connections_per_user;
        c.max_connections = self.max_connections;
        c.max_message_bytes = self.max_message_bytes as usize;
        c.max_http_body_bytes = self.max_message_bytes.max(self.max_batch_bytes) as usize;
        c.max_requests_per_connection = self.max_requests_per_connection;
        c.http_idle_timeout = Duration::from_secs(self.http_idle_timeout);
        c.queue_depth = self.queue_depth;
        // Bursts of two seconds' worth, and a byte burst that always holds
        // one largest message.
        let budget = |messages: u32, bytes: u32| InboundLimits {
            messages: Some(Rate::new(messages, messages.saturating_mul(2))),
            bytes: Some(Rate::new(
                bytes,
                bytes
                    .saturating_mul(2)
                    .max(self.max_message_bytes.min(u64::from(u32::MAX)) as u32),
            )),
        };
        c.inbound_per_connection = budget(
            self.inbound_messages_per_second,
            self.inbound_bytes_per_second,
        );
        c.inbound_per_user = budget(
            self.user_inbound_messages_per_second,
            self.user_inbound_bytes_per_second,
        );
        c.inbound_strikes = self.inbound_strikes;
        c.offline_buffer = self.offline_buffer;
        c.ping_interval = Duration::from_secs(self.ping_interval);
        c.idle_timeout = Duration::from_secs(self.idle_timeout);
        c.request_timeout = Duration::from_secs(self.request_timeout);
        c.jwt_issuer = self.jwt_issuer.clone().filter(|s| !s.is_empty());
        c.jwt_audience = self.jwt_audience.clone().filter(|s| !s.is_empty());
        c.jwt_leeway = Duration::from_secs(self.jwt_leeway);
        c.jwt_max_lifetime = Duration::from_secs(self.jwt_max_lifetime);
        if let Some(origins) = &self.allowed_origins {
            c.allowed_origins = origins.clone();
        }
        if let Some(n) = self.shards {
            c.shards = n as usize;
        }
        // One user per connection at most, but never more than the shards hold
        // (10,000 connections fit one shard; 10,000 users need two).
        let user_capacity = SHARD_USERS as u64 * c.shards as u64;
        c.max_users = u64::from(self.max_connections).min(user_capacity) as u32;
        if !self.environment.requires_authentication() {
            c.echo_path = Some("/echo".into());
        }
        if let Some(url) = &self.redis_url {
            let mut cluster = userlane_smol::cluster::ClusterConfig::new(url.clone());
            cluster.lease_ttl = Duration::from_secs(self.lease_ttl);
            cluster.offline_max = self.offline_stream_len;
            cluster.replay_window = Duration::from_secs(self.replay_window);
            c.cluster = Some(cluster);
        }
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_development_on_port_9600() {
        let a = Args::try_parse_from(["userlane-server"]).unwrap();
        assert_eq!(a.listen, "127.0.0.1:9600".parse().unwrap());
        assert_eq!(a.environment, Environment::Development);
        let c = a.server_config(None).unwrap();
        assert_eq!(
            (
                c.max_connections_per_user,
                c.max_message_bytes,
                c.echo_path.as_deref()
            ),
            (5, 65_536, Some("/echo"))
        );
    }

    #[test]
    fn one_shard_starts_with_the_default_limits() {
        // The default on a one-core machine: 10,000 connections, one shard.
        let a = Args::try_parse_from(["userlane-server", "--shards", "1"]).unwrap();
        let c = a.server_config(None).unwrap();
        assert_eq!((c.shards, c.max_users), (1, SHARD_USERS as u32));
        let a = Args::try_parse_from(["userlane-server", "--shards", "2"]).unwrap();
        assert_eq!(a.server_config(None).unwrap().max_users, 10_000);
    }

    #[test]
    fn a_secret_needs_an_explicit_environment() {
        let a = Args::try_parse_explicit_from(["userlane-server"]).unwrap();
        assert!(!a.environment_explicit);
        assert_eq!(a.check_secret_has_environment(false), Ok(()));
        let err = a.check_secret_has_environment(true).unwrap_err();
        assert!(err.contains("set USERLANE_ENV"), "{err}");
        let a = Args::try_parse_explicit_from(["userlane-server", "--env", "development"]).unwrap();
        assert!(a.environment_explicit);
        assert_eq!(a.check_secret_has_environment(true), Ok(()));
    }

    #[test]
    fn operational_endpoints_default_to_an_internal_address_outside_development() {
        let a = Args::try_parse_from(["userlane-server"]).unwrap();
        assert_eq!(a.ops_listen(), OpsListen::Public);
        for env in ["production", "staging"] {
            let a = Args::try_parse_from(["userlane-server", "--env", env]).unwrap();
            assert_eq!(
                a.ops_listen(),
                OpsListen::Addr("127.0.0.1:9601".parse().unwrap())
            );
        }
        let a = Args::try_parse_from([
            "userlane-server",
            "--env",
            "production",
            "--ops-listen",
            "public",
        ])
        .unwrap();
        assert_eq!(a.ops_listen(), OpsListen::Public);
    }

    #[test]
    fn jwt_and_origin_settings_reach_the_config() {
        let a = Args::try_parse_from(["userlane-server"]).unwrap();
        let c = a.server_config(None).unwrap();
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert_eq!(
            (
                c.jwt_leeway,
                c.jwt_max_lifetime,
                c.jwt_issuer,
                c.jwt_audience,
                c.allowed_origins
            ),
            (
                Duration::from_secs(30),
                Duration::from_secs(86_400),
                None,
                None,
                OriginPolicy::Any
            )
        );
        let a = Args::try_parse_from([
            "userlane-server",
            "--jwt-issuer",
            "auth.example",
            "--jwt-audience",
            "userlane",
            "--jwt-leeway",
            "5",
            "--jwt-max-lifetime",
            "3600",
            "--request-timeout",
            "3",
            "--allowed-origins",
            "https://app.example, https://admin.example",
        ])
        .unwrap();
        let c = a.server_config(None).unwrap();
        assert_eq!(c.jwt_issuer.as_deref(), Some("auth.example"));
        assert_eq!(c.jwt_audience.as_deref(), Some("userlane"));
        assert_eq!(c.jwt_leeway, Duration::from_secs(5));
        assert_eq!(c.jwt_max_lifetime, Duration::from_secs(3600));
        assert_eq!(c.request_timeout, Duration::from_secs(3));
        assert_eq!(
            c.allowed_origins,
            OriginPolicy::List(vec![
                "https://app.example".into(),
                "https://admin.example".into()
            ])
        );
        let a = Args::try_parse_from(["userlane-server", "--env", "production"]).unwrap();
        let c = a.server_config(Some(vec![7; 32])).unwrap();
        assert_eq!(c.allowed_origins, OriginPolicy::SameHost);
        for (flag, policy) in [
            ("*", OriginPolicy::Any),
            ("same-host", OriginPolicy::SameHost),
        ] {
            let a = Args::try_parse_from(["userlane-server", "--allowed-origins", flag]).unwrap();
            assert_eq!(a.server_config(None).unwrap().allowed_origins, policy);
        }
        assert!(
            Args::try_parse_from(["userlane-server", "--allowed-origins", "app.example"]).is_err()
        );
        assert!(Args::try_parse_from(["userlane-server", "--jwt-max-lifetime", "0"]).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Args::try_parse_from(["userlane-server", "--env", "qa"]).is_err());
        assert!(
            Args::try_parse_from(["userlane-server", "--max-connections-per-user", "0"]).is_err()
        );
        assert!(Args::try_parse_from(["userlane-server", "--listen", "nowhere"]).is_err());
        let a = Args::try_parse_from(["userlane-server", "--env", "production"]).unwrap();
        let err = a.server_config(None).unwrap_err();
        assert!(err.contains("requires a JWT secret"), "{err}");
        let a = Args::try_parse_from([
            "userlane-server",
            "--offline-buffer",
            "100",
            "--queue-depth",
            "10",
        ])
        .unwrap();
        assert!(a
            .server_config(None)
            .unwrap_err()
            .contains("offline_buffer"));
    }
}
