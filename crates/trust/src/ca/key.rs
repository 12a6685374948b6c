//! The CA's own private keys, wrapped so they are zeroized when dropped.

use std::fmt;

use rcgen::{KeyPair, PublicKeyData, SignatureAlgorithm, SigningKey};
use rustls_pki_types::PrivatePkcs8KeyDer;
use zeroize::{Zeroize, Zeroizing};

use crate::error::TrustError;

/// An rcgen key pair whose PKCS#8 copy is wiped on drop. (ring keeps its own expanded
/// copy, which it does not wipe; that is a limit of ring.)
pub(crate) struct CaKey(KeyPair);

impl CaKey {
    pub(crate) fn generate(alg: &'static SignatureAlgorithm) -> Result<Self, TrustError> {
        KeyPair::generate_for(alg)
            .map(Self)
            .map_err(|e| TrustError::crypto(format!("key generation failed: {e}")))
    }

    pub(crate) fn from_pkcs8(
        der: &[u8],
        alg: &'static SignatureAlgorithm,
    ) -> Result<Self, TrustError> {
        KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(der), alg)
            .map(Self)
            .map_err(|e| TrustError::corrupt("CA private key", e))
    }

    /// The PKCS#8 DER of the private key, in a buffer wiped on drop.
    pub(crate) fn pkcs8(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.serialize_der())
    }

    /// The raw public key (the SubjectPublicKeyInfo's BIT STRING content).
    pub(crate) fn public_raw(&self) -> &[u8] {
        self.0.public_key_raw()
    }
}

impl Drop for CaKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for CaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CaKey(<redacted>)")
    }
}

impl PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        PublicKeyData::algorithm(&self.0)
    }
}

impl SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.sign(msg)
    }
}
