//! Shared by the peer servers: the bench's wire helpers (clock, payload,
//! arguments, query; `bench/src/wire.rs`, the same file the userlane bench
//! servers and the load client use), the `READY` line `bench/run.sh` waits
//! for, a current-thread tokio runtime and the listener.
//!
//! Every peer is pinned to one core by `bench/run.sh`, so each runs tokio's
//! current-thread runtime, as fastwebsockets' own examples do.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[path = "../../src/wire.rs"]
mod wire;
pub use wire::{mono_ns, parse_payload, payload, qnum, query, user_ids, Args};

/// The tungstenite buffers userlane-smol and B-echo use (4 KiB read, 4 KiB
/// write, 64 KiB messages): `--buffers 4k` of the tokio-tungstenite peers.
pub fn small_buffers() -> WebSocketConfig {
    const KIB: usize = 1024;
    WebSocketConfig::default()
        .read_buffer_size(4 * KIB)
        .write_buffer_size(4 * KIB)
        .max_write_buffer_size(4 * KIB + 2 * 64 * KIB + KIB)
        .max_message_size(Some(64 * KIB))
        .max_frame_size(Some(64 * KIB))
}

/// Runs `main` on a current-thread tokio runtime with a listener bound to
/// `--listen` (default `127.0.0.1:0`), after printing `READY addr pid N`.
pub fn serve<F, Fut>(args: &Args, main: F)
where
    F: FnOnce(TcpListener) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let listen: SocketAddr = args
        .str("listen", "127.0.0.1:0")
        .parse()
        .expect("--listen is an address");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(listen).await.expect("bind");
        println!(
            "READY {} pid {}",
            listener.local_addr().expect("local address"),
            std::process::id()
        );
        main(listener).await;
    });
}

/// The next accepted connection, with `TCP_NODELAY` set (as every bench
/// server does); accept errors (descriptor limits) back off 50 ms.
pub async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                return stream;
            }
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
