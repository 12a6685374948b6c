#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::json;

use super::*;
use crate::examples;
use crate::messages::command::CommandDelivery;
use crate::messages::{MessageType, decode_body};

/// The published test key of docs/protocol.md section 3.11 (seed thirty-two 0x01 bytes).
fn test_key() -> SigningKey {
    SigningKey::from_bytes(&[1u8; 32])
}

const COMMAND_ID: &str = "0b7e4c7e-52b4-4c1e-9a51-6f0c1f3f2a10";
const T0: u64 = 1_764_115_200_000;

fn statement() -> Vec<u8> {
    command_statement(
        &MessageId::parse(COMMAND_ID).unwrap(),
        "dev_01HZX3K9",
        Method::LockScreen,
        &json!({}),
        UnixMillis(T0 + 300_000),
    )
    .unwrap()
}

/// The test vector of docs/protocol.md section 6.11.
#[test]
fn the_command_statement_is_the_documented_canonical_json() {
    let s = statement();
    assert_eq!(
        std::str::from_utf8(&s).unwrap(),
        r#"{"command_id":"0b7e4c7e-52b4-4c1e-9a51-6f0c1f3f2a10","device_id":"dev_01HZX3K9","method":"lock_screen","not_after":1764115500000,"params":{},"type":"tether.command.v1"}"#
    );
    assert_eq!(
        crate::ids::sha256_hex(&s),
        "1dfb1033314dbc951479e0d45db1f2aed04d16b87e95b27cec0b3c692a97e874"
    );
    assert_eq!(
        webauthn_challenge(&s),
        "HfsQMzFNvJUUeeDUXbHyrtBNFrh-lbJ87As8aSqX6HQ"
    );
    let UserSig::Ed25519(sig) = sign_ed25519(&test_key(), &s) else {
        panic!("an ed25519 signature");
    };
    assert_eq!(sig.kid, "34750f98bd59fcfc");
    assert_eq!(
        sig.sig,
        "scYFGLLKuFGKp3rHPApQUsxUpgx6NJ1TPVq6PP5-aAzPpdg-hX537rMUHZbQZkogTcd6qSMUYcAp9yLUqZgYBA"
    );
}

#[test]
fn the_statement_binds_every_field() {
    let key = test_key();
    let pk = key.verifying_key().to_bytes();
    let base = statement();
    let UserSig::Ed25519(sig) = sign_ed25519(&key, &base) else {
        panic!()
    };
    assert!(verify_ed25519(&pk, &base, &sig));
    let id = MessageId::parse(COMMAND_ID).unwrap();
    let other_id = MessageId::parse("5f1d2c3b-8a9e-4f70-b1c2-d3e4f5a6b7c8").unwrap();
    let p = json!({});
    let variants = [
        command_statement(
            &other_id,
            "dev_01HZX3K9",
            Method::LockScreen,
            &p,
            UnixMillis(T0 + 300_000),
        ),
        command_statement(
            &id,
            "dev_other",
            Method::LockScreen,
            &p,
            UnixMillis(T0 + 300_000),
        ),
        command_statement(
            &id,
            "dev_01HZX3K9",
            Method::Reboot,
            &p,
            UnixMillis(T0 + 300_000),
        ),
        command_statement(
            &id,
            "dev_01HZX3K9",
            Method::LockScreen,
            &json!({"x": 1}),
            UnixMillis(T0 + 300_000),
        ),
        command_statement(
            &id,
            "dev_01HZX3K9",
            Method::LockScreen,
            &p,
            UnixMillis(T0 + 300_001),
        ),
    ];
    for v in variants {
        let v = v.unwrap();
        assert_ne!(v, base);
        assert!(
            !verify_ed25519(&pk, &v, &sig),
            "{}",
            String::from_utf8_lossy(&v)
        );
    }
    // Member order and spelling of params do not matter: the statement is canonical.
    let a = command_statement(
        &id,
        "d",
        Method::Reboot,
        &json!({"delay_s": 60, "force": true}),
        UnixMillis(1),
    )
    .unwrap();
    let b: Value = serde_json::from_str(r#"{"force":true,"delay_s":60.0}"#).unwrap();
    let b = command_statement(&id, "d", Method::Reboot, &b, UnixMillis(1)).unwrap();
    assert_eq!(a, b);
    assert!(command_statement(&id, "d", Method::Reboot, &json!([]), UnixMillis(1)).is_err());
}

#[test]
fn another_key_or_a_damaged_signature_does_not_verify() {
    let s = statement();
    let UserSig::Ed25519(mut sig) = sign_ed25519(&test_key(), &s) else {
        panic!()
    };
    let other = SigningKey::from_bytes(&[2u8; 32])
        .verifying_key()
        .to_bytes();
    assert!(!verify_ed25519(&other, &s, &sig));
    assert!(!verify_ed25519(&[0u8; 31], &s, &sig));
    let mut raw = b64url_decode(&sig.sig).unwrap();
    raw[0] ^= 1;
    sig.sig = b64url_encode(&raw);
    let pk = test_key().verifying_key().to_bytes();
    assert!(!verify_ed25519(&pk, &s, &sig));
    sig.sig = "not base64!".into();
    assert!(!verify_ed25519(&pk, &s, &sig));
}

#[test]
fn user_sig_shapes_are_checked_with_their_paths() {
    let ok = |v: Value| {
        let s: UserSig = serde_json::from_value(v).unwrap();
        s.validate_at(USER_SIG)
    };
    let field = |r: Result<(), ProtoError>| match r {
        Err(ProtoError::InvalidField { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    let sig =
        "scYFGLLKuFGKp3rHPApQUsxUpgx6NJ1TPVq6PP5-aAzPpdg-hX537rMUHZbQZkogTcd6qSMUYcAp9yLUqZgYBA";
    ok(json!({"kind": "ed25519", "kid": "34750f98bd59fcfc", "sig": sig})).unwrap();
    assert_eq!(
        field(ok(
            json!({"kind": "ed25519", "kid": "34750f98bd59fcfc", "sig": "AAAA"})
        )),
        "user_sig.sig"
    );
    assert_eq!(
        field(ok(json!({"kind": "ed25519", "kid": "", "sig": sig}))),
        "user_sig.kid"
    );
    let wa = |ad: usize, cd: usize, sg: usize| {
        json!({"kind": "webauthn-es256", "kid": "9vHMNT-UsqUBcxHbKpIP4A",
               "authenticator_data": b64url_encode(&vec![0u8; ad]),
               "client_data_json": b64url_encode(&vec![b'{'; cd]),
               "signature": b64url_encode(&vec![0x30u8; sg])})
    };
    ok(wa(37, 100, 70)).unwrap();
    assert_eq!(field(ok(wa(36, 100, 70))), "user_sig.authenticator_data");
    assert_eq!(field(ok(wa(37, 2049, 70))), "user_sig.client_data_json");
    assert_eq!(field(ok(wa(37, 100, 73))), "user_sig.signature");
    // Unknown kinds and members are refused by the decoder.
    assert!(
        serde_json::from_value::<UserSig>(json!({"kind": "rsa", "kid": "a", "sig": sig})).is_err()
    );
    assert!(
        serde_json::from_value::<UserSig>(
            json!({"kind": "ed25519", "kid": "a", "sig": sig, "extra": 1})
        )
        .is_err()
    );
    assert!(serde_json::from_value::<UserSig>(json!({"kid": "a", "sig": sig})).is_err());
}

#[test]
fn a_delivery_carries_user_sig_and_not_after_together() {
    let mut v = examples::body(MessageType::CommandDelivery);
    let d: CommandDelivery = decode_body(&v).unwrap();
    assert!(d.user_sig.is_some());
    assert_eq!(d.not_after, Some(UnixMillis(T0 + 300_000)));
    // The example's signature is the test key's over the example's statement.
    let s = command_statement(
        &d.command_id,
        &d.device_id,
        d.method,
        &d.params,
        d.not_after.unwrap(),
    )
    .unwrap();
    let Some(UserSig::Ed25519(sig)) = &d.user_sig else {
        panic!()
    };
    assert!(verify_ed25519(
        &test_key().verifying_key().to_bytes(),
        &s,
        sig
    ));

    v.as_object_mut().unwrap().remove("not_after");
    let e = decode_body::<CommandDelivery>(&v).unwrap_err();
    assert!(e.to_string().contains("body.not_after"), "{e}");
    let mut v = examples::body(MessageType::CommandDelivery);
    v["approvals"] = json!([]);
    assert!(
        decode_body::<CommandDelivery>(&v).is_err(),
        "an empty list is omitted, not sent"
    );
    let mut v = examples::body(MessageType::CommandDelivery);
    v["approvals"] = json!([v["user_sig"].clone()]);
    v["approvals_required"] = json!(1);
    decode_body::<CommandDelivery>(&v).unwrap();
    v["approvals_required"] = json!(9);
    assert!(decode_body::<CommandDelivery>(&v).is_err());
}

#[test]
fn the_owner_keys_example_is_signed_by_the_test_key_and_checked() {
    let v = examples::body(MessageType::OwnerKeysUpdate);
    let u: OwnerKeysUpdate = decode_body(&v).unwrap();
    let UserSig::Ed25519(sig) = &u.user_sig else {
        panic!()
    };
    let bytes = u.statement.canonical().unwrap();
    assert!(verify_ed25519(
        &test_key().verifying_key().to_bytes(),
        &bytes,
        sig
    ));

    let bad = |f: &dyn Fn(&mut OwnerKeysStatement)| {
        let mut s = u.statement.clone();
        f(&mut s);
        s.validate_at(false).unwrap_err().to_string()
    };
    assert!(bad(&|s| s.kind = "tether.command.v1".into()).contains("statement.type"));
    assert!(bad(&|s| s.add.clear()).contains("nothing to add"));
    assert!(bad(&|s| s.version = 0).contains("statement.version"));
    assert!(bad(&|s| s.add[0].kind = "rsa".into()).contains("statement.add[].kind"));
    assert!(
        bad(&|s| {
            s.add[0] = OwnerKey {
                kid: "owner-cli-1".into(),
                kind: KIND_ED25519.into(),
                public_key: "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w".into(),
                role: Default::default(),
            }
        })
        .contains("statement.add[].kid"),
        "an ed25519 key under another kid"
    );
    assert!(bad(&|s| s.remove = vec!["bad kid!".into()]).contains("statement.remove"));
}
