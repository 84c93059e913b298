//! The operations surface of `userlane-server`: health, metrics, the page,
//! development-only endpoints, authentication by environment, and graceful
//! shutdown on SIGTERM.

mod support;

use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use support::*;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn healthz_is_200_ok_on_a_fresh_server() {
    for env in ["development", "production"] {
        let server = Spawn::with_env(env).start();
        let reply = get(server.addr, "/healthz");
        assert_eq!(reply.status, 200, "{env}: {}", reply.text());
        assert_eq!(reply.text(), "ok\n");
        assert!(reply
            .header("content-type")
            .unwrap()
            .starts_with("text/plain"));
        assert_eq!(reply.header("connection"), Some("close"));
        // Still ok after some traffic.
        run(LIMIT, async {
            let mut c = connect_with_token(server.addr, &signed_token("alice")).await;
            expect_greeting(&mut c, "alice", env).await;
        });
        assert_eq!(get(server.addr, "/healthz").text(), "ok\n");
        assert_eq!(
            http(server.addr, "POST", "/healthz", &[], b"").status,
            405,
            "{env}"
        );
    }
}

#[test]
fn metrics_are_prometheus_text_and_the_counters_move() {
    let server = Spawn::with_env("production").start();
    // In production the metrics are on the ops listener.
    let reply = get(ops_addr(server.addr), "/metrics");
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text; version=1.0.0"),
        "{:?}",
        reply.header("content-type")
    );
    let text = reply.text();
    for family in [
        "# TYPE userlane_connections gauge",
        "# TYPE userlane_users gauge",
        "# TYPE userlane_managers_active gauge",
        "# TYPE userlane_queue_depth gauge",
        "# TYPE userlane_offline_buffered gauge",
        "# TYPE userlane_rejections counter",
        "# TYPE userlane_closes counter",
        "# TYPE userlane_messages_queued counter",
        "# TYPE userlane_messages_delivered counter",
        "# TYPE userlane_messages_failed counter",
        "# TYPE userlane_fallback_connections counter",
        "# TYPE userlane_agent_events_sent counter",
        "# TYPE userlane_agent_events_failed counter",
        "# TYPE userlane_agent_busy counter",
        "# TYPE userlane_resident_memory_bytes gauge",
    ] {
        assert!(text.contains(family), "missing {family:?} in\n{text}");
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
    let fresh = metrics(server.addr);
    assert_eq!(fresh["userlane_connections"], 0.0);
    assert_eq!(
        fresh[r#"userlane_rejections_total{reason="http_401"}"#],
        0.0
    );

    run(LIMIT, async {
        // A refused upgrade is counted by reason.
        assert_eq!(refused_upgrade(server.addr, "/ws", &[]).await, 401);
        let m = metrics(server.addr);
        assert_eq!(m[r#"userlane_rejections_total{reason="http_401"}"#], 1.0);

        // Connections, users and agent events.
        let mut a1 = connect_with_token(server.addr, &signed_token("alice")).await;
        expect_greeting(&mut a1, "alice", "production").await;
        let mut a2 = connect_with_token(server.addr, &signed_token("alice")).await;
        expect_greeting(&mut a2, "alice", "production").await;
        let mut b = connect_with_token(server.addr, &signed_token("bob")).await;
        expect_greeting(&mut b, "bob", "production").await;
        let m = metrics(server.addr);
        assert_eq!(m["userlane_connections"], 3.0);
        assert_eq!(m["userlane_users"], 2.0);
        assert_eq!(m["userlane_managers_active"], 2.0);
        assert_eq!(m["userlane_connections_opened_total"], 3.0);
        assert_eq!(m["userlane_managers_created_total"], 2.0);
        assert_eq!(m["userlane_fallback_connections_total"], 0.0);

        send_user_message(&mut a1, "count me").await;
        expect_agent_run(&mut a1, "count me", "alice 1").await;
        expect_agent_run(&mut a2, "count me", "alice 2").await;
        wait_for_metric(server.addr, "userlane_agent_events_sent_total", 5.0);
        let m = metrics(server.addr);
        // Five events to two tabs (greetings are written directly, not queued).
        assert_eq!(m["userlane_messages_queued_total"], 10.0);
        assert_eq!(m["userlane_messages_delivered_total"], 10.0);

        // A forced disconnect shows in the closes by code.
        let reply = delete_connections(server.addr, "bob", Some(SERVICE_TOKEN));
        assert_eq!(reply.json()["closed"], 1);
        assert_eq!(expect_close(&mut b, "bob").await.0, 4001);
        let m = metrics(server.addr);
        assert_eq!(
            m[r#"userlane_closes_total{code="app",reason="application"}"#],
            1.0
        );
        assert_eq!(m["userlane_connections"], 2.0);
    });
}

#[test]
fn the_page_is_served_at_the_root_as_one_self_contained_html_file() {
    let server = Spawn::dev().start();
    let reply = get(server.addr, "/");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = reply.text();
    assert!(html.starts_with("<!doctype html>"), "{}", &html[..40]);
    assert!(html.contains("<title>userlane"));
    assert!(html.contains("/dev/token") && html.contains("new WebSocket("));
    for external in [
        "src=\"http",
        "href=\"http",
        "src=\"//",
        "href=\"//",
        "@import",
    ] {
        assert!(!html.contains(external), "the page loads {external}…");
    }
    assert_eq!(get(server.addr, "/nothing").status, 404);
}

#[test]
fn dev_token_exists_only_in_development() {
    let server = Spawn::dev().start();
    let token = dev_token(server.addr, "alice");
    assert_eq!(token.split('.').count(), 3, "a JWT");
    // Bad requests to it.
    let h = [("Content-Type", "application/json")];
    let bad = http(server.addr, "POST", "/dev/token", &h, b"{\"name\":\"x\"}");
    assert_eq!(bad.status, 400, "{}", bad.text());
    let bad = http(server.addr, "POST", "/dev/token", &h, b"{\"user_id\":\"\"}");
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(http(server.addr, "GET", "/dev/token", &[], b"").status, 404);
    drop(server);

    for env in ["production", "staging", "testing"] {
        let server = Spawn::with_env(env).start();
        let reply = http(
            server.addr,
            "POST",
            "/dev/token",
            &h,
            b"{\"user_id\":\"alice\"}",
        );
        assert_eq!(reply.status, 404, "{env}: {}", reply.text());
    }
    // Development with a configured secret never mints with it: /dev/token
    // is off (anyone reaching the node could otherwise mint tokens that
    // production nodes sharing the secret accept).
    let server = Spawn::dev()
        .env("USERLANE_ENV", "development")
        .env("USERLANE_JWT_SECRET", SECRET)
        .start();
    let reply = http(
        server.addr,
        "POST",
        "/dev/token",
        &h,
        b"{\"user_id\":\"alice\"}",
    );
    assert_eq!(reply.status, 404, "{}", reply.text());
    drop(server);
    // Without one, its tokens are signed with the per-process secret only.
    let server = Spawn::dev().start();
    let token = dev_token(server.addr, "alice");
    let configured = userlane_smol::JwtAuthenticator::hs256(SECRET.as_bytes());
    use userlane_smol::Authenticator as _;
    assert!(configured.authenticate(&token).is_err());
}

#[test]
fn production_refuses_a_missing_token_while_development_admits_it_anonymously() {
    let prod = Spawn::with_env("production").start();
    let dev = Spawn::dev().start();
    run(LIMIT, async {
        for env in ["production", "staging"] {
            let server = if env == "production" {
                None
            } else {
                Some(Spawn::with_env(env).start())
            };
            let addr = server.as_ref().map_or(prod.addr, |s| s.addr);
            assert_eq!(refused_upgrade(addr, "/ws", &[]).await, 401, "{env}");
            assert_eq!(
                refused_upgrade(addr, "/ws?token=", &[]).await,
                401,
                "{env}: empty token"
            );
            let expired = expired_token("alice");
            let auth = format!("Bearer {expired}");
            assert_eq!(
                refused_upgrade(addr, "/ws", &[("Authorization", &auth)]).await,
                401,
                "{env}: expired token"
            );
            // A valid token is admitted, as its user.
            let mut c = connect_with_token(addr, &signed_token("alice")).await;
            expect_greeting(&mut c, "alice", env).await;
        }
        // Development: a fresh anonymous user.
        let (mut anon, _) = ws_connect(dev.addr, "/ws", &[]).await.expect("admitted");
        let g = expect_json(&mut anon, "greeting").await;
        check_greeting(&g, None, "development");
        assert!(g["data"]["user_id"].as_str().unwrap().starts_with("anon-"));
        // Testing behaves like development.
        let testing = Spawn::with_env("testing").start();
        let (mut anon, _) = ws_connect(testing.addr, "/ws", &[])
            .await
            .expect("admitted");
        let g = expect_json(&mut anon, "greeting").await;
        check_greeting(&g, None, "testing");
    });
    assert_eq!(
        metric(prod.addr, r#"userlane_rejections_total{reason="http_401"}"#),
        3.0
    );
    assert_eq!(metric(dev.addr, "userlane_fallback_connections_total"), 1.0);
}

fn expired_token(user: &str) -> String {
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        exp: u64,
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &Claims {
            sub: user,
            // Past the 30 s clock-skew leeway (--jwt-leeway): expired for sure.
            exp: now - 3600,
        },
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[cfg(unix)]
#[test]
fn sigterm_closes_every_client_with_1001_after_its_queued_messages_and_exits_0() {
    let mut server = Spawn::dev().start();
    let addr = server.addr;
    run(LIMIT, async {
        let (mut alice1, _) = connect_dev(addr, "alice").await;
        let (mut alice2, _) = connect_dev(addr, "alice").await;
        let (mut bob, _) = connect_dev(addr, "bob").await;
        let (mut anon, _) = ws_connect(addr, "/ws", &[]).await.expect("anonymous");
        let _greeting = expect_json(&mut anon, "greeting").await;
        let (mut echo, _) = ws_connect(addr, "/echo", &[]).await.expect("echo");
        send_text(&mut echo, "ping").await;
        assert_eq!(recv(&mut echo).await, Recv::Text("ping".into()));

        // Queued before the signal: delivered before the close.
        let reply = post_message(addr, "alice", Some(SERVICE_TOKEN), b"{\"bye\":true}");
        assert_eq!(reply.json()["queued_for"], 2);
        server.sigterm();
        for (client, who) in [(&mut alice1, "alice 1"), (&mut alice2, "alice 2")] {
            assert_eq!(expect_text(client, who).await, "{\"bye\":true}");
        }
        for (client, who) in [
            (&mut alice1, "alice 1"),
            (&mut alice2, "alice 2"),
            (&mut bob, "bob"),
            (&mut anon, "anonymous"),
            (&mut echo, "echo"),
        ] {
            let (code, reason) = expect_close(client, who).await;
            assert_eq!(code, 1001, "{who}: {reason}");
            // Answer the close, as a well-behaved client does.
            let _ = within(Duration::from_secs(1), client.send(Message::Close(None))).await;
        }
    });
    let started = Instant::now();
    let status = server
        .wait_exit(PROCESS_TIMEOUT)
        .unwrap_or_else(|| panic!("still running after SIGTERM:\n{}", server.stderr()));
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    assert!(started.elapsed() < Duration::from_secs(10));
    server.wait_for_log("shutting down: closing every connection with 1001");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "no longer listening"
    );
}

#[cfg(unix)]
#[test]
fn sigterm_with_no_clients_exits_0_at_once() {
    let mut server = Spawn::with_env("production").start();
    let started = Instant::now();
    server.sigterm();
    let status = server.wait_exit(PROCESS_TIMEOUT).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[cfg(unix)]
#[test]
fn sigterm_exits_within_the_deadline_despite_clients_that_stall() {
    use std::io::Write as _;
    let mut server = Spawn::dev().start();
    let addr = server.addr;
    // Connected, never sends a request head.
    let _silent = std::net::TcpStream::connect(addr).unwrap();
    // A request whose body never completes.
    let mut partial = std::net::TcpStream::connect(addr).unwrap();
    partial
        .write_all(b"POST /api/users/alice/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\"")
        .unwrap();
    // An echo client that stays connected and never reads.
    let echo = run(LIMIT, async {
        let (ws, _) = ws_connect(addr, "/echo", &[]).await.expect("echo");
        ws
    });
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    server.sigterm();
    let status = server
        .wait_exit(Duration::from_secs(12))
        .unwrap_or_else(|| {
            panic!(
                "still running {:?} after SIGTERM:\n{}",
                started.elapsed(),
                server.stderr()
            )
        });
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    // Shutdown waits up to 5 s for connections, then drops what is left.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    drop(echo);
}

#[test]
fn healthz_turns_503_and_names_every_tripped_threshold() {
    // A fresh server, never probed before the incident: the window starts
    // with the process. Failures spread over many users are the service's.
    let server = Spawn::dev()
        .args(&[
            "--offline-buffer",
            "1",
            "--ping-interval",
            "1",
            "--idle-timeout",
            "2",
        ])
        .env("USERLANE_AGENT_STEP_MS", "250")
        .start();
    let addr = server.addr;
    // Delivery failures: twenty users get one message into their offline
    // buffer and have a second refused.
    for i in 0..20 {
        let user = format!("offline{i}");
        let first = post_message(addr, &user, Some(SERVICE_TOKEN), b"{}");
        assert_eq!(first.status, 202, "{user}: {}", first.text());
        let second = post_message(addr, &user, Some(SERVICE_TOKEN), b"{}");
        assert_eq!(second.status, 503, "{user}: {}", second.text());
    }
    run(LIMIT, async {
        // Critical (agent) events: ten users leave right after asking; the
        // rest of each run finds no connection and a full offline buffer.
        for i in 0..10 {
            let user = format!("leaver{i}");
            let (mut c, _) = connect_dev(addr, &user).await;
            send_user_message(&mut c, "and goodbye").await;
            let first = expect_json(&mut c, "agent_started").await;
            assert_eq!(first["type"], "agent_started");
            drop(c);
        }
        // Connection drops: ten users' connections stop answering and are
        // closed by the idle timeout (the socket stays open, unread).
        let mut idle = Vec::new();
        for i in 0..10 {
            let token = dev_token(addr, &format!("idle{i}"));
            idle.push(connect_with_token(addr, &token).await);
        }
        wait_for_metric(
            addr,
            r#"userlane_closes_total{code="1000",reason="idle_timeout"}"#,
            10.0,
        );
        drop(idle);
    });
    wait_for_metric(addr, "userlane_agent_events_failed_total", 30.0);
    let reply = get(addr, "/healthz");
    assert_eq!(reply.status, 503, "{}", reply.text());
    let text = reply.text();
    assert!(text.starts_with("unhealthy: "), "{text}");
    for threshold in [
        // 20 posted users and 10 agent users, every one with a refusal.
        "delivery failures 100.0% of users > 5% (30 of 30 users)",
        // 10 agent users' tabs and 10 idle ones opened; the idle ones dropped.
        "connection drop rate 50.0% > 10% (10 of 20)",
        "critical event failures 100.0% of users > 2% (10 of 10 users)",
    ] {
        assert!(text.contains(threshold), "{threshold:?} not in {text:?}");
    }
}

#[test]
fn one_abusive_user_does_not_flip_healthz() {
    let server = Spawn::dev()
        .args(&["--offline-buffer", "1", "--max-message-bytes", "1024"])
        .start();
    let addr = server.addr;
    // Nineteen users are served normally…
    for i in 0..19 {
        let reply = post_message(addr, &format!("fine{i}"), Some(SERVICE_TOKEN), b"{}");
        assert_eq!(reply.status, 202, "{}", reply.text());
    }
    // …while one user has 24 of 25 sends refused (a full offline buffer).
    for i in 0..25 {
        let reply = post_message(addr, "ivan", Some(SERVICE_TOKEN), b"{}");
        assert_eq!(reply.status, if i == 0 { 202 } else { 503 }, "send {i}");
    }
    run(LIMIT, async {
        // And twenty clients are closed for what they sent (1009, too big):
        // their doing, not the node's.
        for i in 0..20 {
            let (mut c, _) = ws_connect(addr, "/ws", &[]).await.expect("anonymous");
            let _greeting = expect_json(&mut c, "greeting").await;
            send_text(&mut c, &"z".repeat(2000)).await;
            assert_eq!(expect_close(&mut c, "oversized").await.0, 1009, "{i}");
        }
    });
    assert_eq!(metric(addr, "userlane_messages_failed_total"), 24.0);
    let reply = get(addr, "/healthz");
    assert_eq!((reply.status, reply.text()), (200, "ok\n".to_owned()));
}
