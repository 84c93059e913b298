//! `GET /echo` of `userlane-server`: a plain WebSocket echo for protocol
//! conformance in development and testing, absent in production.

mod support;

use std::time::Duration;

use async_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use async_tungstenite::tungstenite::protocol::frame::Frame;
use async_tungstenite::tungstenite::Message;
use support::*;

const LIMIT: Duration = Duration::from_secs(60);

/// Sends `parts` as one fragmented message: the first frame with `opcode`,
/// the rest as continuation frames, the last one final; a ping goes between
/// the first two fragments (control frames may interleave).
async fn send_fragmented(client: &mut Client, opcode: Data, parts: &[&[u8]]) {
    for (i, part) in parts.iter().enumerate() {
        let op = if i == 0 { opcode } else { Data::Continue };
        let last = i + 1 == parts.len();
        send(
            client,
            Message::Frame(Frame::message(part.to_vec(), OpCode::Data(op), last)),
        )
        .await;
        if i == 0 {
            send(client, Message::Ping(b"between".to_vec().into())).await;
        }
    }
}

#[test]
fn echo_returns_text_binary_large_and_fragmented_messages_and_answers_pings() {
    let server = Spawn::dev().start();
    run(LIMIT, async {
        // No token needed, no greeting: a plain echo.
        let (mut ws, _) = ws_connect(server.addr, "/echo", &[])
            .await
            .expect("echo upgrade");
        send_text(&mut ws, "hello, echo \u{1f50a}").await;
        assert_eq!(
            recv(&mut ws).await,
            Recv::Text("hello, echo \u{1f50a}".into())
        );
        let bytes: Vec<u8> = (0..=255u8).collect();
        send(&mut ws, Message::binary(bytes.clone())).await;
        assert_eq!(recv(&mut ws).await, Recv::Binary(bytes));
        send(&mut ws, Message::binary(Vec::new())).await;
        assert_eq!(recv(&mut ws).await, Recv::Binary(Vec::new()));

        // Pings are answered with their payload.
        send(&mut ws, Message::Ping(b"are you there".to_vec().into())).await;
        assert_eq!(recv(&mut ws).await, Recv::Pong(b"are you there".to_vec()));

        // Large: just under the 64 KiB default limit, both kinds.
        let large_text: String = "0123456789abcdef".repeat(4000);
        send_text(&mut ws, &large_text).await;
        assert_eq!(recv(&mut ws).await, Recv::Text(large_text));
        let large_bin: Vec<u8> = (0..65_000u32).map(|i| (i % 251) as u8).collect();
        send(&mut ws, Message::binary(large_bin.clone())).await;
        assert_eq!(recv(&mut ws).await, Recv::Binary(large_bin));

        // Fragmented: reassembled and echoed as one message; the ping sent
        // between fragments is answered first.
        send_fragmented(
            &mut ws,
            Data::Text,
            &[b"frag", "ment\u{e9}".as_bytes(), b"d"],
        )
        .await;
        assert_eq!(recv(&mut ws).await, Recv::Pong(b"between".to_vec()));
        assert_eq!(recv(&mut ws).await, Recv::Text("fragment\u{e9}d".into()));
        // A multi-byte character split across two fragments.
        let snow = "\u{2603}".as_bytes();
        send_fragmented(&mut ws, Data::Text, &[&snow[..1], &snow[1..]]).await;
        assert_eq!(recv(&mut ws).await, Recv::Pong(b"between".to_vec()));
        assert_eq!(recv(&mut ws).await, Recv::Text("\u{2603}".into()));
        send_fragmented(&mut ws, Data::Binary, &[&[1, 2], &[3], &[], &[4, 5, 6]]).await;
        assert_eq!(recv(&mut ws).await, Recv::Pong(b"between".to_vec()));
        assert_eq!(recv(&mut ws).await, Recv::Binary(vec![1, 2, 3, 4, 5, 6]));

        // A clean close is answered.
        send(&mut ws, Message::Close(None)).await;
        assert!(
            matches!(recv(&mut ws).await, Recv::Close(..) | Recv::Ended(_)),
            "close answered"
        );
    });
}

#[test]
fn echo_serves_several_clients_independently() {
    let server = Spawn::with_env("testing").start();
    run(LIMIT, async {
        let (mut a, _) = ws_connect(server.addr, "/echo", &[]).await.expect("echo a");
        let (mut b, _) = ws_connect(server.addr, "/echo", &[]).await.expect("echo b");
        send_text(&mut a, "for a").await;
        send_text(&mut b, "for b").await;
        assert_eq!(recv(&mut b).await, Recv::Text("for b".into()));
        assert_eq!(recv(&mut a).await, Recv::Text("for a".into()));
        assert_silent(&mut a, Duration::from_millis(100), "a").await;
    });
    // A plain GET (no upgrade) is told to upgrade.
    assert_eq!(get(server.addr, "/echo").status, 426);
}

#[test]
fn echo_does_not_exist_in_production() {
    for env in ["production", "staging"] {
        let server = Spawn::with_env(env).start();
        run(LIMIT, async {
            assert_eq!(
                refused_upgrade(server.addr, "/echo", &[]).await,
                404,
                "{env}"
            );
            // Not even with a valid token.
            let auth = format!("Bearer {}", signed_token("alice"));
            assert_eq!(
                refused_upgrade(server.addr, "/echo", &[("Authorization", &auth)]).await,
                404,
                "{env}"
            );
        });
        assert_eq!(get(server.addr, "/echo").status, 404, "{env}");
        assert_eq!(
            metric(
                server.addr,
                r#"userlane_rejections_total{reason="http_404"}"#
            ),
            2.0
        );
    }
}
