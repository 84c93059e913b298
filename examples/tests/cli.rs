//! The command line of `userlane-server`: `--help`, refusals to start (exit
//! code 2 with a message on stderr), environment-variable fallbacks.

mod support;

use std::time::Duration;

use support::*;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn help_lists_every_setting_and_its_environment_variable() {
    let out = Spawn::dev().arg("--help").run_to_exit_at(None);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    for flag in [
        "--listen",
        "--env",
        "--jwt-secret-file",
        "--max-connections-per-user",
        "--max-connections",
        "--max-message-bytes",
        "--queue-depth",
        "--offline-buffer",
        "--ping-interval",
        "--idle-timeout",
        "--shards",
        "--agent-step-ms",
        "--agent-runs-per-user",
        "--agent-runs-total",
        "--ops-listen",
        "--memory-spike-percent",
        "--memory-baseline-secs",
        "USERLANE_OPS_LISTEN",
        "USERLANE_AGENT_RUNS_PER_USER",
        "USERLANE_MEMORY_SPIKE_PERCENT",
        "USERLANE_LISTEN",
        "USERLANE_ENV",
        "USERLANE_JWT_SECRET",
        "USERLANE_SERVICE_TOKEN",
        "USERLANE_MAX_CONNECTIONS_PER_USER",
        "USERLANE_MAX_MESSAGE_BYTES",
        "USERLANE_OFFLINE_BUFFER",
        "RUST_LOG",
        "[default: 127.0.0.1:9600]",
        "[default: development]",
        "[default: 5]",
        "[default: 65536]",
    ] {
        assert!(
            out.stdout.contains(flag),
            "--help lacks {flag}:\n{}",
            out.stdout
        );
    }
    let out = Spawn::dev().arg("--version").run_to_exit_at(None);
    assert_eq!(out.code(), Some(0));
    assert!(out.stdout.starts_with("userlane-server "), "{}", out.stdout);
}

#[test]
fn bad_values_print_a_message_and_exit_with_code_2() {
    let missing = std::env::temp_dir().join("userlane-no-such-secret-file");
    let missing = missing.to_str().unwrap();
    // (flags, environment, what the message must mention)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["--env", "qa"], vec![], "qa"),
        (vec![], vec![("USERLANE_ENV", "qa")], "qa"),
        (vec!["--listen", "nowhere"], vec![], "nowhere"),
        (vec!["--max-connections-per-user", "0"], vec![], "0"),
        (vec!["--max-connections-per-user", "many"], vec![], "many"),
        (vec!["--max-message-bytes", "8"], vec![], "8"),
        (vec![], vec![("USERLANE_MAX_MESSAGE_BYTES", "-1")], "-1"),
        (vec!["--queue-depth", "0"], vec![], "0"),
        (vec!["--ping-interval", "0"], vec![], "0"),
        (vec!["--idle-timeout", "1"], vec![], "1"),
        (vec!["--shards", "0"], vec![], "0"),
        (vec!["--agent-step-ms", "soon"], vec![], "soon"),
        (vec!["--agent-runs-per-user", "0"], vec![], "0"),
        (vec!["--ops-listen", "nowhere"], vec![], "nowhere"),
        (vec!["--memory-spike-percent", "100"], vec![], "100"),
        (vec!["--no-such-flag"], vec![], "--no-such-flag"),
        // Values that parse but do not fit together.
        (
            vec!["--offline-buffer", "100", "--queue-depth", "10"],
            vec![],
            "offline_buffer",
        ),
        (
            vec!["--ping-interval", "60", "--idle-timeout", "60"],
            vec![],
            "ping_interval",
        ),
        (
            vec!["--max-connections", "2"],
            vec![],
            "max_connections_per_user",
        ),
        (
            vec!["--max-connections", "100000", "--shards", "1"],
            vec![],
            "capacity",
        ),
        (vec!["--jwt-secret-file", missing], vec![], "cannot read"),
        (
            vec![],
            vec![
                ("USERLANE_ENV", "production"),
                ("USERLANE_JWT_SECRET", "short"),
            ],
            "at least 16 bytes",
        ),
    ];
    for (args, envs, mentions) in cases {
        let mut spawn = Spawn::dev().args(&args);
        for (k, v) in &envs {
            spawn = spawn.env(k, v);
        }
        let out = if args.contains(&"--listen") {
            spawn.run_to_exit_at(None)
        } else {
            spawn.run_to_exit()
        };
        assert_eq!(
            out.code(),
            Some(2),
            "{args:?} {envs:?}: exit {:?}\n{}",
            out.status,
            out.stderr
        );
        assert!(
            out.stderr.contains(mentions),
            "{args:?} {envs:?}: the message does not mention {mentions:?}:\n{}",
            out.stderr
        );
        assert!(
            !out.stdout.contains("listening"),
            "{args:?}: it started anyway"
        );
    }
}

#[test]
fn production_and_staging_refuse_to_start_without_a_jwt_secret() {
    for env in ["production", "staging", "prod"] {
        let out = Spawn::dev().env("USERLANE_ENV", env).run_to_exit();
        assert_eq!(out.code(), Some(2), "{env}: {}", out.stderr);
        assert!(
            out.stderr
                .contains("requires a JWT secret (USERLANE_JWT_SECRET); refusing to start"),
            "{env}: {}",
            out.stderr
        );
        // An empty secret is no secret.
        let out = Spawn::dev()
            .args(&["--env", env])
            .env("USERLANE_JWT_SECRET", "")
            .run_to_exit();
        assert_eq!(out.code(), Some(2), "{env} with an empty secret");
    }
}

#[test]
fn the_secret_can_come_from_a_file() {
    let dir = std::env::temp_dir().join(format!("userlane-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jwt-secret");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let server = Spawn::dev()
        .args(&["--env", "production", "--jwt-secret-file"])
        .arg(file.to_str().unwrap())
        .start();
    run(LIMIT, async {
        // Signed with the file's secret (trailing newline trimmed): admitted.
        let mut c = connect_with_token(server.addr, &signed_token("alice")).await;
        expect_greeting(&mut c, "alice", "production").await;
    });
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn settings_fall_back_to_environment_variables() {
    let server = Spawn::dev()
        .listen_through_env()
        .env("USERLANE_ENV", "testing")
        .env("USERLANE_JWT_SECRET", SECRET)
        .env("USERLANE_MAX_MESSAGE_BYTES", "2048")
        .env("USERLANE_PING_INTERVAL", "9")
        .env("USERLANE_MAX_CONNECTIONS_PER_USER", "1")
        .start();
    // It says where it listens and where to open the page.
    server.wait_for_stdout(&format!(
        "userlane-server (testing) listening on {}",
        server.addr
    ));
    server.wait_for_stdout(&format!("open http://{}/ in a browser", server.addr));
    run(LIMIT, async {
        let auth = format!("Bearer {}", signed_token("alice"));
        let (mut c, _) = ws_connect(server.addr, "/ws", &[("Authorization", &auth)])
            .await
            .expect("admitted");
        let g = expect_greeting(&mut c, "alice", "testing").await;
        assert_eq!(g["data"]["config"]["max_message_size"], 2048);
        assert_eq!(g["data"]["config"]["heartbeat_interval"], 9);
        assert_eq!(
            refused_upgrade(server.addr, "/ws", &[("Authorization", &auth)]).await,
            429
        );
    });
}

#[test]
fn one_shard_with_the_default_limits_starts() {
    // What a one-core machine gets by default: 10,000 connections on one shard.
    let server = Spawn::dev().args(&["--shards", "1"]).start();
    run(LIMIT, async {
        let (mut c, g) = connect_dev(server.addr, "alice").await;
        assert_eq!(g["data"]["config"]["max_message_size"], 65536);
        assert_eq!(g["data"]["config"]["heartbeat_interval"], 25);
        send_user_message(&mut c, "one shard").await;
        expect_agent_run(&mut c, "one shard", "alice").await;
    });
    server.wait_for_log("1 shard(s)");
}

#[test]
fn the_default_command_starts_in_development_on_loopback() {
    // No flags but the address: development, random secret, page and tokens.
    let server = Spawn::dev().no_env("USERLANE_SERVICE_TOKEN").start();
    server.wait_for_log("development mode");
    server.wait_for_log("using a random secret");
    run(LIMIT, async {
        let (_c, g) = connect_dev(server.addr, "alice").await;
        assert_eq!(g["data"]["environment"], "development");
    });
}
