//! One task per connection: handshake, then a reader and a writer that never
//! block each other, until the socket or the core ends the connection.

use std::net::{SocketAddr, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use async_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WireCloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame as WireCloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::Message;
use async_tungstenite::{WebSocketReceiver, WebSocketSender};
use futures_util::{SinkExt, StreamExt};
use smol::Async;
use userlane_core::{CloseCode, Transmit};

use crate::admission::{admit, Admitted};
use crate::auth::JWT_AUTH_PROTOCOL;
use crate::handle::{bump, ServerHandle, ServerShared};
use crate::handler::ConnectionInfo;
use crate::http::{read_head, serve_plain, HeadError, HttpResponse, Replay};

type Stream = Replay<Async<TcpStream>>;

/// Most frames fed to the socket before one flush.
const WRITE_BATCH: usize = 64;

/// Serves one accepted socket from handshake to release. `_task` is dropped
/// when the task ends, which lets shutdown know every connection is gone.
pub(crate) async fn serve(
    shared: Arc<ServerShared>,
    mut socket: Async<TcpStream>,
    remote: SocketAddr,
    _task: smol::channel::Sender<()>,
) {
    let mut buf = Vec::with_capacity(1024);
    let head = smol::future::or(
        async { Some(read_head(&mut socket, &mut buf).await) },
        async {
            let timeout = async {
                smol::Timer::after(shared.config.handshake_timeout).await;
            };
            smol::future::or(timeout, killed(&shared)).await;
            None
        },
    )
    .await;
    let head = match head {
        None | Some(Err(HeadError::Io)) => return,
        Some(Err(HeadError::Bad(status, why))) => {
            if status == 400 {
                bump(&shared.counters.rejected_400);
            }
            let _ = smol::io::AsyncWriteExt::write_all(
                &mut socket,
                &HttpResponse::text(status, why).encode(),
            )
            .await;
            return;
        }
        Some(Ok(head)) => head,
    };
    if !head.is_websocket_upgrade() {
        let handle = ServerHandle {
            shared: shared.clone(),
        };
        let max_body = shared.config.max_http_body_bytes;
        let serving = serve_plain(&mut socket, head, buf, remote, max_body, |req| {
            catch_unwind(AssertUnwindSafe(|| shared.http.handle(&handle, req))).unwrap_or_else(
                |_| {
                    bump(&shared.counters.handler_panics);
                    HttpResponse::text(500, "internal error\n")
                },
            )
        });
        let served = smol::future::or(serving, async {
            killed(&shared).await;
            Err(std::io::Error::other("dropped at the shutdown deadline"))
        })
        .await;
        if let Err(e) = served {
            log::debug!("HTTP request from {remote} failed: {e}");
        }
        return;
    }
    let stream = Replay::new(buf, socket);
    if shared.config.echo_path.as_deref() == Some(head.path.as_str()) {
        crate::echo::serve(&shared, stream).await;
        return;
    }
    let mut admitted: Option<Admitted> = None;
    let mut refused = false;
    // The callback's error type is fixed by tungstenite's `Callback` trait.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        match admit(&shared, req, remote) {
            Ok(a) => {
                if a.select_jwt_auth {
                    resp.headers_mut().insert(
                        "sec-websocket-protocol",
                        JWT_AUTH_PROTOCOL.parse().expect("static header"),
                    );
                }
                admitted = Some(a);
                Ok(resp)
            }
            Err(r) => {
                refused = true;
                Err(r.into_response())
            }
        }
    };
    let cfg = &shared.config;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(cfg.read_buffer_bytes)
        .write_buffer_size(cfg.write_buffer_bytes)
        .max_write_buffer_size(cfg.write_buffer_bytes + 2 * cfg.max_message_bytes + 1024)
        .max_message_size(Some(cfg.max_message_bytes))
        .max_frame_size(Some(cfg.max_message_bytes));
    let result =
        async_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config)).await;
    let ws = match result {
        Ok(ws) => ws,
        Err(e) => {
            if !refused {
                bump(&shared.counters.handshakes_failed);
                log::debug!("handshake with {remote} failed: {e}");
            }
            if let Some(a) = admitted {
                release(&shared, &a.info);
            }
            return;
        }
    };
    let Some(admitted) = admitted else { return };
    let info = admitted.info.clone();
    log::debug!(
        "user {} connected from {remote} (connection {})",
        info.user_id(),
        info.connection_id()
    );
    let (sink, stream) = ws.split();
    let forced = run(&shared, &info, sink, stream, admitted.closing).await;
    if forced {
        bump(&shared.counters.forced_closes);
    }
    release(&shared, &info);
    let handle = ServerHandle {
        shared: shared.clone(),
    };
    if catch_unwind(AssertUnwindSafe(|| {
        shared.handler.on_disconnect(&handle, &info)
    }))
    .is_err()
    {
        bump(&shared.counters.handler_panics);
    }
}

/// Resolves when shutdown's deadline has passed and every connection still
/// open must be dropped.
pub(crate) async fn killed(shared: &ServerShared) {
    let _ = shared.kill_rx.recv().await;
}

/// Frees the connection's slot in the core and the registry.
fn release(shared: &ServerShared, info: &ConnectionInfo) {
    let slot = &shared.shards.slots[info.shard];
    slot.registry().remove(&info.connection);
    if let Ok(r) = slot.core.handle_closed(info.connection, shared.clock.now()) {
        if r.undelivered > 0 {
            log::info!(
                "connection {} ended with {} undelivered message(s)",
                info.connection_id(),
                r.undelivered
            );
        }
    }
}

/// How the connection ended.
enum End {
    /// The writer finished: close frame sent, connection released, or socket error.
    Writer,
    /// The peer closed or the socket failed while reading.
    PeerGone,
    /// A close or shutdown deadline passed with the socket still busy.
    Forced,
}

/// Runs reader and writer until one ends the connection. Returns whether the
/// socket had to be dropped without finishing.
async fn run(
    shared: &Arc<ServerShared>,
    info: &Arc<ConnectionInfo>,
    sink: WebSocketSender<Stream>,
    stream: WebSocketReceiver<Stream>,
    closing: smol::channel::Receiver<()>,
) -> bool {
    let grace = shared.config.close_grace;
    let writer = async {
        write_loop(shared, info, sink).await;
        End::Writer
    };
    let reader = async {
        if read_loop(shared, info, stream).await {
            End::PeerGone
        } else {
            // We asked the core to close; the writer sends the close frame.
            std::future::pending().await
        }
    };
    let deadline = async {
        let _ = closing.recv().await;
        smol::Timer::after(grace).await;
        End::Forced
    };
    let kill = async {
        let _ = shared.kill_rx.recv().await;
        End::Forced
    };
    let end = smol::future::or(
        smol::future::or(writer, reader),
        smol::future::or(deadline, kill),
    )
    .await;
    matches!(end, End::Forced)
}

/// Reads until the peer goes away (returns true) or the server refuses a
/// frame and asks the core to close the connection (returns false).
async fn read_loop(
    shared: &Arc<ServerShared>,
    info: &Arc<ConnectionInfo>,
    mut stream: WebSocketReceiver<Stream>,
) -> bool {
    let slot = &shared.shards.slots[info.shard];
    let handle = ServerHandle {
        shared: shared.clone(),
    };
    while let Some(item) = stream.next().await {
        let now = shared.clock.now();
        match item {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                let _ = slot.core.handle_activity(info.connection, now);
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    shared.handler.on_message(&handle, info, m)
                }));
                if outcome.is_err() {
                    bump(&shared.counters.handler_panics);
                    log::error!(
                        "handler panicked on connection {}; closing it with 1011",
                        info.connection_id()
                    );
                    close_with(shared, info, CloseCode::INTERNAL_ERROR, "internal error");
                    return false;
                }
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => {
                let _ = slot.core.handle_activity(info.connection, now);
            }
            // Keep reading: the next read flushes tungstenite's queued close
            // reply, then ends the stream, so the peer sees a clean close.
            Ok(Message::Close(_)) => continue,
            Ok(Message::Frame(_)) => {}
            Err(WsError::Capacity(CapacityError::MessageTooLong { .. })) => {
                bump(&shared.counters.closed_message_too_big);
                close_with(shared, info, CloseCode::MESSAGE_TOO_BIG, "message too big");
                return false;
            }
            Err(WsError::Utf8(_)) => {
                bump(&shared.counters.closed_invalid_utf8);
                close_with(shared, info, CloseCode::INVALID_PAYLOAD, "invalid UTF-8");
                return false;
            }
            // The peer vanished without a close frame: gone, not a protocol error.
            Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => return true,
            Err(WsError::Protocol(e)) => {
                bump(&shared.counters.closed_protocol_error);
                log::debug!("protocol error on {}: {e}", info.connection_id());
                close_with(shared, info, CloseCode::PROTOCOL_ERROR, "protocol error");
                return false;
            }
            Err(_) => return true,
        }
    }
    true
}

/// Asks the core to close the connection with `code` after what is queued.
fn close_with(shared: &ServerShared, info: &ConnectionInfo, code: CloseCode, reason: &str) {
    let slot = &shared.shards.slots[info.shard];
    if let Some(entry) = slot.registry().get_mut(&info.connection) {
        entry.reason = Some(reason.to_owned());
    }
    let _ = slot
        .core
        .with(|f| f.close_connection(info.manager, info.connection, code, shared.clock.now()));
}

/// Writes the greeting, then drains the core's queue in batches (feed many,
/// flush once) and pings every `ping_interval`, until the close frame is
/// sent, the connection is released, or the socket fails.
async fn write_loop(
    shared: &Arc<ServerShared>,
    info: &Arc<ConnectionInfo>,
    mut sink: WebSocketSender<Stream>,
) {
    let slot = &shared.shards.slots[info.shard];
    let conn = info.connection;
    match catch_unwind(AssertUnwindSafe(|| shared.handler.greeting(info))) {
        Ok(Some(greeting)) => {
            if sink.send(greeting).await.is_err() {
                return;
            }
        }
        Ok(None) => {}
        Err(_) => {
            // Like a panic in on_message: counted, and this connection closed with 1011.
            bump(&shared.counters.handler_panics);
            log::error!(
                "handler panicked greeting connection {}; closing it with 1011",
                info.connection_id()
            );
            close_with(shared, info, CloseCode::INTERNAL_ERROR, "internal error");
        }
    }
    let mut ping = smol::Timer::interval(shared.config.ping_interval);
    loop {
        enum Step {
            Item(Option<Transmit<Message>>),
            Ping,
        }
        let step = smol::future::or(
            async { Step::Item(slot.core.next_transmit(conn).await) },
            async {
                ping.next().await;
                Step::Ping
            },
        )
        .await;
        match step {
            Step::Ping => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
            Step::Item(None) => return,
            Step::Item(Some(first)) => {
                // The next item is taken from the core only once the previous
                // one is fed: a connection dropped at a deadline leaves the
                // rest in the core's queue, counted as undelivered, instead of
                // in a local batch where it would be lost silently.
                let mut next = Some(first);
                let mut fed = 0;
                while let Some(t) = next.take() {
                    match t {
                        Transmit::Message(m) => {
                            if sink.feed(m).await.is_err() {
                                return;
                            }
                        }
                        Transmit::Close(frame) => {
                            let reason = slot
                                .registry()
                                .get(&conn)
                                .and_then(|e| e.reason.clone())
                                .unwrap_or_else(|| frame.reason.as_str().to_owned());
                            let wire = WireCloseFrame {
                                code: WireCloseCode::from(frame.code.as_u16()),
                                reason: reason.into(),
                            };
                            let _ = sink.feed(Message::Close(Some(wire))).await;
                            let _ = sink.flush().await;
                            return;
                        }
                    }
                    fed += 1;
                    if fed < WRITE_BATCH {
                        slot.core.drain_transmits(conn, 1, |t| next = Some(t));
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}
