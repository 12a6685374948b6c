#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "tests: a broken expectation should panic with its message"
)]

use tether_proto::UnixMillis;
use tether_store::{RollupPeriod, TelemetryPoint};

use super::*;

#[test]
fn one_to_a_hundred() {
    let series: Vec<f64> = (1..=100).map(f64::from).collect();
    let s = rollup(&series).unwrap();
    assert_eq!(
        s,
        Stats {
            count: 100,
            min: 1.0,
            max: 100.0,
            mean: 50.5,
            p95: 95.0
        }
    );
    // Order does not matter.
    let mut shuffled = series.clone();
    shuffled.reverse();
    shuffled.swap(3, 70);
    assert_eq!(rollup(&shuffled), Some(s));
}

#[test]
fn nearest_rank_p95() {
    // n = 20: rank ⌈19⌉ = 19.
    let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
    assert_eq!(rollup(&twenty).unwrap().p95, 19.0);
    // n = 10: rank ⌈9.5⌉ = 10, the largest.
    let ten: Vec<f64> = (1..=10).map(f64::from).collect();
    assert_eq!(rollup(&ten).unwrap().p95, 10.0);
    // n = 1: the sample.
    assert_eq!(
        rollup(&[42.5]).unwrap(),
        Stats {
            count: 1,
            min: 42.5,
            max: 42.5,
            mean: 42.5,
            p95: 42.5
        }
    );
    assert_eq!(rollup(&[]), None);
    // Non-finite values are skipped.
    assert_eq!(rollup(&[f64::NAN, 3.0, f64::INFINITY]).unwrap().count, 1);
    assert_eq!(rollup(&[f64::NAN]), None);
}

fn point(at: u64, cpu: f64) -> TelemetryPoint {
    TelemetryPoint {
        collected_at: UnixMillis(at),
        cpu_pct: cpu,
        mem_used_bytes: 1,
        mem_total_bytes: 4,
        disk_used_pct: None,
        rx_bps: 10.0,
        tx_bps: 20.0,
        risk_score: 0.1,
    }
}

#[test]
fn buckets_take_only_their_own_samples() {
    let h = RollupPeriod::Hourly;
    let start = UnixMillis(1_800_000_000_000 - 1_800_000_000_000 % h.millis());
    let mut points: Vec<_> = (1..=100u32)
        .map(|i| point(start.0 + u64::from(i) * 1000, f64::from(i)))
        .collect();
    points.push(point(start.0 - 1, 1000.0)); // the bucket before
    points.push(point(start.0 + h.millis(), 1000.0)); // the bucket after
    let rollups = bucket_rollups("dev_1", h, start, &points);
    let names: Vec<_> = rollups.iter().map(|r| r.metric.as_str()).collect();
    assert_eq!(
        names,
        vec!["cpu_pct", "mem_used_pct", "rx_bps", "tx_bps", "risk_score"],
        "no disk values, no disk rollup"
    );
    let cpu = &rollups[0];
    assert_eq!((cpu.count, cpu.min, cpu.max), (100, 1.0, 100.0));
    assert_eq!((cpu.mean, cpu.p95), (50.5, 95.0));
    assert_eq!(cpu.bucket_start, start);
    assert_eq!(rollups[1].mean, 25.0);
}
