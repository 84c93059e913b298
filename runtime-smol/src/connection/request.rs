//! Reading requests before the upgrade: the request head, plain HTTP
//! answered, and the keep-alive loop until an upgrade or the close.

use std::net::{SocketAddr, TcpStream};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use smol::Async;

use crate::handle::ServerHandle;
use crate::handler::App;
use crate::http::{
    next_request, read_head, serve_plain, Head, HeadError, HttpResponse, Phase, PhaseCell, Plain,
};
use crate::state::{bump, ServerShared};

use super::deadline::{bounded, timed_out, Bounded};

/// Answers the plain HTTP requests of a kept-alive connection, each before
/// its own request deadline (the first one's is `deadline`, counted from
/// the accept; a later one's from its first byte, which must come within
/// `http_idle_timeout`), until one is an upgrade (its head is returned) or
/// the connection closes (`None`).
pub(super) async fn upgrade_request(
    shared: &Arc<ServerShared>,
    app: &App,
    socket: &mut Async<TcpStream>,
    buf: &mut Vec<u8>,
    remote: SocketAddr,
    mut deadline: std::time::Instant,
) -> Option<Head> {
    let config = &shared.config;
    for served in 1..=config.max_requests_per_connection {
        let phase = PhaseCell::new(Phase::Reading);
        let may_keep_alive = served < config.max_requests_per_connection;
        // Boxed: the head reader's buffers and the plain-HTTP path (~9 KiB)
        // would otherwise stay in every connection task's state for its whole life.
        let step = read_request(shared, app, socket, buf, remote, &phase, may_keep_alive);
        match bounded(shared, deadline, Box::pin(step)).await {
            Bounded::Done(Request::Upgrade(head)) => return Some(head),
            Bounded::Done(Request::Served) => {}
            Bounded::Done(Request::Closed) | Bounded::Killed => return None,
            Bounded::TimedOut => {
                timed_out(shared, remote, socket, phase.get()).await;
                return None;
            }
        }
        let stop = shared.lifecycle.accepting_stopped();
        if !next_request(socket, buf, config.http_idle_timeout, stop).await {
            return None;
        }
        deadline = std::time::Instant::now() + config.request_timeout;
    }
    None
}

/// What became of a request read by [`read_request`].
enum Request {
    /// A WebSocket upgrade, with its head.
    Upgrade(Head),
    /// A plain request was answered and the connection stays open.
    Served,
    /// The connection is done with.
    Closed,
}

/// Reads the request head; answers a plain HTTP request (or a head that
/// cannot be read), keeping the connection open if `may_keep_alive`, the
/// client wants it and the server is not shutting down; or returns the
/// head of an upgrade.
async fn read_request(
    shared: &Arc<ServerShared>,
    app: &App,
    socket: &mut Async<TcpStream>,
    buf: &mut Vec<u8>,
    remote: SocketAddr,
    phase: &PhaseCell,
    may_keep_alive: bool,
) -> Request {
    let head = match read_head(socket, buf).await {
        Err(HeadError::Io) => return Request::Closed,
        Err(HeadError::Bad(status, why)) => {
            if status == 400 {
                bump(&shared.counters.rejected_400);
            }
            phase.set(Phase::Written);
            let _ = smol::io::AsyncWriteExt::write_all(
                socket,
                &HttpResponse::text(status, why).encode(),
            )
            .await;
            return Request::Closed;
        }
        Ok(head) => head,
    };
    if head.is_websocket_upgrade() {
        return Request::Upgrade(head);
    }
    let handle = ServerHandle {
        shared: shared.clone(),
    };
    let plain = Plain {
        max_body: shared.config.max_http_body_bytes,
        may_keep_alive: may_keep_alive && shared.lifecycle.is_accepting(),
    };
    let served = serve_plain(
        socket,
        head,
        std::mem::take(buf),
        remote,
        plain,
        phase,
        |req| async {
            let answer = AssertUnwindSafe(async { app.http.handle(&handle, req).await });
            futures_util::FutureExt::catch_unwind(answer)
                .await
                .unwrap_or_else(|_| {
                    bump(&shared.counters.handler_panics);
                    HttpResponse::text(500, "internal error\n")
                })
        },
    )
    .await;
    match served {
        Ok(Some(rest)) => {
            *buf = rest;
            Request::Served
        }
        Ok(None) => Request::Closed,
        Err(e) => {
            log::debug!("HTTP request from {remote} failed: {e}");
            Request::Closed
        }
    }
}
