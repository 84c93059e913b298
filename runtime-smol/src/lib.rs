//! # userlane-smol
//!
//! The network layer of userlane: a WebSocket server on smol and
//! async-tungstenite whose every connection belongs to one user's isolated
//! lane in [`userlane_core`].
//!
//! ```text
//! socket ─▶ connection future: reader ─▶ core shard (handle_inbound, Handler::on_message)
//!                                          │ send_to_user ─▶ per-connection queue
//! socket ◀─ connection future: writer ◀────┘ poll_transmit_more (one item per lock,
//!                                            up to 64 frames per flush)
//! ```
//!
//! - One task per connection; the handshake and authentication run in it,
//!   never in the accept loop, and accept errors never end the loop. After
//!   the upgrade the task is one future driving the reader, the writer, the
//!   ping timer and the close deadline.
//! - Refusals before the upgrade are HTTP statuses (400, 401, 403, 404,
//!   408, 411, 413, 429, 431, 503) with fixed, short texts (what a client
//!   sent reaches an answer or a log line only as a short escaped excerpt),
//!   and refusal log lines are rate-limited per kind; after it, WebSocket close codes: 1000 (idle, deactivated), 1001
//!   (shutdown), 1002, 1007, 1009, 1011 (the reader's verdicts), 1008
//!   (inbound flood), 1013 (slow consumer) and application codes 3000–4999
//!   such as 4001.
//! - Inbound is bounded: every message passes the core's per-connection
//!   and per-user budgets (`handle_inbound`) before the handler sees it; a
//!   refused one is dropped and the peer told ([`Handler::refusal`]); a
//!   closing connection's messages are read and dropped, never handled.
//! - Users are spread over shards ([`userlane_core::shim::shard_for`]), each
//!   with its own lock and one timer task.
//!
//! ```no_run
//! use userlane_smol::{Environment, Server, ServerConfig};
//!
//! let server = Server::builder(ServerConfig::new(Environment::Development))
//!     .bind("127.0.0.1:9600".parse().unwrap())
//!     .expect("server starts");
//! let handle = server.handle();
//! std::thread::spawn(move || smol::block_on(server.run()));
//! let _ = handle.send_text("alice", "hello"); // buffered until alice connects
//! ```

#![warn(missing_docs)]
#![warn(clippy::too_many_lines)]

// The layers, bottom up: a module uses only modules below it (`.ci/run`
// checks that the module graph has no cycle).
// 1. parts: bounded, clock, mutex, signals, origin, http, info,
//    legacy_sites, and cluster (the Redis link);
// 2. state: error, shards (the core shards and their connection
//    registries), config, auth, state (what every task shares);
// 3. the public API: handle (`ServerHandle`), then the application's
//    callbacks that take it: service (`HttpService`), handler (`Handler`);
// 4. connections: admission, echo, connection;
// 5. the accept loop and the server: server, and the legacy facade compat.
mod admission;
mod auth;
mod bounded;
mod clock;
pub mod cluster;
pub mod compat;
mod config;
mod connection;
mod echo;
mod error;
mod handle;
mod handler;
mod http;
mod info;
mod legacy_sites;
mod mutex;
mod origin;
mod server;
mod service;
mod shards;
mod signals;
mod state;

pub use auth::{
    AuthError, Authenticator, Identity, JwtAuthenticator, DEFAULT_JWT_MAX_LIFETIME,
    JWT_AUTH_PROTOCOL, JWT_PROTOCOL_PREFIX,
};
pub use config::{ConfigError, Environment, ServerConfig, UnknownEnvironment};
pub use error::UserError;
pub use handle::{Reach, ServerHandle, ServerStats, ShutdownReport};
pub use handler::{inbound_limit_name, Handler, IgnoreInbound};
pub use http::{percent_decode, Encoded, HttpRequest, HttpResponse, MAX_HEAD_BYTES};
pub use info::ConnectionInfo;
pub use mutex::StdRawMutex;
pub use origin::{BadOrigin, OriginPolicy};
pub use server::{Server, ServerBuilder, StartError};
pub use service::{serve_http_request, HttpFuture, HttpService, NoHttp};
pub use shards::{Shard, SHARD_CONNS, SHARD_EVENTS, SHARD_SLOTS, SHARD_USERS};

pub use async_tungstenite::tungstenite::Message;
pub use userlane_core;

/// The examples in the repository README, compiled (and the core one run) as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
