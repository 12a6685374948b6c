//! The embedded bus: durable, in its own SQLite file (WAL, `synchronous=NORMAL`), for
//! single-host deployments. Other processes may open the same file; every write is a
//! short `BEGIN IMMEDIATE` transaction, so they serialise on SQLite's write lock.
//!
//! Time (entry ids, delivery times and idleness, TTLs, counter windows) comes from the
//! injected [`Clock`]; only the wait of a blocking [`Bus::read_group`] uses tokio time.
//!
//! Within one process, writes go through a single-connection pool (so this process's
//! writers queue in the pool instead of spinning in SQLite's busy handler) and reads
//! through a small pool of their own (WAL readers do not block the writer).
//!
//! With `synchronous=NORMAL` in WAL mode a committed write survives a crash of the process
//! but the last transactions may be lost on power failure: acceptable for a bus whose
//! producers retry and whose consumers are idempotent (delivery is at-least-once anyway).

mod keys;
mod schema;
mod streams;

use std::path::Path;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tether_proto::Clock;
use tokio::sync::Notify;

use crate::id::EntryId;
use crate::{Bus, BusError, BusResult, Entry, args};

/// How long a connection waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Reader connections per bus.
const READERS: u32 = 4;
/// How often a blocked `read_group` looks for entries appended by other processes.
/// Appends by this process wake it at once.
const POLL_INTERVAL: Duration = Duration::from_millis(75);

/// The embedded, SQLite-backed [`Bus`]. See the module docs.
#[derive(Debug)]
pub struct EmbeddedBus {
    /// One connection: every write transaction of this process.
    writer: SqlitePool,
    /// Reads that need no write lock.
    reader: SqlitePool,
    namespace: String,
    clock: Arc<dyn Clock>,
    /// Per stream (scoped name) with a blocked reader: signalled after every append to
    /// that stream by this bus, to wake its readers (and only them).
    appended: std::sync::Mutex<std::collections::HashMap<String, Arc<Notify>>>,
    /// Writes waiting to be committed (group commit, see [`EmbeddedBus::grouped`]).
    queued: std::sync::Mutex<Vec<QueuedWrite>>,
    /// Held by the one task committing queued writes.
    write_turn: tokio::sync::Mutex<()>,
    /// When expired keys were last swept (bus clock, ms): at most once a second.
    swept_at: std::sync::atomic::AtomicI64,
}

/// A write waiting for its turn (names already scoped), and where its outcome goes.
#[derive(Debug)]
struct QueuedWrite {
    write: Write,
    done: tokio::sync::oneshot::Sender<BusResult<Written>>,
}

/// The writes that are committed in groups.
#[derive(Debug)]
enum Write {
    /// `append(stream, payload, max_len)`.
    Append(String, Vec<u8>, u64),
    /// `put_ttl(key, value, ttl_ms)`.
    Put(String, Vec<u8>, u64),
}

/// What a grouped write returns.
#[derive(Debug)]
enum Written {
    Appended(EntryId),
    Put,
}

impl EmbeddedBus {
    /// Opens (creating if needed) the bus file at `path` and brings its schema up to date.
    /// Names are scoped by `namespace` (stored as `"{namespace}:{name}"`).
    pub async fn open(path: &Path, namespace: &str, clock: Arc<dyn Clock>) -> BusResult<Self> {
        args::namespace(namespace)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        // No ping before each checkout (see the store's pool): one round trip to the
        // connection's worker thread less per operation.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(db_err)?;
        schema::migrate(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(db_err)?;
        Ok(Self {
            writer,
            reader,
            namespace: namespace.to_owned(),
            clock,
            appended: std::sync::Mutex::default(),
            queued: std::sync::Mutex::new(Vec::new()),
            write_turn: tokio::sync::Mutex::new(()),
            swept_at: std::sync::atomic::AtomicI64::new(i64::MIN),
        })
    }

    /// Closes the connections (checkpointing the WAL). Operations after this fail with
    /// [`BusError::Backend`]. Dropping the bus without closing is also safe: every
    /// committed write is already in the WAL.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// The writes waiting for the write turn.
    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<QueuedWrite>> {
        // Pushing or taking a Vec cannot leave it half-changed: a poisoned lock is fine.
        self.queued.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `"{namespace}:{name}"`, the stored form of a stream or key name.
    fn scoped(&self, name: &str) -> String {
        format!("{}:{}", self.namespace, name)
    }

    /// Now, from the injected clock, in milliseconds.
    fn now_ms(&self) -> u64 {
        self.clock.now().0
    }

    /// Starts a write transaction that holds SQLite's write lock from its first statement,
    /// so a read-then-write inside it cannot be overtaken by another process.
    async fn begin_write(&self) -> BusResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)
    }
}

impl EmbeddedBus {
    /// Group commit: every append and `put_ttl` queues; whoever gets the write turn
    /// commits all that are queued in one transaction and hands each its outcome. Under
    /// load (thousands of telemetry samples and heartbeats a second) one transaction
    /// carries many writes instead of one each; alone, a write is committed at once.
    async fn grouped(&self, write: Write) -> BusResult<Written> {
        let (done, mut outcome) = tokio::sync::oneshot::channel();
        self.queue().push(QueuedWrite { write, done });
        {
            let _turn = self.write_turn.lock().await;
            match outcome.try_recv() {
                // An earlier turn committed it.
                Ok(r) => return r,
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                    return Err(abandoned());
                }
            }
            let batch = std::mem::take(&mut *self.queue());
            if !batch.is_empty() {
                let (writes, senders): (Vec<_>, Vec<_>) =
                    batch.into_iter().map(|q| (q.write, q.done)).unzip();
                match self.commit_group(&writes).await {
                    Ok(results) => {
                        for (done, r) in senders.into_iter().zip(results) {
                            let _ = done.send(Ok(r));
                        }
                    }
                    Err(e) => {
                        for done in senders {
                            let _ = done.send(Err(e.clone()));
                        }
                    }
                }
                self.notify_appended(writes.iter().filter_map(|w| match w {
                    Write::Append(stream, ..) => Some(stream.as_str()),
                    Write::Put(..) => None,
                }));
            }
        }
        outcome.await.map_err(|_| abandoned())?
    }

    /// The signal of appends to `stream` (scoped), created for a reader about to block.
    fn appended_to(&self, stream: &str) -> Arc<Notify> {
        let mut map = self.appended.lock().unwrap_or_else(PoisonError::into_inner);
        // Signals nobody waits on any more go (a reader holds its Arc while it waits).
        if map.len() > 64 {
            map.retain(|_, n| Arc::strong_count(n) > 1);
        }
        Arc::clone(map.entry(stream.to_owned()).or_default())
    }

    /// Wakes the blocked readers of each of `streams` (scoped).
    fn notify_appended<'a>(&self, streams: impl Iterator<Item = &'a str>) {
        let map = self.appended.lock().unwrap_or_else(PoisonError::into_inner);
        if map.is_empty() {
            return;
        }
        for stream in streams {
            if let Some(n) = map.get(stream) {
                n.notify_waiters();
            }
        }
    }

    /// Commits `writes` in one transaction: the puts, then the appends (they are
    /// independent of each other); outcomes in the order of `writes`.
    async fn commit_group(&self, writes: &[Write]) -> BusResult<Vec<Written>> {
        let mut puts = Vec::new();
        let mut appends = Vec::new();
        for w in writes {
            match w {
                Write::Put(k, v, ttl) => puts.push((k.as_str(), v.as_slice(), *ttl)),
                Write::Append(s, p, max) => appends.push((s.as_str(), p.as_slice(), *max)),
            }
        }
        let mut tx = self.begin_write().await?;
        if !puts.is_empty() {
            self.put_keys_in(&mut tx, &puts).await?;
        }
        let ids = self.append_entries_in(&mut tx, &appends).await?;
        tx.commit().await.map_err(db_err)?;
        let mut ids = ids.into_iter();
        writes
            .iter()
            .map(|w| match w {
                Write::Put(..) => Ok(Written::Put),
                Write::Append(..) => ids
                    .next()
                    .map(Written::Appended)
                    .ok_or_else(|| BusError::Invalid("an append without its id".into())),
            })
            .collect()
    }
}

/// The error of a write whose committer was cancelled before it wrote it (its transaction
/// rolled back: nothing was appended).
fn abandoned() -> BusError {
    BusError::Backend("the write was abandoned before it was committed".into())
}

#[async_trait]
impl Bus for EmbeddedBus {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn ping(&self) -> BusResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn append(&self, stream: &str, payload: &[u8], max_len: u64) -> BusResult<String> {
        args::name("stream", stream)?;
        args::max_len(max_len)?;
        match self
            .grouped(Write::Append(
                self.scoped(stream),
                payload.to_vec(),
                max_len,
            ))
            .await?
        {
            Written::Appended(id) => Ok(id.to_string()),
            Written::Put => Err(BusError::Invalid("an append was answered as a put".into())),
        }
    }

    async fn ensure_group(&self, stream: &str, group: &str) -> BusResult<()> {
        args::name("stream", stream)?;
        args::name("group", group)?;
        self.create_group(&self.scoped(stream), group).await
    }

    async fn read_group(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> BusResult<Vec<Entry>> {
        args::name("stream", stream)?;
        args::name("group", group)?;
        args::name("consumer", consumer)?;
        args::count("count", count)?;
        self.read_blocking(&self.scoped(stream), group, consumer, count, block)
            .await
    }

    async fn read_after(
        &self,
        stream: &str,
        after: &str,
        count: usize,
        block: Duration,
    ) -> BusResult<Vec<Entry>> {
        args::name("stream", stream)?;
        args::count("count", count)?;
        let after: EntryId = after.parse()?;
        self.read_after_blocking(&self.scoped(stream), after, count, block)
            .await
    }

    async fn backlog(&self, stream: &str, group: &str) -> BusResult<u64> {
        args::name("stream", stream)?;
        args::name("group", group)?;
        self.group_backlog(&self.scoped(stream), group).await
    }

    async fn last_id(&self, stream: &str) -> BusResult<String> {
        args::name("stream", stream)?;
        Ok(self.newest_id(&self.scoped(stream)).await?.to_string())
    }

    async fn ack(&self, stream: &str, group: &str, ids: &[String]) -> BusResult<u64> {
        args::name("stream", stream)?;
        args::name("group", group)?;
        self.ack_entries(&self.scoped(stream), group, ids).await
    }

    async fn claim_stale(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> BusResult<Vec<Entry>> {
        args::name("stream", stream)?;
        args::name("group", group)?;
        args::name("consumer", consumer)?;
        args::count("count", count)?;
        self.claim_entries(&self.scoped(stream), group, consumer, min_idle, count)
            .await
    }

    async fn pending_count(&self, stream: &str, group: &str) -> BusResult<u64> {
        args::name("stream", stream)?;
        args::name("group", group)?;
        self.count_pending(&self.scoped(stream), group).await
    }

    async fn stream_len(&self, stream: &str) -> BusResult<u64> {
        args::name("stream", stream)?;
        self.count_entries(&self.scoped(stream)).await
    }

    async fn put_ttl(&self, key: &str, value: &[u8], ttl: Duration) -> BusResult<()> {
        args::name("key", key)?;
        let ttl = args::positive_millis("ttl", ttl)?;
        self.grouped(Write::Put(self.scoped(key), value.to_vec(), ttl))
            .await
            .map(|_| ())
    }

    async fn get(&self, key: &str) -> BusResult<Option<Vec<u8>>> {
        args::name("key", key)?;
        self.get_key(&self.scoped(key)).await
    }

    async fn delete_if(&self, key: &str, value: &[u8]) -> BusResult<bool> {
        args::name("key", key)?;
        self.delete_key_if(&self.scoped(key), value).await
    }

    async fn incr_window(&self, key: &str, window: Duration) -> BusResult<u64> {
        args::name("key", key)?;
        let window = args::positive_millis("window", window)?;
        self.incr_counter(&self.scoped(key), window).await
    }
}

/// A database failure: the backend is unavailable (or refused the operation).
fn db_err(e: sqlx::Error) -> BusError {
    BusError::Backend(format!("embedded bus: {e}"))
}

/// A value bound for an INTEGER column. Our values (milliseconds, sequence numbers,
/// counts) fit; one that does not is an argument out of range.
fn to_db(what: &'static str, v: u64) -> BusResult<i64> {
    i64::try_from(v).map_err(|_| BusError::Invalid(format!("{what} {v} is out of range")))
}

/// A value read from an INTEGER column we only ever write non-negative values to.
fn from_db(what: &'static str, v: i64) -> BusResult<u64> {
    u64::try_from(v).map_err(|_| BusError::Corrupt(format!("stored {what} {v} is negative")))
}

#[cfg(test)]
mod tests;
