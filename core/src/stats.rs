//! Counters of the whole factory and of one manager.

use crate::Instant;

/// A snapshot of the factory's counters. Totals only grow; gauges (`*_active`,
/// `*_now`, `connections_closing`) go up and down. The counters always add up;
/// [`Stats::is_consistent`] checks every identity listed on it.
///
/// The seed's factory metric names are kept where they map:
/// `managers_created`, `managers_active`, `total_connections_managed`,
/// `security_violations_detected` as counters, and
/// [`managers_cleaned_up`](Self::managers_cleaned_up),
/// [`users_with_active_managers`](Self::users_with_active_managers),
/// [`resource_limit_hits`](Self::resource_limit_hits) computed from them
/// (never stored, so they cannot drift).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// Managers ever created.
    pub managers_created: u64,
    /// Managers active now.
    pub managers_active: u64,
    /// Managers deactivated by a command.
    pub managers_deactivated: u64,
    /// Managers reclaimed after `empty_manager_ttl_ms` without connections.
    pub managers_reclaimed: u64,

    /// Connections ever opened.
    pub total_connections_managed: u64,
    /// Connections open now.
    pub connections_active: u64,
    /// Connections closed by the core whose slot the caller has not released yet.
    pub connections_closing: u64,
    /// Open connections removed by [`remove_connection`](crate::ManagerFactory::remove_connection).
    pub connections_removed: u64,
    /// Open connections whose socket went away ([`handle_closed`](crate::ManagerFactory::handle_closed)).
    pub connections_lost: u64,
    /// Connections closed for idleness.
    pub closed_idle_timeout: u64,
    /// Connections closed as slow consumers (1013).
    pub closed_slow_consumer: u64,
    /// Connections closed because their manager was deactivated.
    pub closed_deactivated: u64,
    /// Connections closed by the application.
    pub closed_application: u64,
    /// Connections closed for server shutdown.
    pub closed_shutdown: u64,
    /// Connections closed (1008) after [`Config::inbound_strikes`](crate::Config::inbound_strikes)
    /// refused inbound messages.
    pub closed_inbound_flood: u64,

    /// Isolation violations refused (the seed's name).
    pub security_violations_detected: u64,
    /// Operations on a deactivated or reclaimed manager refused.
    pub rejected_inactive_manager: u64,
    /// Operations with an unknown manager or connection handle refused.
    pub rejected_unknown_handle: u64,
    /// Operations on a closing connection refused.
    pub rejected_closing_connection: u64,
    /// Manager creations refused by [`Limit::Users`](crate::Limit::Users).
    pub rejected_user_limit: u64,
    /// Connections refused by [`Limit::ConnectionsPerUser`](crate::Limit::ConnectionsPerUser).
    pub rejected_connections_per_user: u64,
    /// Connections refused by [`Limit::Connections`](crate::Limit::Connections).
    pub rejected_total_connections: u64,
    /// Sends refused because a queue was full under `RejectSend`.
    pub rejected_queue_full: u64,
    /// Sends refused because the offline buffer was full.
    pub rejected_offline_full: u64,
    /// Operations refused because the shared queue-slot pool was empty.
    pub rejected_queue_slots: u64,
    /// Sends refused because the user had no connection and buffering is off.
    pub rejected_no_connections: u64,
    /// Commands refused because the event queue was full.
    pub rejected_events_pending: u64,
    /// Offline manager creations refused by [`Limit::OfflineManagers`](crate::Limit::OfflineManagers).
    pub rejected_offline_managers: u64,

    /// Inbound messages accepted by [`handle_inbound`](crate::ManagerFactory::handle_inbound).
    pub inbound_accepted: u64,
    /// Inbound messages refused by the connection's message budget.
    pub inbound_refused_connection_messages: u64,
    /// Inbound messages refused by the connection's byte budget.
    pub inbound_refused_connection_bytes: u64,
    /// Inbound messages refused by the user's message budget.
    pub inbound_refused_user_messages: u64,
    /// Inbound messages refused by the user's byte budget.
    pub inbound_refused_user_bytes: u64,

    /// `send_to_user` and `send_to_connection` calls that succeeded (queued or buffered).
    pub sends_accepted: u64,
    /// `send_to_user` and `send_to_connection` calls refused, for any reason.
    pub sends_refused: u64,
    /// Messages put in a connection queue (one per connection; replays included).
    pub messages_queued: u64,
    /// Messages handed to the transport by `poll_transmit`.
    pub messages_transmitted: u64,
    /// Queued messages discarded because their connection was released first.
    pub messages_dropped: u64,
    /// Messages in connection queues now.
    pub messages_queued_now: u64,
    /// Deliveries not made because the connection was closed as a slow consumer.
    pub messages_closed_slow: u64,
    /// Messages put in an offline buffer.
    pub offline_buffered: u64,
    /// Offline messages replayed into a new connection's queue.
    pub offline_replayed: u64,
    /// Offline messages discarded by deactivation or reclamation.
    pub offline_discarded: u64,
    /// Messages in offline buffers now.
    pub offline_now: u64,
}

impl Stats {
    /// Every counter at zero.
    pub const ZERO: Stats = Stats {
        managers_created: 0,
        managers_active: 0,
        managers_deactivated: 0,
        managers_reclaimed: 0,
        total_connections_managed: 0,
        connections_active: 0,
        connections_closing: 0,
        connections_removed: 0,
        connections_lost: 0,
        closed_idle_timeout: 0,
        closed_slow_consumer: 0,
        closed_deactivated: 0,
        closed_application: 0,
        closed_shutdown: 0,
        closed_inbound_flood: 0,
        security_violations_detected: 0,
        rejected_inactive_manager: 0,
        rejected_unknown_handle: 0,
        rejected_closing_connection: 0,
        rejected_user_limit: 0,
        rejected_connections_per_user: 0,
        rejected_total_connections: 0,
        rejected_queue_full: 0,
        rejected_offline_full: 0,
        rejected_queue_slots: 0,
        rejected_no_connections: 0,
        rejected_events_pending: 0,
        rejected_offline_managers: 0,
        inbound_accepted: 0,
        inbound_refused_connection_messages: 0,
        inbound_refused_connection_bytes: 0,
        inbound_refused_user_messages: 0,
        inbound_refused_user_bytes: 0,
        sends_accepted: 0,
        sends_refused: 0,
        messages_queued: 0,
        messages_transmitted: 0,
        messages_dropped: 0,
        messages_queued_now: 0,
        messages_closed_slow: 0,
        offline_buffered: 0,
        offline_replayed: 0,
        offline_discarded: 0,
        offline_now: 0,
    };

    /// True when every identity between the counters holds:
    ///
    /// - `managers_created = managers_active + managers_deactivated + managers_reclaimed`
    /// - `total_connections_managed = connections_active + removed + lost + Σ closed_*`
    /// - `messages_queued = messages_transmitted + messages_dropped + messages_queued_now`
    /// - `offline_buffered = offline_replayed + offline_discarded + offline_now`
    /// - `closed_inbound_flood ≤` [`inbound_refused`](Self::inbound_refused)
    ///   (every such close follows a refused message)
    pub fn is_consistent(&self) -> bool {
        self.managers_created
            == self.managers_active + self.managers_deactivated + self.managers_reclaimed
            && self.total_connections_managed
                == self.connections_active
                    + self.connections_removed
                    + self.connections_lost
                    + self.connections_closed()
            && self.messages_queued
                == self.messages_transmitted + self.messages_dropped + self.messages_queued_now
            && self.offline_buffered
                == self.offline_replayed + self.offline_discarded + self.offline_now
            && self.closed_inbound_flood <= self.inbound_refused()
    }

    /// Managers gone for good: `managers_deactivated + managers_reclaimed`.
    pub const fn managers_cleaned_up(&self) -> u64 {
        self.managers_deactivated + self.managers_reclaimed
    }

    /// Users with an active manager: one manager per user, so
    /// `managers_active`.
    pub const fn users_with_active_managers(&self) -> u64 {
        self.managers_active
    }

    /// Every limit refusal (user, per-user, total, queue full, offline full,
    /// queue slots, offline managers) together.
    pub const fn resource_limit_hits(&self) -> u64 {
        self.rejected_user_limit
            + self.rejected_connections_per_user
            + self.rejected_total_connections
            + self.rejected_queue_full
            + self.rejected_offline_full
            + self.rejected_queue_slots
            + self.rejected_offline_managers
    }

    /// Inbound messages refused, all budgets together.
    pub fn inbound_refused(&self) -> u64 {
        self.inbound_refused_connection_messages
            + self.inbound_refused_connection_bytes
            + self.inbound_refused_user_messages
            + self.inbound_refused_user_bytes
    }

    /// Connections closed by the core, all reasons together.
    pub fn connections_closed(&self) -> u64 {
        self.closed_idle_timeout
            + self.closed_slow_consumer
            + self.closed_deactivated
            + self.closed_application
            + self.closed_shutdown
            + self.closed_inbound_flood
    }
}

/// Counters of one manager (one user), from
/// [`manager_stats`](crate::ManagerFactory::manager_stats). Totals saturate
/// at `u32::MAX` rather than wrap or panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ManagerStats {
    /// When the manager was created.
    pub created_at: Instant,
    /// Open connections now.
    pub connections: u32,
    /// Connections ever opened through this manager.
    pub connections_opened: u32,
    /// `send_to_user` and `send_to_connection` calls accepted.
    pub sends_accepted: u32,
    /// `send_to_user` and `send_to_connection` calls refused.
    pub sends_refused: u32,
    /// Messages queued on this user's connections.
    pub messages_queued: u32,
    /// Deliveries skipped because a connection was closed as a slow consumer.
    pub messages_closed_slow: u32,
    /// Messages in the offline buffer now.
    pub offline_now: u32,
    /// Messages ever put in the offline buffer.
    pub offline_buffered: u32,
    /// Offline messages replayed into a connection.
    pub offline_replayed: u32,
    /// Isolation violations refused on this manager.
    pub security_violations: u32,
    /// Limit refusals on this manager.
    pub limit_hits: u32,
}

impl ManagerStats {
    /// Every counter at zero.
    pub const ZERO: ManagerStats = ManagerStats {
        created_at: Instant::ZERO,
        connections: 0,
        connections_opened: 0,
        sends_accepted: 0,
        sends_refused: 0,
        messages_queued: 0,
        messages_closed_slow: 0,
        offline_now: 0,
        offline_buffered: 0,
        offline_replayed: 0,
        security_violations: 0,
        limit_hits: 0,
    };
}

impl core::ops::AddAssign for Stats {
    /// Adds every counter and gauge of `other` (to total several shards).
    fn add_assign(&mut self, other: Stats) {
        self.managers_created += other.managers_created;
        self.managers_active += other.managers_active;
        self.managers_deactivated += other.managers_deactivated;
        self.managers_reclaimed += other.managers_reclaimed;
        self.total_connections_managed += other.total_connections_managed;
        self.connections_active += other.connections_active;
        self.connections_closing += other.connections_closing;
        self.connections_removed += other.connections_removed;
        self.connections_lost += other.connections_lost;
        self.closed_idle_timeout += other.closed_idle_timeout;
        self.closed_slow_consumer += other.closed_slow_consumer;
        self.closed_deactivated += other.closed_deactivated;
        self.closed_application += other.closed_application;
        self.closed_shutdown += other.closed_shutdown;
        self.closed_inbound_flood += other.closed_inbound_flood;
        self.security_violations_detected += other.security_violations_detected;
        self.rejected_inactive_manager += other.rejected_inactive_manager;
        self.rejected_unknown_handle += other.rejected_unknown_handle;
        self.rejected_closing_connection += other.rejected_closing_connection;
        self.rejected_user_limit += other.rejected_user_limit;
        self.rejected_connections_per_user += other.rejected_connections_per_user;
        self.rejected_total_connections += other.rejected_total_connections;
        self.rejected_queue_full += other.rejected_queue_full;
        self.rejected_offline_full += other.rejected_offline_full;
        self.rejected_queue_slots += other.rejected_queue_slots;
        self.rejected_no_connections += other.rejected_no_connections;
        self.rejected_events_pending += other.rejected_events_pending;
        self.rejected_offline_managers += other.rejected_offline_managers;
        self.inbound_accepted += other.inbound_accepted;
        self.inbound_refused_connection_messages += other.inbound_refused_connection_messages;
        self.inbound_refused_connection_bytes += other.inbound_refused_connection_bytes;
        self.inbound_refused_user_messages += other.inbound_refused_user_messages;
        self.inbound_refused_user_bytes += other.inbound_refused_user_bytes;
        self.sends_accepted += other.sends_accepted;
        self.sends_refused += other.sends_refused;
        self.messages_queued += other.messages_queued;
        self.messages_transmitted += other.messages_transmitted;
        self.messages_dropped += other.messages_dropped;
        self.messages_queued_now += other.messages_queued_now;
        self.messages_closed_slow += other.messages_closed_slow;
        self.offline_buffered += other.offline_buffered;
        self.offline_replayed += other.offline_replayed;
        self.offline_discarded += other.offline_discarded;
        self.offline_now += other.offline_now;
    }
}
