//! An admitted connection's hold on the server ([`Admission`]): what it
//! took (core slot, registry entry, cluster lease and subscription), the
//! cluster-wide lease check, and the release.

use std::net::SocketAddr;
use std::sync::Arc;

use async_tungstenite::tungstenite::http::StatusCode;

use crate::admission::Refusal;
use crate::info::ConnectionInfo;
use crate::state::{bump, ServerShared};

/// An admitted connection's hold on the server: its slot in the core and
/// its registry entry and, in a cluster, its lease and its share of the
/// node's subscription to the user ([`Cleanup`] says which it took). Its
/// `Drop` gives back all of it, wherever the connection ends: the request
/// deadline mid-upgrade, a refused cluster lease, a failed handshake, or
/// the end of a served connection.
pub(super) struct Admission {
    pub(super) shared: Arc<ServerShared>,
    pub(super) info: Arc<ConnectionInfo>,
    pub(super) cleanup: Cleanup,
}

impl Drop for Admission {
    fn drop(&mut self) {
        release(&self.shared, &self.info, self.cleanup);
    }
}

/// In a cluster, takes the connection's cluster-wide lease: a 429 refusal
/// when the user's cap is reached across the cluster. With Redis
/// unreachable the node's own per-user cap (already enforced by the core)
/// decides. What is taken is recorded in `admission`, given back when it
/// drops.
pub(super) async fn admit_in_cluster(
    shared: &ServerShared,
    admission: &mut Admission,
    remote: SocketAddr,
) -> Result<(), Refusal> {
    let Some(cluster) = &shared.cluster else {
        return Ok(());
    };
    let info = admission.info.clone();
    let cap = shared.config.max_connections_per_user;
    // Given back if the deadline drops this step while Redis may already
    // hold the lease (removing an absent lease is harmless).
    admission.cleanup.lease = true;
    match cluster
        .admit(info.user_id(), info.connection_id(), cap)
        .await
    {
        Ok(true) => cluster.hold_lease(info.user_id(), info.connection_id()),
        Ok(false) => {
            admission.cleanup.lease = false;
            bump(&shared.counters.rejected_429);
            shared.refusal_log.info(429, || {
                format!("refused upgrade from {remote}: 429 cluster-wide limit of {cap} connections for this user")
            });
            return Err(Refusal {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: format!(
                    "too many connections for this user across the cluster (limit {cap})\n"
                ),
            });
        }
        Err(e) => {
            // Documented fallback: the node's own per-user cap. The
            // connection counts cluster-wide once Redis is back (the refresh
            // creates its lease), and its lease is removed when it closes
            // (the script may even have run before the call timed out).
            cluster.hold_lease(info.user_id(), info.connection_id());
            cluster
                .local_admissions
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            log::warn!(
                "cluster admission unavailable ({e}); admitted under the local per-user cap"
            );
        }
    }
    Ok(())
}

/// What a connection holds in the cluster and must give back.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Cleanup {
    /// A cluster-wide lease.
    pub(super) lease: bool,
    /// A share of this node's subscription to the user's channel.
    pub(super) subscription: bool,
}

/// Frees the connection's slot in the core and the registry, and what it
/// holds in the cluster.
fn release(shared: &ServerShared, info: &ConnectionInfo, cleanup: Cleanup) {
    let slot = &shared.shards.slots[info.shard];
    slot.registry().remove(&info.connection);
    if let Ok(r) = slot.core.handle_closed(info.connection, shared.clock.now()) {
        if r.undelivered > 0 {
            log::info!(
                "connection {} ended with {} undelivered message(s)",
                info.connection_id(),
                r.undelivered
            );
        }
    }
    if let Some(cluster) = &shared.cluster {
        if cleanup.subscription {
            cluster.local_closed(info.user_id());
        }
        if cleanup.lease {
            // Not refreshed from now on; the refresh removes it again should
            // one in flight re-create it after this `ZREM`.
            cluster.forget_lease(info.user_id(), info.connection_id());
            let (cluster, user, conn) = (
                cluster.clone(),
                info.user_id().to_owned(),
                info.connection_id().to_owned(),
            );
            smol::spawn(async move { cluster.release_lease(&user, &conn).await }).detach();
        }
    }
}
