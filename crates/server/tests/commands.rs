//! Commands (flow 2) through an in-process server with a manual clock, real TLS, keys and
//! signed envelopes: `POST /api/command` → the device's stream → the gateway session →
//! the agent (a `FakeAgent`) → `command_ack` / `command_status` / `command_result` → the
//! state machine of docs/protocol.md 7.4, the live view, the audit trail; idempotency,
//! offline devices, expiry, retries and the dead-letter queue (driven by the clock),
//! backpressure, refusals, and stream entries a dead gateway left behind.
//!
//! Waits are for delivery by another task (a frame, a worker's sweep), never for time:
//! the schedule moves only when a test advances the clock. "Nothing else was delivered"
//! is checked with a marker: a later command whose delivery must be the next frame.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

#[path = "commands/delivery.rs"]
mod delivery;
#[path = "commands/kit.rs"]
mod kit;
#[path = "commands/refusals.rs"]
mod refusals;
mod support;

use kit::{
    ack, audit, command, executing, expect_delivery, lock_screen, new_id, new_trace, next_delivery,
    post_refused, request, result_ok, staff, submit, transitions, wait_state,
};
use serde_json::{Value, json};
use support::TestServer;
use support::live::{next_of, online, paired, subscribe, user_id};
use tether_proto::messages::command::Method;
use tether_proto::{Clock, ErrorCode};
use tether_store::Role;

#[tokio::test]
async fn a_command_goes_from_queued_to_completed_and_the_owner_sees_every_step() {
    let srv = TestServer::start().await;
    let (mut agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let alice_id = user_id(&alice).await;
    let mut view = subscribe(&alice, &format!("?device={device_id}")).await;
    let (mut ws, _) = online(&srv, &mut agent).await;

    let body = request(&device_id, "lock_screen", json!({}), 300);
    let trace_id = body["trace_id"].as_str().unwrap().to_owned();
    let t0 = srv.clock.now();
    let accepted = submit(&alice, &body).await;
    let id = accepted["command_id"].as_str().unwrap().to_owned();
    assert_eq!(accepted["device_online"], true);
    assert_eq!(accepted["trace_id"], trace_id.as_str());
    assert_eq!(accepted["origin_user_id"], alice_id.as_str());

    let (header, d) = next_delivery(&mut ws, &srv).await;
    assert_eq!(d.command_id.to_string(), id);
    assert_eq!(d.attempt, 1);
    assert_eq!(d.device_id, device_id);
    assert_eq!(d.method, Method::LockScreen);
    assert_eq!(d.params, json!({}));
    assert_eq!(d.origin_user_id, alice_id);
    assert_eq!(d.expires_at.0, t0.0 + 300_000);
    assert_eq!(d.simulate, None);
    assert_eq!(
        header.trace_id.to_string(),
        trace_id,
        "the delivery travels under the command's trace id"
    );

    srv.advance(1);
    agent.send(&mut ws, &srv, &ack(&id)).await;
    wait_state(&alice, &id, "ack_received").await;
    // Not finished yet: nothing to acknowledge viewing.
    let (s, code) =
        post_refused(&alice, &format!("/api/command/{id}/ack_viewed"), &json!({})).await;
    assert_eq!((s, code), (409, ErrorCode::UnexpectedMessage));

    srv.advance(1);
    agent.send(&mut ws, &srv, &executing(&id)).await;
    wait_state(&alice, &id, "executing").await;
    srv.advance(1);
    agent.send(&mut ws, &srv, &result_ok(&id)).await;
    let done = wait_state(&alice, &id, "completed").await;

    assert_eq!(
        transitions(&done),
        [
            (None, "queued"),
            (Some("queued"), "sent"),
            (Some("sent"), "ack_received"),
            (Some("ack_received"), "executing"),
            (Some("executing"), "result_posted"),
            (Some("result_posted"), "completed"),
        ]
        .map(|(f, t)| (f.map(str::to_owned), t.to_owned()))
    );
    let at: Vec<u64> = done["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["at"].as_u64().unwrap())
        .collect();
    assert_eq!(at[0], t0.0, "queued at submission");
    assert_eq!(at[1], t0.0, "sent at once: the device is online");
    assert!(
        at[1] < at[2] && at[2] < at[3] && at[3] < at[4],
        "each step after the clock moved: {at:?}"
    );
    assert_eq!(at[5], at[4], "completed as the result was recorded");
    assert_eq!(done["result"]["status"], "ok");
    assert_eq!(done["result"]["result"], json!({"locked": true}));
    assert!(done.get("error").is_none());
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["updated_at"].as_u64(), Some(at[5]));

    // The owner's live view saw every step, in order, under the command's trace id.
    let mut seen = Vec::new();
    for _ in 0..6 {
        let e = next_of(&mut view, "command_status").await;
        assert_eq!(e.device_id, device_id);
        assert_eq!(e.owner_id.as_deref(), Some(alice_id.as_str()));
        assert_eq!(e.data["command_id"], id.as_str());
        assert_eq!(e.data["trace_id"], trace_id.as_str());
        seen.push(e.data["state"].as_str().unwrap().to_owned());
        if e.data["state"] == "completed" {
            assert_eq!(e.data["result"]["status"], "ok");
        }
    }
    assert_eq!(
        seen,
        [
            "queued",
            "sent",
            "ack_received",
            "executing",
            "result_posted",
            "completed"
        ]
    );

    // The audit trail has each move.
    for state in [
        "queued",
        "sent",
        "ack_received",
        "executing",
        "result_posted",
        "completed",
    ] {
        let events = audit(&srv, &format!("command.{state}"), Some(&device_id)).await;
        assert_eq!(events.len(), 1, "one command.{state}");
        assert_eq!(events[0]["command_id"], id.as_str());
        assert_eq!(events[0]["trace_id"], trace_id.as_str());
    }

    // Listed with the device's commands.
    let (_, list): (u16, Value) = alice
        .get(&format!("/api/commands?device={device_id}"))
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["state"], "completed");

    // Only the originator acknowledges viewing: an admin may see it but not ack it,
    // another student does not see it at all.
    let admin = staff(&srv, "admin@lab.example", Role::Admin).await;
    let (bob, _, _) = srv.user("bob@lab.example").await;
    let path = format!("/api/command/{id}/ack_viewed");
    assert_eq!(
        post_refused(&admin, &path, &json!({})).await,
        (403, ErrorCode::Forbidden)
    );
    assert_eq!(
        post_refused(&bob, &path, &json!({})).await,
        (404, ErrorCode::NotFound)
    );
    let (s, viewed): (u16, Value) = alice.post(&path, &json!({})).await.unwrap();
    assert_eq!(s, 200);
    let viewed_at = viewed["viewed_at"].as_u64().expect("viewed_at is set");
    assert_eq!(viewed_at, srv.clock.now().0);
    srv.advance(1);
    let (s, again): (u16, Value) = alice.post(&path, &json!({})).await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(
        again["viewed_at"].as_u64(),
        Some(viewed_at),
        "the first view stands"
    );
    assert_eq!(
        command(&alice, &id).await["viewed_at"].as_u64(),
        Some(viewed_at)
    );

    let _ = ws.close(None).await;
    drop(view);
    srv.stop().await;
}

#[tokio::test]
async fn the_same_message_id_is_the_same_command_and_another_body_under_it_is_refused() {
    let srv = TestServer::start().await;
    let (mut agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let (mut ws, _) = online(&srv, &mut agent).await;

    let body = request(&device_id, "reboot", json!({"delay_s": 60}), 300);
    let first = submit(&alice, &body).await;
    let id = first["command_id"].as_str().unwrap().to_owned();
    expect_delivery(&mut ws, &srv, &id, 1).await;

    // The same request again (even with another trace id): 200, the same command.
    let mut retry = body.clone();
    retry["trace_id"] = json!(new_trace());
    let (s, again): (u16, Value) = alice.post("/api/command", &retry).await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(again["status"], "accepted");
    assert_eq!(again["command_id"], id.as_str());
    assert_eq!(again["trace_id"], first["trace_id"]);
    assert_eq!(
        again["state"], "sent",
        "it is the stored command, as it stands"
    );
    assert_eq!(again["created_at"], first["created_at"]);

    // The same message_id with another body: 409 5008, nothing stored.
    for (field, value) in [
        ("params", json!({"delay_s": 61})),
        ("method", json!("shutdown")),
        ("ttl_seconds", json!(301)),
    ] {
        let mut other = body.clone();
        other[field] = value;
        assert_eq!(
            post_refused(&alice, "/api/command", &other).await,
            (409, ErrorCode::DuplicateMessage),
            "another {field}"
        );
    }
    // Another user reusing it for their own device: refused too.
    let (mut bobs_agent, bob) = paired(&srv, "bob@lab.example").await;
    let mut bobs = body.clone();
    bobs["device_id"] = json!(bobs_agent.device_id.clone().unwrap());
    assert_eq!(
        post_refused(&bob, "/api/command", &bobs).await,
        (409, ErrorCode::DuplicateMessage)
    );
    let refused = audit(&srv, "command.refused", None).await;
    assert_eq!(refused.len(), 4);
    assert!(refused.iter().all(|r| r["code"] == 5008));
    assert_eq!(audit(&srv, "command.queued", None).await.len(), 1);

    // No second delivery: the next frame is the next command's.
    let next = lock_screen(&alice, &device_id).await;
    expect_delivery(&mut ws, &srv, &next, 1).await;
    let (_, list): (u16, Value) = alice
        .get(&format!("/api/commands?device={device_id}"))
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    let v = command(&alice, &id).await;
    assert_eq!(v["attempts"], 1);
    assert_eq!(v["params"], json!({"delay_s": 60}));
    // Bob's device got nothing.
    let (mut bob_ws, _) = online(&srv, &mut bobs_agent).await;
    let marker = lock_screen(&bob, bobs_agent.device_id.as_deref().unwrap()).await;
    expect_delivery(&mut bob_ws, &srv, &marker, 1).await;

    let _ = ws.close(None).await;
    let _ = bob_ws.close(None).await;
    srv.stop().await;
}

#[tokio::test]
async fn a_command_for_an_offline_device_waits_and_is_delivered_when_it_connects() {
    let srv = TestServer::start().await;
    let (mut agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();

    let body = request(&device_id, "lock_screen", json!({}), 300);
    let accepted = submit(&alice, &body).await;
    assert_eq!(accepted["device_online"], false);
    let id = accepted["command_id"].as_str().unwrap().to_owned();
    srv.advance(10);
    assert_eq!(command(&alice, &id).await["state"], "queued");

    let (mut ws, _) = online(&srv, &mut agent).await;
    let (header, d) = next_delivery(&mut ws, &srv).await;
    assert_eq!(d.command_id.to_string(), id);
    assert_eq!(d.attempt, 1);
    assert_eq!(
        header.trace_id.to_string(),
        body["trace_id"].as_str().unwrap()
    );
    assert!(header.ttl <= 60, "a delivery frame is short-lived");

    kit::complete(&mut agent, &mut ws, &srv, &alice, &id).await;
    let v = command(&alice, &id).await;
    assert_eq!(v["transitions"][1]["detail"]["via"], "connect");
    assert_eq!(v["transitions"][1]["at"].as_u64(), Some(srv.clock.now().0));
    // The stream entry ingest wrote was consumed at connect, not left pending.
    let stream = tether_server::commands::device_stream(&device_id);
    let pending = srv
        .state()
        .bus
        .pending_count(&stream, tether_server::commands::GATEWAY_GROUP)
        .await
        .unwrap();
    assert_eq!(pending, 0);

    let _ = ws.close(None).await;
    srv.stop().await;
}

#[tokio::test]
async fn a_command_whose_ttl_passes_while_the_device_is_offline_expires_and_is_never_delivered() {
    let srv = TestServer::start().await;
    let (mut agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let alice_id = user_id(&alice).await;
    let mut view = subscribe(&alice, &format!("?device={device_id}")).await;

    let body = request(&device_id, "lock_screen", json!({}), 5);
    let id = submit(&alice, &body).await["command_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let queued = next_of(&mut view, "command_status").await;
    assert_eq!(queued.data["state"], "queued");

    srv.advance(6);
    let v = wait_state(&alice, &id, "expired").await;
    assert_eq!(v["error"], 2004);
    assert_eq!(
        transitions(&v).last().unwrap(),
        &(Some("queued".to_owned()), "expired".to_owned())
    );
    let e = next_of(&mut view, "command_status").await;
    assert_eq!(e.data["command_id"], id.as_str());
    assert_eq!(e.data["state"], "expired");
    assert_eq!(e.data["from"], "queued");
    assert_eq!(e.data["error"], 2004);
    assert_eq!(e.data["origin_user_id"], alice_id.as_str());
    assert_eq!(e.owner_id.as_deref(), Some(alice_id.as_str()));
    assert_eq!(
        audit(&srv, "command.expired", Some(&device_id)).await.len(),
        1
    );

    // Connecting afterwards delivers nothing of it: the first delivery is a new command.
    let (mut ws, _) = online(&srv, &mut agent).await;
    let marker = lock_screen(&alice, &device_id).await;
    expect_delivery(&mut ws, &srv, &marker, 1).await;
    let v = command(&alice, &id).await;
    assert_eq!(v["state"], "expired");
    assert_eq!(v["attempts"], 0);

    let _ = ws.close(None).await;
    drop(view);
    srv.stop().await;
}

#[tokio::test]
async fn a_request_without_a_trace_id_gets_one_and_the_delivery_carries_it() {
    let srv = TestServer::start().await;
    let (mut agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let (mut ws, _) = online(&srv, &mut agent).await;

    let body = json!({"device_id": device_id, "method": "lock_screen", "message_id": new_id()});
    let v = submit(&alice, &body).await;
    let trace_id = v["trace_id"].as_str().unwrap().to_owned();
    assert_eq!(trace_id.len(), 32);
    assert_eq!(
        v["expires_at"].as_u64().unwrap() - v["created_at"].as_u64().unwrap(),
        300_000,
        "the default TTL is 300 s"
    );
    let (header, _) = next_delivery(&mut ws, &srv).await;
    assert_eq!(header.trace_id.to_string(), trace_id);

    let _ = ws.close(None).await;
    srv.stop().await;
}

#[tokio::test]
async fn a_retried_submission_returns_the_command_even_after_the_device_was_revoked() {
    let srv = TestServer::start().await;
    let (agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let body = request(&device_id, "lock_screen", json!({}), 300);
    let first = submit(&alice, &body).await;

    let (s, _): (u16, Value) = alice
        .post(&format!("/api/devices/{device_id}/revoke"), &json!({}))
        .await
        .unwrap();
    assert_eq!(s, 200);
    // The client's retry (its first answer was lost) learns what became of its command.
    let (s, again): (u16, Value) = alice.post("/api/command", &body).await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(again["command_id"], first["command_id"]);
    // A new command for the revoked device is refused.
    let new = request(&device_id, "lock_screen", json!({}), 300);
    assert_eq!(
        post_refused(&alice, "/api/command", &new).await,
        (403, ErrorCode::DeviceRevoked)
    );
    srv.stop().await;
}
