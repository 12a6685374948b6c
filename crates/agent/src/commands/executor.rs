//! The executor task: runs stored commands one at a time through the helper, each
//! checked first against the policy bundle in force (`super::policy`), whose hash it
//! tells the helper (`SET_POLICY`) at start-up, whenever the bundle changes, and before
//! any command the helper has not heard the current hash for.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};
use tether_proto::helper::{HelperRequest, HelperResponse, HelperStatus};
use tether_proto::messages::command::{CommandResult, ResultStatus};
use tether_proto::{Clock, ErrorCode, MessageId, TraceId};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::ledger::{Entry, Ledger, LocalState};
use super::{HelperLink, Outgoing, Reply};
use crate::error::AgentError;
use crate::identity::AgentIdentity;
use crate::policy::Bundle;
use crate::random;

/// How many helper executions a command gets: the first, and one automatic retry after
/// a kernel failure.
const MAX_TRIES: u32 = 2;
/// The TTL of a helper request envelope, seconds.
#[cfg(any(unix, windows))]
const HELPER_TTL_S: u32 = 60;

pub(super) struct Executor {
    pub(super) ledger: Arc<Ledger>,
    pub(super) helper: Option<HelperLink>,
    pub(super) identity: Arc<AgentIdentity>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) replies: mpsc::UnboundedSender<Outgoing>,
    pub(super) uploader: Option<super::artifact::Uploader>,
    /// The policy bundle in force.
    pub(super) policy: watch::Receiver<Arc<Bundle>>,
    /// This device's id (what device conditions of the policy see).
    pub(super) device_id: String,
    /// The policy hash the helper accepted from us last (none: not told in this run).
    pub(super) helper_policy: Mutex<Option<String>>,
}

/// What one helper call came to.
enum Outcome {
    /// The helper's final answer.
    #[cfg_attr(
        not(any(unix, windows)),
        allow(dead_code, reason = "no helper transport on this platform")
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
        // The helper hears the bundle in force at start-up, then at every change.
        let mut policy = self.policy.clone();
        policy.mark_changed();
        loop {
            let id = tokio::select! {
                () = shutdown.cancelled() => return,
                Ok(()) = policy.changed() => {
                    let bundle = policy.borrow_and_update().clone();
                    self.tell_helper(&bundle).await;
                    continue;
                }
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
        let now = self.clock.now();
        let result = if entry.delivery.expires_at <= now
            || entry.delivery.not_after.is_some_and(|n| n <= now)
        {
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
            let bundle = self.policy.borrow().clone();
            match self.check_policy(&entry, &bundle, now).await? {
                Some(denial) => {
                    tracing::warn!(%trace_id, command = %id, code = denial.code.number(),
                        rule = denial.rule.as_deref().unwrap_or("-"), policy_version = bundle.version,
                        reason = %denial.reason, "command denied by the local policy");
                    say!(
                        "command {id}: denied by the local policy (version {}): {} {}: {}",
                        bundle.version,
                        denial.code.number(),
                        denial.code.name(),
                        denial.reason
                    );
                    result_of(
                        &entry,
                        ResultStatus::Denied,
                        Some(denial.code),
                        &format!(
                            "denied by the local policy (version {}): {}",
                            bundle.version, denial.reason
                        ),
                        denial.result(&bundle),
                        None,
                        0,
                    )
                }
                None => {
                    self.ledger.note_run(id, now).await?;
                    self.run_through_helper(&entry, &trace_id, started, &bundle)
                        .await?
                }
            }
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

    /// The local policy's verdict on a command (`None`: go ahead).
    async fn check_policy(
        &self,
        entry: &Entry,
        bundle: &Bundle,
        now: tether_proto::UnixMillis,
    ) -> Result<Option<super::policy::Denial>, AgentError> {
        let window = super::policy::longest_rate_window_s(bundle);
        let ran = if window == 0 {
            Vec::new()
        } else {
            let since = now.saturating_sub(std::time::Duration::from_secs(u64::from(window)));
            self.ledger
                .runs_since(since, &entry.delivery.command_id.to_string())
                .await?
        };
        Ok(super::policy::check(
            bundle,
            &entry.delivery,
            &self.device_id,
            now,
            &ran,
        ))
    }

    async fn run_through_helper(
        &self,
        entry: &Entry,
        trace_id: &TraceId,
        started: Instant,
        bundle: &Bundle,
    ) -> Result<CommandResult, AgentError> {
        let id = entry.delivery.command_id.to_string();
        let mut kernel_exec_id = None;
        loop {
            let tries = self.ledger.start_try(&id).await?;
            let outcome = self.call(entry, trace_id, bundle).await?;
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
    #[cfg(any(unix, windows))]
    async fn call(
        &self,
        entry: &Entry,
        trace_id: &TraceId,
        bundle: &Bundle,
    ) -> Result<Outcome, AgentError> {
        use tether_helper::client::HelperClient;
        use tether_proto::messages::command::{CommandState, CommandStatus};

        let Some(link) = &self.helper else {
            return Ok(Outcome::NoAnswer(
                ErrorCode::HelperUnavailable,
                format!(
                    "no helper is configured (run the agent with {} and --helper-key-file)",
                    crate::config::HELPER_ENDPOINT_FLAG
                ),
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
        if !self.helper_knows(bundle) {
            // A refusal here leaves the helper on another hash: it then refuses the
            // command itself (4004), which is the answer the agent reports.
            if let Err(e) = self.set_policy(&mut client, bundle).await {
                tracing::warn!(error = %e, policy_version = bundle.version, "the helper did not take the policy");
            }
        }
        let req = self.request(entry, bundle).await?;
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

    /// Without a Unix socket or a named pipe there is no helper.
    #[cfg(not(any(unix, windows)))]
    async fn call(
        &self,
        entry: &Entry,
        _trace_id: &TraceId,
        bundle: &Bundle,
    ) -> Result<Outcome, AgentError> {
        let _ = (&self.helper, &self.identity, entry, bundle);
        Ok(Outcome::NoAnswer(
            ErrorCode::HelperUnavailable,
            "no helper transport on this platform".into(),
        ))
    }

    #[cfg_attr(not(any(unix, windows)), allow(dead_code))]
    async fn request(&self, entry: &Entry, bundle: &Bundle) -> Result<HelperRequest, AgentError> {
        Ok(HelperRequest {
            request_id: MessageId::from_random_bytes(random::bytes::<16>()),
            opcode: entry.delivery.method.opcode(),
            params: entry.delivery.params.clone(),
            agent_sequence: self.ledger.next_helper_seq().await?,
            // The bundle the command was just checked against.
            policy_hash: bundle.hash.clone(),
            command_message_id: entry.delivery.command_id.clone(),
            simulate: entry.delivery.simulate,
        })
    }

    /// Whether the helper accepted this bundle's hash from us in this run.
    #[cfg_attr(not(any(unix, windows)), allow(dead_code))]
    fn helper_knows(&self, bundle: &Bundle) -> bool {
        self.helper_policy
            .lock()
            .map(|h| h.as_deref() == Some(bundle.hash.as_str()))
            .unwrap_or(false)
    }

    /// Tells the helper the bundle in force, on a connection of its own (best effort:
    /// no helper, or one that is down, hears it before the next command).
    #[cfg(any(unix, windows))]
    async fn tell_helper(&self, bundle: &Bundle) {
        use tether_helper::client::HelperClient;
        let Some(link) = &self.helper else {
            return;
        };
        let Ok(public_key) = crate::config::read_public_key_file(&link.key_file) else {
            tracing::debug!("the helper's key is not there yet; it hears the policy later");
            return;
        };
        let client = HelperClient::connect(
            &link.socket,
            self.identity.envelope_signer(),
            public_key,
            Arc::clone(&self.clock),
        )
        .await;
        let result = match client {
            Ok(mut c) => self.set_policy(&mut c, bundle).await,
            Err(e) => Err(AgentError::Protocol(e.to_string())),
        };
        if let Err(e) = result {
            tracing::info!(error = %e, policy_version = bundle.version, "the helper did not hear the policy yet");
        }
    }

    #[cfg(not(any(unix, windows)))]
    async fn tell_helper(&self, bundle: &Bundle) {
        let _ = bundle;
    }

    /// Sends `SET_POLICY` with the bundle's version and hash, signed and sequenced like
    /// every helper request.
    #[cfg(any(unix, windows))]
    async fn set_policy(
        &self,
        client: &mut tether_helper::client::HelperClient,
        bundle: &Bundle,
    ) -> Result<(), AgentError> {
        use tether_proto::helper::Opcode;
        let id = MessageId::from_random_bytes(random::bytes::<16>());
        let req = HelperRequest {
            request_id: id.clone(),
            opcode: Opcode::SetPolicy,
            params: json!({"policy_version": bundle.version, "policy_hash": bundle.hash}),
            agent_sequence: self.ledger.next_helper_seq().await?,
            policy_hash: bundle.hash.clone(),
            command_message_id: id,
            simulate: None,
        };
        let answer = client
            .call(&req, HELPER_TTL_S, |_| {})
            .await
            .map_err(|e| AgentError::Protocol(e.to_string()))?;
        if answer.status != HelperStatus::Ok {
            let code = answer.error.unwrap_or(ErrorCode::Internal);
            return Err(AgentError::Protocol(format!(
                "the helper refused policy version {}: {} {}",
                bundle.version,
                code.number(),
                code.name()
            )));
        }
        if let Ok(mut h) = self.helper_policy.lock() {
            *h = Some(bundle.hash.clone());
        }
        tracing::info!(policy_version = bundle.version, policy_hash = %bundle.hash, "the helper has the policy in force");
        Ok(())
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
