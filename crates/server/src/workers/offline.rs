//! The OfflineWorker: every `alerts.offline_check_s` it looks for active devices the server
//! has not heard from for `alerts.offline_after_s` — no telemetry since (or, if never any,
//! since pairing) and no presence key on the bus — and raises an `offline` warning for
//! each, once per silence: not again while the device's newest `offline` alert was raised
//! after its last sign of life (acknowledged or not).
//!
//! A device that holds a presence key is online even without telemetry (an agent that
//! only sends heartbeats): the worker records it as seen now, so its silence is counted
//! from when its presence lapses.

use std::time::Duration;

use tether_proto::messages::notify::Severity;
use tether_store::SeenDevice;
use tokio_util::sync::CancellationToken;

use super::pause;
use crate::alerts::{self, KIND_OFFLINE};
use crate::error::ApiError;
use crate::routes::devices::presence_key;
use crate::state::AppState;

/// The worker.
#[derive(Debug)]
pub struct OfflineWorker {
    state: AppState,
}

impl OfflineWorker {
    /// A worker over the state's store, bus and configuration.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// Scans every `alerts.offline_check_s` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let every = Duration::from_secs(self.state.config.alerts.offline_check_s);
        loop {
            if !pause(&shutdown, every).await {
                return;
            }
            if let Err(e) = self.scan().await {
                tracing::warn!(error = %e, "offline scan failed; retrying at the next one");
            }
        }
    }

    /// One scan; returns how many alerts it raised.
    pub async fn scan(&self) -> Result<usize, ApiError> {
        let state = &self.state;
        let now = state.now();
        let after = Duration::from_secs(state.config.alerts.offline_after_s);
        let mut raised: usize = 0;
        for silent in state
            .store
            .devices_last_seen_before(now.saturating_sub(after))
            .await?
        {
            let id = &silent.device.id;
            if state.bus.get(&presence_key(id)).await?.is_some() {
                state.store.set_last_seen(id, now).await?;
                continue;
            }
            let since = last_sign_of_life(&silent);
            // Told already if the newest offline alert came after the last sign of life
            // (an alert is raised only well after it, so equal times mean it came back).
            if let Some(told) = state.store.latest_alert(id, KIND_OFFLINE).await?
                && told.created_at > since
            {
                continue;
            }
            let minutes = now.0.saturating_sub(since.0) / 60_000;
            let message = format!(
                "{} has not been heard from for {minutes} minutes",
                silent.device.name
            );
            if alerts::raise(state, id, KIND_OFFLINE, Severity::Warning, &message, None)
                .await?
                .is_some()
            {
                raised = raised.saturating_add(1);
            }
        }
        Ok(raised)
    }
}

/// When the device was last heard from: its last telemetry, else its pairing, else its
/// creation.
fn last_sign_of_life(d: &SeenDevice) -> tether_proto::UnixMillis {
    d.last_seen_at
        .or(d.device.paired_at)
        .unwrap_or(d.device.created_at)
}
