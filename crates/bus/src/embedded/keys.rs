//! Keys with a TTL and fixed-window counters on SQLite. Expiry is judged by the bus's
//! clock: a key set at `t` with TTL `d` is visible while `now < t + d`. Expired rows are
//! swept (through an index on the expiry) by a write to the same table — for keys at most
//! once a second ([`SWEEP_EVERY_MS`]), as a fleet's heartbeats put hundreds a second — so
//! the tables hold only live keys plus whatever expired since the last sweep. Reads never
//! see an expired row either way.

use sqlx::Row;

use super::{EmbeddedBus, db_err, from_db};
use crate::{BusError, BusResult};

/// The least time between two sweeps of expired keys, ms.
const SWEEP_EVERY_MS: i64 = 1000;

impl EmbeddedBus {
    /// In the write transaction `tx`: drops expired keys, then sets each `(key, value,
    /// ttl_ms)` until `now + ttl_ms`.
    pub(super) async fn put_keys_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        puts: &[(&str, &[u8], u64)],
    ) -> BusResult<()> {
        let now = self.now_db()?;
        let swept = self.swept_at.load(std::sync::atomic::Ordering::Relaxed);
        if now.saturating_sub(swept) >= SWEEP_EVERY_MS || now < swept {
            sqlx::query("DELETE FROM bus_kv WHERE expires_at <= ?1")
                .bind(now)
                .execute(&mut **tx)
                .await
                .map_err(db_err)?;
            self.swept_at
                .store(now, std::sync::atomic::Ordering::Relaxed);
        }
        for &(key, value, ttl_ms) in puts {
            sqlx::query(
                "INSERT INTO bus_kv (key, value, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
            )
            .bind(key)
            .bind(value)
            .bind(self.expiry(ttl_ms))
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        }
        Ok(())
    }

    /// The live value of `key`.
    pub(super) async fn get_key(&self, key: &str) -> BusResult<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT value FROM bus_kv WHERE key = ?1 AND expires_at > ?2")
            .bind(key)
            .bind(self.now_db()?)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        row.map(|row| row.try_get(0).map_err(corrupt)).transpose()
    }

    /// Deletes `key` if it is live and holds `value` — one statement, so atomic.
    pub(super) async fn delete_key_if(&self, key: &str, value: &[u8]) -> BusResult<bool> {
        let deleted =
            sqlx::query("DELETE FROM bus_kv WHERE key = ?1 AND value = ?2 AND expires_at > ?3")
                .bind(key)
                .bind(value)
                .bind(self.now_db()?)
                .execute(&self.writer)
                .await
                .map_err(db_err)?
                .rows_affected();
        Ok(deleted > 0)
    }

    /// Counts one more in `key`'s current window, starting a window of `window_ms` if the
    /// last one has ended.
    pub(super) async fn incr_counter(&self, key: &str, window_ms: u64) -> BusResult<u64> {
        let now = self.now_db()?;
        let expires_at = self.expiry(window_ms);
        let mut tx = self.begin_write().await?;
        // Also removes this key's row if its window has ended, so the insert below starts
        // a fresh window.
        sqlx::query("DELETE FROM bus_counters WHERE expires_at <= ?1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let count: i64 = sqlx::query_scalar(
            "INSERT INTO bus_counters (key, window_start, expires_at, count) VALUES (?1, ?2, ?3, 1)
             ON CONFLICT (key) DO UPDATE SET count = count + 1
             RETURNING count",
        )
        .bind(key)
        .bind(now)
        .bind(expires_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        from_db("counter", count)
    }

    /// Now, as stored.
    fn now_db(&self) -> BusResult<i64> {
        super::to_db("time", self.now_ms())
    }

    /// `now + ms` as stored, saturating: a TTL too long to represent never expires.
    fn expiry(&self, ms: u64) -> i64 {
        i64::try_from(self.now_ms().saturating_add(ms)).unwrap_or(i64::MAX)
    }
}

/// A column that does not decode as its type.
fn corrupt(e: sqlx::Error) -> BusError {
    BusError::Corrupt(format!("embedded bus row: {e}"))
}
