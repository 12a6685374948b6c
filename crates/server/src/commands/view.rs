//! How the API shows a command.

use serde::Serialize;
use serde_json::Value;
use tether_proto::UnixMillis;
use tether_proto::messages::command::{CommandState, Method, Priority};
use tether_store::{Command, CommandApproval, CommandTransition};

/// A command as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CommandView {
    /// `accepted` in the answer to `POST /api/command` (new or the same request again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    /// The command id (the submitted `message_id`).
    pub command_id: String,
    /// The device.
    pub device_id: String,
    /// What to do.
    #[schema(value_type = String)]
    pub method: Method,
    /// Its parameters.
    #[schema(value_type = Object)]
    pub params: Value,
    /// Delivery priority.
    #[schema(value_type = String)]
    pub priority: Priority,
    /// The current state (docs/protocol.md section 7.4).
    #[schema(value_type = String)]
    pub state: CommandState,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// The trace id to follow it in the logs.
    pub trace_id: String,
    /// Who asked.
    pub origin_user_id: String,
    /// When it was accepted (Unix ms).
    #[schema(value_type = u64)]
    pub created_at: UnixMillis,
    /// Its deadline (Unix ms).
    #[schema(value_type = u64)]
    pub expires_at: UnixMillis,
    /// When its state last changed (Unix ms).
    #[schema(value_type = u64)]
    pub updated_at: UnixMillis,
    /// The agent's `command_result`, once posted.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// The error code of a command that did not complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<u16>,
    /// When the originator acknowledged viewing the result.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u64>)]
    pub viewed_at: Option<UnixMillis>,
    /// Whether the device was online at submission (answer to `POST /api/command` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_online: Option<bool>,
    /// The policy version it was decided under (0: the built-in policy).
    pub policy_version: u64,
    /// The policy rule that decided, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_rule: Option<String>,
    /// Distinct approvals it needs before it is queued (absent: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvals_required: Option<u32>,
    /// The deadline its owner signed (Unix ms; absent: the command is not signed): with
    /// `command_id`, `device_id`, `method` and `params` it makes the command statement an
    /// approver signs (docs/protocol.md section 6.11).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u64>)]
    pub not_after: Option<UnixMillis>,
    /// The key id that signed it (absent: unsigned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// The approvals so far, oldest first (commands that need approvals, where shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvals: Option<Vec<ApprovalView>>,
    /// `4002` (`APPROVAL_REQUIRED`) in the answer to `POST /api/command` when it waits
    /// for approvals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// Policy's reason, in the answer to `POST /api/command` when it waits for approvals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Every transition, oldest first (`GET /api/command/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transitions: Option<Vec<TransitionView>>,
}

/// One approval of a command.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ApprovalView {
    /// Who approved.
    pub approver_id: String,
    /// When (Unix ms).
    #[schema(value_type = u64)]
    pub at: UnixMillis,
    /// The key id that signed the approval (absent: unsigned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
}

impl From<&CommandApproval> for ApprovalView {
    fn from(a: &CommandApproval) -> Self {
        Self {
            approver_id: a.approver_id.clone(),
            at: a.at,
            signed_by: a
                .user_sig
                .as_deref()
                .and_then(|s| serde_json::from_str::<tether_proto::owner_sig::UserSig>(s).ok())
                .map(|s| s.kid().to_owned()),
        }
    }
}

/// One state change.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TransitionView {
    /// The state before (absent at ingest).
    #[schema(value_type = Option<String>)]
    pub from: Option<CommandState>,
    /// The state after.
    #[schema(value_type = String)]
    pub to: CommandState,
    /// When (Unix ms).
    #[schema(value_type = u64)]
    pub at: UnixMillis,
    /// Details (attempt, error, who).
    #[schema(value_type = Object)]
    pub detail: Value,
}

impl From<&Command> for CommandView {
    fn from(c: &Command) -> Self {
        let (not_after, user_sig) = super::owner_sig::from_stored(c.command.user_sig.as_deref());
        Self {
            status: None,
            command_id: c.command.id.clone(),
            device_id: c.command.device_id.clone(),
            method: c.command.method,
            params: c.command.params.clone(),
            priority: c.command.priority,
            state: c.state,
            attempts: c.attempts,
            trace_id: c.command.trace_id.clone(),
            origin_user_id: c.command.origin_user_id.clone(),
            created_at: c.command.created_at,
            expires_at: c.command.expires_at,
            updated_at: c.updated_at,
            result: c.result.clone(),
            error: c.error_code,
            viewed_at: c.viewed_at,
            device_online: None,
            policy_version: c.command.policy.version,
            policy_rule: c.command.policy.rule.clone(),
            approvals_required: (c.command.policy.approvals_required > 0)
                .then_some(c.command.policy.approvals_required),
            not_after,
            signed_by: user_sig.map(|s| s.kid().to_owned()),
            approvals: None,
            code: None,
            reason: None,
            transitions: None,
        }
    }
}

impl From<&CommandTransition> for TransitionView {
    fn from(t: &CommandTransition) -> Self {
        Self {
            from: t.from,
            to: t.to,
            at: t.at,
            detail: t.detail.clone(),
        }
    }
}
