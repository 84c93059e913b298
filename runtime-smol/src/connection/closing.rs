//! An open connection's close: the close grace, inbound data discarded
//! while closing, and the linger after our close frame is flushed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use smol::io::{AsyncRead, AsyncWrite};
use smol::Timer;

use crate::state::bump;

use super::conn::Conn;
use super::life::{Life, Linger, ReadStep, Reader, READ_BUDGET};

/// Most bytes of data messages a closing connection reads (and discards)
/// while it waits for the peer's close; past it the reader stops reading and
/// the connection ends when its close frame is flushed or its close grace
/// passes, whichever comes first.
pub(super) const DISCARD_CAP: usize = 64 * 1024;

/// Most bytes (counted with those discarded while closing) a lingering
/// connection reads and drops; a peer that sends more is left to TCP flow
/// control until the linger period ends.
const LINGER_CAP: usize = 256 * 1024;

impl Conn {
    /// The core has closed the connection: from now on inbound data is
    /// discarded, and the flush of what is queued (then the close frame)
    /// must end within the close grace.
    pub(super) fn begin_closing(&mut self) {
        self.life = self.life.max(Life::Closing);
        if self.close_timer.is_none() && self.life < Life::Lingering {
            let mut grace = Box::new(Timer::after(self.handle.shared.config.close_grace));
            let _ = Pin::new(&mut *grace).poll(&mut Context::from_waker(&self.timer_waker));
            self.close_timer = Some(grace);
        }
    }

    /// A data message read from a closing connection: dropped, counted, and
    /// the reader parked once [`DISCARD_CAP`] bytes have been dropped.
    pub(super) fn discard(&mut self, bytes: usize) -> ReadStep {
        // Also when the close frame was fed before the core's CLOSING
        // signal arrived: the flush is bounded by the close grace.
        self.begin_closing();
        bump(&self.handle.shared.counters.inbound_discarded);
        self.discarded = self.discarded.saturating_add(bytes);
        if self.discarded > DISCARD_CAP {
            ReadStep::Parked
        } else {
            ReadStep::Again
        }
    }

    /// Whether the peer may still be sending although our close frame is
    /// out: we closed while it was sending (its data was discarded or
    /// refused). A quiet peer (idle, shutdown) is not waited for.
    pub(super) fn should_linger(&self) -> bool {
        self.close_sent
            && !self.peer_closed
            && (self.discarded > 0 || self.reader == Reader::Parked)
    }

    /// Our close frame is flushed but the peer has not closed: shut down
    /// the write side (the peer reads our close, then the end of stream) and
    /// read and drop what it still sends (at most [`LINGER_CAP`] bytes, then
    /// nothing more is read), for at most one more close grace
    /// (`ServerConfig::close_grace`). Closing
    /// the socket with unread inbound bytes would send a TCP reset, which
    /// can destroy the close frame (1008, 1013, …) before the peer reads it.
    /// Returns false if the socket is already unusable.
    pub(super) fn start_linger(&mut self) -> bool {
        let mut sock = Context::from_waker(&self.socket_waker);
        match Pin::new(self.ws.get_mut()).poll_close(&mut sock) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) | Poll::Pending => return false,
        }
        // The close frame is out: the rest is the peer's to finish, within
        // one more close grace (not a forced close if it does not).
        let mut timer = Box::new(Timer::after(self.handle.shared.config.close_grace));
        let _ = Pin::new(&mut *timer).poll(&mut Context::from_waker(&self.timer_waker));
        self.close_timer = Some(timer);
        self.life = Life::Lingering;
        true
    }

    /// Reads and drops inbound bytes until the peer's end of stream, an
    /// error, or the end of the linger period.
    pub(super) fn poll_linger(&mut self) -> Linger {
        if let Some(timer) = &mut self.close_timer {
            let mut cx = Context::from_waker(&self.timer_waker);
            if Pin::new(&mut **timer).poll(&mut cx).is_ready() {
                return Linger::Done;
            }
        }
        let mut sock = Context::from_waker(&self.socket_waker);
        let mut buf = [0u8; 2048];
        for _ in 0..READ_BUDGET {
            if self.discarded > LINGER_CAP {
                // A peer still flooding: read no more (TCP flow control
                // stops it at no cost to us) and wait for the timer.
                return Linger::Wait;
            }
            match Pin::new(self.ws.get_mut()).poll_read(&mut sock, &mut buf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Linger::Done,
                Poll::Ready(Ok(n)) => self.discarded = self.discarded.saturating_add(n),
                Poll::Pending => return Linger::Wait,
            }
        }
        Linger::Yield
    }
}
