//! The behavioural suite: every scenario runs against every backend — SQLite in a file
//! (in a temp dir), SQLite in memory, and MySQL/MariaDB in a database of its own that is
//! dropped afterwards. MariaDB must be reachable (`mysql://root@127.0.0.1:3306`, or
//! `$TETHER_TEST_MYSQL_URL`): if it is not, the MySQL tests fail, they do not skip.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "tests: a broken expectation should panic with its message"
)]

mod fixtures;
mod harness;
mod suite;

/// Declares one `#[tokio::test]` per scenario and backend.
macro_rules! behaviour {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite_file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    crate::harness::with_sqlite_file(crate::suite::$scenario).await;
                }
            )*
        }
        mod sqlite_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    crate::harness::with_sqlite_memory(crate::suite::$scenario).await;
                }
            )*
        }
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    crate::harness::with_mysql(crate::suite::$scenario).await;
                }
            )*
        }
    };
}

behaviour!(
    ping_and_backend,
    users_create_and_look_up,
    users_email_unique_case_insensitively,
    users_roles,
    totp_step_used_once_and_never_below,
    totp_secret_changes,
    refresh_rotation,
    refresh_reuse_revokes_family,
    refresh_expired_and_unknown,
    refresh_concurrent_rotation_one_wins,
    refresh_revoke_family_and_user,
    passkeys,
    ceremony_taken_once,
    ceremony_expired_not_returned,
    ceremony_concurrent_take_one_wins,
    claim_once_and_again_after_expiry,
    claim_once_concurrent_one_wins,
    discovery_confirmed_once,
    pairing_consumed_once,
    pairing_expired_and_unknown,
    pairing_concurrent_consume_one_wins,
    devices_insert_update_list,
    devices_by_cert_serial,
    devices_read_many_by_id,
    settings,
    audit_sequence_and_paging,
    audit_query_filters,
    audit_query_pages_both_ways,
    users_listed_with_device_counts,
    role_change_keeps_an_admin,
    role_change_concurrent_demotions_keep_an_admin,
    telemetry_insert_once_and_list,
    telemetry_batch_insert_is_all_or_nothing,
    telemetry_concurrent_batches_store_each_id_once,
    telemetry_latest_points_of_many_devices,
    telemetry_between_and_prune,
    rollups_upsert_and_list,
    last_seen_and_silent_devices,
    alerts_raise_list_ack,
    alerts_concurrent_raise_one_wins,
    commands_ingest_transitions_and_queries,
    commands_concurrent_transition_one_wins,
    commands_transition_times_never_go_back,
    commands_transition_only_for_its_device,
    commands_state_changes_are_audited_with_them,
    commands_transitions_beside_other_writers,
    policy_versions_claimed_once,
    command_approvals_once_per_user,
    commands_awaiting_approval_and_expiry,
    count_commands_by_scope_and_method,
    second_factor_per_session_never_backwards,
    owner_keys_statements_once_per_version,
);

/// Reopening a store runs no migration twice and keeps the data.
#[tokio::test]
async fn sqlite_reopen_keeps_data() {
    use tether_store::{SqliteStore, Store};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tether.db");
    let first = SqliteStore::open(&path).await.unwrap();
    first.set_setting("k", "v").await.unwrap();
    first.close().await;
    let second = SqliteStore::open(&path).await.unwrap();
    assert_eq!(second.setting("k").await.unwrap().as_deref(), Some("v"));
    second.close().await;
}

/// Connecting again to a migrated MySQL database migrates nothing and keeps the data.
#[tokio::test]
async fn mysql_reconnect_keeps_data() {
    use tether_store::{MysqlStore, Store, TestDb};
    let url = TestDb::admin_url();
    let (first, db) = MysqlStore::create_test_database(&url)
        .await
        .unwrap_or_else(|e| harness::mysql_unreachable(&url, &e));
    first.set_setting("k", "v").await.unwrap();
    first.close().await;
    let second = MysqlStore::connect(&db.url()).await.unwrap();
    let kept = second.setting("k").await;
    second.close().await;
    db.drop_database().await.unwrap();
    assert_eq!(kept.unwrap().as_deref(), Some("v"));
}
