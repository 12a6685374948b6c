//! The rules that turn scored telemetry into alerts, as pure functions of a small
//! per-device state (the AnalyticsWorker keeps one per device, the OfflineWorker its own
//! check; see `workers/`).
//!
//! - `anomaly` (critical): the sample's risk score is above [`ANOMALY_RISK`].
//! - `cpu_high` (warning): CPU at or above `alerts.cpu_high_pct` in every sample for at
//!   least `alerts.cpu_high_minutes` (by the samples' collection times).
//! - `disk_full` (warning): the fullest disk at or above `alerts.disk_high_pct`.
//!
//! Each rule fires once per episode: it re-arms only after the condition has cleared
//! (risk back to [`ANOMALY_REARM`] or below; CPU below its threshold; disk a point below
//! its threshold), so a PC that stays busy gets one alert, not one per sample after each
//! acknowledgement. The store adds its own guard: a kind never has two open alerts for a
//! device.

use tether_proto::UnixMillis;
use tether_proto::messages::notify::Severity;

use super::{KIND_ANOMALY, KIND_CPU_HIGH, KIND_DISK_FULL};
use crate::analytics::{Assessment, Sample};
use crate::config::AlertsConfig;

/// A risk score above this raises an `anomaly` alert.
pub const ANOMALY_RISK: f64 = 0.8;
/// The anomaly rule re-arms once the risk falls to this.
pub const ANOMALY_REARM: f64 = 0.5;
/// The disk rule re-arms this many percentage points below its threshold.
const DISK_REARM_MARGIN: f64 = 1.0;

/// The configured thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// CPU percent for `cpu_high`.
    pub cpu_high_pct: f64,
    /// How long, in ms, CPU must stay high.
    pub cpu_high_ms: u64,
    /// Disk percent for `disk_full`.
    pub disk_high_pct: f64,
}

impl From<&AlertsConfig> for Thresholds {
    fn from(c: &AlertsConfig) -> Self {
        Self {
            cpu_high_pct: f64::from(c.cpu_high_pct),
            cpu_high_ms: u64::from(c.cpu_high_minutes).saturating_mul(60_000),
            disk_high_pct: f64::from(c.disk_high_pct),
        }
    }
}

/// An alert a rule wants raised.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    /// The alert kind.
    pub kind: &'static str,
    /// How bad.
    pub severity: Severity,
    /// For a human.
    pub message: String,
    /// The risk score, for `anomaly`.
    pub risk_score: Option<f64>,
}

/// One device's rule state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleState {
    anomaly_fired: bool,
    cpu_high_since: Option<UnixMillis>,
    cpu_high_fired: bool,
    disk_full_fired: bool,
}

impl RuleState {
    /// Feeds one scored sample through the rules; returns what fires now.
    pub fn observe(&mut self, t: &Thresholds, sample: &Sample, scored: &Assessment) -> Vec<Firing> {
        let mut out = Vec::new();

        if scored.risk > ANOMALY_RISK {
            if !self.anomaly_fired {
                self.anomaly_fired = true;
                out.push(Firing {
                    kind: KIND_ANOMALY,
                    severity: Severity::Critical,
                    message: format!("Unusual activity: {}", scored.explain()),
                    risk_score: Some(scored.risk.clamp(0.0, 1.0)),
                });
            }
        } else if scored.risk <= ANOMALY_REARM {
            self.anomaly_fired = false;
        }

        if sample.cpu_pct >= t.cpu_high_pct {
            let since = *self.cpu_high_since.get_or_insert(sample.at);
            let held = sample.at.0.saturating_sub(since.0);
            if !self.cpu_high_fired && held >= t.cpu_high_ms {
                self.cpu_high_fired = true;
                out.push(Firing {
                    kind: KIND_CPU_HIGH,
                    severity: Severity::Warning,
                    message: format!(
                        "CPU at {:.0}% or more for {} minutes (now {:.1}%)",
                        t.cpu_high_pct,
                        held / 60_000,
                        sample.cpu_pct
                    ),
                    risk_score: None,
                });
            }
        } else {
            self.cpu_high_since = None;
            self.cpu_high_fired = false;
        }

        match sample.disk_used_pct {
            Some(disk) if disk >= t.disk_high_pct && !self.disk_full_fired => {
                self.disk_full_fired = true;
                out.push(Firing {
                    kind: KIND_DISK_FULL,
                    severity: Severity::Warning,
                    message: format!("A disk is {disk:.1}% full"),
                    risk_score: None,
                });
            }
            Some(disk) if disk < t.disk_high_pct - DISK_REARM_MARGIN => {
                self.disk_full_fired = false;
            }
            _ => {}
        }
        out
    }
}
