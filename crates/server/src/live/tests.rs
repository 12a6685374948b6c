#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use tether_proto::UnixMillis;
use tether_proto::messages::notify::Severity;

use super::*;

fn alert(data: Value) -> LiveEvent {
    LiveEvent {
        kind: LiveKind::Alert,
        device_id: "dev_1".into(),
        owner_id: Some("usr_1".into()),
        at: UnixMillis(1_764_115_200_000),
        data,
    }
}

fn raised() -> Value {
    json!({
        "id": "alr_1", "device_id": "dev_1", "severity": "critical", "kind": "anomaly",
        "message": "CPU jumped to 99%", "risk_score": 0.93, "created_at": 1_764_115_200_123u64,
        "acked_at": null, "acked_by": null,
    })
}

#[test]
fn a_raised_alert_becomes_an_alert_push() {
    let p = alert_push(&alert(raised())).unwrap();
    assert_eq!(p.alert_id, "alr_1");
    assert_eq!(p.device_id, "dev_1");
    assert_eq!(p.severity, Severity::Critical);
    assert_eq!(p.kind, "anomaly");
    assert_eq!(p.risk_score, Some(0.93));
    assert_eq!(p.created_at, UnixMillis(1_764_115_200_123));
}

#[test]
fn acknowledgements_and_unreadable_alerts_are_not_pushed() {
    let mut acked = raised();
    acked["acked_at"] = json!(1_764_115_300_000u64);
    assert!(alert_push(&alert(acked)).is_none());
    let mut no_severity = raised();
    no_severity["severity"] = json!("apocalyptic");
    assert!(alert_push(&alert(no_severity)).is_none());
    let mut elsewhere = raised();
    elsewhere["device_id"] = json!("dev_2");
    assert!(
        alert_push(&alert(elsewhere)).is_none(),
        "the event and its alert disagree on the device"
    );
    let mut bad_score = raised();
    bad_score["risk_score"] = json!(7.0);
    assert!(
        alert_push(&alert(bad_score)).is_none(),
        "fails AlertPush validation"
    );
}

#[tokio::test]
async fn an_alert_reaches_only_its_devices_session_and_every_subscriber() {
    let hub = LiveHub::new();
    let mut sub = hub.subscribe();
    let mut mine = hub.register_agent("dev_1", "sess_a");
    let mut other = hub.register_agent("dev_2", "sess_b");
    hub.fan_out(alert(raised()));
    assert_eq!(sub.recv().await.unwrap().device_id, "dev_1");
    match mine.recv().await.unwrap() {
        AgentPush::Alert(push) => assert_eq!(push.alert_id, "alr_1"),
        other => panic!("expected an alert push, got {other:?}"),
    }
    assert!(other.rx.try_recv().is_err());
}

#[tokio::test]
async fn an_older_sessions_drop_leaves_the_newer_registration() {
    let hub = LiveHub::new();
    let old = hub.register_agent("dev_1", "sess_old");
    let mut new = hub.register_agent("dev_1", "sess_new");
    drop(old);
    hub.fan_out(alert(raised()));
    assert!(new.recv().await.is_some());
    drop(new);
    assert!(lock(&hub.agents).is_empty());
}

#[test]
fn a_batch_entry_reads_back_as_its_events_in_order_with_its_origin() {
    let events = [alert(raised()), alert(json!({"id": "alr_2"}))];
    let parts: Vec<Vec<u8>> = events
        .iter()
        .map(|event| {
            serde_json::to_vec(&OnBus {
                origin: Some("node-a"),
                event,
            })
            .unwrap()
        })
        .collect();
    let entry = batch_entry("node-a", &parts);
    let head: Head = serde_json::from_slice(&entry).unwrap();
    assert_eq!(head.origin.as_deref(), Some("node-a"));
    assert_eq!(
        crate::events::live_events_of(&entry).unwrap(),
        events.to_vec()
    );
    // One event alone, as an earlier build (or a publisher without the hub) appends it.
    assert_eq!(
        crate::events::live_events_of(&parts[0]).unwrap(),
        vec![events[0].clone()]
    );
    assert!(crate::events::live_events_of(b"{\"events\": 3}").is_err());
}
