//! B-echo: a plain smol + async-tungstenite echo server with no manager and
//! the same tungstenite buffers as userlane-smol (4 KiB read, 4 KiB write,
//! 64 KiB messages). `--default-buffers` uses tungstenite's defaults
//! (128 KiB read buffer) to show what the configuration saves.
//!
//! `bench-echo-server [--listen 127.0.0.1:9701] [--default-buffers]`

use std::net::TcpListener;
use std::time::Duration;

use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use smol::Async;
use userlane_bench::{ws_config, Args};

fn main() {
    let args = Args::parse();
    let listen = args.str("listen", "127.0.0.1:9701");
    let config = if args.flag("default-buffers") {
        WebSocketConfig::default()
    } else {
        ws_config()
    };
    smol::block_on(async {
        let listener =
            Async::<TcpListener>::bind(listen.parse::<std::net::SocketAddr>().expect("--listen"))
                .expect("bind");
        println!(
            "READY {} pid {}",
            listener.get_ref().local_addr().unwrap(),
            std::process::id()
        );
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("accept: {e}");
                    smol::Timer::after(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.get_ref().set_nodelay(true);
            smol::spawn(async move {
                let Ok(mut ws) =
                    async_tungstenite::accept_async_with_config(stream, Some(config)).await
                else {
                    return;
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
            })
            .detach();
        }
    })
}
