//! The bus's one error type.

use tether_proto::ErrorCode;

/// Why a bus operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    /// The backend could not be reached or refused the operation.
    #[error("bus backend error: {0}")]
    Backend(String),
    /// A name or argument is not acceptable (empty stream name, zero window, …).
    #[error("invalid bus argument: {0}")]
    Invalid(String),
    /// Stored data could not be decoded.
    #[error("bus data is invalid: {0}")]
    Corrupt(String),
}

impl BusError {
    /// The stable code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            BusError::Backend(_) => ErrorCode::Unavailable,
            BusError::Invalid(_) | BusError::Corrupt(_) => ErrorCode::Internal,
        }
    }
}
