//! Helpers for the telemetry, live-view, alert and metrics tests: paired devices,
//! telemetry samples, hand-made envelopes, and a live-view (SSE) reader.

use std::future::Future;
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use futures_util::SinkExt;
use serde_json::{Map, Value, json};
use tether_client::sse::{EventStream, SseEvent};
use tether_client::{Api, WsStream};
use tether_proto::envelope::{SIGNING_CONTEXT, Stamp};
use tether_proto::messages::session::{DiskUsage, NetUsage, Telemetry};
use tether_proto::validate::b64url_encode;
use tether_proto::{Clock, ErrorCode, KeyId, MessageId, MessageType, Payload, TraceId};
use tether_server::events::{LiveEvent, LiveKind, TELEMETRY_STREAM, publish_live};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::{FakeAgent, TestServer, read_verified};

/// How long to wait for something sent over the network to arrive.
pub const DELIVERY: Duration = Duration::from_secs(10);

/// A user with a paired device (not connected yet).
pub async fn paired(srv: &TestServer, email: &str) -> (FakeAgent, Api) {
    let (user, _, _) = srv.user(email).await;
    let agent = pair_for(srv, &user).await;
    (agent, user)
}

pub async fn pair_for(srv: &TestServer, user: &Api) -> FakeAgent {
    let mut agent = FakeAgent::new();
    let pr = agent.request_pairing(srv).await;
    let token = pr["pair_token"].as_str().unwrap().to_owned();
    let (s, _): (u16, Value) = user
        .post("/api/pair/confirm", &json!({"pair_token": token}))
        .await
        .unwrap();
    assert_eq!(s, 200);
    let (s, _) = agent.activate(srv, &token).await.unwrap();
    assert_eq!(s, 200);
    agent
}

/// Connects and returns the socket and the session id.
pub async fn online(srv: &TestServer, agent: &mut FakeAgent) -> (WsStream, String) {
    let (ws, reply) = agent.connect(srv).await.unwrap();
    let Payload::Connected(c) = reply else {
        panic!("expected connected, got {:?}", reply.message_type())
    };
    (ws, c.session_id)
}

pub fn sample(cpu: f64) -> Telemetry {
    Telemetry {
        collected_at: tether_proto::UnixMillis(1_764_115_200_000),
        cpu_pct: cpu,
        mem_used_bytes: 4 << 30,
        mem_total_bytes: 16 << 30,
        disks: vec![DiskUsage {
            mount: "/".into(),
            used_bytes: 40 << 30,
            total_bytes: 100 << 30,
        }],
        net: NetUsage {
            rx_bps: 1200.0,
            tx_bps: 300.0,
            rx_total_bytes: 1 << 20,
            tx_total_bytes: 1 << 19,
        },
    }
}

pub fn stamp(srv: &TestServer, seq: u64) -> Stamp {
    Stamp {
        iat: srv.clock.now(),
        ttl: 60,
        seq,
        message_id: MessageId::from_random_bytes(super::rand16()),
        trace_id: TraceId::from_random_bytes(super::rand16()),
    }
}

/// Signs an envelope without the sender-side size check, so a test can send what a
/// broken or hostile agent would.
pub fn seal_unchecked(key: &SigningKey, t: MessageType, st: &Stamp, body: Value) -> Vec<u8> {
    let kid = KeyId::for_ed25519(key.verifying_key().as_bytes());
    let mut env = Map::new();
    env.insert("v".into(), json!(1));
    env.insert(
        "header".into(),
        json!({"type": t.name(), "kid": kid.to_string(), "alg": "EdDSA", "iat": st.iat.0,
               "ttl": st.ttl, "seq": st.seq, "message_id": st.message_id.to_string(),
               "trace_id": st.trace_id.to_string()}),
    );
    env.insert("body".into(), body);
    let mut env = Value::Object(env);
    let unsigned = tether_proto::canonical::canonicalize(&env).unwrap();
    let mut input = SIGNING_CONTEXT.to_vec();
    input.extend_from_slice(unsigned.as_bytes());
    let sig = key.sign(&input);
    env["sig"] = json!(b64url_encode(&sig.to_bytes()));
    tether_proto::canonical::canonicalize(&env)
        .unwrap()
        .into_bytes()
}

pub fn message_id_of(frame: &[u8]) -> MessageId {
    let v: Value = serde_json::from_slice(frame).unwrap();
    MessageId::parse(v["header"]["message_id"].as_str().unwrap()).unwrap()
}

pub async fn send_raw(ws: &mut WsStream, frame: Vec<u8>) {
    ws.send(WsMessage::Text(String::from_utf8(frame).unwrap().into()))
        .await
        .unwrap();
}

/// Sends a frame and expects an `error` frame naming it, with `code`.
pub async fn expect_refused(srv: &TestServer, ws: &mut WsStream, frame: Vec<u8>, code: ErrorCode) {
    let id = message_id_of(&frame);
    send_raw(ws, frame).await;
    match read_verified(ws, srv).await {
        Payload::Error(e) => {
            assert_eq!(e.code, code, "{}", e.message);
            assert_eq!(e.ref_message_id, Some(id), "the error names the frame");
        }
        other => panic!("expected an error frame, got {:?}", other.message_type()),
    }
}

pub async fn subscribe(api: &Api, query: &str) -> EventStream {
    tokio::time::timeout(DELIVERY, api.get_stream(&format!("/api/live{query}")))
        .await
        .expect("the live view answers")
        .unwrap()
}

pub async fn next_event(s: &mut EventStream) -> SseEvent {
    tokio::time::timeout(DELIVERY, s.next_event())
        .await
        .expect("an event within the delivery wait")
        .unwrap()
        .expect("the stream is open")
}

pub fn live(e: &SseEvent) -> LiveEvent {
    serde_json::from_str(&e.data).unwrap()
}

/// The next live event of `kind` (presence events of a connect may come first).
pub async fn next_of(s: &mut EventStream, kind: &str) -> LiveEvent {
    loop {
        let e = next_event(s).await;
        if e.event == kind {
            return live(&e);
        }
    }
}

pub async fn telemetry_len(srv: &TestServer) -> u64 {
    srv.state().bus.stream_len(TELEMETRY_STREAM).await.unwrap()
}

/// Waits until the telemetry stream holds `n` entries (the gateway appends after the
/// frame arrives, so the test waits for delivery, not for time).
pub async fn wait_telemetry_len(srv: &TestServer, n: u64) {
    let deadline = tokio::time::Instant::now() + DELIVERY;
    while telemetry_len(srv).await < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "telemetry never stored"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(telemetry_len(srv).await, n);
}

pub async fn rejected_audit(srv: &TestServer, device_id: &str) -> Vec<Value> {
    srv.state()
        .store
        .audit_after(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| {
            a.event.action == tether_server::gateway::TELEMETRY_REJECTED
                && a.event.target.as_deref() == Some(device_id)
        })
        .map(|a| a.event.detail)
        .collect()
}

/// Publishes an event only `owner` may see: a marker that everything before it on the
/// live stream was already fanned out.
pub async fn marker(srv: &TestServer, owner: &str) {
    let e = LiveEvent {
        kind: LiveKind::CommandStatus,
        device_id: "dev_marker".into(),
        owner_id: Some(owner.into()),
        at: srv.clock.now(),
        data: json!({"marker": true}),
    };
    publish_live(srv.state(), &e).await.unwrap();
}

pub async fn user_id(api: &Api) -> String {
    let (_, me): (u16, Value) = api.get("/api/me").await.unwrap();
    me["id"].as_str().unwrap().to_owned()
}

/// Polls `check` until it returns `Some` (work another task does after a delivery).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DELIVERY;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {DELIVERY:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
