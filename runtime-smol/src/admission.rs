//! The upgrade request: who is connecting, and may they? Runs inside the
//! connection's task. Every refusal here is an HTTP status, never a close code.

use std::net::SocketAddr;
use std::sync::Arc;

use async_tungstenite::tungstenite::handshake::server::Request;
use async_tungstenite::tungstenite::http::StatusCode;
use userlane_core::{Error as CoreError, Limit, UserContext};

use crate::auth::{find_token, AuthError, Identity};
use crate::handle::{bump, ServerShared};
use crate::handler::ConnectionInfo;
use crate::shards::ConnEntry;
use crate::signals::Signals;

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

/// Decides on an upgrade request and, if admitted, opens the connection in
/// the core. Counts every refusal by status.
pub(crate) fn admit(
    shared: &ServerShared,
    req: &Request,
    remote: SocketAddr,
) -> Result<Admitted, Refusal> {
    let result = decide(shared, req, remote);
    if let Err(r) = &result {
        let c = &shared.counters;
        match r.status {
            StatusCode::BAD_REQUEST => bump(&c.rejected_400),
            StatusCode::UNAUTHORIZED => bump(&c.rejected_401),
            StatusCode::NOT_FOUND => bump(&c.rejected_404),
            StatusCode::TOO_MANY_REQUESTS => bump(&c.rejected_429),
            StatusCode::SERVICE_UNAVAILABLE => bump(&c.rejected_503),
            _ => {}
        }
        log::info!(
            "refused upgrade from {remote}: {} {}",
            r.status.as_u16(),
            r.message
        );
    }
    result
}

fn decide(shared: &ServerShared, req: &Request, remote: SocketAddr) -> Result<Admitted, Refusal> {
    if req.uri().path() != shared.config.ws_path {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "no WebSocket endpoint here",
        ));
    }
    if !shared.accepting.load(std::sync::atomic::Ordering::Acquire) {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server is shutting down",
        ));
    }
    let found =
        find_token(req).map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let (identity, anonymous) = match (&found.token, &shared.authenticator) {
        (Some(token), Some(auth)) => match auth.authenticate(token) {
            Ok(id) => (id, false),
            Err(AuthError::Expired) => {
                return Err(Refusal::new(StatusCode::UNAUTHORIZED, "token expired"))
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
    let ctx = context_for(&identity)
        .map_err(|e| Refusal::new(StatusCode::UNAUTHORIZED, e.to_string()))?;

    // The count and the connect are one step for every other admission
    // (a few microseconds; no await inside).
    let admitting = shared
        .admitting
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let open: u64 = shared
        .shards
        .slots
        .iter()
        .map(|s| s.core.read(|f| f.stats().connections_active))
        .sum();
    if open >= u64::from(shared.config.max_connections) {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server is full",
        ));
    }
    let shard = shared.shards.index_of(ctx.user_id());
    let slot = &shared.shards.slots[shard];
    let (manager, connection) =
        slot.core
            .connect(&ctx, shared.clock.now())
            .map_err(|e| match e {
                CoreError::LimitReached(Limit::ConnectionsPerUser) => Refusal::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many connections for this user",
                ),
                CoreError::LimitReached(_) | CoreError::EventsPending => {
                    Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "server is full")
                }
                other => Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
            })?;
    drop(admitting);
    if anonymous {
        bump(&shared.counters.fallback_connections);
    }
    let info = Arc::new(ConnectionInfo {
        context: ctx,
        connection,
        manager,
        shard,
        remote,
        anonymous,
    });
    let signals = Signals::new();
    slot.registry().insert(
        connection,
        ConnEntry {
            info: info.clone(),
            signals: signals.clone(),
            reason: None,
        },
    );
    Ok(Admitted {
        info,
        signals,
        select_jwt_auth: found.select_jwt_auth,
    })
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
