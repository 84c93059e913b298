//! Cross-node delivery against local delivery, measured in the same run.
//!
//! Starts a throwaway redis-server on a free loopback port and three nodes
//! in this process, plus one single node without Redis as the baseline, and
//! measures publish→delivery latency (p50/p99, one message at a time) and
//! burst throughput for one WebSocket client of user `bench`: (a) on the
//! single node, (b) on clustered node 1 with sends on node 1, (c) on node 1
//! with sends on node 3 through Redis. Prints a Markdown table.
//!
//! `cargo run --release -p userlane-smol --example cross_node [messages]`

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use smol::Async;
use userlane_smol::cluster::ClusterConfig;
use userlane_smol::{Environment, Server, ServerConfig, ServerHandle};

const SECRET: &[u8] = b"cross-node-bench-secret-0123456789";

fn jwt(sub: &str) -> String {
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        exp: u64,
    }
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &Default::default(),
        &Claims { sub, exp },
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn node(redis_url: Option<&str>) -> (std::net::SocketAddr, ServerHandle) {
    let mut c = ServerConfig::new(Environment::Production);
    c.jwt_secret = Some(SECRET.to_vec());
    c.shards = 1;
    c.max_users = 100;
    c.max_connections = 100;
    c.queue_depth = 4096;
    c.offline_buffer = 0;
    c.cluster = redis_url.map(ClusterConfig::new);
    let server = Server::builder(c)
        .bind("127.0.0.1:0".parse().unwrap())
        .expect("node starts");
    let (addr, handle) = (server.local_addr(), server.handle());
    std::thread::spawn(move || smol::block_on(server.run()));
    (addr, handle)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Run {
    p50: Duration,
    p99: Duration,
    per_sec: f64,
}

/// One message at a time (latency), then a burst of `n` with 64 sends in
/// flight (throughput).
async fn measure(
    sender: &ServerHandle,
    client: &mut async_tungstenite::WebSocketStream<Async<TcpStream>>,
    n: usize,
) -> Run {
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        sender
            .send("bench", Message::text(format!("{i}")))
            .await
            .expect("send accepted");
        loop {
            match client.next().await {
                Some(Ok(Message::Text(t))) if t.as_str() == i.to_string() => break,
                Some(Ok(_)) => continue,
                other => panic!("connection ended: {other:?}"),
            }
        }
        lat.push(started.elapsed());
    }
    lat.sort();
    let started = Instant::now();
    let burst = async {
        for i in 0..n {
            sender
                .send("bench", Message::text(format!("b{i}")))
                .await
                .expect("send accepted");
        }
    };
    let receive = async {
        let mut got = 0;
        while got < n {
            if let Some(Ok(Message::Text(_))) = client.next().await {
                got += 1;
            }
        }
    };
    futures_util::future::join(burst, receive).await;
    let per_sec = n as f64 / started.elapsed().as_secs_f64();
    Run {
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        per_sec,
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed (apt-get install redis-server)");
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("redis://127.0.0.1:{port}/");
    let single = node(None);
    let nodes: Vec<_> = (0..3).map(|_| node(Some(&url))).collect();
    let client_of = |addr: std::net::SocketAddr| async move {
        let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {}", jwt("bench"))).unwrap(),
        );
        let stream = Async::<TcpStream>::connect(addr).await.unwrap();
        let (client, _) = async_tungstenite::client_async(req, stream).await.unwrap();
        smol::Timer::after(Duration::from_millis(300)).await; // subscription settles
        client
    };
    let (baseline, local, remote) = smol::block_on(async {
        let mut alone = client_of(single.0).await;
        let baseline = measure(&single.1, &mut alone, n).await;
        let mut client = client_of(nodes[0].0).await;
        let local = measure(&nodes[0].1, &mut client, n).await;
        let remote = measure(&nodes[2].1, &mut client, n).await;
        (baseline, local, remote)
    });
    let _ = redis.kill();
    let _ = redis.wait();
    println!("| path ({n} messages, 3 nodes, 1 client on node 1) | p50 | p99 | burst msgs/s (64 in flight) |");
    println!("|---|---|---|---|");
    let rows = [
        ("single node, no Redis (baseline)", &baseline),
        ("clustered node, user held locally (send on node 1)", &local),
        ("cross-node (send on node 3 → Redis → node 1)", &remote),
    ];
    for (name, r) in rows {
        println!(
            "| {name} | {:.0} µs | {:.0} µs | {:.0} |",
            r.p50.as_secs_f64() * 1e6,
            r.p99.as_secs_f64() * 1e6,
            r.per_sec
        );
    }
    for (name, r) in [
        ("clustered local / baseline", &local),
        ("cross-node / baseline", &remote),
    ] {
        println!(
            "| ratio {name} | {:.2}× | {:.2}× | {:.2}× |",
            r.p50.as_secs_f64() / baseline.p50.as_secs_f64(),
            r.p99.as_secs_f64() / baseline.p99.as_secs_f64(),
            r.per_sec / baseline.per_sec
        );
    }
}
