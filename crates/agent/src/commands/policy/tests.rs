#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use tether_policy::Policy;
use tether_proto::messages::notify::PolicyUpdate;

use super::*;

/// 2025-11-26 (a Wednesday) 12:00 UTC.
const NOON_WED: u64 = 1_764_158_400_000;

fn bundle(v: Value) -> Bundle {
    Bundle {
        version: 7,
        hash: PolicyUpdate::hash_bundle(&v).unwrap(),
        policy: Policy::from_value(&v).unwrap(),
    }
}

fn delivery(method: &str, extra: Value) -> CommandDelivery {
    let mut d = json!({
        "command_id": "0b7e4c7e-52b4-4c1e-9a51-6f0c1f3f2a10",
        "device_id": "dev_1",
        "method": method,
        "params": {},
        "priority": "normal",
        "sensitivity": "normal",
        "origin_user_id": "usr_alice",
        "policy_version": 0,
        "expires_at": NOON_WED + 60_000,
        "attempt": 1,
    });
    if let (Some(o), Some(e)) = (d.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    serde_json::from_value(d).unwrap()
}

fn at(ms: u64) -> UnixMillis {
    UnixMillis(ms)
}

#[test]
fn a_method_deny_rule_denies_with_the_rule_named() {
    let b = bundle(json!({"format": 1, "rules": [
        {"id": "no-reboots", "effect": "deny", "match": {"methods": ["reboot"]}}]}));
    let d = check(
        &b,
        &delivery("reboot", json!({})),
        "dev_1",
        at(NOON_WED),
        &[],
    )
    .unwrap();
    assert_eq!(d.code, ErrorCode::PolicyDenied);
    assert_eq!(d.rule.as_deref(), Some("no-reboots"));
    assert!(d.reason.contains("no-reboots"), "{}", d.reason);
    assert_eq!(d.result(&b)["rule"], "no-reboots");
    assert_eq!(d.result(&b)["policy_version"], 7);
    assert!(
        check(
            &b,
            &delivery("lock_screen", json!({})),
            "dev_1",
            at(NOON_WED),
            &[]
        )
        .is_none()
    );
}

#[test]
fn time_windows_use_the_agents_clock() {
    let b = bundle(json!({"format": 1, "rules": [
        {"id": "office-hours", "effect": "deny", "match": {"methods": ["reboot"],
         "outside_window": {"start": "08:00", "end": "18:00"}}}]}));
    let d = delivery("reboot", json!({}));
    assert!(check(&b, &d, "dev_1", at(NOON_WED), &[]).is_none());
    let night = NOON_WED + 11 * 3_600_000;
    let denial = check(&b, &d, "dev_1", at(night), &[]).unwrap();
    assert_eq!(denial.rule.as_deref(), Some("office-hours"));
}

#[test]
fn device_and_user_conditions_see_this_device_and_the_originator() {
    let b = bundle(json!({"format": 1, "rules": [
        {"id": "not-here", "effect": "deny", "match": {"devices": ["dev_1"], "users": ["usr_alice"]}}]}));
    let d = delivery("lock_screen", json!({}));
    assert!(check(&b, &d, "dev_1", at(NOON_WED), &[]).is_some());
    assert!(check(&b, &d, "dev_2", at(NOON_WED), &[]).is_none());
    let bob = delivery("lock_screen", json!({"origin_user_id": "usr_bob"}));
    assert!(check(&b, &bob, "dev_1", at(NOON_WED), &[]).is_none());
}

#[test]
fn a_role_the_agent_cannot_see_is_left_to_the_server() {
    // Denied for students only: the originator may be an admin, so the agent lets it
    // through; denied for every role that may command: denied.
    let students = bundle(json!({"format": 1, "rules": [
        {"id": "students", "effect": "deny", "match": {"roles": ["student"], "methods": ["reboot"]}}]}));
    assert!(
        check(
            &students,
            &delivery("reboot", json!({})),
            "dev_1",
            at(NOON_WED),
            &[]
        )
        .is_none()
    );
    let everyone = bundle(json!({"format": 1, "default": "deny", "rules": [
        {"id": "auditors", "effect": "allow", "match": {"roles": ["auditor"]}}]}));
    let d = check(
        &everyone,
        &delivery("reboot", json!({})),
        "dev_1",
        at(NOON_WED),
        &[],
    )
    .unwrap();
    assert_eq!(d.rule, None, "the default decided");
}

#[test]
fn rate_rules_count_what_this_pc_ran() {
    let b = bundle(json!({"format": 1, "rules": [
        {"id": "lock-rate", "effect": "deny", "match": {"methods": ["lock_screen"]},
         "rate": {"max": 2, "per_s": 60, "scope": "user"}}]}));
    assert_eq!(longest_rate_window_s(&b), 60);
    let ran = |secs_ago: u64, user: &str, method: Method| Ran {
        at: at(NOON_WED - secs_ago * 1000),
        method,
        user_id: user.into(),
    };
    let d = delivery("lock_screen", json!({}));
    let one = [ran(10, "usr_alice", Method::LockScreen)];
    assert!(check(&b, &d, "dev_1", at(NOON_WED), &one).is_none());
    let two = [
        ran(10, "usr_alice", Method::LockScreen),
        ran(20, "usr_alice", Method::LockScreen),
    ];
    let denial = check(&b, &d, "dev_1", at(NOON_WED), &two).unwrap();
    assert_eq!(denial.rule.as_deref(), Some("lock-rate"));
    // Another user's, another method's, and older ones do not count.
    let others = [
        ran(10, "usr_bob", Method::LockScreen),
        ran(10, "usr_alice", Method::Screenshot),
        ran(61, "usr_alice", Method::LockScreen),
        ran(5, "usr_alice", Method::LockScreen),
    ];
    assert!(check(&b, &d, "dev_1", at(NOON_WED), &others).is_none());
}

#[test]
fn approvals_the_bundle_asks_for_must_be_carried() {
    let b = bundle(json!({"format": 1, "rules": [
        {"id": "dumps-need-two", "effect": "sensitive", "match": {"methods": ["memory_dump"]},
         "approvals": 2}]}));
    let none = delivery("memory_dump", json!({"params": {"max_bytes": 1_048_576}}));
    let d = check(&b, &none, "dev_1", at(NOON_WED), &[]).unwrap();
    assert_eq!(d.code, ErrorCode::ApprovalRequired);
    assert_eq!(d.rule.as_deref(), Some("dumps-need-two"));
    let two = delivery(
        "memory_dump",
        json!({"params": {"max_bytes": 1_048_576}, "approvals_required": 2}),
    );
    assert!(check(&b, &two, "dev_1", at(NOON_WED), &[]).is_none());
    // A fresh second factor is the server's to check: the built-in sensitivity passes.
    let builtin = bundle(tether_policy::builtin());
    assert!(check(&builtin, &none, "dev_1", at(NOON_WED), &[]).is_none());
}
