//! Bounded both ways: what an attacker reaching `userlane-server` can and
//! cannot make it do — agent work per user, minted tokens, the operational
//! endpoints, the reserved anonymous namespace, echoed texts — plus the
//! memory figures of `/metrics` and `/healthz`.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

const LIMIT: Duration = Duration::from_secs(60);

/// Reads `n` frames of `client` as JSON.
async fn frames(client: &mut Client, n: usize, who: &str) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(expect_json(client, &format!("{who}: frame {i} of {n}")).await);
    }
    out
}

#[test]
fn a_flood_of_messages_gets_two_runs_and_busy_answers_while_others_are_served() {
    let server = Spawn::dev().env("USERLANE_AGENT_STEP_MS", "300").start();
    let addr = server.addr;
    run(LIMIT, async {
        let (mut alice, _) = connect_dev(addr, "alice").await;
        let (mut bob, _) = connect_dev(addr, "bob").await;
        let text = "x".repeat(4096);
        for _ in 0..50 {
            send_user_message(&mut alice, &text).await;
        }
        // Another user is served in full while alice's runs go on.
        send_user_message(&mut bob, "hello").await;
        expect_agent_run(&mut bob, "hello", "bob").await;
        // Alice: two runs (ten events) and 48 busy answers, nothing more.
        let got = frames(&mut alice, 58, "alice").await;
        assert_silent(
            &mut alice,
            Duration::from_millis(1500),
            "alice after 58 frames",
        )
        .await;
        let busy: Vec<&Value> = got
            .iter()
            .filter(|v| v["type"] == "error_message")
            .collect();
        assert_eq!(busy.len(), 48, "{got:#?}");
        for b in &busy {
            assert_eq!(b["error_code"], "AGENT_BUSY", "{b}");
            assert!(b["error_message"].as_str().unwrap().len() < 200, "{b}");
        }
        let mut runs: Vec<&str> = got
            .iter()
            .filter(|v| v["type"] != "error_message")
            .map(|v| v["data"]["run_id"].as_str().expect("run_id"))
            .collect();
        assert_eq!(runs.len(), 10, "{got:#?}");
        runs.sort_unstable();
        runs.dedup();
        assert_eq!(runs.len(), 2, "two runs: {runs:?}");
        // Once a run completes, alice is served again.
        send_user_message(&mut alice, "again").await;
        expect_agent_run(&mut alice, "again", "alice").await;
    });
    assert_eq!(metric(addr, "userlane_agent_busy_total"), 48.0);
}

#[test]
fn memory_figures_are_in_metrics_and_in_the_json_healthz() {
    let server = Spawn::dev().args(&["--memory-baseline-secs", "1"]).start();
    // The baseline is taken over the first second.
    let deadline = std::time::Instant::now() + RECV_TIMEOUT;
    let m = loop {
        let m = metrics(server.addr);
        if m.contains_key("userlane_resident_memory_baseline_bytes") {
            break m;
        }
        assert!(std::time::Instant::now() < deadline, "no baseline: {m:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let rss = m["userlane_resident_memory_bytes"];
    let baseline = m["userlane_resident_memory_baseline_bytes"];
    assert!(rss > 1e5 && baseline > 1e5, "{rss} {baseline}");
    let reply = get(server.addr, "/healthz?format=json");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    assert_eq!(v["status"], "ok", "{v}");
    assert!(v["reasons"].as_array().unwrap().is_empty(), "{v}");
    assert!(
        v["memory"]["resident_bytes"].as_u64().unwrap() > 100_000,
        "{v}"
    );
    assert!(
        v["memory"]["baseline_bytes"].as_u64().unwrap() > 100_000,
        "{v}"
    );
    assert_eq!(v["memory"]["spike_percent"], 200, "{v}");
    // The plain form is unchanged for load balancers and scripts.
    assert_eq!(get(server.addr, "/healthz").text(), "ok\n");
}

#[test]
fn a_configured_secret_without_an_environment_refuses_to_start() {
    let out = Spawn::dev()
        .env("USERLANE_JWT_SECRET", SECRET)
        .run_to_exit();
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("set USERLANE_ENV"), "{}", out.stderr);
    assert!(!out.stdout.contains("listening"), "{}", out.stdout);
    // The same through --jwt-secret-file.
    let file = std::env::temp_dir().join(format!("userlane-bounds-{}", std::process::id()));
    std::fs::write(&file, SECRET).unwrap();
    let out = Spawn::dev()
        .args(&["--jwt-secret-file", file.to_str().unwrap()])
        .run_to_exit();
    let _ = std::fs::remove_file(&file);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("set USERLANE_ENV"), "{}", out.stderr);
    // An explicit environment starts as before.
    let server = Spawn::with_env("production").start();
    assert_eq!(get(server.addr, "/healthz").status, 200);
}

#[test]
fn operational_endpoints_are_off_the_public_port_in_production_and_staging() {
    for env in ["production", "staging"] {
        let server = Spawn::with_env(env).start();
        let ops = server.ops.expect("an ops listener");
        assert_ne!(ops, server.addr);
        // Public port: no metrics, a one-word health status only.
        let reply = get(server.addr, "/metrics");
        assert_eq!(reply.status, 404, "{env}: {}", reply.text());
        assert!(!reply.text().contains("userlane_"), "{env}");
        assert_eq!(get(server.addr, "/healthz").text(), "ok\n", "{env}");
        let json = get(server.addr, "/healthz?format=json");
        assert_eq!(
            (json.status, json.text()),
            (200, "ok\n".to_owned()),
            "{env}"
        );
        // Ops listener: metrics and the detailed health, nothing else.
        let reply = get(ops, "/metrics");
        assert_eq!(reply.status, 200, "{env}");
        assert!(reply.text().contains("userlane_connections 0"), "{env}");
        let health = get(ops, "/healthz?format=json");
        assert_eq!(health.json()["status"], "ok", "{env}");
        assert!(health.json()["memory"].is_object(), "{env}");
        for path in ["/", "/dev/token", "/api/users/alice/messages", "/ws"] {
            assert_eq!(get(ops, path).status, 404, "{env}: ops {path}");
        }
        assert_eq!(http(ops, "POST", "/metrics", &[], b"").status, 405);
    }
    // Configured otherwise: on the public port, as in development.
    let server = Spawn::with_env("production")
        .args(&["--ops-listen", "public"])
        .start();
    assert_eq!(get(server.addr, "/metrics").status, 200);
    // Development keeps them on the main port.
    let server = Spawn::dev().start();
    assert!(server.ops.is_none());
    assert_eq!(get(server.addr, "/metrics").status, 200);
}

#[test]
fn dev_token_refuses_the_anonymous_namespace() {
    let server = Spawn::dev().start();
    let h = [("Content-Type", "application/json")];
    let anonymous = run(LIMIT, async {
        let (mut c, _) = ws_connect(server.addr, "/ws", &[]).await.expect("admitted");
        let g = expect_json(&mut c, "greeting").await;
        g["data"]["user_id"].as_str().unwrap().to_owned()
    });
    assert!(anonymous.starts_with("anon-"), "{anonymous}");
    for id in [anonymous.as_str(), "anon-x"] {
        let body = serde_json::json!({ "user_id": id }).to_string();
        let reply = http(server.addr, "POST", "/dev/token", &h, body.as_bytes());
        assert_eq!(reply.status, 400, "{id}: {}", reply.text());
        assert_eq!(
            reply.json()["error"],
            "user ids starting with \"anon-\" are reserved for anonymous connections"
        );
    }
    // Ids that only look alike are ordinary users.
    dev_token(server.addr, "anonymous");
    dev_token(server.addr, "Anon-x");
}

#[test]
fn attacker_sized_texts_are_never_echoed_in_full() {
    let server = Spawn::dev().start();
    let long = "x".repeat(10_000);
    // A WebSocket frame of an unknown type: a short escaped excerpt only.
    run(LIMIT, async {
        let (mut c, _) = connect_dev(server.addr, "alice").await;
        send_text(&mut c, &format!(r#"{{"type":"{long}"}}"#)).await;
        let v = expect_json(&mut c, "error reply").await;
        assert_eq!(v["error_code"], "UNKNOWN_TYPE", "{v}");
        let msg = v["error_message"].as_str().unwrap();
        assert!(msg.len() < 120, "{} bytes: {msg:.200}", msg.len());
        assert!(msg.contains("(10000 bytes)"), "{msg}");
        send_text(
            &mut c,
            &format!("{{\"type\":\"user_message\",\"text\":\"a\u{1}{long}"),
        )
        .await;
        let v = expect_json(&mut c, "error reply").await;
        assert_eq!(v["error_code"], "INVALID_JSON", "{v}");
        assert!(v["error_message"].as_str().unwrap().len() < 120, "{v}");
    });
    // HTTP: a 10 KB user id gets a short fixed 400.
    let h = [("Content-Type", "application/json")];
    let body = serde_json::json!({ "user_id": long }).to_string();
    let reply = http(server.addr, "POST", "/dev/token", &h, body.as_bytes());
    assert_eq!(reply.status, 400);
    assert!(
        reply.body.len() < 120 && !reply.text().contains("xxxxxxxx"),
        "{}",
        reply.text()
    );
    let reply = post_message(server.addr, &long, Some(SERVICE_TOKEN), b"{}");
    assert_eq!(reply.status, 400);
    assert!(
        reply.body.len() < 120 && !reply.text().contains("xxxxxxxx"),
        "{}",
        reply.text()
    );
    assert!(
        !server.stderr().contains(&long[..100]),
        "a log line holds the long id"
    );
}
