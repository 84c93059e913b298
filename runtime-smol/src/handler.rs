//! How inbound messages reach the application: the `Handler` trait and what
//! it learns about each connection.

use std::net::SocketAddr;

use async_tungstenite::tungstenite::Message;
use userlane_core::{ConnectionHandle, InboundLimit, ManagerHandle, UserContext};

use crate::ServerHandle;

/// A live connection, as the application sees it. Only the server builds
/// one; a `ConnectionInfo` of one server given to another server's
/// [`ServerHandle`] is refused with an error (never used to reach that
/// server's users, never a panic).
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub(crate) context: UserContext,
    pub(crate) connection: ConnectionHandle,
    pub(crate) manager: ManagerHandle,
    pub(crate) shard: usize,
    pub(crate) remote: SocketAddr,
    pub(crate) anonymous: bool,
}

impl ConnectionInfo {
    pub(crate) fn new(
        context: UserContext,
        connection: ConnectionHandle,
        manager: ManagerHandle,
        shard: usize,
        remote: SocketAddr,
        anonymous: bool,
    ) -> Self {
        ConnectionInfo {
            context,
            connection,
            manager,
            shard,
            remote,
            anonymous,
        }
    }

    /// The validated context: user, thread, run, a fresh request id and a
    /// fresh connection id.
    pub fn context(&self) -> &UserContext {
        &self.context
    }

    /// The core's handle of this connection.
    pub fn connection(&self) -> ConnectionHandle {
        self.connection
    }

    /// The core's handle of the user's manager.
    pub fn manager(&self) -> ManagerHandle {
        self.manager
    }

    /// The shard the user lives in.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// The peer's address.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// Admitted without a token (development/testing only), under a fresh
    /// anonymous user.
    pub fn anonymous(&self) -> bool {
        self.anonymous
    }

    /// The user this connection belongs to, for its whole life.
    pub fn user_id(&self) -> &str {
        self.context.user_id()
    }

    /// The connection's own id (a UUID).
    pub fn connection_id(&self) -> &str {
        self.context.connection_id().unwrap_or_default()
    }
}

/// The application's side of the server. Methods run on the connection's
/// task: keep them short and non-blocking (spawn for longer work). A panic in
/// one call closes only that connection (1011) and is counted.
///
/// The handler's methods run outside every shard lock, so they may call any
/// [`ServerHandle`] method. Two other pieces of application code run *inside*
/// a shard's lock: the `log` facade's logger (the core logs some warnings
/// while it holds the lock) and the `Drop` of a message payload's owner (a
/// payload can be dropped by the core). Those must not call a
/// `ServerHandle` method (`send_text`, `disconnect_user`, `stats`, …): the
/// call would lock the same shard on the same thread, which panics with a
/// message saying so ([`StdRawMutex`](crate::StdRawMutex)). Hand such work
/// to a task or a channel instead.
pub trait Handler: Send + Sync + 'static {
    /// A frame to write first on a new connection, before anything queued
    /// (such as replayed offline messages).
    fn greeting(&self, _conn: &ConnectionInfo) -> Option<Message> {
        None
    }

    /// An inbound text or binary message.
    fn on_message(&self, server: &ServerHandle, conn: &ConnectionInfo, message: Message);

    /// The connection is gone.
    fn on_disconnect(&self, _server: &ServerHandle, _conn: &ConnectionInfo) {}

    /// The frame queued for a connection whose inbound message the core
    /// refused because it was over the connection's or the user's inbound
    /// budget (`ServerConfig::inbound_per_connection` /
    /// `inbound_per_user`); the message itself was dropped unprocessed.
    /// Asked at most once a second per connection (further refusals in that
    /// second are dropped without a notice, so a client that floods without
    /// reading cannot fill its own queue with them); control frames over
    /// budget get no notice. `None` sends nothing. The default is a JSON text frame
    /// `{"type":"error","error":"rate_limited","limit":"connection_messages"}`.
    fn refusal(&self, _conn: &ConnectionInfo, limit: InboundLimit) -> Option<Message> {
        Some(Message::text(format!(
            r#"{{"type":"error","error":"rate_limited","limit":"{}"}}"#,
            inbound_limit_name(limit)
        )))
    }
}

/// The snake-case name of an inbound budget, as the default
/// [`Handler::refusal`] frame and the metrics spell it.
pub fn inbound_limit_name(limit: InboundLimit) -> &'static str {
    match limit {
        InboundLimit::ConnectionMessages => "connection_messages",
        InboundLimit::ConnectionBytes => "connection_bytes",
        InboundLimit::UserMessages => "user_messages",
        InboundLimit::UserBytes => "user_bytes",
    }
}

/// A handler that ignores inbound messages (a push-only server).
#[derive(Debug, Clone, Copy, Default)]
pub struct IgnoreInbound;

impl Handler for IgnoreInbound {
    fn on_message(&self, _server: &ServerHandle, _conn: &ConnectionInfo, _message: Message) {}
}
