//! One test per condition, effect and validation rule.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "tests: a broken expectation should panic with its message"
)]

use std::collections::HashMap;

use serde_json::{Value, json};
use tether_proto::UnixMillis;
use tether_proto::messages::command::Method;

use crate::*;

/// 2025-11-24 (a Monday) 12:00 UTC.
const NOON_MONDAY: UnixMillis = UnixMillis(1_763_942_400_000 + 12 * 3_600_000);

fn policy(v: Value) -> Policy {
    Policy::from_value(&v).unwrap()
}

fn req(method: Method) -> Request<'static> {
    Request {
        user_id: "usr_s",
        role: Role::Student,
        device_id: "dev_1",
        method,
    }
}

fn decide(p: &Policy, r: &Request<'_>, now: UnixMillis) -> Decision {
    p.evaluate(
        r,
        &Facts {
            now,
            second_factor_at: None,
            counts: &(),
        },
    )
}

fn err(v: Value) -> PolicyError {
    Policy::from_value(&v).unwrap_err()
}

#[test]
fn builtin_allows_and_steps_up_memory_dumps() {
    let p = policy(builtin());
    let d = decide(&p, &req(Method::Reboot), NOON_MONDAY);
    assert_eq!((d.outcome, d.rule), (Outcome::Allow, None));
    let d = decide(&p, &req(Method::MemoryDump), NOON_MONDAY);
    assert_eq!(
        d.outcome,
        Outcome::NeedsStepUp {
            fresh_second_factor_s: DEFAULT_FRESH_SECOND_FACTOR_S
        }
    );
    assert!(d.sensitive);
    assert!(d.reason.contains("sensitive by default"), "{}", d.reason);
    // A second factor 299 s ago is fresh; 301 s ago is not.
    for (ago, fresh) in [(299_000, true), (301_000, false)] {
        let d = p.evaluate(
            &req(Method::MemoryDump),
            &Facts {
                now: NOON_MONDAY,
                second_factor_at: Some(UnixMillis(NOON_MONDAY.0 - ago)),
                counts: &(),
            },
        );
        assert_eq!(d.outcome == Outcome::Allow, fresh, "{ago}: {d:?}");
    }
}

#[test]
fn roles_users_devices_and_methods_all_must_hold() {
    let p = policy(json!({"format": 1, "rules": [
        {"id": "r", "effect": "deny", "match": {
            "roles": ["student"], "users": ["usr_s"], "devices": ["dev_1", "dev_2"],
            "methods": ["reboot", "shutdown"]}}
    ]}));
    assert_eq!(
        decide(&p, &req(Method::Reboot), NOON_MONDAY).outcome,
        Outcome::Deny
    );
    assert_eq!(
        decide(&p, &req(Method::Shutdown), NOON_MONDAY).outcome,
        Outcome::Deny
    );
    assert_eq!(
        decide(&p, &req(Method::LockScreen), NOON_MONDAY).outcome,
        Outcome::Allow
    );
    let admin = Request {
        role: Role::Admin,
        ..req(Method::Reboot)
    };
    assert_eq!(decide(&p, &admin, NOON_MONDAY).outcome, Outcome::Allow);
    let other_user = Request {
        user_id: "usr_t",
        ..req(Method::Reboot)
    };
    assert_eq!(decide(&p, &other_user, NOON_MONDAY).outcome, Outcome::Allow);
    let other_device = Request {
        device_id: "dev_3",
        ..req(Method::Reboot)
    };
    assert_eq!(
        decide(&p, &other_device, NOON_MONDAY).outcome,
        Outcome::Allow
    );
}

#[test]
fn first_matching_rule_wins_then_the_default() {
    let p = policy(json!({"format": 1, "default": "deny", "rules": [
        {"id": "admins-anything", "effect": "allow", "match": {"roles": ["admin"]}},
        {"id": "no-reboots", "effect": "deny", "match": {"methods": ["reboot"]}},
        {"id": "students-lock", "effect": "allow", "match": {"methods": ["lock_screen", "reboot"]}}
    ]}));
    let d = decide(&p, &req(Method::Reboot), NOON_MONDAY);
    assert_eq!(
        (d.outcome, d.rule.as_deref()),
        (Outcome::Deny, Some("no-reboots"))
    );
    let d = decide(&p, &req(Method::LockScreen), NOON_MONDAY);
    assert_eq!(d.rule.as_deref(), Some("students-lock"));
    let d = decide(&p, &req(Method::Screenshot), NOON_MONDAY);
    assert_eq!((d.outcome, d.rule), (Outcome::Deny, None));
    assert!(d.reason.contains("default is deny"), "{}", d.reason);
    let admin = Request {
        role: Role::Admin,
        ..req(Method::Reboot)
    };
    assert_eq!(decide(&p, &admin, NOON_MONDAY).outcome, Outcome::Allow);
}

#[test]
fn outside_window_denies_with_the_rule_and_window_in_the_reason() {
    let p = policy(json!({"format": 1, "rules": [
        {"id": "no-night-reboots", "effect": "deny",
         "match": {"methods": ["reboot"], "outside_window": {
            "days": ["mon","tue","wed","thu","fri"], "start": "08:00", "end": "18:00",
            "utc_offset_minutes": 60}}}
    ]}));
    // Monday 12:00 UTC = 13:00 local: inside office hours, allowed.
    assert_eq!(
        decide(&p, &req(Method::Reboot), NOON_MONDAY).outcome,
        Outcome::Allow
    );
    // Monday 22:00 UTC: outside, denied.
    let night = UnixMillis(NOON_MONDAY.0 + 10 * 3_600_000);
    let d = decide(&p, &req(Method::Reboot), night);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(
        d.reason,
        "rule no-night-reboots: reboot is not allowed outside mon-fri 08:00-18:00 (UTC+01:00)"
    );
    // Saturday noon: outside.
    let saturday = UnixMillis(NOON_MONDAY.0 + 5 * 86_400_000);
    assert_eq!(
        decide(&p, &req(Method::Reboot), saturday).outcome,
        Outcome::Deny
    );
}

#[test]
fn inside_window_condition() {
    let p = policy(json!({"format": 1, "rules": [
        {"id": "lunch", "effect": "deny", "description": "no screenshots at lunch",
         "match": {"methods": ["screenshot"], "window": {"start": "12:00", "end": "13:00"}}}
    ]}));
    let d = decide(&p, &req(Method::Screenshot), NOON_MONDAY);
    assert_eq!(d.outcome, Outcome::Deny);
    assert!(
        d.reason
            .ends_with("inside 12:00-13:00 (UTC+00:00) (no screenshots at lunch)"),
        "{}",
        d.reason
    );
    let later = UnixMillis(NOON_MONDAY.0 + 3_600_000);
    assert_eq!(
        decide(&p, &req(Method::Screenshot), later).outcome,
        Outcome::Allow
    );
}

#[test]
fn rate_rule_matches_from_the_n_plus_first_and_fails_closed() {
    let p = policy(json!({"format": 1, "rules": [
        {"id": "lock-rate", "effect": "deny", "match": {"methods": ["lock_screen"]},
         "rate": {"max": 3, "per_s": 3600, "scope": "user_device"}}
    ]}));
    let r = req(Method::LockScreen);
    let queries = p.rate_queries(&r, NOON_MONDAY);
    assert_eq!(
        queries,
        vec![RateQuery {
            rule_id: "lock-rate".into(),
            scope: RateScope::UserDevice,
            user_id: Some("usr_s".into()),
            device_id: Some("dev_1".into()),
            methods: vec![Method::LockScreen],
            since: UnixMillis(NOON_MONDAY.0 - 3_600_000),
        }]
    );
    assert!(p.rate_queries(&req(Method::Reboot), NOON_MONDAY).is_empty());
    let with = |n: u64| {
        let counts: HashMap<String, u64> = [("lock-rate".to_owned(), n)].into();
        p.evaluate(
            &r,
            &Facts {
                now: NOON_MONDAY,
                second_factor_at: None,
                counts: &counts,
            },
        )
    };
    assert_eq!(with(2).outcome, Outcome::Allow, "the third is allowed");
    let d = with(3);
    assert_eq!(d.outcome, Outcome::Deny, "the fourth is denied");
    assert!(
        d.reason.contains("more than 3 times per 3600 s"),
        "{}",
        d.reason
    );
    // No count provided: the rule holds (fail closed).
    assert_eq!(decide(&p, &r, NOON_MONDAY).outcome, Outcome::Deny);
}

#[test]
fn sensitive_rules_step_up_approvals_or_both() {
    let p = policy(json!({"format": 1, "rules": [
        {"id": "shots-step-up", "effect": "sensitive", "match": {"methods": ["screenshot"]},
         "fresh_second_factor_s": 60},
        {"id": "dumps-two", "effect": "sensitive", "match": {"methods": ["memory_dump"]},
         "approvals": 2, "approvers": {"roles": ["admin", "auditor"]}},
        {"id": "logs-both", "effect": "sensitive", "match": {"methods": ["collect_logs"]},
         "fresh_second_factor_s": 120, "approvals": 1}
    ]}));
    let fresh = Facts {
        now: NOON_MONDAY,
        second_factor_at: Some(UnixMillis(NOON_MONDAY.0 - 30_000)),
        counts: &(),
    };
    let d = decide(&p, &req(Method::Screenshot), NOON_MONDAY);
    assert_eq!(
        d.outcome,
        Outcome::NeedsStepUp {
            fresh_second_factor_s: 60
        }
    );
    assert_eq!(d.rule.as_deref(), Some("shots-step-up"));
    assert_eq!(
        p.evaluate(&req(Method::Screenshot), &fresh).outcome,
        Outcome::Allow
    );

    // The rule names memory_dump: approvals replace the built-in step-up.
    let d = decide(&p, &req(Method::MemoryDump), NOON_MONDAY);
    let Outcome::NeedsApproval {
        approvals,
        approvers,
    } = &d.outcome
    else {
        panic!("{d:?}");
    };
    assert_eq!(*approvals, 2);
    assert!(approvers.admits("usr_x", Role::Auditor));
    assert!(!approvers.admits("usr_x", Role::Student));
    assert!(d.reason.contains("needs 2 approvals"), "{}", d.reason);

    // Both: step-up first, then approvals.
    let d = decide(&p, &req(Method::CollectLogs), NOON_MONDAY);
    assert_eq!(
        d.outcome,
        Outcome::NeedsStepUp {
            fresh_second_factor_s: 120
        }
    );
    let d = p.evaluate(&req(Method::CollectLogs), &fresh);
    assert!(
        matches!(d.outcome, Outcome::NeedsApproval { approvals: 1, .. }),
        "{d:?}"
    );
    assert_eq!(d.word(), "needs_approval");
}

#[test]
fn a_broad_allow_does_not_lift_built_in_sensitivity() {
    let p = policy(json!({"format": 1, "rules": [
        {"id": "admins", "effect": "allow", "match": {"roles": ["admin"]}},
        {"id": "dumps-ok", "effect": "allow", "match": {"methods": ["memory_dump"]}}
    ]}));
    let admin = Request {
        role: Role::Admin,
        ..req(Method::MemoryDump)
    };
    let d = decide(&p, &admin, NOON_MONDAY);
    assert!(matches!(d.outcome, Outcome::NeedsStepUp { .. }), "{d:?}");
    assert_eq!(d.rule.as_deref(), Some("admins"));
    let d = decide(&p, &req(Method::MemoryDump), NOON_MONDAY);
    assert_eq!(
        (d.outcome, d.rule.as_deref()),
        (Outcome::Allow, Some("dumps-ok"))
    );
}

#[test]
fn approvers_default_to_admins() {
    let a = Approvers::default();
    assert!(a.admits("usr_a", Role::Admin));
    assert!(!a.admits("usr_a", Role::Auditor));
    let named = Approvers {
        roles: None,
        users: Some(vec!["usr_b".into()]),
    };
    assert!(named.admits("usr_b", Role::Student));
    assert!(!named.admits("usr_a", Role::Admin));
}

#[test]
fn decisions_serialize_for_the_api() {
    let p = policy(json!({"format": 1, "rules": [
        {"id": "two", "effect": "sensitive", "match": {"methods": ["reboot"]}, "approvals": 2}
    ]}));
    let d = decide(&p, &req(Method::Reboot), NOON_MONDAY);
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["decision"], "needs_approval");
    assert_eq!(v["approvals"], 2);
    assert_eq!(v["rule"], "two");
    assert_eq!(v["approvers"], json!({}));
    assert_eq!(v["sensitive"], true);
}

#[test]
fn validation_names_the_field() {
    let cases = [
        (json!([]), "."),
        (json!({"rules": []}), "."),
        (json!({"format": 2}), "format"),
        (json!({"format": 1, "extra": 1}), "extra"),
        (json!({"format": 1, "default": "maybe"}), "default"),
        (
            json!({"format": 1, "rules": [{"id": "a", "effect": "nope"}]}),
            "rules[0].effect",
        ),
        (
            json!({"format": 1, "rules": [{"id": "A b", "effect": "deny"}]}),
            "rules[0].id",
        ),
        (
            json!({"format": 1, "rules": [{"id": "a", "effect": "deny"}, {"id": "a", "effect": "allow"}]}),
            "rules[1].id",
        ),
        (
            json!({"format": 1, "rules": [{"id": "a", "effect": "deny", "match": {"methods": ["reboot", "format_c"]}}]}),
            "rules[0].match.methods[1]",
        ),
        (
            json!({"format": 1, "rules": [{"id": "a", "effect": "deny", "match": {"methods": []}}]}),
            "rules[0].match.methods",
        ),
        (
            json!({"format": 1, "rules": [{"id": "a", "effect": "deny", "match": {"colour": "red"}}]}),
            "rules[0].match.colour",
        ),
        (
            json!({"format": 1, "rules": [{"id": "a", "effect": "deny", "match": {"roles": ["root"]}}]}),
            "rules[0].match.roles[0]",
        ),
        (
            json!({"format": 1, "rules": [{"id": "a", "effect": "deny", "match": {"users": ["has space"]}}]}),
            "rules[0].match.users[0]",
        ),
        (
            json!({"format": 1, "rules": [{"id": "a", "effect": "deny", "match": {"window": {"start": "25:00", "end": "18:00"}}}]}),
            "rules[0].match.window.start",
        ),
        (
            json!({"format": 1, "rules": [{"id": "a", "effect": "deny", "match": {"outside_window": {"days": ["funday"], "start": "08:00", "end": "18:00"}}}]}),
            "rules[0].match.outside_window.days[0]",
        ),
        (
            json!({"format": 1, "rules": [{"id": "a", "effect": "deny", "rate": {"max": 0, "per_s": 60}}]}),
            "rules[0].rate.max",
        ),
        (
            json!({"format": 1, "rules": [{"id": "a", "effect": "deny", "rate": {"max": 1, "per_s": 60, "scope": "planet"}}]}),
            "rules[0].rate.scope",
        ),
        (
            json!({"format": 1, "rules": [{"id": "a", "effect": "sensitive"}]}),
            "rules[0]",
        ),
        (
            json!({"format": 1, "rules": [{"id": "a", "effect": "sensitive", "approvals": 9}]}),
            "rules[0].approvals",
        ),
        (
            json!({"format": 1, "rules": [{"id": "a", "effect": "sensitive", "fresh_second_factor_s": 0}]}),
            "rules[0].fresh_second_factor_s",
        ),
        (
            json!({"format": 1, "rules": [{"id": "a", "effect": "sensitive", "fresh_second_factor_s": 60, "approvers": {"roles": ["admin"]}}]}),
            "rules[0].approvers",
        ),
        (
            json!({"format": 1, "rules": [{"id": "a", "effect": "deny", "approvals": 2}]}),
            "rules[0].approvals",
        ),
        (
            json!({"format": 1, "rules": [{"id": "a", "effect": "allow", "description": "line\nbreak"}]}),
            "rules[0].description",
        ),
    ];
    for (bundle, path) in cases {
        let e = err(bundle.clone());
        assert_eq!(e.path, path, "{bundle}: {e}");
        assert!(!e.message.is_empty());
    }
}

#[test]
fn the_documented_example_is_valid() {
    let p = policy(json!({"format": 1, "default": "allow",
    "rules": [
      {"id": "no-night-reboots", "description": "Students reboot in office hours only", "effect": "deny",
       "match": {"roles": ["student"], "methods": ["reboot","shutdown"],
                 "outside_window": {"days": ["mon","tue","wed","thu","fri"], "start": "08:00", "end": "18:00", "utc_offset_minutes": 60}}},
      {"id": "lock-rate", "effect": "deny", "match": {"methods": ["lock_screen"]}, "rate": {"max": 10, "per_s": 3600, "scope": "user"}},
      {"id": "dumps-are-sensitive", "effect": "sensitive", "match": {"methods": ["memory_dump"]}, "fresh_second_factor_s": 300, "approvals": 2}
    ]}));
    assert_eq!(p.rules.len(), 3);
    // Round trip: what the types serialize parses to the same policy.
    let again = Policy::from_value(&serde_json::to_value(&p).unwrap()).unwrap();
    assert_eq!(again, p);
}

#[test]
fn a_rule_may_ask_for_as_many_approvals_as_a_delivery_carries() {
    assert_eq!(
        usize::try_from(MAX_APPROVALS).ok(),
        Some(tether_proto::owner_sig::MAX_APPROVALS)
    );
}
