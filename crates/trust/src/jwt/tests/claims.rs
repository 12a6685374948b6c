//! Rejections decided by the claims (time, audience, type, issuer, shape), and the
//! configuration checks that keep tokens from outliving keys.

#![allow(clippy::arithmetic_side_effects)]

use super::*;

// ---------- time ----------

#[test]
fn exp_past_the_leeway_is_expired_and_inside_the_leeway_passes() {
    let k = kit();
    let token = k.token(TokenType::Access);
    let exp = T0.saturating_add(Duration::from_secs(900));
    // At exp and up to just under 60 s after it: accepted (leeway).
    for at in [
        exp,
        exp.saturating_add(Duration::from_secs(59)),
        UnixMillis(exp.0 + 59_999),
    ] {
        k.validator
            .validate(&token, AUD, TokenType::Access, at)
            .unwrap();
    }
    for at in [
        exp.saturating_add(Duration::from_secs(60)),
        exp.saturating_add(DAY),
    ] {
        let err = k
            .validator
            .validate(&token, AUD, TokenType::Access, at)
            .unwrap_err();
        assert!(matches!(err, TrustError::TokenExpired { exp: e, .. } if e == exp.as_secs()));
        assert_eq!(err.code().number(), 3002);
    }
}

#[test]
fn nbf_in_the_future_is_rejected() {
    let k = kit();
    let now = k.now().as_secs();
    let mut claims = k.claims_json(900);
    claims["nbf"] = json!(now + 120);
    claims["iat"] = json!(now);
    let token = k.signed_by_ring(&k.std_header(), &claims);
    assert_eq!(
        rejection(k.check(&token, TokenType::Access)),
        TokenRejection::NotYetValid { nbf: now + 120 }
    );
    // Within the leeway it is accepted.
    claims["nbf"] = json!(now + 30);
    let token = k.signed_by_ring(&k.std_header(), &claims);
    k.check(&token, TokenType::Access).unwrap();
    // iat in the future too.
    claims["iat"] = json!(now + 120);
    claims["nbf"] = json!(now + 120);
    let token = k.signed_by_ring(&k.std_header(), &claims);
    assert!(matches!(
        rejection(k.check(&token, TokenType::Access)),
        TokenRejection::NotYetValid { .. }
    ));
    // Inconsistent times.
    let mut claims = k.claims_json(900);
    claims["exp"] = json!(now);
    let token = k.signed_by_ring(&k.std_header(), &claims);
    assert_eq!(
        rejection(k.check(&token, TokenType::Access)),
        TokenRejection::BadTimes
    );
}

// ---------- claims ----------

#[test]
fn wrong_audience_is_rejected() {
    let k = kit();
    let token = k.token(TokenType::Access);
    for aud in ["tether-gateway", "", "TETHER-API", "tether-api "] {
        let r = rejection(k.validator.validate(&token, aud, TokenType::Access, T0));
        assert_eq!(r, TokenRejection::WrongAudience, "{aud:?}");
    }
    // An array audience is not our format.
    let mut claims = k.claims_json(900);
    claims["aud"] = json!([AUD]);
    let token = k.signed_by_ring(&k.std_header(), &claims);
    assert!(matches!(
        rejection(k.check(&token, TokenType::Access)),
        TokenRejection::Malformed(_)
    ));
}

#[test]
fn wrong_token_type_is_rejected() {
    let k = kit();
    let all = [
        TokenType::Access,
        TokenType::Refresh,
        TokenType::Pair,
        TokenType::StepUp,
    ];
    for issued in all {
        let token = k.token(issued);
        for expected in all {
            let r = k.check(&token, expected);
            if issued == expected {
                assert_eq!(r.unwrap().token_type, issued);
            } else {
                assert_eq!(
                    rejection(r),
                    TokenRejection::WrongTokenType {
                        expected: expected.as_str(),
                        got: issued.as_str()
                    }
                );
            }
        }
    }
    // An unknown kind is not coerced into a known one.
    let mut claims = k.claims_json(900);
    claims["token_type"] = json!("admin");
    let token = k.signed_by_ring(&k.std_header(), &claims);
    assert!(matches!(
        rejection(k.check(&token, TokenType::Access)),
        TokenRejection::Malformed(_)
    ));
}

#[test]
fn wrong_issuer_and_malformed_claims_are_rejected() {
    let k = kit();
    let mut claims = k.claims_json(900);
    claims["iss"] = json!("https://evil.example");
    let token = k.signed_by_ring(&k.std_header(), &claims);
    assert_eq!(
        rejection(k.check(&token, TokenType::Access)),
        TokenRejection::WrongIssuer
    );

    let base = k.claims_json(900);
    let mut cases = Vec::new();
    for field in [
        "iss",
        "sub",
        "aud",
        "exp",
        "nbf",
        "iat",
        "jti",
        "token_type",
    ] {
        let mut c = base.clone();
        c.as_object_mut().unwrap().remove(field);
        cases.push(c);
    }
    let mut float_exp = base.clone();
    float_exp["exp"] = json!(1.9e9);
    cases.push(float_exp);
    let mut neg = base.clone();
    neg["nbf"] = json!(-1);
    cases.push(neg);
    cases.push(json!([1, 2, 3]));
    cases.push(json!("claims"));
    for c in cases {
        let token = k.signed_by_ring(&k.std_header(), &c);
        let r = rejection(k.check(&token, TokenType::Access));
        assert!(matches!(r, TokenRejection::Malformed(_)), "{c}: {r:?}");
    }
}

// ---------- configuration ----------

#[test]
fn configurations_that_would_let_tokens_outlive_keys_are_refused() {
    let ring = SharedKeyRing::new(
        KeyRing::generate(
            KeyRingConfig {
                rotation_interval: DAY,
                overlap: Duration::from_secs(3600),
            },
            T0,
        )
        .unwrap(),
    );
    // Default refresh lifetime (7 days) > 1 hour overlap.
    let r = Issuer::new(ring.clone(), IssuerConfig::new(ISS));
    assert!(matches!(r, Err(TrustError::InvalidConfig(_))), "{r:?}");
    assert!(
        KeyRing::generate(
            KeyRingConfig {
                rotation_interval: Duration::ZERO,
                overlap: DAY
            },
            T0
        )
        .is_err()
    );
    let mut vc = ValidatorConfig::new(ISS);
    vc.leeway = Duration::from_secs(3600);
    assert!(Validator::new(ring.clone(), vc).is_err());
    let mut vc = ValidatorConfig::new(ISS);
    vc.max_token_bytes = MAX_TOKEN_BYTES + 1;
    assert!(Validator::new(ring, vc).is_err());
    // Defaults: overlap (8 d) ≥ the longest lifetime (7 d refresh).
    let d = KeyRingConfig::default();
    assert!(d.overlap >= TokenLifetimes::default().refresh);
}

#[test]
fn the_issuer_refuses_claims_it_would_not_accept() {
    let k = kit();
    let good = k.issuer.claims(TokenType::Access, "u", AUD, T0).unwrap();
    let mut wrong_iss = good.clone();
    wrong_iss.iss = "other".into();
    let mut too_long = good.clone();
    too_long.exp = good.iat + 901;
    let mut backwards = good.clone();
    backwards.exp = good.iat;
    let mut empty_sub = good.clone();
    empty_sub.sub.clear();
    for c in [wrong_iss, too_long, backwards, empty_sub] {
        assert!(
            matches!(k.issuer.issue(&c), Err(TrustError::InvalidInput { .. })),
            "{c:?}"
        );
    }
}
