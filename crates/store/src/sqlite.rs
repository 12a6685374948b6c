//! The embedded default backend: one SQLite file under the data dir.

use std::path::Path;
use std::time::Duration;

use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};

use crate::StoreResult;
use crate::sql::{Dialect, SqlStore, db_err, migrator};

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
    ];

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn last_insert_id(result: &SqliteQueryResult) -> Option<u64> {
        u64::try_from(result.last_insert_rowid()).ok()
    }
}

/// The store over one SQLite file (or an in-memory database, for tests).
pub type SqliteStore = SqlStore<SqliteDialect>;

/// How long a writer waits for another writer before giving up with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How a file store's pool is sized: its connections, and each one's page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileTuning {
    /// Connections in the pool (WAL lets readers run beside the one writer).
    pub connections: u32,
    /// Each connection's page cache, in KiB (SQLite's `cache_size`, as a negative number).
    pub cache_kib: u32,
    /// Pages of write-ahead log after which a connection's commit copies the log back
    /// into the database (`wal_autocheckpoint`).
    pub wal_autocheckpoint: u32,
}

impl FileTuning {
    /// The shared pool: 8 connections with SQLite's default page cache (2,000 KiB each),
    /// checkpointing every 10,000 pages of log. At SQLite's default checkpoint (1,000
    /// pages) nearly every small commit (an audit event) copied the analytics' log back
    /// into the database itself, and commands waited seconds (18,000 agents, 5,000
    /// samples/s: p99 6.9 s). A larger cache does not help here: in WAL mode a
    /// connection drops its whole cache whenever another one has committed, which the
    /// analytics do several times a second, and 16 MiB each measured no faster under that
    /// load while idle sessions cost 4 KiB more each (the 8 connections each cached the
    /// devices table; docs/benchmarks.md).
    pub const SHARED: Self = Self {
        connections: 8,
        cache_kib: 2_000,
        wal_autocheckpoint: 10_000,
    };
    /// A bulk writer's pool (the analytics storing a fleet's telemetry): 2 connections
    /// with 16 MiB of page cache each. Each batch writes to every device's part of the
    /// indexes of `telemetry_events`; with the default cache most of those pages were read
    /// from the file again at every batch. Its commits copy the log back into the database
    /// once it holds 10,000 pages (40 MiB; SQLite's default is 1,000): a page rewritten by
    /// many batches in between is copied once, and the copies (with their `fsync`) come a
    /// tenth as often.
    pub const BULK_WRITER: Self = Self {
        connections: 2,
        cache_kib: 16_384,
        wal_autocheckpoint: 10_000,
    };
}

impl SqlStore<SqliteDialect> {
    /// Opens (creating it if missing) the database file at `path` and runs the pending
    /// migrations. WAL journal, `synchronous = NORMAL` (durable across a process crash;
    /// a power cut may lose the last commits but never corrupts the file), foreign keys
    /// enforced, writers wait up to 5 s for each other; the pool is
    /// [`FileTuning::SHARED`].
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        Self::open_tuned(path, FileTuning::SHARED).await
    }

    /// [`Self::open`] with a pool sized by `tuning`.
    pub async fn open_tuned(path: &Path, tuning: FileTuning) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("cache_size", format!("-{}", tuning.cache_kib))
            .pragma("wal_autocheckpoint", tuning.wal_autocheckpoint.to_string());
        // No ping before each checkout: for SQLite it is one more round trip to the
        // connection's worker thread per statement, and a file connection does not go
        // stale the way a network one does.
        let pool = SqlitePoolOptions::new()
            .max_connections(tuning.connections.max(1))
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(db_err("opening the SQLite store"))?;
        Self::migrated(pool).await
    }

    /// A fresh in-memory database, for tests. It lives in exactly one connection, kept
    /// open for the life of the store, so operations are serialized.
    pub async fn open_in_memory() -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(db_err("opening the in-memory store"))?;
        Self::migrated(pool).await
    }

    async fn migrated(pool: sqlx::SqlitePool) -> StoreResult<SqliteStore> {
        migrator::<SqliteDialect>()
            .run(&pool)
            .await
            .map_err(|e| crate::StoreError::Migration(e.to_string()))?;
        let writer = AuditWriter::start(pool.clone())?;
        Ok(Self::from_pool(pool).with_audit_writer(writer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_store_connection_has_the_cache_and_checkpoint_it_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tether.db");
        for (tuning, cache, checkpoint) in [
            (FileTuning::SHARED, -2_000, 10_000),
            (FileTuning::BULK_WRITER, -16_384, 10_000),
        ] {
            let store = SqliteStore::open_tuned(&path, tuning).await.unwrap();
            assert_eq!(
                store.pool().options().get_max_connections(),
                tuning.connections
            );
            let mut conn = store.pool().acquire().await.unwrap();
            let scalar = |name: &'static str| sqlx::query_scalar::<_, i64>(name);
            assert_eq!(
                scalar("PRAGMA cache_size")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap(),
                cache
            );
            assert_eq!(
                scalar("PRAGMA wal_autocheckpoint")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap(),
                checkpoint
            );
            assert_eq!(
                scalar("PRAGMA synchronous")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap(),
                1,
                "NORMAL"
            );
        }
    }
}
