//! A command asked for more than once is executed at most once (twice after a kernel
//! failure), across connections and restarts.

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

use common::{TestHelper, lock_screen, new_id, request};
use serde_json::json;
use tether_proto::ErrorCode;
use tether_proto::helper::{HelperRequest, HelperStatus, Opcode};
use tether_proto::messages::command::Simulation;

/// The same command under a new request id and sequence number.
fn again(req: &HelperRequest, seq: u64) -> HelperRequest {
    HelperRequest {
        request_id: new_id(),
        agent_sequence: seq,
        ..req.clone()
    }
}

#[tokio::test]
async fn the_same_command_twice_is_executed_once_and_answered_as_a_duplicate() {
    let h = TestHelper::start().await;
    let mut c = h.client().await;
    let first = request(1, Opcode::ExecShutdown, json!({"delay_s": 60}));
    let r1 = c.call(&first, 60, |_| {}).await.unwrap();
    assert_eq!(r1.status, HelperStatus::Ok);
    assert_eq!(r1.result.get("duplicate"), None);

    let second = again(&first, 2);
    let mut executing = 0;
    let r2 = c.call(&second, 60, |_| executing += 1).await.unwrap();
    assert_eq!(executing, 0, "a finished command is not executing again");
    assert_eq!(r2.status, HelperStatus::Ok);
    assert_eq!(r2.request_id, second.request_id);
    assert_eq!(r2.kernel_exec_id, r1.kernel_exec_id);
    assert_eq!(r2.result["duplicate"], true);
    assert_eq!(r2.result["scheduled_in_s"], 60);
    assert_eq!(h.records().len(), 1, "executed once");
}

#[tokio::test]
async fn the_same_command_with_other_content_is_refused_5008() {
    let h = TestHelper::start().await;
    let mut c = h.client().await;
    let first = request(1, Opcode::ExecReboot, json!({"delay_s": 60}));
    assert_eq!(
        c.call(&first, 60, |_| {}).await.unwrap().status,
        HelperStatus::Ok
    );
    let mut other = again(&first, 2);
    other.params = json!({"delay_s": 0});
    let r = c.call(&other, 60, |_| {}).await.unwrap();
    assert_eq!(r.status, HelperStatus::Denied);
    assert_eq!(r.error, Some(ErrorCode::DuplicateMessage));
    let mut other = again(&first, 3);
    other.opcode = Opcode::ExecShutdown;
    let r = c.call(&other, 60, |_| {}).await.unwrap();
    assert_eq!(r.error, Some(ErrorCode::DuplicateMessage));
    assert_eq!(h.records().len(), 1);
}

#[tokio::test]
async fn a_kernel_failure_is_retried_once_then_answered_from_the_ledger() {
    let h = TestHelper::start().await;
    let mut c = h.client().await;
    let mut first = lock_screen(1);
    first.simulate = Some(Simulation::KernelFailure);

    let r1 = c.call(&first, 60, |_| {}).await.unwrap();
    assert_eq!(r1.status, HelperStatus::Failed);
    assert_eq!(r1.error, Some(ErrorCode::KernelFailure));
    assert_eq!(h.records().len(), 1);

    // The agent's one automatic retry runs again, under a new execution id.
    let mut executing = 0;
    let r2 = c
        .call(&again(&first, 2), 60, |_| executing += 1)
        .await
        .unwrap();
    assert_eq!(executing, 1);
    assert_eq!(r2.status, HelperStatus::Failed);
    assert_eq!(r2.error, Some(ErrorCode::KernelFailure));
    assert_ne!(r2.kernel_exec_id, r1.kernel_exec_id);
    assert_eq!(r2.result.get("duplicate"), None);
    assert_eq!(h.records().len(), 2);

    // A third ask is answered from the ledger without executing.
    let r3 = c
        .call(&again(&first, 3), 60, |_| panic!("not executed"))
        .await
        .unwrap();
    assert_eq!(r3.status, HelperStatus::Failed);
    assert_eq!(r3.error, Some(ErrorCode::KernelFailure));
    assert_eq!(r3.kernel_exec_id, r2.kernel_exec_id);
    assert_eq!(r3.result["duplicate"], true);
    assert_eq!(h.records().len(), 2);
}

#[tokio::test]
async fn a_repeat_while_the_command_runs_waits_for_the_same_execution() {
    let h = TestHelper::start().await;
    let mut first = lock_screen(1);
    first.simulate = Some(Simulation::Slow);
    let mut a = h.raw().await;
    a.send_line(&h.seal(&first)).await;
    let (_, e1) = a.response().await.unwrap();
    assert_eq!(e1.status, HelperStatus::Executing);

    // The agent crashed and asks again on a new connection.
    let mut c = h.client().await;
    let second = again(&first, 2);
    let mut seen = Vec::new();
    let r2 = c.call(&second, 60, |r| seen.push(r.clone())).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].kernel_exec_id, e1.kernel_exec_id,
        "the running execution"
    );
    assert_eq!(seen[0].result["duplicate"], true);
    assert_eq!(r2.status, HelperStatus::Ok);
    assert_eq!(r2.kernel_exec_id, e1.kernel_exec_id);
    assert_eq!(r2.result["duplicate"], true);

    let r1 = a.final_response().await;
    assert_eq!(r1.status, HelperStatus::Ok);
    assert_eq!(r1.request_id, first.request_id);
    assert_eq!(h.records().len(), 1, "executed once");
}

#[tokio::test]
async fn a_caller_that_hangs_up_does_not_stop_the_execution() {
    let h = TestHelper::start().await;
    let mut first = lock_screen(1);
    first.simulate = Some(Simulation::Slow);
    {
        let mut a = h.raw().await;
        a.send_line(&h.seal(&first)).await;
        assert_eq!(
            a.response().await.unwrap().1.status,
            HelperStatus::Executing
        );
    }
    let mut c = h.client().await;
    let r = c.call(&again(&first, 2), 60, |_| {}).await.unwrap();
    assert_eq!(r.status, HelperStatus::Ok);
    assert_eq!(r.result["duplicate"], true);
    assert_eq!(h.records().len(), 1);
}

#[tokio::test]
async fn the_sequence_mark_and_the_ledger_survive_a_restart() {
    let mut h = TestHelper::start().await;
    let helper_pub = h.helper_pub;
    let first = request(10, Opcode::CaptureScreenshot, json!({}));
    let frame = h.seal(&first);
    let mut raw = h.raw().await;
    raw.send_line(&frame).await;
    let r1 = raw.final_response().await;
    assert_eq!(r1.status, HelperStatus::Ok);
    drop(raw);

    h.restart().await;
    assert_eq!(h.helper_pub, helper_pub, "the helper key is kept");
    let mut raw = h.raw().await;
    // The same frame, replayed after the restart.
    raw.send_line(&frame).await;
    let (_, r) = raw.response().await.unwrap();
    assert_eq!(r.status, HelperStatus::Denied);
    assert_eq!(r.error, Some(ErrorCode::SequenceReplay));
    raw.send_line(&h.seal(&lock_screen(10))).await;
    assert_eq!(
        raw.final_response().await.error,
        Some(ErrorCode::SequenceReplay)
    );

    // The same command with a fresh sequence: answered from the ledger.
    raw.send_line(&h.seal(&again(&first, 11))).await;
    let r = raw.final_response().await;
    assert_eq!(r.status, HelperStatus::Ok);
    assert_eq!(r.result["duplicate"], true);
    assert_eq!(r.result["artifact_path"], r1.result["artifact_path"]);
    assert_eq!(h.records().len(), 1);

    // New execution ids do not reuse old ones (artifacts are named by them).
    raw.send_line(&h.seal(&request(12, Opcode::CaptureScreenshot, json!({}))))
        .await;
    let r = raw.final_response().await;
    assert_ne!(r.kernel_exec_id, r1.kernel_exec_id);
    assert_ne!(r.result["artifact_path"], r1.result["artifact_path"]);
}
