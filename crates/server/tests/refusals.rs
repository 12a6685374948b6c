//! The refusals issue 3 asks for, each its own test, against an in-process server with a
//! manual clock (no sleeping for time to pass) and real TLS, keys and envelopes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod support;

use serde_json::{Value, json};
use support::{FakeAgent, TestServer, code_of, error_code};
use tether_proto::messages::session::Heartbeat;
use tether_proto::validate::b64url_encode;
use tether_proto::{Clock, ErrorCode, Payload};

async fn paired(srv: &TestServer) -> (FakeAgent, tether_client::Api, Value) {
    let (alice, login, _) = srv.user("alice@lab.example").await;
    let mut agent = FakeAgent::new();
    let pr = agent.request_pairing(srv).await;
    let token = pr["pair_token"].as_str().unwrap().to_owned();
    let (s, confirm): (u16, Value) = alice
        .post("/api/pair/confirm", &json!({"pair_token": token}))
        .await
        .unwrap();
    assert_eq!(s, 200);
    let (s, act) = agent.activate(srv, &token).await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(
        act["pairing_code"], confirm["pairing_code"],
        "both sides show the same number"
    );
    let _ = login;
    (agent, alice, pr)
}

#[tokio::test]
async fn happy_path_pairs_and_connects_with_mtls() {
    let srv = TestServer::start().await;
    let (mut agent, alice, _) = paired(&srv).await;
    let (mut ws, reply) = agent.connect(&srv).await.unwrap();
    assert!(
        matches!(reply, Payload::Connected(_)),
        "got {:?}",
        reply.message_type()
    );
    agent
        .send(
            &mut ws,
            &srv,
            &Heartbeat {
                status: tether_proto::messages::session::HeartbeatStatus::Alive,
                uptime_s: 1,
                queue_depth: 0,
            },
        )
        .await;
    let (_, devices): (u16, Value) = alice.get("/api/devices").await.unwrap();
    assert_eq!(devices.as_array().unwrap().len(), 1);
    assert_eq!(devices[0]["online"], true);
    assert_eq!(devices[0]["status"], "active");
    let _ = ws.close(None).await;
    srv.stop().await;
}

#[tokio::test]
async fn expired_pair_token_is_refused() {
    let srv = TestServer::start().await;
    let (alice, _, _) = srv.user("alice@lab.example").await;
    let mut agent = FakeAgent::new();
    let pr = agent.request_pairing(&srv).await;
    srv.advance(301);
    let e = alice
        .post::<_, Value>(
            "/api/pair/confirm",
            &json!({"pair_token": pr["pair_token"]}),
        )
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::PairTokenExpired);
    let e = agent
        .activate(&srv, pr["pair_token"].as_str().unwrap())
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::PairTokenExpired);
    srv.stop().await;
}

#[tokio::test]
async fn reused_pair_token_is_refused() {
    let srv = TestServer::start().await;
    let (alice, _, _) = srv.user("alice@lab.example").await;
    let mut agent = FakeAgent::new();
    let pr = agent.request_pairing(&srv).await;
    let _: (u16, Value) = alice
        .post(
            "/api/pair/confirm",
            &json!({"pair_token": pr["pair_token"]}),
        )
        .await
        .unwrap();
    let e = alice
        .post::<_, Value>(
            "/api/pair/confirm",
            &json!({"pair_token": pr["pair_token"]}),
        )
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::PairTokenUsed);
    srv.stop().await;
}

#[tokio::test]
async fn pair_token_with_a_different_agent_pub_is_refused() {
    let srv = TestServer::start().await;
    let (alice, _, _) = srv.user("alice@lab.example").await;
    let mut agent = FakeAgent::new();
    let pr = agent.request_pairing(&srv).await;
    let token = pr["pair_token"].as_str().unwrap().to_owned();
    let _: (u16, Value) = alice
        .post("/api/pair/confirm", &json!({"pair_token": token}))
        .await
        .unwrap();
    let thief = ed25519_dalek::SigningKey::from_bytes(&support::rand_bytes());
    let e = agent.activate_as(&srv, &token, &thief).await.unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::Forbidden);
    srv.stop().await;
}

#[tokio::test]
async fn other_users_cannot_confirm_or_see_a_device() {
    let srv = TestServer::start().await;
    let (mut agent, _alice, pr) = paired(&srv).await;
    let device_id = agent.device_id.clone().unwrap();
    let (mallory, _, _) = srv.user("mallory@lab.example").await;
    let e = mallory
        .post::<_, Value>(
            "/api/pair/confirm",
            &json!({"pair_token": pr["pair_token"]}),
        )
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::PairTokenUsed);
    let e = mallory
        .get::<Value>(&format!("/api/devices/{device_id}"))
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::NotFound);
    let e = mallory
        .get::<Value>("/api/devices/dev_doesnotexist")
        .await
        .unwrap_err();
    assert_eq!(
        code_of(&e),
        ErrorCode::NotFound,
        "unknown and foreign devices look the same"
    );
    let (_, list): (u16, Value) = mallory.get("/api/devices").await.unwrap();
    assert_eq!(list, json!([]));
    let e = mallory
        .post::<_, Value>(&format!("/api/devices/{device_id}/revoke"), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::NotFound);
    let _ = agent.connect(&srv).await.unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn replayed_discovery_nonce_is_refused() {
    let srv = TestServer::start().await;
    let mut agent = FakeAgent::new();
    let nonce = b64url_encode(&support::rand_bytes());
    let first = agent.discover(&srv, &nonce).await;
    assert!(matches!(first, Payload::DiscoveryChallenge(_)));
    let again = agent.discover(&srv, &nonce).await;
    assert_eq!(error_code(&again), ErrorCode::SequenceReplay);
    srv.stop().await;
}

#[tokio::test]
async fn discovery_beyond_the_rate_limit_gets_429() {
    let srv = TestServer::start_with(|c| c.pairing.discovery_per_minute = 3).await;
    let mut agent = FakeAgent::new();
    for _ in 0..3 {
        let r = agent
            .discover(&srv, &b64url_encode(&support::rand_bytes()))
            .await;
        assert!(matches!(r, Payload::DiscoveryChallenge(_)));
    }
    let r = agent
        .discover(&srv, &b64url_encode(&support::rand_bytes()))
        .await;
    assert_eq!(error_code(&r), ErrorCode::RateLimited);
    assert_eq!(ErrorCode::RateLimited.http_status(), 429);
    // A new window opens after a minute (the embedded bus reads the manual clock).
    srv.advance(61);
    let r = agent
        .discover(&srv, &b64url_encode(&support::rand_bytes()))
        .await;
    assert!(matches!(r, Payload::DiscoveryChallenge(_)));
    srv.stop().await;
}

#[tokio::test]
async fn login_beyond_the_rate_limit_gets_429() {
    let srv = TestServer::start_with(|c| c.auth.login_per_minute = 2).await;
    let api = srv.api();
    for _ in 0..2 {
        let e = api
            .post::<_, Value>(
                "/api/login",
                &json!({"email": "x@lab.example", "password": "nope nope nope"}),
            )
            .await
            .unwrap_err();
        assert_eq!(code_of(&e), ErrorCode::InvalidCredentials);
    }
    let e = api
        .post::<_, Value>(
            "/api/login",
            &json!({"email": "x@lab.example", "password": "nope nope nope"}),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        tether_client::ClientError::Api { status: 429, .. }
    ));
    srv.stop().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_in_the_handshake() {
    let srv = TestServer::start().await;
    let (mut agent, _, _) = paired(&srv).await;
    // A look-alike CA issues a certificate for the same device id and key.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Tether Intermediate CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let leaf_key = rcgen::KeyPair::try_from(&agent.pkcs8()[..]).unwrap();
    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, agent.device_id.clone().unwrap());
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let forged = leaf.signed_by(&leaf_key, &issuer).unwrap();
    agent.cert_pem = Some(forged.pem());
    agent.intermediate_pem = Some(ca_cert.pem());
    let r = agent.connect(&srv).await;
    assert!(r.is_err(), "the handshake must fail");
    srv.stop().await;
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_in_the_handshake() {
    let srv = TestServer::start().await;
    let (mut agent, alice, _) = paired(&srv).await;
    let (ws, reply) = agent.connect(&srv).await.unwrap();
    assert!(matches!(reply, Payload::Connected(_)));
    drop(ws);
    let id = agent.device_id.clone().unwrap();
    let (s, v): (u16, Value) = alice
        .post(&format!("/api/devices/{id}/revoke"), &json!({}))
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert_eq!(v["status"], "revoked");
    let r = agent.connect(&srv).await;
    assert!(r.is_err(), "the handshake must fail after revocation");
    srv.stop().await;
}

#[tokio::test]
async fn a_reused_totp_code_is_refused() {
    let srv = TestServer::start().await;
    let (alice, _, _) = srv.user("alice@lab.example").await;
    let (_, enroll): (u16, Value) = alice.post("/api/totp/enroll", &json!({})).await.unwrap();
    let secret =
        totp_rs::Secret::try_from_base32(enroll["secret_base32"].as_str().unwrap()).unwrap();
    let totp = totp_rs::Builder::new()
        .with_secret(secret)
        .with_account_name("alice@lab.example")
        .build()
        .unwrap();
    let now_s = srv.clock.now().as_secs();
    let code = totp.generate(now_s).to_string();
    let (s, _): (u16, Value) = alice
        .post("/api/totp/confirm", &json!({"code": code}))
        .await
        .unwrap();
    assert_eq!(s, 204);
    // The confirming code cannot log in.
    let login = |code: Option<String>| {
        let api = srv.api();
        async move {
            let mut body =
                json!({"email": "alice@lab.example", "password": "correct horse battery"});
            if let Some(c) = code {
                body["totp_code"] = json!(c);
            }
            api.post::<_, Value>("/api/login", &body).await
        }
    };
    assert_eq!(
        code_of(&login(None).await.unwrap_err()),
        ErrorCode::SecondFactorRequired
    );
    assert_eq!(
        code_of(&login(Some(code.clone())).await.unwrap_err()),
        ErrorCode::SecondFactorInvalid
    );
    srv.advance(30);
    let next = totp.generate(srv.clock.now().as_secs()).to_string();
    login(Some(next.clone())).await.unwrap();
    assert_eq!(
        code_of(&login(Some(next)).await.unwrap_err()),
        ErrorCode::SecondFactorInvalid,
        "a code works once"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_its_family() {
    let srv = TestServer::start().await;
    let (_, login, _) = srv.user("alice@lab.example").await;
    let api = srv.api();
    let r0 = login["refresh_token"].as_str().unwrap().to_owned();
    let (_, t1): (u16, Value) = api
        .post("/api/token/refresh", &json!({"refresh_token": r0}))
        .await
        .unwrap();
    let r1 = t1["refresh_token"].as_str().unwrap().to_owned();
    let e = api
        .post::<_, Value>("/api/token/refresh", &json!({"refresh_token": r0}))
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::RefreshTokenReused);
    let e = api
        .post::<_, Value>("/api/token/refresh", &json!({"refresh_token": r1}))
        .await
        .unwrap_err();
    assert_eq!(
        code_of(&e),
        ErrorCode::RefreshTokenReused,
        "the whole family is revoked"
    );
    srv.stop().await;
}

#[tokio::test]
async fn admin_approval_holds_a_device_until_approved() {
    let srv = TestServer::start_with(|c| c.pairing.require_approval = true).await;
    let (alice, _, _) = srv.user("alice@lab.example").await;
    let mut agent = FakeAgent::new();
    let pr = agent.request_pairing(&srv).await;
    let token = pr["pair_token"].as_str().unwrap().to_owned();
    let (_, c): (u16, Value) = alice
        .post("/api/pair/confirm", &json!({"pair_token": token}))
        .await
        .unwrap();
    assert_eq!(c["status"], "awaiting_approval");
    let (s, a) = agent.activate(&srv, &token).await.unwrap();
    assert_eq!(
        (s, a["status"].as_str().unwrap()),
        (202, "awaiting_approval")
    );
    let e = alice
        .post::<_, Value>(
            &format!("/api/devices/{}/approve", pr["device_id"].as_str().unwrap()),
            &json!({}),
        )
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::Forbidden);
    let admin = tether_server::routes::accounts::create_user(
        srv.state(),
        tether_server::routes::accounts::RegisterRequest {
            email: "admin@lab.example".into(),
            password: "correct horse battery".into(),
            mobile_pub: None,
        },
        tether_store::Role::Admin,
    )
    .await
    .unwrap();
    let (_, login): (u16, Value) = srv
        .api()
        .post(
            "/api/login",
            &json!({"email": admin.email, "password": "correct horse battery"}),
        )
        .await
        .unwrap();
    let admin_api = srv
        .api()
        .with_bearer(login["access_token"].as_str().unwrap());
    let (s, _): (u16, Value) = admin_api
        .post(
            &format!("/api/devices/{}/approve", pr["device_id"].as_str().unwrap()),
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    let (s, _) = agent.activate(&srv, &token).await.unwrap();
    assert_eq!(s, 200);
    srv.stop().await;
}

/// Malformed, oversized and wrongly typed JSON on every JSON route gets a 4xx with our
/// error shape, never a 500 or a framework default.
#[tokio::test]
async fn bad_json_on_every_route_gets_our_4xx() {
    let srv = TestServer::start().await;
    let (alice, _, _) = srv.user("alice@lab.example").await;
    let token_routes = [
        "/api/register",
        "/api/login",
        "/api/token/refresh",
        "/api/logout",
        "/api/discovery/confirm",
        "/api/pair/request",
        "/api/pair/activate",
    ];
    let auth_routes = ["/api/totp/confirm", "/api/pair/confirm"];
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("malformed", b"{\"email\":".to_vec()),
        ("not an object", b"[1,2,3]".to_vec()),
        ("wrong types", br#"{"email":1,"password":[],"pair_token":{},"refresh_token":7,"challenge_token":null,"code":false}"#.to_vec()),
        ("oversized", {
            let mut v = b"{\"email\":\"".to_vec();
            v.extend(std::iter::repeat_n(b'a', 200_000));
            v.extend(b"\"}");
            v
        }),
        ("empty", Vec::new()),
    ];
    let token = alice_token(&alice);
    for route in token_routes.iter().chain(auth_routes.iter()) {
        for (what, body) in &bodies {
            let (status, v) = raw_post(&srv.api().with_bearer(&token), route, body.clone()).await;
            assert!(
                (400..500).contains(&status),
                "{route} {what}: status {status}"
            );
            let code = v["code"]
                .as_u64()
                .unwrap_or_else(|| panic!("{route} {what}: no code in {v}"));
            assert!(
                ErrorCode::from_number(u16::try_from(code).unwrap()).is_some(),
                "{route} {what}"
            );
            assert!(
                v["message"].is_string() && v["error"].is_string() && v["trace_id"].is_string()
            );
        }
    }
    srv.stop().await;
}

fn alice_token(api: &tether_client::Api) -> String {
    api.bearer().unwrap().to_owned()
}

/// A raw HTTPS POST (so the test can send bytes that are not JSON at all).
async fn raw_post(api: &tether_client::Api, route: &str, body: Vec<u8>) -> (u16, Value) {
    let (status, bytes) = api.post_raw(route, body).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}
