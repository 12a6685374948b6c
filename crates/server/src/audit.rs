//! Writing audit events. Every security-relevant action records who did what to what,
//! when, and how it ended. An audit write that fails fails the action: an action that
//! cannot be recorded is not done.

use serde_json::Value;
use tether_store::NewAuditEvent;

use crate::error::ApiError;
use crate::state::AppState;

/// Outcome of an audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It happened.
    Success,
    /// It was attempted and failed (wrong password, bad code).
    Failure,
    /// Policy or permissions refused it.
    Denied,
}

impl Outcome {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }

    /// Parses the stored spelling (an audit query's `outcome` filter).
    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "success" => Some(Outcome::Success),
            "failure" => Some(Outcome::Failure),
            "denied" => Some(Outcome::Denied),
            _ => None,
        }
    }
}

/// Appends one audit event. The device it concerns (what `GET /api/audit?device=` and
/// `GET /api/devices/{id}/audit` match) is its target when that is a device, else
/// `detail.device_id` ([`tether_store::concerned_device`]).
pub async fn record(
    state: &AppState,
    actor: &str,
    action: &str,
    target: Option<&str>,
    outcome: Outcome,
    detail: Value,
) -> Result<u64, ApiError> {
    let e = NewAuditEvent {
        device_id: tether_store::concerned_device(target, &detail),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: target.map(str::to_owned),
        outcome: outcome.as_str().to_owned(),
        detail,
        trace_id: Some(crate::trace::current_trace_id()),
        at: state.now(),
    };
    Ok(state.store.append_audit(&e).await?)
}
