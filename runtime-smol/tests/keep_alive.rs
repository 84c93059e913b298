//! HTTP/1.1 keep-alive on the server's port: several plain requests over
//! one TCP connection, answered in order, until the client asks to close,
//! the per-connection bound is reached, or the connection idles too long.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;
use userlane_smol::{
    Environment, HttpFuture, HttpRequest, HttpResponse, HttpService, ServerHandle,
};

/// Answers every request with its method, path and body.
struct Echo;

impl HttpService for Echo {
    fn handle<'a>(&'a self, _server: &'a ServerHandle, req: HttpRequest) -> HttpFuture<'a> {
        Box::pin(async move {
            let body = String::from_utf8_lossy(&req.body).into_owned();
            HttpResponse::text(200, format!("{} {} {body}", req.method, req.path))
        })
    }
}

fn server(max_requests: u32, idle: Duration) -> TestServer {
    let mut c = config(Environment::Development);
    c.max_requests_per_connection = max_requests;
    c.http_idle_timeout = idle;
    start_with_http(c, Echo)
}

fn connect(s: &TestServer) -> TcpStream {
    let t = TcpStream::connect(s.addr).unwrap();
    t.set_read_timeout(Some(RECV_TIMEOUT)).unwrap();
    t
}

/// One response: its `connection` header and its body.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    connection: String,
    body: String,
}

/// Reads one response off `t`, leaving whatever follows unread.
fn read_answer(t: &mut TcpStream) -> Answer {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(t.read(&mut byte).unwrap(), 1, "response head cut short");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let mut body = vec![0u8; header("content-length").parse().unwrap()];
    t.read_exact(&mut body).unwrap();
    Answer {
        status: head[9..12].parse().unwrap(),
        connection: header("connection"),
        body: String::from_utf8(body).unwrap(),
    }
}

/// Whether the server closed `t` (a read gives end of file).
fn closed(t: &mut TcpStream) -> bool {
    matches!(t.read(&mut [0u8; 1]), Ok(0) | Err(_))
}

fn post(path: &str, body: &str, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn several_requests_over_one_connection_are_answered_in_order() {
    let s = server(1_000, Duration::from_secs(5));
    let mut t = connect(&s);
    for i in 0..5 {
        t.write_all(post(&format!("/one/{i}"), "{}", "").as_bytes())
            .unwrap();
        let a = read_answer(&mut t);
        assert_eq!(
            (a.status, a.connection.as_str(), a.body),
            (200, "keep-alive", format!("POST /one/{i} {{}}"))
        );
    }
    // Pipelined: three requests in one write, answered in order.
    let mut burst = String::new();
    for i in 0..3 {
        burst.push_str(&post(&format!("/burst/{i}"), &format!("b{i}"), ""));
    }
    burst.push_str("GET /last HTTP/1.1\r\nHost: x\r\n\r\n");
    t.write_all(burst.as_bytes()).unwrap();
    for i in 0..3 {
        assert_eq!(read_answer(&mut t).body, format!("POST /burst/{i} b{i}"));
    }
    assert_eq!(read_answer(&mut t).body, "GET /last ");
}

#[test]
fn the_connection_closes_after_max_requests() {
    let s = server(3, Duration::from_secs(5));
    let mut t = connect(&s);
    let mut burst = String::new();
    for i in 0..4 {
        burst.push_str(&post(&format!("/{i}"), "x", ""));
    }
    t.write_all(burst.as_bytes()).unwrap();
    let answers: Vec<_> = (0..3).map(|_| read_answer(&mut t)).collect();
    let connections: Vec<_> = answers.iter().map(|a| a.connection.as_str()).collect();
    assert_eq!(connections, ["keep-alive", "keep-alive", "close"]);
    assert_eq!(answers[2].body, "POST /2 x");
    assert!(closed(&mut t), "the fourth request must not be answered");
}

#[test]
fn an_idle_kept_alive_connection_is_closed() {
    let s = server(1_000, Duration::from_millis(300));
    let mut t = connect(&s);
    t.write_all(post("/a", "", "").as_bytes()).unwrap();
    assert_eq!(read_answer(&mut t).connection, "keep-alive");
    let idle = Instant::now();
    assert!(closed(&mut t));
    let waited = idle.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );
    // A client that keeps talking within the idle timeout is not closed.
    let mut t = connect(&s);
    for _ in 0..3 {
        t.write_all(post("/b", "", "").as_bytes()).unwrap();
        assert_eq!(read_answer(&mut t).connection, "keep-alive");
        std::thread::sleep(Duration::from_millis(150));
    }
}

#[test]
fn connection_close_and_http_1_0_get_one_answer() {
    let s = server(1_000, Duration::from_secs(5));
    let mut t = connect(&s);
    t.write_all(post("/a", "1", "Connection: close\r\n").as_bytes())
        .unwrap();
    let a = read_answer(&mut t);
    assert_eq!(
        (a.connection.as_str(), a.body.as_str()),
        ("close", "POST /a 1")
    );
    assert!(closed(&mut t));

    let mut t = connect(&s);
    t.write_all(b"GET /old HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let a = read_answer(&mut t);
    assert_eq!(
        (a.connection.as_str(), a.body.as_str()),
        ("close", "GET /old ")
    );
    assert!(closed(&mut t));
}

#[test]
fn a_refused_body_closes_the_connection() {
    let s = server(1_000, Duration::from_secs(5));
    let mut t = connect(&s);
    t.write_all(b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        .unwrap();
    let a = read_answer(&mut t);
    assert_eq!((a.status, a.connection.as_str()), (411, "close"));
    assert!(closed(&mut t));
}

#[test]
fn shutdown_closes_a_kept_alive_connection_without_waiting_for_its_idle_timeout() {
    let s = server(1_000, Duration::from_secs(60));
    let mut t = connect(&s);
    t.write_all(post("/a", "", "").as_bytes()).unwrap();
    assert_eq!(read_answer(&mut t).connection, "keep-alive");
    let started = Instant::now();
    smol::block_on(s.handle.shutdown(Duration::from_secs(30)));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    assert!(closed(&mut t));
}
