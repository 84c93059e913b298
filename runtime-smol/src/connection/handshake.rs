//! The socket before the upgrade and what is written on it: the WebSocket
//! handshake answer, and HTTP answers to requests that are not upgraded.

use std::net::TcpStream;

use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::WebSocketStream;
use smol::Async;

use crate::admission::Refusal;
use crate::http::{HttpResponse, Replay};
use crate::state::{bump, ServerShared};

pub(super) type Stream = Replay<Async<TcpStream>>;

/// The WebSocket handshake on a request head parsed once (httparse): the
/// `101` answer with `Sec-WebSocket-Accept` (and the selected subprotocol),
/// then the stream in tungstenite's hands, with no second parse of the
/// request. An invalid upgrade request (`accept` is `None`) is answered 400
/// and counted in `handshakes_failed`, like a socket that fails here.
pub(super) async fn handshake(
    shared: &ServerShared,
    mut stream: Stream,
    accept: Option<String>,
    protocol: Option<&str>,
    config: WebSocketConfig,
) -> Option<WebSocketStream<Stream>> {
    use smol::io::AsyncWriteExt;
    let Some(accept) = accept else {
        bump(&shared.counters.handshakes_failed);
        let body = "not a valid WebSocket upgrade request\n";
        let _ = write_response(stream, HttpResponse::text(400, body)).await;
        return None;
    };
    let mut answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-accept: {accept}\r\n"
    );
    if let Some(protocol) = protocol {
        answer.push_str(&format!("sec-websocket-protocol: {protocol}\r\n"));
    }
    answer.push_str("\r\n");
    if stream.write_all(answer.as_bytes()).await.is_err() || stream.flush().await.is_err() {
        bump(&shared.counters.handshakes_failed);
        return None;
    }
    Some(WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await)
}

/// Answers a refused upgrade with its status and fixed text.
pub(super) async fn write_refusal(stream: Stream, refusal: Refusal) -> std::io::Result<()> {
    write_response(
        stream,
        HttpResponse::text(refusal.status.as_u16(), refusal.message),
    )
    .await
}

/// Writes one HTTP response on a socket that will not be upgraded.
pub(super) async fn write_response(
    mut stream: Stream,
    response: HttpResponse,
) -> std::io::Result<()> {
    use smol::io::AsyncWriteExt;
    stream.write_all(&response.encode()).await?;
    stream.flush().await
}
