//! What the server knows about one admitted connection, as the application
//! sees it: the state layer builds it, the handler and the handle read it.

use std::net::SocketAddr;

use userlane_core::{ConnectionHandle, ManagerHandle, UserContext};

/// A live connection, as the application sees it. Only the server builds
/// one; a `ConnectionInfo` of one server given to another server's
/// [`ServerHandle`](crate::ServerHandle) is refused with an error (never used to reach that
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
