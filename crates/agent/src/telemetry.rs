//! Telemetry samples: CPU, memory, disks and network, as the `telemetry` message carries
//! them.
//!
//! Collection is split in two so the rules can be tested without a real machine:
//! [`Probe`] reads raw numbers from the OS (through sysinfo, refreshing only what is
//! reported: a full refresh aborts under Wine and costs time everywhere), and [`build`]
//! turns them into a [`Telemetry`] that passes the message's checks: CPU clamped to
//! 0..=100, used never above total, integers within JSON's safe range, mounts cleaned
//! and de-duplicated, at most 64 disks and a body that fits the frame limit. A sample
//! that still fails `Validate` is dropped, never sent.
//!
//! [`spawn_sampler`] runs the probe on an interval (the server's, or the offline one)
//! on a blocking thread, since reading mount points can stall.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sysinfo::{CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, Networks, RefreshKind};
use tether_proto::canonical::MAX_SAFE_INTEGER;
use tether_proto::messages::session::{DiskUsage, NetUsage, Telemetry};
use tether_proto::validate::Validate;
use tether_proto::{Clock, MessageType};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::platform;

/// The most disks a sample may list.
pub const MAX_DISKS: usize = 64;
/// The longest mount name the message allows, in characters.
pub const MAX_MOUNT_CHARS: usize = 256;
/// The highest rate the message allows, bytes per second.
pub const MAX_RATE_BPS: f64 = 1e12;
/// Room left in the frame for the envelope around the body (header, signature).
const ENVELOPE_ROOM: usize = 1024;

/// One disk as the OS reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDisk {
    /// Mount point or drive letter.
    pub mount: String,
    /// File system name (`ext4`, `NTFS`, …).
    pub file_system: String,
    /// Bytes in total.
    pub total_bytes: u64,
    /// Bytes available to users.
    pub available_bytes: u64,
}

/// What the OS reported for one sample, before any cleaning.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSample {
    /// CPU use over all cores, percent (may be anything, NaN included).
    pub cpu_pct: f32,
    /// Memory in use.
    pub mem_used_bytes: u64,
    /// Memory in total.
    pub mem_total_bytes: u64,
    /// The disks.
    pub disks: Vec<RawDisk>,
    /// Bytes received since boot, summed over the reported interfaces.
    pub rx_total_bytes: u64,
    /// Bytes sent since boot, summed over the reported interfaces.
    pub tx_total_bytes: u64,
}

/// Turns network counters into rates between consecutive samples.
#[derive(Debug, Clone, Default)]
pub struct RateMeter {
    prev: Option<(Instant, u64, u64)>,
}

impl RateMeter {
    /// Bytes per second received and sent since the previous call: 0 on the first call,
    /// when no time passed, or when a counter went down (an interface went away or its
    /// counter wrapped); never above [`MAX_RATE_BPS`].
    pub fn update(&mut self, at: Instant, rx_total: u64, tx_total: u64) -> (f64, f64) {
        let prev = self.prev.replace((at, rx_total, tx_total));
        let Some((then, rx0, tx0)) = prev else {
            return (0.0, 0.0);
        };
        let secs = at.saturating_duration_since(then).as_secs_f64();
        if secs < 0.001 {
            return (0.0, 0.0);
        }
        let rate = |now: u64, before: u64| {
            let delta = now.saturating_sub(before);
            // u64 → f64 rounds above 2^53; a rate does not need that precision.
            let r = delta as f64 / secs;
            clamp_f64(r, 0.0, MAX_RATE_BPS)
        };
        (rate(rx_total, rx0), rate(tx_total, tx0))
    }
}

/// A finite value within `min..=max` (NaN becomes `min`).
fn clamp_f64(v: f64, min: f64, max: f64) -> f64 {
    if v.is_nan() { min } else { v.clamp(min, max) }
}

/// An integer the canonical JSON encoder accepts.
fn safe(v: u64) -> u64 {
    v.min(MAX_SAFE_INTEGER)
}

/// A mount name the message accepts: control characters removed, at most
/// [`MAX_MOUNT_CHARS`] characters; `None` when nothing is left.
pub fn clean_mount(raw: &str) -> Option<String> {
    let clean: String = raw
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MOUNT_CHARS)
        .collect();
    (!clean.trim().is_empty()).then_some(clean)
}

/// Builds a valid `telemetry` body from raw numbers, or `None` if the result would still
/// fail the message's checks (then nothing is sent).
pub fn build(
    raw: RawSample,
    collected_at: tether_proto::UnixMillis,
    rx_bps: f64,
    tx_bps: f64,
) -> Option<Telemetry> {
    let mem_total_bytes = safe(raw.mem_total_bytes);
    // Several mounts of one file system (bind mounts) would count it twice: keep one
    // entry per mount name, sorted, so samples compare across time.
    let mut disks: BTreeMap<String, DiskUsage> = BTreeMap::new();
    for d in raw.disks {
        if !platform::report_disk(&d.mount, &d.file_system) {
            continue;
        }
        let Some(mount) = clean_mount(&d.mount) else {
            continue;
        };
        let total_bytes = safe(d.total_bytes);
        let used_bytes = total_bytes.saturating_sub(d.available_bytes.min(total_bytes));
        disks.entry(mount.clone()).or_insert(DiskUsage {
            mount,
            used_bytes,
            total_bytes,
        });
    }
    let mut t = Telemetry {
        collected_at,
        cpu_pct: clamp_f64(f64::from(raw.cpu_pct), 0.0, 100.0),
        mem_used_bytes: safe(raw.mem_used_bytes).min(mem_total_bytes),
        mem_total_bytes,
        disks: disks.into_values().take(MAX_DISKS).collect(),
        net: NetUsage {
            rx_bps: clamp_f64(rx_bps, 0.0, MAX_RATE_BPS),
            tx_bps: clamp_f64(tx_bps, 0.0, MAX_RATE_BPS),
            rx_total_bytes: safe(raw.rx_total_bytes),
            tx_total_bytes: safe(raw.tx_total_bytes),
        },
    };
    fit_frame(&mut t);
    match t.validate() {
        Ok(()) => Some(t),
        Err(e) => {
            tracing::warn!(error = %e, "dropping a telemetry sample that fails its checks");
            None
        }
    }
}

/// Drops disks from the end until the body leaves room for the envelope within the
/// `telemetry` frame limit (64 disks with long mount names would not fit).
fn fit_frame(t: &mut Telemetry) {
    let limit = MessageType::Telemetry
        .max_frame_bytes()
        .saturating_sub(ENVELOPE_ROOM);
    while serde_json::to_vec(t).map_or(usize::MAX, |b| b.len()) > limit {
        if t.disks.pop().is_none() {
            break;
        }
    }
}

/// Reads the OS's numbers through sysinfo, refreshing only what a sample reports. A part
/// the platform cannot provide reads as zero/empty rather than stopping telemetry.
#[derive(Debug)]
pub struct Probe {
    system: Option<sysinfo::System>,
    disks: Option<Disks>,
    networks: Option<Networks>,
    /// Where the OS offers system CPU times (Windows: `GetSystemTimes`), the last reading
    /// (idle, total): CPU use is the busy share of the time between two readings.
    /// sysinfo's CPU use goes through PDH counters, whose reload after a failed first
    /// open aborts the process under Wine.
    cpu_times: Option<platform::CpuTimes>,
}

impl Probe {
    /// Takes a first reading (CPU use is measured between two readings).
    pub fn new() -> Self {
        let cpu_times = platform::cpu_times();
        let mut kind = RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram());
        if cpu_times.is_none() {
            kind = kind.with_cpu(CpuRefreshKind::nothing().with_usage());
        }
        let system = sysinfo::System::new_with_specifics(kind)
            .map_err(|e| tracing::warn!(error = %e, "no CPU or memory telemetry on this system"))
            .ok();
        let disks =
            Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_storage())
                .map_err(|e| tracing::warn!(error = %e, "no disk telemetry on this system"))
                .ok();
        let networks = Networks::new_with_refreshed_list()
            .map_err(|e| tracing::warn!(error = %e, "no network telemetry on this system"))
            .ok();
        Self {
            system,
            disks,
            networks,
            cpu_times,
        }
    }

    /// Refreshes CPU use, memory, disks and network counters, and reads them.
    pub fn read(&mut self) -> RawSample {
        let (cpu_pct, mem_used_bytes, mem_total_bytes) = match self.system.as_mut() {
            Some(s) => {
                let cpu = match self.cpu_times {
                    Some(before) => match platform::cpu_times() {
                        Some(now) => {
                            self.cpu_times = Some(now);
                            now.busy_percent_since(before)
                        }
                        None => 0.0,
                    },
                    None => {
                        s.refresh_cpu_usage();
                        s.global_cpu_usage()
                    }
                };
                s.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
                (cpu, s.used_memory(), s.total_memory())
            }
            None => (0.0, 0, 0),
        };
        let disks = match self.disks.as_mut() {
            Some(d) => {
                d.refresh_specifics(true, DiskRefreshKind::nothing().with_storage());
                d.iter()
                    .map(|d| RawDisk {
                        mount: d.mount_point().to_string_lossy().into_owned(),
                        file_system: d.file_system().to_string_lossy().into_owned(),
                        total_bytes: d.total_space(),
                        available_bytes: d.available_space(),
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        let (mut rx_total_bytes, mut tx_total_bytes) = (0u64, 0u64);
        if let Some(n) = self.networks.as_mut() {
            n.refresh(true);
            for (name, data) in n.iter() {
                if platform::is_loopback_interface(&name.to_string_lossy()) {
                    continue;
                }
                rx_total_bytes = rx_total_bytes.saturating_add(data.total_received());
                tx_total_bytes = tx_total_bytes.saturating_add(data.total_transmitted());
            }
        }
        RawSample {
            cpu_pct,
            mem_used_bytes,
            mem_total_bytes,
            disks,
            rx_total_bytes,
            tx_total_bytes,
        }
    }
}

impl Default for Probe {
    fn default() -> Self {
        Self::new()
    }
}

/// A probe and the rate meter over its counters: one valid sample per call.
#[derive(Debug, Default)]
pub struct Sampler {
    probe: Probe,
    rates: RateMeter,
}

impl Sampler {
    /// A sampler with a first reading taken.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the OS and builds a sample stamped `collected_at`; `at` is the monotonic
    /// time the rates are computed over.
    pub fn sample(
        &mut self,
        collected_at: tether_proto::UnixMillis,
        at: Instant,
    ) -> Option<Telemetry> {
        let raw = self.probe.read();
        let (rx_bps, tx_bps) = self
            .rates
            .update(at, raw.rx_total_bytes, raw.tx_total_bytes);
        build(raw, collected_at, rx_bps, tx_bps)
    }
}

/// Takes a sample every `interval` (which the session changes as it connects and
/// disconnects) and hands it to `samples` until `shutdown`. The first sample comes one
/// interval after the start, so its CPU figure covers a whole interval.
pub fn spawn_sampler(
    clock: Arc<dyn Clock>,
    mut interval: watch::Receiver<Duration>,
    samples: mpsc::Sender<Telemetry>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut sampler = match tokio::task::spawn_blocking(Sampler::new).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "telemetry is off: the sampler did not start");
                return;
            }
        };
        let mut period = *interval.borrow_and_update();
        let mut ticker = ticker_from_now(period);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = interval.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let p = *interval.borrow_and_update();
                    if p != period {
                        period = p;
                        ticker = ticker_from_now(period);
                    }
                    continue;
                }
                _ = ticker.tick() => {}
            }
            let collected_at = clock.now();
            let at = Instant::now();
            let (back, sample) = match tokio::task::spawn_blocking(move || {
                let s = sampler.sample(collected_at, at);
                (sampler, s)
            })
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "telemetry is off: the sampler failed");
                    return;
                }
            };
            sampler = back;
            if let Some(sample) = sample
                && samples.send(sample).await.is_err()
            {
                return;
            }
        }
    })
}

fn ticker_from_now(period: Duration) -> tokio::time::Interval {
    let period = period.max(Duration::from_secs(1));
    let mut t = tokio::time::interval_at(
        Instant::now()
            .checked_add(period)
            .unwrap_or_else(Instant::now),
        period,
    );
    // A late sample is taken late, not in a burst: each sample stands for its interval.
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

#[cfg(test)]
mod tests;
