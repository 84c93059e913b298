//! How inbound messages reach the application: the `Handler` trait and what
//! it learns about each connection.

use std::sync::Arc;

use async_tungstenite::tungstenite::Message;
use userlane_core::InboundLimit;

use crate::handle::ServerHandle;
use crate::info::ConnectionInfo;
use crate::service::HttpService;

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

/// The application's code that connections call: its [`Handler`] and its
/// plain-HTTP [`HttpService`].
pub(crate) struct App {
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) http: Arc<dyn HttpService>,
}
