//! The background workers of the telemetry pipeline, started by [`crate::app::start`]
//! beside the HTTP server and stopped by the same cancellation token:
//!
//! - [`analytics::AnalyticsWorker`] consumes the bus's telemetry stream: risk score,
//!   storage, live event, alert rules;
//! - [`rollup::RollupWorker`] keeps the hourly and daily rollups current and prunes raw
//!   telemetry past its retention;
//! - [`offline::OfflineWorker`] raises `offline` alerts for silent devices;
//! - [`commands::CommandWorker`] redelivers commands whose ack is overdue, dead-letters
//!   them after the last attempt, and expires those whose TTL passed;
//! - the alert webhook's [`WebhookWorker`] delivers alerts to the configured receiver;
//! - [`crate::gateway::telemetry::watch_backlog`] reads the telemetry stream's backlog
//!   once a second for the gateway's admission check.
//!
//! Every process runs all of them: the analytics share the stream's consumer group, and
//! the other two only do idempotent writes (upserts, conditional alerts).

pub mod analytics;
pub mod commands;
pub mod offline;
pub mod rollup;

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::alerts::webhook::WebhookWorker;
use crate::state::AppState;

/// Starts every worker; returns their handles for the shutdown to wait on. Each runs in a
/// tracing span named after it.
pub fn spawn_all(
    state: &AppState,
    webhook: Option<WebhookWorker>,
    shutdown: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![
        tokio::spawn(
            analytics::AnalyticsWorker::new(state.clone())
                .run(shutdown.clone())
                .instrument(tracing::info_span!("worker", name = "analytics")),
        ),
        tokio::spawn(
            rollup::RollupWorker::new(state.clone())
                .run(shutdown.clone())
                .instrument(tracing::info_span!("worker", name = "rollup")),
        ),
        tokio::spawn(
            offline::OfflineWorker::new(state.clone())
                .run(shutdown.clone())
                .instrument(tracing::info_span!("worker", name = "offline")),
        ),
        tokio::spawn(
            commands::CommandWorker::new(state.clone())
                .run(shutdown.clone())
                .instrument(tracing::info_span!("worker", name = "commands")),
        ),
        tokio::spawn(
            crate::gateway::telemetry::watch_backlog(state.clone(), shutdown.clone())
                .instrument(tracing::info_span!("worker", name = "telemetry-backlog")),
        ),
    ];
    if let Some(webhook) = webhook {
        tasks.push(tokio::spawn(
            webhook
                .run(shutdown.clone())
                .instrument(tracing::info_span!("worker", name = "alert-webhook")),
        ));
    }
    tasks
}

/// Waits `d`, or until shutdown: returns false if shutting down.
pub(crate) async fn pause(shutdown: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}
