//! `Commands::on_delivery` with a real ledger in a temp state dir and no helper: which
//! deliveries are refused (and then neither stored nor run) — another device's, expired,
//! bad parameters, and every one not signed by a pinned owner key — and what a good one
//! and its redelivery get.
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

use ed25519_dalek::SigningKey;
use tether_proto::owner_sig::sign_ed25519;

use super::*;

const DEVICE: &str = "dev_0123456789abcdef0123456789abcdef";
const NOW: UnixMillis = UnixMillis(1_800_000_000_000);

/// The owner's key pinned in the fixture (a fixed test seed).
fn owner_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn pinned(key: &SigningKey) -> OwnerKey {
    let pk = key.verifying_key().to_bytes();
    OwnerKey {
        kid: tether_proto::KeyId::for_ed25519(&pk).to_string(),
        kind: "ed25519".into(),
        public_key: tether_proto::validate::b64url_encode(&pk),
        role: Default::default(),
    }
}

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
        OwnerTrust::new(&[pinned(&owner_key())], "https://tether.lab.example"),
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
    let mut d = CommandDelivery {
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
        not_after: None,
        user_sig: None,
        approvals_required: None,
        approvals: Vec::new(),
    };
    sign(&mut d, &owner_key());
    d
}

/// Signs `d` as its owner would (with `key`), until its `expires_at`.
fn sign(d: &mut CommandDelivery, key: &SigningKey) {
    let not_after = d.expires_at;
    if let Ok(statement) =
        command_statement(&d.command_id, &d.device_id, d.method, &d.params, not_after)
    {
        d.not_after = Some(not_after);
        d.user_sig = Some(sign_ed25519(key, &statement));
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
    assert_refused(
        &mut f,
        &delivery(DEVICE, later(), json!({"delay_s": 5})),
        ErrorCode::InvalidParams,
    )
    .await;
    // Parameters that are not an object cannot even be signed.
    for params in [json!([]), json!("now")] {
        assert_refused(
            &mut f,
            &delivery(DEVICE, later(), params),
            ErrorCode::OwnerSignatureInvalid,
        )
        .await;
    }
}

#[tokio::test]
async fn a_command_not_signed_by_a_pinned_owner_key_is_refused_2011_and_neither_stored_nor_run() {
    let mut f = fixture().await;
    // Signed by the server alone.
    let mut d = delivery(DEVICE, later(), json!({}));
    d.user_sig = None;
    d.not_after = None;
    assert_refused(&mut f, &d, ErrorCode::OwnerSignatureInvalid).await;
    // Signed by a key this PC does not pin.
    let mut d = delivery(DEVICE, later(), json!({}));
    sign(&mut d, &SigningKey::from_bytes(&[8u8; 32]));
    assert_refused(&mut f, &d, ErrorCode::OwnerSignatureInvalid).await;
    // Parameters changed after the owner signed.
    let mut d = delivery(DEVICE, later(), json!({}));
    d.method = Method::Reboot;
    d.params = json!({"delay_s": 60});
    assert_refused(&mut f, &d, ErrorCode::OwnerSignatureInvalid).await;
    // The method changed.
    let mut d = delivery(DEVICE, later(), json!({}));
    d.method = Method::Logoff;
    assert_refused(&mut f, &d, ErrorCode::OwnerSignatureInvalid).await;
    // The signature of a command for another device, readdressed to this one.
    let mut d = delivery("dev_ffffffffffffffffffffffffffffffff", later(), json!({}));
    d.device_id = DEVICE.into();
    assert_refused(&mut f, &d, ErrorCode::OwnerSignatureInvalid).await;
    // The signature of another command, under a new command id.
    let mut d = delivery(DEVICE, later(), json!({}));
    d.command_id = MessageId::from_random_bytes(crate::random::bytes::<16>());
    assert_refused(&mut f, &d, ErrorCode::OwnerSignatureInvalid).await;
    // The deadline moved after signing.
    let mut d = delivery(DEVICE, later(), json!({}));
    d.not_after = d
        .not_after
        .map(|n| n.saturating_add(Duration::from_secs(60)));
    assert_refused(&mut f, &d, ErrorCode::OwnerSignatureInvalid).await;
    // A deadline the owner signed that has passed (the server's own one has not).
    let mut d = delivery(DEVICE, NOW, json!({}));
    d.expires_at = later();
    assert_refused(&mut f, &d, ErrorCode::TtlExpired).await;
}

#[tokio::test]
async fn approvals_must_come_from_as_many_other_pinned_keys_as_required() {
    let approver = SigningKey::from_bytes(&[9u8; 32]);
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(&dir.path().join("state")).unwrap();
    let identity = AgentIdentity::generate(&mut rand_core::OsRng).unwrap();
    let shutdown = CancellationToken::new();
    let commands = Commands::start(
        &state,
        &identity,
        DEVICE,
        OwnerTrust::new(
            &[pinned(&owner_key()), pinned(&approver)],
            "https://tether.lab.example",
        ),
        None,
        None,
        Arc::new(ManualClock::new(NOW)),
        shutdown.child_token(),
    )
    .await
    .unwrap();
    let mut f = Fixture {
        _dir: dir,
        commands,
        shutdown,
    };
    let approval = |d: &CommandDelivery, key: &SigningKey| {
        let s = command_statement(
            &d.command_id,
            &d.device_id,
            d.method,
            &d.params,
            d.not_after.unwrap(),
        )
        .unwrap();
        sign_ed25519(key, &s)
    };
    // None, the signer's own, or an unpinned key: not enough.
    let mut d = delivery(DEVICE, later(), json!({}));
    d.approvals_required = Some(1);
    assert_refused(&mut f, &d, ErrorCode::OwnerSignatureInvalid).await;
    d.approvals = vec![approval(&d, &owner_key())];
    assert_refused(&mut f, &d, ErrorCode::OwnerSignatureInvalid).await;
    d.approvals = vec![approval(&d, &SigningKey::from_bytes(&[10u8; 32]))];
    assert_refused(&mut f, &d, ErrorCode::OwnerSignatureInvalid).await;
    // Two required, one approver twice: not enough.
    d.approvals_required = Some(2);
    d.approvals = vec![approval(&d, &approver), approval(&d, &approver)];
    assert_refused(&mut f, &d, ErrorCode::OwnerSignatureInvalid).await;
    // One required, a distinct pinned approver: accepted.
    d.approvals_required = Some(1);
    d.approvals = vec![approval(&d, &approver)];
    let out = f.commands.on_delivery(&d, &trace()).await;
    assert!(
        matches!(&out[0].reply, Reply::Ack(a) if a.status == AckStatus::Received),
        "{out:?}"
    );
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
