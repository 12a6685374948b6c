//! Password hashing: Argon2id (the crate's defaults: 19 MiB, 2 passes, 1 lane, v1.3) in
//! PHC string form. Hashing runs on the blocking pool: it is deliberately slow.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand_core::OsRng;

use crate::error::ApiError;

/// Hashes a password into a PHC string.
pub async fn hash(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)?
}

/// Checks a password against a PHC string. A malformed stored hash is an internal error.
pub async fn verify(password: String, phc: String) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&phc).map_err(ApiError::internal)?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(ApiError::internal)?
}

static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

/// A PHC hash of a random password (made once per process), verified against when the
/// email is unknown so that a login for an unknown account costs one verification, like
/// one for a known account.
pub async fn dummy_hash() -> Result<String, ApiError> {
    DUMMY
        .get_or_try_init(|| hash(crate::random::token()))
        .await
        .cloned()
}
