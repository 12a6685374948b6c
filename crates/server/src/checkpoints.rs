//! The SQLite store's checkpoint loop, on a thread of its own (`tether-checkpoints`).
//!
//! In WAL mode a commit goes to the write-ahead log, and the log is copied back into
//! the database file from time to time. By default the commit that takes the log past
//! its threshold does the copy itself, with its `fsync`s, before it returns: with a
//! fleet's writes that is tens of megabytes, and whichever writer drew it (a command's
//! step, the analytics' batch of samples) waited for all of it. Here the server's pools
//! are [`FileTuning::checkpointed_elsewhere`] and this loop copies both files' logs
//! back every [`EVERY`], on a connection of its own ([`FileTuning::CHECKPOINTER`]),
//! without waiting for any reader or writer (`PASSIVE`). Should the loop stop, a commit
//! copies the log itself once it holds [`tether_store::CHECKPOINT_BACKSTOP_PAGES`].
//!
//! [`FileTuning::checkpointed_elsewhere`]: tether_store::FileTuning::checkpointed_elsewhere
//! [`FileTuning::CHECKPOINTER`]: tether_store::FileTuning::CHECKPOINTER

use std::time::{Duration, Instant};

use tether_store::SqliteStore;
use tokio::time::MissedTickBehavior;

use crate::offload::Offload;

/// How often the logs are copied back: a few seconds of a fleet's writes, so that a page
/// rewritten many times meanwhile (a device's part of an index) is copied once.
pub const EVERY: Duration = Duration::from_secs(5);

/// Starts the loop on a thread of its own, copying `store`'s logs back `every` (the
/// server: [`EVERY`]; open `store` with [`tether_store::FileTuning::CHECKPOINTER`]). The
/// loop ends when the returned thread is dropped.
pub fn start(store: SqliteStore, every: Duration) -> std::io::Result<Offload> {
    let thread = Offload::start("tether-checkpoints")?;
    thread.spawn(run(store, every));
    Ok(thread)
}

async fn run(store: SqliteStore, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick is at once; the first copy one interval after the start.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let started = Instant::now();
        match store.checkpoint().await {
            Ok((main, telemetry)) => tracing::debug!(
                main_log_pages = main.log_pages,
                main_copied_pages = main.copied_pages,
                telemetry_log_pages = telemetry.log_pages,
                telemetry_copied_pages = telemetry.copied_pages,
                ms = started.elapsed().as_secs_f64() * 1000.0,
                "store logs copied back"
            ),
            Err(e) => tracing::warn!(error = %e, "copying the store's logs back failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tether_store::{Device, DeviceStatus, FileTuning, SqliteStore, Store, UnixMillis};

    fn device(id: &str) -> Device {
        Device {
            id: id.to_owned(),
            name: format!("PC {id}"),
            hwid_hash: "12".repeat(32),
            agent_pub: "YWdlbnQtcHVi".to_owned(),
            os: "linux".to_owned(),
            owner_id: None,
            status: DeviceStatus::Active,
            cert_serial: None,
            cert_pem: None,
            created_at: UnixMillis(1_700_000_000_000),
            paired_at: None,
        }
    }

    /// The server's commits leave the log to the loop; the loop copies it into the file.
    #[tokio::test]
    async fn the_loop_copies_the_log_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tether.db");
        let store = SqliteStore::open_tuned(&path, FileTuning::SHARED.checkpointed_elsewhere())
            .await
            .unwrap();
        for n in 0..200 {
            store
                .insert_device(&device(&format!("dev_{n:03}")))
                .await
                .unwrap();
        }
        let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let before = size();
        let checkpointer = SqliteStore::open_tuned(&path, FileTuning::CHECKPOINTER)
            .await
            .unwrap();
        let _thread = super::start(checkpointer, Duration::from_millis(50)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while size() <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "the database file stayed at {before} bytes"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        store.close().await;
    }
}
