//! Central policy: saved bundles, approvals of commands, sessions' second factors and the
//! counts rate rules need. Shared by both dialects.
//!
//! A policy version is claimed by a plain `INSERT` under its primary key: two admins who
//! save at once from the same current version both try the same next version, and the
//! loser's unique-key violation reads as "someone saved first". An approval is one
//! `INSERT` under the unique (command, approver) key, so a user's second approval of the
//! same command is refused however the requests interleave.

use sqlx::{AssertSqlSafe, Database, Encode, Executor, IntoArguments, Type};

use super::commands::{SELECT_AWAITING_APPROVAL, command, enum_str, json};
use super::rows::{RowExt, time};
use super::{Dialect, SqlStore, db_err, from_db_u64, is_unique_violation, to_db_time, to_db_u64};
use crate::{
    Command, CommandApproval, CommandCount, OwnerKeysRecord, PolicyRecord, StoreError, StoreResult,
    UnixMillis,
};

fn policy(row: &impl RowExt) -> StoreResult<PolicyRecord> {
    Ok(PolicyRecord {
        version: from_db_u64(row.int("version")?, "version")?,
        bundle: json("bundle", &row.text("bundle")?)?,
        hash: row.text("hash")?,
        author: row.text("author")?,
        created_at: time(row, "created_at")?,
    })
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
{
    pub(super) async fn insert_policy_sql(&self, p: &PolicyRecord) -> StoreResult<bool> {
        if !p.bundle.is_object() {
            return Err(StoreError::Corrupt(
                "a policy bundle is a JSON object".into(),
            ));
        }
        let bundle = p.bundle.to_string();
        let inserted = sqlx::query(
            "INSERT INTO policies (version, bundle, hash, author, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(to_db_u64(p.version))
        .bind(bundle.as_str())
        .bind(p.hash.as_str())
        .bind(p.author.as_str())
        .bind(to_db_time(p.created_at))
        .execute(self.pool())
        .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(db_err("policy")(e)),
        }
    }

    pub(super) async fn current_policy_sql(&self) -> StoreResult<Option<PolicyRecord>> {
        sqlx::query(
            "SELECT version, bundle, hash, author, created_at FROM policies \
             ORDER BY version DESC LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await
        .map_err(db_err("policy"))?
        .as_ref()
        .map(policy)
        .transpose()
    }

    pub(super) async fn add_command_approval_sql(&self, a: &CommandApproval) -> StoreResult<bool> {
        let inserted = sqlx::query(
            "INSERT INTO command_approvals (command_id, approver_id, at, user_sig) \
             VALUES (?, ?, ?, ?)",
        )
        .bind(a.command_id.as_str())
        .bind(a.approver_id.as_str())
        .bind(to_db_time(a.at))
        .bind(a.user_sig.as_deref())
        .execute(self.pool())
        .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(db_err("command approval")(e)),
        }
    }

    pub(super) async fn command_approvals_sql(
        &self,
        command_id: &str,
    ) -> StoreResult<Vec<CommandApproval>> {
        sqlx::query(
            "SELECT command_id, approver_id, at, user_sig FROM command_approvals \
             WHERE command_id = ? \
             ORDER BY at, approver_id",
        )
        .bind(command_id)
        .fetch_all(self.pool())
        .await
        .map_err(db_err("command approval"))?
        .iter()
        .map(|r| {
            Ok(CommandApproval {
                command_id: r.text("command_id")?,
                approver_id: r.text("approver_id")?,
                at: time(r, "at")?,
                user_sig: r.opt_text("user_sig")?,
            })
        })
        .collect()
    }

    pub(super) async fn insert_owner_keys_sql(&self, r: &OwnerKeysRecord) -> StoreResult<bool> {
        if !r.body.is_object() {
            return Err(StoreError::Corrupt(
                "an owner-keys statement is a JSON object".into(),
            ));
        }
        let body = r.body.to_string();
        let inserted = sqlx::query(
            "INSERT INTO owner_key_statements (user_id, version, body, signer_kid, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(r.user_id.as_str())
        .bind(to_db_u64(r.version))
        .bind(body.as_str())
        .bind(r.signer_kid.as_str())
        .bind(to_db_time(r.created_at))
        .execute(self.pool())
        .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(db_err("owner-keys statement")(e)),
        }
    }

    pub(super) async fn owner_keys_statements_sql(
        &self,
        user_id: &str,
    ) -> StoreResult<Vec<OwnerKeysRecord>> {
        sqlx::query(
            "SELECT user_id, version, body, signer_kid, created_at FROM owner_key_statements \
             WHERE user_id = ? ORDER BY version",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await
        .map_err(db_err("owner-keys statement"))?
        .iter()
        .map(|r| {
            Ok(OwnerKeysRecord {
                user_id: r.text("user_id")?,
                version: from_db_u64(r.int("version")?, "version")?,
                body: json("body", &r.text("body")?)?,
                signer_kid: r.text("signer_kid")?,
                created_at: time(r, "created_at")?,
            })
        })
        .collect()
    }

    pub(super) async fn commands_awaiting_approval_sql(
        &self,
        limit: u32,
    ) -> StoreResult<Vec<Command>> {
        sqlx::query(SELECT_AWAITING_APPROVAL)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await
            .map_err(db_err("command"))?
            .iter()
            .map(command)
            .collect()
    }

    pub(super) async fn count_commands_sql(&self, q: &CommandCount) -> StoreResult<u64> {
        // Method spellings are fixed identifiers, never user input: written into the
        // statement like the state lists of `transition_command`.
        let methods = q
            .methods
            .iter()
            .map(|m| enum_str(m).map(|s| format!("'{s}'")))
            .collect::<StoreResult<Vec<_>>>()?;
        let method_filter = if methods.is_empty() {
            String::new()
        } else {
            format!(" AND method IN ({})", methods.join(", "))
        };
        let sql = format!(
            "SELECT COUNT(*) AS n FROM commands WHERE created_at > ? \
             AND (? = 0 OR origin_user_id = ?) AND (? = 0 OR device_id = ?){method_filter}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(to_db_time(q.since))
            .bind(i64::from(q.user_id.is_some()))
            .bind(q.user_id.as_deref().unwrap_or(""))
            .bind(i64::from(q.device_id.is_some()))
            .bind(q.device_id.as_deref().unwrap_or(""))
            .fetch_one(self.pool())
            .await
            .map_err(db_err("command"))?;
        from_db_u64(row.int("n")?, "count")
    }

    pub(super) async fn record_second_factor_sql(
        &self,
        session_id: &str,
        user_id: &str,
        at: UnixMillis,
    ) -> StoreResult<()> {
        sqlx::query(D::UPSERT_SECOND_FACTOR)
            .bind(session_id)
            .bind(user_id)
            .bind(to_db_time(at))
            .execute(self.pool())
            .await
            .map_err(db_err("session second factor"))?;
        Ok(())
    }

    pub(super) async fn last_second_factor_sql(
        &self,
        session_id: &str,
        user_id: &str,
    ) -> StoreResult<Option<UnixMillis>> {
        sqlx::query("SELECT at FROM session_second_factors WHERE session_id = ? AND user_id = ?")
            .bind(session_id)
            .bind(user_id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err("session second factor"))?
            .as_ref()
            .map(|r| time(r, "at"))
            .transpose()
    }
}
