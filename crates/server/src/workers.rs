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
//!
//! The analytics worker runs on a thread of its own (`bulk`, an [`Offload`] at the
//! priority of bulk work: [`crate::priority`]), with store connections of its own (the
//! caller opens a second pool on the same database, from that thread). On the shared
//! runtime it is one task among tens of thousands of agent sessions: each of the dozen
//! awaits of one read (bus, store, bus) waits behind every session that is ready, so
//! with 18,000 agents sending it stored a few hundred samples a second while the
//! gateway accepted thousands, and the backlog reached its limit. On its own thread the
//! operating system gives it its share of the CPU whatever the sessions do (with
//! `telemetry.bulk_nice`, only the CPU that nothing interactive wants).

pub mod analytics;
pub mod commands;
pub mod offline;
pub mod rollup;

use std::sync::Arc;
use std::time::Duration;

use tether_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::alerts::webhook::WebhookWorker;
use crate::offload::Offload;
use crate::state::AppState;

/// Starts every worker; returns their handles for the shutdown to wait on. Each runs in a
/// tracing span named after it.
pub fn spawn_all(
    state: &AppState,
    bulk: Offload,
    analytics_store: Arc<dyn Store>,
    webhook: Option<WebhookWorker>,
    shutdown: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let analytics = analytics::AnalyticsWorker::new(state.clone(), analytics_store);
    let mut tasks = vec![
        spawn_on(bulk, shutdown, move |stop| {
            analytics
                .run(stop)
                .instrument(tracing::info_span!("worker", name = "analytics"))
        }),
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

/// Runs a worker on `runtime` (a thread of its own) and returns a handle (a task on the
/// calling runtime) that completes when the worker has returned (or panicked, which is
/// logged). The worker is given a token that is cancelled at `shutdown`, and returns at
/// its next check of it. Should the handle's task be dropped instead (the calling
/// runtime shut down, or the handle aborted), the runtime goes with it and the worker is
/// dropped wherever it waits: nothing it has not finished was acknowledged on the bus,
/// so that work is redelivered. Either way it never outlives the server it works for.
fn spawn_on<W, F>(runtime: Offload, shutdown: &CancellationToken, worker: W) -> JoinHandle<()>
where
    W: FnOnce(CancellationToken) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let stop = shutdown.child_token();
    let guard = stop.clone().drop_guard();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    runtime.spawn(async move {
        worker(stop).await;
        let _ = done_tx.send(());
    });
    tokio::spawn(async move {
        let _stop_when_dropped = guard;
        if done_rx.await.is_err() {
            tracing::error!("a worker stopped with a panic");
        }
        drop(runtime);
    })
}

/// Waits `d`, or until shutdown: returns false if shutting down.
pub(crate) async fn pause(shutdown: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}
