//! Streams, consumer groups and pending entries on SQLite. Stream names arrive scoped
//! (`"{namespace}:{name}"`) and already checked.

use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{EmbeddedBus, POLL_INTERVAL, db_err, from_db, to_db};
use crate::id::EntryId;
use crate::{BusError, BusResult, Entry, args};

/// Entries per `INSERT` of an append batch: 4 parameters each, far under SQLite's
/// limit (32,766).
const ENTRIES_PER_STATEMENT: usize = 256;

/// A stream over its `max_len` by `max_len / TRIM_STEP_DIVISOR` entries is trimmed back.
const TRIM_STEP_DIVISOR: u64 = 64;

impl EmbeddedBus {
    /// Appends entries, in order, each with the next id of its stream, in the write
    /// transaction `tx`; then trims each stream it touched back towards the `max_len` of its
    /// last entry here, dropping the oldest entries that are pending in no group. Returns
    /// the ids in the order of `items` (`(scoped stream, payload, max_len)`).
    pub(super) async fn append_entries_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        items: &[(&str, &[u8], u64)],
    ) -> BusResult<Vec<EntryId>> {
        let now = self.now_ms();
        // stream → (last id, length, max_len of its latest entry here), in first-use order.
        let mut streams: Vec<(&str, EntryId, u64, u64)> = Vec::new();
        let mut ids = Vec::with_capacity(items.len());
        for &(stream, _, max_len) in items {
            let at = match streams.iter().position(|s| s.0 == stream) {
                Some(at) => at,
                None => {
                    let row = sqlx::query(
                        "SELECT last_ms, last_seq, len FROM bus_streams WHERE stream = ?1",
                    )
                    .bind(stream)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db_err)?;
                    let (last, len) = match row {
                        Some(row) => (entry_id(&row, 0, 1)?, column_u64(&row, 2, "stream length")?),
                        None => (EntryId::ZERO, 0),
                    };
                    streams.push((stream, last, len, max_len));
                    streams.len().saturating_sub(1)
                }
            };
            let entry = streams
                .get_mut(at)
                .ok_or_else(|| BusError::Invalid("stream index".into()))?;
            let id = entry
                .1
                .next(now)
                .ok_or_else(|| BusError::Invalid("the stream's id space is exhausted".into()))?;
            entry.1 = id;
            entry.2 = entry.2.saturating_add(1);
            entry.3 = max_len;
            ids.push(id);
        }
        // The entries themselves: a few multi-row statements, whatever the batch.
        let rows: Vec<(&str, i64, i64, &[u8])> = items
            .iter()
            .zip(&ids)
            .map(|(&(stream, payload, _), id)| {
                Ok((stream, to_db("id", id.ms)?, to_db("id", id.seq)?, payload))
            })
            .collect::<BusResult<_>>()?;
        for chunk in rows.chunks(ENTRIES_PER_STATEMENT) {
            let statement = format!(
                "INSERT INTO bus_entries (stream, ms, seq, payload) VALUES {}",
                vec!["(?, ?, ?, ?)"; chunk.len()].join(", ")
            );
            // Built from a constant and a row count only: no input in the text.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(statement));
            for &(stream, ms, seq, payload) in chunk {
                q = q.bind(stream).bind(ms).bind(seq).bind(payload);
            }
            q.execute(&mut **tx).await.map_err(db_err)?;
        }
        for (stream, last, len, max_len) in streams {
            let mut len = len;
            // Trimmed in steps of max_len / 64 entries, not one statement per append.
            if len > max_len.saturating_add(max_len / TRIM_STEP_DIVISOR) {
                // Drop the oldest `len - max_len` entries — except those pending in a
                // group: they are someone's unfinished work and stay (over `max_len`)
                // until acknowledged, to go on a later append. Entries outside the newest
                // `max_len` that a lagging group has not read yet are dropped, as Redis
                // would.
                let excess = len.saturating_sub(max_len);
                let trimmed = sqlx::query(
                    "DELETE FROM bus_entries WHERE rowid IN (
                         SELECT old.rid FROM (
                             SELECT rowid AS rid, ms, seq FROM bus_entries
                             WHERE stream = ?1 ORDER BY ms, seq LIMIT ?2) AS old
                         WHERE NOT EXISTS (
                             SELECT 1 FROM bus_pending p
                             WHERE p.stream = ?1 AND p.ms = old.ms AND p.seq = old.seq))",
                )
                .bind(stream)
                .bind(to_db("max_len", excess)?)
                .execute(&mut **tx)
                .await
                .map_err(db_err)?
                .rows_affected();
                len = len.saturating_sub(trimmed);
            }
            sqlx::query(
                "INSERT INTO bus_streams (stream, last_ms, last_seq, len) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (stream) DO UPDATE
                 SET last_ms = excluded.last_ms, last_seq = excluded.last_seq, len = excluded.len",
            )
            .bind(stream)
            .bind(to_db("id", last.ms)?)
            .bind(to_db("id", last.seq)?)
            .bind(to_db("stream length", len)?)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        }
        Ok(ids)
    }

    /// The entries of `stream` after `group`'s last delivered one.
    pub(super) async fn group_backlog(&self, stream: &str, group: &str) -> BusResult<u64> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM bus_entries e
                     WHERE e.stream = g.stream AND (e.ms, e.seq) > (g.last_ms, g.last_seq))
             FROM bus_groups g WHERE g.stream = ?1 AND g.grp = ?2",
        )
        .bind(stream)
        .bind(group)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?;
        match row {
            None => Err(args::no_group(stream, group)),
            Some(row) => column_u64(&row, 0, "backlog"),
        }
    }

    /// Creates the stream (empty) and the group (at the start) unless they exist.
    pub(super) async fn create_group(&self, stream: &str, group: &str) -> BusResult<()> {
        // Usually the group exists (a gateway ensures it at every read): a look on a reader
        // connection then spares the write lock.
        let exists = sqlx::query("SELECT 1 FROM bus_groups WHERE stream = ?1 AND grp = ?2")
            .bind(stream)
            .bind(group)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        if exists.is_some() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO bus_streams (stream, last_ms, last_seq, len) VALUES (?1, 0, 0, 0)
             ON CONFLICT (stream) DO NOTHING",
        )
        .bind(stream)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO bus_groups (stream, grp, last_ms, last_seq) VALUES (?1, ?2, 0, 0)
             ON CONFLICT (stream, grp) DO NOTHING",
        )
        .bind(stream)
        .bind(group)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    /// `read_group`: reads at once and, if nothing was new and `block` is not zero, waits
    /// for an append (see [`Self::wait_for`]).
    pub(super) async fn read_blocking(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> BusResult<Vec<Entry>> {
        self.wait_for(stream, block, || {
            self.read_once(stream, group, consumer, count)
        })
        .await
    }

    /// `read_after`: the entries after `after`, on a reader connection, waiting as
    /// [`Self::wait_for`] does.
    pub(super) async fn read_after_blocking(
        &self,
        stream: &str,
        after: EntryId,
        count: usize,
        block: Duration,
    ) -> BusResult<Vec<Entry>> {
        self.wait_for(stream, block, || async move {
            Ok(entries_after(&self.reader, stream, after, count).await?.0)
        })
        .await
    }

    /// Runs `read` at once and, if it found nothing and `block` is not zero, again after
    /// each append to `stream` until `block` has passed — woken at once by this bus's own
    /// appends to it, and polling every [`POLL_INTERVAL`] for appends by other processes.
    async fn wait_for<F, Fut>(
        &self,
        stream: &str,
        block: Duration,
        mut read: F,
    ) -> BusResult<Vec<Entry>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = BusResult<Vec<Entry>>>,
    {
        // `None`: a block so long that the deadline is not representable; wait "forever".
        let deadline = Instant::now().checked_add(block);
        let signal = (!block.is_zero()).then(|| self.appended_to(stream));
        loop {
            // Registered before reading, so an append that lands between the read and the
            // wait still wakes us.
            let idle = Notify::new();
            let appended = signal.as_deref().unwrap_or(&idle).notified();
            tokio::pin!(appended);
            appended.as_mut().enable();

            let entries = read().await?;
            if !entries.is_empty() || block.is_zero() {
                return Ok(entries);
            }
            let wait = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(entries);
                    }
                    left.min(POLL_INTERVAL)
                }
                None => POLL_INTERVAL,
            };
            tokio::select! {
                () = appended => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The id of the stream's newest entry ([`EntryId::ZERO`] for none).
    pub(super) async fn newest_id(&self, stream: &str) -> BusResult<EntryId> {
        let row = sqlx::query("SELECT last_ms, last_seq FROM bus_streams WHERE stream = ?1")
            .bind(stream)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        match row {
            Some(row) => entry_id(&row, 0, 1),
            None => Ok(EntryId::ZERO),
        }
    }

    /// Delivers up to `count` entries the group has not seen to `consumer`.
    async fn read_once(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> BusResult<Vec<Entry>> {
        // A blocked reader runs this every poll: look on a reader connection first, and
        // take the write lock only when there is something to deliver.
        let row = sqlx::query(
            "SELECT EXISTS (
                 SELECT 1 FROM bus_entries e
                 WHERE e.stream = g.stream AND (e.ms, e.seq) > (g.last_ms, g.last_seq))
             FROM bus_groups g WHERE g.stream = ?1 AND g.grp = ?2",
        )
        .bind(stream)
        .bind(group)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?;
        match row {
            None => return Err(args::no_group(stream, group)),
            Some(row) if column_u64(&row, 0, "flag")? == 0 => return Ok(Vec::new()),
            Some(_) => {}
        }

        let now = to_db("time", self.now_ms())?;
        let mut tx = self.begin_write().await?;
        let last = self.group_position(&mut tx, stream, group).await?;
        let (entries, newest) = entries_after(&mut *tx, stream, last, count).await?;
        if newest != last {
            // The same entries (the write lock is held), pending for `consumer`: one
            // statement for the whole batch.
            sqlx::query(
                "INSERT INTO bus_pending (stream, grp, ms, seq, consumer, delivered_at, deliveries)
                 SELECT stream, ?2, ms, seq, ?7, ?8, 1 FROM bus_entries
                 WHERE stream = ?1 AND (ms, seq) > (?3, ?4) AND (ms, seq) <= (?5, ?6)",
            )
            .bind(stream)
            .bind(group)
            .bind(to_db("id", last.ms)?)
            .bind(to_db("id", last.seq)?)
            .bind(to_db("id", newest.ms)?)
            .bind(to_db("id", newest.seq)?)
            .bind(consumer)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query(
                "UPDATE bus_groups SET last_ms = ?3, last_seq = ?4 WHERE stream = ?1 AND grp = ?2",
            )
            .bind(stream)
            .bind(group)
            .bind(to_db("id", newest.ms)?)
            .bind(to_db("id", newest.seq)?)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(entries)
    }

    /// Removes entries from the group's pending list; returns how many were there.
    pub(super) async fn ack_entries(
        &self,
        stream: &str,
        group: &str,
        ids: &[String],
    ) -> BusResult<u64> {
        let ids = ids
            .iter()
            .map(|id| id.parse::<EntryId>())
            .collect::<BusResult<Vec<_>>>()?;
        if ids.is_empty() {
            return Ok(0);
        }
        // One statement for the whole batch: the ids go in as a JSON array of
        // `[ms, seq]` pairs.
        let pairs = ids
            .iter()
            .map(|id| {
                Ok(format!(
                    "[{},{}]",
                    to_db("id", id.ms)?,
                    to_db("id", id.seq)?
                ))
            })
            .collect::<BusResult<Vec<_>>>()?;
        let list = format!("[{}]", pairs.join(","));
        let mut tx = self.begin_write().await?;
        let acked = sqlx::query(
            "DELETE FROM bus_pending WHERE stream = ?1 AND grp = ?2 AND (ms, seq) IN (
                 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')
                 FROM json_each(?3))",
        )
        .bind(stream)
        .bind(group)
        .bind(list)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        tx.commit().await.map_err(db_err)?;
        Ok(acked)
    }

    /// Hands entries delivered at least `min_idle` ago (by the clock) to `consumer`.
    pub(super) async fn claim_entries(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> BusResult<Vec<Entry>> {
        let now = self.now_ms();
        // Before the epoch plus `min_idle` nothing can have been idle that long: -1 matches
        // no delivery time.
        let cutoff = match now.checked_sub(args::millis_floor(min_idle)) {
            Some(cutoff) => to_db("time", cutoff)?,
            None => -1,
        };
        let now = to_db("time", now)?;
        // Usually nothing is stale (a gateway claims at every read): a look on a reader
        // connection then spares the write lock. A missing group is an error either way.
        let row = sqlx::query(
            "SELECT EXISTS (
                 SELECT 1 FROM bus_pending p
                 WHERE p.stream = g.stream AND p.grp = g.grp AND p.delivered_at <= ?3)
             FROM bus_groups g WHERE g.stream = ?1 AND g.grp = ?2",
        )
        .bind(stream)
        .bind(group)
        .bind(cutoff)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?;
        match row {
            None => return Err(args::no_group(stream, group)),
            Some(row) if column_u64(&row, 0, "flag")? == 0 => return Ok(Vec::new()),
            Some(_) => {}
        }
        let mut tx = self.begin_write().await?;
        self.group_position(&mut tx, stream, group).await?;
        let rows = sqlx::query(
            "SELECT p.ms, p.seq, p.deliveries, e.payload
             FROM bus_pending p
             JOIN bus_entries e ON e.stream = p.stream AND e.ms = p.ms AND e.seq = p.seq
             WHERE p.stream = ?1 AND p.grp = ?2 AND p.delivered_at <= ?3
             ORDER BY p.ms, p.seq LIMIT ?4",
        )
        .bind(stream)
        .bind(group)
        .bind(cutoff)
        .bind(i64::try_from(count).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            let id = entry_id(&row, 0, 1)?;
            let deliveries = column_u64(&row, 2, "delivery count")?.saturating_add(1);
            sqlx::query(
                "UPDATE bus_pending SET consumer = ?5, delivered_at = ?6, deliveries = ?7
                 WHERE stream = ?1 AND grp = ?2 AND ms = ?3 AND seq = ?4",
            )
            .bind(stream)
            .bind(group)
            .bind(to_db("id", id.ms)?)
            .bind(to_db("id", id.seq)?)
            .bind(consumer)
            .bind(now)
            .bind(to_db("delivery count", deliveries)?)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            entries.push(Entry {
                id: id.to_string(),
                payload: row.try_get(3).map_err(corrupt)?,
                deliveries,
            });
        }
        tx.commit().await.map_err(db_err)?;
        Ok(entries)
    }

    /// How many entries are pending for the group.
    pub(super) async fn count_pending(&self, stream: &str, group: &str) -> BusResult<u64> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM bus_pending p WHERE p.stream = g.stream AND p.grp = g.grp)
             FROM bus_groups g WHERE g.stream = ?1 AND g.grp = ?2",
        )
        .bind(stream)
        .bind(group)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .ok_or_else(|| args::no_group(stream, group))?;
        column_u64(&row, 0, "pending count")
    }

    /// How many entries the stream holds (0 if it does not exist).
    pub(super) async fn count_entries(&self, stream: &str) -> BusResult<u64> {
        let row = sqlx::query("SELECT len FROM bus_streams WHERE stream = ?1")
            .bind(stream)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        match row {
            Some(row) => column_u64(&row, 0, "stream length"),
            None => Ok(0),
        }
    }

    /// The last id delivered to the group; [`args::no_group`] if there is no such group.
    async fn group_position(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        stream: &str,
        group: &str,
    ) -> BusResult<EntryId> {
        let row =
            sqlx::query("SELECT last_ms, last_seq FROM bus_groups WHERE stream = ?1 AND grp = ?2")
                .bind(stream)
                .bind(group)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db_err)?
                .ok_or_else(|| args::no_group(stream, group))?;
        entry_id(&row, 0, 1)
    }
}

/// A non-negative integer column.
fn column_u64(row: &SqliteRow, index: usize, what: &'static str) -> BusResult<u64> {
    from_db(what, row.try_get::<i64, _>(index).map_err(corrupt)?)
}

/// An entry id from its `ms` and `seq` columns.
/// Up to `count` entries of `stream` after `after`, oldest first (each with `deliveries`
/// 1), and the newest id among them (`after` if none).
async fn entries_after<'e, E>(
    exec: E,
    stream: &str,
    after: EntryId,
    count: usize,
) -> BusResult<(Vec<Entry>, EntryId)>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let rows = sqlx::query(
        "SELECT ms, seq, payload FROM bus_entries
         WHERE stream = ?1 AND (ms, seq) > (?2, ?3)
         ORDER BY ms, seq LIMIT ?4",
    )
    .bind(stream)
    .bind(to_db("id", after.ms)?)
    .bind(to_db("id", after.seq)?)
    .bind(i64::try_from(count).unwrap_or(i64::MAX))
    .fetch_all(exec)
    .await
    .map_err(db_err)?;
    let mut entries = Vec::with_capacity(rows.len());
    let mut newest = after;
    for row in rows {
        let id = entry_id(&row, 0, 1)?;
        newest = newest.max(id);
        entries.push(Entry {
            id: id.to_string(),
            payload: row.try_get(2).map_err(corrupt)?,
            deliveries: 1,
        });
    }
    Ok((entries, newest))
}

fn entry_id(row: &SqliteRow, ms: usize, seq: usize) -> BusResult<EntryId> {
    Ok(EntryId {
        ms: column_u64(row, ms, "id")?,
        seq: column_u64(row, seq, "id")?,
    })
}

/// A column that does not decode as its type.
fn corrupt(e: sqlx::Error) -> BusError {
    BusError::Corrupt(format!("embedded bus row: {e}"))
}
