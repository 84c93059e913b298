//! Shared by the system-benchmark binaries: the clock every process reads
//! (`CLOCK_MONOTONIC`, comparable across processes on one machine), the
//! payload that carries a publish timestamp, `/proc` readers for server CPU
//! and memory, the tungstenite buffer configuration, and argument parsing.
//!
//! Every load loop is bounded in count and time and targets loopback only.

use std::collections::HashMap;
use std::time::Duration;

use async_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Read buffer per connection, as in `userlane_smol::ServerConfig`'s default.
pub const READ_BUF: usize = 4 * 1024;
/// Write buffer target per connection, as in `ServerConfig`'s default.
pub const WRITE_BUF: usize = 4 * 1024;
/// Largest message, as in `ServerConfig`'s default.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The tungstenite configuration userlane-smol uses (`connection.rs`) with
/// its default `ServerConfig`; every bench server and the client use it, so
/// the designs differ only in what they put around tungstenite.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUF)
        .write_buffer_size(WRITE_BUF)
        .max_write_buffer_size(WRITE_BUF + 2 * MAX_MESSAGE + 1024)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process here.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A payload of `size` bytes (at least 16): sequence number and publish
/// time, then padding.
pub fn payload(seq: u64, t_ns: u64, size: usize) -> Vec<u8> {
    let mut v = vec![0x2e; size.max(16)];
    v[..8].copy_from_slice(&seq.to_le_bytes());
    v[8..16].copy_from_slice(&t_ns.to_le_bytes());
    v
}

/// The sequence number and publish time of a [`payload`].
pub fn parse_payload(p: &[u8]) -> Option<(u64, u64)> {
    if p.len() < 16 {
        return None;
    }
    let seq = u64::from_le_bytes(p[..8].try_into().ok()?);
    let t = u64::from_le_bytes(p[8..16].try_into().ok()?);
    Some((seq, t))
}

/// CPU time (user + system) a process has used, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line (11 and 12 here, 0-based).
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Kernel TCP memory in pages (`/proc/net/sockstat`, `TCP: … mem N`).
pub fn tcp_mem_pages() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = s.lines().find(|l| l.starts_with("TCP:"))?;
    let mut it = line.split_whitespace();
    while let Some(w) = it.next() {
        if w == "mem" {
            return it.next()?.parse().ok();
        }
    }
    None
}

/// `--key value` and `--flag` arguments.
#[derive(Debug, Default)]
pub struct Args {
    map: HashMap<String, String>,
    /// The first argument that is not an option (the mode).
    pub command: Option<String>,
}

impl Args {
    /// Parses `std::env::args()`.
    pub fn parse() -> Args {
        let mut args = Args::default();
        let mut it = std::env::args().skip(1).peekable();
        while let Some(a) = it.next() {
            if let Some(key) = a.strip_prefix("--") {
                let value = match it.peek() {
                    Some(v) if !v.starts_with("--") => it.next().unwrap_or_default(),
                    _ => "true".to_owned(),
                };
                args.map.insert(key.to_owned(), value);
            } else if args.command.is_none() {
                args.command = Some(a);
            }
        }
        args
    }

    /// A string option.
    pub fn str(&self, key: &str, default: &str) -> String {
        self.map
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    }

    /// A numeric option.
    pub fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> T {
        match self.map.get(key) {
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| panic!("--{key} {v}: not a number")),
            None => default,
        }
    }

    /// Whether `--flag` was given.
    pub fn flag(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// A duration in seconds (fractions allowed).
    pub fn secs(&self, key: &str, default: f64) -> Duration {
        Duration::from_secs_f64(self.num(key, default))
    }
}

/// The query parameters of a request target (`/burst?n=10&size=64`).
pub fn query(target: &str) -> HashMap<String, String> {
    target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A numeric query parameter.
pub fn qnum<T: std::str::FromStr>(q: &HashMap<String, String>, key: &str, default: T) -> T {
    q.get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// User ids `prefix0 .. prefix{n-1}`: the tokens the load client connects with.
pub fn user_ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}
