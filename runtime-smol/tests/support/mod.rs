//! Shared helpers for the end-to-end tests: a server on 127.0.0.1:0 in its
//! own thread, JWT minting, async-tungstenite clients, a raw-TCP WebSocket
//! client for peers that never answer, and a configurable test handler.
//!
//! Every await here is bounded by a timeout, so a broken server fails a test
//! instead of hanging the suite.
#![allow(dead_code)]

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::handshake::client::{Request, Response};
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::{self, Message};
use async_tungstenite::WebSocketStream;
use futures_util::StreamExt;
use smol::Async;
use userlane_smol::{
    ConnectionInfo, Environment, Handler, Server, ServerConfig, ServerHandle, ServerStats,
};

pub const SECRET: &[u8] = b"end-to-end-test-secret-0123456789";

pub type Client = WebSocketStream<Async<TcpStream>>;

/// The longest any single receive waits before a test fails.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// A running server; shut down (with a short deadline) when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// A snapshot of the server's counters.
    pub fn stats(&self) -> ServerStats {
        self.handle.stats()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        smol::block_on(handle.shutdown(Duration::from_millis(200)));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Test defaults: one shard, a secret, modest limits.
pub fn config(env: Environment) -> ServerConfig {
    let mut c = ServerConfig::new(env);
    c.jwt_secret = Some(SECRET.to_vec());
    c.shards = 1;
    c.max_users = 1_000;
    c.max_connections = 1_000;
    c
}

pub fn start(config: ServerConfig) -> TestServer {
    start_with(config, userlane_smol::IgnoreInbound)
}

pub fn start_with(config: ServerConfig, handler: impl Handler) -> TestServer {
    let server = Server::builder(config)
        .handler(handler)
        .bind("127.0.0.1:0".parse().unwrap())
        .expect("server starts");
    let addr = server.local_addr();
    let handle = server.handle();
    let thread = std::thread::spawn(move || smol::block_on(server.run()));
    TestServer {
        addr,
        handle,
        thread: Some(thread),
    }
}

/// A server whose plain-HTTP requests go to `http`.
pub fn start_with_http(config: ServerConfig, http: impl userlane_smol::HttpService) -> TestServer {
    let server = Server::builder(config)
        .http(http)
        .bind("127.0.0.1:0".parse().unwrap())
        .expect("server starts");
    let addr = server.local_addr();
    let handle = server.handle();
    let thread = std::thread::spawn(move || smol::block_on(server.run()));
    TestServer {
        addr,
        handle,
        thread: Some(thread),
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims of a test token; `None` fields are left out.
#[derive(serde::Serialize, Default)]
pub struct Claims<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<&'a str>,
}

/// An HS256 token with `claims`, signed with `secret`.
pub fn sign(claims: &Claims<'_>, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// A valid-looking token for `sub` that expires `valid_for_secs` from now
/// (negative: already expired).
pub fn jwt(sub: &str, valid_for_secs: i64) -> String {
    sign(
        &Claims {
            sub: Some(sub),
            exp: Some(unix_now() + valid_for_secs),
            ..Claims::default()
        },
        SECRET,
    )
}

/// `ws://addr{path}` as a client request.
pub fn request(addr: SocketAddr, path: &str) -> Request {
    format!("ws://{addr}{path}").into_client_request().unwrap()
}

/// Adds a header to a client request.
pub fn with_header(mut req: Request, name: &'static str, value: &str) -> Request {
    req.headers_mut()
        .insert(name, HeaderValue::from_str(value).unwrap());
    req
}

/// Client buffers sized like the server's: tungstenite's 128 KiB default
/// read buffer makes every connect allocate and zero 128 KiB, which
/// dominates connection churn in debug builds.
pub fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(8 * 1024)
}

/// Performs the upgrade `req` over a fresh TCP connection (bounded).
pub async fn connect_request(
    addr: SocketAddr,
    req: Request,
) -> Result<(Client, Response), tungstenite::Error> {
    let fut = async {
        let stream = Async::<TcpStream>::connect(addr).await?;
        async_tungstenite::client_async_with_config(req, stream, Some(client_config())).await
    };
    within(RECV_TIMEOUT, fut)
        .await
        .unwrap_or_else(|| panic!("upgrade to {addr} timed out"))
}

/// Connects to `path` with optional bearer token; Err carries the HTTP status on refusal.
pub async fn connect_raw(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> Result<(Client, Response), tungstenite::Error> {
    let mut req = request(addr, path);
    if let Some(t) = token {
        req = with_header(req, "authorization", &format!("Bearer {t}"));
    }
    connect_request(addr, req).await
}

pub async fn connect(addr: SocketAddr, user: &str) -> Client {
    connect_raw(addr, "/ws", Some(&jwt(user, 300)))
        .await
        .unwrap_or_else(|e| panic!("{user} cannot connect: {e}"))
        .0
}

/// `n` connections of `user`.
pub async fn connect_tabs(addr: SocketAddr, user: &str, n: usize) -> Vec<Client> {
    let mut tabs = Vec::with_capacity(n);
    for _ in 0..n {
        tabs.push(connect(addr, user).await);
    }
    tabs
}

/// The HTTP status of a refused upgrade.
pub async fn refused_status(addr: SocketAddr, path: &str, token: Option<&str>) -> u16 {
    let mut req = request(addr, path);
    if let Some(t) = token {
        req = with_header(req, "authorization", &format!("Bearer {t}"));
    }
    refused_request(addr, req).await
}

/// The HTTP status of a refused upgrade request.
pub async fn refused_request(addr: SocketAddr, req: Request) -> u16 {
    match connect_request(addr, req).await {
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Ok(_) => panic!("upgrade unexpectedly accepted"),
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// `fut`, or `None` once `d` has passed.
pub async fn within<T>(d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    smol::future::or(async { Some(fut.await) }, async {
        smol::Timer::after(d).await;
        None
    })
    .await
}

/// What a client read next (pings and pongs skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recv {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame: code (1005 when it carried none) and reason.
    Close(u16, String),
    /// The stream ended or failed without a close frame.
    Ended(String),
    TimedOut,
}

/// The next message within `d`.
pub async fn recv_within(client: &mut Client, d: Duration) -> Recv {
    let fut = async {
        loop {
            return match client.next().await {
                Some(Ok(Message::Text(t))) => Recv::Text(t.to_string()),
                Some(Ok(Message::Binary(b))) => Recv::Binary(b.to_vec()),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(Some(f)))) => {
                    Recv::Close(f.code.into(), f.reason.to_string())
                }
                Some(Ok(Message::Close(None))) => Recv::Close(1005, String::new()),
                Some(Err(e)) => Recv::Ended(e.to_string()),
                None => Recv::Ended("stream ended".into()),
            };
        }
    };
    within(d, fut).await.unwrap_or(Recv::TimedOut)
}

/// The next message within [`RECV_TIMEOUT`].
pub async fn recv(client: &mut Client) -> Recv {
    recv_within(client, RECV_TIMEOUT).await
}

/// Next text frame (pings/pongs skipped), with a timeout.
pub async fn next_text(client: &mut Client) -> Option<String> {
    match recv(client).await {
        Recv::Text(t) => Some(t),
        _ => None,
    }
}

/// The next text frame; panics (naming `what`) on anything else.
pub async fn expect_text(client: &mut Client, what: &str) -> String {
    match recv(client).await {
        Recv::Text(t) => t,
        other => panic!("{what}: expected a text message, got {other:?}"),
    }
}

/// Reads until the server closes; returns code and reason (None if the
/// socket just ended or nothing came within 10 s). Data messages before the
/// close are skipped.
pub async fn close_frame(client: &mut Client) -> Option<(u16, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match recv_within(client, left).await {
            Recv::Close(code, reason) => return Some((code, reason)),
            Recv::Text(_) | Recv::Binary(_) => continue,
            Recv::Ended(_) | Recv::TimedOut => return None,
        }
    }
}

/// Reads until the server closes; returns the close code.
pub async fn close_code(client: &mut Client) -> Option<u16> {
    close_frame(client).await.map(|(code, _)| code)
}

/// Asserts that no data message (and no close) arrives within `d`.
pub async fn assert_silent(client: &mut Client, d: Duration, what: &str) {
    match recv_within(client, d).await {
        Recv::TimedOut => {}
        other => panic!("{what}: expected nothing, got {other:?}"),
    }
}

pub async fn send_text(client: &mut Client, text: &str) {
    within(RECV_TIMEOUT, client.send(Message::text(text.to_owned())))
        .await
        .expect("send timed out")
        .unwrap();
}

/// Polls `cond` every 5 ms for up to `d`; whether it became true.
pub async fn eventually(d: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + d;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        smol::Timer::after(Duration::from_millis(5)).await;
    }
}

/// Blocking [`eventually`], for code outside an executor.
pub fn eventually_blocking(d: Duration, cond: impl FnMut() -> bool) -> bool {
    smol::block_on(eventually(d, cond))
}

/// Checks the identities every stats snapshot must satisfy.
pub fn assert_consistent(stats: &ServerStats) {
    assert!(
        stats.core.is_consistent(),
        "core counters do not add up: {:#?}",
        stats.core
    );
    assert_eq!(stats.events_dropped, 0, "lifecycle events were lost");
}

/// A handler for tests: optionally greets each connection with
/// `hello|<user>|<anonymous>`, echoes `echo|<user>|<text>` to every
/// connection of the sender's user, and panics on the text `panic`.
#[derive(Clone, Default)]
pub struct TestHandler {
    pub greet: bool,
    pub echo: bool,
    /// `greeting` panics for this user.
    pub panic_greeting_for: Option<String>,
    /// `on_disconnect` panics for this user.
    pub panic_disconnect_for: Option<String>,
    pub state: Arc<HandlerState>,
}

/// What the handler saw.
#[derive(Default)]
pub struct HandlerState {
    /// `(user, connection id, text)` of every inbound text message.
    pub inbound: Mutex<Vec<(String, String, String)>>,
    /// Echo sends the server refused.
    pub echo_errors: AtomicU64,
    /// Disconnects seen.
    pub disconnects: AtomicU64,
}

impl TestHandler {
    pub fn echo() -> Self {
        TestHandler {
            echo: true,
            ..TestHandler::default()
        }
    }

    pub fn greeting() -> Self {
        TestHandler {
            greet: true,
            ..TestHandler::default()
        }
    }

    pub fn echo_errors(&self) -> u64 {
        self.state.echo_errors.load(Ordering::Relaxed)
    }
}

impl Handler for TestHandler {
    fn greeting(&self, conn: &ConnectionInfo) -> Option<Message> {
        if self.panic_greeting_for.as_deref() == Some(conn.user_id()) {
            panic!("test handler panics in greeting");
        }
        self.greet
            .then(|| Message::text(format!("hello|{}|{}", conn.user_id(), conn.anonymous())))
    }

    fn on_message(&self, server: &ServerHandle, conn: &ConnectionInfo, message: Message) {
        let Message::Text(text) = message else { return };
        if text.as_str() == "panic" {
            panic!("test handler panics on request");
        }
        self.state.inbound.lock().unwrap().push((
            conn.user_id().to_owned(),
            conn.connection_id().to_owned(),
            text.to_string(),
        ));
        if self.echo {
            let reply = format!("echo|{}|{}", conn.user_id(), text.as_str());
            if server.send_text(conn.user_id(), reply).is_err() {
                self.state.echo_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn on_disconnect(&self, _server: &ServerHandle, conn: &ConnectionInfo) {
        self.state.disconnects.fetch_add(1, Ordering::Relaxed);
        if self.panic_disconnect_for.as_deref() == Some(conn.user_id()) {
            panic!("test handler panics in on_disconnect");
        }
    }
}

/// A WebSocket client on a plain blocking socket that completes the
/// handshake and then does only what the test tells it to: it never answers
/// a ping by itself.
pub struct RawClient {
    pub stream: TcpStream,
    /// The response head of the upgrade.
    pub head: String,
}

impl RawClient {
    /// Upgrades `path` (which may carry `?token=`), optionally with a bearer token.
    pub fn upgrade(addr: SocketAddr, path: &str, token: Option<&str>) -> RawClient {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(RECV_TIMEOUT)).unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n"
        );
        stream.write_all(req.as_bytes()).unwrap();
        // Read the head byte by byte so no frame after it is consumed.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                other => panic!("upgrade response cut short: {other:?}"),
            }
        }
        RawClient {
            stream,
            head: String::from_utf8(head).unwrap(),
        }
    }

    /// The status code of the upgrade response.
    pub fn status(&self) -> u16 {
        self.head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Reads everything the server sends until it closes the socket (or
    /// `d` passes), and splits it into `(opcode, payload)` frames. Returns
    /// the frames and whether the socket ended.
    pub fn read_until_end(&mut self, d: Duration) -> (Vec<(u8, Vec<u8>)>, bool) {
        let deadline = Instant::now() + d;
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        let mut ended = false;
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(_) => {
                    ended = true;
                    break;
                }
            }
        }
        (parse_frames(&bytes), ended)
    }
}

/// Splits unmasked server frames into `(opcode, payload)`.
pub fn parse_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        assert_eq!(bytes[1] & 0x80, 0, "server frames are never masked");
        let (len, header) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 if bytes.len() >= 10 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => break,
            n => (n as usize, 2),
        };
        if bytes.len() < header + len {
            break;
        }
        frames.push((opcode, bytes[header..header + len].to_vec()));
        bytes = &bytes[header + len..];
    }
    frames
}

/// The code and reason of a close frame's payload.
pub fn close_payload(payload: &[u8]) -> (u16, String) {
    assert!(payload.len() >= 2, "close frame without a code");
    (
        u16::from_be_bytes([payload[0], payload[1]]),
        String::from_utf8_lossy(&payload[2..]).into_owned(),
    )
}
