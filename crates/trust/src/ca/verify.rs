//! Chain verification with rustls-webpki, usable without any CA private key.
//!
//! A [`CaCertificates`] holds the root (the only trust anchor) and the intermediate. It
//! verifies a device certificate for TLS client authentication, with revocation checked
//! against CRLs, and a server certificate for TLS server authentication and a name.
//! Accepted signature algorithms are exactly the two this CA signs with: ECDSA P-384 with
//! SHA-384 (root → intermediate) and ECDSA P-256 with SHA-256 (intermediate → leaves and
//! CRLs, and root → intermediate under an imported P-256 root).

use rustls_pki_types::{CertificateDer, ServerName, SignatureVerificationAlgorithm};
use tether_proto::UnixMillis;
use webpki::{
    BorrowedCertRevocationList, CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::revocation::Crl;
use super::serial::CertSerial;
use super::{pem, time};
use crate::error::TrustError;

static SIGNATURE_ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
];

/// What a verified device certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDevice {
    /// The subject CN: the device id the CA certified.
    pub device_id: String,
    /// The certificate's serial.
    pub serial: CertSerial,
    /// The end of its validity.
    pub not_after: UnixMillis,
}

/// The root and intermediate certificates: everything needed to verify what the CA issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCertificates {
    root: CertificateDer<'static>,
    intermediate: CertificateDer<'static>,
}

impl CaCertificates {
    /// From DER. Checks that both are CA certificates, that the root is self-signed and
    /// that the root signed the intermediate, naming it byte for byte as verifiers match
    /// names.
    pub fn from_der(root: &[u8], intermediate: &[u8]) -> Result<Self, TrustError> {
        let r = parse(root, "root")?;
        let i = parse(intermediate, "intermediate")?;
        let is_ca = |c: &X509Certificate<'_>| {
            c.basic_constraints()
                .ok()
                .flatten()
                .is_some_and(|bc| bc.value.ca)
        };
        if !is_ca(&r) || !is_ca(&i) {
            return Err(TrustError::CertificateInvalid(
                "root or intermediate is not a CA".into(),
            ));
        }
        r.verify_signature(None)
            .map_err(|_| TrustError::CertificateInvalid("the root is not self-signed".into()))?;
        if i.issuer().as_raw() != r.subject().as_raw() {
            return Err(TrustError::CertificateInvalid(
                "the intermediate's issuer is not the root's subject".into(),
            ));
        }
        i.verify_signature(Some(r.public_key())).map_err(|_| {
            TrustError::CertificateInvalid("the intermediate is not signed by the root".into())
        })?;
        Ok(Self {
            root: CertificateDer::from(root.to_vec()),
            intermediate: CertificateDer::from(intermediate.to_vec()),
        })
    }

    /// From PEM texts (the first `CERTIFICATE` block of each).
    pub fn from_pem(root: &str, intermediate: &str) -> Result<Self, TrustError> {
        let r = pem::decode_certificate(root.as_bytes())?;
        let i = pem::decode_certificate(intermediate.as_bytes())?;
        Self::from_der(&r, &i)
    }

    /// The root certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root
    }

    /// The root certificate, PEM: what agents and clients pin as their trust anchor.
    pub fn root_pem(&self) -> String {
        pem::encode("CERTIFICATE", &self.root)
    }

    /// The intermediate certificate, DER.
    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate
    }

    /// The intermediate certificate, PEM: sent after a leaf in every TLS chain.
    pub fn intermediate_pem(&self) -> String {
        pem::encode("CERTIFICATE", &self.intermediate)
    }

    /// Verifies a device certificate at `now`: it must chain through the intermediate to
    /// the root, be within its validity, allow TLS client authentication, and be covered
    /// by a current CRL of the intermediate in `crls` that does not list it.
    ///
    /// At least one CRL is required: with none the revocation status is unknown and the
    /// answer is [`TrustError::CertificateInvalid`] (fail closed). A CRL past its
    /// `nextUpdate` is not accepted. A listed serial is [`TrustError::CertificateRevoked`];
    /// every other failure is [`TrustError::CertificateInvalid`].
    pub fn verify_device_chain(
        &self,
        cert_der: &[u8],
        now: UnixMillis,
        crls: &[Crl],
    ) -> Result<VerifiedDevice, TrustError> {
        let borrowed = crls
            .iter()
            .map(|c| BorrowedCertRevocationList::from_der(c.der()).map(CertRevocationList::from))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TrustError::CertificateInvalid(format!("unreadable CRL: {e}")))?;
        let refs: Vec<&CertRevocationList<'_>> = borrowed.iter().collect();
        let revocation = RevocationOptionsBuilder::new(&refs)
            .map_err(|_| {
                TrustError::CertificateInvalid("no CRL given; revocation status unknown".into())
            })?
            .with_depth(RevocationCheckDepth::EndEntity)
            .with_status_policy(UnknownStatusPolicy::Deny)
            .with_expiration_policy(ExpirationPolicy::Enforce)
            .build();

        let anchor = webpki::anchor_from_trusted_cert(&self.root)
            .map_err(|e| TrustError::CertificateInvalid(format!("root unusable: {e}")))?;
        let ee_der = CertificateDer::from(cert_der);
        let ee = EndEntityCert::try_from(&ee_der).map_err(webpki_error)?;
        ee.verify_for_usage(
            SIGNATURE_ALGORITHMS,
            &[anchor],
            std::slice::from_ref(&self.intermediate),
            time::to_unix_time(now),
            KeyUsage::client_auth(),
            Some(revocation),
            None,
        )
        .map_err(webpki_error)?;

        let cert = parse(cert_der, "device")?;
        let device_id = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .ok_or_else(|| TrustError::CertificateInvalid("no subject CN".into()))?
            .to_owned();
        Ok(VerifiedDevice {
            device_id,
            serial: CertSerial::from_bytes(cert.raw_serial())
                .map_err(|_| TrustError::CertificateInvalid("unusable serial".into()))?,
            not_after: time::from_timestamp(cert.validity().not_after.timestamp()),
        })
    }

    /// Verifies a server certificate at `now`: it must chain through the intermediate to
    /// the root, be within its validity, allow TLS server authentication and be valid for
    /// `server_name` (a DNS name or an IP address). Server certificates are short-lived
    /// and not checked against CRLs.
    pub fn verify_server_chain(
        &self,
        cert_der: &[u8],
        now: UnixMillis,
        server_name: &str,
    ) -> Result<(), TrustError> {
        let name = ServerName::try_from(server_name)
            .map_err(|_| TrustError::input("server name", "not a DNS name or IP address"))?;
        let anchor = webpki::anchor_from_trusted_cert(&self.root)
            .map_err(|e| TrustError::CertificateInvalid(format!("root unusable: {e}")))?;
        let ee_der = CertificateDer::from(cert_der);
        let ee = EndEntityCert::try_from(&ee_der).map_err(webpki_error)?;
        ee.verify_for_usage(
            SIGNATURE_ALGORITHMS,
            &[anchor],
            std::slice::from_ref(&self.intermediate),
            time::to_unix_time(now),
            KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(webpki_error)?;
        ee.verify_is_valid_for_subject_name(&name)
            .map_err(webpki_error)
    }
}

fn webpki_error(e: webpki::Error) -> TrustError {
    match e {
        webpki::Error::CertRevoked => TrustError::CertificateRevoked,
        other => TrustError::CertificateInvalid(other.to_string()),
    }
}

pub(super) fn parse<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, TrustError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        _ => Err(TrustError::CertificateInvalid(format!(
            "the {what} certificate is not DER"
        ))),
    }
}
