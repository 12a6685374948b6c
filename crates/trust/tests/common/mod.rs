//! Shared fixtures for the CA integration tests: a CA on a manual clock, CSRs made with
//! rcgen, and a certificate parser.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, KeyPair, SignatureAlgorithm, SigningKey};
use tether_proto::{ManualClock, UnixMillis};
use tether_trust::{
    CaNames, CertificateAuthority, CsrRejection, Keystore, MemoryKeystore, TrustError,
};
use x509_parser::prelude::{FromDer, X509Certificate};

pub(crate) const T0: UnixMillis = UnixMillis(1_764_000_000_000);
pub(crate) const DAY: Duration = Duration::from_secs(24 * 3600);

pub(crate) struct Fixture {
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) keystore: Arc<dyn Keystore>,
    pub(crate) ca: CertificateAuthority,
}

pub(crate) fn fixture_in(keystore: Arc<dyn Keystore>) -> Fixture {
    let clock = Arc::new(ManualClock::new(T0));
    let ca = CertificateAuthority::create(
        keystore.clone(),
        clock.clone(),
        &CaNames::for_organization("Tether Test"),
    )
    .unwrap();
    Fixture {
        clock,
        keystore,
        ca,
    }
}

pub(crate) fn fixture() -> Fixture {
    fixture_in(Arc::new(MemoryKeystore::new().unwrap()))
}

pub(crate) fn csr_for(key: &impl SigningKey) -> Vec<u8> {
    let mut params = CertificateParams::new(vec!["ignored.example".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "the agent asks for this CN");
    params.serialize_request(key).unwrap().der().to_vec()
}

pub(crate) fn new_csr(alg: &'static SignatureAlgorithm) -> (KeyPair, Vec<u8>) {
    let key = KeyPair::generate_for(alg).unwrap();
    let csr = csr_for(&key);
    (key, csr)
}

pub(crate) fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = X509Certificate::from_der(der).unwrap();
    assert!(rest.is_empty());
    cert
}

pub(crate) fn csr_error(f: &Fixture, csr: &[u8]) -> CsrRejection {
    match f.ca.issue_device_certificate(csr, "dev-1") {
        Err(e @ TrustError::CsrInvalid(_)) => {
            assert_eq!(e.code().number(), 2010);
            let TrustError::CsrInvalid(r) = e else {
                unreachable!()
            };
            r
        }
        other => panic!("expected CsrInvalid, got {other:?}"),
    }
}
