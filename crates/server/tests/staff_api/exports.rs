//! Exports: CSV (RFC 4180, formulas defused) and JSON downloads, oldest first, audited.

use serde_json::{Value, json};
use tether_proto::ErrorCode;
use tether_store::Role;

use crate::helpers::{append, download, get_ok, get_refused, header, on_mysql, parse_csv};
use crate::kit::{request, staff, submit};
use crate::support::TestServer;
use crate::support::live::paired;

#[tokio::test]
async fn exports_are_escaped_oldest_first_downloads_and_are_audited() {
    exports(TestServer::start().await).await;
}

#[tokio::test]
async fn exports_work_the_same_on_mariadb() {
    on_mysql(exports).await;
}

/// CSV and JSON exports: shape, escaping, filters, order, audit and refusals.
pub(crate) async fn exports(srv: TestServer) {
    let admin = staff(&srv, "admin@lab.example", Role::Admin).await;
    let auditor = staff(&srv, "auditor@lab.example", Role::Auditor).await;
    let (agent, alice) = paired(&srv, "alice@lab.example").await;
    let device = agent.device_id.clone().unwrap();
    let submitted = submit(&alice, &request(&device, "lock_screen", json!({}), 600)).await;
    let command_id = submitted["command_id"].as_str().unwrap().to_owned();
    let formula = "=HYPERLINK(\"http://evil.example\",\"x\")";
    let awkward = "a,b \"quoted\"\nsecond line";
    append(
        &srv,
        formula,
        "test.injection",
        Some(awkward),
        json!({"note": "-1+2", "s": "x,y"}),
    )
    .await;
    append(&srv, "@sum", "test.injection", Some("+1"), json!({})).await;

    // CSV.
    let (status, h, text) = download(&srv, &auditor, "/api/audit/export?format=csv").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(header(&h, "content-type"), "text/csv; charset=utf-8");
    assert_eq!(header(&h, "cache-control"), "no-store");
    let disposition = header(&h, "content-disposition");
    let name = disposition
        .strip_prefix("attachment; filename=\"tether-audit-")
        .and_then(|n| n.strip_suffix(".csv\""))
        .unwrap_or_else(|| panic!("{disposition}"));
    assert_eq!(name.len(), 16, "{name}");
    assert!(name.ends_with('Z') && name.as_bytes()[8] == b'T', "{name}");
    let rows = parse_csv(&text);
    assert_eq!(
        rows[0],
        [
            "seq", "at", "actor", "action", "target", "outcome", "trace_id", "detail"
        ]
    );
    let records = &rows[1..];
    assert!(records.iter().all(|r| r.len() == 8));
    let seqs: Vec<u64> = records.iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "oldest first");
    for r in records {
        let at = &r[1];
        assert!(
            at.len() == 24 && at.ends_with('Z') && &at[10..11] == "T",
            "{at}"
        );
        let _: Value = serde_json::from_str(&r[7]).expect("detail is JSON");
    }
    let evil = records
        .iter()
        .find(|r| r[3] == "test.injection" && r[4] != "'+1")
        .unwrap();
    assert_eq!(evil[2], format!("'{formula}"), "the formula is defused");
    assert_eq!(
        evil[4], awkward,
        "commas, quotes and line breaks survive quoting"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&evil[7]).unwrap(),
        json!({"note": "-1+2", "s": "x,y"})
    );
    let at_sign = records.iter().find(|r| r[4] == "'+1").unwrap();
    assert_eq!(at_sign[2], "'@sum");
    assert!(text.contains("\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\""));
    let csv_rows = records.len();

    // JSON, filtered to the device: the command just submitted is there.
    let (status, h, text) = download(
        &srv,
        &admin,
        &format!("/api/audit/export?format=json&device={device}"),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(header(&h, "content-type"), "application/json");
    assert!(header(&h, "content-disposition").ends_with(".json\""));
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(doc["exported_at"].as_u64().unwrap() >= submitted["created_at"].as_u64().unwrap_or(0));
    assert_eq!(
        doc["filters"],
        json!({"actor": null, "device": device, "action": null, "outcome": null, "since": null, "until": null})
    );
    let events = doc["events"].as_array().unwrap();
    let queued = events
        .iter()
        .find(|e| e["action"] == "command.queued")
        .unwrap_or_else(|| panic!("command.queued in {text}"));
    assert_eq!(queued["detail"]["command_id"], command_id.as_str());
    assert_eq!(queued["target"], device.as_str());
    assert!(
        events
            .windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64())
    );
    assert!(events.iter().all(|e| e["action"] != "test.injection"));
    let json_rows = events.len();

    // Filters apply; both exports were audited with their filters and counts.
    let (_, _, only) = download(&srv, &auditor, "/api/audit/export?action=command").await;
    let only = parse_csv(&only);
    assert_eq!(only.len(), 2, "header and command.queued");
    assert_eq!(only[1][3], "command.queued");
    let exports = get_ok(&admin, "/api/audit?action=audit.exported").await;
    let exports = exports["events"].as_array().unwrap();
    assert_eq!(exports.len(), 3);
    assert_eq!(exports[2]["detail"]["rows"], csv_rows);
    assert_eq!(exports[2]["detail"]["format"], "csv");
    assert_eq!(exports[1]["detail"]["rows"], json_rows);
    assert_eq!(exports[1]["detail"]["filters"]["device"], device.as_str());
    assert_eq!(exports[0]["detail"]["filters"]["action"], "command");
    assert_eq!(exports[0]["target"], Value::Null);

    // Refusals.
    let (status, code, _) = get_refused(&alice, "/api/audit/export").await;
    assert_eq!((status, code), (403, ErrorCode::Forbidden));
    for (query, name) in [
        ("format=xml", "format"),
        ("since=soon", "since"),
        ("limit=5", "limit"),
    ] {
        let (status, code, message) =
            get_refused(&admin, &format!("/api/audit/export?{query}")).await;
        assert_eq!((status, code), (422, ErrorCode::InvalidField), "{query}");
        assert!(message.contains(name), "{query}: {message}");
    }
    srv.stop().await;
}
