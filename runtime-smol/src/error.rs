//! Why a user-targeted operation of the [`ServerHandle`](crate::ServerHandle) failed.

use userlane_core::Error as CoreError;

use crate::cluster::ClusterError;

/// Why a user-targeted operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// The user has no manager (never connected, or reclaimed) and offline
    /// buffering is off.
    #[error("unknown user")]
    UnknownUser,
    /// The connection is not open on this server: it has closed, or the
    /// `ConnectionInfo` came from another server.
    #[error("unknown connection")]
    UnknownConnection,
    /// The core refused.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The cluster could not take the message and nothing was delivered locally.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}
