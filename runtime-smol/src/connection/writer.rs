//! An open connection's writer: the greeting, pings and the core's items
//! fed to tungstenite in batches and flushed, then the close frame.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WireCloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame as WireCloseFrame;
use async_tungstenite::tungstenite::Message;
use futures_util::Sink;
use userlane_core::Transmit;

use crate::signals::SOCKET;

use super::conn::Conn;
use super::life::Life;

/// Most frames fed to the socket before one flush.
const WRITE_BATCH: usize = 64;

impl Conn {
    /// Whether the writer has work after a wake with `flags`.
    pub(super) fn writer_due(&self, flags: u8) -> bool {
        if self.blocked {
            flags & SOCKET != 0
        } else {
            self.take
                || self.ping_due
                || self.greeting.is_some()
                || self.fed > 0
                || self.life >= Life::Finishing
        }
    }

    /// Feeds what is due (the greeting, a ping, then items from the core,
    /// up to [`WRITE_BATCH`] frames per flush) and flushes. `Ready` when the
    /// writer is done: close frame sent, connection released, or socket error.
    pub(super) fn poll_writer(&mut self) -> Poll<()> {
        let mut sock = Context::from_waker(&self.socket_waker);
        let mut core = Context::from_waker(&self.core_waker);
        let slot = &self.handle.shared.shards.slots[self.info.shard];
        let conn = self.info.connection;
        loop {
            if self.life >= Life::Finishing {
                if Pin::new(&mut self.ws).poll_flush(&mut sock).is_pending() {
                    self.blocked = true;
                    return Poll::Pending;
                }
                return Poll::Ready(());
            }
            let local = self.greeting.is_some() || self.ping_due;
            if local || (self.take && self.fed < WRITE_BATCH) {
                // Take nothing before tungstenite can accept it at once.
                match Pin::new(&mut self.ws).poll_ready(&mut sock) {
                    Poll::Pending => {
                        self.blocked = true;
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Ready(Ok(())) => self.blocked = false,
                }
                let frame = if let Some(greeting) = self.greeting.take() {
                    *greeting
                } else if self.ping_due {
                    self.ping_due = false;
                    Message::Ping(Default::default())
                } else {
                    match slot.core.poll_transmit_more(conn, &mut core) {
                        Poll::Ready(None) => {
                            self.life = self.life.max(Life::Finishing);
                            continue;
                        }
                        Poll::Ready(Some((Transmit::Message(m), more))) => {
                            self.take = more;
                            m
                        }
                        Poll::Ready(Some((Transmit::Close(frame), _))) => {
                            let reason = slot
                                .registry()
                                .get(&conn)
                                .and_then(|e| e.reason.clone())
                                .unwrap_or_else(|| frame.reason.as_str().to_owned());
                            let wire = WireCloseFrame {
                                code: WireCloseCode::from(frame.code.as_u16()),
                                reason: reason.into(),
                            };
                            let _ = Pin::new(&mut self.ws).start_send(Message::Close(Some(wire)));
                            self.close_sent = true;
                            self.life = self.life.max(Life::Finishing);
                            continue;
                        }
                        Poll::Pending => {
                            self.take = false;
                            continue;
                        }
                    }
                };
                if Pin::new(&mut self.ws).start_send(frame).is_err() {
                    return Poll::Ready(());
                }
                self.fed += 1;
                continue;
            }
            if self.fed > 0 {
                match Pin::new(&mut self.ws).poll_flush(&mut sock) {
                    Poll::Pending => {
                        self.blocked = true;
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Ready(Ok(())) => {
                        self.blocked = false;
                        self.fed = 0;
                        continue;
                    }
                }
            }
            return Poll::Pending;
        }
    }
}
