//! Environments and identity: production and staging need a secret and a
//! token; development and testing admit a missing token as a fresh,
//! isolated anonymous user. The token may come in the Authorization header,
//! in the `jwt.<base64url>` subprotocol (answered with `jwt-auth`) or in the
//! `token` query parameter.
mod support;

use std::time::Duration;

use base64::Engine as _;
use support::*;
use userlane_smol::{ConfigError, Environment, Server, StartError};

fn b64url(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// The greeting's `(user, anonymous)`.
fn greeted(r: Recv) -> (String, bool) {
    let Recv::Text(text) = r else {
        panic!("expected a greeting, got {r:?}")
    };
    let parts: Vec<&str> = text.split('|').collect();
    assert_eq!(parts.len(), 3, "{text}");
    assert_eq!(parts[0], "hello");
    (parts[1].to_owned(), parts[2] == "true")
}

#[test]
fn production_and_staging_refuse_to_start_without_a_secret() {
    for env in [Environment::Production, Environment::Staging] {
        let mut cfg = config(env);
        cfg.jwt_secret = None;
        match Server::builder(cfg).bind("127.0.0.1:0".parse().unwrap()) {
            Err(StartError::Config(ConfigError::MissingSecret(e))) => assert_eq!(e, env),
            Err(other) => panic!("{env}: wrong error {other}"),
            Ok(_) => panic!("{env}: started without a secret"),
        }
    }
}

#[test]
fn production_and_staging_reject_a_missing_token_with_401() {
    for env in [Environment::Production, Environment::Staging] {
        let server = start_with(config(env), TestHandler::greeting());
        smol::block_on(async {
            assert_eq!(refused_status(server.addr, "/ws", None).await, 401, "{env}");
            // An empty token is no token.
            assert_eq!(
                refused_request(server.addr, request(server.addr, "/ws?token=")).await,
                401,
                "{env}"
            );
            // Only the jwt-auth marker, no token.
            let req = with_header(
                request(server.addr, "/ws"),
                "sec-websocket-protocol",
                "jwt-auth",
            );
            assert_eq!(refused_request(server.addr, req).await, 401, "{env}");
            let mut alice = connect(server.addr, "alice").await;
            assert_eq!(greeted(recv(&mut alice).await), ("alice".into(), false));
        });
        let stats = server.stats();
        assert_eq!(stats.rejected_unauthorized, 3, "{env}");
        assert_eq!(stats.fallback_connections, 0, "{env}");
        assert_eq!(stats.core.managers_created, 1, "{env}");
    }
}

#[test]
fn development_and_testing_admit_a_missing_token_as_isolated_anonymous_users() {
    for env in [Environment::Development, Environment::Testing] {
        let server = start_with(config(env), TestHandler::greeting());
        let stats = smol::block_on(async {
            let (mut first, _) = connect_raw(server.addr, "/ws", None).await.unwrap();
            let (mut second, _) = connect_raw(server.addr, "/ws", None).await.unwrap();
            let (id1, anon1) = greeted(recv(&mut first).await);
            let (id2, anon2) = greeted(recv(&mut second).await);
            assert!(anon1 && anon2, "{env}");
            assert!(
                id1.starts_with("anon-") && id2.starts_with("anon-"),
                "{env}"
            );
            assert_ne!(id1, id2, "{env}: two anonymous clients share a user");

            // Each anonymous user is its own lane.
            assert_eq!(
                server
                    .handle
                    .send_text(&id1, "for the first")
                    .unwrap()
                    .queued_for(),
                1
            );
            assert_eq!(
                server
                    .handle
                    .send_text(&id2, "for the second")
                    .unwrap()
                    .queued_for(),
                1
            );
            assert_eq!(recv(&mut first).await, Recv::Text("for the first".into()));
            assert_eq!(recv(&mut second).await, Recv::Text("for the second".into()));
            assert_silent(&mut first, Duration::from_millis(50), "first").await;
            assert_silent(&mut second, Duration::from_millis(50), "second").await;
            let conns = server.handle.user_connections(&id1);
            assert_eq!(conns.len(), 1);
            assert!(conns[0].anonymous());

            // A real token is still a real user, not a fallback.
            let mut carol = connect(server.addr, "carol").await;
            assert_eq!(greeted(recv(&mut carol).await), ("carol".into(), false));
            server.stats()
        });
        assert_eq!(stats.fallback_connections, 2, "{env}");
        assert_eq!(stats.core.managers_active, 3, "{env}");
        assert_eq!(stats.core.connections_active, 3, "{env}");
        assert_eq!(stats.rejected_unauthorized, 0, "{env}");
        assert_consistent(&stats);
    }
}

#[test]
fn development_without_a_secret_refuses_a_token_it_cannot_verify() {
    let mut cfg = config(Environment::Development);
    cfg.jwt_secret = None;
    let server = start_with(cfg, TestHandler::greeting());
    smol::block_on(async {
        assert_eq!(
            refused_status(server.addr, "/ws", Some(&jwt("alice", 300))).await,
            401
        );
        let (mut anon, _) = connect_raw(server.addr, "/ws", None).await.unwrap();
        let (_, anonymous) = greeted(recv(&mut anon).await);
        assert!(anonymous);
    });
    let stats = server.stats();
    assert_eq!(stats.rejected_unauthorized, 1);
    assert_eq!(stats.fallback_connections, 1);
}

#[test]
fn a_token_in_the_subprotocol_is_accepted_and_jwt_auth_is_selected() {
    let server = start_with(config(Environment::Production), TestHandler::greeting());
    smol::block_on(async {
        let token = jwt("dana", 300);
        let req = with_header(
            request(server.addr, "/ws"),
            "sec-websocket-protocol",
            &format!("jwt-auth, jwt.{}", b64url(&token)),
        );
        let (mut dana, resp) = connect_request(server.addr, req).await.unwrap();
        assert_eq!(resp.status().as_u16(), 101);
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap()),
            Some("jwt-auth")
        );
        assert_eq!(greeted(recv(&mut dana).await), ("dana".into(), false));
        server.handle.send_text("dana", "via subprotocol").unwrap();
        assert_eq!(recv(&mut dana).await, Recv::Text("via subprotocol".into()));
    });
}

#[test]
fn a_token_in_the_query_is_accepted() {
    let server = start_with(config(Environment::Production), TestHandler::greeting());
    smol::block_on(async {
        let token = jwt("erin", 300);
        let (mut erin, resp) = connect_request(
            server.addr,
            request(server.addr, &format!("/ws?lang=en&token={token}")),
        )
        .await
        .unwrap();
        // No subprotocol was offered, none is selected.
        assert!(resp.headers().get("sec-websocket-protocol").is_none());
        assert_eq!(greeted(recv(&mut erin).await), ("erin".into(), false));
        server.handle.send_text("erin", "via query").unwrap();
        assert_eq!(recv(&mut erin).await, Recv::Text("via query".into()));
    });
}

#[test]
fn thread_and_run_come_from_the_token_and_every_connection_gets_a_fresh_request_id() {
    let server = start(config(Environment::Production));
    let token = sign(
        &Claims {
            sub: Some("frank"),
            exp: Some(unix_now() + 300),
            thread_id: Some("thread-42"),
            run_id: Some("run-7"),
        },
        SECRET,
    );
    smol::block_on(async {
        let _a = connect_raw(server.addr, "/ws", Some(&token)).await.unwrap();
        let _b = connect_raw(server.addr, "/ws", Some(&token)).await.unwrap();
        let _c = connect(server.addr, "frank").await;
        let conns = server.handle.user_connections("frank");
        assert_eq!(conns.len(), 3);
        let from_token: Vec<_> = conns
            .iter()
            .filter(|c| c.context().thread_id() == "thread-42")
            .collect();
        assert_eq!(from_token.len(), 2);
        assert!(from_token.iter().all(|c| c.context().run_id() == "run-7"));
        // The token without them got generated ones.
        let generated = conns
            .iter()
            .find(|c| c.context().thread_id() != "thread-42")
            .unwrap();
        assert!(!generated.context().thread_id().is_empty());
        assert!(!generated.context().run_id().is_empty());
        let mut request_ids: Vec<&str> = conns.iter().map(|c| c.context().request_id()).collect();
        request_ids.sort();
        request_ids.dedup();
        assert_eq!(request_ids.len(), 3, "request ids are per connection");
    });
}
