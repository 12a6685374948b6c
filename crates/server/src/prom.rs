//! Prometheus metrics of this process, served at `GET /metrics` (text format 0.0.4).
//!
//! Not to be confused with `routes/metrics.rs`, the per-device telemetry rollups.
//!
//! The `metrics` facade keeps one recorder per process: [`install`] sets ours once (the
//! first server started in a process installs it; later ones, as in-process tests start
//! many, find it there). A server is one process in production, so "this process" and
//! "this server" are the same; every process of a deployment is scraped on its own and
//! Prometheus sums them. The recording functions below are the only places that name a
//! metric, so the names, labels and meanings are in one file (docs/operations.md,
//! *Metrics*, lists them for operators).
//!
//! Labels take values from closed sets only (methods, states, error code names): a label
//! never carries an id, so the number of series is bounded.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::Value;
use tether_proto::ErrorCode;
use tether_proto::messages::command::{CommandState, Method};
use tether_store::{Command, Role};
use tokio_util::sync::CancellationToken;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Commands accepted (new, not idempotent repeats), by `method`.
pub const COMMANDS_INGESTED: &str = "tether_commands_ingested_total";
/// State changes of commands, by the state moved `to` (ingest counts as `queued`).
pub const COMMAND_TRANSITIONS: &str = "tether_command_transitions_total";
/// Commands that reached a terminal state, by `state`.
pub const COMMANDS_FINISHED: &str = "tether_commands_finished_total";
/// Commands moved to the dead-letter queue.
pub const COMMANDS_DLQ: &str = "tether_commands_dlq_total";
/// Seconds from a command's creation to its first delivery (`queued → sent`).
pub const DISPATCH_LATENCY: &str = "tether_command_dispatch_latency_seconds";
/// Seconds a command took on the PC, as its result's `duration_ms` says.
pub const EXECUTION: &str = "tether_command_execution_seconds";
/// Agent sessions open on this process.
pub const AGENTS_CONNECTED: &str = "tether_agents_connected";
/// Telemetry samples accepted into the pipeline.
pub const TELEMETRY_ACCEPTED: &str = "tether_telemetry_accepted_total";
/// Telemetry samples the analytics stored (a redelivered sample is counted once).
pub const TELEMETRY_STORED: &str = "tether_telemetry_stored_total";
/// Live telemetry events not passed on to other server processes because the live
/// hub's outbox was full (this process's own viewers still got them).
pub const LIVE_DROPPED: &str = "tether_live_events_dropped_total";
/// Telemetry frames refused, by error `code` name.
pub const TELEMETRY_REJECTED: &str = "tether_telemetry_rejected_total";
/// Batches of signatures (telemetry samples' and heartbeats') the gateway's signature
/// checker checked.
pub const SIGNATURE_BATCHES: &str = "tether_signature_batches_total";
/// Signatures the gateway's signature checker checked (divided by
/// [`SIGNATURE_BATCHES`]: the mean batch size).
pub const SIGNATURES_BATCHED: &str = "tether_signatures_batched_total";
/// Live-view (SSE) streams open on this process.
pub const LIVE_SUBSCRIBERS: &str = "tether_live_subscribers";

/// Dispatch latency buckets (seconds): sub-second for an online device, up to a day for
/// one that was offline when the command came.
const DISPATCH_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
    3600.0, 21_600.0, 86_400.0,
];
/// Execution time buckets (seconds): a lock takes milliseconds, a log bundle minutes.
const EXECUTION_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Terminal states, the values of [`COMMANDS_FINISHED`]'s `state`.
const TERMINAL: &[CommandState] = &[
    CommandState::Completed,
    CommandState::Failed,
    CommandState::Expired,
    CommandState::Denied,
    CommandState::Dlq,
];

/// How often histogram samples are folded in when nobody scrapes (bounds their memory).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder (once; later calls return the same handle). If another
/// recorder was installed first (a program embedding the server), ours still renders,
/// but what the facade records goes to the other one: a warning says so.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        if let Err(e) = metrics::set_global_recorder(recorder) {
            tracing::warn!(error = %e, "another metrics recorder is installed: /metrics stays empty");
        }
        describe();
        handle
    })
}

/// Our exporter's settings: histograms, not summaries (buckets add up across processes,
/// quantiles do not).
fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(DISPATCH_LATENCY.into()), DISPATCH_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(EXECUTION.into()), EXECUTION_BUCKETS))
        .unwrap_or_else(|e| {
            // Only an empty bucket list fails, and neither is.
            tracing::warn!(error = %e, "histogram buckets refused: summaries instead");
            PrometheusBuilder::new()
        })
}

/// Help texts, and every series at zero: a counter that exists from the start makes
/// `rate()` and `increase()` right from the first event.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        COMMANDS_INGESTED,
        Unit::Count,
        "Commands accepted, by method."
    );
    describe_counter!(
        COMMAND_TRANSITIONS,
        Unit::Count,
        "Command state changes, by the state moved to (ingest counts as queued)."
    );
    describe_counter!(
        COMMANDS_FINISHED,
        Unit::Count,
        "Commands that reached a terminal state, by state."
    );
    describe_counter!(
        COMMANDS_DLQ,
        Unit::Count,
        "Commands moved to the dead-letter queue."
    );
    describe_histogram!(
        DISPATCH_LATENCY,
        Unit::Seconds,
        "Seconds from a command's creation to its first delivery to the agent."
    );
    describe_histogram!(
        EXECUTION,
        Unit::Seconds,
        "Seconds a command took on the PC (its result's duration_ms)."
    );
    describe_gauge!(
        AGENTS_CONNECTED,
        Unit::Count,
        "Agent sessions open on this process."
    );
    describe_counter!(
        TELEMETRY_ACCEPTED,
        Unit::Count,
        "Telemetry samples accepted."
    );
    describe_counter!(
        TELEMETRY_STORED,
        Unit::Count,
        "Telemetry samples stored by the analytics."
    );
    describe_counter!(
        LIVE_DROPPED,
        Unit::Count,
        "Live telemetry events not relayed to other processes (outbox full)."
    );
    describe_counter!(
        TELEMETRY_REJECTED,
        Unit::Count,
        "Telemetry frames refused, by error code."
    );
    describe_counter!(
        SIGNATURE_BATCHES,
        Unit::Count,
        "Batches of signatures (telemetry and heartbeats) checked."
    );
    describe_counter!(
        SIGNATURES_BATCHED,
        Unit::Count,
        "Signatures (telemetry and heartbeats) checked by the batch checker."
    );
    describe_gauge!(
        LIVE_SUBSCRIBERS,
        Unit::Count,
        "Live-view streams open on this process."
    );

    for m in Method::ALL {
        metrics::counter!(COMMANDS_INGESTED, "method" => method_label(*m)).increment(0);
    }
    for s in ALL_STATES {
        metrics::counter!(COMMAND_TRANSITIONS, "to" => tether_store::state_str(*s)).increment(0);
    }
    for s in TERMINAL {
        metrics::counter!(COMMANDS_FINISHED, "state" => tether_store::state_str(*s)).increment(0);
    }
    metrics::counter!(COMMANDS_DLQ).increment(0);
    // A registered histogram renders (all buckets at zero) before its first sample.
    let _ = metrics::histogram!(DISPATCH_LATENCY);
    let _ = metrics::histogram!(EXECUTION);
    metrics::counter!(TELEMETRY_ACCEPTED).increment(0);
    metrics::counter!(TELEMETRY_STORED).increment(0);
    metrics::counter!(LIVE_DROPPED).increment(0);
    metrics::counter!(SIGNATURE_BATCHES).increment(0);
    metrics::counter!(SIGNATURES_BATCHED).increment(0);
    metrics::gauge!(AGENTS_CONNECTED).increment(0.0);
    metrics::gauge!(LIVE_SUBSCRIBERS).increment(0.0);
}

const ALL_STATES: &[CommandState] = &[
    CommandState::AwaitingApproval,
    CommandState::Queued,
    CommandState::Sent,
    CommandState::AckReceived,
    CommandState::Executing,
    CommandState::ResultPosted,
    CommandState::Completed,
    CommandState::Failed,
    CommandState::Expired,
    CommandState::Denied,
    CommandState::Dlq,
];

/// A method's wire spelling (its label value).
pub const fn method_label(m: Method) -> &'static str {
    match m {
        Method::LockScreen => "lock_screen",
        Method::Logoff => "logoff",
        Method::Reboot => "reboot",
        Method::Shutdown => "shutdown",
        Method::Screenshot => "screenshot",
        Method::CollectLogs => "collect_logs",
        Method::RunAttestation => "run_attestation",
        Method::RunTamperCheck => "run_tamper_check",
        Method::MemoryDump => "memory_dump",
    }
}

/// Folds histogram samples in every few seconds until `shutdown` (the scrape does it
/// too; this bounds memory when nobody scrapes).
pub async fn upkeep(shutdown: CancellationToken) {
    let handle = install();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(UPKEEP_EVERY) => handle.run_upkeep(),
        }
    }
}

/// Counts a command's announced state (see [`crate::commands::announce`]): ingest
/// (`from` is `None`) and every transition; a terminal state and the dead-letter queue;
/// the dispatch latency at `queued → sent`; the execution time when the result is
/// posted.
pub fn command_announced(c: &Command, from: Option<CommandState>) {
    let to = c.state;
    if from.is_none() {
        metrics::counter!(COMMANDS_INGESTED, "method" => method_label(c.command.method))
            .increment(1);
    }
    metrics::counter!(COMMAND_TRANSITIONS, "to" => tether_store::state_str(to)).increment(1);
    if tether_store::is_terminal(to) {
        metrics::counter!(COMMANDS_FINISHED, "state" => tether_store::state_str(to)).increment(1);
    }
    match to {
        CommandState::Dlq => metrics::counter!(COMMANDS_DLQ).increment(1),
        // Only `queued → sent` is a first delivery (`sent → sent` is a retry).
        CommandState::Sent if from == Some(CommandState::Queued) => {
            let ms = c.updated_at.0.saturating_sub(c.command.created_at.0);
            metrics::histogram!(DISPATCH_LATENCY).record(seconds(ms));
        }
        CommandState::ResultPosted => {
            if let Some(ms) = c
                .result
                .as_ref()
                .and_then(|r| r.get("duration_ms"))
                .and_then(Value::as_u64)
            {
                metrics::histogram!(EXECUTION).record(seconds(ms));
            }
        }
        _ => {}
    }
}

/// Milliseconds as seconds (exact below 2^53 ms, some 285,000 years).
#[allow(clippy::cast_precision_loss)] // see above
fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// A telemetry sample accepted into the pipeline.
pub fn telemetry_accepted() {
    metrics::counter!(TELEMETRY_ACCEPTED).increment(1);
}

/// `n` telemetry samples stored.
pub fn telemetry_stored(n: usize) {
    metrics::counter!(TELEMETRY_STORED).increment(u64::try_from(n).unwrap_or(u64::MAX));
}

/// A batch of `n` signatures checked.
pub fn signature_batch(n: usize) {
    metrics::counter!(SIGNATURE_BATCHES).increment(1);
    metrics::counter!(SIGNATURES_BATCHED).increment(u64::try_from(n).unwrap_or(u64::MAX));
}

/// A live event not relayed to other processes.
pub fn live_dropped() {
    metrics::counter!(LIVE_DROPPED).increment(1);
}

/// A telemetry frame refused with `code`.
pub fn telemetry_rejected(code: ErrorCode) {
    metrics::counter!(TELEMETRY_REJECTED, "code" => code.name()).increment(1);
}

/// Counts an open agent session in [`AGENTS_CONNECTED`] until dropped (also when the
/// session's task is dropped at shutdown).
#[derive(Debug)]
#[must_use = "the session is counted only while this is held"]
pub struct AgentSession(());

impl AgentSession {
    /// A session opened.
    pub fn open() -> Self {
        metrics::gauge!(AGENTS_CONNECTED).increment(1.0);
        Self(())
    }
}

impl Drop for AgentSession {
    fn drop(&mut self) {
        metrics::gauge!(AGENTS_CONNECTED).decrement(1.0);
    }
}

/// Counts an open live-view stream in [`LIVE_SUBSCRIBERS`] until dropped.
#[derive(Debug)]
#[must_use = "the stream is counted only while this is held"]
pub struct LiveSubscriber(());

impl LiveSubscriber {
    /// A stream opened.
    pub fn open() -> Self {
        metrics::gauge!(LIVE_SUBSCRIBERS).increment(1.0);
        Self(())
    }
}

impl Drop for LiveSubscriber {
    fn drop(&mut self) {
        metrics::gauge!(LIVE_SUBSCRIBERS).decrement(1.0);
    }
}

/// `GET /metrics`: this process's metrics in the Prometheus text format.
///
/// For an admin's or auditor's access token, or `metrics.token` when configured (what a
/// Prometheus server sends: `authorization: {credentials: …}`), as `Authorization: Bearer`.
/// The server listens on public addresses, and the counts tell an outsider how busy the
/// lab is and when: no anonymous scrape.
#[utoipa::path(
    get,
    path = "/metrics",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 401, description = "No token, or not a valid one"),
        (status = 403, description = "A student's token"),
    ),
    security(("bearer" = []))
)]
pub async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    authorize(&state, &headers).await?;
    let mut body = Vec::with_capacity(8 * 1024);
    install()
        .render_to_write(&mut body)
        .map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

async fn authorize(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let token = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::with_message(
                ErrorCode::Unauthenticated,
                "missing Authorization: Bearer token",
            )
        })?
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::with_message(
                ErrorCode::Unauthenticated,
                "Authorization must be `Bearer <token>`",
            )
        })?;
    if let Some(expected) = &state.config.metrics.token
        && same_secret(token, expected.expose())
    {
        return Ok(());
    }
    let (caller, _) = crate::auth::authenticate(state, token).await?;
    caller.require(&[Role::Admin, Role::Auditor])
}

/// Constant-time equality (of HMACs of both under one key: the comparison of the tags is
/// constant-time, and the tags have one length whatever the inputs' lengths).
fn same_secret(presented: &str, expected: &str) -> bool {
    use ring::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"tether/metrics-token/v1");
    let tag = hmac::sign(&key, expected.as_bytes());
    hmac::verify(&key, presented.as_bytes(), tag.as_ref()).is_ok()
}

#[cfg(test)]
mod tests;
