//! The subscriber task: one pub/sub connection, (re)subscribed with backoff,
//! that drains each (re)subscribed user's stream before reading published
//! envelopes and hands those of other nodes on.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};

use super::cursor::split_published;
use super::envelope::Envelope;
use super::node::{Cluster, SubCmd};

impl Cluster {
    /// The subscriber task: keeps one pub/sub connection, (re)subscribes to
    /// every locally held user with backoff, and hands each envelope from
    /// another node to `deliver`.
    pub(crate) async fn run_subscriber(self: Arc<Self>, deliver: impl Fn(&str, Envelope)) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let Some((mut sink, mut stream, users)) = self.subscribe_held().await else {
                self.healthy.store(false, Ordering::Relaxed);
                smol::Timer::after(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            };
            // Subscribed to every held user: whatever a sender stored while
            // this node was not subscribed is in the streams now, and nothing
            // more is stored for these users while the subscription lasts.
            // Deliver it before reading any published message.
            self.drain_into(&users, &deliver).await;
            // A request of one of these users still queued is answered
            // again when it is read (subscribing twice is harmless).
            self.confirm(&users);
            backoff = Duration::from_millis(100);
            self.healthy.store(true, Ordering::Relaxed);
            log::info!(
                "subscribed to {} user channel(s) on redis",
                self.local_users().len()
            );
            if !self.serve_pubsub(&mut sink, &mut stream, &deliver).await {
                return;
            }
            log::warn!("redis pub/sub connection lost; reconnecting");
            self.healthy.store(false, Ordering::Relaxed);
        }
    }

    /// Opens a pub/sub connection and subscribes it to every locally held
    /// user; returns it and those users, or `None` when Redis did not take
    /// it (pending subscribe requests are then answered "not confirmed").
    async fn subscribe_held(&self) -> Option<(PubSubSink, PubSubStream, Vec<String>)> {
        let pubsub = smol::future::or(async { self.client.get_async_pubsub().await.ok() }, async {
            smol::Timer::after(self.config.op_timeout).await;
            None
        })
        .await;
        let Some(pubsub) = pubsub else {
            while let Ok(cmd) = self.sub_rx.try_recv() {
                if let SubCmd::Subscribe(_, ack) = cmd {
                    let _ = ack.set(false).await;
                }
            }
            return None;
        };
        let (mut sink, stream) = pubsub.split();
        let prefix = self.channel_prefix();
        let users = self.local_users();
        for user in &users {
            if sink.subscribe(format!("{prefix}{user}")).await.is_err() {
                return None;
            }
        }
        Some((sink, stream, users))
    }

    /// Serves one subscribed pub/sub connection: hands every envelope of
    /// another node to `deliver`, and (un)subscribes users as their first
    /// connection opens or their last one closes. Returns false when the
    /// node is gone (no more requests can come), true when the connection
    /// was lost and must be made anew.
    async fn serve_pubsub(
        &self,
        sink: &mut PubSubSink,
        stream: &mut PubSubStream,
        deliver: &impl Fn(&str, Envelope),
    ) -> bool {
        enum Step {
            Msg(Option<redis::Msg>),
            Cmd(Option<SubCmd>),
        }
        let prefix = self.channel_prefix();
        loop {
            let step = smol::future::or(async { Step::Msg(stream.next().await) }, async {
                Step::Cmd(self.sub_rx.recv().await.ok())
            })
            .await;
            match step {
                Step::Msg(Some(msg)) => self.receive(&prefix, &msg, deliver),
                Step::Msg(None) => return true,
                Step::Cmd(Some(SubCmd::Subscribe(user, ack))) => {
                    let r = sink.subscribe(format!("{prefix}{user}")).await.is_ok();
                    if r {
                        self.drain_into(std::slice::from_ref(&user), deliver).await;
                    }
                    let _ = ack.set(r).await;
                    if !r {
                        return true;
                    }
                }
                Step::Cmd(Some(SubCmd::Unsubscribe(user))) => {
                    if sink.unsubscribe(format!("{prefix}{user}")).await.is_err() {
                        return true;
                    }
                }
                Step::Cmd(None) => return false,
            }
        }
    }

    /// One published envelope: handed to `deliver` unless this node sent it
    /// or a drain delivered it already.
    fn receive(&self, prefix: &str, msg: &redis::Msg, deliver: &impl Fn(&str, Envelope)) {
        let Some(user) = msg.get_channel_name().strip_prefix(prefix) else {
            return;
        };
        let (id, envelope) = split_published(msg.get_payload_bytes());
        if !self.first_delivery(user, id) {
            return;
        }
        let Some(env) = Envelope::decode(envelope) else {
            log::warn!(
                "dropping an envelope of unknown version on {}",
                msg.get_channel_name()
            );
            return;
        };
        if env.origin() != self.node_id {
            self.envelopes_received.fetch_add(1, Ordering::Relaxed);
            deliver(user, env);
        }
    }
}
