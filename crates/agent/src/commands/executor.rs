//! The executor task: runs stored commands one at a time through the helper.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use tether_proto::helper::{HelperRequest, HelperResponse, HelperStatus};
use tether_proto::messages::command::{CommandResult, ResultStatus};
use tether_proto::{Clock, ErrorCode, MessageId, TraceId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ledger::{Entry, Ledger, LocalState};
use super::{HelperLink, Outgoing, Reply};
use crate::error::AgentError;
use crate::identity::AgentIdentity;
use crate::random;

/// The policy hash sent to the helper until policy bundles arrive (the policy issue):
/// SHA-256 of the empty bundle.
const NO_POLICY_HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// How many helper executions a command gets: the first, and one automatic retry after
/// a kernel failure.
const MAX_TRIES: u32 = 2;
/// The TTL of a helper request envelope, seconds.
#[cfg(unix)]
const HELPER_TTL_S: u32 = 60;

pub(super) struct Executor {
    pub(super) ledger: Arc<Ledger>,
    pub(super) helper: Option<HelperLink>,
    pub(super) identity: Arc<AgentIdentity>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) replies: mpsc::UnboundedSender<Outgoing>,
    pub(super) uploader: Option<super::artifact::Uploader>,
}

/// What one helper call came to.
enum Outcome {
    /// The helper's final answer.
    #[cfg_attr(
        not(unix),
        allow(dead_code, reason = "no helper transport on this platform yet")
    )]
    Answer(HelperResponse),
    /// No trustworthy answer: the helper could not be reached, timed out, or answered
    /// something that did not verify.
    NoAnswer(ErrorCode, String),
}

impl Executor {
    pub(super) async fn run(
        self,
        mut jobs: mpsc::UnboundedReceiver<String>,
        shutdown: CancellationToken,
    ) {
        loop {
            let id = tokio::select! {
                () = shutdown.cancelled() => return,
                j = jobs.recv() => match j {
                    Some(id) => id,
                    None => return,
                },
            };
            if let Err(e) = self.execute(&id).await {
                tracing::warn!(command = %id, error = %e, "command execution failed");
                say!("command {id}: {e}");
            }
        }
    }

    fn send(&self, trace_id: &TraceId, reply: Reply) {
        let _ = self.replies.send(Outgoing {
            reply,
            trace_id: trace_id.clone(),
        });
    }

    async fn execute(&self, id: &str) -> Result<(), AgentError> {
        let Some(entry) = self.ledger.get(id).await? else {
            return Ok(());
        };
        let trace_id = TraceId::parse(&entry.trace_id)
            .unwrap_or_else(|_| TraceId::from_random_bytes(random::bytes::<16>()));
        if entry.state == LocalState::Done {
            if let Some(r) = entry.result {
                self.send(&trace_id, Reply::Result(Box::new(r)));
            }
            return Ok(());
        }
        let started = Instant::now();
        let result = if entry.delivery.expires_at <= self.clock.now() {
            result_of(
                &entry,
                ResultStatus::Expired,
                Some(ErrorCode::TtlExpired),
                "the command expired before it could run",
                json!({}),
                None,
                0,
            )
        } else {
            self.run_through_helper(&entry, &trace_id, started).await?
        };
        self.ledger.finish(id, &result).await?;
        say!(
            "command {id}: {} {}",
            match result.status {
                ResultStatus::Ok => "ok",
                ResultStatus::Failed => "failed",
                ResultStatus::Denied => "denied",
                ResultStatus::Expired => "expired",
            },
            result
                .error
                .map(|e| format!("({} {})", e.number(), e.name()))
                .unwrap_or_default()
        );
        self.send(&trace_id, Reply::Result(Box::new(result)));
        Ok(())
    }

    async fn run_through_helper(
        &self,
        entry: &Entry,
        trace_id: &TraceId,
        started: Instant,
    ) -> Result<CommandResult, AgentError> {
        let id = entry.delivery.command_id.to_string();
        let mut kernel_exec_id = None;
        loop {
            let tries = self.ledger.start_try(&id).await?;
            let outcome = self.call(entry, trace_id).await?;
            let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let resp = match outcome {
                Outcome::NoAnswer(code, why) => {
                    return Ok(result_of(
                        entry,
                        ResultStatus::Failed,
                        Some(code),
                        &why,
                        json!({}),
                        kernel_exec_id,
                        elapsed,
                    ));
                }
                Outcome::Answer(r) => r,
            };
            kernel_exec_id = resp.kernel_exec_id.clone().or(kernel_exec_id);
            match resp.status {
                HelperStatus::Ok | HelperStatus::Executing => {
                    let uploaded = match &self.uploader {
                        Some(u) => u.upload_if_any(&id, resp.result).await,
                        None => Ok((None, resp.result)),
                    };
                    return Ok(match uploaded {
                        Ok((artifact, result)) => {
                            let mut r = result_of(
                                entry,
                                ResultStatus::Ok,
                                None,
                                "done",
                                result,
                                kernel_exec_id,
                                elapsed,
                            );
                            r.artifact = artifact;
                            r
                        }
                        Err((code, why)) => result_of(
                            entry,
                            ResultStatus::Failed,
                            Some(code),
                            &why,
                            json!({}),
                            kernel_exec_id,
                            elapsed,
                        ),
                    });
                }
                HelperStatus::Failed
                    if resp.error == Some(ErrorCode::KernelFailure) && tries < MAX_TRIES =>
                {
                    tracing::warn!(%trace_id, command = %id, "kernel failure; retrying once");
                    say!("command {id}: kernel failure, retrying once");
                }
                HelperStatus::Failed => {
                    return Ok(result_of(
                        entry,
                        ResultStatus::Failed,
                        resp.error.or(Some(ErrorCode::KernelFailure)),
                        if tries >= MAX_TRIES {
                            "the helper failed again after one retry"
                        } else {
                            "the helper failed"
                        },
                        resp.result,
                        kernel_exec_id,
                        elapsed,
                    ));
                }
                HelperStatus::Denied => {
                    return Ok(result_of(
                        entry,
                        ResultStatus::Denied,
                        resp.error.or(Some(ErrorCode::OpcodeNotAllowed)),
                        "the helper refused the operation",
                        resp.result,
                        kernel_exec_id,
                        elapsed,
                    ));
                }
            }
        }
    }

    /// One helper call, reporting `executing` as soon as the helper does.
    #[cfg(unix)]
    async fn call(&self, entry: &Entry, trace_id: &TraceId) -> Result<Outcome, AgentError> {
        use tether_helper::client::HelperClient;
        use tether_proto::messages::command::{CommandState, CommandStatus};

        let Some(link) = &self.helper else {
            return Ok(Outcome::NoAnswer(
                ErrorCode::HelperUnavailable,
                "no helper is configured (run the agent with --helper-socket and \
                 --helper-key-file)"
                    .into(),
            ));
        };
        let public_key = match crate::config::read_public_key_file(&link.key_file) {
            Ok(k) => k,
            Err(e) => {
                return Ok(Outcome::NoAnswer(
                    ErrorCode::HelperUnavailable,
                    e.to_string(),
                ));
            }
        };
        let req = self.request(entry).await?;
        let mut client = match HelperClient::connect(
            &link.socket,
            self.identity.envelope_signer(),
            public_key,
            Arc::clone(&self.clock),
        )
        .await
        {
            Ok(c) => c,
            Err(e) => return Ok(Outcome::NoAnswer(e.code(), e.to_string())),
        };
        let command_id = entry.delivery.command_id.clone();
        let replies = self.replies.clone();
        let tid = trace_id.clone();
        let answer = client
            .call_traced(&req, HELPER_TTL_S, trace_id.clone(), move |executing| {
                let _ = replies.send(Outgoing {
                    reply: Reply::Status(CommandStatus {
                        command_id: command_id.clone(),
                        state: CommandState::Executing,
                        kernel_exec_id: executing.kernel_exec_id.clone(),
                    }),
                    trace_id: tid.clone(),
                });
            })
            .await;
        Ok(match answer {
            Ok(r) => Outcome::Answer(r),
            Err(e) => Outcome::NoAnswer(e.code(), e.to_string()),
        })
    }

    /// Without a Unix socket (Windows, until the named pipe arrives) there is no helper.
    #[cfg(not(unix))]
    async fn call(&self, entry: &Entry, _trace_id: &TraceId) -> Result<Outcome, AgentError> {
        let _ = (&self.helper, &self.identity, entry);
        Ok(Outcome::NoAnswer(
            ErrorCode::HelperUnavailable,
            "the helper's named pipe is not supported on this platform yet".into(),
        ))
    }

    #[cfg_attr(not(unix), allow(dead_code))]
    async fn request(&self, entry: &Entry) -> Result<HelperRequest, AgentError> {
        Ok(HelperRequest {
            request_id: MessageId::from_random_bytes(random::bytes::<16>()),
            opcode: entry.delivery.method.opcode(),
            params: entry.delivery.params.clone(),
            agent_sequence: self.ledger.next_helper_seq().await?,
            policy_hash: NO_POLICY_HASH.to_owned(),
            command_message_id: entry.delivery.command_id.clone(),
            simulate: entry.delivery.simulate,
        })
    }
}

fn result_of(
    entry: &Entry,
    status: ResultStatus,
    error: Option<ErrorCode>,
    notes: &str,
    result: Value,
    kernel_exec_id: Option<String>,
    duration_ms: u64,
) -> CommandResult {
    let result = if result.is_object() {
        result
    } else {
        json!({})
    };
    CommandResult {
        command_id: entry.delivery.command_id.clone(),
        status,
        error: if status == ResultStatus::Ok {
            None
        } else {
            error
        },
        notes: notes.chars().take(1024).collect(),
        result,
        artifact: None,
        kernel_exec_id,
        duration_ms,
    }
}
