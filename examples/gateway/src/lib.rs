//! # userlane-gateway
//!
//! userlane on a microcontroller: a WebSocket gateway on embassy-executor
//! and embassy-net (smoltcp), with the core's async shim in a `static`.
//! The same firmware code runs on a NUCLEO-F767ZI (`board` feature, the
//! STM32's Ethernet MAC) and on a Linux host over a TAP device (`host`
//! feature, `embassy-net-tuntap`), where the tests drive it with real
//! WebSocket clients.
//!
//! ```text
//!  embassy-net stack (one task: the driver's runner)
//!      │ 9 listening sockets on the port, one per connection task
//!      ▼
//!  connection task ×9 (embassy_executor::task(pool_size = 9): the core
//!  admits 8 connections, the ninth task answers 503 beyond them)
//!      accept → HTTP head (edge-http) → /ws, token (HS256: hmac + sha2 +
//!      base64 + serde-json-core) → lanes::admit (core: per-user and total
//!      caps) → 101 → welcome queued
//!      ├─ reader: edge-ws frames → handle_inbound (budget, idle activity)
//!      │          → protocol → send_to_user (all the user's connections)
//!      └─ writer: next_transmit (the connection's bounded queue) → frames,
//!                 pings; a Close from the core (1013 slow consumer, 1008
//!                 flood, 1000 idle timeout) is written last
//!  timer task: sleeps until the shard's next deadline → handle_timeout
//!  SNTP task: sets the wall clock (tokens are refused until it is set)
//! ```
//!
//! Every buffer is static: the socket buffers and frame buffers live in the
//! connection tasks' pool, the shard and the message pool are `static`s.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
pub mod lanes;
pub mod pool;
pub mod protocol;
pub mod server;
pub mod token;

pub use lanes::Shard;
pub use server::Settings;

/// Users the gateway holds at once.
pub const USERS: usize = 4;
/// Connections the gateway holds at once.
pub const CONNECTIONS: usize = 8;
/// Connection tasks (and listening sockets): one more than [`CONNECTIONS`],
/// so that a client beyond the total cap is answered by the core's
/// admission (HTTP 503) instead of a TCP reset, and a new client is accepted
/// while a closed connection's task is still finishing its close.
pub const TASKS: usize = CONNECTIONS + 1;
/// Connections one user may hold.
pub const PER_USER: u32 = 2;
/// Frames queued per connection before a slow reader is closed with 1013.
pub const QUEUE_DEPTH: usize = 4;
/// Largest message a client may send, in bytes (bigger: closed with 1009).
pub const MAX_MESSAGE: usize = 1024;
/// `user_message` texts on their way to connections at once (each shared by
/// every copy the core queues).
pub const MESSAGES: usize = 8;

/// The message pool's type.
pub type Messages = pool::MessagePool<MESSAGES>;
/// What the core queues for a connection.
pub type Outbound = protocol::Frame<pool::Shared<MESSAGES>>;

/// The gateway's wall clock (tokens and timestamps), set by SNTP or the host.
pub static CLOCK: clock::WallClock = clock::WallClock::new();

/// The texts of `user_message`s being delivered.
pub static MESSAGE_POOL: Messages = pool::MessagePool::new();

static SHARD: static_cell::StaticCell<Shard> = static_cell::StaticCell::new();

/// Puts the gateway's shard, with `config`, in its `static`. Call once.
///
/// # Panics
///
/// If called twice, or if `config` does not fit the capacities.
pub fn shard(config: userlane_core::Config) -> &'static Shard {
    match lanes::new_shard(config) {
        Some(shard) => SHARD.init(shard),
        None => panic!("gateway config does not fit its capacities"),
    }
}

/// One connection task: accepts on `settings.port` and serves one
/// connection after another. Spawn [`TASKS`] of them.
#[embassy_executor::task(pool_size = TASKS)]
pub async fn connection_task(
    stack: embassy_net::Stack<'static>,
    shard: &'static Shard,
    settings: &'static Settings,
) -> ! {
    server::serve(stack, shard, &MESSAGE_POOL, settings).await
}

/// The shard's timer task.
#[embassy_executor::task]
pub async fn timer_task(shard: &'static Shard) -> ! {
    lanes::run_timers(shard).await
}

/// Keeps [`CLOCK`] set from the SNTP server at `server`.
#[embassy_executor::task]
pub async fn sntp_task(stack: embassy_net::Stack<'static>, server: core::net::SocketAddr) -> ! {
    clock::run_sntp(stack, server, &CLOCK).await
}

/// Spawns the timer task and the [`TASKS`] connection tasks.
pub fn spawn_gateway(
    spawner: embassy_executor::Spawner,
    stack: embassy_net::Stack<'static>,
    shard: &'static Shard,
    settings: &'static Settings,
) -> Result<(), embassy_executor::SpawnError> {
    spawner.spawn(timer_task(shard)?);
    for _ in 0..TASKS {
        spawner.spawn(connection_task(stack, shard, settings)?);
    }
    Ok(())
}
