//! The IPC service on a Unix domain socket.
//!
//! [`Helper::bind`] opens the state directory (key, ledger), removes a stale socket file
//! and listens with mode 0660, owned by the agent's user; [`Helper::run`] serves until the
//! cancellation token fires. Each connection is checked once (the peer check, 6006 then
//! close) and may then carry many requests, one at a time; connections are served
//! concurrently (at most [`MAX_CONNECTIONS`]). A line longer than the `helper_request`
//! limit is answered `denied` 1002 and the connection closed without reading the rest, as
//! is a connection with [`MAX_REFUSALS_IN_A_ROW`] refusals in a row. At shutdown the
//! listener closes at once, connections stop reading, and running executions get
//! [`SHUTDOWN_GRACE`] to finish and be recorded.

mod peer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tether_proto::{Clock, KeyId, MessageType, StaticKeys};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::error::HelperError;
use crate::executor::Executor;
use crate::framing::{Frame, read_frame};
use crate::handler::{Handled, Handler};
use crate::ledger::Ledger;
use crate::platform;
use crate::respond::Responder;
use crate::state::StateDir;
use peer::PeerPolicy;

/// Connections served at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 64;
/// Refused requests in a row after which a connection is closed.
pub const MAX_REFUSALS_IN_A_ROW: u32 = 10;
/// How long running executions get to finish at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a caller that failed the peer check has to send the line we refuse.
const REFUSED_PEER_WAIT: Duration = Duration::from_secs(5);

/// What the service needs to know.
#[derive(Debug, Clone)]
pub struct HelperConfig {
    /// The socket's path.
    pub socket: PathBuf,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The agent's Ed25519 public key: every request must be signed by it.
    pub agent_key: [u8; 32],
    /// Users whose processes may connect (at least one).
    pub allow_uids: Vec<u32>,
    /// When set, the calling process must be running this executable.
    pub agent_exe: Option<PathBuf>,
    /// Who gets the socket (uid, gid): the agent's user.
    pub socket_owner: Option<(u32, u32)>,
}

/// A bound, not yet serving, helper.
#[derive(Debug)]
pub struct Helper {
    listener: UnixListener,
    socket: PathBuf,
    handler: Arc<Handler>,
    peers: Arc<PeerPolicy>,
    executions: TaskTracker,
    public_key: [u8; 32],
}

impl Helper {
    /// Opens the state directory and listens on the socket.
    pub async fn bind(
        config: HelperConfig,
        executor: Arc<dyn Executor>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, HelperError> {
        if config.allow_uids.is_empty() {
            return Err(HelperError::Config("no uid is allowed to connect".into()));
        }
        let agent_key =
            ed25519_dalek::VerifyingKey::from_bytes(&config.agent_key).map_err(|_| {
                HelperError::Config("the agent key is not a valid Ed25519 public key".into())
            })?;
        let agent_exe =
            match &config.agent_exe {
                Some(p) => Some(std::fs::canonicalize(p).map_err(|e| {
                    HelperError::Config(format!("--agent-exe {}: {e}", p.display()))
                })?),
                None => None,
            };
        let state_dir = config.state_dir.clone();
        let (state, ledger) = tokio::task::spawn_blocking(move || {
            let state = StateDir::open(&state_dir)?;
            let ledger = Ledger::open(&state_dir)?;
            Ok::<_, HelperError>((state, ledger))
        })
        .await
        .map_err(|e| HelperError::Config(format!("opening the state directory: {e}")))??;
        let listener = listen(&config.socket, config.socket_owner)?;

        let mut agent_keys = StaticKeys::new();
        let kid = KeyId::for_ed25519(&config.agent_key);
        agent_keys.insert(kid.clone(), agent_key);
        let executions = TaskTracker::new();
        let public_key = state.public_key();
        tracing::info!(
            socket = %config.socket.display(),
            state_dir = %state.root().display(),
            executor = executor.name(),
            agent_kid = %kid,
            helper_kid = %KeyId::for_ed25519(&public_key),
            allow_uids = ?config.allow_uids,
            agent_exe = ?agent_exe,
            last_agent_sequence = ?ledger.last_sequence(),
            policy_version = ?ledger.policy().current().map(|p| p.policy_version),
            "helper listening"
        );
        let handler = Handler::new(
            agent_keys,
            Arc::clone(&clock),
            Responder::new(state.signing_key().clone(), clock),
            Arc::new(ledger),
            executor,
            executions.clone(),
        );
        Ok(Self {
            listener,
            socket: config.socket,
            handler: Arc::new(handler),
            peers: Arc::new(PeerPolicy {
                allow_uids: config.allow_uids,
                agent_exe,
            }),
            executions,
            public_key,
        })
    }

    /// The helper's public key (what `helper.pub` holds).
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Serves until `shutdown` fires, then drains (see the module docs).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), HelperError> {
        let connections = TaskTracker::new();
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let next_id = AtomicU64::new(1);
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                r = self.listener.accept() => r,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                tracing::warn!(
                    limit = MAX_CONNECTIONS,
                    "too many connections; closing a new one"
                );
                continue;
            };
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            let handler = Arc::clone(&self.handler);
            let peers = Arc::clone(&self.peers);
            let stop = shutdown.clone();
            let span = tracing::info_span!("connection", id);
            connections.spawn(
                async move {
                    serve(stream, &handler, &peers, &stop).await;
                    drop(slot);
                }
                .instrument(span),
            );
        }
        drop(self.listener);
        if let Err(e) = std::fs::remove_file(&self.socket) {
            tracing::debug!(error = %e, "removing the socket");
        }
        connections.close();
        self.executions.close();
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            self.executions.wait().await;
            connections.wait().await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                grace_s = SHUTDOWN_GRACE.as_secs(),
                "executions still running at shutdown; the journal shows them as interrupted"
            );
        }
        tracing::info!("helper stopped");
        Ok(())
    }
}

/// Binds the socket: a stale socket file is removed (anything else at the path is an
/// error), the mode is 0660 and the owner the agent's user.
fn listen(path: &Path, owner: Option<(u32, u32)>) -> Result<UnixListener, HelperError> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|e| HelperError::io(path, e))?;
        }
        Ok(_) => {
            return Err(HelperError::Config(format!(
                "{} exists and is not a socket; not removing it",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(HelperError::io(path, e)),
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        platform::create_dir(parent, 0o755).map_err(|e| HelperError::io(parent, e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| HelperError::io(path, e))?;
    // Until the mode is set the umask's applies; the peer check guards that moment.
    platform::set_mode(path, 0o660).map_err(|e| HelperError::io(path, e))?;
    platform::hand_to(path, owner).map_err(|e| HelperError::io(path, e))?;
    Ok(listener)
}

async fn serve(
    stream: UnixStream,
    handler: &Handler,
    peers: &PeerPolicy,
    stop: &CancellationToken,
) {
    let max = MessageType::HelperRequest.max_frame_bytes();
    let peer = peers.check(&stream).await;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let peer = match peer {
        Ok(p) => p,
        Err(reason) => {
            // Wait for the request so the refusal can name it, then close.
            let first = tokio::time::timeout(REFUSED_PEER_WAIT, read_frame(&mut r, max)).await;
            let frame = match first {
                Ok(Ok(Frame::Line(l))) => Some(l),
                _ => None,
            };
            let _ = handler
                .refuse_frame(
                    frame.as_deref(),
                    HelperError::PeerNotAuthorized(reason),
                    &mut w,
                )
                .await;
            let _ = w.shutdown().await;
            return;
        }
    };
    tracing::debug!(uid = peer.uid, pid = ?peer.pid, "agent connected");
    let mut refused = 0u32;
    loop {
        let frame = tokio::select! {
            () = stop.cancelled() => break,
            f = read_frame(&mut r, max) => f,
        };
        match frame {
            Ok(Frame::Line(line)) => match handler.handle(&line, &mut w).await {
                Ok(Handled::Answered) => refused = 0,
                Ok(Handled::Refused) => {
                    refused = refused.saturating_add(1);
                    if refused >= MAX_REFUSALS_IN_A_ROW {
                        tracing::warn!(
                            refused,
                            "closing a connection that only sends refused requests"
                        );
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "writing a response failed");
                    break;
                }
            },
            Ok(Frame::TooLong) => {
                let _ = handler
                    .refuse_frame(None, HelperError::LineTooLong { limit: max }, &mut w)
                    .await;
                break;
            }
            Ok(Frame::Eof) => break,
            Err(e) => {
                tracing::debug!(error = %e, "reading failed");
                break;
            }
        }
    }
    let _ = w.shutdown().await;
}
