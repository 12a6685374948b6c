//! A device's history: its rollups (`GET /api/devices/{id}/metrics`) and its latest raw
//! telemetry events (`GET /api/devices/{id}/telemetry`). Both need the device to be one
//! the caller may see (404 otherwise, as for an unknown device).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_proto::UnixMillis;
use tether_store::{Rollup, RollupPeriod, TelemetryEvent};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::ApiQuery;
use crate::routes::devices::visible_device;
use crate::state::AppState;

/// Buckets shown unless asked otherwise: two days of hours, or a month of days.
const DEFAULT_HOURS: u64 = 48;
const DEFAULT_DAYS: u64 = 30;
/// The most rollup rows one answer reads (a bucket has one row per metric).
const MAX_ROLLUP_ROWS: u32 = 10_000;
/// Telemetry events one answer returns unless asked otherwise, and at most.
const DEFAULT_EVENTS: u32 = 50;
const MAX_EVENTS: u32 = 500;

/// `period` of `GET /api/devices/{id}/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// One bucket per UTC hour.
    #[default]
    Hourly,
    /// One bucket per UTC day.
    Daily,
}

impl From<Period> for RollupPeriod {
    fn from(p: Period) -> Self {
        match p {
            Period::Hourly => RollupPeriod::Hourly,
            Period::Daily => RollupPeriod::Daily,
        }
    }
}

/// `GET /api/devices/{id}/metrics` parameters.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    /// `hourly` (default) or `daily`.
    #[serde(default)]
    pub period: Period,
    /// Buckets starting at or after this time (ms since the epoch); default: the last 48
    /// hours, or the last 30 days.
    #[serde(default)]
    pub since: Option<u64>,
}

/// The statistics of one metric over one bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricStats {
    /// Samples in the bucket.
    pub count: u64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
}

/// One bucket: its start and each metric's statistics (`cpu_pct`, `mem_used_pct`,
/// `disk_used_pct`, `rx_bps`, `tx_bps`, `risk_score`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Bucket {
    /// The bucket's first millisecond.
    pub bucket_start: u64,
    /// Statistics by metric name.
    pub metrics: BTreeMap<String, MetricStats>,
}

/// A device's rollups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricsView {
    /// The device.
    pub device_id: String,
    /// `hourly` or `daily`.
    pub period: String,
    /// Oldest bucket first.
    pub buckets: Vec<Bucket>,
}

fn buckets(rows: Vec<Rollup>) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    for r in rows {
        let stats = MetricStats {
            count: r.count,
            min: r.min,
            max: r.max,
            mean: r.mean,
            p95: r.p95,
        };
        match out.last_mut() {
            Some(b) if b.bucket_start == r.bucket_start.0 => {
                b.metrics.insert(r.metric, stats);
            }
            _ => out.push(Bucket {
                bucket_start: r.bucket_start.0,
                metrics: BTreeMap::from([(r.metric, stats)]),
            }),
        }
    }
    out
}

/// A device's hourly or daily rollups (min / max / mean / p95 per metric), oldest first.
#[utoipa::path(get, path = "/api/devices/{id}/metrics", params(("id" = String, Path), MetricsQuery), responses((status = 200, body = MetricsView), (status = 404)), security(("bearer" = [])))]
pub async fn metrics(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<MetricsQuery>,
) -> ApiResult<Json<MetricsView>> {
    let device = visible_device(&state, &caller, &id).await?;
    let period = RollupPeriod::from(q.period);
    let since = q.since.map_or_else(
        || {
            let span = match q.period {
                Period::Hourly => DEFAULT_HOURS,
                Period::Daily => DEFAULT_DAYS,
            };
            let back = std::time::Duration::from_millis(period.millis().saturating_mul(span));
            period.bucket_start(state.now().saturating_sub(back))
        },
        UnixMillis,
    );
    let rows = state
        .store
        .rollups(&device.id, period, since, MAX_ROLLUP_ROWS)
        .await?;
    Ok(Json(MetricsView {
        device_id: device.id,
        period: match q.period {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
        }
        .to_owned(),
        buckets: buckets(rows),
    }))
}

/// `GET /api/devices/{id}/telemetry` parameters.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TelemetryQuery {
    /// At most this many, newest first (1..=500, default 50).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only events collected at or after this time (ms since the epoch).
    #[serde(default)]
    pub since: Option<u64>,
}

/// One stored telemetry event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TelemetryView {
    /// The envelope's message id.
    pub message_id: String,
    /// The envelope's sequence number.
    pub seq: u64,
    /// When the agent took the sample (ms).
    pub collected_at: u64,
    /// When the gateway accepted it (ms).
    pub received_at: u64,
    /// The risk score the analytics gave it (0..=1).
    pub risk_score: f64,
    /// The telemetry body as the agent sent it.
    #[schema(value_type = Object)]
    pub body: Value,
}

impl From<TelemetryEvent> for TelemetryView {
    fn from(e: TelemetryEvent) -> Self {
        let e = e.event;
        Self {
            message_id: e.message_id,
            seq: e.seq,
            collected_at: e.collected_at.0,
            received_at: e.received_at.0,
            risk_score: e.risk_score,
            body: e.body,
        }
    }
}

/// A device's latest stored telemetry events, newest first.
#[utoipa::path(get, path = "/api/devices/{id}/telemetry", params(("id" = String, Path), TelemetryQuery), responses((status = 200, body = [TelemetryView]), (status = 404)), security(("bearer" = [])))]
pub async fn telemetry(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TelemetryQuery>,
) -> ApiResult<Json<Vec<TelemetryView>>> {
    let device = visible_device(&state, &caller, &id).await?;
    let limit = q.limit.unwrap_or(DEFAULT_EVENTS).clamp(1, MAX_EVENTS);
    let events = state
        .store
        .telemetry_events(&device.id, UnixMillis(q.since.unwrap_or(0)), limit)
        .await?;
    Ok(Json(events.into_iter().map(TelemetryView::from).collect()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn row(bucket: u64, metric: &str, mean: f64) -> Rollup {
        Rollup {
            device_id: "dev_1".into(),
            period: RollupPeriod::Hourly,
            bucket_start: UnixMillis(bucket),
            metric: metric.into(),
            count: 3,
            min: 1.0,
            max: 3.0,
            mean,
            p95: 3.0,
        }
    }

    #[test]
    fn rows_group_into_buckets_in_order() {
        let b = buckets(vec![
            row(0, "cpu_pct", 2.0),
            row(0, "rx_bps", 5.0),
            row(3_600_000, "cpu_pct", 7.0),
        ]);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].metrics.len(), 2);
        assert_eq!(b[0].metrics["rx_bps"].mean, 5.0);
        assert_eq!(b[1].bucket_start, 3_600_000);
        assert_eq!(b[1].metrics["cpu_pct"].mean, 7.0);
        assert!(buckets(vec![]).is_empty());
    }
}
