//! Flow 2 on the PC: commands from the gateway, carried out through the helper.
//!
//! A `command_delivery` (already verified by the session: the gateway's signature, TTL,
//! sequence) is checked — for this device, not expired, signed by a pinned owner key
//! ([`crate::owner`]: the server's signature alone never suffices), parameters valid for
//! its opcode — then stored in the encrypted [`ledger`] and acknowledged (`command_ack`
//! `received`). A command without a valid owner signature is refused with
//! `2011 OWNER_SIGNATURE_INVALID`: nothing is stored and the helper is never called.
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
mod policy;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tether_proto::messages::command::{
    AckStatus, CommandAck, CommandDelivery, CommandResult, CommandStatus,
};
use tether_proto::messages::discovery::OwnerKey;
use tether_proto::owner_sig::{OwnerKeysUpdate, command_statement};
use tether_proto::{Clock, ErrorCode, TraceId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::AgentError;
use crate::identity::AgentIdentity;
use crate::owner::{KeysRefusal, OwnerSigError, OwnerTrust};
use crate::state::StateDir;
use ledger::{Ledger, LocalState};

/// How to reach the helper: its socket and the file of the key its answers are signed
/// with (read at each call, so the helper may be installed after the agent).
#[derive(Debug, Clone)]
pub struct HelperLink {
    /// The helper's Unix socket, or on Windows its named pipe's name.
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
    state: StateDir,
    device_id: String,
    owner: RwLock<OwnerTrust>,
    clock: Arc<dyn Clock>,
    jobs: mpsc::UnboundedSender<String>,
    replies: mpsc::UnboundedReceiver<Outgoing>,
    executor: tokio::task::JoinHandle<()>,
    /// The policy bundle in force (flow 7), checked before every helper call.
    policy: crate::policy::LocalPolicy,
}

impl Commands {
    /// Opens the ledger, starts the executor and hands it every command a crash left
    /// unfinished. `owner` holds the owner keys pinned for the device.
    #[allow(
        clippy::too_many_arguments,
        reason = "each is a distinct input of the run"
    )]
    pub async fn start(
        state: &StateDir,
        identity: &AgentIdentity,
        device_id: &str,
        owner: OwnerTrust,
        helper: Option<HelperLink>,
        uploader: Option<artifact::Uploader>,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Result<Self, AgentError> {
        let ledger = Arc::new(Ledger::open(state).await?);
        let policy = crate::policy::LocalPolicy::open(state)?;
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
                policy: policy.subscribe(),
                device_id: device_id.to_owned(),
                helper_policy: std::sync::Mutex::new(None),
            }
            .run(jobs_rx, shutdown),
        );
        Ok(Self {
            ledger,
            state: state.clone(),
            device_id: device_id.to_owned(),
            owner: RwLock::new(owner),
            clock,
            jobs: jobs_tx,
            replies: replies_rx,
            executor,
            policy,
        })
    }

    /// The policy bundle in force on this PC, which `policy_update` frames replace.
    pub fn policy(&self) -> &crate::policy::LocalPolicy {
        &self.policy
    }

    /// Handles one verified `command_delivery`: what to send back right away.
    pub async fn on_delivery(&self, d: &CommandDelivery, trace_id: &TraceId) -> Vec<Outgoing> {
        let id = d.command_id.to_string();
        let reply = |reply| Outgoing {
            reply,
            trace_id: trace_id.clone(),
        };
        let reject = |code: ErrorCode| self.refuse(d, trace_id, code, code.message());
        if d.device_id != self.device_id {
            return reject(ErrorCode::Forbidden);
        }
        match self.ledger.get(&id).await {
            Ok(Some(entry)) => {
                // A redelivery: acknowledge again, resend a result we hold. Nothing runs
                // again, so a redelivery with other content (a server trying to swap a
                // signed command's body) achieves nothing either.
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
        let signer = match self.check_owner(d) {
            Ok(kid) => kid,
            Err((code, why)) => return self.refuse(d, trace_id, code, &why),
        };
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
        tracing::info!(%trace_id, command = %id, signer = %signer, "owner signature verified");
        say!(
            "command {id}: {} received (signed by {signer})",
            method_name(d)
        );
        let _ = self.jobs.send(id);
        vec![reply(Reply::Ack(received(d)))]
    }

    /// The refusal of a delivery: a `command_ack` `rejected` with `code`, which the
    /// server records (and, for `2011`, raises as a security alert). Nothing is stored.
    fn refuse(
        &self,
        d: &CommandDelivery,
        trace_id: &TraceId,
        code: ErrorCode,
        why: &str,
    ) -> Vec<Outgoing> {
        let id = &d.command_id;
        tracing::warn!(%trace_id, command = %id, code = code.number(), reason = %why, "command refused");
        say!(
            "refused command {id} ({}): {} {}: {why}",
            method_name(d),
            code.number(),
            code.name()
        );
        vec![Outgoing {
            reply: Reply::Ack(CommandAck {
                command_id: d.command_id.clone(),
                status: AckStatus::Rejected,
                error: Some(code),
            }),
            trace_id: trace_id.clone(),
        }]
    }

    /// The owner-signature check: `user_sig` over the command statement rebuilt from the
    /// delivery (for this device, this command id, this method and these exact
    /// parameters, until `not_after`) must verify with a pinned owner key, and the
    /// approvals the delivery says it needs with as many other pinned keys. Returns the
    /// signing key's id.
    fn check_owner(&self, d: &CommandDelivery) -> Result<String, (ErrorCode, String)> {
        let invalid = |e: OwnerSigError| (ErrorCode::OwnerSignatureInvalid, e.to_string());
        let (Some(sig), Some(not_after)) = (&d.user_sig, d.not_after) else {
            return Err(invalid(OwnerSigError::Missing));
        };
        let now = self.clock.now();
        if not_after <= now {
            return Err((
                ErrorCode::TtlExpired,
                "the deadline its owner signed has passed".into(),
            ));
        }
        let statement = command_statement(
            &d.command_id,
            &self.device_id,
            d.method,
            &d.params,
            not_after,
        )
        .map_err(|e| (ErrorCode::OwnerSignatureInvalid, e.to_string()))?;
        let trust = self.owner.read().map_err(|_| {
            (
                ErrorCode::Internal,
                "the owner keys are unreadable".to_owned(),
            )
        })?;
        let signer = trust.verify(&statement, sig).map_err(invalid)?;
        if let Some(required) = d.approvals_required {
            trust
                .check_approvals(&statement, &signer, &d.approvals, required)
                .map_err(invalid)?;
        }
        Ok(signer)
    }

    /// The owner keys pinned now.
    pub fn owner_keys(&self) -> Vec<OwnerKey> {
        self.owner.read().map(|t| t.keys()).unwrap_or_default()
    }

    /// Applies a signed owner-keys statement (`owner_keys_update`): it must verify with
    /// a key pinned now, be above the last version applied, unexpired and for this
    /// device (or every device). The new key set is saved in `device.json`, then put in
    /// force. Returns it.
    pub fn on_owner_keys_update(&self, u: &OwnerKeysUpdate) -> Result<Vec<OwnerKey>, KeysRefusal> {
        let (keys, version) = {
            let trust = self
                .owner
                .read()
                .map_err(|_| KeysRefusal::Storage("the owner keys are unreadable".into()))?;
            let keys = trust.apply(&self.device_id, &u.statement, &u.user_sig, self.clock.now())?;
            (keys, u.statement.version)
        };
        self.state
            .save_owner_keys(&keys, version)
            .map_err(|e| KeysRefusal::Storage(e.to_string()))?;
        if let Ok(mut t) = self.owner.write() {
            *t = t.with_keys(&keys, version);
        }
        Ok(keys)
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
