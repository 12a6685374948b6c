//! Owner keys through the server (docs/protocol.md section 4.8) and signed approvals: an
//! in-process server with a manual clock and a `FakeAgent`.
//!
//! - `POST /api/me/keys` refuses a statement that is malformed, not the caller's, signed
//!   by a key they did not register (or by an approver key), replayed or expired; a good
//!   one is stored, audited, listed by `GET /api/me/keys`, pushed to the online PC as a
//!   signed `owner_keys_update`, sent at connect to a PC that has not applied it, and
//!   makes the server check commands signed by the new key.
//! - `POST /api/command/{id}/approve` needs, for a signed command, the approver's valid
//!   signature over the same command statement; the delivery then carries
//!   `approvals_required` and the approvers' signatures.
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

use std::time::Duration;

use ed25519_dalek::SigningKey;
use kit::{audit, command, expect_delivery, new_id, new_trace};
use serde_json::{Value, json};
use support::live::{online, pair_for, user_id};
use support::{TestServer, code_of, rand_bytes, read_verified};
use tether_client::Api;
use tether_proto::messages::command::Method;
use tether_proto::messages::discovery::{KeyRole, OwnerKey};
use tether_proto::owner_sig::{
    KIND_ED25519, OWNER_KEYS_STATEMENT_TYPE, OwnerKeysStatement, UserSig, command_statement,
    sign_ed25519,
};
use tether_proto::validate::b64url_encode;
use tether_proto::{Clock, ErrorCode, KeyId, MessageId, Payload, UnixMillis};
use tether_store::Role;

fn pinned(key: &SigningKey, role: KeyRole) -> OwnerKey {
    let pk = key.verifying_key().to_bytes();
    OwnerKey {
        kid: KeyId::for_ed25519(&pk).to_string(),
        kind: KIND_ED25519.into(),
        public_key: b64url_encode(&pk),
        role,
    }
}

fn statement(
    srv: &TestServer,
    user_id: &str,
    add: Vec<OwnerKey>,
    remove: Vec<String>,
    version: u64,
) -> OwnerKeysStatement {
    OwnerKeysStatement {
        kind: OWNER_KEYS_STATEMENT_TYPE.into(),
        user_id: user_id.into(),
        device_id: None,
        version,
        add,
        remove,
        not_after: srv.clock.now().saturating_add(Duration::from_secs(86_400)),
    }
}

fn body(s: &OwnerKeysStatement, by: &SigningKey) -> Value {
    json!({"statement": s, "user_sig": sign_ed25519(by, &s.canonical().unwrap())})
}

async fn post_keys(api: &Api, body: &Value) -> Result<Value, ErrorCode> {
    api.post::<_, Value>("/api/me/keys", body)
        .await
        .map(|(s, v)| {
            assert_eq!(s, 200, "{v}");
            v
        })
        .map_err(|e| code_of(&e))
}

/// A signed `POST /api/command` body.
fn signed_request(srv: &TestServer, device: &str, method: Method, by: &SigningKey) -> Value {
    let id = new_id();
    let not_after = srv.clock.now().saturating_add(Duration::from_secs(3600));
    let st = command_statement(
        &MessageId::parse(&id).unwrap(),
        device,
        method,
        &json!({}),
        not_after,
    )
    .unwrap();
    json!({
        "device_id": device, "method": method, "params": {}, "ttl_seconds": 3600,
        "message_id": id, "trace_id": new_trace(), "not_after": not_after,
        "user_sig": sign_ed25519(by, &st),
    })
}

fn statement_of(v: &Value) -> Vec<u8> {
    command_statement(
        &MessageId::parse(v["command_id"].as_str().unwrap()).unwrap(),
        v["device_id"].as_str().unwrap(),
        serde_json::from_value(v["method"].clone()).unwrap(),
        &v["params"],
        UnixMillis(v["not_after"].as_u64().unwrap()),
    )
    .unwrap()
}

#[tokio::test]
async fn keys_change_only_by_a_statement_a_registered_owner_key_signed() {
    let srv = TestServer::start().await;
    let (alice, _, a) = srv.user("alice@lab.example").await;
    let uid = user_id(&alice).await;
    let mut agent = pair_for(&srv, &alice).await;
    let device = agent.device_id.clone().unwrap();
    let b = SigningKey::from_bytes(&rand_bytes());
    let c = SigningKey::from_bytes(&rand_bytes());
    let stranger = SigningKey::from_bytes(&rand_bytes());

    let (_, v): (u16, Value) = alice.get("/api/me/keys").await.unwrap();
    assert_eq!(v["keys"], json!([pinned(&a, KeyRole::Owner)]));
    assert_eq!(v["version"], 0);

    // Refused: not registered, not the caller's, malformed, nothing to change, expired.
    let add_b = statement(&srv, &uid, vec![pinned(&b, KeyRole::Owner)], vec![], 10);
    let e = post_keys(&alice, &body(&add_b, &stranger))
        .await
        .unwrap_err();
    assert_eq!(e, ErrorCode::OwnerSignatureInvalid);
    let mut forged = body(&add_b, &a);
    forged["statement"]["version"] = json!(11);
    assert_eq!(
        post_keys(&alice, &forged).await.unwrap_err(),
        ErrorCode::OwnerSignatureInvalid
    );
    let theirs = statement(
        &srv,
        "usr_other",
        vec![pinned(&b, KeyRole::Owner)],
        vec![],
        10,
    );
    assert_eq!(
        post_keys(&alice, &body(&theirs, &a)).await.unwrap_err(),
        ErrorCode::InvalidField
    );
    let empty = statement(&srv, &uid, vec![], vec![], 10);
    assert_eq!(
        post_keys(&alice, &body(&empty, &a)).await.unwrap_err(),
        ErrorCode::InvalidField
    );
    let mut bad_kid = pinned(&b, KeyRole::Owner);
    bad_kid.kid = "0011223344556677".into();
    let wrong = statement(&srv, &uid, vec![bad_kid], vec![], 10);
    assert_eq!(
        post_keys(&alice, &body(&wrong, &a)).await.unwrap_err(),
        ErrorCode::InvalidField
    );
    let mut old = add_b.clone();
    old.not_after = srv.clock.now();
    assert_eq!(
        post_keys(&alice, &body(&old, &a)).await.unwrap_err(),
        ErrorCode::TtlExpired
    );
    let unknown = json!({"statement": add_b, "user_sig": sign_ed25519(&a, b"x"), "extra": 1});
    assert_eq!(
        post_keys(&alice, &unknown).await.unwrap_err(),
        ErrorCode::InvalidField
    );
    assert_eq!(
        audit(&srv, "owner_keys.update_refused", None).await.len(),
        4,
        "each refusal of a well-formed statement is audited"
    );

    // A good one reaches the online PC at once, signed by the gateway, unchanged.
    let (mut ws, _) = online(&srv, &mut agent).await;
    let added = post_keys(&alice, &body(&add_b, &a)).await.unwrap();
    assert_eq!(added["pushed_to"], 1);
    assert_eq!(added["version"], 10);
    assert_eq!(
        added["keys"],
        json!([pinned(&a, KeyRole::Owner), pinned(&b, KeyRole::Owner)])
    );
    let Payload::OwnerKeysUpdate(u) = read_verified(&mut ws, &srv).await else {
        panic!("expected owner_keys_update")
    };
    assert_eq!(u.statement, add_b);
    assert_eq!(u.user_sig, sign_ed25519(&a, &add_b.canonical().unwrap()));
    // Replayed (the same version, or an older one): refused.
    assert_eq!(
        post_keys(&alice, &body(&add_b, &a)).await.unwrap_err(),
        ErrorCode::SequenceReplay
    );
    let older = statement(&srv, &uid, vec![pinned(&c, KeyRole::Owner)], vec![], 9);
    assert_eq!(
        post_keys(&alice, &body(&older, &a)).await.unwrap_err(),
        ErrorCode::SequenceReplay
    );

    // The new key now signs commands the server checks early.
    let cmd = signed_request(&srv, &device, Method::LockScreen, &b);
    let (s, _): (u16, Value) = alice.post("/api/command", &cmd).await.unwrap();
    assert_eq!(s, 202);
    let mut tampered = signed_request(&srv, &device, Method::LockScreen, &b);
    tampered["method"] = json!("reboot");
    let e = alice
        .post::<_, Value>("/api/command", &tampered)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::OwnerSignatureInvalid);

    // An approver key (signed in by the new key) signs neither commands nor key changes.
    let add_c = statement(&srv, &uid, vec![pinned(&c, KeyRole::Approver)], vec![], 20);
    post_keys(&alice, &body(&add_c, &b)).await.unwrap();
    let by_c = signed_request(&srv, &device, Method::LockScreen, &c);
    let e = alice
        .post::<_, Value>("/api/command", &by_c)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::OwnerSignatureInvalid);
    let drop_a = statement(&srv, &uid, vec![], vec![pinned(&a, KeyRole::Owner).kid], 30);
    assert_eq!(
        post_keys(&alice, &body(&drop_a, &c)).await.unwrap_err(),
        ErrorCode::OwnerSignatureInvalid
    );
    // Removing every owner key is refused; removing one of two is fine.
    let drop_all = statement(
        &srv,
        &uid,
        vec![],
        vec![
            pinned(&a, KeyRole::Owner).kid,
            pinned(&b, KeyRole::Owner).kid,
        ],
        30,
    );
    assert_eq!(
        post_keys(&alice, &body(&drop_all, &b)).await.unwrap_err(),
        ErrorCode::InvalidField
    );
    let listed = post_keys(&alice, &body(&drop_a, &b)).await.unwrap();
    assert_eq!(
        listed["keys"],
        json!([pinned(&b, KeyRole::Owner), pinned(&c, KeyRole::Approver)])
    );
    let (_, v): (u16, Value) = alice.get("/api/me/keys").await.unwrap();
    assert_eq!(v["keys"], listed["keys"]);
    let versions: Vec<_> = v["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [10, 20, 30]);
    assert_eq!(
        v["statements"][1]["added"],
        json!([format!("{}:approver", pinned(&c, KeyRole::Owner).kid)])
    );
    assert_eq!(audit(&srv, "owner_keys.update", None).await.len(), 3);
    drop(ws);

    // At connect, a PC gets the statements above the version it applied, in order.
    agent.owner_keys_version = Some(10);
    let (mut ws, _) = online(&srv, &mut agent).await;
    for want in [20, 30] {
        let Payload::OwnerKeysUpdate(u) = read_verified(&mut ws, &srv).await else {
            panic!("expected owner_keys_update {want}")
        };
        assert_eq!(u.statement.version, want);
    }
    // A PC paired now pins the keys registered now, and is sent none of the old changes.
    srv.advance(1);
    let mut second = pair_for(&srv, &alice).await;
    let (mut ws2, _) = online(&srv, &mut second).await;
    let marker = signed_request(
        &srv,
        second.device_id.as_ref().unwrap(),
        Method::LockScreen,
        &b,
    );
    let (s, _): (u16, Value) = alice.post("/api/command", &marker).await.unwrap();
    assert_eq!(s, 202);
    let d = expect_delivery(&mut ws2, &srv, marker["message_id"].as_str().unwrap(), 1).await;
    assert_eq!(
        d.method,
        Method::LockScreen,
        "the next frame is the command"
    );
    srv.stop().await;
}

/// An admin with a registered signing key, logged in.
async fn admin_with_key(srv: &TestServer, email: &str) -> (Api, SigningKey) {
    let key = SigningKey::from_bytes(&rand_bytes());
    tether_server::routes::accounts::create_user(
        srv.state(),
        tether_server::routes::accounts::RegisterRequest {
            email: email.into(),
            password: "correct horse battery".into(),
            mobile_pub: Some(b64url_encode(key.verifying_key().as_bytes())),
        },
        Role::Admin,
    )
    .await
    .unwrap();
    let (_, login): (u16, Value) = srv
        .api()
        .post(
            "/api/login",
            &json!({"email": email, "password": "correct horse battery"}),
        )
        .await
        .unwrap();
    let api = srv
        .api()
        .with_bearer(login["access_token"].as_str().unwrap());
    (api, key)
}

#[tokio::test]
async fn approvals_of_a_signed_command_must_be_signed_and_ride_with_it() {
    let srv = TestServer::start().await;
    let (bob, bob_key) = admin_with_key(&srv, "bob@lab.example").await;
    let (carol, carol_key) = admin_with_key(&srv, "carol@lab.example").await;
    let (alice, _, a) = srv.user("alice@lab.example").await;
    let mut agent = pair_for(&srv, &alice).await;
    let device = agent.device_id.clone().unwrap();
    let (_, saved): (u16, Value) = bob
        .put(
            "/api/policy",
            &json!({"format": 1, "rules": [{
                "id": "reboots-need-two", "effect": "sensitive",
                "match": {"methods": ["reboot"]}, "approvals": 2}]}),
        )
        .await
        .unwrap();
    assert_eq!(saved["policy_version"], 1);
    let (mut ws, _) = online(&srv, &mut agent).await;
    // The policy arrives first.
    assert!(matches!(
        read_verified(&mut ws, &srv).await,
        Payload::PolicyUpdate(_)
    ));

    let req = signed_request(&srv, &device, Method::Reboot, &a);
    let id = req["message_id"].as_str().unwrap().to_owned();
    let (s, waiting): (u16, Value) = alice.post("/api/command", &req).await.unwrap();
    assert_eq!(s, 202);
    assert_eq!(waiting["state"], "awaiting_approval");
    assert_eq!(waiting["not_after"], req["not_after"]);
    let st = statement_of(&waiting);
    let approve = |api: &Api, sig: Option<UserSig>| {
        let api = api.clone();
        let path = format!("/api/command/{id}/approve");
        let body = match sig {
            Some(s) => json!({"user_sig": s}),
            None => json!({}),
        };
        async move { api.post::<_, Value>(&path, &body).await }
    };
    let code = |r: Result<(u16, Value), tether_client::ClientError>| code_of(&r.unwrap_err());

    // No signature, another command's, the command signer's key, a bad one: refused.
    assert_eq!(code(approve(&bob, None).await), ErrorCode::InvalidField);
    let other = statement_of(&json!({
        "command_id": new_id(), "device_id": device, "method": "reboot", "params": {},
        "not_after": req["not_after"]}));
    assert_eq!(
        code(approve(&bob, Some(sign_ed25519(&bob_key, &other))).await),
        ErrorCode::OwnerSignatureInvalid
    );
    assert_eq!(
        code(approve(&bob, Some(sign_ed25519(&a, &st))).await),
        ErrorCode::OwnerSignatureInvalid
    );
    let malformed = json!({"user_sig": {"kind": "ed25519", "kid": "x", "sig": "short"}});
    let e = bob
        .post::<_, Value>(&format!("/api/command/{id}/approve"), &malformed)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::InvalidField);
    assert_eq!(command(&alice, &id).await["state"], "awaiting_approval");
    assert_eq!(
        audit(&srv, "command.approve_refused", Some(&id))
            .await
            .len(),
        3
    );

    // Two valid approvals: queued, and the delivery carries both signatures.
    let bob_sig = sign_ed25519(&bob_key, &st);
    let carol_sig = sign_ed25519(&carol_key, &st);
    let (_, one) = approve(&bob, Some(bob_sig.clone())).await.unwrap();
    assert_eq!(one["state"], "awaiting_approval");
    assert_eq!(
        one["approvals"][0]["signed_by"],
        json!(bob_sig.kid()),
        "{one}"
    );
    srv.advance(1);
    let (_, two) = approve(&carol, Some(carol_sig.clone())).await.unwrap();
    assert_ne!(two["state"], "awaiting_approval");
    let d = expect_delivery(&mut ws, &srv, &id, 1).await;
    assert_eq!(d.approvals_required, Some(2));
    assert_eq!(d.approvals, [bob_sig, carol_sig]);
    assert_eq!(
        d.user_sig.as_ref().unwrap().kid(),
        pinned(&a, KeyRole::Owner).kid
    );
    srv.stop().await;
}
