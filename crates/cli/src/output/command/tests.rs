#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

use super::*;

fn view(state: &str) -> CommandView {
    serde_json::from_value(json!({
        "status": "accepted",
        "command_id": "0b7e4c7e-52b4-4c1e-9a51-6f0c1f3f2a10",
        "device_id": "dev_01",
        "method": "lock_screen",
        "params": {},
        "priority": "normal",
        "state": state,
        "attempts": 0,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "origin_user_id": "usr_1",
        "created_at": 1_764_115_200_000u64,
        "expires_at": 1_764_115_500_000u64,
        "updated_at": 1_764_115_200_000u64,
        "device_online": false,
    }))
    .unwrap()
}

#[test]
fn the_accepted_line_names_the_command_its_trace_and_its_state() {
    let s = accepted_lines(&view("queued"), "lab-pc-7 (dev_01)");
    let mut lines = s.lines();
    assert_eq!(
        lines.next().unwrap(),
        "accepted: command 0b7e4c7e-52b4-4c1e-9a51-6f0c1f3f2a10 (trace 4bf92f3577b34da6a3ce929d0e0e4736) queued"
    );
    assert_eq!(
        lines.next().unwrap(),
        "lab-pc-7 (dev_01) is offline: the command waits for it until 2025-11-26 00:05:00 UTC"
    );
    let mut online = view("queued");
    online.device_online = Some(true);
    assert_eq!(accepted_lines(&online, "x").lines().count(), 1);
}

fn event(v: Value) -> CommandEventView {
    serde_json::from_value(v).unwrap()
}

#[test]
fn state_lines_from_live_events() {
    let line = |v| StateChange::from_event(&event(v)).line();
    assert_eq!(
        line(json!({"command_id": "c", "state": "sent", "from": "queued", "attempts": 1})),
        "  sent (attempt 1)"
    );
    assert_eq!(
        line(json!({"command_id": "c", "state": "ack_received", "attempts": 1})),
        "  ack_received"
    );
    assert_eq!(
        line(json!({"command_id": "c", "state": "executing", "attempts": 1})),
        "  executing"
    );
    assert_eq!(
        line(
            json!({"command_id": "c", "state": "result_posted", "attempts": 1,
                    "detail": {"by": "agent", "status": "ok", "duration_ms": 84}})
        ),
        "  result_posted (ok, 84 ms)"
    );
    assert_eq!(
        line(json!({"command_id": "c", "state": "completed", "attempts": 1})),
        "  completed"
    );
    assert_eq!(
        line(json!({"command_id": "c", "state": "expired", "attempts": 0, "error": 2004})),
        "  expired (error 2004 TTL_EXPIRED)"
    );
    assert_eq!(
        line(json!({"command_id": "c", "state": "dlq", "attempts": 3, "error": 5003})),
        "  dlq (error 5003 DELIVERY_FAILED)"
    );
}

#[test]
fn state_lines_from_transitions_match_the_live_ones() {
    let mut v = view("expired");
    v.error = Some(2004);
    let t = |to: &str, detail| TransitionView {
        from: None,
        to: to.into(),
        at: 1,
        detail,
    };
    assert_eq!(
        StateChange::from_transition(&t("sent", json!({"attempt": 2, "via": "retry"})), &v).line(),
        "  sent (attempt 2)"
    );
    assert_eq!(
        StateChange::from_transition(&t("expired", json!({"reason": "ttl"})), &v).line(),
        "  expired (error 2004 TTL_EXPIRED)"
    );
    assert_eq!(
        StateChange::from_transition(&t("failed", json!({"by": "agent", "error": 6004})), &v)
            .line(),
        "  failed (error 6004 INVALID_PARAMS)"
    );
}

#[test]
fn the_result_shows_status_notes_the_object_and_the_artifact() {
    let mut v = view("completed");
    v.result = Some(json!({
        "command_id": v.command_id, "status": "ok", "notes": "captured", "duration_ms": 120,
        "result": {"width": 1920, "height": 1080, "artifact_key": "c2VjcmV0LWtleQ"},
        "artifact": {"artifact_id": "art_01", "sha256": "ab".repeat(32),
                     "size_bytes": 204_800, "content_type": "image/png"},
    }));
    let b = result_block(&v);
    assert!(b.starts_with("result: ok — captured [120 ms]"), "{b}");
    assert!(
        b.contains(
            "  {\n    \"artifact_key\": \"(hidden; tether artifact get uses it)\",\n    \"height\": 1080,\n    \"width\": 1920\n  }"
        ),
        "{b}"
    );
    assert!(
        !b.contains("c2VjcmV0LWtleQ"),
        "the key stays off the screen: {b}"
    );
    assert!(b.contains("artifact: art_01 (image/png, 200.0 KiB)"), "{b}");
    assert!(b.contains(&format!("sha256 {}", "ab".repeat(32))), "{b}");
    assert!(b.contains("tether artifact get art_01"), "{b}");

    let mut failed = view("failed");
    failed.result = Some(
        json!({"status": "failed", "error": 6001, "notes": "kernel\u{1b}[2J said no", "result": {}}),
    );
    let b = result_block(&failed);
    assert_eq!(
        b,
        "result: failed (error 6001 KERNEL_FAILURE) — kernel?[2J said no"
    );
    assert_eq!(result_block(&view("expired")), "");
}

#[test]
fn the_commands_table_is_newest_first_with_short_ids() {
    let mut a = view("completed");
    a.attempts = 1;
    let mut b = view("expired");
    b.command_id = "ffff0000-52b4-4c1e-9a51-6f0c1f3f2a10".into();
    b.error = Some(2004);
    let t = commands_table(&[b, a], "lab-pc-7");
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(
        lines[0],
        "ID        METHOD       STATE                  ATTEMPTS  CREATED                  UPDATED"
    );
    assert!(
        lines[1].starts_with("ffff0000  lock_screen  expired (TTL_EXPIRED)  0"),
        "{t}"
    );
    assert!(
        lines[2].starts_with("0b7e4c7e  lock_screen  completed              1"),
        "{t}"
    );
    assert!(commands_table(&[], "lab-pc-7").contains("tether cmd lab-pc-7"));
}

#[test]
fn one_command_shows_its_timeline() {
    let mut v = view("completed");
    v.transitions = Some(vec![
        TransitionView {
            from: None,
            to: "queued".into(),
            at: 1_764_115_200_000,
            detail: json!({"by": "ingest"}),
        },
        TransitionView {
            from: Some("queued".into()),
            to: "sent".into(),
            at: 1_764_115_200_250,
            detail: json!({"attempt": 1, "via": "connect", "node": "n1"}),
        },
    ]);
    let d = command_detail(&v, "lab-pc-7 (dev_01)");
    assert!(d.contains("device    lab-pc-7 (dev_01)"), "{d}");
    assert!(d.contains("method    lock_screen {}"), "{d}");
    assert!(
        d.contains("timeline:\n  2025-11-26 00:00:00.000 UTC  queued  by=ingest"),
        "{d}"
    );
    assert!(
        d.contains("  2025-11-26 00:00:00.250 UTC  sent    attempt=1 via=connect"),
        "{d}"
    );
    assert!(!d.contains("n1"), "the server node stays out: {d}");
}
