//! Revoked certificates and the CRLs that publish them.
//!
//! The CA keeps its list of revocations sealed in the keystore (so an edit to the file is
//! detected, not silently obeyed) as JSON:
//!
//! ```json
//! {"v":1,"revoked":[{"serial":"4f0c…","reason":"key_compromise","revoked_at":1764000000000}]}
//! ```
//!
//! A [`Crl`] is an X.509 v2 CRL (RFC 5280) signed by the intermediate with ECDSA-SHA256,
//! carrying a CRL number (the milliseconds since the epoch at which it was made, so it
//! grows with every CRL), `thisUpdate` = the time asked for, and `nextUpdate` = that plus
//! [`CaConfig::crl_validity`]. Verifiers reject a CRL past its `nextUpdate`.
//!
//! [`CaConfig::crl_validity`]: super::CaConfig::crl_validity

use serde::{Deserialize, Serialize};
use tether_proto::UnixMillis;

use super::pem;
use super::serial::CertSerial;
use crate::error::TrustError;
use crate::keystore::Keystore;

/// Why a certificate was revoked (the RFC 5280 reason codes that apply to Tether).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RevocationReason {
    /// No reason given (code 0).
    Unspecified,
    /// The device's private key is, or may be, known to someone else (code 1).
    KeyCompromise,
    /// The device changed owner (code 3).
    AffiliationChanged,
    /// Replaced by a newer certificate, e.g. after re-pairing (code 4).
    Superseded,
    /// The device was removed / unpaired (code 5).
    CessationOfOperation,
    /// The owner's rights were withdrawn (code 9).
    PrivilegeWithdrawn,
}

impl RevocationReason {
    fn to_rcgen(self) -> rcgen::RevocationReason {
        match self {
            RevocationReason::Unspecified => rcgen::RevocationReason::Unspecified,
            RevocationReason::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
            RevocationReason::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
            RevocationReason::Superseded => rcgen::RevocationReason::Superseded,
            RevocationReason::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
            RevocationReason::PrivilegeWithdrawn => rcgen::RevocationReason::PrivilegeWithdrawn,
        }
    }
}

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedCert {
    /// The revoked certificate's serial.
    pub serial: CertSerial,
    /// Why.
    pub reason: RevocationReason,
    /// When the CA recorded it.
    pub revoked_at: UnixMillis,
}

impl RevokedCert {
    pub(crate) fn to_rcgen(&self) -> Result<rcgen::RevokedCertParams, TrustError> {
        Ok(rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from_slice(self.serial.as_bytes()),
            revocation_time: super::time::to_offset(self.revoked_at)?,
            reason_code: Some(self.reason.to_rcgen()),
            invalidity_date: None,
        })
    }
}

/// The persisted list, in order of revocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevocationList {
    v: u32,
    pub(crate) revoked: Vec<RevokedCert>,
}

/// Keystore name of the sealed revocation list.
pub const REVOCATIONS_FILE: &str = "ca-revocations.sealed";
/// Purpose label the revocation list is sealed under.
pub const REVOCATIONS_LABEL: &str = "tether/ca/revocations/v1";

impl RevocationList {
    pub(crate) fn new() -> Self {
        Self {
            v: 1,
            revoked: Vec::new(),
        }
    }

    pub(crate) fn contains(&self, serial: &CertSerial) -> bool {
        self.revoked.iter().any(|r| &r.serial == serial)
    }

    pub(crate) fn load(ks: &dyn Keystore) -> Result<Option<Self>, TrustError> {
        let Some(json) = ks.load_sealed(REVOCATIONS_FILE, REVOCATIONS_LABEL)? else {
            return Ok(None);
        };
        let list: Self =
            serde_json::from_slice(&json).map_err(|e| TrustError::corrupt("revocation list", e))?;
        if list.v != 1 {
            return Err(TrustError::corrupt(
                "revocation list",
                format!("version {}", list.v),
            ));
        }
        Ok(Some(list))
    }

    pub(crate) fn save(&self, ks: &dyn Keystore) -> Result<(), TrustError> {
        let json =
            serde_json::to_vec(self).map_err(|e| TrustError::corrupt("revocation list", e))?;
        ks.store_sealed(REVOCATIONS_FILE, REVOCATIONS_LABEL, &json)
    }
}

/// A DER-encoded certificate revocation list.
#[derive(Clone, PartialEq, Eq)]
pub struct Crl {
    der: Vec<u8>,
}

impl Crl {
    /// Wraps DER bytes (they are parsed and checked when used for verification).
    pub fn from_der(der: impl Into<Vec<u8>>) -> Self {
        Self { der: der.into() }
    }

    /// Reads the first `X509 CRL` block of a PEM text.
    pub fn from_pem(pem: &str) -> Result<Self, TrustError> {
        Ok(Self {
            der: pem::decode_crl(pem.as_bytes())?.to_vec(),
        })
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// As PEM (`-----BEGIN X509 CRL-----`).
    pub fn pem(&self) -> String {
        pem::encode("X509 CRL", &self.der)
    }
}

impl std::fmt::Debug for Crl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Crl({} bytes)", self.der.len())
    }
}
