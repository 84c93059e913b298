//! The one error type of the core's operations.

use core::fmt;

use crate::{ConnectionHandle, ContextError, ManagerHandle};

/// A bounded resource that refused an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Limit {
    /// [`Config::max_users`](crate::Config::max_users) managers are active.
    Users,
    /// The user already has [`Config::max_connections_per_user`](crate::Config::max_connections_per_user) open connections.
    ConnectionsPerUser,
    /// [`Config::max_connections`](crate::Config::max_connections) connections are open,
    /// or the connection table is full of closing connections not yet released.
    Connections,
    /// The user's offline buffer holds [`Config::offline_buffer`](crate::Config::offline_buffer) messages.
    OfflineBuffer,
    /// The shared pool of queued-message slots is exhausted.
    QueueSlots,
    /// [`Config::max_offline_managers`](crate::Config::max_offline_managers)
    /// active managers have no open connection, so
    /// [`create_offline_manager`](crate::ManagerFactory::create_offline_manager)
    /// creates no more.
    OfflineManagers,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Users => "maximum number of active users reached",
            Limit::ConnectionsPerUser => "user reached the maximum number of connections",
            Limit::Connections => "maximum number of connections reached",
            Limit::OfflineBuffer => "offline buffer of the user is full",
            Limit::QueueSlots => "no free queued-message slot",
            Limit::OfflineManagers => "maximum number of users without a connection reached",
        })
    }
}

/// How an operation tried to cross from one user's lane into another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Violation {
    /// A connection claiming another user was offered to this user's manager.
    ForeignUser,
    /// The connection handle belongs to another user's manager.
    ForeignConnection {
        /// The manager that owns the connection.
        owner: ManagerHandle,
    },
}

/// Why an operation of the core was refused. Every refusal is also counted in
/// [`Stats`](crate::Stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// A context failed validation.
    InvalidContext(ContextError),
    /// The manager was deactivated or reclaimed; its handle is dead for good.
    /// Displays as "manager is no longer active".
    ManagerInactive(ManagerHandle),
    /// The handle was never issued by this factory.
    UnknownManager(ManagerHandle),
    /// The connection is gone (or never existed).
    UnknownConnection(ConnectionHandle),
    /// The connection is closing and takes no new work.
    ConnectionClosing(ConnectionHandle),
    /// The operation named another user's connection or identity.
    IsolationViolation {
        /// The manager the operation went through.
        manager: ManagerHandle,
        /// What was crossed.
        violation: Violation,
    },
    /// A bounded resource is exhausted.
    LimitReached(Limit),
    /// A connection's outbound queue is full and the policy is
    /// [`RejectSend`](crate::SlowConsumerPolicy::RejectSend); nothing was enqueued.
    QueueFull(ConnectionHandle),
    /// The user has no open connection and the offline buffer is disabled.
    NoConnections(ManagerHandle),
    /// The lifecycle event queue is full: drain
    /// [`poll_event`](crate::ManagerFactory::poll_event) (or
    /// [`drain_events`](crate::ManagerFactory::drain_events)) and retry.
    EventsPending,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidContext(e) => write!(f, "{e}"),
            Error::ManagerInactive(_) => f.write_str("manager is no longer active"),
            Error::UnknownManager(_) => f.write_str("unknown manager handle"),
            Error::UnknownConnection(_) => f.write_str("unknown connection handle"),
            Error::ConnectionClosing(_) => f.write_str("connection is closing"),
            Error::IsolationViolation {
                violation: Violation::ForeignUser,
                ..
            } => f.write_str("isolation violation: connection belongs to another user"),
            Error::IsolationViolation {
                violation: Violation::ForeignConnection { .. },
                ..
            } => f.write_str("isolation violation: connection is owned by another user's manager"),
            Error::LimitReached(l) => write!(f, "limit reached: {l}"),
            Error::QueueFull(_) => {
                f.write_str("outbound queue of a connection is full; nothing was sent")
            }
            Error::NoConnections(_) => {
                f.write_str("user has no open connection and offline buffering is disabled")
            }
            Error::EventsPending => f.write_str("event queue is full; drain poll_event first"),
        }
    }
}

/// A refused [`send_to_user`](crate::ManagerFactory::send_to_user) or
/// [`send_to_connection`](crate::ManagerFactory::send_to_connection): why,
/// and the payload, handed back untouched. Nothing was enqueued, so the caller
/// still owns the payload (a gateway whose payload indexes its own frame
/// buffers frees the frame; a server may retry or drop it outside any lock).
///
/// `?` turns it into the bare [`Error`], dropping the payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[must_use = "a refused send hands the payload back; drop it deliberately"]
pub struct SendError<P> {
    /// Why the send was refused (counted in [`Stats`](crate::Stats)).
    pub error: Error,
    /// The payload that was not enqueued.
    pub payload: P,
}

impl<P> SendError<P> {
    /// The payload that was not enqueued.
    pub fn into_payload(self) -> P {
        self.payload
    }

    /// Why the send was refused.
    pub const fn error(&self) -> Error {
        self.error
    }
}

impl<P> From<SendError<P>> for Error {
    fn from(e: SendError<P>) -> Self {
        e.error
    }
}

impl<P> fmt::Display for SendError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl From<ContextError> for Error {
    fn from(e: ContextError) -> Self {
        Error::InvalidContext(e)
    }
}

#[cfg(feature = "std")]
mod std_impls {
    extern crate std;
    impl std::error::Error for super::Error {}
    impl<P: core::fmt::Debug> std::error::Error for super::SendError<P> {}
    impl std::error::Error for crate::ContextError {}
    impl std::error::Error for crate::ConfigError {}
    impl std::error::Error for crate::InvalidCloseCode {}
}
