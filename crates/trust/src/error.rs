//! The crate's one error type, [`TrustError`], and the precise reasons behind a rejected
//! token ([`TokenRejection`]) or certificate signing request ([`CsrRejection`]).
//!
//! Every variant maps onto one stable [`ErrorCode`] through [`TrustError::code`]. Messages
//! name what was wrong, never a key, a plaintext or a file's contents; paths of files under
//! the keystore directory may appear (they are operator-facing, not peer-facing).

use std::io;

use tether_proto::ErrorCode;

/// Everything that can go wrong in the trust core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    // ---- sealing and storage ----
    /// A sealed blob failed to open: wrong key-encryption key, wrong purpose label, altered
    /// or truncated bytes, or a format this build does not know.
    #[error("sealed data failed to open: {0}")]
    SealBroken(&'static str),
    /// The key-encryption key is missing, of the wrong length or otherwise unusable.
    #[error("key-encryption key unusable: {0}")]
    KekInvalid(String),
    /// Reading or writing the keystore's storage failed.
    #[error("keystore {op} of {name:?} failed: {source}")]
    Storage {
        /// What was being done (`read`, `write`, `create`...).
        op: &'static str,
        /// The blob or file concerned.
        name: String,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// Persisted data opened fine but does not decode (a bug or a foreign file).
    #[error("persisted {what} is corrupt: {reason}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// Why it does not decode.
        reason: String,
    },
    /// Something that must exist in the keystore is not there.
    #[error("{0} not found in the keystore")]
    Missing(String),
    /// Creating something that already exists (a CA over an existing CA).
    #[error("{0} already exists; refusing to overwrite it")]
    AlreadyExists(String),

    // ---- certificates ----
    /// A certificate does not chain to the root for the asked purpose, is expired or not
    /// yet valid, or its revocation status cannot be established.
    #[error("certificate invalid: {0}")]
    CertificateInvalid(String),
    /// The certificate's serial is on a CRL of its issuer.
    #[error("certificate revoked")]
    CertificateRevoked,
    /// A certificate signing request was refused.
    #[error("certificate signing request refused: {0}")]
    CsrInvalid(CsrRejection),

    // ---- tokens and keys ----
    /// The token was authentic but its `exp` (plus leeway) has passed.
    #[error("token expired at {exp} s (now {now_ms} ms)")]
    TokenExpired {
        /// The token's `exp`, in seconds since the epoch.
        exp: u64,
        /// The validator's clock, in milliseconds since the epoch.
        now_ms: u64,
    },
    /// The token was refused; the reason says exactly why.
    #[error("token invalid: {0}")]
    TokenInvalid(TokenRejection),
    /// The token's `kid` names no key of the ring (never one, or forgotten long ago).
    #[error("no key is known under kid {0:?}")]
    UnknownKid(String),
    /// The token's `kid` names a key that was rotated out and whose overlap window ended.
    #[error("key {0:?} has been rotated out")]
    KeyRetired(String),

    // ---- caller mistakes and internals ----
    /// An argument given by the caller is not acceptable (a SAN, a device id, a name).
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// Which argument.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A configuration value is not acceptable (e.g. an overlap shorter than a lifetime).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A cryptographic operation that should not fail did (no system randomness, a
    /// library refusing a key it generated).
    #[error("cryptographic operation failed: {0}")]
    Crypto(String),
}

impl TrustError {
    /// The stable code this error is reported under.
    pub fn code(&self) -> ErrorCode {
        match self {
            TrustError::SealBroken(_) => ErrorCode::SealBroken,
            TrustError::Storage { .. } => ErrorCode::Unavailable,
            TrustError::Missing(_) => ErrorCode::NotFound,
            TrustError::AlreadyExists(_) => ErrorCode::Conflict,
            TrustError::KekInvalid(_)
            | TrustError::Corrupt { .. }
            | TrustError::InvalidConfig(_)
            | TrustError::Crypto(_) => ErrorCode::Internal,
            TrustError::CertificateInvalid(_) => ErrorCode::CertificateInvalid,
            TrustError::CertificateRevoked => ErrorCode::CertificateRevoked,
            TrustError::CsrInvalid(_) => ErrorCode::CsrInvalid,
            TrustError::TokenExpired { .. } => ErrorCode::TokenExpired,
            TrustError::TokenInvalid(_) => ErrorCode::TokenInvalid,
            TrustError::UnknownKid(_) => ErrorCode::UnknownKid,
            TrustError::KeyRetired(_) => ErrorCode::KeyRetired,
            TrustError::InvalidInput { .. } => ErrorCode::InvalidField,
        }
    }

    pub(crate) fn storage(op: &'static str, name: impl Into<String>, source: io::Error) -> Self {
        TrustError::Storage {
            op,
            name: name.into(),
            source,
        }
    }

    pub(crate) fn input(field: &'static str, reason: impl Into<String>) -> Self {
        TrustError::InvalidInput {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn corrupt(what: &'static str, reason: impl ToString) -> Self {
        TrustError::Corrupt {
            what,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn crypto(reason: impl ToString) -> Self {
        TrustError::Crypto(reason.to_string())
    }
}

/// Why a JWT was refused (all reported as [`ErrorCode::TokenInvalid`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenRejection {
    /// Longer than the validator's limit; nothing was parsed.
    #[error("token of {len} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Not three segments of unpadded base64url holding JSON objects of the right shape.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is not exactly `EdDSA` (it is shown escaped and shortened).
    #[error("alg {0:?} is not accepted (only \"EdDSA\")")]
    AlgNotAllowed(String),
    /// The header's `typ` is missing or not exactly `JWT`.
    #[error("typ must be \"JWT\"")]
    TypNotJwt,
    /// The header has no `kid`.
    #[error("kid is missing")]
    MissingKid,
    /// The header carries `crit`: no extension is understood, so none may be critical.
    #[error("crit header present; no critical extensions are supported")]
    CritPresent,
    /// The signature is not 64 bytes or does not verify under the kid's key.
    #[error("signature does not verify")]
    BadSignature,
    /// `nbf` is later than now plus the leeway.
    #[error("token not valid before {nbf} s")]
    NotYetValid {
        /// The token's `nbf`, seconds.
        nbf: u64,
    },
    /// `iat` is later than now plus the leeway.
    #[error("token issued in the future ({iat} s)")]
    IssuedInFuture {
        /// The token's `iat`, seconds.
        iat: u64,
    },
    /// `exp` is not after `iat`, or `nbf` is after `exp`.
    #[error("exp/nbf/iat are inconsistent")]
    BadTimes,
    /// `iss` is not this validator's issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` is not the audience the caller expected.
    #[error("wrong audience")]
    WrongAudience,
    /// `token_type` is not the one the caller expected.
    #[error("wrong token type: expected {expected}, got {got}")]
    WrongTokenType {
        /// What the caller asked for.
        expected: &'static str,
        /// What the token says.
        got: &'static str,
    },
}

/// Why a certificate signing request was refused (all reported as
/// [`ErrorCode::CsrInvalid`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrRejection {
    /// Longer than the limit; nothing was parsed.
    #[error("CSR of {len} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a DER PKCS#10 request (or trailing bytes after it).
    #[error("not a DER PKCS#10 certification request")]
    Malformed,
    /// The request's key is not ECDSA P-256 or Ed25519.
    #[error("key type {0} is not accepted (only ECDSA P-256 and Ed25519)")]
    UnsupportedKey(String),
    /// The signature algorithm does not fit the key (P-256 must sign with SHA-256).
    #[error("signature algorithm does not match the key type")]
    UnsupportedSignatureAlgorithm,
    /// The request's signature does not verify under its own public key.
    #[error("signature does not match the request's key")]
    BadSignature,
}

#[cfg(test)]
mod tests;
