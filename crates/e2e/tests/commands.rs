//! Commands end to end with the real binaries: `tether-server`, `tether-agent` and
//! `tether-helper` (recording executor), on the embedded backends and on MariaDB + Redis.
//! A `lock_screen` goes client → api → bus → gateway → agent → helper and back, ends
//! `completed` with every state transition recorded, and the helper executed it once; a
//! `screenshot` comes back as an encrypted artifact in the object store (the local
//! directory, or S3 on the MariaDB + Redis run) whose SHA-256 matches.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_e2e::{
    Backends, Helper, Server, on_mysql_and_redis, pair_agent, register_user, signed_command, uuid,
};

/// Polls the command until its state is one of `states`.
async fn wait_state(
    user: &tether_client::Api,
    id: &str,
    states: &[&str],
    within: Duration,
) -> Value {
    let start = Instant::now();
    loop {
        let (s, c): (u16, Value) = user.get(&format!("/api/command/{id}")).await.unwrap();
        assert_eq!(s, 200, "{c}");
        if states.iter().any(|st| c["state"] == *st) {
            return c;
        }
        assert!(
            start.elapsed() < within,
            "command {id} not in {states:?} within {within:?}: {c}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn lock_screen(backends: Backends) {
    let server = Server::start_with(&backends, &[("TETHER_SERVER_TEST_MODE", "true")]);
    let user = register_user(&server, "ada@lab.example").await;
    let helper_dir = tempfile::tempdir().unwrap();
    let (socket, key_file) = Helper::paths(helper_dir.path());
    let (mut agent, state) = pair_agent(
        &server,
        &user,
        "lab-pc-1",
        &[
            "--helper-socket",
            socket.to_str().unwrap(),
            "--helper-key-file",
            key_file.to_str().unwrap(),
        ],
    )
    .await;
    let helper = Helper::start_in(helper_dir, state.path());
    let (_, devices): (u16, Value) = user.get("/api/devices").await.unwrap();
    let device = devices[0]["id"].as_str().unwrap().to_owned();

    let id = uuid();
    let (s, accepted): (u16, Value) = user
        .post(
            "/api/command",
            &signed_command(
                "ada@lab.example",
                json!({"device_id": device, "method": "lock_screen", "message_id": id,
                       "ttl_seconds": 120}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(s, 202, "{accepted}");
    assert_eq!(accepted["status"], "accepted");
    assert_eq!(accepted["state"], "queued");
    let done = wait_state(
        &user,
        &id,
        &["completed", "failed", "dlq", "expired", "denied"],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        done["state"],
        "completed",
        "{done}\nagent:\n{}\nhelper:\n{}",
        agent.output(),
        helper.proc.output()
    );
    assert_eq!(done["result"]["status"], "ok", "{done}");
    let steps: Vec<&str> = done["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "queued",
            "sent",
            "ack_received",
            "executing",
            "result_posted",
            "completed"
        ],
        "{done}"
    );
    let times: Vec<u64> = done["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["at"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // The helper carried it out exactly once, as EXEC_LOCK_SCREEN for this command.
    let runs = helper.executions();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["opcode"], "EXEC_LOCK_SCREEN");
    assert_eq!(runs[0]["command_message_id"], id.as_str());

    // One grep follows it: the trace id is in the server's and the agent's logs.
    let trace = done["trace_id"].as_str().unwrap();
    assert!(
        server.proc.output().contains(trace),
        "the server log names the trace id"
    );
    // A screenshot comes back as an artifact: uploaded encrypted, its SHA-256 matches,
    // and the owner can decrypt it to the PNG the helper captured.
    let shot = uuid();
    let (s, _): (u16, Value) = user
        .post(
            "/api/command",
            &signed_command(
                "ada@lab.example",
                json!({"device_id": device, "method": "screenshot", "message_id": shot}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(s, 202);
    let start = Instant::now();
    let done = loop {
        let (_, c): (u16, Value) = user.get(&format!("/api/command/{shot}")).await.unwrap();
        let finished = ["completed", "failed", "dlq", "expired", "denied"]
            .iter()
            .any(|st| c["state"] == *st);
        if finished || start.elapsed() > Duration::from_secs(60) {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        done["state"],
        "completed",
        "{done}\nagent:\n{}\nserver:\n{}",
        agent.output(),
        server.proc.output()
    );
    let artifact = &done["result"]["artifact"];
    let artifact_id = artifact["artifact_id"]
        .as_str()
        .expect("an artifact")
        .to_owned();
    assert_eq!(artifact["content_type"], "image/png");
    let (s, view): (u16, Value) = user
        .get(&format!("/api/artifacts/{artifact_id}"))
        .await
        .unwrap();
    assert_eq!(s, 200, "{view}");
    assert_eq!(view["sha256"], artifact["sha256"]);
    let (s, bytes) = user
        .transfer("GET", view["download_url"].as_str().unwrap(), &[], None)
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert_eq!(
        tether_proto::ids::sha256_hex(&bytes),
        artifact["sha256"].as_str().unwrap(),
        "the downloaded bytes match the result's SHA-256"
    );
    let key = tether_proto::validate::b64url_decode(view["key"].as_str().unwrap()).unwrap();
    let plain = {
        use aes_gcm::aead::{Aead, Payload};
        use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
        let cipher = Aes256Gcm::new_from_slice(&key).unwrap();
        let (nonce, ct) = bytes.split_at(12);
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: artifact_id.as_bytes(),
                },
            )
            .expect("decrypts with the key and the artifact id")
    };
    assert!(plain.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert_eq!(
        tether_proto::ids::sha256_hex(&plain),
        view["plaintext_sha256"].as_str().unwrap()
    );
    // A stranger cannot see it.
    let eve = register_user(&server, "eve@lab.example").await;
    let refused: Result<(u16, Value), _> = eve.get(&format!("/api/artifacts/{artifact_id}")).await;
    assert_eq!(
        refused.map(|(s, _)| s).unwrap_err().code(),
        Some(tether_proto::ErrorCode::NotFound)
    );

    agent.kill();
    drop(helper);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_screen_completes_through_the_helper_on_embedded_backends() {
    lock_screen(Backends::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_screen_completes_through_the_helper_on_mariadb_and_redis() {
    on_mysql_and_redis(lock_screen).await;
}
