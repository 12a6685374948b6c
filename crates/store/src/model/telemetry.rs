//! The telemetry pipeline's records: raw telemetry events, their hourly and daily
//! rollups, and alerts.

use serde::{Deserialize, Serialize};
use tether_proto::UnixMillis;
use tether_proto::messages::notify::Severity;

use crate::Device;

/// A telemetry event to store: one accepted telemetry message, its headline numbers as
/// columns (for rollups and queries) and the whole body as JSON.
///
/// Every number must be finite; the store refuses a NaN or infinity.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTelemetryEvent {
    /// The device.
    pub device_id: String,
    /// The envelope's message id: a second event with the same id is not stored.
    pub message_id: String,
    /// The envelope's sequence number.
    pub seq: u64,
    /// When the agent took the sample.
    pub collected_at: UnixMillis,
    /// When the gateway accepted it.
    pub received_at: UnixMillis,
    /// CPU use over all cores, percent.
    pub cpu_pct: f64,
    /// Memory in use, bytes.
    pub mem_used_bytes: u64,
    /// Memory in total, bytes.
    pub mem_total_bytes: u64,
    /// The fullest disk's use, percent; `None` when the sample lists no disk.
    pub disk_used_pct: Option<f64>,
    /// Bytes received per second.
    pub rx_bps: f64,
    /// Bytes sent per second.
    pub tx_bps: f64,
    /// The risk score the analytics gave the sample (0..=1).
    pub risk_score: f64,
    /// The telemetry body as the agent sent it.
    pub body: serde_json::Value,
}

/// A stored telemetry event.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryEvent {
    /// Row id (increasing in insertion order on each backend).
    pub id: u64,
    /// The event.
    pub event: NewTelemetryEvent,
}

/// The numbers of a stored telemetry event, without its body: what rollups read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TelemetryPoint {
    /// When the agent took the sample.
    pub collected_at: UnixMillis,
    /// CPU use, percent.
    pub cpu_pct: f64,
    /// Memory in use, bytes.
    pub mem_used_bytes: u64,
    /// Memory in total, bytes.
    pub mem_total_bytes: u64,
    /// The fullest disk's use, percent.
    pub disk_used_pct: Option<f64>,
    /// Bytes received per second.
    pub rx_bps: f64,
    /// Bytes sent per second.
    pub tx_bps: f64,
    /// The sample's risk score.
    pub risk_score: f64,
}

/// The length of a rollup bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollupPeriod {
    /// One UTC hour (`device_metrics_hourly`).
    Hourly,
    /// One UTC day (`device_metrics_daily`).
    Daily,
}

impl RollupPeriod {
    /// The bucket length in milliseconds.
    pub const fn millis(self) -> u64 {
        match self {
            RollupPeriod::Hourly => 3_600_000,
            RollupPeriod::Daily => 86_400_000,
        }
    }

    /// The start of the bucket holding `t`.
    pub fn bucket_start(self, t: UnixMillis) -> UnixMillis {
        let into_bucket = t.0.checked_rem(self.millis()).unwrap_or(0);
        UnixMillis(t.0.saturating_sub(into_bucket))
    }
}

/// Statistics of one metric of one device over one bucket. Stored by
/// (`device_id`, `period`, `bucket_start`, `metric`); storing it again replaces it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollup {
    /// The device.
    pub device_id: String,
    /// Hourly or daily.
    pub period: RollupPeriod,
    /// The bucket's first millisecond (a multiple of the period's length).
    pub bucket_start: UnixMillis,
    /// The metric (`cpu_pct`, `mem_used_pct`, `disk_used_pct`, `rx_bps`, `tx_bps`,
    /// `risk_score`).
    pub metric: String,
    /// How many samples the bucket holds.
    pub count: u64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
}

/// An alert: a rule fired for a device.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Id (`alr_…`).
    pub id: String,
    /// The device it concerns.
    pub device_id: String,
    /// The device's owner when it was raised.
    pub owner_id: Option<String>,
    /// How bad.
    pub severity: Severity,
    /// The rule that fired (`anomaly`, `cpu_high`, `disk_full`, `offline`, …).
    pub kind: String,
    /// What happened, for a human.
    pub message: String,
    /// The risk score that fired it, when one did (finite).
    pub risk_score: Option<f64>,
    /// When it was raised.
    pub created_at: UnixMillis,
    /// When it was acknowledged.
    pub acked_at: Option<UnixMillis>,
    /// Who acknowledged it.
    pub acked_by: Option<String>,
}

/// A device with the time the server last heard from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenDevice {
    /// The device.
    pub device: Device,
    /// Its last sign of life ([`Store::set_last_seen`](crate::Store::set_last_seen)),
    /// `None` if never seen.
    pub last_seen_at: Option<UnixMillis>,
}
