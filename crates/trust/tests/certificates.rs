//! The certificate authority through its public API: device certificates from CSRs (both
//! key types) checked with rustls-webpki, CSR refusals, server certificates and the CA
//! certificates' shape.

// Test code: a panic is a failed test, and arithmetic/indexing on fixed test data is fine.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::time::Duration;

use common::*;
use rcgen::{
    KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PublicKeyData,
    SignatureAlgorithm, SigningKey,
};
use tether_proto::{Clock, UnixMillis};
use tether_trust::{CsrRejection, TrustError};
use x509_parser::prelude::X509Certificate;

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
