//! The plain-HTTP endpoints of the example server.
//!
//! | endpoint | who | what |
//! |---|---|---|
//! | `GET /` | anyone | the browser page |
//! | `GET /healthz` | anyone | `200 ok` or `503`; the tripped thresholds (and, with `?format=json`, the memory figures) only on the operational surface |
//! | `GET /metrics` | operational surface only | Prometheus text format |
//! | `POST /dev/token` | development without a configured secret | `{"user_id": …}` → `{"token": …}` |
//! | `POST /api/users/{user_id}/messages` | service token | JSON body to every connection of the user |
//! | `POST /api/send-batch` | service token | `{"items":[{"user":…,"payload":…},…]}`: each payload to its user; one result per item |
//! | `POST /api/send-many` | service token | `{"users":[…],"payload":…}`: one payload to each user; one result per user |
//! | `DELETE /api/users/{user_id}/connections` | service token | close the user's connections with 4001 |
//!
//! The operational surface (`/metrics`, detailed `/healthz`) is the ops
//! listener (`--ops-listen`, by default `127.0.0.1:9601` in production and
//! staging), or the main port in development and testing (or with
//! `--ops-listen public`). Elsewhere the main port answers `/metrics` with
//! 404 and `/healthz` with a one-word status for load balancers.

use std::sync::Arc;
use std::time::Duration;

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
use super::health::{Health, Outcome, Sample, Verdict};
use super::tokens::{constant_time_eq, mint};

/// Close code of a forced disconnect through the service API.
pub const FORCE_DISCONNECT: u16 = 4001;
/// Lifetime of a development token.
pub const DEV_TOKEN_TTL_SECS: u64 = 12 * 3600;
/// Prefix of the user ids the runtime gives anonymous connections
/// (`anon-<uuid>`); `/dev/token` refuses every id in this namespace.
pub const ANONYMOUS_PREFIX: &str = "anon-";

/// Which endpoints a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// The main port with the operational endpoints (development, testing,
    /// or `--ops-listen public`).
    PublicWithOps,
    /// The main port without them: `/metrics` is 404 and `/healthz` a
    /// one-word status (`ok`, `degraded`, `unhealthy`).
    Public,
    /// The ops listener: `/metrics` and the detailed `/healthz`, nothing else.
    Ops,
}

/// The example server's [`HttpService`].
#[derive(Clone)]
pub struct Api {
    /// The environment.
    pub environment: Environment,
    /// What this listener serves.
    pub surface: Surface,
    /// Bearer token of back-end services; `None` disables the service API.
    pub service_token: Option<String>,
    /// The random per-process secret `/dev/token` signs with: `Some` only in
    /// development without a configured secret; otherwise `/dev/token` is
    /// 404. A configured secret is never used to mint tokens.
    pub dev_secret: Option<Vec<u8>>,
    /// Largest message (a single send's body, a batch item's payload).
    pub max_message_bytes: usize,
    /// Most items of a batch (`/api/send-batch`) or users of a
    /// `/api/send-many` call.
    pub max_batch_items: usize,
    /// Largest body of a batch or send-many call.
    pub max_batch_bytes: usize,
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
        let ops = self.surface != Surface::Public;
        if self.surface == Surface::Ops {
            return match (req.method.as_str(), segments.as_slice()) {
                ("GET", ["healthz"]) => self.healthz(server, &req, true),
                ("GET", ["metrics"]) => self.metrics(server).await,
                (_, ["healthz"]) | (_, ["metrics"]) => {
                    HttpResponse::text(405, "method not allowed\n")
                }
                _ => HttpResponse::text(404, "not found\n"),
            };
        }
        match (req.method.as_str(), segments.as_slice()) {
            ("GET", [""]) => HttpResponse::with_type(200, "text/html; charset=utf-8", super::PAGE),
            ("GET", ["healthz"]) => self.healthz(server, &req, ops),
            ("GET", ["metrics"]) if ops => self.metrics(server).await,
            (_, ["metrics"]) if !ops => HttpResponse::text(404, "not found\n"),
            ("POST", ["dev", "token"]) if self.dev_secret.is_some() => self.dev_token(server, &req),
            ("POST", ["api", "users", user, "messages"]) => match self.authorize(&req) {
                Err(r) => r,
                Ok(()) => match decode_user(user) {
                    Some(user) => self.post_message(server, &user, &req).await,
                    None => HttpResponse::json(400, &json!({"error": "bad user id in path"})),
                },
            },
            ("POST", ["api", "send-batch"]) => match self.authorize(&req) {
                Err(r) => r,
                Ok(()) => self.send_batch(server, &req).await,
            },
            ("POST", ["api", "send-many"]) => match self.authorize(&req) {
                Err(r) => r,
                Ok(()) => self.send_many(server, &req).await,
            },
            ("DELETE", ["api", "users", user, "connections"]) => match self.authorize(&req) {
                Err(r) => r,
                Ok(()) => match decode_user(user) {
                    Some(user) => self.disconnect(server, &user).await,
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

    async fn metrics(&self, server: &ServerHandle) -> HttpResponse {
        {
            // Redis's view of the whole cluster (a scan); the node's own
            // cluster counters come with the server's stats.
            let gauges = match server.cluster() {
                Some(c) => c.cluster_gauges().await.ok(),
                None => None,
            };
            HttpResponse::with_type(
                200,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                super::metrics::render(
                    &server.stats(),
                    &self.agent,
                    gauges,
                    &self.health.memory.figures(),
                ),
            )
        }
    }

    async fn disconnect(&self, server: &ServerHandle, user: &str) -> HttpResponse {
        let code = CloseCode::new(FORCE_DISCONNECT).expect("4001 is a valid close code");
        let reach = server
            .disconnect(user, code, "disconnected by service")
            .await;
        match reach.remote {
            Some(Err(e)) => HttpResponse::json(
                503,
                &json!({ "closed": reach.local, "error": e.to_string() }),
            ),
            Some(Ok(Remote::Published(nodes))) => {
                HttpResponse::json(200, &json!({ "closed": reach.local, "nodes": nodes }))
            }
            _ => HttpResponse::json(200, &json!({ "closed": reach.local })),
        }
    }
}

impl Api {
    pub(super) fn authorize(&self, req: &HttpRequest) -> Result<(), HttpResponse> {
        let presented = req.bearer_token().unwrap_or_default();
        match &self.service_token {
            Some(expected) if constant_time_eq(presented.as_bytes(), expected.as_bytes()) => Ok(()),
            _ => Err(HttpResponse::json(
                401,
                &json!({"error": "a valid service token is required"}),
            )),
        }
    }

    /// `/healthz`: the status code always; the tripped thresholds only
    /// when `detailed`, and then as JSON with the memory figures when asked
    /// (`?format=json` or `Accept: application/json`).
    fn healthz(&self, server: &ServerHandle, req: &HttpRequest, detailed: bool) -> HttpResponse {
        let degraded = server.cluster().is_some_and(|c| !c.is_healthy());
        let Verdict { result, memory } = self
            .health
            .verdict_at_most_every(Duration::from_secs(1), || Sample::of(&server.stats()));
        let (status, word) = match &result {
            Ok(()) if degraded => (200, "degraded"),
            Ok(()) => (200, "ok"),
            Err(_) => (503, "unhealthy"),
        };
        if !detailed {
            return HttpResponse::text(status, format!("{word}\n"));
        }
        let json = req
            .query
            .as_deref()
            .is_some_and(|q| q.split('&').any(|p| p == "format=json"))
            || req
                .header("accept")
                .is_some_and(|a| a.contains("application/json"));
        if json {
            return HttpResponse::json(
                status,
                &json!({
                    "status": word,
                    "reasons": result.as_ref().err().map_or(Vec::new(), |r| r.split("; ").collect()),
                    "cluster": if degraded { Some("redis unreachable; serving local users only") } else { None },
                    "memory": {
                        "resident_bytes": memory.resident_bytes,
                        "baseline_bytes": memory.baseline_bytes,
                        "spike_percent": memory.limit_percent,
                    },
                }),
            );
        }
        match result {
            Ok(()) if degraded => HttpResponse::text(
                200,
                "degraded: redis unreachable; serving local users only\n",
            ),
            Ok(()) => HttpResponse::text(200, "ok\n"),
            Err(reason) => HttpResponse::text(503, format!("unhealthy: {reason}\n")),
        }
    }

    fn dev_token(&self, server: &ServerHandle, req: &HttpRequest) -> HttpResponse {
        let Some(secret) = &self.dev_secret else {
            return HttpResponse::text(404, "not found\n");
        };
        let user_id = serde_json::from_slice::<serde_json::Value>(&req.body)
            .ok()
            .and_then(|v| v.get("user_id").and_then(|u| u.as_str()).map(str::to_owned));
        let Some(user_id) = user_id else {
            return HttpResponse::json(400, &json!({"error": "send {\"user_id\": \"…\"}"}));
        };
        if let Err(e) = UserContext::new(&user_id, "t", "r", "q") {
            // The error names the field and the rule, never the value.
            return HttpResponse::json(400, &json!({"error": e.to_string()}));
        }
        if user_id.starts_with(ANONYMOUS_PREFIX) {
            return HttpResponse::json(
                400,
                &json!({"error": "user ids starting with \"anon-\" are reserved for anonymous connections"}),
            );
        }
        let config = server.config();
        match mint(
            secret,
            &user_id,
            DEV_TOKEN_TTL_SECS,
            config.jwt_issuer.as_deref(),
            config.jwt_audience.as_deref(),
        ) {
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
        let (status, answer) = self.deliver(server, user, text).await;
        HttpResponse::json(status, &answer)
    }

    /// Sends `text` (a JSON document) to every connection of `user`: the
    /// status and JSON answer of the service API (202 `{"queued_for": n}` or
    /// `{"buffered": true}`, or a typed error).
    pub(super) async fn deliver(
        &self,
        server: &ServerHandle,
        user: &str,
        text: &str,
    ) -> (u16, serde_json::Value) {
        let sent = server.send(user, Message::text(text.to_owned())).await;
        match &sent {
            Ok(_) => self.health.users.record(user, Outcome::DeliveryOk),
            Err(UserError::Core(e)) if !matches!(e, CoreError::InvalidContext(_)) => {
                self.health.users.record(user, Outcome::DeliveryFailed)
            }
            Err(_) => {}
        }
        match sent {
            Ok(Reach {
                local: Some(SendOutcome::Buffered { .. }),
                ..
            }) => (202, json!({ "buffered": true })),
            Ok(Reach {
                remote: Some(Ok(Remote::Stored(_))),
                ..
            }) => (202, json!({ "buffered": true })),
            Ok(Reach { local, remote }) => {
                let queued_for = local.map_or(0, |o| o.queued_for());
                match remote {
                    None => (202, json!({ "queued_for": queued_for })),
                    Some(Ok(Remote::Published(nodes))) => {
                        (202, json!({ "queued_for": queued_for, "nodes": nodes }))
                    }
                    Some(Ok(Remote::Stored(_))) => (202, json!({ "buffered": true })),
                    Some(Err(e)) => (
                        202,
                        json!({ "queued_for": queued_for, "cluster": "unavailable", "error": e.to_string() }),
                    ),
                }
            }
            Err(UserError::UnknownUser | UserError::Core(CoreError::NoConnections(_))) => {
                (404, json!({"error": "unknown user"}))
            }
            Err(UserError::Core(CoreError::InvalidContext(e))) => {
                (400, json!({"error": e.to_string()}))
            }
            Err(UserError::Cluster(e)) => (503, json!({"error": e.to_string()})),
            Err(UserError::Core(
                e @ (CoreError::LimitReached(
                    Limit::OfflineBuffer
                    | Limit::QueueSlots
                    | Limit::Users
                    | Limit::OfflineManagers,
                )
                | CoreError::QueueFull(_)
                | CoreError::EventsPending),
            )) => (503, json!({"error": e.to_string()})),
            Err(e) => (500, json!({"error": e.to_string()})),
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
