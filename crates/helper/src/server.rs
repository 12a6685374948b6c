//! The IPC service: a Unix domain socket, or on Windows a named pipe.
//!
//! [`Helper::bind`] opens the state directory (key, ledger) and the transport: on Unix it
//! removes a stale socket file and listens with mode 0660, owned by the agent's user
//! ([`unix`]); on Windows it creates the first instance of the pipe, refusing a name that
//! is taken, with a DACL for SYSTEM, Administrators and the agent's account (`pipe`).
//! Everything above the transport — the peer check's verdict, framing, the handler, the
//! ledger, responses — is this file's and shared. [`Helper::run`] serves until the
//! cancellation token fires. Each connection is checked once (the peer check, 6006 then
//! close) and may then carry many requests, one at a time; connections are served
//! concurrently (at most [`MAX_CONNECTIONS`]). A line longer than the `helper_request`
//! limit is answered `denied` 1002 and the connection closed without reading the rest, as
//! is a connection with [`MAX_REFUSALS_IN_A_ROW`] refusals in a row. At shutdown the
//! listener closes at once, connections stop reading, and running executions get
//! [`SHUTDOWN_GRACE`] to finish and be recorded.

#[cfg(unix)]
mod peer;
#[cfg(windows)]
mod pipe;
#[cfg(unix)]
mod unix;

#[cfg(unix)]
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tether_proto::{Clock, KeyId, MessageType, StaticKeys};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::error::HelperError;
use crate::executor::Executor;
use crate::framing::{Frame, read_frame};
use crate::handler::{Handled, Handler};
use crate::ledger::Ledger;
use crate::respond::Responder;
use crate::state::StateDir;
#[cfg(windows)]
use pipe as transport;
#[cfg(windows)]
pub use pipe::{DEFAULT_AGENT_ACCOUNT, DEFAULT_PIPE, PipeConfig, current_user_sid};
#[cfg(unix)]
use unix as transport;

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
    #[cfg(unix)]
    pub socket: PathBuf,
    /// The named pipe and who may open it.
    #[cfg(windows)]
    pub pipe: PipeConfig,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The agent's Ed25519 public key: every request must be signed by it.
    pub agent_key: [u8; 32],
    /// Users whose processes may connect (at least one).
    #[cfg(unix)]
    pub allow_uids: Vec<u32>,
    /// When set, the calling process must be running this executable.
    pub agent_exe: Option<PathBuf>,
    /// Who gets the socket (uid, gid): the agent's user.
    #[cfg(unix)]
    pub socket_owner: Option<(u32, u32)>,
}

/// A bound, not yet serving, helper.
#[derive(Debug)]
pub struct Helper {
    listener: transport::Listener,
    handler: Arc<Handler>,
    peers: Arc<transport::PeerPolicy>,
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
        transport::check_config(&config)?;
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
        let (listener, peers) = transport::Listener::bind(&config, agent_exe.clone())?;

        let mut agent_keys = StaticKeys::new();
        let kid = KeyId::for_ed25519(&config.agent_key);
        agent_keys.insert(kid.clone(), agent_key);
        let executions = TaskTracker::new();
        let public_key = state.public_key();
        tracing::info!(
            endpoint = %listener.endpoint(),
            state_dir = %state.root().display(),
            executor = executor.name(),
            agent_kid = %kid,
            helper_kid = %KeyId::for_ed25519(&public_key),
            peers = ?peers,
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
            handler: Arc::new(handler),
            peers: Arc::new(peers),
            executions,
            public_key,
        })
    }

    /// The helper's public key (what `helper.pub` holds).
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The socket's path.
    #[cfg(unix)]
    pub fn socket(&self) -> &Path {
        self.listener.path()
    }

    /// Where the helper listens: the socket's path or the pipe's name.
    pub fn endpoint(&self) -> String {
        self.listener.endpoint()
    }

    /// Serves until `shutdown` fires, then drains (see the module docs).
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), HelperError> {
        let connections = TaskTracker::new();
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let next_id = AtomicU64::new(1);
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                r = self.listener.accept() => r,
            };
            let stream = match accepted {
                Ok(stream) => stream,
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
                    let peer = peers.check(&stream).await;
                    serve(stream, peer, &handler, &stop).await;
                    drop(slot);
                }
                .instrument(span),
            );
        }
        self.listener.close();
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

/// Serves one connection whose caller `peer` names (or says why it is refused).
async fn serve<S, P>(
    stream: S,
    peer: Result<P, String>,
    handler: &Handler,
    stop: &CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    P: std::fmt::Debug,
{
    let max = MessageType::HelperRequest.max_frame_bytes();
    let (r, mut w) = tokio::io::split(stream);
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
    tracing::debug!(?peer, "agent connected");
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
