//! The plain echo endpoint: text and binary messages come back unchanged
//! (fragmented ones reassembled), pings are answered. No user, no manager,
//! but the same bounds as every connection: it counts toward
//! `max_connections` (admitted in `admission::admit_echo`), is pinged every
//! `ping_interval`, is closed with 1000 after `idle_timeout` without an
//! inbound frame, with 1001 at shutdown, and dropped at the shutdown deadline.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use futures_util::StreamExt;
use smol::{Async, Timer};
use userlane_core::CloseReason;

use crate::http::Replay;
use crate::state::ServerShared;

type Stream = Replay<Async<TcpStream>>;

/// What woke the echo loop.
enum Wake {
    Frame(Option<Result<Message, async_tungstenite::tungstenite::Error>>),
    Ping,
    Idle,
    Shutdown,
}

/// Sends `m` within `limit`; false if the send failed or took longer.
async fn bounded_send(ws: &mut WebSocketStream<Stream>, m: Message, limit: Duration) -> bool {
    smol::future::or(async { ws.send(m).await.is_ok() }, async {
        Timer::after(limit).await;
        false
    })
    .await
}

/// Echoes until the peer leaves, the connection idles out or the server stops.
pub(crate) async fn serve(shared: &ServerShared, mut ws: WebSocketStream<Stream>) {
    let cfg = &shared.config;
    let echo = async {
        let mut last_inbound = Instant::now();
        let mut next_ping = Instant::now() + cfg.ping_interval;
        let close = loop {
            let idle_at = last_inbound + cfg.idle_timeout;
            let wake = smol::future::or(
                async { Wake::Frame(ws.next().await) },
                smol::future::or(
                    async {
                        // Shutdown closes this channel.
                        shared.lifecycle.accepting_stopped().await;
                        Wake::Shutdown
                    },
                    async {
                        if next_ping < idle_at {
                            Timer::at(next_ping).await;
                            Wake::Ping
                        } else {
                            Timer::at(idle_at).await;
                            Wake::Idle
                        }
                    },
                ),
            )
            .await;
            match wake {
                Wake::Frame(Some(Ok(m))) => {
                    last_inbound = Instant::now();
                    // A peer that does not read its echoes gets `close_grace`
                    // per send, then the socket is dropped: a blocked send
                    // must not outlive the idle and ping timers.
                    if matches!(m, Message::Text(_) | Message::Binary(_))
                        && !bounded_send(&mut ws, m, cfg.close_grace).await
                    {
                        break None;
                    }
                }
                Wake::Frame(Some(Err(_)) | None) => break None,
                Wake::Ping => {
                    next_ping = Instant::now() + cfg.ping_interval;
                    if !bounded_send(&mut ws, Message::Ping(Default::default()), cfg.close_grace)
                        .await
                    {
                        break None;
                    }
                }
                Wake::Idle => {
                    break Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: CloseReason::IdleTimeout.as_str().into(),
                    })
                }
                Wake::Shutdown => {
                    break Some(CloseFrame {
                        code: CloseCode::Away,
                        reason: CloseReason::ServerShutdown.as_str().into(),
                    })
                }
            }
        };
        if let Some(frame) = close {
            // Bounded like every server-side close: a peer that does not
            // read gets `close_grace`, then the socket is dropped.
            let _ = smol::future::or(
                async {
                    let _ = ws.close(Some(frame)).await;
                },
                async {
                    Timer::after(cfg.close_grace).await;
                },
            )
            .await;
        }
    };
    // A peer that stops reading is dropped at the shutdown deadline.
    smol::future::or(echo, shared.lifecycle.killed()).await;
}
