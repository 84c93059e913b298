//! Connection leases: cluster-wide admission under the per-user cap, the
//! leases this node holds, their refresh, and the cluster-wide gauges.

use std::sync::{Arc, PoisonError};

use super::node::Cluster;
use super::outcome::ClusterError;
use super::scripts::{ADMIT_SCRIPT, REFRESH_SCRIPT};

impl Cluster {
    /// Takes a cluster-wide lease for connection `member` of `user`:
    /// `Ok(true)` admitted, `Ok(false)` the user is at `cap` across the cluster.
    pub async fn admit(&self, user: &str, member: &str, cap: u32) -> Result<bool, ClusterError> {
        let key = self.key("conns", user);
        let ttl = self.config.lease_ttl.as_millis() as u64;
        let member = format!("{}:{member}", self.node_id());
        // Idempotent: a second run finds the member's lease and renews it.
        self.call_idempotent(|mut c| {
            let (key, member) = (key.clone(), member.clone());
            async move {
                ADMIT_SCRIPT
                    .key(key)
                    .arg(member)
                    .arg(cap)
                    .arg(ttl)
                    .invoke_async::<i64>(&mut c)
                    .await
            }
        })
        .await
        .map(|n| n == 1)
    }

    /// Records that connection `member` of `user` holds a lease (admitted
    /// by [`admit`](Self::admit), or under the local cap while Redis was
    /// unreachable): the refresh keeps its lease alive, re-creating it if
    /// Redis lost it, until [`forget_lease`](Self::forget_lease).
    pub fn hold_lease(&self, user: &str, member: &str) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(user.to_owned())
            .or_default()
            .insert(member.to_owned());
    }

    /// Stops refreshing the lease of connection `member` of `user` (its
    /// connection closed); [`release_lease`](Self::release_lease) removes it.
    pub fn forget_lease(&self, user: &str, member: &str) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(members) = held.get_mut(user) {
            members.remove(member);
            if members.is_empty() {
                held.remove(user);
            }
        }
    }

    /// Whether connection `member` of `user` is held (see [`hold_lease`](Self::hold_lease)).
    fn holds(&self, user: &str, member: &str) -> bool {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(user)
            .is_some_and(|m| m.contains(member))
    }

    /// Forgets the lease and gives it back (best effort: it expires anyway).
    pub async fn release_lease(&self, user: &str, member: &str) {
        self.forget_lease(user, member);
        self.remove_leases(user, std::slice::from_ref(&member.to_owned()))
            .await;
    }

    /// `ZREM`s the leases of `members` (this node's connections of `user`).
    async fn remove_leases(&self, user: &str, members: &[String]) {
        let key = self.key("conns", user);
        let node = self.node_id();
        let members: Vec<String> = members.iter().map(|m| format!("{node}:{m}")).collect();
        let _ = self
            .call(|mut c| async move {
                redis::cmd("ZREM")
                    .arg(key)
                    .arg(members)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await;
    }

    /// Refreshes the leases of `members` (this node's connections of
    /// `user`), re-creating those Redis no longer has.
    pub async fn refresh_leases(&self, user: &str, members: &[String]) -> Result<(), ClusterError> {
        let key = self.key("conns", user);
        let ttl = self.config.lease_ttl.as_millis() as u64;
        let node = self.node_id();
        let args: Vec<String> = members.iter().map(|m| format!("{node}:{m}")).collect();
        self.call(|mut c| async move {
            let mut inv = REFRESH_SCRIPT.key(key);
            inv.arg(ttl);
            for a in &args {
                inv.arg(a);
            }
            inv.invoke_async::<i64>(&mut c).await
        })
        .await
        .map(|_| ())
    }

    /// Connections and users with leases across the cluster (a `SCAN` of the
    /// lease sets; for metrics).
    pub async fn cluster_gauges(&self) -> Result<(u64, u64), ClusterError> {
        let pattern = format!("{}:conns:*", self.config.namespace);
        self.call(|mut c| async move {
            let mut cursor: u64 = 0;
            let (mut users, mut conns) = (0u64, 0u64);
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut c)
                    .await?;
                for k in keys {
                    let n: u64 = redis::cmd("ZCARD").arg(&k).query_async(&mut c).await?;
                    if n > 0 {
                        users += 1;
                        conns += n;
                    }
                }
                if next == 0 {
                    return Ok((users, conns));
                }
                cursor = next;
            }
        })
        .await
    }
}

/// Refreshes this node's leases every `lease_ttl / 3`, for as long as the
/// server runs: the lease of every held connection is set to expire
/// `lease_ttl` from now, and re-created if Redis lost it (a restart without
/// persistence empties every lease set; without this the cap would
/// undercount the connections that stayed open).
///
/// Race with a close: a refresh works on a snapshot of the held connections,
/// so one that closes meanwhile may have its lease re-created after its
/// `ZREM`. Once a user's refresh has returned (Redis ran it), the members of
/// the snapshot that are no longer held are removed again; a close after
/// that check sends its own `ZREM` after the refresh ran. Either way the
/// lease of a closed connection is gone unless that `ZREM` fails or the
/// refresh's reply is lost (a timeout after Redis ran it): then the stale
/// lease is never refreshed again and expires within `lease_ttl`.
pub(crate) async fn refresh_leases_forever(cluster: Arc<Cluster>) {
    let period = cluster.config.lease_ttl / 3;
    loop {
        smol::Timer::after(period).await;
        cluster.refresh_held().await;
    }
}

impl Cluster {
    /// One refresh of every held lease (see [`refresh_leases_forever`]).
    async fn refresh_held(&self) {
        let by_user: Vec<(String, Vec<String>)> = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(user, members)| (user.clone(), members.iter().cloned().collect()))
            .collect();
        for (user, members) in by_user {
            if let Err(e) = self.refresh_leases(&user, &members).await {
                log::warn!(
                    "lease refresh failed ({e}); leases expire after {:?} unless Redis returns",
                    self.config.lease_ttl
                );
                return;
            }
            let closed: Vec<String> = members
                .into_iter()
                .filter(|m| !self.holds(&user, m))
                .collect();
            if !closed.is_empty() {
                self.remove_leases(&user, &closed).await;
            }
        }
    }
}
