//! Telemetry collected while the server is down is kept in the agent's encrypted queue
//! and delivered after the server comes back: the real server (embedded backends) is
//! killed under a connected agent and restarted on the same data dir and port.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tether_e2e::{Backends, Server, binary, pair_agent, register_user};

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

    server.restart();
    let line = agent.wait_for_new_line("flushed ", flushed_before, Duration::from_secs(120));
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
    let agent_log = agent.output();
    assert!(
        !agent_log.contains("the server refused"),
        "the agent saw refusals:\n{agent_log}"
    );
    assert!(sequence_errors(&agent_log).is_empty(), "{agent_log}");
    drop(agent);
    drop(server);
}
