//! One task per connection: handshake, then a reader and a writer that never
//! block each other, until the socket or the core ends the connection.

use std::future::Future;
use std::net::{SocketAddr, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use async_tungstenite::tungstenite::http::StatusCode;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WireCloseCode;
use async_tungstenite::tungstenite::protocol::Role;
use async_tungstenite::tungstenite::protocol::{CloseFrame as WireCloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use futures_util::{Sink, Stream as _};
use smol::io::{AsyncRead, AsyncWrite};
use smol::{Async, Timer};
use userlane_core::{CloseCode, Error as CoreError, Inbound, InboundLimit, Transmit};

use crate::admission::{admit, admit_echo, EchoSlot, Refusal};
use crate::auth::JWT_AUTH_PROTOCOL;
use crate::handle::ServerHandle;
use crate::handler::App;
use crate::http::{
    body_length, next_request, read_head, serve_plain, Head, HeadError, HttpResponse, Phase,
    PhaseCell, Plain, Replay,
};
use crate::info::ConnectionInfo;
use crate::signals::{Signals, CLOSING, CORE, KILL, SOCKET, TIMER};
use crate::state::{bump, ServerShared};

type Stream = Replay<Async<TcpStream>>;

/// Most frames fed to the socket before one flush.
const WRITE_BATCH: usize = 64;

/// Serves one accepted socket from handshake to release. `_task` is dropped
/// when the task ends, which lets shutdown know every connection is gone.
pub(crate) async fn serve(
    shared: Arc<ServerShared>,
    app: Arc<App>,
    socket: Async<TcpStream>,
    remote: SocketAddr,
    _task: smol::channel::Sender<()>,
) {
    // The request deadline counts from the accept.
    let deadline = std::time::Instant::now() + shared.config.request_timeout;
    // Boxed: the handshake's state (request head, admission, upgrade, the
    // plain-HTTP path) is freed once the connection is open instead of
    // staying in the task for the connection's whole life.
    let (conn, admission) = match Box::pin(open(&shared, &app, socket, remote, deadline)).await {
        None => return,
        Some(Opened::Echo(ws, slot)) => {
            Box::pin(crate::echo::serve(&shared, *ws)).await;
            drop(slot);
            return;
        }
        Some(Opened::Conn(conn, admission)) => (conn, admission),
    };
    // Shutdown raises KILL on the connections in the registry; one
    // registered after that pass finds the channel already closed.
    let forced = shared.lifecycle.is_killed() || conn.await;
    if forced {
        bump(&shared.counters.forced_closes);
    }
    // Gives back the core slot, the registry entry and the cluster's lease
    // and subscription, before the application hears of the disconnect.
    let info = admission.info.clone();
    drop(admission);
    let handle = ServerHandle {
        shared: shared.clone(),
    };
    if catch_unwind(AssertUnwindSafe(|| {
        app.handler.on_disconnect(&handle, &info)
    }))
    .is_err()
    {
        bump(&shared.counters.handler_panics);
    }
}

/// What an accepted socket became.
// The `Conn` variant is moved into the task's state either way; boxing it
// would add an allocation per connection.
#[allow(clippy::large_enum_variant)]
enum Opened {
    /// A WebSocket connection of a user: its future and its admission
    /// (released when the connection ends).
    Conn(Conn, Admission),
    /// An upgraded echo connection and its share of `max_connections`.
    Echo(Box<WebSocketStream<Stream>>, EchoSlot),
}

/// How a step bounded by the request deadline ended.
enum Bounded<T> {
    Done(T),
    TimedOut,
    Killed,
}

/// Runs `step` until it ends, the request deadline passes, or shutdown's
/// deadline drops every connection.
async fn bounded<T>(
    shared: &ServerShared,
    deadline: std::time::Instant,
    step: impl Future<Output = T>,
) -> Bounded<T> {
    smol::future::or(
        async { Bounded::Done(step.await) },
        smol::future::or(
            async {
                Timer::at(deadline).await;
                Bounded::TimedOut
            },
            async {
                shared.lifecycle.killed().await;
                Bounded::Killed
            },
        ),
    )
    .await
}

/// Reads the request head and answers plain HTTP, or admits and upgrades a
/// WebSocket request, all before `deadline` (the socket is closed when it
/// passes). `None` when the socket was answered or dropped here.
async fn open(
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

/// The request deadline passed: counted, and answered with 408 when the
/// request was still being read (504 when the service was answering) and
/// nothing was written yet; then the socket is closed.
async fn timed_out(
    shared: &ServerShared,
    remote: SocketAddr,
    socket: &mut Async<TcpStream>,
    phase: Phase,
) {
    bump(&shared.counters.requests_timed_out);
    let answer = match phase {
        Phase::Reading => HttpResponse::text(408, "request deadline passed\n"),
        // The service may already have acted on the request (a message
        // queued): say so, so that a client does not retry blindly.
        Phase::Answering => HttpResponse::text(
            504,
            "request deadline passed while answering; the request may have been applied\n",
        ),
        Phase::Written => return,
    };
    shared.refusal_log.info(408, || {
        format!("request from {remote} passed the request deadline; socket closed")
    });
    // Bounded: a peer that does not read must not hold the socket either.
    let bytes = answer.encode();
    let write = smol::io::AsyncWriteExt::write_all(socket, &bytes);
    let _ = smol::future::or(async { write.await.is_ok() }, async {
        Timer::after(Duration::from_millis(100)).await;
        false
    })
    .await;
}

/// Answers the plain HTTP requests of a kept-alive connection, each before
/// its own request deadline (the first one's is `deadline`, counted from
/// the accept; a later one's from its first byte, which must come within
/// `http_idle_timeout`), until one is an upgrade (its head is returned) or
/// the connection closes (`None`).
async fn upgrade_request(
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

/// What the upgrade step produced.
enum Upgraded {
    /// A user's WebSocket, its admission and its wake flags.
    Ws(Box<WebSocketStream<Stream>>, Admission, Arc<Signals>),
    /// An echo WebSocket and its share of `max_connections`.
    Echo(Box<WebSocketStream<Stream>>, EchoSlot),
}

/// An admitted connection's hold on the server: its slot in the core and
/// its registry entry and, in a cluster, its lease and its share of the
/// node's subscription to the user ([`Cleanup`] says which it took). Its
/// `Drop` gives back all of it, wherever the connection ends: the request
/// deadline mid-upgrade, a refused cluster lease, a failed handshake, or
/// the end of a served connection.
struct Admission {
    shared: Arc<ServerShared>,
    info: Arc<ConnectionInfo>,
    cleanup: Cleanup,
}

impl Drop for Admission {
    fn drop(&mut self) {
        release(&self.shared, &self.info, self.cleanup);
    }
}

/// Admits an upgrade request (or refuses it with an HTTP status) and runs
/// the WebSocket handshake.
async fn upgrade(
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

/// In a cluster, takes the connection's cluster-wide lease: a 429 refusal
/// when the user's cap is reached across the cluster. With Redis
/// unreachable the node's own per-user cap (already enforced by the core)
/// decides. What is taken is recorded in `admission`, given back when it
/// drops.
async fn admit_in_cluster(
    shared: &ServerShared,
    admission: &mut Admission,
    remote: SocketAddr,
) -> Result<(), Refusal> {
    let Some(cluster) = &shared.cluster else {
        return Ok(());
    };
    let info = admission.info.clone();
    let cap = shared.config.max_connections_per_user;
    // Given back if the deadline drops this step while Redis may already
    // hold the lease (removing an absent lease is harmless).
    admission.cleanup.lease = true;
    match cluster
        .admit(info.user_id(), info.connection_id(), cap)
        .await
    {
        Ok(true) => cluster.hold_lease(info.user_id(), info.connection_id()),
        Ok(false) => {
            admission.cleanup.lease = false;
            bump(&shared.counters.rejected_429);
            shared.refusal_log.info(429, || {
                format!("refused upgrade from {remote}: 429 cluster-wide limit of {cap} connections for this user")
            });
            return Err(Refusal {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: format!(
                    "too many connections for this user across the cluster (limit {cap})\n"
                ),
            });
        }
        Err(e) => {
            // Documented fallback: the node's own per-user cap. The
            // connection counts cluster-wide once Redis is back (the refresh
            // creates its lease), and its lease is removed when it closes
            // (the script may even have run before the call timed out).
            cluster.hold_lease(info.user_id(), info.connection_id());
            cluster
                .local_admissions
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            log::warn!(
                "cluster admission unavailable ({e}); admitted under the local per-user cap"
            );
        }
    }
    Ok(())
}

/// The WebSocket handshake on a request head parsed once (httparse): the
/// `101` answer with `Sec-WebSocket-Accept` (and the selected subprotocol),
/// then the stream in tungstenite's hands, with no second parse of the
/// request. An invalid upgrade request (`accept` is `None`) is answered 400
/// and counted in `handshakes_failed`, like a socket that fails here.
async fn handshake(
    shared: &ServerShared,
    mut stream: Stream,
    accept: Option<String>,
    protocol: Option<&str>,
    config: WebSocketConfig,
) -> Option<WebSocketStream<Stream>> {
    use smol::io::AsyncWriteExt;
    let Some(accept) = accept else {
        bump(&shared.counters.handshakes_failed);
        let body = "not a valid WebSocket upgrade request\n";
        let _ = write_response(stream, HttpResponse::text(400, body)).await;
        return None;
    };
    let mut answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-accept: {accept}\r\n"
    );
    if let Some(protocol) = protocol {
        answer.push_str(&format!("sec-websocket-protocol: {protocol}\r\n"));
    }
    answer.push_str("\r\n");
    if stream.write_all(answer.as_bytes()).await.is_err() || stream.flush().await.is_err() {
        bump(&shared.counters.handshakes_failed);
        return None;
    }
    Some(WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await)
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
            // Not refreshed from now on; the refresh removes it again should
            // one in flight re-create it after this `ZREM`.
            cluster.forget_lease(info.user_id(), info.connection_id());
            let (cluster, user, conn) = (
                cluster.clone(),
                info.user_id().to_owned(),
                info.connection_id().to_owned(),
            );
            smol::spawn(async move { cluster.release_lease(&user, &conn).await }).detach();
        }
    }
}

/// Answers a refused upgrade with its status and fixed text.
async fn write_refusal(stream: Stream, refusal: Refusal) -> std::io::Result<()> {
    write_response(
        stream,
        HttpResponse::text(refusal.status.as_u16(), refusal.message),
    )
    .await
}

/// Writes one HTTP response on a socket that will not be upgraded.
async fn write_response(mut stream: Stream, response: HttpResponse) -> std::io::Result<()> {
    use smol::io::AsyncWriteExt;
    stream.write_all(&response.encode()).await?;
    stream.flush().await
}

/// Most inbound messages one poll handles before the task yields to others.
const READ_BUDGET: usize = 64;

/// Most bytes of data messages a closing connection reads (and discards)
/// while it waits for the peer's close; past it the reader stops reading and
/// the connection ends when its close frame is flushed or its close grace
/// passes, whichever comes first.
const DISCARD_CAP: usize = 64 * 1024;

/// Most bytes (counted with those discarded while closing) a lingering
/// connection reads and drops; a peer that sends more is left to TCP flow
/// control until the linger period ends.
const LINGER_CAP: usize = 256 * 1024;

/// Least time between two refusal notices to one connection.
const REFUSAL_NOTICE_EVERY: Duration = Duration::from_secs(1);

/// The core's verdict on one inbound data message.
enum Budget {
    /// Within budget: hand it to the handler.
    Process,
    /// Over budget: dropped, and the peer told so.
    Refused(InboundLimit),
    /// The connection is closing: dropped.
    Closing,
    /// The connection is gone from the core.
    Gone,
}

/// Where a lingering connection stands.
enum Linger {
    /// The peer's end of stream, an error, or the linger period passed.
    Done,
    /// Waiting for the socket or the timer (wakers registered).
    Wait,
    /// The read budget of this poll is spent; more may be ready at once.
    Yield,
}

/// What one read did.
enum ReadStep {
    /// A frame was handled; there may be more without waiting.
    Again,
    /// Nothing to read until the socket wakes the task.
    Wait,
    /// The server refused a frame and asked the core to close the connection
    /// (the writer sends the close frame); nothing more is read.
    Parked,
    /// The peer closed or the socket failed.
    Gone,
}

/// One open connection: its reader, its writer, its ping timer and its close
/// deadline, driven by one hand-written future that resolves to whether the
/// socket had to be dropped without finishing (close grace or shutdown
/// deadline passed).
///
/// Each part is polled only when its own waker fired ([`Signals`]): the
/// socket's waker polls the reader (and the writer when it waits for the
/// socket), the core's waker (a message queued, the connection closed or
/// gone) polls the writer, the timers' waker polls the timers. The writer
/// takes one item at a time from the core, and only when tungstenite can
/// accept it at once, so nothing taken
/// out of the core ever waits in a local batch that a forced close would
/// lose: what is not taken stays in the core and is counted as undelivered
/// at release. Within a poll the writer runs before each read, so a reply
/// queued by `on_message` is written before the next read (as a plain echo
/// server does).
struct Conn {
    handle: ServerHandle,
    app: Arc<App>,
    info: Arc<ConnectionInfo>,
    ws: WebSocketStream<Stream>,
    signals: Arc<Signals>,
    /// Raises `SOCKET`: given to every tungstenite call.
    socket_waker: Waker,
    /// Raises `CORE`: given to the shard.
    core_waker: Waker,
    /// Raises `TIMER`: given to the ping timer, the close deadline and the linger timer.
    timer_waker: Waker,
    ping: Timer,
    /// Where the connection is in its life.
    life: Life,
    /// Whether the reader has more to read, waits, or reads no more.
    reader: Reader,
    /// From `Life::Closing` on, the close grace: the flush must end by then
    /// (or the socket is dropped); in `Life::Lingering`, the end of the
    /// linger period.
    close_timer: Option<Box<Timer>>,
    /// The handler's greeting, written before anything from the core.
    greeting: Option<Box<Message>>,
    /// A ping is due.
    ping_due: bool,
    /// Frames fed to tungstenite since the last flush.
    fed: usize,
    /// The core may have something to write.
    take: bool,
    /// The writer waits for the socket (a feed or a flush was pending).
    blocked: bool,
    /// Bytes of data messages discarded since `Life::Closing`; past
    /// [`DISCARD_CAP`] the reader stops reading altogether.
    discarded: usize,
    /// When the peer was last told that a message of its was refused.
    last_refusal_notice: Option<userlane_core::Instant>,
    /// Our close frame was fed to the socket.
    close_sent: bool,
    /// The peer's close frame was read.
    peer_closed: bool,
}

/// A connection's life, in order: each state comes after the ones before
/// it, never back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Life {
    /// Reading, handling and writing.
    Open,
    /// The core has closed the connection: inbound data messages are read
    /// (to see the peer's close) but discarded, never handed on, and the
    /// queue and close frame must be flushed within the close grace.
    Closing,
    /// Our close frame is fed, the peer's close was read, or the
    /// connection is gone from the core: flush, then end.
    Finishing,
    /// Our close frame is flushed and the write side shut down: until the
    /// linger period passes (or the peer's end of stream), inbound bytes
    /// are read and dropped (see [`Conn::start_linger`]).
    Lingering,
}

/// The reader's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// Nothing to read until the socket wakes the task.
    Waiting,
    /// It may have more to read without waiting for the socket.
    Ready,
    /// It refused a frame or read the peer's close, and reads no more.
    Parked,
}

impl Conn {
    fn new(
        shared: &Arc<ServerShared>,
        app: &Arc<App>,
        info: &Arc<ConnectionInfo>,
        ws: WebSocketStream<Stream>,
        signals: Arc<Signals>,
    ) -> Self {
        let greeting = match catch_unwind(AssertUnwindSafe(|| app.handler.greeting(info))) {
            Ok(g) => g.map(Box::new),
            Err(_) => {
                // Like a panic in on_message: counted, and this connection closed with 1011.
                handler_panicked(shared, info, "greeting");
                None
            }
        };
        let cfg = &shared.config;
        Conn {
            handle: ServerHandle {
                shared: shared.clone(),
            },
            app: app.clone(),
            info: info.clone(),
            ws,
            socket_waker: signals.waker(SOCKET),
            core_waker: Waker::from(signals.clone()),
            timer_waker: signals.waker(TIMER),
            signals,
            ping: Timer::interval(cfg.ping_interval),
            life: Life::Open,
            reader: Reader::Waiting,
            close_timer: None,
            greeting,
            ping_due: false,
            fed: 0,
            take: true,
            blocked: false,
            discarded: 0,
            last_refusal_notice: None,
            close_sent: false,
            peer_closed: false,
        }
    }

    /// Polls the ping timer and the close deadline. Returns true once the
    /// close deadline has passed.
    fn poll_timers(&mut self) -> bool {
        let mut cx = Context::from_waker(&self.timer_waker);
        if self.life < Life::Lingering {
            if let Some(grace) = &mut self.close_timer {
                if Pin::new(&mut **grace).poll(&mut cx).is_ready() {
                    return true;
                }
            }
        }
        // Until Pending, so the timer holds the waker for its next period.
        let mut ticked = false;
        while let Poll::Ready(Some(_)) = Pin::new(&mut self.ping).poll_next(&mut cx) {
            self.ping_due = self.life < Life::Finishing;
            ticked = true;
        }
        // The CLOSING signal comes through the shard's bounded lifecycle
        // queue, which drops its oldest events when a sweep closes more
        // connections than it holds; every ping period the connection also
        // asks the core itself, so its close grace starts at the latest then.
        if ticked && self.life == Life::Open {
            let slot = &self.handle.shared.shards.slots[self.info.shard];
            let conn = self.info.connection;
            if !slot.core.read(|f| f.is_open(conn)) {
                self.begin_closing();
            }
        }
        false
    }

    /// The core has closed the connection: from now on inbound data is
    /// discarded, and the flush of what is queued (then the close frame)
    /// must end within the close grace.
    fn begin_closing(&mut self) {
        self.life = self.life.max(Life::Closing);
        if self.close_timer.is_none() && self.life < Life::Lingering {
            let mut grace = Box::new(Timer::after(self.handle.shared.config.close_grace));
            let _ = Pin::new(&mut *grace).poll(&mut Context::from_waker(&self.timer_waker));
            self.close_timer = Some(grace);
        }
    }

    /// A data message read from a closing connection: dropped, counted, and
    /// the reader parked once [`DISCARD_CAP`] bytes have been dropped.
    fn discard(&mut self, bytes: usize) -> ReadStep {
        // Also when the close frame was fed before the core's CLOSING
        // signal arrived: the flush is bounded by the close grace.
        self.begin_closing();
        bump(&self.handle.shared.counters.inbound_discarded);
        self.discarded = self.discarded.saturating_add(bytes);
        if self.discarded > DISCARD_CAP {
            ReadStep::Parked
        } else {
            ReadStep::Again
        }
    }

    /// Whether the peer may still be sending although our close frame is
    /// out: we closed while it was sending (its data was discarded or
    /// refused). A quiet peer (idle, shutdown) is not waited for.
    fn should_linger(&self) -> bool {
        self.close_sent
            && !self.peer_closed
            && (self.discarded > 0 || self.reader == Reader::Parked)
    }

    /// Our close frame is flushed but the peer has not closed: shut down
    /// the write side (the peer reads our close, then the end of stream) and
    /// read and drop what it still sends (at most [`LINGER_CAP`] bytes, then
    /// nothing more is read), for at most one more close grace
    /// (`ServerConfig::close_grace`). Closing
    /// the socket with unread inbound bytes would send a TCP reset, which
    /// can destroy the close frame (1008, 1013, …) before the peer reads it.
    /// Returns false if the socket is already unusable.
    fn start_linger(&mut self) -> bool {
        let mut sock = Context::from_waker(&self.socket_waker);
        match Pin::new(self.ws.get_mut()).poll_close(&mut sock) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) | Poll::Pending => return false,
        }
        // The close frame is out: the rest is the peer's to finish, within
        // one more close grace (not a forced close if it does not).
        let mut timer = Box::new(Timer::after(self.handle.shared.config.close_grace));
        let _ = Pin::new(&mut *timer).poll(&mut Context::from_waker(&self.timer_waker));
        self.close_timer = Some(timer);
        self.life = Life::Lingering;
        true
    }

    /// Reads and drops inbound bytes until the peer's end of stream, an
    /// error, or the end of the linger period.
    fn poll_linger(&mut self) -> Linger {
        if let Some(timer) = &mut self.close_timer {
            let mut cx = Context::from_waker(&self.timer_waker);
            if Pin::new(&mut **timer).poll(&mut cx).is_ready() {
                return Linger::Done;
            }
        }
        let mut sock = Context::from_waker(&self.socket_waker);
        let mut buf = [0u8; 2048];
        for _ in 0..READ_BUDGET {
            if self.discarded > LINGER_CAP {
                // A peer still flooding: read no more (TCP flow control
                // stops it at no cost to us) and wait for the timer.
                return Linger::Wait;
            }
            match Pin::new(self.ws.get_mut()).poll_read(&mut sock, &mut buf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Linger::Done,
                Poll::Ready(Ok(n)) => self.discarded = self.discarded.saturating_add(n),
                Poll::Pending => return Linger::Wait,
            }
        }
        Linger::Yield
    }

    /// Tells the peer that an inbound message was refused
    /// ([`Handler::refusal`](crate::Handler::refusal)), at most once per
    /// [`REFUSAL_NOTICE_EVERY`]: a client that floods a connection it does
    /// not read must not fill its own queue with our answers.
    fn notify_refusal(&mut self, limit: InboundLimit) {
        let shared = &*self.handle.shared;
        let now = shared.clock.now();
        if self
            .last_refusal_notice
            .is_some_and(|t| t.saturating_add_millis(REFUSAL_NOTICE_EVERY.as_millis() as u64) > now)
        {
            return;
        }
        self.last_refusal_notice = Some(now);
        let info = &*self.info;
        match catch_unwind(AssertUnwindSafe(|| self.app.handler.refusal(info, limit))) {
            // Best effort: a full queue is the slow-consumer rule's business.
            Ok(Some(frame)) => {
                let _ = self.handle.send_to_connection(info, frame);
            }
            Ok(None) => {}
            Err(_) => bump(&shared.counters.handler_panics),
        }
    }

    /// Asks the core whether an inbound data message of `bytes` fits the
    /// connection's and the user's inbound budgets.
    fn check_budget(&mut self, bytes: usize) -> Budget {
        let shared = &*self.handle.shared;
        let slot = &shared.shards.slots[self.info.shard];
        match slot
            .core
            .handle_inbound(self.info.connection, bytes, shared.clock.now())
        {
            Ok(Inbound::Accepted) => Budget::Process,
            Ok(Inbound::Refused(limit)) => Budget::Refused(limit),
            // The core closed the connection with 1008; its close frame goes
            // out after what is queued.
            Ok(Inbound::Closed(_)) => Budget::Closing,
            Err(CoreError::ConnectionClosing(_)) => Budget::Closing,
            Err(_) => Budget::Gone,
        }
    }

    /// Whether the writer has work after a wake with `flags`.
    fn writer_due(&self, flags: u8) -> bool {
        if self.blocked {
            flags & SOCKET != 0
        } else {
            self.take
                || self.ping_due
                || self.greeting.is_some()
                || self.fed > 0
                || self.life >= Life::Finishing
        }
    }

    /// Feeds what is due (the greeting, a ping, then items from the core,
    /// up to [`WRITE_BATCH`] frames per flush) and flushes. `Ready` when the
    /// writer is done: close frame sent, connection released, or socket error.
    fn poll_writer(&mut self) -> Poll<()> {
        let mut sock = Context::from_waker(&self.socket_waker);
        let mut core = Context::from_waker(&self.core_waker);
        let slot = &self.handle.shared.shards.slots[self.info.shard];
        let conn = self.info.connection;
        loop {
            if self.life >= Life::Finishing {
                if Pin::new(&mut self.ws).poll_flush(&mut sock).is_pending() {
                    self.blocked = true;
                    return Poll::Pending;
                }
                return Poll::Ready(());
            }
            let local = self.greeting.is_some() || self.ping_due;
            if local || (self.take && self.fed < WRITE_BATCH) {
                // Take nothing before tungstenite can accept it at once.
                match Pin::new(&mut self.ws).poll_ready(&mut sock) {
                    Poll::Pending => {
                        self.blocked = true;
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Ready(Ok(())) => self.blocked = false,
                }
                let frame = if let Some(greeting) = self.greeting.take() {
                    *greeting
                } else if self.ping_due {
                    self.ping_due = false;
                    Message::Ping(Default::default())
                } else {
                    match slot.core.poll_transmit_more(conn, &mut core) {
                        Poll::Ready(None) => {
                            self.life = self.life.max(Life::Finishing);
                            continue;
                        }
                        Poll::Ready(Some((Transmit::Message(m), more))) => {
                            self.take = more;
                            m
                        }
                        Poll::Ready(Some((Transmit::Close(frame), _))) => {
                            let reason = slot
                                .registry()
                                .get(&conn)
                                .and_then(|e| e.reason.clone())
                                .unwrap_or_else(|| frame.reason.as_str().to_owned());
                            let wire = WireCloseFrame {
                                code: WireCloseCode::from(frame.code.as_u16()),
                                reason: reason.into(),
                            };
                            let _ = Pin::new(&mut self.ws).start_send(Message::Close(Some(wire)));
                            self.close_sent = true;
                            self.life = self.life.max(Life::Finishing);
                            continue;
                        }
                        Poll::Pending => {
                            self.take = false;
                            continue;
                        }
                    }
                };
                if Pin::new(&mut self.ws).start_send(frame).is_err() {
                    return Poll::Ready(());
                }
                self.fed += 1;
                continue;
            }
            if self.fed > 0 {
                match Pin::new(&mut self.ws).poll_flush(&mut sock) {
                    Poll::Pending => {
                        self.blocked = true;
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Ready(Ok(())) => {
                        self.blocked = false;
                        self.fed = 0;
                        continue;
                    }
                }
            }
            return Poll::Pending;
        }
    }

    /// Reads and handles one frame.
    fn read_one(&mut self) -> ReadStep {
        let mut sock = Context::from_waker(&self.socket_waker);
        let item = match Pin::new(&mut self.ws).poll_next(&mut sock) {
            Poll::Pending => return ReadStep::Wait,
            Poll::Ready(None) => return ReadStep::Gone,
            Poll::Ready(Some(item)) => item,
        };
        match item {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => self.on_data(m),
            // Control frames count against the inbound budget too (a client
            // could otherwise send pings at line rate, each one answered);
            // a refused one is not answered with a notice, and strikes close
            // the connection like any other flood.
            Ok(m @ (Message::Ping(_) | Message::Pong(_))) => {
                if self.life >= Life::Closing {
                    self.begin_closing();
                    return ReadStep::Again;
                }
                match self.check_budget(m.len()) {
                    Budget::Process | Budget::Refused(_) => ReadStep::Again,
                    Budget::Closing => {
                        self.begin_closing();
                        ReadStep::Again
                    }
                    Budget::Gone => ReadStep::Gone,
                }
            }
            // The peer closed: tungstenite queued the close reply and accepts
            // no more frames, so the writer takes nothing more from the core
            // (what is queued there is counted undelivered at release) and
            // only flushes the reply.
            Ok(Message::Close(_)) => {
                self.peer_closed = true;
                self.life = self.life.max(Life::Finishing);
                ReadStep::Parked
            }
            Ok(Message::Frame(_)) => ReadStep::Again,
            Err(e) => self.on_read_error(e),
        }
    }

    /// A text or binary message: dropped while closing, checked against the
    /// inbound budget, then handed to the handler (a panic there closes the
    /// connection with 1011).
    fn on_data(&mut self, m: Message) -> ReadStep {
        if self.life >= Life::Closing {
            return self.discard(m.len());
        }
        // An accepted message is also the connection's inbound activity (the
        // core notes it in the same call).
        match self.check_budget(m.len()) {
            Budget::Process => {}
            Budget::Refused(limit) => {
                drop(m);
                self.notify_refusal(limit);
                return ReadStep::Again;
            }
            Budget::Closing => {
                // Already counted by the core (refused, or refused on a
                // closing connection); not counted again here.
                self.begin_closing();
                self.discarded = self.discarded.saturating_add(m.len());
                return ReadStep::Again;
            }
            Budget::Gone => return ReadStep::Gone,
        }
        let (handle, info) = (&self.handle, &*self.info);
        let handler = &self.app.handler;
        let outcome = catch_unwind(AssertUnwindSafe(|| handler.on_message(handle, info, m)));
        if outcome.is_err() {
            handler_panicked(&self.handle.shared, info, "on_message");
            return ReadStep::Parked;
        }
        ReadStep::Again
    }

    /// The reader's verdict on a frame tungstenite refused: the connection
    /// is closed through the core with 1009, 1007 or 1002 (counted), or it
    /// is gone.
    fn on_read_error(&mut self, e: WsError) -> ReadStep {
        let shared = &*self.handle.shared;
        let info = &*self.info;
        let (code, reason, counter) = match e {
            WsError::Capacity(CapacityError::MessageTooLong { .. }) => (
                CloseCode::MESSAGE_TOO_BIG,
                "message too big",
                &shared.counters.closed_message_too_big,
            ),
            WsError::Utf8(_) => (
                CloseCode::INVALID_PAYLOAD,
                "invalid UTF-8",
                &shared.counters.closed_invalid_utf8,
            ),
            // The peer vanished without a close frame: gone, not a protocol error.
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                return ReadStep::Gone
            }
            WsError::Protocol(e) => {
                log::debug!("protocol error on {}: {e}", info.connection_id());
                (
                    CloseCode::PROTOCOL_ERROR,
                    "protocol error",
                    &shared.counters.closed_protocol_error,
                )
            }
            _ => return ReadStep::Gone,
        };
        if close_with(shared, info, code, reason) {
            bump(counter);
        }
        ReadStep::Parked
    }
}

impl Future for Conn {
    /// Whether the socket had to be dropped without finishing.
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = &mut *self;
        this.signals.begin_poll(cx.waker());
        let mut reads = 0;
        loop {
            let flags = this.signals.take();
            if flags & KILL != 0 {
                return Poll::Ready(true);
            }
            if flags & CLOSING != 0 {
                this.begin_closing();
            }
            if flags & CORE != 0 {
                this.take = true;
            }
            if flags & (TIMER | CLOSING) != 0 && this.poll_timers() {
                return Poll::Ready(true);
            }
            if this.life == Life::Lingering {
                match this.poll_linger() {
                    Linger::Done => return Poll::Ready(false),
                    Linger::Yield => {
                        this.signals.yield_with(SOCKET, cx.waker());
                        return Poll::Pending;
                    }
                    Linger::Wait => {
                        if this.signals.try_end_poll() {
                            return Poll::Pending;
                        }
                        continue;
                    }
                }
            }
            if this.writer_due(flags) && this.poll_writer().is_ready() {
                if this.should_linger() && this.start_linger() {
                    continue;
                }
                return Poll::Ready(false);
            }
            if this.reader == Reader::Ready
                || (this.reader == Reader::Waiting && flags & SOCKET != 0)
            {
                if reads == READ_BUDGET {
                    this.signals.yield_with(SOCKET, cx.waker());
                    return Poll::Pending;
                }
                reads += 1;
                match this.read_one() {
                    ReadStep::Again => this.reader = Reader::Ready,
                    ReadStep::Wait => this.reader = Reader::Waiting,
                    ReadStep::Parked => {
                        this.reader = Reader::Parked;
                        // The writer has work now (the close the reader asked
                        // for, or the reply to the peer's close).
                        continue;
                    }
                    ReadStep::Gone => return Poll::Ready(false),
                }
            }
            if this.reader != Reader::Ready && this.signals.try_end_poll() {
                return Poll::Pending;
            }
        }
    }
}

/// The handler panicked in `during` (`greeting`, `on_message`): counted,
/// logged, and the connection closed with 1011 (counted as such when this
/// call closed it).
fn handler_panicked(shared: &ServerShared, info: &ConnectionInfo, during: &str) {
    bump(&shared.counters.handler_panics);
    log::error!(
        "handler panicked in {during} on connection {}; closing it with 1011",
        info.connection_id()
    );
    if close_with(shared, info, CloseCode::INTERNAL_ERROR, "internal error") {
        bump(&shared.counters.closed_handler_panic);
    }
}

/// Asks the core to close the connection with `code` after what is queued.
/// Returns whether it closed it (false if the connection was already closing).
fn close_with(shared: &ServerShared, info: &ConnectionInfo, code: CloseCode, reason: &str) -> bool {
    let slot = &shared.shards.slots[info.shard];
    let now = shared.clock.now();
    slot.core
        .with(|f| slot.close_connection(f, info.manager, info.connection, code, reason, now))
}
