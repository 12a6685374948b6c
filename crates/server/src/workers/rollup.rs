//! The RollupWorker: every `telemetry.rollup_every_s` it recomputes, for every paired
//! device heard from lately, the rollups of the current and the previous UTC hour and day
//! from the raw telemetry, and stores them (upsert: running it twice, or in several
//! processes, writes the same rows). Late telemetry (an agent flushing its offline queue)
//! lands in the right bucket as long as that bucket is still current or previous when it
//! arrives.
//!
//! "Heard from lately" is the device's last-seen time, which storing telemetry moves to the
//! sample's receipt time: a device whose last-seen time is before the previous pass began
//! (less [`SEEN_SLACK`], for other processes' clocks and for samples stored a while after
//! they were received) has nothing new for any bucket, and its rollups are left as they
//! are. The first pass after a start takes every device heard from since the previous
//! UTC day began (less an hour): the buckets a pass recomputes hold nothing older. A
//! device's rollups are written in one transaction.
//!
//! Then it applies retention: raw telemetry collected more than `telemetry.retention_days`
//! ago is deleted. Rollups are kept.
//!
//! Per bucket and metric ([`METRICS`]) a rollup holds count, min, max, mean and p95, where
//! p95 is the **nearest-rank** 95th percentile: with the `n` values sorted ascending, the
//! value at rank `⌈0.95·n⌉` (1-based). It is always one of the samples; for 1..=100 it is
//! 95, for a single sample that sample.

use std::time::Duration;

use tether_proto::UnixMillis;
use tether_store::{DeviceStatus, Rollup, RollupPeriod, TelemetryPoint};
use tokio_util::sync::CancellationToken;

use super::pause;
use crate::analytics::percent;
use crate::state::AppState;

/// How far before the previous pass's start a device's last-seen time may be for the next
/// pass to recompute it.
pub const SEEN_SLACK: Duration = Duration::from_secs(300);

/// The metrics rolled up, by name.
pub const METRICS: [&str; 6] = [
    "cpu_pct",
    "mem_used_pct",
    "disk_used_pct",
    "rx_bps",
    "tx_bps",
    "risk_score",
];

/// Statistics of one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// How many values.
    pub count: u64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Nearest-rank 95th percentile.
    pub p95: f64,
}

/// The statistics of a series (NaN and infinities are skipped); none when empty.
pub fn rollup(samples: &[f64]) -> Option<Stats> {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let min = *sorted.first()?;
    let max = *sorted.last()?;
    let mean = sorted.iter().sum::<f64>() / n as f64;
    // ⌈0.95·n⌉ in integers: (95·n + 99) / 100, at least 1.
    let rank = n.saturating_mul(95).saturating_add(99).checked_div(100)?;
    let p95 = *sorted.get(rank.saturating_sub(1))?;
    Some(Stats {
        count: u64::try_from(n).unwrap_or(u64::MAX),
        min,
        max,
        mean,
        p95,
    })
}

/// One metric of a stored sample, if it has it.
pub fn metric_value(p: &TelemetryPoint, metric: &str) -> Option<f64> {
    match metric {
        "cpu_pct" => Some(p.cpu_pct),
        "mem_used_pct" => percent(p.mem_used_bytes, p.mem_total_bytes),
        "disk_used_pct" => p.disk_used_pct,
        "rx_bps" => Some(p.rx_bps),
        "tx_bps" => Some(p.tx_bps),
        "risk_score" => Some(p.risk_score),
        _ => None,
    }
}

/// The rollups of one device's samples for one bucket (one per metric that has values).
pub fn bucket_rollups(
    device_id: &str,
    period: RollupPeriod,
    bucket_start: UnixMillis,
    points: &[TelemetryPoint],
) -> Vec<Rollup> {
    let end = bucket_start.0.saturating_add(period.millis());
    let inside: Vec<&TelemetryPoint> = points
        .iter()
        .filter(|p| p.collected_at >= bucket_start && p.collected_at.0 < end)
        .collect();
    METRICS
        .iter()
        .filter_map(|&metric| {
            let values: Vec<f64> = inside
                .iter()
                .filter_map(|p| metric_value(p, metric))
                .collect();
            let s = rollup(&values)?;
            Some(Rollup {
                device_id: device_id.to_owned(),
                period,
                bucket_start,
                metric: metric.to_owned(),
                count: s.count,
                min: s.min,
                max: s.max,
                mean: s.mean,
                p95: s.p95,
            })
        })
        .collect()
}

/// The worker.
#[derive(Debug)]
pub struct RollupWorker {
    state: AppState,
}

impl RollupWorker {
    /// A worker over the state's store and configuration.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// Runs a pass now and then every `telemetry.rollup_every_s`, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let every = Duration::from_secs(self.state.config.telemetry.rollup_every_s);
        // Devices last seen at or after this are recomputed; none yet: the first pass's
        // own bound.
        let mut seen_since = None;
        loop {
            let started = self.state.now();
            match self.pass(seen_since).await {
                Ok(()) => seen_since = Some(started.saturating_sub(SEEN_SLACK)),
                Err(e) => {
                    tracing::warn!(error = %e, "rollup pass failed; retrying at the next one");
                }
            }
            if !pause(&shutdown, every).await {
                return;
            }
        }
    }

    /// One pass: the rollups of every paired device last seen at or after `seen_since`
    /// (none: since an hour before the previous UTC day began), then retention.
    pub async fn pass(
        &self,
        seen_since: Option<UnixMillis>,
    ) -> Result<(), tether_store::StoreError> {
        let now = self.state.now();
        let hour = RollupPeriod::Hourly.bucket_start(now);
        let day = RollupPeriod::Daily.bucket_start(now);
        let buckets = [
            (RollupPeriod::Hourly, back(hour, RollupPeriod::Hourly)),
            (RollupPeriod::Hourly, hour),
            (RollupPeriod::Daily, back(day, RollupPeriod::Daily)),
            (RollupPeriod::Daily, day),
        ];
        // One read per device covers all four buckets: the previous hour starts no
        // earlier than the previous day.
        let from = back(day, RollupPeriod::Daily);
        let to = UnixMillis(day.0.saturating_add(RollupPeriod::Daily.millis()));
        let seen_since =
            seen_since.unwrap_or_else(|| from.saturating_sub(Duration::from_secs(3600)));
        let mut written: u64 = 0;
        let mut devices: u64 = 0;
        for seen in self.state.store.devices_seen_since(seen_since).await? {
            let device = seen.device;
            if device.status == DeviceStatus::PendingPairing {
                continue;
            }
            let points = self
                .state
                .store
                .telemetry_between(&device.id, from, to)
                .await?;
            if points.is_empty() {
                continue;
            }
            let rollups: Vec<Rollup> = buckets
                .iter()
                .flat_map(|&(period, start)| bucket_rollups(&device.id, period, start, &points))
                .collect();
            self.state.store.upsert_rollups(&rollups).await?;
            written = written.saturating_add(rollups.len() as u64);
            devices = devices.saturating_add(1);
        }
        let days = u64::from(self.state.config.telemetry.retention_days);
        let cutoff = now.saturating_sub(Duration::from_secs(days.saturating_mul(86_400)));
        let pruned = self.state.store.prune_telemetry_before(cutoff).await?;
        tracing::debug!(devices, rollups = written, pruned, "rollup pass done");
        if pruned > 0 {
            tracing::info!(
                pruned,
                retention_days = days,
                "pruned raw telemetry past retention"
            );
        }
        Ok(())
    }
}

/// The bucket before the one starting at `start`.
fn back(start: UnixMillis, period: RollupPeriod) -> UnixMillis {
    UnixMillis(start.0.saturating_sub(period.millis()))
}

#[cfg(test)]
mod tests;
