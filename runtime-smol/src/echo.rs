//! The plain echo endpoint: text and binary messages come back unchanged
//! (fragmented ones reassembled), pings are answered. No user, no manager.

use std::net::TcpStream;

use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use smol::Async;

use crate::handle::{bump, ServerShared};
use crate::http::Replay;

pub(crate) async fn serve(shared: &ServerShared, stream: Replay<Async<TcpStream>>) {
    let cfg = &shared.config;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(cfg.read_buffer_bytes)
        .write_buffer_size(cfg.write_buffer_bytes)
        .max_message_size(Some(cfg.max_message_bytes))
        .max_frame_size(Some(cfg.max_message_bytes));
    let mut ws = match async_tungstenite::accept_async_with_config(stream, Some(ws_config)).await {
        Ok(ws) => ws,
        Err(_) => {
            bump(&shared.counters.handshakes_failed);
            return;
        }
    };
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                if ws.send(m).await.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
}
