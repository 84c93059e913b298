//! The service API of `userlane-server` for back-end services, end to end:
//! `POST /api/users/{id}/messages` and `DELETE /api/users/{id}/connections`,
//! every success and every refusal.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn a_posted_body_reaches_every_connection_of_the_user_unchanged_as_one_text_frame() {
    let server = Spawn::dev().start();
    run(LIMIT, async {
        let (mut alice1, _) = connect_dev(server.addr, "alice").await;
        let (mut alice2, _) = connect_dev(server.addr, "alice").await;
        let (mut bob, _) = connect_dev(server.addr, "bob").await;
        // Odd spacing, key order and non-ASCII text: delivered byte for byte.
        let body =
            "{ \"type\": \"notice\",\n  \"text\": \"build finished \u{2713}\", \"n\": [1, 2.50] }";
        let reply = post_message(server.addr, "alice", Some(SERVICE_TOKEN), body.as_bytes());
        assert_eq!(reply.status, 202, "{}", reply.text());
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(reply.json(), json!({ "queued_for": 2 }));
        assert_eq!(expect_text(&mut alice1, "alice tab 1").await, body);
        assert_eq!(expect_text(&mut alice2, "alice tab 2").await, body);
        assert_silent(&mut bob, Duration::from_millis(200), "bob").await;
        // One connection: queued_for 1.
        let reply = post_message(server.addr, "bob", Some(SERVICE_TOKEN), b"[1,2,3]");
        assert_eq!(reply.json(), json!({ "queued_for": 1 }));
        assert_eq!(expect_text(&mut bob, "bob").await, "[1,2,3]");
        assert_silent(&mut alice1, Duration::from_millis(100), "alice tab 1").await;
        // A user id with characters that need percent-encoding in the path.
        let (mut mail, _) = connect_dev(server.addr, "a b@example.com").await;
        let reply = post_message(
            server.addr,
            "a%20b%40example.com",
            Some(SERVICE_TOKEN),
            b"{\"x\":1}",
        );
        assert_eq!(reply.json(), json!({ "queued_for": 1 }));
        assert_eq!(
            expect_text(&mut mail, "percent-encoded user").await,
            "{\"x\":1}"
        );
    });
    let m = metrics(server.addr);
    assert_eq!(m["userlane_messages_failed_total"], 0.0);
}

#[test]
fn a_message_for_a_user_without_connections_is_buffered_and_replayed_on_connect() {
    let server = Spawn::dev().start();
    let reply = post_message(
        server.addr,
        "erin",
        Some(SERVICE_TOKEN),
        br#"{"type":"notice","text":"while you were away"}"#,
    );
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_eq!(reply.json(), json!({ "buffered": true }));
    assert_eq!(metric(server.addr, "userlane_offline_buffered"), 1.0);
    run(LIMIT, async {
        let (mut erin, _) = connect_dev(server.addr, "erin").await;
        assert_eq!(
            expect_text(&mut erin, "replayed").await,
            r#"{"type":"notice","text":"while you were away"}"#
        );
        // A user who connected and left is buffered for too.
        drop(erin);
    });
    assert_eq!(metric(server.addr, "userlane_offline_buffered"), 0.0);
    let mut buffered = false;
    for _ in 0..100 {
        let reply = post_message(
            server.addr,
            "erin",
            Some(SERVICE_TOKEN),
            b"{\"again\":true}",
        );
        assert_eq!(reply.status, 202);
        if reply.json() == json!({ "buffered": true }) {
            buffered = true;
            break;
        }
        // The dropped socket may not be noticed yet: that message was queued for it.
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(buffered, "a user whose last tab left gets buffering again");
}

#[test]
fn an_unknown_user_is_404_when_buffering_is_off() {
    let server = Spawn::dev().args(&["--offline-buffer", "0"]).start();
    let reply = post_message(server.addr, "nobody", Some(SERVICE_TOKEN), b"{}");
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_eq!(reply.json(), json!({ "error": "unknown user" }));
    run(LIMIT, async {
        // Known while connected ...
        let (mut frank, _) = connect_dev(server.addr, "frank").await;
        let reply = post_message(server.addr, "frank", Some(SERVICE_TOKEN), b"{}");
        assert_eq!(reply.json(), json!({ "queued_for": 1 }));
        assert_eq!(expect_text(&mut frank, "frank").await, "{}");
        send(
            &mut frank,
            async_tungstenite::tungstenite::Message::Close(None),
        )
        .await;
        let _ = recv(&mut frank).await;
    });
    // ... and 404 again once no connection is left (nothing is held).
    let mut status = 0;
    for _ in 0..100 {
        status = post_message(server.addr, "frank", Some(SERVICE_TOKEN), b"{}").status;
        if status == 404 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(status, 404);
}

#[test]
fn a_body_over_the_message_limit_is_413() {
    let server = Spawn::dev().args(&["--max-message-bytes", "1024"]).start();
    let at_limit = format!("{{\"pad\":\"{}\"}}", "a".repeat(1024 - 10));
    assert_eq!(at_limit.len(), 1024);
    let reply = post_message(
        server.addr,
        "gina",
        Some(SERVICE_TOKEN),
        at_limit.as_bytes(),
    );
    assert_eq!(reply.status, 202, "at the limit: {}", reply.text());
    let over = format!("{{\"pad\":\"{}\"}}", "a".repeat(1024 - 9));
    let reply = post_message(server.addr, "gina", Some(SERVICE_TOKEN), over.as_bytes());
    assert_eq!(reply.status, 413, "one byte over: {}", reply.text());
    // Far over the limit, sent in full by the client: still a clean 413.
    let huge = format!("{{\"pad\":\"{}\"}}", "a".repeat(512 * 1024));
    let reply = post_message(server.addr, "gina", Some(SERVICE_TOKEN), huge.as_bytes());
    assert_eq!(reply.status, 413, "{}", reply.text());
}

#[test]
fn a_full_offline_buffer_is_503_and_what_it_holds_is_replayed() {
    let server = Spawn::dev().args(&["--offline-buffer", "2"]).start();
    for i in 1..=2 {
        let reply = post_message(
            server.addr,
            "hank",
            Some(SERVICE_TOKEN),
            format!("{{\"n\":{i}}}").as_bytes(),
        );
        assert_eq!(reply.json(), json!({ "buffered": true }), "message {i}");
    }
    let reply = post_message(server.addr, "hank", Some(SERVICE_TOKEN), b"{\"n\":3}");
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("offline buffer"));
    assert_eq!(
        metric(
            server.addr,
            r#"userlane_rejections_total{reason="offline_buffer_full"}"#
        ),
        1.0
    );
    run(LIMIT, async {
        let (mut hank, _) = connect_dev(server.addr, "hank").await;
        assert_eq!(expect_text(&mut hank, "first").await, "{\"n\":1}");
        assert_eq!(expect_text(&mut hank, "second").await, "{\"n\":2}");
        assert_silent(&mut hank, Duration::from_millis(200), "the refused one").await;
    });
}

#[test]
fn users_without_a_connection_hold_at_most_a_quarter_of_the_slots_then_503() {
    // 8 users on one shard: messages for offline users may create 2 managers.
    let server = Spawn::dev()
        .args(&["--max-connections", "8", "--shards", "1"])
        .start();
    for user in ["ivy", "jack"] {
        let reply = post_message(server.addr, user, Some(SERVICE_TOKEN), b"{}");
        assert_eq!(reply.json(), json!({ "buffered": true }), "{user}");
    }
    let reply = post_message(server.addr, "kate", Some(SERVICE_TOKEN), b"{}");
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("users without a connection"));
    // Users who already have a manager are still reached ...
    let reply = post_message(server.addr, "ivy", Some(SERVICE_TOKEN), b"{\"n\":2}");
    assert_eq!(reply.json(), json!({ "buffered": true }));
    run(LIMIT, async {
        // ... and users who connect are never refused for it.
        let (mut kate, _) = connect_dev(server.addr, "kate").await;
        let (mut ivy, _) = connect_dev(server.addr, "ivy").await;
        assert_eq!(expect_text(&mut ivy, "buffered").await, "{}");
        assert_eq!(expect_text(&mut ivy, "second").await, "{\"n\":2}");
        let reply = post_message(server.addr, "kate", Some(SERVICE_TOKEN), b"{}");
        assert_eq!(reply.json(), json!({ "queued_for": 1 }));
        assert_eq!(expect_text(&mut kate, "live").await, "{}");
    });
}

#[test]
fn the_service_api_needs_the_service_token_and_nothing_else() {
    let server = Spawn::dev().start();
    let addr = server.addr;
    let user_jwt = dev_token(addr, "alice");
    let refusals: [(&str, Option<&str>); 4] = [
        ("no token", None),
        ("wrong token", Some("service-token-for-tests-0124")),
        ("a prefix of the token", Some("service-token")),
        ("a user JWT", Some(&user_jwt)),
    ];
    for (what, token) in refusals {
        let reply = post_message(addr, "alice", token, b"{}");
        assert_eq!(reply.status, 401, "POST with {what}: {}", reply.text());
        assert_eq!(
            reply.json(),
            json!({ "error": "a valid service token is required" })
        );
        let reply = delete_connections(addr, "alice", token);
        assert_eq!(reply.status, 401, "DELETE with {what}: {}", reply.text());
    }
    // Other schemes are refused too.
    let basic = http(
        addr,
        "POST",
        "/api/users/alice/messages",
        &[("Authorization", &format!("Basic {SERVICE_TOKEN}"))],
        b"{}",
    );
    assert_eq!(basic.status, 401);
    // Nothing was buffered by the refused calls.
    assert_eq!(metric(addr, "userlane_offline_buffered"), 0.0);
    assert_eq!(
        post_message(addr, "alice", Some(SERVICE_TOKEN), b"{}").status,
        202
    );
}

#[test]
fn without_a_configured_service_token_the_api_answers_401_to_everyone() {
    let server = Spawn::dev().no_env("USERLANE_SERVICE_TOKEN").start();
    for token in [None, Some(""), Some(SERVICE_TOKEN)] {
        let reply = post_message(server.addr, "alice", token, b"{}");
        assert_eq!(reply.status, 401, "token {token:?}");
    }
    server.wait_for_log("USERLANE_SERVICE_TOKEN is not set");
}

#[test]
fn a_body_that_is_not_json_is_400() {
    let server = Spawn::dev().start();
    let bodies: [&[u8]; 5] = [
        b"hello",
        b"",
        b"{\"unterminated\": ",
        b"{\"a\":1} trailing",
        b"\"\xff\xfe\"",
    ];
    for body in bodies {
        let reply = post_message(server.addr, "alice", Some(SERVICE_TOKEN), body);
        assert_eq!(
            reply.status,
            400,
            "body {:?}",
            String::from_utf8_lossy(body)
        );
        assert!(reply.json()["error"].as_str().is_some());
    }
    assert_eq!(metric(server.addr, "userlane_offline_buffered"), 0.0);
    // A user id that cannot be decoded.
    let reply = post_message(server.addr, "%zz", Some(SERVICE_TOKEN), b"{}");
    assert_eq!(reply.status, 400, "{}", reply.text());
}

#[test]
fn delete_closes_each_connection_of_the_user_with_4001_and_nobody_elses() {
    let server = Spawn::dev().start();
    run(LIMIT, async {
        let (mut alice1, _) = connect_dev(server.addr, "alice").await;
        let (mut alice2, _) = connect_dev(server.addr, "alice").await;
        let (mut bob, _) = connect_dev(server.addr, "bob").await;
        // A message queued just before is still delivered, then the close.
        let reply = post_message(server.addr, "alice", Some(SERVICE_TOKEN), b"{\"last\":1}");
        assert_eq!(reply.json(), json!({ "queued_for": 2 }));
        let reply = delete_connections(server.addr, "alice", Some(SERVICE_TOKEN));
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json(), json!({ "closed": 2 }));
        for (tab, name) in [(&mut alice1, "alice tab 1"), (&mut alice2, "alice tab 2")] {
            assert_eq!(expect_text(tab, name).await, "{\"last\":1}");
            let (code, reason) = expect_close(tab, name).await;
            assert_eq!(code, 4001, "{name}: {reason}");
            assert_eq!(reason, "disconnected by service");
        }
        // Bob is untouched and still served.
        send_user_message(&mut bob, "still connected").await;
        expect_agent_run(&mut bob, "still connected", "bob").await;
        // Nobody left to close.
        let reply = delete_connections(server.addr, "alice", Some(SERVICE_TOKEN));
        assert_eq!(reply.json(), json!({ "closed": 0 }));
        let reply = delete_connections(server.addr, "never-seen", Some(SERVICE_TOKEN));
        assert_eq!(reply.json(), json!({ "closed": 0 }));
        // Alice may come back at once.
        let (mut back, _) = connect_dev(server.addr, "alice").await;
        send_user_message(&mut back, "back again").await;
        expect_agent_run(&mut back, "back again", "alice").await;
    });
    assert_eq!(
        metric(
            server.addr,
            r#"userlane_closes_total{code="app",reason="application"}"#
        ),
        2.0
    );
}

#[test]
fn every_forced_close_carries_the_service_reason() {
    // The close frame's reason must never race the close itself.
    let server = Spawn::dev().start();
    run(LIMIT, async {
        for round in 0..15 {
            let user = format!("round-{round}");
            let (mut one, _) = connect_dev(server.addr, &user).await;
            let (mut two, _) = connect_dev(server.addr, &user).await;
            let reply = delete_connections(server.addr, &user, Some(SERVICE_TOKEN));
            assert_eq!(reply.json(), json!({ "closed": 2 }));
            for tab in [&mut one, &mut two] {
                assert_eq!(
                    expect_close(tab, &user).await,
                    (4001, "disconnected by service".to_owned()),
                    "round {round}"
                );
            }
        }
    });
}

#[test]
fn wrong_methods_on_api_paths_are_405_and_unknown_paths_404() {
    let server = Spawn::dev().start();
    let auth = format!("Bearer {SERVICE_TOKEN}");
    let h = [("Authorization", auth.as_str())];
    assert_eq!(
        http(server.addr, "GET", "/api/users/alice/messages", &h, b"").status,
        405
    );
    assert_eq!(
        http(server.addr, "POST", "/api/users/alice/connections", &h, b"").status,
        405
    );
    assert_eq!(
        http(server.addr, "GET", "/api/nothing", &h, b"").status,
        405
    );
    assert_eq!(
        http(server.addr, "GET", "/nothing/here", &h, b"").status,
        404
    );
}

/// `POST {path}` with the test service token (or `token`) and a JSON body.
fn post_batch(
    addr: std::net::SocketAddr,
    path: &str,
    token: &str,
    body: &serde_json::Value,
) -> HttpReply {
    let auth = format!("Bearer {token}");
    http(
        addr,
        "POST",
        path,
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        body.to_string().as_bytes(),
    )
}

#[test]
fn a_batch_answers_one_result_per_item_in_order_and_a_bad_item_spoils_nothing() {
    let server = Spawn::dev().args(&["--max-message-bytes", "64"]).start();
    run(LIMIT, async {
        let (mut alice1, _) = connect_dev(server.addr, "alice").await;
        let (mut alice2, _) = connect_dev(server.addr, "alice").await;
        let (mut bob, _) = connect_dev(server.addr, "bob").await;
        // The payload's text is delivered as it stands in the request.
        let raw = r#"{"items":[
            {"user":"alice","payload":{ "n" : 1, "t":"caf\u00e9" }},
            {"payload":{"no":"user"}},
            {"user":"bob","payload":[1, 2]},
            {"user":"","payload":1},
            {"user":"bob","payload":"0123456789012345678901234567890123456789012345678901234567890123"},
            {"user":"carol","payload":{"later":true}},
            {"user":"alice","payload":2}
        ]}"#;
        let auth = format!("Bearer {SERVICE_TOKEN}");
        let reply = http(
            server.addr,
            "POST",
            "/api/send-batch",
            &[("Authorization", &auth)],
            raw.as_bytes(),
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        let item = "an item is {\"user\": \"…\", \"payload\": …}";
        assert_eq!(
            reply.json(),
            json!({"results": [
                {"status": 202, "queued_for": 2},
                {"status": 400, "error": item},
                {"status": 202, "queued_for": 1},
                {"status": 400, "error": "bad user id"},
                {"status": 413, "error": "payload over the message size limit"},
                {"status": 202, "buffered": true},
                {"status": 202, "queued_for": 2},
            ]})
        );
        for (tab, what) in [(&mut alice1, "alice 1"), (&mut alice2, "alice 2")] {
            assert_eq!(
                expect_text(tab, what).await,
                r#"{ "n" : 1, "t":"caf\u00e9" }"#
            );
            assert_eq!(expect_text(tab, what).await, "2");
        }
        assert_eq!(expect_text(&mut bob, "bob").await, "[1, 2]");
        assert_silent(&mut bob, Duration::from_millis(200), "bob").await;
        let (mut carol, _) = connect_dev(server.addr, "carol").await;
        assert_eq!(expect_text(&mut carol, "carol").await, r#"{"later":true}"#);
    });
}

#[test]
fn send_many_gives_one_payload_to_each_user_with_one_result_each() {
    let server = Spawn::dev().args(&["--offline-buffer", "0"]).start();
    run(LIMIT, async {
        let (mut alice, _) = connect_dev(server.addr, "alice").await;
        let (mut bob1, _) = connect_dev(server.addr, "bob").await;
        let (mut bob2, _) = connect_dev(server.addr, "bob").await;
        let body = json!({"users": ["alice", 7, "bob", "nobody", ""], "payload": {"all": "hands"}});
        let reply = post_batch(server.addr, "/api/send-many", SERVICE_TOKEN, &body);
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            reply.json(),
            json!({"results": [
                {"status": 202, "queued_for": 1},
                {"status": 400, "error": "a user id is a string"},
                {"status": 202, "queued_for": 2},
                {"status": 404, "error": "unknown user"},
                {"status": 400, "error": "bad user id"},
            ]})
        );
        for (c, what) in [
            (&mut alice, "alice"),
            (&mut bob1, "bob 1"),
            (&mut bob2, "bob 2"),
        ] {
            assert_eq!(expect_text(c, what).await, r#"{"all":"hands"}"#);
            assert_silent(c, Duration::from_millis(100), what).await;
        }
    });
}

#[test]
fn batch_calls_are_bounded_and_authorized_and_a_refused_call_sends_nothing() {
    let server = Spawn::dev()
        .args(&["--max-batch-items", "3", "--max-batch-bytes", "300"])
        .start();
    run(LIMIT, async {
        let (mut alice, _) = connect_dev(server.addr, "alice").await;
        let four = json!({"items": (0..4).map(|i| json!({"user": "alice", "payload": i})).collect::<Vec<_>>()});
        let reply = post_batch(server.addr, "/api/send-batch", SERVICE_TOKEN, &four);
        assert_eq!(
            (reply.status, reply.json()),
            (413, json!({"error": "over 3 items"}))
        );
        let many = json!({"users": ["alice", "alice", "alice", "alice"], "payload": 1});
        let reply = post_batch(server.addr, "/api/send-many", SERVICE_TOKEN, &many);
        assert_eq!(
            (reply.status, reply.json()),
            (413, json!({"error": "over 3 users"}))
        );
        let big = json!({"users": ["alice"], "payload": "x".repeat(300)});
        let reply = post_batch(server.addr, "/api/send-many", SERVICE_TOKEN, &big);
        assert_eq!(
            (reply.status, reply.json()),
            (413, json!({"error": "body over the batch size limit"}))
        );
        let one = json!({"items": [{"user": "alice", "payload": 1}]});
        for path in ["/api/send-batch", "/api/send-many"] {
            let reply = post_batch(server.addr, path, "wrong-token", &one);
            assert_eq!(reply.status, 401, "{path}");
            assert_eq!(
                reply.json(),
                json!({"error": "a valid service token is required"})
            );
            let reply = post_batch(server.addr, path, SERVICE_TOKEN, &json!([1, 2]));
            assert_eq!(reply.status, 400, "{path}: {}", reply.text());
            assert_eq!(http(server.addr, "GET", path, &[], b"").status, 405);
        }
        assert_silent(&mut alice, Duration::from_millis(200), "alice").await;
        // Three items fit.
        let three = json!({"items": (0..3).map(|i| json!({"user": "alice", "payload": i})).collect::<Vec<_>>()});
        let reply = post_batch(server.addr, "/api/send-batch", SERVICE_TOKEN, &three);
        assert_eq!(reply.status, 200, "{}", reply.text());
        for i in 0..3 {
            assert_eq!(expect_text(&mut alice, "alice").await, i.to_string());
        }
    });
}

#[test]
fn a_back_end_sends_many_requests_over_one_kept_alive_connection() {
    use std::io::{Read, Write};
    let server = Spawn::dev()
        .args(&["--max-requests-per-connection", "4"])
        .start();
    run(LIMIT, async {
        let (mut alice, _) = connect_dev(server.addr, "alice").await;
        let mut t = std::net::TcpStream::connect(server.addr).unwrap();
        t.set_read_timeout(Some(RECV_TIMEOUT)).unwrap();
        let request = |path: &str, body: &str| {
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SERVICE_TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        // Two pipelined in one write, then one batch, then one more: the
        // fourth is the bound, answered with Connection: close.
        let mut first = request("/api/users/alice/messages", "1");
        first.push_str(&request("/api/users/alice/messages", "2"));
        t.write_all(first.as_bytes()).unwrap();
        let mut answers = Vec::new();
        let mut read_answer = |t: &mut std::net::TcpStream| {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                assert_eq!(t.read(&mut byte).unwrap(), 1, "answer cut short");
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
            let len: usize = head
                .split("content-length: ")
                .nth(1)
                .and_then(|v| v.split("\r\n").next())
                .unwrap()
                .parse()
                .unwrap();
            let mut body = vec![0u8; len];
            t.read_exact(&mut body).unwrap();
            let keep = head.contains("connection: keep-alive");
            answers.push((
                head[9..12].to_owned(),
                keep,
                String::from_utf8(body).unwrap(),
            ));
        };
        read_answer(&mut t);
        read_answer(&mut t);
        let batch = r#"{"items":[{"user":"alice","payload":3},{"user":"alice","payload":4}]}"#;
        t.write_all(request("/api/send-batch", batch).as_bytes())
            .unwrap();
        read_answer(&mut t);
        t.write_all(request("/api/users/alice/messages", "5").as_bytes())
            .unwrap();
        read_answer(&mut t);
        let queued = r#"{"queued_for":1}"#.to_owned();
        let batch_answer =
            r#"{"results":[{"queued_for":1,"status":202},{"queued_for":1,"status":202}]}"#;
        assert_eq!(
            answers,
            [
                ("202".to_owned(), true, queued.clone()),
                ("202".to_owned(), true, queued.clone()),
                ("200".to_owned(), true, batch_answer.to_owned()),
                ("202".to_owned(), false, queued),
            ]
        );
        assert!(
            matches!(t.read(&mut [0u8; 1]), Ok(0) | Err(_)),
            "closed at the bound"
        );
        for i in 1..=5 {
            assert_eq!(expect_text(&mut alice, "alice").await, i.to_string());
        }
    });
}
