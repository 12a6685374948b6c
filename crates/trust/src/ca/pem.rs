//! PEM armour for the DER we emit and read back.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};

use crate::error::TrustError;

/// `-----BEGIN {label}-----`, base64 in 64-column lines, `-----END {label}-----`, with LF
/// line endings.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out =
        String::with_capacity(b64.len().saturating_add(b64.len() / 64).saturating_add(64));
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// The first `CERTIFICATE` in a PEM text.
pub(crate) fn decode_certificate(pem: &[u8]) -> Result<CertificateDer<'static>, TrustError> {
    CertificateDer::from_pem_slice(pem)
        .map_err(|e| TrustError::CertificateInvalid(format!("not a PEM certificate: {e}")))
}

/// The first `X509 CRL` in a PEM text.
pub(crate) fn decode_crl(pem: &[u8]) -> Result<CertificateRevocationListDer<'static>, TrustError> {
    CertificateRevocationListDer::from_pem_slice(pem)
        .map_err(|e| TrustError::CertificateInvalid(format!("not a PEM CRL: {e}")))
}
