//! The plain echo endpoint: text and binary messages come back unchanged
//! (fragmented ones reassembled), pings are answered. No user, no manager.

use std::net::TcpStream;

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use smol::Async;
use userlane_core::CloseReason;

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
    let echo = async {
        loop {
            // Shutdown closes this channel: say goodbye with 1001 like every connection.
            let stopping = async {
                let _ = shared.stop_accepting_rx.recv().await;
                None
            };
            match smol::future::or(async { Some(ws.next().await) }, stopping).await {
                Some(Some(Ok(m @ (Message::Text(_) | Message::Binary(_))))) => {
                    if ws.send(m).await.is_err() {
                        break;
                    }
                }
                Some(Some(Ok(_))) => {}
                Some(Some(Err(_)) | None) => break,
                None => {
                    let frame = CloseFrame {
                        code: CloseCode::Away,
                        reason: CloseReason::ServerShutdown.as_str().into(),
                    };
                    let _ = ws.close(Some(frame)).await;
                    break;
                }
            }
        }
    };
    // A peer that stops reading is dropped at the shutdown deadline.
    smol::future::or(echo, crate::connection::killed(shared)).await;
}
