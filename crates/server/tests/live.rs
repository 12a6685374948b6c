//! The telemetry path and the live view (issue 4), against an in-process server with a
//! manual clock and real TLS, keys and envelopes: accepted telemetry reaches the bus and
//! its owner's live view; refused telemetry is dropped with its error code and the
//! session goes on; presence changes and alerts are live events; nobody sees another
//! user's devices. Waits are for network delivery only, never for time to pass.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use support::live::{
    DELIVERY, eventually, expect_refused, live, marker, next_event, next_of, online, pair_for,
    paired, rejected_audit, sample, seal_unchecked, send_raw, stamp, subscribe, telemetry_len,
    user_id, wait_telemetry_len,
};
use support::{TestServer, code_of, read_verified};
use tether_proto::messages::notify::Severity;
use tether_proto::messages::session::{DiskUsage, Heartbeat, HeartbeatStatus, Telemetry};
use tether_proto::validate::b64url_encode;
use tether_proto::{Clock, ErrorCode, Message, MessageType, Payload, UnixMillis};
use tether_server::events::{
    LIVE_STREAM, TELEMETRY_STREAM, TelemetryRecord, live_events_of, records_of,
};
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[tokio::test]
async fn accepted_telemetry_reaches_the_bus_and_the_owners_live_view() {
    let srv = TestServer::start().await;
    let (mut agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let mut view = subscribe(&alice, &format!("?device={device_id}")).await;
    let (mut ws, _) = online(&srv, &mut agent).await;

    agent.send(&mut ws, &srv, &sample(12.5)).await;
    let seq = agent.seq;
    let t = next_of(&mut view, "telemetry").await;
    assert_eq!(t.device_id, device_id);
    assert_eq!(t.owner_id.as_deref(), Some(user_id(&alice).await.as_str()));
    assert_eq!(t.data["cpu_pct"], 12.5);
    assert!(
        t.data["risk_score"].is_number(),
        "scored by the analytics on the way"
    );

    wait_telemetry_len(&srv, 1).await;
    let bus = &srv.state().bus;
    bus.ensure_group(TELEMETRY_STREAM, "test-reader")
        .await
        .unwrap();
    let entries = bus
        .read_group(TELEMETRY_STREAM, "test-reader", "t", 10, Duration::ZERO)
        .await
        .unwrap();
    // The sample's entry holds it alone (nothing else was being appended).
    let records: Vec<TelemetryRecord> = records_of(&entries[0].payload).unwrap();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.device_id, device_id);
    assert_eq!(record.owner_id, t.owner_id);
    assert_eq!(record.seq, seq);
    assert_eq!(record.body, sample(12.5));
    assert_eq!(record.received_at, srv.clock.now());

    let _ = ws.close(None).await;
    drop(view);
    srv.stop().await;
}

#[tokio::test]
async fn a_user_cannot_subscribe_to_or_see_another_users_device() {
    let srv = TestServer::start().await;
    let (mut agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let (mallory, _, _) = srv.user("mallory@lab.example").await;

    for query in [
        format!("?device={device_id}"),
        "?device=dev_doesnotexist".to_owned(),
    ] {
        let e = mallory
            .get_stream(&format!("/api/live{query}"))
            .await
            .unwrap_err();
        assert_eq!(
            code_of(&e),
            ErrorCode::NotFound,
            "foreign and unknown look the same"
        );
    }
    let e = srv.api().get_stream("/api/live").await.unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::Unauthenticated);

    let mut theirs = subscribe(&mallory, "").await;
    let mut mine = subscribe(&alice, "").await;
    let (mut ws, _) = online(&srv, &mut agent).await;
    agent.send(&mut ws, &srv, &sample(50.0)).await;
    let _ = next_of(&mut mine, "telemetry").await;
    // Everything about alice's device was fanned out before this marker.
    marker(&srv, &user_id(&mallory).await).await;
    let first = next_event(&mut theirs).await;
    assert_eq!(
        (first.event.as_str(), live(&first).device_id.as_str()),
        ("command_status", "dev_marker"),
        "mallory's first event is the marker: she saw nothing of alice's device"
    );

    let _ = ws.close(None).await;
    drop((theirs, mine));
    srv.stop().await;
}

#[tokio::test]
async fn the_access_token_may_come_in_the_query_for_event_source() {
    let srv = TestServer::start().await;
    let (alice, login, _) = srv.user("alice@lab.example").await;
    let token = login["access_token"].as_str().unwrap();
    let mut view = subscribe(&srv.api(), &format!("?access_token={token}")).await;
    marker(&srv, &user_id(&alice).await).await;
    assert_eq!(next_event(&mut view).await.event, "command_status");
    let e = srv
        .api()
        .get_stream("/api/live?access_token=not-a-token")
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::TokenInvalid);
    let e = alice.get_stream("/api/live?devices=x").await.unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::InvalidField);
    drop(view);
    srv.stop().await;
}

#[tokio::test]
async fn the_stream_ends_when_the_access_token_expires() {
    let srv = TestServer::start().await;
    let (alice, _, _) = srv.user("alice@lab.example").await;
    let alice_id = user_id(&alice).await;
    let mut view = subscribe(&alice, "").await;
    srv.advance(srv.state().config.auth.access_ttl_s + 1);
    // Any event wakes the subscription (an idle one notices within 5 s by itself); the
    // event already under way may still be delivered, then the stream ends.
    marker(&srv, &alice_id).await;
    let ended = tokio::time::timeout(DELIVERY, async {
        while view.next_event().await.unwrap().is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ends once the token has expired");
    srv.stop().await;
}

/// `frame` (a sealed envelope) with one byte of its signature changed.
fn broken_signature(frame: &[u8]) -> Vec<u8> {
    let mut env: Value = serde_json::from_slice(frame).unwrap();
    let mut sig = tether_proto::validate::b64url_decode(env["sig"].as_str().unwrap()).unwrap();
    sig[7] ^= 0x01;
    env["sig"] = json!(b64url_encode(&sig));
    tether_proto::canonical::canonicalize(&env)
        .unwrap()
        .into_bytes()
}

#[tokio::test]
async fn telemetry_is_refused_while_the_analytics_are_too_far_behind() {
    let srv = TestServer::start().await;
    let (alice, _, _) = srv.user("alice@lab.example").await;
    let mut agent = pair_for(&srv, &alice).await;
    let (mut ws, _) = online(&srv, &mut agent).await;
    let state = srv.state();
    let relaxed = std::sync::atomic::Ordering::Relaxed;

    // The backlog as the watcher reads it when the analytics are far behind. The watcher
    // rewrites it with the real backlog once a second: if that lands between the store
    // and the gateway's check, the sample's signature is checked and the test tries again.
    // The samples' signatures are broken: while behind, the gateway refuses a sample
    // before it checks its signature (its cost is saved), and such refusals do not count
    // towards the refused frames in a row that end a session.
    let tampered = |agent: &mut support::FakeAgent| {
        let st = agent.stamp(srv.clock.now());
        let good = agent.signer.seal(st, &sample(20.0)).unwrap();
        (broken_signature(&good), support::live::message_id_of(&good))
    };
    // A verified sample first: the shortcut is taken only by a session that had a
    // heartbeat or sample verified within a heartbeat interval.
    let before = telemetry_len(&srv).await;
    agent.send(&mut ws, &srv, &sample(19.0)).await;
    wait_telemetry_len(&srv, before + 1).await;
    let mut refused = 0;
    let mut checked = 0;
    while refused <= tether_server::gateway::MAX_REJECTED_IN_A_ROW {
        assert!(checked < 5, "never refused before the signature check");
        state.telemetry_backlog.store(u64::MAX, relaxed);
        let (frame, id) = tampered(&mut agent);
        send_raw(&mut ws, frame).await;
        match read_verified(&mut ws, &srv).await {
            Payload::Error(e) if e.code == ErrorCode::Unavailable => {
                assert_eq!(e.ref_message_id, Some(id), "the error names the sample");
                refused += 1;
            }
            Payload::Error(e) if e.code == ErrorCode::SignatureInvalid => checked += 1,
            other => panic!("expected an error frame, got {:?}", other.message_type()),
        }
    }

    // Once the watcher has read the real backlog again, samples are accepted.
    eventually("the backlog to be read again", || async {
        (state.telemetry_backlog.load(relaxed) < u64::MAX).then_some(())
    })
    .await;
    let before = telemetry_len(&srv).await;
    agent.send(&mut ws, &srv, &sample(21.0)).await;
    wait_telemetry_len(&srv, before + 1).await;
    // And a broken signature is checked again.
    let (frame, _) = tampered(&mut agent);
    expect_refused(&srv, &mut ws, frame, ErrorCode::SignatureInvalid).await;
    srv.stop().await;
}

#[tokio::test]
async fn a_sample_the_bus_could_not_take_is_answered_unavailable_and_the_next_is_kept() {
    // A session does not wait for its samples' appends (`gateway::telemetry`): a failed
    // one is still answered, later, with 9002 naming the sample.
    let srv = TestServer::start().await;
    let (alice, _, _) = srv.user("alice@lab.example").await;
    let mut agent = pair_for(&srv, &alice).await;
    let (mut ws, _) = online(&srv, &mut agent).await;
    // A sample kept first: the next ones within a heartbeat interval go straight to
    // their append (no presence refresh, which would wait for the bus as well).
    let before = telemetry_len(&srv).await;
    agent.send(&mut ws, &srv, &sample(29.0)).await;
    wait_telemetry_len(&srv, before + 1).await;

    // Another process holds the bus file's write lock for longer than the bus waits for
    // it (5 s).
    use sqlx::Connection as _;
    let bus_file = srv.state().config.data_dir.join("bus.db");
    let mut holder = sqlx::SqliteConnection::connect(&format!("sqlite://{}", bus_file.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .unwrap();
    let st = agent.stamp(srv.clock.now());
    let frame = agent.signer.seal(st, &sample(30.0)).unwrap();
    let id = support::live::message_id_of(&frame);
    send_raw(&mut ws, frame).await;
    // The bus gives up on a write after 5 s, and writes queued behind one that waits
    // wait their own 5 s after it: the answer comes after 5 to 10 s.
    tokio::time::sleep(Duration::from_secs(10)).await;
    match read_verified(&mut ws, &srv).await {
        Payload::Error(e) => {
            assert_eq!(e.code, ErrorCode::Unavailable);
            assert_eq!(e.ref_message_id, Some(id), "the error names the sample");
        }
        other => panic!("expected an error frame, got {:?}", other.message_type()),
    }
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();

    // The session went on, and the next sample is kept.
    agent.send(&mut ws, &srv, &sample(31.0)).await;
    wait_telemetry_len(&srv, before + 2).await;
    srv.stop().await;
}

#[tokio::test]
async fn a_heartbeat_with_a_bad_signature_is_refused_and_the_session_goes_on() {
    // Heartbeats are checked in batches with the samples (`gateway::signatures`): a
    // broken one is still refused on its own, and the next good one is accepted.
    let srv = TestServer::start().await;
    let (alice, _, _) = srv.user("alice@lab.example").await;
    let mut agent = pair_for(&srv, &alice).await;
    let (mut ws, _) = online(&srv, &mut agent).await;
    let beat = Heartbeat {
        status: HeartbeatStatus::Alive,
        uptime_s: 5,
        queue_depth: 0,
    };
    let st = agent.stamp(srv.clock.now());
    let tampered = broken_signature(&agent.signer.seal(st, &beat).unwrap());
    expect_refused(&srv, &mut ws, tampered, ErrorCode::SignatureInvalid).await;

    let device_id = agent.device_id.clone().unwrap();
    let (_, device): (u16, Value) = alice
        .get(&format!("/api/devices/{device_id}"))
        .await
        .unwrap();
    assert!(
        device["uptime_s"].is_null(),
        "no heartbeat accepted yet: {device}"
    );
    agent.send(&mut ws, &srv, &beat).await;
    // The good one was checked and recorded: the device shows the uptime it reported.
    eventually("the heartbeat's uptime shown", || async {
        let (_, device): (u16, Value) = alice
            .get(&format!("/api/devices/{device_id}"))
            .await
            .unwrap();
        (device["uptime_s"].as_u64() >= Some(5)).then_some(())
    })
    .await;
    let before = telemetry_len(&srv).await;
    agent.send(&mut ws, &srv, &sample(30.0)).await;
    wait_telemetry_len(&srv, before + 1).await;
    srv.stop().await;
}

#[tokio::test]
async fn bad_telemetry_is_dropped_with_its_code_and_the_session_goes_on() {
    let srv = TestServer::start().await;
    let (alice, _, _) = srv.user("alice@lab.example").await;
    let mut agent = pair_for(&srv, &alice).await;
    let device_id = agent.device_id.clone().unwrap();
    // Another device paired by the same user: its key is real, but not this device's.
    let other = pair_for(&srv, &alice).await;
    let (mut ws, _) = online(&srv, &mut agent).await;

    // A bad signature: one byte of a valid signature changed.
    let st = agent.stamp(srv.clock.now());
    let tampered = broken_signature(&agent.signer.seal(st, &sample(10.0)).unwrap());
    expect_refused(&srv, &mut ws, tampered, ErrorCode::SignatureInvalid).await;

    // A replayed sequence number: accepted once, then the same seq again.
    agent.send(&mut ws, &srv, &sample(11.0)).await;
    let replay = agent
        .signer
        .seal(stamp(&srv, agent.seq), &sample(11.0))
        .unwrap();
    expect_refused(&srv, &mut ws, replay, ErrorCode::SequenceReplay).await;

    // Signed by another paired device's key, on this device's session.
    let st = stamp(&srv, agent.seq + 100);
    let foreign = other.signer.seal(st, &sample(12.0)).unwrap();
    expect_refused(&srv, &mut ws, foreign, ErrorCode::UnknownKid).await;

    // Over telemetry's 16 KiB limit (well under the transport's 256 KiB), validly signed.
    let mut big = sample(13.0);
    big.disks = (0..64)
        .map(|i| DiskUsage {
            mount: format!("/mnt/{i}/{}", "x".repeat(240)),
            used_bytes: 1,
            total_bytes: 2,
        })
        .collect();
    let st = agent.stamp(srv.clock.now());
    let oversized = seal_unchecked(
        &agent.key,
        Telemetry::TYPE,
        &st,
        serde_json::to_value(&big).unwrap(),
    );
    assert!(oversized.len() > MessageType::Telemetry.max_frame_bytes());
    expect_refused(&srv, &mut ws, oversized, ErrorCode::FrameTooLarge).await;

    // Only the one good frame went on, and the session still takes telemetry.
    wait_telemetry_len(&srv, 1).await;
    agent.send(&mut ws, &srv, &sample(14.0)).await;
    wait_telemetry_len(&srv, 2).await;
    // ... and only the good ones reach the store (the AnalyticsWorker stores what the
    // stream carries).
    let stored = eventually("both good frames stored", || async {
        let events = srv
            .state()
            .store
            .telemetry_events(&device_id, UnixMillis(0), 100)
            .await
            .unwrap();
        (events.len() >= 2).then_some(events)
    })
    .await;
    let mut cpus: Vec<f64> = stored.iter().map(|e| e.event.cpu_pct).collect();
    cpus.sort_by(f64::total_cmp);
    assert_eq!(cpus, [11.0, 14.0]);

    // Each refusal is a security event with its code.
    let codes: Vec<u64> = rejected_audit(&srv, &device_id)
        .await
        .iter()
        .map(|d| d["code"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, [2001, 2006, 2002, 1002]);

    let _ = ws.close(None).await;
    srv.stop().await;
}

#[tokio::test]
async fn ten_bad_frames_in_a_row_end_the_session() {
    let srv = TestServer::start().await;
    let (mut agent, _alice) = paired(&srv, "alice@lab.example").await;
    let (mut ws, _) = online(&srv, &mut agent).await;
    let max = tether_server::gateway::MAX_REJECTED_IN_A_ROW;
    for i in 0..max {
        // Stale: an expired TTL (2004), fresh seq each time.
        let mut st = agent.stamp(srv.clock.now());
        st.iat = UnixMillis(st.iat.0 - 120_000);
        let frame = agent.signer.seal(st, &sample(1.0)).unwrap();
        if i + 1 < max {
            expect_refused(&srv, &mut ws, frame, ErrorCode::TtlExpired).await;
        } else {
            send_raw(&mut ws, frame).await;
        }
    }
    // The tenth is answered, then the session is refused and closed.
    assert_eq!(
        support::error_code(&read_verified(&mut ws, &srv).await),
        ErrorCode::TtlExpired
    );
    assert_eq!(
        support::error_code(&read_verified(&mut ws, &srv).await),
        ErrorCode::TtlExpired
    );
    let closed = tokio::time::timeout(DELIVERY, async {
        while let Some(Ok(m)) = ws.next().await {
            if matches!(m, WsMessage::Close(_)) {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the gateway closes the session");
    assert_eq!(telemetry_len(&srv).await, 0);
    // The first refusal is audited at once; the nine within the next 10 s are folded
    // into one event at the session's end, which stands for eight more besides itself.
    let device_id = agent.device_id.clone().unwrap();
    let audited = eventually("the folded refusals audited", || async {
        let a = rejected_audit(&srv, &device_id).await;
        (a.len() >= 2).then_some(a)
    })
    .await;
    let folded: Vec<(u64, u64)> = audited
        .iter()
        .map(|d| (d["code"].as_u64().unwrap(), d["folded"].as_u64().unwrap()))
        .collect();
    assert_eq!(folded, [(2004, 0), (2004, 8)]);
    srv.stop().await;
}

#[tokio::test]
async fn presence_changes_are_live_events() {
    let srv = TestServer::start().await;
    let (mut agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let mut view = subscribe(&alice, "").await;

    let (mut ws, session_id) = online(&srv, &mut agent).await;
    let on = next_of(&mut view, "presence").await;
    assert_eq!(on.device_id, device_id);
    assert_eq!(on.data, json!({"online": true, "session_id": session_id}));
    // Heartbeats keep it; the presence key lives 60 s per heartbeat.
    agent
        .send(
            &mut ws,
            &srv,
            &Heartbeat {
                status: HeartbeatStatus::Alive,
                uptime_s: 5,
                queue_depth: 0,
            },
        )
        .await;
    assert_eq!(srv.state().config.gateway.presence_ttl_s, 60);
    // Fleet health: the heartbeat's uptime, carried forward, and an exact last-seen.
    let beat_at = srv.clock.now().0;
    let mut d = Value::Null;
    for _ in 0..200 {
        d = alice
            .get::<Value>(&format!("/api/devices/{device_id}"))
            .await
            .unwrap()
            .1;
        if d["uptime_s"].is_u64() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(d["uptime_s"], 5, "{d}");
    assert!(d["last_seen"].as_u64().unwrap() >= beat_at, "{d}");
    srv.advance(10);
    let (_, d): (u16, Value) = alice
        .get(&format!("/api/devices/{device_id}"))
        .await
        .unwrap();
    assert_eq!(d["uptime_s"], 15, "carried forward: {d}");

    ws.close(None).await.unwrap();
    let off = next_of(&mut view, "presence").await;
    assert_eq!(off.device_id, device_id);
    assert_eq!(off.data["online"], false);
    let (_, d): (u16, Value) = alice
        .get(&format!("/api/devices/{device_id}"))
        .await
        .unwrap();
    assert_eq!(d["online"], false);
    assert_eq!(d["uptime_s"], Value::Null, "only while online: {d}");
    drop(view);
    srv.stop().await;
}

#[tokio::test]
async fn an_alert_is_pushed_to_the_devices_agent_and_its_owners_live_view() {
    let srv = TestServer::start().await;
    let (mut agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let alice_id = user_id(&alice).await;
    let mut view = subscribe(&alice, "").await;
    let (mut ws, _) = online(&srv, &mut agent).await;
    let _ = next_of(&mut view, "presence").await;

    let raised = tether_server::alerts::raise(
        srv.state(),
        &device_id,
        "anomaly",
        Severity::Critical,
        "CPU jumped to 99 %",
        Some(0.95),
    )
    .await
    .unwrap()
    .expect("a new alert");

    match read_verified(&mut ws, &srv).await {
        Payload::AlertPush(p) => {
            assert_eq!(p.alert_id, raised.id);
            assert_eq!(p.device_id, device_id);
            assert_eq!(p.risk_score, Some(0.95));
        }
        other => panic!("expected alert_push, got {:?}", other.message_type()),
    }
    let seen = next_of(&mut view, "alert").await;
    assert_eq!(seen.data["id"], raised.id.as_str());
    assert_eq!(seen.owner_id.as_deref(), Some(alice_id.as_str()));
    // Fanned out here at once, the events reach the bus for other processes through the
    // hub's outbox, a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let bus = &srv.state().bus;
    let mut on_bus = 0;
    let mut after = "0-0".to_owned();
    while on_bus < 2 {
        for entry in bus
            .read_after(LIVE_STREAM, &after, 100, Duration::ZERO)
            .await
            .unwrap()
        {
            on_bus += live_events_of(&entry.payload).unwrap().len();
            after = entry.id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the live events never reached the bus"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let _ = ws.close(None).await;
    drop(view);
    srv.stop().await;
}

#[tokio::test]
async fn the_live_view_is_in_the_openapi_document_as_an_event_stream() {
    let srv = TestServer::start().await;
    let (_, doc): (u16, Value) = srv.api().get("/api/openapi.json").await.unwrap();
    let op = &doc["paths"]["/api/live"]["get"];
    assert!(
        op["responses"]["200"]["content"]["text/event-stream"].is_object(),
        "{op}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_frame_the_agent_refused_is_audited_and_the_session_goes_on() {
    let srv = TestServer::start().await;
    let (mut agent, _alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let (mut ws, session_id) = online(&srv, &mut agent).await;

    // What an agent sends when a gateway frame fails its checks (a forged signature).
    let refused = tether_proto::MessageId::from_random_bytes(support::rand16());
    agent
        .send(
            &mut ws,
            &srv,
            &tether_proto::messages::notify::ErrorFrame {
                code: ErrorCode::SignatureInvalid,
                message: "signature does not verify".into(),
                ref_message_id: Some(refused.clone()),
            },
        )
        .await;
    let audited = eventually("the refusal in the audit trail", || async {
        srv.state()
            .store
            .audit_after(0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.event.action == tether_server::gateway::AGENT_REFUSED_FRAME)
    })
    .await;
    assert_eq!(audited.event.actor, device_id);
    assert_eq!(audited.event.outcome, "denied");
    assert_eq!(audited.event.detail["code"], 2001);
    assert_eq!(
        audited.event.detail["ref_message_id"],
        refused.to_string().as_str()
    );
    assert_eq!(audited.event.detail["session_id"], session_id.as_str());

    // The session goes on: a sample sent afterwards is accepted.
    agent.send(&mut ws, &srv, &sample(20.0)).await;
    wait_telemetry_len(&srv, 1).await;
    let _ = ws.close(None).await;
    srv.stop().await;
}
