//! A panic in the application's handler is contained: the connection it ran
//! for is closed with 1011 (or, in `on_disconnect`, simply counted), every
//! other connection keeps working, and the panic is counted.
mod support;

use std::sync::Once;
use std::time::Duration;

use support::*;
use userlane_smol::Environment;

/// Keeps the expected panics of the test handler out of the test output;
/// any other panic is reported as usual.
fn quiet_expected_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let expected = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|m| m.starts_with("test handler panics"));
            if !expected {
                default(info);
            }
        }));
    });
}

#[test]
fn a_panic_in_on_message_closes_only_that_connection_with_1011() {
    quiet_expected_panics();
    let handler = TestHandler::echo();
    let server = start_with(config(Environment::Production), handler.clone());
    let stats = smol::block_on(async {
        let mut faulty = connect(server.addr, "alice").await;
        let mut sibling = connect(server.addr, "alice").await;
        let mut bob = connect(server.addr, "bob").await;
        send_text(&mut faulty, "hello").await;
        for tab in [&mut faulty, &mut sibling] {
            assert_eq!(recv(tab).await, Recv::Text("echo|alice|hello".into()));
        }

        send_text(&mut faulty, "panic").await;
        assert_eq!(
            recv(&mut faulty).await,
            Recv::Close(1011, "internal error".into())
        );

        // The same user's other tab and other users carry on.
        send_text(&mut sibling, "after").await;
        assert_eq!(
            recv(&mut sibling).await,
            Recv::Text("echo|alice|after".into())
        );
        send_text(&mut bob, "bob here").await;
        assert_eq!(recv(&mut bob).await, Recv::Text("echo|bob|bob here".into()));
        assert!(
            eventually(Duration::from_secs(5), || server
                .handle
                .user_connections("alice")
                .len()
                == 1)
            .await
        );
        assert_eq!(
            server
                .handle
                .send_text("alice", "svc")
                .unwrap()
                .queued_for(),
            1
        );
        assert_eq!(recv(&mut sibling).await, Recv::Text("svc".into()));
        // And alice can open a new tab in place of the failed one.
        let mut again = connect(server.addr, "alice").await;
        send_text(&mut again, "back").await;
        assert_eq!(recv(&mut again).await, Recv::Text("echo|alice|back".into()));
        assert_eq!(
            recv(&mut sibling).await,
            Recv::Text("echo|alice|back".into())
        );
        server.stats()
    });
    assert_eq!(stats.handler_panics, 1);
    assert_eq!(stats.closed_handler_panic, 1);
    assert_eq!(stats.core.closed_application, 1);
    assert_eq!(stats.core.connections_active, 3);
    assert_consistent(&stats);
    assert_eq!(handler.echo_errors(), 0);
}

#[test]
fn a_panic_in_greeting_closes_only_that_connection_with_1011() {
    quiet_expected_panics();
    let handler = TestHandler {
        greet: true,
        panic_greeting_for: Some("mallory".into()),
        ..TestHandler::default()
    };
    let server = start_with(config(Environment::Production), handler);
    let stats = smol::block_on(async {
        let mut alice = connect(server.addr, "alice").await;
        assert_eq!(
            recv(&mut alice).await,
            Recv::Text("hello|alice|false".into())
        );
        let mut mallory = connect(server.addr, "mallory").await;
        assert_eq!(
            recv(&mut mallory).await,
            Recv::Close(1011, "internal error".into())
        );
        server.handle.send_text("alice", "unaffected").unwrap();
        assert_eq!(recv(&mut alice).await, Recv::Text("unaffected".into()));
        assert!(
            eventually(Duration::from_secs(5), || server
                .handle
                .user_connections("mallory")
                .is_empty())
            .await
        );
        server.stats()
    });
    assert_eq!(stats.handler_panics, 1);
    assert_eq!(stats.closed_handler_panic, 1);
    assert_eq!(stats.core.closed_application, 1);
    assert_consistent(&stats);
}

#[test]
fn a_panic_in_on_disconnect_is_counted_and_frees_the_connection() {
    quiet_expected_panics();
    let handler = TestHandler {
        echo: true,
        panic_disconnect_for: Some("dora".into()),
        ..TestHandler::default()
    };
    let mut cfg = config(Environment::Production);
    cfg.max_connections_per_user = 1;
    let server = start_with(cfg, handler.clone());
    smol::block_on(async {
        let mut bob = connect(server.addr, "bob").await;
        for round in 0..3 {
            let mut dora = connect(server.addr, "dora").await;
            send_text(&mut dora, "hi").await;
            assert_eq!(recv(&mut dora).await, Recv::Text("echo|dora|hi".into()));
            dora.close(None).await.unwrap();
            assert!(
                eventually(Duration::from_secs(5), || server.stats().handler_panics
                    == round + 1)
                .await
            );
        }
        // dora's place was freed every time (limit 1), and bob never noticed.
        send_text(&mut bob, "still fine").await;
        assert_eq!(
            recv(&mut bob).await,
            Recv::Text("echo|bob|still fine".into())
        );
    });
    let stats = server.stats();
    assert_eq!(stats.handler_panics, 3);
    // The connections were already gone: none of them was closed with 1011.
    assert_eq!(stats.closed_handler_panic, 0);
    assert_eq!(stats.rejected_user_limit, 0);
    assert_consistent(&stats);
}

#[test]
fn a_panic_in_the_http_service_is_a_500_and_closes_no_connection() {
    use std::io::{Read, Write};
    use userlane_smol::{HttpFuture, HttpRequest, HttpService, ServerHandle};
    struct Panicking;
    impl HttpService for Panicking {
        fn handle<'a>(&'a self, _s: &'a ServerHandle, _r: HttpRequest) -> HttpFuture<'a> {
            Box::pin(async { panic!("test handler panics in the HTTP service") })
        }
    }
    quiet_expected_panics();
    let server = start_with_http(config(Environment::Testing), Panicking);
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /boom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
    let stats = server.stats();
    assert_eq!(stats.handler_panics, 1);
    assert_eq!(stats.closed_handler_panic, 0);
    assert_eq!(stats.core.closed_application, 0);
    assert_consistent(&stats);
}
