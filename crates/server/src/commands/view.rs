//! How the API shows a command.

use serde::Serialize;
use serde_json::Value;
use tether_proto::UnixMillis;
use tether_proto::messages::command::{CommandState, Method, Priority};
use tether_store::{Command, CommandTransition};

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
    /// Every transition, oldest first (`GET /api/command/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transitions: Option<Vec<TransitionView>>,
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
