//! Checking tokens. The order of the checks is documented on the [`jwt`](super) module.

use std::time::Duration;

use ed25519_dalek::Signature;
use serde::{Deserialize, Deserializer};
use tether_proto::{KeyId, UnixMillis};

use super::claims::{Claims, TokenType};
use super::keys::SharedKeyRing;
use super::{ALG, DEFAULT_LEEWAY, MAX_TOKEN_BYTES, TYP, b64};
use crate::error::{TokenRejection, TrustError};

/// What a validator accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorConfig {
    /// The only accepted `iss`.
    pub issuer: String,
    /// Allowance for clock differences on `exp`, `nbf` and `iat` (default 60 s, at most
    /// 5 minutes).
    pub leeway: Duration,
    /// Longest token accepted, checked before parsing (default and maximum
    /// [`MAX_TOKEN_BYTES`]).
    pub max_token_bytes: usize,
}

impl ValidatorConfig {
    /// Defaults for `issuer`.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            leeway: DEFAULT_LEEWAY,
            max_token_bytes: MAX_TOKEN_BYTES,
        }
    }
}

/// Verifies tokens against the ring (and only the ring).
#[derive(Debug, Clone)]
pub struct Validator {
    ring: SharedKeyRing,
    config: ValidatorConfig,
}

/// The header members we read. Everything else (`jku`, `x5u`, `x5c`, `jwk`, …) is
/// skipped unread.
#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

/// True for any value, `null` included: the member's presence is what counts.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// Decodes a JSON *object* into `T`. (A derived `Deserialize` would also take an array
/// for a struct; a JOSE header or claims set is an object and nothing else.) Repeated
/// members of `T` are errors.
fn json_object<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Option<T> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    serde_json::from_slice(bytes).ok()
}

fn invalid(r: TokenRejection) -> TrustError {
    TrustError::TokenInvalid(r)
}

fn malformed(what: &'static str) -> TrustError {
    invalid(TokenRejection::Malformed(what))
}

impl Validator {
    /// A validator over `ring`.
    pub fn new(ring: SharedKeyRing, config: ValidatorConfig) -> Result<Self, TrustError> {
        if config.issuer.is_empty() {
            return Err(TrustError::InvalidConfig("issuer must not be empty".into()));
        }
        if config.leeway > Duration::from_secs(300) {
            return Err(TrustError::InvalidConfig(
                "leeway must be at most 5 minutes".into(),
            ));
        }
        if !(256..=MAX_TOKEN_BYTES).contains(&config.max_token_bytes) {
            return Err(TrustError::InvalidConfig(format!(
                "max_token_bytes must be between 256 and {MAX_TOKEN_BYTES}"
            )));
        }
        Ok(Self { ring, config })
    }

    /// The configuration.
    pub fn config(&self) -> &ValidatorConfig {
        &self.config
    }

    /// Checks `token` at `now` for `expected_audience` and `expected_type`, and returns
    /// its claims. Never panics, whatever the input.
    pub fn validate(
        &self,
        token: &str,
        expected_audience: &str,
        expected_type: TokenType,
        now: UnixMillis,
    ) -> Result<Claims, TrustError> {
        // 1. Size, before anything else.
        if token.len() > self.config.max_token_bytes {
            return Err(invalid(TokenRejection::TooLarge {
                len: token.len(),
                limit: self.config.max_token_bytes,
            }));
        }

        // 2. Shape.
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed(
                "a token has exactly three dot-separated segments",
            ));
        };
        let header_json = b64::decode(h64).ok_or_else(|| malformed("header is not base64url"))?;
        let header: Header = json_object(&header_json)
            .ok_or_else(|| malformed("header is not a JSON object of the expected shape"))?;

        // 3. Header policy: before any key is touched.
        let alg = header.alg.as_deref().unwrap_or_default();
        if alg != ALG {
            return Err(invalid(TokenRejection::AlgNotAllowed(
                alg.chars().take(32).collect(),
            )));
        }
        if header.typ.as_deref() != Some(TYP) {
            return Err(invalid(TokenRejection::TypNotJwt));
        }
        if header.crit {
            return Err(invalid(TokenRejection::CritPresent));
        }
        let kid = header.kid.ok_or(invalid(TokenRejection::MissingKid))?;
        // A kid we could never have issued is unknown, however it is spelled.
        let kid = KeyId::parse(&kid)
            .map_err(|_| TrustError::UnknownKid(kid.chars().take(64).collect()))?;

        // 4. The key: from the ring, by kid, and from nowhere else.
        let key = self.ring.read().verifying_key(&kid, now)?;

        // 5. The signature over the segments as received.
        let sig = b64::decode(s64).ok_or(invalid(TokenRejection::BadSignature))?;
        let sig: [u8; 64] = sig
            .try_into()
            .map_err(|_| invalid(TokenRejection::BadSignature))?;
        let signed_len = h64.len().saturating_add(1).saturating_add(p64.len());
        let signing_input = token.get(..signed_len).ok_or(malformed("segments"))?;
        key.verify_strict(signing_input.as_bytes(), &Signature::from_bytes(&sig))
            .map_err(|_| invalid(TokenRejection::BadSignature))?;

        // 6. Claims, now that they are known to be ours.
        let payload = b64::decode(p64).ok_or_else(|| malformed("claims are not base64url"))?;
        let claims: Claims = json_object(&payload)
            .ok_or_else(|| malformed("claims are not a JSON object of the expected shape"))?;
        self.check_claims(&claims, expected_audience, expected_type, now)?;
        Ok(claims)
    }

    fn check_claims(
        &self,
        c: &Claims,
        expected_audience: &str,
        expected_type: TokenType,
        now: UnixMillis,
    ) -> Result<(), TrustError> {
        let leeway_ms = u64::try_from(self.config.leeway.as_millis()).unwrap_or(u64::MAX);
        let ms = |secs: u64| secs.saturating_mul(1000);
        if !(c.iat <= c.nbf && c.nbf < c.exp) {
            return Err(invalid(TokenRejection::BadTimes));
        }
        // Expired once now ≥ exp + leeway.
        if now.0 >= ms(c.exp).saturating_add(leeway_ms) {
            return Err(TrustError::TokenExpired {
                exp: c.exp,
                now_ms: now.0,
            });
        }
        // Usable once now ≥ nbf − leeway.
        if now.0.saturating_add(leeway_ms) < ms(c.nbf) {
            return Err(invalid(TokenRejection::NotYetValid { nbf: c.nbf }));
        }
        if now.0.saturating_add(leeway_ms) < ms(c.iat) {
            return Err(invalid(TokenRejection::IssuedInFuture { iat: c.iat }));
        }
        if c.iss != self.config.issuer {
            return Err(invalid(TokenRejection::WrongIssuer));
        }
        if c.aud != expected_audience {
            return Err(invalid(TokenRejection::WrongAudience));
        }
        if c.token_type != expected_type {
            return Err(invalid(TokenRejection::WrongTokenType {
                expected: expected_type.as_str(),
                got: c.token_type.as_str(),
            }));
        }
        Ok(())
    }
}
