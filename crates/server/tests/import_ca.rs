//! Bringing your own CA: `import_ca` on a fresh data dir, then a real start that serves
//! under the imported root (TLS verified by a client pinning that root), for both ways of
//! bringing one; an existing CA is never replaced; the `import-ca` command itself.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
};
use tether_client::Api;
use tether_proto::{Clock, ManualClock, SystemClock};
use tether_server::app::{self, CaImport, StartError};
use tether_server::config::Config;
use tether_trust::TrustError;

/// An operator's CA certificate and key, made with rcgen as their own tools would.
struct Given {
    key: KeyPair,
    params: CertificateParams,
    cert: rcgen::Certificate,
}

fn ca_params(common_name: &str, path_len: BasicConstraints) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::OrganizationName, "Lab Example");
    p.distinguished_name.push(DnType::CommonName, common_name);
    p.is_ca = IsCa::Ca(path_len);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

fn operator_root() -> Given {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let params = ca_params("Lab Root CA", BasicConstraints::Constrained(1));
    let cert = params.self_signed(&key).unwrap();
    Given { key, params, cert }
}

fn operator_intermediate(root: &Given) -> Given {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let params = ca_params("Lab Issuing CA", BasicConstraints::Constrained(0));
    let cert = params
        .signed_by(&key, &Issuer::new(root.params.clone(), &root.key))
        .unwrap();
    Given { key, params, cert }
}

fn config(dir: &Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    }
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::new(SystemClock.now()))
}

/// Starts the server on `dir` and checks it serves under `root`: the CA's root is the
/// imported one, and a client that pins only that root completes TLS with the server.
async fn serves_under(dir: &Path, root: &Given) {
    let running = app::start(config(dir), clock()).await.unwrap();
    assert_eq!(
        running.state.ca.certificates().root_pem(),
        root.cert.pem(),
        "the server's CA root is the imported root"
    );
    let api = Api::new(&running.public_url, &root.cert.pem()).unwrap();
    let (status, _) = api.get_raw("/healthz").await.unwrap();
    assert_eq!(status, 200);
    running.shutdown().await;
}

#[tokio::test]
async fn an_imported_root_and_key_is_the_root_the_server_serves_under() {
    let dir = tempfile::tempdir().unwrap();
    let root = operator_root();
    let ca = app::import_ca(
        &config(dir.path()),
        clock(),
        CaImport::Root {
            cert_pem: &root.cert.pem(),
            key_pem: &root.key.serialize_pem(),
        },
    )
    .unwrap();
    assert_eq!(ca.certificates().root_der(), root.cert.der().as_ref());
    drop(ca);

    serves_under(dir.path(), &root).await;
    // And again after a restart: the imported CA is loaded, not replaced.
    serves_under(dir.path(), &root).await;
}

#[tokio::test]
async fn an_imported_root_and_intermediate_is_what_the_server_serves_under() {
    let dir = tempfile::tempdir().unwrap();
    let root = operator_root();
    let inter = operator_intermediate(&root);
    app::import_ca(
        &config(dir.path()),
        clock(),
        CaImport::Intermediate {
            root_cert_pem: &root.cert.pem(),
            cert_pem: &inter.cert.pem(),
            key_pem: &inter.key.serialize_pem(),
        },
    )
    .unwrap();

    let running = app::start(config(dir.path()), clock()).await.unwrap();
    assert_eq!(
        running.state.ca.certificates().intermediate_der(),
        inter.cert.der().as_ref()
    );
    running.shutdown().await;
    serves_under(dir.path(), &root).await;
}

#[tokio::test]
async fn a_data_dir_with_a_ca_refuses_an_import() {
    let dir = tempfile::tempdir().unwrap();
    // The first start creates a CA.
    let running = app::start(config(dir.path()), clock()).await.unwrap();
    let created = running.state.ca.certificates().root_pem();
    running.shutdown().await;

    let root = operator_root();
    let r = app::import_ca(
        &config(dir.path()),
        clock(),
        CaImport::Root {
            cert_pem: &root.cert.pem(),
            key_pem: &root.key.serialize_pem(),
        },
    );
    assert!(
        matches!(r, Err(StartError::Trust(TrustError::AlreadyExists(_)))),
        "{r:?}"
    );
    let running = app::start(config(dir.path()), clock()).await.unwrap();
    assert_eq!(running.state.ca.certificates().root_pem(), created);
    running.shutdown().await;
}

#[test]
fn the_import_ca_command() {
    let dir = tempfile::tempdir().unwrap();
    let root = operator_root();
    let inter = operator_intermediate(&root);
    let file = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let root_cert = file("root.pem", root.cert.pem());
    let root_key = file("root.key", root.key.serialize_pem());
    let inter_cert = file("inter.pem", inter.cert.pem());
    let inter_key = file("inter.key", inter.key.serialize_pem());
    let run = |data_dir: &str, args: &[&Path]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tether-server"));
        cmd.arg("--data-dir").arg(dir.path().join(data_dir));
        cmd.arg("import-ca");
        for pair in args.chunks(2) {
            cmd.arg(pair[0]).arg(pair[1]);
        }
        cmd.env("TETHER_LOG", "error").output().unwrap()
    };
    let flag = |s: &'static str| Path::new(s);

    // Root and key.
    let out = run(
        "a",
        &[
            flag("--root-cert"),
            &root_cert,
            flag("--root-key"),
            &root_key,
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let fingerprint = tether_client::fingerprint(root.cert.der());
    assert!(
        stdout.contains(&fingerprint),
        "{stdout} lacks {fingerprint}"
    );
    // Again on the same data dir: refused.
    let out = run(
        "a",
        &[
            flag("--root-cert"),
            &root_cert,
            flag("--root-key"),
            &root_key,
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    // Root and intermediate.
    let out = run(
        "b",
        &[
            flag("--root-cert"),
            &root_cert,
            flag("--intermediate-cert"),
            &inter_cert,
            flag("--intermediate-key"),
            &inter_key,
        ],
    );
    assert!(out.status.success(), "{out:?}");

    // Usage errors (clap exits 2): neither mode, both modes, half of the second mode.
    for args in [
        vec![flag("--root-cert"), &root_cert],
        vec![
            flag("--root-cert"),
            &root_cert,
            flag("--root-key"),
            &root_key,
            flag("--intermediate-cert"),
            &inter_cert,
            flag("--intermediate-key"),
            &inter_key,
        ],
        vec![
            flag("--root-cert"),
            &root_cert,
            flag("--intermediate-cert"),
            &inter_cert,
        ],
    ] {
        let out = run("c", &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
    assert!(!dir.path().join("c").exists(), "nothing was created");
}
