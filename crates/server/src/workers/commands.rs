//! The CommandWorker: every `commands.sweep_every_s` it
//!
//! - redelivers each `sent` command whose ack is overdue (the deadlines are
//!   `commands.retry_backoff_s`, 30 s, 120 s and 600 s by default, after attempts 1, 2, 3):
//!   the attempt is counted, a new deadline set, and the device's session woken to send
//!   it again; a device that is offline gets no attempt counted (its session redelivers
//!   at reconnect);
//! - after the last attempt's deadline, moves the command to `dlq` (error 5003), appends
//!   it to the device's dead-letter stream and raises a `command_dlq` alert (owner's live
//!   view, the agent, the webhook);
//! - moves every command whose TTL passed before it ran to `expired` (its originator sees
//!   that on the live view);
//! - wakes the session of an online device whose command is still `queued` after 5 s
//!   (its bus entry or wake-up was lost), which takes it from the store.
//!
//! Times come from the injected clock, so tests drive the schedule without sleeping;
//! several processes may run the worker at once, the store's compare-and-set
//! transitions let exactly one of them move each command.

use std::time::Duration;

use serde_json::json;
use tether_proto::ErrorCode;
use tether_proto::messages::command::CommandState;
use tether_proto::messages::notify::Severity;
use tether_store::{Command, CommandUpdate};
use tokio_util::sync::CancellationToken;

use super::pause;
use crate::commands::agent::{ack_deadline, expire};
use crate::commands::{dlq_stream, transition, wake};
use crate::error::ApiError;
use crate::events::STREAM_MAX_LEN;
use crate::routes::devices::presence_key;
use crate::state::AppState;

/// The alert kind raised when a command is dead-lettered.
pub const KIND_COMMAND_DLQ: &str = "command_dlq";
/// A command queued this long while its device is online is handed to the device's
/// session again.
const QUEUED_TOO_LONG: Duration = Duration::from_secs(5);
/// How many commands one sweep handles per query.
const BATCH: u32 = 256;

/// The worker.
#[derive(Debug)]
pub struct CommandWorker {
    state: AppState,
}

impl CommandWorker {
    /// A worker over the state's store, bus and configuration.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// Sweeps every `commands.sweep_every_s` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let every = Duration::from_secs(self.state.config.commands.sweep_every_s);
        loop {
            if !pause(&shutdown, every).await {
                return;
            }
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "command sweep failed; retrying at the next one");
            }
        }
    }

    /// One sweep: overdue acks, then expiry.
    pub async fn sweep(&self) -> Result<(), ApiError> {
        let state = &self.state;
        let now = state.now();
        for c in state.store.commands_expired(now, BATCH).await? {
            expire(state, &c).await;
        }
        // A command still queued after a while never reached its device's session (its
        // stream entry or wake-up was lost): wake the session of each such device that is
        // online, which then takes it from the store.
        let stale = now.saturating_sub(QUEUED_TOO_LONG);
        let mut woken = std::collections::HashSet::new();
        for c in state.store.commands_queued_before(stale, BATCH).await? {
            let device = &c.command.device_id;
            if woken.insert(device.clone()) && state.bus.get(&presence_key(device)).await?.is_some()
            {
                tracing::info!(trace_id = %c.command.trace_id, command = %c.command.id, "a queued command waits too long; waking its device's session");
                wake(state, device, None).await;
            }
        }
        for c in state.store.commands_due_for_retry(now, BATCH).await? {
            self.overdue(&c).await.inspect_err(|e| {
                tracing::warn!(trace_id = %c.command.trace_id, command = %c.command.id, error = %e, "retry or dead-letter failed");
            })?;
        }
        Ok(())
    }

    async fn overdue(&self, c: &Command) -> Result<(), ApiError> {
        let state = &self.state;
        let max = u32::try_from(state.config.commands.retry_backoff_s.len()).unwrap_or(u32::MAX);
        let id = &c.command.id;
        if c.attempts >= max {
            return self.dead_letter(c).await;
        }
        let online = state
            .bus
            .get(&presence_key(&c.command.device_id))
            .await?
            .is_some();
        let now = state.now();
        let update = if online {
            let attempt = c.attempts.saturating_add(1);
            CommandUpdate {
                attempts: Some(attempt),
                next_attempt_at: Some(Some(now.saturating_add(ack_deadline(state, attempt)))),
                detail: json!({"attempt": attempt, "via": "retry"}),
                ..CommandUpdate::default()
            }
        } else {
            CommandUpdate {
                next_attempt_at: Some(None),
                detail: json!({"via": "retry", "waiting": "device offline; redelivered when it reconnects"}),
                ..CommandUpdate::default()
            }
        };
        let moved =
            transition(state, id, &[CommandState::Sent], CommandState::Sent, update).await?;
        if online && moved.is_some() {
            wake(state, &c.command.device_id, Some(id)).await;
        }
        Ok(())
    }

    async fn dead_letter(&self, c: &Command) -> Result<(), ApiError> {
        let state = &self.state;
        let cmd = &c.command;
        let update = CommandUpdate {
            next_attempt_at: Some(None),
            error_code: Some(ErrorCode::DeliveryFailed.number()),
            detail: json!({"reason": "no ack after the last delivery attempt", "attempts": c.attempts}),
            ..CommandUpdate::default()
        };
        let Some(dead) = transition(
            state,
            &cmd.id,
            &[CommandState::Sent],
            CommandState::Dlq,
            update,
        )
        .await?
        else {
            return Ok(());
        };
        let record = json!({
            "command_id": cmd.id,
            "device_id": cmd.device_id,
            "method": cmd.method,
            "origin_user_id": cmd.origin_user_id,
            "trace_id": cmd.trace_id,
            "attempts": dead.attempts,
            "state": "dlq",
            "error": ErrorCode::DeliveryFailed.number(),
            "at": dead.updated_at,
        });
        let bytes = serde_json::to_vec(&record).map_err(ApiError::internal)?;
        if let Err(e) = state
            .bus
            .append(&dlq_stream(&cmd.device_id), &bytes, STREAM_MAX_LEN)
            .await
        {
            tracing::warn!(trace_id = %cmd.trace_id, error = %e, "dead-letter entry not written");
        }
        let message = format!(
            "{} to this device was not acknowledged after {} delivery attempts and went to the dead-letter queue",
            serde_json::to_value(cmd.method)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            dead.attempts
        );
        crate::alerts::raise(
            state,
            &cmd.device_id,
            KIND_COMMAND_DLQ,
            Severity::Warning,
            &message,
            None,
        )
        .await?;
        Ok(())
    }
}
