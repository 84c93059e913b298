//! Where an open connection stands: its life ([`Life`]), its reader's
//! state, the outcomes of a read, a budget check and a linger poll, and the
//! read budget of one poll.

use userlane_core::InboundLimit;

/// Most inbound messages one poll handles before the task yields to others.
pub(super) const READ_BUDGET: usize = 64;

/// A connection's life, in order: each state comes after the ones before
/// it, never back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Life {
    /// Reading, handling and writing.
    Open,
    /// The core has closed the connection: inbound data messages are read
    /// (to see the peer's close) but discarded, never handed on, and the
    /// queue and close frame must be flushed within the close grace.
    Closing,
    /// Our close frame is fed, the peer's close was read, or the
    /// connection is gone from the core: flush, then end.
    Finishing,
    /// Our close frame is flushed and the write side shut down: until the
    /// linger period passes (or the peer's end of stream), inbound bytes
    /// are read and dropped (see [`Conn::start_linger`](super::conn::Conn::start_linger)).
    Lingering,
}

/// The reader's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reader {
    /// Nothing to read until the socket wakes the task.
    Waiting,
    /// It may have more to read without waiting for the socket.
    Ready,
    /// It refused a frame or read the peer's close, and reads no more.
    Parked,
}

/// What one read did.
pub(super) enum ReadStep {
    /// A frame was handled; there may be more without waiting.
    Again,
    /// Nothing to read until the socket wakes the task.
    Wait,
    /// The server refused a frame and asked the core to close the connection
    /// (the writer sends the close frame); nothing more is read.
    Parked,
    /// The peer closed or the socket failed.
    Gone,
}

/// The core's verdict on one inbound data message.
pub(super) enum Budget {
    /// Within budget: hand it to the handler.
    Process,
    /// Over budget: dropped, and the peer told so.
    Refused(InboundLimit),
    /// The connection is closing: dropped.
    Closing,
    /// The connection is gone from the core.
    Gone,
}

/// Where a lingering connection stands.
pub(super) enum Linger {
    /// The peer's end of stream, an error, or the linger period passed.
    Done,
    /// Waiting for the socket or the timer (wakers registered).
    Wait,
    /// The read budget of this poll is spent; more may be ready at once.
    Yield,
}
