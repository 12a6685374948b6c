//! Anomaly alerts from telemetry sent through the real gateway, in an in-process server
//! with a manual clock: a paired test agent connects over mTLS and sends signed telemetry
//! frames ten (manual) seconds apart; the gateway verifies and accepts them, the
//! AnalyticsWorker scores and stores them. A sudden CPU spike after a steady series
//! raises one `anomaly` alert with a risk score above 0.8 that reaches the owner's live
//! view, the device's agent (a signed `alert_push`) and the webhook receiver (a real HTTP
//! server in the test, which checks the HMAC signature); a steady series raises none.
//! Waits are for delivery (polled with a deadline); only the "nothing more arrives" check
//! of the steady series waits a short grace period.
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

use std::time::Duration;

use futures_util::StreamExt;
use ring::hmac;
use serde_json::Value;
use support::live::{
    eventually, live, marker, next_event, online, paired, sample, subscribe, telemetry_len,
    user_id, wait_telemetry_len,
};
use support::{FakeAgent, TestServer, read_verified};
use tether_client::WsStream;
use tether_proto::messages::notify::Severity;
use tether_proto::messages::session::Telemetry;
use tether_proto::{Clock, Payload, UnixMillis};
use tether_server::alerts::webhook::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use tether_server::config::Secret;
use tether_server::events::{ANALYTICS_GROUP, LiveEvent, TELEMETRY_STREAM};
use tether_store::TelemetryEvent;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::mpsc::error::TryRecvError;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const SECRET: &str = "the anomaly test's webhook secret";
/// Seconds between samples: the gateway's default telemetry interval.
const INTERVAL_S: u64 = 10;
/// How long the steady test waits for anything that should not come.
const GRACE: Duration = Duration::from_millis(500);

/// A server whose alerts go to a fresh webhook receiver.
async fn server_with_webhook() -> (TestServer, UnboundedReceiver<receiver::Request>) {
    let (url, hooks) = receiver::start().await;
    let srv = TestServer::start_with(|c| {
        c.alerts.webhook_url = Some(url.clone());
        c.alerts.webhook_secret = Some(Secret::new(SECRET));
    })
    .await;
    (srv, hooks)
}

/// A steady CPU around 5 %, sample `i`.
fn steady(i: u64) -> f64 {
    5.0 + ((i as f64) * 1.7).sin() * 0.5
}

/// Sends one telemetry frame through the agent's session, collected now; waits until the
/// gateway accepted it (appended it to the telemetry stream), then lets [`INTERVAL_S`]
/// pass on the manual clock, so the next frame is stamped and collected later, as from a
/// real agent (moving the clock before the gateway checked a frame could expire its
/// 60-s TTL). Returns the frame's seq and collection time.
async fn send_sample(
    srv: &TestServer,
    agent: &mut FakeAgent,
    ws: &mut WsStream,
    cpu: f64,
) -> (u64, UnixMillis) {
    let at = srv.clock.now();
    let body = Telemetry {
        collected_at: at,
        ..sample(cpu)
    };
    let accepted = telemetry_len(srv).await + 1;
    agent.send(ws, srv, &body).await;
    wait_telemetry_len(srv, accepted).await;
    srv.advance(INTERVAL_S);
    (agent.seq, at)
}

/// Waits until the analytics stored `n` events of the device and acknowledged every
/// entry of the telemetry stream (an entry is acknowledged only after its live event
/// was published and its alert rules ran); returns the events, newest first.
async fn processed(srv: &TestServer, device: &str, n: usize) -> Vec<TelemetryEvent> {
    let state = srv.state();
    let events = eventually("the analytics to process every frame", || async {
        let stored = state
            .store
            .telemetry_events(device, UnixMillis(0), 1000)
            .await
            .unwrap();
        let pending = state
            .bus
            .pending_count(TELEMETRY_STREAM, ANALYTICS_GROUP)
            .await
            .unwrap_or(1);
        (stored.len() >= n && pending == 0).then_some(stored)
    })
    .await;
    assert_eq!(events.len(), n, "every accepted frame stored once");
    events
}

/// Reads the next webhook request and checks its signature; returns the body.
async fn next_webhook(rx: &mut UnboundedReceiver<receiver::Request>) -> Value {
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
    let mac = hex::decode(sig.strip_prefix("sha256=").expect("sha256=<hex>")).unwrap();
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    hmac::verify(&key, &req.body, &mac).expect("the HMAC matches the body");
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        req.header(TIMESTAMP_HEADER).unwrap(),
        body["sent_at"].to_string()
    );
    body
}

/// The risk score the analytics added to a live telemetry event (none on other events).
fn scored(e: &LiveEvent) -> Option<f64> {
    e.data.get("risk_score").and_then(Value::as_f64)
}

#[tokio::test]
async fn a_cpu_spike_sent_through_the_gateway_raises_an_anomaly_alert_live_and_at_the_webhook() {
    let (srv, mut hooks) = server_with_webhook().await;
    let (mut agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let alice_id = user_id(&alice).await;
    let mut view = subscribe(&alice, &format!("?device={device_id}")).await;
    let (mut ws, _) = online(&srv, &mut agent).await;

    for i in 0..20 {
        send_sample(&srv, &mut agent, &mut ws, steady(i)).await;
    }
    let (spike_seq, spike_at) = send_sample(&srv, &mut agent, &mut ws, 99.0).await;

    // The live view: the 21 scored samples, then the alert (the analytics publishes a
    // sample's telemetry event before running its rules).
    let mut telemetry = Vec::new();
    let seen = loop {
        let e = next_event(&mut view).await;
        assert_ne!(e.event, "lagged", "the view fell behind: {}", e.data);
        let ev = live(&e);
        assert_eq!(ev.device_id, device_id, "only the device asked for");
        match e.event.as_str() {
            "telemetry" if scored(&ev).is_some() => telemetry.push(ev),
            "alert" => break ev,
            _ => {}
        }
    };
    assert_eq!(
        telemetry.len(),
        21,
        "every sample, scored, before the alert"
    );
    let (spike, before) = telemetry.split_last().unwrap();
    assert_eq!(spike.data["cpu_pct"], 99.0);
    assert!(scored(spike).unwrap() > 0.8, "spike: {}", spike.data);
    for t in before {
        assert!(scored(t).unwrap() < 0.5, "a steady sample: {}", t.data);
    }
    assert_eq!(seen.owner_id.as_deref(), Some(alice_id.as_str()));
    assert_eq!(seen.data["kind"], "anomaly");
    assert_eq!(seen.data["severity"], "critical");
    assert_eq!(seen.data["device_id"], device_id.as_str());
    let risk = seen.data["risk_score"].as_f64().expect("a risk score");
    assert!(risk > 0.8, "live alert risk {risk}");
    assert!(seen.data["acked_at"].is_null());
    let alert_id = seen.data["id"].as_str().unwrap().to_owned();

    // The webhook: signed, the same alert.
    let hook = next_webhook(&mut hooks).await;
    assert_eq!(hook["event"], "alert.raised");
    assert_eq!(hook["alert"]["id"], alert_id.as_str());
    assert_eq!(hook["alert"]["kind"], "anomaly");
    assert_eq!(hook["alert"]["device_id"], device_id.as_str());
    assert!(
        hook["alert"]["risk_score"].as_f64().unwrap() > 0.8,
        "{hook}"
    );

    // The device's agent: a signed alert_push on its session.
    match read_verified(&mut ws, &srv).await {
        Payload::AlertPush(p) => {
            assert_eq!(p.alert_id, alert_id);
            assert_eq!(p.device_id, device_id);
            assert_eq!(p.kind, "anomaly");
            assert_eq!(p.severity, Severity::Critical);
            assert!(p.risk_score.unwrap() > 0.8, "{:?}", p.risk_score);
        }
        other => panic!("expected alert_push, got {:?}", other.message_type()),
    }

    // The store: all 21 events as the gateway accepted them, the spike scored > 0.8, and
    // one alert: this one.
    let events = processed(&srv, &device_id, 21).await;
    let stored = &events[0].event;
    assert_eq!(
        (stored.cpu_pct, stored.seq, stored.collected_at),
        (99.0, spike_seq, spike_at),
        "the newest event is the spike"
    );
    assert!(
        stored.risk_score > 0.8,
        "spike scored {}",
        stored.risk_score
    );
    assert!(events[1..].iter().all(|e| e.event.risk_score < 0.5));
    let alerts = srv.state().store.all_alerts(true, 10).await.unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].id, alert_id);
    assert_eq!(alerts[0].kind, "anomaly");
    assert_eq!(alerts[0].severity, Severity::Critical);
    assert_eq!(alerts[0].owner_id.as_deref(), Some(alice_id.as_str()));
    assert!(alerts[0].risk_score.unwrap() > 0.8);

    let _ = ws.close(None).await;
    drop(view);
    srv.stop().await;
}

#[tokio::test]
async fn a_steady_series_sent_through_the_gateway_raises_no_alert() {
    let (srv, mut hooks) = server_with_webhook().await;
    let (mut agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let alice_id = user_id(&alice).await;
    // Every one of alice's devices (the marker below is on a device of its own).
    let mut view = subscribe(&alice, "").await;
    let (mut ws, _) = online(&srv, &mut agent).await;

    for i in 0..30 {
        send_sample(&srv, &mut agent, &mut ws, steady(i)).await;
    }

    // The store: all 30 processed, none risky, no alert.
    let events = processed(&srv, &device_id, 30).await;
    assert!(
        events.iter().all(|e| e.event.risk_score < 0.5),
        "{:?}",
        events
            .iter()
            .map(|e| e.event.risk_score)
            .collect::<Vec<_>>()
    );
    let alerts = srv.state().store.all_alerts(true, 10).await.unwrap();
    assert!(alerts.is_empty(), "{alerts:?}");

    // The live view: everything published so far comes before this marker; the 30
    // scored samples are there, an alert is not.
    marker(&srv, &alice_id).await;
    let mut telemetry = 0;
    loop {
        let e = next_event(&mut view).await;
        assert_ne!(e.event, "lagged", "the view fell behind: {}", e.data);
        assert_ne!(e.event, "alert", "no alert on the live view: {}", e.data);
        let ev = live(&e);
        if ev.device_id == "dev_marker" {
            break;
        }
        if e.event == "telemetry"
            && let Some(risk) = scored(&ev)
        {
            assert_eq!(ev.device_id, device_id);
            assert!(risk < 0.5, "{}", ev.data);
            telemetry += 1;
        }
    }
    assert_eq!(telemetry, 30, "the view saw every scored sample");

    // The agent gets no alert_push, and (a grace period later) the webhook receiver got
    // no request.
    let pushed = tokio::time::timeout(GRACE, async {
        while let Some(m) = ws.next().await {
            if let WsMessage::Text(t) = m.expect("frame") {
                return Some(t);
            }
        }
        None
    })
    .await;
    assert!(
        pushed.is_err(),
        "the session stays open and the agent gets no frame: {pushed:?}"
    );
    assert!(
        matches!(hooks.try_recv(), Err(TryRecvError::Empty)),
        "no webhook call"
    );

    let _ = ws.close(None).await;
    drop(view);
    srv.stop().await;
}
