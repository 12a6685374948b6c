//! Unit tests of the CA's parts; the end-to-end tests are in `tests/certificates.rs`.

use std::sync::Arc;
use std::time::Duration;

use tether_proto::{ManualClock, UnixMillis};
use x509_parser::prelude::FromDer;

use super::{CaConfig, CaNames, CertSerial, CertificateAuthority, RevocationReason};
use crate::error::TrustError;
use crate::keystore::MemoryKeystore;

const T0: UnixMillis = UnixMillis(1_764_000_000_000);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn ca() -> (Arc<ManualClock>, CertificateAuthority) {
    let clock = Arc::new(ManualClock::new(T0));
    let ca = CertificateAuthority::create(
        Arc::new(MemoryKeystore::new().unwrap()),
        clock.clone(),
        &CaNames::for_organization("Unit"),
    )
    .unwrap();
    (clock, ca)
}

#[test]
fn serials_parse_print_and_normalise() {
    let s: CertSerial = "00:4F:0c".parse().unwrap();
    assert_eq!(s.as_bytes(), [0x4f, 0x0c]);
    assert_eq!(s.to_string(), "4f0c");
    assert_eq!(serde_json::to_string(&s).unwrap(), "\"4f0c\"");
    assert_eq!(serde_json::from_str::<CertSerial>("\"4f0c\"").unwrap(), s);
    for bad in ["", "00", "0", "zz", &"ab".repeat(21)] {
        assert!(bad.parse::<CertSerial>().is_err(), "{bad:?}");
    }
    for _ in 0..100 {
        let r = CertSerial::random().unwrap();
        assert_eq!(r.as_bytes().len(), 16);
        assert!((1..=0x7f).contains(&r.as_bytes()[0]));
    }
}

#[test]
fn configuration_ranges_are_enforced() {
    let (_, ca) = ca();
    let ca = ca
        .with_config(CaConfig {
            crl_validity: Duration::from_secs(3600),
            ..CaConfig::default()
        })
        .unwrap();
    assert_eq!(ca.config().crl_validity, Duration::from_secs(3600));
    for bad in [
        CaConfig {
            server_cert_validity: Duration::from_secs(398 * 24 * 3600),
            ..Default::default()
        },
        CaConfig {
            server_cert_validity: Duration::ZERO,
            ..Default::default()
        },
        CaConfig {
            crl_validity: Duration::from_secs(1),
            ..Default::default()
        },
        CaConfig {
            crl_validity: 32 * DAY,
            ..Default::default()
        },
    ] {
        assert!(
            matches!(bad.validate(), Err(TrustError::InvalidConfig(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn names_are_checked() {
    let ks = Arc::new(MemoryKeystore::new().unwrap());
    let clock = Arc::new(ManualClock::new(T0));
    let mut names = CaNames::for_organization("Org");
    names.root_common_name = "bad\nname".into();
    let r = CertificateAuthority::create(ks.clone(), clock.clone(), &names);
    assert!(matches!(r, Err(TrustError::InvalidInput { .. })), "{r:?}");
    let r = CertificateAuthority::create(ks, clock, &CaNames::for_organization(""));
    assert!(matches!(r, Err(TrustError::InvalidInput { .. })), "{r:?}");
}

#[test]
fn crl_drops_revocations_whose_certificates_have_certainly_expired() {
    let (_, ca) = ca();
    let serial: CertSerial = "0102".parse().unwrap();
    ca.revoke(&serial, RevocationReason::CessationOfOperation)
        .unwrap();
    let count = |now: UnixMillis| {
        let crl = ca.crl(now).unwrap();
        let (_, parsed) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(crl.der()).unwrap();
        parsed.iter_revoked_certificates().count()
    };
    assert_eq!(count(T0), 1);
    assert_eq!(count(T0.saturating_add(365 * DAY)), 1);
    assert_eq!(count(T0.saturating_add(367 * DAY)), 0);
    // The record itself is kept.
    assert_eq!(ca.revocations().len(), 1);
    assert_eq!(ca.revocations()[0].revoked_at, T0);
}

#[test]
fn crl_numbers_grow() {
    let (_, ca) = ca();
    let number = |now: UnixMillis| {
        let crl = ca.crl(now).unwrap();
        let (_, parsed) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(crl.der()).unwrap();
        parsed.crl_number().unwrap().clone()
    };
    assert!(number(UnixMillis(T0.0 + 1)) > number(T0));
}
