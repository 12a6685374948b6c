//! Telemetry collected while the server is down is kept in the agent's encrypted queue
//! and delivered after the server comes back: the real server (embedded backends) is
//! killed under a connected agent and restarted on the same data dir and port. The
//! queue file holds no plaintext telemetry; on the server, every buffered sample is
//! stored once (no redelivery of a message id) and in the order it was collected.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tether_e2e::{Backends, Server, binary, pair_agent, register_user};
use tether_proto::UnixMillis;

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// The agent's queue database and its WAL, as bytes.
fn queue_bytes(state: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in ["queue.db", "queue.db-wal"] {
        if let Ok(b) = std::fs::read(state.join(name)) {
            bytes.extend(b);
        }
    }
    assert!(
        !bytes.is_empty(),
        "no queue database in {}",
        state.display()
    );
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// How many messages `tether-agent status` says wait in the queue.
fn queued(state: &Path) -> u64 {
    let out = Command::new(binary("tether-agent"))
        .arg("status")
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("queued:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no queue count in status:\n{text}"))
}

/// Sequence refusals, as the gateway logs them or the agent reports them.
fn sequence_errors(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            l.contains("code=2006")
                || l.contains("SEQUENCE_REPLAY")
                || l.contains("SequenceReplay")
                || l.contains(" 2006 ")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_collected_offline_is_flushed_after_reconnect() {
    let mut server = Server::start(&Backends::Embedded);
    let user = register_user(&server, "grace@lab.example").await;
    // Offline, sample every second instead of the server's 10 s.
    let (mut agent, state) =
        pair_agent(&server, &user, "lab-pc-9", &["--telemetry-interval-s", "1"]).await;
    assert_eq!(queued(state.path()), 0);
    let flushed_before = agent.count_lines("flushed ");
    let (_, devices): (u16, Value) = user.get("/api/devices").await.unwrap();
    let device = devices[0]["id"].as_str().unwrap().to_owned();

    let killed_at = now_ms();
    server.kill();
    let first_log = server.proc.output();
    agent.wait_for_line("disconnected", Duration::from_secs(60));
    agent.wait_for_line(
        "keeping telemetry in the offline queue",
        Duration::from_secs(30),
    );
    let start = Instant::now();
    let mut waiting = 0;
    while waiting < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "only {waiting} samples queued; agent output:\n{}",
            agent.output()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        waiting = queued(state.path());
    }

    // What is queued on disk is ciphertext: no field name, metric or id of a telemetry
    // body or envelope appears in the database file or its WAL.
    let on_disk = queue_bytes(state.path());
    assert!(
        contains(&on_disk, "CREATE TABLE"),
        "the bytes read are the queue database (its schema is readable)"
    );
    for plain in [
        "cpu_pct",
        "mem_used_bytes",
        "collected_at",
        "\"telemetry\"",
        "message_id",
        device.as_str(),
    ] {
        assert!(
            !contains(&on_disk, plain),
            "the queue file holds {plain:?} in clear"
        );
    }

    server.restart();
    let line = agent.wait_for_new_line("flushed ", flushed_before, Duration::from_secs(120));
    let flushed_at = now_ms();
    let n: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"));
    assert!(n >= waiting, "flushed {n}, but {waiting} were queued");
    assert_eq!(
        queued(state.path()),
        0,
        "the queue is empty after the flush"
    );

    // The gateway answers a refused frame on its own time: give it a moment to do so
    // before looking for refusals (a negative check needs a window).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second_log = server.proc.output();
    for log in [&first_log, &second_log] {
        let bad = sequence_errors(log);
        assert!(
            bad.is_empty(),
            "sequence refusals in the server log: {bad:#?}"
        );
    }
    // Server side: every sample collected while the server was down is stored, once,
    // and the store received them in the order they were collected.
    let store = server.store().await;
    let mut events = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let events = store
                .telemetry_events(&device, UnixMillis(0), 10_000)
                .await
                .unwrap();
            let offline = events
                .iter()
                .filter(|e| (killed_at..flushed_at).contains(&e.event.collected_at.0))
                .count();
            if u64::try_from(offline).unwrap() >= n {
                break events;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the {n} flushed samples were not all stored"));
    events.sort_by_key(|e| e.id);
    for pair in events.windows(2) {
        let (a, b) = (&pair[0].event, &pair[1].event);
        assert!(
            a.collected_at < b.collected_at && a.seq < b.seq,
            "stored out of order: {} (seq {}, collected {}) before {} (seq {}, collected {})",
            a.message_id,
            a.seq,
            a.collected_at.0,
            b.message_id,
            b.seq,
            b.collected_at.0
        );
    }
    let redelivered = server.proc.count_lines("telemetry already stored");
    assert_eq!(redelivered, 0, "a message id was delivered twice");

    let agent_log = agent.output();
    assert!(
        !agent_log.contains("the server refused"),
        "the agent saw refusals:\n{agent_log}"
    );
    assert!(sequence_errors(&agent_log).is_empty(), "{agent_log}");
    drop(agent);
    drop(server);
}
