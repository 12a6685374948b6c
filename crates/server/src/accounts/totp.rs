//! TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30 s steps, ±1 step of skew). The secret is
//! sealed with the keystore's key before it is stored. A code is accepted once: the store
//! records the last step used and refuses that step and any earlier one.

use tether_proto::UnixMillis;
use totp_rs::{Builder, Totp};

use crate::error::ApiError;

/// Seal label for TOTP secrets.
pub const SEAL_LABEL: &str = "tether/totp-secret/v1";

/// Secret length in bytes (160 bits, RFC 4226's recommendation).
pub const SECRET_LEN: usize = 20;

/// A fresh random secret.
pub fn new_secret() -> [u8; SECRET_LEN] {
    crate::random::bytes::<SECRET_LEN>()
}

fn totp(secret: &[u8], account: &str) -> Result<Totp, ApiError> {
    Builder::new()
        .with_secret(secret)
        .with_account_name(account)
        .with_issuer(Some("Tether"))
        .build()
        .map_err(ApiError::internal)
}

/// The `otpauth://` URL an authenticator app scans.
pub fn otpauth_url(secret: &[u8], account: &str) -> Result<String, ApiError> {
    totp(secret, account)?.to_url().map_err(ApiError::internal)
}

/// The base32 form of the secret, for typing into an authenticator app.
pub fn base32(secret: &[u8]) -> String {
    totp_rs::Secret::from(secret).to_base32()
}

/// The step a code is valid for at `now`, if it is valid at all.
pub fn matching_step(
    secret: &[u8],
    account: &str,
    code: &str,
    now: UnixMillis,
) -> Result<Option<u64>, ApiError> {
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    Ok(totp(secret, account)?.check(code, now.as_secs()))
}

/// The current code (for tests and the CLI's own checks).
pub fn code_at(secret: &[u8], account: &str, now: UnixMillis) -> Result<String, ApiError> {
    Ok(totp(secret, account)?.generate(now.as_secs()).to_string())
}
