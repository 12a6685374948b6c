//! Passkey (WebAuthn) registration and login against an in-process server, with a
//! software authenticator standing in for the phone's.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

mod support;

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{TestServer, code_of, rand_bytes};
use tether_client::Api;
use tether_proto::ErrorCode;
use tether_proto::validate::{b64url_decode, b64url_encode};

/// A test double of a platform authenticator (a phone's secure element behind a
/// fingerprint or face check) together with the browser's WebAuthn client: one ES256
/// credential made in software, answering `navigator.credentials.create()` and `.get()`
/// with the JSON the web app would post, user presence and user verification always
/// asserted. It checks nothing a real authenticator would (excluded credentials, the
/// allow list): the server's checks are what is under test.
#[derive(Clone)]
struct FakeAuthenticator {
    key: SigningKey,
    credential_id: Vec<u8>,
    /// The signature counter; each assertion moves it on by one.
    counter: u32,
    /// The web origin the browser would report: the server's public URL.
    origin: String,
    /// The user handle the server gave at registration.
    user_handle: Vec<u8>,
}

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_AT: u8 = 0x40;

impl FakeAuthenticator {
    fn new(origin: &str) -> Self {
        Self {
            key: SigningKey::from_slice(&rand_bytes()).unwrap(),
            credential_id: rand_bytes().to_vec(),
            counter: 0,
            origin: origin.to_owned(),
            user_handle: Vec::new(),
        }
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "type": kind,
            "challenge": challenge,
            "origin": self.origin,
            "crossOrigin": false,
        }))
        .unwrap()
    }

    /// The credential for `options` (the server's `CreationChallengeResponse`), as
    /// `RegisterPublicKeyCredential` JSON, with `fmt: none` attestation.
    fn register(&mut self, options: &Value) -> Value {
        let pk = &options["publicKey"];
        let rp_id = pk["rp"]["id"].as_str().unwrap();
        self.user_handle = b64url_decode(pk["user"]["id"].as_str().unwrap()).unwrap();
        let client_data = self.client_data("webauthn.create", pk["challenge"].as_str().unwrap());

        let point = self.key.verifying_key().to_sec1_point(false);
        let sec1 = point.as_bytes();
        assert_eq!(sec1.len(), 65, "uncompressed P-256 point");
        // COSE_Key (RFC 9053): kty EC2, alg ES256, crv P-256, x, y.
        let cose_key = cbor::map(vec![
            (cbor::int(1), cbor::int(2)),
            (cbor::int(3), cbor::int(-7)),
            (cbor::int(-1), cbor::int(1)),
            (cbor::int(-2), cbor::bytes(&sec1[1..33])),
            (cbor::int(-3), cbor::bytes(&sec1[33..65])),
        ]);
        let mut auth_data = Vec::new();
        auth_data.extend_from_slice(&Sha256::digest(rp_id.as_bytes()));
        auth_data.push(FLAG_UP | FLAG_UV | FLAG_AT);
        auth_data.extend_from_slice(&self.counter.to_be_bytes());
        auth_data.extend_from_slice(&[0u8; 16]); // AAGUID: none
        auth_data.extend_from_slice(&(self.credential_id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&self.credential_id);
        auth_data.extend_from_slice(&cose_key);
        let attestation_object = cbor::map(vec![
            (cbor::text("fmt"), cbor::text("none")),
            (cbor::text("attStmt"), cbor::map(vec![])),
            (cbor::text("authData"), cbor::bytes(&auth_data)),
        ]);
        json!({
            "id": b64url_encode(&self.credential_id),
            "rawId": b64url_encode(&self.credential_id),
            "response": {
                "clientDataJSON": b64url_encode(&client_data),
                "attestationObject": b64url_encode(&attestation_object),
            },
            "type": "public-key",
            "extensions": {},
        })
    }

    /// The assertion for `options` (the server's `RequestChallengeResponse`), as
    /// `PublicKeyCredential` JSON, signed with this authenticator's key.
    fn assert(&mut self, options: &Value) -> Value {
        let key = self.key.clone();
        self.assert_signed_by(options, &key)
    }

    /// The same, but signed by `key`: what a forged assertion looks like.
    fn assert_signed_by(&mut self, options: &Value, key: &SigningKey) -> Value {
        let pk = &options["publicKey"];
        let rp_id = pk["rpId"].as_str().unwrap();
        let client_data = self.client_data("webauthn.get", pk["challenge"].as_str().unwrap());
        self.counter += 1;
        let mut auth_data = Vec::new();
        auth_data.extend_from_slice(&Sha256::digest(rp_id.as_bytes()));
        auth_data.push(FLAG_UP | FLAG_UV);
        auth_data.extend_from_slice(&self.counter.to_be_bytes());
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&Sha256::digest(&client_data));
        let signature: DerSignature = key.sign(&signed);
        json!({
            "id": b64url_encode(&self.credential_id),
            "rawId": b64url_encode(&self.credential_id),
            "response": {
                "clientDataJSON": b64url_encode(&client_data),
                "authenticatorData": b64url_encode(&auth_data),
                "signature": b64url_encode(signature.as_bytes()),
                "userHandle": b64url_encode(&self.user_handle),
            },
            "type": "public-key",
            "extensions": {},
        })
    }
}

/// Just enough CBOR (RFC 8949) encoding for an attestation object and a COSE key:
/// integers, byte and text strings, maps.
mod cbor {
    fn head(major: u8, n: u64) -> Vec<u8> {
        let m = major << 5;
        match n {
            0..=23 => vec![m | n as u8],
            24..=0xff => vec![m | 24, n as u8],
            0x100..=0xffff => [&[m | 25][..], &(n as u16).to_be_bytes()].concat(),
            0x1_0000..=0xffff_ffff => [&[m | 26][..], &(n as u32).to_be_bytes()].concat(),
            _ => [&[m | 27][..], &n.to_be_bytes()].concat(),
        }
    }

    pub(crate) fn int(i: i64) -> Vec<u8> {
        if i >= 0 {
            head(0, i.unsigned_abs())
        } else {
            head(1, (-1 - i).unsigned_abs())
        }
    }

    pub(crate) fn bytes(b: &[u8]) -> Vec<u8> {
        [head(2, b.len() as u64), b.to_vec()].concat()
    }

    pub(crate) fn text(s: &str) -> Vec<u8> {
        [head(3, s.len() as u64), s.as_bytes().to_vec()].concat()
    }

    pub(crate) fn map(entries: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<u8> {
        let mut out = head(5, entries.len() as u64);
        for (k, v) in entries {
            out.extend(k);
            out.extend(v);
        }
        out
    }
}

const EMAIL: &str = "alice@lab.example";

/// Registers a passkey for the signed-in `api`; returns the credential id.
async fn register(api: &Api, auth: &mut FakeAuthenticator) -> String {
    let (s, start): (u16, Value) = api
        .post("/api/passkeys/register/start", &json!({}))
        .await
        .unwrap();
    assert_eq!(s, 200);
    let credential = auth.register(&start["options"]);
    let (s, done): (u16, Value) = api
        .post(
            "/api/passkeys/register/finish",
            &json!({"ceremony_id": start["ceremony_id"], "credential": credential}),
        )
        .await
        .unwrap();
    assert_eq!(s, 201);
    done["credential_id"].as_str().unwrap().to_owned()
}

async fn login_start(srv: &TestServer, email: &str) -> Value {
    let (s, start): (u16, Value) = srv
        .api()
        .post("/api/passkeys/login/start", &json!({"email": email}))
        .await
        .unwrap();
    assert_eq!(s, 200);
    start
}

async fn login_finish(
    srv: &TestServer,
    ceremony_id: &Value,
    credential: Value,
) -> Result<Value, tether_client::ClientError> {
    srv.api()
        .post(
            "/api/passkeys/login/finish",
            &json!({"ceremony_id": ceremony_id, "credential": credential}),
        )
        .await
        .map(|(_, v)| v)
}

/// The JSON claims of a JWT (not verified: the server does that).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&b64url_decode(payload).unwrap()).unwrap()
}

async fn stored_counter(srv: &TestServer, user_id: &str) -> u64 {
    let pks = srv.state().store.passkeys_for_user(user_id).await.unwrap();
    assert_eq!(pks.len(), 1);
    let data: Value = serde_json::from_str(&pks[0].data).unwrap();
    data["cred"]["counter"].as_u64().unwrap()
}

async fn audit_actions(srv: &TestServer) -> Vec<(String, String, Value)> {
    srv.state()
        .store
        .audit_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.event.action, e.event.outcome, e.event.detail))
        .collect()
}

#[tokio::test]
async fn register_then_log_in_with_the_passkey() {
    let srv = TestServer::start().await;
    let (alice, login, _) = srv.user(EMAIL).await;
    let user_id = login["user"]["id"].as_str().unwrap().to_owned();
    let mut phone = FakeAuthenticator::new(&srv.url);
    let credential_id = register(&alice, &mut phone).await;
    assert_eq!(credential_id, b64url_encode(&phone.credential_id));
    assert_eq!(
        phone.user_handle,
        hex::decode(user_id.strip_prefix("usr_").unwrap()).unwrap(),
        "the user handle is the id's random bits"
    );

    for n in 1..=2u64 {
        let start = login_start(&srv, EMAIL).await;
        assert_eq!(
            start["options"]["publicKey"]["userVerification"], "required",
            "biometric or PIN on the phone, not just presence"
        );
        let tokens = login_finish(&srv, &start["ceremony_id"], phone.assert(&start["options"]))
            .await
            .unwrap();
        assert_eq!(tokens["token_type"], "Bearer");
        assert!(tokens["refresh_token"].as_str().is_some());
        let access = tokens["access_token"].as_str().unwrap();
        assert_eq!(claims(access)["amr"], json!(["hwk"]));
        let (s, me): (u16, Value) = srv.api().with_bearer(access).get("/api/me").await.unwrap();
        assert_eq!(s, 200);
        assert_eq!(me["email"], EMAIL);
        assert_eq!(
            stored_counter(&srv, &user_id).await,
            n,
            "the counter is kept"
        );
    }

    let audit = audit_actions(&srv).await;
    assert!(audit.iter().any(|(a, o, d)| a == "user.passkey_added"
        && o == "success"
        && d["credential_id"] == credential_id));
    let passkey_logins = audit
        .iter()
        .filter(|(a, o, d)| a == "user.login" && o == "success" && d["method"] == "passkey")
        .count();
    assert_eq!(passkey_logins, 2);
    srv.stop().await;
}

#[tokio::test]
async fn a_replayed_ceremony_is_refused() {
    let srv = TestServer::start().await;
    let (alice, _, _) = srv.user(EMAIL).await;
    let mut phone = FakeAuthenticator::new(&srv.url);

    // Registration: the same ceremony and response a second time.
    let (_, start): (u16, Value) = alice
        .post("/api/passkeys/register/start", &json!({}))
        .await
        .unwrap();
    let body = json!({"ceremony_id": start["ceremony_id"], "credential": phone.register(&start["options"])});
    let (s, _): (u16, Value) = alice
        .post("/api/passkeys/register/finish", &body)
        .await
        .unwrap();
    assert_eq!(s, 201);
    let e = alice
        .post::<_, Value>("/api/passkeys/register/finish", &body)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::NotFound);

    // Login: the same ceremony and assertion a second time.
    let start = login_start(&srv, EMAIL).await;
    let assertion = phone.assert(&start["options"]);
    login_finish(&srv, &start["ceremony_id"], assertion.clone())
        .await
        .unwrap();
    let e = login_finish(&srv, &start["ceremony_id"], assertion)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::NotFound);

    // A fresh assertion on a spent ceremony fares no better.
    let e = login_finish(&srv, &start["ceremony_id"], phone.assert(&start["options"]))
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::NotFound);
    srv.stop().await;
}

#[tokio::test]
async fn an_assertion_signed_by_another_key_is_refused() {
    let srv = TestServer::start().await;
    let (alice, _, _) = srv.user(EMAIL).await;
    let mut phone = FakeAuthenticator::new(&srv.url);
    register(&alice, &mut phone).await;

    let start = login_start(&srv, EMAIL).await;
    let thief = SigningKey::from_slice(&rand_bytes()).unwrap();
    let forged = phone.assert_signed_by(&start["options"], &thief);
    let e = login_finish(&srv, &start["ceremony_id"], forged)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::SecondFactorInvalid);
    // The refused try spent the ceremony.
    let e = login_finish(&srv, &start["ceremony_id"], phone.assert(&start["options"]))
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::NotFound);

    let audit = audit_actions(&srv).await;
    assert!(
        audit.iter().any(|(a, o, d)| a == "user.login_failed"
            && o == "failure"
            && d["method"] == "passkey")
    );
    assert!(
        !audit
            .iter()
            .any(|(a, _, d)| a == "user.login" && d["method"] == "passkey")
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_cloned_authenticator_whose_counter_lags_is_refused() {
    let srv = TestServer::start().await;
    let (alice, _, _) = srv.user(EMAIL).await;
    let mut phone = FakeAuthenticator::new(&srv.url);
    register(&alice, &mut phone).await;
    let mut clone = phone.clone();

    // Both ceremonies start before either finishes, so both carry counter 0.
    let first = login_start(&srv, EMAIL).await;
    let second = login_start(&srv, EMAIL).await;
    login_finish(&srv, &first["ceremony_id"], phone.assert(&first["options"]))
        .await
        .unwrap();
    // The clone signs with the same key and the same counter (1): the stored counter
    // has moved on to 1 since `second` started.
    let e = login_finish(
        &srv,
        &second["ceremony_id"],
        clone.assert(&second["options"]),
    )
    .await
    .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::SecondFactorInvalid);
    srv.stop().await;
}

#[tokio::test]
async fn login_start_for_an_unknown_email_or_one_without_passkeys_gets_3008() {
    let srv = TestServer::start().await;
    let _ = srv.user(EMAIL).await;
    let mut messages = Vec::new();
    for email in ["nobody@lab.example", EMAIL] {
        let e = srv
            .api()
            .post::<_, Value>("/api/passkeys/login/start", &json!({"email": email}))
            .await
            .unwrap_err();
        assert_eq!(code_of(&e), ErrorCode::InvalidCredentials);
        let tether_client::ClientError::Api { body, .. } = e else {
            unreachable!()
        };
        messages.push(body.message);
    }
    assert_eq!(messages[0], messages[1], "which one is not revealed");
    srv.stop().await;
}

#[tokio::test]
async fn registering_requires_a_bearer_token() {
    let srv = TestServer::start().await;
    let e = srv
        .api()
        .post::<_, Value>("/api/passkeys/register/start", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::Unauthenticated);
    let e = srv
        .api()
        .post::<_, Value>(
            "/api/passkeys/register/finish",
            &json!({"ceremony_id": "cer_00", "credential": {}}),
        )
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::Unauthenticated);
    srv.stop().await;
}

#[tokio::test]
async fn an_expired_or_another_users_ceremony_is_refused() {
    let srv = TestServer::start().await;
    let (alice, _, _) = srv.user(EMAIL).await;
    let (mallory, _, _) = srv.user("mallory@lab.example").await;
    let mut phone = FakeAuthenticator::new(&srv.url);

    let (_, start): (u16, Value) = alice
        .post("/api/passkeys/register/start", &json!({}))
        .await
        .unwrap();
    let body = json!({"ceremony_id": start["ceremony_id"], "credential": phone.register(&start["options"])});
    let e = mallory
        .post::<_, Value>("/api/passkeys/register/finish", &body)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::NotFound);

    let (_, start): (u16, Value) = alice
        .post("/api/passkeys/register/start", &json!({}))
        .await
        .unwrap();
    let body = json!({"ceremony_id": start["ceremony_id"], "credential": phone.register(&start["options"])});
    srv.advance(301);
    let e = alice
        .post::<_, Value>("/api/passkeys/register/finish", &body)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::NotFound);
    srv.stop().await;
}

#[tokio::test]
async fn openapi_lists_the_passkey_routes() {
    let srv = TestServer::start().await;
    let (_, doc): (u16, Value) = srv.api().get("/api/openapi.json").await.unwrap();
    for p in [
        "/api/passkeys/register/start",
        "/api/passkeys/register/finish",
        "/api/passkeys/login/start",
        "/api/passkeys/login/finish",
    ] {
        assert!(doc["paths"][p]["post"].is_object(), "{p} is documented");
    }
    srv.stop().await;
}
