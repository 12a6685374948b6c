//! [`DeviceReads`]: the agent sessions' reads of their device at each heartbeat, asked
//! together.
//!
//! Each heartbeat re-reads the session's device (a revocation ends the session there).
//! A fleet's heartbeats come due together — when the agents start sending, when a spell
//! of refused samples ends — and thousands of single-row reads then queued on the
//! sessions' few connections for seconds, each session's frames (its commands' acks and
//! results among them) waiting behind its read (docs/benchmarks.md). Here the reads are
//! handed to one task on the session reads' runtime ([`crate::offload`]); it takes
//! whatever has been asked meanwhile (up to [`MAX_BATCH`]), reads those devices in one
//! query ([`Store::devices_by_id`]) and answers each. Nothing waits to fill a batch: a
//! read asked while the task is idle goes to the store at once, on its own, and batches
//! form exactly when reads are asked faster than the store answers them one by one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tether_store::{Device, Store, StoreError, StoreResult};
use tokio::sync::{mpsc, oneshot};

use crate::offload::Offload;

/// The most devices read in one query.
const MAX_BATCH: usize = 1024;

/// The longest one batch's query may take before its askers are answered with an
/// error: a statement that never returns (a half-open connection) must not hold every
/// session's next heartbeat. Far above what a batch takes (milliseconds).
const READ_LIMIT: Duration = Duration::from_secs(10);

/// One read and where its answer goes.
struct Ask {
    id: String,
    answer: oneshot::Sender<StoreResult<Option<Device>>>,
}

/// Reads devices by id, batched with the other sessions' reads (see the module docs).
/// The task ends when this is dropped, or with the runtime it runs on.
#[derive(Debug)]
pub struct DeviceReads {
    asks: mpsc::UnboundedSender<Ask>,
    /// Read from directly should the task be gone (a panic): slower, never wrong.
    store: Arc<dyn Store>,
}

impl DeviceReads {
    /// Starts the reading task on `runtime`, reading from `store`.
    pub fn start(store: Arc<dyn Store>, runtime: &Offload) -> Self {
        let (asks, asked) = mpsc::unbounded_channel();
        runtime.spawn(read_until_closed(Arc::clone(&store), asked));
        Self { asks, store }
    }

    /// The device `id` as the store has it now (`None`: no such device). Dropping the
    /// future drops the question, not the batch it is in.
    pub async fn device(&self, id: &str) -> StoreResult<Option<Device>> {
        let (answer, answered) = oneshot::channel();
        let ask = Ask {
            id: id.to_owned(),
            answer,
        };
        if self.asks.send(ask).is_ok()
            && let Ok(read) = answered.await
        {
            return read;
        }
        // The task is gone without an answer (it answers every ask it takes, so only a
        // panic or a stopped runtime gets here): the read is made here, on its own. A
        // revocation must still end the session at its next heartbeat.
        self.store.device(id).await
    }
}

/// Answers batches of reads until every [`DeviceReads`] handle is dropped.
async fn read_until_closed(store: Arc<dyn Store>, mut asked: mpsc::UnboundedReceiver<Ask>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while asked.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // Questions whose askers have gone (their sessions ended) are not read.
        batch.retain(|a: &Ask| !a.answer.is_closed());
        if batch.is_empty() {
            continue;
        }
        let ids: Vec<&str> = batch.iter().map(|a| a.id.as_str()).collect();
        let read = tokio::time::timeout(READ_LIMIT, store.devices_by_id(&ids)).await;
        tracing::trace!(devices = batch.len(), "device reads answered together");
        match read {
            Ok(Ok(found)) => {
                let by_id: HashMap<&str, &Device> =
                    found.iter().map(|d| (d.id.as_str(), d)).collect();
                for a in batch.drain(..) {
                    let device = by_id.get(a.id.as_str()).map(|&d| d.clone());
                    let _ = a.answer.send(Ok(device));
                }
            }
            Ok(Err(e)) => {
                // One row that does not decode (a status a newer node wrote, say) fails
                // the whole query: each device is read again on its own, so only its own
                // asker gets the error and a revoked device beside it is still seen.
                tracing::warn!(error = %e, devices = batch.len(), "device reads failed together; reading each alone");
                for a in batch.drain(..) {
                    let store = Arc::clone(&store);
                    drop(tokio::spawn(async move {
                        let read = tokio::time::timeout(READ_LIMIT, store.device(&a.id))
                            .await
                            .unwrap_or_else(|_| Err(too_slow()));
                        let _ = a.answer.send(read);
                    }));
                }
            }
            Err(_) => {
                tracing::warn!(
                    devices = batch.len(),
                    limit_s = READ_LIMIT.as_secs(),
                    "device reads took too long"
                );
                for a in batch.drain(..) {
                    let _ = a.answer.send(Err(too_slow()));
                }
            }
        }
    }
}

/// The answer to an ask whose read passed [`READ_LIMIT`].
fn too_slow() -> StoreError {
    StoreError::Database(format!(
        "the device read took over {} s",
        READ_LIMIT.as_secs()
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tether_store::{Device, DeviceStatus, SqliteStore, Store, UnixMillis};

    use super::DeviceReads;
    use crate::offload::Offload;

    fn device(id: &str, status: DeviceStatus) -> Device {
        Device {
            id: id.to_owned(),
            name: format!("PC {id}"),
            hwid_hash: "12".repeat(32),
            agent_pub: "YWdlbnQtcHVi".to_owned(),
            os: "windows".to_owned(),
            owner_id: None,
            status,
            cert_serial: None,
            cert_pem: None,
            created_at: UnixMillis(1_700_000_000_000),
            paired_at: None,
        }
    }

    async fn store_with(devices: &[Device]) -> Arc<dyn Store> {
        let store = SqliteStore::open_in_memory().await.unwrap();
        for d in devices {
            store.insert_device(d).await.unwrap();
        }
        Arc::new(store)
    }

    #[tokio::test]
    async fn a_read_finds_the_device_or_none() {
        let revoked = device("dev_r", DeviceStatus::Revoked);
        let store = store_with(std::slice::from_ref(&revoked)).await;
        let runtime = Offload::start("tether-test-reads").unwrap();
        let reads = DeviceReads::start(store, &runtime);
        assert_eq!(reads.device("dev_r").await.unwrap(), Some(revoked));
        assert_eq!(reads.device("dev_unknown").await.unwrap(), None);
    }

    #[tokio::test]
    async fn reads_asked_together_each_get_their_own_answer() {
        let made: Vec<Device> = (0..3000)
            .map(|n| device(&format!("dev_{n:04}"), DeviceStatus::Active))
            .collect();
        let store = store_with(&made).await;
        let runtime = Offload::start("tether-test-reads").unwrap();
        let reads = Arc::new(DeviceReads::start(store, &runtime));
        // Every device twice, and as many unknown ids, all at once: more than a batch.
        let mut asked = Vec::new();
        for n in 0..6000_usize {
            for id in [format!("dev_{:04}", n % 3000), format!("dev_x{n}")] {
                let reads = Arc::clone(&reads);
                asked.push(tokio::spawn(async move {
                    let found = reads.device(&id).await.unwrap();
                    (id, found)
                }));
            }
        }
        for a in asked {
            let (id, found) = a.await.unwrap();
            match found {
                Some(d) => assert_eq!(d.id, id),
                None => assert!(id.starts_with("dev_x"), "{id} not found"),
            }
        }
    }

    #[tokio::test]
    async fn reads_go_on_when_the_task_is_gone() {
        let store = store_with(&[device("dev_r", DeviceStatus::Revoked)]).await;
        let runtime = Offload::start("tether-test-reads").unwrap();
        let reads = DeviceReads::start(store, &runtime);
        // Stopping the runtime ends the task with it.
        drop(runtime);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let found = reads.device("dev_r").await.unwrap().unwrap();
        assert_eq!(found.status, DeviceStatus::Revoked);
        assert_eq!(reads.device("dev_unknown").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_read_given_up_does_not_hold_up_the_others() {
        let store = store_with(&[device("dev_a", DeviceStatus::Active)]).await;
        let runtime = Offload::start("tether-test-reads").unwrap();
        let reads = DeviceReads::start(store, &runtime);
        for _ in 0..100 {
            // Asked (a timeout polls its future once first) and dropped, most of them
            // before they are answered.
            let _ = tokio::time::timeout(std::time::Duration::ZERO, reads.device("dev_a")).await;
        }
        let found = tokio::time::timeout(std::time::Duration::from_secs(10), reads.device("dev_a"))
            .await
            .expect("answered")
            .unwrap();
        assert_eq!(found.map(|d| d.id), Some("dev_a".to_owned()));
    }
}
