//! What an authenticated session does with each frame's outcome: accepted telemetry is
//! appended to the bus's telemetry stream (the AnalyticsWorker scores and stores it and
//! publishes the live telemetry event, with its risk score); a refused frame
//! is dropped — logged with its code, answered with a signed `error` frame that names it,
//! and recorded as a security event — and the session goes on. Presence changes are
//! published as live events here too.
//!
//! Admission: while the analytics workers are `telemetry.backlog_limit` samples or more
//! behind (read once a second by [`watch_backlog`]), a sample is refused with
//! `UNAVAILABLE` instead of accepted: the telemetry stream is capped, and a sample
//! accepted into a backlog past the cap could be trimmed before it is stored. The agent
//! is told the sample was not kept, instead of it being lost after it was accepted.

use serde_json::{Value, json};
use tether_proto::envelope::Header;
use tether_proto::messages::notify::ErrorFrame;
use tether_proto::messages::session::Telemetry;
use tether_proto::{ErrorCode, MessageId, MessageType, ProtoError};
use tether_store::Device;

use super::Session;
use crate::audit::{self, Outcome};
use crate::events::{
    ANALYTICS_GROUP, LiveEvent, LiveKind, STREAM_MAX_LEN, TELEMETRY_STREAM, TelemetryRecord,
    publish_live,
};
use crate::routes::devices::presence_key;
use crate::state::AppState;

/// The audit action of a refused telemetry frame.
pub const TELEMETRY_REJECTED: &str = "telemetry.rejected";
/// The audit action of any other refused frame on an authenticated session.
pub const FRAME_REJECTED: &str = "agent.frame_rejected";

/// The longest error text kept in an error frame or an audit event.
const MAX_REASON_CHARS: usize = 200;
/// How often the telemetry stream's backlog is read.
const BACKLOG_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether a sample is admitted with `backlog` samples waiting and the given limit.
pub(crate) fn admits(backlog: u64, limit: u64) -> bool {
    backlog < limit
}

/// Reads the analytics group's backlog on the telemetry stream into
/// [`AppState::telemetry_backlog`] once a second, until `shutdown`. A failed read keeps
/// the last value (a missing group, before the analytics worker made it, reads as 0).
pub(crate) async fn watch_backlog(state: AppState, shutdown: tokio_util::sync::CancellationToken) {
    let mut was_full = false;
    loop {
        match state.bus.backlog(TELEMETRY_STREAM, ANALYTICS_GROUP).await {
            Ok(n) => {
                state
                    .telemetry_backlog
                    .store(n, std::sync::atomic::Ordering::Relaxed);
                let full = !admits(n, state.config.telemetry.backlog_limit);
                if full != was_full {
                    if full {
                        tracing::warn!(
                            backlog = n,
                            limit = state.config.telemetry.backlog_limit,
                            "telemetry backlog at its limit: refusing samples until the analytics catch up"
                        );
                    } else {
                        tracing::info!(
                            backlog = n,
                            "telemetry backlog under its limit again: accepting samples"
                        );
                    }
                    was_full = full;
                }
            }
            Err(tether_bus::BusError::Invalid(_)) => state
                .telemetry_backlog
                .store(0, std::sync::atomic::Ordering::Relaxed),
            Err(e) => tracing::debug!(error = %e, "reading the telemetry backlog failed"),
        }
        if !crate::workers::pause(&shutdown, BACKLOG_EVERY).await {
            return;
        }
    }
}

impl Session {
    /// Hands a verified telemetry message to the pipeline. A bus failure is answered with
    /// `UNAVAILABLE` naming the message, so the agent knows it was not kept.
    pub(super) async fn accept_telemetry(
        &mut self,
        device: &Device,
        header: &Header,
        body: Telemetry,
    ) {
        let state = self.state.clone();
        let backlog = state
            .telemetry_backlog
            .load(std::sync::atomic::Ordering::Relaxed);
        if !admits(backlog, state.config.telemetry.backlog_limit) {
            crate::prom::telemetry_rejected(ErrorCode::Unavailable);
            let _ = self
                .send(&ErrorFrame {
                    code: ErrorCode::Unavailable,
                    message: "the server is behind on storing telemetry; send it again later"
                        .into(),
                    ref_message_id: Some(header.message_id.clone()),
                })
                .await;
            return;
        }
        let record = TelemetryRecord {
            device_id: device.id.clone(),
            owner_id: device.owner_id.clone(),
            message_id: header.message_id.to_string(),
            seq: header.seq,
            received_at: state.now(),
            body,
        };
        let stored = match serde_json::to_vec(&record) {
            Ok(bytes) => state
                .bus
                .append(TELEMETRY_STREAM, &bytes, STREAM_MAX_LEN)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = stored {
            crate::prom::telemetry_rejected(ErrorCode::Unavailable);
            tracing::warn!(device = %device.id, error = %e, "telemetry not stored");
            let _ = self
                .send(&ErrorFrame {
                    code: ErrorCode::Unavailable,
                    message: "the telemetry could not be stored; send it again later".into(),
                    ref_message_id: Some(header.message_id.clone()),
                })
                .await;
        } else {
            crate::prom::telemetry_accepted();
        }
    }

    /// Drops a frame that failed its checks: logs it, answers it with a signed `error`
    /// frame, and records a security event. Nothing of the frame is believed; its
    /// claimed type and message id are read only to name it.
    pub(super) async fn reject_frame(
        &mut self,
        device_id: &str,
        session_id: &str,
        frame: &[u8],
        e: &ProtoError,
    ) {
        let code = e.code();
        let claimed = Claimed::peek(frame);
        let reason: String = e.to_string().chars().take(MAX_REASON_CHARS).collect();
        let claimed_type = claimed.msg_type.map(MessageType::name);
        if claimed.msg_type == Some(MessageType::Telemetry) {
            crate::prom::telemetry_rejected(code);
        }
        tracing::warn!(
            device = %device_id,
            session = %session_id,
            code = code.number(),
            claimed_type,
            %reason,
            "dropped a refused frame from an agent"
        );
        let _ = self
            .send(&ErrorFrame {
                code,
                message: if reason.is_empty() {
                    code.message().to_owned()
                } else {
                    reason.clone()
                },
                ref_message_id: claimed.message_id.clone(),
            })
            .await;
        let action = if claimed.msg_type == Some(MessageType::Telemetry) {
            TELEMETRY_REJECTED
        } else {
            FRAME_REJECTED
        };
        let recorded = audit::record(
            &self.state,
            device_id,
            action,
            Some(device_id),
            Outcome::Denied,
            json!({
                "code": code.number(),
                "error": code.name(),
                "reason": reason,
                "session_id": session_id,
                "claimed_type": claimed_type,
                "message_id": claimed.message_id.as_ref().map(MessageId::as_str),
            }),
        )
        .await;
        if let Err(e) = recorded {
            tracing::error!(device = %device_id, error = %e, "recording a refused frame failed");
        }
    }
}

/// What an unverified frame says about itself, kept only when well-formed.
#[derive(Debug, Default)]
struct Claimed {
    msg_type: Option<MessageType>,
    message_id: Option<MessageId>,
}

impl Claimed {
    fn peek(frame: &[u8]) -> Self {
        let Ok(v) = serde_json::from_slice::<Value>(frame) else {
            return Self::default();
        };
        let field = |k: &str| v.pointer(&format!("/header/{k}")).and_then(Value::as_str);
        Self {
            msg_type: field("type").and_then(MessageType::from_name),
            message_id: field("message_id").and_then(|m| MessageId::parse(m).ok()),
        }
    }
}

/// Publishes a presence change of `device` (best effort: a live view may miss it, the
/// presence key on the bus stays the truth).
pub(super) async fn publish_presence(
    state: &AppState,
    device: &Device,
    session_id: &str,
    online: bool,
) {
    let event = LiveEvent {
        kind: LiveKind::Presence,
        device_id: device.id.clone(),
        owner_id: device.owner_id.clone(),
        at: state.now(),
        data: json!({"online": online, "session_id": session_id}),
    };
    if let Err(e) = publish_live(state, &event).await {
        tracing::warn!(device = %device.id, error = %e, "presence live event not published");
    }
}

/// Ends a session's presence. The device goes offline (and an offline event is
/// published) unless a newer session of the same device already holds its presence.
pub(super) async fn end_presence(state: &AppState, device: &Device, session_id: &str) {
    let key = presence_key(&device.id);
    let deleted = state
        .bus
        .delete_if(&key, session_id.as_bytes())
        .await
        .unwrap_or(false);
    let replaced = !deleted && matches!(state.bus.get(&key).await, Ok(Some(_)));
    if !replaced {
        publish_presence(state, device, session_id, false).await;
    }
}

#[cfg(test)]
mod tests {
    use super::admits;

    #[test]
    fn samples_are_refused_from_the_limit_on() {
        assert!(admits(0, 50_000));
        assert!(admits(49_999, 50_000));
        assert!(!admits(50_000, 50_000));
        assert!(!admits(u64::MAX, 1));
    }
}
