//! Cross-module tests: hostile input to every decoder never panics.

// Test code: overflow or truncation here is a failed test, not a crashed service.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use proptest::prelude::*;
use serde_json::Value;

use crate::canonical::canonicalize;
use crate::error::{ErrorBody, ErrorCode};
use crate::helper::Opcode;
use crate::ids::{KeyId, MessageId, TraceId};
use crate::messages::discovery::{DiscoveryConfirm, PairConfirm, PairRequest, PairResponse};
use crate::messages::{MessageType, Payload};
use crate::validate::Validate;

/// Arbitrary JSON values, including awkward strings, large and fractional numbers and
/// nesting past the canonicalizer's depth limit.
pub(crate) fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        "[a-z_]{1,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(40, 256, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Equality that treats numbers by value (canonicalization may turn `1.0` into `1`).
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn every_decoder(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        for &t in MessageType::ALL {
            let _ = Payload::decode(t, &v);
        }
        for &op in Opcode::ALL {
            let _ = op.parse_params(&v);
        }
        let _ = canonicalize(&v);
        let _ = crate::messages::notify::PolicyUpdate::hash_bundle(&v);
    }
    if let Ok(m) = serde_json::from_slice::<DiscoveryConfirm>(bytes) {
        let _ = m.validate();
    }
    if let Ok(m) = serde_json::from_slice::<PairRequest>(bytes) {
        let _ = m.validate();
    }
    if let Ok(m) = serde_json::from_slice::<PairResponse>(bytes) {
        let _ = m.validate();
    }
    if let Ok(m) = serde_json::from_slice::<PairConfirm>(bytes) {
        let _ = m.validate();
    }
    let _ = serde_json::from_slice::<ErrorBody>(bytes);
    let _ = serde_json::from_slice::<ErrorCode>(bytes);
    let _ = serde_json::from_slice::<Opcode>(bytes);
    let _ = MessageId::parse(&text);
    let _ = TraceId::parse(&text);
    let _ = KeyId::parse(&text);
    let _ = MessageType::from_name(&text);
    let _ = ErrorCode::from_name(&text);
    let _ = crate::validate::b64url_decode(&text);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// Arbitrary bytes into every decoder in the crate.
    #[test]
    fn arbitrary_bytes_never_panic_any_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        every_decoder(&bytes);
    }

    /// Arbitrary JSON (so the typed decoders get past the parser) into every decoder.
    #[test]
    fn arbitrary_json_never_panics_any_decoder(v in arb_json()) {
        every_decoder(serde_json::to_string(&v).unwrap().as_bytes());
    }

    /// Example bodies with one field replaced by arbitrary JSON still never panic.
    #[test]
    fn example_bodies_with_a_hostile_field(t in proptest::sample::select(MessageType::ALL), idx in any::<prop::sample::Index>(), v in arb_json()) {
        let mut body = crate::examples::body(t);
        if let Value::Object(m) = &mut body {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = &keys[idx.index(keys.len())];
            m.insert(k.clone(), v);
        }
        let _ = Payload::decode(t, &body);
    }
}

#[test]
fn every_example_decodes_as_its_type() {
    for &t in MessageType::ALL {
        let p = Payload::decode(t, &crate::examples::body(t));
        assert!(p.is_ok(), "{}: {:?}", t.name(), p.err());
    }
}

/// Every `<!-- example: type -->` block in docs/protocol.md is exactly the example body of
/// that type and decodes: what a client author copies from the document is known good.
#[test]
fn protocol_doc_examples_match_and_decode() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    let doc = std::fs::read_to_string(path).expect("docs/protocol.md exists");
    let mut seen = std::collections::HashSet::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- example: ")
            .and_then(|r| r.strip_suffix(" -->"))
        else {
            continue;
        };
        let t = MessageType::from_name(name)
            .unwrap_or_else(|| panic!("doc example for unknown type {name}"));
        assert_eq!(
            lines.next().map(str::trim),
            Some("```json"),
            "{name}: a json block follows"
        );
        let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        let v: Value =
            serde_json::from_str(&block.join("\n")).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            v,
            crate::examples::body(t),
            "{name}: doc example differs from examples::body"
        );
        Payload::decode(t, &v).unwrap_or_else(|e| panic!("{name}: {e}"));
        seen.insert(t);
    }
    assert_eq!(
        seen.len(),
        MessageType::ALL.len(),
        "every message type has an example in the doc"
    );
}

#[test]
fn pairing_code_is_six_digits_in_two_groups_and_binds_every_input() {
    use crate::messages::discovery::pairing_code;
    let c = pairing_code("tok", "pub", "owner");
    assert_eq!(c.len(), 7);
    assert_eq!(c.as_bytes()[3], b' ');
    assert!(c.bytes().filter(|b| *b != b' ').all(|b| b.is_ascii_digit()));
    assert_eq!(c, pairing_code("tok", "pub", "owner"), "deterministic");
    assert_ne!(c, pairing_code("tok2", "pub", "owner"));
    assert_ne!(c, pairing_code("tok", "pub2", "owner"));
    assert_ne!(c, pairing_code("tok", "pub", "owner2"));
    // Field boundaries are delimited: moving bytes between fields changes the code.
    assert_ne!(pairing_code("ab", "c", "d"), pairing_code("a", "bc", "d"));
}
