//! The gateway's wall clock: unix time is needed for tokens (`exp`, `nbf`,
//! `iat`) and frame timestamps, and a microcontroller has none after boot.
//! [`WallClock`] holds the unix time at boot once something has told it:
//! SNTP ([`run_sntp`], over an embassy-net UDP socket with `sntpc`), or the
//! host's clock. Until then [`WallClock::unix_ms`] is `None` and the gateway
//! refuses every token (503): an unknown clock never accepts a token.

use core::cell::Cell;
use core::net::SocketAddr;

use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::Stack;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_time::{with_timeout, Duration, Instant, Timer};
use sntpc::{NtpContext, NtpTimestampGenerator};
use sntpc_net_embassy::UdpSocketWrapper;

/// Unix time at boot, once known.
pub struct WallClock {
    boot_unix_ms: Mutex<CriticalSectionRawMutex, Cell<Option<u64>>>,
}

impl WallClock {
    /// A clock that does not know the time yet.
    pub const fn new() -> Self {
        WallClock {
            boot_unix_ms: Mutex::new(Cell::new(None)),
        }
    }

    /// Sets the clock: `unix_ms` is the unix time now, in milliseconds.
    pub fn set_unix_ms(&self, unix_ms: u64) {
        let boot = unix_ms.saturating_sub(Instant::now().as_millis());
        self.boot_unix_ms.lock(|c| c.set(Some(boot)));
    }

    /// The unix time now in milliseconds, or `None` while the clock is unset.
    pub fn unix_ms(&self) -> Option<u64> {
        self.boot_unix_ms
            .lock(Cell::get)
            .map(|boot| boot + Instant::now().as_millis())
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

/// SNTP's view of our clock: the wall clock if set, else the time since
/// boot (the server's answer does not depend on it; only the round-trip
/// estimate does).
#[derive(Clone, Copy)]
struct Stamp {
    clock: &'static WallClock,
    ms: u64,
}

impl NtpTimestampGenerator for Stamp {
    fn init(&mut self) {
        self.ms = self
            .clock
            .unix_ms()
            .unwrap_or_else(|| Instant::now().as_millis());
    }

    fn timestamp_sec(&self) -> u64 {
        self.ms / 1000
    }

    fn timestamp_subsec_micros(&self) -> u32 {
        (self.ms % 1000) as u32 * 1000
    }

    fn precision(&self) -> i8 {
        -10 // milliseconds
    }
}

/// How long an SNTP answer may take.
const SNTP_TIMEOUT: Duration = Duration::from_secs(2);
/// Time between synchronisations once the clock is set.
const RESYNC: Duration = Duration::from_secs(3600);
/// Longest wait between failed attempts (they start at 1 s and double).
const MAX_RETRY: Duration = Duration::from_secs(60);

/// Keeps `clock` set from the SNTP server at `server`: at once, then every
/// hour; a failed attempt is retried after 1 s, 2 s, … up to a minute.
pub async fn run_sntp(stack: Stack<'static>, server: SocketAddr, clock: &'static WallClock) -> ! {
    let mut rx_meta = [PacketMetadata::EMPTY; 1];
    let mut tx_meta = [PacketMetadata::EMPTY; 1];
    let mut rx = [0u8; 64];
    let mut tx = [0u8; 64];
    let mut socket = UdpSocket::new(stack, &mut rx_meta, &mut rx, &mut tx_meta, &mut tx);
    // Only fails for a socket already bound, and this one is new.
    let _ = socket.bind(0);
    let socket = UdpSocketWrapper::new(socket);
    let mut retry = Duration::from_secs(1);
    loop {
        let context = NtpContext::new(Stamp { clock, ms: 0 });
        match with_timeout(SNTP_TIMEOUT, sntpc::get_time(server, &socket, context)).await {
            Ok(Ok(t)) => {
                let ms =
                    t.sec() * 1000 + u64::from(sntpc::fraction_to_milliseconds(t.sec_fraction()));
                clock.set_unix_ms(ms);
                retry = Duration::from_secs(1);
                Timer::after(RESYNC).await;
            }
            _ => {
                Timer::after(retry).await;
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    }
}
