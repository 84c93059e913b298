//! Opening a connection: the request read and answered or upgraded within
//! the request deadline, then the user's connection future made.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use async_tungstenite::WebSocketStream;
use smol::Async;

use crate::admission::EchoSlot;
use crate::handler::App;
use crate::http::Replay;
use crate::state::{bump, ServerShared};

use super::admitted::Admission;
use super::conn::Conn;
use super::deadline::{bounded, Bounded};
use super::handshake::Stream;
use super::request::upgrade_request;
use super::upgrade::{upgrade, Upgraded};

/// What an accepted socket became.
// The `Conn` variant is moved into the task's state either way; boxing it
// would add an allocation per connection.
#[allow(clippy::large_enum_variant)]
pub(super) enum Opened {
    /// A WebSocket connection of a user: its future and its admission
    /// (released when the connection ends).
    Conn(Conn, Admission),
    /// An upgraded echo connection and its share of `max_connections`.
    Echo(Box<WebSocketStream<Stream>>, EchoSlot),
}

/// Reads the request head and answers plain HTTP, or admits and upgrades a
/// WebSocket request, all before `deadline` (the socket is closed when it
/// passes). `None` when the socket was answered or dropped here.
pub(super) async fn open(
    shared: &Arc<ServerShared>,
    app: &Arc<App>,
    mut socket: Async<TcpStream>,
    remote: SocketAddr,
    deadline: std::time::Instant,
) -> Option<Opened> {
    let mut buf = Vec::with_capacity(1024);
    let head = Box::pin(upgrade_request(
        shared,
        app,
        &mut socket,
        &mut buf,
        remote,
        deadline,
    ))
    .await?;
    // The head was parsed once; what follows it (frames a client sent
    // early) is read again by tungstenite.
    buf.drain(..head.len);
    let stream = Replay::new(buf, socket);
    let upgraded = match bounded(
        shared,
        deadline,
        Box::pin(upgrade(shared, stream, head, remote)),
    )
    .await
    {
        Bounded::Done(u) => u?,
        Bounded::TimedOut => {
            // Whatever was admitted was given back when the step was dropped.
            bump(&shared.counters.requests_timed_out);
            log::debug!("upgrade from {remote} passed the request deadline; socket closed");
            return None;
        }
        Bounded::Killed => return None,
    };
    let (ws, mut admission, signals) = match upgraded {
        Upgraded::Echo(ws, slot) => return Some(Opened::Echo(ws, slot)),
        Upgraded::Ws(ws, admission, signals) => (ws, admission, signals),
    };
    if let Some(cluster) = &shared.cluster {
        let info = &admission.info;
        // The first local connection of the user subscribes; the subscriber
        // task then drains the user's offline stream into this node's
        // connections of the user (this one included) before it delivers
        // anything published after the subscription.
        cluster.local_opened(info.user_id()).await;
        admission.cleanup.subscription = true;
    }
    let info = &admission.info;
    log::debug!(
        "user {} connected from {remote} (connection {})",
        info.user_id(),
        info.connection_id()
    );
    let conn = Conn::new(shared, app, info, *ws, signals);
    Some(Opened::Conn(conn, admission))
}
