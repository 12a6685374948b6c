//! The AnalyticsWorker: consumes [`TELEMETRY_STREAM`] as a member of [`ANALYTICS_GROUP`]
//! (consumer name: the process's node id) and, for each [`TelemetryRecord`]:
//!
//! 1. scores it against the device's baseline ([`crate::analytics`]);
//! 2. stores it in `telemetry_events` (once per message id) and records the device as
//!    seen at the record's arrival;
//! 3. publishes a [`LiveKind::Telemetry`] event (the body plus `risk_score`);
//! 4. runs the alert rules ([`crate::alerts::rules`]) and raises what fires (for records
//!    stored together, [`batch`], step 3 comes after step 4 and goes to the bus
//!    alongside step 5; a raised alert first publishes the events of the samples
//!    before it);
//! 5. acknowledges the entry once all of its records (an entry holds many, see
//!    [`crate::events`]) are done.
//!
//! Work is never lost: an entry is acknowledged only after its records' store writes
//! (and alerts) succeeded. One that failed stays pending and comes back through `claim_stale` (at start
//! and every 30 s, for entries idle more than 30 s, from this or a dead consumer);
//! everything it does is idempotent (stored once by message id, at most one open alert
//! per kind). A record that cannot ever succeed counts as done, with a log line: one that
//! is not valid, or whose device does not exist (an entry that is not JSON records is
//! acknowledged and dropped); one that failed
//! [`MAX_DELIVERIES`] times is first copied to [`DEAD_LETTER_STREAM`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tether_bus::Entry;
use tether_proto::UnixMillis;
use tether_proto::validate::Validate;
use tether_store::{Alert, NewTelemetryEvent, Store, StoreError, TelemetryPoint};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod batch;

use super::pause;
use crate::alerts::rules::{Firing, RuleState, Thresholds};
use crate::analytics::{Assessment, DeviceModel, HISTORY, Sample};
use crate::error::ApiError;
use crate::events::{
    ANALYTICS_GROUP, LiveEvent, LiveKind, STREAM_MAX_LEN, TELEMETRY_STREAM, TelemetryRecord,
    records_of,
};
use crate::state::AppState;

/// Where entries that failed [`MAX_DELIVERIES`] times are copied before being dropped.
pub const DEAD_LETTER_STREAM: &str = "telemetry-dead";
/// Deliveries after which an entry goes to the dead-letter stream.
pub const MAX_DELIVERIES: u64 = 20;
/// Records per read (and per store transaction; a read takes as many entries as hold
/// about this many). A read's store transaction costs a
/// few statements whatever its size, and each statement a hand-over to the database's
/// thread, which under a saturated CPU waits its turn: tens of milliseconds a read. Big
/// reads keep that wait from capping the rate at which a fleet's telemetry is stored.
/// A read takes only what is waiting, so reads this large come only when the analytics
/// are that far behind; then each sample costs the store less (30.5–31.0 µs of CPU in
/// transactions of 8,192 against 37.1 µs in those of 1,024, `telemetry_write_speed`),
/// and they catch up sooner (fleet runs against reads of 1,024 in docs/benchmarks.md,
/// "Reads of up to 8,192 samples while the analytics are behind").
const BATCH: usize = 8192;
/// How long a read waits for entries.
const BLOCK: Duration = Duration::from_secs(1);
/// After a read that found entries but fewer than a full read, the worker waits this long
/// before the next, so that under load a read takes many samples at once (one store
/// transaction, one bus read and acknowledgement for all) instead of one or two; a
/// sample is stored at most this much later than it would be otherwise.
const LINGER: Duration = Duration::from_millis(20);
/// Pending entries idle this long are taken over.
const CLAIM_IDLE: Duration = Duration::from_secs(30);
/// How often pending entries are looked for.
const CLAIM_EVERY: Duration = Duration::from_secs(30);
/// Pause after a bus failure.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// A device's baseline is dropped from memory after this long without telemetry (it is
/// rebuilt from the store if the device comes back).
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What the analytics remember about one device.
#[derive(Debug, Clone)]
struct Tracked {
    model: DeviceModel,
    rules: RuleState,
    last_used: UnixMillis,
}

/// Why a record was not processed.
#[derive(Debug)]
enum Failure {
    /// Retrying will not help: acknowledge and log.
    Permanent(String),
    /// Leave it pending; it comes back.
    Transient(String),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) | StoreError::Corrupt(_) => Failure::Permanent(e.to_string()),
            _ => Failure::Transient(e.to_string()),
        }
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        use tether_proto::ErrorCode;
        match e.code() {
            ErrorCode::NotFound | ErrorCode::InvalidField => Failure::Permanent(e.to_string()),
            _ => Failure::Transient(e.to_string()),
        }
    }
}

/// The worker.
#[derive(Debug)]
pub struct AnalyticsWorker {
    state: AppState,
    /// Where samples are stored and baselines read from: connections of the worker's
    /// own, beside the shared pool in `state.store` (see [`crate::workers`]).
    store: Arc<dyn Store>,
    consumer: String,
    thresholds: Thresholds,
    devices: HashMap<String, Tracked>,
    /// Records in the fullest entry of the last read that had any (entries hold many,
    /// see [`crate::events`]).
    records_per_entry: usize,
    /// The server's runtime (the one that created the worker), where alerts are raised:
    /// see [`Self::raise`].
    server: Option<tokio::runtime::Handle>,
}

impl AnalyticsWorker {
    /// Entries per read: about [`BATCH`] records.
    fn read_count(&self) -> usize {
        BATCH
            .checked_div(self.records_per_entry)
            .unwrap_or(BATCH)
            .max(1)
    }

    /// A worker consuming as this process's node id, storing through `store` (the same
    /// database as `state.store`).
    pub fn new(state: AppState, store: Arc<dyn Store>) -> Self {
        Self {
            store,
            consumer: state.node_id.clone(),
            thresholds: Thresholds::from(&state.config.alerts),
            state,
            devices: HashMap::new(),
            records_per_entry: crate::events::RECORDS_PER_ENTRY,
            server: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Raises `firing`'s alert for `device` ([`crate::alerts::raise`]) on the server's
    /// runtime. The worker's own thread runs at the priority of bulk work
    /// ([`crate::priority`]), and so would the thread of any connection of the shared
    /// pool (`state.store`, which commands use) that sqlx opened for a call from here.
    async fn raise(&self, device: &str, firing: &Firing) -> Result<Option<Alert>, ApiError> {
        let state = self.state.clone();
        let (device, kind, severity) = (device.to_owned(), firing.kind, firing.severity);
        let (message, risk_score) = (firing.message.clone(), firing.risk_score);
        let raise = async move {
            crate::alerts::raise(&state, &device, kind, severity, &message, risk_score).await
        };
        match &self.server {
            Some(server) => server
                .spawn(raise)
                .await
                .unwrap_or_else(|e| Err(ApiError::internal(e))),
            None => raise.await,
        }
    }

    /// Consumes until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            match self
                .state
                .bus
                .ensure_group(TELEMETRY_STREAM, ANALYTICS_GROUP)
                .await
            {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "creating the analytics consumer group failed; retrying");
                    if !pause(&shutdown, RETRY_AFTER).await {
                        return;
                    }
                }
            }
        }
        let mut next_claim = Instant::now();
        // A read made while the one before it was processed (see `Self::process_reading`).
        let mut prefetched: Option<Vec<Entry>> = None;
        loop {
            // Not with a read in hand: its entries, if idle long enough, would be claimed
            // and processed twice.
            if prefetched.is_none() && Instant::now() >= next_claim {
                self.claim_stale().await;
                self.forget_idle();
                next_claim = Instant::now()
                    .checked_add(CLAIM_EVERY)
                    .unwrap_or(next_claim);
            }
            let started = Instant::now();
            let read = match prefetched.take() {
                Some(entries) => Ok(entries),
                None => tokio::select! {
                    () = shutdown.cancelled() => return,
                    r = self.state.bus.read_group(TELEMETRY_STREAM, ANALYTICS_GROUP, &self.consumer, self.read_count(), BLOCK) => r,
                },
            };
            match read {
                Ok(entries) => {
                    let read_at = Instant::now();
                    let full = entries.len() >= self.read_count();
                    // No read ahead while shutting down (its entries would wait for a
                    // claim, `CLAIM_IDLE`, after the restart), nor when the claim is due
                    // (it waits for a loop without a read in hand, which a worker
                    // behind for good would otherwise never have).
                    let ahead = full && !shutdown.is_cancelled() && Instant::now() < next_claim;
                    prefetched = self.process_reading(&entries, ahead).await;
                    if !entries.is_empty() {
                        tracing::debug!(
                            entries = entries.len(),
                            read_ms = read_at.duration_since(started).as_secs_f64() * 1e3,
                            process_ms = read_at.elapsed().as_secs_f64() * 1e3,
                            prefetched = prefetched.as_ref().map_or(0, Vec::len),
                            "telemetry read processed"
                        );
                    }
                    if shutdown.is_cancelled() {
                        // A read ahead stays pending: claimed again once idle for
                        // `CLAIM_IDLE`, by this node after a restart or by another.
                        return;
                    }
                    if prefetched.is_none()
                        && !entries.is_empty()
                        && !full
                        && !pause(&shutdown, LINGER).await
                    {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the telemetry stream failed");
                    if !pause(&shutdown, RETRY_AFTER).await {
                        return;
                    }
                }
            }
        }
    }

    /// Processes `entries` ([`Self::process`]); with `ahead` (after a full read: the
    /// worker is behind) it reads the next one meanwhile, without waiting for entries, and
    /// returns it if it found any. Most of a read's processing is a wait for the store's
    /// transaction, on another thread: the next read's bus query, and its hand-overs
    /// between threads, happen in that wait instead of after it. Entries read ahead are
    /// assigned to this consumer like any read; they are processed next (or, if the
    /// process stops first, claimed once idle for [`CLAIM_IDLE`]).
    async fn process_reading(&mut self, entries: &[Entry], ahead: bool) -> Option<Vec<Entry>> {
        if !ahead {
            self.process(entries).await;
            return None;
        }
        let bus = Arc::clone(&self.state.bus);
        let consumer = self.consumer.clone();
        let count = self.read_count();
        let next = async move {
            bus.read_group(
                TELEMETRY_STREAM,
                ANALYTICS_GROUP,
                &consumer,
                count,
                Duration::ZERO,
            )
            .await
        };
        let ((), next) = tokio::join!(self.process(entries), next);
        match next {
            Ok(entries) if entries.is_empty() => None,
            Ok(entries) => Some(entries),
            Err(e) => {
                tracing::warn!(error = %e, "reading the telemetry stream ahead failed");
                None
            }
        }
    }

    /// Takes over entries left pending (by a failure here, or a consumer that died).
    async fn claim_stale(&mut self) {
        loop {
            let claimed = self
                .state
                .bus
                .claim_stale(
                    TELEMETRY_STREAM,
                    ANALYTICS_GROUP,
                    &self.consumer,
                    CLAIM_IDLE,
                    self.read_count(),
                )
                .await;
            match claimed {
                Ok(entries) if entries.is_empty() => return,
                Ok(entries) => {
                    tracing::info!(
                        entries = entries.len(),
                        "took over pending telemetry entries"
                    );
                    let full = entries.len() >= self.read_count();
                    self.process(&entries).await;
                    if !full {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claiming pending telemetry entries failed");
                    return;
                }
            }
        }
    }

    /// Handles a read and acknowledges what is done: the valid records of all its
    /// entries together ([`batch`]: one store transaction per [`BATCH`] records), or one
    /// by one when that fails. An entry is acknowledged once each of its records is done.
    async fn process(&mut self, entries: &[Entry]) {
        let mut done = Vec::with_capacity(entries.len());
        let mut records = Vec::with_capacity(entries.len());
        // Per entry with records to do: how many.
        let mut expected: HashMap<&str, usize> = HashMap::new();
        for entry in entries {
            if expected.contains_key(entry.id.as_str()) {
                // The same entry twice in one read (never from a bus that keeps its
                // promises): its records are done once.
                continue;
            }
            let parsed = parse(entry);
            if parsed.is_empty() {
                done.push(entry.id.clone());
            } else if entry.deliveries > MAX_DELIVERIES {
                if self.dead_letter(entry, &parsed).await {
                    done.push(entry.id.clone());
                }
            } else {
                expected.insert(entry.id.as_str(), parsed.len());
                records.extend(parsed.into_iter().map(|r| (entry, r)));
            }
        }
        // Whatever the read held, a store transaction takes at most BATCH records.
        let mut together = false;
        let mut recorded = Vec::with_capacity(records.len());
        // The live events of records stored together, published with the acknowledgement.
        let mut live = Vec::new();
        for chunk in records.chunks(BATCH) {
            let mut chunk_recorded = Vec::with_capacity(chunk.len());
            let batched = chunk.len() > 1
                && self
                    .record_batch(chunk, &mut chunk_recorded, &mut live)
                    .await;
            if !batched {
                // One by one, each published as it is stored: those stored together
                // before go out first, so that a device's events stay in order.
                publish_all(&self.state, std::mem::take(&mut live)).await;
                chunk_recorded.clear();
                for (entry, record) in chunk {
                    if self.handle_record(entry, record).await {
                        chunk_recorded.push(entry.id.clone());
                    }
                }
            }
            together |= batched;
            recorded.append(&mut chunk_recorded);
        }
        for id in recorded {
            if let Some(left) = expected.get_mut(id.as_str())
                && *left > 0
            {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    done.push(id);
                }
            }
        }
        // The next read's size: by the fullest entry of this one (an empty read, or one
        // of only malformed entries, says nothing).
        if let Some(most) = records_per_entry(&records) {
            self.records_per_entry = most;
        }
        if done.is_empty() {
            publish_all(&self.state, live).await;
            return;
        }
        // Side by side: the live events and the acknowledgement go to the bus concurrently.
        let acking = Instant::now();
        let published = live.len();
        let ((), acked) = tokio::join!(
            publish_all(&self.state, live),
            self.state.bus.ack(TELEMETRY_STREAM, ANALYTICS_GROUP, &done)
        );
        tracing::debug!(
            entries = done.len(),
            together,
            published,
            ack_ms = acking.elapsed().as_secs_f64() * 1e3,
            "telemetry entries acknowledged and their live events published"
        );
        if let Err(e) = acked {
            // They come back through claim_stale, and processing them again is harmless.
            tracing::warn!(error = %e, entries = done.len(), "acknowledging telemetry entries failed");
        }
    }

    /// Handles one valid record; returns whether its entry may be acknowledged.
    async fn handle_record(&mut self, entry: &Entry, record: &TelemetryRecord) -> bool {
        match self.record(record).await {
            Ok(()) => true,
            Err(Failure::Permanent(why)) => {
                tracing::warn!(entry = %entry.id, device = %record.device_id, %why, "telemetry entry dropped");
                true
            }
            Err(Failure::Transient(why)) => {
                tracing::warn!(entry = %entry.id, device = %record.device_id, %why, "telemetry entry left pending for a retry");
                false
            }
        }
    }

    /// Copies an entry that keeps failing to the dead-letter stream (whole, with all its
    /// records); true once copied.
    async fn dead_letter(&self, entry: &Entry, records: &[TelemetryRecord]) -> bool {
        let devices: Vec<&str> = records.iter().map(|r| r.device_id.as_str()).collect();
        match self
            .state
            .bus
            .append(DEAD_LETTER_STREAM, &entry.payload, STREAM_MAX_LEN)
            .await
        {
            Ok(id) => {
                tracing::error!(entry = %entry.id, ?devices, dead_letter = %id, deliveries = entry.deliveries, "telemetry entry failed too often: moved to the dead-letter stream");
                true
            }
            Err(e) => {
                tracing::error!(entry = %entry.id, error = %e, "moving a telemetry entry to the dead-letter stream failed");
                false
            }
        }
    }

    /// Scores, stores, publishes and alerts one record.
    async fn record(&mut self, record: &TelemetryRecord) -> Result<(), Failure> {
        let state = self.state.clone();
        let sample = sample_of(record);
        // Taken out of the map while in use: on failure it is dropped and rebuilt from the
        // store next time, so memory never holds a half-applied record.
        let mut tracked = match self.devices.remove(&record.device_id) {
            Some(t) => t,
            None => self.rebuild(&record.device_id).await?,
        };
        let scored = tracked.model.score(&sample);
        let body = serde_json::to_value(&record.body)
            .map_err(|e| Failure::Permanent(format!("telemetry body: {e}")))?;
        let event = new_event(record, &sample, scored.risk, body.clone());
        let inserted = self.store.insert_telemetry_event(&event).await?;
        self.store
            .set_last_seen(&record.device_id, record.received_at)
            .await?;
        if inserted {
            crate::prom::telemetry_stored(1);
            publish_all(&state, vec![live_telemetry(record, body, scored.risk)]).await;
        } else {
            tracing::info!(message = %record.message_id, "telemetry already stored (redelivery of a message id)");
        }
        // Rules run for a redelivery too: a crash may have come between storing and
        // raising; raising is idempotent while the alert is open.
        let mut rules = tracked.rules.clone();
        for firing in rules.observe(&self.thresholds, &sample, &scored) {
            self.raise(&record.device_id, &firing).await?;
        }
        tracked.rules = rules;
        if inserted {
            tracked.model.update(&sample);
        }
        tracked.last_used = state.now();
        self.devices.insert(record.device_id.clone(), tracked);
        Ok(())
    }

    /// A device's baseline and rule state, replayed from its last stored samples.
    async fn rebuild(&self, device_id: &str) -> Result<Tracked, Failure> {
        let mut rebuilt = self.rebuild_all(&[device_id]).await?;
        Ok(rebuilt
            .remove(device_id)
            .unwrap_or_else(|| self.replay(&[])))
    }

    /// The baselines and rule states of many devices, replayed from each one's last
    /// [`HISTORY`] stored samples read in one go (a read of thousands of devices seen for
    /// the first time since the process started costs a few statements, not one each).
    async fn rebuild_all(&self, device_ids: &[&str]) -> Result<HashMap<String, Tracked>, Failure> {
        let mut history = self.store.latest_points(device_ids, HISTORY).await?;
        Ok(device_ids
            .iter()
            .map(|&id| {
                let points = history.remove(id).unwrap_or_default();
                tracing::debug!(
                    device = id,
                    samples = points.len(),
                    "rebuilt the device's baseline"
                );
                (id.to_owned(), self.replay(&points))
            })
            .collect())
    }

    /// A baseline and rule state from stored points, oldest first.
    fn replay(&self, history: &[TelemetryPoint]) -> Tracked {
        let mut model = DeviceModel::default();
        let mut rules = RuleState::default();
        for p in history {
            let sample = Sample {
                at: p.collected_at,
                cpu_pct: p.cpu_pct,
                mem_used_pct: crate::analytics::percent(p.mem_used_bytes, p.mem_total_bytes),
                disk_used_pct: p.disk_used_pct,
                rx_bps: p.rx_bps,
                tx_bps: p.tx_bps,
            };
            // The stored score stands in for a re-score: the replay only rebuilds which
            // rules are mid-episode, and fires nothing.
            let scored = Assessment {
                risk: p.risk_score,
                metrics: Vec::new(),
            };
            let _ = rules.observe(&self.thresholds, &sample, &scored);
            model.update(&sample);
        }
        Tracked {
            model,
            rules,
            last_used: self.state.now(),
        }
    }

    /// Drops baselines of devices silent for [`FORGET_AFTER`].
    fn forget_idle(&mut self) {
        let cutoff = self.state.now().saturating_sub(FORGET_AFTER);
        self.devices.retain(|_, t| t.last_used >= cutoff);
    }
}

/// The record's numbers as the analytics score them. A sample cannot have been taken
/// after it arrived: an agent clock running ahead must not put samples into future
/// rollup buckets.
fn sample_of(record: &TelemetryRecord) -> Sample {
    let collected_at = record.body.collected_at.min(record.received_at);
    Sample::from_telemetry(&record.body, collected_at)
}

/// The stored form of a scored record.
fn new_event(
    record: &TelemetryRecord,
    sample: &Sample,
    risk_score: f64,
    body: Value,
) -> NewTelemetryEvent {
    NewTelemetryEvent {
        device_id: record.device_id.clone(),
        message_id: record.message_id.clone(),
        seq: record.seq,
        collected_at: sample.at,
        received_at: record.received_at,
        cpu_pct: sample.cpu_pct,
        mem_used_bytes: record.body.mem_used_bytes,
        mem_total_bytes: record.body.mem_total_bytes,
        disk_used_pct: sample.disk_used_pct,
        rx_bps: sample.rx_bps,
        tx_bps: sample.tx_bps,
        risk_score,
        body,
    }
}

/// The most records of one entry among `records` (in entry order); `None` for none.
fn records_per_entry(records: &[(&Entry, TelemetryRecord)]) -> Option<usize> {
    records
        .chunk_by(|a, b| a.0.id == b.0.id)
        .map(<[_]>::len)
        .max()
}

/// The entry's valid records (see [`records_of`]). A malformed entry, or a record
/// that fails validation, is logged and left out: an entry with none is acknowledged
/// and dropped.
fn parse(entry: &Entry) -> Vec<TelemetryRecord> {
    let mut records = match records_of(&entry.payload) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(entry = %entry.id, error = %e, "malformed telemetry entry dropped");
            return Vec::new();
        }
    };
    records.retain(|record| match record.body.validate() {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(entry = %entry.id, device = %record.device_id, error = %e, "invalid telemetry record dropped");
            false
        }
    });
    records
}

/// The live telemetry event of a stored record: the body plus `risk_score` (and
/// `message_id`, so a client that also got the gateway's unscored event for the sample
/// can match the two).
fn live_telemetry(record: &TelemetryRecord, body: Value, risk: f64) -> LiveEvent {
    let mut data = body;
    if let Value::Object(map) = &mut data {
        map.insert("risk_score".into(), Value::from(risk));
        map.insert("message_id".into(), Value::from(record.message_id.as_str()));
    }
    LiveEvent {
        kind: LiveKind::Telemetry,
        device_id: record.device_id.clone(),
        owner_id: record.owner_id.clone(),
        at: record.received_at,
        data,
    }
}

/// Publishes live events, side by side (the bus commits concurrent appends as one), in
/// their order. Best effort.
async fn publish_all(state: &AppState, events: Vec<LiveEvent>) {
    let publishes = events.into_iter().map(|live| async move {
        let device = live.device_id.clone();
        if let Err(e) = crate::live::LiveHub::publish_or_drop(state, live).await {
            tracing::warn!(%device, error = %e, "publishing live telemetry failed");
        }
    });
    futures_util::future::join_all(publishes).await;
}
