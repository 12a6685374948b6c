//! Helpers for the command tests: submitting commands, reading the gateway's frames with
//! their headers, the agent's answers, and looking at the store, the audit trail and the
//! API's view of a command.

use futures_util::StreamExt;
use serde_json::{Value, json};
use tether_client::{Api, ClientError, WsStream};
use tether_proto::envelope::Header;
use tether_proto::messages::command::{
    AckStatus, CommandAck, CommandDelivery, CommandResult, CommandState, CommandStatus,
    ResultStatus,
};
use tether_proto::{ErrorCode, KeyId, Message, MessageId, Payload, StaticKeys, TraceId, Verifier};
use tether_store::Role;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::live::{DELIVERY, eventually};
use crate::support::{FakeAgent, TestServer, rand16};

/// A fresh `message_id`.
pub(crate) fn new_id() -> String {
    MessageId::from_random_bytes(rand16()).to_string()
}

/// A fresh trace id.
pub(crate) fn new_trace() -> String {
    TraceId::from_random_bytes(rand16()).to_string()
}

/// A `POST /api/command` body.
pub(crate) fn request(device_id: &str, method: &str, params: Value, ttl_seconds: u32) -> Value {
    json!({
        "device_id": device_id,
        "method": method,
        "params": params,
        "ttl_seconds": ttl_seconds,
        "message_id": new_id(),
        "trace_id": new_trace(),
    })
}

/// Submits a command that must be accepted as new (202); returns the answer.
pub(crate) async fn submit(api: &Api, body: &Value) -> Value {
    let (s, v): (u16, Value) = api.post("/api/command", body).await.unwrap();
    assert_eq!(s, 202, "a new command is 202: {v}");
    assert_eq!(v["status"], "accepted");
    assert_eq!(v["state"], "queued");
    assert_eq!(v["command_id"], body["message_id"]);
    v
}

/// Submits a `lock_screen` (TTL 3600 s) and returns its id.
pub(crate) async fn lock_screen(api: &Api, device_id: &str) -> String {
    let v = submit(api, &request(device_id, "lock_screen", json!({}), 3600)).await;
    v["command_id"].as_str().unwrap().to_owned()
}

/// The HTTP status and error code of a refused request.
pub(crate) fn refusal(e: &ClientError) -> (u16, ErrorCode) {
    match e {
        ClientError::Api { status, body } => (*status, body.code),
        other => panic!("expected an API error, got {other}"),
    }
}

/// Posts and expects a refusal: its HTTP status and code.
pub(crate) async fn post_refused(api: &Api, path: &str, body: &Value) -> (u16, ErrorCode) {
    let e = api
        .post::<_, Value>(path, body)
        .await
        .expect_err("the request is refused");
    refusal(&e)
}

/// `GET /api/command/{id}`.
pub(crate) async fn command(api: &Api, id: &str) -> Value {
    let (s, v): (u16, Value) = api.get(&format!("/api/command/{id}")).await.unwrap();
    assert_eq!(s, 200);
    v
}

/// Waits until the API shows the command in `state` (another task moves it).
pub(crate) async fn wait_state(api: &Api, id: &str, state: &str) -> Value {
    eventually(&format!("command {id} {state}"), || async {
        let v = command(api, id).await;
        (v["state"] == state).then_some(v)
    })
    .await
}

/// The `(from, to)` of every transition the API shows, oldest first.
pub(crate) fn transitions(v: &Value) -> Vec<(Option<String>, String)> {
    v["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["from"].as_str().map(str::to_owned),
                t["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The next frame from the gateway, verified with the gateway's key: header and body.
pub(crate) async fn next_frame(ws: &mut WsStream, srv: &TestServer) -> (Header, Payload) {
    let state = srv.state();
    let mut keys = StaticKeys::new();
    keys.insert(
        KeyId::parse(&state.gateway_signer.kid().to_string()).unwrap(),
        state.gateway_signer.verifying_key(),
    );
    loop {
        let m = tokio::time::timeout(DELIVERY, ws.next())
            .await
            .expect("a frame from the gateway in time")
            .expect("the socket is open")
            .expect("a frame");
        match m {
            WsMessage::Text(t) => {
                let v = Verifier::new(&keys, &*srv.clock)
                    .verify(t.as_bytes())
                    .expect("the gateway's frame verifies");
                return (v.header, v.payload);
            }
            WsMessage::Close(c) => panic!("the gateway closed the session: {c:?}"),
            _ => {}
        }
    }
}

/// The next frame, which must be a `command_delivery` (an `alert_push` before it is
/// skipped: the gateway pushes alerts whenever they are raised, e.g. the security alert
/// of an owner-signature refusal; so is a `policy_update`, sent after `connected` and
/// whenever a policy is saved).
pub(crate) async fn next_delivery(
    ws: &mut WsStream,
    srv: &TestServer,
) -> (Header, CommandDelivery) {
    loop {
        match next_frame(ws, srv).await {
            (h, Payload::CommandDelivery(d)) => return (h, d),
            (_, Payload::AlertPush(_) | Payload::PolicyUpdate(_)) => {}
            (_, other) => panic!(
                "expected a command_delivery, got {:?}: {other:?}",
                other.message_type()
            ),
        }
    }
}

/// The next frame, which must be the delivery of `id` at `attempt`.
pub(crate) async fn expect_delivery(
    ws: &mut WsStream,
    srv: &TestServer,
    id: &str,
    attempt: u32,
) -> CommandDelivery {
    let (_, d) = next_delivery(ws, srv).await;
    assert_eq!(
        d.command_id.to_string(),
        id,
        "delivery of the expected command"
    );
    assert_eq!(d.attempt, attempt, "delivery attempt");
    d
}

fn mid(id: &str) -> MessageId {
    MessageId::parse(id).unwrap()
}

pub(crate) fn ack(id: &str) -> CommandAck {
    CommandAck {
        command_id: mid(id),
        status: AckStatus::Received,
        error: None,
    }
}

pub(crate) fn rejected(id: &str, code: ErrorCode) -> CommandAck {
    CommandAck {
        command_id: mid(id),
        status: AckStatus::Rejected,
        error: Some(code),
    }
}

pub(crate) fn executing(id: &str) -> CommandStatus {
    CommandStatus {
        command_id: mid(id),
        state: CommandState::Executing,
        kernel_exec_id: Some("kx_1".into()),
    }
}

pub(crate) fn result_ok(id: &str) -> CommandResult {
    CommandResult {
        command_id: mid(id),
        status: ResultStatus::Ok,
        error: None,
        notes: "screen locked".into(),
        result: json!({"locked": true}),
        artifact: None,
        kernel_exec_id: Some("kx_1".into()),
        duration_ms: 84,
    }
}

pub(crate) fn result_failed(id: &str, code: ErrorCode) -> CommandResult {
    CommandResult {
        status: ResultStatus::Failed,
        error: Some(code),
        notes: "it did not work".into(),
        result: json!({}),
        ..result_ok(id)
    }
}

/// A frame the agent would send, signed with its key (for `expect_refused`).
pub(crate) fn frame<T: Message>(agent: &mut FakeAgent, srv: &TestServer, body: &T) -> Vec<u8> {
    let st = agent.stamp(tether_proto::Clock::now(&*srv.clock));
    agent.signer.seal(st, body).unwrap()
}

/// Acks, reports executing and posts an ok result, waiting for each to be recorded.
pub(crate) async fn complete(
    agent: &mut FakeAgent,
    ws: &mut WsStream,
    srv: &TestServer,
    api: &Api,
    id: &str,
) {
    agent.send(ws, srv, &ack(id)).await;
    wait_state(api, id, "ack_received").await;
    agent.send(ws, srv, &executing(id)).await;
    wait_state(api, id, "executing").await;
    agent.send(ws, srv, &result_ok(id)).await;
    wait_state(api, id, "completed").await;
}

/// Audit events with this action (and target, when given): their details.
pub(crate) async fn audit(srv: &TestServer, action: &str, target: Option<&str>) -> Vec<Value> {
    srv.state()
        .store
        .audit_after(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| {
            a.event.action == action && target.is_none_or(|t| a.event.target.as_deref() == Some(t))
        })
        .map(|a| a.event.detail)
        .collect()
}

/// A user with a role other than student, logged in.
pub(crate) async fn staff(srv: &TestServer, email: &str, role: Role) -> Api {
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
