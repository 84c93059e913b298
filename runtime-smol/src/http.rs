//! Plain HTTP on the WebSocket port: the request head is parsed with
//! `httparse`; upgrades go on to the WebSocket handshake (the bytes already
//! read are replayed), everything else goes to the application's
//! [`HttpService`](crate::service::HttpService). An HTTP/1.1 connection is
//! kept alive for the next request (pipelined requests are answered in
//! order) unless the client sends `Connection: close`, the connection
//! reached `max_requests_per_connection`, the body was refused, or the
//! server is shutting down; HTTP/1.0 gets one response and `Connection: close`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Where a percent-encoded text comes from, which decides what `+` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoded {
    /// A query-string value (`application/x-www-form-urlencoded`): `+` is a space.
    Query,
    /// A path segment: `+` is itself.
    PathSegment,
}

/// Decodes the `%XX` escapes of `text` strictly: `None` for a truncated or
/// non-hexadecimal escape, or bytes that are not UTF-8, so that the caller
/// can answer 400 instead of guessing what the client meant.
pub fn percent_decode(text: &str, from: Encoded) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if from == Encoded::Query => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Largest request head accepted (431 beyond).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// A plain HTTP request, body read in full (bounded by `max_http_body_bytes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The peer.
    pub remote: SocketAddr,
}

impl HttpRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The token of `Authorization: Bearer <token>`.
    pub fn bearer_token(&self) -> Option<&str> {
        bearer_token(self.header("authorization")?)
    }
}

/// The token of an `Authorization` header value `Bearer <token>` (the
/// scheme compared case-insensitively, RFC 9110 §11.1), or `None`.
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// A response to a plain HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        HttpResponse {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            headers: Vec::new(),
            body: body.into().into_bytes(),
        }
    }

    /// An `application/json` response.
    pub fn json(status: u16, body: &impl serde::Serialize) -> Self {
        HttpResponse {
            status,
            content_type: "application/json".into(),
            headers: Vec::new(),
            body: serde_json::to_vec(body).unwrap_or_else(|_| b"null".to_vec()),
        }
    }

    /// A response with any content type.
    pub fn with_type(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        HttpResponse {
            status,
            content_type: content_type.into(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// The status's reason phrase (empty for a code `http` does not know).
    fn reason(&self) -> &'static str {
        async_tungstenite::tungstenite::http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
    }

    /// The response on the wire, closing the connection.
    pub(crate) fn encode(&self) -> Vec<u8> {
        self.encode_for(false)
    }

    /// The response on the wire, with `Connection: keep-alive` or `close`.
    pub(crate) fn encode_for(&self, keep_alive: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: {}\r\n",
            self.status,
            self.reason(),
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        )
        .into_bytes();
        for (k, v) in &self.headers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// What the request head says.
pub(crate) struct Head {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
    /// Bytes of the head (the rest of the buffer is body or frames).
    pub(crate) len: usize,
    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub(crate) version: u8,
}

impl Head {
    /// The `Sec-WebSocket-Accept` value for a valid WebSocket upgrade
    /// request (RFC 6455 4.2.1: a GET of HTTP/1.1 or later with `Upgrade:
    /// websocket`, a `Connection` that lists `upgrade`, version 13 and a
    /// key), or `None`.
    pub(crate) fn websocket_accept(&self) -> Option<String> {
        let connection_upgrades = self.header("connection").is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
        let valid = self.method == "GET"
            && self.version >= 1
            && self.is_websocket_upgrade()
            && connection_upgrades
            && self.header("sec-websocket-version") == Some("13");
        let key = self.header("sec-websocket-key").filter(|_| valid)?;
        Some(async_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()))
    }

    /// The values of header `name` (lower case), in order: each `Some` when
    /// it is visible ASCII (and tabs), as an `http::HeaderValue` must be to
    /// be read as text, `None` otherwise.
    pub(crate) fn ascii_values<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = Option<&'a str>> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| {
                v.bytes()
                    .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
                    .then_some(v.as_str())
            })
    }

    /// The first value of header `name`, if any (see [`ascii_values`](Self::ascii_values)).
    pub(crate) fn ascii_value<'a>(&'a self, name: &'a str) -> Option<Option<&'a str>> {
        self.ascii_values(name).next()
    }

    /// A head with `target` (path and query) and `headers`, as if read.
    #[cfg(test)]
    pub(crate) fn for_test(target: &str, headers: &[(&str, &str)]) -> Head {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (target.to_owned(), None),
        };
        Head {
            method: "GET".into(),
            path,
            query,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned()))
                .collect(),
            len: 0,
            version: 1,
        }
    }

    /// Whether the client lets the connection carry another request: HTTP/1.1
    /// without a `Connection: close` (RFC 9112 §9.3); HTTP/1.0 never.
    pub(crate) fn keeps_alive(&self) -> bool {
        self.version >= 1
            && !self
                .headers
                .iter()
                .filter(|(k, _)| k == "connection")
                .flat_map(|(_, v)| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case("close"))
    }

    pub(crate) fn is_websocket_upgrade(&self) -> bool {
        self.headers
            .iter()
            .any(|(k, v)| k == "upgrade" && v.eq_ignore_ascii_case("websocket"))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request head could not be read.
pub(crate) enum HeadError {
    /// The socket closed or failed.
    Io,
    /// Not HTTP (400) or too big (431).
    Bad(u16, &'static str),
}

/// Reads until a complete request head is in `buf`.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<Head, HeadError> {
    let mut chunk = [0u8; 2048];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let target = req.path.unwrap_or("/");
                let (path, query) = match target.split_once('?') {
                    Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
                    None => (target.to_owned(), None),
                };
                let headers = req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                return Ok(Head {
                    method: req.method.unwrap_or("GET").to_owned(),
                    path,
                    query,
                    headers,
                    len,
                    version: req.version.unwrap_or(0),
                });
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HeadError::Bad(431, "too many headers"))
            }
            Err(_) => return Err(HeadError::Bad(400, "malformed HTTP request")),
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(HeadError::Bad(431, "request head too large"));
        }
        let n = stream.read(&mut chunk).await.map_err(|_| HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Io);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// How far a plain request got, for the answer when the request deadline
/// passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The request (head or body) is still being read.
    Reading,
    /// The service is working on the answer.
    Answering,
    /// Something was written: the socket can only be closed.
    Written,
}

/// A [`Phase`] shared between a request's step and its deadline.
#[derive(Debug)]
pub(crate) struct PhaseCell(std::sync::atomic::AtomicU8);

impl PhaseCell {
    pub(crate) fn new(phase: Phase) -> Self {
        PhaseCell(std::sync::atomic::AtomicU8::new(phase as u8))
    }

    pub(crate) fn get(&self) -> Phase {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            0 => Phase::Reading,
            1 => Phase::Answering,
            _ => Phase::Written,
        }
    }

    pub(crate) fn set(&self, phase: Phase) {
        self.0
            .store(phase as u8, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How a plain request is served.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plain {
    /// Largest body accepted (413 beyond).
    pub(crate) max_body: usize,
    /// Whether the server lets the connection carry another request after
    /// this one (the client's wish is read from the head).
    pub(crate) may_keep_alive: bool,
}

/// Reads the body of a plain request and asks the service; writes the
/// response. `phase` follows along (see [`Phase`]). When the connection
/// stays open, returns the bytes read past this request (the start of the
/// next, pipelined, request; maybe none).
pub(crate) async fn serve_plain<
    S: AsyncRead + AsyncWrite + Unpin,
    F: std::future::Future<Output = HttpResponse>,
>(
    stream: &mut S,
    head: Head,
    mut buf: Vec<u8>,
    remote: SocketAddr,
    plain: Plain,
    phase: &PhaseCell,
    respond: impl FnOnce(HttpRequest) -> F,
) -> io::Result<Option<Vec<u8>>> {
    let max_body = plain.max_body;
    let mut keep_alive = plain.may_keep_alive && head.keeps_alive();
    let mut rest = Vec::new();
    let received = buf.len() - head.len;
    // Bytes of a refused body the client may still be sending.
    let mut unread = None;
    let response = match body_length(&head) {
        Err(r) => {
            unread = Some(usize::MAX);
            r
        }
        Ok(n) if n > max_body => {
            unread = Some(n.saturating_sub(received));
            HttpResponse::text(413, format!("body over {max_body} bytes\n"))
        }
        Ok(n) => {
            let mut body = buf.split_off(head.len);
            while body.len() < n {
                let mut chunk = vec![0u8; (n - body.len()).min(16 * 1024)];
                let read = stream.read(&mut chunk).await?;
                if read == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                body.extend_from_slice(&chunk[..read]);
            }
            rest = body.split_off(n);
            phase.set(Phase::Answering);
            respond(HttpRequest {
                method: head.method,
                path: head.path,
                query: head.query,
                headers: head.headers,
                body,
                remote,
            })
            .await
        }
    };
    keep_alive &= unread.is_none();
    phase.set(Phase::Written);
    stream.write_all(&response.encode_for(keep_alive)).await?;
    stream.flush().await?;
    if let Some(left) = unread {
        discard_unread(stream, left).await;
    }
    Ok(keep_alive.then_some(rest))
}

/// Waits, on a kept-alive connection, for the first byte of the next
/// request (appended to `buf`): `true` when there is one (or `buf` already
/// holds a pipelined request), `false` when the client closed, `idle`
/// passed, or `stop` resolved (the server is shutting down).
pub(crate) async fn next_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    idle: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> bool {
    if !buf.is_empty() {
        return true;
    }
    let read = async {
        let mut chunk = [0u8; 2048];
        match stream.read(&mut chunk).await {
            Ok(n) if n > 0 => {
                buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    };
    smol::future::or(
        read,
        smol::future::or(
            async {
                smol::Timer::after(idle).await;
                false
            },
            async {
                stop.await;
                false
            },
        ),
    )
    .await
}

/// How long a refused body is read and discarded after the response.
const LINGER: Duration = Duration::from_secs(2);

/// Ends the response (FIN) and reads what the client still sends, up to
/// `left` bytes or [`LINGER`]: closing a socket with unread bytes makes the
/// kernel reset the connection, and the client would lose the response.
async fn discard_unread<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, mut left: usize) {
    let _ = stream.close().await;
    let drain = async {
        let mut chunk = [0u8; 8192];
        while left > 0 {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    smol::future::or(drain, async {
        smol::Timer::after(LINGER).await;
    })
    .await;
}

/// The body length a request head declares, under RFC 9112 §6 framing
/// rules with no leniency (a request whose length two parsers could read
/// differently is how requests are smuggled):
///
/// - `Transfer-Encoding` together with `Content-Length`: 400;
///   `Transfer-Encoding` alone: 411 (chunked bodies are not supported);
/// - `Content-Length` must be digits only (no sign, no inner space, no
///   empty value): 400 otherwise;
/// - several `Content-Length` values (repeated headers or a comma list)
///   are accepted only when they are all the same number (RFC 9112 §6.3
///   allows merging identical values); different values: 400.
pub(crate) fn body_length(head: &Head) -> Result<usize, HttpResponse> {
    let mut lengths = head
        .headers
        .iter()
        .filter(|(k, _)| k == "content-length")
        .flat_map(|(_, v)| v.split(','))
        .peekable();
    if head.header("transfer-encoding").is_some() {
        if lengths.peek().is_some() {
            return Err(HttpResponse::text(
                400,
                "Transfer-Encoding and Content-Length together\n",
            ));
        }
        return Err(HttpResponse::text(
            411,
            "chunked bodies are not supported; send Content-Length\n",
        ));
    }
    let mut declared: Option<usize> = None;
    for value in lengths {
        let value = value.trim_matches([' ', '\t']);
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HttpResponse::text(400, "bad Content-Length\n"));
        }
        let n: usize = value
            .parse()
            .map_err(|_| HttpResponse::text(400, "bad Content-Length\n"))?;
        match declared {
            Some(d) if d != n => {
                return Err(HttpResponse::text(
                    400,
                    "conflicting Content-Length headers\n",
                ))
            }
            _ => declared = Some(n),
        }
    }
    Ok(declared.unwrap_or(0))
}

/// A stream that first yields bytes already read, then the inner stream, so
/// the WebSocket handshake can re-read the request head.
pub(crate) struct Replay<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Replay<S> {
    /// Replays `prefix`, then reads `inner`. The prefix keeps only the bytes
    /// it holds: an empty one (the usual case: nothing after the request
    /// head) frees its buffer now instead of holding the head reader's
    /// capacity for the connection's whole life.
    pub(crate) fn new(mut prefix: Vec<u8>, inner: S) -> Self {
        prefix.shrink_to_fit();
        Replay {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.pos < self.prefix.len() {
            let n = out.len().min(self.prefix.len() - self.pos);
            out[..n].copy_from_slice(&self.prefix[self.pos..self.pos + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut self.inner).poll_read(cx, out)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_reasons_come_from_http() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
        let head = |status| String::from_utf8(HttpResponse::text(status, "").encode()).unwrap();
        assert!(head(429).starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(head(426).starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(head(200).starts_with("HTTP/1.1 200 OK\r\n"));
    }

    #[test]
    fn percent_decoding_is_strict_and_plus_depends_on_the_source() {
        assert_eq!(
            percent_decode("a%40b+c", Encoded::Query).as_deref(),
            Some("a@b c")
        );
        assert_eq!(
            percent_decode("a%40b+c", Encoded::PathSegment).as_deref(),
            Some("a@b+c")
        );
        assert_eq!(
            percent_decode("%C3%A9", Encoded::Query).as_deref(),
            Some("é")
        );
        for bad in ["%zz", "%4", "%", "%C3"] {
            assert_eq!(percent_decode(bad, Encoded::Query), None, "{bad:?}");
            assert_eq!(percent_decode(bad, Encoded::PathSegment), None, "{bad:?}");
        }
    }

    #[test]
    fn head_is_parsed_and_replayed() {
        smol::block_on(async {
            let raw = b"GET /ws?token=abc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\nEXTRA"
                .to_vec();
            let mut src = smol::io::Cursor::new(raw.clone());
            let mut buf = Vec::new();
            let head = read_head(&mut src, &mut buf).await.ok().unwrap();
            assert_eq!(
                (
                    head.method.as_str(),
                    head.path.as_str(),
                    head.query.as_deref()
                ),
                ("GET", "/ws", Some("token=abc"))
            );
            assert!(head.is_websocket_upgrade());
            let mut replay = Replay::new(buf, src);
            let mut all = Vec::new();
            replay.read_to_end(&mut all).await.unwrap();
            assert_eq!(all, raw);
        });
    }

    /// A connection keeps no request-head buffer once upgraded: nothing
    /// after the head means no prefix storage at all, and early frames keep
    /// only their own bytes (the head reader's capacity is released).
    #[test]
    fn a_replay_holds_only_the_bytes_it_replays() {
        let empty = Replay::new(Vec::with_capacity(4096), smol::io::empty());
        assert_eq!(empty.prefix.capacity(), 0);
        let mut early = Vec::with_capacity(4096);
        early.extend_from_slice(b"frame");
        let early = Replay::new(early, smol::io::empty());
        assert!(early.prefix.capacity() < 64, "{}", early.prefix.capacity());
        assert_eq!(early.prefix, b"frame");
    }

    #[test]
    fn garbage_and_oversized_heads_are_refused() {
        smol::block_on(async {
            let mut buf = Vec::new();
            let mut src = smol::io::Cursor::new(b"\x16\x03\x01 not http\r\n\r\n".to_vec());
            assert!(matches!(
                read_head(&mut src, &mut buf).await,
                Err(HeadError::Bad(400, _))
            ));
            let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
            big.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES + 10));
            let mut buf = Vec::new();
            let mut src = smol::io::Cursor::new(big);
            assert!(matches!(
                read_head(&mut src, &mut buf).await,
                Err(HeadError::Bad(431, _))
            ));
        });
    }

    #[test]
    fn response_encoding_closes_the_connection() {
        let r = HttpResponse::json(202, &serde_json::json!({"queued_for": 2}));
        let text = String::from_utf8(r.encode()).unwrap();
        assert!(text.starts_with("HTTP/1.1 202 Accepted\r\n"));
        assert!(text.contains("content-length: 16\r\nconnection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n{\"queued_for\":2}"));
    }
}
