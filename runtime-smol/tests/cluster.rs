//! Several in-process nodes on one real redis-server (loopback): cross-node
//! send, the cluster-wide cap, cross-node force-disconnect, offline replay on
//! another node, a Redis outage during traffic, and Redis killed (SIGKILL)
//! and restarted on the same port during traffic, tried as an operator
//! would: every send that was accepted reaches every tab that stayed
//! connected, in order, once.

#[path = "support/redis.rs"]
mod redis_support;
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis_support::RedisServer;
use support::*;
use userlane_smol::cluster::{ClusterConfig, ClusterError, Remote};
use userlane_smol::userlane_core::{CloseCode, SendOutcome};
use userlane_smol::{Environment, Message, Reach, UserError};

fn node(redis: &RedisServer, namespace: &str, tune: impl FnOnce(&mut ClusterConfig)) -> TestServer {
    capped_node(redis, namespace, 5, tune)
}

/// A node whose per-user cap (local and cluster-wide) is `cap`.
fn capped_node(
    redis: &RedisServer,
    namespace: &str,
    cap: u32,
    tune: impl FnOnce(&mut ClusterConfig),
) -> TestServer {
    let mut c = config(Environment::Production);
    c.max_connections_per_user = cap;
    let mut cluster = ClusterConfig::new(redis.url());
    cluster.namespace = namespace.into();
    cluster.op_timeout = Duration::from_millis(500);
    tune(&mut cluster);
    c.cluster = Some(cluster);
    start_with(c, TestHandler::greeting())
}

/// A redis-server and `n` nodes on it (`None`: no redis-server here).
fn redis_and_nodes(test: &str, n: usize) -> Option<(RedisServer, Vec<TestServer>)> {
    let redis = RedisServer::start(test)?;
    let nodes = (0..n).map(|_| node(&redis, "nodes", |_| {})).collect();
    Some((redis, nodes))
}

/// Connects and waits for the greeting, which the server writes only after
/// it subscribed to the user's channel.
async fn join(server: &TestServer, user: &str) -> Client {
    let mut c = connect(server.addr, user).await;
    assert_eq!(
        expect_text(&mut c, "greeting").await,
        format!("hello|{user}|false")
    );
    c
}

#[test]
fn a_send_from_a_third_node_reaches_both_nodes_once_in_order() {
    let Some(redis) =
        RedisServer::start("a_send_from_a_third_node_reaches_both_nodes_once_in_order")
    else {
        return;
    };
    let nodes: Vec<_> = (0..3).map(|_| node(&redis, "order", |_| {})).collect();
    smol::block_on(async {
        let mut a1 = join(&nodes[0], "alice").await;
        let mut a2 = join(&nodes[1], "alice").await;
        let mut bob = join(&nodes[0], "bob").await;
        for i in 0..50 {
            let reach = nodes[2]
                .handle
                .send("alice", Message::text(format!("m{i}")))
                .await
                .unwrap();
            assert_eq!(
                reach,
                Reach {
                    local: None,
                    remote: Some(Ok(Remote::Published(2)))
                }
            );
        }
        for client in [&mut a1, &mut a2] {
            for i in 0..50 {
                assert_eq!(
                    expect_text(client, "cross-node message").await,
                    format!("m{i}")
                );
            }
            assert_silent(client, Duration::from_millis(300), "no duplicate").await;
        }
        assert_silent(
            &mut bob,
            Duration::from_millis(100),
            "bob gets nothing of alice's",
        )
        .await;
        // A node holding alice delivers locally and publishes to the other one.
        let reach = nodes[0]
            .handle
            .send("alice", Message::text("local+remote"))
            .await
            .unwrap();
        assert_eq!(
            reach.local,
            Some(SendOutcome::Queued {
                queued_for: 1,
                closed_slow: 0
            })
        );
        assert_eq!(reach.remote, Some(Ok(Remote::Published(2))));
        assert_eq!(expect_text(&mut a1, "local").await, "local+remote");
        assert_eq!(expect_text(&mut a2, "remote").await, "local+remote");
        assert_silent(
            &mut a1,
            Duration::from_millis(200),
            "the sender skips its own envelope",
        )
        .await;
    });
}

#[test]
fn twenty_racing_connects_over_three_nodes_admit_exactly_five() {
    let Some(redis) =
        RedisServer::start("twenty_racing_connects_over_three_nodes_admit_exactly_five")
    else {
        return;
    };
    let nodes: Vec<_> = (0..3).map(|_| node(&redis, "cap", |_| {})).collect();
    smol::block_on(async {
        let attempts: Vec<_> = (0..20)
            .map(|i| {
                let addr = nodes[i % 3].addr;
                smol::spawn(async move { connect_raw(addr, "/ws", Some(&jwt("carol", 300))).await })
            })
            .collect();
        let mut open = Vec::new();
        let mut refused = Vec::new();
        for a in attempts {
            match a.await {
                Ok((client, _)) => open.push(client),
                Err(async_tungstenite::tungstenite::Error::Http(r)) => {
                    refused.push(r.status().as_u16())
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(open.len(), 5);
        assert_eq!(refused, vec![429; 15]);
        let per_node: u64 = nodes
            .iter()
            .map(|n| n.stats().core.connections_active)
            .sum();
        assert_eq!(per_node, 5);
        // Closing one frees a slot anywhere in the cluster.
        drop(open.pop());
        assert!(
            eventually(Duration::from_secs(5), || {
                smol::block_on(connect_raw(nodes[2].addr, "/ws", Some(&jwt("carol", 300)))).is_ok()
            })
            .await
        );
    });
}

#[test]
fn a_force_disconnect_on_node_one_closes_connections_on_node_two_with_4001() {
    let Some(redis) = RedisServer::start(
        "a_force_disconnect_on_node_one_closes_connections_on_node_two_with_4001",
    ) else {
        return;
    };
    let nodes: Vec<_> = (0..2).map(|_| node(&redis, "kick", |_| {})).collect();
    smol::block_on(async {
        let mut d1 = join(&nodes[1], "dave").await;
        let mut d2 = join(&nodes[1], "dave").await;
        let reach = nodes[0]
            .handle
            .disconnect("dave", CloseCode::new(4001).unwrap(), "kicked")
            .await;
        assert_eq!(reach.local, 0);
        assert_eq!(reach.remote, Some(Ok(Remote::Published(1))));
        assert_eq!(close_frame(&mut d1).await, Some((4001, "kicked".into())));
        assert_eq!(close_frame(&mut d2).await, Some((4001, "kicked".into())));
        drop((d1, d2));
        // Node 2 held dave's last connections: it unsubscribes (no leaked
        // subscription), so a send now finds nobody and is stored instead.
        let unsubscribed = eventually(Duration::from_secs(5), || {
            nodes[1].handle.cluster().unwrap().local_users().is_empty()
                && matches!(
                    smol::block_on(nodes[0].handle.send("dave", Message::text("later"))),
                    Ok(Reach {
                        remote: Some(Ok(Remote::Stored(_))),
                        ..
                    })
                )
        })
        .await;
        assert!(unsubscribed, "node 2 kept its subscription after dave left");
    });
}

#[test]
fn an_offline_message_is_replayed_in_order_on_another_node_and_a_full_stream_is_reported() {
    let Some(redis) = RedisServer::start("an_offline_message_is_replayed_in_order") else {
        return;
    };
    let nodes: Vec<_> = (0..2)
        .map(|_| node(&redis, "offline", |c| c.offline_max = 3))
        .collect();
    smol::block_on(async {
        for (i, want) in [1, 2, 3].iter().enumerate() {
            let reach = nodes[0]
                .handle
                .send("erin", Message::text(format!("o{i}")))
                .await
                .unwrap();
            assert_eq!(
                reach,
                Reach {
                    local: None,
                    remote: Some(Ok(Remote::Stored(*want)))
                }
            );
        }
        let full = nodes[0].handle.send("erin", Message::text("o3")).await;
        assert_eq!(full, Err(UserError::Cluster(ClusterError::OfflineFull)));
        let mut e = join(&nodes[1], "erin").await;
        for i in 0..3 {
            assert_eq!(expect_text(&mut e, "replayed").await, format!("o{i}"));
        }
        assert_silent(&mut e, Duration::from_millis(200), "nothing more").await;
        // Now erin is held by node 2: a send from node 1 is published, not stored.
        let reach = nodes[0]
            .handle
            .send("erin", Message::text("live"))
            .await
            .unwrap();
        assert_eq!(reach.remote, Some(Ok(Remote::Published(1))));
        assert_eq!(expect_text(&mut e, "live").await, "live");
    });
}

#[test]
fn a_redis_outage_never_stops_local_delivery_and_cross_node_delivery_resumes() {
    let Some(mut redis) = RedisServer::start("a_redis_outage_never_stops_local_delivery") else {
        return;
    };
    let nodes: Vec<_> = (0..2).map(|_| node(&redis, "outage", |_| {})).collect();
    smol::block_on(async {
        let mut alice = join(&nodes[0], "alice").await;
        let mut bob = join(&nodes[1], "bob").await;
        redis.stop();
        // Local delivery goes on; the cross-node part reports the outage.
        for i in 0..5 {
            let reach = nodes[0]
                .handle
                .send("alice", Message::text(format!("during{i}")))
                .await
                .unwrap();
            assert_eq!(
                reach.local,
                Some(SendOutcome::Queued {
                    queued_for: 1,
                    closed_slow: 0
                })
            );
            assert!(
                matches!(reach.remote, Some(Err(ClusterError::Unavailable(_)))),
                "{reach:?}"
            );
            assert_eq!(
                expect_text(&mut alice, "local during outage").await,
                format!("during{i}")
            );
        }
        let cross = nodes[0].handle.send("bob", Message::text("lost?")).await;
        assert!(
            matches!(cross, Err(UserError::Cluster(ClusterError::Unavailable(_)))),
            "{cross:?}"
        );
        // New connections are still admitted under the local cap.
        let mut late = join(&nodes[0], "frank").await;
        // The node's cluster counters come with its stats.
        let cluster = nodes[0].handle.stats().cluster.expect("a cluster node");
        assert!(cluster.local_admissions >= 1, "{cluster:?}");
        assert!(cluster.unavailable_errors >= 1, "{cluster:?}");
        redis.restart();
        // Cross-node delivery resumes once node 2 has resubscribed.
        let resumed = eventually(Duration::from_secs(15), || {
            matches!(
                smol::block_on(nodes[0].handle.send("bob", Message::text("after"))),
                Ok(Reach {
                    remote: Some(Ok(Remote::Published(1))),
                    ..
                })
            )
        })
        .await;
        assert!(resumed, "cross-node delivery did not resume");
        assert_eq!(expect_text(&mut bob, "after the outage").await, "after");
        assert!(nodes
            .iter()
            .all(|n| n.handle.cluster().unwrap().is_healthy()));
        let _ = nodes[0]
            .handle
            .send("frank", Message::text("hi"))
            .await
            .unwrap();
        assert_eq!(expect_text(&mut late, "frank").await, "hi");
    });
}

#[test]
fn every_send_accepted_while_redis_restarts_reaches_the_tabs_that_stayed_connected() {
    // Two tabs of each user on the node: both get everything.
    restart_during_traffic(
        "every_send_accepted_while_redis_restarts_reaches_the_tabs_that_stayed_connected",
        Run {
            tab_nodes: 1,
            tabs: 2,
            users: 3,
            before: Duration::from_millis(500),
            down_for: Duration::from_secs(2),
        },
    );
}

#[test]
fn leases_of_connections_that_stayed_open_are_recreated_after_a_redis_restart() {
    let Some(mut redis) = RedisServer::start(
        "leases_of_connections_that_stayed_open_are_recreated_after_a_redis_restart",
    ) else {
        return;
    };
    // Refresh period: lease_ttl / 3 = 300 ms.
    let lease_ttl = Duration::from_millis(900);
    let nodes: Vec<_> = (0..2)
        .map(|_| capped_node(&redis, "relet", 2, |c| c.lease_ttl = lease_ttl))
        .collect();
    let refused_on_node_two = || {
        matches!(
            smol::block_on(connect_raw(nodes[1].addr, "/ws", Some(&jwt("gina", 300)))),
            Err(async_tungstenite::tungstenite::Error::Http(r)) if r.status().as_u16() == 429
        )
    };
    smol::block_on(async {
        // gina is at the cap, both connections on node 1.
        let mut g1 = join(&nodes[0], "gina").await;
        let mut g2 = join(&nodes[0], "gina").await;
        assert!(refused_on_node_two(), "at the cap before the restart");
        // Redis comes back empty (no persistence): every lease is gone.
        redis.stop();
        let noticed = eventually(Duration::from_secs(10), || {
            nodes
                .iter()
                .all(|n| !n.handle.cluster().unwrap().is_healthy())
        })
        .await;
        assert!(noticed, "the nodes noticed the outage");
        redis.restart();
        // Reconnected: a Redis call succeeds on each node (node 2's first
        // call after the restart may fail on its dead connection, and an
        // admission that fails falls back to the local cap).
        let back = eventually(Duration::from_secs(15), || {
            nodes
                .iter()
                .all(|n| smol::block_on(n.handle.cluster().unwrap().cluster_gauges()).is_ok())
        })
        .await;
        assert!(back, "the nodes reconnected");
        // A refresh period or more after the reconnection, node 1 has
        // re-created the leases of the two connections it still holds.
        smol::Timer::after(lease_ttl).await;
        assert!(
            refused_on_node_two(),
            "a third connection after the restart is refused cluster-wide"
        );
        // The re-created leases are still given back when a connection closes.
        let sent = nodes[1]
            .handle
            .send("gina", Message::text("still here"))
            .await;
        assert!(sent.is_ok(), "{sent:?}");
        assert_eq!(expect_text(&mut g1, "g1").await, "still here");
        assert_eq!(expect_text(&mut g2, "g2").await, "still here");
        drop(g2);
        let freed = eventually(Duration::from_secs(5), || {
            smol::block_on(connect_raw(nodes[1].addr, "/ws", Some(&jwt("gina", 300)))).is_ok()
        })
        .await;
        assert!(freed, "closing a connection frees its re-created lease");
        drop(g1);
    });
}

#[test]
fn the_first_admission_after_a_redis_restart_is_decided_by_redis() {
    let Some(mut redis) =
        RedisServer::start("the_first_admission_after_a_redis_restart_is_decided_by_redis")
    else {
        return;
    };
    let nodes: Vec<_> = (0..2)
        .map(|_| capped_node(&redis, "first", 1, |_| {}))
        .collect();
    smol::block_on(async {
        // Node 2 has a kept connection to Redis, which the restart kills.
        let _ivy = join(&nodes[1], "ivy").await;
        redis.restart();
        let local_before = nodes[1].stats().cluster.unwrap().local_admissions;
        // The first call after the restart: admitted by Redis, not by the
        // local cap (which would let a second connection on node 1 in).
        let _hank = join(&nodes[1], "hank").await;
        let cluster = nodes[1].stats().cluster.unwrap();
        assert_eq!(cluster.local_admissions, local_before, "{cluster:?}");
        let second = connect_raw(nodes[0].addr, "/ws", Some(&jwt("hank", 300))).await;
        assert!(
            matches!(&second, Err(async_tungstenite::tungstenite::Error::Http(r)) if r.status().as_u16() == 429),
            "hank is at the cluster-wide cap of 1: {:?}",
            second.as_ref().map(|_| ())
        );
    });
}

/// One fault run.
struct Run {
    /// Nodes holding the tabs; one more node sends.
    tab_nodes: usize,
    /// Tabs of each user on each of those nodes.
    tabs: usize,
    users: usize,
    /// Traffic before Redis is killed.
    before: Duration,
    /// How long Redis stays dead. The subscriber tasks retry at about 0.1,
    /// 0.3, 0.7, 1.5 and 3.1 s after the kill: a restart at 1.7 or 2 s leaves
    /// a second or more in which sends are accepted while the nodes are not
    /// yet subscribed again.
    down_for: Duration,
}

/// One round of sends (one to each user) every this long: about 10 messages
/// a second per user. What a node delivers at once after resubscribing must
/// fit in a tab's queue (`queue_depth`, 64), else the tab is closed as a slow
/// consumer.
const ROUND_EVERY: Duration = Duration::from_millis(100);

/// What the sender saw, per user.
#[derive(Default)]
struct Sent {
    /// Accepted (published or stored), in send order.
    accepted: HashMap<String, Vec<String>>,
    /// Refused as unavailable: a timeout may still have let it through.
    maybe: HashMap<String, Vec<String>>,
    /// Accepted sends stored because no node was subscribed.
    stored: usize,
    /// Accepted sends published to fewer nodes than hold the user.
    partial: usize,
    refused: usize,
}

impl Sent {
    /// Sends round `round` to every user; true when every send reached
    /// every node holding the user.
    fn round(&mut self, sender: &TestServer, users: &[String], holders: u32, round: usize) -> bool {
        let mut all = true;
        for user in users {
            let text = format!("r{round}");
            match smol::block_on(sender.handle.send(user, Message::text(text.clone()))) {
                Ok(Reach {
                    local: None,
                    remote: Some(Ok(remote)),
                }) => {
                    match remote {
                        Remote::Published(n) if n == holders => {}
                        Remote::Published(n) if n < holders => self.partial += 1,
                        Remote::Stored(_) => self.stored += 1,
                        other => panic!("{other:?}"),
                    }
                    all &= remote == Remote::Published(holders);
                    self.accepted.entry(user.clone()).or_default().push(text);
                }
                Err(UserError::Cluster(ClusterError::Unavailable(_))) => {
                    all = false;
                    self.refused += 1;
                    self.maybe.entry(user.clone()).or_default().push(text);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        all
    }

    /// Every accepted send to `user`, in order, once; besides them only
    /// sends refused as unavailable.
    fn check(&self, user: &str, got: &[String]) {
        let accepted = &self.accepted[user];
        let delivered: Vec<&String> = got.iter().filter(|t| accepted.contains(t)).collect();
        assert_eq!(
            delivered,
            accepted.iter().collect::<Vec<_>>(),
            "a tab of {user}: every accepted send, in order, once ({} stored, {} partial); got {got:?}",
            self.stored,
            self.partial
        );
        let round_of = |t: &String| t[1..].parse::<usize>().unwrap();
        assert!(
            got.windows(2).all(|w| round_of(&w[0]) < round_of(&w[1])),
            "a tab of {user}: in order, no duplicate: {got:?}"
        );
        let unexpected: Vec<_> = got
            .iter()
            .filter(|t| {
                !accepted.contains(t) && !self.maybe.get(user).is_some_and(|m| m.contains(t))
            })
            .collect();
        assert!(
            unexpected.is_empty(),
            "a tab of {user}: never sent: {unexpected:?}"
        );
    }
}

/// A tab that reads everything until the "end" marker.
fn reader(user: String, mut tab: Client) -> smol::Task<(String, Vec<String>)> {
    smol::spawn(async move {
        let mut got = Vec::new();
        loop {
            match recv_within(&mut tab, Duration::from_secs(10)).await {
                Recv::Text(t) if t == "end" => return (user, got),
                Recv::Text(t) => got.push(t),
                other => panic!("tab of {user}: {other:?} after {} messages", got.len()),
            }
        }
    })
}

/// Posts while Redis is killed and restarted, then checks every tab.
fn restart_during_traffic(test: &str, run: Run) {
    let Some(mut redis) = RedisServer::start(test) else {
        return;
    };
    // Room for everything sent while the nodes resubscribe: a refusal for a
    // full stream would only shrink what the test checks.
    let nodes: Vec<_> = (0..=run.tab_nodes)
        .map(|_| node(&redis, "fault", |c| c.offline_max = 10_000))
        .collect();
    let (tab_nodes, sender) = nodes.split_at(run.tab_nodes);
    let sender = &sender[0];
    let holders = run.tab_nodes as u32;
    let users: Vec<String> = (0..run.users).map(|i| format!("user{i}")).collect();
    smol::block_on(async {
        let mut readers = Vec::new();
        for user in &users {
            for n in tab_nodes {
                for _ in 0..run.tabs {
                    readers.push(reader(user.clone(), join(n, user).await));
                }
            }
        }
        let mut sent = Sent::default();
        let mut round = 0;
        let started = Instant::now();
        while started.elapsed() < run.before {
            assert!(
                sent.round(sender, &users, holders, round),
                "before the fault"
            );
            round += 1;
            smol::Timer::after(ROUND_EVERY).await;
        }
        redis.stop();
        let killed = Instant::now();
        while killed.elapsed() < run.down_for {
            sent.round(sender, &users, holders, round);
            round += 1;
            smol::Timer::after(ROUND_EVERY).await;
        }
        redis.restart();
        // Until every node has resubscribed every user (every send reached
        // every holder) for a few rounds in a row; bounded.
        let back = Instant::now();
        let mut in_a_row = 0;
        while in_a_row < 5 {
            assert!(
                back.elapsed() < Duration::from_secs(15),
                "the nodes did not resubscribe"
            );
            in_a_row = if sent.round(sender, &users, holders, round) {
                in_a_row + 1
            } else {
                0
            };
            round += 1;
            smol::Timer::after(ROUND_EVERY).await;
        }
        assert!(sent.refused > 0, "the fault refused sends");
        assert!(
            sent.stored + sent.partial > 0,
            "some sends were accepted while the nodes resubscribed"
        );
        for user in &users {
            let reach = sender.handle.send(user, Message::text("end")).await;
            assert!(
                matches!(reach, Ok(Reach { remote: Some(Ok(Remote::Published(n))), .. }) if n == holders),
                "{reach:?}"
            );
        }
        for r in readers {
            let Some((user, got)) = within(Duration::from_secs(20), r).await else {
                panic!("a tab did not see the end marker in time");
            };
            sent.check(&user, &got);
        }
    });
}

#[test]
fn redis_killed_during_traffic_every_accepted_send_reaches_the_tabs_that_stayed_connected() {
    restart_during_traffic(
        "redis_killed_during_traffic_every_accepted_send_reaches_the_tabs_that_stayed_connected",
        Run {
            tab_nodes: 1,
            tabs: 1,
            users: 100,
            before: Duration::from_secs(2),
            down_for: Duration::from_millis(1700),
        },
    );
}

#[test]
fn a_user_with_tabs_on_two_nodes_gets_every_accepted_send_once_on_each_through_a_redis_kill() {
    restart_during_traffic(
        "a_user_with_tabs_on_two_nodes_gets_every_accepted_send_once_on_each_through_a_redis_kill",
        Run {
            tab_nodes: 2,
            tabs: 1,
            users: 10,
            before: Duration::from_secs(1),
            down_for: Duration::from_millis(1700),
        },
    );
}

#[test]
fn a_node_whose_subscription_died_delivers_what_was_published_to_the_other_node_meanwhile() {
    let Some((redis, nodes)) = redis_and_nodes(
        "a_node_whose_subscription_died_delivers_what_was_published_to_the_other_node_meanwhile",
        3,
    ) else {
        return;
    };
    smol::block_on(async {
        let mut a1 = join(&nodes[0], "alice").await;
        let mut a2 = join(&nodes[1], "alice").await;
        // Node 2 also holds bob: its pub/sub connection has two channels,
        // node 1's one.
        let _bob = join(&nodes[1], "bob").await;
        // The sending node has its connection to Redis.
        assert!(nodes[2]
            .handle
            .cluster()
            .unwrap()
            .cluster_gauges()
            .await
            .is_ok());
        let mut admin = redis.admin();
        let list = admin.cmd(&["CLIENT", "LIST", "TYPE", "pubsub"]);
        let node_one = list
            .lines()
            .find(|l| l.contains(" sub=1 "))
            .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("id=")))
            .unwrap_or_else(|| panic!("node 1's pub/sub connection in {list}"))
            .to_owned();
        // Node 1 loses its subscription and cannot reconnect for a while
        // (Redis refuses new clients); Redis itself keeps running.
        let connected = admin.cmd(&["CLIENT", "LIST"]).matches("id=").count();
        assert!(admin
            .cmd(&["CONFIG", "SET", "maxclients", &(connected - 1).to_string()])
            .starts_with("+OK"));
        assert!(admin
            .cmd(&["CLIENT", "KILL", "ID", &node_one])
            .starts_with(":1"));
        for i in 0..10 {
            let reach = nodes[2]
                .handle
                .send("alice", Message::text(format!("m{i}")))
                .await;
            assert!(
                matches!(
                    reach,
                    Ok(Reach {
                        remote: Some(Ok(Remote::Published(1))),
                        ..
                    })
                ),
                "only node 2 is subscribed: {reach:?}"
            );
        }
        assert!(admin
            .cmd(&["CONFIG", "SET", "maxclients", "10000"])
            .starts_with("+OK"));
        let mut i = 10;
        let both = eventually(Duration::from_secs(10), || {
            let reach = smol::block_on(
                nodes[2]
                    .handle
                    .send("alice", Message::text(format!("m{i}"))),
            );
            i += 1;
            matches!(
                reach,
                Ok(Reach {
                    remote: Some(Ok(Remote::Published(2))),
                    ..
                })
            )
        })
        .await;
        assert!(both, "node 1 resubscribed");
        // Node 1 delivers what it missed, then what came after: both tabs get
        // everything, in order, once (a send that found node 1 subscribed
        // again only partly is published to both).
        for (tab, which) in [(&mut a1, "node 1"), (&mut a2, "node 2")] {
            for j in 0..i {
                assert_eq!(
                    expect_text(tab, which).await,
                    format!("m{j}"),
                    "the tab on {which}"
                );
            }
            assert_silent(tab, Duration::from_millis(200), "no duplicate").await;
        }
    });
}
