#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ed25519_dalek::SigningKey;
use serde_json::{Value, json};
use tether_proto::envelope::{EnvelopeSigner, Stamp};
use tether_proto::validate::b64url_encode;
use tether_proto::{Clock, ErrorCode, KeyId, MessageId, SystemClock, TraceId};

use super::*;
use crate::state::{DeviceRecord, GatewayKey, PairedDevice};

const GATEWAY_SEED: [u8; 32] = [11; 32];

/// A state dir paired with a gateway key made from [`GATEWAY_SEED`].
fn paired() -> (tempfile::TempDir, StateDir, StaticKeys) {
    let t = tempfile::tempdir().unwrap();
    let s = StateDir::open(t.path()).unwrap();
    let vk = SigningKey::from_bytes(&GATEWAY_SEED).verifying_key();
    let kid = KeyId::for_ed25519(vk.as_bytes());
    s.save_device(&PairedDevice {
        // From JSON: members this test does not name keep their defaults.
        record: serde_json::from_value::<DeviceRecord>(json!({
            "device_id": "dev_1",
            "server_url": "https://localhost:8443",
            "paired_at": 0,
            "pairing_code": "000 000",
            "gateway_keys": [GatewayKey {
                kid: kid.to_string(),
                public_key: b64url_encode(vk.as_bytes()),
            }],
            "owner_keys": [],
        }))
        .unwrap(),
        cert_pem: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".into(),
        ca_chain_pem: vec![],
    })
    .unwrap();
    let mut keys = StaticKeys::new();
    keys.insert(kid, vk);
    (t, s, keys)
}

fn frame_with(seed: [u8; 32], version: u64, bundle: Value) -> Vec<u8> {
    let update = PolicyUpdate {
        policy_version: version,
        policy_hash: PolicyUpdate::hash_bundle(&bundle).unwrap(),
        bundle,
    };
    EnvelopeSigner::new(SigningKey::from_bytes(&seed))
        .seal(
            Stamp {
                iat: SystemClock.now(),
                ttl: 60,
                seq: version,
                message_id: MessageId::from_random_bytes([u8::try_from(version).unwrap(); 16]),
                trace_id: TraceId::from_random_bytes([1; 16]),
            },
            &update,
        )
        .unwrap()
}

fn deny_reboots() -> Value {
    json!({"format": 1, "rules": [{"id": "no-reboots", "effect": "deny",
                                   "match": {"methods": ["reboot"]}}]})
}

fn verified(frame: &[u8], keys: &StaticKeys) -> Verified {
    Verifier::new(keys, &SystemClock).verify(frame).unwrap()
}

#[test]
fn the_builtin_bundle_until_one_arrives_then_the_newest_survives_a_restart() {
    let (_t, s, keys) = paired();
    let p = LocalPolicy::open(&s).unwrap();
    let builtin = p.current();
    assert_eq!(builtin.version, 0);
    assert_eq!(
        builtin.hash,
        PolicyUpdate::hash_bundle(&tether_policy::builtin()).unwrap()
    );

    let f = frame_with(GATEWAY_SEED, 2, deny_reboots());
    let b = p.accept(&f, verified(&f, &keys)).unwrap();
    assert_eq!(b.version, 2);
    assert_eq!(p.current().hash, b.hash);
    // Stored encrypted: the file is not the frame.
    let stored = s.read_optional(POLICY_FILE).unwrap().unwrap();
    assert!(!stored.windows(f.len()).any(|w| w == f.as_slice()));

    // A restart (long after the envelope's TTL) verifies the stored frame again.
    let again = LocalPolicy::open(&s).unwrap();
    assert_eq!(again.current().version, 2);
    assert_eq!(again.current().hash, b.hash);
    assert_eq!(reverify(&f, &keys).unwrap().version, 2);
}

#[test]
fn older_versions_and_invalid_bundles_are_refused_and_change_nothing() {
    let (_t, s, keys) = paired();
    let p = LocalPolicy::open(&s).unwrap();
    let f3 = frame_with(GATEWAY_SEED, 3, deny_reboots());
    p.accept(&f3, verified(&f3, &keys)).unwrap();

    for v in [3, 1] {
        let f = frame_with(GATEWAY_SEED, v, json!({"format": 1}));
        let e = p.accept(&f, verified(&f, &keys)).unwrap_err();
        assert_eq!(e.code(), ErrorCode::PolicyVersionRollback, "version {v}");
    }
    let bad = frame_with(
        GATEWAY_SEED,
        4,
        json!({"format": 1, "rules": [{"id": "x"}]}),
    );
    let e = p.accept(&bad, verified(&bad, &keys)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::PolicyBundleInvalid);

    assert_eq!(p.current().version, 3);
    assert_eq!(LocalPolicy::open(&s).unwrap().current().version, 3);
}

#[test]
fn a_stored_frame_that_does_not_verify_is_not_believed() {
    let (_t, s, keys) = paired();
    let p = LocalPolicy::open(&s).unwrap();
    let f = frame_with(GATEWAY_SEED, 5, deny_reboots());
    p.accept(&f, verified(&f, &keys)).unwrap();

    // Damaged on disk: it does not decrypt.
    let mut stored = s.read_optional(POLICY_FILE).unwrap().unwrap();
    let last = stored.len() - 1;
    stored[last] ^= 1;
    s.write_atomic(POLICY_FILE, &stored, true).unwrap();
    assert_eq!(LocalPolicy::open(&s).unwrap().current().version, 0);

    // A frame signed by another key, sealed under this PC's key: decrypts, but does not
    // verify with the pinned gateway key.
    let forged = frame_with([99; 32], 9, deny_reboots());
    let sealed = p.seal(&forged).unwrap();
    s.write_atomic(POLICY_FILE, &sealed, true).unwrap();
    assert_eq!(LocalPolicy::open(&s).unwrap().current().version, 0);
    assert!(reverify(&forged, &keys).is_err());
}
