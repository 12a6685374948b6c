//! The agent's randomness: the OS generator. Logic that needs a random value takes it
//! as an argument (see `backoff`), so only the edges call in here.

use rand_core::{OsRng, RngCore};

/// `N` random bytes from the OS.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

/// A random `u32` from the OS.
pub fn u32() -> u32 {
    OsRng.next_u32()
}
