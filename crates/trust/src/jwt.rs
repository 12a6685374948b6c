//! A small JWT implementation: Ed25519 only, our own keys only.
//!
//! # Token format
//!
//! A token is the JWS compact serialization `B64(header) "." B64(claims) "." B64(sig)`,
//! where `B64` is base64url **without padding** (RFC 7515 §2), decoded strictly: padding,
//! whitespace, characters outside the alphabet, and non-zero trailing bits are refused.
//! The signature is Ed25519 (RFC 8032) over the ASCII bytes `B64(header) "." B64(claims)`
//! exactly as received, checked with `verify_strict` (no small-order keys, canonical S).
//!
//! The header is always `{"alg":"EdDSA","typ":"JWT","kid":"<kid>"}`. A validator requires
//! `alg` to be exactly `EdDSA` (so `none`, `NONE`, `HS256`, `ES256`… are refused before
//! any key is looked up), `typ` exactly `JWT`, and a `kid`; a header with `crit` is
//! refused, because no extension is understood. `jku`, `x5u`, `x5c`, `jwk` and every other
//! header member are **ignored**: they are never fetched and never a source of keys; the
//! key always comes from our [`KeyRing`] by `kid`. Repeated members are refused.
//!
//! The claims are [`Claims`]: `iss`, `sub`, `aud` (one string), `exp`, `nbf`, `iat`
//! (integer seconds since the epoch), `jti`, `token_type` (`"access"`, `"refresh"`,
//! `"pair"`, `"step_up"`), and the optional `device_id`, `sid`, `scope` (space-separated,
//! as RFC 9068), `amr` (RFC 8176 values) and `ext` (an object for anything else). Unknown
//! claims are ignored; repeated claims are refused.
//!
//! Kids are [`KeyId::for_ed25519`]: the first 8 bytes of the SHA-256 of the public key, as
//! 16 lowercase hex digits.
//!
//! # Validation order
//!
//! 1. length ≤ [`MAX_TOKEN_BYTES`], before anything is parsed;
//! 2. three segments, each strict base64url; the header a JSON object;
//! 3. `alg` = `EdDSA`, `typ` = `JWT`, no `crit`, a `kid`;
//! 4. the kid in the ring: [`TrustError::UnknownKid`] (2002) if it never was or is long
//!    forgotten, [`TrustError::KeyRetired`] (2007) if rotated out past its overlap window;
//! 5. the signature (64 bytes, `verify_strict`);
//! 6. the claims: shape, then `exp` (+ leeway) → [`TrustError::TokenExpired`] (3002),
//!    `nbf` and `iat` not in the future (− leeway), `iss`, `aud`, `token_type`.
//!
//! Every other failure is [`TrustError::TokenInvalid`] (3003) with a [`TokenRejection`]
//! saying exactly what was wrong. Claims are read only from a token whose signature
//! verified, so an expired-token answer is only ever given for an authentic token.
//!
//! [`KeyId::for_ed25519`]: tether_proto::KeyId::for_ed25519
//! [`TokenRejection`]: crate::TokenRejection
//! [`TrustError::UnknownKid`]: crate::TrustError::UnknownKid
//! [`TrustError::KeyRetired`]: crate::TrustError::KeyRetired
//! [`TrustError::TokenExpired`]: crate::TrustError::TokenExpired
//! [`TrustError::TokenInvalid`]: crate::TrustError::TokenInvalid

use std::time::Duration;

mod b64;
mod claims;
mod issuer;
mod jwks;
mod keys;
mod validator;

pub use claims::{Claims, TokenType};
pub use issuer::{Issuer, IssuerConfig, TokenLifetimes};
pub use jwks::{Jwk, Jwks};
pub use keys::{
    KEYRING_FILE, KEYRING_LABEL, KeyRing, KeyRingConfig, KeyState, MAX_RETIRED_REMEMBERED,
    SharedKeyRing,
};
pub use validator::{Validator, ValidatorConfig};

/// The only `alg`.
pub const ALG: &str = "EdDSA";
/// The only `typ`.
pub const TYP: &str = "JWT";
/// The default and largest accepted token, in bytes (checked before parsing).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Default allowance for clock differences when checking `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests;
