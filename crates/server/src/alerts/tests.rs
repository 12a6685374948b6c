#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "tests: a broken expectation should panic with its message"
)]

use std::sync::Arc;
use std::time::Duration;

use ring::hmac;
use serde_json::Value;
use tether_proto::messages::notify::Severity;
use tether_proto::{ManualClock, UnixMillis};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::rules::{RuleState, Thresholds};
use super::webhook::{SIGNATURE_HEADER, TIMESTAMP_HEADER, signature};
use super::*;
use crate::analytics::{Assessment, Sample};
use crate::config::{AlertsConfig, Secret};

const MINUTE: u64 = 60_000;

fn thresholds() -> Thresholds {
    Thresholds::from(&AlertsConfig::default())
}

fn sample(at_min: u64, cpu: f64, disk: f64) -> Sample {
    Sample {
        at: UnixMillis(1_800_000_000_000 + at_min * MINUTE),
        cpu_pct: cpu,
        mem_used_pct: Some(30.0),
        disk_used_pct: Some(disk),
        rx_bps: 0.0,
        tx_bps: 0.0,
    }
}

fn risk(r: f64) -> Assessment {
    Assessment {
        risk: r,
        metrics: Vec::new(),
    }
}

fn kinds(f: &[rules::Firing]) -> Vec<&'static str> {
    f.iter().map(|f| f.kind).collect()
}

#[test]
fn anomaly_fires_once_per_episode() {
    let t = thresholds();
    let mut st = RuleState::default();
    assert!(
        st.observe(&t, &sample(0, 10.0, 50.0), &risk(0.3))
            .is_empty()
    );
    let fired = st.observe(&t, &sample(1, 10.0, 50.0), &risk(0.93));
    assert_eq!(kinds(&fired), vec![KIND_ANOMALY]);
    assert_eq!(fired[0].severity, Severity::Critical);
    assert_eq!(fired[0].risk_score, Some(0.93));
    // Still high, or between the thresholds: nothing new.
    assert!(
        st.observe(&t, &sample(2, 10.0, 50.0), &risk(0.95))
            .is_empty()
    );
    assert!(
        st.observe(&t, &sample(3, 10.0, 50.0), &risk(0.6))
            .is_empty()
    );
    assert!(
        st.observe(&t, &sample(4, 10.0, 50.0), &risk(0.85))
            .is_empty()
    );
    // Cleared, then high again: a new episode.
    assert!(
        st.observe(&t, &sample(5, 10.0, 50.0), &risk(0.2))
            .is_empty()
    );
    let again = st.observe(&t, &sample(6, 10.0, 50.0), &risk(0.81));
    assert_eq!(kinds(&again), vec![KIND_ANOMALY]);
    // Exactly 0.8 is not above it.
    let mut st = RuleState::default();
    assert!(
        st.observe(&t, &sample(0, 10.0, 50.0), &risk(0.8))
            .is_empty()
    );
}

#[test]
fn cpu_high_needs_the_whole_window() {
    let t = thresholds(); // 90 % for 5 minutes
    let mut st = RuleState::default();
    for m in 0..5 {
        assert!(
            st.observe(&t, &sample(m, 95.0, 50.0), &risk(0.0))
                .is_empty(),
            "minute {m}"
        );
    }
    let fired = st.observe(&t, &sample(5, 91.0, 50.0), &risk(0.0));
    assert_eq!(kinds(&fired), vec![KIND_CPU_HIGH]);
    assert_eq!(fired[0].severity, Severity::Warning);
    assert!(
        st.observe(&t, &sample(6, 99.0, 50.0), &risk(0.0))
            .is_empty()
    );

    // A dip below the threshold restarts the window.
    let mut st = RuleState::default();
    for m in 0..4 {
        st.observe(&t, &sample(m, 95.0, 50.0), &risk(0.0));
    }
    st.observe(&t, &sample(4, 50.0, 50.0), &risk(0.0));
    for m in 5..10 {
        assert!(
            st.observe(&t, &sample(m, 95.0, 50.0), &risk(0.0))
                .is_empty(),
            "minute {m}"
        );
    }
    assert_eq!(
        kinds(&st.observe(&t, &sample(10, 95.0, 50.0), &risk(0.0))),
        vec![KIND_CPU_HIGH]
    );
}

#[test]
fn disk_full_fires_once_until_it_clears() {
    let t = thresholds(); // 95 %
    let mut st = RuleState::default();
    assert!(st.observe(&t, &sample(0, 5.0, 94.9), &risk(0.0)).is_empty());
    assert_eq!(
        kinds(&st.observe(&t, &sample(1, 5.0, 95.0), &risk(0.0))),
        vec![KIND_DISK_FULL]
    );
    assert!(st.observe(&t, &sample(2, 5.0, 96.0), &risk(0.0)).is_empty());
    // Hovering just under the threshold does not re-arm; a real clean-up does.
    assert!(st.observe(&t, &sample(3, 5.0, 94.5), &risk(0.0)).is_empty());
    assert!(st.observe(&t, &sample(4, 5.0, 95.2), &risk(0.0)).is_empty());
    assert!(st.observe(&t, &sample(5, 5.0, 80.0), &risk(0.0)).is_empty());
    assert_eq!(
        kinds(&st.observe(&t, &sample(6, 5.0, 99.0), &risk(0.0))),
        vec![KIND_DISK_FULL]
    );
}

#[test]
fn kinds_and_messages_are_checked() {
    assert!(valid_kind("cpu_high"));
    assert!(valid_kind("policy.violation-2"));
    for bad in ["", "CPU", "a b", "ü", &"x".repeat(65)] {
        assert!(!valid_kind(bad), "{bad:?}");
    }
    assert_eq!(clip(&"é".repeat(600)).chars().count(), MAX_MESSAGE_CHARS);
}

#[test]
fn alert_views_and_pushes() {
    let a = Alert {
        id: "alr_1".into(),
        device_id: "dev_1".into(),
        owner_id: Some("usr_1".into()),
        severity: Severity::Critical,
        kind: KIND_ANOMALY.into(),
        message: "Unusual activity".into(),
        risk_score: Some(0.9),
        created_at: UnixMillis(7),
        acked_at: None,
        acked_by: None,
    };
    let v = AlertView::from(&a);
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["severity"], "critical");
    assert_eq!(json["created_at"], 7);
    assert!(json["acked_at"].is_null());
    let push = v.alert_push();
    tether_proto::validate::Validate::validate(&push).unwrap();
    assert_eq!(push.alert_id, "alr_1");
    assert_eq!(push.risk_score, Some(0.9));
}

#[test]
fn the_signature_is_hmac_sha256_in_hex() {
    // RFC 4231, test case 2.
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
    assert_eq!(
        signature(&key, b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

/// What the receiver got.
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A one-request-per-connection HTTP/1.1 receiver that answers with the given statuses
/// in turn (then 200) and reports each request.
async fn receiver(statuses: Vec<u16>) -> (String, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut statuses = statuses.into_iter();
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, content_length) = loop {
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed mid-request");
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    break (end + 4, len);
                }
            };
            while buf.len() < head_end + content_length {
                let n = sock.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let headers = head
                .lines()
                .skip(1)
                .filter_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    Some((k.trim().to_owned(), v.trim().to_owned()))
                })
                .collect();
            let body = buf[head_end..head_end + content_length].to_vec();
            let status = statuses.next().unwrap_or(200);
            let reply =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            sock.write_all(reply.as_bytes()).await.unwrap();
            let _ = sock.shutdown().await;
            let _ = tx.send(Received { headers, body });
        }
    });
    (url, rx)
}

fn webhook_config(url: &str) -> AlertsConfig {
    AlertsConfig {
        webhook_url: Some(url.to_owned()),
        webhook_secret: Some(Secret::new("a webhook secret of some length")),
        ..AlertsConfig::default()
    }
}

fn view() -> AlertView {
    AlertView {
        id: "alr_1".into(),
        device_id: "dev_1".into(),
        severity: Severity::Warning,
        kind: KIND_OFFLINE.into(),
        message: "gone".into(),
        risk_score: None,
        created_at: 1,
        acked_at: None,
        acked_by: None,
    }
}

#[tokio::test]
async fn the_webhook_signs_and_retries_until_accepted() {
    let (url, mut got) = receiver(vec![500, 503]).await;
    let clock = Arc::new(ManualClock::new(UnixMillis(1_800_000_000_000)));
    let (hook, worker) = Webhook::from_config(&webhook_config(&url), clock).unwrap();
    let worker = worker
        .unwrap()
        .with_retry_delays(vec![Duration::from_millis(10); 4]);
    let stop = CancellationToken::new();
    let task = tokio::spawn(worker.run(stop.clone()));

    hook.notify(WebhookEvent::Raised, &view());
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"a webhook secret of some length");
    let mut ids = Vec::new();
    for attempt in 1..=3 {
        let r = tokio::time::timeout(Duration::from_secs(10), got.recv())
            .await
            .unwrap()
            .unwrap();
        let sig = r.header(SIGNATURE_HEADER).unwrap();
        let hex = sig.strip_prefix("sha256=").unwrap();
        hmac::verify(&key, &r.body, &hex::decode(hex).unwrap())
            .unwrap_or_else(|_| panic!("attempt {attempt}: bad signature"));
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["event"], "alert.raised");
        assert_eq!(body["alert"]["id"], "alr_1");
        assert_eq!(
            r.header(TIMESTAMP_HEADER).unwrap(),
            body["sent_at"].to_string(),
            "the header repeats the signed timestamp"
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        ids.push(body["delivery_id"].as_str().unwrap().to_owned());
    }
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "retries repeat the delivery id"
    );
    // Accepted at the third attempt: no fourth.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), got.recv())
            .await
            .is_err()
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn the_webhook_gives_up_after_five_attempts() {
    let (url, mut got) = receiver(vec![500; 10]).await;
    let clock = Arc::new(ManualClock::new(UnixMillis(1)));
    let (hook, worker) = Webhook::from_config(&webhook_config(&url), clock).unwrap();
    let worker = worker
        .unwrap()
        .with_retry_delays(vec![Duration::from_millis(5); 4]);
    let stop = CancellationToken::new();
    let task = tokio::spawn(worker.run(stop.clone()));
    hook.notify(WebhookEvent::Acked, &view());
    for _ in 0..5 {
        tokio::time::timeout(Duration::from_secs(10), got.recv())
            .await
            .unwrap()
            .unwrap();
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), got.recv())
            .await
            .is_err()
    );
    stop.cancel();
    task.await.unwrap();
}

#[test]
fn no_webhook_without_configuration() {
    let clock = Arc::new(ManualClock::new(UnixMillis(1)));
    let (hook, worker) = Webhook::from_config(&AlertsConfig::default(), clock).unwrap();
    assert!(worker.is_none());
    hook.notify(WebhookEvent::Raised, &view()); // a no-op
}
