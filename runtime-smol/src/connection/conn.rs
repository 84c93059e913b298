//! The open connection ([`Conn`]): its state and the future that drives
//! its reader, writer, timers and linger.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use smol::Timer;

use crate::handle::ServerHandle;
use crate::handler::App;
use crate::info::ConnectionInfo;
use crate::signals::{Signals, CLOSING, CORE, KILL, SOCKET, TIMER};
use crate::state::ServerShared;

use super::core_close::handler_panicked;
use super::handshake::Stream;
use super::life::{Life, Linger, ReadStep, Reader, READ_BUDGET};

/// One open connection: its reader, its writer, its ping timer and its close
/// deadline, driven by one hand-written future that resolves to whether the
/// socket had to be dropped without finishing (close grace or shutdown
/// deadline passed).
///
/// Each part is polled only when its own waker fired ([`Signals`]): the
/// socket's waker polls the reader (and the writer when it waits for the
/// socket), the core's waker (a message queued, the connection closed or
/// gone) polls the writer, the timers' waker polls the timers. The writer
/// takes one item at a time from the core, and only when tungstenite can
/// accept it at once, so nothing taken
/// out of the core ever waits in a local batch that a forced close would
/// lose: what is not taken stays in the core and is counted as undelivered
/// at release. Within a poll the writer runs before each read, so a reply
/// queued by `on_message` is written before the next read (as a plain echo
/// server does).
pub(super) struct Conn {
    pub(super) handle: ServerHandle,
    pub(super) app: Arc<App>,
    pub(super) info: Arc<ConnectionInfo>,
    pub(super) ws: WebSocketStream<Stream>,
    pub(super) signals: Arc<Signals>,
    /// Raises `SOCKET`: given to every tungstenite call.
    pub(super) socket_waker: Waker,
    /// Raises `CORE`: given to the shard.
    pub(super) core_waker: Waker,
    /// Raises `TIMER`: given to the ping timer, the close deadline and the linger timer.
    pub(super) timer_waker: Waker,
    pub(super) ping: Timer,
    /// Where the connection is in its life.
    pub(super) life: Life,
    /// Whether the reader has more to read, waits, or reads no more.
    pub(super) reader: Reader,
    /// From `Life::Closing` on, the close grace: the flush must end by then
    /// (or the socket is dropped); in `Life::Lingering`, the end of the
    /// linger period.
    pub(super) close_timer: Option<Box<Timer>>,
    /// The handler's greeting, written before anything from the core.
    pub(super) greeting: Option<Box<Message>>,
    /// A ping is due.
    pub(super) ping_due: bool,
    /// Frames fed to tungstenite since the last flush.
    pub(super) fed: usize,
    /// The core may have something to write.
    pub(super) take: bool,
    /// The writer waits for the socket (a feed or a flush was pending).
    pub(super) blocked: bool,
    /// Bytes of data messages discarded since `Life::Closing`; past
    /// [`DISCARD_CAP`](super::closing::DISCARD_CAP) the reader stops reading altogether.
    pub(super) discarded: usize,
    /// When the peer was last told that a message of its was refused.
    pub(super) last_refusal_notice: Option<userlane_core::Instant>,
    /// Our close frame was fed to the socket.
    pub(super) close_sent: bool,
    /// The peer's close frame was read.
    pub(super) peer_closed: bool,
}

impl Conn {
    pub(super) fn new(
        shared: &Arc<ServerShared>,
        app: &Arc<App>,
        info: &Arc<ConnectionInfo>,
        ws: WebSocketStream<Stream>,
        signals: Arc<Signals>,
    ) -> Self {
        let greeting = match catch_unwind(AssertUnwindSafe(|| app.handler.greeting(info))) {
            Ok(g) => g.map(Box::new),
            Err(_) => {
                // Like a panic in on_message: counted, and this connection closed with 1011.
                handler_panicked(shared, info, "greeting");
                None
            }
        };
        let cfg = &shared.config;
        Conn {
            handle: ServerHandle {
                shared: shared.clone(),
            },
            app: app.clone(),
            info: info.clone(),
            ws,
            socket_waker: signals.waker(SOCKET),
            core_waker: Waker::from(signals.clone()),
            timer_waker: signals.waker(TIMER),
            signals,
            ping: Timer::interval(cfg.ping_interval),
            life: Life::Open,
            reader: Reader::Waiting,
            close_timer: None,
            greeting,
            ping_due: false,
            fed: 0,
            take: true,
            blocked: false,
            discarded: 0,
            last_refusal_notice: None,
            close_sent: false,
            peer_closed: false,
        }
    }
}

impl Future for Conn {
    /// Whether the socket had to be dropped without finishing.
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = &mut *self;
        this.signals.begin_poll(cx.waker());
        let mut reads = 0;
        loop {
            let flags = this.signals.take();
            if flags & KILL != 0 {
                return Poll::Ready(true);
            }
            if flags & CLOSING != 0 {
                this.begin_closing();
            }
            if flags & CORE != 0 {
                this.take = true;
            }
            if flags & (TIMER | CLOSING) != 0 && this.poll_timers() {
                return Poll::Ready(true);
            }
            if this.life == Life::Lingering {
                match this.poll_linger() {
                    Linger::Done => return Poll::Ready(false),
                    Linger::Yield => {
                        this.signals.yield_with(SOCKET, cx.waker());
                        return Poll::Pending;
                    }
                    Linger::Wait => {
                        if this.signals.try_end_poll() {
                            return Poll::Pending;
                        }
                        continue;
                    }
                }
            }
            if this.writer_due(flags) && this.poll_writer().is_ready() {
                if this.should_linger() && this.start_linger() {
                    continue;
                }
                return Poll::Ready(false);
            }
            if this.reader == Reader::Ready
                || (this.reader == Reader::Waiting && flags & SOCKET != 0)
            {
                if reads == READ_BUDGET {
                    this.signals.yield_with(SOCKET, cx.waker());
                    return Poll::Pending;
                }
                reads += 1;
                match this.read_one() {
                    ReadStep::Again => this.reader = Reader::Ready,
                    ReadStep::Wait => this.reader = Reader::Waiting,
                    ReadStep::Parked => {
                        this.reader = Reader::Parked;
                        // The writer has work now (the close the reader asked
                        // for, or the reply to the peer's close).
                        continue;
                    }
                    ReadStep::Gone => return Poll::Ready(false),
                }
            }
            if this.reader != Reader::Ready && this.signals.try_end_poll() {
                return Poll::Pending;
            }
        }
    }
}
