//! Helpers for the scenario tests: contexts, and a runtime stand-in that
//! follows the drain rule and records what each connection's socket received.

use std::collections::HashMap;

use userlane_core::{
    CloseFrame, ConnectionHandle, Event, Instant, ManagerFactory, SlotIndex, Transmit, UserContext,
};

/// A valid context for `user` (thread, run and request derived from it).
pub fn ctx(user: &str) -> UserContext {
    UserContext::new(
        user,
        &format!("thread-{user}"),
        &format!("run-{user}"),
        &format!("req-{user}"),
    )
    .expect("test contexts are valid")
}

/// The instant `ms` milliseconds after the origin.
pub fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// What the sockets received, as a runtime following the drain rule sees it.
#[derive(Debug)]
pub struct Wire<P> {
    /// Messages written on each connection, in order.
    pub messages: HashMap<ConnectionHandle, Vec<P>>,
    /// Close frames written on each connection (at most one is allowed).
    pub closes: HashMap<ConnectionHandle, Vec<CloseFrame>>,
    /// Every event polled, in order.
    pub events: Vec<Event>,
}

impl<P> Default for Wire<P> {
    fn default() -> Self {
        Wire {
            messages: HashMap::new(),
            closes: HashMap::new(),
            events: Vec::new(),
        }
    }
}

impl<P: Clone> Wire<P> {
    /// An empty wire.
    pub fn new() -> Self {
        Self::default()
    }

    /// Follows the drain rule once: every event, then every woken connection's
    /// transmits. With `release_at`, a connection whose close was written is
    /// reported gone with `handle_closed` at that instant, as a runtime does
    /// after closing the socket. Panics if anything follows a close.
    pub fn drain<
        const USERS: usize,
        const CONNS: usize,
        const SLOTS: usize,
        const EVENTS: usize,
        I: SlotIndex,
    >(
        &mut self,
        f: &mut ManagerFactory<P, USERS, CONNS, SLOTS, EVENTS, I>,
        release_at: Option<Instant>,
    ) {
        let mut woken = Vec::new();
        while let Some(e) = f.poll_event() {
            if let Event::Transmit(c) | Event::ConnectionClosed { connection: c, .. } = e {
                if !woken.contains(&c) {
                    woken.push(c);
                }
            }
            self.events.push(e);
        }
        for c in woken {
            let mut closed = false;
            while let Ok(Some(t)) = f.poll_transmit(c) {
                assert!(!closed, "{c:?} transmitted after its close");
                match t {
                    Transmit::Message(p) => self.messages.entry(c).or_default().push(p),
                    Transmit::Close(frame) => {
                        self.closes.entry(c).or_default().push(frame);
                        closed = true;
                    }
                }
            }
            if let (true, Some(now)) = (closed, release_at) {
                f.handle_closed(c, now)
                    .expect("a connection that wrote its close is still held");
            }
        }
    }

    /// The messages written on `c`, in order (empty if none).
    pub fn received(&self, c: ConnectionHandle) -> &[P] {
        self.messages.get(&c).map_or(&[], Vec::as_slice)
    }

    /// The close frames written on `c`.
    pub fn closes_of(&self, c: ConnectionHandle) -> &[CloseFrame] {
        self.closes.get(&c).map_or(&[], Vec::as_slice)
    }

    /// Messages written on all connections together.
    pub fn total_messages(&self) -> usize {
        self.messages.values().map(Vec::len).sum()
    }
}
