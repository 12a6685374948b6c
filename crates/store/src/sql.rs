//! The one implementation of [`Store`](crate::Store) over sqlx, shared by both backends.
//!
//! [`SqlStore`] is generic over a [`Dialect`]: the dialect names the sqlx database type
//! and supplies only what differs between SQLite and MySQL/MariaDB (the settings upsert
//! and how a driver reports affected rows and the last insert id). Every other statement
//! is written once, in SQL both dialects accept, so the two backends cannot drift apart.
//!
//! Why the atomic operations need no dialect branches:
//! - `use_totp_step`, `consume_pairing`, `confirm_discovery` and the first step of
//!   `rotate_refresh` are a single conditional `UPDATE … WHERE <still valid>`; the row
//!   count says who won. InnoDB re-checks the `WHERE` on the latest committed row after a
//!   row lock wait, and SQLite has one writer at a time, so exactly one caller sees 1.
//! - `take_ceremony` reads the row, then `DELETE`s it by id: only the caller whose `DELETE`
//!   removed the row gets it (ceremony ids are never reused, `put_ceremony` refuses
//!   duplicates, so the row read is the row deleted). That works on MySQL, which has no
//!   `DELETE … RETURNING`.
//! - `claim_once` deletes the key only if expired, then plainly `INSERT`s it; a unique-key
//!   violation means someone else holds it. The two statements run in autocommit on
//!   purpose: inside one InnoDB transaction two concurrent claims of an absent key would
//!   each take a gap lock in the `DELETE` and then deadlock on the `INSERT`.
//! - `insert_alert` is one plain `INSERT` under a unique key on (`device_id`, `open_kind`),
//!   where `open_kind` is the kind while the alert is open and NULL once acknowledged; and
//!   `insert_telemetry_event` is one `INSERT` under the unique message id. The loser of
//!   either race gets a unique-key violation, read as "already there".

mod alerts;
mod audit;
mod commands;
mod policy;
mod rows;
mod seen;
mod statements;
mod store;
mod telemetry;
mod users;

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use sqlx::error::ErrorKind;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, Database, Pool, SqlSafeStr};
use tether_proto::UnixMillis;

use crate::sqlite::AuditWriter;
use crate::{StoreError, StoreResult};

pub(crate) use audit::append_audit_on;

/// What differs between the SQL dialects. Sealed: the crate implements it for
/// [`SqliteDialect`](crate::SqliteDialect) and [`MysqlDialect`](crate::MysqlDialect) only.
pub trait Dialect: sealed::Sealed + Send + Sync + fmt::Debug + 'static {
    /// The sqlx database.
    type Db: Database;
    /// The backend's name for logs and `/healthz` (`sqlite` or `mysql`).
    const NAME: &'static str;
    /// Inserts or replaces a setting; binds `name`, `value`.
    const UPSERT_SETTING: &'static str;
    /// What follows the rows of a rollup insert (either table) so that a row whose
    /// (`device_id`, `bucket_start`, `metric`) exists replaces its statistics.
    const ROLLUP_ON_CONFLICT: &'static str;
    /// Records a session's second factor, keeping the later time; binds `session_id`,
    /// `user_id`, `at`. A row of another user is left alone.
    const UPSERT_SECOND_FACTOR: &'static str;
    /// Starts a transaction that writes: SQLite takes its write lock up front (`BEGIN
    /// IMMEDIATE`; a read first would have to upgrade its lock, which fails at once with
    /// "database is locked" when another connection wrote meanwhile, whatever the busy
    /// timeout); MySQL's `BEGIN`, its rows locked by [`Self::FOR_UPDATE`] reads.
    const BEGIN_WRITE: &'static str;
    /// Appended to a `SELECT` in a writing transaction to lock the rows it reads (MySQL
    /// `FOR UPDATE`; nothing on SQLite, whose whole database the transaction holds).
    const FOR_UPDATE: &'static str;
    /// Whether the telemetry events are in a database of their own, apart from the
    /// devices (SQLite's telemetry file): a batch's last-seen update may then run beside
    /// its events' transaction. On MySQL the events' foreign key to `devices` takes
    /// shared locks on the devices' rows that such an update would wait for, or
    /// deadlock with.
    const TELEMETRY_APART: bool;
    /// What a read of devices' last-seen times by id reads `FROM`: on SQLite the index of
    /// both columns (schema v9), which its planner does not pick over the primary key's
    /// by itself; on MySQL the table, whose rows its primary key holds.
    const DEVICES_LAST_SEEN_FROM: &'static str;
    /// The right side of an `IN` over many text values bound as one parameter, a JSON
    /// array (SQLite: `json_each`): one statement, prepared once, whatever the count.
    /// `None`: a placeholder a value, in statements of a bounded count (MySQL).
    const IN_JSON_ARRAY: Option<&'static str>;
    /// Whether the schema's triggers write a command's transition rows (SQLite, schema
    /// v7): a transition is then one `UPDATE … RETURNING` and an ingest one `INSERT`, not
    /// a transaction of several statements (MySQL: MariaDB has no `UPDATE … RETURNING`).
    const TRANSITION_TRIGGERS: bool;
    /// The migrations, oldest first: `(version, description, sql)`.
    const MIGRATIONS: &'static [(i64, &'static str, &'static str)];

    /// How many rows a statement matched (MySQL: found, not only changed, rows; sqlx
    /// connects with `CLIENT_FOUND_ROWS`).
    fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;
    /// The id an `INSERT` into an auto-increment table assigned.
    fn last_insert_id(result: &<Self::Db as Database>::QueryResult) -> Option<u64>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::sqlite::SqliteDialect {}
    impl Sealed for crate::mysql::MysqlDialect {}
}

/// A [`Store`](crate::Store) over a sqlx pool of dialect `D`. Use it through its aliases
/// [`SqliteStore`](crate::SqliteStore) and [`MysqlStore`](crate::MysqlStore).
pub struct SqlStore<D: Dialect> {
    pool: Pool<D::Db>,
    /// Where `telemetry_events` lives: the same pool on MySQL; on SQLite a file of its
    /// own, so that storing a fleet's telemetry never holds the write lock that every
    /// other write (commands, audit, sessions) needs.
    telemetry: Pool<D::Db>,
    /// Appends audit events in groups (SQLite file and in-memory stores; see
    /// [`AuditWriter`]); without one each event is its own `INSERT` on the pool.
    audit_writer: Option<AuditWriter>,
    /// The devices' last-seen times as last read or written here (see [`seen`]).
    seen: seen::SeenTimes,
    dialect: PhantomData<D>,
}

impl<D: Dialect> fmt::Debug for SqlStore<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &D::NAME)
            .field("connections", &self.pool.size())
            .finish()
    }
}

impl<D: Dialect> SqlStore<D> {
    pub(crate) fn from_pool(pool: Pool<D::Db>) -> Self {
        Self {
            telemetry: pool.clone(),
            pool,
            audit_writer: None,
            seen: seen::SeenTimes::default(),
            dialect: PhantomData,
        }
    }

    /// This store with its audit events appended by `writer`.
    pub(crate) fn with_audit_writer(mut self, writer: AuditWriter) -> Self {
        self.audit_writer = Some(writer);
        self
    }

    /// This store with its telemetry events in `pool` (a SQLite file of their own).
    pub(crate) fn with_telemetry_pool(mut self, pool: Pool<D::Db>) -> Self {
        self.telemetry = pool;
        self
    }

    pub(crate) fn pool(&self) -> &Pool<D::Db> {
        &self.pool
    }

    /// The last-seen time kept for `device_id` (see [`seen`]); `None`: not met.
    #[cfg(test)]
    pub(crate) fn kept_last_seen(&self, device_id: &str) -> Option<Option<i64>> {
        self.seen.known(&[device_id]).pop().flatten()
    }

    /// The pool that holds `telemetry_events` (see the field).
    pub(crate) fn telemetry_pool(&self) -> &Pool<D::Db> {
        &self.telemetry
    }

    /// Closes the pool: waits for checked-out connections to come back, then closes
    /// them all. Call it on shutdown (and before dropping a test database).
    pub async fn close(&self) {
        self.pool.close().await;
        self.telemetry.close().await;
    }
}

/// The dialect's migrations as a sqlx [`Migrator`]. The SQL is embedded with
/// `include_str!` (the `migrate!` macro would need sqlx's `macros` feature); sqlx records
/// applied versions and their checksums in `_sqlx_migrations`, refuses a database whose
/// applied migrations were edited since, and on MySQL holds an advisory lock while
/// migrating so that several server processes may start at once.
pub(crate) fn migrator<D: Dialect>() -> Migrator {
    migrator_of(D::MIGRATIONS)
}

/// A [`Migrator`] of `migrations` (`(version, description, sql)`, oldest first).
pub(crate) fn migrator_of(migrations: &'static [(i64, &'static str, &'static str)]) -> Migrator {
    let migrations = migrations
        .iter()
        .map(|&(version, description, sql)| {
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                AssertSqlSafe(sql).into_sql_str(),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
}

/// Whether a sqlx error is a unique-key violation (a lost race for a once-only key, a
/// duplicate that an idempotent insert ignores).
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation)
}

/// Maps a sqlx error. `what` names the record (never a value: values may be secrets or
/// personal data, and this message can reach logs).
/// A transaction chosen as a deadlock victim (SQLSTATE 40001, MySQL 1213): rolled back,
/// safe to try again.
pub(crate) fn is_deadlock(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "40001")
}

pub(crate) fn db_err(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| match e {
        sqlx::Error::Database(ref db) => match db.kind() {
            ErrorKind::UniqueViolation => StoreError::Conflict(what.to_owned()),
            ErrorKind::ForeignKeyViolation => {
                StoreError::NotFound(format!("a record that {what} refers to"))
            }
            _ => StoreError::Database(format!("{what}: {e}")),
        },
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(format!("{what}: {e}")),
        other => StoreError::Database(format!("{what}: {other}")),
    }
}

/// A time as stored: signed 64-bit milliseconds. Instants past `i64::MAX` ms (some 292
/// million years away, e.g. a `saturating_add` at the end of time) are stored as
/// `i64::MAX`, which compares the same against any real clock.
pub(crate) fn to_db_time(t: UnixMillis) -> i64 {
    to_db_u64(t.0)
}

/// An unsigned counter as stored, saturating at `i64::MAX` like [`to_db_time`].
pub(crate) fn to_db_u64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored time back; a negative one is corruption.
pub(crate) fn from_db_time(v: i64, what: &'static str) -> StoreResult<UnixMillis> {
    from_db_u64(v, what).map(UnixMillis)
}

/// A stored unsigned counter back; a negative one is corruption.
pub(crate) fn from_db_u64(v: i64, what: &'static str) -> StoreResult<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} is negative")))
}
