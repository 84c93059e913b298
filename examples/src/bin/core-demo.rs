//! Drives `userlane-core` by hand, without any network: two users, three
//! connections, one isolation violation refused, one idle connection closed,
//! one empty manager reclaimed. Prints what the core asks the caller to do.

use userlane_core::{Config, Event, Instant, ManagerFactory, Transmit, UserContext};

type Lanes = ManagerFactory<&'static str, 16, 64, 1024>;

fn drain(lanes: &mut Lanes) {
    while let Some(event) = lanes.poll_event() {
        println!("  event: {event:?}");
        let conn = match event {
            Event::Transmit(c) => c,
            Event::ConnectionClosed { connection, .. } => connection,
            _ => continue,
        };
        while let Ok(Some(t)) = lanes.poll_transmit(conn) {
            match t {
                Transmit::Message(m) => println!("    write to conn {}: {m}", conn.index()),
                Transmit::Close(c) => {
                    println!("    close conn {}: {} {}", conn.index(), c.code, c.reason);
                    lanes
                        .handle_closed(conn, lanes.now())
                        .expect("connection is live");
                }
            }
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config {
        idle_timeout_ms: Some(5_000),
        empty_manager_ttl_ms: Some(10_000),
        ..Config::for_capacity(16, 64)
    };
    let mut lanes = Lanes::new(config)?;
    let t0 = Instant::from_millis(0);

    let alice = UserContext::new("alice", "thread-a", "run-1", "req-1")?;
    let bob = UserContext::new("bob", "thread-b", "run-1", "req-2")?;
    let a = lanes.create_manager(alice.clone(), t0)?;
    let b = lanes.create_manager(bob.clone(), t0)?;
    let a1 = lanes.add_connection(a, &alice, t0)?;
    let _a2 = lanes.add_connection(a, &alice, t0)?;
    let b1 = lanes.add_connection(b, &bob, t0)?;
    println!(
        "alice has {} connections, bob has {}",
        lanes.connection_count(a)?,
        lanes.connection_count(b)?
    );

    println!(
        "bob's connection offered to alice's manager: {}",
        lanes.add_connection(a, &bob, t0).unwrap_err()
    );
    println!(
        "alice's manager removing bob's connection: {}",
        lanes.remove_connection(a, b1, t0).unwrap_err()
    );

    println!(
        "send 'hi alice' to alice: {:?}",
        lanes.send_to_user(a, "hi alice", t0)?
    );
    println!(
        "send 'hi bob' to bob: {:?}",
        lanes.send_to_user(b, "hi bob", t0)?
    );
    drain(&mut lanes);

    // Alice keeps talking; bob goes silent.
    let t4 = Instant::from_millis(4_000);
    lanes.handle_activity(a1, t4)?;
    let t6 = Instant::from_millis(6_000);
    println!("at 6 s: next deadline {:?}", lanes.poll_timeout());
    lanes.handle_timeout(t6);
    drain(&mut lanes);
    println!(
        "at 6 s: alice has {} connections, bob has {}",
        lanes.connection_count(a)?,
        lanes.connection_count(b)?
    );

    let t16 = Instant::from_millis(16_000);
    lanes.handle_timeout(t16);
    drain(&mut lanes);
    println!(
        "at 16 s: bob's old handle says: {}",
        lanes.send_to_user(b, "late", t16).unwrap_err()
    );
    let stats = lanes.stats();
    println!(
        "stats: managers created {} active {} reclaimed {}; connections opened {} active {}; violations {}; consistent {}",
        stats.managers_created,
        stats.managers_active,
        stats.managers_reclaimed,
        stats.total_connections_managed,
        stats.connections_active,
        stats.security_violations_detected,
        stats.is_consistent()
    );
    Ok(())
}
