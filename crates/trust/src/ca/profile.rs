//! The certificate profiles: what each kind of certificate this CA makes contains.
//!
//! | | root | intermediate | device | server |
//! |---|---|---|---|---|
//! | key | ECDSA P-384 | ECDSA P-256 | P-256 or Ed25519 (from the CSR) | ECDSA P-256 |
//! | signed by | itself (ECDSA-SHA384) | root (ECDSA-SHA384) | intermediate (ECDSA-SHA256) | intermediate |
//! | validity | 10 years | 2 years (never past the root's end) | exactly 365 days | [`CaConfig::server_cert_validity`] |
//! | basicConstraints | CA, pathlen 1 | CA, pathlen 0 | not a CA | not a CA |
//! | keyUsage | keyCertSign, cRLSign | keyCertSign, cRLSign | digitalSignature | digitalSignature |
//! | extKeyUsage | – | – | clientAuth | serverAuth |
//! | subject | CN, O from [`CaNames`] | CN, O | CN = device id | CN = first SAN |
//!
//! An imported root (see [`CertificateAuthority::import`]) keeps its own profile; it may be
//! ECDSA P-256, in which case it signs the intermediate with ECDSA-SHA256. An imported
//! intermediate ([`CertificateAuthority::import_with_intermediate`]) keeps its own profile
//! too, within the limits checked at import.
//!
//! Every certificate has a random 16-byte positive serial, a subject key identifier, and
//! (below the root) an authority key identifier. The root, the intermediate and server
//! certificates start [`BACKDATE`] before "now" so peers whose clocks run a little behind
//! accept them at once; device certificates start exactly at "now", as the pairing
//! protocol specifies.
//!
//! [`CaConfig::server_cert_validity`]: super::CaConfig::server_cert_validity
//! [`CaNames`]: super::CaNames
//! [`CertificateAuthority::import`]: super::CertificateAuthority::import
//! [`CertificateAuthority::import_with_intermediate`]: super::CertificateAuthority::import_with_intermediate

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SanType, SerialNumber,
};
use tether_proto::UnixMillis;

use super::serial::CertSerial;
use super::{CaNames, time};
use crate::error::TrustError;

/// Validity of the root certificate: 10 years (3,652 days).
pub const ROOT_VALIDITY: Duration = Duration::from_secs(3652 * 24 * 3600);
/// Validity of the intermediate certificate: 2 years (730 days).
pub const INTERMEDIATE_VALIDITY: Duration = Duration::from_secs(730 * 24 * 3600);
/// Validity of a device certificate: exactly 365 days from issuance.
pub const DEVICE_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// How far before "now" CA and server certificates start.
pub const BACKDATE: Duration = Duration::from_secs(3600);

/// Parameters with the common parts filled in, and the serial they carry.
struct Base {
    params: CertificateParams,
    serial: CertSerial,
    not_before: UnixMillis,
    not_after: UnixMillis,
}

fn base(
    dn: DistinguishedName,
    not_before: UnixMillis,
    validity: Duration,
) -> Result<Base, TrustError> {
    let not_before = time::truncate(not_before);
    let not_after = not_before.saturating_add(validity);
    let serial = CertSerial::random()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.not_before = time::to_offset(not_before)?;
    params.not_after = time::to_offset(not_after)?;
    params.serial_number = Some(SerialNumber::from_slice(serial.as_bytes()));
    Ok(Base {
        params,
        serial,
        not_before,
        not_after,
    })
}

fn dn(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    dn
}

/// The self-signed root.
pub(crate) fn root(names: &CaNames, now: UnixMillis) -> Result<CertificateParams, TrustError> {
    let mut b = base(
        dn(&names.root_common_name, Some(&names.organization)),
        now.saturating_sub(BACKDATE),
        ROOT_VALIDITY,
    )?;
    b.params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    b.params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(b.params)
}

/// The online intermediate, signed by the root. It ends at `root_not_after` if that comes
/// first (an imported root may have less than two years left): an intermediate never
/// outlives its root.
pub(crate) fn intermediate(
    names: &CaNames,
    now: UnixMillis,
    root_not_after: Option<UnixMillis>,
) -> Result<CertificateParams, TrustError> {
    let mut b = base(
        dn(&names.intermediate_common_name, Some(&names.organization)),
        now.saturating_sub(BACKDATE),
        INTERMEDIATE_VALIDITY,
    )?;
    if let Some(end) = root_not_after.map(time::truncate)
        && end < b.not_after
    {
        b.params.not_after = time::to_offset(end)?;
    }
    b.params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    b.params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    b.params.use_authority_key_identifier_extension = true;
    Ok(b.params)
}

/// What a leaf profile yields: its parameters and the facts the caller reports back.
pub(crate) struct Leaf {
    pub(crate) params: CertificateParams,
    pub(crate) serial: CertSerial,
    pub(crate) not_before: UnixMillis,
    pub(crate) not_after: UnixMillis,
}

fn leaf(b: Base) -> Leaf {
    Leaf {
        params: b.params,
        serial: b.serial,
        not_before: b.not_before,
        not_after: b.not_after,
    }
}

/// A device (client) certificate: CN = `device_id`, clientAuth, exactly
/// [`DEVICE_VALIDITY`] from `now`.
pub(crate) fn device(device_id: &str, now: UnixMillis) -> Result<Leaf, TrustError> {
    check_device_id(device_id)?;
    let mut b = base(dn(device_id, None), now, DEVICE_VALIDITY)?;
    b.params.is_ca = IsCa::ExplicitNoCa;
    b.params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    b.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    b.params.use_authority_key_identifier_extension = true;
    Ok(leaf(b))
}

/// A server TLS certificate for `sans` (DNS names or IP addresses).
pub(crate) fn server(
    sans: &[&str],
    now: UnixMillis,
    validity: Duration,
) -> Result<Leaf, TrustError> {
    let first = sans
        .first()
        .ok_or_else(|| TrustError::input("san", "at least one is needed"))?;
    let mut alt_names = Vec::with_capacity(sans.len());
    for san in sans {
        alt_names.push(parse_san(san)?);
    }
    let mut b = base(dn(first, None), now.saturating_sub(BACKDATE), validity)?;
    b.params.is_ca = IsCa::ExplicitNoCa;
    b.params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    b.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    b.params.subject_alt_names = alt_names;
    b.params.use_authority_key_identifier_extension = true;
    Ok(leaf(b))
}

fn parse_san(san: &str) -> Result<SanType, TrustError> {
    if let Ok(ip) = san.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    // A DNS name, as rustls will match it: a valid reference identifier, optionally with
    // a leading `*.` wildcard label.
    let host = san.strip_prefix("*.").unwrap_or(san);
    let valid = rustls_pki_types::DnsName::try_from(host).is_ok()
        && host.contains(|c: char| c.is_ascii_alphabetic());
    if !valid {
        return Err(TrustError::input(
            "san",
            format!("{san:?} is not a DNS name or IP address"),
        ));
    }
    let ia5 = rcgen::string::Ia5String::try_from(san.to_ascii_lowercase())
        .map_err(|e| TrustError::input("san", e.to_string()))?;
    Ok(SanType::DnsName(ia5))
}

/// Device ids become a certificate's CN: 1 to 64 of `A-Z a-z 0-9 . _ : -`.
pub(crate) fn check_device_id(device_id: &str) -> Result<(), TrustError> {
    let ok = (1..=64).contains(&device_id.len())
        && device_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(TrustError::input(
            "device id",
            "must be 1-64 of A-Z a-z 0-9 . _ : -",
        ))
    }
}
