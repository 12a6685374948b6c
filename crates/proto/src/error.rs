//! The one table of stable error codes.
//!
//! Every error that crosses a process boundary (HTTP body, WebSocket error frame, helper
//! response, CLI exit message) carries one of these codes. A code's number, name and HTTP
//! status never change once released; the message may be reworded. `docs/protocol.md`
//! carries the same table and a test keeps the two in step.
//!
//! Numbering by category:
//! 1xxx frame and input, 2xxx signatures and trust, 3xxx authentication,
//! 4xxx policy, 5xxx delivery and device state, 6xxx execution on the PC,
//! 7xxx artifacts and updates, 9xxx server.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The category a code belongs to (its thousands digit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCategory {
    /// 1xxx: the bytes or fields were not acceptable.
    Input,
    /// 2xxx: a signature, key, certificate, TTL or sequence check failed.
    Trust,
    /// 3xxx: who is asking could not be established, or may not ask.
    Auth,
    /// 4xxx: policy said no (or not yet).
    Policy,
    /// 5xxx: delivery to or state of a device.
    Delivery,
    /// 6xxx: execution on the PC (agent or helper).
    Execution,
    /// 7xxx: artifacts and updates.
    Artifact,
    /// 9xxx: the server itself.
    Server,
}

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = ($num:literal, $name:literal, $status:literal, $msg:literal), )*) => {
        /// A stable error code. See the module docs for the numbering.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )* ];

            /// The stable number, e.g. 2001.
            pub const fn number(self) -> u16 {
                match self { $( ErrorCode::$variant => $num, )* }
            }

            /// The stable name, e.g. `SIGNATURE_INVALID`.
            pub const fn name(self) -> &'static str {
                match self { $( ErrorCode::$variant => $name, )* }
            }

            /// The HTTP status an API answers this code with.
            pub const fn http_status(self) -> u16 {
                match self { $( ErrorCode::$variant => $status, )* }
            }

            /// A human sentence describing the code.
            pub const fn message(self) -> &'static str {
                match self { $( ErrorCode::$variant => $msg, )* }
            }

            /// Looks a code up by its number.
            pub fn from_number(n: u16) -> Option<ErrorCode> {
                match n { $( $num => Some(ErrorCode::$variant), )* _ => None }
            }

            /// Looks a code up by its name.
            pub fn from_name(s: &str) -> Option<ErrorCode> {
                match s { $( $name => Some(ErrorCode::$variant), )* _ => None }
            }
        }
    };
}

error_codes! {
    /// The frame is not valid JSON or not the expected structure.
    MalformedFrame = (1001, "MALFORMED_FRAME", 400, "The message is not well-formed JSON of the expected structure."),
    /// The frame exceeds the size limit for its kind.
    FrameTooLarge = (1002, "FRAME_TOO_LARGE", 413, "The message exceeds the size limit for its kind."),
    /// The envelope's `v` is not a version this peer speaks.
    UnsupportedVersion = (1003, "UNSUPPORTED_VERSION", 400, "The protocol version is not supported."),
    /// The header names a message type this peer does not know.
    UnknownMessageType = (1004, "UNKNOWN_MESSAGE_TYPE", 400, "The message type is not known."),
    /// A field is missing, of the wrong type, or out of range.
    InvalidField = (1005, "INVALID_FIELD", 422, "A field is missing, has the wrong type, or is out of range."),
    /// The message type is not allowed in this direction or state.
    UnexpectedMessage = (1006, "UNEXPECTED_MESSAGE", 409, "This message is not expected in the current state or direction."),
    /// Too many requests from this source.
    RateLimited = (1007, "RATE_LIMITED", 429, "Too many requests; slow down and retry later."),
    /// JSON nested deeper than the protocol allows, or a number outside the safe range.
    NotCanonicalizable = (1008, "NOT_CANONICALIZABLE", 400, "The JSON cannot be canonicalized (too deep, or a number outside the exact integer range)."),

    /// The signature does not verify (the seed's SIGNATURE_INVALID(2001)).
    SignatureInvalid = (2001, "SIGNATURE_INVALID", 401, "The signature is invalid."),
    /// No key is known under the given key id.
    UnknownKid = (2002, "UNKNOWN_KID", 401, "No key is known under this key id."),
    /// The algorithm is not the one this protocol uses.
    UnsupportedAlgorithm = (2003, "UNSUPPORTED_ALGORITHM", 401, "The signature algorithm is not accepted."),
    /// The message's TTL has passed.
    TtlExpired = (2004, "TTL_EXPIRED", 410, "The message's time-to-live has expired."),
    /// The message claims to be issued in the future beyond the allowed skew.
    NotYetValid = (2005, "NOT_YET_VALID", 401, "The message is dated in the future beyond the allowed clock skew."),
    /// The sequence number is not above the last one accepted from this sender.
    SequenceReplay = (2006, "SEQUENCE_REPLAY", 409, "The sequence number was already used; the message is a replay or out of order."),
    /// The key id names a key that was rotated out and is past its overlap window.
    KeyRetired = (2007, "KEY_RETIRED", 401, "The key id names a key that has been rotated out."),
    /// The certificate does not chain to the Tether root, or is expired.
    CertificateInvalid = (2008, "CERTIFICATE_INVALID", 401, "The certificate is not valid for this purpose."),
    /// The certificate was revoked.
    CertificateRevoked = (2009, "CERTIFICATE_REVOKED", 401, "The certificate has been revoked."),
    /// A certificate signing request is malformed or its signature does not match its key.
    CsrInvalid = (2010, "CSR_INVALID", 400, "The certificate signing request is invalid or its signature does not match its key."),
    /// The command carries no signature by a key its PC has pinned for the owner.
    OwnerSignatureInvalid = (2011, "OWNER_SIGNATURE_INVALID", 403, "The command is not signed by a key pinned for the device's owner."),
    /// Sealed data failed authentication (wrong key, or it was altered).
    SealBroken = (2012, "SEAL_BROKEN", 500, "Sealed data failed authentication: wrong key, or it was altered."),

    /// No credentials, or they could not be read.
    Unauthenticated = (3001, "UNAUTHENTICATED", 401, "Authentication is required."),
    /// The token has expired.
    TokenExpired = (3002, "TOKEN_EXPIRED", 401, "The token has expired."),
    /// The token is malformed, of the wrong type, or for another audience.
    TokenInvalid = (3003, "TOKEN_INVALID", 401, "The token is invalid."),
    /// Authenticated, but this action is not permitted for this identity.
    Forbidden = (3004, "FORBIDDEN", 403, "You are not allowed to do this."),
    /// A second factor is required.
    SecondFactorRequired = (3005, "SECOND_FACTOR_REQUIRED", 401, "A second factor (TOTP or passkey) is required."),
    /// The second factor was wrong or already used.
    SecondFactorInvalid = (3006, "SECOND_FACTOR_INVALID", 401, "The second factor is wrong or was already used."),
    /// A refresh token was used twice; its whole family is revoked.
    RefreshTokenReused = (3007, "REFRESH_TOKEN_REUSED", 401, "The refresh token was already used; all sessions from it are revoked."),
    /// Wrong email or password.
    InvalidCredentials = (3008, "INVALID_CREDENTIALS", 401, "The email or password is wrong."),

    /// Policy denies this action.
    PolicyDenied = (4001, "POLICY_DENIED", 403, "Policy denies this action."),
    /// Policy requires approval by other users first.
    ApprovalRequired = (4002, "APPROVAL_REQUIRED", 202, "This action needs approval by other authorised users."),
    /// Policy requires a fresh second factor first.
    StepUpRequired = (4003, "STEP_UP_REQUIRED", 401, "This action needs a fresh second factor."),
    /// The request's policy hash is not the current policy.
    PolicyHashMismatch = (4004, "POLICY_HASH_MISMATCH", 409, "The policy hash does not match the current policy."),
    /// A policy bundle failed validation or its signature.
    PolicyBundleInvalid = (4005, "POLICY_BUNDLE_INVALID", 400, "The policy bundle is invalid or not signed by the server."),
    /// A policy bundle is older than the one in force.
    PolicyVersionRollback = (4006, "POLICY_VERSION_ROLLBACK", 409, "The policy bundle is older than the one in force."),

    /// The device is offline; the command stays queued until its TTL.
    DeviceOffline = (5001, "DEVICE_OFFLINE", 202, "The device is offline; the command stays queued until its TTL."),
    /// The device's queue is full.
    Backpressure = (5002, "BACKPRESSURE", 503, "The device's queue is full; try again later."),
    /// Delivery failed after all retries; the command is in the dead-letter queue.
    DeliveryFailed = (5003, "DELIVERY_FAILED", 504, "Delivery failed after all retries; the command was moved to the dead-letter queue."),
    /// The device is not paired (or not paired with you).
    DeviceNotPaired = (5004, "DEVICE_NOT_PAIRED", 409, "The device is not paired."),
    /// The device's certificate was revoked; it must pair again.
    DeviceRevoked = (5005, "DEVICE_REVOKED", 403, "The device was revoked and must pair again."),
    /// The pairing token has expired.
    PairTokenExpired = (5006, "PAIR_TOKEN_EXPIRED", 410, "The pairing code has expired; ask the PC for a new one."),
    /// The pairing token was already used.
    PairTokenUsed = (5007, "PAIR_TOKEN_USED", 409, "The pairing code was already used."),
    /// The same message id was already accepted with a different body.
    DuplicateMessage = (5008, "DUPLICATE_MESSAGE", 409, "This message id was already used for a different message."),

    /// The helper (KernelService) failed to execute the operation.
    KernelFailure = (6001, "KERNEL_FAILURE", 502, "The privileged helper failed to execute the operation."),
    /// The helper is not reachable.
    HelperUnavailable = (6002, "HELPER_UNAVAILABLE", 503, "The privileged helper is not reachable."),
    /// The opcode is not allowed.
    OpcodeNotAllowed = (6003, "OPCODE_NOT_ALLOWED", 403, "The operation is not allowed."),
    /// The opcode's parameters are invalid.
    InvalidParams = (6004, "INVALID_PARAMS", 422, "The operation's parameters are invalid."),
    /// Execution took longer than allowed.
    ExecutionTimeout = (6005, "EXECUTION_TIMEOUT", 504, "The operation did not finish in time."),
    /// The local IPC peer is not the process allowed to call.
    PeerNotAuthorized = (6006, "PEER_NOT_AUTHORIZED", 403, "The calling process is not allowed to use the helper."),

    /// The artifact exceeds its size limit.
    ArtifactTooLarge = (7001, "ARTIFACT_TOO_LARGE", 413, "The artifact exceeds its size limit."),
    /// The data's SHA-256 does not match the expected hash.
    ChecksumMismatch = (7002, "CHECKSUM_MISMATCH", 422, "The data's SHA-256 does not match the expected hash."),
    /// An upload or download URL has expired.
    UrlExpired = (7003, "URL_EXPIRED", 410, "The transfer URL has expired."),
    /// An update failed its checks or its commit and was rolled back.
    UpdateFailed = (7004, "UPDATE_FAILED", 500, "The update failed and was rolled back."),

    /// An internal error; details are in the server log under the trace id.
    Internal = (9001, "INTERNAL", 500, "An internal error occurred; it is logged under the trace id."),
    /// A backend (store, bus, objects, keystore) is unavailable.
    Unavailable = (9002, "UNAVAILABLE", 503, "A backend service is unavailable; try again later."),
    /// The resource does not exist (or is not visible to you).
    NotFound = (9003, "NOT_FOUND", 404, "Not found."),
    /// The request conflicts with the current state.
    Conflict = (9004, "CONFLICT", 409, "The request conflicts with the current state."),
}

impl ErrorCode {
    /// The category, from the thousands digit.
    pub const fn category(self) -> ErrorCategory {
        match self.number() / 1000 {
            1 => ErrorCategory::Input,
            2 => ErrorCategory::Trust,
            3 => ErrorCategory::Auth,
            4 => ErrorCategory::Policy,
            5 => ErrorCategory::Delivery,
            6 => ErrorCategory::Execution,
            7 => ErrorCategory::Artifact,
            _ => ErrorCategory::Server,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.number(), self.name())
    }
}

/// On the wire a code is its number; names are for humans and logs.
impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.number())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u16::deserialize(d)?;
        ErrorCode::from_number(n)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error code {n}")))
    }
}

/// The JSON error body used on every HTTP route and in `error` frames:
/// `{"code": 2001, "error": "SIGNATURE_INVALID", "message": "...", "trace_id": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// The stable number.
    pub code: ErrorCode,
    /// The stable name (redundant with `code`, for humans).
    pub error: String,
    /// A human-readable message. Never contains internal details.
    pub message: String,
    /// The trace id the server logged the cause under, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The policy rule that decided, on a policy refusal (`4001`, `4003`), when a rule
    /// did (absent when the policy's default or a method's built-in sensitivity did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

impl ErrorBody {
    /// A body with the code's own message.
    pub fn new(code: ErrorCode) -> Self {
        Self::with_message(code, code.message())
    }

    /// A body with a more specific message (which must not leak internals).
    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            error: code.name().to_owned(),
            message: message.into(),
            trace_id: None,
            rule: None,
        }
    }
}

/// The proto crate's one error type. Every variant maps to a stable [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// The frame is larger than the limit for its kind.
    #[error("frame of {size} bytes exceeds the {limit}-byte limit")]
    FrameTooLarge {
        /// Bytes received.
        size: usize,
        /// The limit that applied.
        limit: usize,
    },
    /// Not JSON, or not the envelope/message structure.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The envelope version is not spoken here.
    #[error("protocol version {0} is not supported")]
    UnsupportedVersion(u64),
    /// The header's type is unknown.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// The message is of another type than the one expected here.
    #[error("expected a {expected} message, got {got}")]
    UnexpectedType {
        /// What the receiver wanted.
        expected: &'static str,
        /// What arrived.
        got: String,
    },
    /// A field failed validation.
    #[error("invalid field {field}: {reason}")]
    InvalidField {
        /// The field's JSON path.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The content cannot be canonicalized.
    #[error(transparent)]
    Canonical(#[from] crate::canonical::CanonicalError),
    /// The signature does not verify.
    #[error("signature invalid: {0}")]
    SignatureInvalid(&'static str),
    /// The alg is not EdDSA.
    #[error("algorithm {0:?} is not accepted (only EdDSA)")]
    UnsupportedAlgorithm(String),
    /// No key under this kid.
    #[error("no key is known under kid {0:?}")]
    UnknownKid(String),
    /// The kid was rotated out and its overlap window has passed.
    #[error("key {0:?} has been rotated out")]
    KeyRetired(String),
    /// iat + ttl is in the past.
    #[error("message expired at {expired_at_ms} ms (now {now_ms} ms)")]
    TtlExpired {
        /// When it expired.
        expired_at_ms: u64,
        /// Now.
        now_ms: u64,
    },
    /// iat is further in the future than the allowed skew.
    #[error("message issued at {iat_ms} ms is in the future (now {now_ms} ms)")]
    NotYetValid {
        /// Claimed issue time.
        iat_ms: u64,
        /// Now.
        now_ms: u64,
    },
    /// seq is not above the last accepted one.
    #[error("sequence {seq} is not above the last accepted {last}")]
    SequenceReplay {
        /// The received sequence.
        seq: u64,
        /// The last accepted sequence.
        last: u64,
    },
}

impl ProtoError {
    /// The stable code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtoError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            ProtoError::Malformed(_) => ErrorCode::MalformedFrame,
            ProtoError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            ProtoError::UnknownType(_) => ErrorCode::UnknownMessageType,
            ProtoError::UnexpectedType { .. } => ErrorCode::UnexpectedMessage,
            ProtoError::InvalidField { .. } => ErrorCode::InvalidField,
            ProtoError::Canonical(_) => ErrorCode::NotCanonicalizable,
            ProtoError::SignatureInvalid(_) => ErrorCode::SignatureInvalid,
            ProtoError::UnsupportedAlgorithm(_) => ErrorCode::UnsupportedAlgorithm,
            ProtoError::UnknownKid(_) => ErrorCode::UnknownKid,
            ProtoError::KeyRetired(_) => ErrorCode::KeyRetired,
            ProtoError::TtlExpired { .. } => ErrorCode::TtlExpired,
            ProtoError::NotYetValid { .. } => ErrorCode::NotYetValid,
            ProtoError::SequenceReplay { .. } => ErrorCode::SequenceReplay,
        }
    }

    /// The error as the body sent to a peer.
    pub fn to_body(&self) -> ErrorBody {
        ErrorBody::with_message(self.code(), self.to_string())
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ProtoError::InvalidField {
            field,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests;
