//! JWT rejections, rotation, JWKS and persistence. These tests forge tokens with exact
//! headers, so they live inside the crate to sign with the ring's own key.

// Test code: arithmetic on fixed test times is fine.
#![allow(clippy::arithmetic_side_effects)]

use std::io;
use std::net::TcpListener;
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tether_proto::{Clock, KeyId, ManualClock, UnixMillis};

use super::b64;
use super::{
    Claims, Issuer, IssuerConfig, Jwks, KeyRing, KeyRingConfig, KeyState, MAX_TOKEN_BYTES,
    SharedKeyRing, TokenLifetimes, TokenType, Validator, ValidatorConfig,
};
use crate::error::{TokenRejection, TrustError};
use crate::keystore::{Keystore, MemoryKeystore};

const T0: UnixMillis = UnixMillis(1_764_000_000_000);
const ISS: &str = "https://tether.example";
const AUD: &str = "tether-api";
const DAY: Duration = Duration::from_secs(24 * 3600);

struct Kit {
    clock: ManualClock,
    ring: SharedKeyRing,
    issuer: Issuer,
    validator: Validator,
}

fn kit() -> Kit {
    let ring = SharedKeyRing::new(KeyRing::generate(KeyRingConfig::default(), T0).unwrap());
    Kit {
        clock: ManualClock::new(T0),
        issuer: Issuer::new(ring.clone(), IssuerConfig::new(ISS)).unwrap(),
        validator: Validator::new(ring.clone(), ValidatorConfig::new(ISS)).unwrap(),
        ring,
    }
}

impl Kit {
    fn now(&self) -> UnixMillis {
        self.clock.now()
    }

    fn token(&self, t: TokenType) -> String {
        let claims = self.issuer.claims(t, "user-1", AUD, self.now()).unwrap();
        self.issuer.issue(&claims).unwrap()
    }

    fn check(&self, token: &str, t: TokenType) -> Result<Claims, TrustError> {
        self.validator.validate(token, AUD, t, self.now())
    }

    fn kid(&self) -> String {
        self.ring.read().current_kid().to_string()
    }

    /// Claims as JSON for the current time, lifetime `secs`.
    fn claims_json(&self, secs: u64) -> Value {
        let now = self.now().as_secs();
        json!({"iss": ISS, "sub": "user-1", "aud": AUD, "exp": now + secs, "nbf": now,
               "iat": now, "jti": "j1", "token_type": "access"})
    }

    /// A token with exactly this header and these claims, signed by the ring's current key.
    fn signed_by_ring(&self, header: &Value, claims: &Value) -> String {
        forge(header, claims, |m| {
            self.ring.read().sign(m).1.to_bytes().to_vec()
        })
    }

    fn std_header(&self) -> Value {
        json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid()})
    }
}

fn enc_json(v: &Value) -> String {
    b64::encode(&serde_json::to_vec(v).unwrap())
}

fn forge(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!("{}.{}", enc_json(header), enc_json(claims));
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64::encode(&sig))
}

fn rejection(r: Result<Claims, TrustError>) -> TokenRejection {
    match r {
        Err(e @ TrustError::TokenInvalid(_)) => {
            assert_eq!(e.code().number(), 3003);
            let TrustError::TokenInvalid(r) = e else {
                unreachable!()
            };
            r
        }
        other => panic!("expected TokenInvalid, got {other:?}"),
    }
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .into()
}

// ---------- the happy path ----------

#[test]
fn an_issued_token_validates_and_round_trips_its_claims() {
    let k = kit();
    let mut claims = k
        .issuer
        .claims(TokenType::Access, "user-1", AUD, k.now())
        .unwrap();
    claims.device_id = Some("dev-1".into());
    claims.scope = Some("devices:read devices:command".into());
    claims.amr = vec!["pwd".into(), "otp".into()];
    claims.ext.insert("plan".into(), json!("pro"));
    let token = k.issuer.issue(&claims).unwrap();
    assert_eq!(token.split('.').count(), 3);
    assert!(!token.contains('='));
    let got = k.check(&token, TokenType::Access).unwrap();
    assert_eq!(got, claims);
    assert!(got.has_scope("devices:command") && !got.has_scope("devices"));
    assert_eq!(
        claims.exp - claims.iat,
        900,
        "access tokens live 900 s by default"
    );
    assert_eq!(claims.jti.len(), 22);

    // The header is exactly alg, typ, kid.
    let header = b64::decode(token.split('.').next().unwrap()).unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    assert_eq!(header, k.std_header());
}

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
    let jwk = super::Jwk::ed25519(&attacker_kid, &attacker.verifying_key());
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
    let stored = ks.read(super::KEYRING_FILE).unwrap().unwrap();
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
