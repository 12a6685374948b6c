//! [`AuditWriter`]: the SQLite store's audit events, appended in groups by a thread of
//! their own.
//!
//! An audit event is one `INSERT`, and on SQLite every write waits for the database's one
//! write lock. While the analytics stored a fleet's telemetry in the main file (before it
//! had a file of its own) they held that lock for tens of milliseconds at a time, several times a second, and SQLite's busy handler makes a
//! waiting writer sleep (up to 100 ms between tries) while it holds one of the pool's
//! connections. Appended one by one, the audit events of a reconnect storm (a
//! `device.connect` and a `device.disconnect` per session) tied up every connection of
//! the shared pool that way, and the storm's sessions, the API's logins and every
//! other reader waited seconds for a connection (docs/benchmarks.md).
//!
//! Here every append is queued to one writer, which takes whatever is waiting (up to
//! [`MAX_GROUP`] events), appends them in one write transaction and answers each caller
//! with its event's sequence number. So at most one connection waits for the write lock
//! on the audit trail's behalf, and one wait serves a whole group. The writer runs on a
//! runtime of its own (on its own thread): run by a task of the server's runtime, each
//! statement's await would resume only when that runtime got round to it again, tens of
//! milliseconds when it runs tens of thousands of sessions, with the lock held.
//!
//! Sequence numbers are assigned in the order the writer takes the events, one group
//! after another; an event is answered only once its group has committed. Should a
//! group's transaction fail, its events are appended one by one, so that one bad event
//! fails only its own caller. A caller that stops waiting does not take its event back:
//! an event already queued is still appended.

use std::sync::{Arc, Mutex, PoisonError};

use sqlx::{Pool, Sqlite};
use tokio::sync::{mpsc, oneshot};

use super::SqliteDialect;
use crate::sql::append_audit_on;
use crate::{NewAuditEvent, StoreError, StoreResult};

/// The most events appended in one transaction.
pub(crate) const MAX_GROUP: usize = 512;
/// Events queued for the writer before appenders wait for room.
const QUEUE: usize = 4_096;

/// One queued append and where its outcome goes.
struct Pending {
    event: NewAuditEvent,
    done: oneshot::Sender<StoreResult<u64>>,
}

/// Appends audit events in groups, on a thread of its own (see the module docs). The
/// thread ends when this is dropped, once the events already queued are appended.
#[derive(Debug)]
pub(crate) struct AuditWriter {
    queue: mpsc::Sender<Pending>,
}

impl AuditWriter {
    /// Starts the writer's thread over `pool`.
    pub(crate) fn start(pool: Pool<Sqlite>) -> StoreResult<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Database(format!("starting the audit writer: {e}")))?;
        let (queue, queued) = mpsc::channel(QUEUE);
        // A runtime may not be dropped in async code, as the caller's may be: should the
        // thread not start, the runtime is taken back and shut down in the background.
        let slot = Arc::new(Mutex::new(Some(runtime)));
        let taken = Arc::clone(&slot);
        let started = std::thread::Builder::new()
            .name("tether-audit".to_owned())
            .spawn(move || {
                if let Some(runtime) = take(&taken) {
                    runtime.block_on(write_groups(pool, queued));
                }
            });
        if let Err(e) = started {
            if let Some(runtime) = take(&slot) {
                runtime.shutdown_background();
            }
            return Err(StoreError::Database(format!(
                "starting the audit writer's thread: {e}"
            )));
        }
        Ok(Self { queue })
    }

    /// Queues `event` and waits until its group has committed: its sequence number.
    pub(crate) async fn append(&self, event: NewAuditEvent) -> StoreResult<u64> {
        let (done, outcome) = oneshot::channel();
        self.queue
            .send(Pending { event, done })
            .await
            .map_err(|_| StoreError::Database("the audit writer has stopped".into()))?;
        outcome.await.map_err(|_| {
            StoreError::Database("the audit writer stopped before appending the event".into())
        })?
    }
}

/// What a shared slot holds, taken out (a poisoned lock still holds it).
fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// The writer: until every sender is gone, takes what is queued and appends it.
async fn write_groups(pool: Pool<Sqlite>, mut queued: mpsc::Receiver<Pending>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while queued.recv_many(&mut group, MAX_GROUP).await > 0 {
        let events: Vec<&NewAuditEvent> = group.iter().map(|p| &p.event).collect();
        let outcomes = append_group(&pool, &events).await;
        for (pending, outcome) in group.drain(..).zip(outcomes) {
            // A caller that stopped waiting has nothing to be told.
            let _ = pending.done.send(outcome);
        }
    }
}

/// Appends `events` in one transaction and returns their sequence numbers, in order;
/// should that fail, appends them one by one and returns each one's outcome.
async fn append_group(pool: &Pool<Sqlite>, events: &[&NewAuditEvent]) -> Vec<StoreResult<u64>> {
    if events.len() > 1 {
        match in_one_transaction(pool, events).await {
            Ok(seqs) => return seqs.into_iter().map(Ok).collect(),
            Err(e) => tracing::warn!(
                error = %e,
                events = events.len(),
                "an audit group failed; appending its events one by one"
            ),
        }
    }
    let mut outcomes = Vec::with_capacity(events.len());
    for e in events {
        outcomes.push(append_audit_on::<SqliteDialect, _>(pool, e).await);
    }
    outcomes
}

async fn in_one_transaction(
    pool: &Pool<Sqlite>,
    events: &[&NewAuditEvent],
) -> StoreResult<Vec<u64>> {
    use crate::sql::{Dialect, db_err};
    let mut tx = pool
        .begin_with(SqliteDialect::BEGIN_WRITE)
        .await
        .map_err(db_err("audit event"))?;
    let mut seqs = Vec::with_capacity(events.len());
    for e in events {
        seqs.push(append_audit_on::<SqliteDialect, _>(&mut *tx, e).await?);
    }
    tx.commit().await.map_err(db_err("audit event"))?;
    Ok(seqs)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use serde_json::json;
    use tether_proto::UnixMillis;

    use crate::{NewAuditEvent, SqliteStore, Store};

    fn event(i: usize) -> NewAuditEvent {
        NewAuditEvent {
            device_id: None,
            actor: format!("actor-{i}"),
            action: "device.connect".into(),
            target: None,
            outcome: "success".into(),
            detail: json!({"i": i}),
            trace_id: None,
            at: UnixMillis(1_000),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_each_get_the_sequence_number_of_their_own_event() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
        let appends: Vec<_> = (0..1_500)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { (i, store.append_audit(&event(i)).await.unwrap()) })
            })
            .collect();
        let mut seq_of = Vec::new();
        for a in appends {
            seq_of.push(a.await.unwrap());
        }
        let seqs: BTreeSet<u64> = seq_of.iter().map(|&(_, s)| s).collect();
        assert_eq!(
            seqs.len(),
            1_500,
            "every append has a sequence number of its own"
        );
        let stored = store.audit_after(0, 2_000).await.unwrap();
        assert_eq!(stored.len(), 1_500);
        for (i, seq) in seq_of {
            let e = stored.iter().find(|e| e.seq == seq).unwrap();
            assert_eq!(
                e.event.actor,
                format!("actor-{i}"),
                "seq {seq} is event {i}'s"
            );
            assert_eq!(e.event.detail, json!({"i": i}));
        }
        store.close().await;
    }

    #[tokio::test]
    async fn an_in_memory_store_appends_through_its_one_connection() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        let first = store.append_audit(&event(1)).await.unwrap();
        let second = store.append_audit(&event(2)).await.unwrap();
        assert!(second > first);
        assert_eq!(store.audit_after(0, 10).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_closed_store_refuses_an_append_with_an_error() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        store.close().await;
        let refused = store.append_audit(&event(1)).await;
        assert!(refused.is_err(), "{refused:?}");
    }
}
