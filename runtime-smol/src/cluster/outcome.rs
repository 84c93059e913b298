//! What a cross-node operation gives back: [`ClusterError`] when it failed,
//! [`Remote`] for what a send did.

/// Why a cross-node operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// Redis is unreachable (or timed out); only local delivery happened.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// The user's offline stream is full; the message was not stored.
    #[error("offline stream of the user is full")]
    OfflineFull,
}

/// What a cross-node send did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remote {
    /// Published to this many nodes (the sender included if it holds the user).
    Published(u32),
    /// No node holds the user: stored in the offline stream (now this long).
    Stored(u32),
}
