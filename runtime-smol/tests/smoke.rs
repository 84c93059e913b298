//! A first end-to-end check: one user, one message, over loopback.
mod support;
use support::*;
use userlane_smol::Environment;

#[test]
fn message_reaches_the_users_connection() {
    let server = start(config(Environment::Production));
    smol::block_on(async {
        let mut alice = connect(server.addr, "alice").await;
        let outcome = server.handle.send_text("alice", "hello alice").unwrap();
        assert_eq!(outcome.queued_for(), 1);
        assert_eq!(next_text(&mut alice).await.as_deref(), Some("hello alice"));
        assert_eq!(refused_status(server.addr, "/ws", None).await, 401);
        assert_eq!(
            refused_status(server.addr, "/ws", Some("garbage")).await,
            401
        );
        assert_eq!(
            refused_status(server.addr, "/nope", Some(&jwt("bob", 60))).await,
            404
        );
    });
}
