//! [`Offload`]: a runtime on a thread of its own for the agent sessions' store reads
//! (and, at the priority of bulk work, for the analytics: [`Offload::start_bulk`]).
//!
//! sqlx hands a statement to its connection and wakes the waiting task when the answer is
//! there; the connection goes back to the pool only when that task runs again. On the
//! server's runtime, with tens of thousands of sessions ready to run, that is a turn of
//! all of them: tens to hundreds of milliseconds under load. So each store read of a
//! session held one of the shared pool's 8 connections that long, the pool served a few
//! dozen reads a second, and the heartbeats' status checks alone ask 600 a second at
//! 18,000 agents: sessions, the API's logins and the live views waited 10–20 s for a
//! connection (docs/benchmarks.md). Run here, where nothing else waits to run, a read
//! holds its connection about as long as SQLite takes.
//!
//! What the sessions read at connect (their device, the policy in force, their owner's
//! keys) and at each heartbeat (their device's status, many in a query:
//! [`crate::gateway::DeviceReads`]) runs here, and so does taking
//! their commands in flight at connect (which moves `queued` ones to `sent`: a write,
//! once per session). A command's way through a live session stays in place: a
//! hand-over costs two thread switches, which an idle command round trip of a few
//! milliseconds would feel.
//!
//! Dropping the future of an operation [`Offload::run`] runs cancels the operation, as it
//! would in place: its task here is aborted. A task [`Offload::spawn`] starts runs until
//! it ends or the runtime stops.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::runtime::Handle;
use tokio_util::task::AbortOnDropHandle;

/// A single-threaded runtime on a thread of its own; the thread stops when this is
/// dropped.
#[derive(Debug)]
pub struct Offload {
    handle: Handle,
    /// Dropped with this: ends the thread's runtime.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Offload {
    /// Starts the thread (named `name`) and its runtime.
    pub fn start(name: &str) -> std::io::Result<Self> {
        Self::start_with(name, 0)
    }

    /// Starts the thread (named `name`) and its runtime at the priority of bulk work
    /// ([`crate::priority`]): it, and every thread started from it (a store
    /// connection's opened by a task here), gives way to the server's other threads.
    /// `nice` is how much lower (`telemetry.bulk_nice`).
    pub fn start_bulk(name: &str, nice: u8) -> std::io::Result<Self> {
        Self::start_with(name, nice)
    }

    fn start_with(name: &str, nice: u8) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // A runtime may not be dropped in async code, as the caller's may be: should the
        // thread not start, the runtime is taken back and shut down in the background.
        let slot = Arc::new(Mutex::new(Some(runtime)));
        let taken = Arc::clone(&slot);
        let started = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                crate::priority::lower_current_thread(nice);
                if let Some(runtime) = take(&taken) {
                    let _ = runtime.block_on(stopped);
                }
            });
        if let Err(e) = started {
            if let Some(runtime) = take(&slot) {
                runtime.shutdown_background();
            }
            return Err(e);
        }
        Ok(Self {
            handle,
            _stop: stop,
        })
    }

    /// Runs `task` on this runtime, detached: it ends by itself, or with the runtime.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(self.handle.spawn(task));
    }

    /// Runs `op` on this runtime and waits for its outcome; `None` if it panicked.
    pub async fn run<T, F>(&self, op: F) -> Option<T>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        AbortOnDropHandle::new(self.handle.spawn(op)).await.ok()
    }
}

/// What a shared slot holds, taken out (a poisoned lock still holds it).
fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

#[cfg(test)]
mod tests {
    use super::Offload;

    #[tokio::test]
    async fn an_operation_runs_on_the_thread_of_its_own() {
        let offload = Offload::start("tether-test-offload").unwrap();
        let name = offload
            .run(async { std::thread::current().name().map(str::to_owned) })
            .await;
        assert_eq!(name, Some(Some("tether-test-offload".to_owned())));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_bulk_runtime_runs_its_tasks_at_the_bulk_priority() {
        let own = crate::priority::current_nice().unwrap();
        if own > 14 {
            eprintln!("skipped: this test process already runs at nice {own}");
            return;
        }
        let offload = Offload::start_bulk("tether-test-bulk", 5).unwrap();
        let nice = offload.run(async { crate::priority::current_nice() }).await;
        assert_eq!(nice, Some(Some(own.saturating_add(5))));
        let plain = Offload::start("tether-test-offload").unwrap();
        let nice = plain.run(async { crate::priority::current_nice() }).await;
        assert_eq!(nice, Some(Some(own)));
    }

    #[tokio::test]
    async fn a_panicking_operation_is_none() {
        let offload = Offload::start("tether-test-offload").unwrap();
        let outcome: Option<()> = offload.run(async { panic!("on purpose") }).await;
        assert_eq!(outcome, None);
        assert_eq!(
            offload.run(async { 7 }).await,
            Some(7),
            "the runtime goes on"
        );
    }
}
