//! Peer: the echo server a tokio-tungstenite user writes. One task per
//! connection, `accept_async_with_config`, `next()` then `send()`.
//!
//! `peer-tokio-tungstenite [--listen 127.0.0.1:0] [--buffers default|4k]`:
//! `default` is tungstenite's own configuration (128 KiB read buffer), `4k`
//! the buffers userlane-smol uses.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use userlane_bench_peers::{accept, serve, small_buffers, Args};

fn main() {
    let args = Args::parse();
    let config = match args.str("buffers", "default").as_str() {
        "default" => None,
        "4k" => Some(small_buffers()),
        other => panic!("--buffers {other}: default or 4k"),
    };
    serve(&args, |listener| async move {
        loop {
            let stream = accept(&listener).await;
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, config).await
                else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if matches!(msg, Message::Text(_) | Message::Binary(_))
                        && ws.send(msg).await.is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
}
