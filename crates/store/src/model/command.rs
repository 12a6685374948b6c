//! Commands (flow 2): what a user asked a device to do, where it stands in the state
//! machine, every transition it made, and the artifacts its results uploaded.

use serde_json::Value;
use tether_proto::UnixMillis;
use tether_proto::messages::command::{CommandState, Method, Priority, Sensitivity, Simulation};

/// A command to store, as ingest accepted (or denied) it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCommand {
    /// The command id: the user's `message_id` (its idempotency key).
    pub id: String,
    /// The device it is for.
    pub device_id: String,
    /// The user who asked.
    pub origin_user_id: String,
    /// What to do.
    pub method: Method,
    /// The method's parameters (a JSON object).
    pub params: Value,
    /// Delivery priority.
    pub priority: Priority,
    /// Sensitivity as policy judged it.
    pub sensitivity: Sensitivity,
    /// The trace id carried through every hop.
    pub trace_id: String,
    /// The user's signature over the canonical command (checked from the policy issue on).
    pub user_sig: Option<String>,
    /// SHA-256 (hex) of the canonical request: a reused `message_id` with another request
    /// is a conflict, the same request is the same command.
    pub request_hash: String,
    /// A fault to simulate (test-mode commands only).
    pub simulate: Option<Simulation>,
    /// The state it is stored in: `queued`, or `awaiting_approval` when policy wants
    /// approvals first.
    pub state: CommandState,
    /// The policy decision it was accepted under.
    pub policy: CommandPolicy,
    /// When it was accepted.
    pub created_at: UnixMillis,
    /// Its absolute deadline (`created_at` + the user's TTL).
    pub expires_at: UnixMillis,
}

/// The policy decision a command was accepted under.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommandPolicy {
    /// The policy version in force (0: the built-in policy).
    pub version: u64,
    /// The rule that decided, if one did.
    pub rule: Option<String>,
    /// Distinct approvals it needs before it is queued (0: none).
    pub approvals_required: u32,
    /// Who may approve it (the rule's `approvers` object, JSON), when it needs approvals.
    pub approvers: Option<Value>,
}

/// One user's approval of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandApproval {
    /// The command.
    pub command_id: String,
    /// Who approved it.
    pub approver_id: String,
    /// When.
    pub at: UnixMillis,
    /// The approver's signature over the command statement (a `UserSig`, JSON text,
    /// opaque to the store); `None` for an unsigned approval.
    pub user_sig: Option<String>,
}

/// Which recently accepted commands to count (rate rules): those created after `since`
/// (exclusive), of `user_id` and/or on `device_id` when given, of one of `methods` (all
/// when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandCount {
    /// Only this user's.
    pub user_id: Option<String>,
    /// Only this device's.
    pub device_id: Option<String>,
    /// Only these methods (empty: every method).
    pub methods: Vec<Method>,
    /// Only commands created after this instant.
    pub since: UnixMillis,
}

/// A stored command.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// What ingest stored (`state` there is the initial state).
    pub command: NewCommand,
    /// The current state.
    pub state: CommandState,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When the next delivery attempt is due if no ack arrives (state `sent`).
    pub next_attempt_at: Option<UnixMillis>,
    /// When the state last changed.
    pub updated_at: UnixMillis,
    /// The agent's `command_result` body, once posted.
    pub result: Option<Value>,
    /// The error code of a failed, denied, expired or dead-lettered command.
    pub error_code: Option<u16>,
    /// When the originator acknowledged viewing the result.
    pub viewed_at: Option<UnixMillis>,
}

/// What a transition changes besides the state. `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommandUpdate {
    /// New attempt count.
    pub attempts: Option<u32>,
    /// New retry deadline (`Some(None)` clears it).
    pub next_attempt_at: Option<Option<UnixMillis>>,
    /// The result body.
    pub result: Option<Value>,
    /// The error code.
    pub error_code: Option<u16>,
    /// Recorded with the transition (who, why, attempt…): a JSON object.
    pub detail: Value,
    /// Move the command only if it is this device's (an agent's frame names a command
    /// by id: the transition checks whose it is in the same statement, without a read
    /// first). `None`: any device's.
    pub device_id: Option<String>,
}

/// One recorded state change.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandTransition {
    /// The command.
    pub command_id: String,
    /// The state before (`None` for ingest).
    pub from: Option<CommandState>,
    /// The state after.
    pub to: CommandState,
    /// When.
    pub at: UnixMillis,
    /// Details (a JSON object).
    pub detail: Value,
}

/// An object-store upload a device asked for, and what arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The artifact id (returned to the agent, referenced in the result).
    pub id: String,
    /// The device that uploads it.
    pub device_id: String,
    /// The command whose result it is.
    pub command_id: String,
    /// Where it lives in the object store.
    pub object_key: String,
    /// MIME type of the plaintext.
    pub content_type: String,
    /// The upload may not be larger.
    pub max_bytes: u64,
    /// When the upload URL was issued.
    pub created_at: UnixMillis,
    /// When the upload URL expires.
    pub expires_at: UnixMillis,
    /// When the upload was recorded as complete.
    pub uploaded_at: Option<UnixMillis>,
    /// Size of the uploaded (encrypted) bytes.
    pub size_bytes: Option<u64>,
    /// SHA-256 (hex) of the uploaded bytes.
    pub sha256: Option<String>,
}

/// Whether a state is terminal (never changes again).
pub const fn is_terminal(s: CommandState) -> bool {
    matches!(
        s,
        CommandState::Completed
            | CommandState::Failed
            | CommandState::Expired
            | CommandState::Denied
            | CommandState::Dlq
    )
}

/// The stored spelling of a state (its wire spelling).
pub const fn state_str(s: CommandState) -> &'static str {
    match s {
        CommandState::AwaitingApproval => "awaiting_approval",
        CommandState::Queued => "queued",
        CommandState::Sent => "sent",
        CommandState::AckReceived => "ack_received",
        CommandState::Executing => "executing",
        CommandState::ResultPosted => "result_posted",
        CommandState::Completed => "completed",
        CommandState::Failed => "failed",
        CommandState::Expired => "expired",
        CommandState::Denied => "denied",
        CommandState::Dlq => "dlq",
    }
}

/// A state from its stored spelling.
pub fn parse_state(s: &str) -> Option<CommandState> {
    serde_json::from_value(Value::String(s.to_owned())).ok()
}

/// The audit outcome of a command reaching `state`: `denied`, `failure` (`failed`,
/// `expired`, `dlq`) or `success` (every other state).
pub const fn command_outcome(state: CommandState) -> &'static str {
    match state {
        CommandState::Denied => "denied",
        CommandState::Failed | CommandState::Expired | CommandState::Dlq => "failure",
        _ => "success",
    }
}

/// The audit event `command.<state>` a command's state change records in the same
/// transaction (ingest: `from` is `None`): by the command's origin user, on its device,
/// under its trace id, at the change's time. Its detail holds the command's id, method,
/// the state it left, its attempts, its error code, its trace id and the transition's
/// `detail`. (SQLite's triggers write the same event, schema v7.)
pub fn command_audit(
    from: Option<CommandState>,
    c: &Command,
    detail: &Value,
) -> crate::NewAuditEvent {
    let cmd = &c.command;
    crate::NewAuditEvent {
        device_id: crate::concerned_device(Some(&cmd.device_id), &Value::Null),
        actor: cmd.origin_user_id.clone(),
        action: format!("command.{}", state_str(c.state)),
        target: Some(cmd.device_id.clone()),
        outcome: command_outcome(c.state).to_owned(),
        detail: serde_json::json!({
            "attempts": c.attempts,
            "command_id": cmd.id,
            "detail": detail,
            "error": c.error_code,
            "from": from.map(state_str),
            "method": cmd.method,
            "trace_id": cmd.trace_id,
        }),
        trace_id: Some(cmd.trace_id.clone()),
        at: c.updated_at,
    }
}
