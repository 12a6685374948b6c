//! A keystore in memory: for tests and short-lived tools, never for a server's real keys
//! (they would vanish with the process).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use zeroize::Zeroizing;

use super::{Keystore, check_name};
use crate::error::TrustError;
use crate::seal::{self, Kek};

/// Blobs in a map, sealed under a KEK that lives as long as the value.
#[derive(Debug)]
pub struct MemoryKeystore {
    kek: Kek,
    blobs: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryKeystore {
    /// An empty keystore with a fresh random KEK.
    pub fn new() -> Result<Self, TrustError> {
        Ok(Self::with_kek(Kek::generate()?))
    }

    /// An empty keystore using the given KEK.
    pub fn with_kek(kek: Kek) -> Self {
        Self {
            kek,
            blobs: Mutex::new(HashMap::new()),
        }
    }

    /// The names stored, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .blobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }
}

impl Keystore for MemoryKeystore {
    fn seal(&self, label: &str, plaintext: &[u8]) -> Result<Vec<u8>, TrustError> {
        seal::seal(&self.kek, label, plaintext)
    }

    fn open(&self, label: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, TrustError> {
        seal::open(&self.kek, label, sealed)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), TrustError> {
        check_name(name)?;
        // A map insert cannot be left half-done, so a poisoned lock is still consistent.
        self.blobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), bytes.to_vec());
        Ok(())
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, TrustError> {
        check_name(name)?;
        Ok(self
            .blobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned())
    }
}
