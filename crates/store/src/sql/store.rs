//! `impl Store for SqlStore<D>`: every statement is shared by both dialects except the
//! few the [`Dialect`] supplies. See the parent module for why the atomic operations are
//! atomic.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Database, Encode, Executor, IntoArguments, Type};

use super::rows::{self, RowExt};
use super::statements::*;
use super::{
    Dialect, SqlStore, db_err, from_db_u64, is_deadlock, is_unique_violation, to_db_time, to_db_u64,
};
use crate::{
    Alert, Artifact, AuditEvent, AuditFilter, AuditOrder, Ceremony, Command, CommandApproval,
    CommandCount, CommandState, CommandTransition, CommandUpdate, Device, DiscoveryRecord,
    DiscoveryStatus, NewAuditEvent, NewCommand, NewTelemetryEvent, NewUser, OwnerKeysRecord,
    PairingRecord, PairingRefusal, PasskeyRecord, PolicyRecord, RefreshRecord, Role, RoleChange,
    Rollup, RollupPeriod, Rotation, SeenDevice, Store, StoreError, StoreResult, TelemetryEvent,
    TelemetryPoint, TotpRecord, UnixMillis, User,
};

// The bounds say "this sqlx driver can run queries and bind/read the column types the
// schema uses"; both SqliteDialect and MysqlDialect meet them, so `SqliteStore` and
// `MysqlStore` are `Store`s.
#[async_trait]
impl<D: Dialect> Store for SqlStore<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    <D::Db as Database>::Row: RowExt,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> &'q [u8]: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<&'q str>: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<i64>: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> f64: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<f64>: Encode<'q, D::Db> + Type<D::Db>,
{
    fn backend(&self) -> &'static str {
        D::NAME
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(self.pool())
            .await
            .map_err(db_err("ping"))?;
        Ok(())
    }

    // ---- users ------------------------------------------------------------------

    async fn create_user(&self, user: &NewUser) -> StoreResult<User> {
        let email = user.email.to_lowercase();
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, role, mobile_pub, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(user.id.as_str())
        .bind(email.as_str())
        .bind(user.password_hash.as_str())
        .bind(user.role.as_str())
        .bind(user.mobile_pub.as_deref())
        .bind(to_db_time(user.created_at))
        .execute(self.pool())
        .await
        .map_err(db_err("user id or email"))?;
        Ok(User {
            id: user.id.clone(),
            email,
            password_hash: user.password_hash.clone(),
            role: user.role,
            mobile_pub: user.mobile_pub.clone(),
            totp: None,
            totp_last_step: 0,
            created_at: user.created_at,
        })
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query(SELECT_USER_BY_ID)
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err("user"))?;
        row.as_ref().map(rows::user).transpose()
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let email = email.to_lowercase();
        let row = sqlx::query(SELECT_USER_BY_EMAIL)
            .bind(email.as_str())
            .fetch_optional(self.pool())
            .await
            .map_err(db_err("user"))?;
        row.as_ref().map(rows::user).transpose()
    }

    async fn count_users_with_role(&self, role: Role) -> StoreResult<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users WHERE role = ?")
            .bind(role.as_str())
            .fetch_one(self.pool())
            .await
            .map_err(db_err("user count"))?;
        from_db_u64(row.int("n")?, "user count")
    }

    async fn set_user_role(&self, user_id: &str, role: Role) -> StoreResult<()> {
        let done = sqlx::query("UPDATE users SET role = ? WHERE id = ?")
            .bind(role.as_str())
            .bind(user_id)
            .execute(self.pool())
            .await
            .map_err(db_err("user"))?;
        if D::rows_affected(&done) == 0 {
            return Err(StoreError::NotFound("user".into()));
        }
        Ok(())
    }

    async fn change_user_role(&self, user_id: &str, role: Role) -> StoreResult<RoleChange> {
        self.change_user_role_sql(user_id, role).await
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        self.list_users_sql().await
    }

    async fn device_counts_by_owner(&self) -> StoreResult<Vec<(String, u64)>> {
        self.device_counts_by_owner_sql().await
    }

    async fn set_totp(&self, user_id: &str, totp: Option<&TotpRecord>) -> StoreResult<()> {
        let done = match totp {
            // The step is reset only when the secret changes, so re-storing the same sealed
            // secret to flip `enabled` keeps a just-used code from working again. The CASE
            // comes first: MySQL evaluates SET assignments left to right and later ones see
            // earlier results (SQLite always sees the old row); this order means the same
            // on both.
            Some(t) => sqlx::query(
                "UPDATE users SET \
                 totp_last_step = CASE WHEN totp_secret = ? THEN totp_last_step ELSE 0 END, \
                 totp_secret = ?, totp_enabled = ? WHERE id = ?",
            )
            .bind(t.sealed_secret.as_slice())
            .bind(t.sealed_secret.as_slice())
            .bind(i64::from(t.enabled))
            .bind(user_id),
            None => {
                sqlx::query("UPDATE users SET totp_secret = NULL, totp_enabled = 0 WHERE id = ?")
                    .bind(user_id)
            }
        }
        .execute(self.pool())
        .await
        .map_err(db_err("user"))?;
        if D::rows_affected(&done) == 0 {
            return Err(StoreError::NotFound("user".into()));
        }
        Ok(())
    }

    async fn use_totp_step(&self, user_id: &str, step: u64) -> StoreResult<bool> {
        let step = to_db_u64(step);
        let done =
            sqlx::query("UPDATE users SET totp_last_step = ? WHERE id = ? AND totp_last_step < ?")
                .bind(step)
                .bind(user_id)
                .bind(step)
                .execute(self.pool())
                .await
                .map_err(db_err("user"))?;
        if D::rows_affected(&done) == 1 {
            return Ok(true);
        }
        // Nothing changed: tell an unknown user from a used step.
        let exists = sqlx::query("SELECT 1 FROM users WHERE id = ?")
            .bind(user_id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err("user"))?;
        match exists {
            Some(_) => Ok(false),
            None => Err(StoreError::NotFound("user".into())),
        }
    }

    // ---- refresh tokens -------------------------------------------------------------

    async fn insert_refresh(&self, token: &RefreshRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(token.token_hash.as_str())
        .bind(token.family_id.as_str())
        .bind(token.user_id.as_str())
        .bind(to_db_time(token.created_at))
        .bind(to_db_time(token.expires_at))
        .execute(self.pool())
        .await
        .map_err(db_err("refresh token"))?;
        Ok(())
    }

    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new: &RefreshRecord,
        now: UnixMillis,
    ) -> StoreResult<Rotation> {
        let now = to_db_time(now);
        let mut tx = self.pool().begin().await.map_err(db_err("refresh token"))?;
        // Claim the old token: only one caller can move it from live to used. Starting
        // with a write also makes SQLite take its write lock up front (no lock upgrade).
        let marked = sqlx::query(
            "UPDATE refresh_tokens SET used_at = ? \
             WHERE token_hash = ? AND used_at IS NULL AND revoked = 0 AND expires_at >= ?",
        )
        .bind(now)
        .bind(old_hash)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err("refresh token"))?;
        if D::rows_affected(&marked) == 1 {
            let row = sqlx::query(SELECT_REFRESH)
                .bind(old_hash)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err("refresh token"))?;
            let old = rows::refresh(&row)?;
            // The new token always joins the old one's family and user, whatever the
            // caller put in `new`: a rotation can never move a session.
            sqlx::query(
                "INSERT INTO refresh_tokens \
                 (token_hash, family_id, user_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(new.token_hash.as_str())
            .bind(old.family_id.as_str())
            .bind(old.user_id.as_str())
            .bind(to_db_time(new.created_at))
            .bind(to_db_time(new.expires_at))
            .execute(&mut *tx)
            .await
            .map_err(db_err("refresh token"))?;
            tx.commit().await.map_err(db_err("refresh token"))?;
            return Ok(Rotation::Rotated(old));
        }
        tx.rollback().await.map_err(db_err("refresh token"))?;

        // Not live. A used, revoked or expired token never becomes live again, so this
        // read cannot be overtaken by a change that would alter the answer.
        let Some(row) = sqlx::query(SELECT_REFRESH)
            .bind(old_hash)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err("refresh token"))?
        else {
            return Ok(Rotation::NotFound);
        };
        let old = rows::refresh(&row)?;
        if rows::refresh_spent(&row)? {
            // Reuse wins over expiry: a replayed token kills its family even if late.
            self.revoke_refresh_family(&old.family_id).await?;
            return Ok(Rotation::Reused {
                family_id: old.family_id,
                user_id: old.user_id,
            });
        }
        if to_db_time(old.expires_at) < now {
            return Ok(Rotation::Expired);
        }
        // Live now but not when we tried: it was inserted in between. Treat as unknown.
        Ok(Rotation::NotFound)
    }

    async fn revoke_refresh_family(&self, family_id: &str) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE refresh_tokens SET revoked = 1 \
             WHERE family_id = ? AND revoked = 0 AND used_at IS NULL",
        )
        .bind(family_id)
        .execute(self.pool())
        .await
        .map_err(db_err("refresh token"))?;
        Ok(D::rows_affected(&done))
    }

    async fn revoke_user_refresh(&self, user_id: &str) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE refresh_tokens SET revoked = 1 \
             WHERE user_id = ? AND revoked = 0 AND used_at IS NULL",
        )
        .bind(user_id)
        .execute(self.pool())
        .await
        .map_err(db_err("refresh token"))?;
        Ok(D::rows_affected(&done))
    }

    async fn refresh_by_hash(&self, hash: &str) -> StoreResult<Option<RefreshRecord>> {
        let row = sqlx::query(SELECT_REFRESH)
            .bind(hash)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err("refresh token"))?;
        row.as_ref().map(rows::refresh).transpose()
    }

    // ---- passkeys (WebAuthn) ------------------------------------------------------------

    async fn insert_passkey(&self, pk: &PasskeyRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO passkeys (credential_id, user_id, data, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(pk.credential_id.as_str())
        .bind(pk.user_id.as_str())
        .bind(pk.data.as_str())
        .bind(to_db_time(pk.created_at))
        .execute(self.pool())
        .await
        .map_err(db_err("passkey"))?;
        Ok(())
    }

    async fn passkeys_for_user(&self, user_id: &str) -> StoreResult<Vec<PasskeyRecord>> {
        let found = sqlx::query(SELECT_PASSKEYS)
            .bind(user_id)
            .fetch_all(self.pool())
            .await
            .map_err(db_err("passkey"))?;
        found.iter().map(rows::passkey).collect()
    }

    async fn update_passkey(&self, credential_id: &str, data: &str) -> StoreResult<()> {
        let done = sqlx::query("UPDATE passkeys SET data = ? WHERE credential_id = ?")
            .bind(data)
            .bind(credential_id)
            .execute(self.pool())
            .await
            .map_err(db_err("passkey"))?;
        if D::rows_affected(&done) == 0 {
            return Err(StoreError::NotFound("passkey".into()));
        }
        Ok(())
    }

    async fn put_ceremony(&self, c: &Ceremony) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO ceremonies (id, kind, user_id, data, expires_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(c.id.as_str())
        .bind(c.kind.as_str())
        .bind(c.user_id.as_deref())
        .bind(c.data.as_str())
        .bind(to_db_time(c.expires_at))
        .execute(self.pool())
        .await
        .map_err(db_err("ceremony"))?;
        Ok(())
    }

    async fn take_ceremony(&self, id: &str, now: UnixMillis) -> StoreResult<Option<Ceremony>> {
        let Some(row) = sqlx::query(SELECT_CEREMONY)
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err("ceremony"))?
        else {
            return Ok(None);
        };
        // Whoever deletes the row owns it. An expired one is deleted too (clean-up) but
        // not returned.
        let done = sqlx::query("DELETE FROM ceremonies WHERE id = ?")
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(db_err("ceremony"))?;
        if D::rows_affected(&done) != 1 {
            return Ok(None);
        }
        let ceremony = rows::ceremony(&row)?;
        Ok((ceremony.expires_at >= now).then_some(ceremony))
    }

    // ---- once-only keys -----------------------------------------------------------------

    async fn claim_once(
        &self,
        scope: &str,
        key: &str,
        expires_at: UnixMillis,
        now: UnixMillis,
    ) -> StoreResult<bool> {
        // Autocommit on purpose (see the module docs): an expired claim is removed, then
        // the key's primary key decides between concurrent claimers. InnoDB may pick
        // either statement as a deadlock victim when several claim one expired key at
        // once; the victim's statement did nothing, so the claim is simply tried again.
        let mut attempts = 0u32;
        loop {
            attempts = attempts.saturating_add(1);
            let deleted = sqlx::query(
                "DELETE FROM once_keys WHERE scope = ? AND once_key = ? AND expires_at < ?",
            )
            .bind(scope)
            .bind(key)
            .bind(to_db_time(now))
            .execute(self.pool())
            .await;
            let inserted = match deleted {
                Ok(_) => {
                    sqlx::query(
                        "INSERT INTO once_keys (scope, once_key, expires_at) VALUES (?, ?, ?)",
                    )
                    .bind(scope)
                    .bind(key)
                    .bind(to_db_time(expires_at))
                    .execute(self.pool())
                    .await
                }
                Err(e) => Err(e),
            };
            match inserted {
                Ok(_) => return Ok(true),
                Err(e) if is_unique_violation(&e) => return Ok(false),
                Err(e) if attempts < 5 && is_deadlock(&e) => {}
                Err(e) => return Err(db_err("once key")(e)),
            }
        }
    }

    // ---- discovery (flow 0) -----------------------------------------------------------

    async fn insert_discovery(&self, d: &DiscoveryRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO discovery_sessions (id, hwid_hash, agent_pub, agent_version, \
             agent_manifest_hash, source_hash, status, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(d.id.as_str())
        .bind(d.hwid_hash.as_str())
        .bind(d.agent_pub.as_str())
        .bind(d.agent_version.as_str())
        .bind(d.agent_manifest_hash.as_str())
        .bind(d.source_hash.as_str())
        .bind(rows::discovery_status_str(d.status))
        .bind(to_db_time(d.created_at))
        .bind(to_db_time(d.expires_at))
        .execute(self.pool())
        .await
        .map_err(db_err("discovery session"))?;
        Ok(())
    }

    async fn discovery(&self, id: &str) -> StoreResult<Option<DiscoveryRecord>> {
        let row = sqlx::query(SELECT_DISCOVERY)
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err("discovery session"))?;
        row.as_ref().map(rows::discovery).transpose()
    }

    async fn confirm_discovery(&self, id: &str, now: UnixMillis) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE discovery_sessions SET status = ? \
             WHERE id = ? AND status = ? AND expires_at >= ?",
        )
        .bind(rows::discovery_status_str(DiscoveryStatus::Confirmed))
        .bind(id)
        .bind(rows::discovery_status_str(DiscoveryStatus::Pending))
        .bind(to_db_time(now))
        .execute(self.pool())
        .await
        .map_err(db_err("discovery session"))?;
        Ok(D::rows_affected(&done) == 1)
    }

    // ---- pairing (flow 1) -------------------------------------------------------------

    async fn insert_pairing(&self, p: &PairingRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO pairings (token_hash, device_id, agent_pub, device_name, csr_pem, \
             created_at, expires_at, used_at, used_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(p.token_hash.as_str())
        .bind(p.device_id.as_str())
        .bind(p.agent_pub.as_str())
        .bind(p.device_name.as_str())
        .bind(p.csr_pem.as_str())
        .bind(to_db_time(p.created_at))
        .bind(to_db_time(p.expires_at))
        .bind(p.used_at.map(to_db_time))
        .bind(p.used_by.as_deref())
        .execute(self.pool())
        .await
        .map_err(db_err("pairing"))?;
        Ok(())
    }

    async fn pairing_by_token_hash(&self, hash: &str) -> StoreResult<Option<PairingRecord>> {
        let row = sqlx::query(SELECT_PAIRING)
            .bind(hash)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err("pairing"))?;
        row.as_ref().map(rows::pairing).transpose()
    }

    async fn consume_pairing(
        &self,
        hash: &str,
        user_id: &str,
        now: UnixMillis,
    ) -> StoreResult<Result<PairingRecord, PairingRefusal>> {
        let now = to_db_time(now);
        let done = sqlx::query(
            "UPDATE pairings SET used_at = ?, used_by = ? \
             WHERE token_hash = ? AND used_at IS NULL AND expires_at >= ?",
        )
        .bind(now)
        .bind(user_id)
        .bind(hash)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(db_err("pairing"))?;
        let won = D::rows_affected(&done) == 1;
        // Once used, a pairing never changes again: this read shows what the UPDATE did
        // (or why it did nothing).
        let Some(record) = self.pairing_by_token_hash(hash).await? else {
            return Ok(Err(PairingRefusal::NotFound));
        };
        Ok(if won {
            Ok(record)
        } else if record.used_at.is_some() {
            Err(PairingRefusal::Used)
        } else {
            Err(PairingRefusal::Expired)
        })
    }

    // ---- devices ----------------------------------------------------------------------

    async fn insert_device(&self, d: &Device) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO devices (id, name, hwid_hash, agent_pub, os, owner_id, status, \
             cert_serial, cert_pem, created_at, paired_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(d.id.as_str())
        .bind(d.name.as_str())
        .bind(d.hwid_hash.as_str())
        .bind(d.agent_pub.as_str())
        .bind(d.os.as_str())
        .bind(d.owner_id.as_deref())
        .bind(d.status.as_str())
        .bind(d.cert_serial.as_deref())
        .bind(d.cert_pem.as_deref())
        .bind(to_db_time(d.created_at))
        .bind(d.paired_at.map(to_db_time))
        .execute(self.pool())
        .await
        .map_err(db_err("device id or certificate serial"))?;
        Ok(())
    }

    async fn device(&self, id: &str) -> StoreResult<Option<Device>> {
        let row = sqlx::query(SELECT_DEVICE)
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err("device"))?;
        row.as_ref().map(rows::device).transpose()
    }

    async fn devices_by_id(&self, ids: &[&str]) -> StoreResult<Vec<Device>> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            // Built from a constant and a count only: no input in the text. The list is
            // padded to a power of two (by repeating its last id, which `IN` ignores), so
            // that a connection's statement cache holds a few such statements, not one
            // for every batch size.
            let placeholders = chunk.len().next_power_of_two().min(IDS_PER_STATEMENT);
            let statement = format!(
                "{SELECT_DEVICES_IN} ({})",
                vec!["?"; placeholders].join(", ")
            );
            let mut q = sqlx::query(AssertSqlSafe(statement));
            let last = chunk.last().copied().unwrap_or_default();
            for &id in chunk.iter().chain(std::iter::repeat_n(
                &last,
                placeholders.saturating_sub(chunk.len()),
            )) {
                q = q.bind(id);
            }
            let rows = q.fetch_all(self.pool()).await.map_err(db_err("device"))?;
            for row in &rows {
                found.push(rows::device(row)?);
            }
        }
        Ok(found)
    }

    async fn devices_for_owner(&self, user_id: &str) -> StoreResult<Vec<Device>> {
        let found = sqlx::query(SELECT_DEVICES_BY_OWNER)
            .bind(user_id)
            .fetch_all(self.pool())
            .await
            .map_err(db_err("device"))?;
        found.iter().map(rows::device).collect()
    }

    async fn all_devices(&self) -> StoreResult<Vec<Device>> {
        let found = sqlx::query(SELECT_ALL_DEVICES)
            .fetch_all(self.pool())
            .await
            .map_err(db_err("device"))?;
        found.iter().map(rows::device).collect()
    }

    async fn update_device(&self, d: &Device) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE devices SET name = ?, owner_id = ?, status = ?, cert_serial = ?, \
             cert_pem = ?, paired_at = ? WHERE id = ?",
        )
        .bind(d.name.as_str())
        .bind(d.owner_id.as_deref())
        .bind(d.status.as_str())
        .bind(d.cert_serial.as_deref())
        .bind(d.cert_pem.as_deref())
        .bind(d.paired_at.map(to_db_time))
        .bind(d.id.as_str())
        .execute(self.pool())
        .await
        .map_err(db_err("device certificate serial"))?;
        if D::rows_affected(&done) == 0 {
            return Err(StoreError::NotFound("device".into()));
        }
        Ok(())
    }

    async fn device_by_cert_serial(&self, serial: &str) -> StoreResult<Option<Device>> {
        let row = sqlx::query(SELECT_DEVICE_BY_SERIAL)
            .bind(serial)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err("device"))?;
        row.as_ref().map(rows::device).transpose()
    }

    // ---- settings ---------------------------------------------------------------------

    async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT value FROM settings WHERE name = ?")
            .bind(key)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err("setting"))?;
        row.map(|r| r.text("value")).transpose()
    }

    async fn set_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        sqlx::query(D::UPSERT_SETTING)
            .bind(key)
            .bind(value)
            .execute(self.pool())
            .await
            .map_err(db_err("setting"))?;
        Ok(())
    }

    // ---- audit ------------------------------------------------------------------------

    async fn append_audit(&self, e: &NewAuditEvent) -> StoreResult<u64> {
        self.append_audit_sql(e).await
    }

    async fn audit_after(&self, after: u64, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        self.audit_after_sql(after, limit).await
    }

    async fn audit_query(
        &self,
        filter: &AuditFilter,
        order: AuditOrder,
        limit: u32,
    ) -> StoreResult<Vec<AuditEvent>> {
        self.audit_query_sql(filter, order, limit).await
    }

    async fn audit_count(&self, filter: &AuditFilter) -> StoreResult<u64> {
        self.audit_count_sql(filter).await
    }

    // ---- telemetry, rollups, last seen (sql/telemetry.rs) --------------------------------

    async fn insert_telemetry_event(&self, e: &NewTelemetryEvent) -> StoreResult<bool> {
        self.insert_telemetry_event_sql(e).await
    }

    async fn insert_telemetry_events(
        &self,
        events: &[NewTelemetryEvent],
    ) -> StoreResult<Vec<bool>> {
        self.insert_telemetry_events_sql(events).await
    }

    async fn telemetry_events(
        &self,
        device_id: &str,
        since: UnixMillis,
        limit: u32,
    ) -> StoreResult<Vec<TelemetryEvent>> {
        self.telemetry_events_sql(device_id, since, limit).await
    }

    async fn latest_points(
        &self,
        device_ids: &[&str],
        per_device: u32,
    ) -> StoreResult<HashMap<String, Vec<TelemetryPoint>>> {
        self.latest_points_sql(device_ids, per_device).await
    }

    async fn telemetry_between(
        &self,
        device_id: &str,
        from: UnixMillis,
        to: UnixMillis,
    ) -> StoreResult<Vec<TelemetryPoint>> {
        self.telemetry_between_sql(device_id, from, to).await
    }

    async fn prune_telemetry_before(&self, before: UnixMillis) -> StoreResult<u64> {
        self.prune_telemetry_before_sql(before).await
    }

    async fn upsert_rollups(&self, rollups: &[Rollup]) -> StoreResult<()> {
        self.upsert_rollups_sql(rollups).await
    }

    async fn rollups(
        &self,
        device_id: &str,
        period: RollupPeriod,
        since: UnixMillis,
        limit: u32,
    ) -> StoreResult<Vec<Rollup>> {
        self.rollups_sql(device_id, period, since, limit).await
    }

    async fn set_last_seen(&self, device_id: &str, at: UnixMillis) -> StoreResult<()> {
        self.set_last_seen_sql(device_id, at).await
    }

    async fn device_last_seen(&self, device_id: &str) -> StoreResult<Option<UnixMillis>> {
        self.device_last_seen_sql(device_id).await
    }

    async fn devices_last_seen_before(&self, before: UnixMillis) -> StoreResult<Vec<SeenDevice>> {
        self.devices_last_seen_before_sql(before).await
    }

    async fn devices_seen_since(&self, since: UnixMillis) -> StoreResult<Vec<SeenDevice>> {
        self.devices_seen_since_sql(since).await
    }

    // ---- commands (sql/commands.rs) ------------------------------------------------------

    async fn insert_command(
        &self,
        c: &NewCommand,
        detail: &serde_json::Value,
    ) -> StoreResult<bool> {
        self.insert_command_sql(c, detail).await
    }

    async fn command(&self, id: &str) -> StoreResult<Option<Command>> {
        self.command_sql(id).await
    }

    async fn device_commands(&self, device_id: &str, limit: u32) -> StoreResult<Vec<Command>> {
        self.device_commands_sql(device_id, limit).await
    }

    async fn commands_due_for_retry(
        &self,
        now: UnixMillis,
        limit: u32,
    ) -> StoreResult<Vec<Command>> {
        self.commands_due_for_retry_sql(now, limit).await
    }

    async fn commands_expired(&self, now: UnixMillis, limit: u32) -> StoreResult<Vec<Command>> {
        self.commands_expired_sql(now, limit).await
    }

    async fn commands_queued_before(
        &self,
        before: UnixMillis,
        limit: u32,
    ) -> StoreResult<Vec<Command>> {
        self.commands_queued_before_sql(before, limit).await
    }

    async fn commands_in_flight(&self, device_id: &str, limit: u32) -> StoreResult<Vec<Command>> {
        self.commands_in_flight_sql(device_id, limit).await
    }

    async fn count_undelivered(&self, device_id: &str) -> StoreResult<u64> {
        self.count_undelivered_sql(device_id).await
    }

    async fn transition_command(
        &self,
        id: &str,
        from: &[CommandState],
        to: CommandState,
        at: UnixMillis,
        update: &CommandUpdate,
    ) -> StoreResult<Option<(CommandState, Command)>> {
        self.transition_command_sql(id, from, to, at, update).await
    }

    async fn command_transitions(&self, id: &str) -> StoreResult<Vec<CommandTransition>> {
        self.command_transitions_sql(id).await
    }

    async fn mark_command_viewed(&self, id: &str, at: UnixMillis) -> StoreResult<bool> {
        self.mark_command_viewed_sql(id, at).await
    }

    async fn insert_policy(&self, p: &PolicyRecord) -> StoreResult<bool> {
        self.insert_policy_sql(p).await
    }

    async fn current_policy(&self) -> StoreResult<Option<PolicyRecord>> {
        self.current_policy_sql().await
    }

    async fn add_command_approval(&self, a: &CommandApproval) -> StoreResult<bool> {
        self.add_command_approval_sql(a).await
    }

    async fn command_approvals(&self, command_id: &str) -> StoreResult<Vec<CommandApproval>> {
        self.command_approvals_sql(command_id).await
    }

    async fn commands_awaiting_approval(&self, limit: u32) -> StoreResult<Vec<Command>> {
        self.commands_awaiting_approval_sql(limit).await
    }

    async fn insert_owner_keys(&self, r: &OwnerKeysRecord) -> StoreResult<bool> {
        self.insert_owner_keys_sql(r).await
    }

    async fn owner_keys_statements(&self, user_id: &str) -> StoreResult<Vec<OwnerKeysRecord>> {
        self.owner_keys_statements_sql(user_id).await
    }

    async fn count_commands(&self, q: &CommandCount) -> StoreResult<u64> {
        self.count_commands_sql(q).await
    }

    async fn record_second_factor(
        &self,
        session_id: &str,
        user_id: &str,
        at: UnixMillis,
    ) -> StoreResult<()> {
        self.record_second_factor_sql(session_id, user_id, at).await
    }

    async fn last_second_factor(
        &self,
        session_id: &str,
        user_id: &str,
    ) -> StoreResult<Option<UnixMillis>> {
        self.last_second_factor_sql(session_id, user_id).await
    }

    async fn insert_artifact(&self, a: &Artifact) -> StoreResult<()> {
        self.insert_artifact_sql(a).await
    }

    async fn artifact(&self, id: &str) -> StoreResult<Option<Artifact>> {
        self.artifact_sql(id).await
    }

    async fn mark_artifact_uploaded(
        &self,
        id: &str,
        size_bytes: u64,
        sha256: &str,
        at: UnixMillis,
    ) -> StoreResult<bool> {
        self.mark_artifact_uploaded_sql(id, size_bytes, sha256, at)
            .await
    }

    // ---- alerts (sql/alerts.rs) ----------------------------------------------------------

    async fn insert_alert(&self, a: &Alert) -> StoreResult<bool> {
        self.insert_alert_sql(a).await
    }

    async fn alerts_for_owner(
        &self,
        owner_id: &str,
        include_acked: bool,
        limit: u32,
    ) -> StoreResult<Vec<Alert>> {
        self.alerts_for_owner_sql(owner_id, include_acked, limit)
            .await
    }

    async fn all_alerts(&self, include_acked: bool, limit: u32) -> StoreResult<Vec<Alert>> {
        self.all_alerts_sql(include_acked, limit).await
    }

    async fn alert(&self, id: &str) -> StoreResult<Option<Alert>> {
        self.alert_sql(id).await
    }

    async fn ack_alert(&self, id: &str, user_id: &str, now: UnixMillis) -> StoreResult<bool> {
        self.ack_alert_sql(id, user_id, now).await
    }

    async fn open_alert(&self, device_id: &str, kind: &str) -> StoreResult<Option<Alert>> {
        self.open_alert_sql(device_id, kind).await
    }

    async fn latest_alert(&self, device_id: &str, kind: &str) -> StoreResult<Option<Alert>> {
        self.latest_alert_sql(device_id, kind).await
    }
}
