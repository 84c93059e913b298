//! `ServerHandle`: what application code uses to reach users (the public
//! layer above the state, the connections and the cluster).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use userlane_core::{
    CloseCode, CloseFrame, CloseReason, Creation, Error as CoreError, SendOutcome, Stats,
    UserContext,
};

use crate::cluster::{ClusterError, ClusterStats, Envelope, Remote};
use crate::config::ServerConfig;
use crate::error::UserError;
use crate::info::ConnectionInfo;
use crate::state::ServerShared;

/// A snapshot of the server's counters: the core's, summed over shards, and
/// the network layer's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServerStats {
    /// The core counters of all shards added together.
    pub core: Stats,
    /// Lifecycle events nobody read (see `SharedFactory::events_dropped`).
    pub events_dropped: u64,
    /// TCP connections accepted.
    pub tcp_accepted: u64,
    /// Accept errors (for example the open-file limit); the loop retried.
    pub accept_errors: u64,
    /// Upgrades that failed (I/O error, bad WebSocket request).
    pub handshakes_failed: u64,
    /// Refused with 400 (unreadable credentials).
    pub rejected_bad_request: u64,
    /// Refused with 401 (missing, invalid or expired token).
    pub rejected_unauthorized: u64,
    /// Refused with 403 (the `Origin` is not allowed).
    pub rejected_forbidden: u64,
    /// Refused with 404 (wrong path).
    pub rejected_not_found: u64,
    /// Sockets closed because the request deadline
    /// (`ServerConfig::request_timeout`) passed before the request was
    /// answered or upgraded.
    pub requests_timed_out: u64,
    /// Refused with 429 (per-user connection limit).
    pub rejected_user_limit: u64,
    /// Refused with 503 (server full or shutting down).
    pub rejected_server_full: u64,
    /// Connections admitted without a token (development/testing).
    pub fallback_connections: u64,
    /// Connections closed with 1009.
    pub closed_message_too_big: u64,
    /// Connections closed with 1007.
    pub closed_invalid_utf8: u64,
    /// Connections closed with 1002.
    pub closed_protocol_error: u64,
    /// Panics in application code, wherever they happened: in
    /// `on_message` and `greeting` (the connection is closed with 1011,
    /// also counted in [`closed_handler_panic`](Self::closed_handler_panic)),
    /// in `refusal` (no notice sent), in `on_disconnect` (the connection was
    /// already gone), and in the HTTP service (answered with 500).
    pub handler_panics: u64,
    /// Connections closed with 1011 because `on_message` or `greeting`
    /// panicked (a part of [`handler_panics`](Self::handler_panics)).
    pub closed_handler_panic: u64,
    /// Connections dropped without a close frame (close grace or shutdown deadline passed).
    pub forced_closes: u64,
    /// Inbound data messages read from connections the core had already
    /// closed and dropped without reaching the handler (a closing
    /// connection reads at most 64 KiB of them, then stops reading).
    pub inbound_discarded: u64,
    /// Legacy (compat) calls made in this process, all servers together.
    pub legacy_calls: u64,
    /// Distinct legacy call sites recorded.
    pub legacy_call_sites: u64,
    /// The node's cluster counters; `None` on a single node.
    pub cluster: Option<ClusterStats>,
}

/// What a cluster-wide operation did here and elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach<T> {
    /// What happened on this node.
    pub local: T,
    /// What happened across the cluster: `None` on a single node; an error
    /// when Redis was unreachable (the local part still happened).
    pub remote: Option<Result<Remote, ClusterError>>,
}

/// What `shutdown` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections asked to close with 1001.
    pub closing: u32,
    /// Connections still open at the deadline, dropped without a close frame.
    pub forced: u64,
    /// Queued messages never transmitted (counted in `Stats::messages_dropped`).
    pub undelivered: u64,
}

/// A cloneable, thread-safe handle to a running server for application code.
#[derive(Clone)]
pub struct ServerHandle {
    pub(crate) shared: Arc<ServerShared>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("environment", &self.shared.config.environment)
            .finish()
    }
}

impl ServerHandle {
    /// The configuration the server runs with.
    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// Queues `message` for every open connection of `user_id` **on this
    /// node**, in order. With no open connection it waits in the user's
    /// bounded offline buffer (a manager is created for a user who has none,
    /// when buffering is on, through `create_offline_manager`: at most
    /// [`max_offline_users`](ServerConfig::max_offline_users) such users, so
    /// that they never take the slots of users who connect; beyond it the
    /// send fails with `Limit::OfflineManagers`, like `Limit::Users` when
    /// the server is full) and is replayed on the next connection. Every
    /// refusal is an error: nothing is dropped silently. In a cluster, use
    /// [`send`](Self::send) to reach the user's connections on every node.
    pub fn send_to_user(&self, user_id: &str, message: Message) -> Result<SendOutcome, UserError> {
        self.send_local(user_id, message, Absent::Buffer)?
            .ok_or(UserError::UnknownUser)
    }

    /// The one path by which a message for a user reaches this node's core:
    /// its open connections here, in order. `absent` says what happens when
    /// the node holds no open connection of the user: buffered (through
    /// `create_offline_manager` when the user has no manager, if offline
    /// buffering is on), or nothing (`Ok(None)`: nothing created, nothing
    /// buffered). Every refusal is an error.
    fn send_local(
        &self,
        user_id: &str,
        message: Message,
        absent: Absent,
    ) -> Result<Option<SendOutcome>, UserError> {
        let slot = self.shared.shards.of(user_id);
        let now = self.shared.clock.now();
        let buffering = self.shared.config.offline_buffer > 0;
        slot.core.with(|f| {
            let manager = match absent {
                // The core's lookup-or-create; the context is built only
                // when the user has no manager.
                Absent::Buffer if buffering => f.try_manager_or_create_with(
                    user_id,
                    || service_context(user_id),
                    Creation::Offline,
                    now,
                )?,
                Absent::Buffer => f.manager_for_user(user_id).ok_or(UserError::UnknownUser)?,
                Absent::Skip => match f.manager_for_user(user_id) {
                    Some(m) if f.connection_count(m).unwrap_or(0) > 0 => m,
                    _ => return Ok(None),
                },
            };
            Ok(Some(
                f.send_to_user(manager, message, now)
                    .map_err(CoreError::from)?,
            ))
        })
    }

    /// Queues `message` for one connection only (for example an error reply
    /// to the tab that sent a bad frame). A connection that is gone, or a
    /// `ConnectionInfo` of another server, is refused with
    /// [`UserError::UnknownConnection`].
    pub fn send_to_connection(
        &self,
        conn: &ConnectionInfo,
        message: Message,
    ) -> Result<SendOutcome, UserError> {
        let slot = self.shared.shards.slot_of(conn)?;
        Ok(slot
            .core
            .send_to_connection(
                conn.manager,
                conn.connection,
                message,
                self.shared.clock.now(),
            )
            .map_err(CoreError::from)?)
    }

    /// Sends to every connection of `user_id` on every node. On a single node
    /// this is [`send_to_user`](Self::send_to_user). In a cluster the message
    /// goes to this node's connections of the user directly and to the other
    /// nodes through Redis; when no node holds the user it is stored in the
    /// user's bounded offline stream (a full stream is an error). If Redis is
    /// unreachable and nothing was delivered locally, the error says so.
    pub async fn send(
        &self,
        user_id: &str,
        message: Message,
    ) -> Result<Reach<Option<SendOutcome>>, UserError> {
        let Some(cluster) = &self.shared.cluster else {
            return Ok(Reach {
                local: Some(self.send_to_user(user_id, message)?),
                remote: None,
            });
        };
        let envelope = crate::cluster::envelope_of(&message, cluster.origin());
        let local = self.send_local(user_id, message, Absent::Skip)?;
        let Some(envelope) = envelope else {
            return Ok(Reach {
                local,
                remote: None,
            });
        };
        match cluster.publish(user_id, &envelope, local.is_none()).await {
            Ok(remote) => Ok(Reach {
                local,
                remote: Some(Ok(remote)),
            }),
            Err(e) if local.is_some() => Ok(Reach {
                local,
                remote: Some(Err(e)),
            }),
            Err(e) => Err(UserError::Cluster(e)),
        }
    }

    /// Closes the user's connections with `code` on every node. Returns how
    /// many closed here; `remote` says how many other nodes were told.
    pub async fn disconnect(&self, user_id: &str, code: CloseCode, reason: &str) -> Reach<usize> {
        let local = self.disconnect_user(user_id, code, reason);
        let remote = match &self.shared.cluster {
            None => None,
            Some(c) => {
                let env = Envelope::Disconnect {
                    origin: c.origin(),
                    code: code.as_u16(),
                    reason: reason.to_owned(),
                };
                Some(c.publish(user_id, &env, false).await)
            }
        };
        Reach { local, remote }
    }

    /// Deactivates the user's manager on every node (connections close with 1000).
    pub async fn deactivate(&self, user_id: &str) -> Reach<u32> {
        let local = self.deactivate_user(user_id).unwrap_or(0);
        let remote = match &self.shared.cluster {
            None => None,
            Some(c) => Some(
                c.publish(user_id, &Envelope::Deactivate { origin: c.origin() }, false)
                    .await,
            ),
        };
        Reach { local, remote }
    }

    /// Applies an envelope from another node to this node's connections of `user_id`.
    pub(crate) fn apply_remote(&self, user_id: &str, envelope: Envelope) {
        match envelope {
            Envelope::Disconnect { code, reason, .. } => {
                if let Ok(code) = CloseCode::new(code) {
                    self.disconnect_user(user_id, code, &reason);
                }
            }
            Envelope::Deactivate { .. } => {
                let _ = self.deactivate_user(user_id);
            }
            deliver @ Envelope::Deliver { .. } => {
                let Some(message) = crate::cluster::message_of(deliver) else {
                    return;
                };
                if let Err(e) = self.send_local(user_id, message, Absent::Skip) {
                    log::warn!("message from another node for {user_id} refused here: {e} (counted in stats)");
                }
            }
        }
    }

    /// The node's cluster link, if it runs in a cluster.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.shared.cluster.as_ref()
    }

    /// [`send_to_user`](Self::send_to_user) with a text frame.
    pub fn send_text(
        &self,
        user_id: &str,
        text: impl Into<String>,
    ) -> Result<SendOutcome, UserError> {
        self.send_to_user(user_id, Message::text(text.into()))
    }

    /// Closes every open connection of `user_id` with `code` (after what is
    /// already queued for them). Returns how many were closed.
    pub fn disconnect_user(&self, user_id: &str, code: CloseCode, reason: &str) -> usize {
        let slot = self.shared.shards.of(user_id);
        let now = self.shared.clock.now();
        slot.core.with(|f| {
            let Some(m) = f.manager_for_user(user_id) else {
                return 0;
            };
            let mut conns = Vec::new();
            let _ = f.for_each_connection(m, &mut |c| conns.push(c));
            conns
                .into_iter()
                .filter(|c| slot.close_connection(f, m, *c, code, reason, now))
                .count()
        })
    }

    /// The open connections of `user_id`.
    pub fn user_connections(&self, user_id: &str) -> Vec<Arc<ConnectionInfo>> {
        let slot = self.shared.shards.of(user_id);
        let conns = slot.core.read(|f| {
            let mut conns = Vec::new();
            if let Some(m) = f.manager_for_user(user_id) {
                let _ = f.for_each_connection(m, &mut |c| conns.push(c));
            }
            conns
        });
        let registry = slot.registry();
        conns
            .iter()
            .filter_map(|c| registry.get(c).map(|e| e.info.clone()))
            .collect()
    }

    /// Deactivates the user's manager: every connection is closed (1000), the
    /// offline buffer discarded (counted). Returns the connections closed.
    pub fn deactivate_user(&self, user_id: &str) -> Result<u32, UserError> {
        let slot = self.shared.shards.of(user_id);
        let now = self.shared.clock.now();
        slot.core.with(|f| match f.manager_for_user(user_id) {
            Some(m) => Ok(f.deactivate(m, now)?),
            None => Err(UserError::UnknownUser),
        })
    }

    /// A snapshot of every counter.
    pub fn stats(&self) -> ServerStats {
        let mut core = Stats::default();
        let mut events_dropped = 0;
        for slot in &self.shared.shards.slots {
            core += slot.core.stats();
            events_dropped += slot.core.events_dropped();
        }
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let legacy = crate::legacy_sites::legacy_usage();
        ServerStats {
            core,
            events_dropped,
            tcp_accepted: get(&c.tcp_accepted),
            accept_errors: get(&c.accept_errors),
            handshakes_failed: get(&c.handshakes_failed),
            rejected_bad_request: get(&c.rejected_400),
            rejected_unauthorized: get(&c.rejected_401),
            rejected_forbidden: get(&c.rejected_403),
            rejected_not_found: get(&c.rejected_404),
            requests_timed_out: get(&c.requests_timed_out),
            rejected_user_limit: get(&c.rejected_429),
            rejected_server_full: get(&c.rejected_503),
            fallback_connections: get(&c.fallback_connections),
            closed_message_too_big: get(&c.closed_message_too_big),
            closed_invalid_utf8: get(&c.closed_invalid_utf8),
            closed_protocol_error: get(&c.closed_protocol_error),
            handler_panics: get(&c.handler_panics),
            closed_handler_panic: get(&c.closed_handler_panic),
            forced_closes: get(&c.forced_closes),
            inbound_discarded: get(&c.inbound_discarded),
            legacy_calls: legacy.total_calls,
            legacy_call_sites: legacy.sites.len() as u64,
            cluster: self.shared.cluster.as_ref().map(|c| c.stats()),
        }
    }

    /// Whether the server still accepts connections.
    pub fn is_accepting(&self) -> bool {
        self.shared.lifecycle.is_accepting()
    }

    /// Graceful shutdown: stop accepting, close every connection with 1001
    /// after its queued messages, wait up to `deadline` for them to drain,
    /// then drop what is left. Messages never transmitted are counted in
    /// `Stats::messages_dropped`. Resolves when every connection task is gone.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let shared = &self.shared;
        shared.lifecycle.stop_accepting();
        let dropped_before = self.stats().core.messages_dropped;
        let forced_before = shared.counters.forced_closes.load(Ordering::Relaxed);
        let now = shared.clock.now();
        let close = CloseFrame::new(CloseCode::GOING_AWAY, CloseReason::ServerShutdown);
        let closing: u32 = shared
            .shards
            .slots
            .iter()
            .map(|s| s.core.close_all(close, now))
            .sum();
        let all_done = async {
            // Fails (Closed) once every connection task has dropped its sender.
            shared.lifecycle.all_tasks_done().await;
        };
        let timed_out = smol::future::or(
            async {
                all_done.await;
                false
            },
            async {
                smol::Timer::after(deadline).await;
                true
            },
        )
        .await;
        if timed_out {
            // Connections still being set up wait on this channel; the ones
            // serving are told through their flags. One admitted after this
            // loop passed its shard finds the channel closed when its
            // connection task starts (see `connection::Conn`).
            shared.lifecycle.kill();
            for slot in &shared.shards.slots {
                for entry in slot.registry().values() {
                    entry.signals.raise(crate::signals::KILL);
                }
            }
            shared.lifecycle.all_tasks_done().await;
        }
        let stats = self.stats();
        ShutdownReport {
            closing,
            forced: shared.counters.forced_closes.load(Ordering::Relaxed) - forced_before,
            undelivered: stats.core.messages_dropped - dropped_before,
        }
    }
}

/// What a send does when this node holds no open connection of the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Absent {
    /// Buffer the message in the user's offline buffer (creating the
    /// user's manager through `create_offline_manager` if it has none and
    /// buffering is on): a send on a single node.
    Buffer,
    /// Nothing: no manager created, nothing buffered (a cluster send, whose
    /// offline copy is kept by Redis, and an envelope from another node).
    Skip,
}

/// The context of a manager created by a service send for a user who has
/// not connected yet.
fn service_context(user_id: &str) -> Result<UserContext, UserError> {
    let id = uuid::Uuid::new_v4().to_string();
    UserContext::new(user_id, "service", "service", &id)
        .map_err(|e| UserError::Core(CoreError::InvalidContext(e)))
}
