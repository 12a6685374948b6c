//! The embedded bus's schema: numbered migrations compiled into the binary and applied at
//! open, tracked in SQLite's `PRAGMA user_version`. A file written by a newer build (a
//! higher version than this build knows) is refused rather than guessed at.

use sqlx::{AssertSqlSafe, SqlitePool};

use super::db_err;
use crate::{BusError, BusResult};

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only.
const MIGRATIONS: &[&str] = &[include_str!("migrations/0001_init.sql")];

/// Brings the file's schema up to date. Runs in one `BEGIN IMMEDIATE` transaction, so two
/// processes opening a new file at once do not both create the tables.
pub(super) async fn migrate(pool: &SqlitePool) -> BusResult<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
    let version = usize::try_from(version)
        .map_err(|_| BusError::Corrupt(format!("bus schema version {version} is negative")))?;
    if version > MIGRATIONS.len() {
        return Err(BusError::Corrupt(format!(
            "bus file has schema version {version}; this build knows up to {}",
            MIGRATIONS.len()
        )));
    }
    for (applied, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        sqlx::raw_sql(*sql)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let new_version = applied.saturating_add(1);
        // PRAGMA takes no bound parameters; the value is our own integer.
        sqlx::raw_sql(AssertSqlSafe(format!(
            "PRAGMA user_version = {new_version}"
        )))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tracing::debug!(version = new_version, "embedded bus schema migrated");
    }
    tx.commit().await.map_err(db_err)
}

/// The schema version this build creates.
#[cfg(test)]
pub(super) fn latest_version() -> usize {
    MIGRATIONS.len()
}
