//! Commands (flow 2): ingest, routing to the device's agent session, the state machine,
//! retries, the dead-letter queue and expiry.
//!
//! The store is the source of truth: a command is a row whose state only moves through
//! [`Store::transition_command`](tether_store::Store::transition_command), a
//! compare-and-set that records every transition. The bus carries it:
//!
//! - **ingest** stores the command `queued`. When the device's session is in this
//!   process it hands the stored command to it ([`crate::live::LiveHub::hand_over`]);
//!   otherwise it signs it with the server key as a `command_delivery` envelope
//!   (attempt 1, the command's trace id, its TTL), appends that to the device's stream
//!   [`device_stream`] and publishes a [`LiveKind::CommandWake`] for whichever gateway
//!   holds the device's session;
//! - the **gateway** session of the device reads its stream with the consumer group
//!   [`GATEWAY_GROUP`] (at connect and on every wake or hand-over, after delivering
//!   the handed command), claiming entries another gateway left pending for longer
//!   than [`CLAIM_IDLE`] (it died), verifies the server's signature and TTL, moves the
//!   command `queued → sent` and writes a fresh
//!   `command_delivery` to the agent; at connect it also redelivers, from the store,
//!   every command still in flight, `high` priority first (so neither a lost stream
//!   entry nor a gateway that died between `sent` and the result loses a command; the
//!   agent dedupes by id), and finishes any command left in `result_posted`;
//! - the agent's `command_ack`, `command_status` and `command_result` move it on
//!   ([`agent`]);
//! - the **CommandWorker** ([`crate::workers::commands`]) redelivers a `sent` command
//!   whose ack is overdue (`commands.retry_backoff_s`, by default 30 s, 120 s, 600 s after
//!   attempts 1, 2, 3: three attempts), moves it to the dead-letter queue ([`dlq_stream`],
//!   state `dlq`, error 5003) after the last, and expires commands whose TTL passed.
//!
//! Every transition is also a [`LiveKind::CommandStatus`] live event for the device's
//! owner (and admins), and an audit event `command.<state>` that the store writes in the
//! same atomic write as the state change ([`tether_store::command_audit`]).

pub mod agent;
pub mod ingest;
pub mod owner_sig;
pub mod view;

use serde_json::{Value, json};
use tether_proto::messages::command::CommandState;
use tether_store::{Command, CommandUpdate};

use crate::error::ApiError;
use crate::events::{LiveEvent, LiveKind, publish_live};
use crate::state::AppState;

pub use view::CommandView;

/// The consumer group gateways read device streams with.
pub const GATEWAY_GROUP: &str = "gateway";
/// A stream entry pending this long with a consumer is taken over (its gateway died).
pub const CLAIM_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// The bus stream of one device's commands.
pub fn device_stream(device_id: &str) -> String {
    format!("cmd:{device_id}")
}

/// The dead-letter stream of one device.
pub fn dlq_stream(device_id: &str) -> String {
    format!("dlq:{device_id}")
}

/// Moves a command from one of `from` to `to` (the store records the transition and its
/// audit event with it) and tells everyone who should know: a live event for the
/// device's owner, a log line with the trace id. Returns the command after the move, or
/// `None` if it was in none of `from` (someone else moved it first, or it is finished):
/// then nothing is published.
pub async fn transition(
    state: &AppState,
    id: &str,
    from: &[CommandState],
    to: CommandState,
    update: CommandUpdate,
) -> Result<Option<Command>, ApiError> {
    let at = state.now();
    let Some((before, after)) = state
        .store
        .transition_command(id, from, to, at, &update)
        .await?
    else {
        return Ok(None);
    };
    announce(state, &after, Some(before), &update.detail).await;
    Ok(Some(after))
}

/// Publishes a command's current state (after ingest or a transition): live event, log
/// line. Best effort: the store already holds the truth, and the audit event, written
/// with the state change ([`tether_store::command_audit`]).
pub async fn announce(state: &AppState, c: &Command, from: Option<CommandState>, detail: &Value) {
    let cmd = &c.command;
    tracing::info!(
        trace_id = %cmd.trace_id,
        command = %cmd.id,
        device = %cmd.device_id,
        from = from.map(tether_store::state_str).unwrap_or("-"),
        to = tether_store::state_str(c.state),
        attempts = c.attempts,
        "command state"
    );
    crate::prom::command_announced(c, from);
    let owner = crate::live::LiveHub::owner_of(state, &cmd.device_id).await;
    let mut data = serde_json::Map::new();
    let base = json!({
        "command_id": cmd.id,
        "method": cmd.method,
        "state": c.state,
        "from": from,
        "attempts": c.attempts,
        "trace_id": cmd.trace_id,
        "origin_user_id": cmd.origin_user_id,
    });
    if let Value::Object(m) = base {
        data.extend(m);
    }
    if let Some(code) = c.error_code {
        data.insert("error".into(), json!(code));
    }
    if tether_store::is_terminal(c.state)
        && let Some(r) = &c.result
    {
        data.insert("result".into(), r.clone());
    }
    if detail.as_object().is_some_and(|d| !d.is_empty()) {
        data.insert("detail".into(), detail.clone());
    }
    let data = Value::Object(data);
    let event = LiveEvent {
        kind: LiveKind::CommandStatus,
        device_id: cmd.device_id.clone(),
        owner_id: owner,
        at: c.updated_at,
        data,
    };
    if let Err(e) = publish_live(state, &event).await {
        tracing::warn!(trace_id = %cmd.trace_id, command = %cmd.id, error = %e.code(), "command live event not published");
    }
}

/// Wakes the gateway session of a device (wherever it runs): new entries wait in its
/// stream, or `redeliver` names an in-flight command to send again.
pub async fn wake(state: &AppState, device_id: &str, redeliver: Option<&str>) {
    let event = LiveEvent {
        kind: LiveKind::CommandWake,
        device_id: device_id.to_owned(),
        owner_id: None,
        at: state.now(),
        data: json!({"redeliver": redeliver}),
    };
    if let Err(e) = publish_live(state, &event).await {
        tracing::warn!(device = %device_id, error = %e.code(), "command wake not published");
    }
}
