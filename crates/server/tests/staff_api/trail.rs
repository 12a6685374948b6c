//! Browsing the trail: filters, paging newest first, one device's trail, bad parameters.

use serde_json::{Value, json};
use tether_proto::{Clock, ErrorCode};
use tether_store::Role;

use crate::helpers::{actions, all_pages, append, get_ok, get_refused, on_mysql, refused};
use crate::kit::{request, staff, submit};
use crate::support::TestServer;
use crate::support::live::{paired, user_id};

#[tokio::test]
async fn the_trail_filters_by_actor_device_action_outcome_and_time_and_pages_newest_first() {
    filters_and_pages(TestServer::start().await).await;
}

#[tokio::test]
async fn the_trail_filters_and_pages_the_same_on_mariadb() {
    on_mysql(filters_and_pages).await;
}

/// Filters (actor, device, action prefix, outcome, time), paging and one device's trail.
pub(crate) async fn filters_and_pages(srv: TestServer) {
    let admin = staff(&srv, "admin@lab.example", Role::Admin).await;
    let auditor = staff(&srv, "auditor@lab.example", Role::Auditor).await;
    let (agent, alice) = paired(&srv, "alice@lab.example").await;
    let (mallory, _, _) = srv.user("mallory@lab.example").await;
    let device = agent.device_id.clone().unwrap();
    let alice_id = user_id(&alice).await;
    let start = srv.clock.now().0;
    srv.advance(60);
    let later = srv.clock.now().0;
    let c = submit(&alice, &request(&device, "lock_screen", json!({}), 600)).await;
    let command_id = c["command_id"].as_str().unwrap();
    // Someone else's try on the device: refused (404) and audited as concerning it.
    let e = mallory
        .post::<_, Value>(
            "/api/command",
            &request(&device, "lock_screen", json!({}), 60),
        )
        .await
        .unwrap_err();
    assert_eq!(refused(e).1, ErrorCode::NotFound);
    append(
        &srv,
        "system",
        "alert.raised",
        Some("alr_1"),
        json!({"device_id": device}),
    )
    .await;
    append(&srv, "system", "commands.other", None, json!({})).await;

    // Shape of one event.
    let page = get_ok(&auditor, "/api/audit?limit=1").await;
    let e = &page["events"][0];
    assert_eq!(
        e.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "action", "actor", "at", "detail", "outcome", "seq", "target", "trace_id"
        ],
        "{e}"
    );
    assert!(e["seq"].is_u64() && e["at"].is_u64() && e["detail"].is_object());
    assert!(page["next_before"].is_u64());

    // Actor: exact.
    let mine = get_ok(&auditor, &format!("/api/audit?actor={alice_id}")).await;
    let mine = mine["events"].as_array().unwrap();
    assert!(mine.iter().all(|e| e["actor"] == alice_id.as_str()));
    assert!(actions(&json!({"events": mine})).contains(&"pair.confirm".to_owned()));

    // Device: what it did and what was done to it, by whom ever.
    let dev = get_ok(&auditor, &format!("/api/audit?device={device}&limit=500")).await;
    let got = actions(&dev);
    for a in [
        "pair.request",
        "pair.confirm",
        "cert.issued",
        "policy.decision",
        "command.queued",
        "command.refused",
        "alert.raised",
    ] {
        assert!(got.contains(&a.to_owned()), "{a} in {got:?}");
    }
    let queued = dev["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "command.queued")
        .unwrap();
    assert_eq!(queued["detail"]["command_id"], command_id);
    assert!(!got.contains(&"user.login".to_owned()));
    assert!(
        dev["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["target"] == device.as_str() || e["detail"]["device_id"] == device.as_str())
    );

    // Action: itself and below a dot only.
    let cmd = actions(&get_ok(&auditor, "/api/audit?action=command").await);
    assert_eq!(
        cmd,
        ["command.refused", "command.queued"],
        "not commands.other"
    );
    let pair = actions(&get_ok(&auditor, "/api/audit?action=pair").await);
    assert_eq!(pair, ["pair.confirm", "pair.request"]);
    assert_eq!(
        actions(&get_ok(&auditor, "/api/audit?action=pair.confirm").await),
        ["pair.confirm"]
    );

    // Time: since inclusive, until exclusive.
    let recent = get_ok(&auditor, &format!("/api/audit?since={later}&limit=500")).await;
    assert!(
        recent["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["at"].as_u64().unwrap() >= later)
    );
    let recent = actions(&recent);
    assert_eq!(
        &recent[..3],
        ["commands.other", "alert.raised", "command.refused"],
        "{recent:?}"
    );
    assert!(
        recent.contains(&"command.queued".to_owned())
            && !recent.contains(&"pair.confirm".to_owned())
    );
    let early = get_ok(
        &auditor,
        &format!("/api/audit?since={start}&until={later}&limit=500"),
    )
    .await;
    assert!(early["events"].as_array().unwrap().iter().all(|e| {
        let at = e["at"].as_u64().unwrap();
        at >= start && at < later
    }));
    assert!(!actions(&early).contains(&"command.queued".to_owned()));

    // Outcome.
    let denied = get_ok(&auditor, "/api/audit?outcome=denied").await;
    assert_eq!(actions(&denied), ["command.refused"]);

    // Paging: pages of 3 add up to the whole trail, newest first, nothing twice.
    let whole = get_ok(&admin, "/api/audit?limit=500").await;
    assert_eq!(whole["next_before"], Value::Null);
    let whole: Vec<u64> = whole["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(whole.windows(2).all(|w| w[0] > w[1]), "newest first");
    let paged: Vec<u64> = all_pages(&admin, "/api/audit?", 3)
        .await
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(paged, whole);
    let filtered = all_pages(&admin, &format!("/api/audit?device={device}"), 2).await;
    assert_eq!(filtered.len(), dev["events"].as_array().unwrap().len());

    // One device's trail: its owner, admins and auditors; others learn nothing.
    let path = format!("/api/devices/{device}/audit");
    let owner_view = get_ok(&alice, &format!("{path}?limit=500")).await;
    assert_eq!(owner_view["events"], dev["events"]);
    assert_eq!(
        get_ok(&admin, &format!("{path}?limit=2")).await["events"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let paged_device = all_pages(&auditor, &format!("{path}?"), 4).await;
    assert_eq!(paged_device.len(), dev["events"].as_array().unwrap().len());
    let (status, code, _) = get_refused(&mallory, &path).await;
    assert_eq!((status, code), (404, ErrorCode::NotFound));
    let (status, _, _) = get_refused(&admin, "/api/devices/dev_nosuch/audit").await;
    assert_eq!(status, 404);
    let (status, code, message) = get_refused(&alice, &format!("{path}?limit=0")).await;
    assert_eq!((status, code), (422, ErrorCode::InvalidField));
    assert!(message.starts_with("limit: "), "{message}");

    // Bad values: 422 naming the parameter.
    for (query, name) in [
        ("since=yesterday", "since"),
        ("until=-5", "until"),
        ("since=10&until=5", "until"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("outcome=maybe", "outcome"),
        ("before=x", "before"),
    ] {
        let (status, code, message) = get_refused(&auditor, &format!("/api/audit?{query}")).await;
        assert_eq!((status, code), (422, ErrorCode::InvalidField), "{query}");
        assert!(
            message.starts_with(&format!("{name}: ")),
            "{query}: {message}"
        );
    }
    let (_, code, message) = get_refused(&auditor, "/api/audit?colour=red").await;
    assert_eq!(code, ErrorCode::InvalidField);
    assert!(message.contains("colour"), "{message}");
    // Empty values are no filter (what a form sends).
    let blank = get_ok(
        &auditor,
        "/api/audit?actor=&device=&action=&outcome=&since=&until=&limit=500",
    )
    .await;
    assert_eq!(blank["events"].as_array().unwrap().len(), whole.len());
    srv.stop().await;
}
