//! `Config` defaults and validation through `ManagerFactory::new`, the
//! user-id index with a seed, and the text of every error.

mod common;

use common::*;
use userlane_core::{
    Config, ConfigError, ConfigField, ContextError, ContextField, Error, IdError, Limit,
    ManagerFactory, SlowConsumerPolicy, UserContext, Violation,
};

fn refused(config: Config) -> ConfigError {
    Lanes::new(config).expect_err("config must be refused")
}

fn out_of_range(field: ConfigField, value: u32, min: u32, max: u32) -> ConfigError {
    ConfigError::OutOfRange {
        field,
        value,
        min,
        max,
    }
}

#[test]
fn for_capacity_gives_the_documented_defaults() {
    assert_eq!(
        Config::for_capacity(8, 32),
        Config {
            max_users: 8,
            max_connections_per_user: 5,
            max_connections: 32,
            queue_depth: 16,
            offline_buffer: 16,
            slow_consumer: SlowConsumerPolicy::RejectSend,
            idle_timeout_ms: Some(60_000),
            empty_manager_ttl_ms: Some(30_000),
            hash_seed: 0,
            factory_tag: 0,
            max_offline_managers: 4,
            inbound_per_connection: userlane_core::InboundLimits {
                messages: Some(userlane_core::Rate::new(100, 200)),
                bytes: Some(userlane_core::Rate::new(1 << 20, 2 << 20)),
            },
            inbound_per_user: userlane_core::InboundLimits {
                messages: Some(userlane_core::Rate::new(500, 1_000)),
                bytes: Some(userlane_core::Rate::new(5 << 20, 10 << 20)),
            },
            inbound_strikes: 64,
        }
    );
    // Fewer connections than the default per-user limit.
    assert_eq!(Config::for_capacity(4, 3).max_connections_per_user, 3);
    assert_eq!(
        SlowConsumerPolicy::default(),
        SlowConsumerPolicy::RejectSend
    );

    let f: ManagerFactory<u32, 8, 32, 16> =
        ManagerFactory::new(Config::for_capacity(8, 32)).unwrap();
    assert_eq!(f.config(), &Config::for_capacity(8, 32));
    assert_eq!(f.free_queue_slots(), 16);
    assert_eq!(f.now(), t(0));
}

/// Configs over (or under) a count limit of `Lanes` (4 users, 8 conns).
fn count_cases(base: Config) -> [(Config, ConfigError); 6] {
    [
        (
            Config {
                max_users: 5,
                ..base
            },
            out_of_range(ConfigField::MaxUsers, 5, 1, 4),
        ),
        (
            Config {
                max_users: 0,
                ..base
            },
            out_of_range(ConfigField::MaxUsers, 0, 1, 4),
        ),
        (
            Config {
                max_connections: 9,
                ..base
            },
            out_of_range(ConfigField::MaxConnections, 9, 1, 8),
        ),
        (
            Config {
                max_connections: 0,
                ..base
            },
            out_of_range(ConfigField::MaxConnections, 0, 1, 8),
        ),
        (
            Config {
                max_connections_per_user: 0,
                ..base
            },
            out_of_range(ConfigField::MaxConnectionsPerUser, 0, 1, 8),
        ),
        (
            Config {
                max_connections: 2,
                max_connections_per_user: 3,
                ..base
            },
            out_of_range(ConfigField::MaxConnectionsPerUser, 3, 1, 2),
        ),
    ]
}

/// Configs over (or under) a queue limit of `Lanes` (16 slots), or with a
/// zero duration.
fn queue_and_timer_cases(base: Config) -> [(Config, ConfigError); 5] {
    [
        (
            Config {
                queue_depth: 17,
                ..base
            },
            out_of_range(ConfigField::QueueDepth, 17, 1, 16),
        ),
        (
            Config {
                queue_depth: 0,
                offline_buffer: 0,
                ..base
            },
            out_of_range(ConfigField::QueueDepth, 0, 1, 16),
        ),
        (
            Config {
                offline_buffer: 5,
                ..base
            },
            out_of_range(ConfigField::OfflineBuffer, 5, 0, 4),
        ),
        (
            Config {
                idle_timeout_ms: Some(0),
                ..base
            },
            ConfigError::ZeroDuration {
                field: ConfigField::IdleTimeout,
            },
        ),
        (
            Config {
                empty_manager_ttl_ms: Some(0),
                ..base
            },
            ConfigError::ZeroDuration {
                field: ConfigField::EmptyManagerTtl,
            },
        ),
    ]
}

#[test]
fn every_limit_is_checked_against_its_capacity() {
    let base = small_config(); // fits Lanes: 4 users, 8 conns, 16 slots
    assert!(Lanes::new(base).is_ok());
    let cases = count_cases(base)
        .into_iter()
        .chain(queue_and_timer_cases(base));
    for (config, error) in cases {
        assert_eq!(refused(config), error, "{config:?}");
        assert_eq!(config.validate(Lanes::CAPACITY), Err(error));
    }
}

#[test]
fn the_edges_of_every_range_are_accepted() {
    let base = small_config();
    for config in [
        Config {
            max_users: 1,
            max_connections: 1,
            max_connections_per_user: 1,
            queue_depth: 1,
            offline_buffer: 1,
            max_offline_managers: 0,
            inbound_per_connection: userlane_core::InboundLimits {
                messages: Some(userlane_core::Rate::new(1, 1)),
                bytes: Some(userlane_core::Rate::new(1, 1)),
            },
            inbound_strikes: 1,
            ..base
        },
        Config {
            max_users: 4,
            max_connections: 8,
            max_connections_per_user: 8,
            queue_depth: 16,
            offline_buffer: 16,
            ..base
        },
        Config {
            offline_buffer: 0,
            idle_timeout_ms: None,
            empty_manager_ttl_ms: None,
            ..base
        },
        Config {
            idle_timeout_ms: Some(1),
            empty_manager_ttl_ms: Some(1),
            slow_consumer: SlowConsumerPolicy::CloseSlowConnection,
            hash_seed: u32::MAX,
            factory_tag: u32::MAX,
            inbound_per_user: userlane_core::InboundLimits {
                messages: Some(userlane_core::Rate::new(u32::MAX, u32::MAX)),
                bytes: Some(userlane_core::Rate::new(u32::MAX, u32::MAX)),
            },
            inbound_strikes: 65_535,
            ..base
        },
    ] {
        assert_eq!(Lanes::new(config).map(|f| *f.config()), Ok(config));
    }
}

#[test]
fn config_errors_name_the_field() {
    assert_eq!(
        refused(Config {
            max_users: 5,
            ..small_config()
        })
        .to_string(),
        "config max_users = 5 is out of range 1..=4"
    );
    assert_eq!(
        refused(Config {
            idle_timeout_ms: Some(0),
            ..small_config()
        })
        .to_string(),
        "config idle_timeout_ms must be positive (use None to disable)"
    );
    assert_eq!(
        refused(Config {
            empty_manager_ttl_ms: Some(0),
            ..small_config()
        })
        .to_string(),
        "config empty_manager_ttl_ms must be positive (use None to disable)"
    );
    let names: Vec<_> = [
        ConfigField::MaxUsers,
        ConfigField::MaxConnectionsPerUser,
        ConfigField::MaxConnections,
        ConfigField::QueueDepth,
        ConfigField::OfflineBuffer,
        ConfigField::IdleTimeout,
        ConfigField::EmptyManagerTtl,
    ]
    .iter()
    .map(|f| f.name())
    .collect();
    assert_eq!(
        names,
        [
            "max_users",
            "max_connections_per_user",
            "max_connections",
            "queue_depth",
            "offline_buffer",
            "idle_timeout_ms",
            "empty_manager_ttl_ms"
        ]
    );
}

#[test]
fn users_sharing_hash_buckets_are_found_after_any_removal() {
    // 4 users in 4 buckets: ids collide; every seed must give the same answers.
    for seed in [0, 1, 0xdead_beef, u32::MAX] {
        let mut f = lanes_with(Config {
            hash_seed: seed,
            empty_manager_ttl_ms: None,
            ..small_config()
        });
        let ids = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let mut active: Vec<(&str, _)> = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            if active.len() == 4 {
                // Deactivate a different position of the chain every time.
                let (gone, h) = active.remove(i % 4);
                f.deactivate(h, t(0)).unwrap();
                assert_eq!(f.manager_for_user(gone), None);
            }
            let h = f.create_manager(ctx(id), t(0)).unwrap();
            events(&mut f);
            active.push((id, h));
            for (id, h) in &active {
                assert_eq!(f.manager_for_user(id), Some(*h), "seed {seed} id {id}");
                assert_eq!(f.create_manager(ctx(id), t(0)), Ok(*h));
                assert_eq!(f.context(*h).unwrap().user_id(), *id);
            }
        }
        assert_eq!(f.stats().managers_created, 8);
        assert!(f.stats().is_consistent());
    }
}

#[test]
fn every_error_has_its_message() {
    let mut f = lanes();
    let alice = ctx("alice");
    let a = f.create_manager(alice.clone(), t(0)).unwrap();
    let c = f.add_connection(a, &alice, t(0)).unwrap();
    let context_error = UserContext::new("null", "t", "r", "q").unwrap_err();
    assert_eq!(
        context_error,
        ContextError {
            field: ContextField::UserId,
            reason: IdError::Placeholder
        }
    );
    let cases = [
        (
            Error::from(context_error),
            "invalid user context: user_id is a placeholder value (none/null/undefined/registry)",
        ),
        (Error::ManagerInactive(a), "manager is no longer active"),
        (Error::UnknownManager(a), "unknown manager handle"),
        (Error::UnknownConnection(c), "unknown connection handle"),
        (Error::ConnectionClosing(c), "connection is closing"),
        (
            Error::IsolationViolation {
                manager: a,
                violation: Violation::ForeignUser,
            },
            "isolation violation: connection belongs to another user",
        ),
        (
            Error::IsolationViolation {
                manager: a,
                violation: Violation::ForeignConnection { owner: a },
            },
            "isolation violation: connection is owned by another user's manager",
        ),
        (
            Error::LimitReached(Limit::Users),
            "limit reached: maximum number of active users reached",
        ),
        (
            Error::LimitReached(Limit::ConnectionsPerUser),
            "limit reached: user reached the maximum number of connections",
        ),
        (
            Error::LimitReached(Limit::Connections),
            "limit reached: maximum number of connections reached",
        ),
        (
            Error::LimitReached(Limit::OfflineBuffer),
            "limit reached: offline buffer of the user is full",
        ),
        (
            Error::LimitReached(Limit::QueueSlots),
            "limit reached: no free queued-message slot",
        ),
        (
            Error::QueueFull(c),
            "outbound queue of a connection is full; nothing was sent",
        ),
        (
            Error::NoConnections(a),
            "user has no open connection and offline buffering is disabled",
        ),
        (
            Error::EventsPending,
            "event queue is full; drain poll_event first",
        ),
    ];
    for (error, text) in cases {
        assert_eq!(error.to_string(), text);
    }
}
