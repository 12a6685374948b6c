//! The scale-out backend: MySQL 8 or MariaDB 10.5+, shared by several server processes.

mod testing;

use std::str::FromStr;

use sqlx::MySql;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions, MySqlQueryResult};

pub use testing::TestDb;

use crate::sql::{Dialect, SqlStore, db_err, migrator};
use crate::{StoreError, StoreResult};

/// The MySQL/MariaDB dialect of [`SqlStore`].
#[derive(Debug, Clone, Copy)]
pub struct MysqlDialect;

impl Dialect for MysqlDialect {
    type Db = MySql;
    const NAME: &'static str = "mysql";
    // `VALUES(col)` rather than MySQL 8's row alias: MariaDB has no row alias.
    const UPSERT_SETTING: &'static str = "INSERT INTO settings (name, value) VALUES (?, ?) \
         ON DUPLICATE KEY UPDATE value = VALUES(value)";
    const ROLLUP_ON_CONFLICT: &'static str = "ON DUPLICATE KEY UPDATE \
         samples = VALUES(samples), min_value = VALUES(min_value), \
         max_value = VALUES(max_value), mean_value = VALUES(mean_value), \
         p95_value = VALUES(p95_value)";
    const UPSERT_SECOND_FACTOR: &'static str = "INSERT INTO session_second_factors \
         (session_id, user_id, at) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE \
         at = IF(user_id = VALUES(user_id), GREATEST(at, VALUES(at)), at)";
    const BEGIN_WRITE: &'static str = "BEGIN";
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const TELEMETRY_APART: bool = false;
    const DEVICES_LAST_SEEN_FROM: &'static str = "devices";
    const IN_JSON_ARRAY: Option<&'static str> = None;
    const TRANSITION_TRIGGERS: bool = false;
    const MIGRATIONS: &'static [(i64, &'static str, &'static str)] = &[
        (1, "init", include_str!("../migrations/mysql/0001_init.sql")),
        (
            2,
            "telemetry",
            include_str!("../migrations/mysql/0002_telemetry.sql"),
        ),
        (
            3,
            "commands",
            include_str!("../migrations/mysql/0003_commands.sql"),
        ),
        (
            4,
            "policy",
            include_str!("../migrations/mysql/0004_policy.sql"),
        ),
        (
            5,
            "owner keys",
            include_str!("../migrations/mysql/0005_owner_keys.sql"),
        ),
        (
            6,
            "audit device",
            include_str!("../migrations/mysql/0006_audit_device.sql"),
        ),
        (
            7,
            "commands by device and state",
            include_str!("../migrations/mysql/0007_commands_device_state.sql"),
        ),
    ];

    fn rows_affected(result: &MySqlQueryResult) -> u64 {
        result.rows_affected()
    }

    fn last_insert_id(result: &MySqlQueryResult) -> Option<u64> {
        Some(result.last_insert_id())
    }
}

/// The store over a MySQL/MariaDB database.
pub type MysqlStore = SqlStore<MysqlDialect>;

/// Connections per process.
const POOL_SIZE: u32 = 10;

impl SqlStore<MysqlDialect> {
    /// Connects to `url` (`mysql://user:password@host:port/database`, sqlx's URL options
    /// such as `ssl-mode` apply) and runs the pending migrations. The database must
    /// exist; tables are InnoDB with utf8mb4.
    pub async fn connect(url: &str) -> StoreResult<MysqlStore> {
        let options = MySqlConnectOptions::from_str(url)
            .map_err(|e| StoreError::Database(format!("bad MySQL URL: {e}")))?;
        Self::connect_with(options).await
    }

    /// Like [`connect`](Self::connect), from parsed options.
    pub async fn connect_with(options: MySqlConnectOptions) -> StoreResult<MysqlStore> {
        let pool = MySqlPoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect_with(options.charset("utf8mb4"))
            .await
            .map_err(db_err("connecting to MySQL"))?;
        migrator::<MysqlDialect>()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        Ok(Self::from_pool(pool))
    }
}
