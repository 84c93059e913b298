//! The demo agent: answers a user's message with five events, sent to every
//! connection of that user and nobody else.
//!
//! Work is bounded both ways: a user has at most
//! [`Agent::runs_per_user`] runs going at once and the node at most
//! [`Agent::runs_total`]; a `user_message` beyond either is answered at once
//! with an `error_message` of code [`BUSY`] and counted
//! (`userlane_agent_busy_total`). A run holds the user's text once and
//! builds each event only when it is sent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::json;
use userlane_smol::cluster::Remote;
use userlane_smol::userlane_core::{InboundLimit, SendOutcome};
use userlane_smol::{inbound_limit_name, ConnectionInfo, Handler, Message, Reach, ServerHandle};

use super::health::{Outcome, UserOutcomes};
use super::protocol::{
    connection_established, error_message, event, parse_client_frame, pong, ClientFrame,
};

/// Counters of agent events: the "critical events" of the health check.
#[derive(Debug, Default)]
pub struct AgentStats {
    /// Agent runs started.
    pub runs: AtomicU64,
    /// Agent events accepted for delivery (queued or buffered).
    pub events_sent: AtomicU64,
    /// Agent events that reached no connection and no buffer.
    pub events_failed: AtomicU64,
    /// `user_message`s refused with [`BUSY`]: the user or the node already
    /// had as many runs going as allowed.
    pub busy: AtomicU64,
}

/// Error code of a `user_message` refused because too many runs are going.
pub const BUSY: &str = "AGENT_BUSY";
/// Default for [`Agent::runs_per_user`].
pub const DEFAULT_RUNS_PER_USER: u32 = 2;
/// Default for [`Agent::runs_total`].
pub const DEFAULT_RUNS_TOTAL: u32 = 256;

/// The runs going now, per user and in total.
#[derive(Debug, Default)]
pub struct Runs {
    state: Mutex<RunsState>,
}

#[derive(Debug, Default)]
struct RunsState {
    total: u32,
    per_user: HashMap<String, u32>,
}

impl Runs {
    /// Takes a place for a run of `user_id`, or `None` if the user already
    /// has `per_user` runs or the node `total`. The place is given back when
    /// the returned guard drops (the run ended or its task was dropped).
    pub fn try_start(
        self: &Arc<Self>,
        user_id: &str,
        per_user: u32,
        total: u32,
    ) -> Option<RunGuard> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.total >= total || s.per_user.get(user_id).copied().unwrap_or(0) >= per_user {
            return None;
        }
        s.total += 1;
        *s.per_user.entry(user_id.to_owned()).or_insert(0) += 1;
        Some(RunGuard {
            runs: self.clone(),
            user_id: user_id.to_owned(),
        })
    }

    /// Runs going now, in total.
    pub fn total(&self) -> u32 {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

/// A place taken by [`Runs::try_start`]; dropping it gives the place back.
#[derive(Debug)]
pub struct RunGuard {
    runs: Arc<Runs>,
    user_id: String,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let mut s = self
            .runs
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_user.get_mut(&self.user_id) {
            *n -= 1;
            if *n == 0 {
                s.per_user.remove(&self.user_id);
            }
        }
    }
}

/// The event sequence of one run, in order.
pub const AGENT_EVENTS: [&str; 5] = [
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
];

/// The demo agent, as the server's [`Handler`].
pub struct Agent {
    /// Shared counters.
    pub stats: Arc<AgentStats>,
    /// Pause between two events of a run.
    pub step: Duration,
    /// Reported in the greeting.
    pub environment: String,
    /// Reported in the greeting.
    pub max_message_size: usize,
    /// Reported in the greeting (seconds).
    pub heartbeat_interval: u64,
    /// Most runs going at once for one user (`--agent-runs-per-user`).
    pub runs_per_user: u32,
    /// Most runs going at once on this node (`--agent-runs-total`).
    pub runs_total: u32,
    /// The runs going now.
    pub runs: Arc<Runs>,
    /// Per-user outcomes of agent events, for `/healthz`.
    pub users: Arc<UserOutcomes>,
}

impl Handler for Agent {
    /// An `error_message` with code `RATE_LIMITED` naming the budget.
    fn refusal(&self, _conn: &ConnectionInfo, limit: InboundLimit) -> Option<Message> {
        Some(Message::text(error_message(
            "RATE_LIMITED",
            &format!(
                "message dropped: over the {} budget; slow down",
                inbound_limit_name(limit).replace('_', " ")
            ),
        )))
    }

    fn greeting(&self, conn: &ConnectionInfo) -> Option<Message> {
        self.users.record(conn.user_id(), Outcome::Opened);
        Some(Message::text(connection_established(
            conn.connection_id(),
            conn.user_id(),
            &self.environment,
            self.max_message_size,
            self.heartbeat_interval,
        )))
    }

    fn on_message(&self, server: &ServerHandle, conn: &ConnectionInfo, message: Message) {
        let reply_error = |code: &str, msg: &str| {
            if let Err(e) = server.send_to_connection(conn, Message::text(error_message(code, msg)))
            {
                log::warn!(
                    "could not queue an error reply for {}: {e}",
                    conn.connection_id()
                );
            }
        };
        let text = match message {
            Message::Text(t) => t,
            _ => return reply_error("BINARY_NOT_SUPPORTED", "send JSON text frames"),
        };
        match parse_client_frame(&text) {
            Ok(ClientFrame::UserMessage(text)) => {
                let Some(guard) =
                    self.runs
                        .try_start(conn.user_id(), self.runs_per_user, self.runs_total)
                else {
                    self.stats.busy.fetch_add(1, Ordering::Relaxed);
                    return reply_error(
                        BUSY,
                        "the agent is busy with your earlier messages; send again when a run completes",
                    );
                };
                self.stats.runs.fetch_add(1, Ordering::Relaxed);
                let run = run(
                    server.clone(),
                    conn.user_id().to_owned(),
                    text,
                    self.stats.clone(),
                    self.users.clone(),
                    self.step,
                    guard,
                );
                smol::spawn(run).detach();
            }
            Ok(ClientFrame::Ping(id)) => {
                if let Err(e) = server.send_to_connection(conn, Message::text(pong(id))) {
                    log::debug!("pong for {} not queued: {e}", conn.connection_id());
                }
            }
            Err(e) => reply_error(e.code, &e.message),
        }
    }
}

/// The data of event `i` of a run, built only when it is sent.
fn event_data(i: usize, run_id: &str, text: &str, chars: usize) -> serde_json::Value {
    match i {
        0 => json!({ "run_id": run_id, "agent": "demo_agent", "message": text }),
        1 => json!({ "run_id": run_id, "thought": "Deciding which tool to use" }),
        2 => json!({ "run_id": run_id, "tool": "character_counter", "input": text }),
        3 => json!({ "run_id": run_id, "tool": "character_counter", "result": chars }),
        _ => json!({ "run_id": run_id, "reply": format!(
            "You said \u{201c}{text}\u{201d} ({chars} characters). This reply went to your tabs only."
        ) }),
    }
}

/// One agent run: five events to every connection of `user_id`. It holds
/// `text` once; `_guard` keeps its place among the runs going until it ends.
async fn run(
    server: ServerHandle,
    user_id: String,
    text: String,
    stats: Arc<AgentStats>,
    users: Arc<UserOutcomes>,
    step: Duration,
    _guard: RunGuard,
) {
    let run_id = uuid::Uuid::new_v4().to_string();
    let chars = text.chars().count();
    for (i, kind) in AGENT_EVENTS.iter().enumerate() {
        if i > 0 {
            smol::Timer::after(step).await;
        }
        let data = event_data(i, &run_id, &text, chars);
        match server
            .send(&user_id, Message::text(event(kind, data)))
            .await
        {
            Ok(Reach {
                local: Some(SendOutcome::Queued { queued_for: 0, .. }),
                remote: None | Some(Err(_)),
            })
            | Ok(Reach {
                local: None,
                remote: Some(Ok(Remote::Published(0))),
            })
            | Err(_) => {
                stats.events_failed.fetch_add(1, Ordering::Relaxed);
                users.record(&user_id, Outcome::AgentFailed);
                log::warn!("agent event {kind} for {user_id} reached no connection");
            }
            Ok(_) => {
                stats.events_sent.fetch_add(1, Ordering::Relaxed);
                users.record(&user_id, Outcome::AgentOk);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_bounded_per_user_and_in_total_and_given_back() {
        let runs = Arc::new(Runs::default());
        let a1 = runs.try_start("alice", 2, 3).unwrap();
        let _a2 = runs.try_start("alice", 2, 3).unwrap();
        assert!(runs.try_start("alice", 2, 3).is_none(), "per user");
        let _b1 = runs.try_start("bob", 2, 3).unwrap();
        assert!(runs.try_start("carol", 2, 3).is_none(), "in total");
        drop(a1);
        assert_eq!(runs.total(), 2);
        assert!(runs.try_start("alice", 2, 3).is_some());
        assert_eq!(runs.total(), 2, "the guard above was dropped at once");
    }
}
