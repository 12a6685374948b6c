// Test code: overflow or truncation here is a failed test, not a crashed service.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::collections::HashSet;

use super::*;

#[test]
fn numbers_and_names_are_unique_and_round_trip() {
    let mut numbers = HashSet::new();
    let mut names = HashSet::new();
    for &c in ErrorCode::ALL {
        assert!(
            numbers.insert(c.number()),
            "duplicate number {}",
            c.number()
        );
        assert!(names.insert(c.name()), "duplicate name {}", c.name());
        assert_eq!(ErrorCode::from_number(c.number()), Some(c));
        assert_eq!(ErrorCode::from_name(c.name()), Some(c));
        // 202 marks "accepted, pending" (approval, offline device); all others are errors.
        assert!(
            c.http_status() == 202 || (400..=599).contains(&c.http_status()),
            "{}",
            c.name()
        );
        assert!(c.message().ends_with('.'), "{}", c.name());
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, c.number().to_string());
        assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), c);
    }
}

#[test]
fn categories_follow_the_thousands_digit() {
    for &c in ErrorCode::ALL {
        let want = match c.number() / 1000 {
            1 => ErrorCategory::Input,
            2 => ErrorCategory::Trust,
            3 => ErrorCategory::Auth,
            4 => ErrorCategory::Policy,
            5 => ErrorCategory::Delivery,
            6 => ErrorCategory::Execution,
            7 => ErrorCategory::Artifact,
            9 => ErrorCategory::Server,
            _ => panic!("{} has no category", c.number()),
        };
        assert_eq!(c.category(), want, "{}", c.name());
    }
}

#[test]
fn the_seed_codes_are_where_the_seed_puts_them() {
    assert_eq!(ErrorCode::SignatureInvalid.number(), 2001);
    for name in [
        "TTL_EXPIRED",
        "SEQUENCE_REPLAY",
        "UNKNOWN_KID",
        "POLICY_DENIED",
        "DEVICE_OFFLINE",
        "BACKPRESSURE",
        "KERNEL_FAILURE",
    ] {
        assert!(ErrorCode::from_name(name).is_some(), "{name}");
    }
}

#[test]
fn unknown_codes_are_refused_when_decoding() {
    assert!(serde_json::from_str::<ErrorCode>("1999").is_err());
    assert!(serde_json::from_str::<ErrorCode>("\"SIGNATURE_INVALID\"").is_err());
    assert!(serde_json::from_str::<ErrorCode>("-1").is_err());
}

#[test]
fn error_body_carries_number_name_and_message() {
    let b = ProtoError::SignatureInvalid("x").to_body();
    let v = serde_json::to_value(&b).unwrap();
    assert_eq!(v["code"], 2001);
    assert_eq!(v["error"], "SIGNATURE_INVALID");
    assert!(v.get("trace_id").is_none());
}

/// `docs/protocol.md` carries the same table; a client author reads it there.
#[test]
fn protocol_doc_error_table_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    let doc = std::fs::read_to_string(path).expect("docs/protocol.md exists");
    let mut rows = 0;
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, num, name, status, msg, _] = cells.as_slice() else {
            continue;
        };
        let Ok(num) = num.parse::<u16>() else {
            continue;
        };
        if !(1000..10000).contains(&num) {
            continue;
        }
        let code =
            ErrorCode::from_number(num).unwrap_or_else(|| panic!("doc has unknown code {num}"));
        assert_eq!(name.trim_matches('`'), code.name(), "{num}");
        assert_eq!(status.parse::<u16>().unwrap(), code.http_status(), "{num}");
        assert_eq!(*msg, code.message(), "{num}");
        rows += 1;
    }
    assert_eq!(
        rows,
        ErrorCode::ALL.len(),
        "every code has exactly one row in docs/protocol.md"
    );
}
