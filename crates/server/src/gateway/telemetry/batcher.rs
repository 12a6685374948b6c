//! The telemetry samples this process's sessions accept, appended to the bus's
//! telemetry stream together: one entry for many samples.
//!
//! A stream entry costs the bus the same whatever it holds — the entry's row and its
//! index, its pending row and that one's index when the analytics read it, their removal
//! when they acknowledge it, the entry's removal when the stream is trimmed — so one
//! entry per sample cost the embedded bus 22.5 µs of CPU a sample and one per 100
//! samples 5.8 µs (`cargo run --release -p tether-bus --example
//! telemetry_stream_speed`, docs/benchmarks.md). Redis likewise counts commands, not
//! bytes.
//!
//! It works like a group commit: a session queues its sample and waits for its turn;
//! whoever has the turn appends everything queued, in entries of up to
//! [`RECORDS_PER_ENTRY`] appended together (one bus commit), and tells each sample's
//! session the outcome. Alone a sample is appended at once; under load the samples that
//! arrive while one turn's entries are being appended go in the next turn's. A session learns whether its own sample was kept, so a failure is still answered
//! with `UNAVAILABLE` naming it.

use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::oneshot;

use crate::events::{RECORDS_PER_ENTRY, TELEMETRY_MAX_LEN, TELEMETRY_STREAM};

/// One sample waiting for its turn (a serialized [`crate::events::TelemetryRecord`]),
/// and where its outcome goes.
#[derive(Debug)]
struct Queued {
    record: Vec<u8>,
    done: oneshot::Sender<Result<(), String>>,
}

/// See the module docs.
#[derive(Debug)]
pub struct TelemetryBatcher {
    queued: std::sync::Mutex<Vec<Queued>>,
    /// Held by the one task appending queued samples.
    turn: tokio::sync::Mutex<()>,
    /// Records per entry in thousandths, over the entries appended between the last two
    /// backlog reads ([`Self::note_backlog`], about a second: hundreds of entries under
    /// load); 0 before there is such a window. How many samples an entry of the
    /// analytics' backlog stands for: entries hold anything from 1 to
    /// [`RECORDS_PER_ENTRY`] records, so the mean of a few would swing by tens of times.
    mean_milli: AtomicU64,
    /// Entries, and the samples in them, appended since the process started.
    entries: AtomicU64,
    samples: AtomicU64,
    /// The backlog in entries as last read ([`Self::note_backlog`]), and `entries` and
    /// `samples` then.
    backlog_read: AtomicU64,
    appended_at_read: AtomicU64,
    samples_at_read: AtomicU64,
}

/// Where a queued sample's outcome comes ([`TelemetryBatcher::enqueue`]).
#[derive(Debug)]
pub struct Outcome(oneshot::Receiver<Result<(), String>>);

impl Default for TelemetryBatcher {
    fn default() -> Self {
        Self {
            queued: std::sync::Mutex::new(Vec::new()),
            turn: tokio::sync::Mutex::new(()),
            mean_milli: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            backlog_read: AtomicU64::new(0),
            appended_at_read: AtomicU64::new(0),
            samples_at_read: AtomicU64::new(0),
        }
    }
}

impl TelemetryBatcher {
    /// Appends `record` (a serialized [`crate::events::TelemetryRecord`]) to the
    /// telemetry stream, in an entry with whatever other samples are queued; returns once
    /// that entry is committed, or why it was not. [`Self::enqueue`] then
    /// [`Self::appended`].
    pub async fn append(&self, bus: &dyn tether_bus::Bus, record: Vec<u8>) -> Result<(), String> {
        let outcome = self.enqueue(record);
        self.appended(bus, outcome).await
    }

    /// Queues `record` for the next turn, at once: samples queued in this order go to the
    /// stream in this order. The outcome comes through [`Self::appended`], which must be
    /// awaited for the sample to be appended unless another sample's turn takes it.
    pub fn enqueue(&self, record: Vec<u8>) -> Outcome {
        let (done, outcome) = oneshot::channel();
        self.queue().push(Queued { record, done });
        Outcome(outcome)
    }

    /// Waits for a queued sample's outcome, taking the turn (and appending everything
    /// queued) if no one else appended it first.
    pub async fn appended(
        &self,
        bus: &dyn tether_bus::Bus,
        Outcome(mut outcome): Outcome,
    ) -> Result<(), String> {
        // Answered while waiting for the turn: no need to wait for the turn holder's
        // next commit.
        let turn = tokio::select! {
            biased;
            r = &mut outcome => return r.unwrap_or_else(|_| Err(abandoned())),
            turn = self.turn.lock() => turn,
        };
        match outcome.try_recv() {
            // An earlier turn appended it.
            Ok(r) => return r,
            Err(oneshot::error::TryRecvError::Empty) => {}
            Err(oneshot::error::TryRecvError::Closed) => return Err(abandoned()),
        }
        let batch = std::mem::take(&mut *self.queue());
        // Everything queued, in entries of up to RECORDS_PER_ENTRY started together: the
        // bus commits concurrent appends as one, so a turn costs one commit however many
        // samples waited for it.
        let mut senders = Vec::with_capacity(batch.len());
        let mut records = Vec::with_capacity(batch.len());
        for q in batch {
            senders.push(q.done);
            records.push(q.record);
        }
        let appends = records.chunks(RECORDS_PER_ENTRY).map(|chunk| async move {
            let appended = bus
                .append(TELEMETRY_STREAM, &entry_of(chunk), TELEMETRY_MAX_LEN)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            if appended.is_ok() {
                self.count_entry(chunk.len());
            }
            (chunk.len(), appended)
        });
        let mut senders = senders.into_iter();
        for (n, appended) in futures_util::future::join_all(appends).await {
            for done in senders.by_ref().take(n) {
                let _ = done.send(appended.clone());
            }
        }
        drop(turn);
        // Ours was in the queue this turn took (or an earlier one answered it).
        outcome.await.unwrap_or_else(|_| Err(abandoned()))
    }

    /// Notes the analytics' backlog just read from the bus, in entries.
    pub fn note_backlog(&self, entries: u64) {
        let appended = self.entries.load(Ordering::Relaxed);
        let samples = self.samples.load(Ordering::Relaxed);
        let window = appended.saturating_sub(self.appended_at_read.load(Ordering::Relaxed));
        let in_window = samples.saturating_sub(self.samples_at_read.load(Ordering::Relaxed));
        if let Some(mean) = in_window.saturating_mul(1000).checked_div(window) {
            self.mean_milli.store(mean, Ordering::Relaxed);
        }
        self.backlog_read.store(entries, Ordering::Relaxed);
        self.appended_at_read.store(appended, Ordering::Relaxed);
        self.samples_at_read.store(samples, Ordering::Relaxed);
    }

    /// The analytics' backlog in entries as last read, plus the entries this process
    /// appended since: between two reads of the bus, the backlog grows by at least those.
    pub fn backlog_entries(&self) -> u64 {
        let since = self
            .entries
            .load(Ordering::Relaxed)
            .saturating_sub(self.appended_at_read.load(Ordering::Relaxed));
        self.backlog_read
            .load(Ordering::Relaxed)
            .saturating_add(since)
    }

    /// The analytics' backlog in samples: the entries as last read ([`Self::samples_in`]),
    /// plus the samples this process appended since, counted exactly.
    pub fn backlog_samples(&self) -> u64 {
        let since = self
            .samples
            .load(Ordering::Relaxed)
            .saturating_sub(self.samples_at_read.load(Ordering::Relaxed));
        self.samples_in(self.backlog_read.load(Ordering::Relaxed))
            .saturating_add(since)
    }

    /// How many samples `entries` entries of the stream stand for: by the records per
    /// entry of those this process appended between the last two backlog reads (before
    /// there were two, of all it appended), at least one each.
    pub fn samples_in(&self, entries: u64) -> u64 {
        let mean = match self.mean_milli.load(Ordering::Relaxed) {
            0 => self
                .samples
                .load(Ordering::Relaxed)
                .saturating_mul(1000)
                .checked_div(self.entries.load(Ordering::Relaxed))
                .unwrap_or(1000),
            m => m,
        }
        .max(1000);
        entries.saturating_mul(mean).div_ceil(1000)
    }

    /// Counts an appended entry of `records` records.
    fn count_entry(&self, records: usize) {
        self.entries.fetch_add(1, Ordering::Relaxed);
        self.samples.fetch_add(
            u64::try_from(records).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Queued>> {
        // Pushing and draining a Vec cannot leave it half-changed: a poisoned lock is fine.
        self.queued.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The entry holding `records`: a JSON array of them (each already JSON).
fn entry_of(records: &[Vec<u8>]) -> Vec<u8> {
    crate::events::join_json(b"[", records, b"]")
}

/// The outcome of a sample whose turn was cancelled before it appended it.
fn abandoned() -> String {
    "the sample's append was abandoned before it was committed".into()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tether_bus::{Bus, EmbeddedBus};
    use tether_proto::SystemClock;

    use super::*;
    use crate::events::records_of;

    fn record(i: u64) -> crate::events::TelemetryRecord {
        crate::events::TelemetryRecord {
            device_id: format!("dev-{i}"),
            owner_id: None,
            message_id: format!("msg-{i}"),
            seq: i,
            received_at: tether_proto::UnixMillis(1_700_000_000_000),
            body: serde_json::from_value(serde_json::json!({
                "collected_at": 1_700_000_000_000u64, "cpu_pct": 12.5,
                "mem_used_bytes": 1u64 << 30, "mem_total_bytes": 8u64 << 30,
                "disks": [{"mount": "C:\\", "used_bytes": 40, "total_bytes": 100}],
                "net": {"rx_bps": 10.0, "tx_bps": 20.0, "rx_total_bytes": 1, "tx_total_bytes": 2}
            }))
            .unwrap(),
        }
    }

    /// An embedded bus in a temp dir (kept while the guard lives) with group `g` on the
    /// telemetry stream.
    async fn grouped_bus() -> (tempfile::TempDir, Arc<dyn Bus>) {
        let dir = tempfile::tempdir().unwrap();
        let bus: Arc<dyn Bus> = Arc::new(
            EmbeddedBus::open(&dir.path().join("bus.sqlite"), "t", Arc::new(SystemClock))
                .await
                .unwrap(),
        );
        bus.ensure_group(TELEMETRY_STREAM, "g").await.unwrap();
        (dir, bus)
    }

    #[tokio::test]
    async fn concurrent_samples_share_entries_and_every_one_is_appended_once() {
        let (_dir, bus) = grouped_bus().await;
        let batcher = Arc::new(TelemetryBatcher::default());
        // More than one entry holds, all at once.
        let n = u64::try_from(RECORDS_PER_ENTRY * 3).unwrap();
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let (bus, batcher) = (Arc::clone(&bus), Arc::clone(&batcher));
                tokio::spawn(async move {
                    let bytes = serde_json::to_vec(&record(i)).unwrap();
                    batcher.append(bus.as_ref(), bytes).await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let entries = bus
            .read_group(TELEMETRY_STREAM, "g", "c", 10_000, Duration::ZERO)
            .await
            .unwrap();
        assert!(
            entries.len() < RECORDS_PER_ENTRY * 3,
            "{} entries",
            entries.len()
        );
        let mut seqs: Vec<u64> = entries
            .iter()
            .flat_map(|e| {
                let records = records_of(&e.payload).unwrap();
                assert!(records.len() <= RECORDS_PER_ENTRY);
                records
            })
            .map(|r| r.seq)
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (0..n).collect::<Vec<_>>());
        // The backlog estimate follows the entries' size.
        assert!(batcher.samples_in(10) > 10);
    }

    #[tokio::test]
    async fn samples_reach_the_stream_in_the_order_they_were_queued() {
        let (_dir, bus) = grouped_bus().await;
        let batcher = TelemetryBatcher::default();
        let first = batcher.enqueue(serde_json::to_vec(&record(1)).unwrap());
        let second = batcher.enqueue(serde_json::to_vec(&record(2)).unwrap());
        // The later sample's wait takes the turn first: it appends both, in order.
        batcher.appended(bus.as_ref(), second).await.unwrap();
        batcher.appended(bus.as_ref(), first).await.unwrap();
        let entries = bus
            .read_group(TELEMETRY_STREAM, "g", "c", 10, Duration::ZERO)
            .await
            .unwrap();
        let seqs: Vec<u64> = entries
            .iter()
            .flat_map(|e| records_of(&e.payload).unwrap())
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, vec![1, 2]);
        // Admission's view: the last backlog read plus what was appended since.
        batcher.note_backlog(5);
        assert_eq!(batcher.backlog_entries(), 5);
        batcher
            .append(bus.as_ref(), serde_json::to_vec(&record(3)).unwrap())
            .await
            .unwrap();
        assert_eq!(batcher.backlog_entries(), 6);
    }

    #[tokio::test]
    async fn the_backlog_in_samples_uses_the_mean_since_the_last_read_and_exact_counts_since() {
        let (_dir, bus) = grouped_bus().await;
        let batcher = TelemetryBatcher::default();
        let append_entry = |records: u64| {
            let batcher = &batcher;
            let bus = Arc::clone(&bus);
            async move {
                let outcomes: Vec<_> = (0..records)
                    .map(|i| batcher.enqueue(serde_json::to_vec(&record(i)).unwrap()))
                    .collect();
                for o in outcomes {
                    batcher.appended(bus.as_ref(), o).await.unwrap();
                }
            }
        };
        // Entries of 1 and of 39 records: 20 a entry on average.
        append_entry(1).await;
        append_entry(39).await;
        batcher.note_backlog(10);
        assert_eq!(batcher.samples_in(10), 200);
        assert_eq!(batcher.backlog_samples(), 200);
        // Appended since the read: counted as the samples they hold, not by the mean.
        append_entry(1).await;
        assert_eq!(batcher.backlog_entries(), 11);
        assert_eq!(batcher.backlog_samples(), 201);
        // The next read takes its mean from what was appended in between: one sample.
        batcher.note_backlog(10);
        assert_eq!(batcher.samples_in(10), 10);
        assert_eq!(batcher.backlog_samples(), 10);
        // A read with nothing appended since keeps the mean it had.
        batcher.note_backlog(4);
        assert_eq!(batcher.backlog_samples(), 4);
    }

    #[tokio::test]
    async fn a_failed_append_is_reported_to_each_of_its_samples() {
        let dir = tempfile::tempdir().unwrap();
        let embedded =
            EmbeddedBus::open(&dir.path().join("bus.sqlite"), "t", Arc::new(SystemClock))
                .await
                .unwrap();
        embedded.close().await;
        let batcher = TelemetryBatcher::default();
        let bytes = serde_json::to_vec(&record(1)).unwrap();
        let err = batcher.append(&embedded, bytes).await.unwrap_err();
        assert!(err.contains("embedded bus"), "{err}");
        assert_eq!(batcher.samples_in(3), 3);
    }

    #[test]
    fn an_entry_of_records_and_an_entry_of_one_record_both_read() {
        let one = serde_json::to_vec(&record(7)).unwrap();
        let two = entry_of(&[one.clone(), serde_json::to_vec(&record(8)).unwrap()]);
        assert_eq!(records_of(&one).unwrap(), vec![record(7)]);
        assert_eq!(records_of(&two).unwrap(), vec![record(7), record(8)]);
        assert!(records_of(b"[{}]").is_err());
        assert!(records_of(b"").is_err());
    }
}
