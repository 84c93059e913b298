//! Shared helpers for the end-to-end tests of `userlane-server`: the real
//! binary on a free loopback port (killed when the guard drops), a tiny
//! blocking HTTP client, async-tungstenite WebSocket clients over smol, and
//! checks of the example protocol's frames.
//!
//! Every wait here is bounded, so a broken server fails a test instead of
//! hanging the suite.
#![allow(dead_code)]

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::handshake::client::Response;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::{self, Message};
use async_tungstenite::WebSocketStream;
use futures_util::StreamExt as _;
use serde_json::Value;
use smol::Async;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_userlane-server");
/// The service token every test server gets unless told otherwise.
pub const SERVICE_TOKEN: &str = "service-token-for-tests-0123";
/// A JWT secret for production/staging/testing servers.
pub const SECRET: &str = "end-to-end-secret-for-userlane-tests";
/// The longest one receive waits before a test fails.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest the server may take to start or to exit.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(15);
/// The five events of one agent run, in order.
pub const AGENT_EVENTS: [&str; 5] = [
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
];

/// Every environment variable the server reads; cleared before each start so
/// the developer's own settings never leak into a test.
const SERVER_VARS: &[&str] = &[
    "USERLANE_LISTEN",
    "USERLANE_ENV",
    "USERLANE_JWT_SECRET",
    "USERLANE_JWT_SECRET_FILE",
    "USERLANE_SERVICE_TOKEN",
    "USERLANE_MAX_CONNECTIONS_PER_USER",
    "USERLANE_MAX_CONNECTIONS",
    "USERLANE_MAX_MESSAGE_BYTES",
    "USERLANE_QUEUE_DEPTH",
    "USERLANE_OFFLINE_BUFFER",
    "USERLANE_PING_INTERVAL",
    "USERLANE_IDLE_TIMEOUT",
    "USERLANE_SHARDS",
    "USERLANE_AGENT_STEP_MS",
    "USERLANE_REDIS_URL",
    "USERLANE_LEASE_TTL",
    "USERLANE_OFFLINE_STREAM_LEN",
    "USERLANE_REPLAY_WINDOW",
    "USERLANE_AGENT_RUNS_PER_USER",
    "USERLANE_AGENT_RUNS_TOTAL",
    "USERLANE_OPS_LISTEN",
    "USERLANE_MEMORY_SPIKE_PERCENT",
    "USERLANE_MEMORY_BASELINE_SECS",
    "USERLANE_JWT_ISSUER",
    "USERLANE_JWT_AUDIENCE",
    "USERLANE_JWT_LEEWAY",
    "USERLANE_JWT_MAX_LIFETIME",
    "USERLANE_ALLOWED_ORIGINS",
    "USERLANE_REQUEST_TIMEOUT",
    "USERLANE_INBOUND_MESSAGES_PER_SECOND",
    "USERLANE_INBOUND_BYTES_PER_SECOND",
    "USERLANE_USER_INBOUND_MESSAGES_PER_SECOND",
    "USERLANE_USER_INBOUND_BYTES_PER_SECOND",
    "USERLANE_INBOUND_STRIKES",
    "SMOL_THREADS",
];

/// Public address → ops address of the running servers whose operational
/// endpoints are on an ops listener (production and staging), so
/// [`metrics`] reads them where they are served.
static OPS_ADDRS: Mutex<Vec<(SocketAddr, SocketAddr)>> = Mutex::new(Vec::new());

/// Where `/metrics` of the server on `addr` is served.
pub fn ops_addr(addr: SocketAddr) -> SocketAddr {
    OPS_ADDRS
        .lock()
        .unwrap()
        .iter()
        .find(|(public, _)| *public == addr)
        .map_or(addr, |(_, ops)| *ops)
}

/// A free loopback port: bind port 0, read it, release it.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// How to start the server: flags and environment on top of the test
/// defaults (one shard, a service token, a 10 ms agent step, `RUST_LOG=info`),
/// all given as environment variables so a flag overrides them.
#[derive(Debug, Clone)]
pub struct Spawn {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    listen_flag: bool,
}

impl Spawn {
    /// A development server (the binary's default environment).
    pub fn dev() -> Self {
        Spawn {
            args: Vec::new(),
            envs: vec![
                ("USERLANE_SHARDS".into(), "1".into()),
                ("USERLANE_SERVICE_TOKEN".into(), SERVICE_TOKEN.into()),
                ("USERLANE_AGENT_STEP_MS".into(), "10".into()),
                ("RUST_LOG".into(), "info".into()),
                ("SMOL_THREADS".into(), "2".into()),
            ],
            listen_flag: true,
        }
    }

    /// A server in `env` (production, staging, testing, …) with [`SECRET`].
    pub fn with_env(env: &str) -> Self {
        Spawn::dev()
            .env("USERLANE_ENV", env)
            .env("USERLANE_JWT_SECRET", SECRET)
    }

    /// Adds a flag (and its value, if any, as a separate call or `flags`).
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds several arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Sets (or replaces) an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.retain(|(k, _)| k != key);
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Removes an environment variable set by the defaults.
    pub fn no_env(mut self, key: &str) -> Self {
        self.envs.retain(|(k, _)| k != key);
        self
    }

    /// Passes the address as `USERLANE_LISTEN` instead of `--listen`.
    pub fn listen_through_env(mut self) -> Self {
        self.listen_flag = false;
        self
    }

    /// Whether the server will put its operational endpoints on an ops
    /// listener by default (production and staging, no `--ops-listen`).
    fn default_ops_listener(&self) -> bool {
        let env = self
            .args
            .iter()
            .position(|a| a == "--env")
            .and_then(|i| self.args.get(i + 1).cloned())
            .or_else(|| {
                self.envs
                    .iter()
                    .find(|(k, _)| k == "USERLANE_ENV")
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_default()
            .to_ascii_lowercase();
        matches!(env.as_str(), "production" | "prod" | "staging")
            && !self.args.iter().any(|a| a == "--ops-listen")
            && !self.envs.iter().any(|(k, _)| k == "USERLANE_OPS_LISTEN")
    }

    fn command(&self, addr: Option<SocketAddr>) -> Command {
        let mut cmd = Command::new(BIN);
        for var in SERVER_VARS {
            cmd.env_remove(var);
        }
        cmd.env_remove("RUST_LOG");
        if self.default_ops_listener() {
            // Never the shared default port: tests run side by side.
            cmd.env("USERLANE_OPS_LISTEN", "127.0.0.1:0");
        }
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        if let Some(addr) = addr {
            if self.listen_flag {
                cmd.arg("--listen").arg(addr.to_string());
            } else {
                cmd.env("USERLANE_LISTEN", addr.to_string());
            }
        }
        cmd.args(&self.args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Starts the server on a free loopback port and waits until it accepts.
    pub fn start(&self) -> ServerProcess {
        let mut last_error = String::new();
        for _ in 0..5 {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let mut child = self.command(Some(addr)).spawn().expect("spawn the server");
            let stdout = capture(child.stdout.take().unwrap());
            let stderr = capture(child.stderr.take().unwrap());
            let mut server = ServerProcess {
                child,
                addr,
                ops: None,
                stdout,
                stderr,
                exited: None,
            };
            let deadline = Instant::now() + PROCESS_TIMEOUT;
            loop {
                if let Some(status) = server.child.try_wait().expect("try_wait") {
                    server.exited = Some(status);
                    last_error = read_all(&server.stderr);
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    if self.default_ops_listener() {
                        let out = server.wait_for_stdout("listening on");
                        let ops = out
                            .lines()
                            .find_map(|l| {
                                l.strip_prefix(
                                    "operational endpoints (/metrics, /healthz) on http://",
                                )
                            })
                            .expect("the ops address on stdout")
                            .trim()
                            .parse()
                            .expect("an address");
                        server.ops = Some(ops);
                        OPS_ADDRS.lock().unwrap().push((addr, ops));
                    }
                    return server;
                }
                assert!(
                    Instant::now() < deadline,
                    "the server did not accept on {addr} within {PROCESS_TIMEOUT:?}; stderr:\n{}",
                    server.stderr()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            // The port was taken between free_port() and the bind: try another.
            if !last_error.contains("cannot listen") {
                break;
            }
        }
        panic!("the server did not start:\n{last_error}");
    }

    /// Runs the binary expecting it to exit by itself (a refusal to start,
    /// `--help`); the listen address, if any, is a free loopback port.
    pub fn run_to_exit(&self) -> Exited {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        self.run_to_exit_at(Some(addr))
    }

    /// [`run_to_exit`](Self::run_to_exit) without adding a listen address.
    pub fn run_to_exit_at(&self, addr: Option<SocketAddr>) -> Exited {
        let mut child = self.command(addr).spawn().expect("spawn the server");
        let stdout = capture(child.stdout.take().unwrap());
        let stderr = capture(child.stderr.take().unwrap());
        let status = wait_with_timeout(&mut child, PROCESS_TIMEOUT).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the server kept running (args {:?}); stderr:\n{}",
                self.args,
                read_all(&stderr)
            )
        });
        Exited {
            status,
            stdout: read_all(&stdout),
            stderr: read_all(&stderr),
        }
    }
}

/// How a process that exited by itself ended.
#[derive(Debug)]
pub struct Exited {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Exited {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// A pipe read to its end on a thread, so the child never blocks on it.
struct Captured {
    bytes: Arc<Mutex<Vec<u8>>>,
    reader: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn capture(mut pipe: impl Read + Send + 'static) -> Captured {
    let bytes: Arc<Mutex<Vec<u8>>> = Arc::default();
    let sink = bytes.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    });
    Captured {
        bytes,
        reader: Mutex::new(Some(reader)),
    }
}

/// What was read so far.
fn read_captured(c: &Captured) -> String {
    String::from_utf8_lossy(&c.bytes.lock().unwrap()).into_owned()
}

/// Everything, once the process has exited (its end of the pipe is closed).
fn read_all(c: &Captured) -> String {
    if let Some(reader) = c.reader.lock().unwrap().take() {
        let _ = reader.join();
    }
    read_captured(c)
}

/// Waits for `child` up to `d`; `None` if it is still running.
pub fn wait_with_timeout(child: &mut Child, d: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + d;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running `userlane-server`; killed (SIGKILL) when dropped. If the test
/// is failing, the server's output is printed to help find out why.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    /// The ops listener's address, when the server has one.
    pub ops: Option<SocketAddr>,
    stdout: Captured,
    stderr: Captured,
    exited: Option<ExitStatus>,
}

impl ServerProcess {
    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server printed to stdout so far.
    pub fn stdout(&self) -> String {
        read_captured(&self.stdout)
    }

    /// What the server logged to stderr so far.
    pub fn stderr(&self) -> String {
        read_captured(&self.stderr)
    }

    /// Waits (bounded) until the server has logged `needle` to stderr; the
    /// log may trail what the server already does on the network.
    pub fn wait_for_log(&self, needle: &str) -> String {
        wait_for_output(&self.stderr, needle, "stderr")
    }

    /// Waits (bounded) until the server has printed `needle` to stdout.
    pub fn wait_for_stdout(&self, needle: &str) -> String {
        wait_for_output(&self.stdout, needle, "stdout")
    }

    /// Sends SIGTERM (what `kill PID` and service managers send).
    #[cfg(unix)]
    pub fn sigterm(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
    }

    /// Waits for the process to exit by itself (bounded).
    pub fn wait_exit(&mut self, d: Duration) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = wait_with_timeout(&mut self.child, d);
        }
        self.exited
    }
}

fn wait_for_output(captured: &Captured, needle: &str, which: &str) -> String {
    let deadline = Instant::now() + RECV_TIMEOUT;
    loop {
        let text = read_captured(captured);
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the server never printed {needle:?} to {which}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        OPS_ADDRS.lock().unwrap().retain(|(a, _)| *a != self.addr);
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- userlane-server on {} ----\nstdout:\n{}\nstderr:\n{}",
                self.addr,
                self.stdout(),
                self.stderr()
            );
        }
    }
}

// ---------------------------------------------------------------- HTTP

/// A response read off a `Connection: close` socket.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    /// Lowercase names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }
}

/// One HTTP/1.1 request on a fresh connection with `Connection: close`
/// (unless `headers` name a `Connection` of their own), so the reply is
/// read to the end of the stream.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpReply {
    let mut stream =
        TcpStream::connect_timeout(&addr, RECV_TIMEOUT).expect("connect to the server");
    stream.set_read_timeout(Some(RECV_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(RECV_TIMEOUT)).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
    {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).expect("write the request");
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {path}: reading the reply failed: {e}"));
    parse_reply(&raw).unwrap_or_else(|| {
        panic!(
            "{method} {path}: not an HTTP reply: {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

fn parse_reply(raw: &[u8]) -> Option<HttpReply> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if let Some(len) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        assert_eq!(body.len(), len, "body length differs from Content-Length");
        body.truncate(len);
    }
    Some(HttpReply {
        status,
        headers,
        body,
    })
}

pub fn get(addr: SocketAddr, path: &str) -> HttpReply {
    http(addr, "GET", path, &[], b"")
}

/// `POST /api/users/{user}/messages` with `Authorization: Bearer {token}`.
pub fn post_message(addr: SocketAddr, user: &str, token: Option<&str>, body: &[u8]) -> HttpReply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    http(
        addr,
        "POST",
        &format!("/api/users/{user}/messages"),
        &headers,
        body,
    )
}

/// `DELETE /api/users/{user}/connections` with the test service token.
pub fn delete_connections(addr: SocketAddr, user: &str, token: Option<&str>) -> HttpReply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    http(
        addr,
        "DELETE",
        &format!("/api/users/{user}/connections"),
        &headers,
        b"",
    )
}

/// A development token for `user`, minted by `POST /dev/token`.
pub fn dev_token(addr: SocketAddr, user: &str) -> String {
    let body = serde_json::json!({ "user_id": user }).to_string();
    let reply = http(
        addr,
        "POST",
        "/dev/token",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(reply.status, 200, "POST /dev/token: {}", reply.text());
    let json = reply.json();
    assert_eq!(json["user_id"], user);
    json["token"].as_str().expect("a token").to_owned()
}

/// A token for `user` signed with [`SECRET`] (non-development servers).
pub fn signed_token(user: &str) -> String {
    userlane_examples::server::tokens::mint(SECRET.as_bytes(), user, 600, None, None).unwrap()
}

/// Parses the Prometheus text of `/metrics` into `series → value`, where
/// the series is the name with its labels as printed
/// (`userlane_rejections_total{reason="http_401"}`).
/// `addr` is the server's main address; the scrape goes to its ops listener
/// when it has one.
pub fn metrics(addr: SocketAddr) -> std::collections::BTreeMap<String, f64> {
    let reply = get(ops_addr(addr), "/metrics");
    assert_eq!(reply.status, 200);
    reply
        .text()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("series value");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// One series of `/metrics` (panics if it is missing).
pub fn metric(addr: SocketAddr, series: &str) -> f64 {
    let all = metrics(addr);
    *all.get(series)
        .unwrap_or_else(|| panic!("no series {series} in /metrics: {all:#?}"))
}

// ---------------------------------------------------------------- WebSocket

pub type Client = WebSocketStream<Async<TcpStream>>;

/// `fut`, or `None` once `d` has passed.
pub async fn within<T>(d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    smol::future::or(async { Some(fut.await) }, async {
        smol::Timer::after(d).await;
        None
    })
    .await
}

/// Upgrades `ws://addr{path}` with extra `headers` (bounded).
pub async fn ws_connect(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(Client, Response), tungstenite::Error> {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().append(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let fut = async {
        let stream = Async::<TcpStream>::connect(addr).await?;
        async_tungstenite::client_async(req, stream).await
    };
    within(RECV_TIMEOUT, fut)
        .await
        .unwrap_or_else(|| panic!("upgrade to ws://{addr}{path} timed out"))
}

/// A connection to `/ws` with `Authorization: Bearer {token}`.
pub async fn connect_with_token(addr: SocketAddr, token: &str) -> Client {
    let auth = format!("Bearer {token}");
    ws_connect(addr, "/ws", &[("Authorization", &auth)])
        .await
        .unwrap_or_else(|e| panic!("cannot connect with a token: {e}"))
        .0
}

/// A development connection of `user`: a token from `/dev/token`, the
/// upgrade, and the greeting (checked and returned).
pub async fn connect_dev(addr: SocketAddr, user: &str) -> (Client, Value) {
    let token = dev_token(addr, user);
    let mut client = connect_with_token(addr, &token).await;
    let greeting = expect_greeting(&mut client, user, "development").await;
    (client, greeting)
}

/// The HTTP status of a refused upgrade.
pub async fn refused_upgrade(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> u16 {
    match ws_connect(addr, path, headers).await {
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Ok(_) => panic!("upgrade to {path} unexpectedly accepted"),
        Err(e) => panic!("upgrade to {path}: unexpected error {e}"),
    }
}

/// What a client read next (pings and pongs skipped unless asked for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recv {
    Text(String),
    Binary(Vec<u8>),
    Pong(Vec<u8>),
    /// A close frame: code (1005 when it carried none) and reason.
    Close(u16, String),
    /// The stream ended or failed without a close frame.
    Ended(String),
    TimedOut,
}

/// The next message within `d` (pings skipped, pongs returned).
pub async fn recv_within(client: &mut Client, d: Duration) -> Recv {
    let fut = async {
        loop {
            return match client.next().await {
                Some(Ok(Message::Text(t))) => Recv::Text(t.to_string()),
                Some(Ok(Message::Binary(b))) => Recv::Binary(b.to_vec()),
                Some(Ok(Message::Pong(p))) => Recv::Pong(p.to_vec()),
                Some(Ok(Message::Ping(_) | Message::Frame(_))) => continue,
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

/// The next text frame; panics (naming `what`) on anything else.
pub async fn expect_text(client: &mut Client, what: &str) -> String {
    match recv(client).await {
        Recv::Text(t) => t,
        other => panic!("{what}: expected a text frame, got {other:?}"),
    }
}

/// The next text frame as JSON.
pub async fn expect_json(client: &mut Client, what: &str) -> Value {
    let text = expect_text(client, what).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
}

/// The keys of a JSON object, sorted.
pub fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

/// Checks that `v` is a greeting with exactly the documented fields, for
/// `user` (`None`: any user) in `environment`; returns it.
pub fn check_greeting(v: &Value, user: Option<&str>, environment: &str) {
    assert_eq!(keys(v), ["data", "timestamp", "type"], "greeting: {v}");
    assert_eq!(v["type"], "system_message", "greeting: {v}");
    assert!(v["timestamp"].as_f64().unwrap() > 1.6e9, "greeting: {v}");
    let d = &v["data"];
    assert_eq!(
        keys(d),
        [
            "config",
            "connection_id",
            "environment",
            "event",
            "factory_pattern_enabled",
            "user_id"
        ],
        "greeting data: {d}"
    );
    assert_eq!(d["event"], "connection_established");
    assert!(
        !d["connection_id"].as_str().unwrap().is_empty(),
        "greeting: {v}"
    );
    if let Some(user) = user {
        assert_eq!(d["user_id"], user, "greeting: {v}");
    }
    assert_eq!(d["environment"], environment, "greeting: {v}");
    assert_eq!(d["factory_pattern_enabled"], true, "greeting: {v}");
    assert_eq!(
        keys(&d["config"]),
        ["heartbeat_interval", "max_message_size"],
        "greeting config: {v}"
    );
    assert!(d["config"]["max_message_size"].is_u64(), "greeting: {v}");
    assert!(d["config"]["heartbeat_interval"].is_u64(), "greeting: {v}");
}

/// Reads the greeting (which must be the first frame) and checks it.
pub async fn expect_greeting(client: &mut Client, user: &str, environment: &str) -> Value {
    let v = expect_json(client, "greeting").await;
    check_greeting(&v, Some(user), environment);
    v
}

/// Sends a text frame.
pub async fn send_text(client: &mut Client, text: &str) {
    within(RECV_TIMEOUT, client.send(Message::text(text.to_owned())))
        .await
        .expect("send timed out")
        .expect("send failed");
}

/// Sends any message.
pub async fn send(client: &mut Client, message: Message) {
    within(RECV_TIMEOUT, client.send(message))
        .await
        .expect("send timed out")
        .expect("send failed");
}

/// Sends `{"type":"user_message","text":text}`.
pub async fn send_user_message(client: &mut Client, text: &str) {
    let frame = serde_json::json!({ "type": "user_message", "text": text }).to_string();
    send_text(client, &frame).await;
}

/// Reads one agent run: the five events in order, all of one run, about
/// `text`. Returns the run id.
pub async fn expect_agent_run(client: &mut Client, text: &str, who: &str) -> String {
    let mut run_id = String::new();
    for (i, kind) in AGENT_EVENTS.iter().enumerate() {
        let v = expect_json(client, &format!("{who}: agent event {kind}")).await;
        assert_eq!(keys(&v), ["data", "timestamp", "type"], "{who}: {v}");
        assert_eq!(v["type"], *kind, "{who}: event {i} out of order: {v}");
        let id = v["data"]["run_id"].as_str().expect("run_id").to_owned();
        if i == 0 {
            assert_eq!(v["data"]["message"], text, "{who}: {v}");
            run_id = id;
        } else {
            assert_eq!(id, run_id, "{who}: events of two runs mixed: {v}");
        }
        if *kind == "agent_completed" {
            let reply = v["data"]["reply"].as_str().expect("a reply text");
            assert!(
                reply.contains(text),
                "{who}: reply {reply:?} ignores {text:?}"
            );
        }
    }
    run_id
}

/// Asserts that nothing at all (no data, no close) arrives within `d`.
pub async fn assert_silent(client: &mut Client, d: Duration, what: &str) {
    match recv_within(client, d).await {
        Recv::TimedOut => {}
        other => panic!("{what}: expected nothing, got {other:?}"),
    }
}

/// Reads until the server closes; returns code and reason. Panics if a data
/// frame comes first or the socket ends without a close frame.
pub async fn expect_close(client: &mut Client, what: &str) -> (u16, String) {
    match recv(client).await {
        Recv::Close(code, reason) => (code, reason),
        other => panic!("{what}: expected a close frame, got {other:?}"),
    }
}

/// Runs a test body on smol, bounded by `limit` as a whole.
pub fn run<T>(limit: Duration, fut: impl Future<Output = T>) -> T {
    smol::block_on(within(limit, fut)).unwrap_or_else(|| panic!("test exceeded {limit:?}"))
}

/// Waits (bounded) until a series of `/metrics` has `value`; counters bumped
/// after a frame is sent may lag what a client already received.
pub fn wait_for_metric(addr: SocketAddr, series: &str, value: f64) {
    let deadline = Instant::now() + RECV_TIMEOUT;
    loop {
        let now = metric(addr, series);
        if now == value {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} stayed at {now}, expected {value}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
