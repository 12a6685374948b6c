//! Commands and artifacts: the statements behind the command part of
//! [`Store`](crate::Store), shared by both dialects.
//!
//! A state change is a conditional `UPDATE … WHERE id = ? AND state IN (…)` — only one
//! caller can move a command out of a state — and, if it matched, the `INSERT` of the
//! transition row. On SQLite that is one `UPDATE … RETURNING` whose trigger writes the
//! row (schema v7: each statement is a round trip to the connection's thread, and a
//! command makes six transitions); on MySQL a transaction that reads the row `FOR
//! UPDATE`, updates it and inserts the row. Ingest is the `INSERT` of the command and its
//! first transition, likewise one statement or one transaction; a duplicate id is a
//! unique-key violation, read as "that command exists already".

use serde_json::Value;
use sqlx::{AssertSqlSafe, Database, Encode, Executor, IntoArguments, Type};
use tether_proto::messages::command::{CommandState, Method, Priority, Sensitivity, Simulation};

use super::audit::append_audit_on;
use super::rows::{RowExt, opt_time, time};
use super::{Dialect, SqlStore, db_err, from_db_u64, is_unique_violation, to_db_time, to_db_u64};
use crate::{
    Artifact, Command, CommandPolicy, CommandTransition, CommandUpdate, NewCommand, StoreError,
    StoreResult, UnixMillis, command_audit, parse_state, state_str,
};

macro_rules! command_columns {
    () => {
        "id, device_id, origin_user_id, method, params, priority, sensitivity, trace_id, \
         user_sig, request_hash, simulate, initial_state, state, attempts, next_attempt_at, \
         created_at, expires_at, updated_at, result, error_code, viewed_at, policy_version, \
         policy_rule, approvals_required, approvers"
    };
}
/// What a transition sets besides its state and time: each of these only when the
/// update has it (binds: [`bind_update!`]).
macro_rules! update_columns {
    () => {
        "attempts = CASE WHEN ? = 1 THEN ? ELSE attempts END, \
         next_attempt_at = CASE WHEN ? = 1 THEN ? ELSE next_attempt_at END, \
         result = CASE WHEN ? = 1 THEN ? ELSE result END, \
         error_code = CASE WHEN ? = 1 THEN ? ELSE error_code END"
    };
}
/// Binds [`update_columns!`]'s placeholders from a `CommandUpdate` and its result text.
macro_rules! bind_update {
    ($query:expr, $update:expr, $result:expr) => {
        $query
            .bind(i64::from($update.attempts.is_some()))
            .bind(i64::from($update.attempts.unwrap_or(0)))
            .bind(i64::from($update.next_attempt_at.is_some()))
            .bind($update.next_attempt_at.flatten().map(to_db_time))
            .bind(i64::from($result.is_some()))
            .bind($result.as_deref())
            .bind(i64::from($update.error_code.is_some()))
            .bind($update.error_code.map(i64::from))
    };
}
macro_rules! artifact_columns {
    () => {
        "id, device_id, command_id, object_key, content_type, max_bytes, created_at, \
         expires_at, uploaded_at, size_bytes, sha256"
    };
}

const INSERT_COMMAND: &str = concat!(
    "INSERT INTO commands (",
    command_columns!(),
    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, ?, ?, ?, NULL, NULL, NULL, \
     ?, ?, ?, ?)"
);
/// [`INSERT_COMMAND`] that also sets `transition_detail`, from which a trigger writes the
/// first transition row ([`Dialect::TRANSITION_TRIGGERS`]).
const INSERT_COMMAND_WITH_TRANSITION: &str = concat!(
    "INSERT INTO commands (",
    command_columns!(),
    ", transition_detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, ?, ?, ?, \
     NULL, NULL, NULL, ?, ?, ?, ?, ?)"
);
const SELECT_COMMAND: &str = concat!("SELECT ", command_columns!(), " FROM commands WHERE id = ?");
const SELECT_DEVICE_COMMANDS: &str = concat!(
    "SELECT ",
    command_columns!(),
    " FROM commands WHERE device_id = ? ORDER BY created_at DESC, id DESC LIMIT ?"
);
const SELECT_DUE_RETRY: &str = concat!(
    "SELECT ",
    command_columns!(),
    " FROM commands WHERE state = 'sent' AND next_attempt_at IS NOT NULL \
     AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?"
);
const SELECT_EXPIRED: &str = concat!(
    "SELECT ",
    command_columns!(),
    " FROM commands WHERE state IN ('awaiting_approval', 'queued', 'sent', 'ack_received') \
     AND expires_at <= ? \
     ORDER BY expires_at, id LIMIT ?"
);
const SELECT_QUEUED_BEFORE: &str = concat!(
    "SELECT ",
    command_columns!(),
    " FROM commands WHERE state = 'queued' AND created_at <= ? ORDER BY created_at, id LIMIT ?"
);
const SELECT_IN_FLIGHT: &str = concat!(
    "SELECT ",
    command_columns!(),
    " FROM commands WHERE device_id = ? \
     AND state IN ('queued', 'sent', 'ack_received', 'executing', 'result_posted') \
     ORDER BY created_at, id LIMIT ?"
);
pub(super) const SELECT_AWAITING_APPROVAL: &str = concat!(
    "SELECT ",
    command_columns!(),
    " FROM commands WHERE state = 'awaiting_approval' ORDER BY created_at, id LIMIT ?"
);
const SELECT_ARTIFACT: &str = concat!(
    "SELECT ",
    artifact_columns!(),
    " FROM artifacts WHERE id = ?"
);

pub(super) fn enum_str<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => Ok(s),
        _ => Err(StoreError::Corrupt(
            "an enum without a string spelling".into(),
        )),
    }
}

fn parse_enum<T: serde::de::DeserializeOwned>(col: &'static str, s: String) -> StoreResult<T> {
    serde_json::from_value(Value::String(s.clone()))
        .map_err(|_| StoreError::Corrupt(format!("{col}: unknown value {s:?}")))
}

pub(super) fn json(col: &'static str, s: &str) -> StoreResult<Value> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn state_col(row: &impl RowExt, col: &'static str) -> StoreResult<CommandState> {
    let s = row.text(col)?;
    parse_state(&s).ok_or_else(|| StoreError::Corrupt(format!("{col}: unknown state {s:?}")))
}

pub(super) fn command(row: &impl RowExt) -> StoreResult<Command> {
    let method: Method = parse_enum("method", row.text("method")?)?;
    let priority: Priority = parse_enum("priority", row.text("priority")?)?;
    let sensitivity: Sensitivity = parse_enum("sensitivity", row.text("sensitivity")?)?;
    let simulate: Option<Simulation> = row
        .opt_text("simulate")?
        .map(|s| parse_enum("simulate", s))
        .transpose()?;
    let attempts = u32::try_from(row.int("attempts")?)
        .map_err(|_| StoreError::Corrupt("attempts out of range".into()))?;
    let error_code = row
        .opt_int("error_code")?
        .map(|c| u16::try_from(c).map_err(|_| StoreError::Corrupt("error_code".into())))
        .transpose()?;
    Ok(Command {
        command: NewCommand {
            id: row.text("id")?,
            device_id: row.text("device_id")?,
            origin_user_id: row.text("origin_user_id")?,
            method,
            params: json("params", &row.text("params")?)?,
            priority,
            sensitivity,
            trace_id: row.text("trace_id")?,
            user_sig: row.opt_text("user_sig")?,
            request_hash: row.text("request_hash")?,
            simulate,
            state: state_col(row, "initial_state")?,
            policy: CommandPolicy {
                version: from_db_u64(row.int("policy_version")?, "policy_version")?,
                rule: row.opt_text("policy_rule")?,
                approvals_required: u32::try_from(row.int("approvals_required")?)
                    .map_err(|_| StoreError::Corrupt("approvals_required out of range".into()))?,
                approvers: row
                    .opt_text("approvers")?
                    .map(|a| json("approvers", &a))
                    .transpose()?,
            },
            created_at: time(row, "created_at")?,
            expires_at: time(row, "expires_at")?,
        },
        state: state_col(row, "state")?,
        attempts,
        next_attempt_at: opt_time(row, "next_attempt_at")?,
        updated_at: time(row, "updated_at")?,
        result: row
            .opt_text("result")?
            .map(|r| json("result", &r))
            .transpose()?,
        error_code,
        viewed_at: opt_time(row, "viewed_at")?,
    })
}

fn transition(row: &impl RowExt) -> StoreResult<CommandTransition> {
    let from = row
        .opt_text("from_state")?
        .map(|s| parse_state(&s).ok_or_else(|| StoreError::Corrupt("from_state".into())))
        .transpose()?;
    Ok(CommandTransition {
        command_id: row.text("command_id")?,
        from,
        to: state_col(row, "to_state")?,
        at: time(row, "at")?,
        detail: json("detail", &row.text("detail")?)?,
    })
}

fn artifact(row: &impl RowExt) -> StoreResult<Artifact> {
    Ok(Artifact {
        id: row.text("id")?,
        device_id: row.text("device_id")?,
        command_id: row.text("command_id")?,
        object_key: row.text("object_key")?,
        content_type: row.text("content_type")?,
        max_bytes: from_db_u64(row.int("max_bytes")?, "max_bytes")?,
        created_at: time(row, "created_at")?,
        expires_at: time(row, "expires_at")?,
        uploaded_at: opt_time(row, "uploaded_at")?,
        size_bytes: row
            .opt_int("size_bytes")?
            .map(|v| from_db_u64(v, "size_bytes"))
            .transpose()?,
        sha256: row.opt_text("sha256")?,
    })
}

/// `state IN (…)` for a list of states (their spellings are fixed identifiers, never user
/// input, so they are written into the statement).
/// A transition's detail as recorded: the JSON object given, or `{}`.
fn object_or_empty(detail: &Value) -> Value {
    if detail.is_object() {
        detail.clone()
    } else {
        Value::Object(serde_json::Map::new())
    }
}

fn state_list(states: &[CommandState]) -> String {
    states
        .iter()
        .map(|s| format!("'{}'", state_str(*s)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[allow(private_bounds, reason = "pub(super) helpers of the Store impl")]
impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    <D::Db as Database>::Row: RowExt,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<&'q str>: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<i64>: Encode<'q, D::Db> + Type<D::Db>,
{
    pub(super) async fn insert_command_sql(
        &self,
        c: &NewCommand,
        detail: &Value,
    ) -> StoreResult<bool> {
        let detail = object_or_empty(detail);
        let detail_text = detail.to_string();
        let params = c.params.to_string();
        let simulate = c.simulate.as_ref().map(enum_str).transpose()?;
        let state = state_str(c.state);
        let approvers = c.policy.approvers.as_ref().map(Value::to_string);
        let insert = sqlx::query(if D::TRANSITION_TRIGGERS {
            INSERT_COMMAND_WITH_TRANSITION
        } else {
            INSERT_COMMAND
        })
        .bind(c.id.as_str())
        .bind(c.device_id.as_str())
        .bind(c.origin_user_id.as_str())
        .bind(enum_str(&c.method)?.as_str())
        .bind(params.as_str())
        .bind(enum_str(&c.priority)?.as_str())
        .bind(enum_str(&c.sensitivity)?.as_str())
        .bind(c.trace_id.as_str())
        .bind(c.user_sig.as_deref())
        .bind(c.request_hash.as_str())
        .bind(simulate.as_deref())
        .bind(state)
        .bind(state)
        .bind(to_db_time(c.created_at))
        .bind(to_db_time(c.expires_at))
        .bind(to_db_time(c.created_at))
        .bind(to_db_u64(c.policy.version))
        .bind(c.policy.rule.as_deref())
        .bind(i64::from(c.policy.approvals_required))
        .bind(approvers.as_deref());
        if D::TRANSITION_TRIGGERS {
            // One statement: the trigger writes the first transition row.
            return match insert.bind(detail_text.as_str()).execute(self.pool()).await {
                Ok(_) => Ok(true),
                Err(e) if is_unique_violation(&e) => Ok(false),
                Err(e) => Err(db_err("command")(e)),
            };
        }
        let mut tx = self.pool().begin().await.map_err(db_err("command"))?;
        match insert.execute(&mut *tx).await {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                tx.rollback().await.map_err(db_err("command"))?;
                return Ok(false);
            }
            Err(e) => return Err(db_err("command")(e)),
        }
        sqlx::query(
            "INSERT INTO command_transitions (command_id, from_state, to_state, at, detail) \
             VALUES (?, NULL, ?, ?, ?)",
        )
        .bind(c.id.as_str())
        .bind(state)
        .bind(to_db_time(c.created_at))
        .bind(detail_text.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err("command transition"))?;
        let stored = Command {
            command: c.clone(),
            state: c.state,
            attempts: 0,
            next_attempt_at: None,
            updated_at: c.created_at,
            result: None,
            error_code: None,
            viewed_at: None,
        };
        append_audit_on::<D, _>(&mut *tx, &command_audit(None, &stored, &detail)).await?;
        tx.commit().await.map_err(db_err("command"))?;
        Ok(true)
    }

    pub(super) async fn command_sql(&self, id: &str) -> StoreResult<Option<Command>> {
        sqlx::query(SELECT_COMMAND)
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err("command"))?
            .map(|r| command(&r))
            .transpose()
    }

    pub(super) async fn commands_query(
        &self,
        sql: &'static str,
        first: CommandsArg<'_>,
        limit: u32,
    ) -> StoreResult<Vec<Command>> {
        let q = sqlx::query(sql);
        let q = match first {
            CommandsArg::Text(t) => q.bind(t),
            CommandsArg::Time(t) => q.bind(to_db_time(t)),
        };
        q.bind(i64::from(limit))
            .fetch_all(self.pool())
            .await
            .map_err(db_err("command"))?
            .iter()
            .map(command)
            .collect()
    }

    pub(super) async fn device_commands_sql(
        &self,
        device_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<Command>> {
        self.commands_query(SELECT_DEVICE_COMMANDS, CommandsArg::Text(device_id), limit)
            .await
    }

    pub(super) async fn commands_due_for_retry_sql(
        &self,
        now: UnixMillis,
        limit: u32,
    ) -> StoreResult<Vec<Command>> {
        self.commands_query(SELECT_DUE_RETRY, CommandsArg::Time(now), limit)
            .await
    }

    pub(super) async fn commands_expired_sql(
        &self,
        now: UnixMillis,
        limit: u32,
    ) -> StoreResult<Vec<Command>> {
        self.commands_query(SELECT_EXPIRED, CommandsArg::Time(now), limit)
            .await
    }

    pub(super) async fn commands_queued_before_sql(
        &self,
        before: UnixMillis,
        limit: u32,
    ) -> StoreResult<Vec<Command>> {
        self.commands_query(SELECT_QUEUED_BEFORE, CommandsArg::Time(before), limit)
            .await
    }

    pub(super) async fn commands_in_flight_sql(
        &self,
        device_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<Command>> {
        self.commands_query(SELECT_IN_FLIGHT, CommandsArg::Text(device_id), limit)
            .await
    }

    pub(super) async fn count_undelivered_sql(&self, device_id: &str) -> StoreResult<u64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM commands WHERE device_id = ? \
             AND state IN ('queued', 'sent')",
        )
        .bind(device_id)
        .fetch_one(self.pool())
        .await
        .map_err(db_err("command"))?;
        from_db_u64(row.int("n")?, "count")
    }

    pub(super) async fn transition_command_sql(
        &self,
        id: &str,
        from: &[CommandState],
        to: CommandState,
        at: UnixMillis,
        update: &CommandUpdate,
    ) -> StoreResult<Option<(CommandState, Command)>> {
        if from.is_empty() {
            return Ok(None);
        }
        let result = update.result.as_ref().map(Value::to_string);
        let detail = if update.detail.is_object() {
            update.detail.to_string()
        } else {
            "{}".to_owned()
        };
        if D::TRANSITION_TRIGGERS {
            return self
                .transition_in_one_statement(id, from, to, at, update, &detail)
                .await;
        }
        let mut tx = self
            .pool()
            .begin_with(D::BEGIN_WRITE)
            .await
            .map_err(db_err("command"))?;
        // Read the command under the transaction's lock (SQLite: the database's write
        // lock; MySQL: the row's), so nothing moves it between this read and the UPDATE,
        // which re-checks the state all the same.
        let select = format!("{SELECT_COMMAND}{}", D::FOR_UPDATE);
        let Some(row) = sqlx::query(AssertSqlSafe(select))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err("command"))?
        else {
            tx.rollback().await.map_err(db_err("command"))?;
            return Ok(None);
        };
        let mut after = command(&row)?;
        let before = after.state;
        let other_device = update
            .device_id
            .as_deref()
            .is_some_and(|d| d != after.command.device_id);
        if !from.contains(&before) || other_device {
            tx.rollback().await.map_err(db_err("command"))?;
            return Ok(None);
        }
        // Transition times never go backwards: two writers that stamped their times a
        // moment apart may commit in the other order (the agent's `executing` and its
        // result, handled concurrently), so a later transition is at least as late as
        // the last one.
        let at = at.max(after.updated_at);
        let sql = format!(
            "UPDATE commands SET state = ?, updated_at = ?, {} \
             WHERE id = ? AND state = ? AND state IN ({})",
            update_columns!(),
            state_list(from)
        );
        let updated = sqlx::query(AssertSqlSafe(sql))
            .bind(state_str(to))
            .bind(to_db_time(at));
        let updated = bind_update!(updated, update, result)
            .bind(id)
            .bind(state_str(before))
            .execute(&mut *tx);
        let updated = updated.await.map_err(db_err("command"))?;
        if D::rows_affected(&updated) != 1 {
            tx.rollback().await.map_err(db_err("command"))?;
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO command_transitions (command_id, from_state, to_state, at, detail) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(Some(state_str(before)))
        .bind(state_str(to))
        .bind(to_db_time(at))
        .bind(detail.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err("command transition"))?;
        // The row as the UPDATE left it, without reading it back.
        after.state = to;
        after.updated_at = at;
        if let Some(n) = update.attempts {
            after.attempts = n;
        }
        if let Some(t) = update.next_attempt_at {
            after.next_attempt_at = t;
        }
        if let Some(r) = &update.result {
            after.result = Some(r.clone());
        }
        if let Some(c) = update.error_code {
            after.error_code = Some(c);
        }
        let audit = command_audit(Some(before), &after, &object_or_empty(&update.detail));
        append_audit_on::<D, _>(&mut *tx, &audit).await?;
        tx.commit().await.map_err(db_err("command"))?;
        Ok(Some((before, after)))
    }

    /// [`Self::transition_command_sql`] as one `UPDATE … RETURNING` (SQLite): the
    /// `WHERE` is the compare-and-set, `prev_state` keeps the state it left, and the
    /// schema's trigger writes the transition row from `transition_detail`, all in the
    /// statement's own implicit transaction.
    async fn transition_in_one_statement(
        &self,
        id: &str,
        from: &[CommandState],
        to: CommandState,
        at: UnixMillis,
        update: &CommandUpdate,
        detail: &str,
    ) -> StoreResult<Option<(CommandState, Command)>> {
        let result = update.result.as_ref().map(Value::to_string);
        // `updated_at` never goes backwards (see the transaction's path), and `prev_state
        // = state` reads the row as it was before this statement.
        let sql = format!(
            "UPDATE commands SET prev_state = state, transition_detail = ?, state = ?, \
             updated_at = MAX(updated_at, ?), {} \
             WHERE id = ? AND state IN ({}) AND (? IS NULL OR device_id = ?) \
             RETURNING {}, prev_state",
            update_columns!(),
            state_list(from),
            command_columns!()
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(detail)
            .bind(state_str(to))
            .bind(to_db_time(at));
        let row = bind_update!(row, update, result)
            .bind(id)
            .bind(update.device_id.as_deref())
            .bind(update.device_id.as_deref())
            .fetch_optional(self.pool())
            .await
            .map_err(db_err("command"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some((state_col(&row, "prev_state")?, command(&row)?)))
    }

    pub(super) async fn command_transitions_sql(
        &self,
        id: &str,
    ) -> StoreResult<Vec<CommandTransition>> {
        sqlx::query(
            "SELECT command_id, from_state, to_state, at, detail FROM command_transitions \
             WHERE command_id = ? ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await
        .map_err(db_err("command transition"))?
        .iter()
        .map(transition)
        .collect()
    }

    pub(super) async fn mark_command_viewed_sql(
        &self,
        id: &str,
        at: UnixMillis,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE commands SET viewed_at = ? WHERE id = ? AND viewed_at IS NULL \
             AND state IN ('completed', 'failed', 'expired', 'denied', 'dlq')",
        )
        .bind(to_db_time(at))
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(db_err("command"))?;
        Ok(D::rows_affected(&r) == 1)
    }

    pub(super) async fn insert_artifact_sql(&self, a: &Artifact) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO artifacts (",
            artifact_columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL)"
        ))
        .bind(a.id.as_str())
        .bind(a.device_id.as_str())
        .bind(a.command_id.as_str())
        .bind(a.object_key.as_str())
        .bind(a.content_type.as_str())
        .bind(to_db_u64(a.max_bytes))
        .bind(to_db_time(a.created_at))
        .bind(to_db_time(a.expires_at))
        .execute(self.pool())
        .await
        .map_err(db_err("artifact"))?;
        Ok(())
    }

    pub(super) async fn artifact_sql(&self, id: &str) -> StoreResult<Option<Artifact>> {
        sqlx::query(SELECT_ARTIFACT)
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err("artifact"))?
            .map(|r| artifact(&r))
            .transpose()
    }

    pub(super) async fn mark_artifact_uploaded_sql(
        &self,
        id: &str,
        size_bytes: u64,
        sha256: &str,
        at: UnixMillis,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE artifacts SET uploaded_at = ?, size_bytes = ?, sha256 = ? \
             WHERE id = ? AND uploaded_at IS NULL",
        )
        .bind(to_db_time(at))
        .bind(to_db_u64(size_bytes))
        .bind(sha256)
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(db_err("artifact"))?;
        Ok(D::rows_affected(&r) == 1)
    }
}

/// The first bind of a command query.
pub(super) enum CommandsArg<'a> {
    Text(&'a str),
    Time(UnixMillis),
}
