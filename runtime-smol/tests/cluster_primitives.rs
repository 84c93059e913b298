//! The Redis primitives of the cluster layer against a real redis-server:
//! the atomic per-user cap, publish-or-store, offline drain, lease expiry.

#[path = "support/redis.rs"]
mod redis_support;

use std::sync::Arc;
use std::time::Duration;

use redis_support::RedisServer;
use userlane_smol::cluster::{Cluster, ClusterConfig, ClusterError, Envelope, Remote};

fn cluster(url: &str, ns: &str, lease: Duration) -> Arc<Cluster> {
    let mut c = ClusterConfig::new(url);
    c.namespace = ns.into();
    c.lease_ttl = lease;
    c.offline_max = 3;
    Cluster::new(c).unwrap()
}

/// A node whose Redis calls time out after 300 ms.
fn impatient(url: &str, ns: &str) -> Arc<Cluster> {
    let mut config = ClusterConfig::new(url);
    config.namespace = ns.into();
    config.op_timeout = Duration::from_millis(300);
    Cluster::new(config).unwrap()
}

/// A text message from node `origin`.
fn text_from(origin: u8, s: &str) -> Envelope {
    Envelope::Deliver {
        origin: [origin; 16],
        text: true,
        payload: s.as_bytes().to_vec(),
    }
}

#[test]
fn twenty_racing_admissions_on_three_nodes_admit_exactly_five() {
    let Some(redis) =
        RedisServer::start("twenty_racing_admissions_on_three_nodes_admit_exactly_five")
    else {
        return;
    };
    let nodes: Vec<_> = (0..3)
        .map(|_| cluster(&redis.url(), "cap", Duration::from_secs(30)))
        .collect();
    let threads: Vec<_> = (0..20)
        .map(|i| {
            let node = nodes[i % 3].clone();
            std::thread::spawn(move || {
                smol::block_on(node.admit("alice", &format!("conn-{i}"), 5)).unwrap()
            })
        })
        .collect();
    let admitted = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|ok| *ok)
        .count();
    assert_eq!(admitted, 5);
    smol::block_on(async {
        let (users, conns) = nodes[0].cluster_gauges().await.unwrap();
        assert_eq!((users, conns), (1, 5));
        // A release frees a slot for the next connect.
        nodes[0].release_lease("alice", "conn-0").await;
        nodes[1].release_lease("alice", "conn-1").await;
        nodes[2].release_lease("alice", "conn-2").await;
        let after = nodes[0].cluster_gauges().await.unwrap().1;
        assert!((2..=5).contains(&after));
        let free = 5 - after as usize;
        let mut ok = 0;
        for i in 100..110 {
            if nodes[1]
                .admit("alice", &format!("conn-{i}"), 5)
                .await
                .unwrap()
            {
                ok += 1;
            }
        }
        assert_eq!(ok, free);
    });
}

#[test]
fn leases_of_a_dead_node_expire() {
    let Some(redis) = RedisServer::start("leases_of_a_dead_node_expire") else {
        return;
    };
    let dead = cluster(&redis.url(), "ttl", Duration::from_millis(300));
    let live = cluster(&redis.url(), "ttl", Duration::from_millis(300));
    smol::block_on(async {
        for i in 0..2 {
            assert!(dead.admit("bob", &format!("c{i}"), 2).await.unwrap());
        }
        assert!(!live.admit("bob", "x", 2).await.unwrap());
        // The dead node never refreshes; the live one does.
        smol::Timer::after(Duration::from_millis(400)).await;
        assert!(live.admit("bob", "x", 2).await.unwrap());
        live.refresh_leases("bob", &["x".into()]).await.unwrap();
        assert!(live.admit("bob", "y", 2).await.unwrap());
        assert!(!live.admit("bob", "z", 2).await.unwrap());
    });
}

#[test]
fn a_message_is_stored_when_nobody_holds_the_user_and_drained_in_order() {
    let Some(redis) =
        RedisServer::start("a_message_is_stored_when_nobody_holds_the_user_and_drained_in_order")
    else {
        return;
    };
    let node = cluster(&redis.url(), "off", Duration::from_secs(30));
    smol::block_on(async {
        let msg = |s: &str| text_from(1, s);
        assert_eq!(
            node.publish("carol", &msg("one"), true).await,
            Ok(Remote::Stored(1))
        );
        assert_eq!(
            node.publish("carol", &msg("two"), true).await,
            Ok(Remote::Stored(2))
        );
        assert_eq!(
            node.publish("carol", &msg("three"), true).await,
            Ok(Remote::Stored(3))
        );
        assert_eq!(
            node.publish("carol", &msg("four"), true).await,
            Err(ClusterError::OfflineFull)
        );
        let drained = node.drain_offline("carol").await.unwrap();
        assert_eq!(drained, vec![msg("one"), msg("two"), msg("three")]);
        assert_eq!(node.drain_offline("carol").await.unwrap(), vec![]);
    });
}

#[test]
fn an_unreachable_redis_is_a_typed_error_not_a_hang() {
    let mut c = ClusterConfig::new("redis://127.0.0.1:1/");
    c.op_timeout = Duration::from_millis(300);
    let node = Cluster::new(c).unwrap();
    let started = std::time::Instant::now();
    let r = smol::block_on(node.admit("dave", "c", 5));
    assert!(matches!(r, Err(ClusterError::Unavailable(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!node.is_healthy());
}

#[test]
fn drain_many_takes_each_users_stream_in_order_over_several_batches() {
    let Some(redis) = RedisServer::start("drain_many_takes_each_users_stream_in_order") else {
        return;
    };
    let node = cluster(&redis.url(), "many", Duration::from_secs(30));
    smol::block_on(async {
        let msg = |s: String| text_from(2, &s);
        // More users than one batch; every third one has nothing stored.
        let users: Vec<String> = (0..300).map(|i| format!("u{i}")).collect();
        for (i, user) in users.iter().enumerate() {
            for j in 0..(i % 3) {
                assert!(matches!(
                    node.publish(user, &msg(format!("{user}-{j}")), true).await,
                    Ok(Remote::Stored(_))
                ));
            }
        }
        let drained = node.drain_offline_many(&users).await.unwrap();
        assert_eq!(drained.len(), users.len());
        for (i, (user, got)) in users.iter().zip(&drained).enumerate() {
            let want: Vec<_> = (0..(i % 3)).map(|j| msg(format!("{user}-{j}"))).collect();
            assert_eq!(got, &want, "{user}");
        }
        // Taken: a second drain finds nothing.
        let again = node.drain_offline_many(&users).await.unwrap();
        assert!(again.iter().all(Vec::is_empty));
        // Nothing a drain leaves behind outlives the streams, also for a user
        // whose messages were all delivered (logged, never stored).
        let delivered = node.publish("lisa", &msg("here".into()), false).await;
        assert_eq!(delivered, Ok(Remote::Published(0)));
        assert!(node.drain_offline("lisa").await.unwrap().is_empty());
        let mut admin = redis.admin();
        for key in ["many:offline:lisa", "many:offmeta:lisa", "many:offmeta:u2"] {
            let ttl = admin.cmd(&["PTTL", key]);
            let ms: i64 = ttl.trim().trim_start_matches(':').parse().unwrap();
            assert!(ms > 0, "{key} expires: {ttl:?}");
        }
    });
}

/// Two connections of a user open at once on a node: the second one used to
/// be told "subscribed" at once while the first one's subscription was still
/// pending. Both wait for the same answer. This node runs no subscriber task
/// (no server), so the answer never comes: both report it unconfirmed, after
/// `op_timeout`.
#[test]
fn a_second_concurrent_first_connection_waits_for_the_same_subscription() {
    let Some(redis) = RedisServer::start("a_second_concurrent_first_connection_waits") else {
        return;
    };
    let node = impatient(&redis.url(), "sub");
    smol::block_on(async {
        let started = std::time::Instant::now();
        let second = async {
            smol::Timer::after(Duration::from_millis(50)).await;
            let confirmed = node.local_opened("alice").await;
            (confirmed, started.elapsed())
        };
        let (first, (second, second_after)) =
            smol::future::zip(node.local_opened("alice"), second).await;
        assert!(!first, "nothing subscribed the node");
        assert!(
            !second,
            "the second connection was told its subscription was confirmed"
        );
        assert!(
            second_after >= Duration::from_millis(300),
            "{second_after:?}"
        );
        assert_eq!(node.local_users(), vec!["alice".to_owned()]);
    });
}

/// A drain whose reply is lost (Redis answered after the call timed out)
/// used to lose what it had removed. Reading takes nothing away: the next
/// drain gets the same messages, once they are acknowledged they are gone.
#[test]
fn a_drain_that_times_out_loses_nothing() {
    let Some(redis) = RedisServer::start("a_drain_that_times_out_loses_nothing") else {
        return;
    };
    let node = impatient(&redis.url(), "slow");
    let msg = |s: &str| text_from(3, s);
    smol::block_on(async {
        for m in ["one", "two"] {
            assert!(matches!(
                node.publish("hugo", &msg(m), true).await,
                Ok(Remote::Stored(_))
            ));
        }
        // Redis knows the drain script (else the call would stop at NOSCRIPT).
        assert_eq!(node.drain_offline("ida").await.unwrap(), vec![]);
        let stall = redis.stall(Duration::from_millis(800));
        let timed_out = node.drain_offline("hugo").await;
        assert!(
            matches!(timed_out, Err(ClusterError::Unavailable(_))),
            "{timed_out:?}"
        );
        stall.join().unwrap();
        // Redis ran the timed-out drain after the stall; nothing is lost.
        smol::Timer::after(Duration::from_millis(100)).await;
        assert_eq!(
            node.drain_offline("hugo").await.unwrap(),
            vec![msg("one"), msg("two")]
        );
        assert_eq!(node.drain_offline("hugo").await.unwrap(), vec![]);
    });
}
