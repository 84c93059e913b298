//! A node's cluster counters: the Redis round-trip histogram and the
//! [`ClusterStats`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (µs) of the Redis round-trip histogram buckets.
pub const RTT_BUCKETS_US: [u64; 10] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000,
];

/// Redis round-trip times: a fixed-bucket histogram.
#[derive(Debug, Default)]
pub(crate) struct RttHistogram {
    buckets: [AtomicU64; RTT_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl RttHistogram {
    pub(super) fn observe(&self, d: Duration) {
        let us = d.as_micros() as u64;
        let i = RTT_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(RTT_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Per-bucket counts, the sum in microseconds and the count.
    pub(super) fn snapshot(&self) -> ([u64; RTT_BUCKETS_US.len() + 1], u64, u64) {
        (
            std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            self.sum_us.load(Ordering::Relaxed),
            self.count.load(Ordering::Relaxed),
        )
    }
}

/// A snapshot of a node's cluster counters, part of
/// [`ServerStats`](crate::ServerStats) when the node runs in a cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClusterStats {
    /// Whether Redis answered the last call.
    pub healthy: bool,
    /// Users this node holds (and is subscribed for).
    pub local_users: u64,
    /// Cross-node operations that failed because Redis was unreachable.
    pub unavailable_errors: u64,
    /// Envelopes received from other nodes.
    pub envelopes_received: u64,
    /// Admissions decided by the local cap because Redis was unreachable.
    pub local_admissions: u64,
    /// Messages this node read from users' streams right after
    /// (re)subscribing and delivered to its open connections: stored for
    /// nobody, or missed while it was not subscribed.
    pub offline_delivered: u64,
    /// Redis round trips per bucket of [`RTT_BUCKETS_US`] (not cumulative;
    /// the last counts those over the largest bound).
    pub rtt_buckets: [u64; RTT_BUCKETS_US.len() + 1],
    /// The round trips' total, in microseconds.
    pub rtt_sum_us: u64,
    /// Round trips measured.
    pub rtt_count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_histogram_buckets() {
        let h = RttHistogram::default();
        h.observe(Duration::from_micros(80));
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_secs(3));
        let (b, sum, n) = h.snapshot();
        assert_eq!((b[0], b[2], b[RTT_BUCKETS_US.len()], n), (1, 1, 1, 3));
        assert_eq!(sum, 80 + 300 + 3_000_000);
    }
}
