//! The owner-signature verifier: Ed25519 keys, WebAuthn ES256 assertions made by a
//! software authenticator (every flag, the challenge, origin and RP id checked), and
//! owner-keys statements.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use ed25519_dalek::SigningKey;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::EncodePublicKey as _;
use serde_json::json;
use tether_proto::MessageId;
use tether_proto::messages::command::Method;
use tether_proto::owner_sig::{WebauthnSig, command_statement, sign_ed25519};
use tether_proto::validate::b64url_encode;

use super::*;

const SERVER: &str = "https://tether.lab.example:8443";
const DEVICE: &str = "dev_01HZX3K9";

fn ed_key(seed: u8) -> (SigningKey, OwnerKey) {
    let k = SigningKey::from_bytes(&[seed; 32]);
    let pk = k.verifying_key().to_bytes();
    let pinned = OwnerKey {
        kid: KeyId::for_ed25519(&pk).to_string(),
        kind: KIND_ED25519.into(),
        public_key: b64url_encode(&pk),
        role: Default::default(),
    };
    (k, pinned)
}

/// A software passkey: a P-256 key under a credential id, answering `.get()` as a
/// browser and platform authenticator would, with knobs for what a test breaks.
struct Passkey {
    key: p256::ecdsa::SigningKey,
    credential_id: Vec<u8>,
}

struct Assert<'a> {
    origin: &'a str,
    rp_id: &'a str,
    kind: &'a str,
    flags: u8,
}

impl Default for Assert<'_> {
    fn default() -> Self {
        Self {
            origin: SERVER,
            rp_id: "tether.lab.example",
            kind: "webauthn.get",
            flags: FLAG_UP | FLAG_UV,
        }
    }
}

impl Passkey {
    fn new(seed: u8) -> Self {
        Self {
            key: p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap(),
            credential_id: vec![seed; 16],
        }
    }

    fn pinned(&self) -> OwnerKey {
        OwnerKey {
            kid: b64url_encode(&self.credential_id),
            kind: KIND_WEBAUTHN_ES256.into(),
            public_key: b64url_encode(
                self.key
                    .verifying_key()
                    .to_public_key_der()
                    .unwrap()
                    .as_bytes(),
            ),
            role: Default::default(),
        }
    }

    fn sign(&self, statement: &[u8], a: &Assert<'_>) -> UserSig {
        let client_data = serde_json::to_vec(&json!({
            "type": a.kind,
            "challenge": owner_sig::webauthn_challenge(statement),
            "origin": a.origin,
            "crossOrigin": false,
        }))
        .unwrap();
        let mut auth_data = Sha256::digest(a.rp_id.as_bytes()).to_vec();
        auth_data.push(a.flags);
        auth_data.extend_from_slice(&1u32.to_be_bytes());
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&Sha256::digest(&client_data));
        let sig: p256::ecdsa::DerSignature = self.key.sign(&signed);
        UserSig::WebauthnEs256(WebauthnSig {
            kid: b64url_encode(&self.credential_id),
            authenticator_data: b64url_encode(&auth_data),
            client_data_json: b64url_encode(&client_data),
            signature: b64url_encode(sig.as_bytes()),
        })
    }
}

fn statement(command: &str, device: &str, params: Value) -> Vec<u8> {
    command_statement(
        &MessageId::parse(command).unwrap(),
        device,
        Method::LockScreen,
        &params,
        UnixMillis(1_800_000_000_000),
    )
    .unwrap()
}

const CMD_A: &str = "0b7e4c7e-52b4-4c1e-9a51-6f0c1f3f2a10";
const CMD_B: &str = "5f1d2c3b-8a9e-4f70-b1c2-d3e4f5a6b7c8";

#[test]
fn the_relying_party_is_the_servers_origin_and_host() {
    assert_eq!(
        RelyingParty::for_server("https://Tether.Lab.example:8443/"),
        RelyingParty {
            origin: "https://tether.lab.example:8443".into(),
            rp_id: "tether.lab.example".into()
        }
    );
    assert_eq!(
        RelyingParty::for_server("https://localhost"),
        RelyingParty {
            origin: "https://localhost".into(),
            rp_id: "localhost".into()
        }
    );
    assert_eq!(RelyingParty::for_server("https://[::1]:9/x").rp_id, "::1");
}

#[test]
fn an_ed25519_signature_verifies_only_with_its_pinned_key() {
    let (k, pinned) = ed_key(1);
    let (other, _) = ed_key(2);
    let trust = OwnerTrust::new(std::slice::from_ref(&pinned), SERVER);
    let s = statement(CMD_A, DEVICE, json!({}));
    assert_eq!(trust.verify(&s, &sign_ed25519(&k, &s)).unwrap(), pinned.kid);
    assert!(matches!(
        trust.verify(&s, &sign_ed25519(&other, &s)),
        Err(OwnerSigError::UnknownKey { .. })
    ));
    let over_other = sign_ed25519(&k, &statement(CMD_B, DEVICE, json!({})));
    assert!(matches!(
        trust.verify(&s, &over_other),
        Err(OwnerSigError::BadSignature(_))
    ));
    // A key pinned under another kid never verifies anything.
    let mut wrong = pinned;
    wrong.kid = "0000000000000000".into();
    assert!(OwnerTrust::new(&[wrong], SERVER).keys().is_empty());
}

#[test]
fn a_passkey_assertion_for_the_command_verifies() {
    let pk = Passkey::new(3);
    let trust = OwnerTrust::new(&[pk.pinned()], SERVER);
    let s = statement(CMD_A, DEVICE, json!({}));
    assert_eq!(
        trust.verify(&s, &pk.sign(&s, &Assert::default())).unwrap(),
        pk.pinned().kid
    );
}

#[test]
fn a_passkey_assertion_is_refused_for_each_fault() {
    let pk = Passkey::new(3);
    let trust = OwnerTrust::new(&[pk.pinned()], SERVER);
    let s = statement(CMD_A, DEVICE, json!({}));
    let refused = |sig: UserSig, what: &str| match trust.verify(&s, &sig) {
        Err(OwnerSigError::Assertion { why, .. }) => {
            assert!(why.contains(what), "{why} does not say {what}");
        }
        other => panic!("{what}: {other:?}"),
    };
    refused(
        pk.sign(
            &s,
            &Assert {
                flags: FLAG_UP,
                ..Assert::default()
            },
        ),
        "user-verified",
    );
    refused(
        pk.sign(
            &s,
            &Assert {
                flags: FLAG_UV,
                ..Assert::default()
            },
        ),
        "user-present",
    );
    refused(
        pk.sign(
            &s,
            &Assert {
                rp_id: "evil.example",
                ..Assert::default()
            },
        ),
        "rpIdHash",
    );
    refused(
        pk.sign(
            &s,
            &Assert {
                origin: "https://evil.example",
                ..Assert::default()
            },
        ),
        "origin",
    );
    refused(
        pk.sign(
            &s,
            &Assert {
                kind: "webauthn.create",
                ..Assert::default()
            },
        ),
        "type",
    );
    // An assertion for another command (its challenge), another device, other params.
    for other in [
        statement(CMD_B, DEVICE, json!({})),
        statement(CMD_A, "dev_other", json!({})),
        statement(CMD_A, DEVICE, json!({"x": 1})),
    ] {
        refused(pk.sign(&other, &Assert::default()), "challenge");
    }
    // Right clientData, but signed by another P-256 key under this credential id.
    let forger = Passkey {
        key: p256::ecdsa::SigningKey::from_slice(&[4u8; 32]).unwrap(),
        credential_id: pk.credential_id.clone(),
    };
    assert!(matches!(
        trust.verify(&s, &forger.sign(&s, &Assert::default())),
        Err(OwnerSigError::BadSignature(_))
    ));
    // Authenticator data changed after signing (flags forged on).
    let UserSig::WebauthnEs256(mut w) = pk.sign(
        &s,
        &Assert {
            flags: FLAG_UP,
            ..Assert::default()
        },
    ) else {
        panic!()
    };
    let mut ad = b64url_decode(&w.authenticator_data).unwrap();
    ad[32] |= FLAG_UV;
    w.authenticator_data = b64url_encode(&ad);
    assert!(matches!(
        trust.verify(&s, &UserSig::WebauthnEs256(w)),
        Err(OwnerSigError::BadSignature(_))
    ));
}

#[test]
fn owner_keys_change_only_through_a_pinned_keys_statement() {
    let (owner, pinned) = ed_key(1);
    let (stranger, _) = ed_key(2);
    let passkey = Passkey::new(3);
    let trust = OwnerTrust::new(std::slice::from_ref(&pinned), SERVER);
    let now = UnixMillis(1_800_000_000_000);
    let add = OwnerKeysStatement {
        kind: owner_sig::OWNER_KEYS_STATEMENT_TYPE.into(),
        user_id: "usr_alice".into(),
        device_id: None,
        version: now.0,
        add: vec![passkey.pinned()],
        remove: Vec::new(),
        not_after: now.saturating_add(std::time::Duration::from_secs(600)),
    };
    let bytes = add.canonical().unwrap();
    let keys = trust
        .apply(DEVICE, &add, &sign_ed25519(&owner, &bytes), now)
        .unwrap();
    assert_eq!(keys.len(), 2);
    // Not signed by a pinned key: refused.
    assert!(matches!(
        trust.apply(DEVICE, &add, &sign_ed25519(&stranger, &bytes), now),
        Err(KeysRefusal::Signature(_))
    ));
    // For another device, or expired.
    let mut other = add.clone();
    other.device_id = Some("dev_other".into());
    let sig = sign_ed25519(&owner, &other.canonical().unwrap());
    assert!(matches!(
        trust.apply(DEVICE, &other, &sig, now),
        Err(KeysRefusal::Invalid(_))
    ));
    assert!(matches!(
        trust.apply(
            DEVICE,
            &add,
            &sign_ed25519(&owner, &bytes),
            add.not_after
                .saturating_add(std::time::Duration::from_millis(1))
        ),
        Err(KeysRefusal::Expired)
    ));
    // The new passkey then signs commands, and can remove the CLI key.
    let trust = trust.with_keys(&keys, now.0);
    let s = statement(CMD_A, DEVICE, json!({}));
    trust
        .verify(&s, &passkey.sign(&s, &Assert::default()))
        .unwrap();
    let remove = OwnerKeysStatement {
        add: Vec::new(),
        remove: vec![pinned.kid.clone()],
        version: now.0 + 1,
        ..add.clone()
    };
    let rb = remove.canonical().unwrap();
    let keys = trust
        .apply(DEVICE, &remove, &passkey.sign(&rb, &Assert::default()), now)
        .unwrap();
    assert_eq!(keys, vec![passkey.pinned()]);
    // Removing the last key is refused (pair again instead).
    let trust = trust.with_keys(&keys, now.0 + 1);
    let last = OwnerKeysStatement {
        add: Vec::new(),
        remove: vec![passkey.pinned().kid],
        version: now.0 + 2,
        ..add
    };
    let lb = last.canonical().unwrap();
    assert!(matches!(
        trust.apply(DEVICE, &last, &passkey.sign(&lb, &Assert::default()), now),
        Err(KeysRefusal::Invalid(_))
    ));
    // A statement not above the last applied version is a replay.
    assert!(matches!(
        trust.apply(DEVICE, &remove, &passkey.sign(&rb, &Assert::default()), now),
        Err(KeysRefusal::Replay { .. })
    ));
}

#[test]
fn an_approver_key_signs_approvals_only() {
    let (owner, pinned) = ed_key(1);
    let (colleague, mut approver) = ed_key(4);
    approver.role = KeyRole::Approver;
    let trust = OwnerTrust::new(&[pinned.clone(), approver.clone()], SERVER);
    let s = statement(CMD_A, DEVICE, json!({}));
    // Not a command's signer…
    assert!(matches!(
        trust.verify(&s, &sign_ed25519(&colleague, &s)),
        Err(OwnerSigError::UnknownKey { .. })
    ));
    // …but an approver of the owner's command.
    let signer = trust.verify(&s, &sign_ed25519(&owner, &s)).unwrap();
    trust
        .check_approvals(&s, &signer, &[sign_ed25519(&colleague, &s)], 1)
        .unwrap();
    // Nor may it change the pinned keys, or be all that is left.
    let now = UnixMillis(1_800_000_000_000);
    let st = OwnerKeysStatement {
        kind: owner_sig::OWNER_KEYS_STATEMENT_TYPE.into(),
        user_id: "usr_alice".into(),
        device_id: None,
        version: now.0,
        add: Vec::new(),
        remove: vec![pinned.kid.clone()],
        not_after: now.saturating_add(std::time::Duration::from_secs(600)),
    };
    let b = st.canonical().unwrap();
    assert!(matches!(
        trust.apply(DEVICE, &st, &sign_ed25519(&colleague, &b), now),
        Err(KeysRefusal::Signature(_))
    ));
    assert!(matches!(
        trust.apply(DEVICE, &st, &sign_ed25519(&owner, &b), now),
        Err(KeysRefusal::Invalid(_))
    ));
}
