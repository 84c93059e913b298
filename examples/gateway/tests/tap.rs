//! The gateway firmware over a real network stack: `gateway-host` (the same
//! connection tasks, shard and timer as on the board) on a TAP device inside
//! a network namespace each test creates, driven by real WebSocket clients
//! (tungstenite) whose sockets live in that namespace too.
//!
//! Needs root, `ip` (iproute2) and /dev/net/tun. Without them each test
//! prints why it skipped; with `USERLANE_TAP_TESTS=1` (set by `.ci/run`) a
//! skip is a failure. All traffic stays inside the namespace, which is
//! removed (and the gateway killed) on every path, panics included.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

const SECRET: &str = "tap-test-secret-0123456789";
const GATEWAY: &str = "10.77.0.2:8080";
const TAP: &str = "tapgw";

/// Gateway flags for a test.
struct Flags {
    idle_timeout_ms: u64,
    ping_interval_ms: u64,
    /// From the accept to the end of the upgrade response.
    handshake_timeout_ms: u64,
    /// Serve SNTP at 10.77.0.1:1230 with the host's time plus this many
    /// seconds, and point the gateway at it (`None`: the host's clock).
    sntp_offset_secs: Option<u64>,
}

const DEFAULT: Flags = Flags {
    idle_timeout_ms: 30_000,
    ping_interval_ms: 10_000,
    handshake_timeout_ms: 10_000,
    sntp_offset_secs: None,
};

/// The SNTP address the test serves in the namespace.
const SNTP: &str = "10.77.0.1:1230";

/// A network namespace with a TAP device and the gateway inside; removed
/// with everything in it when dropped.
struct Namespace {
    name: String,
    gateway: Option<Child>,
    /// The SNTP responder's stop flag and thread.
    sntp: Option<(Arc<AtomicBool>, thread::JoinHandle<()>)>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Namespace {
    /// Creates the namespace, the TAP device (10.77.0.1/24 on the kernel
    /// side) and starts the gateway on it (10.77.0.2). `Err` says why this
    /// machine cannot.
    fn start(tag: &str, flags: &Flags) -> Result<Namespace, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("not root (ip netns and TAP devices need it)".into());
        }
        let name = format!("ulgw-{}-{tag}", std::process::id());
        ip(&["netns", "add", &name])?;
        let mut ns = Namespace {
            name,
            gateway: None,
            sntp: None,
        };
        let n = ns.name.clone();
        ip(&["-n", &n, "link", "set", "lo", "up"])?;
        ip(&["-n", &n, "tuntap", "add", "dev", TAP, "mode", "tap"])?;
        ip(&["-n", &n, "addr", "add", "10.77.0.1/24", "dev", TAP])?;
        ip(&["-n", &n, "link", "set", TAP, "up"])?;
        let mut gateway = Command::new("ip");
        gateway.args(["netns", "exec", &n, env!("CARGO_BIN_EXE_gateway-host")]);
        if let Some(offset) = flags.sntp_offset_secs {
            ns.sntp = Some(sntp_responder(&n, offset)?);
            gateway.args(["--ntp", SNTP]);
        }
        let child = gateway
            .args(["--tap", TAP, "--address", "10.77.0.2/24", "--port", "8080"])
            .args(["--idle-timeout-ms", &flags.idle_timeout_ms.to_string()])
            .args(["--ping-interval-ms", &flags.ping_interval_ms.to_string()])
            .args([
                "--handshake-timeout-ms",
                &flags.handshake_timeout_ms.to_string(),
            ])
            .args(["--write-timeout-ms", "10000"])
            .env("USERLANE_GATEWAY_SECRET", SECRET)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting gateway-host: {e}"))?;
        ns.gateway = Some(child);
        Ok(ns)
    }

    /// Runs `f` on a thread that has joined the namespace, so every socket
    /// it opens is inside it; waits for the gateway to answer first.
    fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let path = format!("/var/run/netns/{}", self.name);
        thread::spawn(move || {
            let ns = File::open(&path).expect("namespace file");
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let deadline = Instant::now() + Duration::from_secs(15);
            let addr: SocketAddr = GATEWAY.parse().unwrap();
            while TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "gateway never answered on {GATEWAY}"
                );
                thread::sleep(Duration::from_millis(100));
            }
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Some((stop, responder)) = self.sntp.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = responder.join();
        }
        if let Some(mut child) = self.gateway.take() {
            // `ip netns exec` execs the gateway: this is its pid.
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("could not remove namespace {}: {e}", self.name);
        }
    }
}

/// An NTP timestamp (seconds since 1900, 32-bit fraction) for `unix_ms`.
fn ntp_timestamp(unix_ms: u64) -> [u8; 8] {
    let secs = (unix_ms / 1000 + 2_208_988_800) as u32;
    let fraction = (((unix_ms % 1000) << 32) / 1000) as u32;
    let mut t = [0u8; 8];
    t[..4].copy_from_slice(&secs.to_be_bytes());
    t[4..].copy_from_slice(&fraction.to_be_bytes());
    t
}

/// A minimal SNTP server in namespace `ns` at [`SNTP`], answering with the
/// host's time plus `offset_secs`, until the flag is set (polled every
/// 100 ms, so the namespace's removal is never held up for long).
fn sntp_responder(
    ns: &str,
    offset_secs: u64,
) -> Result<(Arc<AtomicBool>, thread::JoinHandle<()>), String> {
    let path = format!("/var/run/netns/{ns}");
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let flag = stop.clone();
    let responder = thread::spawn(move || {
        let bound = File::open(&path)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| e.to_string())
            })
            .and_then(|()| UdpSocket::bind(SNTP).map_err(|e| e.to_string()));
        let socket = match bound {
            Ok(s) => s,
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let _ = ready_tx.send(Ok(()));
        let mut req = [0u8; 68];
        while !flag.load(Ordering::Relaxed) {
            let Ok((n, from)) = socket.recv_from(&mut req) else {
                continue;
            };
            if n < 48 {
                continue;
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
                + offset_secs * 1000;
            let ts = ntp_timestamp(now);
            let mut answer = [0u8; 48];
            answer[0] = (req[0] & 0x38) | 4; // no leap warning, the client's version, server
            answer[1] = 1; // stratum: a reference clock
            answer[2] = req[2];
            answer[3] = 0xEC; // precision 2^-20 s
            answer[12..16].copy_from_slice(b"TEST");
            answer[16..24].copy_from_slice(&ts); // reference
            answer[24..32].copy_from_slice(&req[40..48]); // originate: the client's transmit
            answer[32..40].copy_from_slice(&ts); // receive
            answer[40..48].copy_from_slice(&ts); // transmit
            let _ = socket.send_to(&answer, from);
        }
    });
    match ready_rx.recv() {
        Ok(Ok(())) => Ok((stop, responder)),
        Ok(Err(e)) => Err(format!("SNTP responder: {e}")),
        Err(_) => Err("SNTP responder died".into()),
    }
}

/// The namespace for a test, or `None` after saying loudly why not.
fn namespace(tag: &str, flags: &Flags) -> Option<Namespace> {
    match Namespace::start(tag, flags) {
        Ok(ns) => Some(ns),
        Err(why) => {
            if std::env::var("USERLANE_TAP_TESTS").as_deref() == Ok("1") {
                panic!("USERLANE_TAP_TESTS=1 but the TAP test cannot run: {why}");
            }
            // Straight to the process's stderr: the test harness captures
            // `eprintln!` of passing tests, and a skip must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: TAP namespace test `{tag}`: {why}"
            );
            None
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(header: &str, claims: &str, secret: &str) -> String {
    let h = URL_SAFE_NO_PAD.encode(header);
    let c = URL_SAFE_NO_PAD.encode(claims);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{h}.{c}").as_bytes());
    format!(
        "{h}.{c}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn token(user: &str) -> String {
    let claims = format!(r#"{{"sub":"{user}","exp":{}}}"#, unix_now() + 600);
    sign(r#"{"alg":"HS256","typ":"JWT"}"#, &claims, SECRET)
}

type Ws = WebSocket<TcpStream>;

fn stream() -> TcpStream {
    let s = TcpStream::connect_timeout(&GATEWAY.parse().unwrap(), Duration::from_secs(5))
        .expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn open(stream: TcpStream, path: &str) -> Result<Ws, tungstenite::Error> {
    tungstenite::client(format!("ws://{GATEWAY}{path}"), stream)
        .map(|(ws, _)| ws)
        .map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => panic!("blocking handshake interrupted"),
        })
}

/// A connection of `user`, its welcome read and checked.
fn connect(user: &str) -> Ws {
    let mut ws = open(stream(), &format!("/ws?token={}", token(user))).expect("admitted");
    let welcome = next_json(&mut ws);
    assert_eq!(welcome["type"], "system_message", "{welcome}");
    assert_eq!(welcome["data"]["event"], "connection_established");
    assert_eq!(welcome["data"]["user_id"], user);
    ws
}

/// The HTTP status a refused upgrade got.
fn refused(path: &str) -> u16 {
    match open(stream(), path) {
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Ok(_) => panic!("{path}: admitted, expected a refusal"),
        Err(e) => panic!("{path}: {e}"),
    }
}

/// The next text frame, as JSON (pings are answered by tungstenite).
fn next_json(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("a frame before the timeout") {
            Message::Text(t) => return serde_json::from_str(&t).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

fn say(ws: &mut Ws, text: &str) {
    let frame = serde_json::json!({"type": "user_message", "text": text}).to_string();
    ws.send(Message::text(frame)).expect("send");
}

/// The next `user_message`'s text.
fn next_text(ws: &mut Ws) -> String {
    let v = next_json(ws);
    assert_eq!(v["type"], "user_message", "{v}");
    v["data"]["text"].as_str().unwrap().to_owned()
}

/// Reads until the close frame; its code.
fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => return u16::from(frame.code),
            Ok(Message::Close(None)) => return 1005,
            Ok(_) => continue,
            Err(e) => panic!("connection ended without a close frame: {e}"),
        }
    }
}

/// Opens `path` until it is admitted, for up to `secs`: a refusal with
/// `busy_status`, or a reset (every task busy finishing a close), means try
/// again; `what` names what never happened.
fn admitted_within(secs: u64, path: &str, busy_status: u16, what: &str) -> Ws {
    let addr: SocketAddr = GATEWAY.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        assert!(Instant::now() < deadline, "{what}");
        let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            thread::sleep(Duration::from_millis(100));
            continue;
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        match open(s, path) {
            Ok(ws) => return ws,
            Err(tungstenite::Error::Http(r)) if r.status() == busy_status => {
                thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn two_users_with_several_connections_are_isolated() {
    let Some(ns) = namespace("iso", &DEFAULT) else {
        return;
    };
    ns.run(|| {
        let mut alice = [connect("alice"), connect("alice")];
        let mut bob = [connect("bob"), connect("bob")];

        say(&mut alice[0], "for alice's tabs");
        for ws in &mut alice {
            assert_eq!(next_text(ws), "for alice's tabs");
        }
        say(&mut bob[1], "bob \"quoted\"\nline");
        for ws in &mut bob {
            // bob's first message is his own: alice's never reached him.
            let v = next_json(ws);
            assert_eq!(v["type"], "user_message");
            assert_eq!(v["data"]["user_id"], "bob");
            assert_eq!(v["data"]["text"], "bob \"quoted\"\nline");
        }
        say(&mut alice[1], "second");
        for ws in &mut alice {
            assert_eq!(next_text(ws), "second", "bob's message never reached alice");
        }

        // Bad input is answered on that connection only; it stays open.
        let ws = &mut alice[0];
        ws.send(Message::text("{not json")).unwrap();
        assert_eq!(next_json(ws)["error_code"], "INVALID_JSON");
        ws.send(Message::text(r#"{"type":"dance"}"#)).unwrap();
        assert_eq!(next_json(ws)["error_code"], "UNKNOWN_TYPE");
        ws.send(Message::text(r#"{"type":"user_message","text":" "}"#))
            .unwrap();
        assert_eq!(next_json(ws)["error_code"], "MISSING_TEXT");
        ws.send(Message::text(r#"{"type":"ping","id":7}"#)).unwrap();
        let pong = next_json(ws);
        assert_eq!(
            (pong["type"].as_str(), pong["id"].as_u64()),
            (Some("pong"), Some(7))
        );
        say(&mut alice[0], "still open");
        for ws in &mut alice {
            assert_eq!(
                next_text(ws),
                "still open",
                "errors went to the sender only"
            );
        }
        for ws in alice.iter_mut().chain(bob.iter_mut()) {
            ws.close(None).unwrap();
            assert_eq!(close_code(ws), 1000);
        }
    });
}

#[test]
fn the_per_user_cap_is_answered_with_429() {
    let Some(ns) = namespace("cap", &DEFAULT) else {
        return;
    };
    ns.run(|| {
        let mut first = connect("alice");
        let _second = connect("alice");
        let path = format!("/ws?token={}", token("alice"));
        assert_eq!(refused(&path), 429, "a third connection of alice");
        let _bob = connect("bob");

        // A closed connection frees its place.
        first.close(None).unwrap();
        assert_eq!(close_code(&mut first), 1000);
        admitted_within(5, &path, 429, "the closed place was never freed");
    });
}

#[test]
fn the_total_caps_are_answered_with_503() {
    let Some(ns) = namespace("full", &DEFAULT) else {
        return;
    };
    ns.run(|| {
        // 4 users × 2 connections: every user and connection place taken.
        let mut open_conns: Vec<Ws> = ["alice", "bob", "carol", "dave"]
            .iter()
            .flat_map(|u| [connect(u), connect(u)])
            .collect();
        let erin = format!("/ws?token={}", token("erin"));
        assert_eq!(refused(&erin), 503, "a fifth user, a ninth connection");

        // dave leaves: his places (and, once his manager is reclaimed, his
        // user place) are free for erin.
        for mut ws in open_conns.drain(6..) {
            ws.close(None).unwrap();
            assert_eq!(close_code(&mut ws), 1000);
        }
        // A reset while the spare task finishes the last refusal's close,
        // or 503 until dave's manager is reclaimed: try again.
        let mut admitted = admitted_within(5, &erin, 503, "dave's places were never freed");
        assert_eq!(next_json(&mut admitted)["data"]["user_id"], "erin");
        say(&mut open_conns[0], "alice still here");
        assert_eq!(next_text(&mut open_conns[0]), "alice still here");
    });
}

#[test]
fn a_stopped_reader_is_closed_with_1013_while_the_others_keep_receiving() {
    let Some(ns) = namespace("slow", &DEFAULT) else {
        return;
    };
    ns.run(|| {
        // The stopped reader: a small receive buffer, so its TCP window
        // closes after a few frames.
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let addr: SocketAddr = GATEWAY.parse().unwrap();
        sock.connect_timeout(&addr.into(), Duration::from_secs(5))
            .unwrap();
        let slow_stream: TcpStream = sock.into();
        slow_stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut slow = open(slow_stream, &format!("/ws?token={}", token("carol"))).unwrap();
        let mut fast = connect("carol");
        let mut other = connect("dave");

        let text = "x".repeat(900);
        let mut sent = 0;
        for _ in 0..60 {
            say(&mut fast, &text);
            assert_eq!(next_text(&mut fast).len(), 900);
            sent += 1;
        }
        say(&mut other, "dave is unaffected");
        assert_eq!(next_text(&mut other), "dave is unaffected");
        say(&mut fast, "after the close");
        assert_eq!(
            next_text(&mut fast),
            "after the close",
            "the fast tab keeps receiving"
        );

        // The stopped reader reads again: some messages, then 1013.
        let mut got = 0;
        let code = loop {
            match slow.read().expect("frames, then the close") {
                Message::Text(t) if t.contains("user_message") => got += 1,
                Message::Close(Some(f)) => break u16::from(f.code),
                Message::Close(None) => break 1005,
                _ => {}
            }
        };
        assert_eq!(code, u16::from(CloseCode::Again), "slow consumer close");
        assert!(
            got < sent,
            "the slow tab got {got} of {sent}: it was cut off"
        );
        eprintln!("slow reader: {got} of {sent} messages, then 1013");
    });
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let flags = Flags {
        idle_timeout_ms: 1_500,
        ping_interval_ms: 400,
        ..DEFAULT
    };
    let Some(ns) = namespace("idle", &flags) else {
        return;
    };
    ns.run(|| {
        let mut idle = connect("alice");
        let mut active = connect("bob");
        let start = Instant::now();
        // bob keeps talking; alice says nothing and reads nothing (so she
        // answers no ping either).
        while start.elapsed() < Duration::from_millis(2_500) {
            active
                .send(Message::text(r#"{"type":"ping","id":1}"#))
                .unwrap();
            assert_eq!(next_json(&mut active)["type"], "pong");
            thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(close_code(&mut idle), 1000, "idle timeout");
        active
            .send(Message::text(r#"{"type":"ping","id":2}"#))
            .unwrap();
        assert_eq!(
            next_json(&mut active)["id"],
            2,
            "the active one is still open"
        );
    });
}

#[test]
fn an_inbound_flood_is_closed_with_1008() {
    let Some(ns) = namespace("flood", &DEFAULT) else {
        return;
    };
    ns.run(|| {
        let mut flood = connect("alice");
        let mut calm = connect("bob");
        // Unsolicited pongs: each one goes through the inbound budget (100
        // a second, bursts of 200) and asks for no answer, so only the
        // budget can stop them.
        for _ in 0..400 {
            if flood.send(Message::Pong(Vec::new().into())).is_err() {
                break;
            }
        }
        assert_eq!(close_code(&mut flood), 1008, "inbound flood");
        say(&mut calm, "bob is unaffected");
        assert_eq!(next_text(&mut calm), "bob is unaffected");
    });
}

#[test]
fn the_wall_clock_comes_from_sntp() {
    // The SNTP server says it is three days later than the host thinks.
    let offset = 3 * 86_400;
    let flags = Flags {
        sntp_offset_secs: Some(offset),
        ..DEFAULT
    };
    let Some(ns) = namespace("sntp", &flags) else {
        return;
    };
    ns.run(move || {
        let header = r#"{"alg":"HS256","typ":"JWT"}"#;
        let sntp_now = unix_now() + offset;
        let in_sntp_time = sign(
            header,
            &format!(
                r#"{{"sub":"alice","iat":{sntp_now},"exp":{}}}"#,
                sntp_now + 600
            ),
            SECRET,
        );
        // Until the gateway has heard from the SNTP server it refuses every
        // token with 503; then it admits this one.
        let mut ws = admitted_within(
            10,
            &format!("/ws?token={in_sntp_time}"),
            503,
            "the clock was never set by SNTP",
        );
        let welcome = next_json(&mut ws);
        let ts = welcome["timestamp"].as_f64().unwrap();
        assert!(
            (ts - sntp_now as f64).abs() < 60.0,
            "frames carry the SNTP time: {ts} vs {sntp_now}"
        );
        // A token valid by the host's clock has expired by the gateway's.
        assert_eq!(refused(&format!("/ws?token={}", token("alice"))), 401);
    });
}

#[test]
fn silent_sockets_are_dropped_at_the_handshake_deadline() {
    let flags = Flags {
        handshake_timeout_ms: 1_000,
        ..DEFAULT
    };
    let Some(ns) = namespace("slowloris", &flags) else {
        return;
    };
    ns.run(|| {
        // Every connection task holds a socket that never sends its
        // request head (the readiness probe's task may still be closing).
        let addr: SocketAddr = GATEWAY.parse().unwrap();
        let silent: Vec<TcpStream> = (0..userlane_gateway::TASKS)
            .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok())
            .collect();
        assert!(
            silent.len() >= userlane_gateway::TASKS - 1,
            "{} accepted",
            silent.len()
        );
        if silent.len() == userlane_gateway::TASKS {
            assert!(
                TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
                "every task is held: no socket is listening"
            );
        }
        let start = Instant::now();
        for mut s in silent {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut byte = [0u8; 1];
            // Closed by the gateway at its deadline: end of stream or reset.
            assert!(matches!(s.read(&mut byte), Ok(0) | Err(_)));
        }
        let waited = start.elapsed();
        assert!(waited < Duration::from_secs(4), "dropped after {waited:?}");
        // The tasks are free again: a real client is served.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut ws = open(s, &format!("/ws?token={}", token("alice"))).unwrap();
                    assert_eq!(next_json(&mut ws)["data"]["user_id"], "alice");
                    break;
                }
                Err(_) => {
                    assert!(Instant::now() < deadline, "no task came back");
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
    });
}

#[test]
fn bad_tokens_and_requests_are_refused() {
    let Some(ns) = namespace("auth", &DEFAULT) else {
        return;
    };
    ns.run(|| {
        let now = unix_now();
        let header = r#"{"alg":"HS256","typ":"JWT"}"#;
        let good = format!(r#"{{"sub":"alice","exp":{}}}"#, now + 600);
        let cases = [
            ("no token", String::new()),
            ("another secret", sign(header, &good, "not-the-secret")),
            (
                "expired",
                sign(
                    header,
                    &format!(r#"{{"sub":"alice","exp":{}}}"#, now - 120),
                    SECRET,
                ),
            ),
            ("alg none", sign(r#"{"alg":"none"}"#, &good, SECRET)),
            (
                "an audience",
                sign(
                    header,
                    &format!(r#"{{"sub":"alice","exp":{},"aud":"other"}}"#, now + 600),
                    SECRET,
                ),
            ),
            (
                "no sub",
                sign(header, &format!(r#"{{"exp":{}}}"#, now + 600), SECRET),
            ),
            ("garbage", "abc.def.ghi".into()),
        ];
        for (what, t) in &cases {
            let path = if t.is_empty() {
                "/ws".to_owned()
            } else {
                format!("/ws?token={t}")
            };
            assert_eq!(refused(&path), 401, "{what}");
        }
        assert_eq!(refused(&format!("/other?token={}", token("alice"))), 404);

        // A plain request without the upgrade: 400.
        let mut s = stream();
        s.write_all(b"GET /ws HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

        // The bearer header works like the query.
        let mut req = tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{GATEWAY}/ws"
        ))
        .unwrap();
        req.headers_mut().insert(
            "Authorization",
            format!("Bearer {}", token("alice")).parse().unwrap(),
        );
        let (mut ws, _) = tungstenite::client(req, stream()).expect("bearer admitted");
        assert_eq!(next_json(&mut ws)["data"]["user_id"], "alice");
    });
}
