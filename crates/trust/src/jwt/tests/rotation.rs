//! The key ring: rotation, overlap, retirement, JWKS and persistence.

#![allow(clippy::arithmetic_side_effects)]

use super::*;

// ---------- keys and rotation ----------

#[test]
fn a_kid_rotated_out_after_its_overlap_window_is_rejected_as_retired() {
    let k = kit();
    let old = k.token(TokenType::Access);
    let old_kid = k.kid();
    let rotation = T0.saturating_add(7 * DAY);
    assert!(k.ring.rotate_if_due(rotation).unwrap());
    // Past the 8-day overlap window after the rotation.
    let after = rotation.saturating_add(8 * DAY);
    let err = k
        .validator
        .validate(&old, AUD, TokenType::Access, after)
        .unwrap_err();
    assert!(
        matches!(&err, TrustError::KeyRetired(kid) if *kid == old_kid),
        "{err:?}"
    );
    assert_eq!(err.code().number(), 2007);
    // Still "retired" (not "unknown") once the ring has pruned the key.
    k.ring.rotate_if_due(after).unwrap();
    assert_eq!(
        k.ring.read().state(&KeyId::parse(&old_kid).unwrap(), after),
        KeyState::Retired
    );
    let err = k
        .validator
        .validate(&old, AUD, TokenType::Access, after)
        .unwrap_err();
    assert!(matches!(err, TrustError::KeyRetired(_)), "{err:?}");
}

#[test]
fn rotation_new_key_verifies_during_and_after_old_key_only_during_overlap() {
    let k = kit();
    // A refresh token (7 days) signed by the first key, one day before rotation.
    k.clock.set(T0.saturating_add(6 * DAY));
    let old_token = k.token(TokenType::Refresh);
    let old_kid = KeyId::parse(&k.kid()).unwrap();

    // Not due yet.
    assert!(!k.ring.rotate_if_due(k.now()).unwrap());
    k.clock.set(T0.saturating_add(7 * DAY));
    assert!(k.ring.rotate_if_due(k.now()).unwrap());
    let new_kid = KeyId::parse(&k.kid()).unwrap();
    assert_ne!(old_kid, new_kid);
    let new_token = k.token(TokenType::Refresh);

    // During the overlap: both verify.
    k.check(&old_token, TokenType::Refresh).unwrap();
    k.check(&new_token, TokenType::Refresh).unwrap();
    k.clock.advance(5 * DAY);
    k.ring.rotate_if_due(k.now()).unwrap();
    k.check(&old_token, TokenType::Refresh).unwrap();
    k.check(&new_token, TokenType::Refresh).unwrap();
    let until = T0.saturating_add(15 * DAY);
    assert_eq!(
        k.ring.read().state(&old_kid, k.now()),
        KeyState::Verifying { until }
    );

    // Overlap ends 8 days after the rotation (day 15): the old kid is retired. (With the
    // default windows the token itself expired at day 13: no token outlives its key. The
    // next test moves the windows so the key's retirement is what decides.)
    k.clock.set(until);
    k.ring.rotate_if_due(k.now()).unwrap();
    assert!(matches!(
        k.check(&old_token, TokenType::Refresh),
        Err(TrustError::KeyRetired(_))
    ));
    // The new key keeps verifying after its own replacement (day 14), within overlap.
    assert_ne!(KeyId::parse(&k.kid()).unwrap(), new_kid);
    assert!(matches!(
        k.ring.read().state(&new_kid, k.now()),
        KeyState::Verifying { .. }
    ));
    let later_token = k.token(TokenType::Access);
    k.check(&later_token, TokenType::Access).unwrap();
}

#[test]
fn an_old_key_verifies_only_during_the_overlap_window_exactly() {
    let k = kit();
    // Short, explicit windows so the boundary is easy to read.
    let config = KeyRingConfig {
        rotation_interval: Duration::from_secs(3600),
        overlap: Duration::from_secs(7200),
    };
    let ring = SharedKeyRing::new(KeyRing::generate(config, T0).unwrap());
    let lifetimes = TokenLifetimes {
        access: Duration::from_secs(900),
        refresh: Duration::from_secs(7200),
        pair: Duration::from_secs(600),
        step_up: Duration::from_secs(300),
    };
    let issuer = Issuer::new(
        ring.clone(),
        IssuerConfig {
            issuer: ISS.into(),
            lifetimes,
        },
    )
    .unwrap();
    let validator = Validator::new(ring.clone(), ValidatorConfig::new(ISS)).unwrap();
    let rotated_at = T0.saturating_add(Duration::from_secs(3600));
    let c = issuer
        .claims(
            TokenType::Refresh,
            "u",
            AUD,
            rotated_at.saturating_sub(Duration::from_secs(1)),
        )
        .unwrap();
    let token = issuer.issue(&c).unwrap();
    assert!(ring.rotate_if_due(rotated_at).unwrap());
    let end = rotated_at.saturating_add(Duration::from_secs(7200));
    let last_ms = UnixMillis(end.0 - 1);
    // Token expiry (rotated_at - 1 s + 7200 s + leeway) is after `end`, so only the key
    // decides here.
    validator
        .validate(&token, AUD, TokenType::Refresh, last_ms)
        .unwrap();
    assert!(matches!(
        validator.validate(&token, AUD, TokenType::Refresh, end),
        Err(TrustError::KeyRetired(_))
    ));
    drop(k);
}

#[test]
fn jwks_lists_exactly_the_verifying_keys() {
    let k = kit();
    let jwks = k.ring.jwks(T0);
    assert_eq!(jwks.keys.len(), 1);
    let doc: Value = serde_json::from_str(&jwks.to_json()).unwrap();
    let key = &doc["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(key["kid"], json!(k.kid()));
    assert_eq!(key.as_object().unwrap().len(), 6);
    assert_eq!(b64::decode(key["x"].as_str().unwrap()).unwrap().len(), 32);

    let first = k.kid();
    let rotation = T0.saturating_add(7 * DAY);
    k.ring.rotate_if_due(rotation).unwrap();
    let jwks = k.ring.jwks(rotation);
    let kids: Vec<&str> = jwks.keys.iter().map(|j| j.kid.as_str()).collect();
    assert_eq!(
        kids,
        [k.kid().as_str(), first.as_str()],
        "current first, then overlap"
    );
    for jwk in &jwks.keys {
        let (kid, _) = jwk.verifying_key().unwrap();
        assert_eq!(kid.as_str(), jwk.kid);
    }
    // After the overlap, only the current key.
    let later = rotation.saturating_add(8 * DAY);
    assert_eq!(k.ring.jwks(later).keys.len(), 1);
    let parsed: Jwks = serde_json::from_str(&k.ring.jwks(later).to_json()).unwrap();
    assert_eq!(parsed.keys[0].kid, k.kid());
    // A JWK whose kid does not match its key is refused by a JWKS consumer.
    let mut wrong = parsed.keys[0].clone();
    wrong.kid = "0000000000000000".into();
    assert!(wrong.verifying_key().is_err());
}

#[test]
fn a_retired_key_can_be_retired_early_and_the_current_one_cannot() {
    let k = kit();
    let old_token = k.token(TokenType::Access);
    let old = KeyId::parse(&k.kid()).unwrap();
    assert!(
        !k.ring.write().retire(&old, T0),
        "current key cannot be retired"
    );
    k.ring.write().rotate(T0).unwrap();
    assert!(k.ring.write().retire(&old, T0));
    assert!(matches!(
        k.check(&old_token, TokenType::Access),
        Err(TrustError::KeyRetired(_))
    ));
    assert_eq!(k.ring.jwks(T0).keys.len(), 1);
}

#[test]
fn the_ring_survives_sealing_and_refuses_tampering() {
    let k = kit();
    let old_token = k.token(TokenType::Refresh);
    k.ring.write().rotate(T0.saturating_add(DAY)).unwrap();
    let ks = MemoryKeystore::new().unwrap();
    k.ring.read().save(&ks).unwrap();

    let loaded = KeyRing::load(&ks, KeyRingConfig::default())
        .unwrap()
        .unwrap();
    assert_eq!(loaded.current_kid(), k.ring.read().current_kid());
    assert_eq!(loaded.jwks(T0), k.ring.jwks(T0));
    let loaded = SharedKeyRing::new(loaded);
    let v = Validator::new(loaded.clone(), ValidatorConfig::new(ISS)).unwrap();
    v.validate(&old_token, AUD, TokenType::Refresh, T0).unwrap();
    // Tokens signed after loading verify with the original ring too (same keys).
    let i = Issuer::new(loaded, IssuerConfig::new(ISS)).unwrap();
    let t = i
        .issue(&i.claims(TokenType::Access, "u", AUD, T0).unwrap())
        .unwrap();
    k.validator
        .validate(&t, AUD, TokenType::Access, T0)
        .unwrap();

    // The private keys are not in the stored bytes.
    let stored = ks.read(crate::jwt::KEYRING_FILE).unwrap().unwrap();
    let secret = k.ring.read().current_secret();
    assert!(!stored.windows(32).any(|w| w == secret));
    // Another keystore cannot open it; a flipped byte is detected.
    let other = MemoryKeystore::new().unwrap();
    assert!(matches!(
        KeyRing::unseal(&other, &stored, KeyRingConfig::default()),
        Err(TrustError::SealBroken(_))
    ));
    let mut bad = stored.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(
        KeyRing::unseal(&ks, &bad, KeyRingConfig::default()),
        Err(TrustError::SealBroken(_))
    ));
    // load_or_generate reuses what is there.
    let again = KeyRing::load_or_generate(&ks, KeyRingConfig::default(), T0).unwrap();
    assert_eq!(again.current_kid(), k.ring.read().current_kid());
}
