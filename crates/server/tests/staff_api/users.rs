//! Users and roles (auditors read, admins change, the last admin stays), the fleet's
//! `last_seen`, and the routes in the OpenAPI document.

use serde_json::{Value, json};
use tether_proto::{Clock, ErrorCode, UnixMillis};
use tether_store::Role;

use crate::helpers::{get_ok, get_refused, refused};
use crate::kit::staff;
use crate::support::TestServer;
use crate::support::live::{paired, user_id};

#[tokio::test]
async fn students_are_refused_auditors_read_and_admins_change_roles_but_keep_an_admin() {
    let srv = TestServer::start().await;
    let admin = staff(&srv, "admin@lab.example", Role::Admin).await;
    let auditor = staff(&srv, "auditor@lab.example", Role::Auditor).await;
    let (agent, alice) = paired(&srv, "alice@lab.example").await;
    let device = agent.device_id.clone().unwrap();
    let (admin_id, auditor_id, alice_id) = (
        user_id(&admin).await,
        user_id(&auditor).await,
        user_id(&alice).await,
    );

    for path in ["/api/audit", "/api/audit/export?format=csv", "/api/users"] {
        let (status, code, _) = get_refused(&alice, path).await;
        assert_eq!((status, code), (403, ErrorCode::Forbidden), "{path}");
    }
    let (status, code, _) = get_refused(&alice, "/api/audit?since=oops").await;
    assert_eq!(
        (status, code),
        (403, ErrorCode::Forbidden),
        "roles come first"
    );
    let e = srv.api().get::<Value>("/api/audit").await.unwrap_err();
    assert_eq!(refused(e).1, ErrorCode::Unauthenticated);

    // Auditors read everything, users included.
    assert!(
        !get_ok(&auditor, "/api/audit").await["events"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let users = get_ok(&auditor, "/api/users").await;
    let users = users["users"].as_array().unwrap();
    assert_eq!(users.len(), 3);
    let a = users.iter().find(|u| u["id"] == alice_id.as_str()).unwrap();
    assert_eq!(
        a.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "created_at",
            "devices",
            "email",
            "id",
            "role",
            "totp_enabled"
        ],
        "exactly these fields: {a}"
    );
    assert_eq!(a["email"], "alice@lab.example");
    assert_eq!(a["role"], "student");
    assert_eq!(a["totp_enabled"], false);
    assert_eq!(a["devices"], 1);
    assert!(a["created_at"].is_u64());
    let ad = users.iter().find(|u| u["id"] == admin_id.as_str()).unwrap();
    assert_eq!(
        (ad["role"].as_str(), ad["devices"].as_u64()),
        (Some("admin"), Some(0))
    );

    // Only admins change roles; the refusals are audited.
    let role_path = |id: &str| format!("/api/users/{id}/role");
    for who in [&auditor, &alice] {
        let e = who
            .put::<_, Value>(&role_path(&alice_id), &json!({"role": "admin"}))
            .await
            .unwrap_err();
        assert_eq!(refused(e).1, ErrorCode::Forbidden);
    }
    let denied = get_ok(&admin, "/api/audit?action=user.role_changed&outcome=denied").await;
    assert_eq!(denied["events"].as_array().unwrap().len(), 2, "{denied}");

    let (s, v): (u16, Value) = admin
        .put(&role_path(&alice_id), &json!({"role": "auditor"}))
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert_eq!(v["id"], alice_id.as_str());
    assert_eq!(v["role"], "auditor");
    assert_eq!(v["devices"], 1);
    let changed = get_ok(
        &admin,
        &format!("/api/audit?action=user.role_changed&outcome=success&actor={admin_id}"),
    )
    .await;
    let e = &changed["events"][0];
    assert_eq!(e["target"], alice_id.as_str());
    assert_eq!(
        e["detail"],
        json!({"old_role": "student", "new_role": "auditor"})
    );
    // It applies at once: alice reads the trail now, including her device's.
    assert_eq!(
        get_ok(&alice, "/api/audit?limit=1").await["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let own = get_ok(&alice, &format!("/api/audit?device={device}")).await;
    assert!(!own["events"].as_array().unwrap().is_empty());

    // The last admin stays an admin, whoever asks.
    let e = admin
        .put::<_, Value>(&role_path(&admin_id), &json!({"role": "student"}))
        .await
        .unwrap_err();
    let (status, code, message) = refused(e);
    assert_eq!((status, code), (409, ErrorCode::Conflict));
    assert!(message.contains("last admin"), "{message}");
    assert_eq!(
        srv.state()
            .store
            .count_users_with_role(Role::Admin)
            .await
            .unwrap(),
        1
    );
    let (s, _): (u16, Value) = admin
        .put(&role_path(&auditor_id), &json!({"role": "admin"}))
        .await
        .unwrap();
    assert_eq!(s, 200);
    let (s, v): (u16, Value) = auditor
        .put(&role_path(&admin_id), &json!({"role": "student"}))
        .await
        .unwrap();
    assert_eq!(
        (s, v["role"].as_str()),
        (200, Some("student")),
        "two admins: one may go"
    );
    let e = auditor
        .put::<_, Value>(&role_path(&auditor_id), &json!({"role": "auditor"}))
        .await
        .unwrap_err();
    assert_eq!(refused(e).0, 409);

    // Bad requests.
    let e = auditor
        .put::<_, Value>(&role_path("usr_nobody"), &json!({"role": "admin"}))
        .await
        .unwrap_err();
    assert_eq!(refused(e).1, ErrorCode::NotFound);
    for body in [
        json!({"role": "owner"}),
        json!({}),
        json!({"role": "admin", "x": 1}),
    ] {
        let e = auditor
            .put::<_, Value>(&role_path(&alice_id), &body)
            .await
            .unwrap_err();
        assert_eq!(refused(e).1, ErrorCode::InvalidField, "{body}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn admins_see_when_each_device_was_last_seen() {
    let srv = TestServer::start().await;
    let admin = staff(&srv, "admin@lab.example", Role::Admin).await;
    let (agent, alice) = paired(&srv, "alice@lab.example").await;
    let device = agent.device_id.clone().unwrap();
    let find = |list: Value| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == device.as_str())
            .cloned()
            .unwrap()
    };
    let d = find(get_ok(&admin, "/api/devices").await);
    assert_eq!(d["last_seen"], Value::Null, "never heard from: {d}");
    let seen = UnixMillis(srv.clock.now().0 - 5_000);
    srv.state()
        .store
        .set_last_seen(&device, seen)
        .await
        .unwrap();
    assert_eq!(
        find(get_ok(&admin, "/api/devices").await)["last_seen"],
        seen.0
    );
    assert_eq!(
        find(get_ok(&alice, "/api/devices").await)["last_seen"],
        seen.0,
        "owners too"
    );
    assert_eq!(
        get_ok(&admin, &format!("/api/devices/{device}")).await["last_seen"],
        seen.0
    );
    srv.stop().await;
}

#[tokio::test]
async fn the_openapi_document_lists_the_staff_routes() {
    let srv = TestServer::start().await;
    let (_, doc): (u16, Value) = srv.api().get("/api/openapi.json").await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for (p, method) in [
        ("/api/audit", "get"),
        ("/api/audit/export", "get"),
        ("/api/devices/{id}/audit", "get"),
        ("/api/users", "get"),
        ("/api/users/{id}/role", "put"),
    ] {
        assert!(
            paths[p][method].is_object(),
            "{method} {p} missing from the OpenAPI document"
        );
    }
    let params: Vec<&str> = paths["/api/audit"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        params,
        [
            "actor", "device", "action", "outcome", "since", "until", "before", "limit"
        ]
    );
    srv.stop().await;
}
