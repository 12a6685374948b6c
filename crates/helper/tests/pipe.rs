//! The Windows named pipe: a real helper on a pipe of its own (a fresh name per test),
//! called with the real client. Which caller is served is decided by what the kernel says
//! about the client process, so the test binary is "the agent" when the helper is told
//! its path, and a stranger when it is told another one.
//!
//! Runs under Wine on Linux (packaging/windows/wine-test.sh); what Wine does not model is
//! said at the test concerned.

#![cfg(windows)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use rand_core::{OsRng, RngCore};
use serde_json::json;
use tempfile::TempDir;
use tether_helper::HelperError;
use tether_helper::client::HelperClient;
use tether_helper::executor::{Artifacts, Executor, RecordingExecutor};
use tether_helper::server::{Helper, HelperConfig, PipeConfig, current_user_sid};
use tether_helper::state::artifacts_dir;
use tether_proto::helper::{HelperRequest, HelperStatus, Opcode};
use tether_proto::{Clock, EnvelopeSigner, ErrorCode, MessageId, SystemClock};
use tokio::net::windows::named_pipe::ServerOptions;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const POLICY: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

fn new_id() -> MessageId {
    MessageId::from_random_bytes(random_bytes())
}

/// A pipe name no other test (or earlier run) uses.
fn pipe_name() -> String {
    format!(
        r"\\.\pipe\tether-helper-test-{}",
        hex::encode(random_bytes::<8>())
    )
}

fn lock_screen(seq: u64) -> HelperRequest {
    HelperRequest {
        request_id: new_id(),
        opcode: Opcode::ExecLockScreen,
        params: json!({}),
        agent_sequence: seq,
        policy_hash: POLICY.into(),
        command_message_id: new_id(),
        simulate: None,
    }
}

/// This test binary, as the helper resolves a caller's image.
fn this_exe() -> PathBuf {
    std::env::current_exe().unwrap()
}

/// How the helper is told to check its callers.
struct Callers {
    agent_exe: Option<PathBuf>,
    agent_account: String,
    require_agent_account: bool,
}

impl Callers {
    /// The test binary, running as the current user, is the agent.
    fn this_process() -> Self {
        Self {
            agent_exe: Some(this_exe()),
            agent_account: current_user_sid().unwrap(),
            require_agent_account: true,
        }
    }
}

struct PipeHelper {
    dir: TempDir,
    name: String,
    agent_key: SigningKey,
    helper_pub: [u8; 32],
    stop: CancellationToken,
    task: Option<JoinHandle<Result<(), HelperError>>>,
}

async fn bind(
    name: &str,
    dir: &Path,
    agent_key: &SigningKey,
    callers: Callers,
) -> Result<Helper, HelperError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state_dir = dir.join("state");
    let executor: Arc<dyn Executor> = Arc::new(RecordingExecutor::new(
        dir.join("record.jsonl"),
        Artifacts::new(artifacts_dir(&state_dir), None),
        Arc::clone(&clock),
    ));
    let config = HelperConfig {
        pipe: PipeConfig {
            name: name.to_owned(),
            agent_account: callers.agent_account,
            require_agent_account: callers.require_agent_account,
        },
        state_dir,
        agent_key: agent_key.verifying_key().to_bytes(),
        agent_exe: callers.agent_exe,
    };
    Helper::bind(config, executor, clock).await
}

impl PipeHelper {
    async fn start(callers: Callers) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let name = pipe_name();
        let agent_key = SigningKey::from_bytes(&random_bytes());
        let helper = bind(&name, dir.path(), &agent_key, callers).await.unwrap();
        assert_eq!(helper.endpoint(), name);
        let helper_pub = helper.public_key();
        let stop = CancellationToken::new();
        let task = Some(tokio::spawn(helper.run(stop.clone())));
        Self {
            dir,
            name,
            agent_key,
            helper_pub,
            stop,
            task,
        }
    }

    async fn client(&self) -> Result<HelperClient, HelperError> {
        HelperClient::connect(
            Path::new(&self.name),
            EnvelopeSigner::new(self.agent_key.clone()),
            self.helper_pub,
            Arc::new(SystemClock),
        )
        .await
    }

    fn records(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("record.jsonl"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

#[tokio::test]
async fn the_agent_executable_is_served_over_the_pipe_on_many_connections() {
    let mut h = PipeHelper::start(Callers::this_process()).await;
    let mut c = h.client().await.unwrap();
    let answer = c.call(&lock_screen(1), 60, |_| {}).await.unwrap();
    assert_eq!(answer.status, HelperStatus::Ok, "{answer:?}");
    // The same connection carries the next request.
    let answer = c.call(&lock_screen(2), 60, |_| {}).await.unwrap();
    assert_eq!(answer.status, HelperStatus::Ok, "{answer:?}");
    // Connections at once: each gets an instance of its own (a new one is made before a
    // connected one is handed off).
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(h.client().await.unwrap());
    }
    for (seq, c) in (3u64..).zip(clients.iter_mut()) {
        let answer = c.call(&lock_screen(seq), 60, |_| {}).await.unwrap();
        assert_eq!(answer.status, HelperStatus::Ok, "{answer:?}");
    }
    assert_eq!(h.records(), 5);
    h.stop().await;
}

#[tokio::test]
async fn a_client_that_is_not_the_agent_executable_is_refused_6006() {
    let dir = tempfile::tempdir().unwrap();
    // The helper is told the agent is another file: the test binary is then a stranger,
    // whatever it signs with.
    let other = dir.path().join("tether-agent.exe");
    std::fs::write(&other, b"not this process").unwrap();
    let mut h = PipeHelper::start(Callers {
        agent_exe: Some(other),
        ..Callers::this_process()
    })
    .await;
    let mut c = h.client().await.unwrap();
    let req = lock_screen(1);
    let answer = c.call(&req, 60, |_| {}).await.unwrap();
    assert_eq!(answer.status, HelperStatus::Denied, "{answer:?}");
    assert_eq!(
        answer.error,
        Some(ErrorCode::PeerNotAuthorized),
        "{answer:?}"
    );
    assert_eq!(answer.request_id, req.request_id);
    assert_eq!(answer.kernel_exec_id, None);
    // …and the connection is closed.
    let again = c.call(&lock_screen(2), 60, |_| {}).await;
    assert!(
        matches!(again, Err(HelperError::Unavailable(_))),
        "{again:?}"
    );
    assert_eq!(h.records(), 0, "nothing was executed");
    h.stop().await;
}

#[tokio::test]
async fn a_client_running_as_another_account_is_refused() {
    // The agent's account is SYSTEM (S-1-5-18); this process runs as the current user.
    let mut h = PipeHelper::start(Callers {
        agent_account: "S-1-5-18".into(),
        ..Callers::this_process()
    })
    .await;
    match h.client().await {
        // The pipe's DACL let this process open it (an elevated process is in
        // Administrators; under Wine 8 the open succeeds too, whether because its default
        // user is an administrator or because it does not check a pipe's DACL was not
        // determined): the token check refuses it.
        Ok(mut c) => {
            eprintln!("the DACL let this process open the pipe; the token check refuses it");
            let answer = c.call(&lock_screen(1), 60, |_| {}).await.unwrap();
            assert_eq!(answer.status, HelperStatus::Denied, "{answer:?}");
            assert_eq!(answer.error, Some(ErrorCode::PeerNotAuthorized));
        }
        // Windows refused the open: the DACL admits SYSTEM, Administrators and the agent.
        Err(e) => assert!(matches!(e, HelperError::Unavailable(_)), "{e:?}"),
    }
    assert_eq!(h.records(), 0, "nothing was executed");
    h.stop().await;
}

#[tokio::test]
async fn a_pipe_name_that_is_taken_is_refused_at_start() {
    let mut h = PipeHelper::start(Callers::this_process()).await;
    // A second helper on the same name. On Windows FILE_FLAG_FIRST_PIPE_INSTANCE refuses it
    // atomically; Wine 8 ignores that flag, so under Wine what refuses it is the helper's
    // probe (an open of the name answers: the pipe exists).
    let dir = tempfile::tempdir().unwrap();
    let second = bind(&h.name, dir.path(), &h.agent_key, Callers::this_process()).await;
    match second {
        Err(HelperError::Config(m)) => assert!(m.contains("exists already"), "{m}"),
        other => panic!("a second helper on the same pipe: {other:?}"),
    }
    // Once the first is stopped the name is free again.
    h.stop().await;
    let third = bind(&h.name, dir.path(), &h.agent_key, Callers::this_process()).await;
    assert!(third.is_ok(), "{third:?}");
    drop(third);

    // Another process that made the pipe first (here: an instance made without the
    // helper's flags) cannot be joined by the helper either.
    let name = pipe_name();
    let squatter = ServerOptions::new().create(&name).unwrap();
    let helper = bind(&name, dir.path(), &h.agent_key, Callers::this_process()).await;
    assert!(matches!(helper, Err(HelperError::Config(_))), "{helper:?}");
    drop(squatter);
}
