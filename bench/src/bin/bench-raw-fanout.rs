//! B-raw: the syscall-bound ceiling for fan-out on this machine. Accepts
//! WebSocket upgrades (handshake by hand), keeps the raw non-blocking
//! sockets, and on `GET /burst?n=10&size=64` writes each message as one
//! pre-encoded frame to every socket: one `write` per socket per message, no
//! framing library, no queue, no manager.
//!
//! `bench-raw-fanout [--listen 127.0.0.1:9702]`

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use userlane_bench::{mono_ns, payload, qnum, query, Args};

/// A subscriber socket and the bytes it could not take yet.
struct Sub {
    sock: TcpStream,
    pending: Vec<u8>,
}

/// A server→client binary frame (no mask).
fn encode(p: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(p.len() + 10);
    f.push(0x82);
    match p.len() {
        n if n < 126 => f.push(n as u8),
        n if n <= 0xffff => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(p);
    f
}

/// Writes `frame` once; keeps what the socket did not take, in order.
fn send(sub: &mut Sub, frame: &[u8]) {
    if !sub.pending.is_empty() {
        sub.pending.extend_from_slice(frame);
        return;
    }
    match sub.sock.write(frame) {
        Ok(n) if n == frame.len() => {}
        Ok(n) => sub.pending.extend_from_slice(&frame[n..]),
        Err(e) if e.kind() == ErrorKind::WouldBlock => sub.pending.extend_from_slice(frame),
        Err(_) => {}
    }
}

/// Flushes what is pending, for at most `limit`.
fn flush(subs: &mut [Sub], limit: Duration) {
    let start = std::time::Instant::now();
    loop {
        let mut left = 0;
        for s in subs.iter_mut().filter(|s| !s.pending.is_empty()) {
            match s.sock.write(&s.pending) {
                Ok(n) => {
                    s.pending.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => s.pending.clear(),
            }
            left += usize::from(!s.pending.is_empty());
        }
        if left == 0 || start.elapsed() > limit {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Reads a request head (blocking, with a timeout).
fn read_head(sock: &mut TcpStream) -> Option<String> {
    sock.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut chunk).ok()?;
        if n == 0 || buf.len() > 16 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(buf).ok()
}

fn main() {
    let args = Args::parse();
    let listen = args.str("listen", "127.0.0.1:9702");
    let listener = TcpListener::bind(&listen).expect("bind");
    println!(
        "READY {} pid {}",
        listener.local_addr().unwrap(),
        std::process::id()
    );
    let mut subs: Vec<Sub> = Vec::new();
    // One thread: accept, handshake, and bursts run in turn, so a burst owns the core.
    for conn in listener.incoming() {
        let Ok(mut sock) = conn else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let _ = sock.set_nodelay(true);
        let Some(head) = read_head(&mut sock) else {
            continue;
        };
        let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let key = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim().to_owned())
        });
        if let Some(key) = key {
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            );
            if sock.write_all(resp.as_bytes()).is_ok() && sock.set_nonblocking(true).is_ok() {
                subs.push(Sub {
                    sock,
                    pending: Vec::new(),
                });
            }
            continue;
        }
        let q = query(&target);
        let body = if target.starts_with("/burst") {
            let n: u64 = qnum(&q, "n", 10);
            let base: u64 = qnum(&q, "seq", 0);
            let size = qnum(&q, "size", 64usize);
            let t0 = mono_ns();
            for i in 0..n {
                let frame = encode(&payload(base + i, mono_ns(), size));
                for s in subs.iter_mut() {
                    send(s, &frame);
                }
            }
            flush(&mut subs, Duration::from_secs(10));
            format!(
                "published {n} to {} sockets in {} us\n",
                subs.len(),
                (mono_ns() - t0) / 1000
            )
        } else if target.starts_with("/reset") {
            subs.clear();
            "reset\n".to_owned()
        } else {
            "unknown\n".to_owned()
        };
        let _ = sock.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
}
