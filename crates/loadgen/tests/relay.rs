//! Smoke test of B3, the command-floor relay: a real `relay-server` process on a real
//! Redis (`TETHER_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`), 200 signed commands
//! through it from two senders, each answered and verified; then the relay is stopped and
//! its stream must be gone. The benchmark itself (`bench/floors.sh`) is not part of
//! `cargo test`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Kills the relay when the test ends, however it ends.
struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_url() -> String {
    std::env::var("TETHER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[tokio::test]
async fn commands_go_through_the_relay_and_its_stream_is_deleted_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("relay.json");
    let stderr = dir.path().join("relay.log");
    let mut relay = Relay(
        Command::new(env!("CARGO_BIN_EXE_tether-loadgen"))
            .args(["relay-server", "--redis", &redis_url(), "--out-ready-file"])
            .arg(&ready)
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while !ready.exists() {
        if let Ok(Some(status)) = relay.0.try_wait() {
            panic!(
                "relay-server exited ({status}): {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        assert!(start.elapsed() < Duration::from_secs(30), "relay not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = std::fs::read_to_string(&stderr).unwrap();
    let key = log
        .split("stream ")
        .nth(1)
        .map(|k| k.trim().to_owned())
        .expect("the relay names its stream");
    assert!(key.starts_with("tether-b3:"), "{log}");

    let report = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_tether-loadgen"))
        .arg("--ready-file")
        .arg(&ready)
        .args(["relay", "--requests", "200", "--concurrency", "2", "--json"])
        .arg(&report)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "relay run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["completed"], 200, "{r}");
    assert!(r["p50_ms"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["p99_ms"].as_f64().unwrap() >= r["p50_ms"].as_f64().unwrap());

    // A command too short to hold an id and a signature is refused with a code.
    let target = tether_loadgen::target::Target::from_ready_file(&ready).unwrap();
    let api = tether_client::Api::new(&target.url, &target.ca_pem).unwrap();
    let (status, body) = api.post_raw("/command", b"short".to_vec()).await.unwrap();
    assert_eq!(status, 400);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["code"], "bad_request", "{body}");

    // While it runs the stream exists; once stopped (SIGTERM) the relay deletes it.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 1);
    let pid = relay.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = relay.0.wait().unwrap();
    assert!(
        status.success(),
        "relay-server: {status}: {}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0, "the relay left its stream {key} behind");
}

#[test]
fn relay_without_a_ready_file_says_so() {
    let out = Command::new(env!("CARGO_BIN_EXE_tether-loadgen"))
        .args(["relay", "--requests", "1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--ready-file is required"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
