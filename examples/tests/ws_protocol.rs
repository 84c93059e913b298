//! The application WebSocket `/ws` of `userlane-server`, end to end over
//! loopback: the greeting, the demo agent's isolation between users, error
//! replies that keep the connection open, and the refusals of the upgrade.

mod support;

use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use support::*;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn the_greeting_is_the_first_frame_with_exactly_the_documented_fields() {
    let server = Spawn::dev()
        .args(&["--max-message-bytes", "4096", "--ping-interval", "7"])
        .start();
    run(LIMIT, async {
        let (mut one, g1) = connect_dev(server.addr, "alice").await;
        let (mut two, g2) = connect_dev(server.addr, "alice").await;
        for g in [&g1, &g2] {
            assert_eq!(g["data"]["config"]["max_message_size"], 4096, "{g}");
            assert_eq!(g["data"]["config"]["heartbeat_interval"], 7, "{g}");
        }
        assert_ne!(
            g1["data"]["connection_id"], g2["data"]["connection_id"],
            "every connection gets its own id"
        );
        // Nothing else is sent unasked.
        assert_silent(&mut one, Duration::from_millis(200), "after the greeting").await;
        assert_silent(&mut two, Duration::from_millis(50), "after the greeting").await;
    });
}

#[test]
fn the_greeting_comes_before_replayed_offline_messages_which_keep_their_order() {
    let server = Spawn::dev().start();
    let bodies: Vec<String> = (1..=3)
        .map(|i| format!(r#"{{"type":"notice","seq":{i},"text":"offline message {i}"}}"#))
        .collect();
    for body in &bodies {
        let reply = post_message(server.addr, "carol", Some(SERVICE_TOKEN), body.as_bytes());
        assert_eq!(reply.status, 202, "{}", reply.text());
        assert_eq!(reply.json(), serde_json::json!({ "buffered": true }));
    }
    run(LIMIT, async {
        let (mut carol, _) = connect_dev(server.addr, "carol").await;
        for body in &bodies {
            assert_eq!(&expect_text(&mut carol, "replayed message").await, body);
        }
        // Replayed once: a second tab gets only its greeting.
        let (mut again, _) = connect_dev(server.addr, "carol").await;
        assert_silent(&mut again, Duration::from_millis(200), "second tab").await;
        assert_silent(&mut carol, Duration::from_millis(50), "first tab").await;
    });
}

#[test]
fn agent_events_reach_every_connection_of_the_user_and_nobody_else() {
    let server = Spawn::dev().start();
    run(LIMIT, async {
        let (mut alice1, _) = connect_dev(server.addr, "alice").await;
        let (mut alice2, _) = connect_dev(server.addr, "alice").await;
        let (mut bob, _) = connect_dev(server.addr, "bob").await;

        send_user_message(&mut alice1, "hello from alice").await;
        let run1 = expect_agent_run(&mut alice1, "hello from alice", "alice tab 1").await;
        let run2 = expect_agent_run(&mut alice2, "hello from alice", "alice tab 2").await;
        assert_eq!(run1, run2, "both tabs see the same run");
        assert_silent(
            &mut bob,
            Duration::from_millis(300),
            "bob during alice's run",
        )
        .await;

        send_user_message(&mut bob, "bob here").await;
        let bob_run = expect_agent_run(&mut bob, "bob here", "bob").await;
        assert_ne!(bob_run, run1);
        assert_silent(&mut alice1, Duration::from_millis(300), "alice tab 1").await;
        assert_silent(&mut alice2, Duration::from_millis(20), "alice tab 2").await;

        // The second tab can start a run too, and the first tab sees it.
        send_user_message(&mut alice2, "from the second tab").await;
        expect_agent_run(&mut alice1, "from the second tab", "alice tab 1").await;
        expect_agent_run(&mut alice2, "from the second tab", "alice tab 2").await;
        assert_silent(&mut bob, Duration::from_millis(200), "bob").await;
    });
    wait_for_metric(server.addr, "userlane_agent_events_sent_total", 15.0);
    assert_eq!(
        metric(server.addr, "userlane_agent_events_failed_total"),
        0.0
    );
}

#[test]
fn bad_frames_get_an_error_message_and_the_connection_stays_open() {
    let server = Spawn::dev().start();
    run(LIMIT, async {
        let (mut tab, _) = connect_dev(server.addr, "alice").await;
        let (mut other_tab, _) = connect_dev(server.addr, "alice").await;
        let cases: [(Message, &str); 6] = [
            (Message::text("{not json"), "INVALID_JSON"),
            (Message::text(r#"{"text":"no type"}"#), "INVALID_JSON"),
            (Message::text(r#"{"type":"dance"}"#), "UNKNOWN_TYPE"),
            (Message::text(r#"{"type":"user_message"}"#), "MISSING_TEXT"),
            (
                Message::text(r#"{"type":"user_message","text":"   "}"#),
                "MISSING_TEXT",
            ),
            (
                Message::binary(vec![0u8, 159, 146, 150]),
                "BINARY_NOT_SUPPORTED",
            ),
        ];
        for (frame, code) in cases {
            let sent = format!("{frame:?}");
            send(&mut tab, frame).await;
            let v = expect_json(&mut tab, &format!("reply to {sent}")).await;
            assert_eq!(
                keys(&v),
                ["error_code", "error_message", "timestamp", "type"],
                "{v}"
            );
            assert_eq!(v["type"], "error_message", "{v}");
            assert_eq!(v["error_code"], code, "reply to {sent}: {v}");
            assert!(!v["error_message"].as_str().unwrap().is_empty(), "{v}");
        }
        // The error went to the tab that sent the frame only.
        assert_silent(&mut other_tab, Duration::from_millis(100), "other tab").await;
        // And the connection still works.
        send_user_message(&mut tab, "still here").await;
        expect_agent_run(&mut tab, "still here", "tab").await;
        expect_agent_run(&mut other_tab, "still here", "other tab").await;
    });
}

#[test]
fn a_message_over_the_limit_closes_the_connection_with_1009() {
    let server = Spawn::dev().args(&["--max-message-bytes", "1024"]).start();
    run(LIMIT, async {
        let (mut tab, _) = connect_dev(server.addr, "alice").await;
        let (mut other_tab, _) = connect_dev(server.addr, "alice").await;
        // At the limit: accepted (an error reply, since it is not JSON).
        send_text(&mut tab, &"x".repeat(1024)).await;
        let v = expect_json(&mut tab, "reply at the limit").await;
        assert_eq!(v["error_code"], "INVALID_JSON");
        // Over the limit: closed with 1009.
        let big = serde_json::json!({ "type": "user_message", "text": "y".repeat(1100) });
        send_text(&mut tab, &big.to_string()).await;
        let (code, reason) = expect_close(&mut tab, "oversized message").await;
        assert_eq!(code, 1009, "{reason}");
        assert_eq!(reason, "message too big");
        // The user's other tab is not affected.
        send_user_message(&mut other_tab, "fine").await;
        expect_agent_run(&mut other_tab, "fine", "other tab").await;
        // Far over the limit (more than the server reads before it refuses):
        // still a clean 1009, not a reset connection.
        let (mut third, _) = connect_dev(server.addr, "alice").await;
        send(&mut third, Message::binary(vec![7u8; 256 * 1024])).await;
        let (code, _) = expect_close(&mut third, "far oversized message").await;
        assert_eq!(code, 1009);
    });
    assert_eq!(
        metric(
            server.addr,
            r#"userlane_closes_total{code="1009",reason="message_too_big"}"#
        ),
        2.0
    );
}

#[test]
fn a_token_is_accepted_as_bearer_header_subprotocol_or_query_parameter() {
    let server = Spawn::dev().start();
    run(LIMIT, async {
        let token = dev_token(server.addr, "dave");
        // Query parameter.
        let (mut q, _) = ws_connect(server.addr, &format!("/ws?token={token}"), &[])
            .await
            .expect("query token");
        expect_greeting(&mut q, "dave", "development").await;
        // Subprotocols, as the browser page sends them; the server selects jwt-auth.
        let proto = format!(
            "jwt-auth, jwt.{}",
            base64url(token.as_bytes()).trim_end_matches('=')
        );
        let (mut p, resp) = ws_connect(server.addr, "/ws", &[("Sec-WebSocket-Protocol", &proto)])
            .await
            .expect("subprotocol token");
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap()),
            Some("jwt-auth")
        );
        expect_greeting(&mut p, "dave", "development").await;
        send_user_message(&mut p, "via subprotocol").await;
        expect_agent_run(&mut p, "via subprotocol", "subprotocol tab").await;
        expect_agent_run(&mut q, "via subprotocol", "query tab").await;
    });
}

#[test]
fn development_admits_a_client_without_a_token_as_a_fresh_anonymous_user() {
    let server = Spawn::dev().start();
    run(LIMIT, async {
        let (mut anon1, _) = ws_connect(server.addr, "/ws", &[]).await.expect("admitted");
        let g1 = expect_json(&mut anon1, "greeting").await;
        check_greeting(&g1, None, "development");
        let (mut anon2, _) = ws_connect(server.addr, "/ws", &[]).await.expect("admitted");
        let g2 = expect_json(&mut anon2, "greeting").await;
        check_greeting(&g2, None, "development");
        let (u1, u2) = (
            g1["data"]["user_id"].as_str().unwrap(),
            g2["data"]["user_id"].as_str().unwrap(),
        );
        assert!(
            u1.starts_with("anon-") && u2.starts_with("anon-"),
            "{u1} {u2}"
        );
        assert_ne!(u1, u2, "each anonymous client is its own user");
        send_user_message(&mut anon1, "anonymous hello").await;
        expect_agent_run(&mut anon1, "anonymous hello", "anonymous 1").await;
        assert_silent(&mut anon2, Duration::from_millis(200), "anonymous 2").await;
    });
    assert_eq!(
        metric(server.addr, "userlane_fallback_connections_total"),
        2.0
    );
    // The fallback is logged as a migration warning.
    server.wait_for_log("migration warning");
}

#[test]
fn bad_tokens_wrong_paths_and_limits_are_refused_before_the_upgrade() {
    let server = Spawn::dev()
        .args(&["--max-connections-per-user", "2"])
        .start();
    run(LIMIT, async {
        let addr = server.addr;
        let forged = userlane_examples::server::tokens::mint(
            b"not-the-server-secret-0123456789",
            "alice",
            60,
            None,
            None,
        )
        .unwrap();
        let bearer = |t: &str| format!("Bearer {t}");
        assert_eq!(
            refused_upgrade(addr, "/ws", &[("Authorization", &bearer(&forged))]).await,
            401,
            "forged token"
        );
        assert_eq!(
            refused_upgrade(addr, "/ws", &[("Authorization", &bearer("garbage"))]).await,
            401,
            "garbage token"
        );
        assert_eq!(
            refused_upgrade(addr, "/ws", &[("Authorization", "Basic YWxpY2U6eA==")]).await,
            400,
            "unreadable credentials"
        );
        let token = dev_token(addr, "alice");
        assert_eq!(
            refused_upgrade(addr, "/nowhere", &[("Authorization", &bearer(&token))]).await,
            404,
            "wrong path"
        );
        // Per-user limit: 2 tabs, the third is refused with 429; bob still gets in.
        let (_a1, _) = connect_dev(addr, "alice").await;
        let (mut a2, _) = connect_dev(addr, "alice").await;
        assert_eq!(
            refused_upgrade(addr, "/ws", &[("Authorization", &bearer(&token))]).await,
            429
        );
        let (_b, _) = connect_dev(addr, "bob").await;
        // Closing a tab frees its place at once.
        send(&mut a2, Message::Close(None)).await;
        let _ = recv(&mut a2).await;
        drop(a2);
        let mut admitted = false;
        for _ in 0..50 {
            match ws_connect(addr, "/ws", &[("Authorization", &bearer(&token))]).await {
                Ok((mut c, _)) => {
                    expect_greeting(&mut c, "alice", "development").await;
                    admitted = true;
                    break;
                }
                Err(_) => smol::Timer::after(Duration::from_millis(20)).await,
            };
        }
        assert!(admitted, "a closed tab's place is freed");
    });
    let m = metrics(server.addr);
    assert_eq!(m[r#"userlane_rejections_total{reason="http_401"}"#], 2.0);
    assert_eq!(m[r#"userlane_rejections_total{reason="http_400"}"#], 1.0);
    assert_eq!(m[r#"userlane_rejections_total{reason="http_404"}"#], 1.0);
    assert!(m[r#"userlane_rejections_total{reason="http_429"}"#] >= 1.0);
}

#[test]
fn a_full_server_refuses_with_503() {
    let server = Spawn::dev()
        .args(&["--max-connections", "2", "--max-connections-per-user", "2"])
        .start();
    run(LIMIT, async {
        let (_a, _) = connect_dev(server.addr, "alice").await;
        let (_b, _) = connect_dev(server.addr, "bob").await;
        let token = dev_token(server.addr, "carol");
        let auth = format!("Bearer {token}");
        assert_eq!(
            refused_upgrade(server.addr, "/ws", &[("Authorization", &auth)]).await,
            503
        );
    });
    assert_eq!(
        metric(
            server.addr,
            r#"userlane_rejections_total{reason="http_503"}"#
        ),
        1.0
    );
}

/// RFC 4648 base64url with padding (the tests trim it where needed).
fn base64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
