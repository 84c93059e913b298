//! `userlane-server` under the attacks of "Bounded both ways": what a
//! client sends never reaches the log beyond a short excerpt, refusal lines
//! are rate-limited, and the JWT and origin settings work from the command
//! line and the environment.

mod support;

use std::time::Duration;

use base64::Engine as _;
use support::*;

const LIMIT: Duration = Duration::from_secs(60);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token whose header names `alg` (unsigned; refused before any check of the signature).
fn token_with_alg(alg: &str) -> String {
    let header = b64(serde_json::json!({ "alg": alg, "typ": "JWT" })
        .to_string()
        .as_bytes());
    let payload = b64(br#"{"sub":"alice","exp":4102444800}"#);
    format!("{header}.{payload}.c2ln")
}

#[test]
fn forged_token_headers_never_reach_the_log_and_refusals_are_rate_limited() {
    let server = Spawn::dev().start();
    let alg = format!("HS256\nINFO forged log line {}", "A".repeat(10 * 1024));
    let bearer = format!("Bearer {}", token_with_alg(&alg));
    run(LIMIT, async {
        for _ in 0..30 {
            assert_eq!(
                refused_upgrade(server.addr, "/ws", &[("Authorization", &bearer)]).await,
                401
            );
        }
        // The next window reports what the first one dropped.
        smol::Timer::after(Duration::from_millis(1100)).await;
        assert_eq!(
            refused_upgrade(server.addr, "/ws", &[("Authorization", &bearer)]).await,
            401
        );
    });
    let log = server.wait_for_log("suppressed");
    assert!(
        !log.lines().any(|l| l.starts_with("INFO forged")),
        "a forged line reached the log:\n{log:.2000}"
    );
    assert!(!log.contains("AAAAAAAAAAAAAAAA"), "the alg reached the log");
    let refusals = log
        .lines()
        .filter(|l| l.contains("refused upgrade"))
        .count();
    assert!(
        // 31 without the limit; 11 when the 30 fit one window.
        (2..=21).contains(&refusals),
        "{refusals} refusal lines for 31 refusals:\n{log}"
    );
    assert!(
        log.contains("refusal(s) with status 401 suppressed"),
        "{log}"
    );
    assert!(log.len() < 8 * 1024, "{} bytes of log", log.len());
}

#[test]
fn dev_tokens_carry_the_configured_issuer_and_audience() {
    // /dev/token never signs with a configured secret (it answers 404 then),
    // so this development server signs with its own per-process secret.
    let server = Spawn::dev()
        .args(&["--jwt-issuer", "auth.example"])
        .env("USERLANE_JWT_AUDIENCE", "userlane")
        .start();
    // /dev/token mints what the server accepts: a token carrying both claims …
    let token = dev_token(server.addr, "alice");
    let payload = token.split('.').nth(1).expect("a JWT");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iss"], "auth.example", "{claims}");
    assert_eq!(claims["aud"], "userlane", "{claims}");
    run(LIMIT, async {
        // … which the server takes.
        let (_client, _) = connect_dev(server.addr, "alice").await;
    });
}

#[test]
fn allowed_origins_come_from_the_environment() {
    let server = Spawn::with_env("production")
        .env("USERLANE_ALLOWED_ORIGINS", "https://app.example")
        .start();
    let auth = format!("Bearer {}", signed_token("alice"));
    run(LIMIT, async {
        assert_eq!(
            refused_upgrade(
                server.addr,
                "/ws",
                &[("Authorization", &auth), ("Origin", "https://evil.example")]
            )
            .await,
            403
        );
        let ok = ws_connect(
            server.addr,
            "/ws",
            &[("Authorization", &auth), ("Origin", "https://app.example")],
        )
        .await;
        assert!(ok.is_ok(), "{:?}", ok.err());
    });
    let bad = Spawn::dev()
        .args(&["--allowed-origins", "app.example"])
        .run_to_exit();
    assert_eq!(bad.code(), Some(2), "{}", bad.stderr);
}

#[test]
fn a_slow_body_on_healthz_is_cut_at_the_request_timeout() {
    use std::io::{Read, Write};
    let server = Spawn::dev().args(&["--request-timeout", "1"]).start();
    let started = std::time::Instant::now();
    let mut slow = std::net::TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n")
        .unwrap();
    let mut dripper = slow.try_clone().unwrap();
    let drip = std::thread::spawn(move || {
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(250));
            if dripper.write_all(b"x").is_err() {
                break;
            }
        }
    });
    // Served meanwhile.
    assert_eq!(get(server.addr, "/healthz").status, 200);
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    let after = started.elapsed();
    drop(slow);
    let _ = drip.join();
    assert!(
        after < Duration::from_millis(2500),
        "the slow body held its socket for {after:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
}
