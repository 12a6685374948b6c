//! Shared fixtures for the CA integration tests: a CA on a manual clock, CSRs made with
//! rcgen, a certificate parser, and a scan of what lies on disk.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::Path;
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

/// The contents of every file under `dir`, recursively.
pub(crate) fn files_under(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(std::fs::read(&path).unwrap());
        }
    }
    out
}

pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The private scalar inside a ring-made PKCS#8 EC key: `ECPrivateKey` starts with
/// `INTEGER 1` then `OCTET STRING <scalar>`.
pub(crate) fn ec_scalar(pkcs8: &[u8], len: u8) -> Vec<u8> {
    let marker = [0x02, 0x01, 0x01, 0x04, len];
    let at = pkcs8.windows(5).position(|w| w == marker).unwrap() + 5;
    pkcs8[at..at + len as usize].to_vec()
}
