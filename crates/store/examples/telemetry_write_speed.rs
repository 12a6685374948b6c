//! How fast a file store takes a fleet's telemetry, the way the analytics write it: reads
//! of `BATCH` samples, each from a different device of `DEVICES`, stored together with
//! `Store::insert_telemetry_events` (docs/benchmarks.md):
//!
//!     cargo run --release -p tether-store --example telemetry_write_speed
//!
//! Environment: `DEVICES` (18000), `BATCH` (1024), `BATCHES` (400), `CONNECTIONS` (the
//! writer's connections to the telemetry file, as `FileTuning::BULK_WRITER`),
//! `CACHE_KIB` and `CHECKPOINT_PAGES` (its page cache and `wal_autocheckpoint`, as
//! `FileTuning::BULK_WRITER`),
//! `MERGE_ROWS` (see below; 0: off),
//! `OTHER_WRITES` (1: one small commit by another connection between batches, as the
//! server's shared pool makes; it goes to the main file, and no longer empties the
//! writer's page cache of the telemetry file as it did when the two were one; 0: none). It prints the
//! median and 90th-percentile milliseconds per batch for each tenth of the run, and the
//! CPU time the process used.

// A measuring program: a failure here is a failed measurement, not a crashed service.
#![allow(
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::as_conversions,
    clippy::print_stdout
)]

use std::time::Instant;

use tether_proto::{MessageId, UnixMillis};
use tether_store::{
    Device, DeviceStatus, FileTuning, NewAuditEvent, NewTelemetryEvent, SqliteStore, Store,
    telemetry_path,
};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: the measurement needs spread ids, not secret ones.
struct Spread(u64);

impl Spread {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next().to_le_bytes());
        b[8..].copy_from_slice(&self.next().to_le_bytes());
        b
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let devices = env_usize("DEVICES", 18_000);
    let batch = env_usize("BATCH", 1024);
    let batches = env_usize("BATCHES", 400);
    let other_writes = env_usize("OTHER_WRITES", 1) != 0;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tether.db");
    // Measuring what the page size does: `PAGE_SIZE=1024` (SQLite's default is 4096),
    // set on the empty file before the store creates its tables.
    if let Some(page_size) = std::env::var("PAGE_SIZE")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(telemetry_path(&path))
            .create_if_missing(true)
            .pragma("page_size", page_size.to_string());
        let pool = sqlx::SqlitePool::connect_with(options)
            .await
            .expect("raw connection");
        sqlx::query("CREATE TABLE page_size_probe (x INTEGER); DROP TABLE page_size_probe")
            .execute(&pool)
            .await
            .expect("page size");
        pool.close().await;
    }
    let shared = SqliteStore::open(&path).await.expect("shared store");
    let tuning = FileTuning {
        telemetry_cache_kib: env_usize(
            "CACHE_KIB",
            FileTuning::BULK_WRITER.telemetry_cache_kib as usize,
        ) as u32,
        telemetry_connections: env_usize(
            "CONNECTIONS",
            FileTuning::BULK_WRITER.telemetry_connections as usize,
        ) as u32,
        wal_autocheckpoint: env_usize(
            "CHECKPOINT_PAGES",
            FileTuning::BULK_WRITER.wal_autocheckpoint as usize,
        ) as u32,
        ..FileTuning::BULK_WRITER
    };
    let writer = SqliteStore::open_tuned(&path, tuning)
        .await
        .expect("writer store");
    // Measuring what an index costs: `DROP_INDEXES=telemetry_events_device,…`.
    if let Ok(names) = std::env::var("DROP_INDEXES") {
        let pool = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new().filename(telemetry_path(&path)),
        )
        .await
        .expect("raw connection");
        for name in names.split(',').filter(|n| !n.is_empty()) {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX {name}")))
                .execute(&pool)
                .await
                .expect("drop index");
        }
        pool.close().await;
    }
    // Measuring an index kept apart and fed in device order (not what the store does):
    // `MERGE_ROWS=65536` drops the per-device index, and whenever that many rows have
    // been stored since the last merge, copies their (device, time, id) into a table
    // keyed by those, sorted, in one transaction of a connection of its own.
    let merge_rows = env_usize("MERGE_ROWS", 0);
    let merger = if merge_rows > 0 {
        let pool = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(telemetry_path(&path))
                .pragma("cache_size", "-16384"),
        )
        .await
        .expect("raw connection");
        sqlx::query(
            "DROP INDEX telemetry_events_device; \
             CREATE TABLE device_index (device_id TEXT NOT NULL, collected_at INTEGER NOT NULL, \
             event_id INTEGER NOT NULL, PRIMARY KEY (device_id, collected_at, event_id)) \
             WITHOUT ROWID",
        )
        .execute(&pool)
        .await
        .expect("device index table");
        Some(pool)
    } else {
        None
    };
    let mut merged_through = 0i64;
    let mut unmerged = 0usize;
    let mut spread = Spread(0x9e37_79b9_7f4a_7c15);
    let t0 = UnixMillis(1_800_000_000_000);
    let mut ids = Vec::with_capacity(devices);
    for _ in 0..devices {
        let id = format!("dev_{}", hex(&spread.bytes()));
        shared
            .insert_device(&Device {
                id: id.clone(),
                name: "lab pc".into(),
                hwid_hash: hex(&spread.bytes()),
                agent_pub: hex(&spread.bytes()),
                os: "windows".into(),
                owner_id: None,
                status: DeviceStatus::Active,
                cert_serial: Some(hex(&spread.bytes())),
                cert_pem: None,
                created_at: t0,
                paired_at: Some(t0),
            })
            .await
            .expect("device");
        ids.push(id);
    }
    let body = serde_json::json!({
        "collected_at": t0.0, "cpu_pct": 33.0, "mem_used_bytes": 8u64 << 30,
        "mem_total_bytes": 16u64 << 30,
        "disks": [{"mount": "C:\\", "used_bytes": 200u64 << 30, "total_bytes": 500u64 << 30}],
        "net": {"rx_bps": 12000.0, "tx_bps": 3000.0, "rx_total_bytes": 1u64 << 30,
                "tx_total_bytes": 1u64 << 28}
    });
    println!(
        "{devices} devices, batches of {batch}, {batches} batches, other writes between batches: {other_writes}"
    );
    let cpu0 = cpu_seconds();
    let wall0 = Instant::now();
    let mut times = Vec::with_capacity(batches);
    let mut next_device = 0usize;
    for b in 0..batches {
        // 1.8 s of a fleet's samples per `devices` rows: the clock moves on accordingly.
        let at = UnixMillis(t0.0 + (b * batch * 1800 / devices) as u64);
        let events: Vec<NewTelemetryEvent> = (0..batch)
            .map(|i| {
                let device_id = ids[next_device % devices].clone();
                next_device += 1;
                NewTelemetryEvent {
                    device_id,
                    message_id: MessageId::time_ordered(
                        UnixMillis(at.0 + i as u64 / 4),
                        spread.bytes(),
                    )
                    .to_string(),
                    seq: (b + 1) as u64,
                    collected_at: at,
                    received_at: at,
                    cpu_pct: 33.0,
                    mem_used_bytes: 8 << 30,
                    mem_total_bytes: 16 << 30,
                    disk_used_pct: Some(40.0),
                    rx_bps: 12_000.0,
                    tx_bps: 3_000.0,
                    risk_score: 0.1,
                    body: body.clone(),
                }
            })
            .collect();
        let started = Instant::now();
        let stored = writer
            .insert_telemetry_events(&events)
            .await
            .expect("batch");
        times.push(started.elapsed().as_secs_f64() * 1e3);
        unmerged += batch;
        if let Some(pool) = merger.as_ref().filter(|_| unmerged >= merge_rows) {
            let mut tx = pool.begin().await.expect("merge transaction");
            let top: i64 = sqlx::query_scalar("SELECT MAX(id) FROM telemetry_events")
                .fetch_one(&mut *tx)
                .await
                .expect("newest id");
            sqlx::query(
                "INSERT INTO device_index SELECT device_id, collected_at, id \
                 FROM telemetry_events WHERE id > ? AND id <= ? \
                 ORDER BY device_id, collected_at, id",
            )
            .bind(merged_through)
            .bind(top)
            .execute(&mut *tx)
            .await
            .expect("merge");
            tx.commit().await.expect("merge commit");
            merged_through = top;
            unmerged = 0;
        }
        assert!(stored.iter().all(|s| *s), "every event is new");
        if other_writes {
            shared
                .append_audit(&NewAuditEvent {
                    actor: "system".into(),
                    action: "bench.tick".into(),
                    target: None,
                    outcome: "ok".into(),
                    device_id: None,
                    detail: serde_json::json!({}),
                    at,
                    trace_id: None,
                })
                .await
                .expect("audit");
        }
    }
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let tenth = (batches / 10).max(1);
    for (n, part) in times.chunks(tenth).enumerate() {
        let mut p = part.to_vec();
        p.sort_by(f64::total_cmp);
        println!(
            "rows {:>8}..{:>8}: median {:>6.1} ms, p90 {:>6.1} ms per batch",
            n * tenth * batch,
            (n * tenth + part.len()) * batch,
            p[p.len() / 2],
            p[p.len() * 9 / 10]
        );
    }
    let rows = (batches * batch) as f64;
    println!(
        "{rows} rows in {wall:.1} s: {:.0} rows/s, {:.1} µs of CPU per row ({cpu:.1} s CPU)",
        rows / wall,
        cpu * 1e6 / rows
    );
}
