//! [`OwnThread`]: a bus whose every operation runs on a thread of its own.
//!
//! The embedded bus has one writer connection, and a group commit holds it from `BEGIN`
//! to `COMMIT`: several awaits on SQLite's worker thread. Run by a task of the server's
//! shared runtime, each of those awaits resumes only when the runtime gets round to that
//! task again; with tens of thousands of agent sessions ready to run, that is tens of
//! milliseconds each, and every other writer (the analytics' reads and
//! acknowledgements, the other sessions' appends) waits behind it. On a runtime of its
//! own, with nothing else to run, an operation holds the connection only as long as
//! SQLite takes; the caller's task is woken once, when the outcome is ready.
//!
//! Only what writes goes there: appends, keys, counters, group reads (which move the
//! group's position) and acknowledgements. What only reads — `get`, lengths and counts,
//! `read_after`, `ping` — runs in the caller's task as before: it takes none of the
//! writer's turn (the embedded bus reads on connections of their own), and two thread
//! switches would be added to every presence look-up on a command's way.
//!
//! Dropping an operation's future cancels the operation, as it would in place: the task
//! running it is aborted (at its next await, so a transaction rolls back) instead of
//! finishing for nobody — a group read's entries are not delivered to a caller that has
//! gone.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::{Bus, BusError, BusResult, Entry};

/// A bus that runs each writing operation of the one it wraps on a single-threaded
/// runtime on a thread of its own, and reads in place. The thread stops when this is
/// dropped.
#[derive(Debug)]
pub struct OwnThread {
    inner: Arc<dyn Bus>,
    handle: Handle,
    /// Dropped with the bus: ends the thread's runtime.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl OwnThread {
    /// Starts the thread (named `name`) and its runtime.
    pub fn start(inner: Arc<dyn Bus>, name: &str) -> BusResult<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BusError::Backend(format!("starting the bus's runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // A runtime may not be dropped in async code, as a caller may be: should the
        // thread not start, the runtime is taken back and shut down in the background.
        let slot = Arc::new(std::sync::Mutex::new(Some(runtime)));
        let taken = Arc::clone(&slot);
        let started = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                if let Some(runtime) = take(&taken) {
                    // Until the bus is dropped; its operations run meanwhile.
                    let _ = runtime.block_on(stopped);
                }
            });
        if let Err(e) = started {
            if let Some(runtime) = take(&slot) {
                runtime.shutdown_background();
            }
            return Err(BusError::Backend(format!("starting the bus's thread: {e}")));
        }
        Ok(Self {
            inner,
            handle,
            _stop: stop,
        })
    }

    /// Runs `op` on the bus's thread and waits for its outcome.
    async fn run<T, F, Fut>(&self, op: F) -> BusResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn Bus>) -> Fut,
        Fut: Future<Output = BusResult<T>> + Send + 'static,
    {
        let task = AbortOnDrop(self.handle.spawn(op(Arc::clone(&self.inner))));
        match task.await {
            Ok(outcome) => outcome,
            Err(e) => Err(BusError::Backend(format!("the bus's thread: {e}"))),
        }
    }
}

/// What a shared slot holds, taken out (a poisoned lock still holds it).
fn take<T>(slot: &std::sync::Mutex<Option<T>>) -> Option<T> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
}

/// A task that is aborted if whoever waits for it stops waiting.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        // A no-op once the task has finished.
        self.0.abort();
    }
}

#[async_trait]
impl Bus for OwnThread {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn ping(&self) -> BusResult<()> {
        self.inner.ping().await
    }

    async fn append(&self, stream: &str, payload: &[u8], max_len: u64) -> BusResult<String> {
        let (stream, payload) = (stream.to_owned(), payload.to_vec());
        self.run(|bus| async move { bus.append(&stream, &payload, max_len).await })
            .await
    }

    async fn ensure_group(&self, stream: &str, group: &str) -> BusResult<()> {
        let (stream, group) = (stream.to_owned(), group.to_owned());
        self.run(|bus| async move { bus.ensure_group(&stream, &group).await })
            .await
    }

    async fn backlog(&self, stream: &str, group: &str) -> BusResult<u64> {
        self.inner.backlog(stream, group).await
    }

    async fn read_group(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> BusResult<Vec<Entry>> {
        let (stream, group, consumer) = (stream.to_owned(), group.to_owned(), consumer.to_owned());
        self.run(|bus| async move {
            bus.read_group(&stream, &group, &consumer, count, block)
                .await
        })
        .await
    }

    async fn read_after(
        &self,
        stream: &str,
        after: &str,
        count: usize,
        block: Duration,
    ) -> BusResult<Vec<Entry>> {
        self.inner.read_after(stream, after, count, block).await
    }

    async fn last_id(&self, stream: &str) -> BusResult<String> {
        self.inner.last_id(stream).await
    }

    async fn ack(&self, stream: &str, group: &str, ids: &[String]) -> BusResult<u64> {
        let (stream, group, ids) = (stream.to_owned(), group.to_owned(), ids.to_vec());
        self.run(|bus| async move { bus.ack(&stream, &group, &ids).await })
            .await
    }

    async fn claim_stale(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> BusResult<Vec<Entry>> {
        let (stream, group, consumer) = (stream.to_owned(), group.to_owned(), consumer.to_owned());
        self.run(|bus| async move {
            bus.claim_stale(&stream, &group, &consumer, min_idle, count)
                .await
        })
        .await
    }

    async fn pending_count(&self, stream: &str, group: &str) -> BusResult<u64> {
        self.inner.pending_count(stream, group).await
    }

    async fn stream_len(&self, stream: &str) -> BusResult<u64> {
        self.inner.stream_len(stream).await
    }

    async fn put_ttl(&self, key: &str, value: &[u8], ttl: Duration) -> BusResult<()> {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.run(|bus| async move { bus.put_ttl(&key, &value, ttl).await })
            .await
    }

    async fn get(&self, key: &str) -> BusResult<Option<Vec<u8>>> {
        self.inner.get(key).await
    }

    async fn delete_if(&self, key: &str, value: &[u8]) -> BusResult<bool> {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.run(|bus| async move { bus.delete_if(&key, &value).await })
            .await
    }

    async fn incr_window(&self, key: &str, window: Duration) -> BusResult<u64> {
        let key = key.to_owned();
        self.run(|bus| async move { bus.incr_window(&key, window).await })
            .await
    }
}
