//! What the core hands back to its caller: events, transmits, send outcomes.

use crate::{CloseFrame, ConnectionHandle, ManagerHandle};

/// Something the caller must act on, from
/// [`poll_event`](crate::ManagerFactory::poll_event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Event {
    /// The connection's outbound queue became non-empty: drain
    /// [`poll_transmit`](crate::ManagerFactory::poll_transmit) for it.
    Transmit(ConnectionHandle),
    /// The core closed the connection (idle timeout, slow consumer,
    /// deactivation, application close, inbound flood). Its queued messages and then `close`
    /// wait in `poll_transmit`; once the socket is closed, call
    /// [`handle_closed`](crate::ManagerFactory::handle_closed) to free the slot.
    ConnectionClosed {
        /// The connection.
        connection: ConnectionHandle,
        /// Its (former) manager.
        manager: ManagerHandle,
        /// The close to send.
        close: CloseFrame,
    },
    /// A manager was created.
    ManagerCreated(ManagerHandle),
    /// A manager was deactivated; its connections are closing.
    ManagerDeactivated {
        /// The dead handle.
        manager: ManagerHandle,
        /// How many open connections were closed.
        closed_connections: u32,
        /// Offline-buffered messages that can no longer be delivered.
        discarded_offline: u32,
    },
    /// A manager with no connection for `empty_manager_ttl_ms` was reclaimed.
    ManagerReclaimed {
        /// The dead handle.
        manager: ManagerHandle,
        /// Offline-buffered messages that can no longer be delivered.
        discarded_offline: u32,
    },
}

/// The next thing to write on a connection's socket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Transmit<P> {
    /// An application message.
    Message(P),
    /// Close the WebSocket with this frame; nothing follows it.
    Close(CloseFrame),
}

/// What [`send_to_user`](crate::ManagerFactory::send_to_user) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SendOutcome {
    /// The message was queued on `queued_for` open connections of the user;
    /// `closed_slow` connections with a full queue were closed with 1013
    /// instead (only under `CloseSlowConnection`). `queued_for == 0` means the
    /// message reached no connection.
    Queued {
        /// Connections the message was queued for.
        queued_for: u32,
        /// Connections closed as slow consumers instead.
        closed_slow: u32,
    },
    /// The user has no open connection; the message waits in the offline
    /// buffer (now holding `buffered` messages) for the next one.
    Buffered {
        /// Messages in the offline buffer, this one included.
        buffered: u32,
    },
}

impl SendOutcome {
    /// Connections the message was queued for right now (0 when buffered).
    pub const fn queued_for(&self) -> u32 {
        match self {
            SendOutcome::Queued { queued_for, .. } => *queued_for,
            SendOutcome::Buffered { .. } => 0,
        }
    }
}

/// What [`remove_connection`](crate::ManagerFactory::remove_connection) and
/// [`handle_closed`](crate::ManagerFactory::handle_closed) released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Released {
    /// Messages that were still queued and will never be transmitted; they are
    /// counted in [`Stats::messages_dropped`](crate::Stats::messages_dropped).
    pub undelivered: u32,
}
