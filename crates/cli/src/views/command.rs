//! Commands as the server shows them (`POST /api/command`, `GET /api/commands`,
//! `GET /api/command/{id}`, live `command_status` events) and artifacts
//! (`GET /api/artifacts/{id}`). States and statuses stay strings, so a newer server's
//! states are shown rather than refused.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Outcome;

/// A command (`CommandView` in the server's API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandView {
    /// `accepted` in the answer to `POST /api/command`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The command id (the `message_id` it was submitted with, a UUID).
    pub command_id: String,
    /// The device.
    pub device_id: String,
    /// What to do (`lock_screen`, …).
    pub method: String,
    /// Its parameters.
    #[serde(default)]
    pub params: Value,
    /// `low`, `normal` or `high`.
    #[serde(default)]
    pub priority: String,
    /// The state (docs/protocol.md section 7.4).
    pub state: String,
    /// Delivery attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// The trace id it is logged under everywhere.
    #[serde(default)]
    pub trace_id: String,
    /// Who sent it.
    #[serde(default)]
    pub origin_user_id: String,
    /// Accepted at (ms since the epoch).
    pub created_at: u64,
    /// Its deadline (ms since the epoch).
    pub expires_at: u64,
    /// Last state change (ms since the epoch).
    pub updated_at: u64,
    /// The agent's `command_result`, once posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error code of a command that did not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<u16>,
    /// When its sender acknowledged viewing the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viewed_at: Option<u64>,
    /// Whether the device was online when it was submitted (submission answer only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_online: Option<bool>,
    /// The policy version it was decided under.
    #[serde(default)]
    pub policy_version: u64,
    /// The policy rule that decided, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_rule: Option<String>,
    /// Approvals it needs before it is queued (commands a policy rule sends for
    /// approval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals_required: Option<u32>,
    /// The deadline its owner signed (ms since the epoch; absent: unsigned): part of the
    /// statement an approver signs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<u64>,
    /// The key id that signed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// Its approvals so far, where the server shows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<Vec<ApprovalView>>,
    /// Policy's reason, when the submission answer says it waits for approvals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Every state change, oldest first (`GET /api/command/{id}` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transitions: Option<Vec<TransitionView>>,
}

/// One approval of a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalView {
    /// Who approved.
    pub approver_id: String,
    /// When (ms since the epoch).
    pub at: u64,
    /// The key id that signed the approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
}

/// One state change of a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransitionView {
    /// The state before (absent at ingest).
    #[serde(default)]
    pub from: Option<String>,
    /// The state after.
    pub to: String,
    /// When (ms since the epoch).
    pub at: u64,
    /// Details (attempt, error, who).
    #[serde(default)]
    pub detail: Value,
}

/// The `data` of a live `command_status` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandEventView {
    /// Which command.
    pub command_id: String,
    /// Its state now.
    pub state: String,
    /// Its state before (absent at ingest).
    #[serde(default)]
    pub from: Option<String>,
    /// Delivery attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// The error code, when it did not complete.
    #[serde(default)]
    pub error: Option<u16>,
    /// The transition's details.
    #[serde(default)]
    pub detail: Option<Value>,
}

/// The agent's `command_result`, as stored in [`CommandView::result`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultView {
    /// `ok`, `failed`, `denied` or `expired`.
    pub status: String,
    /// The error code when not `ok`.
    #[serde(default)]
    pub error: Option<u16>,
    /// A short note from the PC.
    #[serde(default)]
    pub notes: String,
    /// The structured result.
    #[serde(default)]
    pub result: Value,
    /// A large result in the object store.
    #[serde(default)]
    pub artifact: Option<ArtifactRefView>,
    /// Execution time in the helper.
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

/// A result's reference to its artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRefView {
    /// The artifact id (`tether artifact get <id>`).
    pub artifact_id: String,
    /// SHA-256 (lowercase hex) of the stored bytes.
    pub sha256: String,
    /// Size of the stored bytes.
    pub size_bytes: u64,
    /// MIME type of the content.
    pub content_type: String,
}

/// An artifact and where to download it (`GET /api/artifacts/{id}`).
#[derive(Clone, Serialize, Deserialize)]
pub struct ArtifactView {
    /// Its id.
    pub artifact_id: String,
    /// The command that produced it.
    #[serde(default)]
    pub command_id: String,
    /// The device that produced it.
    #[serde(default)]
    pub device_id: String,
    /// MIME type of the (decrypted) content.
    #[serde(default)]
    pub content_type: String,
    /// Size of the stored bytes.
    pub size_bytes: u64,
    /// SHA-256 (lowercase hex) of the stored bytes.
    pub sha256: String,
    /// A presigned `GET` URL.
    pub download_url: String,
    /// When the URL stops working (ms since the epoch).
    #[serde(default)]
    pub expires_at: u64,
    /// The AES-256-GCM key (base64url) when the stored bytes are encrypted for us.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// SHA-256 (lowercase hex) of the content, as the PC reported it, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plaintext_sha256: Option<String>,
}

impl std::fmt::Debug for ArtifactView {
    // The URL is a bearer capability and the key decrypts the content: neither is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactView")
            .field("artifact_id", &self.artifact_id)
            .field("command_id", &self.command_id)
            .field("content_type", &self.content_type)
            .field("size_bytes", &self.size_bytes)
            .field("sha256", &self.sha256)
            .field("encrypted", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

/// Where a command stands, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Not finished.
    Pending,
    /// Completed with status `ok`.
    Succeeded,
    /// Finished without success.
    Unsuccessful(Outcome),
}

/// The states after which nothing changes (docs/protocol.md section 7.4).
pub const TERMINAL_STATES: &[&str] = &["completed", "failed", "expired", "denied", "dlq"];

impl CommandView {
    /// Whether the command is finished.
    pub fn is_terminal(&self) -> bool {
        TERMINAL_STATES.contains(&self.state.as_str())
    }

    /// The agent's result, when there is one and it reads as a `command_result`.
    pub fn result_view(&self) -> Option<ResultView> {
        self.result
            .as_ref()
            .and_then(|r| serde_json::from_value(r.clone()).ok())
    }

    /// How it ended (or that it has not).
    pub fn ending(&self) -> Ending {
        let by_status = |s: &str| match s {
            "ok" => Ending::Succeeded,
            "denied" => Ending::Unsuccessful(Outcome::Denied),
            "expired" => Ending::Unsuccessful(Outcome::Expired),
            _ => Ending::Unsuccessful(Outcome::Failed),
        };
        match self.state.as_str() {
            // `completed` means done; the result's status says whether it worked.
            "completed" => self
                .result_view()
                .map_or(Ending::Succeeded, |r| by_status(&r.status)),
            "failed" => Ending::Unsuccessful(Outcome::Failed),
            "denied" => Ending::Unsuccessful(Outcome::Denied),
            "expired" => Ending::Unsuccessful(Outcome::Expired),
            "dlq" => Ending::Unsuccessful(Outcome::Dlq),
            _ => Ending::Pending,
        }
    }

    /// The error code of a command that did not succeed: its own, else its result's.
    pub fn error_code(&self) -> Option<u16> {
        self.error
            .or_else(|| self.result_view().and_then(|r| r.error))
    }
}
