//! One request, from its bytes to its responses. Transport-free: the server hands it a
//! line and a writer.
//!
//! The checks run in this order, and the first that fails answers `denied` with its code
//! (nothing is executed, a warning is logged with the request and command ids):
//!
//! 1. the envelope (`Verifier::verify`: shape, canonical form, the agent's key, signature,
//!    header, time, body) — its own code (1001, 2001, 2002, 2004, 2005, 1005, …); a body
//!    that is fine except for the opcode's params passes on to step 4;
//! 2. the type is `helper_request` (1006) and `header.seq` equals `agent_sequence` (1005);
//! 3. `agent_sequence` is above the last accepted one (2006); the new mark is on disk
//!    before anything else happens;
//! 4. `SET_POLICY` is not a command: its params are checked (6004) and the policy is
//!    taken unless it is older than the one in force (4006; see `crate::policy`), and
//!    that is the answer. For a command: its `policy_hash` is the one in force (4004);
//! 5. the params are valid for the opcode (6004);
//! 6. the executor runs the opcode and the simulation (6003);
//! 7. the ledger: a command asked for before with other content (5008), one that already
//!    ended (its stored answer, `"duplicate": true`), one still running (wait for it).
//!
//! Refusals at steps 4–6 of a command become its final answer in the ledger.

use std::io;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use tether_proto::canonical::canonicalize;
use tether_proto::helper::{HelperRequest, HelperResponse, HelperStatus, OpParams, Opcode};
use tether_proto::ids::{is_sha256_hex, sha256_hex};
use tether_proto::{
    Clock, Header, MessageId, MessageType, ProtoError, StaticKeys, TraceId, Verifier,
};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::error::HelperError;
use crate::executor::{Executor, Job};
use crate::framing::with_newline;
use crate::ledger::{Begin, FinalAnswer, Ledger, RequestFacts, refusal};
use crate::policy::PolicyInForce;
use crate::respond::{Responder, unverified_request_id};

/// Whether a line was answered normally or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handled {
    /// Executed, or answered from the ledger.
    Answered,
    /// Refused before the ledger was asked.
    Refused,
}

/// A refusal before the ledger, with what is known of the request.
#[derive(Debug)]
struct Refusal {
    request_id: MessageId,
    command_message_id: Option<MessageId>,
    trace_id: Option<TraceId>,
    error: HelperError,
}

/// A request that passed steps 1–3.
#[derive(Debug)]
struct Admitted {
    header: Header,
    req: HelperRequest,
    params: Result<OpParams, ProtoError>,
}

/// Checks, executes and answers requests.
#[derive(Debug)]
pub(crate) struct Handler {
    agent_keys: StaticKeys,
    clock: Arc<dyn Clock>,
    responder: Responder,
    ledger: Arc<Ledger>,
    executor: Arc<dyn Executor>,
    executions: TaskTracker,
}

impl Handler {
    pub(crate) fn new(
        agent_keys: StaticKeys,
        clock: Arc<dyn Clock>,
        responder: Responder,
        ledger: Arc<Ledger>,
        executor: Arc<dyn Executor>,
        executions: TaskTracker,
    ) -> Self {
        Self {
            agent_keys,
            clock,
            responder,
            ledger,
            executor,
            executions,
        }
    }

    /// Answers one line. Only write errors are returned.
    pub(crate) async fn handle<W: AsyncWrite + Unpin>(
        &self,
        frame: &[u8],
        out: &mut W,
    ) -> io::Result<Handled> {
        match self.admit(frame).await {
            Ok(a) => self.run(a, out).await.map(|()| Handled::Answered),
            Err(r) => {
                self.refuse(r, out).await?;
                Ok(Handled::Refused)
            }
        }
    }

    /// Answers `denied` with `error` to a frame that cannot be attributed (too long, or
    /// from a caller that is not the agent).
    pub(crate) async fn refuse_frame<W: AsyncWrite + Unpin>(
        &self,
        frame: Option<&[u8]>,
        error: HelperError,
        out: &mut W,
    ) -> io::Result<()> {
        let request_id = frame
            .map(unverified_request_id)
            .unwrap_or_else(crate::respond::nil_request_id);
        let r = Refusal {
            request_id,
            command_message_id: None,
            trace_id: None,
            error,
        };
        self.refuse(r, out).await
    }

    async fn admit(&self, frame: &[u8]) -> Result<Admitted, Refusal> {
        let unverified = |error: HelperError| Refusal {
            request_id: unverified_request_id(frame),
            command_message_id: None,
            trace_id: None,
            error,
        };
        let verifier = Verifier::new(&self.agent_keys, &*self.clock);
        let (header, req, params) = match verifier.verify(frame) {
            Ok(v) => {
                let header = v.header.clone();
                let req: HelperRequest = v.into_body().map_err(|e| unverified(e.into()))?;
                let params = req.opcode.parse_params(&req.params);
                (header, req, params)
            }
            Err(ProtoError::InvalidField { field, reason }) if field.starts_with("body.params") => {
                // Checks 1–7 passed (signature and time included); only the opcode's
                // params failed, which is 6004 for the helper and comes after the
                // sequence check.
                let e = ProtoError::InvalidField { field, reason };
                match decode_with_bad_params(frame) {
                    Some((header, req)) => (header, req, Err(e)),
                    None => return Err(unverified(e.into())),
                }
            }
            Err(e) => return Err(unverified(e.into())),
        };
        let known = |error: HelperError| Refusal {
            request_id: req.request_id.clone(),
            command_message_id: Some(req.command_message_id.clone()),
            trace_id: Some(header.trace_id.clone()),
            error,
        };
        if header.seq != req.agent_sequence {
            return Err(known(
                ProtoError::InvalidField {
                    field: "header.seq",
                    reason: "must equal body.agent_sequence on the helper link".into(),
                }
                .into(),
            ));
        }
        let ledger = Arc::clone(&self.ledger);
        let seq = req.agent_sequence;
        let accepted = tokio::task::spawn_blocking(move || ledger.accept_sequence(seq))
            .await
            .map_err(|e| HelperError::Kernel(format!("sequence check task failed: {e}")))
            .and_then(|r| r);
        if let Err(e) = accepted {
            return Err(known(e));
        }
        Ok(Admitted {
            header,
            req,
            params,
        })
    }

    async fn run<W: AsyncWrite + Unpin>(&self, a: Admitted, out: &mut W) -> io::Result<()> {
        let Admitted {
            header,
            req,
            params,
        } = a;
        if req.opcode == Opcode::SetPolicy {
            return self.set_policy(&header, &req, params, out).await;
        }
        let trace = Some(&header.trace_id);
        let precheck = self
            .ledger
            .policy()
            .check(&req.policy_hash)
            .and_then(|()| {
                params.map_err(|e| HelperError::InvalidParams {
                    opcode: req.opcode.name(),
                    reason: e.to_string(),
                })
            })
            .and_then(|p| self.executor.check(req.opcode, req.simulate).map(|()| p));
        let facts = RequestFacts {
            command_message_id: req.command_message_id.clone(),
            request_id: req.request_id.clone(),
            fingerprint: fingerprint(&req),
        };
        let ledger = Arc::clone(&self.ledger);
        let at = self.clock.now();
        let facts2 = facts.clone();
        let begin = tokio::task::spawn_blocking(move || ledger.begin(&facts2, precheck, at))
            .await
            .map_err(|e| HelperError::Kernel(format!("ledger task failed: {e}")))
            .and_then(|r| r);
        let span_ids = (&req.request_id, &req.command_message_id);
        match begin {
            Err(e) => {
                // Nothing was recorded, so nothing runs: the agent may ask again.
                tracing::error!(request_id = %span_ids.0, command_message_id = %span_ids.1, error = %e, "cannot record the request");
                let answer = FinalAnswer {
                    status: HelperStatus::Failed,
                    ..refusal(&e)
                };
                self.send_final(&req.request_id, answer, false, trace, out)
                    .await
            }
            Ok(Begin::Refuse(answer)) => {
                log_refusal(&req.request_id, Some(&req.command_message_id), &answer);
                self.send_final(&req.request_id, answer, false, trace, out)
                    .await
            }
            Ok(Begin::Answer(answer)) => {
                tracing::info!(request_id = %span_ids.0, command_message_id = %span_ids.1, status = ?answer.status, "command already ended; answering from the ledger");
                self.send_final(&req.request_id, answer, true, trace, out)
                    .await
            }
            Ok(Begin::Wait {
                kernel_exec_id,
                done,
            }) => {
                tracing::info!(request_id = %span_ids.0, command_message_id = %span_ids.1, kernel_exec_id, "command still running; waiting for it");
                self.send_executing(&req.request_id, &kernel_exec_id, true, trace, out)
                    .await?;
                let answer = wait(done, &kernel_exec_id).await;
                self.send_final(&req.request_id, answer, true, trace, out)
                    .await
            }
            Ok(Begin::Execute {
                kernel_exec_id,
                done,
                checked: params,
            }) => {
                tracing::info!(request_id = %span_ids.0, command_message_id = %span_ids.1, kernel_exec_id, opcode = req.opcode.name(), number = req.opcode.number(), executor = self.executor.name(), "executing");
                let job = Job {
                    request_id: req.request_id.clone(),
                    command_message_id: req.command_message_id.clone(),
                    kernel_exec_id: kernel_exec_id.clone(),
                    opcode: req.opcode,
                    params,
                    raw_params: req.params.clone(),
                    simulate: req.simulate,
                    accepted_at: at,
                };
                self.spawn_execution(job);
                // The execution runs on its own task: a caller that hangs up does not stop
                // it, and its answer lands in the ledger for the next request.
                self.send_executing(&req.request_id, &kernel_exec_id, false, trace, out)
                    .await?;
                let answer = wait(done, &kernel_exec_id).await;
                self.send_final(&req.request_id, answer, false, trace, out)
                    .await
            }
        }
    }

    /// `SET_POLICY`: takes the agent's policy in force (persisted before the answer) or
    /// refuses an older one (4006). Not a command: nothing is journaled or executed.
    async fn set_policy<W: AsyncWrite + Unpin>(
        &self,
        header: &Header,
        req: &HelperRequest,
        params: Result<OpParams, ProtoError>,
        out: &mut W,
    ) -> io::Result<()> {
        let taken = match params {
            Ok(OpParams::SetPolicy(p)) => {
                let new = PolicyInForce {
                    policy_version: p.policy_version,
                    policy_hash: p.policy_hash,
                };
                let ledger = Arc::clone(&self.ledger);
                let to_set = new.clone();
                tokio::task::spawn_blocking(move || ledger.policy().set(to_set))
                    .await
                    .map_err(|e| HelperError::Kernel(format!("policy task failed: {e}")))
                    .and_then(|r| r)
                    .map(|()| new)
            }
            Ok(_) => Err(HelperError::InvalidParams {
                opcode: req.opcode.name(),
                reason: "not SET_POLICY params".into(),
            }),
            Err(e) => Err(HelperError::InvalidParams {
                opcode: req.opcode.name(),
                reason: e.to_string(),
            }),
        };
        let answer = match taken {
            Ok(p) => {
                tracing::info!(request_id = %req.request_id, policy_version = p.policy_version,
                    policy_hash = %p.policy_hash, "the agent's policy in force");
                FinalAnswer {
                    status: HelperStatus::Ok,
                    kernel_exec_id: None,
                    error: None,
                    result: json!({"policy_version": p.policy_version, "policy_hash": p.policy_hash}),
                }
            }
            Err(e) => {
                let mut answer = refusal(&e);
                if matches!(e, HelperError::Io { .. } | HelperError::Kernel(_)) {
                    answer.status = HelperStatus::Failed;
                }
                log_refusal(&req.request_id, None, &answer);
                answer
            }
        };
        self.send_final(&req.request_id, answer, false, Some(&header.trace_id), out)
            .await
    }

    fn spawn_execution(&self, job: Job) {
        let executor = Arc::clone(&self.executor);
        let ledger = Arc::clone(&self.ledger);
        let clock = Arc::clone(&self.clock);
        self.executions.spawn(async move {
            let kernel_exec_id = job.kernel_exec_id.clone();
            let command = job.command_message_id.clone();
            let request_id = job.request_id.clone();
            // Its own task, so even a panicking executor ends in a recorded answer.
            let run = tokio::spawn(async move { executor.execute(&job).await });
            let outcome = run
                .await
                .unwrap_or_else(|e| Err(HelperError::Kernel(format!("the execution task failed: {e}"))));
            let answer = match outcome {
                Ok(result) if result.is_object() => FinalAnswer {
                    status: HelperStatus::Ok,
                    kernel_exec_id: Some(kernel_exec_id.clone()),
                    error: None,
                    result,
                },
                Ok(other) => FinalAnswer {
                    status: HelperStatus::Ok,
                    kernel_exec_id: Some(kernel_exec_id.clone()),
                    error: None,
                    result: json!({ "value": other }),
                },
                Err(e) => {
                    let status = match e {
                        HelperError::OpcodeNotAllowed { .. } | HelperError::InvalidParams { .. } => {
                            HelperStatus::Denied
                        }
                        _ => HelperStatus::Failed,
                    };
                    FinalAnswer {
                        status,
                        kernel_exec_id: Some(kernel_exec_id.clone()),
                        error: Some(e.code()),
                        result: json!({ "message": e.to_string() }),
                    }
                }
            };
            match answer.error {
                None => tracing::info!(%request_id, command_message_id = %command, kernel_exec_id, "executed"),
                Some(code) => tracing::warn!(%request_id, command_message_id = %command, kernel_exec_id, code = code.number(), status = ?answer.status, message = %message_of(&answer), "execution did not succeed"),
            }
            let at = clock.now();
            let finished = tokio::task::spawn_blocking(move || ledger.finish(&command, answer, at)).await;
            if let Err(e) = finished {
                tracing::error!(kernel_exec_id, error = %e, "cannot record the end of an execution");
            }
        });
    }

    async fn refuse<W: AsyncWrite + Unpin>(&self, r: Refusal, out: &mut W) -> io::Result<()> {
        let mut answer = refusal(&r.error);
        if matches!(r.error, HelperError::Io { .. } | HelperError::Kernel(_)) {
            // Our own trouble (the sequence mark could not be written), not the request's.
            answer.status = HelperStatus::Failed;
        }
        log_refusal(&r.request_id, r.command_message_id.as_ref(), &answer);
        self.send_final(&r.request_id, answer, false, r.trace_id.as_ref(), out)
            .await
    }

    async fn send_executing<W: AsyncWrite + Unpin>(
        &self,
        request_id: &MessageId,
        kernel_exec_id: &str,
        duplicate: bool,
        trace: Option<&TraceId>,
        out: &mut W,
    ) -> io::Result<()> {
        let result = if duplicate {
            json!({ "duplicate": true })
        } else {
            json!({})
        };
        let resp = HelperResponse {
            request_id: request_id.clone(),
            status: HelperStatus::Executing,
            kernel_exec_id: Some(kernel_exec_id.to_owned()),
            error: None,
            result,
        };
        self.send(&resp, trace, out).await
    }

    async fn send_final<W: AsyncWrite + Unpin>(
        &self,
        request_id: &MessageId,
        answer: FinalAnswer,
        duplicate: bool,
        trace: Option<&TraceId>,
        out: &mut W,
    ) -> io::Result<()> {
        let mut result = answer.result;
        if duplicate && let Some(o) = result.as_object_mut() {
            o.insert("duplicate".into(), Value::Bool(true));
        }
        let resp = HelperResponse {
            request_id: request_id.clone(),
            status: answer.status,
            kernel_exec_id: answer.kernel_exec_id,
            error: answer.error,
            result,
        };
        self.send(&resp, trace, out).await
    }

    async fn send<W: AsyncWrite + Unpin>(
        &self,
        resp: &HelperResponse,
        trace: Option<&TraceId>,
        out: &mut W,
    ) -> io::Result<()> {
        let Some(frame) = self.responder.seal(resp, trace) else {
            return Err(io::Error::other("cannot sign a response"));
        };
        out.write_all(&with_newline(frame)).await?;
        out.flush().await
    }
}

fn log_refusal(request_id: &MessageId, command: Option<&MessageId>, answer: &FinalAnswer) {
    let code = answer.error.map_or(0, |c| c.number());
    let command = command.map(ToString::to_string).unwrap_or_default();
    tracing::warn!(%request_id, command_message_id = %command, code, status = ?answer.status, reason = %message_of(answer), "request refused");
}

fn message_of(answer: &FinalAnswer) -> &str {
    answer
        .result
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

async fn wait(mut done: watch::Receiver<Option<FinalAnswer>>, kernel_exec_id: &str) -> FinalAnswer {
    match done.wait_for(Option::is_some).await {
        Ok(v) => v.clone().unwrap_or_else(|| lost(kernel_exec_id)),
        Err(_) => lost(kernel_exec_id),
    }
}

fn lost(kernel_exec_id: &str) -> FinalAnswer {
    FinalAnswer {
        status: HelperStatus::Failed,
        kernel_exec_id: Some(kernel_exec_id.to_owned()),
        error: Some(tether_proto::ErrorCode::KernelFailure),
        result: json!({ "message": "the execution ended without an answer" }),
    }
}

/// SHA-256 of the canonical `{opcode, params, simulate}`.
fn fingerprint(req: &HelperRequest) -> String {
    let v = json!({ "opcode": req.opcode, "params": req.params, "simulate": req.simulate });
    // params already passed the envelope's canonical check; the fallback only avoids a panic.
    let text = canonicalize(&v).unwrap_or_else(|_| v.to_string());
    sha256_hex(text.as_bytes())
}

/// The header and body of a verified frame whose only fault is the opcode's params: the
/// rest of check 8 (body shape, policy hash, one spelling) is applied here.
fn decode_with_bad_params(frame: &[u8]) -> Option<(Header, HelperRequest)> {
    let v: Value = serde_json::from_slice(frame).ok()?;
    let header = Header::deserialize(v.get("header")?).ok()?;
    if header.msg_type != MessageType::HelperRequest {
        return None;
    }
    let body = v.get("body")?;
    let req = HelperRequest::deserialize(body).ok()?;
    if !is_sha256_hex(&req.policy_hash) {
        return None;
    }
    let again = serde_json::to_value(&req).ok()?;
    (canonicalize(&again).ok()? == canonicalize(body).ok()?).then_some((header, req))
}

#[cfg(test)]
mod tests;
