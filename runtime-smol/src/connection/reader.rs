//! An open connection's reader: frames read, checked against the inbound
//! budgets, handed to the handler or refused, and tungstenite's errors
//! turned into close codes.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use async_tungstenite::tungstenite::Message;
use futures_util::Stream as _;
use userlane_core::{CloseCode, Error as CoreError, Inbound, InboundLimit};

use crate::state::bump;

use super::conn::Conn;
use super::core_close::{close_with, handler_panicked};
use super::life::{Budget, Life, ReadStep};

/// Least time between two refusal notices to one connection.
const REFUSAL_NOTICE_EVERY: Duration = Duration::from_secs(1);

impl Conn {
    /// Tells the peer that an inbound message was refused
    /// ([`Handler::refusal`](crate::Handler::refusal)), at most once per
    /// [`REFUSAL_NOTICE_EVERY`]: a client that floods a connection it does
    /// not read must not fill its own queue with our answers.
    fn notify_refusal(&mut self, limit: InboundLimit) {
        let shared = &*self.handle.shared;
        let now = shared.clock.now();
        if self
            .last_refusal_notice
            .is_some_and(|t| t.saturating_add_millis(REFUSAL_NOTICE_EVERY.as_millis() as u64) > now)
        {
            return;
        }
        self.last_refusal_notice = Some(now);
        let info = &*self.info;
        match catch_unwind(AssertUnwindSafe(|| self.app.handler.refusal(info, limit))) {
            // Best effort: a full queue is the slow-consumer rule's business.
            Ok(Some(frame)) => {
                let _ = self.handle.send_to_connection(info, frame);
            }
            Ok(None) => {}
            Err(_) => bump(&shared.counters.handler_panics),
        }
    }

    /// Asks the core whether an inbound data message of `bytes` fits the
    /// connection's and the user's inbound budgets.
    fn check_budget(&mut self, bytes: usize) -> Budget {
        let shared = &*self.handle.shared;
        let slot = &shared.shards.slots[self.info.shard];
        match slot
            .core
            .handle_inbound(self.info.connection, bytes, shared.clock.now())
        {
            Ok(Inbound::Accepted) => Budget::Process,
            Ok(Inbound::Refused(limit)) => Budget::Refused(limit),
            // The core closed the connection with 1008; its close frame goes
            // out after what is queued.
            Ok(Inbound::Closed(_)) => Budget::Closing,
            Err(CoreError::ConnectionClosing(_)) => Budget::Closing,
            Err(_) => Budget::Gone,
        }
    }

    /// Reads and handles one frame.
    pub(super) fn read_one(&mut self) -> ReadStep {
        let mut sock = Context::from_waker(&self.socket_waker);
        let item = match Pin::new(&mut self.ws).poll_next(&mut sock) {
            Poll::Pending => return ReadStep::Wait,
            Poll::Ready(None) => return ReadStep::Gone,
            Poll::Ready(Some(item)) => item,
        };
        match item {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => self.on_data(m),
            // Control frames count against the inbound budget too (a client
            // could otherwise send pings at line rate, each one answered);
            // a refused one is not answered with a notice, and strikes close
            // the connection like any other flood.
            Ok(m @ (Message::Ping(_) | Message::Pong(_))) => {
                if self.life >= Life::Closing {
                    self.begin_closing();
                    return ReadStep::Again;
                }
                match self.check_budget(m.len()) {
                    Budget::Process | Budget::Refused(_) => ReadStep::Again,
                    Budget::Closing => {
                        self.begin_closing();
                        ReadStep::Again
                    }
                    Budget::Gone => ReadStep::Gone,
                }
            }
            // The peer closed: tungstenite queued the close reply and accepts
            // no more frames, so the writer takes nothing more from the core
            // (what is queued there is counted undelivered at release) and
            // only flushes the reply.
            Ok(Message::Close(_)) => {
                self.peer_closed = true;
                self.life = self.life.max(Life::Finishing);
                ReadStep::Parked
            }
            Ok(Message::Frame(_)) => ReadStep::Again,
            Err(e) => self.on_read_error(e),
        }
    }

    /// A text or binary message: dropped while closing, checked against the
    /// inbound budget, then handed to the handler (a panic there closes the
    /// connection with 1011).
    fn on_data(&mut self, m: Message) -> ReadStep {
        if self.life >= Life::Closing {
            return self.discard(m.len());
        }
        // An accepted message is also the connection's inbound activity (the
        // core notes it in the same call).
        match self.check_budget(m.len()) {
            Budget::Process => {}
            Budget::Refused(limit) => {
                drop(m);
                self.notify_refusal(limit);
                return ReadStep::Again;
            }
            Budget::Closing => {
                // Already counted by the core (refused, or refused on a
                // closing connection); not counted again here.
                self.begin_closing();
                self.discarded = self.discarded.saturating_add(m.len());
                return ReadStep::Again;
            }
            Budget::Gone => return ReadStep::Gone,
        }
        let (handle, info) = (&self.handle, &*self.info);
        let handler = &self.app.handler;
        let outcome = catch_unwind(AssertUnwindSafe(|| handler.on_message(handle, info, m)));
        if outcome.is_err() {
            handler_panicked(&self.handle.shared, info, "on_message");
            return ReadStep::Parked;
        }
        ReadStep::Again
    }

    /// The reader's verdict on a frame tungstenite refused: the connection
    /// is closed through the core with 1009, 1007 or 1002 (counted), or it
    /// is gone.
    fn on_read_error(&mut self, e: WsError) -> ReadStep {
        let shared = &*self.handle.shared;
        let info = &*self.info;
        let (code, reason, counter) = match e {
            WsError::Capacity(CapacityError::MessageTooLong { .. }) => (
                CloseCode::MESSAGE_TOO_BIG,
                "message too big",
                &shared.counters.closed_message_too_big,
            ),
            WsError::Utf8(_) => (
                CloseCode::INVALID_PAYLOAD,
                "invalid UTF-8",
                &shared.counters.closed_invalid_utf8,
            ),
            // The peer vanished without a close frame: gone, not a protocol error.
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                return ReadStep::Gone
            }
            WsError::Protocol(e) => {
                log::debug!("protocol error on {}: {e}", info.connection_id());
                (
                    CloseCode::PROTOCOL_ERROR,
                    "protocol error",
                    &shared.counters.closed_protocol_error,
                )
            }
            _ => return ReadStep::Gone,
        };
        if close_with(shared, info, code, reason) {
            bump(counter);
        }
        ReadStep::Parked
    }
}
