//! Listing users and changing roles: the statements behind those parts of
//! [`Store`](crate::Store), shared by both dialects.
//!
//! `change_user_role` must never leave the lab without an admin, however requests
//! interleave. It runs in one transaction that first takes every admin row with a write
//! that changes nothing (`SET role = role`): SQLite takes its one write lock there, and
//! InnoDB locks the admin rows (and the gaps of the role index) in index order, so two
//! concurrent changes queue one behind the other instead of each counting the other's
//! admin row before it commits — and, taking the same locks in the same order, they
//! cannot deadlock. The count is that statement's row count (matched rows: sqlx connects
//! to MySQL with `CLIENT_FOUND_ROWS`).

use sqlx::{Database, Encode, Executor, IntoArguments, Type};

use super::rows::{self, RowExt};
use super::statements::SELECT_ALL_USERS;
use super::{Dialect, SqlStore, db_err, from_db_u64};
use crate::{Role, RoleChange, StoreError, StoreResult, User};

// The bounds of `impl Store for SqlStore<D>` that these statements need. They name the
// crate-private `RowExt`, which is fine: the methods are `pub(super)`, for that impl only.
#[allow(private_bounds, reason = "pub(super) helpers of the Store impl")]
impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    <D::Db as Database>::Row: RowExt,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db>,
{
    pub(super) async fn list_users_sql(&self) -> StoreResult<Vec<User>> {
        let found = sqlx::query(SELECT_ALL_USERS)
            .fetch_all(self.pool())
            .await
            .map_err(db_err("user"))?;
        found.iter().map(rows::user).collect()
    }

    pub(super) async fn device_counts_by_owner_sql(&self) -> StoreResult<Vec<(String, u64)>> {
        let found = sqlx::query(
            "SELECT owner_id, COUNT(*) AS n FROM devices \
             WHERE owner_id IS NOT NULL AND status <> 'revoked' \
             GROUP BY owner_id ORDER BY owner_id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(db_err("device count"))?;
        found
            .iter()
            .map(|row| {
                Ok((
                    row.text("owner_id")?,
                    from_db_u64(row.int("n")?, "device count")?,
                ))
            })
            .collect()
    }

    pub(super) async fn change_user_role_sql(
        &self,
        user_id: &str,
        role: Role,
    ) -> StoreResult<RoleChange> {
        let mut tx = self.pool().begin().await.map_err(db_err("user"))?;
        let admins = sqlx::query("UPDATE users SET role = role WHERE role = ?")
            .bind(Role::Admin.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err("user"))?;
        let admins = D::rows_affected(&admins);
        // The user's row is locked by this write (and by the one above if an admin), so
        // the role read next is the one the final UPDATE replaces.
        let found = sqlx::query("UPDATE users SET role = role WHERE id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err("user"))?;
        if D::rows_affected(&found) == 0 {
            tx.rollback().await.map_err(db_err("user"))?;
            return Ok(RoleChange::NotFound);
        }
        let row = sqlx::query("SELECT role FROM users WHERE id = ?")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err("user"))?;
        let previous = row.text("role")?;
        let previous = Role::parse(&previous)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown role {previous:?}")))?;
        if previous == Role::Admin && role != Role::Admin && admins <= 1 {
            tx.rollback().await.map_err(db_err("user"))?;
            return Ok(RoleChange::LastAdmin);
        }
        sqlx::query("UPDATE users SET role = ? WHERE id = ?")
            .bind(role.as_str())
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err("user"))?;
        tx.commit().await.map_err(db_err("user"))?;
        Ok(RoleChange::Changed { previous })
    }
}
