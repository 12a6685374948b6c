#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use tether_proto::{ErrorCode, UnixMillis};
use tether_store::{AuditEvent, NewAuditEvent};

use super::export::{csv, file_name, push_cell, rfc3339_ms};
use super::params::{Filters, Format, MAX_LIMIT, Page};

fn cell(v: &str) -> String {
    let mut out = String::new();
    push_cell(&mut out, v);
    out
}

#[test]
fn cells_are_quoted_as_rfc_4180_says() {
    assert_eq!(cell("plain"), "plain");
    assert_eq!(cell(""), "");
    assert_eq!(cell("a,b"), "\"a,b\"");
    assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(cell("two\nlines"), "\"two\nlines\"");
    assert_eq!(cell("cr\rhere"), "\"cr\rhere\"");
}

#[test]
fn formulas_are_defused_with_a_quote() {
    assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
    assert_eq!(cell("=1+2"), "'=1+2");
    assert_eq!(cell("+1"), "'+1");
    assert_eq!(cell("-1"), "'-1");
    assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
    assert_eq!(cell("\tx"), "'\tx");
    assert_eq!(cell("\rx"), "\"'\rx\"");
    assert_eq!(cell("a=1"), "a=1", "only at the start");
}

#[test]
fn a_csv_export_has_the_header_and_one_record_per_event() {
    let e = AuditEvent {
        seq: 7,
        event: NewAuditEvent {
            actor: "usr_1".into(),
            action: "command.queued".into(),
            target: None,
            outcome: "success".into(),
            detail: json!({"b": "x,y", "a": 1}),
            trace_id: Some("t1".into()),
            at: UnixMillis(1_764_115_200_123),
            device_id: None,
        },
    };
    assert_eq!(
        csv(&[e]),
        "seq,at,actor,action,target,outcome,trace_id,detail\r\n\
         7,2025-11-26T00:00:00.123Z,usr_1,command.queued,,success,t1,\"{\"\"a\"\":1,\"\"b\"\":\"\"x,y\"\"}\"\r\n"
    );
    assert_eq!(
        csv(&[]),
        "seq,at,actor,action,target,outcome,trace_id,detail\r\n"
    );
}

#[test]
fn times_are_rfc_3339_utc_and_names_compact() {
    assert_eq!(rfc3339_ms(UnixMillis(0)), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        rfc3339_ms(UnixMillis(1_764_115_200_005)),
        "2025-11-26T00:00:00.005Z"
    );
    assert_eq!(rfc3339_ms(UnixMillis(u64::MAX)), u64::MAX.to_string());
    assert_eq!(
        file_name(UnixMillis(1_764_119_045_999), "csv"),
        "tether-audit-20251126T010405Z.csv"
    );
}

fn refused(r: Result<impl std::fmt::Debug, crate::error::ApiError>) -> String {
    let e = r.expect_err("refused");
    assert_eq!(e.code(), ErrorCode::InvalidField);
    e.message().to_owned()
}

#[test]
fn parameters_are_checked_and_named() {
    let f = Filters::parse(
        Some("usr_1"),
        Some(""),
        Some("command"),
        Some("denied"),
        Some("5"),
        Some("9"),
    )
    .unwrap();
    assert_eq!(f.actor.as_deref(), Some("usr_1"));
    assert_eq!(f.device, None, "empty is absent");
    assert_eq!((f.since, f.until), (Some(5), Some(9)));

    let bad = |since: &str, until: &str, outcome: &str| {
        refused(Filters::parse(
            None,
            None,
            None,
            Some(outcome),
            Some(since),
            Some(until),
        ))
    };
    assert!(bad("abc", "", "").starts_with("since: "));
    assert!(bad("-1", "", "").starts_with("since: "));
    assert!(bad("+1", "", "").starts_with("since: "));
    assert!(bad("1", "1.5", "").starts_with("until: "));
    assert!(bad("9", "5", "").starts_with("until: "));
    assert!(bad("", "", "ok").starts_with("outcome: "));
    assert!(bad("", "", "Success").starts_with("outcome: "));
    assert!(
        refused(Filters::parse(
            Some(&"x".repeat(256)),
            None,
            None,
            None,
            None,
            None
        ))
        .starts_with("actor: ")
    );

    assert_eq!(
        Page::parse(None, None).unwrap(),
        Page {
            before: None,
            limit: 100
        }
    );
    assert_eq!(
        Page::parse(Some("12"), Some("500")).unwrap().before,
        Some(12)
    );
    for limit in ["0", "501", "x", "-1"] {
        assert!(
            refused(Page::parse(None, Some(limit))).starts_with("limit: "),
            "{limit}"
        );
    }
    assert_eq!(MAX_LIMIT, 500);
    assert!(refused(Page::parse(Some("z"), None)).starts_with("before: "));

    assert_eq!(Format::parse(None).unwrap(), Format::Csv);
    assert_eq!(Format::parse(Some("json")).unwrap(), Format::Json);
    assert!(refused(Format::parse(Some("xml"))).starts_with("format: "));
}
