//! Requests that are carried out: the ok flow, slow executions, artifacts, concurrency.

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

use std::time::{Duration, Instant};

use common::{TestHelper, lock_screen, request};
use serde_json::json;
use sha2::{Digest, Sha256};
use tether_helper::keys::read_public_key_file;
use tether_proto::helper::{HelperStatus, Opcode};
use tether_proto::messages::command::Simulation;

#[tokio::test]
async fn ok_flow_sends_executing_then_ok_signed_by_the_key_in_helper_pub() {
    let h = TestHelper::start().await;
    assert_eq!(
        read_public_key_file(&h.helper_pub_file()).unwrap(),
        h.helper_pub
    );
    let mut c = h.client().await;
    let req = request(
        1,
        Opcode::ExecReboot,
        json!({"delay_s": 30, "reason": "requested from phone"}),
    );
    let mut executing = Vec::new();
    let resp = c
        .call(&req, 60, |r| executing.push(r.clone()))
        .await
        .unwrap();

    assert_eq!(executing.len(), 1);
    assert_eq!(executing[0].status, HelperStatus::Executing);
    assert_eq!(executing[0].request_id, req.request_id);
    let kx = executing[0].kernel_exec_id.clone().unwrap();
    assert!(kx.starts_with("kx_"), "{kx}");
    assert_eq!(resp.status, HelperStatus::Ok);
    assert_eq!(resp.error, None);
    assert_eq!(resp.kernel_exec_id.as_deref(), Some(kx.as_str()));
    assert_eq!(resp.result["scheduled_in_s"], 30);

    let records = h.records();
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r["request_id"], req.request_id.as_str());
    assert_eq!(r["command_message_id"], req.command_message_id.as_str());
    assert_eq!(r["opcode"], "EXEC_REBOOT");
    assert_eq!(r["params"]["delay_s"], 30);
    assert_eq!(r["simulate"], serde_json::Value::Null);
    assert_eq!(r["kernel_exec_id"], kx.as_str());
    assert!(r["at"].as_u64().unwrap() > 1_700_000_000_000);

    // The same connection carries the next request; the raw path checks the signature
    // with the key read from helper.pub, not the one the test was handed.
    let mut raw = common::RawConn::connect(
        &h.socket,
        read_public_key_file(&h.helper_pub_file()).unwrap(),
    )
    .await;
    raw.send_line(&h.seal(&lock_screen(2))).await;
    let (header, first) = raw.response().await.unwrap();
    assert_eq!(first.status, HelperStatus::Executing);
    assert_eq!(header.msg_type.name(), "helper_response");
    assert_eq!(raw.final_response().await.status, HelperStatus::Ok);
    let resp = c.call(&lock_screen(3), 60, |_| {}).await.unwrap();
    assert_eq!(resp.status, HelperStatus::Ok);
    assert_eq!(h.records().len(), 3);
}

#[tokio::test]
async fn slow_simulation_shows_executing_well_before_ok() {
    let h = TestHelper::start().await;
    let mut c = h.client().await;
    let mut req = lock_screen(1);
    req.simulate = Some(Simulation::Slow);
    let started = Instant::now();
    let mut executing_at = None;
    let resp = c
        .call(&req, 60, |_| executing_at = Some(started.elapsed()))
        .await
        .unwrap();
    let done = started.elapsed();
    let executing_at = executing_at.expect("executing was sent");
    assert_eq!(resp.status, HelperStatus::Ok);
    assert!(
        executing_at < Duration::from_secs(1),
        "executing after {executing_at:?}"
    );
    assert!(done >= Duration::from_millis(2900), "ok after {done:?}");
    assert_eq!(h.records()[0]["simulate"], "slow");
}

#[tokio::test]
async fn slow_requests_on_several_connections_run_at_the_same_time() {
    let h = TestHelper::start().await;
    let started = Instant::now();
    let mut raws = Vec::new();
    for seq in 1..=3 {
        let mut raw = h.raw().await;
        let mut req = lock_screen(seq);
        req.simulate = Some(Simulation::Slow);
        raw.send_line(&h.seal(&req)).await;
        // Wait for `executing` before the next one, so sequence numbers arrive in order.
        let (_, r) = raw.response().await.unwrap();
        assert_eq!(r.status, HelperStatus::Executing);
        raws.push(raw);
    }
    for raw in &mut raws {
        assert_eq!(raw.final_response().await.status, HelperStatus::Ok);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(7),
        "three 3 s executions took {took:?}: not concurrent"
    );
    assert_eq!(h.records().len(), 3);
}

#[tokio::test]
async fn screenshot_artifact_is_a_valid_png_whose_sha256_matches() {
    let h = TestHelper::start().await;
    let mut c = h.client().await;
    let resp = c
        .call(
            &request(1, Opcode::CaptureScreenshot, json!({})),
            60,
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(resp.status, HelperStatus::Ok, "{resp:?}");
    let kx = resp.kernel_exec_id.clone().unwrap();
    let path = std::path::PathBuf::from(resp.result["artifact_path"].as_str().unwrap());
    assert_eq!(
        path,
        h.state_dir.join("artifacts").join(format!("{kx}.png"))
    );
    assert_eq!(resp.result["content_type"], "image/png");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(resp.result["size_bytes"], bytes.len() as u64);
    assert_eq!(resp.result["sha256"], hex::encode(Sha256::digest(&bytes)));

    let mut reader = png::Decoder::new(std::io::Cursor::new(&bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert!(info.width > 0 && info.height > 0);

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "artifacts are the agent's only");
    assert_eq!(h.records().len(), 1);
}

#[tokio::test]
async fn collected_logs_are_a_bundle_within_max_bytes() {
    let h = TestHelper::start().await;
    let mut c = h.client().await;
    let resp = c
        .call(
            &request(
                1,
                Opcode::CollectLogs,
                json!({"max_bytes": 1024, "sources": ["tether"]}),
            ),
            60,
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(resp.status, HelperStatus::Ok, "{resp:?}");
    let bytes = std::fs::read(resp.result["artifact_path"].as_str().unwrap()).unwrap();
    assert!(
        !bytes.is_empty() && bytes.len() <= 1024,
        "{} bytes",
        bytes.len()
    );
    assert_eq!(resp.result["size_bytes"], bytes.len() as u64);
    assert_eq!(resp.result["sha256"], hex::encode(Sha256::digest(&bytes)));
    assert_eq!(resp.result["content_type"], "text/plain");
}

#[tokio::test]
async fn an_allowed_executable_passes_the_peer_check() {
    let h = TestHelper::start_with(common::Options {
        agent_exe: Some(std::env::current_exe().unwrap()),
        ..Default::default()
    })
    .await;
    let mut c = h.client().await;
    let resp = c.call(&lock_screen(1), 60, |_| {}).await.unwrap();
    assert_eq!(resp.status, HelperStatus::Ok, "{resp:?}");
    assert_eq!(h.records().len(), 1);
}
