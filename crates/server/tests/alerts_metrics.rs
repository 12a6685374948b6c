//! The alert and metrics routes (issue 4): owners see and acknowledge their devices'
//! alerts, admins and auditors see all, nobody else learns they exist; a device's
//! rollups and latest telemetry are readable by whoever may see the device.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod support;

use serde_json::{Value, json};
use support::live::{eventually, next_of, online, paired, sample, subscribe};
use support::{TestServer, code_of};
use tether_client::Api;
use tether_proto::messages::notify::Severity;
use tether_proto::{Clock, ErrorCode};
use tether_store::{Role, Rollup, RollupPeriod};

/// A logged-in user with `role`, created directly in the store (as `create-admin` does).
async fn staff(srv: &TestServer, email: &str, role: Role) -> Api {
    tether_server::routes::accounts::create_user(
        srv.state(),
        tether_server::routes::accounts::RegisterRequest {
            email: email.into(),
            password: "correct horse battery".into(),
            mobile_pub: None,
        },
        role,
    )
    .await
    .unwrap();
    let (_, login): (u16, Value) = srv
        .api()
        .post(
            "/api/login",
            &json!({"email": email, "password": "correct horse battery"}),
        )
        .await
        .unwrap();
    srv.api()
        .with_bearer(login["access_token"].as_str().unwrap())
}

async fn alerts(api: &Api, query: &str) -> Vec<Value> {
    let (_, v): (u16, Value) = api.get(&format!("/api/alerts{query}")).await.unwrap();
    v.as_array().unwrap().clone()
}

#[tokio::test]
async fn owners_list_and_acknowledge_their_alerts_and_nobody_else_can() {
    let srv = TestServer::start().await;
    let (agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let (mallory, _, _) = srv.user("mallory@lab.example").await;
    let admin = staff(&srv, "admin@lab.example", Role::Admin).await;
    let auditor = staff(&srv, "auditor@lab.example", Role::Auditor).await;

    let alert = tether_server::alerts::raise(
        srv.state(),
        &device_id,
        "disk_full",
        Severity::Warning,
        "disk / is 97 % full",
        None,
    )
    .await
    .unwrap()
    .expect("a new alert");

    let mine = alerts(&alice, "").await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["id"], alert.id.as_str());
    assert_eq!(mine[0]["kind"], "disk_full");
    assert_eq!(mine[0]["acked_at"], Value::Null);
    assert!(alerts(&mallory, "?all=true").await.is_empty());
    assert_eq!(
        alerts(&admin, "").await.len(),
        1,
        "admins see every device's"
    );
    assert_eq!(alerts(&auditor, "").await.len(), 1, "auditors too");

    let ack = format!("/api/alerts/{}/ack", alert.id);
    let e = mallory
        .post::<_, Value>(&ack, &json!({}))
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::NotFound, "no existence leak");
    let e = auditor
        .post::<_, Value>(&ack, &json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        code_of(&e),
        ErrorCode::Forbidden,
        "auditors look, not touch"
    );
    let e = alice
        .post::<_, Value>("/api/alerts/alr_nosuchalert/ack", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::NotFound);

    let mut view = subscribe(&alice, "").await;
    let (s, acked): (u16, Value) = alice.post(&ack, &json!({})).await.unwrap();
    assert_eq!(s, 200);
    assert!(acked["acked_at"].is_u64());
    let live = next_of(&mut view, "alert").await;
    assert_eq!(live.data["id"], alert.id.as_str());
    assert!(
        live.data["acked_at"].is_u64(),
        "the acknowledgement is live too"
    );

    assert!(alerts(&alice, "").await.is_empty(), "open ones only");
    assert_eq!(alerts(&alice, "?all=true").await.len(), 1);
    assert_eq!(alerts(&alice, "?all=true&limit=1").await.len(), 1);
    for bad in ["?limit=many", "?everything=1"] {
        let e = alice
            .get::<Value>(&format!("/api/alerts{bad}"))
            .await
            .unwrap_err();
        assert_eq!(code_of(&e), ErrorCode::InvalidField, "{bad}");
    }
    let e = srv.api().get::<Value>("/api/alerts").await.unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::Unauthenticated);
    drop(view);
    srv.stop().await;
}

#[tokio::test]
async fn a_devices_rollups_are_shown_by_bucket_to_those_who_may_see_it() {
    let srv = TestServer::start().await;
    let (agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let (mallory, _, _) = srv.user("mallory@lab.example").await;
    let hour = RollupPeriod::Hourly.bucket_start(srv.clock.now());
    for (metric, mean) in [("cpu_pct", 40.0), ("disk_used_pct", 70.0)] {
        srv.state()
            .store
            .upsert_rollups(&[Rollup {
                device_id: device_id.clone(),
                period: RollupPeriod::Hourly,
                bucket_start: hour,
                metric: metric.into(),
                count: 360,
                min: mean - 10.0,
                max: mean + 10.0,
                mean,
                p95: mean + 8.0,
            }])
            .await
            .unwrap();
    }

    let path = format!("/api/devices/{device_id}/metrics");
    let (_, m): (u16, Value) = alice.get(&format!("{path}?period=hourly")).await.unwrap();
    assert_eq!(m["device_id"], device_id.as_str());
    assert_eq!(m["period"], "hourly");
    let buckets = m["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 1);
    assert_eq!(buckets[0]["bucket_start"], hour.0);
    assert_eq!(buckets[0]["metrics"]["cpu_pct"]["mean"], 40.0);
    assert_eq!(buckets[0]["metrics"]["disk_used_pct"]["p95"], 78.0);
    let (_, same): (u16, Value) = alice.get(&path).await.unwrap();
    assert_eq!(same, m, "hourly is the default");
    let (_, daily): (u16, Value) = alice.get(&format!("{path}?period=daily")).await.unwrap();
    assert_eq!(daily["buckets"], json!([]));
    let (_, later): (u16, Value) = alice
        .get(&format!("{path}?since={}", hour.0 + 1))
        .await
        .unwrap();
    assert_eq!(later["buckets"], json!([]));

    let e = mallory.get::<Value>(&path).await.unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::NotFound);
    let e = alice
        .get::<Value>(&format!("{path}?period=weekly"))
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::InvalidField);
    srv.stop().await;
}

#[tokio::test]
async fn a_devices_latest_telemetry_is_readable_newest_first() {
    let srv = TestServer::start().await;
    let (mut agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let (mallory, _, _) = srv.user("mallory@lab.example").await;
    let (mut ws, _) = online(&srv, &mut agent).await;
    let mut first = sample(20.0);
    first.collected_at = srv.clock.now();
    agent.send(&mut ws, &srv, &first).await;
    let mut second = sample(30.0);
    second.collected_at = tether_proto::UnixMillis(first.collected_at.0 + 10_000);
    agent.send(&mut ws, &srv, &second).await;

    let path = format!("/api/devices/{device_id}/telemetry");
    let all = eventually("both samples stored", || async {
        let (_, v): (u16, Value) = alice.get(&path).await.unwrap();
        (v.as_array().unwrap().len() == 2).then_some(v)
    })
    .await;
    assert_eq!(all[0]["body"]["cpu_pct"], 30.0, "newest first");
    assert_eq!(all[1]["body"]["cpu_pct"], 20.0);
    assert!(all[0]["seq"].as_u64().unwrap() > all[1]["seq"].as_u64().unwrap());
    assert!(all[0]["risk_score"].is_number());
    let (_, one): (u16, Value) = alice.get(&format!("{path}?limit=1")).await.unwrap();
    assert_eq!(one.as_array().unwrap().len(), 1);

    let e = mallory.get::<Value>(&path).await.unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::NotFound);
    let _ = futures_util::SinkExt::close(&mut ws).await;
    srv.stop().await;
}
