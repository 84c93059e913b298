//! Peer for fan-out: the "broadcast to per-connection channels" pattern of
//! tokio applications. Each connection registers a bounded
//! `tokio::sync::mpsc` sender (depth 64, as userlane's queues) under its user
//! id in a `Mutex<HashMap<String, Vec<Sender>>>`; a writer task per connection
//! takes what its channel holds, feeds it to the tokio-tungstenite sink and
//! flushes once per batch. The user is the `token` query parameter, as the
//! load client sends it.
//!
//! `GET /burst?users=N&prefix=u&n=10&size=64&seq=0` on the same port makes
//! `n` publishes back to back, each stamped with `CLOCK_MONOTONIC` and sent
//! to every user `prefix0..N` (a full channel drops the message and counts
//! it), as `bench-userlane-server` does.
//!
//! `peer-tokio-fanout [--listen 127.0.0.1:0] [--buffers 4k|default]`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;
use userlane_bench_peers::{
    accept, mono_ns, payload, qnum, query, serve, small_buffers, user_ids, Args,
};

/// Queue depth per connection, as userlane's default.
const DEPTH: usize = 64;

type Registry = Arc<Mutex<HashMap<String, Vec<(u64, mpsc::Sender<Message>)>>>>;

/// The request head, without consuming it: an upgrade then goes through
/// tokio-tungstenite's own handshake on the untouched stream.
async fn peek_head(stream: &TcpStream) -> Option<String> {
    let mut buf = vec![0u8; 16 * 1024];
    for _ in 0..10_000 {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if let Some(end) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            return String::from_utf8(buf[..end + 4].to_vec()).ok();
        }
        if n == buf.len() {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

async fn websocket(stream: TcpStream, registry: Registry, id: u64, buffers: bool) {
    let mut user = String::new();
    // The error type is tungstenite's (`ErrorResponse`), not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| {
        user = query(&req.uri().to_string())
            .remove("token")
            .unwrap_or_default();
        Ok(resp)
    };
    let config = buffers.then(small_buffers);
    let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, config).await
    else {
        return;
    };
    let (tx, mut rx) = mpsc::channel::<Message>(DEPTH);
    registry
        .lock()
        .unwrap()
        .entry(user.clone())
        .or_default()
        .push((id, tx));
    let (mut sink, mut stream) = ws.split();
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.feed(m).await.is_err() {
                return;
            }
            while let Ok(m) = rx.try_recv() {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(_)) = stream.next().await {}
    writer.abort();
    let mut reg = registry.lock().unwrap();
    if let Some(conns) = reg.get_mut(&user) {
        conns.retain(|(c, _)| *c != id);
        if conns.is_empty() {
            reg.remove(&user);
        }
    }
}

/// `n` publishes to every user `prefix0..N`; the reply body.
fn burst(registry: &Registry, target: &str) -> String {
    let q = query(target);
    let users = user_ids(
        &q.get("prefix").cloned().unwrap_or("u".into()),
        qnum(&q, "users", 0),
    );
    let n: u64 = qnum(&q, "n", 10);
    let base: u64 = qnum(&q, "seq", 0);
    let size = qnum(&q, "size", 64usize);
    let t0 = mono_ns();
    let mut dropped = 0u64;
    for i in 0..n {
        let msg = Message::binary(payload(base + i, mono_ns(), size));
        let reg = registry.lock().unwrap();
        for u in &users {
            for (_, tx) in reg.get(u).map(Vec::as_slice).unwrap_or(&[]) {
                dropped += u64::from(tx.try_send(msg.clone()).is_err());
            }
        }
    }
    format!(
        "published {n} to {} users in {} us, dropped {dropped}\n",
        users.len(),
        (mono_ns() - t0) / 1000
    )
}

async fn http(mut stream: TcpStream, head_len: usize, target: &str, registry: &Registry) {
    let mut head = vec![0u8; head_len];
    if stream.read_exact(&mut head).await.is_err() {
        return;
    }
    let (status, body) = if target.starts_with("/burst") {
        ("200 OK", burst(registry, target))
    } else {
        ("404 Not Found", "not found\n".to_owned())
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
}

fn main() {
    let args = Args::parse();
    let buffers = match args.str("buffers", "4k").as_str() {
        "default" => false,
        "4k" => true,
        other => panic!("--buffers {other}: default or 4k"),
    };
    let registry = Registry::default();
    serve(&args, |listener| async move {
        for id in 0u64.. {
            let stream = accept(&listener).await;
            let registry = registry.clone();
            tokio::spawn(async move {
                let Some(head) = peek_head(&stream).await else {
                    return;
                };
                if head.to_ascii_lowercase().contains("sec-websocket-key:") {
                    websocket(stream, registry, id, buffers).await;
                } else {
                    let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    http(stream, head.len(), &target, &registry).await;
                }
            });
        }
    });
}
