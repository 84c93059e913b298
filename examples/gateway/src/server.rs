//! One connection task's work: accept, the HTTP upgrade with token and
//! admission, then the WebSocket reader and writer over the socket's two
//! halves until the connection ends.

use core::fmt::Write as _;
use core::sync::atomic::{AtomicU32, Ordering};

use edge_http::io::server::Connection;
use edge_ws::{FrameHeader, FrameType};
use embassy_futures::select::{select, Either};
use embassy_net::tcp::{TcpReader, TcpSocket, TcpWriter};
use embassy_net::Stack;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_sync::mutex::Mutex;
use embassy_time::{with_timeout, Duration, Instant, Timer};
use userlane_core::{Transmit, UserContext};

use crate::lanes::{self, Lane, Refusal, Verdict};
use crate::protocol::{parse_client_frame, render, ClientFrame, ErrorCode, Frame, Identity};
use crate::token::{self, Scratch};
use crate::{Messages, Outbound, Shard, CLOCK, MAX_MESSAGE};

/// Receive buffer of each socket, in bytes.
pub const RX_BUF: usize = 1536;
/// Transmit buffer of each socket, in bytes.
pub const TX_BUF: usize = 1536;
/// The request head, then each inbound frame's payload.
pub const IN_BUF: usize = 1280;
/// One rendered outbound frame.
pub const OUT_BUF: usize = 1280;
/// Request headers parsed.
const HEADERS: usize = 16;

/// How the gateway runs.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The TCP port `/ws` is served on.
    pub port: u16,
    /// The HS256 secret tokens are signed with.
    pub secret: &'static [u8],
    /// Time from the accept to the end of the upgrade response.
    pub handshake_timeout: Duration,
    /// The gateway pings every connection this often (its pong is activity).
    pub ping_interval: Duration,
    /// Longest a frame may take to enter the socket: a peer that does not
    /// read for that long is dropped, so it cannot hold a task.
    pub write_timeout: Duration,
    /// After the gateway's close frame, how long it waits for the peer's.
    pub close_grace: Duration,
}

static NEXT_CONNECTION_ID: AtomicU32 = AtomicU32::new(1);

/// Serves connections on `settings.port` forever, one at a time.
pub async fn serve(
    stack: Stack<'static>,
    shard: &'static Shard,
    messages: &'static Messages,
    settings: &'static Settings,
) -> ! {
    let mut rx = [0u8; RX_BUF];
    let mut tx = [0u8; TX_BUF];
    let mut buf = [0u8; IN_BUF];
    let mut out = [0u8; OUT_BUF];
    loop {
        let mut socket = TcpSocket::new(stack, &mut rx, &mut tx);
        if socket.accept(settings.port).await.is_ok() {
            let upgraded = with_timeout(
                settings.handshake_timeout,
                upgrade(&mut socket, shard, settings, &mut buf),
            )
            .await;
            if let Ok(Some((lane, id, user))) = upgraded {
                let me = Identity {
                    connection_id: id,
                    user_id: &user,
                    max_message_size: MAX_MESSAGE,
                    heartbeat_interval_secs: settings.ping_interval.as_secs(),
                };
                lane.send_to_self(Frame::Welcome);
                run(
                    &mut socket,
                    &lane,
                    &me,
                    messages,
                    settings,
                    &mut buf,
                    &mut out,
                )
                .await;
                drop(lane);
            }
        }
        socket.close();
        let _ = with_timeout(settings.close_grace, socket.flush()).await;
        socket.abort();
        let _ = with_timeout(Duration::from_millis(100), socket.flush()).await;
    }
}

/// The user's id, as the writer needs it.
type UserId = heapless::String<{ userlane_core::MAX_ID_LEN }>;

/// Reads the request head and answers it: 101 with an admitted lane, or an
/// HTTP refusal (`None`).
async fn upgrade(
    socket: &mut TcpSocket<'_>,
    shard: &'static Shard,
    settings: &Settings,
    buf: &mut [u8],
) -> Option<(Lane, u32, UserId)> {
    let mut conn = Connection::<'_, _, HEADERS>::new(buf, socket).await.ok()?;
    let id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
    let admitted = {
        let head = conn.headers().ok()?;
        let (path, query) = head.path.split_once('?').unwrap_or((head.path, ""));
        if path != "/ws" {
            Err((404, "not found"))
        } else if !head.is_ws_upgrade_request() {
            Err((400, "WebSocket upgrade required"))
        } else {
            let bearer = head
                .headers
                .get("Authorization")
                .and_then(|v| v.strip_prefix("Bearer "));
            let from_query = query.split('&').find_map(|kv| kv.strip_prefix("token="));
            match bearer.or(from_query) {
                None => Err((401, "missing token")),
                Some(t) => admit(shard, settings, t, id),
            }
        }
    };
    match admitted {
        Ok((lane, user)) => {
            let mut key = [0u8; edge_http::ws::MAX_BASE64_KEY_RESPONSE_LEN];
            let answered = conn.initiate_ws_upgrade_response(&mut key).await.is_ok()
                && conn.complete().await.is_ok();
            // A lane dropped here (or with this future, at the deadline)
            // releases its place in the core.
            answered.then_some((lane, id, user))
        }
        Err((status, text)) => {
            let mut len = heapless::String::<8>::new();
            let _ = write!(len, "{}", text.len());
            let headers = [
                ("Content-Type", "text/plain"),
                ("Content-Length", len.as_str()),
                ("Connection", "close"),
            ];
            if conn.initiate_response(status, None, &headers).await.is_ok() {
                use embedded_io_async::Write as _;
                let _ = conn.write_all(text.as_bytes()).await;
                let _ = conn.complete().await;
            }
            None
        }
    }
}

/// Verifies the token and admits its user: the lane, or a status and a
/// fixed text.
fn admit(
    shard: &'static Shard,
    settings: &Settings,
    token: &str,
    id: u32,
) -> Result<(Lane, UserId), (u16, &'static str)> {
    let Some(unix_ms) = CLOCK.unix_ms() else {
        return Err((503, "clock not synchronised yet"));
    };
    let mut scratch = Scratch::new();
    let claims = token::verify(token, settings.secret, unix_ms / 1000, &mut scratch)
        .map_err(|e| (401, e.as_str()))?;
    let mut conn_id = heapless::String::<12>::new();
    let _ = write!(conn_id, "{id}");
    let ctx = UserContext::new(
        claims.user_id,
        claims.thread_id.unwrap_or("gateway"),
        claims.run_id.unwrap_or("gateway"),
        "gateway",
    )
    .and_then(|c| c.with_connection_id(&conn_id))
    .map_err(|_| (401, "invalid token identity"))?;
    let lane = lanes::admit(shard, &ctx).map_err(|r| match r {
        Refusal::PerUserCap => (429, "too many connections for this user"),
        Refusal::Full => (503, "gateway full"),
        Refusal::BadIdentity => (401, "invalid token identity"),
    })?;
    let mut user = UserId::new();
    let _ = user.push_str(ctx.user_id());
    Ok((lane, user))
}

/// How the reader stopped.
enum ReadEnd {
    /// The peer sent a close frame.
    PeerClosed,
    /// The socket failed or ended.
    Gone,
}

/// How the writer stopped.
enum WriteEnd {
    /// The core's close frame is written.
    Closed,
    /// The connection is gone from the core, or the socket failed.
    Gone,
}

type Writer<'a> = Mutex<NoopRawMutex, TcpWriter<'a>>;

/// The open WebSocket: reader and writer until one ends, then the closing
/// handshake.
async fn run(
    socket: &mut TcpSocket<'_>,
    lane: &Lane,
    me: &Identity<'_>,
    messages: &'static Messages,
    settings: &Settings,
    buf: &mut [u8],
    out: &mut [u8],
) {
    let (mut reader, writer) = socket.split();
    let writer = Mutex::new(writer);
    let end = select(
        read_frames(
            &mut reader,
            lane,
            &writer,
            messages,
            me.connection_id,
            settings,
            buf,
        ),
        write_frames(&writer, lane, me, settings, out),
    )
    .await;
    match end {
        Either::First(ReadEnd::PeerClosed) => {
            // Answer the peer's close; what was still queued is dropped
            // (and counted by the core when the lane closes).
            let _ = send(&writer, FrameType::Close, &1000u16.to_be_bytes(), settings).await;
        }
        Either::Second(WriteEnd::Closed) => {
            // Wait for the peer's close frame (or its end of stream).
            let _ = with_timeout(settings.close_grace, async {
                loop {
                    match FrameHeader::recv(&mut reader).await {
                        Ok(h) if h.frame_type == FrameType::Close => break,
                        Ok(h) => {
                            if skip(&mut reader, h.payload_len, buf).await.is_err() {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
            })
            .await;
        }
        Either::First(ReadEnd::Gone) | Either::Second(WriteEnd::Gone) => {}
    }
}

/// Reads and discards `len` payload bytes.
async fn skip(reader: &mut TcpReader<'_>, mut len: u64, buf: &mut [u8]) -> Result<(), ()> {
    while len > 0 {
        let n = buf.len().min(usize::try_from(len).unwrap_or(usize::MAX));
        match embedded_io_async::Read::read(reader, &mut buf[..n]).await {
            Ok(0) | Err(_) => return Err(()),
            Ok(read) => len -= read as u64,
        }
    }
    Ok(())
}

/// The reader: every frame through the inbound budget first, then the
/// protocol. After the core has closed the connection, frames are read and
/// dropped until the writer has sent the close frame.
async fn read_frames(
    reader: &mut TcpReader<'_>,
    lane: &Lane,
    writer: &Writer<'_>,
    messages: &'static Messages,
    my_id: u32,
    settings: &Settings,
    buf: &mut [u8],
) -> ReadEnd {
    let mut closing = false;
    let mut last_notice: Option<Instant> = None;
    loop {
        let Ok(header) = FrameHeader::recv(&mut *reader).await else {
            return ReadEnd::Gone;
        };
        if header.payload_len > MAX_MESSAGE as u64 {
            if !closing {
                lane.close(1009);
                closing = true;
            }
            if skip(reader, header.payload_len, buf).await.is_err() {
                return ReadEnd::Gone;
            }
            continue;
        }
        let Ok(payload) = header.recv_payload(&mut *reader, buf).await else {
            return ReadEnd::Gone;
        };
        if header.frame_type == FrameType::Close {
            return ReadEnd::PeerClosed;
        }
        if closing {
            continue;
        }
        match lane.inbound(payload.len()) {
            Verdict::Accepted => {}
            Verdict::Refused => {
                // Told at most once a second, so a flood cannot fill its own
                // queue with answers.
                let due = last_notice.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
                if due && matches!(header.frame_type, FrameType::Text(_) | FrameType::Binary(_)) {
                    last_notice = Some(Instant::now());
                    lane.send_to_self(Frame::Error(ErrorCode::RateLimited));
                }
                continue;
            }
            Verdict::Closing => {
                closing = true;
                continue;
            }
        }
        match header.frame_type {
            FrameType::Ping => {
                if send(writer, FrameType::Pong, payload, settings)
                    .await
                    .is_err()
                {
                    return ReadEnd::Gone;
                }
            }
            FrameType::Pong => {}
            FrameType::Text(false) => match core::str::from_utf8(payload) {
                Ok(text) => on_text(lane, messages, my_id, text),
                Err(_) => {
                    lane.close(1007);
                    closing = true;
                }
            },
            FrameType::Binary(false) => {
                lane.send_to_self(Frame::Error(ErrorCode::UnsupportedFrame));
            }
            // Fragmented messages are not supported by this gateway.
            _ => {
                lane.close(1003);
                closing = true;
            }
        }
    }
}

/// A text frame within the budget: the protocol.
fn on_text(lane: &Lane, messages: &'static Messages, my_id: u32, text: &str) {
    let answer = match parse_client_frame(text) {
        Ok(ClientFrame::UserMessage(t)) => match messages.store(my_id, t) {
            Some(m) => {
                lane.send_to_user(Frame::UserMessage(m));
                return;
            }
            None => Frame::Error(ErrorCode::Busy),
        },
        Ok(ClientFrame::Ping(id)) => Frame::Pong(id),
        Err(code) => Frame::Error(code),
    };
    lane.send_to_self(answer);
}

/// The writer: the connection's queue in order, pings on a fixed period,
/// and the core's close frame last.
async fn write_frames(
    writer: &Writer<'_>,
    lane: &Lane,
    me: &Identity<'_>,
    settings: &Settings,
    out: &mut [u8],
) -> WriteEnd {
    let mut next_ping = Instant::now() + settings.ping_interval;
    loop {
        let sent = match select(lane.next(), Timer::at(next_ping)).await {
            Either::Second(()) => {
                next_ping += settings.ping_interval;
                send(writer, FrameType::Ping, &[], settings).await
            }
            Either::First(None) => return WriteEnd::Gone,
            Either::First(Some(Transmit::Message(frame))) => match render_frame(out, &frame, me) {
                Some(n) => {
                    drop(frame);
                    send(writer, FrameType::Text(false), &out[..n], settings).await
                }
                None => {
                    lane.close(1011);
                    Ok(())
                }
            },
            Either::First(Some(Transmit::Close(close))) => {
                let mut payload = [0u8; 125];
                let code = close.code.as_u16().to_be_bytes();
                let reason = close.reason.as_str().as_bytes();
                let n = 2 + reason.len().min(123);
                payload[..2].copy_from_slice(&code);
                payload[2..n].copy_from_slice(&reason[..n - 2]);
                return match send(writer, FrameType::Close, &payload[..n], settings).await {
                    Ok(()) => WriteEnd::Closed,
                    Err(()) => WriteEnd::Gone,
                };
            }
        };
        if sent.is_err() {
            return WriteEnd::Gone;
        }
    }
}

fn render_frame(out: &mut [u8], frame: &Outbound, me: &Identity<'_>) -> Option<usize> {
    let unix_ms = CLOCK.unix_ms().unwrap_or(0);
    render(out, frame, me, unix_ms, |m, f| {
        m.read(|from, text| f(from, text))
    })
}

/// Writes one unmasked frame within the write timeout.
async fn send(
    writer: &Writer<'_>,
    kind: FrameType,
    payload: &[u8],
    settings: &Settings,
) -> Result<(), ()> {
    let mut w = writer.lock().await;
    match with_timeout(
        settings.write_timeout,
        edge_ws::io::send(&mut *w, kind, None, payload),
    )
    .await
    {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}
