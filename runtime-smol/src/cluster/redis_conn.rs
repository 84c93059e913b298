//! Redis calls: the kept connection made lazily, the timeout, one retry on
//! a new connection for calls that may run twice, and the outcome counted.

use std::sync::atomic::Ordering;
use std::time::Instant;

use redis::aio::MultiplexedConnection;

use super::node::Cluster;
use super::outcome::ClusterError;

impl Cluster {
    /// Runs one Redis operation with the timeout, reconnecting lazily. Not
    /// retried: for operations that must not run twice (a send).
    pub(super) async fn call<T, F, Fut>(&self, op: F) -> Result<T, ClusterError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let started = Instant::now();
        let result = self.attempt(op).await.map_err(|(e, _)| e);
        self.record(started, &result).await;
        result
    }

    /// [`call`](Self::call) for an operation that may run twice: if it failed
    /// on a connection Redis had dropped (the first call after a restart finds
    /// its kept connection dead), it runs once more on a new connection, so a
    /// Redis that is back answers the first call (an admission does not fall
    /// back to the local cap because of a stale connection).
    pub(super) async fn call_idempotent<T, F, Fut>(&self, op: F) -> Result<T, ClusterError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let started = Instant::now();
        let result = match self.attempt(&op).await {
            Err((_, true)) => {
                *self.conn.lock().await = None;
                self.attempt(&op).await.map_err(|(e, _)| e)
            }
            other => other.map_err(|(e, _)| e),
        };
        self.record(started, &result).await;
        result
    }

    /// One try of `op` within `op_timeout`; on failure, whether it failed on
    /// a kept connection that Redis dropped (worth one more try).
    async fn attempt<T, F, Fut>(&self, op: F) -> Result<T, (ClusterError, bool)>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let timeout = self.config.op_timeout;
        smol::future::or(
            async {
                let (conn, kept) = {
                    let mut guard = self.conn.lock().await;
                    match guard.as_ref() {
                        Some(c) => (c.clone(), true),
                        None => {
                            let c = self
                                .client
                                .get_multiplexed_async_connection()
                                .await
                                .map_err(|e| (ClusterError::Unavailable(e.to_string()), false))?;
                            *guard = Some(c.clone());
                            (c, false)
                        }
                    }
                };
                op(conn).await.map_err(|e| {
                    let dropped = kept && (e.is_connection_dropped() || e.is_io_error());
                    (ClusterError::Unavailable(e.to_string()), dropped)
                })
            },
            async {
                smol::Timer::after(timeout).await;
                Err((
                    ClusterError::Unavailable(format!("redis call timed out after {timeout:?}")),
                    false,
                ))
            },
        )
        .await
    }

    /// Counts a call's outcome: its round trip, or the outage (the kept
    /// connection is dropped, the next call makes a new one).
    async fn record<T>(&self, started: Instant, result: &Result<T, ClusterError>) {
        match result {
            Ok(_) => {
                self.rtt.observe(started.elapsed());
                self.healthy.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                if self.healthy.swap(false, Ordering::Relaxed) {
                    log::warn!("redis unreachable: {e}; serving local users only");
                }
                self.unavailable_errors.fetch_add(1, Ordering::Relaxed);
                *self.conn.lock().await = None;
            }
        }
    }
}
