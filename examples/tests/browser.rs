//! The browser page (`GET /`) of `userlane-server` in a real headless
//! Chromium, driven by `examples/browser/test.mjs` (playwright-core from npm,
//! Debian's `/usr/bin/chromium`, never a downloaded browser).
//!
//! Runs only with `USERLANE_BROWSER_TESTS=1` (set by `.ci/run`, which
//! installs Chromium); otherwise it says on stderr that it was skipped and
//! why. With `USERLANE_UPDATE_SCREENSHOT=1` it also refreshes
//! `docs/screenshot.png`, the README's picture.

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

/// Writes straight to the process's stderr: libtest captures `eprintln!`
/// of passing tests, and a skip must never go unseen.
fn say(message: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{message}");
    let _ = err.flush();
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("examples/ is in the workspace")
        .to_path_buf()
}

#[test]
fn browser_page_two_users_in_headless_chromium() {
    if std::env::var("USERLANE_BROWSER_TESTS").as_deref() != Ok("1") {
        say(
            "SKIPPED browser test browser_page_two_users_in_headless_chromium: it needs \
             Chromium (/usr/bin/chromium, Debian package `chromium`) and node/npm, so it runs \
             only with USERLANE_BROWSER_TESTS=1 (as .ci/run does). Nothing was checked in a browser.",
        );
        return;
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "USERLANE_BROWSER_TESTS=1 but {chromium} is missing: apt-get install -y chromium"
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    if !dir.join("node_modules/playwright-core").exists() {
        say("browser test: installing playwright-core (npm ci in examples/browser)");
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("USERLANE_BROWSER_TESTS=1 needs npm on PATH");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }

    let outdir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir")
        .join("browser-test");
    let _ = std::fs::remove_dir_all(&outdir);
    std::fs::create_dir_all(&outdir).unwrap();

    let server = Spawn::dev().env("USERLANE_AGENT_STEP_MS", "40").start();
    let mut node = Command::new("node")
        .arg(dir.join("test.mjs"))
        .arg(server.url())
        .arg(&outdir)
        .env("SERVICE_TOKEN", SERVICE_TOKEN)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        // Inherited: the checks stream into the test's output as they pass.
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("USERLANE_BROWSER_TESTS=1 needs node on PATH");
    let status = wait_with_timeout(&mut node, Duration::from_secs(180)).unwrap_or_else(|| {
        let _ = node.kill();
        let _ = node.wait();
        panic!("the browser test did not finish within 180 s")
    });
    assert!(
        status.success(),
        "the browser test failed ({status}); screenshots and result.json in {}",
        outdir.display()
    );

    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(outdir.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["ok"], true, "{result}");
    assert!(result["checks"].as_u64().unwrap() >= 30, "{result}");
    let screenshot = outdir.join("screenshot.png");
    let png = std::fs::read(&screenshot).expect("the screenshot was written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    say(&format!(
        "browser test passed: {} checks; screenshots in {}",
        result["checks"],
        outdir.display()
    ));
    if std::env::var("USERLANE_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let docs = workspace_root().join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&screenshot, docs.join("screenshot.png")).unwrap();
        say(&format!(
            "updated {}",
            docs.join("screenshot.png").display()
        ));
    }
    // The server served every page; it is still healthy afterwards.
    assert_eq!(get(server.addr, "/healthz").text(), "ok\n");
}
