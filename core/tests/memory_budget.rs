//! Preallocated memory grows with totals, not with users × connections × depth.
//! Prints the size of the two documented profiles and fails over budget.

use std::sync::Arc;
use userlane_core::{GatewayFactory, ServerFactory};

/// A server: 10,000 users, 16,384 connections, 262,144 queued-message slots,
/// payloads shared by reference count.
type ServerProfile = ServerFactory<Arc<[u8]>>;
/// A gateway: 32 users × 4 connections, 16 queued messages per connection
/// (2,048 slots), 8 pending lifecycle events, `u16` links; payloads are
/// indexes into the gateway's own frame buffers.
type GatewayProfile = GatewayFactory;

/// "Tens of MiB" for the server profile; documented in ARCHITECTURE.md.
const SERVER_BUDGET: usize = 32 * 1024 * 1024;
/// At most 32 KiB for the gateway profile; documented in ARCHITECTURE.md.
const GATEWAY_BUDGET: usize = 32 * 1024;

#[test]
fn profiles_fit_their_budgets() {
    let server = core::mem::size_of::<ServerProfile>();
    let gateway = core::mem::size_of::<GatewayProfile>();
    println!(
        "server profile (10,000 users, 16,384 conns, 262,144 slots): {server} bytes ({:.1} MiB)",
        server as f64 / 1048576.0
    );
    println!(
        "gateway profile (32 users, 128 conns, 2,048 slots): {gateway} bytes ({:.1} KiB)",
        gateway as f64 / 1024.0
    );
    assert!(
        server <= SERVER_BUDGET,
        "server profile {server} > {SERVER_BUDGET}"
    );
    assert!(
        gateway <= GATEWAY_BUDGET,
        "gateway profile {gateway} > {GATEWAY_BUDGET}"
    );
}
