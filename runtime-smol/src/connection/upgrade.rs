//! The upgrade step: an upgrade request admitted (or refused with an HTTP
//! status), echo or user, then the handshake.

use std::net::SocketAddr;
use std::sync::Arc;

use async_tungstenite::WebSocketStream;

use crate::admission::{admit, admit_echo, EchoSlot};
use crate::auth::JWT_AUTH_PROTOCOL;
use crate::http::{body_length, Head, HttpResponse};
use crate::signals::Signals;
use crate::state::{bump, ServerShared};

use super::admitted::{admit_in_cluster, Admission, Cleanup};
use super::handshake::{handshake, write_refusal, write_response, Stream};

/// What the upgrade step produced.
pub(super) enum Upgraded {
    /// A user's WebSocket, its admission and its wake flags.
    Ws(Box<WebSocketStream<Stream>>, Admission, Arc<Signals>),
    /// An echo WebSocket and its share of `max_connections`.
    Echo(Box<WebSocketStream<Stream>>, EchoSlot),
}

/// Admits an upgrade request (or refuses it with an HTTP status) and runs
/// the WebSocket handshake.
pub(super) async fn upgrade(
    shared: &Arc<ServerShared>,
    stream: Stream,
    head: Head,
    remote: SocketAddr,
) -> Option<Upgraded> {
    let accept = match body_length(&head) {
        Ok(0) => head.websocket_accept(),
        _ => {
            bump(&shared.counters.rejected_400);
            let _ = write_response(
                stream,
                HttpResponse::text(400, "malformed upgrade request\n"),
            )
            .await;
            return None;
        }
    };
    if shared.config.echo_path.as_deref() == Some(head.path.as_str()) {
        let slot = match admit_echo(shared, &head, remote) {
            Ok(slot) => slot,
            Err(refusal) => {
                let _ = write_refusal(stream, refusal).await;
                return None;
            }
        };
        drop(head);
        let config = shared.config.websocket_config();
        let ws = Box::pin(handshake(shared, stream, accept, None, config)).await?;
        return Some(Upgraded::Echo(Box::new(ws), slot));
    }
    // Admission runs before the upgrade, in this task: every refusal is an
    // HTTP status, and the cluster's lease check may await Redis.
    let admitted = match admit(shared, &head, remote) {
        Ok(a) => a,
        Err(refusal) => {
            let _ = write_refusal(stream, refusal).await;
            return None;
        }
    };
    // Not needed past admission: dropped here, so its headers do not stay
    // in the connection task for the connection's whole life.
    drop(head);
    let mut admission = Admission {
        shared: shared.clone(),
        info: admitted.info,
        cleanup: Cleanup::default(),
    };
    if let Err(refusal) = Box::pin(admit_in_cluster(shared, &mut admission, remote)).await {
        drop(admission);
        let _ = write_refusal(stream, refusal).await;
        return None;
    }
    let protocol = admitted.select_jwt_auth.then_some(JWT_AUTH_PROTOCOL);
    let config = shared.config.websocket_config();
    let ws = Box::pin(handshake(shared, stream, accept, protocol, config)).await?;
    Some(Upgraded::Ws(Box::new(ws), admission, admitted.signals))
}
