#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

use super::*;
use crate::args::parse_param;
use crate::error::{EXIT_DENIED, EXIT_DLQ, EXIT_EXPIRED, EXIT_FAILED, EXIT_TIMEOUT};

fn pairs(args: &[&str]) -> Vec<(String, Value)> {
    args.iter().map(|a| parse_param(a).unwrap()).collect()
}

#[test]
fn params_merge_json_and_pairs() {
    assert_eq!(build_params(None, &[]).unwrap(), json!({}));
    let p = build_params(
        Some(r#"{"delay_s": 60}"#),
        &pairs(&["reason=patch day", "force=true"]),
    )
    .unwrap();
    assert_eq!(
        p,
        json!({"delay_s": 60, "reason": "patch day", "force": true})
    );
    // And the result is what the PC accepts for a reboot.
    Method::Reboot.opcode().parse_params(&p).unwrap();
}

#[test]
fn params_refuse_non_objects_bad_json_and_repeats() {
    for bad in ["[1]", "42", "\"x\"", "{", ""] {
        assert!(
            matches!(build_params(Some(bad), &[]), Err(CliError::Usage(_))),
            "{bad:?}"
        );
    }
    let e = build_params(Some(r#"{"delay_s": 1}"#), &pairs(&["delay_s=2"])).unwrap_err();
    assert!(e.to_string().contains("twice"), "{e}");
    let e = build_params(None, &pairs(&["a=1", "a=2"])).unwrap_err();
    assert!(e.to_string().contains("twice"), "{e}");
}

#[test]
fn the_opcode_rules_catch_bad_params_before_sending() {
    let p = build_params(None, &pairs(&["delay_s=99999"])).unwrap();
    assert!(Method::Reboot.opcode().parse_params(&p).is_err());
    let p = build_params(None, &pairs(&["anything=1"])).unwrap();
    assert!(Method::LockScreen.opcode().parse_params(&p).is_err());
    let p = build_params(None, &pairs(&[r#"sources=["system"]"#, "max_bytes=4096"])).unwrap();
    Method::CollectLogs.opcode().parse_params(&p).unwrap();
}

fn view(state: &str) -> CommandView {
    serde_json::from_value(json!({
        "command_id": "0b7e4c7e-52b4-4c1e-9a51-6f0c1f3f2a10",
        "device_id": "dev_01",
        "method": "lock_screen",
        "params": {},
        "priority": "normal",
        "state": state,
        "attempts": 1,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "origin_user_id": "usr_1",
        "created_at": 1_764_115_200_000u64,
        "expires_at": 1_764_115_500_000u64,
        "updated_at": 1_764_115_200_000u64,
    }))
    .unwrap()
}

fn target() -> Target {
    Target {
        id: "dev_01".into(),
        name: Some("lab-pc-7".into()),
    }
}

fn failure(v: &CommandView, waited: Option<Duration>) -> CliError {
    ending(v, &target(), waited).unwrap_err()
}

#[test]
fn success_and_in_flight_are_not_errors() {
    ending(&view("queued"), &target(), None).unwrap();
    let mut ok = view("completed");
    ok.result = Some(json!({"status": "ok", "notes": "screen locked", "result": {}}));
    ending(&ok, &target(), None).unwrap();
    ending(&ok, &target(), Some(Duration::from_secs(1))).unwrap();
    // A completed command without a result (an older server) counts as done.
    ending(&view("completed"), &target(), None).unwrap();
}

#[test]
fn each_way_of_not_succeeding_has_its_exit_status_and_code() {
    let t = failure(&view("queued"), Some(Duration::from_secs(2)));
    assert_eq!(t.exit_status(), EXIT_TIMEOUT);
    assert_eq!(t.code(), None);
    let text = crate::output::error_text(&t);
    assert!(
        text.starts_with("error TIMEOUT: command 0b7e4c7e-"),
        "{text}"
    );
    assert!(text.contains("still queued after 2 s"), "{text}");
    assert!(
        text.contains("lab-pc-7 (dev_01) gets it when it connects"),
        "{text}"
    );

    let mut expired = view("expired");
    expired.error = Some(2004);
    let e = failure(&expired, None);
    assert_eq!(e.exit_status(), EXIT_EXPIRED);
    assert!(
        crate::output::error_text(&e).starts_with("error 2004 TTL_EXPIRED: command "),
        "{e}"
    );

    let mut dlq = view("dlq");
    dlq.error = Some(5003);
    dlq.attempts = 3;
    let e = failure(&dlq, None);
    assert_eq!(e.exit_status(), EXIT_DLQ);
    assert!(e.to_string().contains("DELIVERY_FAILED"), "{e}");
    assert!(e.to_string().contains("after 3 attempts"), "{e}");

    let mut denied = view("denied");
    denied.error = Some(4001);
    assert_eq!(failure(&denied, None).exit_status(), EXIT_DENIED);

    // A failure the PC reported: the code is the result's.
    let mut failed = view("failed");
    failed.result = Some(json!({"status": "failed", "error": 6001, "notes": "", "result": {}}));
    let e = failure(&failed, None);
    assert_eq!(e.exit_status(), EXIT_FAILED);
    assert_eq!(e.code(), Some(ErrorCode::KernelFailure));
    assert!(e.hint().unwrap().contains("tether errors 6001"), "{e:?}");

    // `completed` whose result says otherwise.
    let mut odd = view("completed");
    odd.result = Some(json!({"status": "denied", "error": 6003, "notes": "", "result": {}}));
    assert_eq!(failure(&odd, None).exit_status(), EXIT_DENIED);
}

#[test]
fn the_json_error_carries_the_outcome_and_the_command() {
    let mut expired = view("expired");
    expired.error = Some(2004);
    let j = crate::output::error_json(&failure(&expired, None));
    assert_eq!(j["error"]["outcome"], "expired");
    assert_eq!(j["error"]["code"], 2004);
    assert_eq!(j["error"]["name"], "TTL_EXPIRED");
    assert_eq!(j["error"]["exit_code"], EXIT_EXPIRED);
    assert_eq!(j["error"]["command"]["state"], "expired");
    assert_eq!(j["error"]["command_id"], expired.command_id);
    assert_eq!(j["error"]["trace_id"], expired.trace_id);
}
