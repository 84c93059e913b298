//! Real `userlane-server` processes on one real redis-server: a node killed
//! with SIGKILL (no cleanup) frees its users' slots once its leases expire.

#[path = "../../runtime-smol/tests/support/redis.rs"]
mod redis_support;
mod support;

use std::time::{Duration, Instant};

use redis_support::RedisServer;
use support::*;

fn node(redis: &RedisServer) -> ServerProcess {
    Spawn::with_env("production")
        .args(&[
            "--redis-url",
            &redis.url(),
            "--lease-ttl",
            "2",
            "--max-connections-per-user",
            "3",
        ])
        .start()
}

#[test]
fn a_killed_node_frees_its_slots_after_the_lease_ttl() {
    let Some(redis) = RedisServer::start("a_killed_node_frees_its_slots_after_the_lease_ttl")
    else {
        return;
    };
    let mut a = node(&redis);
    let b = node(&redis);
    let token = signed_token("gina");
    let auth = format!("Bearer {token}");
    run(Duration::from_secs(60), async {
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(connect_with_token(a.addr, &token).await);
        }
        // The cap is cluster-wide: the other node refuses a fourth connection.
        assert_eq!(
            refused_upgrade(b.addr, "/ws", &[("Authorization", &auth)]).await,
            429
        );

        // SIGKILL: node a cannot remove its leases.
        let killed = std::process::Command::new("kill")
            .args(["-9", &a.pid().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        assert!(
            a.wait_exit(Duration::from_secs(5)).is_some(),
            "node a is gone"
        );
        let killed_at = Instant::now();
        assert_eq!(
            refused_upgrade(b.addr, "/ws", &[("Authorization", &auth)]).await,
            429,
            "the dead node's leases still count until they expire"
        );
        drop(held);

        // Within the lease TTL (2 s, refreshed every ~0.7 s) plus a margin, the slots are free.
        let mut admitted = Vec::new();
        while admitted.len() < 3 {
            assert!(
                killed_at.elapsed() < Duration::from_secs(6),
                "slots not freed {:?} after the kill",
                killed_at.elapsed()
            );
            match ws_connect(b.addr, "/ws", &[("Authorization", &auth)]).await {
                Ok((client, _)) => admitted.push(client),
                Err(_) => {
                    smol::Timer::after(Duration::from_millis(100)).await;
                }
            }
        }
        let freed_after = killed_at.elapsed();
        assert!(freed_after <= Duration::from_secs(6));
        // And the cap holds again on the surviving node.
        assert_eq!(
            refused_upgrade(b.addr, "/ws", &[("Authorization", &auth)]).await,
            429
        );
        eprintln!("slots of the killed node were free again {freed_after:?} after SIGKILL (lease TTL 2 s)");
    });
}
