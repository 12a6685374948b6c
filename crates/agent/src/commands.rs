//! Flow 2 on the PC: commands from the gateway, carried out through the helper.
//!
//! A `command_delivery` (already verified by the session: the gateway's signature, TTL,
//! sequence) is checked — for this device, not expired, parameters valid for its opcode —
//! then stored in the encrypted [`ledger`] and acknowledged (`command_ack` `received`).
//! The [`executor`] task runs stored commands one at a time through the helper, reports
//! `command_status` `executing` when the helper does, retries once after a kernel failure,
//! and stores the `command_result` before sending it.
//!
//! A command the ledger knows already is never run again: a redelivery is acknowledged
//! again and, if it finished, its stored result is sent again (the server redelivers
//! in-flight commands after a reconnect, which is how a result lost with a connection
//! gets through). After a crash, unfinished commands resume from the ledger; the helper
//! dedupes by command id, so one that had reached it is not executed twice.

pub mod artifact;
pub mod ledger;

mod executor;

use std::path::PathBuf;
use std::sync::Arc;

use tether_proto::messages::command::{
    AckStatus, CommandAck, CommandDelivery, CommandResult, CommandStatus,
};
use tether_proto::{Clock, ErrorCode, TraceId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::AgentError;
use crate::identity::AgentIdentity;
use crate::state::StateDir;
use ledger::{Ledger, LocalState};

/// How to reach the helper: its socket and the file of the key its answers are signed
/// with (read at each call, so the helper may be installed after the agent).
#[derive(Debug, Clone)]
pub struct HelperLink {
    /// The helper's Unix socket.
    pub socket: PathBuf,
    /// The helper's Ed25519 public key file (its `helper.pub`).
    pub key_file: PathBuf,
}

/// A frame for the session to sign and send, under the command's trace id.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `command_ack`.
    Ack(CommandAck),
    /// `command_status`.
    Status(CommandStatus),
    /// `command_result`.
    Result(Box<CommandResult>),
}

/// A reply and the trace id its frame carries.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// What to send.
    pub reply: Reply,
    /// The command's trace id.
    pub trace_id: TraceId,
}

/// The command side of the agent, shared by every session of a run.
#[derive(Debug)]
pub struct Commands {
    ledger: Arc<Ledger>,
    device_id: String,
    clock: Arc<dyn Clock>,
    jobs: mpsc::UnboundedSender<String>,
    replies: mpsc::UnboundedReceiver<Outgoing>,
    executor: tokio::task::JoinHandle<()>,
}

impl Commands {
    /// Opens the ledger, starts the executor and hands it every command a crash left
    /// unfinished.
    pub async fn start(
        state: &StateDir,
        identity: &AgentIdentity,
        device_id: &str,
        helper: Option<HelperLink>,
        uploader: Option<artifact::Uploader>,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Result<Self, AgentError> {
        let ledger = Arc::new(Ledger::open(state).await?);
        if let Err(e) = ledger.prune(clock.now()).await {
            tracing::warn!(error = %e, "old finished commands not pruned");
        }
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let (replies_tx, replies_rx) = mpsc::unbounded_channel();
        let resume = ledger.unfinished().await?;
        if !resume.is_empty() {
            say!("resuming {} unfinished commands", resume.len());
        }
        for id in resume {
            let _ = jobs_tx.send(id);
        }
        let executor = tokio::spawn(
            executor::Executor {
                ledger: Arc::clone(&ledger),
                helper,
                identity: Arc::new(AgentIdentity::from_pkcs8_der(identity.pkcs8_der())?),
                clock: Arc::clone(&clock),
                replies: replies_tx,
                uploader,
            }
            .run(jobs_rx, shutdown),
        );
        Ok(Self {
            ledger,
            device_id: device_id.to_owned(),
            clock,
            jobs: jobs_tx,
            replies: replies_rx,
            executor,
        })
    }

    /// Handles one verified `command_delivery`: what to send back right away.
    pub async fn on_delivery(&self, d: &CommandDelivery, trace_id: &TraceId) -> Vec<Outgoing> {
        let id = d.command_id.to_string();
        let reply = |reply| Outgoing {
            reply,
            trace_id: trace_id.clone(),
        };
        let reject = |code: ErrorCode| {
            tracing::warn!(%trace_id, command = %id, code = code.number(), "command refused");
            say!(
                "refused command {id} ({}): {} {}",
                method_name(d),
                code.number(),
                code.name()
            );
            vec![reply(Reply::Ack(CommandAck {
                command_id: d.command_id.clone(),
                status: AckStatus::Rejected,
                error: Some(code),
            }))]
        };
        if d.device_id != self.device_id {
            return reject(ErrorCode::Forbidden);
        }
        match self.ledger.get(&id).await {
            Ok(Some(entry)) => {
                // A redelivery: acknowledge again, resend a result we hold.
                let mut out = vec![reply(Reply::Ack(received(d)))];
                if entry.state == LocalState::Done
                    && let Some(r) = entry.result
                {
                    out.push(reply(Reply::Result(Box::new(r))));
                }
                return out;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "command ledger unreadable");
                return reject(ErrorCode::Internal);
            }
        }
        if d.expires_at <= self.clock.now() {
            return reject(ErrorCode::TtlExpired);
        }
        if d.method.opcode().parse_params(&d.params).is_err() {
            return reject(ErrorCode::InvalidParams);
        }
        match self.ledger.insert(d, trace_id.as_str()).await {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "command not stored");
                return reject(ErrorCode::Internal);
            }
        }
        say!("command {id}: {} received", method_name(d));
        let _ = self.jobs.send(id);
        vec![reply(Reply::Ack(received(d)))]
    }

    /// The next reply the executor produced.
    pub async fn next_reply(&mut self) -> Option<Outgoing> {
        self.replies.recv().await
    }

    /// Drops replies produced while no session was up: progress is stale by now, and
    /// results are sent again when the server redelivers the command.
    pub fn drop_stale_replies(&mut self) {
        while self.replies.try_recv().is_ok() {}
    }

    /// Stops the executor.
    pub async fn stop(self) {
        self.executor.abort();
        let _ = self.executor.await;
    }
}

fn received(d: &CommandDelivery) -> CommandAck {
    CommandAck {
        command_id: d.command_id.clone(),
        status: AckStatus::Received,
        error: None,
    }
}

fn method_name(d: &CommandDelivery) -> String {
    serde_json::to_value(d.method)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
