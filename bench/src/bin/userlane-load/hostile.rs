//! Hostile-client modes, run against the example server (`userlane-server`)
//! in production mode with a real secret. Loopback only; every loop is
//! bounded in count and time.
//!
//! - `flood --addr A --secret S --victims 10 --secs 10 --size 60000 [--attack]
//!   --server-pid P [--health-addr H]`: ten well-behaved users send
//!   `{"type":"ping"}` every `--interval-ms` and time the `pong`; with
//!   `--attack` one more user sends `user_message` frames of `--size` bytes as
//!   fast as the socket takes them and never reads. Reports the victims'
//!   latency, the server's RSS growth over its level before the run and the
//!   `/healthz` answers seen during it; with `--ops-addr`, the server's own
//!   count of 1008 closes from its `/metrics`.
//! - `slowloris --addr A --secret S --sockets 1000 --kind head|body
//!   --drip-secs 5 --secs 30`: opens `--sockets` sockets that send a request
//!   head (or a body of a declared 65,536 bytes) one byte every
//!   `--drip-secs`; while they are open a legitimate client makes an HTTP
//!   request and a WebSocket connection. Reports when the server closed the
//!   slow sockets (seconds after each opened) and whether the legitimate
//!   client got through.

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Async, LocalExecutor};
use userlane_bench::{status_kib, ws_config, Args};

use super::{histogram, http_get, http_request, percentiles, Ws};

/// An HS256 token for `user`, valid for an hour.
fn token(secret: &str, user: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = serde_json::json!({ "sub": user, "iat": now, "exp": now + 3600 });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing")
}

/// A WebSocket connection as `user`, authenticated with a token signed by `secret`.
pub(super) async fn connect_as(addr: SocketAddr, secret: &str, user: &str) -> Result<Ws, String> {
    let stream = Async::<TcpStream>::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.get_ref().set_nodelay(true);
    let url = format!("ws://{addr}/ws?token={}", token(secret, user));
    let (ws, _) = async_tungstenite::client_async_with_config(url, stream, Some(ws_config()))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    Ok(ws)
}

pub(crate) async fn flood(ex: &LocalExecutor<'_>, addr: SocketAddr, args: &Args) {
    let secret = args.str("secret", "");
    let victims: usize = args.num("victims", 10);
    let secs = args.secs("secs", 10.0);
    let size: usize = args.num("size", 60_000);
    let interval = Duration::from_millis(args.num("interval-ms", 50));
    let attack = args.flag("attack");
    let pid: u32 = args.num("server-pid", 0);
    let health: SocketAddr = args
        .str("health-addr", &addr.to_string())
        .parse()
        .expect("--health-addr");
    let run = args.str("run", "0");
    let ops: Option<SocketAddr> = args.str("ops-addr", "").parse().ok();

    let hist = Rc::new(RefCell::new(histogram()));
    let recording = Rc::new(Cell::new(false));
    let stop = Rc::new(Cell::new(false));
    let lost = Rc::new(Cell::new(0u64));
    let mut tasks = Vec::new();
    for v in 0..victims {
        let user = format!("victim-{run}-{v}");
        let mut ws = match connect_as(addr, &secret, &user).await {
            Ok(ws) => ws,
            Err(e) => {
                println!("RESULT flood error=victim-connect:{e}");
                return;
            }
        };
        let (hist, recording, stop, lost) =
            (hist.clone(), recording.clone(), stop.clone(), lost.clone());
        tasks.push(ex.spawn(async move {
            let mut id = 0u64;
            while !stop.get() {
                id += 1;
                let sent = Instant::now();
                let ping = format!(r#"{{"type":"ping","id":{id}}}"#);
                if ws.send(Message::text(ping)).await.is_err() {
                    lost.set(lost.get() + 1);
                    return;
                }
                let want = format!(r#""id":{id}"#);
                let answered = smol::future::or(
                    async {
                        while let Some(Ok(m)) = ws.next().await {
                            if let Message::Text(t) = m {
                                if t.contains(r#""type":"pong""#) && t.contains(&want) {
                                    return true;
                                }
                            }
                        }
                        false
                    },
                    async {
                        smol::Timer::after(Duration::from_secs(10)).await;
                        false
                    },
                )
                .await;
                if !answered {
                    lost.set(lost.get() + 1);
                    return;
                }
                if recording.get() {
                    let us = sent.elapsed().as_micros() as u64;
                    let _ = hist.borrow_mut().record(us.max(1));
                }
                smol::Timer::after(interval).await;
            }
            let _ = ws.close(None).await;
        }));
    }
    // Warm-up, then the level the growth is measured from.
    smol::Timer::after(Duration::from_secs(1)).await;
    let rss0 = status_kib(pid, "VmRSS").unwrap_or(0);
    recording.set(true);
    let sent_frames = Rc::new(Cell::new(0u64));
    let attacker = if attack {
        let mut ws = match connect_as(addr, &secret, &format!("attacker-{run}")).await {
            Ok(ws) => ws,
            Err(e) => {
                println!("RESULT flood error=attacker-connect:{e}");
                return;
            }
        };
        let (stop, sent_frames) = (stop.clone(), sent_frames.clone());
        // One text of `size` bytes in all, sent again and again (the body is
        // a shared buffer: the client's own memory stays flat).
        let filler = "x".repeat(size.saturating_sub(40));
        let frame = format!(r#"{{"type":"user_message","text":"{filler}"}}"#);
        Some(ex.spawn(async move {
            let mut code = 0u16;
            while !stop.get() {
                let send = ws.send(Message::text(frame.clone()));
                // Never reads: a send that cannot complete just waits.
                let sent = smol::future::or(async { Some(send.await) }, async {
                    while !stop.get() {
                        smol::Timer::after(Duration::from_millis(50)).await;
                    }
                    None
                })
                .await;
                match sent {
                    Some(Ok(())) => sent_frames.set(sent_frames.get() + 1),
                    Some(Err(_)) | None => break,
                }
                // The victims share this thread: never starve them.
                smol::future::yield_now().await;
            }
            // Afterwards: read what the server said, up to its close frame.
            let _ = smol::future::or(
                async {
                    while let Some(Ok(m)) = ws.next().await {
                        if let Message::Close(f) = m {
                            code = f.map_or(1005, |f| u16::from(f.code));
                            break;
                        }
                    }
                },
                async {
                    smol::Timer::after(Duration::from_secs(3)).await;
                },
            )
            .await;
            code
        }))
    } else {
        None
    };
    let start = Instant::now();
    let (mut rss_max, mut health_ok, mut health_bad) = (rss0, 0u32, 0u32);
    let mut next_health = Instant::now();
    while start.elapsed() < secs {
        smol::Timer::after(Duration::from_millis(100)).await;
        rss_max = rss_max.max(status_kib(pid, "VmRSS").unwrap_or(0));
        if Instant::now() >= next_health {
            next_health += Duration::from_millis(500);
            if http_request(health, "/healthz").await.0 == 200 {
                health_ok += 1;
            } else {
                health_bad += 1;
            }
        }
    }
    recording.set(false);
    stop.set(true);
    let attacker_close = match attacker {
        Some(t) => t.await,
        None => 0,
    };
    for t in tasks {
        let _ = smol::future::or(t, async {
            smol::Timer::after(Duration::from_secs(2)).await;
        })
        .await;
    }
    // The server's own count of 1008 closes (its ops listener).
    let closed_1008 = match ops {
        Some(ops) => http_get(ops, "/metrics")
            .await
            .lines()
            .find(|l| l.starts_with("userlane_closes_total{") && l.contains(r#"code="1008""#))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map_or(-1, |v| v as i64),
        None => -1,
    };
    let h = hist.borrow();
    println!(
        "RESULT flood attack={} victims={victims} pings={} {} lost={} rss0_kib={rss0} rss_max_kib={rss_max} rss_growth_kib={} healthz_200={health_ok} healthz_other={health_bad} attacker_frames={} attacker_mb={:.1} attacker_close={attacker_close} server_closed_1008={closed_1008}",
        u8::from(attack),
        h.len(),
        percentiles(&h),
        lost.get(),
        rss_max.saturating_sub(rss0),
        sent_frames.get(),
        (sent_frames.get() * size as u64) as f64 / 1e6,
    );
}

pub(crate) async fn slowloris(ex: &LocalExecutor<'_>, addr: SocketAddr, args: &Args) {
    let secret = args.str("secret", "");
    let n: usize = args.num("sockets", 1000);
    let kind = args.str("kind", "head");
    let drip = args.secs("drip-secs", 5.0);
    let secs = args.secs("secs", 30.0);
    let prelude = match kind.as_str() {
        "head" => format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Slow: "),
        "body" => {
            format!("POST /healthz HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 65536\r\n\r\n")
        }
        other => {
            println!("RESULT slowloris error=unknown-kind:{other}");
            return;
        }
    };
    let closed_after: Rc<RefCell<Vec<f64>>> = Rc::new(RefCell::new(Vec::new()));
    let opened = Rc::new(Cell::new(0usize));
    let stop = Rc::new(Cell::new(false));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (prelude, closed_after, opened, stop) = (
            prelude.clone(),
            closed_after.clone(),
            opened.clone(),
            stop.clone(),
        );
        tasks.push(ex.spawn(async move {
            let Ok(mut s) = Async::<TcpStream>::connect(addr).await else {
                return;
            };
            let t0 = Instant::now();
            opened.set(opened.get() + 1);
            if s.write_all(prelude.as_bytes()).await.is_err() {
                closed_after.borrow_mut().push(t0.elapsed().as_secs_f64());
                return;
            }
            // Drip one byte per period; watch for the server closing.
            let mut buf = [0u8; 512];
            loop {
                let gone = smol::future::or(
                    async {
                        loop {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return true,
                                Ok(_) => continue,
                            }
                        }
                    },
                    async {
                        smol::Timer::after(drip).await;
                        false
                    },
                )
                .await;
                if gone || s.write_all(b"a").await.is_err() {
                    closed_after.borrow_mut().push(t0.elapsed().as_secs_f64());
                    return;
                }
                if stop.get() {
                    return;
                }
            }
        }));
    }
    // Let them all open and start dripping, then the legitimate client.
    let t_open = Instant::now();
    while opened.get() < n && t_open.elapsed() < Duration::from_secs(10) {
        smol::Timer::after(Duration::from_millis(20)).await;
    }
    smol::Timer::after(Duration::from_millis(200)).await;
    let open_now = opened.get() - closed_after.borrow().len();
    let t = Instant::now();
    let legit_http = http_request(addr, "/healthz").await.0;
    let legit_http_ms = t.elapsed().as_millis();
    let t = Instant::now();
    let legit_ws = match connect_as(addr, &secret, "legit-user").await {
        Ok(mut ws) => {
            let _ = ws.close(None).await;
            "ok".to_owned()
        }
        Err(e) => e.replace(' ', "_"),
    };
    let legit_ws_ms = t.elapsed().as_millis();
    let start = Instant::now();
    while closed_after.borrow().len() < opened.get() && start.elapsed() < secs {
        smol::Timer::after(Duration::from_millis(100)).await;
    }
    stop.set(true);
    drop(tasks);
    let mut closes = closed_after.borrow().clone();
    closes.sort_by(f64::total_cmp);
    let at = |q: f64| {
        closes
            .get(((closes.len() as f64 * q) as usize).min(closes.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "RESULT slowloris kind={kind} sockets={n} opened={} open_when_legit_came={open_now} closed={} still_open={} close_p50_s={:.2} close_max_s={:.2} legit_http={legit_http} legit_http_ms={legit_http_ms} legit_ws={legit_ws} legit_ws_ms={legit_ws_ms}",
        opened.get(),
        closes.len(),
        opened.get() - closes.len(),
        at(0.5),
        closes.last().copied().unwrap_or(f64::NAN),
    );
}
