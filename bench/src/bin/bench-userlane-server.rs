//! userlane-smol as the system benchmarks run it: default `ServerConfig`
//! (4 KiB read and write buffers, 64 KiB messages, queue depth 64, close
//! with 1013 on a full queue), development mode, and:
//!
//! - a token is the user id itself (the load client connects as `u0`, `u1`, …);
//! - no inbound budget (`InboundLimits::UNLIMITED`): the echo clients send
//!   as fast as replies come back, far above the default 100 messages/s per
//!   connection; every message still goes through the core's
//!   `handle_inbound`, so its cost is measured;
//! - every inbound message goes back through the manager path:
//!   `ServerHandle::send_to_user(sender's user id)` (lookup + enqueue);
//! - `GET /burst?users=N&prefix=u&n=10&size=64`: `n` publishes back to back,
//!   each stamped with `CLOCK_MONOTONIC` and sent to every user `prefix0..N`;
//! - `GET /pace?users=N&prefix=u&rate=100&secs=30&size=64`: the same, one
//!   publish every `1/rate` s for `secs` s, in the background;
//!   `GET /pace-report` lists the publishes that closed a slow consumer (1013).
//!
//! `bench-userlane-server [--listen 127.0.0.1:9700]`

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use userlane_bench::{mono_ns, payload, qnum, query, user_ids, Args};
use userlane_smol::userlane_core::{InboundLimits, SendOutcome};
use userlane_smol::{
    AuthError, Authenticator, ConnectionInfo, Environment, Handler, HttpRequest, HttpResponse,
    HttpService, Identity, Message, Server, ServerConfig, ServerHandle,
};

/// The token is the user id.
struct TokenIsUser;

impl Authenticator for TokenIsUser {
    fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        Ok(Identity {
            user_id: token.to_owned(),
            thread_id: Some("bench".into()),
            run_id: Some("bench".into()),
        })
    }
}

/// Echo through the manager: look the sender's user up, enqueue to it.
struct EchoThroughManager;

impl Handler for EchoThroughManager {
    fn on_message(&self, server: &ServerHandle, conn: &ConnectionInfo, message: Message) {
        let _ = server.send_to_user(conn.user_id(), message);
    }
}

/// What the pacer saw: publishes and the slow consumers they closed.
#[derive(Default)]
struct PaceLog {
    started_ns: u64,
    published: u64,
    done: bool,
    /// (publish time, sequence number, connections closed with 1013)
    closes: Vec<(u64, u64, u32)>,
    refused: u64,
}

#[derive(Default)]
struct Control {
    pace: Arc<Mutex<PaceLog>>,
}

/// One publish to every user; returns (connections closed slow, refusals).
fn publish(server: &ServerHandle, users: &[String], seq: u64, size: usize) -> (u32, u64) {
    let msg = Message::Binary(payload(seq, mono_ns(), size).into());
    let (mut closed, mut refused) = (0, 0);
    for u in users {
        match server.send_to_user(u, msg.clone()) {
            Ok(SendOutcome::Queued { closed_slow, .. }) => closed += closed_slow,
            Ok(_) => {}
            Err(_) => refused += 1,
        }
    }
    (closed, refused)
}

type Reply<'a> = Pin<Box<dyn Future<Output = HttpResponse> + Send + 'a>>;

impl HttpService for Control {
    fn handle<'a>(&'a self, server: &'a ServerHandle, req: HttpRequest) -> Reply<'a> {
        // Answered synchronously: a burst runs to the end before any writer does.
        let reply = self.respond(server, req);
        Box::pin(async move { reply })
    }
}

impl Control {
    fn respond(&self, server: &ServerHandle, req: HttpRequest) -> HttpResponse {
        let target = match &req.query {
            Some(q) => format!("{}?{q}", req.path),
            None => req.path.clone(),
        };
        let q = query(&target);
        let users = user_ids(
            &q.get("prefix").cloned().unwrap_or("u".into()),
            qnum(&q, "users", 0),
        );
        let size = qnum(&q, "size", 64usize);
        match req.path.as_str() {
            "/burst" => {
                let n: u64 = qnum(&q, "n", 10);
                let base: u64 = qnum(&q, "seq", 0);
                let t0 = mono_ns();
                let mut refused = 0;
                for i in 0..n {
                    refused += publish(server, &users, base + i, size).1;
                }
                let t1 = mono_ns();
                HttpResponse::text(
                    200,
                    format!(
                        "published {n} to {} users in {} us, refused {refused}\n",
                        users.len(),
                        (t1 - t0) / 1000
                    ),
                )
            }
            "/pace" => {
                let rate: f64 = qnum(&q, "rate", 100.0);
                let secs: f64 = qnum(&q, "secs", 10.0);
                let log = self.pace.clone();
                *log.lock().unwrap() = PaceLog {
                    started_ns: mono_ns(),
                    ..PaceLog::default()
                };
                let server = server.clone();
                smol::spawn(async move {
                    let start = Instant::now();
                    let total = (rate * secs) as u64;
                    for seq in 0..total {
                        smol::Timer::at(start + Duration::from_secs_f64(seq as f64 / rate)).await;
                        let t = mono_ns();
                        let (closed, refused) = publish(&server, &users, seq, size);
                        let mut l = log.lock().unwrap();
                        l.published = seq + 1;
                        l.refused += refused;
                        if closed > 0 {
                            l.closes.push((t, seq, closed));
                        }
                    }
                    log.lock().unwrap().done = true;
                })
                .detach();
                HttpResponse::text(200, "pacing\n")
            }
            "/pace-report" => {
                let l = self.pace.lock().unwrap();
                let mut out = format!(
                    "started_ns {}\npublished {}\nrefused {}\ndone {}\n",
                    l.started_ns, l.published, l.refused, l.done as u8
                );
                for (t, seq, n) in &l.closes {
                    out.push_str(&format!("close {t} {seq} {n}\n"));
                }
                HttpResponse::text(200, out)
            }
            "/stats" => {
                let s = server.stats();
                HttpResponse::text(
                    200,
                    format!(
                        "connections {}\nclosed_slow_consumer {}\nmessages_dropped {}\nforced_closes {}\n",
                        s.core.connections_active, s.core.closed_slow_consumer, s.core.messages_dropped, s.forced_closes
                    ),
                )
            }
            _ => HttpResponse::text(404, "not found\n"),
        }
    }
}

fn main() {
    let args = Args::parse();
    let listen = args.str("listen", "127.0.0.1:9700");
    let mut config = ServerConfig::new(Environment::Development);
    // 10,000 users need two shards of 8,192 (pinned to one core, the
    // default would be one shard).
    config.shards = config.shards.max(2);
    config.inbound_per_connection = InboundLimits::UNLIMITED;
    config.inbound_per_user = InboundLimits::UNLIMITED;
    let server = Server::builder(config)
        .authenticator(TokenIsUser)
        .handler(EchoThroughManager)
        .http(Control::default())
        .bind(listen.parse().expect("--listen is an address"))
        .expect("server starts");
    println!("READY {} pid {}", server.local_addr(), std::process::id());
    smol::block_on(server.run());
}
