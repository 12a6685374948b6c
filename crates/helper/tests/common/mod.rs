//! A real helper in a temp dir, real keys, real sockets; clients that speak the protocol
//! (`HelperClient`) and raw connections for hostile input.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    unreachable_pub
)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use rand_core::{OsRng, RngCore};
use serde_json::{Value, json};
use tempfile::TempDir;
use tether_helper::client::HelperClient;
use tether_helper::executor::{Artifacts, Executor, RecordingExecutor, SystemExecutor};
use tether_helper::keys::{read_public_key_file, write_public_key_file};
use tether_helper::server::{Helper, HelperConfig};
use tether_helper::state::{artifacts_dir, files};
use tether_proto::helper::{HelperRequest, HelperResponse, Opcode};
use tether_proto::{
    Clock, EnvelopeSigner, Header, KeyId, MessageId, Stamp, StaticKeys, SystemClock, TraceId,
    UnixMillis, Verifier,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A policy hash for requests (its value is not checked by the helper).
pub const POLICY: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

pub fn new_id() -> MessageId {
    MessageId::from_random_bytes(random_bytes())
}

pub fn new_key() -> SigningKey {
    SigningKey::from_bytes(&random_bytes())
}

/// How to start a test helper.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub agent_exe: Option<PathBuf>,
    pub allow_uids: Option<Vec<u32>>,
    pub system_executor: bool,
}

/// A running in-process helper.
pub struct TestHelper {
    pub dir: TempDir,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub record: PathBuf,
    pub agent_key_file: PathBuf,
    pub agent_key: SigningKey,
    pub helper_pub: [u8; 32],
    pub options: Options,
    stop: CancellationToken,
    task: Option<JoinHandle<Result<(), tether_helper::HelperError>>>,
}

pub fn own_uid(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().uid()
}

impl TestHelper {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let agent_key = new_key();
        let agent_key_file = dir.path().join("agent.pub");
        write_public_key_file(&agent_key_file, &agent_key.verifying_key().to_bytes()).unwrap();
        let mut h = Self {
            socket: dir.path().join("run").join("helper.sock"),
            state_dir: dir.path().join("state"),
            record: dir.path().join("record.jsonl"),
            agent_key_file,
            agent_key,
            helper_pub: [0; 32],
            options,
            stop: CancellationToken::new(),
            task: None,
            dir,
        };
        h.launch().await;
        h
    }

    async fn launch(&mut self) {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let uid = own_uid(&self.agent_key_file);
        let owner = Some((uid, std::fs::metadata(&self.agent_key_file).unwrap().gid()));
        let artifacts = Artifacts::new(artifacts_dir(&self.state_dir), owner);
        let executor: Arc<dyn Executor> = if self.options.system_executor {
            Arc::new(SystemExecutor::new(self.state_dir.clone(), artifacts, None))
        } else {
            Arc::new(RecordingExecutor::new(
                self.record.clone(),
                artifacts,
                Arc::clone(&clock),
            ))
        };
        let config = HelperConfig {
            socket: self.socket.clone(),
            state_dir: self.state_dir.clone(),
            agent_key: read_public_key_file(&self.agent_key_file).unwrap(),
            allow_uids: self.options.allow_uids.clone().unwrap_or(vec![uid]),
            agent_exe: self.options.agent_exe.clone(),
            socket_owner: owner,
        };
        let helper = Helper::bind(config, executor, clock).await.unwrap();
        self.helper_pub = helper.public_key();
        self.stop = CancellationToken::new();
        self.task = Some(tokio::spawn(helper.run(self.stop.clone())));
    }

    /// Stops the helper and waits until it is down.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }

    /// Stops and starts the helper on the same state directory and keys.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    pub fn helper_pub_file(&self) -> PathBuf {
        self.state_dir.join(files::HELPER_PUB)
    }

    pub async fn client(&self) -> HelperClient {
        HelperClient::connect(
            &self.socket,
            EnvelopeSigner::new(self.agent_key.clone()),
            self.helper_pub,
            Arc::new(SystemClock),
        )
        .await
        .unwrap()
    }

    /// The record file's lines.
    pub fn records(&self) -> Vec<Value> {
        match std::fs::read_to_string(&self.record) {
            Ok(text) => text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Signs a request with the agent key, `seq` = `agent_sequence`, issued now.
    pub fn seal(&self, req: &HelperRequest) -> Vec<u8> {
        seal_with(
            &EnvelopeSigner::new(self.agent_key.clone()),
            req,
            SystemClock.now(),
            60,
        )
    }

    pub async fn raw(&self) -> RawConn {
        RawConn::connect(&self.socket, self.helper_pub).await
    }
}

impl Drop for TestHelper {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub fn seal_with(
    signer: &EnvelopeSigner,
    req: &HelperRequest,
    iat: UnixMillis,
    ttl: u32,
) -> Vec<u8> {
    signer
        .seal(
            Stamp {
                iat,
                ttl,
                seq: req.agent_sequence,
                message_id: req.request_id.clone(),
                trace_id: TraceId::from_random_bytes(random_bytes()),
            },
            req,
        )
        .unwrap()
}

/// A request with fresh ids.
pub fn request(seq: u64, opcode: Opcode, params: Value) -> HelperRequest {
    HelperRequest {
        request_id: new_id(),
        opcode,
        params,
        agent_sequence: seq,
        policy_hash: POLICY.into(),
        command_message_id: new_id(),
        simulate: None,
    }
}

pub fn lock_screen(seq: u64) -> HelperRequest {
    request(seq, Opcode::ExecLockScreen, json!({}))
}

/// A raw connection: writes any bytes, reads and verifies responses.
pub struct RawConn {
    reader: BufReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
    keys: StaticKeys,
}

impl RawConn {
    pub async fn connect(socket: &Path, helper_pub: [u8; 32]) -> Self {
        let s = UnixStream::connect(socket).await.unwrap();
        let (r, writer) = s.into_split();
        let mut keys = StaticKeys::new();
        keys.insert(
            KeyId::for_ed25519(&helper_pub),
            ed25519_dalek::VerifyingKey::from_bytes(&helper_pub).unwrap(),
        );
        Self {
            reader: BufReader::new(r),
            writer,
            keys,
        }
    }

    pub async fn send_line(&mut self, bytes: &[u8]) {
        let mut v = bytes.to_vec();
        v.push(b'\n');
        self.writer.write_all(&v).await.unwrap();
    }

    /// The next response, verified with the helper key; `None` if the helper closed.
    pub async fn response(&mut self) -> Option<(Header, HelperResponse)> {
        let mut line = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), async {
            use tokio::io::AsyncBufReadExt;
            self.reader.read_until(b'\n', &mut line).await
        })
        .await
        .expect("no response within 20 s")
        .unwrap();
        if read == 0 {
            return None;
        }
        assert_eq!(line.pop(), Some(b'\n'), "responses end with a line feed");
        let v = Verifier::new(&self.keys, &SystemClock)
            .verify(&line)
            .expect("the response verifies with helper.pub");
        let header = v.header.clone();
        Some((header, v.into_body().unwrap()))
    }

    /// The final response, skipping `executing`.
    pub async fn final_response(&mut self) -> HelperResponse {
        loop {
            let (_, r) = self.response().await.expect("a response");
            if r.status != tether_proto::helper::HelperStatus::Executing {
                return r;
            }
        }
    }

    /// Whether the helper has closed the connection (reads to EOF, ignoring nothing).
    pub async fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.reader.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}
