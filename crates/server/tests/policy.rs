//! Central policy through an in-process server with a manual clock: admins save the
//! policy (validated, versioned, announced), a dry-run names the deciding rule, and
//! `POST /api/command` obeys it — a time-window rule outside its window, a rate rule's
//! N+1th command, `memory_dump` without and with a fresh TOTP step-up, and a rule that
//! wants two approvers (one leaves it waiting, the same approver twice is refused, the
//! second distinct one queues it and the device gets it). Every decision is audited; a
//! denial raises a `policy_violation` alert.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

#[path = "commands/kit.rs"]
#[allow(dead_code)]
mod kit;
mod support;

use kit::{audit, command, expect_delivery, new_id, request, staff};
use serde_json::{Value, json};
use support::TestServer;
use support::live::{next_of, online, paired, subscribe, user_id};
use tether_client::{Api, ClientError};
use tether_proto::messages::notify::PolicyUpdate;
use tether_proto::{Clock, ErrorCode};
use tether_store::Role;

/// Logs in again (after the clock moved past the access token's life).
async fn login(srv: &TestServer, email: &str, totp_code: Option<&str>) -> Api {
    let mut body = json!({"email": email, "password": "correct horse battery"});
    if let Some(c) = totp_code {
        body["totp_code"] = json!(c);
    }
    let (_, v): (u16, Value) = srv.api().post("/api/login", &body).await.unwrap();
    srv.api().with_bearer(v["access_token"].as_str().unwrap())
}

/// Saves a policy as `admin`; returns the answer.
async fn put_policy(admin: &Api, bundle: &Value) -> Value {
    let (s, v): (u16, Value) = admin.put("/api/policy", bundle).await.unwrap();
    assert_eq!(s, 200, "{v}");
    v
}

/// A refusal's status, error body (code, message, rule).
fn refused(e: ClientError) -> (u16, ErrorCode, String, Option<String>) {
    match e {
        ClientError::Api { status, body } => (status, body.code, body.message, body.rule),
        other => panic!("expected an API error, got {other}"),
    }
}

async fn submit_refused(api: &Api, body: &Value) -> (u16, ErrorCode, String, Option<String>) {
    refused(
        api.post::<_, Value>("/api/command", body)
            .await
            .expect_err("policy refuses it"),
    )
}

async fn submit_accepted(api: &Api, body: &Value) -> Value {
    let (s, v): (u16, Value) = api.post("/api/command", body).await.unwrap();
    assert_eq!(s, 202, "{v}");
    v
}

/// The UTC offset (minutes) that makes the clock's current time 12:00 local.
fn offset_for_noon(srv: &TestServer) -> i64 {
    let minute_of_day = (srv.clock.now().0 / 60_000 % 1440) as i64;
    let off = (720 - minute_of_day).rem_euclid(1440);
    if off > 720 { off - 1440 } else { off }
}

#[tokio::test]
async fn admins_save_validated_versioned_policies_and_everyone_reads_them() {
    let srv = TestServer::start().await;
    let admin = staff(&srv, "admin@lab.example", Role::Admin).await;
    let (alice, _, _) = srv.user("alice@lab.example").await;
    let mut live = subscribe(&admin, "").await;

    let (_, v): (u16, Value) = alice.get("/api/policy").await.unwrap();
    assert_eq!(v["policy_version"], 0, "the built-in policy: {v}");
    assert_eq!(v["builtin"], true);
    assert_eq!(
        v["policy_hash"],
        PolicyUpdate::hash_bundle(&v["bundle"]).unwrap().as_str()
    );

    // Invalid bundles: 422 naming the field; nothing saved.
    for (bundle, path) in [
        (
            json!({"format": 1, "rules": [{"id": "r", "effect": "deny", "match": {"methods": ["format_disk"]}}]}),
            "rules[0].match.methods[0]",
        ),
        (json!({"format": 2}), "format"),
        (
            json!({"format": 1, "rules": [{"id": "r", "effect": "sensitive"}]}),
            "rules[0]",
        ),
        (
            json!({"format": 1, "rules": [{"id": "r", "effect": "deny", "match": {"window": {"start": "08:00", "end": "25:00"}}}]}),
            "rules[0].match.window.end",
        ),
    ] {
        let (status, code, message, _) = refused(
            admin
                .put::<_, Value>("/api/policy", &bundle)
                .await
                .unwrap_err(),
        );
        assert_eq!((status, code), (422, ErrorCode::InvalidField), "{message}");
        assert!(
            message.starts_with(&format!("policy {path}: ")),
            "{path} in {message:?}"
        );
    }
    let (status, code, _, _) = refused(
        admin
            .put::<_, Value>("/api/policy", &json!([1, 2]))
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code), (422, ErrorCode::InvalidField));

    // A student may not replace it.
    let bundle = json!({"format": 1, "rules": [{"id": "no-reboots", "effect": "deny", "match": {"methods": ["reboot"]}}]});
    let (status, code, _, _) = refused(
        alice
            .put::<_, Value>("/api/policy", &bundle)
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code), (403, ErrorCode::Forbidden));
    assert_eq!(audit(&srv, "policy.update_refused", None).await.len(), 1);

    let saved = put_policy(&admin, &bundle).await;
    assert_eq!(saved["policy_version"], 1);
    assert_eq!(saved["builtin"], false);
    assert_eq!(
        saved["policy_hash"],
        PolicyUpdate::hash_bundle(&bundle).unwrap().as_str()
    );
    let (_, v): (u16, Value) = alice.get("/api/policy").await.unwrap();
    assert_eq!(v["policy_version"], 1);
    assert_eq!(v["bundle"], bundle);
    let again = put_policy(&admin, &json!({"format": 1})).await;
    assert_eq!(again["policy_version"], 2);

    let updated = audit(&srv, "policy.updated", None).await;
    assert_eq!(updated.len(), 2);
    assert_eq!(updated[0]["policy_version"], 1);
    assert_eq!(updated[0]["policy_hash"], saved["policy_hash"]);
    let e = next_of(&mut live, "policy_changed").await;
    assert_eq!(e.data["policy_version"], 1);
    assert_eq!(e.data["policy_hash"], saved["policy_hash"]);
    srv.stop().await;
}

#[tokio::test]
async fn a_time_window_rule_denies_outside_its_window_and_names_the_rule() {
    let srv = TestServer::start().await;
    let admin = staff(&srv, "admin@lab.example", Role::Admin).await;
    let (agent, alice) = paired(&srv, "alice@lab.example").await;
    let device = agent.device_id.clone().unwrap();
    let offset = offset_for_noon(&srv);
    put_policy(
        &admin,
        &json!({"format": 1, "rules": [{
            "id": "no-night-reboots", "description": "reboots in office hours only",
            "effect": "deny",
            "match": {"roles": ["student"], "methods": ["reboot", "shutdown"],
                      "outside_window": {"start": "08:00", "end": "18:00", "utc_offset_minutes": offset}}}]}),
    )
    .await;

    // 12:00 local: inside office hours, allowed under version 1 by no rule.
    let ok = submit_accepted(&alice, &request(&device, "reboot", json!({}), 600)).await;
    assert_eq!(ok["state"], "queued");
    assert_eq!(ok["policy_version"], 1);

    // 19:00 local: outside, denied with the rule named (and nothing stored).
    srv.advance(7 * 3600);
    let alice = login(&srv, "alice@lab.example", None).await;
    let body = request(&device, "reboot", json!({}), 600);
    let (status, code, message, rule) = submit_refused(&alice, &body).await;
    assert_eq!((status, code), (403, ErrorCode::PolicyDenied));
    assert_eq!(rule.as_deref(), Some("no-night-reboots"));
    assert!(
        message.starts_with(
            "rule no-night-reboots: reboot is not allowed for role student outside 08:00-18:00 (UTC"
        ),
        "{message}"
    );
    assert!(
        message.contains("reboots in office hours only"),
        "{message}"
    );
    let missing = alice
        .get::<Value>(&format!(
            "/api/command/{}",
            body["message_id"].as_str().unwrap()
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Some(ErrorCode::NotFound));
    // An admin is not a student: the rule does not apply.
    let admin = login(&srv, "admin@lab.example", None).await;
    submit_accepted(&admin, &request(&device, "reboot", json!({}), 600)).await;

    // Audited (allow and deny), and the denial raised a policy_violation alert.
    let decisions = audit(&srv, "policy.decision", Some(&device)).await;
    let words: Vec<_> = decisions
        .iter()
        .map(|d| d["decision"].as_str().unwrap())
        .collect();
    assert_eq!(words, ["allow", "deny", "allow"]);
    assert_eq!(decisions[1]["rule"], "no-night-reboots");
    assert_eq!(decisions[1]["policy_version"], 1);
    assert_eq!(decisions[1]["command_id"], body["message_id"]);
    let (_, alerts): (u16, Value) = admin.get("/api/alerts").await.unwrap();
    let violation = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "policy_violation")
        .expect("a policy_violation alert");
    assert_eq!(violation["device_id"], device.as_str());
    assert!(
        violation["message"]
            .as_str()
            .unwrap()
            .contains("no-night-reboots"),
        "{violation}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_rate_rule_denies_the_n_plus_first_command() {
    let srv = TestServer::start().await;
    let admin = staff(&srv, "admin@lab.example", Role::Admin).await;
    let (agent, alice) = paired(&srv, "alice@lab.example").await;
    let device = agent.device_id.clone().unwrap();
    put_policy(
        &admin,
        &json!({"format": 1, "rules": [{
            "id": "lock-rate", "effect": "deny", "match": {"methods": ["lock_screen"]},
            "rate": {"max": 3, "per_s": 600, "scope": "user"}}]}),
    )
    .await;
    for _ in 0..3 {
        submit_accepted(&alice, &request(&device, "lock_screen", json!({}), 60)).await;
    }
    let (status, code, message, rule) =
        submit_refused(&alice, &request(&device, "lock_screen", json!({}), 60)).await;
    assert_eq!((status, code), (403, ErrorCode::PolicyDenied));
    assert_eq!(rule.as_deref(), Some("lock-rate"));
    assert!(message.contains("more than 3 times per 600 s"), "{message}");
    // Other methods and other users are not counted.
    submit_accepted(&alice, &request(&device, "screenshot", json!({}), 60)).await;
    submit_accepted(&admin, &request(&device, "lock_screen", json!({}), 60)).await;
    // Once the window has passed, it is allowed again.
    srv.advance(601);
    let alice = login(&srv, "alice@lab.example", None).await;
    submit_accepted(&alice, &request(&device, "lock_screen", json!({}), 60)).await;
    srv.stop().await;
}

#[tokio::test]
async fn memory_dump_needs_a_fresh_second_factor() {
    let srv = TestServer::start().await;
    let (agent, alice) = paired(&srv, "alice@lab.example").await;
    let device = agent.device_id.clone().unwrap();
    let dump = || request(&device, "memory_dump", json!({"max_bytes": 1_048_576}), 600);

    // No TOTP at all: step-up is needed, and cannot be done with TOTP.
    let (status, code, message, rule) = submit_refused(&alice, &dump()).await;
    assert_eq!((status, code), (401, ErrorCode::StepUpRequired));
    assert_eq!(rule, None, "the built-in sensitivity decided");
    assert!(
        message.contains("memory_dump is sensitive by default"),
        "{message}"
    );
    let e = alice
        .post::<_, Value>("/api/step-up", &json!({"totp_code": "123456"}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::SecondFactorRequired));

    // Enrol TOTP.
    let (_, enroll): (u16, Value) = alice.post("/api/totp/enroll", &json!({})).await.unwrap();
    let secret =
        totp_rs::Secret::try_from_base32(enroll["secret_base32"].as_str().unwrap()).unwrap();
    let totp = totp_rs::Builder::new()
        .with_secret(secret)
        .with_account_name("alice@lab.example")
        .build()
        .unwrap();
    let code_now = || totp.generate(srv.clock.now().as_secs()).to_string();
    let (s, _): (u16, Value) = alice
        .post("/api/totp/confirm", &json!({"code": code_now()}))
        .await
        .unwrap();
    assert_eq!(s, 204);
    // Enrolling is not a step-up of this session.
    let (_, code, _, _) = submit_refused(&alice, &dump()).await;
    assert_eq!(code, ErrorCode::StepUpRequired);
    let (_, dry): (u16, Value) = alice
        .post(
            "/api/policy/dry-run",
            &json!({"device_id": device, "method": "memory_dump"}),
        )
        .await
        .unwrap();
    assert_eq!(dry["decision"], "needs_step_up");
    assert_eq!(dry["fresh_second_factor_s"], 300);

    // A wrong code is refused; a fresh one is recorded for this session.
    srv.advance(30);
    let e = alice
        .post::<_, Value>("/api/step-up", &json!({"totp_code": "000000"}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::SecondFactorInvalid));
    let (s, up): (u16, Value) = alice
        .post("/api/step-up", &json!({"totp_code": code_now()}))
        .await
        .unwrap();
    assert_eq!(s, 200, "{up}");
    assert_eq!(up["second_factor_at"], srv.clock.now().0);
    let ok = submit_accepted(&alice, &dump()).await;
    assert_eq!(ok["state"], "queued");
    assert_eq!(
        command(&alice, ok["command_id"].as_str().unwrap()).await["state"],
        "queued"
    );

    // 301 s later it is no longer fresh.
    srv.advance(301);
    let (_, code, _, _) = submit_refused(&alice, &dump()).await;
    assert_eq!(code, ErrorCode::StepUpRequired);

    // Logging in with TOTP is a fresh second factor too.
    srv.advance(30);
    let alice = login(&srv, "alice@lab.example", Some(&code_now())).await;
    submit_accepted(&alice, &dump()).await;

    let words: Vec<_> = audit(&srv, "policy.decision", Some(&device))
        .await
        .iter()
        .map(|d| d["decision"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(words, ["step_up", "step_up", "allow", "step_up", "allow"]);
    assert_eq!(audit(&srv, "user.step_up", None).await.len(), 1);
    srv.stop().await;
}

#[tokio::test]
async fn two_distinct_approvers_make_a_command_run() {
    let srv = TestServer::start().await;
    let bob = staff(&srv, "bob@lab.example", Role::Admin).await;
    let carol = staff(&srv, "carol@lab.example", Role::Admin).await;
    let (mut agent, alice) = paired(&srv, "alice@lab.example").await;
    let (dave, _, _) = srv.user("dave@lab.example").await;
    let device = agent.device_id.clone().unwrap();
    put_policy(
        &bob,
        &json!({"format": 1, "rules": [{
            "id": "reboots-need-two", "effect": "sensitive", "match": {"methods": ["reboot"]},
            "approvals": 2}]}),
    )
    .await;
    let (mut ws, _) = online(&srv, &mut agent).await;

    let body = request(&device, "reboot", json!({}), 3600);
    let id = body["message_id"].as_str().unwrap().to_owned();
    let waiting = submit_accepted(&alice, &body).await;
    assert_eq!(waiting["status"], "accepted");
    assert_eq!(waiting["state"], "awaiting_approval");
    assert_eq!(waiting["code"], ErrorCode::ApprovalRequired.number());
    assert_eq!(waiting["approvals_required"], 2);
    assert_eq!(waiting["policy_rule"], "reboots-need-two");
    assert!(
        waiting["reason"]
            .as_str()
            .unwrap()
            .contains("needs 2 approvals")
    );

    let approve = |api: &Api| {
        let api = api.clone();
        let path = format!("/api/command/{id}/approve");
        async move { api.post::<_, Value>(&path, &json!({})).await }
    };
    // The originator cannot approve; a student who cannot see the device gets 404.
    assert_eq!(
        approve(&alice).await.unwrap_err().code(),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        approve(&dave).await.unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );

    let (_, list): (u16, Value) = bob.get("/api/approvals").await.unwrap();
    let ids: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["command_id"].clone())
        .collect();
    assert_eq!(ids, [json!(id)]);
    let (_, none): (u16, Value) = alice.get("/api/approvals").await.unwrap();
    assert_eq!(none, json!([]), "not the originator's to approve");

    let (_, one) = approve(&bob).await.unwrap();
    assert_eq!(
        one["state"], "awaiting_approval",
        "one approval is not enough"
    );
    assert_eq!(one["approvals"].as_array().unwrap().len(), 1);
    let twice = approve(&bob).await.unwrap_err();
    assert_eq!(twice.code(), Some(ErrorCode::Conflict), "{twice}");
    assert!(
        twice.to_string().contains("approved this command already"),
        "{twice}"
    );
    let (_, list): (u16, Value) = bob.get("/api/approvals").await.unwrap();
    assert_eq!(list, json!([]), "approved by bob already");
    assert_eq!(command(&alice, &id).await["state"], "awaiting_approval");

    // The second distinct approver queues it: it is signed, published and delivered.
    let (_, two) = approve(&carol).await.unwrap();
    assert_ne!(two["state"], "awaiting_approval", "{two}");
    assert_eq!(two["approvals"].as_array().unwrap().len(), 2);
    let d = expect_delivery(&mut ws, &srv, &id, 1).await;
    assert_eq!(d.policy_version, 1);
    assert_eq!(
        d.sensitivity,
        tether_proto::messages::command::Sensitivity::Sensitive
    );
    let v = command(&alice, &id).await;
    let moves: Vec<_> = kit::transitions(&v).into_iter().take(2).collect();
    assert_eq!(
        moves,
        [
            (None, "awaiting_approval".to_owned()),
            (Some("awaiting_approval".to_owned()), "queued".to_owned())
        ]
    );
    let after = approve(&carol).await.unwrap_err();
    assert_eq!(after.code(), Some(ErrorCode::UnexpectedMessage));
    assert_eq!(
        audit(&srv, "command.approved", Some(&device)).await.len(),
        2
    );
    assert_eq!(
        audit(&srv, "policy.decision", Some(&device)).await[0]["decision"],
        "needs_approval"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_command_awaiting_approval_expires_with_its_ttl() {
    let srv = TestServer::start_with(|c| c.commands.sweep_every_s = 1).await;
    let admin = staff(&srv, "admin@lab.example", Role::Admin).await;
    let (agent, alice) = paired(&srv, "alice@lab.example").await;
    let device = agent.device_id.clone().unwrap();
    put_policy(
        &admin,
        &json!({"format": 1, "rules": [{"id": "one", "effect": "sensitive", "approvals": 1,
            "match": {"methods": ["shutdown"]}}]}),
    )
    .await;
    let body = request(&device, "shutdown", json!({}), 60);
    let id = body["message_id"].as_str().unwrap().to_owned();
    submit_accepted(&alice, &body).await;
    srv.advance(61);
    let v = kit::wait_state(&alice, &id, "expired").await;
    assert_eq!(v["error"], ErrorCode::TtlExpired.number());
    let late = admin
        .post::<_, Value>(&format!("/api/command/{id}/approve"), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(late.code(), Some(ErrorCode::UnexpectedMessage));
    srv.stop().await;
}

#[tokio::test]
async fn the_dry_run_names_the_deciding_rule() {
    let srv = TestServer::start().await;
    let admin = staff(&srv, "admin@lab.example", Role::Admin).await;
    let (agent, alice) = paired(&srv, "alice@lab.example").await;
    let (bob, _, _) = srv.user("bob@lab.example").await;
    let device = agent.device_id.clone().unwrap();
    let alice_id = user_id(&alice).await;
    put_policy(
        &admin,
        &json!({"format": 1, "rules": [
            {"id": "admins-anything", "effect": "allow", "match": {"roles": ["admin"]}},
            {"id": "students-no-shutdown", "effect": "deny", "match": {"roles": ["student"], "methods": ["shutdown"]}}
        ]}),
    )
    .await;
    let dry = |api: &Api, body: Value| {
        let api = api.clone();
        async move { api.post::<_, Value>("/api/policy/dry-run", &body).await }
    };
    let (_, v) = dry(&alice, json!({"device_id": device, "method": "shutdown"}))
        .await
        .unwrap();
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["rule"], "students-no-shutdown");
    assert_eq!(v["policy_version"], 1);
    assert_eq!(v["user_id"], alice_id.as_str());
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .starts_with("rule students-no-shutdown: shutdown is not allowed")
    );
    let (_, v) = dry(
        &alice,
        json!({"device_id": device, "method": "lock_screen"}),
    )
    .await
    .unwrap();
    assert_eq!(
        (v["decision"].as_str(), v.get("rule")),
        (Some("allow"), None)
    );
    // An admin asks for themselves and for alice.
    let (_, v) = dry(&admin, json!({"device_id": device, "method": "shutdown"}))
        .await
        .unwrap();
    assert_eq!(
        (v["decision"].as_str(), v["rule"].as_str()),
        (Some("allow"), Some("admins-anything"))
    );
    let (_, v) = dry(
        &admin,
        json!({"device_id": device, "method": "shutdown", "user_id": alice_id}),
    )
    .await
    .unwrap();
    assert_eq!(v["rule"], "students-no-shutdown");
    // Nothing was stored or audited as a decision.
    assert!(audit(&srv, "policy.decision", None).await.is_empty());
    // Students may not ask about other users, nor about devices they cannot command.
    let e = dry(
        &alice,
        json!({"device_id": device, "method": "shutdown", "user_id": new_id()}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Forbidden));
    let e = dry(&bob, json!({"device_id": device, "method": "shutdown"}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound));
    let e = dry(
        &alice,
        json!({"device_id": device, "method": "memory_dump", "params": {}}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidParams));
    srv.stop().await;
}
