//! Runtime limits, validated against the factory's compile-time capacities.

use core::fmt;

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
/// Every limit must be at least 1 (except the offline buffer, where 0 turns it
/// off) and no larger than the matching compile-time capacity.
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
}

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
        }
    }

    /// Checks the limits against the capacities of a factory.
    pub const fn validate(
        &self,
        users: usize,
        connections: usize,
        slots: usize,
    ) -> Result<(), ConfigError> {
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
        ];
        let mut i = 0;
        while i < checks.len() {
            if let Err(e) = checks[i] {
                return Err(e);
            }
            i += 1;
        }
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
        Ok(())
    }
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_their_capacity() {
        assert_eq!(Config::for_capacity(8, 32).validate(8, 32, 512), Ok(()));
        assert_eq!(Config::for_capacity(8, 32).max_connections_per_user, 5);
    }

    #[test]
    fn each_limit_is_checked() {
        let base = Config::for_capacity(8, 32);
        let over = |c: Config| c.validate(8, 32, 512);
        assert_eq!(
            over(Config {
                max_users: 9,
                ..base
            }),
            Err(ConfigError::OutOfRange {
                field: ConfigField::MaxUsers,
                value: 9,
                min: 1,
                max: 8
            })
        );
        assert_eq!(
            over(Config {
                max_connections: 0,
                ..base
            }),
            Err(ConfigError::OutOfRange {
                field: ConfigField::MaxConnections,
                value: 0,
                min: 1,
                max: 32
            })
        );
        assert_eq!(
            over(Config {
                max_connections_per_user: 33,
                ..base
            }),
            Err(ConfigError::OutOfRange {
                field: ConfigField::MaxConnectionsPerUser,
                value: 33,
                min: 1,
                max: 32
            })
        );
        assert_eq!(
            over(Config {
                queue_depth: 513,
                ..base
            }),
            Err(ConfigError::OutOfRange {
                field: ConfigField::QueueDepth,
                value: 513,
                min: 1,
                max: 512
            })
        );
        assert_eq!(
            over(Config {
                offline_buffer: 17,
                ..base
            }),
            Err(ConfigError::OutOfRange {
                field: ConfigField::OfflineBuffer,
                value: 17,
                min: 0,
                max: 16
            })
        );
        assert_eq!(
            over(Config {
                idle_timeout_ms: Some(0),
                ..base
            }),
            Err(ConfigError::ZeroDuration {
                field: ConfigField::IdleTimeout
            })
        );
        assert_eq!(
            over(Config {
                offline_buffer: 0,
                idle_timeout_ms: None,
                ..base
            }),
            Ok(())
        );
    }
}
