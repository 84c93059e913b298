//! Refusals: before the upgrade they are HTTP statuses (400, 401, 404, 429,
//! 503), after it WebSocket close codes (1007, 1009, 4001 from the
//! application, 1000 on deactivation). Each is counted, and a refusal of one
//! connection never touches the others.
mod support;

use std::time::Duration;

use async_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use async_tungstenite::tungstenite::protocol::frame::Frame;
use async_tungstenite::tungstenite::{self, Message};
use base64::Engine as _;
use support::*;
use userlane_smol::userlane_core::CloseCode;
use userlane_smol::{Environment, UserError};

const OTHER_SECRET: &[u8] = b"some-other-secret-0123456789abcdef";

const ENVIRONMENTS: [Environment; 4] = [
    Environment::Production,
    Environment::Staging,
    Environment::Development,
    Environment::Testing,
];

fn b64url(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[test]
fn invalid_and_expired_tokens_are_401_in_every_environment() {
    let now = unix_now();
    let bad_tokens = [
        "garbage".to_owned(),
        "a.b.c".to_owned(),
        // Right shape, wrong key.
        sign(
            &Claims {
                sub: Some("mallory"),
                exp: Some(now + 300),
                ..Claims::default()
            },
            OTHER_SECRET,
        ),
        // Expired a minute ago.
        jwt("alice", -60),
        // No subject.
        sign(
            &Claims {
                exp: Some(now + 300),
                ..Claims::default()
            },
            SECRET,
        ),
        // No expiry.
        sign(
            &Claims {
                sub: Some("alice"),
                ..Claims::default()
            },
            SECRET,
        ),
    ];
    for env in ENVIRONMENTS {
        let server = start(config(env));
        smol::block_on(async {
            for (i, token) in bad_tokens.iter().enumerate() {
                assert_eq!(
                    refused_status(server.addr, "/ws", Some(token)).await,
                    401,
                    "{env}: bad token #{i} in the Authorization header"
                );
            }
            // The other two ways to carry a token are checked the same way.
            let expired = jwt("alice", -60);
            assert_eq!(
                refused_request(
                    server.addr,
                    request(server.addr, &format!("/ws?token={expired}"))
                )
                .await,
                401,
                "{env}: expired token in the query"
            );
            let req = with_header(
                request(server.addr, "/ws"),
                "sec-websocket-protocol",
                &format!("jwt-auth, jwt.{}", b64url(&expired)),
            );
            assert_eq!(
                refused_request(server.addr, req).await,
                401,
                "{env}: expired token in the subprotocol"
            );
            // A valid token still gets in.
            let mut ok = connect(server.addr, "alice").await;
            server.handle.send_text("alice", "in").unwrap();
            assert_eq!(recv(&mut ok).await, Recv::Text("in".into()));
        });
        let stats = server.stats();
        assert_eq!(
            stats.rejected_unauthorized,
            bad_tokens.len() as u64 + 2,
            "{env}"
        );
        // A bad token never falls back to an anonymous user, even in development.
        assert_eq!(stats.fallback_connections, 0, "{env}");
        assert_eq!(stats.core.total_connections_managed, 1, "{env}");
        assert_eq!(stats.core.managers_created, 1, "{env}");
        assert_consistent(&stats);
    }
}

#[test]
fn the_per_user_limit_is_429_and_frees_up_when_a_tab_closes() {
    let mut cfg = config(Environment::Production);
    cfg.max_connections_per_user = 2;
    let server = start(cfg);
    smol::block_on(async {
        let mut tabs = connect_tabs(server.addr, "alice", 2).await;
        let token = jwt("alice", 300);
        assert_eq!(refused_status(server.addr, "/ws", Some(&token)).await, 429);
        assert_eq!(refused_status(server.addr, "/ws", Some(&token)).await, 429);
        // Another user is not affected by alice's limit.
        let mut bob = connect(server.addr, "bob").await;
        // The refused attempts did not disturb alice's open tabs.
        assert_eq!(
            server.handle.send_text("alice", "a").unwrap().queued_for(),
            2
        );
        for tab in tabs.iter_mut() {
            assert_eq!(recv(tab).await, Recv::Text("a".into()));
        }
        server.handle.send_text("bob", "b").unwrap();
        assert_eq!(recv(&mut bob).await, Recv::Text("b".into()));

        tabs.pop().unwrap().close(None).await.unwrap();
        assert!(
            eventually(Duration::from_secs(5), || server
                .handle
                .user_connections("alice")
                .len()
                == 1)
            .await
        );
        let _again = connect(server.addr, "alice").await;
        assert_eq!(server.handle.user_connections("alice").len(), 2);
    });
    let stats = server.stats();
    assert_eq!(stats.rejected_user_limit, 2);
    assert_eq!(stats.core.rejected_connections_per_user, 2);
    assert_eq!(stats.rejected_server_full, 0);
    assert_consistent(&stats);
}

#[test]
fn a_full_server_is_503_for_everyone() {
    let mut cfg = config(Environment::Production);
    cfg.max_connections = 3;
    cfg.max_connections_per_user = 2;
    let server = start(cfg);
    smol::block_on(async {
        let mut open = Vec::new();
        for user in ["alice", "bob", "carol"] {
            open.push(connect(server.addr, user).await);
        }
        assert_eq!(
            refused_status(server.addr, "/ws", Some(&jwt("dave", 300))).await,
            503
        );
        // Also for a user below their own limit.
        assert_eq!(
            refused_status(server.addr, "/ws", Some(&jwt("alice", 300))).await,
            503
        );
        // One leaves, one more may come in.
        open.remove(0).close(None).await.unwrap();
        assert!(
            eventually(Duration::from_secs(5), || server
                .stats()
                .core
                .connections_active
                == 2)
            .await
        );
        let mut dave = connect(server.addr, "dave").await;
        server.handle.send_text("dave", "welcome").unwrap();
        assert_eq!(recv(&mut dave).await, Recv::Text("welcome".into()));
    });
    let stats = server.stats();
    assert_eq!(stats.rejected_server_full, 2);
    assert_eq!(stats.rejected_user_limit, 0);
    assert_consistent(&stats);
}

#[test]
fn a_wrong_path_is_404() {
    let server = start(config(Environment::Production));
    let token = jwt("alice", 300);
    smol::block_on(async {
        for path in ["/", "/nope", "/ws/extra", "/WS"] {
            assert_eq!(
                refused_status(server.addr, path, Some(&token)).await,
                404,
                "{path}"
            );
        }
    });
    let stats = server.stats();
    assert_eq!(stats.rejected_not_found, 4);
    assert_eq!(stats.rejected_unauthorized, 0);
    assert_eq!(stats.core.total_connections_managed, 0);
}

#[test]
fn unreadable_credentials_are_400() {
    let server = start(config(Environment::Development));
    smol::block_on(async {
        let cases = [
            with_header(
                request(server.addr, "/ws"),
                "authorization",
                "Basic YWxpY2U6cHc=",
            ),
            with_header(
                request(server.addr, "/ws"),
                "authorization",
                "Token abc.def.ghi",
            ),
            with_header(request(server.addr, "/ws"), "authorization", "Bearer"),
            with_header(
                request(server.addr, "/ws"),
                "sec-websocket-protocol",
                "jwt-auth, jwt.!!!",
            ),
            request(server.addr, "/ws?token=%zz"),
        ];
        for (i, req) in cases.into_iter().enumerate() {
            let (status, resp_body) = match connect_request(server.addr, req).await {
                Err(tungstenite::Error::Http(resp)) => {
                    (resp.status().as_u16(), resp.body().clone())
                }
                Ok(_) => panic!("case {i}: admitted"),
                Err(e) => panic!("case {i}: {e}"),
            };
            assert_eq!(status, 400, "case {i}");
            let body = String::from_utf8(resp_body.unwrap_or_default()).unwrap();
            assert!(body.contains("malformed"), "case {i}: body {body:?}");
        }
    });
    let stats = server.stats();
    assert_eq!(stats.rejected_bad_request, 5);
    // Development never turns unreadable credentials into an anonymous user.
    assert_eq!(stats.fallback_connections, 0);
    assert_eq!(stats.core.total_connections_managed, 0);
}

#[test]
fn a_message_over_max_message_bytes_closes_only_that_connection_with_1009() {
    let mut cfg = config(Environment::Production);
    cfg.max_message_bytes = 1024;
    let handler = TestHandler::echo();
    let server = start_with(cfg, handler.clone());
    let stats = smol::block_on(async {
        let mut big = connect(server.addr, "alice").await;
        let mut other = connect(server.addr, "alice").await;
        // Exactly the limit is fine.
        send_text(&mut big, &"x".repeat(1024)).await;
        let expected = format!("echo|alice|{}", "x".repeat(1024));
        assert_eq!(recv(&mut big).await, Recv::Text(expected.clone()));
        assert_eq!(recv(&mut other).await, Recv::Text(expected));
        // One byte over is not.
        send_text(&mut big, &"y".repeat(1025)).await;
        assert_eq!(
            close_frame(&mut big).await,
            Some((1009, "message too big".into()))
        );
        // The user's other tab keeps working.
        send_text(&mut other, "still here").await;
        assert_eq!(
            recv(&mut other).await,
            Recv::Text("echo|alice|still here".into())
        );
        server.stats()
    });
    assert_eq!(stats.closed_message_too_big, 1);
    assert_eq!(stats.core.closed_application, 1);
    assert_eq!(handler.state.inbound.lock().unwrap().len(), 2);
    assert_consistent(&stats);
}

#[test]
fn invalid_utf8_text_closes_the_connection_with_1007() {
    let server = start(config(Environment::Production));
    smol::block_on(async {
        let mut bad = connect(server.addr, "alice").await;
        let mut bob = connect(server.addr, "bob").await;
        let frame = Frame::message(vec![0xff, 0xfe, 0xfd], OpCode::Data(Data::Text), true);
        within(RECV_TIMEOUT, bad.send(Message::Frame(frame)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            close_frame(&mut bad).await,
            Some((1007, "invalid UTF-8".into()))
        );
        server.handle.send_text("bob", "unaffected").unwrap();
        assert_eq!(recv(&mut bob).await, Recv::Text("unaffected".into()));
    });
    assert_eq!(server.stats().closed_invalid_utf8, 1);
}

#[test]
fn disconnect_user_closes_every_tab_with_the_application_code_after_queued_messages() {
    let server = start(config(Environment::Production));
    let stats = smol::block_on(async {
        let mut alice = connect_tabs(server.addr, "alice", 2).await;
        let mut bob = connect(server.addr, "bob").await;
        assert_eq!(
            server
                .handle
                .send_text("alice", "last words")
                .unwrap()
                .queued_for(),
            2
        );
        let code = CloseCode::new(4001).unwrap();
        assert_eq!(
            server
                .handle
                .disconnect_user("alice", code, "kicked by admin"),
            2
        );
        for tab in alice.iter_mut() {
            assert_eq!(recv(tab).await, Recv::Text("last words".into()));
            assert_eq!(recv(tab).await, Recv::Close(4001, "kicked by admin".into()));
        }
        // Nobody else is touched.
        server.handle.send_text("bob", "still here").unwrap();
        assert_eq!(recv(&mut bob).await, Recv::Text("still here".into()));
        assert_eq!(server.handle.disconnect_user("nobody", code, "x"), 0);
        // The closed tabs no longer count: alice may come back at once.
        assert!(server.handle.user_connections("alice").is_empty());
        let mut back = connect(server.addr, "alice").await;
        server.handle.send_text("alice", "welcome back").unwrap();
        assert_eq!(recv(&mut back).await, Recv::Text("welcome back".into()));
        server.stats()
    });
    assert_eq!(stats.core.closed_application, 2);
    assert_eq!(stats.core.messages_dropped, 0);
    assert_consistent(&stats);
}

#[test]
fn deactivate_user_closes_with_1000_and_unknown_users_are_an_error() {
    let server = start(config(Environment::Production));
    smol::block_on(async {
        let mut alice = connect(server.addr, "alice").await;
        assert_eq!(server.handle.deactivate_user("alice"), Ok(1));
        assert_eq!(
            recv(&mut alice).await,
            Recv::Close(1000, "user manager deactivated".into())
        );
        assert_eq!(
            server.handle.deactivate_user("nobody"),
            Err(UserError::UnknownUser)
        );
    });
    let stats = server.stats();
    assert_eq!(stats.core.closed_deactivated, 1);
    assert_eq!(stats.core.managers_deactivated, 1);
    assert_consistent(&stats);
}
