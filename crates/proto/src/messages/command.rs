//! Flow 2: a command's delivery to the agent and its way back.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::UnixMillis;
use crate::error::{ErrorCode, ProtoError};
use crate::helper::Opcode;
use crate::ids::MessageId;
use crate::owner_sig::{self, UserSig};
use crate::validate::{self, Validate};

/// What a user can ask a PC to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Lock the interactive session.
    LockScreen,
    /// Log the interactive user off.
    Logoff,
    /// Reboot the PC.
    Reboot,
    /// Shut the PC down.
    Shutdown,
    /// Capture the active session's screen (artifact: PNG).
    Screenshot,
    /// Collect a log bundle (artifact: archive).
    CollectLogs,
    /// Report hashes of the installed Tether binaries.
    RunAttestation,
    /// Check the installation for tampering.
    RunTamperCheck,
    /// Dump a process's memory (sensitive by default).
    MemoryDump,
}

impl Method {
    /// Every method.
    pub const ALL: &'static [Method] = &[
        Method::LockScreen,
        Method::Logoff,
        Method::Reboot,
        Method::Shutdown,
        Method::Screenshot,
        Method::CollectLogs,
        Method::RunAttestation,
        Method::RunTamperCheck,
        Method::MemoryDump,
    ];

    /// The helper opcode that carries this method out.
    pub const fn opcode(self) -> Opcode {
        match self {
            Method::LockScreen => Opcode::ExecLockScreen,
            Method::Logoff => Opcode::ExecLogoff,
            Method::Reboot => Opcode::ExecReboot,
            Method::Shutdown => Opcode::ExecShutdown,
            Method::Screenshot => Opcode::CaptureScreenshot,
            Method::CollectLogs => Opcode::CollectLogs,
            Method::RunAttestation => Opcode::ExecRunAttestation,
            Method::RunTamperCheck => Opcode::ExecRunTamperCheck,
            Method::MemoryDump => Opcode::MemoryDump,
        }
    }

    /// Whether policy treats the method as sensitive unless a rule says otherwise.
    pub const fn sensitive_by_default(self) -> bool {
        matches!(self, Method::MemoryDump)
    }
}

/// Delivery priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Background.
    Low,
    /// The default.
    Normal,
    /// Ahead of normal commands in the device's queue.
    High,
}

/// How sensitive policy judged the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    /// Ordinary.
    Normal,
    /// Needed step-up or approvals.
    Sensitive,
}

/// The states of a command (the seed's state machine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandState {
    /// Accepted and stored, but central policy wants approvals by other users first; it
    /// is never delivered in this state.
    AwaitingApproval,
    /// Accepted and stored; waiting for delivery.
    Queued,
    /// Sent to the agent.
    Sent,
    /// The agent acknowledged receipt.
    AckReceived,
    /// The helper is executing it.
    Executing,
    /// The agent posted a result.
    ResultPosted,
    /// Done (successfully or not: see the result's status).
    Completed,
    /// Failed.
    Failed,
    /// Its TTL passed before it ran.
    Expired,
    /// Policy (central or local) denied it.
    Denied,
    /// Delivery failed after all retries; it is in the dead-letter queue.
    Dlq,
}

/// gateway → agent: run this command. Signed by the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandDelivery {
    /// The command's id (the user's `message_id`, its idempotency key).
    pub command_id: MessageId,
    /// The device it is for (the agent refuses another device's command).
    pub device_id: String,
    /// What to do.
    pub method: Method,
    /// Method parameters (a JSON object).
    pub params: Value,
    /// Delivery priority.
    pub priority: Priority,
    /// Sensitivity as policy judged it.
    pub sensitivity: Sensitivity,
    /// The user who asked.
    pub origin_user_id: String,
    /// The policy version the server decided under.
    pub policy_version: u64,
    /// The command's absolute deadline (the user's TTL from ingest).
    pub expires_at: UnixMillis,
    /// Delivery attempt, from 1.
    pub attempt: u32,
    /// A fault to simulate instead of the real action (commands created by the server's
    /// test-mode hook `/api/test/command` only). A helper with the recording executor
    /// honours it; a helper running real actions denies such a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulate: Option<Simulation>,
    /// The deadline the owner signed (the command statement's `not_after`, UnixMillis);
    /// present exactly when `user_sig` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<UnixMillis>,
    /// The owner's signature over the command statement
    /// ([`crate::owner_sig::command_statement`]), as the owner's client made it. The agent
    /// runs the command only if it verifies with a key pinned for the device's owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_sig: Option<UserSig>,
    /// How many approvals by other pinned keys the command needs (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals_required: Option<u32>,
    /// Approvers' signatures over the same command statement (at most 8).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<UserSig>,
}

/// A fault the recording executor simulates (the design's test hooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Simulation {
    /// Every execution fails with `6001 KERNEL_FAILURE` (the agent retries once, then the
    /// command ends `failed`).
    KernelFailure,
    /// The execution takes a few seconds (so `executing` is observable).
    Slow,
    /// The execution succeeds (recorded like any other).
    Success,
}

impl Validate for CommandDelivery {
    fn validate(&self) -> Result<(), ProtoError> {
        validate::text("body.device_id", &self.device_id, 1, 64)?;
        validate::text("body.origin_user_id", &self.origin_user_id, 1, 64)?;
        if !self.params.is_object() {
            return Err(ProtoError::invalid("body.params", "must be a JSON object"));
        }
        validate::range("body.attempt", self.attempt, 1, 16)?;
        if self.user_sig.is_some() != self.not_after.is_some() {
            return Err(ProtoError::invalid(
                "body.not_after",
                "present exactly when user_sig is",
            ));
        }
        if let Some(s) = &self.user_sig {
            s.validate_at(owner_sig::BODY_USER_SIG)?;
        }
        if let Some(n) = self.approvals_required {
            validate::range(
                "body.approvals_required",
                n,
                1,
                u32::try_from(owner_sig::MAX_APPROVALS).unwrap_or(u32::MAX),
            )?;
        }
        validate::max_items("body.approvals", &self.approvals, owner_sig::MAX_APPROVALS)?;
        for a in &self.approvals {
            a.validate_at(owner_sig::BODY_APPROVALS)?;
        }
        Ok(())
    }
}

/// Receipt status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    /// Stored in the agent's queue.
    Received,
    /// Refused (see `error`).
    Rejected,
}

/// agent → gateway: `COMMAND_ACK`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandAck {
    /// Which command.
    pub command_id: MessageId,
    /// `received` or `rejected`.
    pub status: AckStatus,
    /// Why it was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorCode>,
}

impl Validate for CommandAck {
    fn validate(&self) -> Result<(), ProtoError> {
        match (self.status, self.error) {
            (AckStatus::Rejected, None) => {
                Err(ProtoError::invalid("body.error", "required when rejected"))
            }
            (AckStatus::Received, Some(_)) => Err(ProtoError::invalid(
                "body.error",
                "only allowed when rejected",
            )),
            _ => Ok(()),
        }
    }
}

/// agent → gateway: progress (`executing`) between ack and result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandStatus {
    /// Which command.
    pub command_id: MessageId,
    /// The new state; an agent may only report `executing`.
    pub state: CommandState,
    /// The helper's execution id, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_exec_id: Option<String>,
}

impl Validate for CommandStatus {
    fn validate(&self) -> Result<(), ProtoError> {
        if self.state != CommandState::Executing {
            return Err(ProtoError::invalid(
                "body.state",
                "an agent may only report executing",
            ));
        }
        if let Some(k) = &self.kernel_exec_id {
            validate::text("body.kernel_exec_id", k, 1, 64)?;
        }
        Ok(())
    }
}

/// How a command ended on the PC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultStatus {
    /// Done.
    Ok,
    /// Tried and failed (see `error`).
    Failed,
    /// Refused by local policy, the owner-signature check or the helper.
    Denied,
    /// Its TTL passed before it could run.
    Expired,
}

/// A large result stored in the object store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactRef {
    /// The object's id as returned by `POST /api/artifact/request`.
    pub artifact_id: String,
    /// SHA-256 (lowercase hex) of the uploaded (encrypted) bytes.
    pub sha256: String,
    /// Size of the uploaded bytes.
    pub size_bytes: u64,
    /// MIME type of the plaintext (`image/png`, `application/zip`, …).
    pub content_type: String,
}

/// agent → gateway: `COMMAND_RESULT`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandResult {
    /// Which command.
    pub command_id: MessageId,
    /// How it ended.
    pub status: ResultStatus,
    /// The error, unless `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorCode>,
    /// A short human note (at most 1024 characters).
    pub notes: String,
    /// A small structured result (a JSON object; larger data goes in `artifact`).
    pub result: Value,
    /// A large result in the object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactRef>,
    /// The helper's execution id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_exec_id: Option<String>,
    /// Execution time in the helper, milliseconds.
    pub duration_ms: u64,
}

impl Validate for CommandResult {
    fn validate(&self) -> Result<(), ProtoError> {
        validate::text("body.notes", &self.notes, 0, 1024)?;
        if !self.result.is_object() {
            return Err(ProtoError::invalid("body.result", "must be a JSON object"));
        }
        match (self.status, self.error) {
            (ResultStatus::Ok, Some(_)) => {
                return Err(ProtoError::invalid("body.error", "not allowed when ok"));
            }
            (ResultStatus::Ok, None) => {}
            (_, None) => return Err(ProtoError::invalid("body.error", "required unless ok")),
            (_, Some(_)) => {}
        }
        if let Some(a) = &self.artifact {
            validate::text("body.artifact.artifact_id", &a.artifact_id, 1, 128)?;
            validate::sha256_hex("body.artifact.sha256", &a.sha256)?;
            validate::text("body.artifact.content_type", &a.content_type, 1, 128)?;
        }
        if let Some(k) = &self.kernel_exec_id {
            validate::text("body.kernel_exec_id", k, 1, 64)?;
        }
        Ok(())
    }
}
