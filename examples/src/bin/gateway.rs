//! The gateway shape: one shard of the core in a `static`, driven by a tiny
//! executor (`futures::executor::LocalPool`), no smol, no allocation in the
//! lane itself. Payloads are `u16` indexes into the gateway's own frame
//! buffers, links are `u16`: the same configuration as the 32 KiB gateway
//! profile measured in `core/tests/memory_budget.rs`.
//!
//! Two users with two "links" each; a producer publishes readings to both
//! users; each link task awaits its next frame and "transmits" it.

use std::cell::RefCell;
use std::rc::Rc;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use userlane_core::shim::{GatewayShard, SharedFactory};
use userlane_core::{Config, ConnectionHandle, Instant, Transmit, UserContext};

/// The frames a gateway would keep in its own static buffers.
const FRAMES: [&str; 4] = ["temp=21.5", "temp=21.7", "door=open", "door=closed"];

/// The gateway profile: 32 users, 128 connections, 2,048 queued frames.
static SHARD: GatewayShard<CriticalSectionRawMutex> =
    SharedFactory::new_static(Config::for_capacity(32, 128));

async fn link(name: &'static str, conn: ConnectionHandle, log: Rc<RefCell<Vec<String>>>) {
    while let Some(item) = SHARD.next_transmit(conn).await {
        match item {
            Transmit::Message(frame) => log
                .borrow_mut()
                .push(format!("{name} <- {}", FRAMES[frame as usize])),
            Transmit::Close(close) => {
                log.borrow_mut()
                    .push(format!("{name} closed: {} {}", close.code, close.reason));
                SHARD
                    .handle_closed(conn, Instant::from_millis(0))
                    .expect("live connection");
            }
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let t0 = Instant::from_millis(0);
    let kitchen = UserContext::new("kitchen", "sensors", "run-1", "boot")?;
    let hall = UserContext::new("hall", "sensors", "run-1", "boot")?;
    let (k, k1) = SHARD.connect(&kitchen, t0)?;
    let (_, k2) = SHARD.connect(&kitchen, t0)?;
    let (h, h1) = SHARD.connect(&hall, t0)?;

    let log = Rc::new(RefCell::new(Vec::new()));
    let mut pool = LocalPool::new();
    let spawner = pool.spawner();
    for (name, conn) in [("kitchen/a", k1), ("kitchen/b", k2), ("hall/a", h1)] {
        spawner.spawn_local(link(name, conn, log.clone()))?;
    }
    pool.run_until_stalled();

    SHARD.send_to_user(k, 0, t0)?;
    SHARD.send_to_user(h, 2, t0)?;
    SHARD.send_to_user(k, 1, t0)?;
    SHARD.send_to_user(h, 3, t0)?;
    pool.run_until_stalled();
    SHARD.deactivate(h, t0)?;
    pool.run_until_stalled();

    for line in log.borrow().iter() {
        println!("{line}");
    }
    let stats = SHARD.stats();
    println!(
        "delivered {} frames to {} links; hall deactivated; consistent: {}",
        stats.messages_transmitted,
        stats.total_connections_managed,
        stats.is_consistent()
    );
    Ok(())
}
