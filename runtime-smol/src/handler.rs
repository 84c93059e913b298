//! How inbound messages reach the application: the `Handler` trait and what
//! it learns about each connection.

use std::net::SocketAddr;

use async_tungstenite::tungstenite::Message;
use userlane_core::{ConnectionHandle, ManagerHandle, UserContext};

use crate::ServerHandle;

/// A live connection, as the application sees it.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The validated context: user, thread, run, a fresh request id and a
    /// fresh connection id.
    pub context: UserContext,
    /// The core's handle of this connection.
    pub connection: ConnectionHandle,
    /// The core's handle of the user's manager.
    pub manager: ManagerHandle,
    /// The shard the user lives in.
    pub shard: usize,
    /// The peer's address.
    pub remote: SocketAddr,
    /// Admitted without a token (development/testing only), under a fresh
    /// anonymous user.
    pub anonymous: bool,
}

impl ConnectionInfo {
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
}

/// A handler that ignores inbound messages (a push-only server).
#[derive(Debug, Clone, Copy, Default)]
pub struct IgnoreInbound;

impl Handler for IgnoreInbound {
    fn on_message(&self, _server: &ServerHandle, _conn: &ConnectionInfo, _message: Message) {}
}
