//! Bringing an operator's CA: a root with its key (Tether makes the intermediate), or a root
//! without its key and an intermediate it signed. Device certificates chain to the given
//! root under rustls-webpki; unusable certificates and keys are refused with nothing
//! written; an existing CA is never overwritten; the imported root key rests only sealed.

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
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, NameConstraints, PKCS_ECDSA_P256_SHA256,
    PKCS_ECDSA_P384_SHA384, PKCS_ED25519, SignatureAlgorithm,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use tether_proto::{ManualClock, UnixMillis};
use tether_trust::ca::profile::{BACKDATE, INTERMEDIATE_VALIDITY};
use tether_trust::ca::{
    INTERMEDIATE_CERT_FILE, INTERMEDIATE_KEY_FILE, INTERMEDIATE_KEY_LABEL, REVOCATIONS_FILE,
    ROOT_CERT_FILE, ROOT_KEY_FILE, ROOT_KEY_LABEL,
};
use tether_trust::{
    CaNames, CertificateAuthority, FileKeystore, Keystore, MemoryKeystore, TrustError,
};

const P256: &SignatureAlgorithm = &PKCS_ECDSA_P256_SHA256;
const P384: &SignatureAlgorithm = &PKCS_ECDSA_P384_SHA384;

/// An operator's CA certificate and key, made with rcgen as an operator's tools would.
struct Given {
    key: KeyPair,
    params: CertificateParams,
    cert: rcgen::Certificate,
}

impl Given {
    fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    fn der(&self) -> &[u8] {
        self.cert.der()
    }
}

fn at(t: UnixMillis) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(t.as_secs()).unwrap()).unwrap()
}

/// A CA certificate's parameters: valid from a month before T0 for five years, no pathlen,
/// keyCertSign and cRLSign; then `edit`.
fn ca_params(common_name: &str, edit: impl FnOnce(&mut CertificateParams)) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::OrganizationName, "Lab Example");
    p.distinguished_name.push(DnType::CommonName, common_name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = at(T0.saturating_sub(30 * DAY));
    p.not_after = at(T0.saturating_add(5 * 365 * DAY));
    edit(&mut p);
    p
}

fn root(alg: &'static SignatureAlgorithm, edit: impl FnOnce(&mut CertificateParams)) -> Given {
    let key = KeyPair::generate_for(alg).unwrap();
    let params = ca_params("Lab Root CA", edit);
    let cert = params.self_signed(&key).unwrap();
    Given { key, params, cert }
}

/// An intermediate signed by `root`: pathlen 0 unless `edit` says otherwise.
fn intermediate(
    root: &Given,
    alg: &'static SignatureAlgorithm,
    edit: impl FnOnce(&mut CertificateParams),
) -> Given {
    let key = KeyPair::generate_for(alg).unwrap();
    let params = ca_params("Lab Issuing CA", |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.use_authority_key_identifier_extension = true;
        edit(p);
    });
    let issuer = Issuer::new(root.params.clone(), &root.key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    Given { key, params, cert }
}

fn keystore() -> Arc<dyn Keystore> {
    Arc::new(MemoryKeystore::new().unwrap())
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(T0))
}

fn names() -> CaNames {
    CaNames::for_organization("Lab Example")
}

fn import(
    ks: &Arc<dyn Keystore>,
    root: &Given,
    key_pem: &str,
) -> Result<CertificateAuthority, TrustError> {
    CertificateAuthority::import(ks.clone(), clock(), &names(), &root.cert_pem(), key_pem)
}

fn import_with_intermediate(
    ks: &Arc<dyn Keystore>,
    root: &Given,
    inter: &Given,
    key_pem: &str,
) -> Result<CertificateAuthority, TrustError> {
    CertificateAuthority::import_with_intermediate(
        ks.clone(),
        clock(),
        &root.cert_pem(),
        &inter.cert_pem(),
        key_pem,
    )
}

/// Issues a device certificate and verifies it with rustls-webpki directly, the given
/// root as the only trust anchor; then through the CA's own check, with its CRL.
fn device_chains_to(ca: &CertificateAuthority, root_der: &[u8]) {
    let (_, csr) = new_csr(P256);
    let issued = ca.issue_device_certificate(&csr, "dev-7").unwrap();

    let anchor_der = CertificateDer::from(root_der.to_vec());
    let anchor = webpki::anchor_from_trusted_cert(&anchor_der).unwrap();
    let ee_der = CertificateDer::from(issued.der.clone());
    let ee = webpki::EndEntityCert::try_from(&ee_der).unwrap();
    let inter = CertificateDer::from(ca.certificates().intermediate_der().to_vec());
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &[inter],
        UnixTime::since_unix_epoch(Duration::from_secs(T0.as_secs())),
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .unwrap();

    let crl = ca.crl(T0).unwrap();
    let verified = ca.verify_device_chain(&issued.der, T0, &[crl]).unwrap();
    assert_eq!(verified.device_id, "dev-7");
}

/// No file of a CA is in the keystore.
fn nothing_written(ks: &dyn Keystore) {
    for name in [
        ROOT_CERT_FILE,
        ROOT_KEY_FILE,
        INTERMEDIATE_CERT_FILE,
        INTERMEDIATE_KEY_FILE,
        REVOCATIONS_FILE,
    ] {
        assert!(ks.read(name).unwrap().is_none(), "{name} was written");
    }
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// The SEC1 `ECPrivateKey` inside a PKCS#8 `PrivateKeyInfo` (its third element).
fn sec1_inside(pkcs8: &[u8]) -> Vec<u8> {
    let (rest, info) = x509_parser::der_parser::parse_der(pkcs8).unwrap();
    assert!(rest.is_empty());
    info.as_sequence().unwrap()[2].as_slice().unwrap().to_vec()
}

#[test]
fn a_root_with_its_key_gets_a_new_intermediate_and_device_certificates_chain_to_it() {
    for alg in [P384, P256] {
        let given = root(alg, |_| {});
        let ks = keystore();
        let ca = import(&ks, &given, &given.key_pem()).unwrap();

        // The root is the one given, byte for byte.
        assert_eq!(ca.certificates().root_der(), given.der());
        assert_eq!(ca.certificates().root_pem(), given.cert_pem());

        // The intermediate has create's profile, under the given root.
        let inter = parse(ca.certificates().intermediate_der());
        let root_cert = parse(given.der());
        assert_eq!(inter.issuer().as_raw(), root_cert.subject().as_raw());
        inter
            .verify_signature(Some(root_cert.public_key()))
            .unwrap();
        let bc = inter.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert_eq!(bc.path_len_constraint, Some(0));
        let ku = inter.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        let cn = inter.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "Lab Example Intermediate CA");
        assert_eq!(
            inter.public_key().subject_public_key.data.len(),
            65,
            "P-256"
        );
        assert_eq!(
            inter.validity().not_after.timestamp().cast_unsigned(),
            T0.saturating_sub(BACKDATE)
                .saturating_add(INTERMEDIATE_VALIDITY)
                .as_secs()
        );

        device_chains_to(&ca, given.der());

        // The root key rests sealed, exactly as given.
        let sealed = ks
            .load_sealed(ROOT_KEY_FILE, ROOT_KEY_LABEL)
            .unwrap()
            .unwrap();
        assert_eq!(sealed.as_slice(), given.key.serialize_der());

        // And the CA reopens from its keystore like a created one.
        drop(ca);
        let again = CertificateAuthority::load(ks.clone(), clock()).unwrap();
        assert_eq!(again.certificates().root_der(), given.der());
        device_chains_to(&again, given.der());
    }
}

#[test]
fn the_new_intermediate_never_outlives_the_imported_root() {
    let end = T0.saturating_add(100 * DAY);
    let given = root(P384, |p| p.not_after = at(end));
    let ca = import(&keystore(), &given, &given.key_pem()).unwrap();
    let inter = parse(ca.certificates().intermediate_der());
    assert_eq!(
        inter.validity().not_after.timestamp().cast_unsigned(),
        end.as_secs()
    );
    device_chains_to(&ca, given.der());
}

#[test]
fn sec1_keys_are_accepted_and_stored_as_pkcs8() {
    let given = root(P384, |_| {});
    let pkcs8 = given.key.serialize_der();
    let sec1_pem = pem_block("EC PRIVATE KEY", &sec1_inside(&pkcs8));
    // `openssl ecparam -genkey` writes an EC PARAMETERS block first.
    let openssl_style = format!(
        "-----BEGIN EC PARAMETERS-----\nBgUrgQQAIg==\n-----END EC PARAMETERS-----\n{sec1_pem}"
    );
    for key_pem in [sec1_pem, openssl_style] {
        let ks = keystore();
        let ca = import(&ks, &given, &key_pem).unwrap();
        let sealed = ks
            .load_sealed(ROOT_KEY_FILE, ROOT_KEY_LABEL)
            .unwrap()
            .unwrap();
        assert_eq!(sealed.as_slice(), pkcs8.as_slice());
        device_chains_to(&ca, given.der());
    }

    // A P-256 intermediate's key, likewise.
    let inter = intermediate(&given, P256, |_| {});
    let inter_pkcs8 = inter.key.serialize_der();
    let sec1_pem = pem_block("EC PRIVATE KEY", &sec1_inside(&inter_pkcs8));
    let ks = keystore();
    let ca = import_with_intermediate(&ks, &given, &inter, &sec1_pem).unwrap();
    let sealed = ks
        .load_sealed(INTERMEDIATE_KEY_FILE, INTERMEDIATE_KEY_LABEL)
        .unwrap()
        .unwrap();
    assert_eq!(sealed.as_slice(), inter_pkcs8.as_slice());
    device_chains_to(&ca, given.der());
}

#[test]
fn a_root_without_its_key_and_an_intermediate_it_signed() {
    let cases = [
        (P384, BasicConstraints::Constrained(0)),
        (P256, BasicConstraints::Unconstrained),
    ];
    for (root_alg, path_len) in cases {
        let given_root = root(root_alg, |_| {});
        let given_inter = intermediate(&given_root, P256, |p| p.is_ca = IsCa::Ca(path_len));
        let ks = keystore();
        let ca = import_with_intermediate(&ks, &given_root, &given_inter, &given_inter.key_pem())
            .unwrap();

        assert_eq!(ca.certificates().root_der(), given_root.der());
        assert_eq!(ca.certificates().intermediate_der(), given_inter.der());
        device_chains_to(&ca, given_root.der());
        let server = ca
            .issue_server_certificate(&["tether.lab.example"])
            .unwrap();
        ca.certificates()
            .verify_server_chain(&server.certificate.der, T0, "tether.lab.example")
            .unwrap();

        // No root key was given, and none is stored.
        assert!(ks.read(ROOT_KEY_FILE).unwrap().is_none());
        let sealed = ks
            .load_sealed(INTERMEDIATE_KEY_FILE, INTERMEDIATE_KEY_LABEL)
            .unwrap()
            .unwrap();
        assert_eq!(sealed.as_slice(), given_inter.key.serialize_der());

        drop(ca);
        let again = CertificateAuthority::load(ks.clone(), clock()).unwrap();
        assert_eq!(again.certificates().intermediate_der(), given_inter.der());
        device_chains_to(&again, given_root.der());
    }
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused() {
    let given = root(P384, |_| {});
    let encrypted =
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n";
    for key_pem in [
        KeyPair::generate_for(P384).unwrap().serialize_pem(), // another key
        KeyPair::generate_for(P256).unwrap().serialize_pem(), // another curve
        KeyPair::generate_for(&PKCS_ED25519)
            .unwrap()
            .serialize_pem(),
        given.cert_pem(), // a certificate, no key
        encrypted.to_owned(),
        String::new(),
    ] {
        let ks = keystore();
        let e = import(&ks, &given, &key_pem).unwrap_err();
        assert!(
            matches!(
                e,
                TrustError::InvalidInput {
                    field: "root key",
                    ..
                }
            ),
            "{e:?}"
        );
        nothing_written(&*ks);
    }

    let inter = intermediate(&given, P256, |_| {});
    for key_pem in [
        KeyPair::generate_for(P256).unwrap().serialize_pem(),
        given.key_pem(), // the root's key
    ] {
        let ks = keystore();
        let e = import_with_intermediate(&ks, &given, &inter, &key_pem).unwrap_err();
        assert!(
            matches!(
                e,
                TrustError::InvalidInput {
                    field: "intermediate key",
                    ..
                }
            ),
            "{e:?}"
        );
        nothing_written(&*ks);
    }
}

#[test]
fn roots_that_are_not_usable_cas_are_refused() {
    let stranger = root(P384, |_| {});
    let cases = [
        ("not a CA", root(P384, |p| p.is_ca = IsCa::ExplicitNoCa)),
        ("no basicConstraints", root(P384, |p| p.is_ca = IsCa::NoCa)),
        (
            "no keyCertSign",
            root(P384, |p| {
                p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
            }),
        ),
        ("no keyUsage", root(P384, |p| p.key_usages = Vec::new())),
        (
            "pathlen 0",
            root(P384, |p| {
                p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            }),
        ),
        (
            "serverAuth only",
            root(P384, |p| {
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            }),
        ),
        (
            "expired",
            root(P384, |p| p.not_after = at(T0.saturating_sub(DAY))),
        ),
        (
            "not yet valid",
            root(P384, |p| p.not_before = at(T0.saturating_add(DAY))),
        ),
        ("Ed25519", root(&PKCS_ED25519, |_| {})),
        (
            // The server's certificate always names localhost: peers would refuse it.
            "names constrained away from localhost",
            root(P384, |p| {
                p.name_constraints = Some(NameConstraints {
                    permitted_subtrees: vec![GeneralSubtree::DnsName("lab.example".into())],
                    excluded_subtrees: Vec::new(),
                });
            }),
        ),
        (
            "not self-signed",
            intermediate(&stranger, P384, |p| {
                p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            }),
        ),
    ];
    for (why, given) in &cases {
        let ks = keystore();
        let e = import(&ks, given, &given.key_pem()).unwrap_err();
        assert!(
            matches!(e, TrustError::CertificateInvalid(_)),
            "{why}: {e:?}"
        );
        nothing_written(&*ks);
    }

    // Not a certificate at all.
    let ks = keystore();
    let e = CertificateAuthority::import(
        ks.clone(),
        clock(),
        &names(),
        &stranger.key_pem(),
        &stranger.key_pem(),
    )
    .unwrap_err();
    assert!(matches!(e, TrustError::CertificateInvalid(_)), "{e:?}");
    nothing_written(&*ks);
}

#[test]
fn intermediates_that_do_not_fit_are_refused() {
    let given_root = root(P384, |_| {});
    // Same names as the given root, another key.
    let stranger = root(P384, |_| {});
    let p256_root = root(P256, |_| {});
    let cases = [
        (
            "not a CA",
            &given_root,
            intermediate(&given_root, P256, |p| p.is_ca = IsCa::ExplicitNoCa),
        ),
        (
            "no cRLSign",
            &given_root,
            intermediate(&given_root, P256, |p| {
                p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
            }),
        ),
        (
            "clientAuth only",
            &given_root,
            intermediate(&given_root, P256, |p| {
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }),
        ),
        (
            "P-384 key",
            &given_root,
            intermediate(&given_root, P384, |_| {}),
        ),
        (
            "signed by another root",
            &given_root,
            intermediate(&stranger, P256, |_| {}),
        ),
        (
            "expired",
            &given_root,
            intermediate(&given_root, P256, |p| {
                p.not_after = at(T0.saturating_sub(DAY));
            }),
        ),
        (
            "the root itself",
            &p256_root,
            root(P256, |_| {}), // replaced below
        ),
    ];
    for (why, root, inter) in &cases {
        let inter = if *why == "the root itself" {
            &p256_root
        } else {
            inter
        };
        let ks = keystore();
        let e = import_with_intermediate(&ks, root, inter, &inter.key_pem()).unwrap_err();
        assert!(
            matches!(e, TrustError::CertificateInvalid(_)),
            "{why}: {e:?}"
        );
        nothing_written(&*ks);
    }
}

#[test]
fn an_existing_ca_is_never_overwritten() {
    let given = root(P384, |_| {});
    let inter = intermediate(&given, P256, |_| {});

    // Over a created CA.
    let f = fixture();
    let before = f.ca.certificates().root_der().to_vec();
    let r = CertificateAuthority::import(
        f.keystore.clone(),
        f.clock.clone(),
        &names(),
        &given.cert_pem(),
        &given.key_pem(),
    );
    assert!(matches!(r, Err(TrustError::AlreadyExists(_))), "{r:?}");
    let r = import_with_intermediate(&f.keystore, &given, &inter, &inter.key_pem());
    assert!(matches!(r, Err(TrustError::AlreadyExists(_))), "{r:?}");
    let reopened = CertificateAuthority::load(f.keystore.clone(), f.clock.clone()).unwrap();
    assert_eq!(reopened.certificates().root_der(), before);

    // Over an imported CA: neither create nor another import replaces it.
    let ks = keystore();
    import(&ks, &given, &given.key_pem()).unwrap();
    let other = root(P384, |_| {});
    assert!(matches!(
        import(&ks, &other, &other.key_pem()),
        Err(TrustError::AlreadyExists(_))
    ));
    assert!(matches!(
        CertificateAuthority::create(ks.clone(), clock(), &names()),
        Err(TrustError::AlreadyExists(_))
    ));
    let reopened = CertificateAuthority::load(ks, clock()).unwrap();
    assert_eq!(reopened.certificates().root_der(), given.der());
}

#[test]
fn the_imported_root_key_is_not_on_disk_in_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let ks: Arc<dyn Keystore> = Arc::new(FileKeystore::open_or_create(dir.path()).unwrap());
    let given = root(P384, |_| {});
    drop(import(&ks, &given, &given.key_pem()).unwrap());

    let pkcs8 = given.key.serialize_der();
    let scalar = ec_scalar(&pkcs8, 48);
    let pem_body = base64::engine::general_purpose::STANDARD.encode(&pkcs8);
    let files = files_under(dir.path());
    assert!(
        files.len() >= 6,
        "kek, two sealed keys, revocations, two certificates"
    );
    for file in &files {
        assert!(!contains(file, &pkcs8), "PKCS#8 DER found on disk");
        assert!(!contains(file, &scalar), "private scalar found on disk");
        assert!(
            !contains(file, &pem_body.as_bytes()[..64]),
            "PEM found on disk"
        );
        assert!(!contains(file, b"PRIVATE KEY"));
    }
    // It is there, sealed: only the keystore's KEK opens it.
    let sealed = ks
        .load_sealed(ROOT_KEY_FILE, ROOT_KEY_LABEL)
        .unwrap()
        .unwrap();
    assert_eq!(sealed.as_slice(), pkcs8.as_slice());
}
