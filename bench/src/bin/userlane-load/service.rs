//! `service --addr A --secret S --token T --users 200 --batch 500 --secs 5
//! --max-messages 1000000 [--call batch|many] [--server-pid P]`: one back
//! end driving the example server's service API. `--users` WebSocket users
//! (tokens signed by `--secret`) read what they are sent; one HTTP/1.1
//! client sends `POST /api/send-batch` calls of `--batch` items (users in
//! turn), or with `--call many` `POST /api/send-many` calls to `--batch`
//! users, one call in flight on one kept-alive connection (a new one when
//! the server closes it at its per-connection bound), with the service
//! token `--token`, until `--secs` or `--max-messages`. Reports messages/s
//! accepted (items answered 202), refused items, requests, connections,
//! deliveries seen by the users and, with `--server-pid`, server CPU.
//! Loopback only; bounded in count and time.

use std::cell::Cell;
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Async, LocalExecutor};
use userlane_bench::{cpu_seconds, Args};

use super::hostile::connect_as;

/// What the back end's calls came to.
#[derive(Default)]
struct Tally {
    accepted: u64,
    refused: u64,
    requests: u64,
    connections: u64,
}

pub(crate) async fn service(ex: &LocalExecutor<'_>, addr: SocketAddr, args: &Args) {
    assert!(addr.ip().is_loopback(), "--addr must be a loopback address");
    let secret = args.str("secret", "");
    let token = args.str("token", "");
    let users: usize = args.num("users", 200);
    let batch: usize = args.num("batch", 500);
    let secs = args.secs("secs", 5.0);
    let max_messages: u64 = args.num("max-messages", 1_000_000);
    let many = args.str("call", "batch") == "many";
    let server_pid: u32 = args.num("server-pid", 0);
    let delivered = Rc::new(Cell::new(0u64));
    let names: Vec<String> = (0..users).map(|i| format!("svc-user-{i}")).collect();
    let mut readers = Vec::new();
    for name in &names {
        let mut ws = match connect_as(addr, &secret, name).await {
            Ok(ws) => ws,
            Err(e) => {
                println!("RESULT service error=connect:{e}");
                return;
            }
        };
        let delivered = delivered.clone();
        readers.push(ex.spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                if m.is_text() {
                    delivered.set(delivered.get() + 1);
                }
            }
        }));
    }
    // The greeting each user gets on connect is not a delivery of ours.
    smol::Timer::after(Duration::from_millis(300)).await;
    let greeted = delivered.get();
    let cpu_before = cpu_seconds(server_pid);
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut conn: Option<Async<TcpStream>> = None;
    let mut next_user = 0usize;
    while started.elapsed() < secs && tally.accepted + tally.refused < max_messages {
        let (path, body) = call_body(&names, &mut next_user, batch, many, tally.requests);
        let stream = match conn.as_mut() {
            Some(s) => s,
            None => match Async::<TcpStream>::connect(addr).await {
                Ok(s) => {
                    let _ = s.get_ref().set_nodelay(true);
                    tally.connections += 1;
                    conn.insert(s)
                }
                Err(e) => {
                    println!("RESULT service error=connect:{e}");
                    return;
                }
            },
        };
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let answer = match stream.write_all(request.as_bytes()).await {
            Ok(()) => read_answer(stream).await,
            Err(e) => Err(e.to_string()),
        };
        let Ok((status, keep_alive, text)) = answer else {
            // The server closed an idle or bounded connection under us:
            // the call was not answered; open a new connection.
            conn = None;
            continue;
        };
        tally.requests += 1;
        if status != 200 {
            println!("RESULT service error=status:{status} body={text:?}");
            return;
        }
        let ok = text.matches("\"status\":202").count() as u64;
        tally.accepted += ok;
        tally.refused += text.matches("\"status\":").count() as u64 - ok;
        if !keep_alive {
            conn = None;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_before.and_then(|b| Some(cpu_seconds(server_pid)? - b));
    // Let the users read what is still on its way (bounded).
    let want = greeted + tally.accepted;
    let drain = Instant::now();
    while delivered.get() < want && drain.elapsed() < Duration::from_secs(5) {
        smol::Timer::after(Duration::from_millis(50)).await;
    }
    println!(
        "RESULT service call={} users={users} batch={batch} accepted={} refused={} msgs_per_s={:.0} requests={} connections={} delivered={} secs={elapsed:.2} server_cpu_s={}",
        if many { "many" } else { "batch" },
        tally.accepted,
        tally.refused,
        tally.accepted as f64 / elapsed,
        tally.requests,
        tally.connections,
        delivered.get() - greeted,
        cpu.map_or("n/a".to_owned(), |c| format!("{c:.2}")),
    );
    drop(readers);
}

/// The path and body of the next call: `batch` items (or users) taken in
/// turn from `names`, each payload a small JSON object.
fn call_body(
    names: &[String],
    next: &mut usize,
    batch: usize,
    many: bool,
    call: u64,
) -> (&'static str, String) {
    let mut take = || {
        let name = &names[*next % names.len()];
        *next += 1;
        name
    };
    if many {
        let users: Vec<&String> = (0..batch).map(|_| take()).collect();
        let body = serde_json::json!({ "users": users, "payload": { "call": call } });
        return ("/api/send-many", body.to_string());
    }
    let items: Vec<serde_json::Value> = (0..batch)
        .map(|i| serde_json::json!({ "user": take(), "payload": { "call": call, "i": i } }))
        .collect();
    let body = serde_json::json!({ "items": items });
    ("/api/send-batch", body.to_string())
}

/// Reads one response: its status, whether the connection stays open, and
/// its body.
async fn read_answer(s: &mut Async<TcpStream>) -> Result<(u16, bool, String), String> {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = [0u8; 16 * 1024];
    let (head_end, len) = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or("no content-length")?;
            break (end + 4, len);
        }
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let keep_alive = head.contains("connection: keep-alive");
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
    Ok((status, keep_alive, body))
}
