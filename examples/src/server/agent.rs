//! The demo agent: answers a user's message with five events, sent to every
//! connection of that user and nobody else.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use userlane_smol::cluster::Remote;
use userlane_smol::userlane_core::SendOutcome;
use userlane_smol::{ConnectionInfo, Handler, Message, Reach, ServerHandle};

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
}

impl Handler for Agent {
    fn greeting(&self, conn: &ConnectionInfo) -> Option<Message> {
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
                self.stats.runs.fetch_add(1, Ordering::Relaxed);
                let run = run(
                    server.clone(),
                    conn.user_id().to_owned(),
                    text,
                    self.stats.clone(),
                    self.step,
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

/// One agent run: five events to every connection of `user_id`.
async fn run(
    server: ServerHandle,
    user_id: String,
    text: String,
    stats: Arc<AgentStats>,
    step: Duration,
) {
    let run_id = uuid::Uuid::new_v4().to_string();
    let reply = format!(
        "You said \u{201c}{text}\u{201d} ({} characters). This reply went to your tabs only.",
        text.chars().count()
    );
    let data = [
        json!({ "run_id": run_id, "agent": "demo_agent", "message": text }),
        json!({ "run_id": run_id, "thought": "Deciding which tool to use" }),
        json!({ "run_id": run_id, "tool": "character_counter", "input": text }),
        json!({ "run_id": run_id, "tool": "character_counter", "result": text.chars().count() }),
        json!({ "run_id": run_id, "reply": reply }),
    ];
    for (i, (kind, data)) in AGENT_EVENTS.iter().zip(data).enumerate() {
        if i > 0 {
            smol::Timer::after(step).await;
        }
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
                log::warn!("agent event {kind} for {user_id} reached no connection");
            }
            Ok(_) => {
                stats.events_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
