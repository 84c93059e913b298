//! `/metrics`: the server's counters in the Prometheus text format, encoded
//! by `prometheus-client` from a fresh snapshot at every scrape.

use std::sync::atomic::Ordering;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use userlane_smol::userlane_core::InboundLimit;
use userlane_smol::{inbound_limit_name, ServerStats};

use super::agent::AgentStats;
use super::health::MemoryFigures;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Budget {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Method {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Code {
    code: &'static str,
    reason: &'static str,
}

/// Redis round trips as a Prometheus histogram (seconds).
#[derive(Debug)]
struct RttHistogram {
    buckets: Vec<(f64, u64)>,
    sum: f64,
    count: u64,
}

impl prometheus_client::encoding::EncodeMetric for RttHistogram {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.sum,
            self.count,
            &self.buckets,
            None,
        )
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Histogram
    }
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let g = Gauge::<i64>::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    registry.register(name, help, g);
}

fn family<
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: &[(L, u64)],
) {
    let f = Family::<L, Counter<u64>>::default();
    for (labels, v) in values {
        f.get_or_create(labels).inc_by(*v);
    }
    registry.register(name, help, f);
}

/// Renders every metric. Resident memory and its baseline are left out
/// while unknown (not Linux; baseline not taken yet).
pub fn render(
    stats: &ServerStats,
    agent: &AgentStats,
    cluster_gauges: Option<(u64, u64)>,
    memory: &MemoryFigures,
) -> String {
    let c = &stats.core;
    let mut r = Registry::with_prefix("userlane");
    if let Some(rss) = memory.resident_bytes {
        gauge(
            &mut r,
            "resident_memory_bytes",
            "Resident memory of the node (RSS)",
            rss,
        );
    }
    if let Some(base) = memory.baseline_bytes {
        gauge(
            &mut r,
            "resident_memory_baseline_bytes",
            "The node's steady resident memory, taken once after start; /healthz is unhealthy above the spike percentage of it",
            base,
        );
    }
    gauge(
        &mut r,
        "connections",
        "Open WebSocket connections",
        c.connections_active,
    );
    gauge(
        &mut r,
        "connections_closing",
        "Connections closing (flushing their queue)",
        c.connections_closing,
    );
    gauge(
        &mut r,
        "users",
        "Users with an active manager",
        c.users_with_active_managers(),
    );
    gauge(
        &mut r,
        "managers_active",
        "Active isolated managers",
        c.managers_active,
    );
    gauge(
        &mut r,
        "queue_depth",
        "Messages waiting in connection queues",
        c.messages_queued_now,
    );
    gauge(
        &mut r,
        "offline_buffered",
        "Messages waiting in offline buffers",
        c.offline_now,
    );
    counter(
        &mut r,
        "managers_created",
        "Isolated managers created",
        c.managers_created,
    );
    counter(
        &mut r,
        "managers_cleaned_up",
        "Managers deactivated or reclaimed",
        c.managers_cleaned_up(),
    );
    counter(
        &mut r,
        "connections_opened",
        "Connections opened",
        c.total_connections_managed,
    );
    counter(
        &mut r,
        "fallback_connections",
        "Connections admitted without a token (development/testing)",
        stats.fallback_connections,
    );
    counter(
        &mut r,
        "security_violations",
        "Isolation violations refused",
        c.security_violations_detected,
    );
    family(
        &mut r,
        "rejections",
        "Refusals by reason",
        &[
            (Reason { reason: "http_400" }, stats.rejected_bad_request),
            (Reason { reason: "http_401" }, stats.rejected_unauthorized),
            (Reason { reason: "http_403" }, stats.rejected_forbidden),
            (Reason { reason: "http_404" }, stats.rejected_not_found),
            (
                Reason {
                    reason: "request_deadline",
                },
                stats.requests_timed_out,
            ),
            (Reason { reason: "http_429" }, stats.rejected_user_limit),
            (Reason { reason: "http_503" }, stats.rejected_server_full),
            (
                Reason {
                    reason: "queue_full",
                },
                c.rejected_queue_full,
            ),
            (
                Reason {
                    reason: "offline_buffer_full",
                },
                c.rejected_offline_full,
            ),
            (
                Reason {
                    reason: "queue_slots",
                },
                c.rejected_queue_slots,
            ),
            (
                Reason {
                    reason: "no_connections",
                },
                c.rejected_no_connections,
            ),
            (
                Reason {
                    reason: "inactive_manager",
                },
                c.rejected_inactive_manager,
            ),
            (
                Reason {
                    reason: "offline_managers",
                },
                c.rejected_offline_managers,
            ),
        ],
    );
    counter(
        &mut r,
        "inbound_accepted",
        "Inbound messages within the connection's and the user's budgets",
        c.inbound_accepted,
    );
    let budget = |limit| Budget {
        limit: inbound_limit_name(limit),
    };
    family(
        &mut r,
        "inbound_refused",
        "Inbound messages dropped unprocessed, by the budget they exceeded",
        &[
            (
                budget(InboundLimit::ConnectionMessages),
                c.inbound_refused_connection_messages,
            ),
            (
                budget(InboundLimit::ConnectionBytes),
                c.inbound_refused_connection_bytes,
            ),
            (
                budget(InboundLimit::UserMessages),
                c.inbound_refused_user_messages,
            ),
            (
                budget(InboundLimit::UserBytes),
                c.inbound_refused_user_bytes,
            ),
        ],
    );
    counter(
        &mut r,
        "inbound_discarded",
        "Inbound messages read from connections already closing, dropped unprocessed",
        stats.inbound_discarded,
    );
    family(
        &mut r,
        "closes",
        "Connections closed, by close code and reason",
        &[
            (
                Code {
                    code: "1000",
                    reason: "idle_timeout",
                },
                c.closed_idle_timeout,
            ),
            (
                Code {
                    code: "1000",
                    reason: "manager_deactivated",
                },
                c.closed_deactivated,
            ),
            (
                Code {
                    code: "1001",
                    reason: "shutdown",
                },
                c.closed_shutdown,
            ),
            (
                Code {
                    code: "1002",
                    reason: "protocol_error",
                },
                stats.closed_protocol_error,
            ),
            (
                Code {
                    code: "1007",
                    reason: "invalid_utf8",
                },
                stats.closed_invalid_utf8,
            ),
            (
                Code {
                    code: "1008",
                    reason: "inbound_flood",
                },
                c.closed_inbound_flood,
            ),
            (
                Code {
                    code: "1009",
                    reason: "message_too_big",
                },
                stats.closed_message_too_big,
            ),
            (
                Code {
                    code: "1011",
                    reason: "handler_panic",
                },
                stats.closed_handler_panic,
            ),
            (
                Code {
                    code: "1013",
                    reason: "slow_consumer",
                },
                c.closed_slow_consumer,
            ),
            (
                Code {
                    code: "app",
                    reason: "application",
                },
                c.closed_application,
            ),
            (
                Code {
                    code: "none",
                    reason: "peer_gone",
                },
                c.connections_lost,
            ),
            (
                Code {
                    code: "none",
                    reason: "forced",
                },
                stats.forced_closes,
            ),
        ],
    );
    counter(
        &mut r,
        "handler_panics",
        "Panics in application code: on_message and greeting (closed with 1011), refusal, on_disconnect, the HTTP service (answered with 500)",
        stats.handler_panics,
    );
    counter(
        &mut r,
        "messages_queued",
        "Messages queued for connections (one per connection)",
        c.messages_queued,
    );
    counter(
        &mut r,
        "messages_delivered",
        "Messages handed to the socket",
        c.messages_transmitted,
    );
    counter(&mut r, "messages_failed", "Sends refused", c.sends_refused);
    counter(
        &mut r,
        "messages_dropped",
        "Queued messages never transmitted (connection gone)",
        c.messages_dropped,
    );
    counter(
        &mut r,
        "agent_events_sent",
        "Agent events delivered or buffered",
        agent.events_sent.load(Ordering::Relaxed),
    );
    counter(
        &mut r,
        "agent_events_failed",
        "Agent events that reached no connection",
        agent.events_failed.load(Ordering::Relaxed),
    );
    counter(
        &mut r,
        "agent_busy",
        "User messages refused with AGENT_BUSY: the user or the node had as many agent runs going as allowed",
        agent.busy.load(Ordering::Relaxed),
    );
    let legacy = userlane_smol::compat::legacy_usage();
    let mut by_method: Vec<(Method, u64)> = Vec::new();
    for site in &legacy.sites {
        let method = Method {
            method: site.method.name(),
        };
        match by_method.iter_mut().find(|(m, _)| *m == method) {
            Some((_, n)) => *n += site.count,
            None => by_method.push((method, site.count)),
        }
    }
    if legacy.overflow_calls > 0 {
        by_method.push((
            Method {
                method: "untracked_site",
            },
            legacy.overflow_calls,
        ));
    }
    family(
        &mut r,
        "legacy_calls",
        "Legacy singleton API calls, by method",
        &by_method,
    );
    gauge(
        &mut r,
        "legacy_call_sites",
        "Distinct source locations still calling the legacy API",
        stats.legacy_call_sites,
    );
    if let Some(c) = &stats.cluster {
        gauge(
            &mut r,
            "cluster_healthy",
            "1 while Redis answers, 0 while the node serves local users only",
            c.healthy as u64,
        );
        if let Some((users, conns)) = cluster_gauges {
            gauge(
                &mut r,
                "cluster_users",
                "Users with a connection lease anywhere in the cluster",
                users,
            );
            gauge(
                &mut r,
                "cluster_connections",
                "Connection leases across the cluster",
                conns,
            );
        }
        counter(
            &mut r,
            "cluster_unavailable_errors",
            "Cross-node operations that failed: Redis unreachable",
            c.unavailable_errors,
        );
        counter(
            &mut r,
            "cluster_local_admissions",
            "Connections admitted by the local cap while Redis was unreachable",
            c.local_admissions,
        );
        counter(
            &mut r,
            "cluster_envelopes_received",
            "Messages and commands received from other nodes",
            c.envelopes_received,
        );
        counter(
            &mut r,
            "cluster_offline_delivered",
            "Messages taken from offline streams after a (re)subscription and delivered here",
            c.offline_delivered,
        );
        let bounds = userlane_smol::cluster::RTT_BUCKETS_US
            .iter()
            .map(|us| *us as f64 / 1e6)
            .chain([f64::INFINITY]);
        let buckets = bounds.zip(c.rtt_buckets.iter().copied()).collect();
        r.register_with_unit(
            "redis_rtt",
            "Round-trip time of Redis calls",
            prometheus_client::registry::Unit::Seconds,
            RttHistogram {
                buckets,
                sum: c.rtt_sum_us as f64 / 1e6,
                count: c.rtt_count,
            },
        );
    }
    let mut out = String::new();
    encode(&mut out, &r).expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_in_prometheus_text_format() {
        let mut stats = ServerStats::default();
        stats.core.connections_active = 3;
        stats.core.closed_slow_consumer = 2;
        stats.rejected_unauthorized = 7;
        stats.rejected_forbidden = 4;
        stats.requests_timed_out = 2;
        // One connection closed with 1011; two more panics in on_disconnect
        // and the HTTP service closed nothing.
        stats.handler_panics = 3;
        stats.closed_handler_panic = 1;
        let agent = AgentStats::default();
        agent.busy.store(4, Ordering::Relaxed);
        let memory = MemoryFigures {
            resident_bytes: Some(3 << 20),
            baseline_bytes: Some(1 << 20),
            limit_percent: 200,
        };
        let text = render(&stats, &agent, None, &memory);
        assert!(!text.contains("cluster_"), "{text}");
        assert!(text.contains("userlane_agent_busy_total 4\n"), "{text}");
        assert!(
            text.contains("userlane_resident_memory_bytes 3145728\n"),
            "{text}"
        );
        assert!(
            text.contains("userlane_resident_memory_baseline_bytes 1048576\n"),
            "{text}"
        );
        let unknown = MemoryFigures {
            resident_bytes: None,
            baseline_bytes: None,
            limit_percent: 200,
        };
        let without = render(&stats, &agent, None, &unknown);
        assert!(!without.contains("resident_memory"), "{without}");
        assert!(
            text.contains("# TYPE userlane_connections gauge\nuserlane_connections 3\n"),
            "{text}"
        );
        assert!(
            text.contains("userlane_closes_total{code=\"1013\",reason=\"slow_consumer\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("userlane_rejections_total{reason=\"http_401\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("userlane_rejections_total{reason=\"http_403\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("userlane_rejections_total{reason=\"request_deadline\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("userlane_closes_total{code=\"1011\",reason=\"handler_panic\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("userlane_handler_panics_total 3\n"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn a_cluster_nodes_figures_come_from_its_stats() {
        let mut rtt_buckets = [0; userlane_smol::cluster::RTT_BUCKETS_US.len() + 1];
        rtt_buckets[0] = 3;
        let stats = ServerStats {
            cluster: Some(userlane_smol::cluster::ClusterStats {
                healthy: true,
                local_users: 2,
                unavailable_errors: 4,
                envelopes_received: 5,
                local_admissions: 6,
                offline_delivered: 7,
                rtt_buckets,
                rtt_sum_us: 150,
                rtt_count: 3,
            }),
            ..ServerStats::default()
        };
        let memory = MemoryFigures {
            resident_bytes: None,
            baseline_bytes: None,
            limit_percent: 200,
        };
        let text = render(&stats, &AgentStats::default(), Some((8, 9)), &memory);
        for line in [
            "userlane_cluster_healthy 1\n",
            "userlane_cluster_users 8\n",
            "userlane_cluster_connections 9\n",
            "userlane_cluster_unavailable_errors_total 4\n",
            "userlane_cluster_envelopes_received_total 5\n",
            "userlane_cluster_local_admissions_total 6\n",
            "userlane_cluster_offline_delivered_total 7\n",
            "userlane_redis_rtt_seconds_count 3\n",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
    }
}
