//! Users' streams: a send (published and appended in one script), the
//! offline drains, and the read-then-acknowledge catch-up from this node's
//! cursors after a (re)subscription.

use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::Duration;

use super::cursor::{parse_id, Cursor, Drained, StreamId};
use super::envelope::Envelope;
use super::node::Cluster;
use super::outcome::{ClusterError, Remote};
use super::scripts::{ACK_SCRIPT, DRAIN_MANY_SCRIPT, SEND_SCRIPT};

/// Most users whose offline streams one `DRAIN_MANY` call takes.
pub const DRAIN_BATCH: usize = 128;

impl Cluster {
    /// Publishes `envelope` for `user` and, for a message, appends it to the
    /// user's stream (kept for `replay_window`, for nodes that resubscribe);
    /// stored there for the user's next connection when no node is
    /// subscribed and nothing was delivered locally (`store_offline`).
    pub async fn publish(
        &self,
        user: &str,
        envelope: &Envelope,
        store_offline: bool,
    ) -> Result<Remote, ClusterError> {
        let keys = [
            self.key("user", user),
            self.key("offline", user),
            self.key("offmeta", user),
        ];
        let mode = match envelope {
            Envelope::Deliver { .. } if store_offline => "s",
            Envelope::Deliver { .. } => "l",
            _ => "c",
        };
        let args = (
            self.config.offline_max,
            self.config.offline_ttl.as_millis() as u64,
            self.config.replay_window.as_millis() as u64,
        );
        let bytes = envelope.encode();
        let (n, stored): (i64, i64) = self
            .call(|mut c| async move {
                let [channel, stream, meta] = keys;
                SEND_SCRIPT
                    .key(channel)
                    .key(stream)
                    .key(meta)
                    .arg(bytes)
                    .arg(mode)
                    .arg(args.0)
                    .arg(args.1)
                    .arg(args.2)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        match (n, stored) {
            (_, -1) => Err(ClusterError::OfflineFull),
            (_, s) if s > 0 => Ok(Remote::Stored(s as u32)),
            (n, _) => Ok(Remote::Published(n as u32)),
        }
    }

    /// Takes the messages stored for `user` while no node was subscribed,
    /// oldest first (what a new connection would get).
    pub async fn drain_offline(&self, user: &str) -> Result<Vec<Envelope>, ClusterError> {
        let mut all = self.drain_offline_many(&[user.to_owned()]).await?;
        Ok(all.pop().unwrap_or_default())
    }

    /// [`drain_offline`](Self::drain_offline) for each of `users`, in atomic
    /// batches of [`DRAIN_BATCH`] users.
    pub async fn drain_offline_many(
        &self,
        users: &[String],
    ) -> Result<Vec<Vec<Envelope>>, ClusterError> {
        let mut all = Vec::with_capacity(users.len());
        for batch in users.chunks(DRAIN_BATCH) {
            let reqs: Vec<(String, Option<Cursor>)> =
                batch.iter().map(|u| (u.clone(), None)).collect();
            let (_, drained) = self.read_streams(&reqs).await?;
            let heads: Vec<_> = batch
                .iter()
                .cloned()
                .zip(drained.iter().map(|d| d.0))
                .collect();
            self.ack(&heads).await?;
            all.extend(
                drained
                    .into_iter()
                    .map(|(_, list)| list.into_iter().map(|(_, _, e)| e).collect()),
            );
        }
        Ok(all)
    }

    /// Tells Redis that what a drain read of each user's stream (up to the
    /// stream's last id then) was delivered: a new subscription no longer takes it. Run after the
    /// delivery, so a drain whose reply was lost loses nothing (the next one
    /// reads the same); an `ACK` that fails only lets a later new
    /// subscription on another node take the same stored messages again.
    async fn ack(&self, read: &[(String, Option<StreamId>)]) -> Result<(), ClusterError> {
        let mut keys = Vec::new();
        let mut heads = Vec::new();
        for (user, head) in read {
            if let Some((ms, seq)) = head {
                keys.extend([self.key("offline", user), self.key("offmeta", user)]);
                heads.push(format!("{ms}-{seq}"));
            }
        }
        if heads.is_empty() {
            return Ok(());
        }
        self.call_idempotent(|mut c| {
            let mut inv = ACK_SCRIPT.prepare_invoke();
            for k in &keys {
                inv.key(k);
            }
            for h in &heads {
                inv.arg(h);
            }
            async move { inv.invoke_async::<i64>(&mut c).await }
        })
        .await
        .map(|_| ())
    }

    /// One `DRAIN_MANY` call: reads the stream of each user after its cursor
    /// (`None`: what was stored for nobody). Removes nothing, so a call whose
    /// reply is lost is simply made again.
    async fn read_streams(
        &self,
        reqs: &[(String, Option<Cursor>)],
    ) -> Result<(String, Vec<Drained>), ClusterError> {
        let mut keys = vec![format!("{}:epoch", self.config.namespace)];
        let mut args = vec![uuid::Uuid::new_v4().to_string()];
        for (user, cursor) in reqs {
            keys.push(self.key("offline", user));
            keys.push(self.key("offmeta", user));
            match cursor {
                Some(c) => args.extend([c.epoch.clone(), format!("{}-{}", c.at.0, c.at.1)]),
                None => args.extend([String::new(), String::new()]),
            }
        }
        type Raw = (String, Vec<String>, Vec<Vec<Vec<u8>>>);
        let (epoch, heads, lists): Raw = self
            .call_idempotent(|mut c| {
                let mut inv = DRAIN_MANY_SCRIPT.prepare_invoke();
                for k in &keys {
                    inv.key(k);
                }
                for a in &args {
                    inv.arg(a);
                }
                async move { inv.invoke_async(&mut c).await }
            })
            .await?;
        let drained = heads
            .iter()
            .zip(lists)
            .map(|(head, list)| {
                let entries = list
                    .chunks_exact(3)
                    .filter_map(|e| {
                        Some((parse_id(&e[0])?, e[1] == b"1", Envelope::decode(&e[2])?))
                    })
                    .collect();
                (parse_id(head.as_bytes()), entries)
            })
            .collect();
        Ok((epoch, drained))
    }

    /// Reads the streams of `users`, which this node has just (re)subscribed
    /// to, from its cursors, hands what it missed to `deliver` in order, then
    /// acknowledges; one batch of [`DRAIN_BATCH`] users after the other. Runs
    /// on the subscriber task before it reads any further pub/sub message, so
    /// a drained message is delivered before any message published after the
    /// subscription. A batch Redis does not answer is retried with backoff
    /// (reading removes nothing), keeping the subscription: messages
    /// published to it meanwhile wait in the pub/sub connection. Should the
    /// subscription have died, the subscriber finds out right after and
    /// resubscribes (and drains again).
    pub(super) async fn drain_into(&self, users: &[String], deliver: &impl Fn(&str, Envelope)) {
        for batch in users.chunks(DRAIN_BATCH) {
            // A user whose last connection here closed since is left alone:
            // their stream waits for their next connection.
            let reqs: Vec<(String, Option<Cursor>)> = {
                let local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
                batch
                    .iter()
                    .filter_map(|u| Some((u.clone(), local.get(u.as_str())?.cursor.clone())))
                    .collect()
            };
            if reqs.is_empty() {
                continue;
            }
            let mut backoff = Duration::from_millis(100);
            let (epoch, drained) = loop {
                match self.read_streams(&reqs).await {
                    Ok(r) => break r,
                    Err(e) => {
                        log::warn!(
                            "streams of {} user(s) not read yet ({e}); retrying in {backoff:?}",
                            reqs.len()
                        );
                        smol::Timer::after(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            };
            // Acknowledged: what was delivered to users still held here. The
            // stream of a user whose last connection closed meanwhile waits
            // for their next connection.
            let mut acked = Vec::new();
            for ((user, cursor), read) in reqs.iter().zip(drained) {
                let head = read.0;
                let Some(envelopes) = self.advance(user, cursor.as_ref(), &epoch, read) else {
                    continue;
                };
                for env in envelopes {
                    self.offline_delivered.fetch_add(1, Ordering::Relaxed);
                    deliver(user, env);
                }
                acked.push((user.clone(), head));
            }
            if let Err(e) = self.ack(&acked).await {
                log::warn!("drained streams not acknowledged ({e}); a new connection elsewhere may get their stored messages again");
            }
        }
    }

    /// Moves `user`'s cursor past what a drain from `cursor` read, and
    /// returns the messages to deliver: after a new subscription (`None`),
    /// those stored for nobody; after a resubscription, every message after
    /// the cursor but this node's own (delivered locally when sent).
    /// `None` when the node no longer holds the user.
    fn advance(
        &self,
        user: &str,
        cursor: Option<&Cursor>,
        epoch: &str,
        (head, entries): Drained,
    ) -> Option<Vec<Envelope>> {
        let same_epoch = cursor.filter(|c| c.epoch == epoch);
        let at = head.or(same_epoch.map(|c| c.at)).unwrap_or((0, 0));
        let mut delivered = cursor.is_some().then_some(at);
        let mut out = Vec::with_capacity(entries.len());
        for (id, stored, env) in entries {
            if cursor.is_none() {
                delivered = delivered.max(Some(id));
            } else if !stored && env.origin() == self.node_id {
                continue;
            }
            out.push(env);
        }
        let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        local.get_mut(user)?.cursor = Some(Cursor {
            epoch: epoch.to_owned(),
            at,
            delivered,
        });
        Some(out)
    }
}
