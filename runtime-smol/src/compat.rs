//! The legacy singleton API, bound to the running server.
//!
//! [`get_websocket_manager`] returns a [`LegacyHandle`] to the server started
//! last in this process (set when [`Server::run`](crate::Server::run) starts,
//! cleared when it ends). Before that it returns
//! [`CompatError::ServerNotRunning`]: never a fresh, empty manager that would
//! swallow messages. Every legacy method is `#[deprecated]` (the compiler
//! lists the call sites) and `#[track_caller]` (each call records its
//! `file:line` in a process-wide call-site table, reported by
//! [`legacy_usage`] and in [`ServerStats`](crate::ServerStats)).
//!
//! The new path: [`create_websocket_manager`] (alias
//! [`migrate_singleton_usage`]) gives a [`UserLane`] bound to one user.

use std::future::{ready, Ready};
use std::panic::Location;
use std::sync::{Arc, PoisonError, RwLock};

use userlane_core::compat::LegacyMethod;
use userlane_core::{CloseCode, ManagerHandle, SendOutcome, UserContext};

use crate::error::UserError;
use crate::handle::ServerHandle;
use crate::info::ConnectionInfo;
pub use crate::legacy_sites::{legacy_usage, LegacyUsage, CALL_SITE_CAPACITY};
use crate::legacy_sites::{record, snapshot};
use crate::state::ServerShared;
use async_tungstenite::tungstenite::Message;

static RUNNING: RwLock<Option<ServerHandle>> = RwLock::new(None);

/// Binds the legacy API to `handle` (called when a server starts).
pub(crate) fn install(handle: &ServerHandle) {
    *RUNNING.write().unwrap_or_else(PoisonError::into_inner) = Some(handle.clone());
}

/// Unbinds it, if it is still bound to `shared` (called when that server ends).
pub(crate) fn uninstall(shared: &Arc<ServerShared>) {
    let mut running = RUNNING.write().unwrap_or_else(PoisonError::into_inner);
    if running
        .as_ref()
        .is_some_and(|h| Arc::ptr_eq(&h.shared, shared))
    {
        *running = None;
    }
}

/// Why a legacy call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompatError {
    /// No server is running in this process.
    #[error("get_websocket_manager() was called before a userlane server started; no fallback manager is created")]
    ServerNotRunning,
    /// A close code that may not be sent.
    #[error("{0} is not a sendable WebSocket close code")]
    InvalidCloseCode(u16),
    /// The user-level operation failed.
    #[error(transparent)]
    User(#[from] UserError),
}

/// The legacy handle of the running server.
pub fn get_websocket_manager() -> Result<LegacyHandle, CompatError> {
    RUNNING
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .map(|server| LegacyHandle { server })
        .ok_or(CompatError::ServerNotRunning)
}

/// The legacy `get_stats()` keys with real values: the core's one legacy
/// stats type, with this process's call-site table.
pub type LegacyStats = userlane_core::compat::LegacyStats<CALL_SITE_CAPACITY>;

/// The migration section of [`LegacyStats`].
pub type LegacyMigrationStatus = userlane_core::compat::MigrationStatus<CALL_SITE_CAPACITY>;

/// The legacy singleton API over the running server's isolated lanes.
/// Methods return futures so that legacy `.await`s keep compiling; they do
/// not block.
#[derive(Clone, Debug)]
pub struct LegacyHandle {
    server: ServerHandle,
}

impl LegacyHandle {
    /// Sends to every connection of `user_id` (or its offline buffer).
    #[deprecated(
        note = "legacy singleton API: use create_websocket_manager(ctx) and UserLane::send"
    )]
    #[track_caller]
    pub fn send_to_user(
        &self,
        user_id: &str,
        message: impl Into<Message>,
    ) -> Ready<Result<SendOutcome, UserError>> {
        record(LegacyMethod::SendToUser, Location::caller());
        ready(self.server.send_to_user(user_id, message.into()))
    }

    /// Closes every connection of `user_id` with `code` and `reason`.
    #[deprecated(note = "legacy singleton API: use ServerHandle::disconnect_user")]
    #[track_caller]
    pub fn disconnect_user(
        &self,
        user_id: &str,
        code: u16,
        reason: &str,
    ) -> Ready<Result<usize, CompatError>> {
        record(LegacyMethod::DisconnectUser, Location::caller());
        ready(match CloseCode::new(code) {
            Ok(code) => Ok(self.server.disconnect_user(user_id, code, reason)),
            Err(_) => Err(CompatError::InvalidCloseCode(code)),
        })
    }

    /// The connection ids of `user_id`.
    #[deprecated(note = "legacy singleton API: use ServerHandle::user_connections")]
    #[track_caller]
    pub fn get_user_connections(&self, user_id: &str) -> Vec<String> {
        record(LegacyMethod::GetUserConnections, Location::caller());
        self.server
            .user_connections(user_id)
            .iter()
            .map(|c| c.connection_id().to_owned())
            .collect()
    }

    /// The legacy stats keys, with real values.
    #[deprecated(note = "legacy singleton API: use ServerHandle::stats")]
    #[track_caller]
    pub fn get_stats(&self) -> Ready<LegacyStats> {
        record(LegacyMethod::GetStats, Location::caller());
        let core = self.server.stats().core;
        let sites = snapshot();
        // The runtime's legacy calls build no default context: a send to a
        // user without a manager uses the server's service context.
        ready(LegacyStats::new(&core, 0, &sites))
    }
}

/// One user's lane on the running server: the new path.
#[derive(Clone, Debug)]
pub struct UserLane {
    server: ServerHandle,
    user_id: String,
    manager: ManagerHandle,
}

/// Creates (or finds) the isolated manager of `ctx.user_id()` on the running server.
pub fn create_websocket_manager(ctx: UserContext) -> Result<UserLane, CompatError> {
    let server = get_websocket_manager()?.server;
    let slot = server.shared.shards.of(ctx.user_id());
    let user_id = ctx.user_id().to_owned();
    let now = server.shared.clock.now();
    let manager = slot
        .core
        .with(|f| f.create_manager(ctx, now))
        .map_err(UserError::from)?;
    Ok(UserLane {
        server,
        user_id,
        manager,
    })
}

/// The seed's name for [`create_websocket_manager`].
pub fn migrate_singleton_usage(ctx: UserContext) -> Result<UserLane, CompatError> {
    create_websocket_manager(ctx)
}

impl UserLane {
    /// The user.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The core handle of the user's manager.
    pub fn manager(&self) -> ManagerHandle {
        self.manager
    }

    /// Sends to every connection of this user (or its offline buffer). Fails
    /// with "manager is no longer active" once the manager was deactivated or
    /// reclaimed.
    pub fn send(&self, message: impl Into<Message>) -> Result<SendOutcome, UserError> {
        let slot = self.server.shared.shards.of(&self.user_id);
        let now = self.server.shared.clock.now();
        Ok(slot
            .core
            .with(|f| f.send_to_user(self.manager, message.into(), now))
            .map_err(userlane_core::Error::from)?)
    }

    /// The user's open connections.
    pub fn connections(&self) -> Vec<Arc<ConnectionInfo>> {
        self.server.user_connections(&self.user_id)
    }

    /// Deactivates the user's manager (its connections close with 1000).
    pub fn deactivate(&self) -> Result<u32, UserError> {
        let slot = self.server.shared.shards.of(&self.user_id);
        let now = self.server.shared.clock.now();
        Ok(slot.core.with(|f| f.deactivate(self.manager, now))?)
    }
}
