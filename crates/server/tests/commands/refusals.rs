//! What is refused: commanding a device one may not, bad requests, an agent's frames
//! about another device's command or with an artifact it was never granted, frames for a
//! finished command; how an agent's rejections and failed results end a command; and the
//! test-mode hook.

use std::time::Duration;

use serde_json::{Value, json};
use tether_proto::messages::command::{ArtifactRef, CommandResult, Simulation};
use tether_proto::{Clock, ErrorCode};
use tether_store::{Artifact, Role};

use crate::kit::{
    ack, audit, command, complete, executing, expect_delivery, frame, lock_screen, new_id,
    next_delivery, post_refused, refusal, rejected, request, result_failed, result_ok, staff,
    submit, transitions, wait_state,
};
use crate::support::TestServer;
use crate::support::live::{expect_refused, online, paired, user_id};

#[tokio::test]
async fn a_student_cannot_command_another_students_pc_and_learns_nothing_about_it() {
    let srv = TestServer::start().await;
    let (_agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = _agent.device_id.clone().unwrap();
    let (bob, _, _) = srv.user("bob@lab.example").await;
    let bob_id = user_id(&bob).await;

    let body = request(&device_id, "lock_screen", json!({}), 300);
    assert_eq!(
        post_refused(&bob, "/api/command", &body).await,
        (404, ErrorCode::NotFound)
    );
    let unknown = request("dev_doesnotexist", "lock_screen", json!({}), 300);
    assert_eq!(
        post_refused(&bob, "/api/command", &unknown).await,
        (404, ErrorCode::NotFound),
        "another's device and no device look the same"
    );

    let all = srv.state().store.audit_after(0, 10_000).await.unwrap();
    let refused: Vec<_> = all
        .iter()
        .filter(|a| a.event.action == "command.refused" && a.event.actor == bob_id)
        .collect();
    assert_eq!(refused.len(), 2);
    assert_eq!(refused[0].event.target.as_deref(), Some(device_id.as_str()));
    assert_eq!(refused[0].event.outcome, "denied");
    assert_eq!(refused[0].event.detail["code"], 9003);
    let id = body["message_id"].as_str().unwrap();
    assert!(
        srv.state().store.command(id).await.unwrap().is_none(),
        "nothing stored"
    );
    let (_, list): (u16, Value) = alice
        .get(&format!("/api/commands?device={device_id}"))
        .await
        .unwrap();
    assert_eq!(list, json!([]));
    srv.stop().await;
}

#[tokio::test]
async fn an_auditor_may_not_command_and_an_admin_may() {
    let srv = TestServer::start().await;
    let (mut agent, _alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let auditor = staff(&srv, "auditor@lab.example", Role::Auditor).await;
    let admin = staff(&srv, "admin@lab.example", Role::Admin).await;

    let body = request(&device_id, "lock_screen", json!({}), 300);
    assert_eq!(
        post_refused(&auditor, "/api/command", &body).await,
        (403, ErrorCode::Forbidden)
    );
    let refused = audit(&srv, "command.refused", Some(&device_id)).await;
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["code"], 3004);

    let (mut ws, _) = online(&srv, &mut agent).await;
    let v = submit(&admin, &body).await;
    let d = expect_delivery(&mut ws, &srv, v["command_id"].as_str().unwrap(), 1).await;
    assert_eq!(d.origin_user_id, user_id(&admin).await);
    let _ = ws.close(None).await;
    srv.stop().await;
}

#[tokio::test]
async fn malformed_requests_and_bad_params_are_refused_before_anything_is_stored() {
    let srv = TestServer::start().await;
    let (_agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = _agent.device_id.clone().unwrap();

    let cases: Vec<(Value, u16, ErrorCode)> = vec![
        (
            request(&device_id, "reboot", json!({"delay_s": 99_999}), 300),
            422,
            ErrorCode::InvalidParams,
        ),
        (
            request(&device_id, "lock_screen", json!({"force": true}), 300),
            422,
            ErrorCode::InvalidParams,
        ),
        (
            request(&device_id, "collect_logs", json!({}), 300),
            422,
            ErrorCode::InvalidParams,
        ),
        (
            request(&device_id, "format_disk", json!({}), 300),
            422,
            ErrorCode::InvalidField,
        ),
        (
            request(&device_id, "lock_screen", json!({}), 0),
            422,
            ErrorCode::InvalidField,
        ),
        (
            request(&device_id, "lock_screen", json!({}), 604_801),
            422,
            ErrorCode::InvalidField,
        ),
        (
            request(&device_id, "lock_screen", json!([]), 300),
            422,
            ErrorCode::InvalidField,
        ),
        (
            {
                let mut b = request(&device_id, "lock_screen", json!({}), 300);
                b["message_id"] = json!("not-a-uuid");
                b
            },
            422,
            ErrorCode::InvalidField,
        ),
        (
            {
                let mut b = request(&device_id, "lock_screen", json!({}), 300);
                b["extra"] = json!(1);
                b
            },
            422,
            ErrorCode::InvalidField,
        ),
    ];
    for (body, status, code) in cases {
        assert_eq!(
            post_refused(&alice, "/api/command", &body).await,
            (status, code),
            "{body}"
        );
    }
    let (_, list): (u16, Value) = alice
        .get(&format!("/api/commands?device={device_id}"))
        .await
        .unwrap();
    assert_eq!(list, json!([]));
    assert!(audit(&srv, "command.queued", None).await.is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn an_agent_cannot_touch_another_devices_command() {
    let srv = TestServer::start().await;
    let (mut alices_agent, alice) = paired(&srv, "alice@lab.example").await;
    let (bobs_agent, bob) = paired(&srv, "bob@lab.example").await;
    let bobs_device = bobs_agent.device_id.clone().unwrap();
    let (mut ws, _) = online(&srv, &mut alices_agent).await;

    let bobs = lock_screen(&bob, &bobs_device).await;
    let before = command(&bob, &bobs).await;
    let f = frame(&mut alices_agent, &srv, &ack(&bobs));
    expect_refused(&srv, &mut ws, f, ErrorCode::NotFound).await;
    let f = frame(&mut alices_agent, &srv, &executing(&bobs));
    expect_refused(&srv, &mut ws, f, ErrorCode::NotFound).await;
    let f = frame(&mut alices_agent, &srv, &result_ok(&bobs));
    expect_refused(&srv, &mut ws, f, ErrorCode::NotFound).await;
    let unknown = new_id();
    let f = frame(&mut alices_agent, &srv, &ack(&unknown));
    expect_refused(&srv, &mut ws, f, ErrorCode::NotFound).await;
    assert_eq!(
        command(&bob, &bobs).await,
        before,
        "bob's command is unchanged"
    );
    let rejected_frames = audit(
        &srv,
        tether_server::gateway::FRAME_REJECTED,
        alices_agent.device_id.as_deref(),
    )
    .await;
    assert_eq!(rejected_frames.len(), 4);

    // The session goes on: alice's own commands still work.
    let mine = lock_screen(&alice, alices_agent.device_id.as_deref().unwrap()).await;
    expect_delivery(&mut ws, &srv, &mine, 1).await;
    complete(&mut alices_agent, &mut ws, &srv, &alice, &mine).await;
    let _ = ws.close(None).await;
    srv.stop().await;
}

#[tokio::test]
async fn frames_for_a_finished_command_change_nothing() {
    let srv = TestServer::start().await;
    let (mut agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let (mut ws, _) = online(&srv, &mut agent).await;
    let id = lock_screen(&alice, &device_id).await;
    expect_delivery(&mut ws, &srv, &id, 1).await;
    complete(&mut agent, &mut ws, &srv, &alice, &id).await;
    let done = command(&alice, &id).await;

    // A duplicate result (even a different one) and a duplicate ack are ignored without
    // an answer: the next answer is the refusal of a later frame.
    srv.advance(1);
    agent
        .send(&mut ws, &srv, &result_failed(&id, ErrorCode::KernelFailure))
        .await;
    agent.send(&mut ws, &srv, &ack(&id)).await;
    let f = frame(&mut agent, &srv, &ack(&new_id()));
    expect_refused(&srv, &mut ws, f, ErrorCode::NotFound).await;
    // A status for it is answered 1006.
    let f = frame(&mut agent, &srv, &executing(&id));
    expect_refused(&srv, &mut ws, f, ErrorCode::UnexpectedMessage).await;
    assert_eq!(command(&alice, &id).await, done);
    assert_eq!(
        audit(&srv, "command.completed", Some(&device_id))
            .await
            .len(),
        1
    );
    assert!(audit(&srv, "command.failed", None).await.is_empty());

    let _ = ws.close(None).await;
    srv.stop().await;
}

#[tokio::test]
async fn an_agents_rejection_or_failed_result_ends_the_command_with_its_code() {
    let srv = TestServer::start().await;
    let (mut agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let (mut ws, _) = online(&srv, &mut agent).await;

    for (code, state) in [
        (ErrorCode::PolicyDenied, "denied"),
        (ErrorCode::OwnerSignatureInvalid, "denied"),
        (ErrorCode::TtlExpired, "expired"),
        (ErrorCode::InvalidParams, "failed"),
    ] {
        let id = lock_screen(&alice, &device_id).await;
        expect_delivery(&mut ws, &srv, &id, 1).await;
        agent.send(&mut ws, &srv, &rejected(&id, code)).await;
        let v = wait_state(&alice, &id, state).await;
        assert_eq!(v["error"], code.number(), "{code:?}");
        assert_eq!(
            transitions(&v).last().unwrap(),
            &(Some("sent".to_owned()), state.to_owned())
        );
        if code == ErrorCode::OwnerSignatureInvalid {
            // A PC refusing a command for its owner signature is a security alert.
            let (_, alerts): (u16, Value) = alice.get("/api/alerts").await.unwrap();
            assert!(
                alerts
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a["kind"] == "owner_signature_invalid" && a["severity"] == "critical"),
                "{alerts}"
            );
        }
    }

    // A failed result: result_posted, then failed with the result's code; the result is
    // kept.
    let id = lock_screen(&alice, &device_id).await;
    expect_delivery(&mut ws, &srv, &id, 1).await;
    agent.send(&mut ws, &srv, &ack(&id)).await;
    agent.send(&mut ws, &srv, &executing(&id)).await;
    agent
        .send(&mut ws, &srv, &result_failed(&id, ErrorCode::KernelFailure))
        .await;
    let v = wait_state(&alice, &id, "failed").await;
    assert_eq!(v["error"], 6001);
    assert_eq!(v["result"]["status"], "failed");
    let tail: Vec<_> = transitions(&v).into_iter().skip(3).collect();
    assert_eq!(
        tail,
        [
            (Some("ack_received"), "executing"),
            (Some("executing"), "result_posted"),
            (Some("result_posted"), "failed"),
        ]
        .map(|(f, t)| (f.map(str::to_owned), t.to_owned()))
    );

    let _ = ws.close(None).await;
    srv.stop().await;
}

#[tokio::test]
async fn a_pc_refusing_by_its_own_policy_raises_a_policy_violation() {
    let srv = TestServer::start().await;
    let (mut agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let (mut ws, _) = online(&srv, &mut agent).await;

    let id = lock_screen(&alice, &device_id).await;
    expect_delivery(&mut ws, &srv, &id, 1).await;
    agent.send(&mut ws, &srv, &ack(&id)).await;
    wait_state(&alice, &id, "ack_received").await;
    let denied = CommandResult {
        status: tether_proto::messages::command::ResultStatus::Denied,
        error: Some(ErrorCode::PolicyDenied),
        notes: "rule no-locks: lock_screen is not allowed".into(),
        result: json!({}),
        ..result_ok(&id)
    };
    agent.send(&mut ws, &srv, &denied).await;
    let v = wait_state(&alice, &id, "denied").await;
    assert_eq!(v["error"], 4001, "{v}");
    let events = audit(&srv, "agent.policy_denied", None).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let (_, alerts): (u16, Value) = alice.get("/api/alerts").await.unwrap();
    let alert = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "policy_violation")
        .unwrap_or_else(|| panic!("no policy_violation alert: {alerts}"));
    assert!(
        alert["message"].as_str().unwrap().contains("no-locks"),
        "{alert}"
    );

    // A failed result is not a policy matter: no second event.
    let id = lock_screen(&alice, &device_id).await;
    expect_delivery(&mut ws, &srv, &id, 1).await;
    agent.send(&mut ws, &srv, &ack(&id)).await;
    agent
        .send(&mut ws, &srv, &result_failed(&id, ErrorCode::KernelFailure))
        .await;
    wait_state(&alice, &id, "failed").await;
    assert_eq!(audit(&srv, "agent.policy_denied", None).await.len(), 1);

    let _ = ws.close(None).await;
    srv.stop().await;
}

#[tokio::test]
async fn the_test_hook_exists_only_in_test_mode_and_its_delivery_carries_the_simulation() {
    let srv = TestServer::start().await;
    let (_agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = _agent.device_id.clone().unwrap();
    let body = request(&device_id, "lock_screen", json!({}), 300);
    assert_eq!(
        post_refused(&alice, "/api/test/command?simulate=slow", &body).await,
        (404, ErrorCode::NotFound)
    );
    assert_eq!(
        post_refused(&srv.api(), "/api/test/command?simulate=slow", &body).await,
        (404, ErrorCode::NotFound),
        "not there at all, even for anonymous callers"
    );
    let id = body["message_id"].as_str().unwrap();
    assert!(srv.state().store.command(id).await.unwrap().is_none());
    srv.stop().await;

    let srv = TestServer::start_with(|c| c.test_mode = true).await;
    let (mut agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let (mut ws, _) = online(&srv, &mut agent).await;
    let body = request(&device_id, "lock_screen", json!({}), 300);
    let (s, v): (u16, Value) = alice
        .post("/api/test/command?simulate=slow", &body)
        .await
        .unwrap();
    assert_eq!(s, 202);
    assert_eq!(v["state"], "queued");
    let (_, d) = next_delivery(&mut ws, &srv).await;
    assert_eq!(
        d.command_id.to_string(),
        body["message_id"].as_str().unwrap()
    );
    assert_eq!(d.simulate, Some(Simulation::Slow));
    // An ordinary command in test mode simulates nothing.
    let plain = lock_screen(&alice, &device_id).await;
    let d = expect_delivery(&mut ws, &srv, &plain, 1).await;
    assert_eq!(d.simulate, None);
    let _ = ws.close(None).await;
    srv.stop().await;
}

/// A `screenshot` command delivered, acknowledged and executing; its id.
async fn screenshot_under_way(
    srv: &TestServer,
    agent: &mut crate::support::FakeAgent,
    ws: &mut tether_client::WsStream,
    api: &tether_client::Api,
) -> String {
    let device_id = agent.device_id.clone().unwrap();
    let v = submit(
        api,
        &request(&device_id, "screenshot", json!({"display": 0}), 300),
    )
    .await;
    let id = v["command_id"].as_str().unwrap().to_owned();
    expect_delivery(ws, srv, &id, 1).await;
    agent.send(ws, srv, &ack(&id)).await;
    agent.send(ws, srv, &executing(&id)).await;
    wait_state(api, &id, "executing").await;
    id
}

fn with_artifact(id: &str, artifact_id: &str, sha256: &str, size: u64) -> CommandResult {
    let mut r = result_ok(id);
    r.artifact = Some(ArtifactRef {
        artifact_id: artifact_id.to_owned(),
        sha256: sha256.to_owned(),
        size_bytes: size,
        content_type: "image/png".into(),
    });
    r
}

#[tokio::test]
async fn a_result_naming_an_artifact_that_was_not_granted_and_uploaded_is_refused() {
    let srv = TestServer::start().await;
    let (mut agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let (mut ws, _) = online(&srv, &mut agent).await;
    let store = &srv.state().store;
    let sha = "ab".repeat(32);
    let now = srv.clock.now();
    let grant = |aid: &str, cid: &str| Artifact {
        id: aid.to_owned(),
        device_id: device_id.clone(),
        command_id: cid.to_owned(),
        object_key: format!("artifacts/{aid}"),
        content_type: "image/png".into(),
        max_bytes: 1 << 20,
        created_at: now,
        expires_at: now.saturating_add(Duration::from_secs(600)),
        uploaded_at: None,
        size_bytes: None,
        sha256: None,
    };

    // Each bad artifact: the frame is refused with the check's code, and the command
    // fails with it (never completed, no result recorded).
    let other = screenshot_under_way(&srv, &mut agent, &mut ws, &alice).await;
    store
        .insert_artifact(&grant("art_other", &other))
        .await
        .unwrap();
    store
        .mark_artifact_uploaded("art_other", 1000, &sha, now)
        .await
        .unwrap();
    let cases: Vec<(&str, &str, String, u64, ErrorCode)> = vec![
        (
            "never granted",
            "art_never",
            sha.clone(),
            1000,
            ErrorCode::NotFound,
        ),
        (
            "granted for another command",
            "art_other",
            sha.clone(),
            1000,
            ErrorCode::NotFound,
        ),
        (
            "not uploaded",
            "art_{id}",
            sha.clone(),
            1000,
            ErrorCode::ChecksumMismatch,
        ),
        (
            "other bytes",
            "art_{id}",
            "cd".repeat(32),
            1000,
            ErrorCode::ChecksumMismatch,
        ),
        (
            "other size",
            "art_{id}",
            sha.clone(),
            999,
            ErrorCode::ChecksumMismatch,
        ),
    ];
    for (what, artifact_id, sha256, size, code) in cases {
        let id = screenshot_under_way(&srv, &mut agent, &mut ws, &alice).await;
        let artifact_id = artifact_id.replace("{id}", &id);
        if artifact_id.ends_with(&id) {
            store
                .insert_artifact(&grant(&artifact_id, &id))
                .await
                .unwrap();
            if what != "not uploaded" {
                store
                    .mark_artifact_uploaded(&artifact_id, 1000, &sha, now)
                    .await
                    .unwrap();
            }
        }
        let f = frame(
            &mut agent,
            &srv,
            &with_artifact(&id, &artifact_id, &sha256, size),
        );
        expect_refused(&srv, &mut ws, f, code).await;
        let v = wait_state(&alice, &id, "failed").await;
        assert_eq!(v["error"], code.number(), "{what}");
        assert!(v.get("result").is_none(), "{what}: no result recorded");
        assert!(
            !transitions(&v)
                .iter()
                .any(|(_, to)| to == "result_posted" || to == "completed"),
            "{what}"
        );
    }

    // The right one completes its command, artifact and all.
    let id = screenshot_under_way(&srv, &mut agent, &mut ws, &alice).await;
    store
        .insert_artifact(&grant("art_good", &id))
        .await
        .unwrap();
    store
        .mark_artifact_uploaded("art_good", 1000, &sha, now)
        .await
        .unwrap();
    agent
        .send(&mut ws, &srv, &with_artifact(&id, "art_good", &sha, 1000))
        .await;
    let v = wait_state(&alice, &id, "completed").await;
    assert_eq!(v["result"]["artifact"]["artifact_id"], "art_good");
    let e = alice
        .get::<Value>("/api/command/does-not-exist")
        .await
        .unwrap_err();
    assert_eq!(refusal(&e), (404, ErrorCode::NotFound));

    let _ = ws.close(None).await;
    srv.stop().await;
}

/// The next text frame the gateway writes, as it is (not verified).
async fn next_text(ws: &mut tether_client::WsStream) -> String {
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), futures_util::StreamExt::next(ws))
            .await
            .expect("a frame from the gateway in time")
            .expect("the socket is open")
            .expect("a frame");
        match m {
            WsMessage::Text(t) => return t.as_str().to_owned(),
            WsMessage::Close(c) => panic!("the gateway closed the session: {c:?}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn the_agent_frame_hook_exists_only_in_test_mode_for_admins_and_writes_the_frame_verbatim() {
    let srv = TestServer::start().await;
    let (mut agent, _alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let (ws, _) = online(&srv, &mut agent).await;
    let admin = staff(&srv, "admin@lab.example", Role::Admin).await;
    let body = json!({"device_id": device_id, "frame": "hello"});
    assert_eq!(
        post_refused(&admin, "/api/test/agent_frame", &body).await,
        (404, ErrorCode::NotFound),
        "no such route outside test mode, even for an admin"
    );
    assert!(audit(&srv, "test.agent_frame", None).await.is_empty());
    drop(ws);
    srv.stop().await;

    let srv = TestServer::start_with(|c| c.test_mode = true).await;
    let (mut agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let admin = staff(&srv, "admin@lab.example", Role::Admin).await;
    let body = json!({"device_id": device_id, "frame": "hello"});
    let (s, code) = post_refused(&admin, "/api/test/agent_frame", &body).await;
    assert_eq!(
        (s, code),
        (404, ErrorCode::NotFound),
        "no session holds the device"
    );
    let (mut ws, session_id) = online(&srv, &mut agent).await;
    assert_eq!(
        post_refused(&alice, "/api/test/agent_frame", &body).await,
        (403, ErrorCode::Forbidden),
        "admins only, not even the device's owner"
    );
    assert_eq!(
        post_refused(
            &admin,
            "/api/test/agent_frame",
            &json!({"device_id": "dev_nope", "frame": "hello"})
        )
        .await,
        (404, ErrorCode::NotFound)
    );
    assert_eq!(
        post_refused(
            &admin,
            "/api/test/agent_frame",
            &json!({"device_id": device_id, "frame": ""})
        )
        .await,
        (422, ErrorCode::InvalidField)
    );

    // A string is written byte for byte, unsigned and unchecked.
    let raw = r#"{ "header": {"seq": 5000}, "not": "an envelope" }"#;
    let (s, v): (u16, Value) = admin
        .post(
            "/api/test/agent_frame",
            &json!({"device_id": device_id, "frame": raw}),
        )
        .await
        .unwrap();
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["status"], "published");
    assert_eq!(v["session_id"], session_id.as_str());
    assert_eq!(v["bytes"], raw.len());
    assert_eq!(next_text(&mut ws).await, raw);
    // Any other JSON value is written as its compact JSON.
    let (s, _): (u16, Value) = admin
        .post(
            "/api/test/agent_frame",
            &json!({"device_id": device_id, "frame": {"a": [1, 2]}}),
        )
        .await
        .unwrap();
    assert_eq!(s, 202);
    assert_eq!(next_text(&mut ws).await, r#"{"a":[1,2]}"#);
    // The session's own frames go on numbered above the raw frame's seq.
    let id = lock_screen(&alice, &device_id).await;
    let (header, d) = next_delivery(&mut ws, &srv).await;
    assert_eq!(d.command_id.to_string(), id);
    assert!(header.seq > 5000, "seq {}", header.seq);
    // Each use is audited as the admin's.
    let used = audit(&srv, "test.agent_frame", Some(&device_id)).await;
    assert_eq!(used.len(), 2);
    assert_eq!(used[0]["session_id"], session_id.as_str());
    assert_eq!(used[0]["bytes"], raw.len());

    let _ = ws.close(None).await;
    srv.stop().await;
}
