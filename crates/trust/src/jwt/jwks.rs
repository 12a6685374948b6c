//! The JSON Web Key Set of the keys that currently verify.
//!
//! ```json
//! {"keys":[{"kty":"OKP","crv":"Ed25519","x":"<base64url 32 bytes>","kid":"<16 hex>",
//!           "use":"sig","alg":"EdDSA"}]}
//! ```
//!
//! The current signing key comes first, then keys still inside their overlap window,
//! newest first. Retired keys are not listed.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use tether_proto::KeyId;

use super::{ALG, b64};
use crate::error::TrustError;

/// One public key (RFC 8037 OKP form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwk {
    /// Always `"OKP"`.
    pub kty: String,
    /// Always `"Ed25519"`.
    pub crv: String,
    /// The 32-byte public key, base64url without padding.
    pub x: String,
    /// The key id.
    pub kid: String,
    /// Always `"sig"`.
    #[serde(rename = "use")]
    pub use_: String,
    /// Always `"EdDSA"`.
    pub alg: String,
}

impl Jwk {
    /// The JWK of an Ed25519 public key.
    pub fn ed25519(kid: &KeyId, key: &VerifyingKey) -> Self {
        Self {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: b64::encode(key.as_bytes()),
            kid: kid.as_str().to_owned(),
            use_: "sig".into(),
            alg: ALG.into(),
        }
    }

    /// The key, for a party that holds only the JWKS. Checks every member, and that the
    /// kid is the one Tether derives from the key.
    pub fn verifying_key(&self) -> Result<(KeyId, VerifyingKey), TrustError> {
        let bad = |why: &str| TrustError::input("jwk", why.to_owned());
        if self.kty != "OKP" || self.crv != "Ed25519" || self.use_ != "sig" || self.alg != ALG {
            return Err(bad("not an Ed25519 signing key"));
        }
        let x = b64::decode(&self.x).ok_or_else(|| bad("x is not base64url"))?;
        let x: [u8; 32] = x.try_into().map_err(|_| bad("x is not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&x).map_err(|_| bad("x is not a curve point"))?;
        let kid = KeyId::for_ed25519(&x);
        if kid.as_str() != self.kid {
            return Err(bad("kid does not match the key"));
        }
        Ok((kid, key))
    }
}

/// A JWK Set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// The document as JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain strings into JSON cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}
