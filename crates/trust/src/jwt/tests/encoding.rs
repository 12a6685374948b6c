//! Rejections decided by the encoding: size, truncation, any changed character, padding
//! and non-object JSON.

#![allow(clippy::arithmetic_side_effects)]

use super::*;

// ---------- encoding and size ----------

#[test]
fn an_oversized_token_is_rejected_before_parsing() {
    let k = kit();
    // Genuinely signed by our ring, but too large.
    let mut claims = k.claims_json(900);
    claims["ext"] = json!({"pad": "x".repeat(MAX_TOKEN_BYTES)});
    let token = k.signed_by_ring(&k.std_header(), &claims);
    assert!(token.len() > MAX_TOKEN_BYTES);
    let r = rejection(k.check(&token, TokenType::Access));
    assert_eq!(
        r,
        TokenRejection::TooLarge {
            len: token.len(),
            limit: MAX_TOKEN_BYTES
        }
    );
    // Garbage of the same size gets the same answer: nothing was parsed.
    let junk = "!".repeat(MAX_TOKEN_BYTES + 1);
    assert!(matches!(
        rejection(k.check(&junk, TokenType::Access)),
        TokenRejection::TooLarge { .. }
    ));
    // The issuer will not make one either.
    let mut c = k.issuer.claims(TokenType::Access, "u", AUD, T0).unwrap();
    c.ext
        .insert("pad".into(), json!("x".repeat(MAX_TOKEN_BYTES)));
    assert!(matches!(
        k.issuer.issue(&c),
        Err(TrustError::InvalidInput { .. })
    ));
}

#[test]
fn a_truncated_signature_is_rejected() {
    let k = kit();
    let token = k.token(TokenType::Access);
    let sig_len = token.rsplit('.').next().unwrap().len();
    assert_eq!(sig_len, 86);
    for cut in [1, 2, 3, 4, 10, 43, 85] {
        let t = &token[..token.len() - cut];
        let r = rejection(k.check(t, TokenType::Access));
        assert_eq!(r, TokenRejection::BadSignature, "cut {cut}");
    }
    let r = rejection(k.check(&token[..token.len() - sig_len], TokenType::Access));
    assert_eq!(r, TokenRejection::BadSignature, "empty signature");
    // Extended, padded or re-encoded signatures are refused as well.
    for t in [
        format!("{token}A"),
        format!("{token}=="),
        format!("{token}.x"),
    ] {
        assert!(k.check(&t, TokenType::Access).is_err(), "{t}");
    }
}

#[test]
fn any_single_changed_character_is_rejected() {
    let k = kit();
    let token = k.token(TokenType::Access);
    let bytes = token.as_bytes();
    for i in 0..bytes.len() {
        let other = if bytes[i] == b'A' { b'B' } else { b'A' };
        // Every position gets a different base64 character; every 5th also a separator
        // or padding (each check verifies a signature, which is slow in debug builds).
        let extra: &[u8] = if i % 5 == 0 { b".=" } else { b"" };
        for &replacement in std::iter::once(&other).chain(extra) {
            if bytes[i] == replacement {
                continue;
            }
            let mut t = bytes.to_vec();
            t[i] = replacement;
            let t = String::from_utf8(t).unwrap();
            assert!(
                k.check(&t, TokenType::Access).is_err(),
                "position {i} -> {}",
                replacement as char
            );
        }
    }
}

#[test]
fn padding_whitespace_and_non_objects_are_malformed() {
    let k = kit();
    let token = k.token(TokenType::Access);
    let (h, rest) = token.split_once('.').unwrap();
    for bad in [
        format!("{h}=.{rest}"),
        format!(" {token}"),
        format!("{h}\n.{rest}"),
    ] {
        assert!(matches!(
            rejection(k.check(&bad, TokenType::Access)),
            TokenRejection::Malformed(_)
        ));
    }
    // In the signed part after the header, any change breaks the signature first.
    assert!(
        k.check(&format!("{h}.\n{rest}"), TokenType::Access)
            .is_err()
    );
    for header in [
        json!(["EdDSA", "JWT", k.kid()]),
        json!("EdDSA"),
        json!(null),
    ] {
        let t = k.signed_by_ring(&header, &k.claims_json(900));
        assert!(matches!(
            rejection(k.check(&t, TokenType::Access)),
            TokenRejection::Malformed(_)
        ));
    }
    for junk in ["", ".", "..", "...", "a.b.c", "a.b.c.d"] {
        assert!(matches!(
            rejection(k.check(junk, TokenType::Access)),
            TokenRejection::Malformed(_)
        ));
    }
}
