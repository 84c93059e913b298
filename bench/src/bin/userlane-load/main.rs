//! The load client of the system benchmarks (async-tungstenite on one smol
//! thread, loopback only, every run bounded in count and time). Each mode
//! prints one `RESULT key=value …` line for `bench/run.sh`.
//!
//! - `echo --addr A --conns 100 --size 20 --secs 5 --server-pid P [--rate R]`:
//!   request/response on every connection; msgs/s and msgs per server CPU-second.
//!   With `--rate`, an offered rate of R msgs/s in all, each connection sending
//!   on its own schedule (R ÷ conns per connection, phases spread; one that
//!   falls behind sends at once until it is back on schedule); the client's
//!   own CPU share is reported, to show it was not the bottleneck.
//! - `idle --addr A --conns 10000 --server-pid P`: server RSS before and
//!   after opening idle connections, per connection.
//! - `fanout --addr A --conns 10000 --bursts 5 --per-burst 10 --size 64`:
//!   triggers `GET /burst` and measures deliveries/s and publish→delivery
//!   latency (HDR histogram) over every connection.
//! - `paced --addr A --conns 990 --users 1000 --rate 100 --secs 30
//!   [--stop-pid P --expect-slow 10] --server-pid S`: triggers `GET /pace`;
//!   healthy-client latency, server RSS growth; optionally SIGSTOPs the slow
//!   client process and reports when the server closed it (1013).
//! - `hold --addr A --conns 10 --first 990 [--rcvbuf 4096] --secs 60`: the
//!   slow side of `paced`: reads until stopped, then reports the close codes.
//! - `flood` and `slowloris`: hostile clients against the example server,
//!   see [`hostile`].
//! - `service`: one back end pushing messages through the example server's
//!   service API with keep-alive and batches, see [`service`].

mod hostile;
mod service;

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Async, LocalExecutor};
use userlane_bench::{
    cpu_seconds, mono_ns, parse_payload, status_kib, tcp_mem_pages, ws_config, Args,
};

type Ws = WebSocketStream<Async<TcpStream>>;

/// Most handshakes in flight while opening connections.
const OPENING: usize = 256;

async fn connect(addr: SocketAddr, user: &str, rcvbuf: Option<i32>) -> Result<Ws, String> {
    let stream = match rcvbuf {
        None => Async::<TcpStream>::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?,
        Some(bytes) => connect_small_window(addr, bytes).await?,
    };
    let _ = stream.get_ref().set_nodelay(true);
    let url = format!("ws://{addr}/ws?token={user}");
    let (ws, _) = async_tungstenite::client_async_with_config(url, stream, Some(ws_config()))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    Ok(ws)
}

/// A connection whose receive buffer is set to `bytes` before the
/// handshake, so the window it advertises stays small (a slow consumer
/// then fills up within seconds instead of after megabytes).
async fn connect_small_window(addr: SocketAddr, bytes: i32) -> Result<Async<TcpStream>, String> {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(v4) = addr else {
        return Err("IPv4 only".into());
    };
    // SAFETY: plain socket calls on a descriptor we own; `sa` and `bytes`
    // are valid for the sizes passed; the fd is handed to `TcpStream` once.
    let fd = unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &bytes as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        );
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let r = libc::connect(
            fd,
            &sa as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINPROGRESS) {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            return Err(format!("connect: {e}"));
        }
        fd
    };
    // SAFETY: `fd` is a connected-or-connecting TCP socket we own.
    let stream = Async::new(unsafe { TcpStream::from_raw_fd(fd) }).map_err(|e| e.to_string())?;
    stream.writable().await.map_err(|e| e.to_string())?;
    if let Some(e) = stream.get_ref().take_error().map_err(|e| e.to_string())? {
        return Err(format!("connect: {e}"));
    }
    Ok(stream)
}

/// Opens `n` connections as users `prefix{first}..`, at most [`OPENING`] at a time.
async fn connect_all(
    ex: &LocalExecutor<'_>,
    addr: SocketAddr,
    prefix: &str,
    first: usize,
    n: usize,
    rcvbuf: Option<i32>,
) -> Vec<Ws> {
    let gate = Rc::new(smol::lock::Semaphore::new(OPENING));
    let tasks: Vec<_> = (first..first + n)
        .map(|i| {
            let gate = gate.clone();
            let user = format!("{prefix}{i}");
            ex.spawn(async move {
                let _permit = gate.acquire().await;
                for attempt in 0..5 {
                    match connect(addr, &user, rcvbuf).await {
                        Ok(ws) => return Some(ws),
                        Err(e) if attempt == 4 => eprintln!("{user}: {e}"),
                        Err(_) => {
                            smol::Timer::after(Duration::from_millis(100)).await;
                        }
                    }
                }
                None
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        if let Some(ws) = t.await {
            out.push(ws);
        }
    }
    out
}

/// `GET target` on the server's port: the status (0 if there was no
/// answer) and the body.
async fn http_request(addr: SocketAddr, target: &str) -> (u16, String) {
    let Ok(mut s) = Async::<TcpStream>::connect(addr).await else {
        return (0, String::new());
    };
    let req = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or(text);
    (status, body)
}

/// `GET target` on the server's port; the body.
async fn http_get(addr: SocketAddr, target: &str) -> String {
    http_request(addr, target).await.1
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

fn main() {
    let args = Args::parse();
    let addr: SocketAddr = args.str("addr", "127.0.0.1:9700").parse().expect("--addr");
    let ex = LocalExecutor::new();
    let mode = args.command.clone().unwrap_or_default();
    let deadline = args.secs("timeout", 120.0);
    let run = async {
        match mode.as_str() {
            "echo" => echo(&ex, addr, &args).await,
            "idle" => idle(&ex, addr, &args).await,
            "fanout" => fanout(&ex, addr, &args).await,
            "paced" => paced(&ex, addr, &args).await,
            "hold" => hold(&ex, addr, &args).await,
            "flood" => hostile::flood(&ex, addr, &args).await,
            "slowloris" => hostile::slowloris(&ex, addr, &args).await,
            "service" => service::service(&ex, addr, &args).await,
            other => eprintln!(
                "unknown mode {other:?}: echo, idle, fanout, paced, hold, flood, slowloris or service"
            ),
        }
    };
    let finished = smol::block_on(ex.run(smol::future::or(
        async {
            run.await;
            true
        },
        async {
            smol::Timer::after(deadline).await;
            false
        },
    )));
    if !finished {
        println!("RESULT {mode} error=timeout");
        std::process::exit(1);
    }
}

async fn echo(ex: &LocalExecutor<'_>, addr: SocketAddr, args: &Args) {
    let n: usize = args.num("conns", 100);
    let size: usize = args.num("size", 20);
    let secs = args.secs("secs", 5.0);
    let warm = args.secs("warmup", 0.5);
    let pid: u32 = args.num("server-pid", 0);
    let prefix = args.str("prefix", "e");
    let rate: f64 = args.num("rate", 0.0);
    let conns = connect_all(ex, addr, &prefix, 0, n, None).await;
    let opened = conns.len();
    // Offered rate: connection i sends its k-th message at start + (k + i/n) × interval.
    let interval = (rate > 0.0).then(|| Duration::from_secs_f64(opened as f64 / rate));
    let start = Instant::now();
    let counting = Rc::new(Cell::new(false));
    let stop = Rc::new(Cell::new(false));
    let count = Rc::new(Cell::new(0u64));
    let errors = Rc::new(Cell::new(0u64));
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, mut ws)| {
            let (counting, stop, count, errors) = (
                counting.clone(),
                stop.clone(),
                count.clone(),
                errors.clone(),
            );
            ex.spawn(async move {
                let msg = vec![0x61u8; size];
                let phase = i as f64 / opened.max(1) as f64;
                let mut k = 0f64;
                while !stop.get() {
                    if let Some(iv) = interval {
                        let due = start + iv.mul_f64(k + phase);
                        k += 1.0;
                        if due > Instant::now() {
                            smol::Timer::at(due).await;
                        }
                    }
                    if ws.send(Message::Binary(msg.clone().into())).await.is_err() {
                        errors.set(errors.get() + 1);
                        return;
                    }
                    loop {
                        match ws.next().await {
                            // The echo must be the very message sent; anything else is an error.
                            Some(Ok(Message::Binary(b))) if b[..] == msg[..] => break,
                            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                            _ => {
                                errors.set(errors.get() + 1);
                                return;
                            }
                        }
                    }
                    if counting.get() {
                        count.set(count.get() + 1);
                    }
                }
                let _ = ws.close(None).await;
            })
        })
        .collect();
    smol::Timer::after(warm).await;
    let me = std::process::id();
    let (cpu0, own0) = (
        cpu_seconds(pid).unwrap_or(0.0),
        cpu_seconds(me).unwrap_or(0.0),
    );
    let t0 = Instant::now();
    counting.set(true);
    smol::Timer::after(secs).await;
    counting.set(false);
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    let own = cpu_seconds(me).unwrap_or(0.0) - own0;
    stop.set(true);
    let msgs = count.get();
    for t in tasks {
        let _ = smol::future::or(t, async {
            smol::Timer::after(Duration::from_secs(2)).await;
        })
        .await;
    }
    println!(
        "RESULT echo conns={opened} size={size} msgs={msgs} secs={elapsed:.3} msgs_per_s={:.0} server_cpu_s={cpu:.3} msgs_per_cpu_s={:.0} errors={} offered_per_s={rate:.0} server_cpu_share={:.3} client_cpu_share={:.3}",
        msgs as f64 / elapsed,
        if cpu > 0.0 { msgs as f64 / cpu } else { 0.0 },
        errors.get(),
        cpu / elapsed,
        own / elapsed,
    );
}

async fn idle(ex: &LocalExecutor<'_>, addr: SocketAddr, args: &Args) {
    let n: usize = args.num("conns", 10_000);
    let pid: u32 = args.num("server-pid", 0);
    let settle = args.secs("settle", 2.0);
    let prefix = args.str("prefix", "i");
    smol::Timer::after(Duration::from_millis(300)).await;
    let rss0 = status_kib(pid, "VmRSS").unwrap_or(0);
    let tcp0 = tcp_mem_pages().unwrap_or(0);
    let t0 = Instant::now();
    let conns = connect_all(ex, addr, &prefix, 0, n, None).await;
    let open_s = t0.elapsed().as_secs_f64();
    smol::Timer::after(settle).await;
    let rss1 = status_kib(pid, "VmRSS").unwrap_or(0);
    let tcp1 = tcp_mem_pages().unwrap_or(0);
    let per = (rss1.saturating_sub(rss0)) as f64 * 1024.0 / conns.len().max(1) as f64;
    println!(
        "RESULT idle conns={} open_s={open_s:.2} rss0_kib={rss0} rss1_kib={rss1} bytes_per_conn={per:.0} tcp_mem_pages_delta={}",
        conns.len(),
        tcp1 as i64 - tcp0 as i64
    );
    drop(conns);
}

/// Per-connection readers shared by `fanout` and `paced`.
struct Deliveries {
    hist: RefCell<Histogram<u64>>,
    count: Cell<u64>,
    /// Only messages with a sequence number at or above this are recorded.
    record_from: Cell<u64>,
    first_publish: Cell<u64>,
    last_receive: Cell<u64>,
    closes: RefCell<Vec<u16>>,
    max_seq: RefCell<Vec<u64>>,
}

impl Deliveries {
    fn new(conns: usize) -> Rc<Deliveries> {
        Rc::new(Deliveries {
            hist: RefCell::new(histogram()),
            count: Cell::new(0),
            record_from: Cell::new(0),
            first_publish: Cell::new(u64::MAX),
            last_receive: Cell::new(0),
            closes: RefCell::new(Vec::new()),
            max_seq: RefCell::new(vec![0; conns]),
        })
    }

    fn reset_window(&self) {
        self.first_publish.set(u64::MAX);
        self.last_receive.set(0);
    }

    fn spawn_readers(
        self: &Rc<Self>,
        ex: &LocalExecutor<'_>,
        conns: Vec<Ws>,
    ) -> Vec<smol::Task<()>> {
        conns
            .into_iter()
            .enumerate()
            .map(|(i, mut ws)| {
                let d = self.clone();
                ex.spawn(async move {
                    while let Some(m) = ws.next().await {
                        match m {
                            Ok(Message::Binary(b)) => {
                                let now = mono_ns();
                                let Some((seq, t)) = parse_payload(&b) else {
                                    continue;
                                };
                                d.max_seq.borrow_mut()[i] = seq;
                                if seq < d.record_from.get() {
                                    continue;
                                }
                                d.count.set(d.count.get() + 1);
                                let _ = d
                                    .hist
                                    .borrow_mut()
                                    .record((now.saturating_sub(t) / 1000).max(1));
                                d.first_publish.set(d.first_publish.get().min(t));
                                d.last_receive.set(d.last_receive.get().max(now));
                            }
                            Ok(Message::Close(frame)) => {
                                d.closes
                                    .borrow_mut()
                                    .push(frame.map_or(1005, |f| u16::from(f.code)));
                                // Keep reading so tungstenite answers the close.
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                })
            })
            .collect()
    }
}

fn percentiles(h: &Histogram<u64>) -> String {
    format!(
        "p50_us={} p99_us={} max_us={}",
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        h.max()
    )
}

async fn fanout(ex: &LocalExecutor<'_>, addr: SocketAddr, args: &Args) {
    let n: usize = args.num("conns", 10_000);
    let bursts: u64 = args.num("bursts", 5);
    let per: u64 = args.num("per-burst", 10);
    let size: usize = args.num("size", 64);
    let pid: u32 = args.num("server-pid", 0);
    let prefix = args.str("prefix", "u");
    let conns = connect_all(ex, addr, &prefix, 0, n, None).await;
    let opened = conns.len();
    let d = Deliveries::new(opened);
    let _readers = d.spawn_readers(ex, conns);
    smol::Timer::after(Duration::from_millis(500)).await;
    let mut span_ns = 0u64;
    let mut cpu = 0.0;
    let mut incomplete = 0;
    // Burst 0 warms up and is not recorded.
    for b in 0..=bursts {
        let base = b * per;
        d.record_from.set(if b == 0 { u64::MAX } else { base });
        let before = d.count.get();
        d.reset_window();
        let cpu0 = cpu_seconds(pid).unwrap_or(0.0);
        let target =
            format!("/burst?users={opened}&prefix={prefix}&n={per}&size={size}&seq={base}");
        let reply = http_get(addr, &target).await;
        if b == 0 {
            smol::Timer::after(Duration::from_millis(500)).await;
            continue;
        }
        let want = before + per * opened as u64;
        let start = Instant::now();
        while d.count.get() < want && start.elapsed() < Duration::from_secs(10) {
            smol::Timer::after(Duration::from_micros(500)).await;
        }
        if d.count.get() < want {
            incomplete += 1;
            eprintln!(
                "burst {b}: {} of {} deliveries ({reply:?})",
                d.count.get() - before,
                want - before
            );
        }
        span_ns += d.last_receive.get().saturating_sub(d.first_publish.get());
        cpu += cpu_seconds(pid).unwrap_or(0.0) - cpu0;
        smol::Timer::after(Duration::from_millis(200)).await;
    }
    let delivered = d.count.get();
    let dps = delivered as f64 / (span_ns as f64 / 1e9);
    println!(
        "RESULT fanout conns={opened} bursts={bursts} per_burst={per} size={size} deliveries={delivered} deliveries_per_s={dps:.0} {} server_cpu_s={cpu:.3} incomplete_bursts={incomplete}",
        percentiles(&d.hist.borrow())
    );
}

/// The process `raw` names as a `kill` target: `None` for 0 and for values
/// past `pid_t::MAX`, which `kill` would read as a process group or as -1
/// (every process the caller may signal), never as one process.
fn signal_target(raw: u32) -> Option<libc::pid_t> {
    libc::pid_t::try_from(raw).ok().filter(|pid| *pid > 0)
}

/// Sends `signal` to the one process `pid` (a positive id from
/// [`signal_target`]).
fn send_signal(pid: libc::pid_t, signal: libc::c_int) {
    assert!(pid > 0, "a signal goes to one process, never to a group");
    // SAFETY: sending a signal to a process id has no memory-safety preconditions.
    if unsafe { libc::kill(pid, signal) } != 0 {
        eprintln!(
            "kill({pid}, {signal}) failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

async fn paced(ex: &LocalExecutor<'_>, addr: SocketAddr, args: &Args) {
    let n: usize = args.num("conns", 990);
    let users: usize = args.num("users", n);
    let rate: f64 = args.num("rate", 100.0);
    let secs: f64 = args.num("secs", 30.0);
    let size: usize = args.num("size", 64);
    let pid: u32 = args.num("server-pid", 0);
    let stop_raw: u32 = args.num("stop-pid", 0);
    let stop_pid = match (stop_raw, signal_target(stop_raw)) {
        (0, _) => None,
        (_, Some(pid)) => Some(pid),
        (raw, None) => {
            eprintln!(
                "--stop-pid {raw} is not a process id (1..={})",
                libc::pid_t::MAX
            );
            std::process::exit(2);
        }
    };
    let expect_slow: u32 = args.num("expect-slow", 0);
    let stop_after = args.secs("stop-after", 2.0);
    let prefix = args.str("prefix", "u");
    let conns = connect_all(ex, addr, &prefix, 0, n, None).await;
    let opened = conns.len();
    let d = Deliveries::new(opened);
    // The first second warms up.
    d.record_from.set(rate as u64);
    let _readers = d.spawn_readers(ex, conns);
    smol::Timer::after(Duration::from_millis(500)).await;
    let rss0 = status_kib(pid, "VmRSS").unwrap_or(0);
    let mut rss_max = rss0;
    let start_ns = mono_ns();
    let _ = http_get(
        addr,
        &format!("/pace?users={users}&prefix={prefix}&rate={rate}&secs={secs}&size={size}"),
    )
    .await;
    let start = Instant::now();
    let (mut t_stop, mut t_cont) = (0u64, 0u64);
    let mut report;
    loop {
        smol::Timer::after(Duration::from_millis(250)).await;
        rss_max = rss_max.max(status_kib(pid, "VmRSS").unwrap_or(0));
        if let Some(pid) = stop_pid.filter(|_| t_stop == 0 && start.elapsed() >= stop_after) {
            send_signal(pid, libc::SIGSTOP);
            t_stop = mono_ns();
        }
        report = http_get(addr, "/pace-report").await;
        let closes: u32 = report
            .lines()
            .filter_map(|l| l.strip_prefix("close "))
            .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u32>().ok())
            .sum();
        let done = report.lines().any(|l| l == "done 1");
        if let Some(pid) = stop_pid.filter(|_| t_stop != 0 && t_cont == 0) {
            if closes >= expect_slow || done {
                send_signal(pid, libc::SIGCONT);
                t_cont = mono_ns();
            }
        }
        if done || start.elapsed().as_secs_f64() > secs + 10.0 {
            break;
        }
    }
    if let Some(pid) = stop_pid.filter(|_| t_stop != 0 && t_cont == 0) {
        send_signal(pid, libc::SIGCONT);
    }
    smol::Timer::after(Duration::from_millis(500)).await;
    let started_ns: u64 = report
        .lines()
        .find_map(|l| l.strip_prefix("started_ns "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(start_ns);
    let seq_at_stop = if t_stop > started_ns {
        ((t_stop - started_ns) as f64 / 1e9 * rate) as u64
    } else {
        0
    };
    let closes: Vec<String> = report
        .lines()
        .filter_map(|l| l.strip_prefix("close "))
        .filter_map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            let (t, seq, k) = (*f.first()?, *f.get(1)?, *f.get(2)?);
            Some(format!(
                "{}:{seq}:{k}",
                (t as i64 - t_stop as i64) / 1_000_000
            ))
        })
        .collect();
    println!(
        "RESULT paced conns={opened} users={users} rate={rate} secs={secs} deliveries={} {} rss0_kib={rss0} rss_max_kib={rss_max} rss_growth_kib={} stopped={} seq_at_stop={seq_at_stop} slow_closes_ms_seq_n={} resumed_after_ms={}",
        d.count.get(),
        percentiles(&d.hist.borrow()),
        rss_max.saturating_sub(rss0),
        u8::from(t_stop != 0),
        if closes.is_empty() { "-".to_owned() } else { closes.join(",") },
        if t_cont > t_stop { (t_cont - t_stop) / 1_000_000 } else { 0 },
    );
}

async fn hold(ex: &LocalExecutor<'_>, addr: SocketAddr, args: &Args) {
    let n: usize = args.num("conns", 10);
    let first: usize = args.num("first", 0);
    let rcvbuf: i32 = args.num("rcvbuf", 0);
    let secs = args.secs("secs", 60.0);
    let prefix = args.str("prefix", "u");
    let conns = connect_all(ex, addr, &prefix, first, n, (rcvbuf > 0).then_some(rcvbuf)).await;
    let opened = conns.len();
    let d = Deliveries::new(opened);
    let readers = d.spawn_readers(ex, conns);
    println!("READY {opened}");
    let all = async {
        for r in readers {
            r.await;
        }
    };
    smol::future::or(all, async {
        smol::Timer::after(secs).await;
    })
    .await;
    let closes = d.closes.borrow();
    let max_seq = d.max_seq.borrow();
    println!(
        "RESULT hold conns={opened} closed_1013={} other_closes={} last_seq_max={} last_seq_min={}",
        closes.iter().filter(|c| **c == 1013).count(),
        closes.iter().filter(|c| **c != 1013).count(),
        max_seq.iter().max().copied().unwrap_or(0),
        max_seq.iter().min().copied().unwrap_or(0),
    );
}

#[cfg(test)]
mod tests {
    use super::signal_target;

    #[test]
    fn a_pid_past_pid_t_is_refused_not_sent_to_every_process() {
        assert_eq!(signal_target(4_294_967_295), None);
        assert_eq!(signal_target(2_147_483_648), None);
        assert_eq!(signal_target(0), None);
        assert_eq!(signal_target(1), Some(1));
        assert_eq!(signal_target(2_147_483_647), Some(2_147_483_647));
    }
}
