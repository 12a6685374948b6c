#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use rand_core::OsRng;

use super::*;

fn dir() -> (tempfile::TempDir, StateDir) {
    let t = tempfile::tempdir().unwrap();
    let s = StateDir::open(&t.path().join("state")).unwrap();
    (t, s)
}

#[test]
fn identity_is_created_once_and_reloaded() {
    let (_t, s) = dir();
    assert!(s.identity().unwrap().is_none());
    let (a, created) = s.load_or_create_identity(&mut OsRng).unwrap();
    assert!(created);
    let (b, created) = s.load_or_create_identity(&mut OsRng).unwrap();
    assert!(!created);
    assert_eq!(a.public_bytes(), b.public_bytes());
    assert_eq!(
        s.identity().unwrap().unwrap().public_bytes(),
        a.public_bytes()
    );
}

#[cfg(unix)]
#[test]
fn private_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (_t, s) = dir();
    s.load_or_create_identity(&mut OsRng).unwrap();
    let mode = std::fs::metadata(s.path(files::AGENT_KEY))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(&s.root).unwrap().permissions().mode();
    assert_eq!(dir_mode & 0o777, 0o700);
}

#[test]
fn secrets_are_sealed_on_windows_and_stored_as_they_are_on_unix() {
    let (_t, s) = dir();
    let (id, _) = s.load_or_create_identity(&mut OsRng).unwrap();
    let on_disk = std::fs::read(s.path(files::AGENT_KEY)).unwrap();
    assert_eq!(
        on_disk == id.pkcs8_der(),
        cfg!(unix),
        "sealed only on Windows"
    );
    assert_eq!(
        s.read_secret(files::AGENT_KEY).unwrap().unwrap().as_slice(),
        id.pkcs8_der()
    );
    // Sealed for one file, a blob does not open as another (on Windows).
    std::fs::write(s.path(files::QUEUE_KEY), &on_disk).unwrap();
    assert_eq!(s.read_secret(files::QUEUE_KEY).is_err(), cfg!(windows));
}

#[test]
fn a_damaged_key_is_reported_not_replaced() {
    let (_t, s) = dir();
    s.write_atomic(files::AGENT_KEY, b"garbage", true).unwrap();
    let err = s.load_or_create_identity(&mut OsRng).unwrap_err();
    assert!(matches!(err, AgentError::CorruptState { .. }), "{err}");
    assert_eq!(std::fs::read(s.path(files::AGENT_KEY)).unwrap(), b"garbage");
}

#[test]
fn hwid_prefers_the_os_id_and_keeps_the_random_one() {
    let (_t, s) = dir();
    assert_eq!(s.hwid(Some("m-1".into()), &mut OsRng).unwrap(), "m-1");
    let a = s.hwid(None, &mut OsRng).unwrap();
    let b = s.hwid(None, &mut OsRng).unwrap();
    assert_eq!(a, b);
    assert!(a.starts_with("tether-random-"));
}

#[test]
fn atomic_writes_leave_no_temporary_files() {
    let (_t, s) = dir();
    s.write_atomic("x", b"1", false).unwrap();
    s.write_atomic("x", b"22", true).unwrap();
    assert_eq!(s.read_optional("x").unwrap().unwrap(), b"22");
    let names: Vec<_> = std::fs::read_dir(&s.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["x".to_owned()]);
}

fn sample_device() -> PairedDevice {
    PairedDevice {
        record: DeviceRecord {
            device_id: "dev_1".into(),
            server_url: "https://localhost:8443".into(),
            paired_at: 1_764_115_200_000,
            pairing_code: "042 917".into(),
            gateway_keys: vec![GatewayKey {
                kid: "gw-1".into(),
                public_key: "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w".into(),
            }],
            owner_keys: vec![],
            owner_keys_version: 0,
        },
        cert_pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
        ca_chain_pem: vec![
            "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n".into(),
            "-----BEGIN CERTIFICATE-----\nCCCC\n-----END CERTIFICATE-----\n".into(),
        ],
    }
}

#[test]
fn device_round_trips() {
    let (_t, s) = dir();
    assert!(s.device().unwrap().is_none());
    let d = sample_device();
    s.save_device(&d).unwrap();
    assert_eq!(s.device().unwrap().unwrap(), d);
}

#[test]
fn device_json_without_its_certificate_is_corrupt() {
    let (_t, s) = dir();
    s.save_device(&sample_device()).unwrap();
    std::fs::remove_file(s.path(files::DEVICE_CERT)).unwrap();
    assert!(matches!(
        s.device().unwrap_err(),
        AgentError::CorruptState { .. }
    ));
}

#[test]
fn pairing_json_has_the_documented_shape() {
    let (_t, s) = dir();
    let t = PairingTicket {
        pair_url: "https://localhost:8443/pair#token=abc".into(),
        pair_token: "abc".into(),
        device_id: "dev_1".into(),
        expires_at: 1_764_115_500_000,
    };
    s.save_pairing_ticket(&t).unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.path(files::PAIRING)).unwrap()).unwrap();
    let obj = v.as_object().unwrap();
    let mut keys: Vec<_> = obj.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["device_id", "expires_at", "pair_token", "pair_url"]);
    assert_eq!(v["pair_url"], "https://localhost:8443/pair#token=abc");
    assert_eq!(v["pair_token"], "abc");
    assert_eq!(v["device_id"], "dev_1");
    assert_eq!(v["expires_at"], 1_764_115_500_000_u64);
    assert_eq!(s.pairing_ticket().unwrap().unwrap(), t);
    s.remove_pairing_ticket().unwrap();
    assert!(s.pairing_ticket().unwrap().is_none());
}

#[test]
fn session_and_server_records_round_trip() {
    let (_t, s) = dir();
    let sess = SessionRecord {
        session_id: "sess_1".into(),
        connected_at: 5,
        heartbeat_interval_s: Some(30),
        telemetry_interval_s: Some(10),
    };
    s.save_session(&sess).unwrap();
    assert_eq!(s.session().unwrap().unwrap(), sess);
    // A record written before the intervals were kept still reads.
    s.write_atomic(
        files::SESSION,
        br#"{"session_id":"sess_0","connected_at":4}"#,
        false,
    )
    .unwrap();
    assert_eq!(s.session().unwrap().unwrap().telemetry_interval_s, None);
    let srv = ServerRecord {
        server_url: "https://x".into(),
        ca_fingerprint: "AB".into(),
    };
    s.save_server(&srv).unwrap();
    assert_eq!(s.server().unwrap().unwrap(), srv);
}

#[test]
fn pem_chains_split_into_certificates() {
    let d = sample_device();
    let joined = d.ca_chain_pem.concat();
    assert_eq!(split_pem_certificates(&joined), d.ca_chain_pem);
    assert!(split_pem_certificates("nothing").is_empty());
}
