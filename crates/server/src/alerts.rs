//! Alerts: raising, listing and acknowledging them, and telling everyone who should know.
//!
//! An alert is a rule that fired for a device (`anomaly`, `cpu_high`, `disk_full`,
//! `offline`, …; see [`rules`]). [`raise`] stores it unless the device already has an open
//! (unacknowledged) alert of the same kind — atomically in the store, so several workers
//! or processes raise it once — and then, without waiting for anyone:
//!
//! - publishes a [`LiveKind::Alert`] event with the [`AlertView`] on the bus's live
//!   stream: every process's live hub fans it out to the owner's live clients and, as a
//!   signed `alert_push`, to the device's agent session;
//! - hands it to the [`webhook`] (if one is configured), which POSTs it signed with
//!   HMAC-SHA256 and retries in the background.
//!
//! [`ack`] acknowledges an alert (its owner or an admin), which publishes and posts it
//! again, now with `acked_at`. Failing to publish or post never fails the caller: the
//! alert is stored, and listing it is the source of truth.

pub mod rules;
pub mod webhook;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tether_proto::ErrorCode;
use tether_proto::messages::notify::{AlertPush, Severity};
use tether_store::{Alert, Role};
use utoipa::ToSchema;

pub use webhook::{Webhook, WebhookEvent};

use crate::audit::{self, Outcome};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::events::{LiveEvent, LiveKind, publish_live};
use crate::state::AppState;

/// The rule: the analytics risk score was above [`rules::ANOMALY_RISK`].
pub const KIND_ANOMALY: &str = "anomaly";
/// The rule: CPU at or above `alerts.cpu_high_pct` for `alerts.cpu_high_minutes`.
pub const KIND_CPU_HIGH: &str = "cpu_high";
/// The rule: the fullest disk at or above `alerts.disk_high_pct`.
pub const KIND_DISK_FULL: &str = "disk_full";
/// The rule: no sign of life for `alerts.offline_after_s`.
pub const KIND_OFFLINE: &str = "offline";

/// Longest alert message kept (the `alert_push` limit); longer ones are cut.
pub const MAX_MESSAGE_CHARS: usize = 512;
/// Most alerts one listing returns.
pub const MAX_LIST: u32 = 500;

/// An alert as the API, the live view and the webhook show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertView {
    /// Id (`alr_…`).
    pub id: String,
    /// The device.
    pub device_id: String,
    /// `info`, `warning` or `critical`.
    #[schema(value_type = String)]
    pub severity: Severity,
    /// The rule that fired (`anomaly`, `cpu_high`, `disk_full`, `offline`, …).
    pub kind: String,
    /// What happened, for a human.
    pub message: String,
    /// The risk score that fired it (0..=1), when one did.
    pub risk_score: Option<f64>,
    /// When it was raised (ms).
    pub created_at: u64,
    /// When it was acknowledged (ms), or null while open.
    pub acked_at: Option<u64>,
    /// Who acknowledged it.
    pub acked_by: Option<String>,
}

impl From<&Alert> for AlertView {
    fn from(a: &Alert) -> Self {
        Self {
            id: a.id.clone(),
            device_id: a.device_id.clone(),
            severity: a.severity,
            kind: a.kind.clone(),
            message: a.message.clone(),
            risk_score: a.risk_score,
            created_at: a.created_at.0,
            acked_at: a.acked_at.map(|t| t.0),
            acked_by: a.acked_by.clone(),
        }
    }
}

impl AlertView {
    /// The `alert_push` an agent gets for this alert.
    pub fn alert_push(&self) -> AlertPush {
        AlertPush {
            alert_id: self.id.clone(),
            device_id: self.device_id.clone(),
            severity: self.severity,
            kind: self.kind.clone(),
            message: self.message.clone(),
            risk_score: self.risk_score,
            created_at: tether_proto::UnixMillis(self.created_at),
        }
    }
}

fn invalid(message: &str) -> ApiError {
    ApiError::with_message(ErrorCode::InvalidField, message)
}

/// A kind is 1..=64 of `[a-z0-9_.-]` (it is matched on, and shown to agents).
fn valid_kind(kind: &str) -> bool {
    (1..=64).contains(&kind.len())
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

/// The message, cut to [`MAX_MESSAGE_CHARS`] characters.
fn clip(message: &str) -> String {
    message.chars().take(MAX_MESSAGE_CHARS).collect()
}

/// Raises an alert for a device, unless it already has an open alert of the same kind:
/// then nothing happens and `None` is returned. On success the alert is stored, published
/// on the live stream (live clients, and the agent as `alert_push`) and queued for the
/// webhook; the caller does not wait for either.
///
/// `kind` is 1..=64 of `[a-z0-9_.-]`, `message` is not empty (cut to 512 characters),
/// `risk_score` is within 0..=1: otherwise `INVALID_FIELD`. An unknown device is
/// `NOT_FOUND`.
pub async fn raise(
    state: &AppState,
    device_id: &str,
    kind: &str,
    severity: Severity,
    message: &str,
    risk_score: Option<f64>,
) -> Result<Option<Alert>, ApiError> {
    if !valid_kind(kind) {
        return Err(invalid("an alert kind is 1..=64 of [a-z0-9_.-]"));
    }
    if message.trim().is_empty() {
        return Err(invalid("an alert needs a message"));
    }
    if risk_score.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
        return Err(invalid("a risk score is within 0..=1"));
    }
    let device = state
        .store
        .device(device_id)
        .await?
        .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "no such device"))?;
    let alert = Alert {
        id: crate::random::id("alr"),
        device_id: device.id,
        owner_id: device.owner_id,
        severity,
        kind: kind.to_owned(),
        message: clip(message),
        risk_score,
        created_at: state.now(),
        acked_at: None,
        acked_by: None,
    };
    if !state.store.insert_alert(&alert).await? {
        tracing::debug!(device = %alert.device_id, kind, "alert already open");
        return Ok(None);
    }
    tracing::info!(alert = %alert.id, device = %alert.device_id, kind, ?severity, "alert raised");
    announce(state, &alert, WebhookEvent::Raised).await;
    Ok(Some(alert))
}

/// Acknowledges an alert as `caller`: the alert's owner or an admin may (an auditor sees
/// alerts but changes nothing: `FORBIDDEN`); anyone else gets `NOT_FOUND`, as for an
/// unknown id. Acknowledging an acknowledged alert changes nothing and returns it as it
/// is. A new acknowledgement is audited, published on the live stream and posted to the
/// webhook.
pub async fn ack(state: &AppState, alert_id: &str, caller: &Caller) -> Result<AlertView, ApiError> {
    let alert = visible_alert(state, caller, alert_id).await?;
    caller.require(&[Role::Admin, Role::Student])?;
    if alert.acked_at.is_some() {
        return Ok(AlertView::from(&alert));
    }
    let acked = state
        .store
        .ack_alert(&alert.id, &caller.user.id, state.now())
        .await?;
    let current = state
        .store
        .alert(&alert.id)
        .await?
        .ok_or_else(|| ApiError::internal("an acknowledged alert vanished"))?;
    if acked {
        audit::record(
            state,
            &caller.user.id,
            "alert.ack",
            Some(&current.id),
            Outcome::Success,
            json!({"device_id": current.device_id, "kind": current.kind}),
        )
        .await?;
        announce(state, &current, WebhookEvent::Acked).await;
    }
    Ok(AlertView::from(&current))
}

/// An alert the caller may see (its owner, admins and auditors); anything else is
/// `NOT_FOUND` (no existence leak).
pub async fn visible_alert(
    state: &AppState,
    caller: &Caller,
    alert_id: &str,
) -> Result<Alert, ApiError> {
    match state.store.alert(alert_id).await? {
        Some(a)
            if caller.sees_all_devices()
                || a.owner_id.as_deref() == Some(caller.user.id.as_str()) =>
        {
            Ok(a)
        }
        _ => Err(ApiError::with_message(ErrorCode::NotFound, "no such alert")),
    }
}

/// The alerts the caller may see, newest first: their own devices' (admins and auditors:
/// every device's). Acknowledged ones only if `include_acked`; `limit` is capped at
/// [`MAX_LIST`].
pub async fn list(
    state: &AppState,
    caller: &Caller,
    include_acked: bool,
    limit: u32,
) -> Result<Vec<AlertView>, ApiError> {
    let limit = limit.min(MAX_LIST);
    let alerts = if caller.sees_all_devices() {
        state.store.all_alerts(include_acked, limit).await?
    } else {
        state
            .store
            .alerts_for_owner(&caller.user.id, include_acked, limit)
            .await?
    };
    Ok(alerts.iter().map(AlertView::from).collect())
}

/// Publishes the alert on the live stream and queues it for the webhook. Failures are
/// logged: the alert itself is stored already.
async fn announce(state: &AppState, alert: &Alert, event: WebhookEvent) {
    let view = AlertView::from(alert);
    match serde_json::to_value(&view) {
        Ok(data) => {
            let live = LiveEvent {
                kind: LiveKind::Alert,
                device_id: alert.device_id.clone(),
                owner_id: alert.owner_id.clone(),
                at: state.now(),
                data,
            };
            if let Err(e) = publish_live(state, &live).await {
                tracing::warn!(alert = %alert.id, error = %e, "publishing the alert on the live stream failed");
            }
        }
        Err(e) => tracing::error!(alert = %alert.id, error = %e, "serializing an alert failed"),
    }
    state.webhook.notify(event, &view);
}

#[cfg(test)]
mod tests;
