//! Runs a scenario on a fresh store of each backend.

use std::future::Future;
use std::sync::Arc;

use tether_store::{MysqlStore, SqliteStore, Store, StoreError, TestDb};

/// What every scenario gets: the store as the server holds it.
pub(crate) type Shared = Arc<dyn Store>;

pub(crate) async fn with_sqlite_file<F, Fut>(scenario: F)
where
    F: FnOnce(Shared) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("tether.db"))
            .await
            .unwrap(),
    );
    scenario(store.clone()).await;
    store.close().await;
}

pub(crate) async fn with_sqlite_memory<F, Fut>(scenario: F)
where
    F: FnOnce(Shared) -> Fut,
    Fut: Future<Output = ()>,
{
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    scenario(store.clone()).await;
    store.close().await;
}

/// Runs the scenario in its own database and drops that database afterwards, even when
/// the scenario panics (it runs in a task so the panic can be caught and re-raised).
pub(crate) async fn with_mysql<F, Fut>(scenario: F)
where
    F: FnOnce(Shared) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let url = TestDb::admin_url();
    let (store, db) = MysqlStore::create_test_database(&url)
        .await
        .unwrap_or_else(|e| mysql_unreachable(&url, &e));
    let store = Arc::new(store);
    let outcome = tokio::spawn(scenario(store.clone())).await;
    store.close().await;
    db.drop_database().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

pub(crate) fn mysql_unreachable(url: &str, e: &StoreError) -> ! {
    panic!(
        "these tests need MySQL/MariaDB at {url} (set {} to use another server): {e}",
        TestDb::ADMIN_URL_ENV
    )
}
