//! The real `tether-helper` binary: its command line, and its memory across SIGKILL.

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

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::{RawConn, lock_screen, new_id, new_key, request};
use ed25519_dalek::SigningKey;
use serde_json::json;
use tether_helper::client::HelperClient;
use tether_helper::keys::{read_public_key_file, write_public_key_file};
use tether_proto::helper::{HelperRequest, HelperStatus, Opcode};
use tether_proto::messages::command::Simulation;
use tether_proto::validate::b64url_encode;
use tether_proto::{EnvelopeSigner, ErrorCode, SystemClock};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_tether-helper");

struct Setup {
    dir: tempfile::TempDir,
    agent_key: SigningKey,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let agent_key = new_key();
        write_public_key_file(
            &dir.path().join("agent.pub"),
            &agent_key.verifying_key().to_bytes(),
        )
        .unwrap();
        Self { dir, agent_key }
    }
    fn socket(&self) -> PathBuf {
        self.dir.path().join("helper.sock")
    }
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn record(&self) -> PathBuf {
        self.dir.path().join("record.jsonl")
    }
    fn records(&self) -> usize {
        std::fs::read_to_string(self.record()).map_or(0, |t| t.lines().count())
    }

    /// Starts `tether-helper run` and waits for its "listening" line.
    async fn start(&self) -> Child {
        let mut child = Command::new(BIN)
            .arg("run")
            .arg("--socket")
            .arg(self.socket())
            .arg("--state-dir")
            .arg(self.state())
            .arg("--agent-key-file")
            .arg(self.dir.path().join("agent.pub"))
            .args(["--executor", "recording", "--record"])
            .arg(self.record())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the helper starts within 30 s")
            .unwrap()
            .expect("a listening line");
        assert!(line.contains("listening on"), "{line}");
        child
    }

    fn helper_pub(&self) -> [u8; 32] {
        read_public_key_file(&self.state().join("helper.pub")).unwrap()
    }

    async fn client(&self) -> HelperClient {
        HelperClient::connect(
            &self.socket(),
            EnvelopeSigner::new(self.agent_key.clone()),
            self.helper_pub(),
            Arc::new(SystemClock),
        )
        .await
        .unwrap()
    }

    fn seal(&self, req: &HelperRequest) -> Vec<u8> {
        common::seal_with(
            &EnvelopeSigner::new(self.agent_key.clone()),
            req,
            tether_proto::Clock::now(&SystemClock),
            60,
        )
    }
}

fn again(req: &HelperRequest, seq: u64) -> HelperRequest {
    HelperRequest {
        request_id: new_id(),
        agent_sequence: seq,
        ..req.clone()
    }
}

#[tokio::test]
async fn the_ledger_and_the_sequence_mark_survive_sigkill() {
    let s = Setup::new();
    let mut helper = s.start().await;
    let mut c = s.client().await;
    let done = request(1, Opcode::CaptureScreenshot, json!({}));
    let done_frame = s.seal(&done);
    let r1 = c.call(&done, 60, |_| {}).await.unwrap();
    assert_eq!(r1.status, HelperStatus::Ok);

    // A slow execution, cut off by SIGKILL while it runs.
    let mut cut = lock_screen(2);
    cut.simulate = Some(Simulation::Slow);
    let mut raw = RawConn::connect(&s.socket(), s.helper_pub()).await;
    raw.send_line(&s.seal(&cut)).await;
    assert_eq!(
        raw.response().await.unwrap().1.status,
        HelperStatus::Executing
    );
    helper.start_kill().unwrap();
    helper.wait().await.unwrap();
    assert_eq!(s.records(), 1);

    let _helper = s.start().await;
    let mut raw = RawConn::connect(&s.socket(), s.helper_pub()).await;
    raw.send_line(&done_frame).await;
    assert_eq!(
        raw.final_response().await.error,
        Some(ErrorCode::SequenceReplay)
    );

    raw.send_line(&s.seal(&again(&done, 3))).await;
    let r = raw.final_response().await;
    assert_eq!(r.status, HelperStatus::Ok);
    assert_eq!(r.result["duplicate"], true);
    assert_eq!(r.kernel_exec_id, r1.kernel_exec_id);

    // The cut-off command is never run again: its outcome is unknown.
    raw.send_line(&s.seal(&again(&cut, 4))).await;
    let (_, r) = raw.response().await.unwrap();
    assert_eq!(r.status, HelperStatus::Failed, "{r:?}");
    assert_eq!(r.error, Some(ErrorCode::KernelFailure));
    assert_eq!(r.result["interrupted"], true);
    assert_eq!(s.records(), 1);
}

#[tokio::test]
async fn sigterm_stops_the_helper_cleanly_and_removes_its_socket() {
    let s = Setup::new();
    let mut helper = s.start().await;
    assert!(s.socket().exists());
    let pid = helper.id().unwrap().to_string();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(st.success());
    let status = tokio::time::timeout(Duration::from_secs(20), helper.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(!s.socket().exists());
    // A restart replaces nothing it should not: same key.
    let before = s.helper_pub();
    let _helper = s.start().await;
    assert_eq!(s.helper_pub(), before);
}

#[tokio::test]
async fn pubkey_prints_the_key_in_helper_pub() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = std::process::Command::new(BIN)
        .args(["pubkey", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let key = read_public_key_file(&state.join("helper.pub")).unwrap();
    assert_eq!(printed.trim(), b64url_encode(&key));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state.join("helper-key.pk8"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Asked again: the same key.
    let again = std::process::Command::new(BIN)
        .args(["pubkey", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(again.stdout).unwrap(), printed);
}

#[test]
fn list_opcodes_lists_every_opcode_with_its_number() {
    let out = std::process::Command::new(BIN)
        .arg("--list-opcodes")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for op in Opcode::ALL {
        let line = format!("{:#06x}  {}", op.number(), op.name());
        assert!(text.contains(&line), "{line} missing from {text}");
    }
}

#[test]
fn run_refuses_bad_arguments_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad_key = dir.path().join("agent.pub");
    std::fs::write(&bad_key, "not a key").unwrap();
    let run = |extra: &[&str], key: &Path| {
        std::process::Command::new(BIN)
            .arg("run")
            .arg("--socket")
            .arg(dir.path().join("s.sock"))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--agent-key-file")
            .arg(key)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[], &bad_key);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("agent.pub"),
        "{out:?}"
    );

    let good = dir.path().join("good.pub");
    write_public_key_file(&good, &new_key().verifying_key().to_bytes()).unwrap();
    let out = run(&["--executor", "system", "--record", "x"], &good);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--record"),
        "{out:?}"
    );

    let help = std::process::Command::new(BIN)
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--socket",
        "--state-dir",
        "--agent-key-file",
        "--agent-exe",
        "--allow-uid",
        "--executor",
        "--record",
        "--manifest",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

/// With `--wait-for-agent-key` (how the Windows service runs), a helper started before the
/// agent has written its key waits for the file instead of failing, then serves.
#[tokio::test]
async fn with_wait_for_agent_key_the_helper_waits_for_the_agent_key_file() {
    let s = Setup::new();
    let key_file = s.dir.path().join("agent.pub");
    let key = std::fs::read(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let mut child = Command::new(BIN)
        .arg("run")
        .arg("--socket")
        .arg(s.socket())
        .arg("--state-dir")
        .arg(s.state())
        .arg("--agent-key-file")
        .arg(&key_file)
        .arg("--wait-for-agent-key")
        .args(["--executor", "recording", "--record"])
        .arg(s.record())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut errs = BufReader::new(child.stderr.take().unwrap()).lines();
    let waiting = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(l) = errs.next_line().await.unwrap() {
            if l.contains("waiting for the agent's key") {
                return true;
            }
        }
        false
    })
    .await
    .expect("the helper says it waits within 30 s");
    assert!(waiting, "the helper ended without saying it waits");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(child.try_wait().unwrap().is_none(), "the helper gave up");
    assert!(
        !s.socket().exists(),
        "it serves before it has the agent's key"
    );

    std::fs::write(&key_file, key).unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), out.next_line())
        .await
        .expect("the helper serves within 30 s of the key appearing")
        .unwrap()
        .expect("a listening line");
    assert!(line.contains("listening on"), "{line}");
    let mut c = s.client().await;
    let r = c.call(&lock_screen(1), 60, |_| {}).await.unwrap();
    assert_eq!(r.status, HelperStatus::Ok);
    assert_eq!(s.records(), 1);
}
