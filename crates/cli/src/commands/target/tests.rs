#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tether_proto::ErrorCode;

use super::*;

/// A fake `GET /api/devices` answer: two PCs share the name `shared`, and one name differs
/// from another only in case.
fn fake_devices() -> Vec<DeviceView> {
    let d = |id: &str, name: &str| DeviceView {
        id: id.into(),
        name: name.into(),
        os: "linux".into(),
        status: "active".into(),
        owner_id: Some("usr_fake".into()),
        online: false,
        cert_serial: None,
        paired_at: None,
        hwid_hash: String::new(),
    };
    vec![
        d("dev_01", "lab-pc-7"),
        d("dev_02", "shared"),
        d("dev_03", "shared"),
        d("dev_04", "Kitchen"),
        d("dev_05", "kitchen"),
        d("dev_06", "Office"),
        // A PC may call itself like another one's id.
        d("dev_07", "dev_01"),
    ]
}

#[track_caller]
fn ok(arg: &str) -> String {
    resolve(arg, &fake_devices()).unwrap().id
}

#[test]
fn an_id_wins_then_an_exact_name_then_a_name_in_any_case() {
    assert_eq!(ok("dev_03"), "dev_03");
    assert_eq!(ok("lab-pc-7"), "dev_01");
    assert_eq!(ok("  lab-pc-7 "), "dev_01");
    assert_eq!(ok("office"), "dev_06");
    // Exact beats case-insensitive even when the latter would be ambiguous.
    assert_eq!(ok("kitchen"), "dev_05");
    assert_eq!(ok("Kitchen"), "dev_04");
    // An id beats a name that spells it.
    assert_eq!(ok("dev_01"), "dev_01");
    let t = resolve("lab-pc-7", &fake_devices()).unwrap();
    assert_eq!(t.name.as_deref(), Some("lab-pc-7"));
    assert_eq!(t.label(), "lab-pc-7 (dev_01)");
}

#[test]
fn a_shared_name_is_refused_naming_every_match() {
    let e = resolve("shared", &fake_devices()).unwrap_err();
    assert!(matches!(e, CliError::Usage(_)), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("dev_02") && msg.contains("dev_03"), "{msg}");
    let e = resolve("KITCHEN", &fake_devices()).unwrap_err();
    assert!(e.to_string().contains("dev_04"), "{e}");
}

#[test]
fn an_unknown_name_is_not_found_and_an_unknown_id_goes_to_the_server() {
    let e = resolve("no-such-pc", &fake_devices()).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound));
    assert!(e.hint().unwrap().contains("tether devices"));
    assert_eq!(e.exit_status(), crate::error::EXIT_REFUSED);

    let t = resolve("dev_99", &fake_devices()).unwrap();
    assert_eq!(t.id, "dev_99");
    assert_eq!(t.name, None);
    assert_eq!(t.label(), "dev_99");
    // Id-shaped, but not something to put in a URL.
    assert!(matches!(
        resolve("dev_../x", &fake_devices()),
        Err(CliError::Usage(_))
    ));
    assert!(matches!(
        resolve(" ", &fake_devices()),
        Err(CliError::Usage(_))
    ));
    assert_eq!(
        resolve("x", &[]).unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
}
