//! The gateway shape of `examples/src/bin/gateway.rs` on the target: one
//! shard of the core in a `static` behind a critical-section mutex (the
//! single-core implementation of the `cortex-m` crate), with writer tasks
//! awaiting their connections' transmits under `embassy_futures::block_on`.

use embassy_futures::join::join4;
use embassy_futures::{block_on, yield_now};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use heapless::Vec;
use userlane_core::shim::SharedFactory;
use userlane_core::{CloseCode, CloseFrame, CloseReason, Config, ConnectionHandle, Transmit};

use crate::check::{ensure, ensure_eq, Failure};
use crate::lane::{ctx, t, CONNS, USERS};

/// The shard of `examples/src/bin/gateway.rs`: 32 users, 128 connections,
/// 2,048 queued frames, 8 events, `u16` links.
static SHARD: SharedFactory<CriticalSectionRawMutex, u16, 32, 128, 2_048, 8, u16> =
    SharedFactory::new_static(Config::for_capacity(USERS, CONNS));

/// 1000 / manager deactivated.
const DEACTIVATED: CloseFrame = CloseFrame::new(CloseCode::NORMAL, CloseReason::ManagerDeactivated);
/// 1001 / server shutdown.
const SHUTDOWN: CloseFrame = CloseFrame::new(CloseCode::GOING_AWAY, CloseReason::ServerShutdown);

/// A connection's writer: everything it is given, until the connection is gone.
async fn writer(conn: ConnectionHandle) -> Result<Vec<Transmit<u16>, 8>, Failure> {
    let mut log = Vec::new();
    while let Some(item) = SHARD.next_transmit(conn).await {
        let close = matches!(item, Transmit::Close(_));
        ensure!(log.push(item).is_ok());
        if close {
            // The socket is closed: release the slot, which ends the loop.
            SHARD.handle_closed(conn, t(3))?;
        }
    }
    Ok(log)
}

/// The producer: frames for both users, then both deactivated.
async fn produce(
    kitchen: userlane_core::ManagerHandle,
    hall: userlane_core::ManagerHandle,
) -> Result<(), Failure> {
    ensure_eq!(SHARD.send_to_user(kitchen, 0, t(1))?.queued_for(), 2);
    yield_now().await;
    ensure_eq!(SHARD.send_to_user(hall, 2, t(1))?.queued_for(), 1);
    ensure_eq!(SHARD.send_to_user(kitchen, 1, t(1))?.queued_for(), 2);
    yield_now().await;
    ensure_eq!(SHARD.deactivate(hall, t(2))?, 1);
    ensure_eq!(SHARD.deactivate(kitchen, t(2))?, 2);
    Ok(())
}

/// A `static` shard on the shim: three writer tasks each receive their
/// user's frames in order, then the 1000 close, and release their slots.
pub fn a_static_shard_serves_async_writers() -> Result<(), Failure> {
    let (kitchen, hall) = (ctx("kitchen")?, ctx("hall")?);
    let (k, k1) = SHARD.connect(&kitchen, t(0))?;
    let (k_again, k2) = SHARD.connect(&kitchen, t(0))?;
    let (h, h1) = SHARD.connect(&hall, t(0))?;
    ensure_eq!(k_again, k);

    let (l1, l2, l3, produced) = block_on(join4(writer(k1), writer(k2), writer(h1), async {
        let produced = produce(k, h).await;
        // Whatever happened, no writer is left waiting.
        SHARD.close_all(SHUTDOWN, t(2));
        produced
    }));
    produced?;
    let kitchen_frames = [
        Transmit::Message(0),
        Transmit::Message(1),
        Transmit::Close(DEACTIVATED),
    ];
    ensure_eq!(l1?, kitchen_frames);
    ensure_eq!(l2?, kitchen_frames);
    ensure_eq!(l3?, [Transmit::Message(2), Transmit::Close(DEACTIVATED)]);

    let s = SHARD.stats();
    ensure!(s.is_consistent());
    ensure_eq!(
        (
            s.managers_deactivated,
            s.closed_deactivated,
            s.messages_transmitted,
            s.connections_active,
            s.connections_closing,
            s.closed_shutdown
        ),
        (2, 3, 5, 0, 0, 0)
    );
    ensure_eq!(SHARD.events_dropped(), 0);
    Ok(())
}
