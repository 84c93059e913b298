//! Command line and environment of `userlane-server` (clap).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use userlane_smol::{Environment, ServerConfig, SHARD_USERS};

/// A WebSocket server that gives every user an isolated, bounded lane, with a
/// demo agent, a service API, health checks and metrics on one port.
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
    /// Milliseconds between the demo agent's events.
    #[arg(long, env = "USERLANE_AGENT_STEP_MS", default_value_t = 300)]
    pub agent_step_ms: u64,
}

impl Args {
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
        c.max_http_body_bytes = self.max_message_bytes as usize;
        c.queue_depth = self.queue_depth;
        c.offline_buffer = self.offline_buffer;
        c.ping_interval = Duration::from_secs(self.ping_interval);
        c.idle_timeout = Duration::from_secs(self.idle_timeout);
        if let Some(n) = self.shards {
            c.shards = n as usize;
        }
        // One user per connection at most, but never more than the shards hold
        // (10,000 connections fit one shard; 10,000 users need two).
        let user_capacity = SHARD_USERS as u64 * c.shards as u64;
        c.max_users = u64::from(self.max_connections).min(user_capacity) as u32;
        c.max_offline_users = c.max_users / 4;
        if !self.environment.requires_authentication() {
            c.echo_path = Some("/echo".into());
        }
        if let Some(url) = &self.redis_url {
            let mut cluster = userlane_smol::cluster::ClusterConfig::new(url.clone());
            cluster.lease_ttl = Duration::from_secs(self.lease_ttl);
            cluster.offline_max = self.offline_stream_len;
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
