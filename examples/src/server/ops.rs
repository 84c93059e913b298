//! The ops listener (`--ops-listen`): `/metrics` and the detailed
//! `/healthz` on an address of their own, for Prometheus and operators, so
//! the public port need not expose them.
//!
//! Plain HTTP/1.1, one request per connection (`Connection: close`), `GET`
//! only. Bounded both ways: at most [`MAX_OPS_CONNECTIONS`] connections at
//! once (more are closed at once), a request head of at most
//! [`MAX_OPS_HEAD_BYTES`], and [`OPS_TIMEOUT`] for the whole exchange.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Async;
use userlane_smol::{HttpRequest, HttpResponse, HttpService, ServerHandle};

use super::api::Api;

/// Most ops connections served at once.
pub const MAX_OPS_CONNECTIONS: usize = 16;
/// Largest request head read from an ops client.
pub const MAX_OPS_HEAD_BYTES: usize = 8 * 1024;
/// Longest one ops exchange (read the request, answer) may take.
pub const OPS_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the operational endpoints are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpsListen {
    /// On an address of their own.
    Addr(SocketAddr),
    /// On the main port, next to everything else.
    Public,
    /// Nowhere: `/metrics` and the detailed `/healthz` are off.
    Off,
}

impl std::str::FromStr for OpsListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "public" => Ok(OpsListen::Public),
            "off" | "none" => Ok(OpsListen::Off),
            _ => s.parse().map(OpsListen::Addr).map_err(|_| {
                "expected an address such as 127.0.0.1:9601, \"public\" or \"off\"".to_owned()
            }),
        }
    }
}

/// Binds the ops listener.
pub fn bind(addr: SocketAddr) -> Result<Async<TcpListener>, String> {
    Async::<TcpListener>::bind(addr).map_err(|e| format!("cannot listen on {addr} (ops): {e}"))
}

/// Serves `api` (an [`Api`] of surface `Ops`) on `listener` until the
/// process ends.
pub async fn serve(listener: Async<TcpListener>, api: Arc<Api>, server: ServerHandle) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let (socket, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                log::warn!("ops listener: accept failed: {e}");
                smol::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        if open.fetch_add(1, Ordering::AcqRel) >= MAX_OPS_CONNECTIONS {
            open.fetch_sub(1, Ordering::AcqRel);
            drop(socket);
            continue;
        }
        let (api, server, open) = (api.clone(), server.clone(), open.clone());
        smol::spawn(async move {
            let exchange = answer(socket, remote, &api, &server);
            let _ = smol::future::or(async { Some(exchange.await) }, async {
                smol::Timer::after(OPS_TIMEOUT).await;
                None
            })
            .await;
            open.fetch_sub(1, Ordering::AcqRel);
        })
        .detach();
    }
}

async fn answer(
    mut socket: Async<std::net::TcpStream>,
    remote: SocketAddr,
    api: &Api,
    server: &ServerHandle,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let response = loop {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break match parse(&head[..end], remote) {
                Some(req) => api.handle(server, req).await,
                None => HttpResponse::text(400, "bad request\n"),
            };
        }
        if head.len() > MAX_OPS_HEAD_BYTES {
            break HttpResponse::text(431, "request header fields too large\n");
        }
    };
    socket.write_all(&encode(&response)).await?;
    socket.flush().await
}

fn parse(head: &[u8], remote: SocketAddr) -> Option<HttpRequest> {
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, target, version) = (
        request_line.next()?,
        request_line.next()?,
        request_line.next()?,
    );
    if !version.starts_with("HTTP/1.") || request_line.next().is_some() {
        return None;
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (target, None),
    };
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(HttpRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        query,
        headers,
        body: Vec::new(),
        remote,
    })
}

fn encode(r: &HttpResponse) -> Vec<u8> {
    let reason = match r.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    for (k, v) in &r.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&r.body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_listen_values() {
        assert_eq!("public".parse(), Ok(OpsListen::Public));
        assert_eq!("off".parse(), Ok(OpsListen::Off));
        assert_eq!(
            "127.0.0.1:9601".parse(),
            Ok(OpsListen::Addr("127.0.0.1:9601".parse().unwrap()))
        );
        assert!("nowhere".parse::<OpsListen>().is_err());
    }

    #[test]
    fn request_heads_are_parsed_strictly() {
        let remote = "127.0.0.1:1".parse().unwrap();
        let req = parse(b"GET /healthz?format=json HTTP/1.1\r\nAccept: x", remote).unwrap();
        assert_eq!(
            (req.method.as_str(), req.path.as_str(), req.query.as_deref()),
            ("GET", "/healthz", Some("format=json"))
        );
        assert_eq!(req.header("accept"), Some("x"));
        assert!(parse(b"GET /metrics", remote).is_none());
        assert!(parse(b"GET /metrics SPDY/3", remote).is_none());
    }
}
