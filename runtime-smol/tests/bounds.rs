//! "Bounded both ways": what an attacker found against the release server,
//! each checked against a real server on 127.0.0.1.
//!
//! - a request must be done by the request deadline (head, body, upgrade);
//! - HTTP framing is strict (no smuggling through ambiguous lengths);
//! - refusals carry fixed, short texts (nothing the client sent comes back);
//! - the echo endpoint counts toward `max_connections` and idles out;
//! - JWT `nbf`, lifetime, issuer and audience are enforced;
//! - browser origins are checked;
//! - a `ConnectionInfo` of one server is refused by another, never a panic.
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use base64::Engine as _;
use support::*;
use userlane_smol::{
    Environment, HttpFuture, HttpRequest, HttpResponse, HttpService, Message, OriginPolicy,
    ServerConfig, ServerHandle, UserError,
};

// ------------------------------------------------------------ helpers

/// Answers every plain request with the number of body bytes it received.
struct BodyLength;

impl HttpService for BodyLength {
    fn handle<'a>(&'a self, _server: &'a ServerHandle, request: HttpRequest) -> HttpFuture<'a> {
        Box::pin(async move { HttpResponse::text(200, format!("got {}\n", request.body.len())) })
    }
}

fn start_http(config: ServerConfig) -> TestServer {
    start_with_http(config, BodyLength)
}

/// Sends `raw` on a fresh socket and reads one response (until its
/// `Content-Length` is read or the server closes the socket; bounded): the
/// status and the body.
fn raw_http(addr: SocketAddr, raw: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(RECV_TIMEOUT)).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while !one_response(&out) {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Whether `out` holds a whole response: its head and as many body bytes
/// as its `Content-Length` says.
fn one_response(out: &[u8]) -> bool {
    let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|len| out.len() >= end + 4 + len)
}

/// Reads from `s` until the server closes it; how long that took from
/// `since`, or `None` if it was still open after `limit`.
fn closed_within(
    s: &mut TcpStream,
    since: Instant,
    limit: Duration,
) -> Option<(Duration, Vec<u8>)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = limit.checked_sub(since.elapsed())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some((since.elapsed(), got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if since.elapsed() >= limit {
                    return None;
                }
            }
            // A reset also means the server let go of the socket.
            Err(_) => return Some((since.elapsed(), got)),
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An HS256 token with any claims (a JSON object), signed with [`SECRET`].
fn token_with(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

/// The status and body of an upgrade refused over raw TCP.
fn refused_upgrade_raw(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    raw_http(addr, req.as_bytes())
}

// ------------------------------------------------------------ 1. deadlines

#[test]
fn slow_heads_and_slow_bodies_are_cut_at_the_request_deadline() {
    let deadline = Duration::from_millis(1000);
    let mut cfg = config(Environment::Testing);
    cfg.request_timeout = deadline;
    let server = start_http(cfg);
    let addr = server.addr;
    // A slowloris on the head and one on the body, one byte every 200 ms.
    let slow = |first: &'static [u8]| {
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(first).unwrap();
            let writer = s.try_clone().unwrap();
            let drip = std::thread::spawn(move || {
                let mut w = writer;
                for _ in 0..40 {
                    std::thread::sleep(Duration::from_millis(200));
                    if w.write_all(b"a").is_err() {
                        break;
                    }
                }
            });
            let closed = closed_within(&mut s, started, Duration::from_secs(5));
            drop(s);
            let _ = drip.join();
            closed
        })
    };
    let head = slow(b"GET /healthz HTTP/1.1\r\nX-Slow: ");
    let body = slow(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n");
    // Meanwhile a legitimate client is served at once.
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(raw_http(addr, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n").0, 200);
    smol::block_on(async {
        let mut ws = connect(addr, "alice").await;
        server.handle.send_text("alice", "in").unwrap();
        assert_eq!(recv(&mut ws).await, Recv::Text("in".into()));
    });
    assert!(t.elapsed() < deadline, "the legitimate client waited");
    for (what, result) in [
        ("head", head.join().unwrap()),
        ("body", body.join().unwrap()),
    ] {
        let (after, answer) =
            result.unwrap_or_else(|| panic!("slow {what}: socket still open after 5 s"));
        assert!(
            after < deadline + Duration::from_millis(1000),
            "slow {what}: closed only after {after:?}"
        );
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408 "),
            "slow {what}: {answer:?}"
        );
    }
    assert!(server.stats().requests_timed_out >= 2);
}

#[test]
fn a_slow_service_answer_is_cut_at_the_request_deadline() {
    struct Slow;
    impl HttpService for Slow {
        fn handle<'a>(&'a self, _s: &'a ServerHandle, _r: HttpRequest) -> HttpFuture<'a> {
            Box::pin(async {
                smol::Timer::after(Duration::from_secs(30)).await;
                HttpResponse::text(200, "late\n")
            })
        }
    }
    let mut cfg = config(Environment::Testing);
    cfg.request_timeout = Duration::from_millis(800);
    let server = start_with_http(cfg, Slow);
    let started = Instant::now();
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (after, _) = closed_within(&mut s, started, Duration::from_secs(5)).expect("closed");
    assert!(after < Duration::from_millis(1500), "{after:?}");
}

// ------------------------------------------------------------ 2. framing

#[test]
fn ambiguous_request_lengths_are_400() {
    let server = start_http(config(Environment::Testing));
    let addr = server.addr;
    // The baseline: a plain, well-framed body.
    assert_eq!(
        raw_http(
            addr,
            b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        ),
        (200, "got 5\n".into())
    );
    // Identical duplicates are merged (RFC 9112 6.3), in both spellings.
    assert_eq!(
        raw_http(
            addr,
            b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
        ),
        (200, "got 5\n".into())
    );
    assert_eq!(
        raw_http(
            addr,
            b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello"
        ),
        (200, "got 5\n".into())
    );
    let bad: [&[u8]; 8] = [
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 5\r\n\r\nhello",
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\nhe",
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nhe",
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length:  1 2\r\n\r\nhello",
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello",
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\nhello",
        b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ];
    for raw in bad {
        let (status, body) = raw_http(addr, raw);
        assert_eq!(
            status,
            400,
            "{:?} -> {body:?}",
            String::from_utf8_lossy(raw)
        );
    }
    // Chunked alone is still "send Content-Length".
    assert_eq!(
        raw_http(
            addr,
            b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        .0,
        411
    );
}

// ------------------------------------------------------------ 3. fixed texts

#[test]
fn a_token_with_a_huge_or_multiline_alg_gets_a_short_fixed_401() {
    let server = start(config(Environment::Production));
    let payload = b64(format!(r#"{{"sub":"alice","exp":{}}}"#, unix_now() + 300).as_bytes());
    for alg in [
        "A".repeat(10 * 1024),
        "HS256\nINFO forged log line".to_owned(),
    ] {
        let header = b64(serde_json::json!({ "alg": alg, "typ": "JWT" })
            .to_string()
            .as_bytes());
        let token = format!("{header}.{payload}.c2ln");
        let (status, body) = refused_upgrade_raw(
            server.addr,
            "/ws",
            &[("Authorization", &format!("Bearer {token}"))],
        );
        assert_eq!(status, 401, "{body:?}");
        assert!(
            body.len() <= 80,
            "401 body of {} bytes: {body:.100}",
            body.len()
        );
        assert!(!body.trim_end().contains('\n'), "{body:?}");
        assert!(
            !body.contains("AAAA") && !body.contains("forged"),
            "{body:?}"
        );
    }
}

// ------------------------------------------------------------ 4. echo caps

/// Eight shards sized from small limits (the smallest tables) still admit
/// every connection up to the server's limit, however the users hash, and
/// then answer like a full server.
#[test]
fn many_shards_with_small_limits_admit_up_to_the_limits() {
    let server = start(ServerConfig {
        shards: 8,
        max_users: 200,
        max_connections: 200,
        max_connections_per_user: 1,
        ..config(Environment::Testing)
    });
    smol::block_on(async {
        let mut clients = Vec::new();
        for i in 0..200 {
            clients.push(connect(server.addr, &format!("user-{i}")).await);
        }
        assert_eq!(
            refused_status(server.addr, "/ws", Some(&jwt("one-more", 300))).await,
            503
        );
        assert_eq!(server.stats().core.connections_active, 200);
        // Every shard still serves its users after the refusal.
        for i in [0, 99, 199] {
            let user = format!("user-{i}");
            assert_eq!(server.handle.user_connections(&user).len(), 1);
            server.handle.send_text(&user, "still here").unwrap();
            assert_eq!(expect_text(&mut clients[i], &user).await, "still here");
        }
    });
    let stats = server.stats();
    assert_eq!(stats.core.total_connections_managed, 200);
    assert!(stats.rejected_server_full >= 1);
}

/// `max_users` holds over all shards together, however the users hash: the
/// user past it is refused with 503 while the users already in keep
/// opening tabs.
#[test]
fn max_users_holds_across_shards() {
    let server = start(ServerConfig {
        shards: 8,
        max_users: 20,
        max_connections: 200,
        max_connections_per_user: 2,
        ..config(Environment::Testing)
    });
    smol::block_on(async {
        let mut clients = Vec::new();
        for i in 0..20 {
            clients.push(connect(server.addr, &format!("user-{i}")).await);
        }
        for i in 20..24 {
            let token = jwt(&format!("user-{i}"), 300);
            assert_eq!(refused_status(server.addr, "/ws", Some(&token)).await, 503);
        }
        // A user who is already in opens a second tab at the cap.
        clients.push(connect(server.addr, "user-7").await);
        assert_eq!(server.handle.user_connections("user-7").len(), 2);
        // Read while every client is still connected.
        let stats = server.stats();
        assert_eq!(stats.core.managers_active, 20);
        assert_eq!(stats.core.connections_active, 21);
        assert!(stats.rejected_server_full >= 4);
    });
}

#[test]
fn echo_connections_count_toward_max_connections() {
    let mut cfg = config(Environment::Testing);
    cfg.echo_path = Some("/echo".into());
    cfg.max_connections = 3;
    cfg.max_users = 3;
    cfg.max_connections_per_user = 3;
    let server = start(cfg);
    smol::block_on(async {
        let mut echoes = Vec::new();
        for _ in 0..3 {
            let (ws, _) = connect_raw(server.addr, "/echo", None)
                .await
                .expect("echo admitted");
            echoes.push(ws);
        }
        // Full: both endpoints answer 503.
        assert_eq!(refused_status(server.addr, "/echo", None).await, 503);
        assert_eq!(
            refused_status(server.addr, "/ws", Some(&jwt("alice", 300))).await,
            503
        );
        // The echoes still echo; one leaving frees a place.
        send_text(&mut echoes[0], "still here").await;
        assert_eq!(recv(&mut echoes[0]).await, Recv::Text("still here".into()));
        let mut gone = echoes.pop().unwrap();
        gone.close(None).await.unwrap();
        drop(gone);
        let mut alice = None;
        for _ in 0..50 {
            if let Ok((ws, _)) = connect_raw(server.addr, "/ws", Some(&jwt("alice", 300))).await {
                alice = Some(ws);
                break;
            }
            smol::Timer::after(Duration::from_millis(50)).await;
        }
        assert!(
            alice.is_some(),
            "a place freed by an echo connection is usable"
        );
    });
    assert!(server.stats().rejected_server_full >= 2);
}

#[test]
fn idle_echo_connections_are_closed_with_1000() {
    let mut cfg = config(Environment::Testing);
    cfg.echo_path = Some("/echo".into());
    cfg.ping_interval = Duration::from_millis(500);
    cfg.idle_timeout = Duration::from_millis(1500);
    let server = start(cfg);
    // A raw client never answers the pings.
    let started = Instant::now();
    let mut raw = RawClient::upgrade(server.addr, "/echo", None);
    assert_eq!(raw.status(), 101);
    let (frames, ended) = raw.read_until_end(Duration::from_secs(5));
    assert!(ended, "still open after 5 s: {frames:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(
        frames.iter().any(|(op, _)| *op == 0x9),
        "pinged: {frames:?}"
    );
    let (_, close) = frames
        .iter()
        .find(|(op, _)| *op == 0x8)
        .expect("a close frame");
    assert_eq!(close_payload(close).0, 1000);
    // A client that answers pings (tungstenite does while reading) stays.
    smol::block_on(async {
        let (mut ws, _) = connect_raw(server.addr, "/echo", None).await.unwrap();
        assert_silent(
            &mut ws,
            Duration::from_millis(2500),
            "an answering echo client",
        )
        .await;
        send_text(&mut ws, "alive").await;
        assert_eq!(recv(&mut ws).await, Recv::Text("alive".into()));
    });
}

// ------------------------------------------------------------ 5. JWT claims

#[test]
fn jwt_nbf_lifetime_issuer_and_audience_are_enforced() {
    let now = unix_now();
    let server = start(config(Environment::Production));
    let status = |token: &str| {
        smol::block_on(async {
            match connect_raw(server.addr, "/ws", Some(token)).await {
                Ok(_) => 101,
                Err(async_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
                Err(e) => panic!("{e}"),
            }
        })
    };
    use serde_json::json;
    // nbf an hour ahead: refused; within the 30 s default leeway: accepted.
    assert_eq!(
        status(&token_with(
            json!({"sub": "a", "exp": now + 300, "nbf": now + 3600})
        )),
        401
    );
    assert_eq!(
        status(&token_with(
            json!({"sub": "a", "exp": now + 300, "nbf": now + 10})
        )),
        101
    );
    // exp 100 years ahead, or exp - iat over 24 h: refused.
    assert_eq!(
        status(&token_with(
            json!({"sub": "a", "exp": now + 100 * 365 * 86_400})
        )),
        401
    );
    assert_eq!(
        status(&token_with(
            json!({"sub": "a", "exp": now + 3600, "iat": now - 2 * 86_400})
        )),
        401
    );
    assert_eq!(
        status(&token_with(
            json!({"sub": "a", "exp": now + 12 * 3600, "iat": now})
        )),
        101
    );
    // Expired within the leeway: accepted; beyond it: refused.
    assert_eq!(
        status(&token_with(json!({"sub": "a", "exp": now - 5}))),
        101
    );
    assert_eq!(
        status(&token_with(json!({"sub": "a", "exp": now - 120}))),
        401
    );
    // No audience configured: a token naming one was minted for someone else.
    assert_eq!(
        status(&token_with(
            json!({"sub": "a", "exp": now + 300, "aud": "other"})
        )),
        401
    );
    drop(server);

    let mut cfg = config(Environment::Production);
    cfg.jwt_issuer = Some("auth.example".into());
    cfg.jwt_audience = Some("userlane".into());
    cfg.jwt_leeway = Duration::from_secs(0);
    let server = start(cfg);
    let status = |token: &str| {
        smol::block_on(async {
            match connect_raw(server.addr, "/ws", Some(token)).await {
                Ok(_) => 101,
                Err(async_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
                Err(e) => panic!("{e}"),
            }
        })
    };
    let ok = json!({"sub": "a", "exp": now + 300, "iss": "auth.example", "aud": "userlane"});
    assert_eq!(status(&token_with(ok)), 101);
    assert_eq!(
        status(&token_with(
            json!({"sub": "a", "exp": now + 300, "iss": "auth.example", "aud": ["x", "userlane"]})
        )),
        101
    );
    for bad in [
        json!({"sub": "a", "exp": now + 300, "aud": "userlane"}),
        json!({"sub": "a", "exp": now + 300, "iss": "evil.example", "aud": "userlane"}),
        json!({"sub": "a", "exp": now + 300, "iss": "auth.example"}),
        json!({"sub": "a", "exp": now + 300, "iss": "auth.example", "aud": "other"}),
        // No leeway configured here: a token expired 5 s ago is refused.
        json!({"sub": "a", "exp": now - 5, "iss": "auth.example", "aud": "userlane"}),
    ] {
        assert_eq!(status(&token_with(bad.clone())), 401, "{bad}");
    }
}

// ------------------------------------------------------------ 6. origins

#[test]
fn browser_origins_are_checked_by_policy() {
    let mut cfg = config(Environment::Production);
    cfg.echo_path = Some("/echo".into());
    assert_eq!(cfg.allowed_origins, OriginPolicy::SameHost);
    let server = start(cfg);
    let addr = server.addr;
    let token = jwt("alice", 300);
    let bearer = format!("Bearer {token}");
    let upgrade = |path: &str, origin: Option<&str>| {
        smol::block_on(async {
            let mut req = with_header(request(addr, path), "authorization", &bearer);
            if let Some(o) = origin {
                req = with_header(req, "origin", o);
            }
            match connect_request(addr, req).await {
                Ok(_) => 101,
                Err(async_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
                Err(e) => panic!("{e}"),
            }
        })
    };
    // Same host (the client sends Host: 127.0.0.1:port), and no Origin at all: in.
    assert_eq!(upgrade("/ws", Some(&format!("http://{addr}"))), 101);
    assert_eq!(upgrade("/ws", None), 101);
    // Another site: 403 on both browser endpoints, with a fixed text.
    assert_eq!(upgrade("/ws", Some("https://evil.example")), 403);
    assert_eq!(upgrade("/echo", Some("https://evil.example")), 403);
    assert_eq!(upgrade("/ws", Some("null")), 403);
    let (status, body) = refused_upgrade_raw(
        addr,
        "/ws",
        &[
            ("Authorization", &bearer),
            (
                "Origin",
                &format!("https://evil.example/{}", "x".repeat(500)),
            ),
        ],
    );
    assert_eq!((status, body.as_str()), (403, "origin not allowed"));
    assert_eq!(server.stats().rejected_forbidden, 4);
    drop(server);

    let mut cfg = config(Environment::Production);
    cfg.allowed_origins = "https://app.example".parse().unwrap();
    let server = start(cfg);
    let addr2 = server.addr;
    let upgrade = |origin: &str| {
        smol::block_on(async {
            let req = with_header(
                with_header(request(addr2, "/ws"), "authorization", &bearer),
                "origin",
                origin,
            );
            match connect_request(addr2, req).await {
                Ok(_) => 101,
                Err(async_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
                Err(e) => panic!("{e}"),
            }
        })
    };
    assert_eq!(upgrade("https://APP.example"), 101);
    assert_eq!(upgrade(&format!("http://{addr2}")), 403);
    assert_eq!(upgrade("https://app.example.evil"), 403);

    // Development and testing allow any origin by default.
    let server = start(config(Environment::Development));
    let addr3 = server.addr;
    let ok = smol::block_on(async {
        let req = with_header(request(addr3, "/ws"), "origin", "https://anywhere.example");
        connect_request(addr3, req).await.is_ok()
    });
    assert!(ok);
}

// ------------------------------------------------------------ 7. ConnectionInfo

#[test]
fn a_connection_info_of_another_server_is_refused_not_a_panic() {
    let mut a_cfg = config(Environment::Testing);
    a_cfg.shards = 4;
    let a = start(a_cfg);
    let b = start(config(Environment::Testing));
    smol::block_on(async {
        // A user of server A whose shard does not exist on server B.
        let mut foreign = None;
        let mut clients = Vec::new();
        for i in 0..64 {
            let user = format!("user-{i}");
            clients.push(connect(a.addr, &user).await);
            let info = a.handle.user_connections(&user).pop().unwrap();
            if info.shard() > 0 {
                foreign = Some(info);
                break;
            }
        }
        let foreign = foreign.expect("some user lands beyond shard 0");
        let mut bob = connect(b.addr, "bob").await;
        assert!(matches!(
            b.handle
                .send_to_connection(&foreign, Message::text("hijack")),
            Err(UserError::UnknownConnection)
        ));
        // A shard-0 connection of A whose handles name B's only connection.
        let mut zero = None;
        for i in 64..256 {
            let user = format!("user-{i}");
            clients.push(connect(a.addr, &user).await);
            let info = a.handle.user_connections(&user).pop().unwrap();
            if info.shard() == 0 {
                zero = Some(info);
                break;
            }
        }
        if let Some(zero) = zero {
            assert!(matches!(
                b.handle.send_to_connection(&zero, Message::text("hijack")),
                Err(UserError::UnknownConnection)
            ));
        }
        assert_silent(&mut bob, Duration::from_millis(300), "bob on server B").await;
        // B's own info still works, and A's on A.
        let own = b.handle.user_connections("bob").pop().unwrap();
        b.handle
            .send_to_connection(&own, Message::text("yours"))
            .unwrap();
        assert_eq!(recv(&mut bob).await, Recv::Text("yours".into()));
        a.handle
            .send_to_connection(&foreign, Message::text("home"))
            .unwrap();
    });
}

// ------------------------------------------------------------ 7. outbound size

/// A message larger than the writer's buffer bound used to be taken from the
/// core, counted as transmitted, and refused by the socket: lost without a
/// word, and the connection ended. The bound is gone (the writer feeds one
/// message at a time after `poll_ready`), so a large message the
/// application sends goes out like any other, on every send path.
#[test]
fn an_outbound_message_larger_than_the_write_buffer_is_delivered_not_lost() {
    let mut cfg = config(Environment::Production);
    cfg.max_message_bytes = 1024;
    let server = start(cfg);
    smol::block_on(async {
        let mut alice = connect(server.addr, "alice").await;
        // Past the old bound of write buffer + 2 x max message + 1 KiB.
        let big = "x".repeat(64 * 1024);
        let sent = server.handle.send_text("alice", big.clone()).unwrap();
        assert_eq!(sent.queued_for(), 1);
        assert_eq!(recv(&mut alice).await, Recv::Text(big.clone()));
        let info = server.handle.user_connections("alice")[0].clone();
        server
            .handle
            .send_to_connection(&info, Message::text(big.clone()))
            .unwrap();
        assert_eq!(recv(&mut alice).await, Recv::Text(big.clone()));
        server
            .handle
            .send("alice", Message::binary(big.clone().into_bytes()))
            .await
            .unwrap();
        assert_eq!(recv(&mut alice).await, Recv::Binary(big.into_bytes()));
        // And the connection carries on.
        server.handle.send_text("alice", "after").unwrap();
        assert_eq!(recv(&mut alice).await, Recv::Text("after".into()));
    });
    let stats = server.stats();
    assert_eq!(stats.core.messages_transmitted, 4);
    assert_eq!(stats.core.messages_dropped, 0);
    assert_eq!(stats.forced_closes, 0);
    assert_consistent(&stats);
}

// ------------------------------------------------------------ 8. the handshake

/// The request head is parsed once (httparse) and the server answers the
/// upgrade itself: a valid request gets `101` with the RFC 6455 accept key
/// (the RFC's own example), an admitted request that is not a valid
/// WebSocket upgrade gets 400 and is counted as a failed handshake, and
/// its admission is given back.
#[test]
fn the_upgrade_is_answered_from_the_one_parse_of_the_head() {
    let server = start(config(Environment::Development));
    let addr = server.addr;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "{head}"
    );
    drop(s);
    for (name, bad) in [
        ("version", "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nConnection: Upgrade"),
        ("key", "Sec-WebSocket-Version: 13\r\nConnection: Upgrade"),
        ("connection", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nConnection: close"),
    ] {
        let req = format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n{bad}\r\n\r\n");
        let (status, body) = raw_http(addr, req.as_bytes());
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(body, "not a valid WebSocket upgrade request\n", "{name}");
    }
    let stats = server.stats();
    assert_eq!(stats.handshakes_failed, 3);
    assert!(smol::block_on(eventually(Duration::from_secs(5), || {
        server.stats().core.connections_active == 0
    })));
}
