//! Alerts: the statements behind the alert part of [`Store`](crate::Store), shared by
//! both dialects.
//!
//! At most one alert per device and kind is open: `open_kind` holds the kind while the
//! alert is unacknowledged and NULL afterwards, under a unique key on
//! (`device_id`, `open_kind`). Raising is therefore one plain `INSERT` whose unique-key
//! violation means "one is open already", and acknowledging is one conditional `UPDATE`
//! that also clears `open_kind`.

use sqlx::{Database, Encode, Executor, IntoArguments, Type};
use tether_proto::messages::notify::Severity;

use super::rows::{RowExt, opt_time, time};
use super::telemetry::finite;
use super::{Dialect, SqlStore, db_err, is_unique_violation, to_db_time};
use crate::{Alert, StoreError, StoreResult, UnixMillis};

macro_rules! alert_columns {
    () => {
        "id, device_id, owner_id, severity, kind, message, risk_score, created_at, acked_at, \
         acked_by"
    };
}

const SELECT_ALERT: &str = concat!("SELECT ", alert_columns!(), " FROM alerts WHERE id = ?");
const SELECT_OPEN: &str = concat!(
    "SELECT ",
    alert_columns!(),
    " FROM alerts WHERE device_id = ? AND open_kind = ?"
);
const SELECT_LATEST: &str = concat!(
    "SELECT ",
    alert_columns!(),
    " FROM alerts WHERE device_id = ? AND kind = ? ORDER BY created_at DESC, id DESC LIMIT 1"
);
const SELECT_FOR_OWNER: &str = concat!(
    "SELECT ",
    alert_columns!(),
    " FROM alerts WHERE owner_id = ? AND (? = 1 OR acked_at IS NULL) \
     ORDER BY created_at DESC, id DESC LIMIT ?"
);
const SELECT_ALL: &str = concat!(
    "SELECT ",
    alert_columns!(),
    " FROM alerts WHERE (? = 1 OR acked_at IS NULL) ORDER BY created_at DESC, id DESC LIMIT ?"
);

/// The stored spelling of a severity.
const fn severity_str(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

fn alert(row: &impl RowExt) -> StoreResult<Alert> {
    let severity = match row.text("severity")?.as_str() {
        "info" => Severity::Info,
        "warning" => Severity::Warning,
        "critical" => Severity::Critical,
        other => return Err(StoreError::Corrupt(format!("unknown severity {other:?}"))),
    };
    Ok(Alert {
        id: row.text("id")?,
        device_id: row.text("device_id")?,
        owner_id: row.opt_text("owner_id")?,
        severity,
        kind: row.text("kind")?,
        message: row.text("message")?,
        risk_score: row.opt_real("risk_score")?,
        created_at: time(row, "created_at")?,
        acked_at: opt_time(row, "acked_at")?,
        acked_by: row.opt_text("acked_by")?,
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
    for<'q> Option<&'q str>: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<f64>: Encode<'q, D::Db> + Type<D::Db>,
{
    pub(super) async fn insert_alert_sql(&self, a: &Alert) -> StoreResult<bool> {
        let risk = a.risk_score.map(|r| finite("risk_score", r)).transpose()?;
        let inserted = sqlx::query(
            "INSERT INTO alerts (id, device_id, owner_id, severity, kind, open_kind, message, \
             risk_score, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(a.id.as_str())
        .bind(a.device_id.as_str())
        .bind(a.owner_id.as_deref())
        .bind(severity_str(a.severity))
        .bind(a.kind.as_str())
        .bind(a.kind.as_str())
        .bind(a.message.as_str())
        .bind(risk)
        .bind(to_db_time(a.created_at))
        .execute(self.pool())
        .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => {
                // Either an open alert of this kind (the expected case) or an id clash.
                if self.open_alert_sql(&a.device_id, &a.kind).await?.is_some() {
                    Ok(false)
                } else {
                    Err(StoreError::Conflict("alert id".into()))
                }
            }
            Err(e) => Err(db_err("alert")(e)),
        }
    }

    pub(super) async fn alerts_for_owner_sql(
        &self,
        owner_id: &str,
        include_acked: bool,
        limit: u32,
    ) -> StoreResult<Vec<Alert>> {
        let found = sqlx::query(SELECT_FOR_OWNER)
            .bind(owner_id)
            .bind(i64::from(include_acked))
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await
            .map_err(db_err("alert"))?;
        found.iter().map(alert).collect()
    }

    pub(super) async fn all_alerts_sql(
        &self,
        include_acked: bool,
        limit: u32,
    ) -> StoreResult<Vec<Alert>> {
        let found = sqlx::query(SELECT_ALL)
            .bind(i64::from(include_acked))
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await
            .map_err(db_err("alert"))?;
        found.iter().map(alert).collect()
    }

    pub(super) async fn alert_sql(&self, id: &str) -> StoreResult<Option<Alert>> {
        let row = sqlx::query(SELECT_ALERT)
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err("alert"))?;
        row.as_ref().map(alert).transpose()
    }

    pub(super) async fn ack_alert_sql(
        &self,
        id: &str,
        user_id: &str,
        now: UnixMillis,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE alerts SET acked_at = ?, acked_by = ?, open_kind = NULL \
             WHERE id = ? AND acked_at IS NULL",
        )
        .bind(to_db_time(now))
        .bind(user_id)
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(db_err("alert acknowledger"))?;
        Ok(D::rows_affected(&done) == 1)
    }

    pub(super) async fn open_alert_sql(
        &self,
        device_id: &str,
        kind: &str,
    ) -> StoreResult<Option<Alert>> {
        let row = sqlx::query(SELECT_OPEN)
            .bind(device_id)
            .bind(kind)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err("alert"))?;
        row.as_ref().map(alert).transpose()
    }

    pub(super) async fn latest_alert_sql(
        &self,
        device_id: &str,
        kind: &str,
    ) -> StoreResult<Option<Alert>> {
        let row = sqlx::query(SELECT_LATEST)
            .bind(device_id)
            .bind(kind)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err("alert"))?;
        row.as_ref().map(alert).transpose()
    }
}
