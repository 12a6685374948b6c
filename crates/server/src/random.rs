//! Randomness from the operating system.

use rand_core::{OsRng, RngCore};

/// `N` random bytes.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

/// A random id with a prefix: `prefix_` followed by 32 lowercase hex digits (128 bits).
pub fn id(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(bytes::<16>()))
}

/// A random secret token: 32 bytes, unpadded base64url.
pub fn token() -> String {
    tether_proto::validate::b64url_encode(&bytes::<32>())
}
