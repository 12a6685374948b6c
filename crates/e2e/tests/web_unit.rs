//! The web app's unit tests (vitest, `web/src/**/*.test.ts`) as part of `cargo test`, so
//! the README's one test command covers the front end too. Needs Node.js 20+ and npm;
//! installs `web/node_modules` from the lockfile (`npm ci`) when it is missing. The
//! browser suite (`web/e2e`) needs Chromium and runs in `.ci/run` (docs/web.md).
#![allow(clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../web")
}

fn npm(args: &[&str]) -> Output {
    Command::new("npm")
        .args(args)
        .current_dir(web_dir())
        .env("CI", "true") // vitest: run once, no watch, no colours
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run npm ({e}): the web app's unit tests need Node.js 20+ and npm \
                 (Debian: apt-get install nodejs npm)"
            )
        })
}

fn check(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn web_unit_tests_pass() {
    if !web_dir().join("node_modules/.bin/vitest").exists() {
        check("npm ci", &npm(&["ci", "--no-audit", "--no-fund"]));
    }
    let out = npm(&["test"]);
    check("npm test (vitest)", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("passed") && !stdout.contains("failed"),
        "vitest did not report passing tests:\n{stdout}"
    );
}
