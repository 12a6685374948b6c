#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::Path;

use super::*;

const URL: &str = "https://localhost:8443";
const LINK: &str = "https://localhost:8443/pair#token=q8Zb1rWm0cS6YgkT9nAqLh3XvE2uJp5dFi7oKa4sNw0";

fn layout() -> Layout {
    Layout::new(Path::new("/srv/tether-data")).unwrap()
}

fn facts<'a>(layout: &'a Layout, device_name: Option<&'a str>) -> Facts<'a> {
    Facts {
        url: URL,
        fingerprint: "3A:91:00",
        layout,
        device_name,
        no_pc_reason: device_name
            .is_none()
            .then_some("--no-pc: the server runs alone"),
        now: UnixMillis(1_000),
    }
}

fn ticket() -> PairingTicket {
    PairingTicket {
        pair_url: LINK.into(),
        pair_token: "tok".into(),
        device_id: "dev_1".into(),
        expires_at: 1_000 + 300_000,
    }
}

#[test]
fn the_banner_says_where_to_go_and_shows_the_pairing_qr_code() {
    let l = layout();
    let text = banner(
        &facts(&l, Some("lab-host")),
        Some(&Notice::Pairing(ticket())),
    );
    assert!(
        text.contains("web app          https://localhost:8443"),
        "{text}"
    );
    assert!(text.contains("CA fingerprint   3A:91:00"), "{text}");
    assert!(text.contains("create an account"), "{text}");
    assert!(text.contains(&format!("pair link: {LINK}")), "{text}");
    assert!(text.contains("valid for 5 min"), "{text}");
    assert!(
        text.contains("tether cmd lab-host lock_screen --wait"),
        "{text}"
    );
    assert!(
        text.contains("/srv/tether-data/local-pc/recorded.jsonl"),
        "{text}"
    );
    assert!(text.contains("A phone cannot reach localhost"), "{text}");
    // The QR code is the agent's own rendering, whole, indented.
    let qr = Modules::encode(LINK).unwrap().to_terminal();
    for row in qr.lines() {
        assert!(
            text.contains(&format!("\n    {row}\n")),
            "missing row {row:?}"
        );
    }
}

#[test]
fn a_paired_pc_is_named_instead_of_a_qr_code() {
    let l = layout();
    let d = DeviceRecord {
        device_id: "dev_42".into(),
        server_url: URL.into(),
        paired_at: 1,
        pairing_code: "123 456".into(),
        gateway_keys: Vec::new(),
        owner_keys: Vec::new(),
        owner_keys_version: 0,
    };
    let text = banner(
        &facts(&l, Some("lab host")),
        Some(&Notice::Paired(d.clone())),
    );
    assert!(
        text.contains("This PC is paired (in an earlier run): device dev_42"),
        "{text}"
    );
    assert!(text.contains("paired on 1970-01-01T00:00:00Z"), "{text}");
    assert!(
        text.contains("sign in with the account that paired this PC"),
        "{text}"
    );
    assert!(!text.contains("create an account"), "{text}");
    assert!(!text.contains("pair link"), "{text}");
    assert!(text.contains("tether cmd 'lab host' lock_screen"), "{text}");
    let now = paired_now(&d, "lab-host");
    assert!(now.contains("dev_42") && now.contains("123 456"), "{now}");
}

#[test]
fn without_a_pc_the_banner_says_why() {
    let l = layout();
    let text = banner(&facts(&l, None), None);
    assert!(text.contains("No local PC (--no-pc"), "{text}");
    assert!(!text.contains("tether cmd"), "{text}");
    let starting = banner(&facts(&l, Some("lab-host")), None);
    assert!(starting.contains("still starting"), "{starting}");
}

#[test]
fn loopback_urls_are_recognised() {
    for url in [
        "https://localhost:8443",
        "https://LOCALHOST",
        "https://127.0.0.1:8443/",
        "https://[::1]:8443",
    ] {
        assert!(is_loopback(url), "{url}");
    }
    for url in [
        "https://192.168.1.20:8443",
        "https://tether.lab.example",
        "https://[fe80::1]:1",
    ] {
        assert!(!is_loopback(url), "{url}");
    }
}
