//! Where secrets rest: a [`Keystore`] holds the key-encryption key and stores named blobs.
//!
//! A keystore does two things. It seals and opens bytes under its key-encryption key
//! ([`Keystore::seal`], [`Keystore::open`], see [`crate::seal`]), so the KEK never leaves
//! it, and it stores small named blobs atomically ([`Keystore::write`], [`Keystore::read`]).
//! Secrets are stored only sealed ([`Keystore::store_sealed`]); public material (CA
//! certificates) may be stored as is.
//!
//! [`FileKeystore`] is the default: a directory with a 32-byte `kek.bin` (mode 0600 on
//! Unix) and one file per blob. [`MemoryKeystore`] keeps everything in memory, for tests
//! and tools. Other backends (an OS key store, a TPM, a KMS) implement the same trait.

use std::fmt;

use zeroize::Zeroizing;

use crate::error::TrustError;

mod file;
mod memory;

pub use file::{FileKeystore, KEK_FILE};
pub use memory::MemoryKeystore;

/// The longest blob name.
pub const MAX_NAME_LEN: usize = 100;

/// Holds a key-encryption key and stores named blobs.
///
/// Names are 1 to [`MAX_NAME_LEN`] bytes of `a-z 0-9 . _ -`, starting with a letter or a
/// digit; every implementation rejects other names with [`TrustError::InvalidInput`], so a
/// name can be used as a file name as is.
pub trait Keystore: Send + Sync + fmt::Debug {
    /// Seals `plaintext` under the keystore's KEK for the purpose `label`.
    fn seal(&self, label: &str, plaintext: &[u8]) -> Result<Vec<u8>, TrustError>;

    /// Opens a blob sealed by [`Keystore::seal`] with the same `label`. Failure is
    /// [`TrustError::SealBroken`].
    fn open(&self, label: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, TrustError>;

    /// Stores `bytes` under `name`, replacing any previous blob atomically: a reader sees
    /// the old bytes or the new ones, never a mix.
    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), TrustError>;

    /// The bytes stored under `name`, or `None` if there are none.
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, TrustError>;

    /// Seals `plaintext` for `label` and stores it under `name`.
    fn store_sealed(&self, name: &str, label: &str, plaintext: &[u8]) -> Result<(), TrustError> {
        let sealed = self.seal(label, plaintext)?;
        self.write(name, &sealed)
    }

    /// Reads the blob under `name` and opens it for `label`; `None` if there is none.
    fn load_sealed(
        &self,
        name: &str,
        label: &str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, TrustError> {
        match self.read(name)? {
            Some(sealed) => self.open(label, &sealed).map(Some),
            None => Ok(None),
        }
    }
}

/// Checks a blob name (see [`Keystore`]).
pub(crate) fn check_name(name: &str) -> Result<(), TrustError> {
    let ok = (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
        && name != KEK_FILE;
    if ok {
        Ok(())
    } else {
        Err(TrustError::input(
            "blob name",
            format!("{name:?} is not 1-{MAX_NAME_LEN} of a-z 0-9 . _ - (or is reserved)"),
        ))
    }
}

#[cfg(test)]
mod tests;
