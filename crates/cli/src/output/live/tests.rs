#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};

use serde_json::json;

use super::*;
use crate::views::MetricStats;

const AT: u64 = 1_764_115_200_000; // 2025-11-26 00:00:00 UTC

fn event(kind: &str, data: Value) -> LiveEventView {
    LiveEventView {
        kind: kind.into(),
        device_id: "dev_1".into(),
        owner_id: Some("usr_1".into()),
        at: AT,
        data,
    }
}

fn names() -> HashMap<String, String> {
    HashMap::from([("dev_1".to_owned(), "lab-pc-7".to_owned())])
}

#[test]
fn one_line_per_event_with_the_devices_name() {
    let on = event_line(
        &event("presence", json!({"online": true, "session_id": "sess_1"})),
        &names(),
    );
    assert_eq!(on, "2025-11-26 00:00:00 UTC  lab-pc-7  presence  online");
    let off = event_line(
        &event("presence", json!({"online": false})),
        &HashMap::new(),
    );
    assert!(off.ends_with("dev_1  presence  offline"), "{off}");

    let t = event_line(
        &event(
            "telemetry",
            json!({"cpu_pct": 12.5, "mem_used_bytes": 4u64 << 30, "mem_total_bytes": 16u64 << 30,
                   "disks": [{"mount": "/", "used_bytes": 40, "total_bytes": 100},
                             {"mount": "/data", "used_bytes": 90, "total_bytes": 100}],
                   "net": {"rx_bps": 1536.0, "tx_bps": 300.0}, "risk_score": 0.123}),
        ),
        &names(),
    );
    assert!(
        t.ends_with(
            "telemetry  cpu 12.5%  mem 4.0 GiB/16.0 GiB  disk /data 90%  net in 1.5 KiB/s out 300 B/s  risk 0.12"
        ),
        "{t}"
    );

    let raised = json!({"id": "alr_1", "device_id": "dev_1", "severity": "critical",
        "kind": "anomaly", "message": "CPU jumped", "risk_score": 0.95, "created_at": AT,
        "acked_at": null, "acked_by": null});
    let a = event_line(&event("alert", raised.clone()), &names());
    assert!(
        a.ends_with("alert  CRITICAL anomaly: CPU jumped (risk 0.95) [alr_1]"),
        "{a}"
    );
    let mut acked = raised;
    acked["acked_at"] = json!(AT + 1);
    let a = event_line(&event("alert", acked), &names());
    assert!(a.contains("alert  acknowledged anomaly"), "{a}");

    let c = event_line(
        &event(
            "command_status",
            json!({"command_id": "0b7e4c7e-52b4-4c1e-9a51-6f0c1f3f2a10", "method": "lock_screen",
                   "state": "sent", "from": "queued", "attempts": 1, "trace_id": "t",
                   "origin_user_id": "usr_1"}),
        ),
        &names(),
    );
    assert!(
        c.ends_with("lab-pc-7  command_status  0b7e4c7e lock_screen sent (attempt 1)"),
        "{c}"
    );
    let other = event_line(&event("command_status", json!({"state": "sent"})), &names());
    assert!(
        other.ends_with(r#"command_status  {"state":"sent"}"#),
        "{other}"
    );
}

#[test]
fn text_from_the_server_cannot_drive_the_terminal() {
    let mut n = names();
    n.insert("dev_1".into(), "evil\u{1b}[2J".into());
    let line = event_line(
        &event(
            "alert",
            json!({"id": "alr_1", "device_id": "dev_1", "severity": "info",
            "kind": "x", "message": "bell\u{7}", "created_at": AT}),
        ),
        &n,
    );
    assert!(!line.chars().any(char::is_control), "{line:?}");
}

#[test]
fn bytes_in_binary_units() {
    assert_eq!(bytes(0.0), "0 B");
    assert_eq!(bytes(1023.0), "1023 B");
    assert_eq!(bytes(1024.0), "1.0 KiB");
    assert_eq!(bytes(5.5 * 1024.0 * 1024.0 * 1024.0), "5.5 GiB");
    assert_eq!(bytes(-3.0), "0 B");
}

#[test]
fn the_alerts_table() {
    assert_eq!(alerts_table(&[], &names()), "No alerts.");
    let a = AlertView {
        id: "alr_1".into(),
        device_id: "dev_1".into(),
        severity: "warning".into(),
        kind: "disk_full".into(),
        message: "disk / is 97 % full".into(),
        risk_score: None,
        created_at: AT,
        acked_at: None,
        acked_by: None,
    };
    let t = alerts_table(&[a], &names());
    let expected = "\
ID     DEVICE    SEVERITY  KIND       RAISED                   STATE  MESSAGE
alr_1  lab-pc-7  warning   disk_full  2025-11-26 00:00:00 UTC  open   disk / is 97 % full";
    assert_eq!(t, expected);
}

#[test]
fn the_metrics_table() {
    let stats = |mean: f64| MetricStats {
        count: 360,
        min: mean - 1.0,
        max: mean + 2.0,
        mean,
        p95: mean + 1.5,
    };
    let m = MetricsView {
        device_id: "dev_1".into(),
        period: "hourly".into(),
        buckets: vec![Bucket {
            bucket_start: AT + 3_600_000,
            metrics: BTreeMap::from([
                ("cpu_pct".to_owned(), stats(40.0)),
                ("rx_bps".to_owned(), stats(2048.0)),
            ]),
        }],
    };
    let t = metrics_table(&m);
    let expected = "\
HOUR (UTC)        SAMPLES  CPU% AVG  CPU% P95  CPU% MAX  MEM% AVG  DISK% MAX  IN AVG     OUT AVG  RISK MAX
2025-11-26 01:00  360      40.0      41.5      42.0      -         -          2.0 KiB/s  -        -";
    assert_eq!(t, expected);
    let daily = MetricsView {
        period: "daily".into(),
        ..m
    };
    assert!(metrics_table(&daily).starts_with("DAY (UTC)"));
    assert!(
        metrics_table(&MetricsView {
            buckets: vec![],
            ..daily
        })
        .starts_with("No daily rollups")
    );
}
