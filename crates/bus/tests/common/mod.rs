//! The test harness: one behavioural test body, run against the embedded bus (in a temp
//! dir, with a manual clock) and against a real Redis (a unique namespace per test,
//! deleted afterwards, also when the test fails).
//!
//! Redis is at `redis://127.0.0.1:6379` unless `TETHER_TEST_REDIS_URL` says otherwise. If
//! it cannot be reached the Redis tests fail — they never skip.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use tether_bus::{Bus, EmbeddedBus, OwnThread, RedisBus};
use tether_proto::{ManualClock, UnixMillis};

/// Where the embedded bus's manual clock starts.
const START: UnixMillis = UnixMillis(1_700_000_000_000);

/// Which backend a test runs against.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Backend {
    Embedded,
    /// The embedded bus behind `OwnThread`.
    EmbeddedOwnThread,
    Redis,
}

/// How a test lets time pass.
#[derive(Debug)]
enum Time {
    /// The embedded bus reads this clock: advance it, never sleep.
    Manual(Arc<ManualClock>),
    /// Redis keeps time itself: really wait.
    Real,
}

/// A bus under test and the means to let time pass for it.
#[derive(Debug)]
pub(crate) struct Harness {
    pub(crate) bus: Arc<dyn Bus>,
    time: Time,
    store: Store,
}

#[derive(Debug)]
enum Store {
    Embedded {
        dir: TempDir,
        own_thread: bool,
    },
    Redis {
        url: String,
        buses: std::sync::Mutex<Vec<Arc<RedisBus>>>,
    },
}

impl Harness {
    pub(crate) async fn embedded(own_thread: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(START));
        let bus: Arc<dyn Bus> = Arc::new(
            EmbeddedBus::open(&dir.path().join("bus.sqlite"), "test", clock.clone())
                .await
                .unwrap(),
        );
        let bus: Arc<dyn Bus> = if own_thread {
            Arc::new(OwnThread::start(bus, "test-bus").unwrap())
        } else {
            bus
        };
        Self {
            bus,
            time: Time::Manual(clock),
            store: Store::Embedded { dir, own_thread },
        }
    }

    pub(crate) async fn redis() -> Self {
        let url = redis_url();
        let bus = Arc::new(connect_redis(&url, &unique_namespace()).await);
        Self {
            bus: bus.clone(),
            time: Time::Real,
            store: Store::Redis {
                url,
                buses: std::sync::Mutex::new(vec![bus]),
            },
        }
    }

    /// Which backend this is.
    pub(crate) fn backend(&self) -> Backend {
        match self.store {
            Store::Embedded {
                own_thread: false, ..
            } => Backend::Embedded,
            Store::Embedded {
                own_thread: true, ..
            } => Backend::EmbeddedOwnThread,
            Store::Redis { .. } => Backend::Redis,
        }
    }

    /// Lets `d` pass for the bus: advances the manual clock (embedded) or sleeps (Redis).
    pub(crate) async fn pass(&self, d: Duration) {
        match &self.time {
            Time::Manual(clock) => clock.advance(d),
            Time::Real => tokio::time::sleep(d).await,
        }
    }

    /// A second bus on the same backend (same file / same Redis) in another namespace.
    pub(crate) async fn other_namespace(&self) -> Arc<dyn Bus> {
        match (&self.store, &self.time) {
            (Store::Embedded { dir, .. }, Time::Manual(clock)) => Arc::new(
                EmbeddedBus::open(&dir.path().join("bus.sqlite"), "other", clock.clone())
                    .await
                    .unwrap(),
            ),
            (Store::Redis { url, buses }, _) => {
                let bus = Arc::new(connect_redis(url, &unique_namespace()).await);
                buses.lock().unwrap().push(bus.clone());
                bus
            }
            _ => unreachable!("the embedded harness has a manual clock"),
        }
    }

    /// Deletes what the test left in Redis.
    async fn cleanup(&self) {
        if let Store::Redis { buses, .. } = &self.store {
            let buses = buses.lock().unwrap().clone();
            for bus in buses {
                bus.delete_namespace().await.unwrap();
            }
        }
    }
}

/// Runs one behavioural test against a backend; cleans up even if it panics, then
/// re-raises the panic.
pub(crate) async fn run<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(Arc<Harness>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let harness = Arc::new(match backend {
        Backend::Embedded => Harness::embedded(false).await,
        Backend::EmbeddedOwnThread => Harness::embedded(true).await,
        Backend::Redis => Harness::redis().await,
    });
    let outcome = tokio::spawn(test(harness.clone())).await;
    harness.cleanup().await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task did not finish: {e}"),
        }
    }
}

fn redis_url() -> String {
    std::env::var("TETHER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn connect_redis(url: &str, namespace: &str) -> RedisBus {
    match RedisBus::connect(url, namespace).await {
        Ok(bus) => bus,
        Err(e) => {
            panic!("the Redis tests need a Redis server at {url} (set TETHER_TEST_REDIS_URL): {e}")
        }
    }
}

/// `tether-test-<pid>-<random>`: unique across concurrent tests and test processes.
fn unique_namespace() -> String {
    let random = RandomState::new().build_hasher().finish();
    format!("tether-test-{}-{random:016x}", std::process::id())
}
