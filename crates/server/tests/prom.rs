//! `GET /metrics` on an in-process server: who may read it, and that a command driven
//! through a `FakeAgent` from submission to `completed`, a telemetry sample and a refused
//! telemetry frame move each metric by exactly their share.
//!
//! The recorder is process-wide (every server this binary starts records into it), so
//! the counts are compared before and after; only one test here makes commands, agent
//! sessions and telemetry.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

#[path = "commands/kit.rs"]
#[allow(dead_code)]
mod kit;
mod support;

use std::collections::HashMap;

use kit::{complete, expect_delivery, request, staff, submit};
use serde_json::{Value, json};
use support::TestServer;
use support::live::{eventually, expect_refused, online, paired, sample, stamp, subscribe};
use tether_client::Api;
use tether_proto::ErrorCode;
use tether_server::config::Secret;
use tether_store::Role;

/// What a Prometheus server would be given: series (`name{labels}` as rendered) → value.
#[derive(Debug, Clone)]
struct Scrape(HashMap<String, f64>);

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut m = HashMap::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let value: f64 = value.parse().expect("a number");
            assert!(
                m.insert(series.to_owned(), value).is_none(),
                "{series} twice"
            );
        }
        Scrape(m)
    }

    /// A series that must be there (every series of ours exists from start-up on).
    fn get(&self, series: &str) -> f64 {
        *self
            .0
            .get(series)
            .unwrap_or_else(|| panic!("{series} is not exported"))
    }

    /// How much `series` moved since `before`.
    fn delta(&self, before: &Scrape, series: &str) -> f64 {
        self.get(series) - before.get(series)
    }

    /// The same for a series that appears with its first event (a label value from an
    /// open set, such as an error code).
    fn delta_from_absent(&self, before: &Scrape, series: &str) -> f64 {
        self.get(series) - before.0.get(series).copied().unwrap_or(0.0)
    }
}

async fn scrape(api: &Api) -> Scrape {
    let (status, body) = api.get_raw("/metrics").await.unwrap();
    let text = String::from_utf8(body).unwrap();
    assert_eq!(status, 200, "{text}");
    Scrape::parse(&text)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

const STATES: [&str; 10] = [
    "queued",
    "sent",
    "ack_received",
    "executing",
    "result_posted",
    "completed",
    "failed",
    "expired",
    "denied",
    "dlq",
];

#[tokio::test]
async fn a_command_and_telemetry_move_each_metric_by_exactly_their_share() {
    let srv = TestServer::start().await;
    let (mut agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let admin = staff(&srv, "admin@lab.example", Role::Admin).await;
    let before = scrape(&admin).await;

    // Submitted while the device is offline; it connects 10 s later (on the test's
    // clock) and the command goes out at once: a dispatch latency of exactly 10 s.
    let id =
        submit(&alice, &request(&device_id, "lock_screen", json!({}), 300)).await["command_id"]
            .as_str()
            .unwrap()
            .to_owned();
    srv.advance(10);
    let (mut ws, _) = online(&srv, &mut agent).await;
    expect_delivery(&mut ws, &srv, &id, 1).await;
    let during = scrape(&admin).await;
    assert_eq!(
        during.delta(&before, "tether_agents_connected"),
        1.0,
        "the session is counted while it is open"
    );
    // The agent reports 84 ms of execution (kit::result_ok).
    complete(&mut agent, &mut ws, &srv, &alice, &id).await;

    // One sample accepted; one refused (a replayed sequence number).
    agent.send(&mut ws, &srv, &sample(11.0)).await;
    let replay = agent
        .signer
        .seal(stamp(&srv, agent.seq), &sample(11.0))
        .unwrap();
    expect_refused(&srv, &mut ws, replay, ErrorCode::SequenceReplay).await;
    let live = subscribe(&alice, "").await;

    // The sample is counted once the gateway has stored it (another task): wait for it.
    let after = eventually("the accepted sample counted", || async {
        let s = scrape(&admin).await;
        (s.delta(&before, "tether_telemetry_accepted_total") > 0.0).then_some(s)
    })
    .await;
    let d = |series: &str| after.delta(&before, series);

    assert_eq!(
        d(r#"tether_commands_ingested_total{method="lock_screen"}"#),
        1.0
    );
    assert_eq!(d(r#"tether_commands_ingested_total{method="reboot"}"#), 0.0);
    for to in STATES {
        let moved = [
            "queued",
            "sent",
            "ack_received",
            "executing",
            "result_posted",
            "completed",
        ]
        .contains(&to);
        assert_eq!(
            d(&format!(r#"tether_command_transitions_total{{to="{to}"}}"#)),
            if moved { 1.0 } else { 0.0 },
            "transitions to {to}"
        );
    }
    for state in ["completed", "failed", "expired", "denied", "dlq"] {
        assert_eq!(
            d(&format!(
                r#"tether_commands_finished_total{{state="{state}"}}"#
            )),
            if state == "completed" { 1.0 } else { 0.0 },
            "finished {state}"
        );
    }
    assert_eq!(d("tether_commands_dlq_total"), 0.0);

    assert_eq!(d("tether_command_dispatch_latency_seconds_count"), 1.0);
    assert!(close(
        d("tether_command_dispatch_latency_seconds_sum"),
        10.0
    ));
    assert_eq!(
        d(r#"tether_command_dispatch_latency_seconds_bucket{le="5"}"#),
        0.0
    );
    assert_eq!(
        d(r#"tether_command_dispatch_latency_seconds_bucket{le="10"}"#),
        1.0
    );
    assert_eq!(d("tether_command_execution_seconds_count"), 1.0);
    assert!(close(d("tether_command_execution_seconds_sum"), 0.084));
    assert_eq!(
        d(r#"tether_command_execution_seconds_bucket{le="0.05"}"#),
        0.0
    );
    assert_eq!(
        d(r#"tether_command_execution_seconds_bucket{le="0.1"}"#),
        1.0
    );

    assert_eq!(d("tether_telemetry_accepted_total"), 1.0);
    assert_eq!(
        after.delta_from_absent(
            &before,
            r#"tether_telemetry_rejected_total{code="SEQUENCE_REPLAY"}"#
        ),
        1.0
    );
    assert_eq!(d("tether_agents_connected"), 1.0);
    assert_eq!(d("tether_live_subscribers"), 1.0);

    // The session ends: the gauge comes back down.
    let _ = ws.close(None).await;
    drop(ws);
    eventually("the closed session uncounted", || async {
        let s = scrape(&admin).await;
        (s.delta(&before, "tether_agents_connected") == 0.0).then_some(())
    })
    .await;
    drop(live);
    srv.stop().await;
}

const TOKEN: &str = "scrape-token-0123456789abcdef0123456789";

#[tokio::test]
async fn only_staff_or_the_metrics_token_may_read_the_metrics() {
    let srv = TestServer::start_with(|c| c.metrics.token = Some(Secret::new(TOKEN))).await;

    // Anonymous: 401 with our error body.
    let (status, body) = srv.api().get_raw("/metrics").await.unwrap();
    assert_eq!(status, 401);
    let e: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(e["code"], ErrorCode::Unauthenticated.number());
    assert_eq!(e["error"], "UNAUTHENTICATED");
    assert!(e["trace_id"].is_string());

    // A token that is neither the metrics token nor an access token: 401.
    for wrong in [&TOKEN[1..], "scrape-token-0123456789abcdef0123456780"] {
        let (status, _) = srv
            .api()
            .with_bearer(wrong)
            .get_raw("/metrics")
            .await
            .unwrap();
        assert_eq!(status, 401, "{wrong}");
    }

    // A student: 403.
    let (student, _, _) = srv.user("student@lab.example").await;
    let (status, body) = student.get_raw("/metrics").await.unwrap();
    assert_eq!(status, 403);
    let e: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(e["code"], ErrorCode::Forbidden.number());

    // Admins, auditors and the configured token read the text format.
    let admin = staff(&srv, "admin@lab.example", Role::Admin).await;
    let auditor = staff(&srv, "auditor@lab.example", Role::Auditor).await;
    let scraper = srv.api().with_bearer(TOKEN);
    for who in [&admin, &auditor, &scraper] {
        let (status, body) = who.get_raw("/metrics").await.unwrap();
        let text = String::from_utf8(body).unwrap();
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("# TYPE tether_commands_ingested_total counter"));
        assert!(text.contains("# TYPE tether_command_dispatch_latency_seconds histogram"));
        assert!(text.contains("# TYPE tether_agents_connected gauge"));
        Scrape::parse(&text);
    }

    // As the text format Prometheus expects.
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tether_client::tls_config(&srv.ca_pem, None).unwrap())
        .build()
        .unwrap();
    let resp = http
        .get(format!("{}/metrics", srv.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );

    // The route is in the OpenAPI document.
    let (_, doc): (u16, Value) = srv.api().get("/api/openapi.json").await.unwrap();
    assert!(doc["paths"]["/metrics"]["get"].is_object());
    srv.stop().await;
}

#[tokio::test]
async fn without_a_metrics_token_configured_no_bearer_string_opens_the_metrics() {
    let srv = TestServer::start().await;
    for token in [TOKEN, ""] {
        let (status, _) = srv
            .api()
            .with_bearer(token)
            .get_raw("/metrics")
            .await
            .unwrap();
        assert_eq!(status, 401, "{token:?}");
    }
    srv.stop().await;
}
