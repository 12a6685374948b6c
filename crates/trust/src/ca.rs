//! The Tether certificate authority.
//!
//! Two levels under one root:
//!
//! - the **root** (ECDSA P-384, self-signed, 10 years, pathlen 1). Its private key is
//!   created, used once to sign the intermediate, sealed into the keystore and dropped; a
//!   running [`CertificateAuthority`] never holds it. It is the trust anchor agents and
//!   clients pin.
//! - the **intermediate** (ECDSA P-256, 2 years, pathlen 0, signed by the root). Its key is
//!   sealed at rest and held in memory by a running CA, which uses it to issue device
//!   certificates from agents' CSRs, server TLS certificates, and CRLs.
//!
//! What lives in the keystore (see [`Keystore`]); names are fixed so operators and docs
//! can refer to them:
//!
//! | name | content |
//! |---|---|
//! | [`ROOT_KEY_FILE`] | root PKCS#8 key, sealed under [`ROOT_KEY_LABEL`] |
//! | [`INTERMEDIATE_KEY_FILE`] | intermediate PKCS#8 key, sealed under [`INTERMEDIATE_KEY_LABEL`] |
//! | [`ROOT_CERT_FILE`] | root certificate, PEM (public) |
//! | [`INTERMEDIATE_CERT_FILE`] | intermediate certificate, PEM (public) |
//! | [`REVOCATIONS_FILE`] | revocation list, JSON sealed under [`REVOCATIONS_LABEL`] |
//!
//! # Bringing your own CA
//!
//! An operator may bring a CA instead: their own root with its key
//! ([`CertificateAuthority::import`]: the key is sealed like a generated one and a new
//! intermediate is made under it), or their root without its key and an intermediate it
//! signed ([`CertificateAuthority::import_with_intermediate`]: the root key never comes
//! near Tether and [`ROOT_KEY_FILE`] stays absent). Either way the files are those
//! [`CertificateAuthority::create`] writes, and [`CertificateAuthority::load`] reopens
//! them. What is given is checked before anything is written:
//!
//! | | root | intermediate |
//! |---|---|---|
//! | basicConstraints | CA, pathlen absent or at least 1 | CA, any pathlen |
//! | keyUsage | present, with keyCertSign | present, with keyCertSign and cRLSign |
//! | extKeyUsage | absent, or with serverAuth and clientAuth | the same |
//! | key | ECDSA P-256 or P-384 | ECDSA P-256, not the root's |
//! | signature | its own, verifying; issuer = subject | the root's, verifying, ECDSA-SHA256 under a P-256 root and ECDSA-SHA384 under a P-384 root; issuer = the root's subject |
//! | validity | covers now | covers now |
//!
//! Why: an intermediate sits under the root, so a root with pathlen 0 would make every
//! chain invalid; the intermediate signs CRLs (cRLSign); rustls-webpki applies an
//! intermediate's extKeyUsage to the whole chain, and device certificates need clientAuth
//! while server certificates need serverAuth; everything the intermediate signs is
//! verified as ECDSA P-256 with SHA-256, and Tether's verifiers accept only the P-256 +
//! SHA-256 and P-384 + SHA-384 pairs. A private key (PKCS#8 or SEC1 PEM, unencrypted)
//! must be its certificate's. Last, as for a created CA, the CA must issue a server
//! certificate for `localhost` that rustls-webpki verifies.
//!
//! The certificate profiles are described in [`profile`].

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
    SerialNumber,
};
use rustls_pki_types::CertificateDer;
use tether_proto::{Clock, UnixMillis};
use zeroize::Zeroizing;

use crate::error::TrustError;
use crate::keystore::Keystore;

mod csr;
mod import;
mod key;
mod pem;
pub mod profile;
mod revocation;
mod serial;
mod time;
mod verify;

pub use csr::MAX_CSR_BYTES;
pub use revocation::{Crl, REVOCATIONS_FILE, REVOCATIONS_LABEL, RevocationReason, RevokedCert};
pub use serial::{CertSerial, MAX_SERIAL_LEN, SERIAL_LEN};
pub use verify::{CaCertificates, VerifiedDevice};

use key::CaKey;
use revocation::RevocationList;

/// Keystore name of the sealed root private key.
pub const ROOT_KEY_FILE: &str = "ca-root-key.sealed";
/// Purpose label of the sealed root private key.
pub const ROOT_KEY_LABEL: &str = "tether/ca/root-key/v1";
/// Keystore name of the sealed intermediate private key.
pub const INTERMEDIATE_KEY_FILE: &str = "ca-intermediate-key.sealed";
/// Purpose label of the sealed intermediate private key.
pub const INTERMEDIATE_KEY_LABEL: &str = "tether/ca/intermediate-key/v1";
/// Keystore name of the root certificate (PEM).
pub const ROOT_CERT_FILE: &str = "ca-root-cert.pem";
/// Keystore name of the intermediate certificate (PEM).
pub const INTERMEDIATE_CERT_FILE: &str = "ca-intermediate-cert.pem";

/// The longest server certificate validity [`CaConfig`] accepts (the CA/Browser Forum
/// limit, for tools that apply it to private CAs too).
pub const MAX_SERVER_CERT_VALIDITY: Duration = Duration::from_secs(397 * 24 * 3600);

/// The names written into the CA certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaNames {
    /// The organization (`O`) of the root and the intermediate.
    pub organization: String,
    /// The root's common name.
    pub root_common_name: String,
    /// The intermediate's common name.
    pub intermediate_common_name: String,
}

impl CaNames {
    /// `"<organization> Root CA"` and `"<organization> Intermediate CA"`.
    pub fn for_organization(organization: &str) -> Self {
        Self {
            organization: organization.to_owned(),
            root_common_name: format!("{organization} Root CA"),
            intermediate_common_name: format!("{organization} Intermediate CA"),
        }
    }

    fn validate(&self) -> Result<(), TrustError> {
        for (field, v) in [
            ("organization", &self.organization),
            ("root common name", &self.root_common_name),
            ("intermediate common name", &self.intermediate_common_name),
        ] {
            if v.is_empty() || v.chars().count() > 64 || v.chars().any(char::is_control) {
                return Err(TrustError::input(
                    field,
                    "must be 1-64 characters, no controls",
                ));
            }
        }
        Ok(())
    }
}

/// Knobs for what the running CA issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaConfig {
    /// Validity of server TLS certificates (default 90 days, at most
    /// [`MAX_SERVER_CERT_VALIDITY`]).
    pub server_cert_validity: Duration,
    /// Time from a CRL's `thisUpdate` to its `nextUpdate` (default 24 hours, at most 31
    /// days). Verifiers reject a CRL after its `nextUpdate`, so the server must publish a
    /// fresh one well within this.
    pub crl_validity: Duration,
}

impl Default for CaConfig {
    fn default() -> Self {
        Self {
            server_cert_validity: Duration::from_secs(90 * 24 * 3600),
            crl_validity: Duration::from_secs(24 * 3600),
        }
    }
}

impl CaConfig {
    /// Checks the ranges documented on the fields.
    pub fn validate(&self) -> Result<(), TrustError> {
        if self.server_cert_validity < Duration::from_secs(3600)
            || self.server_cert_validity > MAX_SERVER_CERT_VALIDITY
        {
            return Err(TrustError::InvalidConfig(
                "server_cert_validity must be between 1 hour and 397 days".into(),
            ));
        }
        if self.crl_validity < Duration::from_secs(60)
            || self.crl_validity > Duration::from_secs(31 * 24 * 3600)
        {
            return Err(TrustError::InvalidConfig(
                "crl_validity must be between 1 minute and 31 days".into(),
            ));
        }
        Ok(())
    }
}

/// A certificate this CA issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Its serial (record it: revocation is by serial).
    pub serial: CertSerial,
    /// Start of validity (whole seconds).
    pub not_before: UnixMillis,
    /// End of validity (whole seconds).
    pub not_after: UnixMillis,
}

impl IssuedCertificate {
    /// The certificate as PEM.
    pub fn pem(&self) -> String {
        pem::encode("CERTIFICATE", &self.der)
    }
}

/// A server certificate together with the private key the CA generated for it.
pub struct IssuedServerCertificate {
    /// The certificate.
    pub certificate: IssuedCertificate,
    /// The ECDSA P-256 private key, PKCS#8 DER, wiped on drop.
    pub key_pkcs8_der: Zeroizing<Vec<u8>>,
}

impl IssuedServerCertificate {
    /// The private key as PEM (`-----BEGIN PRIVATE KEY-----`), wiped on drop.
    pub fn key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(pem::encode("PRIVATE KEY", &self.key_pkcs8_der))
    }
}

impl std::fmt::Debug for IssuedServerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedServerCertificate")
            .field("certificate", &self.certificate)
            .field("key_pkcs8_der", &"<redacted>")
            .finish()
    }
}

/// The running CA: the intermediate's key in memory, the root's only sealed on disk.
#[derive(Debug)]
pub struct CertificateAuthority {
    keystore: Arc<dyn Keystore>,
    clock: Arc<dyn Clock>,
    config: CaConfig,
    certs: CaCertificates,
    signer: rcgen::Issuer<'static, CaKey>,
    revocations: Mutex<RevocationList>,
}

impl CertificateAuthority {
    /// Creates a new root and intermediate and stores them in `keystore`. Refuses with
    /// [`TrustError::AlreadyExists`] if the keystore already holds a CA.
    pub fn create(
        keystore: Arc<dyn Keystore>,
        clock: Arc<dyn Clock>,
        names: &CaNames,
    ) -> Result<Self, TrustError> {
        names.validate()?;
        refuse_existing(&*keystore)?;
        let now = clock.now();

        let root_key = CaKey::generate(&PKCS_ECDSA_P384_SHA384)?;
        let root_params = profile::root(names, now)?;
        let root_cert = root_params.self_signed(&root_key).map_err(rcgen_error)?;
        let inter_key = CaKey::generate(&PKCS_ECDSA_P256_SHA256)?;
        let inter_cert = {
            let root_issuer = rcgen::Issuer::new(root_params, &root_key);
            profile::intermediate(names, now, None)?
                .signed_by(&inter_key, &root_issuer)
                .map_err(rcgen_error)?
        };
        let certs = CaCertificates::from_der(root_cert.der(), inter_cert.der())?;
        Self::install(keystore, clock, certs, Some(root_key), inter_key)
    }

    /// Stores a new CA the way [`CertificateAuthority::load`] reads it back, and returns it
    /// running. Shared by [`CertificateAuthority::create`] and the imports.
    ///
    /// Before anything is written, the CA issues a throwaway server certificate for
    /// `localhost` (a name the server always serves) and verifies it with rustls-webpki:
    /// a hierarchy peers would reject (a name that does not chain byte for byte, a
    /// signature algorithm or constraint they refuse) fails here, not at the first
    /// handshake. A refused CA leaves the keystore untouched.
    fn install(
        keystore: Arc<dyn Keystore>,
        clock: Arc<dyn Clock>,
        certs: CaCertificates,
        root_key: Option<CaKey>,
        inter_key: CaKey,
    ) -> Result<Self, TrustError> {
        let ca = Self::assemble(keystore, clock, certs, inter_key, RevocationList::new())?;
        ca.check_issuance()?;

        let keystore = &*ca.keystore;
        if let Some(root_key) = root_key {
            // The root key is written sealed, then dropped (and wiped): from here on only
            // the intermediate signs.
            keystore.store_sealed(ROOT_KEY_FILE, ROOT_KEY_LABEL, &root_key.pkcs8())?;
        }
        keystore.store_sealed(
            INTERMEDIATE_KEY_FILE,
            INTERMEDIATE_KEY_LABEL,
            &ca.signer.key().pkcs8(),
        )?;
        ca.revocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .save(keystore)?;
        keystore.write(
            INTERMEDIATE_CERT_FILE,
            ca.certs.intermediate_pem().as_bytes(),
        )?;
        // Written last: its presence is what marks the CA as created.
        keystore.write(ROOT_CERT_FILE, ca.certs.root_pem().as_bytes())?;
        Ok(ca)
    }

    fn check_issuance(&self) -> Result<(), TrustError> {
        const PROBE_NAME: &str = "localhost";
        let probe = self.issue_server_certificate(&[PROBE_NAME])?;
        self.certs
            .verify_server_chain(&probe.certificate.der, self.clock.now(), PROBE_NAME)
            .map_err(|e| {
                let why = match e {
                    TrustError::CertificateInvalid(why) => why,
                    other => other.to_string(),
                };
                TrustError::CertificateInvalid(format!(
                    "certificates issued under this CA would not verify: {why}"
                ))
            })
    }

    /// Reopens the CA stored in `keystore`. Checks that the intermediate is signed by the
    /// root and that its sealed key matches its certificate. The root key is not opened.
    pub fn load(keystore: Arc<dyn Keystore>, clock: Arc<dyn Clock>) -> Result<Self, TrustError> {
        let read_text = |name: &str, what: &str| -> Result<String, TrustError> {
            let bytes = keystore
                .read(name)?
                .ok_or_else(|| TrustError::Missing(what.into()))?;
            String::from_utf8(bytes).map_err(|_| TrustError::corrupt("CA certificate", "not UTF-8"))
        };
        let root_pem = read_text(ROOT_CERT_FILE, "the CA root certificate")?;
        let inter_pem = read_text(INTERMEDIATE_CERT_FILE, "the CA intermediate certificate")?;
        let certs = CaCertificates::from_pem(&root_pem, &inter_pem)?;

        let pkcs8 = keystore
            .load_sealed(INTERMEDIATE_KEY_FILE, INTERMEDIATE_KEY_LABEL)?
            .ok_or_else(|| TrustError::Missing("the CA intermediate key".into()))?;
        let inter_key = CaKey::from_pkcs8(&pkcs8, &PKCS_ECDSA_P256_SHA256)?;
        let revocations = RevocationList::load(&*keystore)?
            .ok_or_else(|| TrustError::Missing("the CA revocation list".into()))?;
        Self::assemble(keystore, clock, certs, inter_key, revocations)
    }

    fn assemble(
        keystore: Arc<dyn Keystore>,
        clock: Arc<dyn Clock>,
        certs: CaCertificates,
        inter_key: CaKey,
        revocations: RevocationList,
    ) -> Result<Self, TrustError> {
        let inter_der = CertificateDer::from(certs.intermediate_der());
        let (_, parsed) = x509_parser::parse_x509_certificate(&inter_der)
            .map_err(|_| TrustError::corrupt("CA intermediate certificate", "not DER"))?;
        if *parsed.public_key().subject_public_key.data != *inter_key.public_raw() {
            return Err(TrustError::corrupt(
                "CA intermediate key",
                "does not match the intermediate certificate",
            ));
        }
        let signer = rcgen::Issuer::from_ca_cert_der(&inter_der, inter_key).map_err(rcgen_error)?;
        Ok(Self {
            keystore,
            clock,
            config: CaConfig::default(),
            certs,
            signer,
            revocations: Mutex::new(revocations),
        })
    }

    /// Replaces the issuance settings (validated first).
    pub fn with_config(mut self, config: CaConfig) -> Result<Self, TrustError> {
        config.validate()?;
        self.config = config;
        Ok(self)
    }

    /// The issuance settings in force.
    pub fn config(&self) -> &CaConfig {
        &self.config
    }

    /// The root and intermediate certificates (public).
    pub fn certificates(&self) -> &CaCertificates {
        &self.certs
    }

    /// Issues a device certificate for the key in an agent's PKCS#10 `csr_der`.
    ///
    /// The certificate's subject is `CN=<device_id>` (1-64 of `A-Z a-z 0-9 . _ : -`),
    /// whatever the request asked for; it allows TLS client authentication only and is
    /// valid for exactly 365 days from the CA's clock. The request's key must be ECDSA
    /// P-256 or Ed25519 and its signature must verify, or the answer is
    /// [`TrustError::CsrInvalid`].
    pub fn issue_device_certificate(
        &self,
        csr_der: &[u8],
        device_id: &str,
    ) -> Result<IssuedCertificate, TrustError> {
        profile::check_device_id(device_id)?;
        let checked = csr::check(csr_der)?;
        let leaf = profile::device(device_id, self.clock.now())?;
        let cert = leaf
            .params
            .signed_by(&checked.public_key, &self.signer)
            .map_err(rcgen_error)?;
        Ok(IssuedCertificate {
            der: cert.der().to_vec(),
            serial: leaf.serial,
            not_before: leaf.not_before,
            not_after: leaf.not_after,
        })
    }

    /// Issues a server TLS certificate for `subject_alt_names` (DNS names, optionally
    /// `*.`-wildcarded, or IP addresses) with a fresh ECDSA P-256 key.
    pub fn issue_server_certificate(
        &self,
        subject_alt_names: &[&str],
    ) -> Result<IssuedServerCertificate, TrustError> {
        let leaf = profile::server(
            subject_alt_names,
            self.clock.now(),
            self.config.server_cert_validity,
        )?;
        let key = CaKey::generate(&PKCS_ECDSA_P256_SHA256)?;
        let cert = leaf
            .params
            .signed_by(&key, &self.signer)
            .map_err(rcgen_error)?;
        Ok(IssuedServerCertificate {
            certificate: IssuedCertificate {
                der: cert.der().to_vec(),
                serial: leaf.serial,
                not_before: leaf.not_before,
                not_after: leaf.not_after,
            },
            key_pkcs8_der: key.pkcs8(),
        })
    }

    /// The PEM chain a TLS peer presents: `leaf` then the intermediate.
    pub fn chain_pem(&self, leaf: &IssuedCertificate) -> String {
        let mut s = leaf.pem();
        s.push_str(&self.certs.intermediate_pem());
        s
    }

    /// Records that the certificate with `serial` is revoked, and persists the list
    /// before answering. Returns `false` if it was already revoked (the first record is
    /// kept).
    pub fn revoke(
        &self,
        serial: &CertSerial,
        reason: RevocationReason,
    ) -> Result<bool, TrustError> {
        let mut list = self
            .revocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if list.contains(serial) {
            return Ok(false);
        }
        let mut next = list.clone();
        next.revoked.push(RevokedCert {
            serial: serial.clone(),
            reason,
            revoked_at: self.clock.now(),
        });
        // Memory changes only once the disk has the new list.
        next.save(&*self.keystore)?;
        *list = next;
        Ok(true)
    }

    /// Whether `serial` has been revoked.
    pub fn is_revoked(&self, serial: &CertSerial) -> bool {
        self.revocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(serial)
    }

    /// Every revocation recorded, oldest first.
    pub fn revocations(&self) -> Vec<RevokedCert> {
        self.revocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .revoked
            .clone()
    }

    /// A CRL signed by the intermediate, with `thisUpdate` = `now` and `nextUpdate` =
    /// `now` + [`CaConfig::crl_validity`]. Revocations older than the longest certificate
    /// lifetime (plus a day) are left out: the certificates they name have expired.
    pub fn crl(&self, now: UnixMillis) -> Result<Crl, TrustError> {
        let longest = profile::DEVICE_VALIDITY.max(self.config.server_cert_validity);
        let retention = longest.saturating_add(Duration::from_secs(24 * 3600));
        let entries = {
            let list = self
                .revocations
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            list.revoked
                .iter()
                .filter(|r| r.revoked_at.saturating_add(retention) > now)
                .map(RevokedCert::to_rcgen)
                .collect::<Result<Vec<_>, _>>()?
        };
        let number = now.0.to_be_bytes();
        let params = CertificateRevocationListParams {
            this_update: time::to_offset(now)?,
            next_update: time::to_offset(now.saturating_add(self.config.crl_validity))?,
            crl_number: SerialNumber::from_slice(CertSerial::from_bytes(&number)?.as_bytes()),
            issuing_distribution_point: None,
            revoked_certs: entries,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.signer).map_err(rcgen_error)?;
        Ok(Crl::from_der(crl.der().to_vec()))
    }

    /// [`CaCertificates::verify_device_chain`] with this CA's certificates.
    pub fn verify_device_chain(
        &self,
        cert_der: &[u8],
        now: UnixMillis,
        crls: &[Crl],
    ) -> Result<VerifiedDevice, TrustError> {
        self.certs.verify_device_chain(cert_der, now, crls)
    }
}

/// Refuses to make a CA over an existing one.
fn refuse_existing(keystore: &dyn Keystore) -> Result<(), TrustError> {
    if keystore.read(ROOT_CERT_FILE)?.is_some() {
        return Err(TrustError::AlreadyExists("a CA in this keystore".into()));
    }
    Ok(())
}

fn rcgen_error(e: rcgen::Error) -> TrustError {
    TrustError::crypto(format!("certificate generation failed: {e}"))
}

#[cfg(test)]
mod tests;
