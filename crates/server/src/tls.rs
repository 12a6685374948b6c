//! TLS for the one HTTPS/WSS port: TLS 1.3 only, a server certificate from our own
//! intermediate, and client certificates requested (not required) so that paired agents
//! authenticate with mTLS while unpaired agents, phones and the CLI can still reach the
//! discovery, pairing and account routes. Which routes need a client certificate is
//! decided per route from the verified certificate attached to each connection.
//!
//! The CRL is reloadable: revoking a device rebuilds the client verifier so the next
//! handshake with that certificate fails.
//!
//! A chain verified once is not verified again while the same CRLs are in force: each
//! CRL generation remembers the SHA-256 of the chains it accepted (and their validity
//! window, checked at every handshake). The chain's signatures (P-384 here) were most of
//! a reconnect's cost on the server; the handshake's own signature, which proves the
//! client holds the certificate's key, is still checked every time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("TLS setup failed: {0}")]
pub struct TlsError(pub String);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client-certificate verifier whose CRLs can be replaced while the server runs.
#[derive(Debug)]
pub struct ReloadableClientVerifier {
    roots: Arc<RootCertStore>,
    hints: Vec<DistinguishedName>,
    inner: RwLock<Arc<Generation>>,
}

/// How many verified chains one CRL generation remembers (then it starts afresh).
const VERIFIED_KEPT: usize = 65_536;

/// The verifier of one set of CRLs, and the chains it accepted: chain digest → the
/// Unix seconds from and until which every certificate of the chain is valid.
#[derive(Debug)]
struct Generation {
    webpki: Arc<dyn ClientCertVerifier>,
    /// What its CRLs revoke ([`revoked_digest`]): a reload that revokes the same keeps
    /// the chains verified so far.
    revoked: [u8; 32],
    verified: Mutex<HashMap<[u8; 32], (i64, i64)>>,
}

impl Generation {
    /// A generation for `crls`; it starts with what `previous` verified when that
    /// revoked the same certificates.
    fn new(
        roots: &Arc<RootCertStore>,
        crls: Vec<CertificateRevocationListDer<'static>>,
        previous: Option<&Generation>,
    ) -> Result<Arc<Self>, TlsError> {
        let revoked = revoked_digest(&crls);
        let verified = match previous {
            Some(p) if p.revoked == revoked => p.verified().clone(),
            _ => HashMap::new(),
        };
        Ok(Arc::new(Self {
            webpki: build(roots, crls)?,
            revoked,
            verified: Mutex::new(verified),
        }))
    }

    fn verified(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (i64, i64)>> {
        // A map of facts; a panicking holder cannot leave half of one.
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The SHA-256 of what a set of CRLs revokes: each CRL's issuer and its revoked serial
/// numbers, sorted. The periodic reload signs a new CRL each time (new dates and number)
/// over the same revocations; those compare equal. A CRL that does not parse counts by
/// its bytes (so it never compares equal to a different one).
fn revoked_digest(crls: &[CertificateRevocationListDer<'_>]) -> [u8; 32] {
    use sha2::Digest;
    use x509_parser::prelude::FromDer;
    let mut h = sha2::Sha256::new();
    for der in crls {
        match x509_parser::revocation_list::CertificateRevocationList::from_der(der.as_ref()) {
            Ok((_, crl)) => {
                let issuer = crl.issuer().as_raw();
                h.update((issuer.len() as u64).to_be_bytes());
                h.update(issuer);
                let mut serials: Vec<&[u8]> = crl
                    .iter_revoked_certificates()
                    .map(|r| r.raw_serial())
                    .collect();
                serials.sort_unstable();
                h.update((serials.len() as u64).to_be_bytes());
                for serial in serials {
                    h.update((serial.len() as u64).to_be_bytes());
                    h.update(serial);
                }
            }
            Err(_) => {
                h.update(u64::MAX.to_be_bytes());
                h.update(der.as_ref());
            }
        }
    }
    h.finalize().into()
}

/// The SHA-256 of a chain, each certificate length-prefixed.
fn chain_digest(end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for der in std::iter::once(end_entity).chain(intermediates) {
        h.update((der.len() as u64).to_be_bytes());
        h.update(der.as_ref());
    }
    h.finalize().into()
}

/// When every certificate of the chain is valid: (latest not-before, earliest
/// not-after), in Unix seconds; `None` if one does not parse.
fn validity(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Option<(i64, i64)> {
    use x509_parser::prelude::FromDer;
    let mut window = (i64::MIN, i64::MAX);
    for der in std::iter::once(end_entity).chain(intermediates) {
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der.as_ref()).ok()?;
        let v = cert.validity();
        window.0 = window.0.max(v.not_before.timestamp());
        window.1 = window.1.min(v.not_after.timestamp());
    }
    Some(window)
}

impl ReloadableClientVerifier {
    /// A verifier trusting `root` and refusing what `crls` revoke.
    pub fn new(
        root: CertificateDer<'static>,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        roots
            .add(root)
            .map_err(|e| TlsError(format!("root certificate: {e}")))?;
        let roots = Arc::new(roots);
        let inner = Generation::new(&roots, crls, None)?;
        let hints = inner.webpki.root_hint_subjects().to_vec();
        Ok(Self {
            roots,
            hints,
            inner: RwLock::new(inner),
        })
    }

    /// Replaces the CRLs; later handshakes use them. When they revoke exactly what the
    /// current ones do (the periodic reload, most of the time), the chains verified so
    /// far stay verified; otherwise every chain is verified again under the new CRLs.
    pub fn reload(&self, crls: Vec<CertificateRevocationListDer<'static>>) -> Result<(), TlsError> {
        let previous = self.current().ok();
        let next = Generation::new(&self.roots, crls, previous.as_deref())?;
        let mut guard = self
            .inner
            .write()
            .map_err(|_| TlsError("verifier lock poisoned".into()))?;
        *guard = next;
        Ok(())
    }

    fn current(&self) -> Result<Arc<Generation>, rustls::Error> {
        self.inner
            .read()
            .map(|g| Arc::clone(&g))
            .map_err(|_| rustls::Error::General("verifier lock poisoned".into()))
    }
}

fn build(
    roots: &Arc<RootCertStore>,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    WebPkiClientVerifier::builder_with_provider(Arc::clone(roots), provider())
        .with_crls(crls)
        // Only the intermediate publishes a CRL (the root's key stays sealed offline), so
        // revocation is checked for the device certificate; the intermediate itself is
        // replaced, not revoked.
        .only_check_end_entity_revocation()
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError(format!("client verifier: {e}")))
}

impl ClientCertVerifier for ReloadableClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let generation = self.current()?;
        let digest = chain_digest(end_entity, intermediates);
        let at = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if let Some((from, until)) = generation.verified().get(&digest).copied()
            && from <= at
            && at <= until
        {
            return Ok(ClientCertVerified::assertion());
        }
        let verified = generation
            .webpki
            .verify_client_cert(end_entity, intermediates, now)?;
        if let Some(window) = validity(end_entity, intermediates) {
            let mut known = generation.verified();
            if known.len() >= VERIFIED_KEPT {
                known.clear();
            }
            known.insert(digest, window);
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current()?
            .webpki
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current()?
            .webpki
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current()
            .map(|v| v.webpki.supported_verify_schemes())
            .unwrap_or_default()
    }
}

/// The server's TLS configuration: TLS 1.3 only, HTTP/1.1 (WebSocket upgrades) and h2.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_verifier: Arc<ReloadableClientVerifier>,
) -> Result<rustls::ServerConfig, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError(e.to_string()))?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError(format!("server certificate: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}
