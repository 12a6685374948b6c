//! Rejections decided by the header: `alg`, `typ`, `crit`, `kid`, and the key-source
//! members that are never used (`jwk`, `x5c`, `jku`, `x5u`).

#![allow(clippy::arithmetic_side_effects)]

use super::*;

// ---------- alg ----------

#[test]
fn alg_none_in_any_letter_case_is_rejected_with_and_without_a_signature() {
    let k = kit();
    let claims = k.claims_json(900);
    for alg in ["none", "NONE", "nOnE", "None", "nonE"] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": k.kid()});
        let unsigned = format!("{}.{}", enc_json(&header), enc_json(&claims));
        // Empty signature part.
        let r = rejection(k.check(&format!("{unsigned}."), TokenType::Access));
        assert_eq!(r, TokenRejection::AlgNotAllowed(alg.into()), "{alg}");
        // No signature part at all.
        let r = rejection(k.check(&unsigned, TokenType::Access));
        assert!(matches!(r, TokenRejection::Malformed(_)), "{alg}: {r:?}");
        // A real signature by our key does not make `none` acceptable.
        let signed = k.signed_by_ring(&header, &claims);
        let r = rejection(k.check(&signed, TokenType::Access));
        assert_eq!(r, TokenRejection::AlgNotAllowed(alg.into()), "{alg}");
    }
}

#[test]
fn hmac_test_vector() {
    // RFC 4231 test case 2, so the attack below uses a correct HMAC.
    let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(
        hex::encode(mac),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn hs256_token_signed_with_the_public_key_as_hmac_secret_is_rejected() {
    let k = kit();
    let public = k
        .ring
        .read()
        .verifying_key(&KeyId::parse(&k.kid()).unwrap(), T0)
        .unwrap();
    let jwks_x = k.ring.jwks(T0).keys[0].x.clone();
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": k.kid()});
    // The classic confusion: the verifier's public key bytes (raw, or as published in the
    // JWKS) used as the HMAC secret.
    for secret in [public.as_bytes().to_vec(), jwks_x.into_bytes()] {
        let token = forge(&header, &k.claims_json(900), |m| {
            hmac_sha256(&secret, m).to_vec()
        });
        let r = rejection(k.check(&token, TokenType::Access));
        assert_eq!(r, TokenRejection::AlgNotAllowed("HS256".into()));
    }
}

#[test]
fn alg_must_be_exactly_eddsa() {
    let k = kit();
    for alg in [
        json!("eddsa"),
        json!("EDDSA"),
        json!("Ed25519"),
        json!("ES256"),
        json!(""),
    ] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": k.kid()});
        let token = k.signed_by_ring(&header, &k.claims_json(900));
        let r = rejection(k.check(&token, TokenType::Access));
        assert!(
            matches!(r, TokenRejection::AlgNotAllowed(_)),
            "{alg}: {r:?}"
        );
    }
    // Missing, or not a string.
    for header in [
        json!({"typ": "JWT", "kid": k.kid()}),
        json!({"alg": 1, "typ": "JWT"}),
    ] {
        let token = k.signed_by_ring(&header, &k.claims_json(900));
        assert!(k.check(&token, TokenType::Access).is_err());
    }
    // Repeated alg, whichever comes first.
    let body = format!(
        "{{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"{}\",\"alg\":\"none\"}}",
        k.kid()
    );
    let input = format!(
        "{}.{}",
        b64::encode(body.as_bytes()),
        enc_json(&k.claims_json(900))
    );
    let sig = k.ring.read().sign(input.as_bytes()).1.to_bytes();
    let token = format!("{input}.{}", b64::encode(&sig));
    assert!(matches!(
        rejection(k.check(&token, TokenType::Access)),
        TokenRejection::Malformed(_)
    ));
}

// ---------- header policy ----------

#[test]
fn typ_must_be_jwt_and_crit_is_refused() {
    let k = kit();
    let claims = k.claims_json(900);
    for typ in [json!(null), json!("jwt"), json!("at+jwt"), json!("JOSE")] {
        let mut h = k.std_header();
        h["typ"] = typ.clone();
        let r = rejection(k.check(&k.signed_by_ring(&h, &claims), TokenType::Access));
        assert_eq!(r, TokenRejection::TypNotJwt, "{typ}");
    }
    for crit in [json!(["exp"]), json!([]), json!(null)] {
        let mut h = k.std_header();
        h["crit"] = crit.clone();
        let r = rejection(k.check(&k.signed_by_ring(&h, &claims), TokenType::Access));
        assert_eq!(r, TokenRejection::CritPresent, "{crit}");
    }
    let h = json!({"alg": "EdDSA", "typ": "JWT"});
    let r = rejection(k.check(&k.signed_by_ring(&h, &claims), TokenType::Access));
    assert_eq!(r, TokenRejection::MissingKid);
}

#[test]
fn unknown_kid_is_rejected() {
    let k = kit();
    // An attacker's own key, named by its own (well-formed) kid.
    let attacker = SigningKey::from_bytes(&[7u8; 32]);
    let attacker_kid = KeyId::for_ed25519(attacker.verifying_key().as_bytes());
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": attacker_kid.as_str()});
    let token = forge(&header, &k.claims_json(900), |m| {
        attacker.sign(m).to_bytes().to_vec()
    });
    let err = k.check(&token, TokenType::Access).unwrap_err();
    assert!(
        matches!(&err, TrustError::UnknownKid(kid) if kid == attacker_kid.as_str()),
        "{err:?}"
    );
    assert_eq!(err.code().number(), 2002);
    // A kid that is not even well-formed is unknown too.
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": "../../etc/passwd"});
    let token = forge(&header, &k.claims_json(900), |m| {
        attacker.sign(m).to_bytes().to_vec()
    });
    assert!(matches!(
        k.check(&token, TokenType::Access),
        Err(TrustError::UnknownKid(_))
    ));
}

#[test]
fn embedded_jwk_naming_an_attacker_key_is_ignored_and_the_token_rejected() {
    let k = kit();
    let attacker = SigningKey::from_bytes(&[9u8; 32]);
    let attacker_kid = KeyId::for_ed25519(attacker.verifying_key().as_bytes());
    let jwk = crate::jwt::Jwk::ed25519(&attacker_kid, &attacker.verifying_key());
    let sign = |m: &[u8]| attacker.sign(m).to_bytes().to_vec();
    // Advertised under its own kid: the key is not in our ring.
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": attacker_kid.as_str(), "jwk": jwk});
    let token = forge(&header, &k.claims_json(900), sign);
    assert!(matches!(
        k.check(&token, TokenType::Access),
        Err(TrustError::UnknownKid(_))
    ));
    // Advertised under our kid: our key is used, and the signature does not verify.
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": k.kid(), "jwk": jwk});
    let token = forge(&header, &k.claims_json(900), sign);
    assert_eq!(
        rejection(k.check(&token, TokenType::Access)),
        TokenRejection::BadSignature
    );
    // Same with x5c carrying "a certificate" for the attacker key.
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": k.kid(),
                        "x5c": [b64::encode(attacker.verifying_key().as_bytes())]});
    let token = forge(&header, &k.claims_json(900), sign);
    assert_eq!(
        rejection(k.check(&token, TokenType::Access)),
        TokenRejection::BadSignature
    );
}

#[test]
fn jku_and_x5u_headers_are_never_fetched_and_our_ring_decides() {
    let k = kit();
    // A listener the token points at: if anything fetched the URL, it would connect here.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());

    let mut header = k.std_header();
    header["jku"] = json!(url);
    header["x5u"] = json!(url);
    // Legit token (signed by our ring) with the URLs: verifies, against our ring only.
    let legit = k.signed_by_ring(&header, &k.claims_json(900));
    k.check(&legit, TokenType::Access).unwrap();

    // Attacker token pointing at "their" JWKS: rejected, and nothing fetched either.
    let attacker = SigningKey::from_bytes(&[3u8; 32]);
    let attacker_kid = KeyId::for_ed25519(attacker.verifying_key().as_bytes());
    header["kid"] = json!(attacker_kid.as_str());
    let forged = forge(&header, &k.claims_json(900), |m| {
        attacker.sign(m).to_bytes().to_vec()
    });
    assert!(matches!(
        k.check(&forged, TokenType::Access),
        Err(TrustError::UnknownKid(_))
    ));

    match listener.accept() {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        other => panic!("something connected to the jku/x5u URL: {other:?}"),
    }
}
