#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "tests: a broken expectation should panic with its message"
)]

use tether_proto::UnixMillis;
use tether_proto::messages::session::{DiskUsage, NetUsage, Telemetry};

use super::*;

/// A deterministic jitter in [-1, 1] (no randomness in tests).
fn jitter(i: u32) -> f64 {
    (f64::from(i) * 1.7).sin()
}

fn sample(i: u32, cpu: f64) -> Sample {
    Sample {
        at: UnixMillis(1_800_000_000_000 + u64::from(i) * 10_000),
        cpu_pct: cpu,
        mem_used_pct: Some(40.0 + jitter(i + 7)),
        disk_used_pct: Some(61.0 + 0.01 * f64::from(i)),
        rx_bps: 200_000.0 + 30_000.0 * jitter(i + 3),
        tx_bps: 50_000.0 + 10_000.0 * jitter(i + 5),
    }
}

/// Scores then learns each sample, as the worker does; returns every risk.
fn run(samples: &[Sample]) -> Vec<f64> {
    let mut model = DeviceModel::default();
    samples
        .iter()
        .map(|s| {
            let risk = model.score(s).risk;
            model.update(s);
            risk
        })
        .collect()
}

#[test]
fn a_steady_series_stays_below_half() {
    let series: Vec<_> = (0..500)
        .map(|i| sample(i, 20.0 + 3.0 * jitter(i)))
        .collect();
    let risks = run(&series);
    let max = risks.iter().copied().fold(0.0, f64::max);
    assert!(max < 0.5, "max risk {max}");
}

#[test]
fn a_sudden_cpu_spike_scores_above_point_eight() {
    let mut series: Vec<_> = (0..30).map(|i| sample(i, 5.0 + 0.5 * jitter(i))).collect();
    series.push(sample(30, 99.0));
    let risks = run(&series);
    assert!(risks[..30].iter().all(|r| *r < 0.5), "{risks:?}");
    let spike = risks[30];
    assert!(spike > 0.8, "spike risk {spike}");

    // The explanation names the metric and the z-score.
    let mut model = DeviceModel::default();
    for s in &series[..30] {
        model.update(s);
    }
    let scored = model.score(&series[30]);
    let top = scored.top().unwrap();
    assert_eq!(top.metric, Metric::CpuPct);
    assert!(top.z.unwrap() > 20.0, "{top:?}");
    assert!(
        scored.explain().contains("cpu_pct is 99.0"),
        "{}",
        scored.explain()
    );
}

#[test]
fn a_moderate_rise_is_not_an_anomaly_and_a_drop_is_no_risk() {
    let mut series: Vec<_> = (0..30).map(|i| sample(i, 30.0 + 2.0 * jitter(i))).collect();
    series.push(sample(30, 36.0)); // about 3 floors up
    series.push(sample(31, 0.0)); // idle
    let risks = run(&series);
    assert!(risks[30] > 0.2 && risks[30] < 0.8, "{}", risks[30]);
    assert!(risks[31] < 0.1, "a drop is not risky: {}", risks[31]);
}

#[test]
fn no_z_risk_during_warm_up_but_absolute_thresholds_apply_at_once() {
    let mut model = DeviceModel::default();
    let first = sample(0, 5.0);
    model.update(&first);
    // The second sample jumps: no baseline yet, so no z-based risk.
    let jump = sample(1, 80.0);
    let scored = model.score(&jump);
    assert_eq!(scored.risk, 0.0, "{scored:?}");
    assert!(scored.metrics.iter().all(|m| m.z.is_none()));

    let fresh = DeviceModel::default();
    assert!(fresh.score(&sample(0, 96.0)).risk >= 0.85);
    let mut full_disk = sample(0, 5.0);
    full_disk.disk_used_pct = Some(97.5);
    assert!(fresh.score(&full_disk).risk >= 0.85);
    let mut full_mem = sample(0, 5.0);
    full_mem.mem_used_pct = Some(95.5);
    let r = fresh.score(&full_mem).risk;
    assert!((0.8..0.85).contains(&r), "{r}");
    assert!(
        fresh
            .score(&full_mem)
            .explain()
            .contains("absolute threshold")
    );

    // After WARM_UP samples the z-score counts.
    let mut model = DeviceModel::default();
    for i in 0..WARM_UP {
        model.update(&sample(i, 5.0));
    }
    assert!(model.score(&sample(9, 80.0)).risk > 0.8);
}

#[test]
fn a_rebuilt_baseline_scores_like_the_live_one() {
    let series: Vec<_> = (0..60).map(|i| sample(i, 20.0 + 3.0 * jitter(i))).collect();
    let mut live = DeviceModel::default();
    for s in &series {
        live.update(s);
    }
    let rebuilt = DeviceModel::from_history(&series);
    assert_eq!(rebuilt, live);
    let next = sample(60, 70.0);
    assert_eq!(rebuilt.score(&next), live.score(&next));
}

#[test]
fn the_z_map_is_smooth_and_bounded() {
    assert_eq!(risk_of_z(0.0), 0.0);
    assert!((risk_of_z(2.0) - 0.2212).abs() < 1e-3);
    assert!((risk_of_z(4.0) - 0.6321).abs() < 1e-3);
    assert!(risk_of_z(5.0) < 0.8 && risk_of_z(5.1) > 0.8);
    assert!(risk_of_z(1e9) <= 1.0);
    let mut last = 0.0;
    for i in 0..200 {
        let r = risk_of_z(f64::from(i) / 10.0);
        assert!(r >= last);
        last = r;
    }
}

#[test]
fn samples_from_telemetry() {
    let body = Telemetry {
        collected_at: UnixMillis(5),
        cpu_pct: 12.5,
        mem_used_bytes: 4,
        mem_total_bytes: 16,
        disks: vec![
            DiskUsage {
                mount: "/".into(),
                used_bytes: 50,
                total_bytes: 100,
            },
            DiskUsage {
                mount: "/data".into(),
                used_bytes: 90,
                total_bytes: 100,
            },
            DiskUsage {
                mount: "/empty".into(),
                used_bytes: 0,
                total_bytes: 0,
            },
        ],
        net: NetUsage {
            rx_bps: 1.5,
            tx_bps: 2.5,
            rx_total_bytes: 0,
            tx_total_bytes: 0,
        },
    };
    let s = Sample::from_telemetry(&body, UnixMillis(7));
    assert_eq!(s.at, UnixMillis(7));
    assert_eq!(s.mem_used_pct, Some(25.0));
    assert_eq!(s.disk_used_pct, Some(90.0), "the fullest disk");
    assert_eq!((s.rx_bps, s.tx_bps), (1.5, 2.5));
    let none = Telemetry {
        mem_total_bytes: 0,
        mem_used_bytes: 0,
        disks: vec![],
        ..body
    };
    let s = Sample::from_telemetry(&none, UnixMillis(7));
    assert_eq!((s.mem_used_pct, s.disk_used_pct), (None, None));
    let scored = DeviceModel::default().score(&s);
    assert_eq!(scored.metrics.len(), 3, "absent metrics are not scored");
}
