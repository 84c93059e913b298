//! The application's plain-HTTP endpoints: the `HttpService` trait, its
//! 404 default, and serving one request for a listener of the application's.

use std::io;
use std::net::SocketAddr;

use smol::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::handle::ServerHandle;
use crate::http::{
    read_head, serve_plain, HeadError, HttpRequest, HttpResponse, Phase, PhaseCell, Plain,
};

/// A boxed future answering one HTTP request.
pub type HttpFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = HttpResponse> + Send + 'a>>;

/// The application's plain-HTTP endpoints on the WebSocket port. Answers
/// are futures, so a handler may await the cluster (Redis) or a timer; it
/// runs on the connection's own task.
pub trait HttpService: Send + Sync + 'static {
    /// Answers one request.
    fn handle<'a>(&'a self, server: &'a ServerHandle, request: HttpRequest) -> HttpFuture<'a>;
}

/// Answers 404 to every plain HTTP request.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHttp;

impl HttpService for NoHttp {
    fn handle<'a>(&'a self, _server: &'a ServerHandle, _request: HttpRequest) -> HttpFuture<'a> {
        Box::pin(async { HttpResponse::text(404, "not found\n") })
    }
}

/// Serves one plain HTTP/1.1 request on `stream` with `service`, with the
/// parsing (httparse), framing rules, body limit and answer encoding of the
/// server's own port, then returns (`Connection: close`). For a second
/// listener of the application's, such as an operations port; the caller
/// bounds the time it may take.
pub async fn serve_http_request<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    remote: SocketAddr,
    max_body: usize,
    service: &dyn HttpService,
    server: &ServerHandle,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    match read_head(stream, &mut buf).await {
        Ok(head) => {
            let phase = PhaseCell::new(Phase::Reading);
            let plain = Plain {
                max_body,
                may_keep_alive: false,
            };
            serve_plain(stream, head, buf, remote, plain, &phase, |req| {
                service.handle(server, req)
            })
            .await
            .map(|_| ())
        }
        Err(HeadError::Io) => Ok(()),
        Err(HeadError::Bad(status, why)) => {
            stream
                .write_all(&HttpResponse::text(status, why).encode())
                .await?;
            stream.flush().await
        }
    }
}
