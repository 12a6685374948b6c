//! The risk score of a telemetry sample: how unusual it is for *this* device, plus a floor
//! for values that are bad on any device.
//!
//! # The method
//!
//! Each device has, per metric `m` (CPU %, memory used %, fullest disk %, received and
//! sent bytes/s), an exponentially weighted moving mean `μ` and variance `σ²` with
//! `α = 0.2` (a sample's weight halves about every 3 samples, so the baseline follows a
//! device over minutes, not hours):
//!
//! ```text
//! d  = x − μ
//! μ' = μ + α·d
//! σ²' = (1 − α)·(σ² + α·d²)
//! ```
//!
//! A sample `x` is scored against the baseline *before* it is included:
//!
//! ```text
//! z⁺      = max(0, x − μ) / max(σ, floor_m)
//! risk_z  = 1 − exp(−(z⁺/4)²)                      (0 during the first 5 samples)
//! risk_m  = max(risk_z, absolute_m(x))
//! risk    = max over metrics of risk_m              (0..=1)
//! ```
//!
//! - Only rises count (`z⁺`): a PC going idle is not a risk; one suddenly busy, full or
//!   sending is.
//! - `floor_m` keeps a very steady metric from turning noise into huge z-scores: 2
//!   percentage points for CPU and memory, 1 for disk, and for network rates the larger
//!   of 100 kB/s and 20 % of the mean.
//! - The map from `z` is smooth, 0 at 0 and flat near it, so ordinary noise scores low:
//!   z = 2 → 0.22, 4 → 0.63, 5 → 0.79, 6 → 0.89; the anomaly alert (risk > 0.8) needs
//!   a rise of about 5 standard deviations.
//! - `absolute_m`: CPU ≥ 95 % → 0.85, fullest disk ≥ 95 % → 0.85, memory ≥ 95 % → 0.8,
//!   from the first sample on (no warm-up); network rates have none.
//! - Warm-up: z-based risk starts with the 6th sample of a device (its baseline needs 5).
//!
//! The baseline lives in memory, per device, in the worker that scores; on first sight of
//! a device it is rebuilt by replaying the device's last [`HISTORY`] stored samples, so a
//! restarted worker resumes where it was. Several workers sharing the telemetry stream each
//! keep their own baselines from the samples they see: that makes scores drift a little,
//! never loses a sample.

use tether_proto::UnixMillis;
use tether_proto::messages::session::Telemetry;
use tether_store::TelemetryPoint;

/// EWMA smoothing factor.
pub const ALPHA: f64 = 0.2;
/// Samples a baseline needs before z-scores count.
pub const WARM_UP: u32 = 5;
/// Stored samples replayed to rebuild a device's baseline.
pub const HISTORY: u32 = 50;
/// Scale of the z map: `risk_z = 1 − exp(−(z/Z_SCALE)²)`.
pub const Z_SCALE: f64 = 4.0;

/// What the analytics look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// CPU use over all cores, percent.
    CpuPct,
    /// Memory in use, percent of total.
    MemUsedPct,
    /// The fullest disk's use, percent.
    DiskUsedPct,
    /// Bytes received per second.
    RxBps,
    /// Bytes sent per second.
    TxBps,
}

impl Metric {
    /// Every metric, in a fixed order.
    pub const ALL: [Metric; 5] = [
        Metric::CpuPct,
        Metric::MemUsedPct,
        Metric::DiskUsedPct,
        Metric::RxBps,
        Metric::TxBps,
    ];

    /// The name used in rollups and messages.
    pub const fn name(self) -> &'static str {
        match self {
            Metric::CpuPct => "cpu_pct",
            Metric::MemUsedPct => "mem_used_pct",
            Metric::DiskUsedPct => "disk_used_pct",
            Metric::RxBps => "rx_bps",
            Metric::TxBps => "tx_bps",
        }
    }

    /// The smallest standard deviation a z-score divides by.
    fn floor(self, mean: f64) -> f64 {
        match self {
            Metric::CpuPct | Metric::MemUsedPct => 2.0,
            Metric::DiskUsedPct => 1.0,
            Metric::RxBps | Metric::TxBps => (0.2 * mean.abs()).max(100_000.0),
        }
    }

    /// The risk of a value on any device, whatever its history.
    fn absolute(self, x: f64) -> f64 {
        match self {
            Metric::CpuPct | Metric::DiskUsedPct if x >= 95.0 => 0.85,
            Metric::MemUsedPct if x >= 95.0 => 0.8,
            _ => 0.0,
        }
    }

    const fn index(self) -> usize {
        match self {
            Metric::CpuPct => 0,
            Metric::MemUsedPct => 1,
            Metric::DiskUsedPct => 2,
            Metric::RxBps => 3,
            Metric::TxBps => 4,
        }
    }
}

/// The numbers of one telemetry sample the analytics use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When it was collected.
    pub at: UnixMillis,
    /// CPU percent.
    pub cpu_pct: f64,
    /// Memory used, percent (none if the total is 0).
    pub mem_used_pct: Option<f64>,
    /// The fullest disk, percent (none without disks).
    pub disk_used_pct: Option<f64>,
    /// Received bytes/s.
    pub rx_bps: f64,
    /// Sent bytes/s.
    pub tx_bps: f64,
}

/// `used / total` in percent; none when `total` is 0.
pub fn percent(used: u64, total: u64) -> Option<f64> {
    // u64 → f64 rounds above 2⁵³ bytes (8 PiB): harmless for a percentage.
    (total > 0).then(|| used as f64 / total as f64 * 100.0)
}

/// The fullest disk's use in percent (disks of size 0 are skipped); none without disks.
pub fn fullest_disk_pct(body: &Telemetry) -> Option<f64> {
    body.disks
        .iter()
        .filter_map(|d| percent(d.used_bytes, d.total_bytes))
        .reduce(f64::max)
}

impl Sample {
    /// The sample of a telemetry body collected at `at`.
    pub fn from_telemetry(body: &Telemetry, at: UnixMillis) -> Self {
        Self {
            at,
            cpu_pct: body.cpu_pct,
            mem_used_pct: percent(body.mem_used_bytes, body.mem_total_bytes),
            disk_used_pct: fullest_disk_pct(body),
            rx_bps: body.net.rx_bps,
            tx_bps: body.net.tx_bps,
        }
    }

    /// The sample of a stored event.
    pub fn from_point(p: &TelemetryPoint) -> Self {
        Self {
            at: p.collected_at,
            cpu_pct: p.cpu_pct,
            mem_used_pct: percent(p.mem_used_bytes, p.mem_total_bytes),
            disk_used_pct: p.disk_used_pct,
            rx_bps: p.rx_bps,
            tx_bps: p.tx_bps,
        }
    }

    /// One metric's value, if the sample has it (and it is a finite number).
    pub fn value(&self, m: Metric) -> Option<f64> {
        let v = match m {
            Metric::CpuPct => Some(self.cpu_pct),
            Metric::MemUsedPct => self.mem_used_pct,
            Metric::DiskUsedPct => self.disk_used_pct,
            Metric::RxBps => Some(self.rx_bps),
            Metric::TxBps => Some(self.tx_bps),
        };
        v.filter(|x| x.is_finite())
    }
}

/// One metric's exponentially weighted mean and variance.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Ewma {
    n: u32,
    mean: f64,
    var: f64,
}

impl Ewma {
    fn update(&mut self, x: f64) {
        if self.n == 0 {
            self.mean = x;
            self.var = 0.0;
        } else {
            let d = x - self.mean;
            self.mean += ALPHA * d;
            self.var = (1.0 - ALPHA) * (self.var + ALPHA * d * d);
        }
        self.n = self.n.saturating_add(1);
    }

    /// The upward z-score of `x`, once warmed up.
    fn z(&self, x: f64, floor: f64) -> Option<f64> {
        (self.n >= WARM_UP).then(|| (x - self.mean).max(0.0) / self.var.sqrt().max(floor))
    }
}

/// The smooth map from a z-score to a risk in 0..1.
pub fn risk_of_z(z: f64) -> f64 {
    let s = z / Z_SCALE;
    1.0 - (-s * s).exp()
}

/// How one metric of a sample scored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricRisk {
    /// The metric.
    pub metric: Metric,
    /// The sample's value.
    pub value: f64,
    /// The baseline mean it was compared with.
    pub mean: f64,
    /// The upward z-score (none during warm-up).
    pub z: Option<f64>,
    /// The metric's risk.
    pub risk: f64,
}

/// How a sample scored.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// The sample's risk (0..=1): the largest metric risk.
    pub risk: f64,
    /// Every metric the sample has.
    pub metrics: Vec<MetricRisk>,
}

impl Assessment {
    /// The metric with the largest risk.
    pub fn top(&self) -> Option<&MetricRisk> {
        self.metrics
            .iter()
            .reduce(|a, b| if b.risk > a.risk { b } else { a })
    }

    /// A sentence for an alert message.
    pub fn explain(&self) -> String {
        let Some(top) = self.top() else {
            return format!("risk score {:.2}", self.risk);
        };
        let why = match top.z {
            Some(z) if risk_of_z(z) >= top.risk => {
                format!(
                    "{z:.1} standard deviations above its recent mean of {:.1}",
                    top.mean
                )
            }
            _ => "above the absolute threshold".to_owned(),
        };
        format!(
            "risk score {:.2}: {} is {:.1}, {why}",
            self.risk,
            top.metric.name(),
            top.value
        )
    }
}

/// A device's baseline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceModel {
    stats: [Ewma; 5],
}

impl DeviceModel {
    /// A baseline built from past samples, oldest first.
    pub fn from_history<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Self {
        let mut model = Self::default();
        for s in samples {
            model.update(s);
        }
        model
    }

    /// Scores a sample against the baseline (which it does not change).
    pub fn score(&self, sample: &Sample) -> Assessment {
        let mut metrics = Vec::with_capacity(Metric::ALL.len());
        for m in Metric::ALL {
            let Some(x) = sample.value(m) else { continue };
            let stat = self.stat(m);
            let z = stat.z(x, m.floor(stat.mean));
            let risk = z.map_or(0.0, risk_of_z).max(m.absolute(x)).clamp(0.0, 1.0);
            metrics.push(MetricRisk {
                metric: m,
                value: x,
                mean: stat.mean,
                z,
                risk,
            });
        }
        let risk = metrics.iter().map(|r| r.risk).fold(0.0, f64::max);
        Assessment { risk, metrics }
    }

    /// Adds a sample to the baseline.
    pub fn update(&mut self, sample: &Sample) {
        for m in Metric::ALL {
            if let (Some(x), Some(stat)) = (sample.value(m), self.stats.get_mut(m.index())) {
                stat.update(x);
            }
        }
    }

    fn stat(&self, m: Metric) -> Ewma {
        self.stats.get(m.index()).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
