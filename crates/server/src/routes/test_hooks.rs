//! Test-mode fault hooks that play a compromised or buggy server. Mounted only with
//! `test_mode = true` (otherwise their paths are unknown, 404, to everyone); never in
//! production. `POST /api/test/command` (a command with a simulated execution) lives with
//! the commands, in [`super::commands::simulate`].
//!
//! `POST /api/test/agent_frame` makes the gateway session of a device write any frame to
//! its agent verbatim: the frames an attacker holding the server would send (another
//! device's command, an expired or replayed one, a forged signature), so the end-to-end
//! tests can show that the real agent refuses each one, that the refusal is audited
//! (`agent.frame_refused`) and that nothing is executed.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tether_proto::validate::Validate;
use tether_proto::{ErrorCode, MAX_FRAME_BYTES, ProtoError};
use tether_store::Role;

use crate::audit::{self, Outcome};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::events::{LiveEvent, LiveKind, publish_live};
use crate::extract::ApiJson;
use crate::routes::devices::presence_key;
use crate::state::AppState;

/// The audit action of a raw frame sent through the hook.
pub const AGENT_FRAME_AUDIT: &str = "test.agent_frame";

/// `POST /api/test/agent_frame` body.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentFrameRequest {
    /// The device whose agent session writes the frame.
    pub device_id: String,
    /// The frame. A JSON string is written exactly as it is (use this for a signed
    /// envelope: its bytes are what was signed); any other JSON value is written as its
    /// compact JSON text.
    #[schema(value_type = Object)]
    pub frame: Value,
}

impl AgentFrameRequest {
    /// The bytes to write: a string as it is, anything else as compact JSON.
    fn text(&self) -> String {
        match &self.frame {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

impl Validate for AgentFrameRequest {
    fn validate(&self) -> Result<(), ProtoError> {
        if self.device_id.is_empty() || self.device_id.len() > 64 {
            return Err(ProtoError::InvalidField {
                field: "device_id",
                reason: "must be 1..=64 characters".into(),
            });
        }
        let len = self.text().len();
        if len == 0 {
            return Err(ProtoError::InvalidField {
                field: "frame",
                reason: "must not be empty".into(),
            });
        }
        if len > MAX_FRAME_BYTES {
            return Err(ProtoError::FrameTooLarge {
                size: len,
                limit: MAX_FRAME_BYTES,
            });
        }
        Ok(())
    }
}

/// `POST /api/test/agent_frame` answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AgentFrameAccepted {
    /// `published`: handed to the bus for the gateway that holds the session.
    pub status: &'static str,
    /// The device.
    pub device_id: String,
    /// The agent session that held the device when the frame was published.
    pub session_id: String,
    /// The frame's length in bytes.
    pub bytes: usize,
}

/// Test mode only (`test_mode = true`; otherwise 404), admins only: the gateway session
/// holding the device writes `frame` to its agent verbatim — unsigned by the server and
/// unchecked, as a compromised or buggy server would. The frame travels over the bus's
/// live stream to whichever server process holds the session, so `202` means published,
/// not written: a session that ends meanwhile drops it. The session's own sequence
/// counter moves up to the frame's `header.seq` (so its next genuine frames stay in
/// order for the agent). `404` for an unknown device or one with no live session. Each
/// use is audited (`test.agent_frame`).
#[utoipa::path(post, path = "/api/test/agent_frame", request_body = AgentFrameRequest, responses((status = 202, body = AgentFrameAccepted), (status = 403), (status = 404), (status = 413), (status = 422)), security(("bearer" = [])))]
pub async fn agent_frame(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<AgentFrameRequest>,
) -> ApiResult<(StatusCode, Json<AgentFrameAccepted>)> {
    if !state.config.test_mode {
        return Err(ApiError::with_message(ErrorCode::NotFound, "no such route"));
    }
    caller.require(&[Role::Admin])?;
    let frame = req.text();
    let device = state
        .store
        .device(&req.device_id)
        .await?
        .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "no such device"))?;
    let session_id = state
        .bus
        .get(&presence_key(&device.id))
        .await?
        .map(|s| String::from_utf8_lossy(&s).into_owned())
        .ok_or_else(|| {
            ApiError::with_message(
                ErrorCode::NotFound,
                format!(
                    "device {} is not connected: no agent session to write to",
                    device.id
                ),
            )
        })?;
    audit::record(
        &state,
        &caller.user.id,
        AGENT_FRAME_AUDIT,
        Some(&device.id),
        Outcome::Success,
        json!({"session_id": session_id, "bytes": frame.len(),
               "sha256": tether_proto::ids::sha256_hex(frame.as_bytes())}),
    )
    .await?;
    tracing::warn!(device = %device.id, session = %session_id, bytes = frame.len(), "test mode: a raw frame for the agent published");
    let bytes = frame.len();
    publish_live(
        &state,
        &LiveEvent {
            kind: LiveKind::AgentFrame,
            device_id: device.id.clone(),
            owner_id: None,
            at: state.now(),
            data: json!({"frame": frame, "session_id": session_id}),
        },
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(AgentFrameAccepted {
            status: "published",
            device_id: device.id,
            session_id,
            bytes,
        }),
    ))
}
