//! Reading an agent's PKCS#10 certificate signing request.
//!
//! Only the request's public key is used: the subject, extensions and attributes it asks
//! for are ignored, because the CA decides what a device certificate says. The key must be
//! ECDSA P-256 (signed with ECDSA-SHA256) or Ed25519, and the request's signature must
//! verify under it, which proves the requester holds the private key.
//!
//! Checks, in order: size; DER structure with nothing after it; key type; signature
//! algorithm; our own signature check with x509-parser; then rcgen's
//! [`CertificateSigningRequestParams::from_der`], which parses the request again and
//! verifies its signature once more (rcgen ≥ 0.14 does; we do not rely on it alone).

use rcgen::CertificateSigningRequestParams;
use rustls_pki_types::CertificateSigningRequestDer;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::error::{CsrRejection, TrustError};

/// The largest CSR read; a P-256 or Ed25519 request is a few hundred bytes.
pub const MAX_CSR_BYTES: usize = 16 * 1024;

/// The key types a device certificate may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceKeyType {
    /// ECDSA on NIST P-256.
    EcdsaP256,
    /// Ed25519.
    Ed25519,
}

/// A request that passed every check: its key, ready to be certified.
pub(crate) struct CheckedCsr {
    pub(crate) public_key: rcgen::PublicKey,
}

fn reject(r: CsrRejection) -> TrustError {
    TrustError::CsrInvalid(r)
}

pub(crate) fn check(csr_der: &[u8]) -> Result<CheckedCsr, TrustError> {
    if csr_der.len() > MAX_CSR_BYTES {
        return Err(reject(CsrRejection::TooLarge {
            len: csr_der.len(),
            limit: MAX_CSR_BYTES,
        }));
    }
    let (rest, req) =
        X509CertificationRequest::from_der(csr_der).map_err(|_| reject(CsrRejection::Malformed))?;
    if !rest.is_empty() {
        return Err(reject(CsrRejection::Malformed));
    }
    let spki = &req.certification_request_info.subject_pki;
    let key_type = key_type(spki)?;

    let sig_alg = &req.signature_algorithm;
    let sig_alg_ok = match key_type {
        DeviceKeyType::EcdsaP256 => sig_alg.algorithm == OID_SIG_ECDSA_WITH_SHA256,
        DeviceKeyType::Ed25519 => sig_alg.algorithm == OID_SIG_ED25519,
    } && sig_alg.parameters.is_none();
    if !sig_alg_ok {
        return Err(reject(CsrRejection::UnsupportedSignatureAlgorithm));
    }

    req.verify_signature()
        .map_err(|_| reject(CsrRejection::BadSignature))?;

    let params =
        CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
            .map_err(|e| match e {
                rcgen::Error::InvalidCertificationRequestSignature => {
                    reject(CsrRejection::BadSignature)
                }
                _ => reject(CsrRejection::Malformed),
            })?;
    if rcgen::PublicKeyData::der_bytes(&params.public_key) != &*spki.subject_public_key.data {
        // Both parsers read the same bytes; a difference means one of them is wrong.
        return Err(reject(CsrRejection::Malformed));
    }
    Ok(CheckedCsr {
        public_key: params.public_key,
    })
}

fn key_type(spki: &SubjectPublicKeyInfo<'_>) -> Result<DeviceKeyType, TrustError> {
    let alg = &spki.algorithm;
    let key_len = spki.subject_public_key.data.len();
    if alg.algorithm == OID_SIG_ED25519 {
        if alg.parameters.is_some() || key_len != 32 {
            return Err(reject(CsrRejection::Malformed));
        }
        return Ok(DeviceKeyType::Ed25519);
    }
    if alg.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = alg.parameters.as_ref().and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 => {
                // Uncompressed point only: 0x04 || x || y.
                if key_len != 65 || spki.subject_public_key.data.first() != Some(&0x04) {
                    return Err(reject(CsrRejection::Malformed));
                }
                Ok(DeviceKeyType::EcdsaP256)
            }
            Some(c) if c == OID_NIST_EC_P384 => {
                Err(reject(CsrRejection::UnsupportedKey("ECDSA P-384".into())))
            }
            Some(c) => Err(reject(CsrRejection::UnsupportedKey(format!(
                "ECDSA on curve {c}"
            )))),
            None => Err(reject(CsrRejection::Malformed)),
        };
    }
    if alg.algorithm == OID_PKCS1_RSAENCRYPTION {
        return Err(reject(CsrRejection::UnsupportedKey("RSA".into())));
    }
    Err(reject(CsrRejection::UnsupportedKey(format!(
        "OID {}",
        alg.algorithm
    ))))
}
