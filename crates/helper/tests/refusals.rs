//! Requests that must be refused: each gets a signed `denied` with its code, and nothing
//! is executed.

// Unix sockets; the Windows named pipe comes with its own tests.
#![cfg(unix)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Options, TestHelper, lock_screen, new_key, request, seal_with};
use serde_json::json;
use tether_helper::HelperError;
use tether_helper::client::HelperClient;
use tether_proto::helper::{HelperResponse, HelperStatus, Opcode};
use tether_proto::messages::command::Simulation;
use tether_proto::{
    Clock, EnvelopeSigner, ErrorCode, KeyId, MessageType, Stamp, SystemClock, TraceId, UnixMillis,
};

fn assert_denied(resp: &HelperResponse, code: ErrorCode) {
    assert_eq!(resp.status, HelperStatus::Denied, "{resp:?}");
    assert_eq!(resp.error, Some(code), "{resp:?}");
    assert_eq!(resp.kernel_exec_id, None, "nothing was executed: {resp:?}");
}

#[tokio::test]
async fn a_replayed_agent_sequence_is_refused_2006_and_not_executed() {
    let h = TestHelper::start().await;
    let mut raw = h.raw().await;
    let first = lock_screen(5);
    let frame = h.seal(&first);
    raw.send_line(&frame).await;
    assert_eq!(raw.final_response().await.status, HelperStatus::Ok);

    // The very same frame again.
    raw.send_line(&frame).await;
    let (_, r) = raw.response().await.unwrap();
    assert_denied(&r, ErrorCode::SequenceReplay);
    assert_eq!(r.request_id, first.request_id);
    // A new request (new command) with a sequence at or below the mark.
    for seq in [5, 4, 0] {
        raw.send_line(&h.seal(&lock_screen(seq))).await;
        let (_, r) = raw.response().await.unwrap();
        assert_denied(&r, ErrorCode::SequenceReplay);
    }
    assert_eq!(h.records().len(), 1);
    // The connection goes on: a higher sequence is served.
    raw.send_line(&h.seal(&lock_screen(6))).await;
    assert_eq!(raw.final_response().await.status, HelperStatus::Ok);
    assert_eq!(h.records().len(), 2);
}

#[tokio::test]
async fn a_request_signed_by_another_key_is_refused() {
    let h = TestHelper::start().await;
    let mut raw = h.raw().await;
    let other = new_key();
    // Its own kid: not a key the helper knows.
    raw.send_line(&seal_with(
        &EnvelopeSigner::new(other.clone()),
        &lock_screen(1),
        SystemClock.now(),
        60,
    ))
    .await;
    let (_, r) = raw.response().await.unwrap();
    assert_denied(&r, ErrorCode::UnknownKid);
    // The agent's kid, another key's signature.
    let agent_kid = KeyId::for_ed25519(&h.agent_key.verifying_key().to_bytes());
    raw.send_line(&seal_with(
        &EnvelopeSigner::with_kid(other, agent_kid),
        &lock_screen(2),
        SystemClock.now(),
        60,
    ))
    .await;
    let (_, r) = raw.response().await.unwrap();
    assert_denied(&r, ErrorCode::SignatureInvalid);
    assert!(h.records().is_empty());
    // Neither consumed a sequence number.
    raw.send_line(&h.seal(&lock_screen(1))).await;
    assert_eq!(raw.final_response().await.status, HelperStatus::Ok);
}

#[tokio::test]
async fn expired_and_future_envelopes_are_refused() {
    let h = TestHelper::start().await;
    let mut raw = h.raw().await;
    let signer = EnvelopeSigner::new(h.agent_key.clone());
    let now = SystemClock.now();
    let req = lock_screen(1);
    raw.send_line(&seal_with(
        &signer,
        &req,
        now.saturating_sub(Duration::from_secs(61)),
        60,
    ))
    .await;
    let (_, r) = raw.response().await.unwrap();
    assert_denied(&r, ErrorCode::TtlExpired);
    assert_eq!(r.request_id, req.request_id);
    raw.send_line(&seal_with(
        &signer,
        &lock_screen(2),
        now.saturating_add(Duration::from_secs(120)),
        60,
    ))
    .await;
    let (_, r) = raw.response().await.unwrap();
    assert_denied(&r, ErrorCode::NotYetValid);
    assert!(h.records().is_empty());
}

#[tokio::test]
async fn a_caller_running_another_executable_is_refused_6006_and_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let not_the_agent = dir.path().join("tether-agent");
    std::fs::write(&not_the_agent, b"#!/bin/sh\n").unwrap();
    let h = TestHelper::start_with(Options {
        agent_exe: Some(not_the_agent),
        ..Default::default()
    })
    .await;
    let mut raw = h.raw().await;
    let req = lock_screen(1);
    raw.send_line(&h.seal(&req)).await;
    let (_, r) = raw.response().await.unwrap();
    assert_denied(&r, ErrorCode::PeerNotAuthorized);
    assert_eq!(r.request_id, req.request_id);
    assert!(
        r.result["message"]
            .as_str()
            .unwrap()
            .contains("not the agent"),
        "{r:?}"
    );
    assert!(raw.is_closed().await, "the connection is closed after 6006");
    assert!(h.records().is_empty());

    // Through the client: the same verdict, as an answer.
    let mut c = h.client().await;
    let r = c
        .call(&lock_screen(2), 60, |_| panic!("nothing executes"))
        .await
        .unwrap();
    assert_denied(&r, ErrorCode::PeerNotAuthorized);
    assert!(h.records().is_empty());
}

#[tokio::test]
async fn a_caller_whose_uid_is_not_allowed_is_refused_6006() {
    let dir = tempfile::tempdir().unwrap();
    let me = common::own_uid(dir.path());
    let h = TestHelper::start_with(Options {
        allow_uids: Some(vec![me.wrapping_add(4242)]),
        ..Default::default()
    })
    .await;
    let mut c = h.client().await;
    let r = c.call(&lock_screen(1), 60, |_| {}).await.unwrap();
    assert_denied(&r, ErrorCode::PeerNotAuthorized);
    assert!(
        r.result["message"].as_str().unwrap().contains("uid"),
        "{r:?}"
    );
    assert!(h.records().is_empty());
}

#[tokio::test]
async fn an_opcode_the_executor_does_not_run_is_refused_6003() {
    let h = TestHelper::start().await;
    let mut c = h.client().await;
    let r = c
        .call(
            &request(1, Opcode::MemoryDump, json!({"max_bytes": 1_048_576})),
            60,
            |_| {},
        )
        .await
        .unwrap();
    assert_denied(&r, ErrorCode::OpcodeNotAllowed);
    let r = c
        .call(
            &request(2, Opcode::CommitUpdate, json!({"sandbox_id": "sb1"})),
            60,
            |_| {},
        )
        .await
        .unwrap();
    assert_denied(&r, ErrorCode::OpcodeNotAllowed);
    assert!(h.records().is_empty());
}

#[tokio::test]
async fn invalid_params_are_refused_6004_after_the_sequence_is_taken() {
    let h = TestHelper::start().await;
    let mut c = h.client().await;
    for (seq, opcode, params) in [
        (1, Opcode::ExecReboot, json!({"delay_s": 99_999})),
        (2, Opcode::ExecLockScreen, json!({"unexpected": true})),
        (3, Opcode::CollectLogs, json!({"max_bytes": 10})),
        (
            4,
            Opcode::CollectLogs,
            json!({"max_bytes": 4096, "sources": ["kernel"]}),
        ),
    ] {
        let r = c
            .call(&request(seq, opcode, params.clone()), 60, |_| {})
            .await
            .unwrap();
        assert_denied(&r, ErrorCode::InvalidParams);
        assert!(
            r.result["message"]
                .as_str()
                .unwrap()
                .contains("body.params"),
            "{params}: {r:?}"
        );
    }
    assert!(h.records().is_empty());
    // The refused request still used its sequence number.
    let r = c.call(&lock_screen(4), 60, |_| {}).await.unwrap();
    assert_denied(&r, ErrorCode::SequenceReplay);
}

#[tokio::test]
async fn an_oversized_line_is_refused_1002_and_closed_and_others_are_still_served() {
    let h = TestHelper::start().await;
    let mut raw = h.raw().await;
    // 1 MiB without a line feed: refused at 32 KiB, not buffered.
    let big = vec![b'x'; 1 << 20];
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = raw.writer.write_all(&big).await;
        raw
    });
    let mut raw = writer.await.unwrap();
    let (_, r) = raw.response().await.unwrap();
    assert_denied(&r, ErrorCode::FrameTooLarge);
    assert_eq!(r.request_id.as_str(), tether_helper::NIL_REQUEST_ID);
    assert!(raw.is_closed().await);

    // A line of exactly one byte over the limit, properly terminated.
    let mut raw = h.raw().await;
    raw.send_line(&vec![
        b'{';
        MessageType::HelperRequest.max_frame_bytes() + 1
    ])
    .await;
    let (_, r) = raw.response().await.unwrap();
    assert_denied(&r, ErrorCode::FrameTooLarge);
    assert!(raw.is_closed().await);

    let mut c = h.client().await;
    assert_eq!(
        c.call(&lock_screen(1), 60, |_| {}).await.unwrap().status,
        HelperStatus::Ok
    );
}

#[tokio::test]
async fn garbage_and_non_canonical_lines_are_refused_and_the_connection_goes_on() {
    let h = TestHelper::start().await;
    let mut raw = h.raw().await;
    for (line, code) in [
        (b"hello".to_vec(), ErrorCode::MalformedFrame),
        (Vec::new(), ErrorCode::MalformedFrame),
        (vec![0xff, 0xfe, 0x00], ErrorCode::MalformedFrame),
        (b"[1,2,3]".to_vec(), ErrorCode::MalformedFrame),
        (b"{\"v\":1}".to_vec(), ErrorCode::MalformedFrame),
    ] {
        raw.send_line(&line).await;
        let (_, r) = raw.response().await.unwrap();
        assert_denied(&r, code);
        assert_eq!(r.request_id.as_str(), tether_helper::NIL_REQUEST_ID);
    }
    // A correctly signed frame with a space added: not its canonical form.
    let req = lock_screen(1);
    let frame = String::from_utf8(h.seal(&req))
        .unwrap()
        .replacen(":", ": ", 1);
    raw.send_line(frame.as_bytes()).await;
    let (_, r) = raw.response().await.unwrap();
    assert_denied(&r, ErrorCode::SignatureInvalid);
    assert_eq!(r.request_id, req.request_id, "the answer names the request");
    assert!(h.records().is_empty());

    raw.send_line(&h.seal(&lock_screen(1))).await;
    assert_eq!(raw.final_response().await.status, HelperStatus::Ok);
}

#[tokio::test]
async fn a_signed_frame_of_another_type_or_with_a_mismatched_seq_is_refused() {
    let h = TestHelper::start().await;
    let mut raw = h.raw().await;
    let signer = EnvelopeSigner::new(h.agent_key.clone());
    let stamp = |seq| Stamp {
        iat: SystemClock.now(),
        ttl: 60,
        seq,
        message_id: common::new_id(),
        trace_id: TraceId::from_random_bytes(common::random_bytes()),
    };
    let resp = HelperResponse {
        request_id: common::new_id(),
        status: HelperStatus::Ok,
        kernel_exec_id: None,
        error: None,
        result: json!({}),
    };
    raw.send_line(&signer.seal(stamp(1), &resp).unwrap()).await;
    let (_, r) = raw.response().await.unwrap();
    assert_denied(&r, ErrorCode::UnexpectedMessage);

    let req = lock_screen(7);
    raw.send_line(&signer.seal(stamp(8), &req).unwrap()).await;
    let (_, r) = raw.response().await.unwrap();
    assert_denied(&r, ErrorCode::InvalidField);
    assert!(h.records().is_empty());
}

#[tokio::test]
async fn ten_refusals_in_a_row_close_the_connection() {
    let h = TestHelper::start().await;
    let mut raw = h.raw().await;
    for _ in 0..10 {
        raw.send_line(b"nope").await;
        let (_, r) = raw.response().await.unwrap();
        assert_denied(&r, ErrorCode::MalformedFrame);
    }
    assert!(raw.is_closed().await);
}

#[tokio::test]
async fn the_system_executor_denies_simulate_and_unimplemented_opcodes_6003() {
    let h = TestHelper::start_with(Options {
        system_executor: true,
        ..Default::default()
    })
    .await;
    let mut c = h.client().await;
    for (seq, sim) in [
        (1, Simulation::Success),
        (2, Simulation::KernelFailure),
        (3, Simulation::Slow),
    ] {
        let mut req = lock_screen(seq);
        req.simulate = Some(sim);
        let r = c
            .call(&req, 60, |_| panic!("nothing executes"))
            .await
            .unwrap();
        assert_denied(&r, ErrorCode::OpcodeNotAllowed);
        assert!(
            r.result["message"].as_str().unwrap().contains("simulate"),
            "{r:?}"
        );
    }
    let r = c
        .call(
            &request(4, Opcode::MemoryDump, json!({"max_bytes": 1_048_576})),
            60,
            |_| {},
        )
        .await
        .unwrap();
    assert_denied(&r, ErrorCode::OpcodeNotAllowed);
    // Nothing was journaled as started.
    let journal = std::fs::read_to_string(h.state_dir.join("executions.jsonl")).unwrap();
    assert!(!journal.contains("\"started\""), "{journal}");
}

#[tokio::test]
async fn the_client_refuses_responses_not_signed_by_the_helper_key_it_was_given() {
    let h = TestHelper::start().await;
    let wrong = new_key().verifying_key().to_bytes();
    let mut c = HelperClient::connect(
        &h.socket,
        EnvelopeSigner::new(h.agent_key.clone()),
        wrong,
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let e = c.call(&lock_screen(1), 60, |_| {}).await.unwrap_err();
    assert!(matches!(e, HelperError::BadResponse(_)), "{e:?}");
    assert_eq!(e.code(), ErrorCode::UnknownKid);
    // The connection is not used after an untrusted answer.
    let e = c.call(&lock_screen(2), 60, |_| {}).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::HelperUnavailable);
}

#[tokio::test]
async fn the_client_reports_an_absent_helper_as_6002() {
    let dir = tempfile::tempdir().unwrap();
    let e = HelperClient::connect(
        &dir.path().join("nobody.sock"),
        EnvelopeSigner::new(new_key()),
        new_key().verifying_key().to_bytes(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::HelperUnavailable);
}

#[tokio::test]
async fn a_client_whose_clock_is_far_behind_refuses_the_answers_2005() {
    // The client verifies responses with its own clock: one far behind the helper's sees
    // them as issued in the future and refuses them (2005), rather than trusting them.
    let h = TestHelper::start().await;
    let behind = tether_proto::ManualClock::new(UnixMillis(SystemClock.now().0 - 600_000));
    let mut c = HelperClient::connect(
        &h.socket,
        EnvelopeSigner::new(h.agent_key.clone()),
        h.helper_pub,
        Arc::new(behind),
    )
    .await
    .unwrap();
    let e = c.call(&lock_screen(1), 60, |_| {}).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotYetValid, "{e:?}");
}
