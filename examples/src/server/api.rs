//! The plain-HTTP endpoints of the example server.
//!
//! | endpoint | who | what |
//! |---|---|---|
//! | `GET /` | anyone | the browser page |
//! | `GET /healthz` | anyone | `200 ok` or `503` with the tripped thresholds |
//! | `GET /metrics` | anyone | Prometheus text format |
//! | `POST /dev/token` | development only | `{"user_id": …}` → `{"token": …}` |
//! | `POST /api/users/{user_id}/messages` | service token | JSON body to every connection of the user |
//! | `DELETE /api/users/{user_id}/connections` | service token | close the user's connections with 4001 |

use std::sync::Arc;

use serde_json::json;
use userlane_smol::cluster::Remote;
use userlane_smol::userlane_core::{
    CloseCode, Error as CoreError, Limit, SendOutcome, UserContext,
};
use userlane_smol::{
    percent_decode, Encoded, Environment, HttpFuture, HttpRequest, HttpResponse, HttpService,
    Message, Reach, ServerHandle, UserError,
};

use super::agent::AgentStats;
use super::health::{Health, Sample};
use super::tokens::{constant_time_eq, mint};

/// Close code of a forced disconnect through the service API.
pub const FORCE_DISCONNECT: u16 = 4001;
/// Lifetime of a development token.
pub const DEV_TOKEN_TTL_SECS: u64 = 12 * 3600;

/// The example server's [`HttpService`].
pub struct Api {
    /// The environment.
    pub environment: Environment,
    /// Bearer token of back-end services; `None` disables the service API.
    pub service_token: Option<String>,
    /// Secret for `/dev/token` (development only).
    pub dev_secret: Option<Vec<u8>>,
    /// Largest body accepted by the service API.
    pub max_message_bytes: usize,
    /// Agent counters (health and metrics).
    pub agent: Arc<AgentStats>,
    /// The health window.
    pub health: Arc<Health>,
}

impl HttpService for Api {
    fn handle<'a>(&'a self, server: &'a ServerHandle, req: HttpRequest) -> HttpFuture<'a> {
        Box::pin(self.route(server, req))
    }
}

impl Api {
    async fn route(&self, server: &ServerHandle, req: HttpRequest) -> HttpResponse {
        let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        match (req.method.as_str(), segments.as_slice()) {
            ("GET", [""]) => HttpResponse::with_type(200, "text/html; charset=utf-8", super::PAGE),
            ("GET", ["healthz"]) => self.healthz(server),
            ("GET", ["metrics"]) => {
                let cluster = match server.cluster() {
                    Some(c) => Some(super::metrics::ClusterView {
                        healthy: c.is_healthy(),
                        gauges: c.cluster_gauges().await.ok(),
                        rtt: c.rtt.snapshot(),
                        unavailable_errors: c
                            .unavailable_errors
                            .load(std::sync::atomic::Ordering::Relaxed),
                        local_admissions: c
                            .local_admissions
                            .load(std::sync::atomic::Ordering::Relaxed),
                        envelopes_received: c
                            .envelopes_received
                            .load(std::sync::atomic::Ordering::Relaxed),
                    }),
                    None => None,
                };
                HttpResponse::with_type(
                    200,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    super::metrics::render(&server.stats(), &self.agent, cluster.as_ref()),
                )
            }
            ("POST", ["dev", "token"]) if self.environment == Environment::Development => {
                self.dev_token(&req)
            }
            ("POST", ["api", "users", user, "messages"]) => match self.authorize(&req) {
                Err(r) => r,
                Ok(()) => match decode_user(user) {
                    Some(user) => self.post_message(server, &user, &req).await,
                    None => HttpResponse::json(400, &json!({"error": "bad user id in path"})),
                },
            },
            ("DELETE", ["api", "users", user, "connections"]) => match self.authorize(&req) {
                Err(r) => r,
                Ok(()) => match decode_user(user) {
                    Some(user) => {
                        let code =
                            CloseCode::new(FORCE_DISCONNECT).expect("4001 is a valid close code");
                        let reach = server
                            .disconnect(&user, code, "disconnected by service")
                            .await;
                        match reach.remote {
                            Some(Err(e)) => HttpResponse::json(
                                503,
                                &json!({ "closed": reach.local, "error": e.to_string() }),
                            ),
                            Some(Ok(Remote::Published(nodes))) => HttpResponse::json(
                                200,
                                &json!({ "closed": reach.local, "nodes": nodes }),
                            ),
                            _ => HttpResponse::json(200, &json!({ "closed": reach.local })),
                        }
                    }
                    None => HttpResponse::json(400, &json!({"error": "bad user id in path"})),
                },
            },
            ("GET", ["echo"]) if !self.environment.requires_authentication() => {
                HttpResponse::text(426, "upgrade to a WebSocket to use the echo endpoint\n")
            }
            (_, ["api", ..]) | (_, ["healthz"]) | (_, ["metrics"]) => {
                HttpResponse::text(405, "method not allowed\n")
            }
            _ => HttpResponse::text(404, "not found\n"),
        }
    }
}

impl Api {
    fn authorize(&self, req: &HttpRequest) -> Result<(), HttpResponse> {
        let presented = req.bearer_token().unwrap_or_default();
        match &self.service_token {
            Some(expected) if constant_time_eq(presented.as_bytes(), expected.as_bytes()) => Ok(()),
            _ => Err(HttpResponse::json(
                401,
                &json!({"error": "a valid service token is required"}),
            )),
        }
    }

    fn healthz(&self, server: &ServerHandle) -> HttpResponse {
        let degraded = server.cluster().is_some_and(|c| !c.is_healthy());
        match self.health.check(Sample::of(&server.stats(), &self.agent)) {
            Ok(()) if degraded => HttpResponse::text(
                200,
                "degraded: redis unreachable; serving local users only\n",
            ),
            Ok(()) => HttpResponse::text(200, "ok\n"),
            Err(reason) => HttpResponse::text(503, format!("unhealthy: {reason}\n")),
        }
    }

    fn dev_token(&self, req: &HttpRequest) -> HttpResponse {
        let Some(secret) = &self.dev_secret else {
            return HttpResponse::json(503, &json!({"error": "no secret to sign tokens"}));
        };
        let user_id = serde_json::from_slice::<serde_json::Value>(&req.body)
            .ok()
            .and_then(|v| v.get("user_id").and_then(|u| u.as_str()).map(str::to_owned));
        let Some(user_id) = user_id else {
            return HttpResponse::json(400, &json!({"error": "send {\"user_id\": \"…\"}"}));
        };
        if let Err(e) = UserContext::new(&user_id, "t", "r", "q") {
            return HttpResponse::json(400, &json!({"error": e.to_string()}));
        }
        match mint(secret, &user_id, DEV_TOKEN_TTL_SECS) {
            Ok(token) => HttpResponse::json(200, &json!({ "token": token, "user_id": user_id })),
            Err(e) => HttpResponse::json(500, &json!({"error": e.to_string()})),
        }
    }

    async fn post_message(
        &self,
        server: &ServerHandle,
        user: &str,
        req: &HttpRequest,
    ) -> HttpResponse {
        if req.body.len() > self.max_message_bytes {
            return HttpResponse::json(413, &json!({"error": "body over the message size limit"}));
        }
        let Ok(text) = std::str::from_utf8(&req.body) else {
            return HttpResponse::json(400, &json!({"error": "body is not UTF-8"}));
        };
        if serde_json::from_str::<serde_json::Value>(text).is_err() {
            return HttpResponse::json(400, &json!({"error": "body is not JSON"}));
        }
        match server.send(user, Message::text(text.to_owned())).await {
            Ok(Reach {
                local: Some(SendOutcome::Buffered { .. }),
                ..
            }) => HttpResponse::json(202, &json!({ "buffered": true })),
            Ok(Reach {
                remote: Some(Ok(Remote::Stored(_))),
                ..
            }) => HttpResponse::json(202, &json!({ "buffered": true })),
            Ok(Reach { local, remote }) => {
                let queued_for = local.map_or(0, |o| o.queued_for());
                match remote {
                    None => HttpResponse::json(202, &json!({ "queued_for": queued_for })),
                    Some(Ok(Remote::Published(nodes))) => HttpResponse::json(
                        202,
                        &json!({ "queued_for": queued_for, "nodes": nodes }),
                    ),
                    Some(Ok(Remote::Stored(_))) => {
                        HttpResponse::json(202, &json!({ "buffered": true }))
                    }
                    Some(Err(e)) => HttpResponse::json(
                        202,
                        &json!({ "queued_for": queued_for, "cluster": "unavailable", "error": e.to_string() }),
                    ),
                }
            }
            Err(UserError::UnknownUser | UserError::Core(CoreError::NoConnections(_))) => {
                HttpResponse::json(404, &json!({"error": "unknown user"}))
            }
            Err(UserError::Core(CoreError::InvalidContext(e))) => {
                HttpResponse::json(400, &json!({"error": e.to_string()}))
            }
            Err(UserError::Cluster(e)) => HttpResponse::json(503, &json!({"error": e.to_string()})),
            Err(UserError::Core(
                e @ (CoreError::LimitReached(
                    Limit::OfflineBuffer
                    | Limit::QueueSlots
                    | Limit::Users
                    | Limit::OfflineManagers,
                )
                | CoreError::QueueFull(_)
                | CoreError::EventsPending),
            )) => HttpResponse::json(503, &json!({"error": e.to_string()})),
            Err(e) => HttpResponse::json(500, &json!({"error": e.to_string()})),
        }
    }
}

/// The user id of a path segment, percent-decoded; `None` if it is badly
/// encoded or empty.
fn decode_user(segment: &str) -> Option<String> {
    percent_decode(segment, Encoded::PathSegment).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::decode_user;

    #[test]
    fn user_ids_in_paths_are_percent_decoded() {
        assert_eq!(decode_user("alice").as_deref(), Some("alice"));
        assert_eq!(decode_user("a%40b.com").as_deref(), Some("a@b.com"));
        assert_eq!(decode_user("a+b").as_deref(), Some("a+b"));
        assert_eq!(decode_user("%zz"), None);
        assert_eq!(decode_user(""), None);
    }
}
