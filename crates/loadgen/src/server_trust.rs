//! The server's certificate chain, verified once per chain and minute by the whole load
//! generator process instead of once per simulated agent.
//!
//! Each simulated agent stands in for a PC of its own, where checking the server's chain
//! costs that PC's CPU, not the server's. Here thousands of them share the server's two
//! cores, and the chain's check (the intermediate's P-384 signature from the root, which
//! ring does without assembly here) was a quarter of a core during a reconnect storm of
//! 10,000: CPU the server under test did not get. So the process remembers a chain it
//! verified against the root (with the same server name) and accepts it again without
//! the signature checks for [`REVERIFY_AFTER`]; then it verifies it afresh (expiry
//! included). Every handshake still checks the server's TLS 1.3 `CertificateVerify`
//! signature with the key of the (remembered) leaf certificate: a server without that
//! key cannot finish a handshake. What the server does for each handshake is unchanged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::LoadError;

/// How long a verified chain is accepted again without its signatures checked.
pub const REVERIFY_AFTER: Duration = Duration::from_secs(60);
/// How many chains are remembered (then the memory starts afresh).
const MAX_REMEMBERED: usize = 64;

/// A chain as remembered: the server name, the leaf and the intermediates, in order.
type ChainKey = (String, Vec<Vec<u8>>);

/// The load generator's verifier of the server's certificate (see the module docs).
#[derive(Debug)]
pub struct SharedServerVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    verified: Mutex<HashMap<ChainKey, Instant>>,
}

impl SharedServerVerifier {
    /// A verifier trusting only the root CA `ca_pem`.
    pub fn new(ca_pem: &str) -> Result<Arc<Self>, LoadError> {
        let der = tether_client::first_cert_der(ca_pem)?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(der))
            .map_err(|e| LoadError::Format(format!("the server's CA certificate: {e}")))?;
        let webpki = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| LoadError::Format(format!("the server's CA certificate: {e}")))?;
        Ok(Arc::new(Self {
            webpki,
            verified: Mutex::new(HashMap::new()),
        }))
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, HashMap<ChainKey, Instant>> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn chain_key(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
) -> ChainKey {
    let mut chain = Vec::with_capacity(intermediates.len().saturating_add(1));
    chain.push(end_entity.to_vec());
    chain.extend(intermediates.iter().map(|c| c.to_vec()));
    (server_name.to_str().into_owned(), chain)
}

impl ServerCertVerifier for SharedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = chain_key(end_entity, intermediates, server_name);
        if let Some(at) = self.remembered().get(&key)
            && at.elapsed() < REVERIFY_AFTER
        {
            return Ok(ServerCertVerified::assertion());
        }
        let verified = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let mut remembered = self.remembered();
        if remembered.len() >= MAX_REMEMBERED {
            remembered.clear();
        }
        remembered.insert(key, Instant::now());
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// A TLS 1.3 client configuration that verifies the server with `verifier` and presents
/// `identity`.
pub fn client_config(
    verifier: Arc<SharedServerVerifier>,
    identity: tether_client::ClientIdentity,
) -> Result<rustls::ClientConfig, LoadError> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| LoadError::Format(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(identity.chain, identity.key)
        .map_err(|e| LoadError::Format(format!("client certificate: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA, a server certificate for `localhost` it issued, and another CA.
    fn pki() -> (String, CertificateDer<'static>, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let other_key = rcgen::KeyPair::generate().unwrap();
        let mut other_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        other_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let other = other_params.self_signed(&other_key).unwrap();
        (ca.pem(), leaf.der().clone(), other.pem())
    }

    fn name(n: &str) -> ServerName<'static> {
        ServerName::try_from(n.to_owned()).unwrap()
    }

    #[test]
    fn a_chain_is_verified_then_remembered_and_a_foreign_one_never_is() {
        let (ca, leaf, other) = pki();
        let v = SharedServerVerifier::new(&ca).unwrap();
        let now = UnixTime::now();
        v.verify_server_cert(&leaf, &[], &name("localhost"), &[], now)
            .unwrap();
        assert_eq!(v.remembered().len(), 1);
        // Again: from memory.
        v.verify_server_cert(&leaf, &[], &name("localhost"), &[], now)
            .unwrap();
        // Another name is not the remembered chain: verified, and refused.
        assert!(
            v.verify_server_cert(&leaf, &[], &name("example.org"), &[], now)
                .is_err()
        );
        // A verifier trusting another root refuses the same chain.
        let foreign = SharedServerVerifier::new(&other).unwrap();
        assert!(
            foreign
                .verify_server_cert(&leaf, &[], &name("localhost"), &[], now)
                .is_err()
        );
        assert!(foreign.remembered().is_empty());
    }

    #[test]
    fn a_remembered_chain_past_its_minute_is_verified_again() {
        let (ca, leaf, _) = pki();
        let v = SharedServerVerifier::new(&ca).unwrap();
        let key = chain_key(&leaf, &[], &name("localhost"));
        // Remembered long ago: the expired certificate check below must run again.
        let long_ago = Instant::now()
            .checked_sub(REVERIFY_AFTER.saturating_mul(2))
            .unwrap();
        v.remembered().insert(key.clone(), long_ago);
        // Verified "in 1970", before rcgen's certificates are valid (from 1975): checked
        // afresh against that time, and refused.
        let early = UnixTime::since_unix_epoch(Duration::ZERO);
        assert!(
            v.verify_server_cert(&leaf, &[], &name("localhost"), &[], early)
                .is_err()
        );
        let fresh = v.remembered().get(&key).copied();
        assert_eq!(
            fresh,
            Some(long_ago),
            "a failed check remembers nothing new"
        );
    }
}
