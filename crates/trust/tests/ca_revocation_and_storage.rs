//! Revocation and persistence: CRLs listing revoked serials and chain verification failing
//! with CertificateRevoked, failing closed without a current CRL, no plaintext key on disk,
//! reopening a CA, and refusing tampered files.

// Test code: a panic is a failed test, and arithmetic/indexing on fixed test data is fine.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use common::*;
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ED25519};
use tether_proto::Clock;
use tether_trust::ca::{
    INTERMEDIATE_KEY_FILE, INTERMEDIATE_KEY_LABEL, ROOT_CERT_FILE, ROOT_KEY_FILE, ROOT_KEY_LABEL,
};
use tether_trust::{
    CaNames, CertSerial, CertificateAuthority, Crl, FileKeystore, Keystore, RevocationReason,
    TrustError,
};

#[test]
fn revoked_serial_is_in_the_crl_and_chain_verification_says_revoked() {
    let f = fixture();
    let (_, csr) = new_csr(&PKCS_ECDSA_P256_SHA256);
    let victim = f.ca.issue_device_certificate(&csr, "dev-lost").unwrap();
    let (_, csr2) = new_csr(&PKCS_ED25519);
    let bystander = f.ca.issue_device_certificate(&csr2, "dev-kept").unwrap();

    f.clock.advance(Duration::from_secs(60));
    assert!(
        f.ca.revoke(&victim.serial, RevocationReason::KeyCompromise)
            .unwrap()
    );
    assert!(
        !f.ca
            .revoke(&victim.serial, RevocationReason::Unspecified)
            .unwrap()
    );
    assert!(f.ca.is_revoked(&victim.serial));

    let now = f.clock.now();
    let crl = f.ca.crl(now).unwrap();

    // The CRL, read by an independent parser: signed by the intermediate, the serial is
    // listed with its reason, nextUpdate is thisUpdate + 24 h.
    let (rest, parsed) = x509_parser::parse_x509_crl(crl.der()).unwrap();
    assert!(rest.is_empty());
    let inter = parse(f.ca.certificates().intermediate_der());
    parsed.verify_signature(inter.public_key()).unwrap();
    assert_eq!(parsed.issuer(), inter.subject());
    let listed: Vec<CertSerial> = parsed
        .iter_revoked_certificates()
        .map(|r| CertSerial::from_bytes(r.raw_serial()).unwrap())
        .collect();
    assert_eq!(listed, std::slice::from_ref(&victim.serial));
    assert_eq!(
        parsed.last_update().timestamp().cast_unsigned(),
        now.as_secs()
    );
    assert_eq!(
        parsed.next_update().unwrap().timestamp().cast_unsigned(),
        now.as_secs() + 24 * 3600
    );
    let reason = parsed
        .iter_revoked_certificates()
        .next()
        .unwrap()
        .reason_code()
        .unwrap()
        .1;
    assert_eq!(reason, x509_parser::x509::ReasonCode::KeyCompromise);

    // PEM round trip.
    let again = Crl::from_pem(&crl.pem()).unwrap();
    assert_eq!(again, crl);

    let err =
        f.ca.verify_device_chain(&victim.der, now, &[again])
            .unwrap_err();
    assert!(matches!(err, TrustError::CertificateRevoked), "{err:?}");
    assert_eq!(err.code().number(), 2009);
    // The other device is fine with the same CRL.
    f.ca.verify_device_chain(&bystander.der, now, &[crl])
        .unwrap();
}

#[test]
fn chain_verification_fails_closed_without_a_current_crl() {
    let f = fixture();
    let (_, csr) = new_csr(&PKCS_ED25519);
    let issued = f.ca.issue_device_certificate(&csr, "dev-1").unwrap();
    let no_crl = f.ca.verify_device_chain(&issued.der, T0, &[]);
    assert!(
        matches!(no_crl, Err(TrustError::CertificateInvalid(_))),
        "{no_crl:?}"
    );
    let stale = f.ca.crl(T0).unwrap();
    let later = T0.saturating_add(2 * DAY);
    let expired = f.ca.verify_device_chain(&issued.der, later, &[stale]);
    assert!(
        matches!(expired, Err(TrustError::CertificateInvalid(_))),
        "{expired:?}"
    );
    let garbage =
        f.ca.verify_device_chain(&issued.der, T0, &[Crl::from_der(vec![0x30, 0])]);
    assert!(
        matches!(garbage, Err(TrustError::CertificateInvalid(_))),
        "{garbage:?}"
    );
    // A CRL of another CA does not cover this certificate.
    let other = fixture();
    let foreign = other.ca.crl(T0).unwrap();
    let r = f.ca.verify_device_chain(&issued.der, T0, &[foreign]);
    assert!(matches!(r, Err(TrustError::CertificateInvalid(_))), "{r:?}");
}

#[test]
fn root_key_on_disk_is_not_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let ks = Arc::new(FileKeystore::open_or_create(dir.path()).unwrap());
    let f = fixture_in(ks.clone());
    drop(f.ca);

    let files = files_under(dir.path());
    assert!(
        files.len() >= 6,
        "kek, two sealed keys, revocations, two certificates"
    );
    for (name, label, scalar_len) in [
        (ROOT_KEY_FILE, ROOT_KEY_LABEL, 48),
        (INTERMEDIATE_KEY_FILE, INTERMEDIATE_KEY_LABEL, 32),
    ] {
        // The only way to the key is through the keystore's KEK.
        let pkcs8 = ks.load_sealed(name, label).unwrap().unwrap();
        KeyPair::try_from(pkcs8.as_slice()).unwrap();
        let scalar = ec_scalar(&pkcs8, scalar_len);
        let pem_body = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_slice());
        for file in &files {
            assert!(!contains(file, &pkcs8), "{name}: PKCS#8 DER found on disk");
            assert!(
                !contains(file, &scalar),
                "{name}: private scalar found on disk"
            );
            assert!(
                !contains(file, &pem_body.as_bytes()[..64]),
                "{name}: PEM found on disk"
            );
        }
    }
    // And nothing on disk looks like a PEM private key at all.
    for file in &files {
        assert!(!contains(file, b"PRIVATE KEY"));
    }
}

#[test]
fn a_ca_reopens_from_its_keystore() {
    let dir = tempfile::tempdir().unwrap();
    let ks: Arc<dyn Keystore> = Arc::new(FileKeystore::open_or_create(dir.path()).unwrap());
    let f = fixture_in(ks);
    let (_, csr) = new_csr(&PKCS_ED25519);
    let before = f.ca.issue_device_certificate(&csr, "dev-1").unwrap();
    f.ca.revoke(&before.serial, RevocationReason::Superseded)
        .unwrap();
    let root_pem = f.ca.certificates().root_pem();
    drop(f.ca);

    // A new process: a new keystore handle on the same directory.
    let ks: Arc<dyn Keystore> = Arc::new(FileKeystore::open(dir.path()).unwrap());
    let ca = CertificateAuthority::load(ks.clone(), f.clock.clone()).unwrap();
    assert_eq!(ca.certificates().root_pem(), root_pem);
    assert!(ca.is_revoked(&before.serial));
    let after = ca.issue_device_certificate(&csr, "dev-2").unwrap();
    let crl = ca.crl(T0).unwrap();
    ca.verify_device_chain(&after.der, T0, std::slice::from_ref(&crl))
        .unwrap();
    assert!(matches!(
        ca.verify_device_chain(&before.der, T0, &[crl]),
        Err(TrustError::CertificateRevoked)
    ));

    // Creating over it is refused.
    let again = CertificateAuthority::create(ks, f.clock.clone(), &CaNames::for_organization("X"));
    assert!(
        matches!(again, Err(TrustError::AlreadyExists(_))),
        "{again:?}"
    );
    let _ = f.keystore;
}

#[test]
fn a_tampered_or_missing_ca_file_stops_loading() {
    let f = fixture();
    let ks = f.keystore.clone();
    let clock: Arc<dyn Clock> = f.clock.clone();

    // Revocation list replaced by another sealed blob (e.g. the intermediate key's):
    // refused, so revocations cannot be dropped by swapping files.
    let saved = ks.read("ca-revocations.sealed").unwrap().unwrap();
    let other = ks.read(INTERMEDIATE_KEY_FILE).unwrap().unwrap();
    ks.write("ca-revocations.sealed", &other).unwrap();
    let r = CertificateAuthority::load(ks.clone(), clock.clone());
    assert!(matches!(r, Err(TrustError::SealBroken(_))), "{r:?}");
    ks.write("ca-revocations.sealed", &saved).unwrap();
    CertificateAuthority::load(ks.clone(), clock.clone()).unwrap();

    // A root certificate from another CA: the intermediate no longer chains to it.
    let foreign = fixture();
    let foreign_root = foreign.keystore.read(ROOT_CERT_FILE).unwrap().unwrap();
    ks.write(ROOT_CERT_FILE, &foreign_root).unwrap();
    let r = CertificateAuthority::load(ks.clone(), clock.clone());
    assert!(matches!(r, Err(TrustError::CertificateInvalid(_))), "{r:?}");
}
