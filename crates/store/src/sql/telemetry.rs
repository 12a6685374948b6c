//! Telemetry events, rollups and last-seen times: the statements behind the telemetry
//! part of [`Store`](crate::Store), shared by both dialects except the rollup upsert.
//!
//! Floating-point values must be finite: MySQL cannot store NaN or infinity, and SQLite
//! would store NaN as NULL, so both refuse them before the database sees them.

use std::collections::{HashMap, HashSet};

use sqlx::{AssertSqlSafe, Database, Encode, Executor, IntoArguments, Type};

use super::rows::{RowExt, time};
use super::{Dialect, SqlStore, db_err, from_db_u64, is_unique_violation, to_db_time, to_db_u64};
use crate::{
    Device, NewTelemetryEvent, Rollup, RollupPeriod, SeenDevice, StoreError, StoreResult,
    TelemetryEvent, TelemetryPoint, UnixMillis,
};

macro_rules! telemetry_columns {
    () => {
        "id, device_id, message_id, seq, collected_at, received_at, cpu_pct, mem_used_bytes, \
         mem_total_bytes, disk_used_pct, rx_bps, tx_bps, risk_score, body"
    };
}
macro_rules! point_columns {
    () => {
        "collected_at, cpu_pct, mem_used_bytes, mem_total_bytes, disk_used_pct, rx_bps, \
         tx_bps, risk_score"
    };
}
macro_rules! rollup_columns {
    () => {
        "device_id, bucket_start, metric, samples, min_value, max_value, mean_value, p95_value"
    };
}

const SELECT_TELEMETRY_SINCE: &str = concat!(
    "SELECT ",
    telemetry_columns!(),
    " FROM telemetry_events WHERE device_id = ? AND collected_at >= ? \
     ORDER BY collected_at DESC, id DESC LIMIT ?"
);
const SELECT_TELEMETRY_BETWEEN: &str = concat!(
    "SELECT ",
    point_columns!(),
    " FROM telemetry_events WHERE device_id = ? AND collected_at >= ? AND collected_at < ? \
     ORDER BY collected_at, id"
);
/// One device's newest points in [`Store::latest_points`](crate::Store::latest_points):
/// a member of its `UNION ALL`, each a derived table so that it may have its own
/// `ORDER BY … LIMIT` (and use the `(device_id, collected_at)` index) on both dialects.
const LATEST_POINTS_MEMBER: &str = concat!(
    "SELECT * FROM (SELECT id, device_id, ",
    point_columns!(),
    " FROM telemetry_events WHERE device_id = ? ORDER BY collected_at DESC, id DESC LIMIT ?) AS p"
);
/// Devices per [`Store::latest_points`](crate::Store::latest_points) statement.
const DEVICES_PER_STATEMENT: usize = 64;
const SELECT_HOURLY: &str = concat!(
    "SELECT ",
    rollup_columns!(),
    " FROM device_metrics_hourly WHERE device_id = ? AND bucket_start >= ? \
     ORDER BY bucket_start, metric LIMIT ?"
);
const SELECT_DAILY: &str = concat!(
    "SELECT ",
    rollup_columns!(),
    " FROM device_metrics_daily WHERE device_id = ? AND bucket_start >= ? \
     ORDER BY bucket_start, metric LIMIT ?"
);
// The device columns of `statements::device_columns!`, qualified, plus the last-seen time.
const SELECT_SEEN_BEFORE: &str = "SELECT id, name, hwid_hash, agent_pub, os, owner_id, status, \
     cert_serial, cert_pem, created_at, paired_at, last_seen_at FROM devices \
     WHERE status = 'active' AND COALESCE(last_seen_at, paired_at, created_at) < ? \
     ORDER BY COALESCE(last_seen_at, paired_at, created_at), id";
const SELECT_SEEN_SINCE: &str = "SELECT id, name, hwid_hash, agent_pub, os, owner_id, status, \
     cert_serial, cert_pem, created_at, paired_at, last_seen_at FROM devices \
     WHERE last_seen_at >= ? ORDER BY id";

/// The columns of a stored telemetry event, in the order [`EVENT_ROW`] binds them.
const INSERT_EVENT: &str = "INSERT INTO telemetry_events (device_id, message_id, seq, \
     collected_at, received_at, cpu_pct, mem_used_bytes, mem_total_bytes, disk_used_pct, \
     rx_bps, tx_bps, risk_score, body)";
/// One event's placeholders.
const EVENT_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
/// Events (or devices) per statement of a batch: 13 parameters each, far under SQLite's
/// (32,766) and MySQL's (65,535) limits.
const EVENTS_PER_STATEMENT: usize = 128;

/// A batch of telemetry moves a device's last-seen time only when that moves it by this
/// much or more (milliseconds). A fleet's samples come every few seconds per device, and
/// rewriting each device's row at each one was a third of the cost of storing them
/// (every batch dirtied a page of `devices` per device); the time stored is at most this
/// much behind the newest sample's arrival.
pub(crate) const LAST_SEEN_STEP_MS: i64 = 30_000;

/// An event's checked numbers and its body as JSON text.
struct EventRow {
    cpu_pct: f64,
    disk_used_pct: Option<f64>,
    rx_bps: f64,
    tx_bps: f64,
    risk_score: f64,
    body: String,
}

impl EventRow {
    /// Binds `e`'s row, in [`INSERT_EVENT`]'s column order.
    fn bind<'q, D: Dialect>(
        &'q self,
        q: sqlx::query::Query<'q, D::Db, <D::Db as Database>::Arguments>,
        e: &'q NewTelemetryEvent,
    ) -> sqlx::query::Query<'q, D::Db, <D::Db as Database>::Arguments>
    where
        for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
        for<'a> i64: Encode<'a, D::Db> + Type<D::Db>,
        for<'a> f64: Encode<'a, D::Db> + Type<D::Db>,
        for<'a> Option<f64>: Encode<'a, D::Db> + Type<D::Db>,
    {
        q.bind(e.device_id.as_str())
            .bind(e.message_id.as_str())
            .bind(to_db_u64(e.seq))
            .bind(to_db_time(e.collected_at))
            .bind(to_db_time(e.received_at))
            .bind(self.cpu_pct)
            .bind(to_db_u64(e.mem_used_bytes))
            .bind(to_db_u64(e.mem_total_bytes))
            .bind(self.disk_used_pct)
            .bind(self.rx_bps)
            .bind(self.tx_bps)
            .bind(self.risk_score)
            .bind(self.body.as_str())
    }

    fn new(e: &NewTelemetryEvent) -> StoreResult<Self> {
        Ok(EventRow {
            cpu_pct: finite("cpu_pct", e.cpu_pct)?,
            disk_used_pct: e
                .disk_used_pct
                .map(|v| finite("disk_used_pct", v))
                .transpose()?,
            rx_bps: finite("rx_bps", e.rx_bps)?,
            tx_bps: finite("tx_bps", e.tx_bps)?,
            risk_score: finite("risk_score", e.risk_score)?,
            body: serde_json::to_string(&e.body)
                .map_err(|err| StoreError::Corrupt(format!("telemetry body: {err}")))?,
        })
    }
}

/// Rows per rollup statement: 8 parameters each, far under SQLite's (32,766) and MySQL's
/// (65,535) limits; a pass writes at most 24 per device.
const ROLLUPS_PER_STATEMENT: usize = 64;

/// `INSERT INTO <period's table> (…) VALUES (…), … <upsert clause>` for `rows` rollups.
fn rollup_upsert<D: Dialect>(period: RollupPeriod, rows: usize) -> String {
    let table = match period {
        RollupPeriod::Hourly => "device_metrics_hourly",
        RollupPeriod::Daily => "device_metrics_daily",
    };
    let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; rows].join(", ");
    format!(
        "INSERT INTO {table} (device_id, bucket_start, metric, samples, min_value, \
         max_value, mean_value, p95_value) VALUES {values} {}",
        D::ROLLUP_ON_CONFLICT
    )
}

/// Refuses a NaN or infinity (see the module docs).
pub(super) fn finite(what: &'static str, v: f64) -> StoreResult<f64> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(StoreError::Corrupt(format!(
            "{what} is not a finite number"
        )))
    }
}

fn event(row: &impl RowExt) -> StoreResult<TelemetryEvent> {
    let body = row.text("body")?;
    let body = serde_json::from_str(&body)
        .map_err(|e| StoreError::Corrupt(format!("telemetry body is not JSON: {e}")))?;
    Ok(TelemetryEvent {
        id: from_db_u64(row.int("id")?, "telemetry id")?,
        event: NewTelemetryEvent {
            device_id: row.text("device_id")?,
            message_id: row.text("message_id")?,
            seq: from_db_u64(row.int("seq")?, "seq")?,
            collected_at: time(row, "collected_at")?,
            received_at: time(row, "received_at")?,
            cpu_pct: row.real("cpu_pct")?,
            mem_used_bytes: from_db_u64(row.int("mem_used_bytes")?, "mem_used_bytes")?,
            mem_total_bytes: from_db_u64(row.int("mem_total_bytes")?, "mem_total_bytes")?,
            disk_used_pct: row.opt_real("disk_used_pct")?,
            rx_bps: row.real("rx_bps")?,
            tx_bps: row.real("tx_bps")?,
            risk_score: row.real("risk_score")?,
            body,
        },
    })
}

fn point(row: &impl RowExt) -> StoreResult<TelemetryPoint> {
    Ok(TelemetryPoint {
        collected_at: time(row, "collected_at")?,
        cpu_pct: row.real("cpu_pct")?,
        mem_used_bytes: from_db_u64(row.int("mem_used_bytes")?, "mem_used_bytes")?,
        mem_total_bytes: from_db_u64(row.int("mem_total_bytes")?, "mem_total_bytes")?,
        disk_used_pct: row.opt_real("disk_used_pct")?,
        rx_bps: row.real("rx_bps")?,
        tx_bps: row.real("tx_bps")?,
        risk_score: row.real("risk_score")?,
    })
}

fn rollup(row: &impl RowExt, period: RollupPeriod) -> StoreResult<Rollup> {
    Ok(Rollup {
        device_id: row.text("device_id")?,
        period,
        bucket_start: time(row, "bucket_start")?,
        metric: row.text("metric")?,
        count: from_db_u64(row.int("samples")?, "samples")?,
        min: row.real("min_value")?,
        max: row.real("max_value")?,
        mean: row.real("mean_value")?,
        p95: row.real("p95_value")?,
    })
}

fn seen_device(row: &impl RowExt) -> StoreResult<SeenDevice> {
    let device: Device = super::rows::device(row)?;
    Ok(SeenDevice {
        device,
        last_seen_at: super::rows::opt_time(row, "last_seen_at")?,
    })
}

// The bounds of `impl Store for SqlStore<D>` plus floating-point columns. They name the
// crate-private `RowExt`, which is fine: the methods are `pub(super)`, for that impl only.
#[allow(private_bounds, reason = "pub(super) helpers of the Store impl")]
impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    <D::Db as Database>::Row: RowExt,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> f64: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<i64>: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<f64>: Encode<'q, D::Db> + Type<D::Db>,
{
    pub(super) async fn insert_telemetry_event_sql(
        &self,
        e: &NewTelemetryEvent,
    ) -> StoreResult<bool> {
        EventRow::new(e)?;
        self.devices_last_seen(&[e.device_id.as_str()]).await?;
        let mut conn = self
            .telemetry_pool()
            .acquire()
            .await
            .map_err(db_err("telemetry event"))?;
        insert_event_on::<D>(&mut conn, e).await
    }

    /// The last-seen time of each of `devices` (distinct), in their order, or a lower
    /// bound of it; an unknown device fails with [`StoreError::NotFound`]. Read from the
    /// main file, for the devices this store has not met yet (see [`super::seen`]): a
    /// telemetry event's device is checked here, not by a foreign key, because on SQLite
    /// the events are in a file of their own.
    async fn devices_last_seen(&self, devices: &[&str]) -> StoreResult<Vec<Option<i64>>> {
        let known = self.seen.known(devices);
        let unknown: Vec<&str> = devices
            .iter()
            .zip(&known)
            .filter(|(_, known)| known.is_none())
            .map(|(&id, _)| id)
            .collect();
        let mut found: HashMap<String, Option<i64>> = HashMap::with_capacity(unknown.len());
        for chunk in InList::<D>::chunks(&unknown) {
            let list = InList::<D>::new(chunk)?;
            let statement = format!(
                "SELECT id, last_seen_at FROM {} WHERE id IN {}",
                D::DEVICES_LAST_SEEN_FROM,
                list.text()
            );
            // Built from constants and a row count only: no input in the text.
            let q = list.bind(sqlx::query(AssertSqlSafe(statement)));
            for row in q.fetch_all(self.pool()).await.map_err(db_err("device"))? {
                found.insert(row.text("id")?, row.opt_int("last_seen_at")?);
            }
        }
        self.seen
            .note_all(found.iter().map(|(id, &at)| (id.as_str(), at)));
        devices
            .iter()
            .zip(known)
            .map(|(&id, known)| {
                known.or_else(|| found.get(id).copied()).ok_or_else(|| {
                    StoreError::NotFound("a record that telemetry event refers to".into())
                })
            })
            .collect()
    }

    /// [`Store::insert_telemetry_events`](crate::Store::insert_telemetry_events), in a few
    /// statements whatever the batch's size. First the batch's devices: all must exist,
    /// and their last-seen times say which move; those this store has not met are read
    /// in one statement on the main file, the others' times are the ones kept in memory
    /// (lower bounds of the stored ones, see [`super::seen`]). Meanwhile, on the
    /// telemetry file, one look for the message ids stored already. Then one
    /// transaction there: multi-row inserts of the rest
    /// ([`EVENTS_PER_STATEMENT`] rows each); and, on the main file, one update of the
    /// last-seen times that move (each to the latest of its events, never backwards).
    ///
    /// On SQLite the update runs beside the events' transaction (the two are in files of
    /// their own, [`Dialect::TELEMETRY_APART`]): the main file's write lock, which the
    /// commands and the audit writer take too, is waited for while the events are
    /// written, not before. Should the update fail while the events commit, the batch
    /// still succeeds and the failure is logged: a last-seen time is best effort (at most
    /// [`LAST_SEEN_STEP_MS`] behind anyway), and the devices' next events move it. Had the
    /// batch failed instead, its retry would have found its events stored and taken them
    /// for redeliveries (not published live, and seen twice by the alert rules).
    /// On MySQL the update goes first: if the events' transaction then fails, the batch
    /// is retried and its events are not yet stored; a device's time moved early is
    /// still a time it was heard from.
    pub(super) async fn insert_telemetry_events_sql(
        &self,
        events: &[NewTelemetryEvent],
    ) -> StoreResult<Vec<bool>> {
        // Every value is checked before anything is written.
        let rows = events
            .iter()
            .map(EventRow::new)
            .collect::<StoreResult<Vec<_>>>()?;
        // The look for the message ids stored already runs while the devices are read.
        let started = std::time::Instant::now();
        let (moving, stored) = tokio::join!(
            timed(self.last_seen_moves(events)),
            timed(self.stored_ids(events))
        );
        let (moving, devices_ms) = moving;
        let (stored, stored_ids_ms) = stored;
        let moving = moving?;
        let stored = stored?;
        let (inserted, timing, last_seen_ms) = if D::TELEMETRY_APART {
            let ((moved, last_seen_ms), inserted) = tokio::join!(
                timed(self.move_last_seen(&moving)),
                self.insert_fresh(events, &rows, &stored)
            );
            let (inserted, timing) = inserted?;
            if let Err(e) = moved {
                tracing::warn!(devices = moving.len(), error = %e, "telemetry stored, but moving the devices' last-seen times failed; their next samples move them");
            }
            (inserted, timing, last_seen_ms)
        } else {
            let (moved, last_seen_ms) = timed(self.move_last_seen(&moving)).await;
            moved?;
            let (inserted, timing) = self.insert_fresh(events, &rows, &stored).await?;
            (inserted, timing, last_seen_ms)
        };
        timing.log(
            events.len(),
            devices_ms,
            stored_ids_ms,
            last_seen_ms,
            started,
        );
        Ok(inserted)
    }

    /// The events' transaction of [`Self::insert_telemetry_events_sql`]: inserts the
    /// events whose message ids are not in `stored` (nor met earlier in the batch), and
    /// says which it inserted, and how long its steps took.
    async fn insert_fresh(
        &self,
        events: &[NewTelemetryEvent],
        rows: &[EventRow],
        stored: &HashSet<String>,
    ) -> StoreResult<(Vec<bool>, TxTiming)> {
        let looked_at = std::time::Instant::now();
        let mut tx = self
            .telemetry_pool()
            .begin_with(D::BEGIN_WRITE)
            .await
            .map_err(db_err("telemetry event"))?;
        let begun_at = std::time::Instant::now();
        // A message id stored already, or met earlier in the batch, is a redelivery.
        let mut inserted = vec![false; events.len()];
        let mut fresh: Vec<usize> = Vec::with_capacity(events.len());
        let mut in_batch: HashSet<&str> = HashSet::new();
        for (i, e) in events.iter().enumerate() {
            if !stored.contains(&e.message_id) && in_batch.insert(e.message_id.as_str()) {
                fresh.push(i);
            }
        }
        for chunk in fresh.chunks(EVENTS_PER_STATEMENT) {
            let statement = format!(
                "{INSERT_EVENT} VALUES {}",
                vec![EVENT_ROW; chunk.len()].join(", ")
            );
            // Built from constants and a row count only: no input in the text.
            let mut q = sqlx::query(AssertSqlSafe(statement));
            for &i in chunk {
                let (Some(e), Some(r)) = (events.get(i), rows.get(i)) else {
                    continue;
                };
                q = r.bind::<D>(q, e);
            }
            match q.execute(&mut *tx).await {
                Ok(_) => {
                    for &i in chunk {
                        if let Some(flag) = inserted.get_mut(i) {
                            *flag = true;
                        }
                    }
                }
                // Another writer stored one of these since the look above: the failed
                // statement did nothing (SQLite and MySQL roll back the statement, not
                // the transaction); store them one by one.
                Err(err) if is_unique_violation(&err) => {
                    for &i in chunk {
                        if let (Some(e), Some(flag)) = (events.get(i), inserted.get_mut(i)) {
                            *flag = insert_event_on::<D>(&mut tx, e).await?;
                        }
                    }
                }
                Err(err) => return Err(db_err("telemetry event")(err)),
            }
        }
        let inserted_at = std::time::Instant::now();
        tx.commit().await.map_err(db_err("telemetry event"))?;
        let timing = TxTiming {
            fresh: fresh.len(),
            begin_ms: ms(begun_at.saturating_duration_since(looked_at)),
            insert_ms: ms(inserted_at.saturating_duration_since(begun_at)),
            commit_ms: ms(inserted_at.elapsed()),
        };
        Ok((inserted, timing))
    }

    /// Which of `events`' message ids are stored already. Read outside the events'
    /// transaction, beside the read of the devices, so that the telemetry file's write
    /// lock is held only for the inserts: an id stored by another writer after this read
    /// fails its insert with a unique violation, and the batch's inserts then go one by
    /// one.
    async fn stored_ids(&self, events: &[NewTelemetryEvent]) -> StoreResult<HashSet<String>> {
        let mut stored: HashSet<String> = HashSet::new();
        let ids: Vec<&str> = events.iter().map(|e| e.message_id.as_str()).collect();
        for chunk in InList::<D>::chunks(&ids) {
            let list = InList::<D>::new(chunk)?;
            let statement = format!(
                "SELECT message_id FROM telemetry_events WHERE message_id IN {}",
                list.text()
            );
            // Built from constants and a row count only: no input in the text.
            let q = list.bind(sqlx::query(AssertSqlSafe(statement)));
            for row in q
                .fetch_all(self.telemetry_pool())
                .await
                .map_err(db_err("telemetry event"))?
            {
                stored.insert(row.text("message_id")?);
            }
        }
        Ok(stored)
    }

    /// Checks that every event's device exists (reading from the main file only those
    /// this store has not met), and returns the devices whose last-seen times (or their
    /// kept lower bounds, which the update checks again) lag a step or more behind the
    /// batch's latest arrival, with that arrival.
    async fn last_seen_moves<'e>(
        &self,
        events: &'e [NewTelemetryEvent],
    ) -> StoreResult<Vec<(&'e str, i64)>> {
        // Each device's latest arrival in the batch, in order of first appearance.
        let mut latest: Vec<(&str, i64)> = Vec::new();
        let mut slot: HashMap<&str, usize> = HashMap::with_capacity(events.len());
        for e in events {
            let at = to_db_time(e.received_at);
            let id = e.device_id.as_str();
            match slot.get(id).and_then(|&i| latest.get_mut(i)) {
                Some(seen) => seen.1 = seen.1.max(at),
                None => {
                    slot.insert(id, latest.len());
                    latest.push((id, at));
                }
            }
        }
        let ids: Vec<&str> = latest.iter().map(|&(id, _)| id).collect();
        let stored = self.devices_last_seen(&ids).await?;
        // Only where it moves by a step or more (see `LAST_SEEN_STEP_MS`): a fleet's
        // batch usually moves few.
        let moving: Vec<(&str, i64)> = latest
            .into_iter()
            .zip(stored)
            .filter(|&((_, at), seen)| {
                seen.is_none_or(|seen| seen <= at.saturating_sub(LAST_SEEN_STEP_MS))
            })
            .map(|(device, _)| device)
            .collect();
        Ok(moving)
    }

    /// The main file's write for a batch: moves the last-seen times of `moving` (from
    /// [`Self::last_seen_moves`]).
    async fn move_last_seen(&self, moving: &[(&str, i64)]) -> StoreResult<()> {
        for chunk in moving.chunks(EVENTS_PER_STATEMENT) {
            // `CASE id WHEN ? THEN ? …`: each device's own time, in one statement. The
            // step is checked again: another writer may have moved a time since the read.
            let cases = vec!["WHEN ? THEN ?"; chunk.len()].join(" ");
            let statement = format!(
                "UPDATE devices SET last_seen_at = CASE id {cases} END \
                 WHERE id IN ({}) AND (last_seen_at IS NULL \
                 OR last_seen_at <= CASE id {cases} END - {LAST_SEEN_STEP_MS})",
                vec!["?"; chunk.len()].join(", ")
            );
            // Built from constants and a row count only: no input in the text.
            let mut q = sqlx::query(AssertSqlSafe(statement));
            for &(id, at) in chunk {
                q = q.bind(id).bind(at);
            }
            for &(id, _) in chunk {
                q = q.bind(id);
            }
            for &(id, at) in chunk {
                q = q.bind(id).bind(at);
            }
            let done = q.execute(self.pool()).await.map_err(db_err("device"))?;
            // Every time moved: each is now the one stored. Else another writer (another
            // store on the same database, in this process or another) moved some since
            // their times were noted here, and the row count does not say which: read
            // this chunk's devices again next time rather than keep a time that may be
            // ahead of the stored one.
            if u64::try_from(chunk.len()).is_ok_and(|n| n == D::rows_affected(&done)) {
                self.seen
                    .note_all(chunk.iter().map(|&(id, at)| (id, Some(at))));
            } else {
                self.seen.forget(chunk.iter().map(|&(id, _)| id));
            }
        }
        Ok(())
    }

    pub(super) async fn telemetry_events_sql(
        &self,
        device_id: &str,
        since: UnixMillis,
        limit: u32,
    ) -> StoreResult<Vec<TelemetryEvent>> {
        let found = sqlx::query(SELECT_TELEMETRY_SINCE)
            .bind(device_id)
            .bind(to_db_time(since))
            .bind(i64::from(limit))
            .fetch_all(self.telemetry_pool())
            .await
            .map_err(db_err("telemetry event"))?;
        found.iter().map(event).collect()
    }

    /// [`Store::latest_points`](crate::Store::latest_points): one `UNION ALL` of
    /// per-device reads for up to [`DEVICES_PER_STATEMENT`] devices at a time.
    pub(super) async fn latest_points_sql(
        &self,
        device_ids: &[&str],
        per_device: u32,
    ) -> StoreResult<HashMap<String, Vec<TelemetryPoint>>> {
        let mut found: HashMap<String, Vec<(i64, TelemetryPoint)>> = HashMap::new();
        for chunk in device_ids.chunks(DEVICES_PER_STATEMENT) {
            let statement = vec![LATEST_POINTS_MEMBER; chunk.len()].join(" UNION ALL ");
            // Built from a constant and a row count only: no input in the text.
            let mut q = sqlx::query(AssertSqlSafe(statement));
            for &id in chunk {
                q = q.bind(id).bind(i64::from(per_device));
            }
            let rows = q
                .fetch_all(self.telemetry_pool())
                .await
                .map_err(db_err("telemetry event"))?;
            for row in &rows {
                found
                    .entry(row.text("device_id")?)
                    .or_default()
                    .push((row.int("id")?, point(row)?));
            }
        }
        Ok(found
            .into_iter()
            .map(|(device, mut points)| {
                points.sort_by(|(a_id, a), (b_id, b)| {
                    (a.collected_at, a_id).cmp(&(b.collected_at, b_id))
                });
                (device, points.into_iter().map(|(_, p)| p).collect())
            })
            .collect())
    }

    pub(super) async fn telemetry_between_sql(
        &self,
        device_id: &str,
        from: UnixMillis,
        to: UnixMillis,
    ) -> StoreResult<Vec<TelemetryPoint>> {
        let found = sqlx::query(SELECT_TELEMETRY_BETWEEN)
            .bind(device_id)
            .bind(to_db_time(from))
            .bind(to_db_time(to))
            .fetch_all(self.telemetry_pool())
            .await
            .map_err(db_err("telemetry event"))?;
        found.iter().map(point).collect()
    }

    pub(super) async fn prune_telemetry_before_sql(&self, before: UnixMillis) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM telemetry_events WHERE collected_at < ?")
            .bind(to_db_time(before))
            .execute(self.telemetry_pool())
            .await
            .map_err(db_err("telemetry event"))?;
        Ok(D::rows_affected(&done))
    }

    /// [`Store::upsert_rollups`](crate::Store::upsert_rollups): one transaction, one
    /// multi-row statement per table and [`ROLLUPS_PER_STATEMENT`] rows.
    pub(super) async fn upsert_rollups_sql(&self, rollups: &[Rollup]) -> StoreResult<()> {
        for r in rollups {
            for (what, v) in [
                ("rollup min", r.min),
                ("rollup max", r.max),
                ("rollup mean", r.mean),
                ("rollup p95", r.p95),
            ] {
                finite(what, v)?;
            }
        }
        if rollups.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await.map_err(db_err("rollup"))?;
        for period in [RollupPeriod::Hourly, RollupPeriod::Daily] {
            let of_period: Vec<&Rollup> = rollups.iter().filter(|r| r.period == period).collect();
            for chunk in of_period.chunks(ROLLUPS_PER_STATEMENT) {
                let statement = rollup_upsert::<D>(period, chunk.len());
                // Built from constants and a row count only: no input in the text.
                let mut q = sqlx::query(AssertSqlSafe(statement));
                for r in chunk {
                    q = q
                        .bind(r.device_id.as_str())
                        .bind(to_db_time(r.bucket_start))
                        .bind(r.metric.as_str())
                        .bind(to_db_u64(r.count))
                        .bind(r.min)
                        .bind(r.max)
                        .bind(r.mean)
                        .bind(r.p95);
                }
                q.execute(&mut *tx).await.map_err(db_err("rollup"))?;
            }
        }
        tx.commit().await.map_err(db_err("rollup"))?;
        Ok(())
    }

    pub(super) async fn rollups_sql(
        &self,
        device_id: &str,
        period: RollupPeriod,
        since: UnixMillis,
        limit: u32,
    ) -> StoreResult<Vec<Rollup>> {
        let statement = match period {
            RollupPeriod::Hourly => SELECT_HOURLY,
            RollupPeriod::Daily => SELECT_DAILY,
        };
        let found = sqlx::query(statement)
            .bind(device_id)
            .bind(to_db_time(since))
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await
            .map_err(db_err("rollup"))?;
        found.iter().map(|row| rollup(row, period)).collect()
    }

    pub(super) async fn set_last_seen_sql(
        &self,
        device_id: &str,
        at: UnixMillis,
    ) -> StoreResult<()> {
        let at = to_db_time(at);
        let done = sqlx::query(
            "UPDATE devices SET last_seen_at = ? \
             WHERE id = ? AND (last_seen_at IS NULL OR last_seen_at < ?)",
        )
        .bind(at)
        .bind(device_id)
        .bind(at)
        .execute(self.pool())
        .await
        .map_err(db_err("device"))?;
        if D::rows_affected(&done) == 1 {
            self.seen.note(device_id, Some(at));
            return Ok(());
        }
        // Nothing changed: tell a later time already recorded from an unknown device.
        let exists = sqlx::query("SELECT 1 FROM devices WHERE id = ?")
            .bind(device_id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err("device"))?;
        match exists {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound("device".into())),
        }
    }

    pub(super) async fn device_last_seen_sql(
        &self,
        device_id: &str,
    ) -> StoreResult<Option<UnixMillis>> {
        let row = sqlx::query("SELECT last_seen_at FROM devices WHERE id = ?")
            .bind(device_id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err("device"))?;
        match row {
            Some(row) => super::rows::opt_time(&row, "last_seen_at"),
            None => Ok(None),
        }
    }

    pub(super) async fn devices_last_seen_before_sql(
        &self,
        before: UnixMillis,
    ) -> StoreResult<Vec<SeenDevice>> {
        self.seen_devices(SELECT_SEEN_BEFORE, before).await
    }

    pub(super) async fn devices_seen_since_sql(
        &self,
        since: UnixMillis,
    ) -> StoreResult<Vec<SeenDevice>> {
        self.seen_devices(SELECT_SEEN_SINCE, since).await
    }

    async fn seen_devices(
        &self,
        statement: &'static str,
        at: UnixMillis,
    ) -> StoreResult<Vec<SeenDevice>> {
        let found = sqlx::query(statement)
            .bind(to_db_time(at))
            .fetch_all(self.pool())
            .await
            .map_err(db_err("device"))?;
        found.iter().map(seen_device).collect()
    }
}

/// Inserts one telemetry event on `conn` (a pooled connection or a transaction):
/// whether it was inserted (false: its message id is stored already).
#[allow(private_bounds, reason = "a helper of the Store impl")]
async fn insert_event_on<D: Dialect>(
    conn: &mut <D::Db as Database>::Connection,
    e: &NewTelemetryEvent,
) -> StoreResult<bool>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> f64: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<i64>: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<f64>: Encode<'q, D::Db> + Type<D::Db>,
{
    let r = EventRow::new(e)?;
    let statement = format!("{INSERT_EVENT} VALUES {EVENT_ROW}");
    // Built from constants only.
    let inserted = r
        .bind::<D>(sqlx::query(AssertSqlSafe(statement)), e)
        .execute(&mut *conn)
        .await;
    match inserted {
        Ok(_) => Ok(true),
        // The only unique key besides the generated id is the message id.
        Err(err) if is_unique_violation(&err) => Ok(false),
        Err(err) => Err(db_err("telemetry event")(err)),
    }
}

/// `f`'s outcome and how long it took, in milliseconds.
async fn timed<T>(f: impl Future<Output = T>) -> (T, f64) {
    let started = std::time::Instant::now();
    let out = f.await;
    (out, ms(started.elapsed()))
}

/// A duration in milliseconds, for a log line.
fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// How long the steps of a batch's events' transaction took, for its debug line.
struct TxTiming {
    fresh: usize,
    begin_ms: f64,
    insert_ms: f64,
    commit_ms: f64,
}

impl TxTiming {
    /// The batch's debug line (`tether_store::sql::telemetry=debug`): the devices' read and
    /// the look for stored ids run side by side, then (on SQLite) the last-seen update
    /// beside the transaction's begin, inserts and commit.
    fn log(
        &self,
        events: usize,
        devices_ms: f64,
        stored_ids_ms: f64,
        last_seen_ms: f64,
        started: std::time::Instant,
    ) {
        tracing::debug!(
            events,
            fresh = self.fresh,
            devices_ms,
            stored_ids_ms,
            last_seen_ms,
            begin_ms = self.begin_ms,
            insert_ms = self.insert_ms,
            commit_ms = self.commit_ms,
            total_ms = ms(started.elapsed()),
            "telemetry events stored"
        );
    }
}

/// The text values of an `IN` list, bound as the dialect takes them
/// ([`Dialect::IN_JSON_ARRAY`]): as one JSON array (one statement for all of them), or
/// a placeholder each (statements of [`EVENTS_PER_STATEMENT`] values).
struct InList<'v, D> {
    values: &'v [&'v str],
    json: Option<String>,
    dialect: std::marker::PhantomData<D>,
}

impl<'v, D: Dialect> InList<'v, D> {
    /// `values` in the pieces that each make one statement.
    fn chunks(values: &'v [&'v str]) -> std::slice::Chunks<'v, &'v str> {
        let per_statement = if D::IN_JSON_ARRAY.is_some() {
            values.len().max(1)
        } else {
            EVENTS_PER_STATEMENT
        };
        values.chunks(per_statement)
    }

    fn new(values: &'v [&'v str]) -> StoreResult<Self> {
        let json = match D::IN_JSON_ARRAY {
            Some(_) => Some(
                serde_json::to_string(values)
                    .map_err(|e| StoreError::Database(format!("an IN list: {e}")))?,
            ),
            None => None,
        };
        Ok(Self {
            values,
            json,
            dialect: std::marker::PhantomData,
        })
    }

    /// The list's text, to follow `IN`: built from constants and the count only.
    fn text(&self) -> String {
        match D::IN_JSON_ARRAY {
            Some(list) => list.to_owned(),
            None => format!("({})", vec!["?"; self.values.len()].join(", ")),
        }
    }

    /// Binds the list's values to `q`, in the order of [`Self::text`]'s placeholders.
    fn bind<'q>(
        &'q self,
        mut q: sqlx::query::Query<'q, D::Db, <D::Db as Database>::Arguments>,
    ) -> sqlx::query::Query<'q, D::Db, <D::Db as Database>::Arguments>
    where
        for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
    {
        match &self.json {
            Some(json) => q.bind(json.as_str()),
            None => {
                for &value in self.values {
                    q = q.bind(value);
                }
                q
            }
        }
    }
}
