//! What the embedded bus costs a telemetry sample, the way the server moves them: many
//! sessions append at once (the bus commits concurrent appends together), one consumer
//! reads them as a group member in reads of about 1,024 samples and acknowledges each
//! read, and the stream is trimmed at its cap (docs/benchmarks.md):
//!
//!     cargo run --release -p tether-bus --example telemetry_stream_speed
//!
//! Environment: `SAMPLES` (200000), `PER_ENTRY` (1: one entry per sample, as the gateway
//! appended them before batching; N: entries of N samples each), `SENDERS` (200 appends
//! in flight at once), `SAMPLE_BYTES` (520, a telemetry record's JSON), `MAX_LEN`
//! (100000, the server's stream cap). It prints samples a second, the CPU time the
//! process used a sample, and the bus file's size.

// A measuring program: a failure here is a failed measurement, not a crashed service.
#![allow(
    clippy::expect_used,
    clippy::arithmetic_side_effects,
    clippy::cast_precision_loss,
    clippy::as_conversions,
    clippy::print_stdout
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tether_bus::{Bus, EmbeddedBus};
use tether_proto::SystemClock;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let samples = env_usize("SAMPLES", 200_000).max(1);
    let per_entry = env_usize("PER_ENTRY", 1).max(1);
    let senders = env_usize("SENDERS", 200).max(1);
    let sample_bytes = env_usize("SAMPLE_BYTES", 520).max(1);
    let max_len = env_usize("MAX_LEN", 100_000).max(1) as u64;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bus.sqlite");
    let bus = Arc::new(
        EmbeddedBus::open(&path, "bench", Arc::new(SystemClock))
            .await
            .expect("open the bus"),
    );
    bus.ensure_group("telemetry", "analytics")
        .await
        .expect("group");
    let entries = samples.div_ceil(per_entry);
    let payload = vec![b'x'; sample_bytes * per_entry];
    let read_count = (1024 / per_entry).max(1);

    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let consumer = {
        let bus = Arc::clone(&bus);
        tokio::spawn(async move {
            let mut read = 0usize;
            while read < entries {
                let got = bus
                    .read_group(
                        "telemetry",
                        "analytics",
                        "bench",
                        read_count,
                        Duration::from_secs(1),
                    )
                    .await
                    .expect("read");
                let ids: Vec<String> = got.iter().map(|e| e.id.clone()).collect();
                read += ids.len();
                if !ids.is_empty() {
                    bus.ack("telemetry", "analytics", &ids).await.expect("ack");
                }
            }
        })
    };
    let mut producers = Vec::with_capacity(senders);
    for s in 0..senders {
        let bus = Arc::clone(&bus);
        let payload = payload.clone();
        producers.push(tokio::spawn(async move {
            for _ in (s..entries).step_by(senders) {
                bus.append("telemetry", &payload, max_len)
                    .await
                    .expect("append");
            }
        }));
    }
    for p in producers {
        p.await.expect("producer");
    }
    consumer.await.expect("consumer");
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let pending = bus
        .pending_count("telemetry", "analytics")
        .await
        .expect("pending");
    bus.close().await;
    let file: u64 = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "{samples} samples in {entries} entries of {per_entry} ({senders} appends in flight): \
         {wall:.1} s, {:.0} samples/s, {:.1} µs of CPU a sample ({cpu:.1} s CPU), \
         {pending} left pending, bus files {:.1} MiB",
        samples as f64 / wall,
        cpu * 1e6 / samples as f64,
        file as f64 / (1024.0 * 1024.0)
    );
}
