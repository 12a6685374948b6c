#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tether_proto::{ErrorBody, ErrorCode};

use super::*;

fn device(id: &str, name: &str, online: bool) -> DeviceView {
    DeviceView {
        id: id.into(),
        name: name.into(),
        os: "linux".into(),
        status: "active".into(),
        owner_id: Some("usr_1".into()),
        online,
        cert_serial: None,
        paired_at: Some(1_764_115_200_000),
        hwid_hash: "ab".repeat(32),
    }
}

#[test]
fn the_device_table_aligns_columns() {
    let t = devices_table(&[
        device("dev_1", "lab-pc-01", true),
        device("dev_22", "x", false),
    ]);
    let expected = "\
ID      NAME       OS     STATUS  ONLINE
dev_1   lab-pc-01  linux  active  yes
dev_22  x          linux  active  no";
    assert_eq!(t, expected);
    assert!(devices_table(&[]).starts_with("No devices yet."));
}

#[test]
fn names_from_the_server_cannot_drive_the_terminal() {
    let t = devices_table(&[device("dev_1", "evil\u{1b}[2J\u{7}name\n", true)]);
    assert!(!t.chars().any(|c| c.is_control() && c != '\n'));
    assert!(t.contains("evil?[2J?name?"));
    assert_eq!(t.lines().count(), 2);
}

#[test]
fn the_pair_line_says_what_to_compare() {
    let p = PairedView {
        device_id: "dev_1".into(),
        device_name: "lab-pc-01".into(),
        status: "active".into(),
        pairing_code: "482 913".into(),
    };
    assert_eq!(
        paired_line(&p),
        "Paired lab-pc-01 (dev_1), status active. Pairing code: 482 913 — the PC shows the same number."
    );
    let waiting = PairedView {
        status: "awaiting_approval".into(),
        ..p
    };
    assert!(paired_line(&waiting).contains("admin must approve"));
}

#[test]
fn refusals_print_code_name_and_message() {
    let e = CliError::from(tether_client::ClientError::Api {
        status: 401,
        body: ErrorBody::with_message(
            ErrorCode::SecondFactorInvalid,
            "this TOTP code was already used",
        ),
    });
    let text = error_text(&e);
    assert!(
        text.starts_with("error 3006 SECOND_FACTOR_INVALID: this TOTP code was already used"),
        "{text}"
    );
    assert!(text.contains("hint:"));
    assert_eq!(e.exit_status(), 1);

    let j = error_json(&e);
    assert_eq!(j["error"]["code"], 3006);
    assert_eq!(j["error"]["name"], "SECOND_FACTOR_INVALID");
    assert_eq!(j["error"]["exit_code"], 1);

    let local = CliError::usage("bad flag");
    assert_eq!(error_text(&local), "error: bad flag");
    assert_eq!(error_json(&local)["error"]["code"], serde_json::Value::Null);
    assert_eq!(local.exit_status(), 2);

    let down = CliError::from(tether_client::ClientError::Transport("refused".into()));
    assert_eq!(down.exit_status(), 3);
}

#[test]
fn times_are_shown_in_utc() {
    assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc(1_764_115_200_000), "2025-11-26 00:00:00 UTC");
    assert!(device_detail(&device("dev_1", "n", true)).contains("paired at    2025-11-26"));
}
