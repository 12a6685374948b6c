// Test code: overflow or truncation here is a failed test, not a crashed service.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn canon(text: &str) -> String {
    canonicalize(&serde_json::from_str::<Value>(text).unwrap()).unwrap()
}

#[test]
fn rfc8785_main_example() {
    // RFC 8785 section 3.2.2 / 3.2.3.
    let input = r#"{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"#;
    assert_eq!(
        canon(input),
        r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
    );
}

#[test]
fn rfc8785_property_sorting_by_utf16_code_units() {
    // RFC 8785 section 3.2.3: sorting on UTF-16 code units puts U+1F600 (a surrogate
    // pair, 0xD83D…) before U+FB33.
    let input = r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#;
    assert_eq!(
        canon(input),
        "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
    );
}

#[test]
fn rfc8785_number_serialization() {
    // RFC 8785 appendix B (the values representable without exceeding 2^53 as integers).
    for (input, want) in [
        ("0", "0"),
        ("-0.0", "0"),
        ("5e-324", "5e-324"),
        ("1.7976931348623157e308", "1.7976931348623157e+308"),
        ("9007199254740991", "9007199254740991"),
        ("-9007199254740991", "-9007199254740991"),
        ("1e21", "1e+21"),
        ("0.000001", "0.000001"),
        ("0.0000001", "1e-7"),
        ("4.5", "4.5"),
        ("-1.5", "-1.5"),
    ] {
        assert_eq!(canon(input), want, "{input}");
    }
    // Doubles in [2^53, 1e21) print as plain digits (RFC 8785 gives 1e20 →
    // "100000000000000000000"), which a receiver reads back as an out-of-range integer:
    // Tether refuses them at signing time instead.
    for input in [
        "1e20",
        "-1e20",
        "295147905179352830000.0",
        "9007199254740992.0",
    ] {
        let v: Value = serde_json::from_str(input).unwrap();
        assert!(
            matches!(canonicalize(&v), Err(CanonicalError::UnsafeInteger(_))),
            "{input}"
        );
    }
}

#[test]
fn control_characters_use_lowercase_short_escapes() {
    let v = json!("\u{0}\u{8}\t\n\u{c}\r\u{1f}\u{7f}");
    assert_eq!(
        canonicalize(&v).unwrap(),
        "\"\\u0000\\b\\t\\n\\f\\r\\u001f\u{7f}\""
    );
}

#[test]
fn unsafe_integers_and_deep_nesting_are_refused() {
    let big: Value = serde_json::from_str("9007199254740992").unwrap();
    assert!(matches!(
        canonicalize(&big),
        Err(CanonicalError::UnsafeInteger(_))
    ));
    let neg: Value = serde_json::from_str("-9007199254740992").unwrap();
    assert!(matches!(
        canonicalize(&neg),
        Err(CanonicalError::UnsafeInteger(_))
    ));
    let mut v = json!(1);
    for _ in 0..MAX_DEPTH {
        v = json!([v]);
    }
    assert!(canonicalize(&v).is_ok());
    v = json!({ "a": v });
    assert_eq!(canonicalize(&v), Err(CanonicalError::TooDeep));
    assert_eq!(
        CanonicalError::TooDeep.code(),
        ErrorCode::NotCanonicalizable
    );
}

proptest! {
    /// Canonical output is valid JSON that parses back to the same value, and is a fixed
    /// point: canonicalizing it again changes nothing.
    #[test]
    fn canonical_form_is_a_fixed_point(v in crate::tests::arb_json()) {
        if let Ok(c) = canonicalize(&v) {
            let back: Value = serde_json::from_str(&c).unwrap();
            prop_assert_eq!(&canonicalize(&back).unwrap(), &c);
            prop_assert!(crate::tests::json_eq(&back, &v));
        }
    }

    /// Key order and insignificant whitespace in the input never change the output.
    #[test]
    fn pretty_and_compact_inputs_agree(v in crate::tests::arb_json()) {
        if let Ok(c) = canonicalize(&v) {
            let pretty = serde_json::to_string_pretty(&v).unwrap();
            prop_assert_eq!(canon(&pretty), c);
        }
    }
}
