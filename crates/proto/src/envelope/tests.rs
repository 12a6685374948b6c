// Test code: overflow or truncation here is a failed test, not a crashed service.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use ed25519_dalek::{Signer, SigningKey};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::canonical::canonicalize;
use crate::clock::ManualClock;
use crate::error::ErrorCode;
use crate::examples;
use crate::messages::session::Heartbeat;

const NOW: UnixMillis = UnixMillis(1_764_115_200_000);

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn stamp(seq: u64) -> Stamp {
    Stamp {
        iat: NOW,
        ttl: 60,
        seq,
        message_id: MessageId::from_random_bytes([seq.to_le_bytes()[0]; 16]),
        trace_id: TraceId::from_random_bytes([7; 16]),
    }
}

struct Fixture {
    signer: EnvelopeSigner,
    keys: StaticKeys,
    clock: ManualClock,
}

impl Fixture {
    fn new() -> Self {
        let signer = EnvelopeSigner::new(key(1));
        let mut keys = StaticKeys::new();
        keys.insert(signer.kid().clone(), signer.verifying_key());
        Self {
            signer,
            keys,
            clock: ManualClock::new(NOW),
        }
    }

    fn verify(&self, frame: &[u8]) -> Result<Verified, ProtoError> {
        Verifier::new(&self.keys, &self.clock).verify(frame)
    }

    fn code(&self, frame: &[u8]) -> ErrorCode {
        self.verify(frame)
            .expect_err("frame must be rejected")
            .code()
    }

    /// Signs an arbitrary envelope value the way a (possibly buggy or hostile) key holder
    /// would, so tests can check what happens after the signature verifies.
    fn sign_raw(&self, mut env: Value) -> Vec<u8> {
        let unsigned = canonicalize(&env).unwrap();
        let sig = self.signer.key.sign(&signing_input(&unsigned));
        env["sig"] = Value::String(b64url_encode(&sig.to_bytes()));
        canonicalize(&env).unwrap().into_bytes()
    }

    fn heartbeat_value(&self) -> Value {
        let frame = self.signer.seal(stamp(1), &heartbeat()).unwrap();
        let mut v: Value = serde_json::from_slice(&frame).unwrap();
        v.as_object_mut().unwrap().remove("sig");
        v
    }
}

fn heartbeat() -> Heartbeat {
    serde_json::from_value(examples::body(MessageType::Heartbeat)).unwrap()
}

#[test]
fn every_example_body_signs_and_verifies() {
    let f = Fixture::new();
    for &t in MessageType::ALL {
        let frame = f.signer.seal_value(t, stamp(1), examples::body(t)).unwrap();
        let v = f
            .verify(&frame)
            .unwrap_or_else(|e| panic!("{}: {e}", t.name()));
        assert_eq!(v.header.msg_type, t);
        assert_eq!(v.payload.message_type(), t);
        assert_eq!(
            v.payload.to_value().unwrap(),
            examples::body(t),
            "{}",
            t.name()
        );
    }
}

#[test]
fn wire_form_is_canonical_and_has_the_documented_shape() {
    let f = Fixture::new();
    let frame = f.signer.seal(stamp(5), &heartbeat()).unwrap();
    let text = std::str::from_utf8(&frame).unwrap();
    assert!(text.starts_with(r#"{"body":{"queue_depth":0,"status":"alive","uptime_s":86400},"header":{"alg":"EdDSA","iat":1764115200000,"kid":""#));
    assert!(text.ends_with(r#","v":1}"#));
    let v: Value = serde_json::from_slice(&frame).unwrap();
    assert_eq!(canonicalize(&v).unwrap().as_bytes(), frame.as_slice());
}

#[test]
fn sealing_writes_the_bytes_of_the_canonical_envelope_object() {
    // The signer writes the envelope member by member; the bytes and the signature are
    // those of canonicalizing the whole object, with and then without `sig`.
    let f = Fixture::new();
    for &t in MessageType::ALL {
        let frame = f.signer.seal_value(t, stamp(1), examples::body(t)).unwrap();
        let mut v: Value = serde_json::from_slice(&frame).unwrap();
        v.as_object_mut().unwrap().remove("sig");
        assert_eq!(f.sign_raw(v), frame, "{}", t.name());
    }
}

#[test]
fn an_envelope_nested_past_the_canonical_depth_is_1008() {
    // The envelope object is one level; a body of `k` nested arrays makes `k + 1`.
    let f = Fixture::new();
    let nested = |k: usize| {
        let mut body = json!([]);
        for _ in 1..k {
            body = json!([body]);
        }
        let mut env = f.heartbeat_value();
        env["body"] = body;
        env
    };
    // At the limit the frame is canonical and well signed: it fails only at its body,
    // which is not a heartbeat's.
    let at_limit = f.sign_raw(nested(crate::canonical::MAX_DEPTH - 1));
    assert_eq!(f.code(&at_limit), ErrorCode::InvalidField);
    // One deeper cannot be canonicalized (so it cannot be signed either): its bytes are
    // the compact form serde writes, which for this value is the canonical spelling.
    let mut deeper = nested(crate::canonical::MAX_DEPTH);
    deeper["sig"] = json!(b64url_encode(&[0; 64]));
    let deeper = serde_json::to_vec(&deeper).unwrap();
    assert_eq!(f.code(&deeper), ErrorCode::NotCanonicalizable);
}

#[test]
fn into_body_checks_the_type() {
    let f = Fixture::new();
    let frame = f.signer.seal(stamp(1), &heartbeat()).unwrap();
    let v = f.verify(&frame).unwrap();
    assert_eq!(v.clone().into_body::<Heartbeat>().unwrap(), heartbeat());
    let err = v.into_body::<crate::messages::session::Auth>().unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnexpectedMessage);
}

#[test]
fn oversized_frame_is_refused_before_parsing() {
    let f = Fixture::new();
    let frame = vec![b'{'; MAX_FRAME_BYTES + 1];
    assert_eq!(f.code(&frame), ErrorCode::FrameTooLarge);
}

#[test]
fn frame_over_its_type_limit_is_refused_after_verification() {
    let f = Fixture::new();
    let mut env = f.heartbeat_value();
    env["body"]["padding"] = Value::String("x".repeat(4096));
    let frame = f.sign_raw(env);
    assert!(frame.len() < MAX_FRAME_BYTES);
    assert_eq!(f.code(&frame), ErrorCode::FrameTooLarge);
}

#[test]
fn sealing_refuses_a_body_over_the_type_limit() {
    let f = Fixture::new();
    let body = json!({"status": "alive", "uptime_s": 1, "queue_depth": 0, "x": "y".repeat(4096)});
    let err = f
        .signer
        .seal_value(MessageType::Heartbeat, stamp(1), body)
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::FrameTooLarge);
}

#[test]
fn malformed_frames_get_1001() {
    let f = Fixture::new();
    for bad in [
        &b""[..],
        b"not json",
        b"[]",
        b"{}",
        br#"{"v":1,"header":{},"body":{},"sig":"x"}"#,
        br#"{"v":1,"header":{"kid":7},"body":{},"sig":"x"}"#,
        br#"{"v":1,"header":{"kid":"a"},"body":{},"sig":7}"#,
        br#"{"v":1,"header":{"kid":"a"},"body":{},"sig":"x","extra":1}"#,
        br#"{"v":1,"header":{"kid":"has space"},"body":{},"sig":"x"}"#,
    ] {
        assert_eq!(
            f.code(bad),
            ErrorCode::MalformedFrame,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn non_canonical_spelling_of_a_valid_frame_is_2001() {
    let f = Fixture::new();
    let frame = f.signer.seal(stamp(1), &heartbeat()).unwrap();
    let text = String::from_utf8(frame).unwrap();
    let spaced = text.replacen(',', ", ", 1);
    assert_eq!(f.code(spaced.as_bytes()), ErrorCode::SignatureInvalid);
    let reordered: Value = serde_json::from_str(&text).unwrap();
    let pretty = serde_json::to_vec_pretty(&reordered).unwrap();
    assert_eq!(f.code(&pretty), ErrorCode::SignatureInvalid);
}

#[test]
fn unknown_and_retired_kids() {
    let f = Fixture::new();
    let stranger = EnvelopeSigner::new(key(9));
    let frame = stranger.seal(stamp(1), &heartbeat()).unwrap();
    assert_eq!(f.code(&frame), ErrorCode::UnknownKid);

    let mut keys = StaticKeys::new();
    keys.retire(f.signer.kid().clone());
    let frame = f.signer.seal(stamp(1), &heartbeat()).unwrap();
    let err = Verifier::new(&keys, &f.clock).verify(&frame).unwrap_err();
    assert_eq!(err.code(), ErrorCode::KeyRetired);
}

#[test]
fn a_key_signing_under_another_keys_kid_is_2001() {
    let f = Fixture::new();
    let impostor = EnvelopeSigner::with_kid(key(9), f.signer.kid().clone());
    let frame = impostor.seal(stamp(1), &heartbeat()).unwrap();
    assert_eq!(f.code(&frame), ErrorCode::SignatureInvalid);
}

#[test]
fn bad_signature_encodings_are_2001() {
    let f = Fixture::new();
    let env = f.heartbeat_value();
    for sig in [
        "",
        "!!!!",
        "AAAA",
        &"A".repeat(86),
        &format!("{}=", "A".repeat(86)),
    ] {
        let mut e = env.clone();
        e["sig"] = Value::String(sig.to_owned());
        let frame = canonicalize(&e).unwrap().into_bytes();
        assert_eq!(f.code(&frame), ErrorCode::SignatureInvalid, "sig {sig:?}");
    }
}

#[test]
fn signed_but_unacceptable_headers_get_their_own_codes() {
    let f = Fixture::new();
    let cases: [(&str, Value, ErrorCode); 9] = [
        ("v", json!(2), ErrorCode::UnsupportedVersion),
        ("v", json!("1"), ErrorCode::InvalidField),
        ("header.alg", json!("none"), ErrorCode::UnsupportedAlgorithm),
        (
            "header.alg",
            json!("eddsa"),
            ErrorCode::UnsupportedAlgorithm,
        ),
        (
            "header.type",
            json!("launch_missiles"),
            ErrorCode::UnknownMessageType,
        ),
        ("header.ttl", json!(0), ErrorCode::InvalidField),
        ("header.ttl", json!(MAX_TTL_S + 1), ErrorCode::InvalidField),
        (
            "header.message_id",
            json!("not-a-uuid"),
            ErrorCode::InvalidField,
        ),
        ("header.extra", json!(1), ErrorCode::InvalidField),
    ];
    for (path, value, code) in cases {
        let mut env = f.heartbeat_value();
        match path.split_once('.') {
            Some((a, b)) => env[a][b] = value.clone(),
            None => env[path] = value.clone(),
        }
        let frame = f.sign_raw(env);
        assert_eq!(f.code(&frame), code, "{path} = {value}");
    }
}

#[test]
fn ttl_and_clock_skew() {
    let f = Fixture::new();
    let frame = f.signer.seal(stamp(1), &heartbeat()).unwrap();
    f.clock.set(UnixMillis(NOW.0 + 60_000));
    f.verify(&frame).expect("valid at exactly iat + ttl");
    f.clock.set(UnixMillis(NOW.0 + 60_001));
    assert_eq!(f.code(&frame), ErrorCode::TtlExpired);
    f.clock.set(UnixMillis(NOW.0 - MAX_CLOCK_SKEW_MS));
    f.verify(&frame).expect("valid within the allowed skew");
    f.clock.set(UnixMillis(NOW.0 - MAX_CLOCK_SKEW_MS - 1));
    assert_eq!(f.code(&frame), ErrorCode::NotYetValid);
}

#[test]
fn invalid_bodies_are_1005_after_the_signature() {
    let f = Fixture::new();
    let mut env = f.heartbeat_value();
    env["body"]["status"] = json!("on fire");
    assert_eq!(f.code(&f.sign_raw(env)), ErrorCode::InvalidField);
    let bad = json!({"status": "alive", "uptime_s": 1, "queue_depth": -1});
    let frame = f
        .signer
        .seal_value(MessageType::Heartbeat, stamp(1), bad)
        .unwrap();
    assert_eq!(f.code(&frame), ErrorCode::InvalidField);
}

#[test]
fn sequence_tracker_refuses_replays_per_stream() {
    let mut t = SequenceTracker::new();
    t.accept(&"a", 5).unwrap();
    assert_eq!(
        t.accept(&"a", 5).unwrap_err().code(),
        ErrorCode::SequenceReplay
    );
    assert_eq!(
        t.accept(&"a", 4).unwrap_err().code(),
        ErrorCode::SequenceReplay
    );
    t.accept(&"b", 1).unwrap();
    t.accept(&"a", 6).unwrap();
    assert_eq!(t.last(&"a"), Some(6));
    let mut r = SequenceTracker::resume([("a", 6)]);
    assert_eq!(
        r.accept(&"a", 6).unwrap_err().code(),
        ErrorCode::SequenceReplay
    );
}

#[test]
fn signer_refuses_bad_stamps() {
    let f = Fixture::new();
    let mut s = stamp(1);
    s.ttl = 0;
    assert_eq!(
        f.signer.seal(s, &heartbeat()).unwrap_err().code(),
        ErrorCode::InvalidField
    );
    let mut s = stamp(1);
    s.seq = MAX_SAFE_INTEGER + 1;
    assert_eq!(
        f.signer.seal(s, &heartbeat()).unwrap_err().code(),
        ErrorCode::InvalidField
    );
}

// ---- properties -------------------------------------------------------------------

fn any_stamp() -> impl Strategy<Value = Stamp> {
    (
        0..=MAX_SAFE_INTEGER / 2,
        1..=MAX_TTL_S,
        0..=MAX_SAFE_INTEGER,
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
    )
        .prop_map(|(iat, ttl, seq, m, t)| Stamp {
            iat: UnixMillis(iat),
            ttl,
            seq,
            message_id: MessageId::from_random_bytes(m),
            trace_id: TraceId::from_random_bytes(t),
        })
}

/// A tiny deterministic generator for body perturbation (a test double for randomness,
/// seeded by proptest so failures shrink and replay).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Replaces scalar leaves of a body with random values of the same JSON kind. Strings
/// get arbitrary Unicode (to exercise JCS escaping and UTF-16 key order); numbers keep
/// their kind. The result may no longer pass the type's field checks; the round trip
/// then expects the same rejection after verification.
fn perturb(v: &Value, rng: &mut SplitMix) -> Value {
    match v {
        Value::String(s) => {
            if rng.below(2) == 0 {
                return v.clone();
            }
            let len = s.chars().count().max(1);
            let out: String = (0..len)
                .map(|_| char::from_u32(0x20 + rng.below(0x2_0000) as u32).unwrap_or('\u{fffd}'))
                .collect();
            Value::String(out)
        }
        Value::Number(n) if n.is_u64() => {
            let max = n
                .as_u64()
                .unwrap()
                .saturating_mul(2)
                .clamp(1, MAX_SAFE_INTEGER);
            json!(rng.below(max + 1))
        }
        Value::Number(n) => json!(n.as_f64().unwrap() * (rng.below(1000) as f64 / 1000.0)),
        Value::Array(a) => Value::Array(a.iter().map(|x| perturb(x, rng)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), perturb(x, rng)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn any_type() -> impl Strategy<Value = MessageType> {
    proptest::sample::select(MessageType::ALL)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// canonicalize → sign → verify round-trips for every message type, over random
    /// keys, header stamps and body contents.
    #[test]
    fn sign_verify_round_trip(t in any_type(), seed in any::<[u8; 32]>(), st in any_stamp(), salt in any::<u64>()) {
        let signer = EnvelopeSigner::new(SigningKey::from_bytes(&seed));
        let mut keys = StaticKeys::new();
        keys.insert(signer.kid().clone(), signer.verifying_key());
        let clock = ManualClock::new(st.iat);
        let mut rng = SplitMix(salt);
        let body = perturb(&examples::body(t), &mut rng);
        let expected = Payload::decode(t, &body);
        let frame = match signer.seal_value(t, st.clone(), body) {
            Ok(f) => f,
            Err(e) => { prop_assert_eq!(e.code(), ErrorCode::FrameTooLarge); return Ok(()); }
        };
        let got = Verifier::new(&keys, &clock).verify(&frame);
        match expected {
            Ok(payload) => {
                let v = got.unwrap();
                prop_assert_eq!(v.payload, payload);
                prop_assert_eq!(v.header.seq, st.seq);
                prop_assert_eq!(v.header.iat, st.iat);
                prop_assert_eq!(v.header.ttl, st.ttl);
                prop_assert_eq!(&v.header.message_id, &st.message_id);
                prop_assert_eq!(&v.header.trace_id, &st.trace_id);
                prop_assert_eq!(&v.header.kid, signer.kid());
            }
            Err(e) => prop_assert_eq!(got.unwrap_err().code(), e.code()),
        }
    }

    /// Any single-byte change to a signed envelope is rejected. When the changed frame is
    /// still a well-formed envelope naming the signer's key — the case an attacker needs —
    /// the answer is exactly 2001. Otherwise it fails earlier: not JSON / not an envelope
    /// (1001), or the kid itself was changed to one nobody holds (2002).
    #[test]
    fn any_single_byte_change_fails(t in any_type(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let f = Fixture::new();
        let frame = f.signer.seal_value(t, stamp(3), examples::body(t)).unwrap();
        let i = pos.index(frame.len());
        prop_assume!(frame[i] != byte);
        let mut bad = frame.clone();
        bad[i] = byte;
        let code = f.code(&bad);
        let parsed = RawEnvelope::parse(&bad);
        match parsed {
            Ok(raw) if &raw.kid == f.signer.kid() => prop_assert_eq!(code, ErrorCode::SignatureInvalid),
            Ok(_) => prop_assert_eq!(code, ErrorCode::UnknownKid),
            Err(e) => {
                prop_assert_eq!(code, e.code());
                prop_assert!(matches!(code, ErrorCode::MalformedFrame | ErrorCode::SignatureInvalid), "{:?}", code);
            }
        }
    }

    /// The verifier never panics on arbitrary bytes, and never accepts them.
    #[test]
    fn arbitrary_bytes_never_verify(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let f = Fixture::new();
        prop_assert!(f.verify(&bytes).is_err());
    }

    /// Arbitrary JSON shaped like an envelope never panics the verifier.
    #[test]
    fn arbitrary_envelope_shapes_never_panic(v in crate::tests::arb_json(), kid in "[a-f0-9]{16}") {
        let f = Fixture::new();
        let env = json!({"v": 1, "header": {"kid": kid, "type": "heartbeat"}, "body": v, "sig": "AAAA"});
        if let Ok(s) = canonicalize(&env) {
            prop_assert!(f.verify(s.as_bytes()).is_err());
        }
    }
}

#[test]
fn every_position_of_a_frame_is_covered_by_the_signature() {
    // Exhaustive over one frame: every position, several replacement bytes. Every change
    // is rejected; a change that leaves a well-formed envelope naming the signer's key is
    // exactly 2001 (checked in the proptest above); the rest are 1001 or 2002.
    let f = Fixture::new();
    let frame = f.signer.seal(stamp(3), &heartbeat()).unwrap();
    let (mut sig, mut other) = (0usize, 0usize);
    for i in 0..frame.len() {
        for b in [b'0', b'7', b'a', b'f', b'Z', b'_', b'-', b'"', b' ', b'}'] {
            if frame[i] == b {
                continue;
            }
            let mut bad = frame.clone();
            bad[i] = b;
            match f.code(&bad) {
                ErrorCode::SignatureInvalid => sig += 1,
                ErrorCode::MalformedFrame | ErrorCode::UnknownKid => other += 1,
                c => panic!("byte {i} -> {b}: unexpected {c:?}"),
            }
        }
    }
    assert!(sig > 0 && other > 0, "2001: {sig}, other: {other}");
    println!("single-byte changes: {sig} rejected with 2001, {other} with 1001/2002");
}
