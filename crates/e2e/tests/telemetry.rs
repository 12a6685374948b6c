//! A paired agent's life with the real `tether-server` and `tether-agent` binaries, once
//! on the embedded backends and once on MariaDB + Redis: its telemetry lands in
//! `telemetry_events` and on its owner's live view (SSE); killed with SIGKILL, the
//! device goes offline within the presence TTL and an `offline` alert is raised (live
//! and listed); started again on the same state dir it comes back as the same device,
//! without pairing again.
//!
//! The server runs with short intervals so the test does not wait on the defaults:
//! heartbeat 5 s, telemetry 1 s, presence TTL 10 s, offline alert after 3 s silent.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::time::{Duration, Instant};

use serde_json::Value;
use tether_client::sse::EventStream;
use tether_e2e::{Backends, Server, on_mysql_and_redis, pair_agent, register_user, run_agent};
use tether_proto::UnixMillis;

/// The server's presence TTL in this test (`gateway.presence_ttl_s`).
const PRESENCE_TTL: Duration = Duration::from_secs(10);

const SERVER_ENV: &[(&str, &str)] = &[
    ("TETHER_SERVER_GATEWAY__HEARTBEAT_INTERVAL_S", "5"),
    ("TETHER_SERVER_GATEWAY__TELEMETRY_INTERVAL_S", "1"),
    ("TETHER_SERVER_GATEWAY__PRESENCE_TTL_S", "10"),
    ("TETHER_SERVER_ALERTS__OFFLINE_AFTER_S", "3"),
    ("TETHER_SERVER_ALERTS__OFFLINE_CHECK_S", "1"),
];

/// The next live event of `kind` about `device`; fails after
/// `within`.
async fn next_live(live: &mut EventStream, kind: &str, device: &str, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let e = tokio::time::timeout_at(deadline, live.next_event())
            .await
            .unwrap_or_else(|_| panic!("no live {kind} event for {device} within {within:?}"))
            .expect("the live stream reads")
            .expect("the live stream stays open");
        let v: Value = serde_json::from_str(&e.data).expect("live events are JSON");
        if e.event == kind && v["device_id"] == device {
            assert_eq!(v["kind"], kind, "the SSE event name is the kind: {v}");
            return v;
        }
    }
}

/// Polls the API until the device's `online` flag is `want`.
async fn wait_online(user: &tether_client::Api, device: &str, want: bool, within: Duration) {
    let start = Instant::now();
    loop {
        let (s, d): (u16, Value) = user.get(&format!("/api/devices/{device}")).await.unwrap();
        assert_eq!(s, 200, "{d}");
        if d["online"] == want {
            return;
        }
        assert!(
            start.elapsed() < within,
            "device online is not {want} within {within:?}: {d}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn agent_life(backends: Backends) {
    let server = Server::start_with(&backends, SERVER_ENV);
    let store = server.store().await;
    let user = register_user(&server, "ada@lab.example").await;
    let mut live = user
        .get_stream("/api/live")
        .await
        .expect("the live view opens");

    let (mut agent, state) = pair_agent(&server, &user, "lab-pc-3", &[]).await;
    let (_, devices): (u16, Value) = user.get("/api/devices").await.unwrap();
    assert_eq!(devices.as_array().unwrap().len(), 1, "{devices}");
    let device = devices[0]["id"].as_str().unwrap().to_owned();

    // Online, and its telemetry reaches the live view scored by the analytics.
    let on = next_live(&mut live, "presence", &device, Duration::from_secs(30)).await;
    assert_eq!(on["data"]["online"], true, "{on}");
    let t = next_live(&mut live, "telemetry", &device, Duration::from_secs(30)).await;
    let cpu = t["data"]["cpu_pct"].as_f64().expect("cpu_pct");
    assert!((0.0..=100.0).contains(&cpu), "{t}");
    assert!(t["data"]["mem_total_bytes"].as_u64().unwrap() > 0, "{t}");
    assert!(t["data"]["risk_score"].is_number(), "{t}");
    let message_id = t["data"]["message_id"].as_str().unwrap().to_owned();

    // ... and is stored in telemetry_events, under the message id seen live.
    let start = Instant::now();
    let stored = loop {
        let events = store
            .telemetry_events(&device, UnixMillis(0), 1000)
            .await
            .unwrap();
        if let Some(e) = events.iter().find(|e| e.event.message_id == message_id) {
            break e.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{message_id} never stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stored.event.device_id, device);
    assert_eq!(stored.event.cpu_pct, cpu);
    assert!(stored.event.mem_total_bytes > 0);

    // SIGKILL: no goodbye from the agent. Offline within the presence TTL, on the live
    // view and in the API.
    agent.kill();
    let killed = Instant::now();
    let off = next_live(&mut live, "presence", &device, PRESENCE_TTL).await;
    assert_eq!(off["data"]["online"], false, "{off}");
    let remaining = PRESENCE_TTL.saturating_sub(killed.elapsed());
    wait_online(&user, &device, false, remaining).await;
    assert!(
        killed.elapsed() <= PRESENCE_TTL,
        "offline after {:?}",
        killed.elapsed()
    );

    // The OfflineWorker raises an `offline` alert: live, then listed. (The agent reports
    // this machine's real disks and load, which may raise other alerts first.)
    let deadline = Instant::now() + Duration::from_secs(30);
    let alert = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let a = next_live(&mut live, "alert", &device, left).await;
        if a["data"]["kind"] == "offline" {
            break a;
        }
    };
    let alert_id = alert["data"]["id"].as_str().unwrap().to_owned();
    let (s, alerts): (u16, Value) = user.get("/api/alerts").await.unwrap();
    assert_eq!(s, 200);
    assert!(
        alerts
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == alert_id.as_str() && a["device_id"] == device.as_str()),
        "the offline alert is listed: {alerts}"
    );

    // Started again on the same state dir: no pairing, same device, online again, and
    // its telemetry flows under the same id.
    let mut agent = run_agent(&server, state.path(), "lab-pc-3", &[]);
    agent.wait_for_line("connected: session", Duration::from_secs(60));
    assert!(
        !agent.output().contains("pair URL"),
        "the agent paired again:\n{}",
        agent.output()
    );
    let on = next_live(&mut live, "presence", &device, Duration::from_secs(30)).await;
    assert_eq!(on["data"]["online"], true, "{on}");
    wait_online(&user, &device, true, Duration::from_secs(10)).await;
    let (_, devices): (u16, Value) = user.get("/api/devices").await.unwrap();
    assert_eq!(
        devices.as_array().unwrap().len(),
        1,
        "still one device: {devices}"
    );
    assert_eq!(devices[0]["id"], device.as_str());
    let t = next_live(&mut live, "telemetry", &device, Duration::from_secs(30)).await;
    assert_ne!(t["data"]["message_id"], message_id.as_str());

    drop(live);
    drop(agent);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_telemetry_presence_and_offline_alert_on_embedded_backends() {
    agent_life(Backends::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_telemetry_presence_and_offline_alert_on_mariadb_and_redis() {
    on_mysql_and_redis(agent_life).await;
}
