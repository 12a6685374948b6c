//! The store's one error type.

use tether_proto::ErrorCode;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key already exists.
    #[error("already exists: {0}")]
    Conflict(String),
    /// The row to change does not exist, or a new row refers to one (a user) that does not.
    #[error("not found: {0}")]
    NotFound(String),
    /// The database could not be reached or answered with an error.
    #[error("database error: {0}")]
    Database(String),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// A stored value could not be decoded (corruption or a newer schema).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// The stable code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::Conflict(_) => ErrorCode::Conflict,
            StoreError::NotFound(_) => ErrorCode::NotFound,
            StoreError::Database(_) => ErrorCode::Unavailable,
            StoreError::Migration(_) | StoreError::Corrupt(_) => ErrorCode::Internal,
        }
    }
}
