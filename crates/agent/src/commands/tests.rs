//! `Commands::on_delivery` with a real ledger in a temp state dir and no helper: which
//! deliveries are refused (and then neither stored nor run), and what a good one and its
//! redelivery get.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tether_proto::messages::command::{
    AckStatus, CommandDelivery, Method, Priority, ResultStatus, Sensitivity,
};
use tether_proto::{ErrorCode, ManualClock, MessageId, TraceId, UnixMillis};
use tokio_util::sync::CancellationToken;

use super::*;

const DEVICE: &str = "dev_0123456789abcdef0123456789abcdef";
const NOW: UnixMillis = UnixMillis(1_800_000_000_000);

struct Fixture {
    _dir: tempfile::TempDir,
    commands: Commands,
    shutdown: CancellationToken,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(&dir.path().join("state")).unwrap();
    let identity = AgentIdentity::generate(&mut rand_core::OsRng).unwrap();
    let shutdown = CancellationToken::new();
    let commands = Commands::start(
        &state,
        &identity,
        DEVICE,
        None,
        None,
        Arc::new(ManualClock::new(NOW)),
        shutdown.child_token(),
    )
    .await
    .unwrap();
    Fixture {
        _dir: dir,
        commands,
        shutdown,
    }
}

fn delivery(device_id: &str, expires_at: UnixMillis, params: serde_json::Value) -> CommandDelivery {
    CommandDelivery {
        command_id: MessageId::from_random_bytes(crate::random::bytes::<16>()),
        device_id: device_id.to_owned(),
        method: Method::LockScreen,
        params,
        priority: Priority::Normal,
        sensitivity: Sensitivity::Normal,
        origin_user_id: "usr_0123456789abcdef0123456789abcdef".into(),
        policy_version: 1,
        expires_at,
        attempt: 1,
        simulate: None,
    }
}

fn trace() -> TraceId {
    TraceId::from_random_bytes(crate::random::bytes::<16>())
}

fn later() -> UnixMillis {
    NOW.saturating_add(Duration::from_secs(120))
}

/// The only reply is a `rejected` ack with `code`; the command is not in the ledger and
/// the executor produces nothing for it.
async fn assert_refused(f: &mut Fixture, d: &CommandDelivery, code: ErrorCode) {
    let t = trace();
    let out = f.commands.on_delivery(d, &t).await;
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].trace_id, t);
    match &out[0].reply {
        Reply::Ack(a) => {
            assert_eq!(a.command_id, d.command_id);
            assert_eq!(a.status, AckStatus::Rejected);
            assert_eq!(a.error, Some(code));
        }
        other => panic!("expected a rejected ack, got {other:?}"),
    }
    let id = d.command_id.to_string();
    assert!(f.commands.ledger.get(&id).await.unwrap().is_none());
    assert!(f.commands.ledger.unfinished().await.unwrap().is_empty());
    assert_no_reply(f).await;
}

async fn assert_no_reply(f: &mut Fixture) {
    if let Ok(r) = tokio::time::timeout(Duration::from_millis(300), f.commands.next_reply()).await {
        panic!("the executor produced {r:?}");
    }
}

#[tokio::test]
async fn another_devices_command_is_refused_forbidden_and_neither_stored_nor_run() {
    let mut f = fixture().await;
    let d = delivery("dev_ffffffffffffffffffffffffffffffff", later(), json!({}));
    assert_refused(&mut f, &d, ErrorCode::Forbidden).await;
    // Replayed again, it is refused again (the refusal did not make it "known").
    assert_refused(&mut f, &d, ErrorCode::Forbidden).await;
}

#[tokio::test]
async fn an_expired_command_is_refused_2004_and_neither_stored_nor_run() {
    let mut f = fixture().await;
    assert_refused(
        &mut f,
        &delivery(DEVICE, NOW, json!({})),
        ErrorCode::TtlExpired,
    )
    .await;
    assert_refused(
        &mut f,
        &delivery(DEVICE, UnixMillis(NOW.0 - 1), json!({})),
        ErrorCode::TtlExpired,
    )
    .await;
}

#[tokio::test]
async fn invalid_params_are_refused_6004_and_neither_stored_nor_run() {
    let mut f = fixture().await;
    for params in [json!({"delay_s": 5}), json!([]), json!("now")] {
        assert_refused(
            &mut f,
            &delivery(DEVICE, later(), params),
            ErrorCode::InvalidParams,
        )
        .await;
    }
}

#[tokio::test]
async fn a_good_command_is_stored_acked_run_once_and_a_redelivery_gets_the_stored_result() {
    let mut f = fixture().await;
    let d = delivery(DEVICE, later(), json!({}));
    let id = d.command_id.to_string();
    let t = trace();
    let out = f.commands.on_delivery(&d, &t).await;
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(
        matches!(&out[0].reply, Reply::Ack(a) if a.status == AckStatus::Received && a.error.is_none()),
        "{out:?}"
    );
    // Run (without a helper: it fails with 6002), stored, sent.
    let r = tokio::time::timeout(Duration::from_secs(10), f.commands.next_reply())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.trace_id, t);
    let Reply::Result(result) = r.reply else {
        panic!("expected the result, got {r:?}");
    };
    assert_eq!(result.command_id, d.command_id);
    assert_eq!(result.status, ResultStatus::Failed);
    assert_eq!(result.error, Some(ErrorCode::HelperUnavailable));
    let entry = f.commands.ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(entry.state, LocalState::Done);
    assert_eq!(entry.tries, 1);

    // Redelivered (attempt 2): acked again, the stored result resent, not run again.
    let mut again = d.clone();
    again.attempt = 2;
    let out = f.commands.on_delivery(&again, &t).await;
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(
        matches!(&out[0].reply, Reply::Ack(a) if a.status == AckStatus::Received),
        "{out:?}"
    );
    match &out[1].reply {
        Reply::Result(r) => assert_eq!(**r, *result),
        other => panic!("expected the stored result, got {other:?}"),
    }
    assert_no_reply(&mut f).await;
    assert_eq!(f.commands.ledger.get(&id).await.unwrap().unwrap().tries, 1);
}
