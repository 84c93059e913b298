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

use crate::admission::admit;
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
        // Boxed: the head reader's buffers (~4 KiB) would otherwise stay in
        // every connection task's state for its whole life.
        async { Some(Box::pin(read_head(&mut socket, &mut buf)).await) },
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
        let serving = serve_plain(&mut socket, head, buf, remote, max_body, |req| async {
            let answer = AssertUnwindSafe(async { shared.http.handle(&handle, req).await });
            futures_util::FutureExt::catch_unwind(answer)
                .await
                .unwrap_or_else(|_| {
                    bump(&shared.counters.handler_panics);
                    HttpResponse::text(500, "internal error\n")
                })
        });
        // Boxed: the plain-HTTP path is ~9 KiB of future state that
        // WebSocket connections would otherwise carry for their whole life.
        let served = smol::future::or(Box::pin(serving), async {
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
        Box::pin(crate::echo::serve(&shared, stream)).await;
        return;
    }
    // Admission runs before the upgrade, in this task: every refusal is an
    // HTTP status, and the cluster's lease check may await Redis.
    let Some(request) = head.to_request() else {
        bump(&shared.counters.rejected_400);
        let _ = write_response(
            stream,
            HttpResponse::text(400, "malformed request target\n"),
        )
        .await;
        return;
    };
    let admitted = match admit(&shared, &request, remote) {
        Ok(a) => a,
        Err(refusal) => {
            let _ = write_response(
                stream,
                HttpResponse::text(refusal.status.as_u16(), refusal.message),
            )
            .await;
            return;
        }
    };
    // Not needed past admission: dropped here, so their header maps do not
    // stay in the connection task for the connection's whole life.
    drop(request);
    drop(head);
    let mut leased = false;
    if let Some(cluster) = &shared.cluster {
        let cap = shared.config.max_connections_per_user;
        // Boxed (as the other transient steps below): an await's future is
        // part of the task's state for the connection's whole life otherwise.
        match Box::pin(cluster.admit(admitted.info.user_id(), admitted.info.connection_id(), cap))
            .await
        {
            Ok(true) => leased = true,
            Ok(false) => {
                release(&shared, &admitted.info, Cleanup::default());
                bump(&shared.counters.rejected_429);
                log::info!("refused upgrade from {remote}: 429 cluster-wide limit of {cap} connections for this user");
                let body = format!(
                    "too many connections for this user across the cluster (limit {cap})\n"
                );
                let _ = write_response(stream, HttpResponse::text(429, body)).await;
                return;
            }
            Err(e) => {
                // Documented fallback: the node's own per-user cap (already enforced by the core).
                cluster
                    .local_admissions
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                log::warn!(
                    "cluster admission unavailable ({e}); admitted under the local per-user cap"
                );
            }
        }
    }
    let select_jwt_auth = admitted.select_jwt_auth;
    // The callback's error type is fixed by tungstenite's `Callback` trait.
    #[allow(clippy::result_large_err)]
    let callback = |_req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        if select_jwt_auth {
            resp.headers_mut().insert(
                "sec-websocket-protocol",
                JWT_AUTH_PROTOCOL.parse().expect("static header"),
            );
        }
        Ok(resp)
    };
    let cfg = &shared.config;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(cfg.read_buffer_bytes)
        .write_buffer_size(cfg.write_buffer_bytes)
        .max_write_buffer_size(cfg.write_buffer_bytes + 2 * cfg.max_message_bytes + 1024)
        .max_message_size(Some(cfg.max_message_bytes))
        .max_frame_size(Some(cfg.max_message_bytes));
    let result = Box::pin(async_tungstenite::accept_hdr_async_with_config(
        stream,
        callback,
        Some(ws_config),
    ))
    .await;
    let ws = match result {
        Ok(ws) => ws,
        Err(e) => {
            bump(&shared.counters.handshakes_failed);
            log::debug!("handshake with {remote} failed: {e}");
            release(
                &shared,
                &admitted.info,
                Cleanup {
                    lease: leased,
                    subscription: false,
                },
            );
            return;
        }
    };
    let mut cleanup = Cleanup {
        lease: leased,
        subscription: false,
    };
    if let Some(cluster) = &shared.cluster {
        // Subscribe first, then drain: a message sent before the subscription
        // is in the offline stream, one sent after reaches the subscription.
        cluster.local_opened(admitted.info.user_id()).await;
        cleanup.subscription = true;
        Box::pin(replay_offline(&shared, cluster, &admitted.info)).await;
    }
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
    release(&shared, &info, cleanup);
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

/// What a connection holds in the cluster and must give back.
#[derive(Debug, Clone, Copy, Default)]
struct Cleanup {
    /// A cluster-wide lease.
    lease: bool,
    /// A share of this node's subscription to the user's channel.
    subscription: bool,
}

/// Frees the connection's slot in the core and the registry, and what it
/// holds in the cluster.
fn release(shared: &ServerShared, info: &ConnectionInfo, cleanup: Cleanup) {
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
    if let Some(cluster) = &shared.cluster {
        if cleanup.subscription {
            cluster.local_closed(info.user_id());
        }
        if cleanup.lease {
            let (cluster, user, conn) = (
                cluster.clone(),
                info.user_id().to_owned(),
                info.connection_id().to_owned(),
            );
            smol::spawn(async move { cluster.release_lease(&user, &conn).await }).detach();
        }
    }
}

/// Writes one HTTP response on a socket that will not be upgraded.
async fn write_response(mut stream: Stream, response: HttpResponse) -> std::io::Result<()> {
    use smol::io::AsyncWriteExt;
    stream.write_all(&response.encode()).await?;
    stream.flush().await
}

/// Delivers the user's cluster-wide offline messages to this connection, in order.
async fn replay_offline(
    shared: &ServerShared,
    cluster: &crate::cluster::Cluster,
    info: &ConnectionInfo,
) {
    let Ok(envelopes) = cluster.drain_offline(info.user_id()).await else {
        return;
    };
    let slot = &shared.shards.slots[info.shard];
    for env in envelopes {
        if let Some(message) = crate::cluster::message_of(env) {
            let now = shared.clock.now();
            if let Err(e) =
                slot.core
                    .send_to_connection(info.manager, info.connection, message, now)
            {
                log::warn!(
                    "offline message for {} not replayed: {e} (counted in stats)",
                    info.user_id()
                );
            }
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
