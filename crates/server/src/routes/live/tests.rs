#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use tether_proto::UnixMillis;
use tether_store::{Role, User};

use super::*;

fn caller(id: &str, role: Role) -> Caller {
    Caller {
        user: User {
            id: id.into(),
            email: format!("{id}@lab.example"),
            password_hash: String::new(),
            role,
            mobile_pub: None,
            totp: None,
            totp_last_step: 0,
            created_at: UnixMillis(0),
        },
        session_id: None,
        amr: vec![],
    }
}

fn event(device: &str, owner: Option<&str>) -> LiveEvent {
    LiveEvent {
        kind: LiveKind::Presence,
        device_id: device.into(),
        owner_id: owner.map(str::to_owned),
        at: UnixMillis(1),
        data: json!({"online": true}),
    }
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn owners_see_their_devices_and_admins_and_auditors_see_all() {
    let alice = Audience {
        caller: caller("usr_a", Role::Student),
        devices: None,
    };
    assert!(alice.admits(&event("dev_1", Some("usr_a"))));
    assert!(!alice.admits(&event("dev_2", Some("usr_b"))));
    assert!(!alice.admits(&event("dev_3", None)), "unowned: staff only");
    for role in [Role::Admin, Role::Auditor] {
        let staff = Audience {
            caller: caller("usr_s", role),
            devices: None,
        };
        assert!(staff.admits(&event("dev_2", Some("usr_b"))));
        assert!(staff.admits(&event("dev_3", None)));
    }
}

#[test]
fn a_device_filter_narrows_but_never_widens() {
    let alice = Audience {
        caller: caller("usr_a", Role::Student),
        devices: Some(["dev_1".to_owned(), "dev_2".to_owned()].into()),
    };
    assert!(alice.admits(&event("dev_1", Some("usr_a"))));
    assert!(
        !alice.admits(&event("dev_9", Some("usr_a"))),
        "not asked for"
    );
    assert!(
        !alice.admits(&event("dev_2", Some("usr_b"))),
        "asked for, but the event says another owner"
    );
}

#[test]
fn the_query_takes_repeated_devices_and_refuses_the_unknown() {
    let q = parse_query(pairs(&[
        ("device", "dev_1"),
        ("device", "dev_2"),
        ("device", "dev_1"),
        ("access_token", "t"),
    ]))
    .unwrap();
    assert_eq!(q.devices, ["dev_1", "dev_2"]);
    assert_eq!(q.access_token.as_deref(), Some("t"));
    for bad in [
        pairs(&[("devices", "dev_1")]),
        pairs(&[("device", "")]),
        pairs(&[("access_token", "a"), ("access_token", "b")]),
    ] {
        assert_eq!(
            parse_query(bad).unwrap_err().code(),
            ErrorCode::InvalidField
        );
    }
    let many: Vec<(String, String)> = (0..=MAX_DEVICE_FILTERS)
        .map(|i| ("device".to_owned(), format!("dev_{i}")))
        .collect();
    assert!(parse_query(many).is_err());
}

#[test]
fn the_header_wins_over_the_query_token() {
    let q = LiveQuery {
        access_token: Some("from-query".into()),
        devices: vec![],
    };
    let mut h = HeaderMap::new();
    assert_eq!(bearer(&h, &q).unwrap(), "from-query");
    h.insert("authorization", "Bearer from-header".parse().unwrap());
    assert_eq!(bearer(&h, &q).unwrap(), "from-header");
    h.insert("authorization", "Basic xyz".parse().unwrap());
    assert_eq!(
        bearer(&h, &q).unwrap_err().code(),
        ErrorCode::Unauthenticated
    );
    assert_eq!(
        bearer(&HeaderMap::new(), &LiveQuery::default())
            .unwrap_err()
            .code(),
        ErrorCode::Unauthenticated
    );
}

#[test]
fn event_names_are_the_kinds_wire_names() {
    for kind in [
        LiveKind::Presence,
        LiveKind::Telemetry,
        LiveKind::Alert,
        LiveKind::CommandStatus,
    ] {
        assert_eq!(json!(kind), json!(event_name(kind)));
    }
}
