//! The audit trail: the statements behind the audit part of [`Store`](crate::Store),
//! shared by both dialects.
//!
//! A filtered read is one `SELECT` whose `WHERE` holds only the conditions that are set
//! (so each can use its index: `device_id`, `actor` and `at` have one). The conditions are
//! fixed text with `?` placeholders; filter values are only ever bound.
//!
//! The action filter matches the action itself or any action below it: `command` matches
//! `command.queued`. That is a range on the binary-collated column (`>= 'command.'` and
//! `< 'command/'`, `/` being the character after `.`), which needs no `LIKE` escaping and
//! compares case-sensitively on both backends (SQLite's `LIKE` would not).

use sqlx::{AssertSqlSafe, Database, Encode, Executor, IntoArguments, Type};

use super::rows::{self, RowExt};
use super::statements::{SELECT_AUDIT, SELECT_AUDIT_AFTER};
use super::{Dialect, SqlStore, db_err, from_db_u64, to_db_time, to_db_u64};
use crate::{AuditEvent, AuditFilter, AuditOrder, NewAuditEvent, StoreError, StoreResult};

/// A value bound to one placeholder of a filtered read.
enum Arg {
    Text(String),
    Int(i64),
}

/// The `WHERE` clause (empty, or starting with a space) for `f` and its values in
/// placeholder order.
fn conditions(f: &AuditFilter) -> (String, Vec<Arg>) {
    let mut sql: Vec<&'static str> = Vec::new();
    let mut args = Vec::new();
    if let Some(actor) = &f.actor {
        sql.push("actor = ?");
        args.push(Arg::Text(actor.clone()));
    }
    if let Some(device) = &f.device_id {
        sql.push("device_id = ?");
        args.push(Arg::Text(device.clone()));
    }
    if let Some(action) = &f.action {
        sql.push("(action = ? OR (action >= ? AND action < ?))");
        args.push(Arg::Text(action.clone()));
        args.push(Arg::Text(format!("{action}.")));
        args.push(Arg::Text(format!("{action}/")));
    }
    if let Some(outcome) = &f.outcome {
        sql.push("outcome = ?");
        args.push(Arg::Text(outcome.clone()));
    }
    if let Some(since) = f.since {
        sql.push("at >= ?");
        args.push(Arg::Int(to_db_time(since)));
    }
    if let Some(until) = f.until {
        sql.push("at < ?");
        args.push(Arg::Int(to_db_time(until)));
    }
    if let Some(before) = f.before_seq {
        sql.push("seq < ?");
        args.push(Arg::Int(to_db_u64(before)));
    }
    if let Some(after) = f.after_seq {
        sql.push("seq > ?");
        args.push(Arg::Int(to_db_u64(after)));
    }
    if sql.is_empty() {
        (String::new(), args)
    } else {
        (format!(" WHERE {}", sql.join(" AND ")), args)
    }
}

// The bounds of `impl Store for SqlStore<D>` that these statements need. They name the
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
{
    pub(super) async fn append_audit_sql(&self, e: &NewAuditEvent) -> StoreResult<u64> {
        if let Some(writer) = &self.audit_writer {
            return writer.append(e.clone()).await;
        }
        append_audit_on::<D, _>(self.pool(), e).await
    }

    pub(super) async fn audit_after_sql(
        &self,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<AuditEvent>> {
        let found = sqlx::query(SELECT_AUDIT_AFTER)
            .bind(to_db_u64(after))
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await
            .map_err(db_err("audit event"))?;
        found.iter().map(rows::audit).collect()
    }

    pub(super) async fn audit_query_sql(
        &self,
        f: &AuditFilter,
        order: AuditOrder,
        limit: u32,
    ) -> StoreResult<Vec<AuditEvent>> {
        let (conditions, args) = conditions(f);
        let order = match order {
            AuditOrder::NewestFirst => "DESC",
            AuditOrder::OldestFirst => "ASC",
        };
        // Built only from this module's fixed text: values are bound below.
        let sql = format!("{SELECT_AUDIT}{conditions} ORDER BY seq {order} LIMIT ?");
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for a in &args {
            query = match a {
                Arg::Text(s) => query.bind(s.as_str()),
                Arg::Int(i) => query.bind(*i),
            };
        }
        let found = query
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await
            .map_err(db_err("audit event"))?;
        found.iter().map(rows::audit).collect()
    }

    pub(super) async fn audit_count_sql(&self, f: &AuditFilter) -> StoreResult<u64> {
        let (conditions, args) = conditions(f);
        // Built only from this module's fixed text: values are bound below.
        let sql = format!("SELECT COUNT(*) AS n FROM audit_events{conditions}");
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for a in &args {
            query = match a {
                Arg::Text(s) => query.bind(s.as_str()),
                Arg::Int(i) => query.bind(*i),
            };
        }
        let row = query
            .fetch_one(self.pool())
            .await
            .map_err(db_err("audit event"))?;
        from_db_u64(row.int("n")?, "audit count")
    }
}

#[cfg(test)]
mod tests;

/// Appends an audit event through `executor` (the pool, or a transaction's connection:
/// a command's transition records its event in its own transaction) and returns its
/// sequence number.
pub(crate) async fn append_audit_on<'c, D, E>(executor: E, e: &NewAuditEvent) -> StoreResult<u64>
where
    D: Dialect,
    E: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<&'q str>: Encode<'q, D::Db> + Type<D::Db>,
{
    let detail = serde_json::to_string(&e.detail)
        .map_err(|err| StoreError::Corrupt(format!("audit detail: {err}")))?;
    let done = sqlx::query(
        "INSERT INTO audit_events \
         (actor, action, target, outcome, detail, trace_id, at, device_id) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(e.actor.as_str())
    .bind(e.action.as_str())
    .bind(e.target.as_deref())
    .bind(e.outcome.as_str())
    .bind(detail.as_str())
    .bind(e.trace_id.as_deref())
    .bind(to_db_time(e.at))
    .bind(e.device_id.as_deref())
    .execute(executor)
    .await
    .map_err(db_err("audit event"))?;
    D::last_insert_id(&done)
        .ok_or_else(|| StoreError::Database("the audit insert returned no sequence".into()))
}
