//! Migration 6 gives events written before it the device the server's rule
//! ([`concerned_device`]) would have given them, on both backends.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use serde_json::{Value, json};
use sqlx::AssertSqlSafe;

use crate::{AuditFilter, AuditOrder, MysqlStore, SqliteStore, Store, TestDb, concerned_device};

/// Old events: (target, detail).
fn old_events() -> Vec<(Option<&'static str>, Value)> {
    vec![
        (Some("dev_a"), json!({})),
        (Some("alr_1"), json!({"device_id": "dev_b"})),
        (Some("usr_1"), json!({"device_id": null})),
        (None, json!({"device_id": 5})),
        (Some("usr_2"), json!({"device_id": "usr_x"})),
        (None, json!({"nested": {"device_id": "dev_c"}})),
        (Some("dev_d"), json!({"device_id": "dev_e"})),
        (None, json!({"device_id": "dev_f", "method": "lock_screen"})),
    ]
}

/// The backfill statement of a migration file.
fn backfill(migration: &str) -> String {
    let start = migration.find("UPDATE audit_events").unwrap();
    let len = migration[start..].find(';').unwrap();
    migration[start..start + len].to_owned()
}

const INSERT_OLD: &str = "INSERT INTO audit_events (actor, action, target, outcome, detail, at) \
     VALUES ('usr_0', 'x.y', ?, 'success', ?, 1)";

async fn check(s: &dyn Store) {
    let read = s
        .audit_query(&AuditFilter::default(), AuditOrder::OldestFirst, 100)
        .await
        .unwrap();
    assert_eq!(read.len(), old_events().len());
    for (e, (target, detail)) in read.iter().zip(old_events()) {
        assert_eq!(
            e.event.device_id,
            concerned_device(target, &detail),
            "{target:?} {detail}"
        );
    }
}

#[tokio::test]
async fn sqlite_backfill_follows_the_rule() {
    let s = SqliteStore::open_in_memory().await.unwrap();
    for (target, detail) in old_events() {
        sqlx::query(INSERT_OLD)
            .bind(target)
            .bind(detail.to_string())
            .execute(s.pool())
            .await
            .unwrap();
    }
    let sql = backfill(include_str!(
        "../../../migrations/sqlite/0006_audit_device.sql"
    ));
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(s.pool())
        .await
        .unwrap();
    check(&s).await;
    s.close().await;
}

#[tokio::test]
async fn mysql_backfill_follows_the_rule() {
    let (s, db) = MysqlStore::create_test_database(&TestDb::admin_url())
        .await
        .unwrap();
    let s = std::sync::Arc::new(s);
    let store = s.clone();
    // In a task, so the database is dropped even when a check fails.
    let outcome = tokio::spawn(async move {
        for (target, detail) in old_events() {
            sqlx::query(INSERT_OLD)
                .bind(target)
                .bind(detail.to_string())
                .execute(store.pool())
                .await
                .unwrap();
        }
        let sql = backfill(include_str!(
            "../../../migrations/mysql/0006_audit_device.sql"
        ));
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(store.pool())
            .await
            .unwrap();
        check(&*store).await;
    })
    .await;
    s.close().await;
    db.drop_database().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
