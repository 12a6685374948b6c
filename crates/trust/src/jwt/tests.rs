//! JWT rejections, rotation, JWKS and persistence. These tests forge tokens with exact
//! headers, so they live inside the crate to sign with the ring's own key. Shared helpers
//! are here; the tests are grouped in the submodules.

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

mod claims;
mod encoding;
mod header;
mod rotation;

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
