//! The object store's one error type.

use tether_proto::ErrorCode;

/// Why an object store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    // --- the caller's input ---
    /// The key is empty, too long, or has a character or segment keys may not have.
    #[error("invalid object key: {0}")]
    InvalidKey(String),
    /// An argument other than the key is out of range (a URL lifetime of zero or over
    /// seven days, …).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The object, or an upload, is larger than the caller's limit.
    #[error("object larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit that was passed, in bytes.
        limit: u64,
    },
    /// An upload body failed before it was complete (the sender went away, or sent a
    /// broken body); nothing was stored.
    #[error("upload body failed: {0}")]
    Upload(String),

    // --- signed URLs (the local backend's own) ---
    /// The URL's signature does not verify for this method, key and expiry: altered,
    /// signed by another key, or used with another method.
    #[error("the URL's signature is invalid")]
    SignatureInvalid,
    /// The URL's signature is valid but its expiry has passed.
    #[error("the URL expired at {expires_at}")]
    UrlExpired {
        /// When it expired (ms since the epoch).
        expires_at: tether_proto::UnixMillis,
    },

    // --- the backend ---
    /// The key is in use in a way this backend cannot store next to it (the local backend
    /// keeps `a` and `a/b` as a file and a directory, so it cannot hold both).
    #[error("key conflicts with another object: {0}")]
    Conflict(String),
    /// The directory or S3 service failed or could not be reached.
    #[error("object backend error: {0}")]
    Backend(String),
    /// The configuration is not usable (no bucket, a plain-HTTP endpoint without
    /// `dangerous_allow_http`, a short URL-signing key, …).
    #[error("invalid objects configuration: {0}")]
    Config(String),
}

impl ObjectsError {
    /// The stable code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ObjectsError::InvalidKey(_) | ObjectsError::InvalidArgument(_) => {
                ErrorCode::InvalidField
            }
            ObjectsError::TooLarge { .. } => ErrorCode::ArtifactTooLarge,
            ObjectsError::Upload(_) => ErrorCode::MalformedFrame,
            ObjectsError::SignatureInvalid => ErrorCode::SignatureInvalid,
            ObjectsError::UrlExpired { .. } => ErrorCode::UrlExpired,
            ObjectsError::Conflict(_) => ErrorCode::Conflict,
            ObjectsError::Backend(_) => ErrorCode::Unavailable,
            ObjectsError::Config(_) => ErrorCode::Internal,
        }
    }
}

impl From<std::io::Error> for ObjectsError {
    fn from(e: std::io::Error) -> Self {
        ObjectsError::Backend(e.to_string())
    }
}
