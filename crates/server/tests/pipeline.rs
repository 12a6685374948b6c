//! The telemetry pipeline in an in-process server with a manual clock: telemetry records
//! appended to the bus's telemetry stream (as the gateway does once it accepted them) go
//! through the AnalyticsWorker into the store, the live stream, the alert rules and the
//! webhook (a real HTTP receiver in the test); the RollupWorker's rollups of a known
//! series; the OfflineWorker's alerts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

#[path = "pipeline/receiver.rs"]
mod receiver;
mod support;

use std::future::Future;
use std::time::Duration;

use ring::hmac;
use serde_json::{Value, json};
use support::{FakeAgent, TestServer};
use tether_proto::messages::notify::Severity;
use tether_proto::messages::session::{DiskUsage, NetUsage, Telemetry};
use tether_proto::{Clock, ErrorCode, UnixMillis};
use tether_server::alerts::webhook::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use tether_server::auth::Caller;
use tether_server::config::Secret;
use tether_server::events::{
    ANALYTICS_GROUP, LIVE_STREAM, LiveEvent, LiveKind, STREAM_MAX_LEN, TELEMETRY_STREAM,
    TelemetryRecord, live_events_of,
};
use tether_server::routes::devices::presence_key;
use tether_server::workers::offline::OfflineWorker;
use tether_store::RollupPeriod;

const SECRET: &str = "the pipeline test's webhook secret";
const LIVE_GROUP: &str = "pipeline-test";

/// Polls `check` every 50 ms until it returns `Some`, for up to 20 s: background workers
/// run on their own schedule (the manual clock does not drive tokio's timers).
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..400 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Registers alice and returns her API client and user id.
async fn alice(srv: &TestServer) -> (tether_client::Api, String) {
    let (api, login, _) = srv.user("alice@lab.example").await;
    let _ = login;
    let (_, me): (u16, Value) = api.get("/api/me").await.unwrap();
    let id = me["id"].as_str().unwrap().to_owned();
    (api, id)
}

/// Pairs a new device to the user behind `api`; returns its id.
async fn pair(srv: &TestServer, api: &tether_client::Api) -> String {
    let mut agent = FakeAgent::new();
    let pr = agent.request_pairing(srv).await;
    let token = pr["pair_token"].as_str().unwrap().to_owned();
    let (s, _): (u16, Value) = api
        .post("/api/pair/confirm", &json!({"pair_token": token}))
        .await
        .unwrap();
    assert_eq!(s, 200);
    let (s, _) = agent.activate(srv, &token).await.unwrap();
    assert_eq!(s, 200);
    agent.device_id.unwrap()
}

fn body(collected_at: UnixMillis, cpu: f64) -> Telemetry {
    Telemetry {
        collected_at,
        cpu_pct: cpu,
        mem_used_bytes: 4_000_000_000,
        mem_total_bytes: 16_000_000_000,
        disks: vec![DiskUsage {
            mount: "/".into(),
            used_bytes: 400,
            total_bytes: 1000,
        }],
        net: NetUsage {
            rx_bps: 20_000.0,
            tx_bps: 5_000.0,
            rx_total_bytes: 1,
            tx_total_bytes: 1,
        },
    }
}

/// Appends a record to the telemetry stream, as the gateway does when it accepts one.
async fn send(srv: &TestServer, device: &str, seq: u64, collected_at: UnixMillis, cpu: f64) {
    send_received(srv, device, seq, collected_at, cpu, srv.clock.now()).await;
}

async fn send_received(
    srv: &TestServer,
    device: &str,
    seq: u64,
    collected_at: UnixMillis,
    cpu: f64,
    received_at: UnixMillis,
) {
    let record = TelemetryRecord {
        device_id: device.to_owned(),
        owner_id: None,
        message_id: format!("{device}-{seq}"),
        seq,
        received_at,
        body: body(collected_at, cpu),
    };
    srv.state()
        .bus
        .append(
            TELEMETRY_STREAM,
            &serde_json::to_vec(&record).unwrap(),
            STREAM_MAX_LEN,
        )
        .await
        .unwrap();
}

/// A steady CPU around 5 %, sample `i`.
fn steady(i: u64) -> f64 {
    5.0 + ((i as f64) * 1.7).sin() * 0.5
}

/// Waits until the analytics stored `n` events of the device and acknowledged everything.
async fn processed(srv: &TestServer, device: &str, n: usize) {
    let state = srv.state();
    eventually("the analytics to process every record", || async {
        let stored = state
            .store
            .telemetry_events(device, UnixMillis(0), 1000)
            .await
            .unwrap()
            .len();
        let pending = state
            .bus
            .pending_count(TELEMETRY_STREAM, ANALYTICS_GROUP)
            .await
            .unwrap_or(1);
        (stored == n && pending == 0).then_some(())
    })
    .await;
}

/// Every live event published so far (read through the test's own consumer group). The
/// live hub appends to the bus through an outbox that gathers events for 10 ms, so this
/// reads until the stream has been quiet for 200 ms.
async fn live_events(srv: &TestServer) -> Vec<LiveEvent> {
    let bus = &srv.state().bus;
    let mut out = Vec::new();
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        let entries = bus
            .read_group(LIVE_STREAM, LIVE_GROUP, "t", 500, Duration::ZERO)
            .await
            .unwrap();
        if entries.is_empty() {
            if quiet_since.elapsed() >= Duration::from_millis(200) {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        quiet_since = tokio::time::Instant::now();
        for e in entries {
            out.extend(live_events_of(&e.payload).unwrap());
        }
    }
}

fn caller_for(user: tether_store::User) -> Caller {
    Caller {
        user,
        session_id: None,
        amr: Vec::new(),
    }
}

/// Reads the next webhook request and checks its signature; returns the body.
async fn next_webhook(rx: &mut tokio::sync::mpsc::UnboundedReceiver<receiver::Request>) -> Value {
    let req = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a webhook request within 20 s")
        .unwrap();
    assert!(
        req.head.starts_with("POST /tether-alerts HTTP/1.1"),
        "{}",
        req.head
    );
    let sig = req.header(SIGNATURE_HEADER).expect("signed");
    let mac = hex::decode(sig.strip_prefix("sha256=").unwrap()).unwrap();
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    hmac::verify(&key, &req.body, &mac).expect("the HMAC matches the body");
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        req.header(TIMESTAMP_HEADER).unwrap(),
        body["sent_at"].to_string()
    );
    body
}

#[tokio::test]
async fn a_cpu_spike_raises_an_anomaly_alert_in_the_store_live_and_at_the_webhook() {
    let (url, mut hooks) = receiver::start().await;
    let srv = TestServer::start_with(|c| {
        c.alerts.webhook_url = Some(url.clone());
        c.alerts.webhook_secret = Some(Secret::new(SECRET));
    })
    .await;
    let state = srv.state();
    state
        .bus
        .ensure_group(LIVE_STREAM, LIVE_GROUP)
        .await
        .unwrap();
    let (api, alice_id) = alice(&srv).await;
    let device = pair(&srv, &api).await;

    let start = srv.clock.now();
    for i in 0..20 {
        send(
            &srv,
            &device,
            i + 1,
            UnixMillis(start.0 + i * 10_000),
            steady(i),
        )
        .await;
    }
    send(&srv, &device, 21, UnixMillis(start.0 + 200_000), 99.0).await;
    processed(&srv, &device, 21).await;

    // The store: every event with its score, and one critical anomaly alert.
    let events = state
        .store
        .telemetry_events(&device, UnixMillis(0), 100)
        .await
        .unwrap();
    let spike = &events[0].event;
    assert_eq!(spike.cpu_pct, 99.0);
    assert!(spike.risk_score > 0.8, "spike scored {}", spike.risk_score);
    assert!(events[1..].iter().all(|e| e.event.risk_score < 0.5));
    assert_eq!(spike.disk_used_pct, Some(40.0));
    let alerts = state.store.all_alerts(true, 10).await.unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert.kind, "anomaly");
    assert_eq!(alert.severity, Severity::Critical);
    assert_eq!(alert.device_id, device);
    assert_eq!(alert.owner_id.as_deref(), Some(alice_id.as_str()));
    assert!(alert.risk_score.unwrap() > 0.8);
    assert!(alert.message.contains("cpu_pct"), "{}", alert.message);
    assert_eq!(
        state.store.device_last_seen(&device).await.unwrap(),
        Some(start)
    );

    // The live stream: scored telemetry and the alert.
    let live = live_events(&srv).await;
    let scored: Vec<_> = live
        .iter()
        .filter(|e| e.kind == LiveKind::Telemetry && e.data.get("risk_score").is_some())
        .collect();
    assert_eq!(scored.len(), 21);
    assert!(scored.iter().all(|e| e.device_id == device));
    let last = scored.last().unwrap();
    assert_eq!(last.data["cpu_pct"], 99.0);
    assert_eq!(last.data["message_id"], format!("{device}-21").as_str());
    assert!(last.data["risk_score"].as_f64().unwrap() > 0.8);
    // In order: the samples by seq (reads' live events go out one read at a time), and
    // the alert after the sample that raised it.
    let ids: Vec<&str> = scored
        .iter()
        .map(|e| e.data["message_id"].as_str().unwrap_or_default())
        .collect();
    let in_order: Vec<String> = (1..=21).map(|seq| format!("{device}-{seq}")).collect();
    assert_eq!(ids, in_order);
    let spike_at = live
        .iter()
        .position(|e| e.data["message_id"] == format!("{device}-21").as_str())
        .expect("the spike on the live stream");
    let alert_at = live
        .iter()
        .position(|e| e.kind == LiveKind::Alert)
        .expect("an alert on the live stream");
    assert!(alert_at > spike_at, "the alert went out before its sample");
    let live_alert = &live[alert_at];
    assert_eq!(live_alert.device_id, device);
    assert_eq!(live_alert.owner_id.as_deref(), Some(alice_id.as_str()));
    assert_eq!(live_alert.data["id"], alert.id.as_str());
    assert_eq!(live_alert.data["kind"], "anomaly");
    assert_eq!(live_alert.data["severity"], "critical");
    assert!(live_alert.data["risk_score"].as_f64().unwrap() > 0.8);
    assert!(live_alert.data["acked_at"].is_null());

    // The webhook: signed, with the alert.
    let hook = next_webhook(&mut hooks).await;
    assert_eq!(hook["event"], "alert.raised");
    assert_eq!(hook["alert"]["id"], alert.id.as_str());
    assert_eq!(hook["alert"]["kind"], "anomaly");
    assert!(hook["alert"]["risk_score"].as_f64().unwrap() > 0.8);

    // A second spike while the alert is open raises nothing new.
    for i in 22..30 {
        send(
            &srv,
            &device,
            i,
            UnixMillis(start.0 + i * 10_000),
            steady(i),
        )
        .await;
    }
    send(&srv, &device, 30, UnixMillis(start.0 + 300_000), 99.0).await;
    processed(&srv, &device, 30).await;
    assert_eq!(state.store.all_alerts(true, 10).await.unwrap().len(), 1);

    // Acknowledging: a stranger cannot see it; the owner acknowledges once.
    let (_, _, _) = srv.user("mallory@lab.example").await;
    let mallory = state
        .store
        .user_by_email("mallory@lab.example")
        .await
        .unwrap()
        .unwrap();
    let refused = tether_server::alerts::ack(state, &alert.id, &caller_for(mallory))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), ErrorCode::NotFound);
    let owner = state.store.user_by_id(&alice_id).await.unwrap().unwrap();
    let acked = tether_server::alerts::ack(state, &alert.id, &caller_for(owner.clone()))
        .await
        .unwrap();
    assert_eq!(acked.acked_by.as_deref(), Some(alice_id.as_str()));
    assert!(acked.acked_at.is_some());
    let again = tether_server::alerts::ack(state, &alert.id, &caller_for(owner.clone()))
        .await
        .unwrap();
    assert_eq!(again, acked, "acknowledging twice changes nothing");
    let hook = next_webhook(&mut hooks).await;
    assert_eq!(hook["event"], "alert.acked");
    assert_eq!(hook["alert"]["acked_by"], alice_id.as_str());
    let live = live_events(&srv).await;
    assert!(
        live.iter()
            .any(|e| e.kind == LiveKind::Alert && !e.data["acked_at"].is_null()),
        "the acknowledgement is a live event too"
    );
    let listed = tether_server::alerts::list(state, &caller_for(owner), false, 50)
        .await
        .unwrap();
    assert!(listed.is_empty(), "acknowledged alerts are not open");

    srv.stop().await;
}

#[tokio::test]
async fn a_steady_series_raises_nothing() {
    let (url, mut hooks) = receiver::start().await;
    let srv = TestServer::start_with(|c| {
        c.alerts.webhook_url = Some(url.clone());
        c.alerts.webhook_secret = Some(Secret::new(SECRET));
    })
    .await;
    let state = srv.state();
    state
        .bus
        .ensure_group(LIVE_STREAM, LIVE_GROUP)
        .await
        .unwrap();
    let (api, _) = alice(&srv).await;
    let device = pair(&srv, &api).await;

    let start = srv.clock.now();
    for i in 0..60 {
        send(
            &srv,
            &device,
            i + 1,
            UnixMillis(start.0 + i * 10_000),
            steady(i),
        )
        .await;
    }
    // A redelivered record (same message id) is stored once.
    send(&srv, &device, 60, UnixMillis(start.0 + 590_000), steady(59)).await;
    processed(&srv, &device, 60).await;

    let events = state
        .store
        .telemetry_events(&device, UnixMillis(0), 100)
        .await
        .unwrap();
    assert!(events.iter().all(|e| e.event.risk_score < 0.5));
    assert!(state.store.all_alerts(true, 10).await.unwrap().is_empty());
    let live = live_events(&srv).await;
    assert!(!live.iter().any(|e| e.kind == LiveKind::Alert));
    assert_eq!(
        live.iter()
            .filter(|e| e.kind == LiveKind::Telemetry && e.data.get("risk_score").is_some())
            .count(),
        60,
        "one scored live event per stored sample"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), hooks.recv())
            .await
            .is_err(),
        "no webhook call"
    );
    srv.stop().await;
}

#[tokio::test]
async fn an_entry_of_many_records_is_stored_record_by_record_and_acknowledged_once() {
    let srv = TestServer::start().await;
    let (api, _) = alice(&srv).await;
    let (one, two) = (pair(&srv, &api).await, pair(&srv, &api).await);
    let now = srv.clock.now();
    let record = |device: &str, seq: u64, cpu: f64| TelemetryRecord {
        device_id: device.to_owned(),
        owner_id: None,
        message_id: format!("{device}-{seq}"),
        seq,
        received_at: now,
        body: body(UnixMillis(now.0 - 1_000 + seq), cpu),
    };
    // As the gateway appends them: a JSON array, here with one record that fails
    // validation (a CPU over 100 %) between good ones of two devices.
    let records = vec![
        record(&one, 1, 5.0),
        record(&two, 1, 6.0),
        record(&one, 2, 150.0),
        record(&one, 3, 7.0),
    ];
    srv.state()
        .bus
        .append(
            TELEMETRY_STREAM,
            &serde_json::to_vec(&records).unwrap(),
            STREAM_MAX_LEN,
        )
        .await
        .unwrap();
    processed(&srv, &one, 2).await;
    processed(&srv, &two, 1).await;
    let stored: Vec<u64> = srv
        .state()
        .store
        .telemetry_events(&one, UnixMillis(0), 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event.seq)
        .collect();
    assert_eq!(stored.len(), 2);
    assert!(stored.contains(&1) && stored.contains(&3), "{stored:?}");
    srv.stop().await;
}

#[tokio::test]
async fn rollups_of_a_known_series() {
    let srv = TestServer::start_with(|c| c.telemetry.rollup_every_s = 1).await;
    let state = srv.state();
    let (api, _) = alice(&srv).await;
    let device = pair(&srv, &api).await;

    // CPU 1..=100 over the previous UTC hour (a bucket the worker recomputes).
    let hour = RollupPeriod::Hourly.bucket_start(srv.clock.now());
    let prev = UnixMillis(hour.0 - RollupPeriod::Hourly.millis());
    for i in 1..=100u64 {
        send(&srv, &device, i, UnixMillis(prev.0 + i * 30_000), i as f64).await;
    }
    processed(&srv, &device, 100).await;

    let cpu = |period: RollupPeriod, since: UnixMillis| {
        let device = device.clone();
        async move {
            state
                .store
                .rollups(&device, period, since, 100)
                .await
                .unwrap()
                .into_iter()
                .find(|r| r.metric == "cpu_pct" && r.count == 100)
        }
    };
    let hourly = eventually("the hourly rollup", || cpu(RollupPeriod::Hourly, prev)).await;
    assert_eq!(hourly.bucket_start, prev);
    assert_eq!(
        (hourly.min, hourly.max, hourly.mean, hourly.p95),
        (1.0, 100.0, 50.5, 95.0)
    );
    let day = RollupPeriod::Daily.bucket_start(prev);
    let daily = eventually("the daily rollup", || cpu(RollupPeriod::Daily, day)).await;
    assert_eq!(daily.bucket_start, day);
    assert_eq!(
        (daily.min, daily.max, daily.mean, daily.p95),
        (1.0, 100.0, 50.5, 95.0)
    );
    let others: Vec<_> = state
        .store
        .rollups(&device, RollupPeriod::Hourly, prev, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.bucket_start == prev)
        .map(|r| (r.metric, r.count, r.mean))
        .collect();
    assert!(
        others.contains(&("mem_used_pct".into(), 100, 25.0)),
        "{others:?}"
    );
    assert!(
        others.contains(&("disk_used_pct".into(), 100, 40.0)),
        "{others:?}"
    );
    assert!(
        others.contains(&("rx_bps".into(), 100, 20_000.0)),
        "{others:?}"
    );

    // Retention: once the samples are older than telemetry.retention_days (30), the raw
    // events go and the rollups stay.
    srv.advance(31 * 86_400);
    eventually("raw telemetry to be pruned", || async {
        state
            .store
            .telemetry_events(&device, UnixMillis(0), 10)
            .await
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(cpu(RollupPeriod::Hourly, prev).await.is_some());
    srv.stop().await;
}

#[tokio::test]
async fn a_silent_device_gets_one_offline_alert() {
    let srv = TestServer::start_with(|c| {
        c.alerts.offline_after_s = 60;
        c.alerts.offline_check_s = 1;
    })
    .await;
    let state = srv.state();
    let (api, alice_id) = alice(&srv).await;
    let silent = pair(&srv, &api).await;
    let present = pair(&srv, &api).await;
    let talking = pair(&srv, &api).await;

    // Two minutes on, one device holds a presence key (a live session) and another has
    // just sent telemetry; both are in place before the clock moves, so the background
    // scan never sees them silent.
    let later = UnixMillis(srv.clock.now().0 + 120_000);
    state
        .bus
        .put_ttl(
            &presence_key(&present),
            b"session",
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    send_received(&srv, &talking, 1, later, 10.0, later).await;
    processed(&srv, &talking, 1).await;
    srv.advance(120);

    let alert = eventually("an offline alert", || async {
        state.store.open_alert(&silent, "offline").await.unwrap()
    })
    .await;
    assert_eq!(alert.severity, Severity::Warning);
    assert_eq!(alert.owner_id.as_deref(), Some(alice_id.as_str()));
    assert!(alert.message.contains("2 minutes"), "{}", alert.message);

    // A scan now (the worker's, run by the test) raises nothing more: the silent device
    // was told already, the others are not silent.
    let worker = OfflineWorker::new(state.clone());
    assert_eq!(worker.scan().await.unwrap(), 0);
    assert_eq!(
        state.store.open_alert(&present, "offline").await.unwrap(),
        None
    );
    assert_eq!(
        state.store.open_alert(&talking, "offline").await.unwrap(),
        None
    );
    assert_eq!(state.store.all_alerts(true, 10).await.unwrap().len(), 1);

    // Acknowledged, still silent: still not told twice.
    let owner = state.store.user_by_id(&alice_id).await.unwrap().unwrap();
    tether_server::alerts::ack(state, &alert.id, &caller_for(owner))
        .await
        .unwrap();
    assert_eq!(worker.scan().await.unwrap(), 0);

    // It comes back, then goes silent again: a new alert. The present device's session
    // lapsed meanwhile, so it is silent now too.
    send(&srv, &silent, 1, srv.clock.now(), 10.0).await;
    processed(&srv, &silent, 1).await;
    srv.advance(3700);
    let raised = worker.scan().await.unwrap();
    let open: Vec<_> = state
        .store
        .all_alerts(false, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.device_id)
        .collect();
    // The background worker may have raised some of them first.
    assert!(raised <= 3);
    for d in [&silent, &present, &talking] {
        assert!(
            open.contains(d),
            "{d} should have an open offline alert: {open:?}"
        );
    }
    srv.stop().await;
}
