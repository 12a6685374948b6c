//! Throwaway MySQL/MariaDB databases for tests, this crate's and other crates'.

use std::hash::{BuildHasher, RandomState};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::mysql::MySqlConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

use super::{MysqlDialect, MysqlStore};
use crate::sql::{SqlStore, db_err};
use crate::{StoreError, StoreResult};

/// A uniquely named database created for one test by
/// [`MysqlStore::create_test_database`]. Drop it with [`drop_database`](Self::drop_database)
/// when the test ends: `Drop` cannot run async code, so a guard dropped without that call
/// only logs a warning naming the database it left behind.
#[derive(Debug)]
#[must_use = "call drop_database() when the test ends"]
pub struct TestDb {
    admin: MySqlConnectOptions,
    name: String,
    dropped: bool,
}

impl TestDb {
    /// The environment variable that overrides [`Self::DEFAULT_ADMIN_URL`].
    pub const ADMIN_URL_ENV: &str = "TETHER_TEST_MYSQL_URL";

    /// The server the tests use unless [`Self::ADMIN_URL_ENV`] says otherwise: a local MariaDB,
    /// root, empty password.
    pub const DEFAULT_ADMIN_URL: &str = "mysql://root@127.0.0.1:3306";

    /// The admin URL for tests: `$TETHER_TEST_MYSQL_URL`, or [`Self::DEFAULT_ADMIN_URL`].
    pub fn admin_url() -> String {
        std::env::var(Self::ADMIN_URL_ENV).unwrap_or_else(|_| Self::DEFAULT_ADMIN_URL.to_owned())
    }

    /// The database's name (`tether_test_<pid>_<random>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Options for connecting to the database (as the admin user).
    pub fn connect_options(&self) -> MySqlConnectOptions {
        self.admin.clone().database(&self.name)
    }

    /// A URL for the database (as the admin user), e.g. for a server process under test.
    /// Built by sqlx's `to_url_lossy`: options that have no URL form are left out.
    pub fn url(&self) -> String {
        self.connect_options().to_url_lossy().to_string()
    }

    /// Drops the database. Close the store first (see [`SqlStore::close`]) so no pooled
    /// connection still uses it.
    pub async fn drop_database(mut self) -> StoreResult<()> {
        run_admin(
            &self.admin,
            format!("DROP DATABASE IF EXISTS `{}`", self.name),
        )
        .await?;
        self.dropped = true;
        Ok(())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !self.dropped {
            tracing::warn!(database = %self.name, "test database not dropped: call TestDb::drop_database");
        }
    }
}

impl SqlStore<MysqlDialect> {
    /// For tests: creates a uniquely named database on the server at `admin_url` (a URL
    /// whose user may create and drop databases; any database in it is ignored), connects a
    /// migrated store to it and returns the store with the guard that drops it.
    pub async fn create_test_database(admin_url: &str) -> StoreResult<(MysqlStore, TestDb)> {
        let admin = MySqlConnectOptions::from_str(admin_url)
            .map_err(|e| StoreError::Database(format!("bad MySQL URL: {e}")))?;
        let name = unique_name();
        run_admin(
            &admin,
            format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
        )
        .await?;
        let guard = TestDb {
            admin: admin.clone(),
            name,
            dropped: false,
        };
        match Self::connect_with(admin.database(&guard.name)).await {
            Ok(store) => Ok((store, guard)),
            Err(e) => {
                // Best effort: the original error is the one worth reporting.
                let _ = guard.drop_database().await;
                Err(e)
            }
        }
    }
}

/// Runs one statement on a fresh admin connection. `sql` is built only from this module's
/// constants and [`unique_name`]'s `[a-z0-9_]` output.
async fn run_admin(admin: &MySqlConnectOptions, sql: String) -> StoreResult<()> {
    let mut conn = admin
        .connect()
        .await
        .map_err(db_err("connecting to MySQL as admin"))?;
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .map_err(db_err("test database"))?;
    conn.close().await.map_err(db_err("test database"))?;
    Ok(())
}

/// `tether_test_<pid>_<16 hex digits>`: the process id keeps parallel test binaries
/// apart; the random part (std's randomly keyed hasher over a process-wide counter) keeps
/// tests within one binary, and reruns, apart.
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = RandomState::new().hash_one(n);
    format!("tether_test_{}_{random:016x}", std::process::id())
}
