//! The certificate authority, end to end through the public API: device certificates from
//! CSRs, server certificates, revocation and CRLs, chain verification with rustls-webpki,
//! and what ends up on disk.

// Test code: a panic is a failed test, and arithmetic/indexing on fixed test data is fine.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rcgen::{
    CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519,
    PublicKeyData, SignatureAlgorithm, SigningKey,
};
use tether_proto::{Clock, ManualClock, UnixMillis};
use tether_trust::ca::{
    INTERMEDIATE_KEY_FILE, INTERMEDIATE_KEY_LABEL, ROOT_CERT_FILE, ROOT_KEY_FILE, ROOT_KEY_LABEL,
};
use tether_trust::{
    CaNames, CertSerial, CertificateAuthority, Crl, CsrRejection, FileKeystore, Keystore,
    MemoryKeystore, RevocationReason, TrustError,
};
use x509_parser::prelude::{FromDer, X509Certificate};

const T0: UnixMillis = UnixMillis(1_764_000_000_000);
const DAY: Duration = Duration::from_secs(24 * 3600);

struct Fixture {
    clock: Arc<ManualClock>,
    keystore: Arc<dyn Keystore>,
    ca: CertificateAuthority,
}

fn fixture_in(keystore: Arc<dyn Keystore>) -> Fixture {
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

fn fixture() -> Fixture {
    fixture_in(Arc::new(MemoryKeystore::new().unwrap()))
}

fn csr_for(key: &impl SigningKey) -> Vec<u8> {
    let mut params = CertificateParams::new(vec!["ignored.example".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "the agent asks for this CN");
    params.serialize_request(key).unwrap().der().to_vec()
}

fn new_csr(alg: &'static SignatureAlgorithm) -> (KeyPair, Vec<u8>) {
    let key = KeyPair::generate_for(alg).unwrap();
    let csr = csr_for(&key);
    (key, csr)
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = X509Certificate::from_der(der).unwrap();
    assert!(rest.is_empty());
    cert
}

fn csr_error(f: &Fixture, csr: &[u8]) -> CsrRejection {
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

fn device_cert_chains(alg: &'static SignatureAlgorithm) {
    let f = fixture();
    let (key, csr) = new_csr(alg);
    let issued = f.ca.issue_device_certificate(&csr, "dev-42").unwrap();

    // Chain verification by rustls-webpki: root as the only anchor, intermediate as the
    // intermediate, client-auth usage, revocation against a fresh CRL.
    let crl = f.ca.crl(T0).unwrap();
    let verified =
        f.ca.verify_device_chain(&issued.der, T0, std::slice::from_ref(&crl))
            .unwrap();
    assert_eq!(verified.device_id, "dev-42");
    assert_eq!(verified.serial, issued.serial);
    // The same through the public certificates alone (what a gateway holds).
    let certs = tether_trust::CaCertificates::from_pem(
        &f.ca.certificates().root_pem(),
        &f.ca.certificates().intermediate_pem(),
    )
    .unwrap();
    certs
        .verify_device_chain(
            &issued.der,
            UnixMillis(T0.0 + 1000),
            std::slice::from_ref(&crl),
        )
        .unwrap();

    let cert = parse(&issued.der);
    // The key is the CSR's key.
    assert_eq!(
        &*cert.public_key().subject_public_key.data,
        key.public_key_raw()
    );
    // Subject is exactly CN=<device id>, whatever the CSR asked for.
    let cns: Vec<_> = cert
        .subject()
        .iter_common_name()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(cns, ["dev-42"]);
    assert_eq!(cert.subject().iter().count(), 1);
    // Validity exactly one year (365 days) from the injected clock.
    assert_eq!(
        cert.validity().not_before.timestamp().cast_unsigned(),
        T0.as_secs()
    );
    assert_eq!(
        cert.validity().not_after.timestamp().cast_unsigned(),
        T0.as_secs() + 365 * 24 * 3600
    );
    assert_eq!(issued.not_before, T0);
    assert_eq!(issued.not_after, T0.saturating_add(365 * DAY));
    // clientAuth only, not a CA, 16-byte positive serial.
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth && !eku.any);
    assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
    assert_eq!(cert.raw_serial().len(), 16);
    assert!(cert.raw_serial()[0] & 0x80 == 0 && cert.raw_serial()[0] != 0);
    assert_eq!(issued.serial.as_bytes(), cert.raw_serial());
    // No SAN copied from the request.
    assert!(cert.subject_alternative_name().unwrap().is_none());

    // Valid until the last second, not after.
    let end = T0.saturating_add(365 * DAY);
    let late_crl = f.ca.crl(end.saturating_sub(DAY)).unwrap();
    f.ca.verify_device_chain(
        &issued.der,
        end.saturating_sub(Duration::from_secs(1)),
        std::slice::from_ref(&late_crl),
    )
    .unwrap();
    let err =
        f.ca.verify_device_chain(&issued.der, end.saturating_add(DAY), &[late_crl]);
    assert!(
        matches!(err, Err(TrustError::CertificateInvalid(_))),
        "{err:?}"
    );
}

#[test]
fn device_cert_from_p256_csr_chains_to_root() {
    device_cert_chains(&PKCS_ECDSA_P256_SHA256);
}

#[test]
fn device_cert_from_ed25519_csr_chains_to_root() {
    device_cert_chains(&PKCS_ED25519);
}

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
fn a_certificate_from_another_ca_does_not_chain() {
    let f = fixture();
    let other = fixture();
    let (_, csr) = new_csr(&PKCS_ECDSA_P256_SHA256);
    let foreign = other.ca.issue_device_certificate(&csr, "dev-1").unwrap();
    let crl = f.ca.crl(T0).unwrap();
    let err =
        f.ca.verify_device_chain(&foreign.der, T0, &[crl])
            .unwrap_err();
    assert!(matches!(err, TrustError::CertificateInvalid(_)), "{err:?}");
    assert_eq!(err.code().number(), 2008);
}

#[test]
fn csr_whose_signature_does_not_match_its_key_is_refused() {
    let f = fixture();
    // Two valid P-256 requests; put B's public key into A's request, keeping A's
    // signature. Same key type, so the structure stays valid; only the signature breaks.
    let (key_a, csr_a) = new_csr(&PKCS_ECDSA_P256_SHA256);
    let (key_b, _) = new_csr(&PKCS_ECDSA_P256_SHA256);
    let spki_a = key_a.subject_public_key_info();
    let spki_b = key_b.subject_public_key_info();
    assert_eq!(spki_a.len(), spki_b.len());
    let at = csr_a
        .windows(spki_a.len())
        .position(|w| w == spki_a.as_slice())
        .unwrap();
    let mut swapped = csr_a.clone();
    swapped[at..at + spki_b.len()].copy_from_slice(&spki_b);
    assert_eq!(csr_error(&f, &swapped), CsrRejection::BadSignature);
    // The untouched request is fine.
    f.ca.issue_device_certificate(&csr_a, "dev-1").unwrap();
}

#[test]
fn csr_with_a_flipped_signature_byte_is_refused() {
    let f = fixture();
    for alg in [&PKCS_ED25519, &PKCS_ECDSA_P256_SHA256] {
        let (_, csr) = new_csr(alg);
        // The signature BIT STRING is the last element of the request.
        let mut bad = csr.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        let r = csr_error(&f, &bad);
        // A flipped byte in an ECDSA DER signature may also break its encoding; either
        // way it is refused as a bad signature.
        assert_eq!(r, CsrRejection::BadSignature, "{alg:?}");
    }
}

#[test]
fn csr_with_a_p384_key_is_refused() {
    let f = fixture();
    // A genuine, correctly self-signed P-384 request: refused for its key type alone.
    let (_, csr) = new_csr(&PKCS_ECDSA_P384_SHA384);
    assert!(matches!(csr_error(&f, &csr), CsrRejection::UnsupportedKey(k) if k.contains("P-384")));
}

/// A stand-in RSA key: a 2048-bit modulus-shaped public key. ring cannot generate RSA
/// keys, so it "signs" with fixed bytes; the CA must refuse the request for its key type
/// before even looking at the signature, which is what this checks.
struct RsaShapedKey(Vec<u8>);

impl RsaShapedKey {
    fn new() -> Self {
        // RSAPublicKey ::= SEQUENCE { modulus INTEGER (257 bytes with the 0x00), e 65537 }
        let mut n = vec![0x00, 0xc3];
        n.extend((0..255u32).map(|i| u8::try_from(i * 151 % 251).unwrap() | 1));
        let mut body = vec![0x02, 0x82, 0x01, 0x01];
        body.extend_from_slice(&n);
        body.extend_from_slice(&[0x02, 0x03, 0x01, 0x00, 0x01]);
        let len = u16::try_from(body.len()).unwrap().to_be_bytes();
        let mut der = vec![0x30, 0x82, len[0], len[1]];
        der.extend_from_slice(&body);
        Self(der)
    }
}

impl PublicKeyData for RsaShapedKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

impl SigningKey for RsaShapedKey {
    fn sign(&self, _msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        Ok(vec![0x5a; 256])
    }
}

#[test]
fn csr_with_an_rsa_key_is_refused() {
    let f = fixture();
    let csr = csr_for(&RsaShapedKey::new());
    assert_eq!(
        csr_error(&f, &csr),
        CsrRejection::UnsupportedKey("RSA".into())
    );
}

#[test]
fn garbage_and_oversized_csrs_are_refused() {
    let f = fixture();
    assert_eq!(csr_error(&f, b""), CsrRejection::Malformed);
    assert_eq!(
        csr_error(&f, b"-----BEGIN CERTIFICATE REQUEST-----"),
        CsrRejection::Malformed
    );
    let (_, mut csr) = new_csr(&PKCS_ED25519);
    csr.push(0);
    assert_eq!(csr_error(&f, &csr), CsrRejection::Malformed);
    let huge = vec![0x30; tether_trust::ca::MAX_CSR_BYTES + 1];
    assert!(matches!(
        csr_error(&f, &huge),
        CsrRejection::TooLarge { .. }
    ));
}

#[test]
fn device_ids_are_checked() {
    let f = fixture();
    let (_, csr) = new_csr(&PKCS_ED25519);
    for bad in ["", "a b", "dev/1", "dev\n", &"x".repeat(65), "é"] {
        let r = f.ca.issue_device_certificate(&csr, bad);
        assert!(
            matches!(r, Err(TrustError::InvalidInput { .. })),
            "{bad:?}: {r:?}"
        );
    }
}

#[test]
fn server_cert_has_the_sans_and_chains() {
    let f = fixture();
    let issued =
        f.ca.issue_server_certificate(&["gw.tether.example", "127.0.0.1", "::1", "*.api.example"])
            .unwrap();
    let cert = parse(&issued.certificate.der);
    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    let names: Vec<String> = san.general_names.iter().map(|n| n.to_string()).collect();
    assert_eq!(
        names,
        [
            "DNSName(gw.tether.example)",
            "IPAddress(7f:00:00:01)",
            "IPAddress(00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:01)",
            "DNSName(*.api.example)",
        ]
    );
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);

    let certs = f.ca.certificates();
    let now = f.clock.now();
    for name in ["gw.tether.example", "127.0.0.1", "::1", "x.api.example"] {
        certs
            .verify_server_chain(&issued.certificate.der, now, name)
            .unwrap();
    }
    for wrong in [
        "other.example",
        "10.0.0.1",
        "api.example",
        "a.b.api.example",
    ] {
        let r = certs.verify_server_chain(&issued.certificate.der, now, wrong);
        assert!(
            matches!(r, Err(TrustError::CertificateInvalid(_))),
            "{wrong}: {r:?}"
        );
    }
    // A server certificate is no device certificate.
    let crl = f.ca.crl(now).unwrap();
    let r =
        f.ca.verify_device_chain(&issued.certificate.der, now, &[crl]);
    assert!(matches!(r, Err(TrustError::CertificateInvalid(_))), "{r:?}");
    // Its key matches the certificate, and PEM output is well-formed.
    let key = KeyPair::try_from(issued.key_pkcs8_der.as_slice()).unwrap();
    assert_eq!(
        key.public_key_raw(),
        &*cert.public_key().subject_public_key.data
    );
    assert!(
        issued
            .key_pem()
            .starts_with("-----BEGIN PRIVATE KEY-----\n")
    );
    assert!(!format!("{issued:?}").contains(&format!("{:?}", &issued.key_pkcs8_der[..8])));
    let chain = f.ca.chain_pem(&issued.certificate);
    assert_eq!(chain.matches("-----BEGIN CERTIFICATE-----").count(), 2);
    // Bad SANs are refused.
    for bad in [&[][..], &["not a name"], &["exa mple.com"], &["-"]] {
        let r = f.ca.issue_server_certificate(bad);
        assert!(
            matches!(r, Err(TrustError::InvalidInput { .. })),
            "{bad:?}: {r:?}"
        );
    }
}

#[test]
fn ca_certificates_have_the_documented_shape() {
    let f = fixture();
    let root = parse(f.ca.certificates().root_der());
    let inter = parse(f.ca.certificates().intermediate_der());
    let bc = root.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca && bc.path_len_constraint == Some(1));
    let bc = inter.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca && bc.path_len_constraint == Some(0));
    // Root: P-384, self-signed, 10 years. Intermediate: P-256, signed by root, 2 years.
    assert_eq!(root.public_key().subject_public_key.data.len(), 97);
    assert_eq!(inter.public_key().subject_public_key.data.len(), 65);
    root.verify_signature(None).unwrap();
    inter.verify_signature(Some(root.public_key())).unwrap();
    let years = |c: &X509Certificate<'_>| {
        (c.validity().not_after.timestamp() - c.validity().not_before.timestamp()) / (24 * 3600)
    };
    assert_eq!(years(&root), 3652);
    assert_eq!(years(&inter), 730);
    let ku = inter.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
}

fn files_under(dir: &Path) -> Vec<Vec<u8>> {
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

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The private scalar inside a ring-made PKCS#8 EC key: `ECPrivateKey` starts with
/// `INTEGER 1` then `OCTET STRING <scalar>`.
fn ec_scalar(pkcs8: &[u8], len: u8) -> Vec<u8> {
    let marker = [0x02, 0x01, 0x01, 0x04, len];
    let at = pkcs8.windows(5).position(|w| w == marker).unwrap() + 5;
    pkcs8[at..at + len as usize].to_vec()
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
