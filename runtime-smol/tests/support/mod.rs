//! Shared helpers for the end-to-end tests: a server on 127.0.0.1:0 in its
//! own thread, JWT minting, and async-tungstenite clients.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::handshake::client::Response;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::{self, Message};
use async_tungstenite::WebSocketStream;
use futures_util::StreamExt;
use smol::Async;
use userlane_smol::{Environment, Handler, Server, ServerConfig, ServerHandle};

pub const SECRET: &[u8] = b"end-to-end-test-secret-0123456789";

pub type Client = WebSocketStream<Async<TcpStream>>;

/// A running server; shut down (with a short deadline) when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        smol::block_on(handle.shutdown(Duration::from_millis(200)));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Test defaults: one shard, a secret, short timers.
pub fn config(env: Environment) -> ServerConfig {
    let mut c = ServerConfig::new(env);
    c.jwt_secret = Some(SECRET.to_vec());
    c.shards = 1;
    c.max_users = 1_000;
    c.max_connections = 1_000;
    c
}

pub fn start(config: ServerConfig) -> TestServer {
    start_with(config, userlane_smol::IgnoreInbound)
}

pub fn start_with(config: ServerConfig, handler: impl Handler) -> TestServer {
    let server = Server::builder(config)
        .handler(handler)
        .bind("127.0.0.1:0".parse().unwrap())
        .expect("server starts");
    let addr = server.local_addr();
    let handle = server.handle();
    let thread = std::thread::spawn(move || smol::block_on(server.run()));
    TestServer {
        addr,
        handle,
        thread: Some(thread),
    }
}

pub fn jwt(sub: &str, valid_for_secs: i64) -> String {
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        exp: i64,
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &Claims {
            sub,
            exp: now + valid_for_secs,
        },
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

/// Connects to `path` with optional bearer token; Err carries the HTTP status on refusal.
pub async fn connect_raw(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> Result<(Client, Response), tungstenite::Error> {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
    }
    let stream = Async::<TcpStream>::connect(addr).await.unwrap();
    async_tungstenite::client_async(req, stream).await
}

pub async fn connect(addr: SocketAddr, user: &str) -> Client {
    connect_raw(addr, "/ws", Some(&jwt(user, 300)))
        .await
        .expect("connects")
        .0
}

/// The HTTP status of a refused upgrade.
pub async fn refused_status(addr: SocketAddr, path: &str, token: Option<&str>) -> u16 {
    match connect_raw(addr, path, token).await {
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Ok(_) => panic!("upgrade unexpectedly accepted"),
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// Next text frame (pings/pongs skipped), with a timeout.
pub async fn next_text(client: &mut Client) -> Option<String> {
    let fut = async {
        loop {
            match client.next().await {
                Some(Ok(Message::Text(t))) => return Some(t.to_string()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => return None,
            }
        }
    };
    smol::future::or(fut, async {
        smol::Timer::after(Duration::from_secs(5)).await;
        None
    })
    .await
}

/// Reads until the server closes; returns the close code (None if the socket just ended).
pub async fn close_code(client: &mut Client) -> Option<u16> {
    let fut = async {
        loop {
            match client.next().await {
                Some(Ok(Message::Close(Some(frame)))) => return Some(u16::from(frame.code)),
                Some(Ok(Message::Close(None))) => return Some(1005),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    };
    smol::future::or(fut, async {
        smol::Timer::after(Duration::from_secs(10)).await;
        None
    })
    .await
}

pub async fn send_text(client: &mut Client, text: &str) {
    client.send(Message::text(text.to_owned())).await.unwrap();
}
