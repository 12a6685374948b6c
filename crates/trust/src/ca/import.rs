//! Bringing an existing CA instead of creating one: [`CertificateAuthority::import`] and
//! [`CertificateAuthority::import_with_intermediate`]. The checks, and why each is needed,
//! are listed in the [`ca`](super) module documentation; everything is checked before
//! anything is written, and [`CertificateAuthority::install`] then writes the same files
//! `create` does.

use std::sync::Arc;

use rcgen::PKCS_ECDSA_P256_SHA256;
use rustls_pki_types::CertificateDer;
use tether_proto::{Clock, UnixMillis};
use x509_parser::prelude::X509Certificate;

use super::key::{CaKey, Curve};
use super::verify::parse;
use super::{
    CaCertificates, CaNames, CertificateAuthority, pem, profile, rcgen_error, refuse_existing, time,
};
use crate::error::TrustError;
use crate::keystore::Keystore;

impl CertificateAuthority {
    /// Imports an operator's root CA and its private key, and makes a new intermediate
    /// under it.
    ///
    /// `root_cert_pem` holds the root certificate (its first `CERTIFICATE` block is used)
    /// and `root_key_pem` its private key (PKCS#8 or SEC1 PEM, unencrypted). The root key
    /// is sealed into the keystore as [`ROOT_KEY_FILE`](super::ROOT_KEY_FILE) and dropped,
    /// as [`CertificateAuthority::create`] does with the root it generates, after signing
    /// a new ECDSA P-256 intermediate with the same profile as `create`'s (named from
    /// `names_for_intermediate`; it ends no later than the root). The root keeps its own
    /// names and validity.
    ///
    /// Refused, with nothing written: [`TrustError::AlreadyExists`] if the keystore holds
    /// a CA; [`TrustError::CertificateInvalid`] for a root that fails the checks in the
    /// [`ca`](super) module documentation; [`TrustError::InvalidInput`] for a key that is unreadable,
    /// not ECDSA on the root's curve, or not the root's.
    pub fn import(
        keystore: Arc<dyn Keystore>,
        clock: Arc<dyn Clock>,
        names_for_intermediate: &CaNames,
        root_cert_pem: &str,
        root_key_pem: &str,
    ) -> Result<Self, TrustError> {
        names_for_intermediate.validate()?;
        refuse_existing(&*keystore)?;
        let now = clock.now();
        let root_der = decode(root_cert_pem, "root")?;
        let root = check_root(&root_der, now)?;
        let root_key = CaKey::from_pem(root_key_pem, root.curve, "root key")?;
        root.check_key(&root_key, "root key")?;

        let inter_key = CaKey::generate(&PKCS_ECDSA_P256_SHA256)?;
        let inter_cert = {
            // The issuer's name is re-encoded from the parsed root; `CaCertificates`
            // checks below that it came out byte for byte.
            let root_issuer =
                rcgen::Issuer::from_ca_cert_der(&root_der, &root_key).map_err(|e| {
                    TrustError::CertificateInvalid(format!(
                        "the root certificate cannot sign an intermediate: {e}"
                    ))
                })?;
            profile::intermediate(names_for_intermediate, now, Some(root.not_after))?
                .signed_by(&inter_key, &root_issuer)
                .map_err(rcgen_error)?
        };
        let certs = CaCertificates::from_der(&root_der, inter_cert.der())?;
        Self::install(keystore, clock, certs, Some(root_key), inter_key)
    }

    /// Imports an operator's root certificate, without its key, and an intermediate the
    /// root signed, with the intermediate's private key.
    ///
    /// For roots whose key stays fully offline: no root key is given or stored
    /// ([`ROOT_KEY_FILE`](super::ROOT_KEY_FILE) stays absent). The intermediate is used as
    /// given and must be a CA directly under the root with an ECDSA P-256 key; see the
    /// [`ca`](super) module documentation for every check. Keys are PKCS#8 or SEC1 PEM, unencrypted.
    /// When the intermediate expires, a new one must be imported into a fresh keystore.
    ///
    /// Refused, with nothing written: [`TrustError::AlreadyExists`] if the keystore holds
    /// a CA; [`TrustError::CertificateInvalid`] for certificates that fail the checks;
    /// [`TrustError::InvalidInput`] for a key that is unreadable, not ECDSA P-256, or not
    /// the intermediate's.
    pub fn import_with_intermediate(
        keystore: Arc<dyn Keystore>,
        clock: Arc<dyn Clock>,
        root_cert_pem: &str,
        intermediate_cert_pem: &str,
        intermediate_key_pem: &str,
    ) -> Result<Self, TrustError> {
        refuse_existing(&*keystore)?;
        let now = clock.now();
        let root_der = decode(root_cert_pem, "root")?;
        let root = check_root(&root_der, now)?;
        let inter_der = decode(intermediate_cert_pem, "intermediate")?;
        let inter = check_intermediate(&inter_der, &root_der, &root, now)?;
        let inter_key = CaKey::from_pem(intermediate_key_pem, Curve::P256, "intermediate key")?;
        inter.check_key(&inter_key, "intermediate key")?;

        let certs = CaCertificates::from_der(&root_der, &inter_der)?;
        Self::install(keystore, clock, certs, None, inter_key)
    }
}

/// What the checks learnt about a given CA certificate.
struct Checked {
    curve: Curve,
    /// The raw public key (the SubjectPublicKeyInfo's BIT STRING content).
    public_key: Vec<u8>,
    not_after: UnixMillis,
}

impl Checked {
    fn check_key(&self, key: &CaKey, field: &'static str) -> Result<(), TrustError> {
        if key.public_raw() == self.public_key.as_slice() {
            Ok(())
        } else {
            Err(TrustError::input(
                field,
                "does not match the certificate's public key",
            ))
        }
    }
}

fn invalid(what: &str, why: impl std::fmt::Display) -> TrustError {
    TrustError::CertificateInvalid(format!("the {what} certificate {why}"))
}

fn decode(pem_text: &str, what: &str) -> Result<CertificateDer<'static>, TrustError> {
    pem::decode_certificate(pem_text.as_bytes())
        .map_err(|_| invalid(what, "is not a PEM certificate (BEGIN CERTIFICATE)"))
}

/// The checks common to both certificates: a CA allowed to sign certificates (and CRLs if
/// `crl_sign`), an extKeyUsage (if any) that lets chains serve both TLS roles, valid at
/// `now`, with an ECDSA P-256 or P-384 key. Returns the facts and the pathlen.
fn check_ca(
    cert: &X509Certificate<'_>,
    what: &'static str,
    now: UnixMillis,
    crl_sign: bool,
) -> Result<(Checked, Option<u32>), TrustError> {
    let unreadable = |ext: &str| invalid(what, format!("has an unreadable {ext} extension"));
    let constraints = cert
        .basic_constraints()
        .map_err(|_| unreadable("basicConstraints"))?
        .map(|e| e.value)
        .filter(|bc| bc.ca)
        .ok_or_else(|| invalid(what, "is not a CA (basicConstraints CA:TRUE)"))?;
    let usage = cert
        .key_usage()
        .map_err(|_| unreadable("keyUsage"))?
        .map(|e| e.value);
    if !usage.is_some_and(|u| u.key_cert_sign()) {
        return Err(invalid(
            what,
            "does not allow signing certificates (keyUsage keyCertSign)",
        ));
    }
    if crl_sign && !usage.is_some_and(|u| u.crl_sign()) {
        return Err(invalid(
            what,
            "does not allow signing CRLs (keyUsage cRLSign)",
        ));
    }
    if let Some(eku) = cert
        .extended_key_usage()
        .map_err(|_| unreadable("extKeyUsage"))?
        .map(|e| e.value)
        && !(eku.server_auth && eku.client_auth)
    {
        return Err(invalid(
            what,
            "restricts extKeyUsage without allowing both serverAuth and clientAuth",
        ));
    }
    let validity = cert.validity();
    let not_before = time::from_timestamp(validity.not_before.timestamp());
    let not_after = time::from_timestamp(validity.not_after.timestamp());
    if now < not_before || now >= not_after {
        return Err(invalid(
            what,
            format!(
                "is not valid now (valid from {} to {})",
                validity.not_before, validity.not_after
            ),
        ));
    }
    let curve = Curve::of(cert.public_key())
        .ok_or_else(|| invalid(what, "has a key that is not ECDSA P-256 or P-384"))?;
    let checked = Checked {
        curve,
        public_key: cert.public_key().subject_public_key.data.to_vec(),
        not_after,
    };
    Ok((checked, constraints.path_len_constraint))
}

fn check_root(der: &[u8], now: UnixMillis) -> Result<Checked, TrustError> {
    let cert = parse(der, "root")?;
    let (checked, path_len) = check_ca(&cert, "root", now, false)?;
    if cert.issuer().as_raw() != cert.subject().as_raw() || cert.verify_signature(None).is_err() {
        return Err(invalid(
            "root",
            "is not self-signed (its issuer must be its subject, its signature its own)",
        ));
    }
    if path_len == Some(0) {
        return Err(invalid(
            "root",
            "has pathlen 0: no intermediate may be under it",
        ));
    }
    Ok(checked)
}

fn check_intermediate(
    der: &[u8],
    root_der: &[u8],
    root: &Checked,
    now: UnixMillis,
) -> Result<Checked, TrustError> {
    let cert = parse(der, "intermediate")?;
    let root_cert = parse(root_der, "root")?;
    // Any pathlen: every value allows signing the leaves this CA issues.
    let (checked, _) = check_ca(&cert, "intermediate", now, true)?;
    if checked.curve != Curve::P256 {
        return Err(invalid(
            "intermediate",
            format!(
                "has an ECDSA {} key; the intermediate's key must be P-256",
                checked.curve.name()
            ),
        ));
    }
    if checked.public_key == root.public_key {
        return Err(invalid(
            "intermediate",
            "has the root's key (give the intermediate, not the root)",
        ));
    }
    if cert.issuer().as_raw() != root_cert.subject().as_raw()
        || cert.verify_signature(Some(root_cert.public_key())).is_err()
    {
        return Err(invalid("intermediate", "is not signed by the given root"));
    }
    if cert.signature_algorithm.algorithm != root.curve.signature_oid() {
        let hash = match root.curve {
            Curve::P256 => "SHA-256",
            Curve::P384 => "SHA-384",
        };
        return Err(invalid(
            "intermediate",
            format!(
                "must be signed with ECDSA with {hash} under an ECDSA {} root",
                root.curve.name()
            ),
        ));
    }
    Ok(checked)
}
