//! Shared by the micro-benchmarks: the workload, the baselines the core is
//! measured against (benches only, never shipped), and small helpers.
//!
//! - **B-map**: the singleton the project migrated away from,
//!   `std::sync::Mutex<HashMap<UserId, Vec<async_channel::Sender<Frame>>>>`
//!   (std SipHash, bounded channels of the same depth as our queues);
//! - **B-rw**: the same behind a `std::sync::RwLock` (sends take the read lock).
//!
//! Every body here is also run under callgrind by `benches/instr.rs`.
#![allow(dead_code)] // Each bench binary uses part of the support module.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex, RwLock};

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use userlane_core::shim::SharedFactory;

use userlane_core::{Config, ConnectionHandle, Instant, ManagerFactory, ManagerHandle};
use userlane_core::{Event, Transmit, UserContext};

/// The payload: one pre-encoded frame shared by every queue it is put in.
pub type Frame = Arc<[u8]>;

/// Users in the `send_to_user` workload.
pub const USERS: usize = 10_000;
/// Per-connection queue depth, the server default, used by every design.
pub const QUEUE_DEPTH: u32 = 64;

/// A 64-byte frame (a small server→client message).
pub fn frame() -> Frame {
    Arc::from(vec![0x5a; 64].into_boxed_slice())
}

/// Connections of user `k`: 80 % have one, 10 % two and 10 % three.
pub fn conns_of(k: usize) -> usize {
    match k % 10 {
        0 => 2,
        5 => 3,
        _ => 1,
    }
}

/// The id of user `k`.
pub fn user_id(k: usize) -> String {
    format!("user-{k:05}")
}

/// A fixed pseudo-random permutation of `0..n` (xorshift Fisher–Yates), so
/// every design sees the same access order and no design gets sequential
/// cache-friendly access for free.
pub fn permutation(n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

/// Runs `f` on a thread with a stack of `stack` bytes: big factories are
/// built by value before they are boxed (as `ShardSlot::build` does).
pub fn on_big_stack<T: Send + 'static>(stack: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(f)
        .expect("spawn builder thread")
        .join()
        .expect("builder thread panicked")
}

/// A context for user `id` (all other ids fixed).
pub fn ctx(id: &str) -> UserContext {
    UserContext::new(id, "thread", "run", "req").expect("valid ids")
}

// ---------------------------------------------------------------- userlane

/// The factory of the `send_to_user` workload: 10,000 users, 13,000
/// connections, room for two full rounds of messages.
pub type SendFactory = ManagerFactory<Frame, 16_384, 16_384, 32_768>;

/// The `Config` of the send workload: no timers (nothing fires mid-bench).
pub fn send_config() -> Config {
    Config {
        max_connections_per_user: 8,
        queue_depth: QUEUE_DEPTH,
        idle_timeout_ms: None,
        empty_manager_ttl_ms: None,
        ..Config::for_capacity(16_384, 16_384)
    }
}

/// The send workload, built: the factory, each user's id and handle, and
/// every connection handle.
pub struct Lanes {
    pub f: Box<SendFactory>,
    pub ids: Vec<String>,
    pub managers: Vec<ManagerHandle>,
    pub conns: Vec<ConnectionHandle>,
}

impl Lanes {
    pub fn build() -> Lanes {
        Lanes::build_with(send_config())
    }

    pub fn build_with(config: Config) -> Lanes {
        on_big_stack(
            4 * std::mem::size_of::<SendFactory>() + (16 << 20),
            move || {
                let mut f = Box::new(SendFactory::new(config).expect("config fits"));
                let ids: Vec<String> = (0..USERS).map(user_id).collect();
                let mut managers = Vec::with_capacity(USERS);
                let mut conns = Vec::new();
                for (k, id) in ids.iter().enumerate() {
                    let c = ctx(id);
                    let m = f.create_manager(c.clone(), Instant::ZERO).unwrap();
                    while f.poll_event().is_some() {}
                    for _ in 0..conns_of(k) {
                        conns.push(f.add_connection(m, &c, Instant::ZERO).unwrap());
                    }
                    managers.push(m);
                }
                while f.poll_event().is_some() {}
                Lanes {
                    f,
                    ids,
                    managers,
                    conns,
                }
            },
        )
    }

    /// What a writer does: take every event and every queued message.
    pub fn drain(&mut self) {
        drain_factory(&mut self.f, &self.conns);
    }
}

/// Drains events, then every connection's queue, of any factory.
pub fn drain_factory<const U: usize, const C: usize, const S: usize, const E: usize>(
    f: &mut ManagerFactory<Frame, U, C, S, E>,
    conns: &[ConnectionHandle],
) {
    while f.poll_event().is_some() {}
    for c in conns {
        while let Ok(Some(Transmit::Message(m))) = f.poll_transmit(*c) {
            std::hint::black_box(m);
        }
    }
}

// ------------------------------------------------------------- baselines

/// The table of the legacy designs: user id → one sender per connection.
pub type Table = HashMap<String, Vec<async_channel::Sender<Frame>>>;

/// B-map: one global `Mutex<HashMap<user id, senders>>`.
pub struct BMap {
    pub map: Mutex<Table>,
    pub receivers: Vec<async_channel::Receiver<Frame>>,
}

/// B-rw: the same with a `RwLock`.
pub struct BRw {
    pub map: RwLock<Table>,
    pub receivers: Vec<async_channel::Receiver<Frame>>,
}

fn baseline_tables() -> (Table, Vec<async_channel::Receiver<Frame>>) {
    let mut map = HashMap::new();
    let mut receivers = Vec::new();
    for k in 0..USERS {
        let senders: Vec<_> = (0..conns_of(k))
            .map(|_| {
                let (tx, rx) = async_channel::bounded(QUEUE_DEPTH as usize);
                receivers.push(rx);
                tx
            })
            .collect();
        map.insert(user_id(k), senders);
    }
    (map, receivers)
}

/// The legacy `send_to_user`: lock, look the user up, `try_send` a clone
/// of the frame to each of its connections. Returns how many got it.
#[inline]
pub fn bmap_send(map: &Mutex<Table>, user: &str, frame: &Frame) -> usize {
    let guard = map.lock().unwrap();
    let mut n = 0;
    if let Some(senders) = guard.get(user) {
        for s in senders {
            if s.try_send(frame.clone()).is_ok() {
                n += 1;
            }
        }
    }
    n
}

/// [`bmap_send`] under the read lock of a `RwLock`.
#[inline]
pub fn brw_send(map: &RwLock<Table>, user: &str, frame: &Frame) -> usize {
    let guard = map.read().unwrap();
    let mut n = 0;
    if let Some(senders) = guard.get(user) {
        for s in senders {
            if s.try_send(frame.clone()).is_ok() {
                n += 1;
            }
        }
    }
    n
}

/// A connection of the legacy design: its sender (kept to find it again on
/// disconnect) and its receiver (the writer's end).
pub type BConn = (async_channel::Sender<Frame>, async_channel::Receiver<Frame>);

/// The legacy connect: a new channel registered under the user.
pub fn bmap_connect(map: &Mutex<Table>, user: &str) -> BConn {
    let (tx, rx) = async_channel::bounded(QUEUE_DEPTH as usize);
    map.lock()
        .unwrap()
        .entry(user.to_owned())
        .or_default()
        .push(tx.clone());
    (tx, rx)
}

/// The legacy disconnect: the connection's sender removed (found by
/// channel identity), the user's entry dropped when it has none left.
pub fn bmap_disconnect(map: &Mutex<Table>, user: &str, conn: &BConn) {
    let mut guard = map.lock().unwrap();
    if let Some(senders) = guard.get_mut(user) {
        senders.retain(|s| !s.same_channel(&conn.0));
        if senders.is_empty() {
            guard.remove(user);
        }
    }
}

impl BMap {
    pub fn build() -> BMap {
        let (map, receivers) = baseline_tables();
        BMap {
            map: Mutex::new(map),
            receivers,
        }
    }
    pub fn drain(&self) {
        drain_receivers(&self.receivers);
    }
}

impl BRw {
    pub fn build() -> BRw {
        let (map, receivers) = baseline_tables();
        BRw {
            map: RwLock::new(map),
            receivers,
        }
    }
    pub fn drain(&self) {
        drain_receivers(&self.receivers);
    }
}

pub fn drain_receivers(receivers: &[async_channel::Receiver<Frame>]) {
    for r in receivers {
        while let Ok(m) = r.try_recv() {
            std::hint::black_box(m);
        }
    }
}

/// One shim shard holding the send workload (the churn case), behind
/// embassy's `CriticalSectionRawMutex`: on a std host its critical section
/// is one process-wide `std::sync::Mutex`, which for the one shard of this
/// case is exactly a per-shard lock (a server with several shards uses
/// `userlane_smol::StdRawMutex`, one lock per shard).
pub type Shard = SharedFactory<CriticalSectionRawMutex, Frame, 16_384, 16_384, 32_768>;

/// Builds a [`Shard`] with the send workload connected through the shim;
/// returns it with every connection handle.
pub fn build_shard(ids: &[String]) -> (Arc<Shard>, Vec<ConnectionHandle>) {
    let shard: Arc<Shard> = on_big_stack(4 * std::mem::size_of::<Shard>() + (16 << 20), || {
        Arc::new(Shard::new(send_config()).expect("config fits"))
    });
    let mut conns = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        for _ in 0..conns_of(k) {
            conns.push(shard.connect(&ctx(id), Instant::ZERO).unwrap().1);
        }
    }
    (shard, conns)
}

/// The fan-out factory: one user, up to 10,240 connections.
pub type FanFactory = ManagerFactory<Frame, 4, 10_240, 16_384>;

/// A [`FanFactory`] whose one user has `n` connections, events drained.
pub fn fan_factory(n: usize) -> (Box<FanFactory>, ManagerHandle, Vec<ConnectionHandle>) {
    on_big_stack(
        4 * std::mem::size_of::<FanFactory>() + (16 << 20),
        move || {
            let mut f = Box::new(
                FanFactory::new(Config {
                    max_connections_per_user: 10_240,
                    queue_depth: QUEUE_DEPTH,
                    idle_timeout_ms: None,
                    empty_manager_ttl_ms: None,
                    ..Config::for_capacity(4, 10_240)
                })
                .expect("config fits"),
            );
            let c = ctx("fan");
            let m = f.create_manager(c.clone(), Instant::ZERO).unwrap();
            let conns = (0..n)
                .map(|_| f.add_connection(m, &c, Instant::ZERO).unwrap())
                .collect();
            while f.poll_event().is_some() {}
            (f, m, conns)
        },
    )
}

/// One userlane fan-out: enqueue for every connection, then what the shim
/// and the writers do: drain the events (the shim wakes each connection's
/// writer; here its handle goes to `ready`), then each writer takes its
/// messages until its queue is empty.
#[inline(never)]
pub fn userlane_fanout(
    f: &mut FanFactory,
    m: ManagerHandle,
    frame: &Frame,
    ready: &mut Vec<ConnectionHandle>,
) {
    f.send_to_user(m, frame.clone(), Instant::ZERO).unwrap();
    f.drain_events(|e| {
        if let Event::Transmit(c) = e {
            ready.push(c);
        }
    });
    for c in ready.drain(..) {
        while let Ok(Some(Transmit::Message(p))) = f.poll_transmit(c) {
            black_box(p);
        }
    }
}
