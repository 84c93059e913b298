//! This node's local users: counting their connections, subscribing on the
//! first and unsubscribing after the last, confirming subscriptions, and
//! skipping published messages a drain delivered already.

use std::sync::{Arc, PoisonError};

use super::cursor::StreamId;
use super::node::{Cluster, Confirmed, LocalUser, SubCmd};

impl Cluster {
    /// Counts a local connection of `user`; the first one subscribes this
    /// node to the user's channel and, once subscribed, the subscriber task
    /// delivers the user's offline stream to this node's connections of the
    /// user (the new one included) before anything published after the
    /// subscription. Every connection that opens while that subscription is
    /// pending waits for the same answer (at most `op_timeout`): returns
    /// whether subscription and drain are confirmed.
    pub async fn local_opened(&self, user: &str) -> bool {
        let (first, confirmed) = {
            let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = local.entry(user.to_owned()).or_insert_with(|| LocalUser {
                count: 0,
                confirmed: Arc::new(Confirmed::new()),
                cursor: None,
            });
            entry.count += 1;
            (entry.count == 1, entry.confirmed.clone())
        };
        if first
            && self
                .sub_tx
                .try_send(SubCmd::Subscribe(user.to_owned(), confirmed.clone()))
                .is_err()
        {
            let _ = confirmed.set(false).await;
        }
        smol::future::or(async { *confirmed.wait().await }, async {
            smol::Timer::after(self.config.op_timeout).await;
            false
        })
        .await
    }

    /// After a (re)subscription of `users` and its drain: their connections
    /// that open from now on find their subscription confirmed.
    pub(super) fn confirm(&self, users: &[String]) {
        let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        for user in users {
            let Some(user) = local.get_mut(user) else {
                continue;
            };
            if user.confirmed.get() != Some(&true) {
                let confirmed = Confirmed::new();
                let _ = confirmed.set_blocking(true);
                user.confirmed = Arc::new(confirmed);
            }
        }
    }

    /// Counts a local connection of `user` gone; the last one unsubscribes.
    pub fn local_closed(&self, user: &str) {
        let last = {
            let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
            match local.get_mut(user) {
                Some(u) if u.count > 1 => {
                    u.count -= 1;
                    false
                }
                Some(_) => {
                    local.remove(user);
                    true
                }
                None => false,
            }
        };
        if last {
            let _ = self.sub_tx.try_send(SubCmd::Unsubscribe(user.to_owned()));
        }
    }

    /// Whether the published message `id` of `user` is not yet delivered
    /// here (a drain after a resubscription may have delivered it); moves
    /// the user's cursor past it. Control messages (no id) always are.
    pub(super) fn first_delivery(&self, user: &str, id: Option<StreamId>) -> bool {
        let Some(id) = id else { return true };
        let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(cursor) = local.get_mut(user).and_then(|u| u.cursor.as_mut()) else {
            return true;
        };
        if cursor.delivered.is_some_and(|d| id <= d) {
            return false;
        }
        cursor.at = cursor.at.max(id);
        cursor.delivered = Some(id);
        true
    }

    /// Users this node holds (and is subscribed for).
    pub fn local_users(&self) -> Vec<String> {
        self.local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }
}
