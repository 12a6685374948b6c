//! The agent's one key (`AgentPub`): it signs every envelope the agent sends, proves
//! possession during discovery and activation, and is the key of the device's TLS
//! certificate, so one key identifies the PC everywhere.

use std::fmt;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer, SigningKey};
use rand_core::{CryptoRng, RngCore};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tether_proto::validate::b64url_encode;
use tether_proto::{EnvelopeSigner, KeyId};
use zeroize::Zeroizing;

use crate::error::AgentError;

/// The agent's Ed25519 key and its PKCS#8 encoding.
pub struct AgentIdentity {
    key: SigningKey,
    pkcs8: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for AgentIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentIdentity")
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

impl AgentIdentity {
    /// A new key from `rng` (the OS generator in the agent, a seeded one in tests).
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Result<Self, AgentError> {
        Self::from_key(SigningKey::generate(rng))
    }

    /// Loads a key stored with [`AgentIdentity::pkcs8_der`].
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, AgentError> {
        let key = SigningKey::from_pkcs8_der(der)
            .map_err(|e| AgentError::Crypto(format!("the agent key is not Ed25519 PKCS#8: {e}")))?;
        Self::from_key(key)
    }

    fn from_key(key: SigningKey) -> Result<Self, AgentError> {
        let doc = key
            .to_pkcs8_der()
            .map_err(|e| AgentError::Crypto(format!("encoding the agent key: {e}")))?;
        Ok(Self {
            key,
            pkcs8: Zeroizing::new(doc.as_bytes().to_vec()),
        })
    }

    /// The private key as PKCS#8 DER (what is stored, and what TLS uses).
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The raw public key.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// `AgentPub` as the protocol writes it: unpadded base64url of the 32 bytes.
    pub fn agent_pub(&self) -> String {
        b64url_encode(&self.public_bytes())
    }

    /// The key's id, [`KeyId::for_ed25519`].
    pub fn kid(&self) -> KeyId {
        KeyId::for_ed25519(&self.public_bytes())
    }

    /// A signer for envelopes, under [`AgentIdentity::kid`].
    pub fn envelope_signer(&self) -> EnvelopeSigner {
        EnvelopeSigner::new(self.key.clone())
    }

    /// An Ed25519 signature over `msg`, unpadded base64url (the discovery and activation
    /// proofs).
    pub fn sign_b64(&self, msg: &[u8]) -> String {
        b64url_encode(&self.key.sign(msg).to_bytes())
    }

    /// The key for the TLS client certificate.
    pub fn tls_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.to_vec()))
    }

    /// A PKCS#10 request (PEM) for a certificate on this same key. The CA ignores the
    /// subject; the common name only helps a human reading the request.
    pub fn csr_pem(&self, common_name: &str) -> Result<String, AgentError> {
        let crypto = |e: rcgen::Error| AgentError::Crypto(format!("building the CSR: {e}"));
        let pkcs8 = PrivatePkcs8KeyDer::from(self.pkcs8_der());
        let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
            .map_err(crypto)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(crypto)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let csr = params.serialize_request(&key_pair).map_err(crypto)?;
        csr.pem().map_err(crypto)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use rand_core::OsRng;
    use x509_parser::prelude::FromDer;

    use super::*;

    #[test]
    fn pkcs8_round_trip_keeps_the_key() {
        let id = AgentIdentity::generate(&mut OsRng).unwrap();
        let again = AgentIdentity::from_pkcs8_der(id.pkcs8_der()).unwrap();
        assert_eq!(id.public_bytes(), again.public_bytes());
        assert_eq!(id.kid(), again.kid());
        assert_eq!(id.kid(), KeyId::for_ed25519(&id.public_bytes()));
    }

    #[test]
    fn csr_carries_the_agent_key_and_verifies() {
        let id = AgentIdentity::generate(&mut OsRng).unwrap();
        let pem = id.csr_pem("office-pc").unwrap();
        assert!(pem.contains("BEGIN CERTIFICATE REQUEST"));
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&p.contents)
                .unwrap();
        let key = &csr
            .certification_request_info
            .subject_pki
            .subject_public_key
            .data;
        assert_eq!(key.as_ref(), id.public_bytes().as_slice());
        assert_eq!(
            csr.signature_algorithm.algorithm,
            x509_parser::oid_registry::OID_SIG_ED25519
        );
        csr.verify_signature()
            .expect("the CSR is signed by its own key");
    }

    #[test]
    fn tls_accepts_the_key_with_a_certificate_for_it() {
        // rustls checks that the client key matches the certificate's key.
        let id = AgentIdentity::generate(&mut OsRng).unwrap();
        let pkcs8 = PrivatePkcs8KeyDer::from(id.pkcs8_der());
        let kp =
            rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["device".to_owned()])
            .unwrap()
            .self_signed(&kp)
            .unwrap();
        let identity = tether_client::ClientIdentity {
            chain: vec![cert.der().clone()],
            key: id.tls_key(),
        };
        tether_client::tls_config(&cert.pem(), Some(identity)).expect("rustls takes the key");
    }
}
