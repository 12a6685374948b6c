//! The system's randomness, with failure as an error instead of a panic.

use rand_core::{OsRng, RngCore};

use crate::error::TrustError;

/// Fills `buf` from the operating system's CSPRNG.
pub(crate) fn fill(buf: &mut [u8]) -> Result<(), TrustError> {
    OsRng
        .try_fill_bytes(buf)
        .map_err(|e| TrustError::crypto(format!("system randomness unavailable: {e}")))
}

/// `N` random bytes. Callers holding secrets wrap the result in `Zeroizing`.
pub(crate) fn array<const N: usize>() -> Result<[u8; N], TrustError> {
    let mut b = [0u8; N];
    fill(&mut b)?;
    Ok(b)
}
