//! What the agent uses to call the helper over its Unix socket or, on Windows, its named
//! pipe (the same protocol on both; a busy pipe is retried for [`PIPE_BUSY_WAIT`]).
//!
//! ```no_run
//! # async fn demo(agent_key: ed25519_dalek::SigningKey, req: tether_proto::helper::HelperRequest)
//! # -> Result<(), tether_helper::HelperError> {
//! use std::path::Path;
//! use std::sync::Arc;
//! use tether_helper::client::HelperClient;
//! use tether_helper::keys::read_public_key_file;
//! use tether_proto::{EnvelopeSigner, SystemClock};
//!
//! let helper_key = read_public_key_file(Path::new("/var/lib/tether-helper/helper.pub"))?;
//! let mut helper = HelperClient::connect(
//!     Path::new("/run/tether/helper.sock"),
//!     EnvelopeSigner::new(agent_key),
//!     helper_key,
//!     Arc::new(SystemClock),
//! )
//! .await?;
//! let answer = helper.call(&req, 60, |executing| {
//!     println!("running as {:?}", executing.kernel_exec_id);
//! })
//! .await?;
//! println!("{:?} {:?}", answer.status, answer.error);
//! # Ok(()) }
//! ```
//!
//! A call signs the request (envelope `seq` = `agent_sequence`, `message_id` =
//! `request_id`), writes it as one line, and reads responses until a final one
//! (`ok`, `failed`, `denied`); `executing` responses go to the callback. Every response must
//! verify with the helper's key, be a `helper_response` for this `request_id`, and carry a
//! `seq` above the previous response's. A `denied` or `failed` answer is an `Ok` result:
//! it is the helper's verdict. Errors are for when no trustworthy verdict arrived; after
//! one the connection is not used again (connect anew).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use tether_proto::helper::{HelperRequest, HelperResponse, HelperStatus};
use tether_proto::{
    Clock, EnvelopeSigner, KeyId, MessageType, ProtoError, Stamp, StaticKeys, TraceId, Verifier,
};
use tokio::io::{AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
#[cfg(unix)]
use tokio::net::UnixStream as Stream;
#[cfg(windows)]
use tokio::net::windows::named_pipe::NamedPipeClient as Stream;

use crate::error::HelperError;
use crate::framing::{Frame, read_frame, with_newline};
use crate::random;

/// How long to wait for the first response to a request by default.
pub const DEFAULT_FIRST_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the final response after `executing` by default (the system
/// executor's longest tool limit is 120 s).
pub const DEFAULT_FINAL_RESPONSE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a connect waits for a free instance while every instance of the helper's pipe
/// is busy (Windows).
pub const PIPE_BUSY_WAIT: Duration = Duration::from_secs(5);

/// A connection to the helper.
#[derive(Debug)]
pub struct HelperClient {
    reader: BufReader<ReadHalf<Stream>>,
    writer: WriteHalf<Stream>,
    signer: EnvelopeSigner,
    helper_keys: StaticKeys,
    clock: Arc<dyn Clock>,
    last_response_seq: Option<u64>,
    first_timeout: Duration,
    final_timeout: Duration,
    broken: bool,
}

impl HelperClient {
    /// Connects to the helper: `endpoint` is its socket's path (Unix) or its pipe's name
    /// (Windows, `\\.\pipe\…`). `signer` holds the agent key; `helper_public_key` is the
    /// content of the helper's `helper.pub`.
    pub async fn connect(
        endpoint: &Path,
        signer: EnvelopeSigner,
        helper_public_key: [u8; 32],
        clock: Arc<dyn Clock>,
    ) -> Result<Self, HelperError> {
        let key = VerifyingKey::from_bytes(&helper_public_key).map_err(|_| {
            HelperError::Config("the helper key is not a valid Ed25519 public key".into())
        })?;
        let mut helper_keys = StaticKeys::new();
        helper_keys.insert(KeyId::for_ed25519(&helper_public_key), key);
        let stream = open(endpoint)
            .await
            .map_err(|e| HelperError::Unavailable(format!("{}: {e}", endpoint.display())))?;
        let (r, writer) = tokio::io::split(stream);
        Ok(Self {
            reader: BufReader::new(r),
            writer,
            signer,
            helper_keys,
            clock,
            last_response_seq: None,
            first_timeout: DEFAULT_FIRST_RESPONSE_TIMEOUT,
            final_timeout: DEFAULT_FINAL_RESPONSE_TIMEOUT,
            broken: false,
        })
    }

    /// Sets how long to wait for the first response and, after `executing`, for the final
    /// one.
    pub fn with_timeouts(mut self, first: Duration, after_executing: Duration) -> Self {
        self.first_timeout = first;
        self.final_timeout = after_executing;
        self
    }

    /// Sends a request with a fresh trace id and returns the final response.
    pub async fn call(
        &mut self,
        req: &HelperRequest,
        ttl_s: u32,
        on_executing: impl FnMut(&HelperResponse),
    ) -> Result<HelperResponse, HelperError> {
        self.call_traced(req, ttl_s, random::trace_id(), on_executing)
            .await
    }

    /// Sends a request under the trace id of the command it carries out.
    pub async fn call_traced(
        &mut self,
        req: &HelperRequest,
        ttl_s: u32,
        trace_id: TraceId,
        mut on_executing: impl FnMut(&HelperResponse),
    ) -> Result<HelperResponse, HelperError> {
        if self.broken {
            return Err(HelperError::Unavailable(
                "this connection failed earlier; connect again".into(),
            ));
        }
        let result = self.exchange(req, ttl_s, trace_id, &mut on_executing).await;
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    async fn exchange(
        &mut self,
        req: &HelperRequest,
        ttl_s: u32,
        trace_id: TraceId,
        on_executing: &mut impl FnMut(&HelperResponse),
    ) -> Result<HelperResponse, HelperError> {
        let stamp = Stamp {
            iat: self.clock.now(),
            ttl: ttl_s,
            seq: req.agent_sequence,
            message_id: req.request_id.clone(),
            trace_id,
        };
        let frame = self.signer.seal(stamp, req)?;
        self.writer
            .write_all(&with_newline(frame))
            .await
            .map_err(|e| HelperError::Unavailable(format!("sending the request: {e}")))?;
        let mut executing = false;
        loop {
            let waited = if executing {
                self.final_timeout
            } else {
                self.first_timeout
            };
            let resp = tokio::time::timeout(waited, self.read_response())
                .await
                .map_err(|_| HelperError::Timeout { waited, executing })??;
            if resp.request_id != req.request_id {
                return Err(HelperError::UnexpectedResponse(format!(
                    "an answer to request {} while waiting for {}",
                    resp.request_id, req.request_id
                )));
            }
            if resp.status == HelperStatus::Executing {
                executing = true;
                on_executing(&resp);
                continue;
            }
            return Ok(resp);
        }
    }

    async fn read_response(&mut self) -> Result<HelperResponse, HelperError> {
        let max = MessageType::HelperResponse.max_frame_bytes();
        let line = match read_frame(&mut self.reader, max).await {
            Ok(Frame::Line(l)) => l,
            Ok(Frame::Eof) => {
                return Err(HelperError::Unavailable(
                    "the helper closed the connection".into(),
                ));
            }
            Ok(Frame::TooLong) => return Err(HelperError::LineTooLong { limit: max }),
            Err(e) => return Err(HelperError::Unavailable(format!("reading a response: {e}"))),
        };
        let verified = Verifier::new(&self.helper_keys, &*self.clock)
            .verify(&line)
            .map_err(HelperError::BadResponse)?;
        let seq = verified.header.seq;
        if let Some(last) = self.last_response_seq
            && seq <= last
        {
            return Err(HelperError::BadResponse(ProtoError::SequenceReplay {
                seq,
                last,
            }));
        }
        let resp: HelperResponse = verified
            .into_body()
            .map_err(|e| HelperError::UnexpectedResponse(format!("not a helper_response: {e}")))?;
        self.last_response_seq = Some(seq);
        Ok(resp)
    }
}

#[cfg(unix)]
async fn open(socket: &Path) -> std::io::Result<Stream> {
    Stream::connect(socket).await
}

/// Opens the pipe; while all its instances are busy (`ERROR_PIPE_BUSY`), tries again
/// every 50 ms for up to [`PIPE_BUSY_WAIT`] (the helper makes a new instance for each
/// connection, so busy is brief).
#[cfg(windows)]
async fn open(pipe: &Path) -> std::io::Result<Stream> {
    use tokio::net::windows::named_pipe::ClientOptions;
    // ERROR_PIPE_BUSY (winerror.h): every instance is connected to another client.
    const ERROR_PIPE_BUSY: i32 = 231;
    const STEP: Duration = Duration::from_millis(50);
    let mut waited = Duration::ZERO;
    loop {
        match ClientOptions::new().open(pipe) {
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) && waited < PIPE_BUSY_WAIT => {
                tokio::time::sleep(STEP).await;
                waited = waited.saturating_add(STEP);
            }
            other => return other,
        }
    }
}
