//! The upgrade request: who is connecting, and may they? Runs inside the
//! connection's task. Every refusal here is an HTTP status, never a close code.

use std::net::SocketAddr;
use std::sync::Arc;

use async_tungstenite::tungstenite::http::StatusCode;
use userlane_core::{Error as CoreError, Limit, Stats, UserContext};

use crate::auth::{find_token, AuthError, Identity};
use crate::bounded::excerpt;
use crate::http::Head;
use crate::info::ConnectionInfo;
use crate::shards::ShardSlot;
use crate::signals::Signals;
use crate::state::{bump, ServerShared};

/// A connection that passed admission: it holds a slot in the core.
pub(crate) struct Admitted {
    pub(crate) info: Arc<ConnectionInfo>,
    /// The connection task's wake flags (also in the registry entry).
    pub(crate) signals: Arc<Signals>,
    pub(crate) select_jwt_auth: bool,
}

/// A refusal: the status and a short plain-text body.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Counts a refusal by status and logs it (rate-limited per kind; the
/// message is a fixed text or an escaped excerpt).
pub(crate) fn count_refusal(shared: &ServerShared, r: &Refusal, remote: SocketAddr) {
    let c = &shared.counters;
    match r.status {
        StatusCode::BAD_REQUEST => bump(&c.rejected_400),
        StatusCode::UNAUTHORIZED => bump(&c.rejected_401),
        StatusCode::FORBIDDEN => bump(&c.rejected_403),
        StatusCode::NOT_FOUND => bump(&c.rejected_404),
        StatusCode::TOO_MANY_REQUESTS => bump(&c.rejected_429),
        StatusCode::SERVICE_UNAVAILABLE => bump(&c.rejected_503),
        _ => {}
    }
    let status = r.status.as_u16();
    shared.refusal_log.info(status, || {
        format!("refused upgrade from {remote}: {status} {}", r.message)
    });
}

/// Decides on an upgrade request and, if admitted, opens the connection in
/// the core. Counts every refusal by status.
pub(crate) fn admit(
    shared: &ServerShared,
    head: &Head,
    remote: SocketAddr,
) -> Result<Admitted, Refusal> {
    let result = decide(shared, head, remote);
    if let Err(r) = &result {
        count_refusal(shared, r, remote);
    }
    result
}

/// The checks every browser-facing upgrade passes first: the server is
/// accepting and the `Origin` is allowed.
fn check_common(shared: &ServerShared, head: &Head) -> Result<(), Refusal> {
    if !shared.lifecycle.is_accepting() {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server is shutting down",
        ));
    }
    let origin = head.ascii_value("origin").map(|v| v.unwrap_or("\u{0}"));
    let host = head.ascii_value("host").flatten();
    if !shared.config.allowed_origins.allows(origin, host) {
        return Err(Refusal::new(StatusCode::FORBIDDEN, "origin not allowed"));
    }
    Ok(())
}

/// Open connections of every kind: the shards' plus the echo endpoint's.
/// Call with `shared.admitting` held.
fn open_connections(shared: &ServerShared) -> u64 {
    let core = summed(shared, |s| s.connections_active);
    core + shared.echo_open.load(std::sync::atomic::Ordering::Acquire)
}

/// One core counter summed over every shard (each read under its own lock).
fn summed(shared: &ServerShared, counter: impl Fn(&Stats) -> u64) -> u64 {
    shared
        .shards
        .slots
        .iter()
        .map(|s| s.core.read(|f| counter(&f.stats())))
        .sum()
}

/// An open echo connection's share of `max_connections`, given back on drop.
pub(crate) struct EchoSlot {
    shared: Arc<ServerShared>,
}

impl Drop for EchoSlot {
    fn drop(&mut self) {
        self.shared
            .echo_open
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// 503 when the server-wide `max_connections` are open (`/ws` and `/echo`
/// together). Called with the `admitting` lock held, so the count and the
/// connect that follows are one step.
fn check_room(shared: &ServerShared) -> Result<(), Refusal> {
    if open_connections(shared) >= u64::from(shared.config.max_connections) {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server is full",
        ));
    }
    Ok(())
}

/// 503 when a user without a manager would take the server past its
/// `max_users`, counted over every shard (a shard's own limit only bounds
/// its tables, and users hash unevenly). Called with the `admitting` lock
/// held, like [`check_room`]. Offline managers made by the service path
/// count too; they are capped separately, per shard, by `max_offline_users`.
fn check_users(shared: &ServerShared, slot: &ShardSlot, user_id: &str) -> Result<(), Refusal> {
    if slot.core.read(|f| f.manager_for_user(user_id).is_some()) {
        return Ok(());
    }
    if summed(shared, |s| s.managers_active) >= u64::from(shared.config.max_users) {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server is full",
        ));
    }
    Ok(())
}

/// Admits an upgrade at the echo endpoint: same origin, shutdown and
/// `max_connections` rules as the WebSocket endpoint (no token, no user).
pub(crate) fn admit_echo(
    shared: &Arc<ServerShared>,
    head: &Head,
    remote: SocketAddr,
) -> Result<EchoSlot, Refusal> {
    let result = check_common(shared, head).and_then(|()| {
        let _admitting = shared
            .admitting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        check_room(shared)?;
        shared
            .echo_open
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(EchoSlot {
            shared: shared.clone(),
        })
    });
    if let Err(r) = &result {
        count_refusal(shared, r, remote);
    }
    result
}

fn decide(shared: &ServerShared, head: &Head, remote: SocketAddr) -> Result<Admitted, Refusal> {
    if head.path != shared.config.ws_path {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "no WebSocket endpoint here",
        ));
    }
    check_common(shared, head)?;
    let found =
        find_token(head).map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let (identity, anonymous) = identify(shared, found.token.as_deref(), remote)?;
    // The context error names the field and the rule, never the value.
    let ctx = context_for(&identity)
        .map_err(|e| Refusal::new(StatusCode::UNAUTHORIZED, e.to_string()))?;

    // The count and the connect are one step for every other admission
    // (a few microseconds; no await inside).
    let admitting = shared
        .admitting
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    check_room(shared)?;
    let shard = shared.shards.index_of(ctx.user_id());
    let slot = &shared.shards.slots[shard];
    check_users(shared, slot, ctx.user_id())?;
    let signals = Signals::new();
    let now = shared.clock.now();
    let info = slot
        .open(shard, ctx, remote, anonymous, &signals, now)
        .map_err(|e| match e {
            CoreError::LimitReached(Limit::ConnectionsPerUser) => Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many connections for this user",
            ),
            CoreError::LimitReached(_) | CoreError::EventsPending => {
                Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "server is full")
            }
            _ => Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot connect"),
        })?;
    drop(admitting);
    if anonymous {
        bump(&shared.counters.fallback_connections);
    }
    Ok(Admitted {
        info,
        signals,
        select_jwt_auth: found.select_jwt_auth,
    })
}

/// Who is connecting: the token's identity, or (development and testing
/// only) a fresh anonymous user when there is no token. The flag says
/// anonymous.
fn identify(
    shared: &ServerShared,
    token: Option<&str>,
    remote: SocketAddr,
) -> Result<(Identity, bool), Refusal> {
    let identified = match (token, &shared.authenticator) {
        (Some(token), Some(auth)) => match auth.authenticate(token) {
            Ok(id) => (id, false),
            Err(AuthError::Invalid(why)) => {
                return Err(Refusal::new(
                    StatusCode::UNAUTHORIZED,
                    format!("invalid token: {}", excerpt(&why)),
                ))
            }
            Err(e) => return Err(Refusal::new(StatusCode::UNAUTHORIZED, e.to_string())),
        },
        (Some(_), None) => {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "no authenticator configured to verify the token",
            ))
        }
        (None, _) if shared.config.environment.requires_authentication() => {
            return Err(Refusal::new(StatusCode::UNAUTHORIZED, "missing token"))
        }
        (None, _) => {
            let user_id = format!("anon-{}", uuid());
            log::warn!(
                "migration warning: unauthenticated connection from {remote} admitted as anonymous user {user_id} \
                 ({} mode only; send a JWT to connect as a real user)",
                shared.config.environment
            );
            (
                Identity {
                    user_id,
                    thread_id: None,
                    run_id: None,
                },
                true,
            )
        }
    };
    Ok(identified)
}

/// The connection's context: the token's user, thread and run (generated
/// when absent), a fresh request id and a fresh connection id.
fn context_for(id: &Identity) -> Result<UserContext, userlane_core::ContextError> {
    let thread = id
        .thread_id
        .clone()
        .unwrap_or_else(|| format!("thread-{}", uuid()));
    let run = id
        .run_id
        .clone()
        .unwrap_or_else(|| format!("run-{}", uuid()));
    UserContext::new(&id.user_id, &thread, &run, &format!("req-{}", uuid()))?
        .with_connection_id(&uuid())
}
