//! An open connection's timers: the ping period (with its check that the
//! core still has the connection open) and the close deadline.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream as _;

use super::conn::Conn;
use super::life::Life;

impl Conn {
    /// Polls the ping timer and the close deadline. Returns true once the
    /// close deadline has passed.
    pub(super) fn poll_timers(&mut self) -> bool {
        let mut cx = Context::from_waker(&self.timer_waker);
        if self.life < Life::Lingering {
            if let Some(grace) = &mut self.close_timer {
                if Pin::new(&mut **grace).poll(&mut cx).is_ready() {
                    return true;
                }
            }
        }
        // Until Pending, so the timer holds the waker for its next period.
        let mut ticked = false;
        while let Poll::Ready(Some(_)) = Pin::new(&mut self.ping).poll_next(&mut cx) {
            self.ping_due = self.life < Life::Finishing;
            ticked = true;
        }
        // The CLOSING signal comes through the shard's bounded lifecycle
        // queue, which drops its oldest events when a sweep closes more
        // connections than it holds; every ping period the connection also
        // asks the core itself, so its close grace starts at the latest then.
        if ticked && self.life == Life::Open {
            let slot = &self.handle.shared.shards.slots[self.info.shard];
            let conn = self.info.connection;
            if !slot.core.read(|f| f.is_open(conn)) {
                self.begin_closing();
            }
        }
        false
    }
}
