//! Runtime limits, validated against the factory's compile-time capacities.

use core::fmt;

use crate::{InboundLimits, Rate};

/// What [`send_to_user`](crate::ManagerFactory::send_to_user) does when a
/// connection's outbound queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SlowConsumerPolicy {
    /// The whole send fails before anything is enqueued
    /// ([`Error::QueueFull`](crate::Error::QueueFull)).
    #[default]
    RejectSend,
    /// The full connection is closed with 1013 after its queued messages; the
    /// user's other connections get the message.
    CloseSlowConnection,
}

/// Runtime limits and timers of a [`ManagerFactory`](crate::ManagerFactory).
///
/// Every limit must be at least 1 (except the offline buffer and
/// `max_offline_managers`, where 0 turns them off) and no larger than the
/// matching compile-time capacity; an inbound [`Rate`] needs `per_second`
/// and `burst` of at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// Most managers (users) active at once. ≤ the `USERS` capacity.
    pub max_users: u32,
    /// Most open connections per user. Default 5.
    pub max_connections_per_user: u32,
    /// Most open connections in total. ≤ the `CONNS` capacity.
    pub max_connections: u32,
    /// Most messages waiting in one connection's outbound queue. Default 16.
    pub queue_depth: u32,
    /// Most messages held for a user with no open connection; 0 disables the
    /// buffer. Must not exceed `queue_depth`, so a replay always fits in the
    /// next connection's queue. Default 16.
    pub offline_buffer: u32,
    /// What to do when a connection's queue is full.
    pub slow_consumer: SlowConsumerPolicy,
    /// Close a connection with no inbound activity for this long (ms);
    /// `None` never closes idle connections. Default 60 s.
    pub idle_timeout_ms: Option<u64>,
    /// Reclaim a manager that has had no connection for this long (ms);
    /// `None` keeps empty managers until they are deactivated. Default 30 s.
    pub empty_manager_ttl_ms: Option<u64>,
    /// Mixed into the user-id hash. The core has no randomness: a server that
    /// accepts user ids from untrusted parties can pass a random seed here.
    pub hash_seed: u32,
    /// Stamped into every handle this factory issues; a handle with another
    /// tag is refused as unknown. Give every factory of a process (every
    /// shard) a distinct tag, so that a handle of one can never address a
    /// manager or connection of another; a random starting value also keeps
    /// out handles from other processes. Default 0.
    pub factory_tag: u32,
    /// Most active managers without an open connection that
    /// [`create_offline_manager`](crate::ManagerFactory::create_offline_manager)
    /// lets exist, so that messages for users who are not connected cannot
    /// take every manager slot from users who connect. ≤ `max_users`; 0
    /// refuses every offline creation. [`create_manager`](crate::ManagerFactory::create_manager)
    /// (the live path) is bounded by `max_users` only. Default: half of
    /// `max_users`.
    pub max_offline_managers: u32,
    /// Budget of each connection for what it sends
    /// ([`handle_inbound`](crate::ManagerFactory::handle_inbound)). Default
    /// 100 messages/s with bursts of 200, and 1 MiB/s with bursts of 2 MiB.
    pub inbound_per_connection: InboundLimits,
    /// Budget of each user, shared by all its connections. Default five
    /// times the per-connection budget: 500 messages/s (bursts of 1,000) and
    /// 5 MiB/s (bursts of 10 MiB).
    pub inbound_per_user: InboundLimits,
    /// Refused inbound messages (strikes) after which the core closes the
    /// connection with 1008 ([`CloseReason::InboundFlood`](crate::CloseReason::InboundFlood)).
    ///
    /// Every refused message adds a strike; one strike is forgiven for each
    /// second of the caller's clock that begins (each multiple of 1,000 ms
    /// that `now` crosses); accepted messages do not reset the count. A
    /// connection that overshoots its burst once by fewer than
    /// `inbound_strikes` messages and then keeps to its rate stays open; one
    /// that keeps sending faster than its rate gains strikes far faster than
    /// one a second and is closed. 1..=65,535; default 64 (at twice the
    /// default rate a connection is closed about 2.6 s after it starts:
    /// 2 s to spend its burst, then 100 refusals a second).
    pub inbound_strikes: u32,
}

/// The default per-connection inbound budget of [`Config::for_capacity`].
const DEFAULT_INBOUND_PER_CONNECTION: InboundLimits = InboundLimits {
    messages: Some(Rate::new(100, 200)),
    bytes: Some(Rate::new(1 << 20, 2 << 20)),
};

/// The default per-user inbound budget of [`Config::for_capacity`].
const DEFAULT_INBOUND_PER_USER: InboundLimits = InboundLimits {
    messages: Some(Rate::new(500, 1_000)),
    bytes: Some(Rate::new(5 << 20, 10 << 20)),
};

impl Config {
    /// Defaults sized for the capacities `users` and `connections`.
    pub const fn for_capacity(users: u32, connections: u32) -> Self {
        Config {
            max_users: users,
            max_connections_per_user: if connections < 5 { connections } else { 5 },
            max_connections: connections,
            queue_depth: 16,
            offline_buffer: 16,
            slow_consumer: SlowConsumerPolicy::RejectSend,
            idle_timeout_ms: Some(60_000),
            empty_manager_ttl_ms: Some(30_000),
            hash_seed: 0,
            factory_tag: 0,
            max_offline_managers: users / 2,
            inbound_per_connection: DEFAULT_INBOUND_PER_CONNECTION,
            inbound_per_user: DEFAULT_INBOUND_PER_USER,
            inbound_strikes: 64,
        }
    }

    /// Checks the limits against the capacities of a factory, for example
    /// `config.validate(GatewayFactory::CAPACITY)` (see
    /// [`ManagerFactory::CAPACITY`](crate::ManagerFactory::CAPACITY)).
    pub const fn validate(&self, capacity: Capacity) -> Result<(), ConfigError> {
        let Capacity {
            users,
            connections,
            slots,
            ..
        } = capacity;
        const fn check(
            field: ConfigField,
            value: u32,
            min: u32,
            max: usize,
        ) -> Result<(), ConfigError> {
            if value < min || value as usize > max {
                let max = if max > u32::MAX as usize {
                    u32::MAX
                } else {
                    max as u32
                };
                Err(ConfigError::OutOfRange {
                    field,
                    value,
                    min,
                    max,
                })
            } else {
                Ok(())
            }
        }
        let checks = [
            check(ConfigField::MaxUsers, self.max_users, 1, users),
            check(
                ConfigField::MaxConnections,
                self.max_connections,
                1,
                connections,
            ),
            check(
                ConfigField::MaxConnectionsPerUser,
                self.max_connections_per_user,
                1,
                self.max_connections as usize,
            ),
            check(ConfigField::QueueDepth, self.queue_depth, 1, slots),
            check(
                ConfigField::OfflineBuffer,
                self.offline_buffer,
                0,
                self.queue_depth as usize,
            ),
            check(
                ConfigField::MaxOfflineManagers,
                self.max_offline_managers,
                0,
                self.max_users as usize,
            ),
            check(
                ConfigField::InboundStrikes,
                self.inbound_strikes,
                1,
                u16::MAX as usize,
            ),
        ];
        let mut i = 0;
        while i < checks.len() {
            if let Err(e) = checks[i] {
                return Err(e);
            }
            i += 1;
        }
        self.check_timers_and_rates()
    }

    /// The checks of [`Config::validate`] that do not depend on capacities:
    /// no zero duration, no rate that refuses everything.
    const fn check_timers_and_rates(&self) -> Result<(), ConfigError> {
        if let Some(0) = self.idle_timeout_ms {
            return Err(ConfigError::ZeroDuration {
                field: ConfigField::IdleTimeout,
            });
        }
        if let Some(0) = self.empty_manager_ttl_ms {
            return Err(ConfigError::ZeroDuration {
                field: ConfigField::EmptyManagerTtl,
            });
        }
        let rates = [
            (
                ConfigField::InboundPerConnectionMessages,
                self.inbound_per_connection.messages,
            ),
            (
                ConfigField::InboundPerConnectionBytes,
                self.inbound_per_connection.bytes,
            ),
            (
                ConfigField::InboundPerUserMessages,
                self.inbound_per_user.messages,
            ),
            (
                ConfigField::InboundPerUserBytes,
                self.inbound_per_user.bytes,
            ),
        ];
        let mut i = 0;
        while i < rates.len() {
            if let (field, Some(rate)) = rates[i] {
                if rate.per_second == 0 || rate.burst == 0 {
                    return Err(ConfigError::ZeroRate { field });
                }
            }
            i += 1;
        }
        Ok(())
    }
}

/// The compile-time capacities of a [`ManagerFactory`](crate::ManagerFactory),
/// by name: what [`Config::validate`] checks the runtime limits against.
/// Every factory type has its own as
/// [`ManagerFactory::CAPACITY`](crate::ManagerFactory::CAPACITY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Capacity {
    /// Manager slots (`USERS`): the most `max_users` can be.
    pub users: usize,
    /// Connection slots (`CONNS`): the most `max_connections` can be.
    pub connections: usize,
    /// Queued-message slots (`SLOTS`): the most `queue_depth` can be.
    pub slots: usize,
    /// Pending lifecycle events (`EVENTS`).
    pub events: usize,
}

/// A field of [`Config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigField {
    /// [`Config::max_users`]
    MaxUsers,
    /// [`Config::max_connections_per_user`]
    MaxConnectionsPerUser,
    /// [`Config::max_connections`]
    MaxConnections,
    /// [`Config::queue_depth`]
    QueueDepth,
    /// [`Config::offline_buffer`]
    OfflineBuffer,
    /// [`Config::idle_timeout_ms`]
    IdleTimeout,
    /// [`Config::empty_manager_ttl_ms`]
    EmptyManagerTtl,
    /// [`Config::max_offline_managers`]
    MaxOfflineManagers,
    /// [`Config::inbound_per_connection`]`.messages`
    InboundPerConnectionMessages,
    /// [`Config::inbound_per_connection`]`.bytes`
    InboundPerConnectionBytes,
    /// [`Config::inbound_per_user`]`.messages`
    InboundPerUserMessages,
    /// [`Config::inbound_per_user`]`.bytes`
    InboundPerUserBytes,
    /// [`Config::inbound_strikes`]
    InboundStrikes,
}

impl ConfigField {
    /// The field's name.
    pub const fn name(self) -> &'static str {
        match self {
            ConfigField::MaxUsers => "max_users",
            ConfigField::MaxConnectionsPerUser => "max_connections_per_user",
            ConfigField::MaxConnections => "max_connections",
            ConfigField::QueueDepth => "queue_depth",
            ConfigField::OfflineBuffer => "offline_buffer",
            ConfigField::IdleTimeout => "idle_timeout_ms",
            ConfigField::EmptyManagerTtl => "empty_manager_ttl_ms",
            ConfigField::MaxOfflineManagers => "max_offline_managers",
            ConfigField::InboundPerConnectionMessages => "inbound_per_connection.messages",
            ConfigField::InboundPerConnectionBytes => "inbound_per_connection.bytes",
            ConfigField::InboundPerUserMessages => "inbound_per_user.messages",
            ConfigField::InboundPerUserBytes => "inbound_per_user.bytes",
            ConfigField::InboundStrikes => "inbound_strikes",
        }
    }
}

/// A [`Config`] that cannot be used with the factory's capacities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfigError {
    /// A limit is below its minimum or above its capacity.
    OutOfRange {
        /// The field.
        field: ConfigField,
        /// The value given.
        value: u32,
        /// Smallest allowed value.
        min: u32,
        /// Largest allowed value (a capacity or another limit).
        max: u32,
    },
    /// A duration of 0 would close or reclaim at once; use `None` to disable.
    ZeroDuration {
        /// The field.
        field: ConfigField,
    },
    /// A [`Rate`](crate::Rate) with `per_second == 0` or `burst == 0` would
    /// refuse everything for good; use `None` for no limit.
    ZeroRate {
        /// The field.
        field: ConfigField,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::OutOfRange {
                field,
                value,
                min,
                max,
            } => write!(
                f,
                "config {} = {value} is out of range {min}..={max}",
                field.name()
            ),
            ConfigError::ZeroDuration { field } => {
                write!(
                    f,
                    "config {} must be positive (use None to disable)",
                    field.name()
                )
            }
            ConfigError::ZeroRate { field } => write!(
                f,
                "config {} needs per_second and burst of at least 1 (use None for no limit)",
                field.name()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 8 users, 32 connections, 512 slots.
    const CAP_8_32: Capacity = Capacity {
        users: 8,
        connections: 32,
        slots: 512,
        events: 16,
    };

    #[test]
    fn defaults_fit_their_capacity() {
        assert_eq!(Config::for_capacity(8, 32).validate(CAP_8_32), Ok(()));
        assert_eq!(Config::for_capacity(8, 32).max_connections_per_user, 5);
    }

    fn out_of_range(field: ConfigField, value: u32, min: u32, max: u32) -> Result<(), ConfigError> {
        Err(ConfigError::OutOfRange {
            field,
            value,
            min,
            max,
        })
    }

    #[test]
    fn each_limit_is_checked() {
        use ConfigField::*;
        let base = Config::for_capacity(8, 32);
        let cases = [
            (
                Config {
                    max_users: 9,
                    ..base
                },
                out_of_range(MaxUsers, 9, 1, 8),
            ),
            (
                Config {
                    max_connections: 0,
                    ..base
                },
                out_of_range(MaxConnections, 0, 1, 32),
            ),
            (
                Config {
                    max_connections_per_user: 33,
                    ..base
                },
                out_of_range(MaxConnectionsPerUser, 33, 1, 32),
            ),
            (
                Config {
                    queue_depth: 513,
                    ..base
                },
                out_of_range(QueueDepth, 513, 1, 512),
            ),
            (
                Config {
                    offline_buffer: 17,
                    ..base
                },
                out_of_range(OfflineBuffer, 17, 0, 16),
            ),
            (
                Config {
                    idle_timeout_ms: Some(0),
                    ..base
                },
                Err(ConfigError::ZeroDuration { field: IdleTimeout }),
            ),
            (
                Config {
                    offline_buffer: 0,
                    idle_timeout_ms: None,
                    ..base
                },
                Ok(()),
            ),
            (
                Config {
                    max_offline_managers: 9,
                    ..base
                },
                out_of_range(MaxOfflineManagers, 9, 0, 8),
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(config.validate(CAP_8_32), expected, "{config:?}");
        }
        for strikes in [0, 65_536] {
            let config = Config {
                inbound_strikes: strikes,
                ..base
            };
            assert_eq!(
                config.validate(CAP_8_32),
                out_of_range(InboundStrikes, strikes, 1, 65_535)
            );
        }
    }

    #[test]
    fn a_rate_that_refuses_everything_is_an_error() {
        let base = Config::for_capacity(8, 32);
        let zero_rate = Some(Rate::new(0, 10));
        let zero_burst = Some(Rate::new(10, 0));
        let cases = [
            (
                Config {
                    inbound_per_connection: InboundLimits {
                        messages: zero_rate,
                        ..base.inbound_per_connection
                    },
                    ..base
                },
                ConfigField::InboundPerConnectionMessages,
            ),
            (
                Config {
                    inbound_per_connection: InboundLimits {
                        bytes: zero_burst,
                        ..base.inbound_per_connection
                    },
                    ..base
                },
                ConfigField::InboundPerConnectionBytes,
            ),
            (
                Config {
                    inbound_per_user: InboundLimits {
                        messages: zero_burst,
                        ..base.inbound_per_user
                    },
                    ..base
                },
                ConfigField::InboundPerUserMessages,
            ),
            (
                Config {
                    inbound_per_user: InboundLimits {
                        bytes: zero_rate,
                        ..base.inbound_per_user
                    },
                    ..base
                },
                ConfigField::InboundPerUserBytes,
            ),
        ];
        for (config, field) in cases {
            assert_eq!(
                config.validate(CAP_8_32),
                Err(ConfigError::ZeroRate { field })
            );
        }
        let unlimited = Config {
            inbound_per_connection: InboundLimits::UNLIMITED,
            inbound_per_user: InboundLimits::UNLIMITED,
            ..base
        };
        assert_eq!(unlimited.validate(CAP_8_32), Ok(()));
        assert_eq!(
            ConfigError::ZeroRate {
                field: ConfigField::InboundPerUserBytes
            }
            .to_string(),
            "config inbound_per_user.bytes needs per_second and burst of at least 1 (use None for no limit)"
        );
    }

    #[test]
    fn defaults_are_documented_values() {
        let c = Config::for_capacity(10, 40);
        assert_eq!(c.max_offline_managers, 5);
        assert_eq!(c.factory_tag, 0);
        assert_eq!(c.inbound_strikes, 64);
        assert_eq!(c.inbound_per_connection.messages, Some(Rate::new(100, 200)));
        assert_eq!(
            c.inbound_per_connection.bytes,
            Some(Rate::new(1_048_576, 2_097_152))
        );
        assert_eq!(c.inbound_per_user.messages, Some(Rate::new(500, 1_000)));
        assert_eq!(
            c.inbound_per_user.bytes,
            Some(Rate::new(5 * 1_048_576, 10 * 1_048_576))
        );
    }
}
