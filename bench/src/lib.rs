//! Shared by the system-benchmark binaries: `/proc` readers for server CPU
//! and memory, the tungstenite buffer configuration, and (from `wire.rs`) the
//! clock, the timestamped payload and argument parsing.
//!
//! Every load loop is bounded in count and time and targets loopback only.

use async_tungstenite::tungstenite::protocol::WebSocketConfig;

mod wire;
pub use wire::{mono_ns, parse_payload, payload, qnum, query, user_ids, Args};

/// Read buffer per connection, as in `userlane_smol::ServerConfig`'s default.
pub const READ_BUF: usize = 4 * 1024;
/// Write buffer target per connection, as in `ServerConfig`'s default.
pub const WRITE_BUF: usize = 4 * 1024;
/// Largest message, as in `ServerConfig`'s default.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The tungstenite configuration userlane-smol uses (`connection/upgrade.rs`) with
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

/// CPU time (user + system) a process has used, in seconds: the kernel's
/// CPU clock of the process (all its threads, nanoseconds), or where that
/// clock cannot be read, `utime + stime` of `/proc/<pid>/stat` (clock ticks,
/// usually 10 ms, too coarse for a one-second window).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let mut clock: libc::clockid_t = 0;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let id = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: both out-pointers are valid and writable for the call.
    if unsafe { libc::clock_getcpuclockid(id, &mut clock) } == 0
        && unsafe { libc::clock_gettime(clock, &mut ts) } == 0
    {
        return Some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9);
    }
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
