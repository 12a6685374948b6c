//! The embedded default backend: SQLite files under the data dir, the telemetry events
//! in one of their own ([`telemetry_path`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection, Sqlite};

use crate::sql::{Dialect, SqlStore, db_err, migrator, migrator_of};
use crate::{StoreError, StoreResult};

mod audit_writer;

pub(crate) use audit_writer::AuditWriter;

/// The SQLite dialect of [`SqlStore`].
#[derive(Debug, Clone, Copy)]
pub struct SqliteDialect;

impl Dialect for SqliteDialect {
    type Db = Sqlite;
    const NAME: &'static str = "sqlite";
    const UPSERT_SETTING: &'static str = "INSERT INTO settings (name, value) VALUES (?, ?) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value";
    const ROLLUP_ON_CONFLICT: &'static str = "ON CONFLICT (device_id, bucket_start, metric) \
         DO UPDATE SET samples = excluded.samples, min_value = excluded.min_value, \
         max_value = excluded.max_value, mean_value = excluded.mean_value, \
         p95_value = excluded.p95_value";
    const UPSERT_SECOND_FACTOR: &'static str = "INSERT INTO session_second_factors \
         (session_id, user_id, at) VALUES (?, ?, ?) ON CONFLICT (session_id) DO UPDATE \
         SET at = MAX(at, excluded.at) WHERE user_id = excluded.user_id";
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const FOR_UPDATE: &'static str = "";
    const TELEMETRY_APART: bool = true;
    const DEVICES_LAST_SEEN_FROM: &'static str = "devices INDEXED BY devices_last_seen";
    const IN_JSON_ARRAY: Option<&'static str> = Some("(SELECT value FROM json_each(?))");
    const TRANSITION_TRIGGERS: bool = true;
    const MIGRATIONS: &'static [(i64, &'static str, &'static str)] = &[
        (
            1,
            "init",
            include_str!("../migrations/sqlite/0001_init.sql"),
        ),
        (
            2,
            "telemetry",
            include_str!("../migrations/sqlite/0002_telemetry.sql"),
        ),
        (
            3,
            "commands",
            include_str!("../migrations/sqlite/0003_commands.sql"),
        ),
        (
            4,
            "policy",
            include_str!("../migrations/sqlite/0004_policy.sql"),
        ),
        (
            5,
            "owner keys",
            include_str!("../migrations/sqlite/0005_owner_keys.sql"),
        ),
        (
            6,
            "audit device",
            include_str!("../migrations/sqlite/0006_audit_device.sql"),
        ),
        (
            7,
            "command transition trigger",
            include_str!("../migrations/sqlite/0007_command_transition_trigger.sql"),
        ),
        (
            8,
            "telemetry file",
            include_str!("../migrations/sqlite/0008_telemetry_file.sql"),
        ),
        (
            9,
            "devices last seen",
            include_str!("../migrations/sqlite/0009_devices_last_seen.sql"),
        ),
    ];

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn last_insert_id(result: &SqliteQueryResult) -> Option<u64> {
        u64::try_from(result.last_insert_rowid()).ok()
    }
}

/// The store over a SQLite file and its telemetry file (or in-memory databases, for
/// tests).
pub type SqliteStore = SqlStore<SqliteDialect>;

/// How long a writer waits for another writer before giving up with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How a file store's pools are sized: the main file's connections and page cache, and
/// those of the telemetry file beside it (see [`telemetry_path`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileTuning {
    /// Connections to the main file (WAL lets readers run beside the one writer).
    pub connections: u32,
    /// Each main-file connection's page cache, in KiB (SQLite's `cache_size`, as a
    /// negative number).
    pub cache_kib: u32,
    /// Connections to the telemetry file.
    pub telemetry_connections: u32,
    /// Each telemetry-file connection's page cache, in KiB.
    pub telemetry_cache_kib: u32,
    /// Pages of write-ahead log after which a connection's commit copies the log back
    /// into the database (`wal_autocheckpoint`, both files).
    pub wal_autocheckpoint: u32,
}

impl FileTuning {
    /// The shared pools: 8 connections to the main file and 4 to the telemetry file
    /// (the API's reads of telemetry) with SQLite's default page cache (2,000 KiB each),
    /// checkpointing every 10,000 pages of log. At SQLite's default checkpoint (1,000
    /// pages) nearly every small commit (an audit event) copied the analytics' log back
    /// into the database itself, and commands waited seconds (18,000 agents, 5,000
    /// samples/s: p99 6.9 s; measured before the telemetry had a file of its own). A
    /// larger cache did not help here: in WAL mode a connection drops its whole cache
    /// whenever another one has committed to its file, which the analytics did several
    /// times a second while they wrote to the main file, and 16 MiB each measured no faster under that
    /// load while idle sessions cost 4 KiB more each (the 8 connections each cached the
    /// devices table; docs/benchmarks.md).
    pub const SHARED: Self = Self {
        connections: 8,
        cache_kib: 2_000,
        telemetry_connections: 4,
        telemetry_cache_kib: 2_000,
        wal_autocheckpoint: 10_000,
    };
    /// A bulk writer's pools (the analytics storing a fleet's telemetry): 2 connections to
    /// each file, those to the telemetry file with 16 MiB of page cache each. Each batch
    /// writes to every device's part of the indexes of `telemetry_events`; with the
    /// default cache most of those pages were read from the file again at every batch.
    /// Its commits copy the log back into the database once it holds 40,000 pages
    /// (160 MiB, a file that then stays that large; SQLite's default is 1,000, the
    /// other pools' 10,000): each batch writes a page of the per-device index a device,
    /// a page that many batches in between rewrite is copied once, and the copies (with
    /// their `fsync`) come rarely. 40,000 against 10,000 took a sixth less time and a
    /// twelfth less CPU a sample (docs/benchmarks.md). The main file's connections only
    /// read devices and move their last-seen times.
    pub const BULK_WRITER: Self = Self {
        connections: 2,
        cache_kib: 2_000,
        telemetry_connections: 2,
        telemetry_cache_kib: 16_384,
        wal_autocheckpoint: 40_000,
    };
    /// The agent sessions' reads (the device at connect and at each heartbeat): 4
    /// connections to the main file, 1 to the telemetry file (which they do not read).
    /// A pool of their own, so that a fleet's heartbeats arriving together (thousands at
    /// the same second after a restart or a reconnect storm; the server reads those in
    /// batches, [`crate::Store::devices_by_id`]) queue behind each other and not in
    /// front of commands and the API, whose writes and reads the shared pool
    /// serves: 18,000 agents' burst of heartbeat reads held the shared pool's 8
    /// connections for 2.5 s and every command in flight with them
    /// (docs/benchmarks.md).
    pub const SESSION_READS: Self = Self {
        connections: 4,
        cache_kib: 2_000,
        telemetry_connections: 1,
        telemetry_cache_kib: 2_000,
        wal_autocheckpoint: 10_000,
    };
}

/// The file beside a store's `path` that holds its telemetry events: `tether.db` →
/// `tether-telemetry.db`. A fleet's telemetry is most of what the store writes; in a file
/// of its own, its transactions take that file's write lock only, and a command's or an
/// audit event's write never waits behind them. Back the two files up together.
pub fn telemetry_path(path: &Path) -> PathBuf {
    let mut name = path.file_stem().map(OsString::from).unwrap_or_default();
    name.push("-telemetry");
    if let Some(ext) = path.extension() {
        name.push(".");
        name.push(ext);
    }
    path.with_file_name(name)
}

/// The telemetry file's migrations, recorded in its own `_sqlx_migrations`.
const TELEMETRY_MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "telemetry events",
    include_str!("../migrations/sqlite/telemetry/0001_events.sql"),
)];

/// The columns of `telemetry_events` that move to the telemetry file: all but the id,
/// which the telemetry file assigns (in the old ids' order), so that the only key a copy
/// can meet there is the message id of an event copied already.
const TELEMETRY_COLUMNS: &str = "device_id, message_id, seq, collected_at, received_at, \
     cpu_pct, mem_used_bytes, mem_total_bytes, disk_used_pct, rx_bps, tx_bps, risk_score, body";

impl SqlStore<SqliteDialect> {
    /// Opens (creating them if missing) the database file at `path` and its telemetry
    /// file ([`telemetry_path`]) and runs the pending migrations; telemetry events a store
    /// of an earlier version kept in the main file are moved to the telemetry file. WAL
    /// journal, `synchronous = NORMAL` (durable across a process crash; a power cut may
    /// lose the last commits but never corrupts the file), foreign keys enforced (within
    /// the main file; the store checks a telemetry event's device itself), writers wait
    /// up to 5 s for each other; the pools are [`FileTuning::SHARED`].
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        Self::open_tuned(path, FileTuning::SHARED).await
    }

    /// [`Self::open`] with pools sized by `tuning`.
    pub async fn open_tuned(path: &Path, tuning: FileTuning) -> StoreResult<SqliteStore> {
        let pool = file_pool(
            path,
            tuning.connections,
            tuning.cache_kib,
            tuning.wal_autocheckpoint,
        )
        .await?;
        let telemetry_file = telemetry_path(path);
        let telemetry = file_pool(
            &telemetry_file,
            tuning.telemetry_connections,
            tuning.telemetry_cache_kib,
            tuning.wal_autocheckpoint,
        )
        .await?;
        Self::migrated(pool, telemetry, Some(&telemetry_file)).await
    }

    /// A fresh in-memory database, for tests. It lives in exactly one connection, kept
    /// open for the life of the store, so operations are serialized; its telemetry
    /// events are in a second one.
    pub async fn open_in_memory() -> StoreResult<SqliteStore> {
        Self::migrated(memory_pool().await?, memory_pool().await?, None).await
    }

    async fn migrated(
        pool: SqlitePool,
        telemetry: SqlitePool,
        telemetry_file: Option<&Path>,
    ) -> StoreResult<SqliteStore> {
        let migration_failed =
            |e: sqlx::migrate::MigrateError| StoreError::Migration(e.to_string());
        migrator_of(TELEMETRY_MIGRATIONS)
            .run(&telemetry)
            .await
            .map_err(migration_failed)?;
        if let Some(file) = telemetry_file {
            copy_telemetry_out(&pool, file).await?;
        }
        // v8 drops the main file's table, once its events are copied.
        migrator::<SqliteDialect>()
            .run(&pool)
            .await
            .map_err(migration_failed)?;
        let writer = AuditWriter::start(pool.clone())?;
        Ok(Self::from_pool(pool)
            .with_telemetry_pool(telemetry)
            .with_audit_writer(writer))
    }
}

/// A pool of `connections` to the file at `path` (see [`SqliteStore::open`]).
async fn file_pool(
    path: &Path,
    connections: u32,
    cache_kib: u32,
    wal_autocheckpoint: u32,
) -> StoreResult<SqlitePool> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
        .pragma("cache_size", format!("-{cache_kib}"))
        .pragma("wal_autocheckpoint", wal_autocheckpoint.to_string());
    // No ping before each checkout: for SQLite it is one more round trip to the
    // connection's worker thread per statement, and a file connection does not go
    // stale the way a network one does.
    SqlitePoolOptions::new()
        .max_connections(connections.max(1))
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(db_err("opening the SQLite store"))
}

/// One connection to a fresh in-memory database, kept for the life of the pool.
async fn memory_pool() -> StoreResult<SqlitePool> {
    let options = SqliteConnectOptions::new()
        .in_memory(true)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await
        .map_err(db_err("opening the in-memory store"))
}

/// Copies the telemetry events a store before schema v8 kept in the main file (where v2
/// created their table) into `telemetry_file`; migration v8 then drops the main file's
/// table. A no-op once that table is gone, or before v2 made it. The copy commits (at
/// `synchronous = FULL`) before the drop, and a copy repeated after a crash in between
/// skips the events it finds there already (same message id): nothing is lost or
/// doubled. It is one transaction, at start, before the server listens: the telemetry
/// file's log, which holds the whole copy until then, is truncated afterwards.
async fn copy_telemetry_out(pool: &SqlitePool, telemetry_file: &Path) -> StoreResult<()> {
    let present = sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'telemetry_events'",
    )
    .fetch_one(pool)
    .await
    .map_err(db_err("telemetry event"))?;
    if present == 0 {
        return Ok(());
    }
    let file = telemetry_file
        .to_str()
        .ok_or_else(|| StoreError::Database("the telemetry file's path is not UTF-8".into()))?;
    // A connection of its own, closed afterwards: it has the telemetry file attached.
    let mut conn = pool
        .acquire()
        .await
        .map_err(db_err("telemetry event"))?
        .detach();
    sqlx::query("ATTACH DATABASE ? AS moving")
        .bind(file)
        .execute(&mut conn)
        .await
        .map_err(db_err("attaching the telemetry file"))?;
    tracing::info!(
        file,
        "copying the stored telemetry events to the telemetry file (once)"
    );
    let moved = sqlx::raw_sql(AssertSqlSafe(format!(
        "PRAGMA moving.synchronous = FULL; \
         INSERT OR IGNORE INTO moving.telemetry_events ({TELEMETRY_COLUMNS}) \
         SELECT {TELEMETRY_COLUMNS} FROM main.telemetry_events ORDER BY id; \
         PRAGMA moving.wal_checkpoint(TRUNCATE)"
    )))
    .execute(&mut conn)
    .await
    .map_err(db_err("telemetry event"))?;
    tracing::info!(
        events = moved.rows_affected(),
        file,
        "copied the stored telemetry events to the telemetry file"
    );
    conn.close().await.map_err(db_err("telemetry event"))?;
    Ok(())
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    reason = "test arithmetic on small constants"
)]
mod tests {
    use std::time::Instant;

    use serde_json::json;

    use super::*;
    use crate::{Device, DeviceStatus, NewTelemetryEvent, Store, UnixMillis};

    async fn scalar(pool: &SqlitePool, statement: &'static str) -> i64 {
        sqlx::query_scalar::<_, i64>(statement)
            .fetch_one(pool)
            .await
            .unwrap()
    }

    fn device(id: &str) -> Device {
        Device {
            id: id.into(),
            name: "lab pc".into(),
            hwid_hash: format!("hw-{id}"),
            agent_pub: format!("pub-{id}"),
            os: "windows".into(),
            owner_id: None,
            status: DeviceStatus::Active,
            cert_serial: Some(format!("serial-{id}")),
            cert_pem: None,
            created_at: UnixMillis(1_000),
            paired_at: Some(UnixMillis(1_000)),
        }
    }

    fn sample(device: &str, message_id: &str, at: u64) -> NewTelemetryEvent {
        NewTelemetryEvent {
            device_id: device.into(),
            message_id: message_id.into(),
            seq: 1,
            collected_at: UnixMillis(at),
            received_at: UnixMillis(at),
            cpu_pct: 12.5,
            mem_used_bytes: 1,
            mem_total_bytes: 2,
            disk_used_pct: None,
            rx_bps: 0.0,
            tx_bps: 0.0,
            risk_score: 0.0,
            body: json!({ "cpu_pct": 12.5 }),
        }
    }

    #[test]
    fn the_telemetry_file_is_named_after_the_store_file() {
        assert_eq!(
            telemetry_path(Path::new("/data/tether.db")),
            Path::new("/data/tether-telemetry.db")
        );
        assert_eq!(
            telemetry_path(Path::new("store")),
            Path::new("store-telemetry")
        );
    }

    #[tokio::test]
    async fn a_file_store_connection_has_the_cache_and_checkpoint_it_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tether.db");
        for tuning in [
            FileTuning::SHARED,
            FileTuning::BULK_WRITER,
            FileTuning::SESSION_READS,
        ] {
            let store = SqliteStore::open_tuned(&path, tuning).await.unwrap();
            for (pool, connections, cache) in [
                (store.pool(), tuning.connections, tuning.cache_kib),
                (
                    store.telemetry_pool(),
                    tuning.telemetry_connections,
                    tuning.telemetry_cache_kib,
                ),
            ] {
                assert_eq!(pool.options().get_max_connections(), connections);
                assert_eq!(scalar(pool, "PRAGMA cache_size").await, -i64::from(cache));
                assert_eq!(
                    scalar(pool, "PRAGMA wal_autocheckpoint").await,
                    i64::from(tuning.wal_autocheckpoint)
                );
                assert_eq!(scalar(pool, "PRAGMA synchronous").await, 1, "NORMAL");
            }
            store.close().await;
        }
        assert!(telemetry_path(&path).exists());
    }

    /// Another process moves a device's last-seen time between this store's batches: the
    /// time this store keeps for the device (a lower bound of the stored one) is then
    /// read again rather than taken past the stored time, so the stored time still
    /// trails the newest sample by less than a step.
    #[tokio::test]
    async fn a_last_seen_time_moved_by_another_process_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tether.db");
        let here = SqliteStore::open(&path).await.unwrap();
        let other = SqliteStore::open(&path).await.unwrap();
        here.insert_device(&device("dev_a")).await.unwrap();
        let at = |ms: u64| UnixMillis(ms);
        here.insert_telemetry_events(&[sample("dev_a", "m1", 40_000)])
            .await
            .unwrap();
        assert_eq!(
            here.device_last_seen("dev_a").await.unwrap(),
            Some(at(40_000))
        );
        other.set_last_seen("dev_a", at(60_000)).await.unwrap();
        // 85 000 is a step past the 40 000 kept here but not past the stored 60 000:
        // the update declines it.
        here.insert_telemetry_events(&[sample("dev_a", "m2", 85_000)])
            .await
            .unwrap();
        assert_eq!(
            here.device_last_seen("dev_a").await.unwrap(),
            Some(at(60_000))
        );
        assert_eq!(
            here.kept_last_seen("dev_a"),
            None,
            "forgotten, to be read again"
        );
        // 110 000 is a step past the stored 60 000 (had 85 000 been kept, it would not
        // have been).
        here.insert_telemetry_events(&[sample("dev_a", "m3", 110_000)])
            .await
            .unwrap();
        assert_eq!(
            here.device_last_seen("dev_a").await.unwrap(),
            Some(at(110_000))
        );
        assert_eq!(here.kept_last_seen("dev_a"), Some(Some(110_000)));
        here.close().await;
        other.close().await;
    }

    /// The analytics' read of a batch's devices (their last-seen times by id) is answered
    /// from the index of both columns alone, not from each device's row.
    #[tokio::test]
    async fn the_devices_last_seen_read_uses_its_covering_index() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        let plan: Vec<String> =
            sqlx::query_as::<_, (i64, i64, i64, String)>(AssertSqlSafe(format!(
                "EXPLAIN QUERY PLAN SELECT id, last_seen_at FROM {} WHERE id IN {}",
                SqliteDialect::DEVICES_LAST_SEEN_FROM,
                SqliteDialect::IN_JSON_ARRAY.unwrap()
            )))
            .bind(r#"["dev_a", "dev_b"]"#)
            .fetch_all(store.pool())
            .await
            .unwrap()
            .into_iter()
            .map(|(_, _, _, detail)| detail)
            .collect();
        assert!(
            plan.iter()
                .any(|step| step.contains("COVERING INDEX devices_last_seen")),
            "{plan:?}"
        );
        store.close().await;
    }

    /// A store of an earlier version kept its telemetry events in the main file: opening
    /// it moves them to the telemetry file, once, and records schema v8 (and v9).
    #[tokio::test]
    async fn events_kept_in_the_main_file_are_moved_to_the_telemetry_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tether.db");
        let store = SqliteStore::open(&path).await.unwrap();
        store.insert_device(&device("dev_a")).await.unwrap();
        store
            .insert_telemetry_event(&sample("dev_a", "new-1", 5_000))
            .await
            .unwrap();
        // The main file as the earlier version (v7) left it: its own table, with events.
        let v2 = include_str!("../migrations/sqlite/0002_telemetry.sql");
        let table = &v2[v2.find("CREATE TABLE telemetry_events").unwrap()
            ..v2.find("CREATE TABLE device_metrics_hourly").unwrap()];
        sqlx::raw_sql(AssertSqlSafe(format!(
            "{table}\nDROP INDEX devices_last_seen;\n\
             DELETE FROM _sqlx_migrations WHERE version >= 8"
        )))
        .execute(store.pool())
        .await
        .unwrap();
        for (id, message) in [(1, "old-1"), (2, "old-2")] {
            sqlx::query(
                "INSERT INTO main.telemetry_events (id, device_id, message_id, seq, \
                 collected_at, received_at, cpu_pct, mem_used_bytes, mem_total_bytes, \
                 rx_bps, tx_bps, risk_score, body) \
                 VALUES (?, 'dev_a', ?, 1, ?, ?, 50.0, 1, 2, 0.0, 0.0, 0.0, '{}')",
            )
            .bind(id)
            .bind(message)
            .bind(id * 1_000)
            .bind(id * 1_000)
            .execute(store.pool())
            .await
            .unwrap();
        }
        store.close().await;

        for _ in 0..2 {
            let store = SqliteStore::open(&path).await.unwrap();
            let events = store
                .telemetry_events("dev_a", UnixMillis(0), 10)
                .await
                .unwrap();
            let messages: Vec<&str> = events.iter().map(|e| e.event.message_id.as_str()).collect();
            assert_eq!(messages, ["new-1", "old-2", "old-1"]);
            assert_eq!(
                scalar(
                    store.pool(),
                    "SELECT count(*) FROM sqlite_master WHERE name = 'telemetry_events'"
                )
                .await,
                0,
                "the main file's table is gone"
            );
            assert_eq!(
                scalar(store.pool(), "SELECT max(version) FROM _sqlx_migrations").await,
                9,
                "and every migration after it"
            );
            store.close().await;
        }
    }

    /// What the telemetry file is for: a transaction that holds its write lock (the
    /// analytics storing a batch) does not hold up a write to the main file.
    #[tokio::test]
    async fn a_telemetry_transaction_does_not_hold_up_other_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tether.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let mut holder = store
            .telemetry_pool()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .unwrap();
        sqlx::query("DELETE FROM telemetry_events WHERE 0")
            .execute(&mut *holder)
            .await
            .unwrap();
        let started = Instant::now();
        store.insert_device(&device("dev_b")).await.unwrap();
        assert!(
            started.elapsed() < BUSY_TIMEOUT / 2,
            "the main file's write waited {:?}",
            started.elapsed()
        );
        holder.rollback().await.unwrap();
        // Nor does the telemetry write skip its device check.
        let orphan = store
            .insert_telemetry_events(&[sample("dev_none", "m-1", 1_000)])
            .await;
        assert!(matches!(orphan, Err(StoreError::NotFound(_))), "{orphan:?}");
        store.close().await;
    }
}
