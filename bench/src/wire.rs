//! What the bench servers, the peers (`bench/peers/`) and the load client
//! share without a WebSocket library: the clock every process reads
//! (`CLOCK_MONOTONIC`, comparable across processes on one machine), the
//! payload that carries a publish timestamp, argument and query parsing.
//! Depends on `std` and `libc` only; `bench/peers` includes this file with
//! `#[path]`, so its tokio and hyper never enter the userlane crates' graph.

use std::collections::HashMap;
use std::time::Duration;

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
